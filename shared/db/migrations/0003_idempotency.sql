-- 0003: Idempotency-Key of creating POSTs: the first answer per (account, key), kept 24 hours.
-- Never edit after merge.

CREATE TABLE idempotency_keys (
    account_id   text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    method       text NOT NULL,
    path         text NOT NULL,                -- path and query string
    body_hash    bytea NOT NULL,               -- sha256 of the request body
    status       integer,                      -- NULL while the first request runs
    headers      jsonb NOT NULL DEFAULT '{}',  -- the answer's headers that matter (Content-Type)
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
