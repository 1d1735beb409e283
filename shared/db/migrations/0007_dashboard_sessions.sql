-- 0007: dashboard sign-ins as server-side sessions: the cookie holds a random token, never the
-- API key. A session ends at its expiry, at sign-out, or when its key is revoked or deleted.
-- Never edit after merge: add 0008_… instead.
CREATE TABLE dashboard_sessions (
    token_hash  bytea PRIMARY KEY,   -- sha256 of the cookie's token; the token itself is never stored
    key_hash    bytea NOT NULL REFERENCES api_keys (key_hash) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
