-- 0001: accounts, keys, agents, contacts and groups, campaigns, runs, deliveries, outbox, dedupe.
-- Never edit after merge: add 0002_… instead.

CREATE TABLE accounts (
    id                 text PRIMARY KEY,
    name               text NOT NULL,
    balance            numeric(14, 4) NOT NULL DEFAULT 0,
    default_timezone   text NOT NULL DEFAULT 'Asia/Kolkata',
    price_sms          numeric(10, 4) NOT NULL DEFAULT 0.0079,
    price_email        numeric(10, 4) NOT NULL DEFAULT 0.0010,
    price_voice_minute numeric(10, 4) NOT NULL DEFAULT 0.0140,
    quiet_hours        boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_hash    bytea PRIMARY KEY,           -- sha256 of the whole key; the key itself is never stored
    account_id  text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    prefix      text NOT NULL,               -- first characters, to recognise a key in a list
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE sender_identities (
    account_id  text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('phone', 'email')),
    address     text NOT NULL,
    verified_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, kind, address)
);

CREATE TABLE agents (
    id              text PRIMARY KEY,
    account_id      text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            text NOT NULL,
    instructions    text NOT NULL DEFAULT '',
    opening_message text NOT NULL DEFAULT '',
    voice           jsonb NOT NULL DEFAULT '{}',
    mode            text NOT NULL DEFAULT 'rules',
    settings        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agents_account ON agents (account_id, id);

CREATE TABLE contacts (
    id              text PRIMARY KEY,
    account_id      text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    first_name      text,
    last_name       text,
    email           text,
    phone           text,
    company         text,
    timezone        text,
    metadata        jsonb NOT NULL DEFAULT '{}',
    opted_out_sms   boolean NOT NULL DEFAULT false,
    opted_out_email boolean NOT NULL DEFAULT false,
    opted_out_voice boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX contacts_account_phone ON contacts (account_id, phone);
CREATE UNIQUE INDEX contacts_account_email ON contacts (account_id, email);

CREATE TABLE contact_groups (
    id          text PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contact_groups_account ON contact_groups (account_id, id);

CREATE TABLE group_members (
    group_id    text NOT NULL REFERENCES contact_groups (id) ON DELETE CASCADE,
    contact_id  text NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, contact_id)
);
CREATE INDEX group_members_contact ON group_members (contact_id);

CREATE TABLE campaigns (
    id                text PRIMARY KEY,
    account_id        text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name              text NOT NULL,
    description       text,
    agent_id          text NOT NULL REFERENCES agents (id),
    channel           text NOT NULL CHECK (channel IN ('sms', 'email', 'voice')),
    status            text NOT NULL DEFAULT 'draft',
    message_template  text,
    subject_template  text,
    html_template     text,
    template_id       text,
    group_ids         text[] NOT NULL DEFAULT '{}',
    timezone          text NOT NULL,
    scheduled_at      timestamptz,               -- one instant for everyone (offset given)
    scheduled_wall    timestamp,                 -- a wall-clock time read in each zone
    sending_window    jsonb,
    recurrence        jsonb,
    max_concurrent    integer NOT NULL DEFAULT 1 CHECK (max_concurrent > 0),
    max_retries       integer NOT NULL DEFAULT 0 CHECK (max_retries >= 0),
    retry_interval    integer NOT NULL DEFAULT 300 CHECK (retry_interval >= 0),
    from_number       text,
    voice             jsonb NOT NULL DEFAULT '{}',
    config            jsonb NOT NULL DEFAULT '{}',
    total_contacts    integer NOT NULL DEFAULT 0,
    status_reason     text,
    resume_to         text,                      -- state a paused campaign returns to
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    launched_at       timestamptz,
    completed_at      timestamptz
);
CREATE INDEX campaigns_account ON campaigns (account_id, id);
CREATE INDEX campaigns_active ON campaigns (status) WHERE status IN ('scheduled', 'running');

-- Contacts named inline in a campaign's request (`contacts`), beside its groups.
CREATE TABLE campaign_recipients (
    campaign_id text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    contact_id  text NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    position    integer NOT NULL,
    PRIMARY KEY (campaign_id, contact_id)
);

-- One run per occurrence of a campaign (one for a one-off campaign).
CREATE TABLE runs (
    id            text PRIMARY KEY,
    campaign_id   text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    account_id    text NOT NULL,
    seq           integer NOT NULL,
    status        text NOT NULL DEFAULT 'pending',   -- pending → planned → completed | cancelled
    occurs_at     timestamptz,                       -- the schedule's instant, when it has one
    occurs_wall   timestamp,                         -- the occurrence's wall-clock time (recurring)
    plan_at       timestamptz,                       -- when the scheduler plans a pending run
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    UNIQUE (campaign_id, seq)
);
CREATE INDEX runs_pending ON runs (plan_at) WHERE status = 'pending';

CREATE TABLE deliveries (
    id              text PRIMARY KEY,
    run_id          text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    campaign_id     text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    account_id      text NOT NULL,
    contact_id      text NOT NULL,
    channel         text NOT NULL,
    to_address      text NOT NULL,
    state           text NOT NULL DEFAULT 'planned',
    send_at         timestamptz NOT NULL,
    plan_reason     jsonb,
    attempts        integer NOT NULL DEFAULT 0,
    provider_id     text,
    provider_status text,
    rendered        text,
    error           text,
    queued_at       timestamptz,
    sending_at      timestamptz,
    sent_at         timestamptz,
    delivered_at    timestamptz,
    replied_at      timestamptz,
    failed_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, contact_id)
);
CREATE INDEX deliveries_due ON deliveries (send_at) WHERE state = 'planned';
CREATE INDEX deliveries_open ON deliveries (run_id) WHERE state IN ('planned', 'queued', 'sending');
CREATE INDEX deliveries_campaign ON deliveries (campaign_id, state);
CREATE UNIQUE INDEX deliveries_provider ON deliveries (provider_id) WHERE provider_id IS NOT NULL;

-- max_concurrent across every dispatcher replica: one row per slot, leased by one delivery.
CREATE TABLE concurrency_slots (
    campaign_id  text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    slot         integer NOT NULL,
    delivery_id  text,
    lease_until  timestamptz,
    PRIMARY KEY (campaign_id, slot)
);

-- Transactional outbox: written with the business rows, published by a relay with confirms.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    message_id   text NOT NULL UNIQUE,
    exchange     text NOT NULL,
    routing_key  text NOT NULL,
    body         bytea NOT NULL,
    mandatory    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Consumers record each message they applied, in the same transaction as its effect.
CREATE TABLE processed_messages (
    consumer     text NOT NULL,
    message_id   text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

-- Every provider callback accepted, once: the dedupe key doubles as replay protection.
CREATE TABLE webhook_events (
    id           bigserial PRIMARY KEY,
    provider     text NOT NULL,
    kind         text NOT NULL,
    dedupe_key   text NOT NULL UNIQUE,
    delivery_id  text,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
