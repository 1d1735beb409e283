-- 0005: conversations (every message in and out, per contact), replies matched to deliveries.
-- Never edit after merge.

CREATE TABLE messages (
    id           text PRIMARY KEY,
    account_id   text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    contact_id   text NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    campaign_id  text REFERENCES campaigns (id) ON DELETE SET NULL,
    delivery_id  text REFERENCES deliveries (id) ON DELETE SET NULL,
    channel      text NOT NULL,
    direction    text NOT NULL CHECK (direction IN ('in', 'out')),
    body         text NOT NULL,
    provider_id  text,
    author       text NOT NULL DEFAULT 'contact',   -- contact, agent, system (opt-out confirmations)
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_campaign ON messages (campaign_id, created_at);
CREATE INDEX messages_contact ON messages (contact_id, created_at);
CREATE INDEX deliveries_to_sent ON deliveries (to_address, sent_at DESC) WHERE sent_at IS NOT NULL;
