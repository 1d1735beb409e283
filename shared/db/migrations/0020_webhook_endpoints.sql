-- 0020: signed outbound webhooks. An account's endpoints (a URL, the events it wants, its signing
-- secret), the events owed to each (written by triggers in the very transaction that makes the
-- change they report: none lost, none invented), and the attempts made to deliver them.
-- Never edit after merge.

CREATE TABLE webhook_endpoints (
    id               text PRIMARY KEY,
    account_id       text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url              text NOT NULL,
    events           text[] NOT NULL,
    secret           text NOT NULL,
    enabled          boolean NOT NULL DEFAULT true,
    disabled_reason  text,
    failing_since    timestamptz,              -- first failure since the last success
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id) WHERE enabled;

-- One row per (event, endpoint): what is owed, and when to try next.
CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    event_id         text NOT NULL,
    endpoint_id      text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    account_id       text NOT NULL,
    type             text NOT NULL,
    payload          jsonb NOT NULL,            -- the whole body sent: {"id", "type", "created_at", "data"}
    state            text NOT NULL DEFAULT 'pending',   -- pending → delivered | failed
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_ended ON webhook_deliveries (created_at) WHERE state <> 'pending';

CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    endpoint_id  text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id     text NOT NULL,
    type         text NOT NULL,
    status_code  integer,
    error        text,
    duration_ms  integer,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);

-- An event of an account for each of its enabled endpoints that wants it; wakes the sender.
CREATE FUNCTION emit_webhook_events(events jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- events: [{"account_id", "type", "data"}, …]
    WITH e AS (
        SELECT x ->> 'account_id' AS account_id, x ->> 'type' AS type, x -> 'data' AS data,
               'evt_' || replace(gen_random_uuid()::text, '-', '') AS id
        FROM jsonb_array_elements(events) AS x
    )
    INSERT INTO webhook_deliveries (event_id, endpoint_id, account_id, type, payload)
    SELECT e.id, w.id, e.account_id, e.type,
           jsonb_build_object('id', e.id, 'type', e.type,
                              'created_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                              'data', e.data)
    FROM e JOIN webhook_endpoints w
      ON w.account_id = e.account_id AND w.enabled AND (e.type = ANY (w.events) OR '*' = ANY (w.events));
    IF FOUND THEN
        PERFORM pg_notify('webhooks', '');
    END IF;
END;
$$;

-- campaign.launched | paused | resumed | completed | failed | cancelled
CREATE FUNCTION campaigns_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE account_id = NEW.account_id AND enabled) THEN
        RETURN NULL;
    END IF;
    kind := CASE
        WHEN NEW.status = 'scheduled' AND OLD.status = 'draft' THEN 'launched'
        WHEN NEW.status = 'paused' THEN 'paused'
        WHEN OLD.status = 'paused' AND NEW.status IN ('scheduled', 'running') THEN 'resumed'
        WHEN NEW.status IN ('completed', 'failed', 'cancelled') THEN NEW.status
    END;
    IF kind IS NOT NULL THEN
        PERFORM emit_webhook_events(jsonb_build_array(jsonb_build_object(
            'account_id', NEW.account_id, 'type', 'campaign.' || kind,
            'data', jsonb_strip_nulls(jsonb_build_object(
                'campaign_id', NEW.id, 'name', NEW.name, 'channel', NEW.channel,
                'status', NEW.status, 'previous_status', OLD.status,
                -- why, when the campaign did it by itself: the breaker's reason, a failure's
                'reason', CASE WHEN NEW.status = 'paused' THEN to_jsonb(NEW) -> 'paused_reason'
                               WHEN NEW.status = 'failed' THEN to_jsonb(NEW.status_reason) END)))));
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER campaigns_webhook AFTER UPDATE OF status ON campaigns
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION campaigns_webhook();

-- delivery.sent | delivered | failed | undelivered: one INSERT per statement, whatever its size;
-- nothing at all (one index probe) while no endpoint is enabled anywhere.
CREATE FUNCTION deliveries_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled) THEN
        RETURN NULL;
    END IF;
    PERFORM emit_webhook_events(COALESCE(jsonb_agg(jsonb_build_object(
        'account_id', n.account_id, 'type', 'delivery.' || n.state,
        'data', jsonb_strip_nulls(jsonb_build_object(
            'delivery_id', n.id, 'campaign_id', n.campaign_id, 'contact_id', n.contact_id,
            'channel', n.channel, 'to', n.to_address, 'state', n.state, 'provider_id', n.provider_id,
            'error', n.error)))), '[]'::jsonb))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.state IS DISTINCT FROM o.state AND n.state IN ('sent', 'delivered', 'failed', 'undelivered')
      AND EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.account_id = n.account_id AND w.enabled);
    RETURN NULL;
END;
$$;
CREATE TRIGGER deliveries_webhook AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deliveries_webhook();

-- reply.received: a message in from a contact.
CREATE FUNCTION messages_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_endpoints WHERE account_id = NEW.account_id AND enabled) THEN
        PERFORM emit_webhook_events(jsonb_build_array(jsonb_build_object(
            'account_id', NEW.account_id, 'type', 'reply.received',
            'data', jsonb_strip_nulls(jsonb_build_object(
                'message_id', NEW.id, 'campaign_id', NEW.campaign_id, 'delivery_id', NEW.delivery_id,
                'contact_id', NEW.contact_id, 'channel', NEW.channel, 'body', NEW.body)))));
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER messages_webhook AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.direction = 'in' AND NEW.author = 'contact') EXECUTE FUNCTION messages_webhook();

-- contact.opted_out: a contact opted out of a channel (a STOP, an unsubscribe, a bounce, the API).
CREATE FUNCTION contacts_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    channel text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE account_id = NEW.account_id AND enabled) THEN
        RETURN NULL;
    END IF;
    FOREACH channel IN ARRAY ARRAY['sms', 'email', 'voice'] LOOP
        IF (to_jsonb(NEW) ->> ('opted_out_' || channel))::boolean
           AND NOT COALESCE((to_jsonb(OLD) ->> ('opted_out_' || channel))::boolean, false) THEN
            PERFORM emit_webhook_events(jsonb_build_array(jsonb_build_object(
                'account_id', NEW.account_id, 'type', 'contact.opted_out',
                'data', jsonb_strip_nulls(jsonb_build_object(
                    'contact_id', NEW.id, 'channel', channel, 'phone', NEW.phone, 'email', NEW.email)))));
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;
CREATE TRIGGER contacts_webhook AFTER UPDATE OF opted_out_sms, opted_out_email, opted_out_voice ON contacts
    FOR EACH ROW EXECUTE FUNCTION contacts_webhook();
