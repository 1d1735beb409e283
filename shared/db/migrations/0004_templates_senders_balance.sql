-- 0004: message templates, sender identities' state, balance reservations and per-send charges.
-- Never edit after merge.

CREATE TABLE templates (
    id          text PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('sms', 'email', 'voice')),
    body        text,              -- SMS text, voice opening message, or the email's text part
    subject     text,              -- email
    html        text,              -- email, optional
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX templates_account ON templates (account_id, created_at DESC, id DESC);

-- What a launched campaign holds back from the balance for its current run.
ALTER TABLE campaigns ADD COLUMN reserved numeric(14, 4) NOT NULL DEFAULT 0;
-- What a send cost (charged when the provider accepts it).
ALTER TABLE deliveries ADD COLUMN cost numeric(10, 4);
