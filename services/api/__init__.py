"""HTTP API: campaigns, agents, results; the dashboard."""
