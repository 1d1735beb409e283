"""The tracker: provider webhooks → delivery states, replies, opt-outs."""
