-- 0010: the send path at scale. Figures and flow are counted as deliveries change, in the same
-- statements (statement-level triggers over transition tables), so reading them costs the same at
-- any size and they always equal a recount; concurrency is the count of claimed deliveries.
-- Never edit after merge: add 0011_… instead.

-- Per campaign: what waits in a dispatch queue, what is in flight, and how many sends ever started.
-- `in_flight` is max_concurrent's measure: deliveries being handed to a provider (`sending`) and
-- voice calls under way (`sent`, until the call ends). A claim locks this row and claims only
-- what `max_concurrent - in_flight` allows, so every replica together never exceeds it.
CREATE TABLE campaign_flow (
    campaign_id text PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    queued      integer NOT NULL DEFAULT 0,
    in_flight   integer NOT NULL DEFAULT 0,
    started     bigint NOT NULL DEFAULT 0
);

-- Per run (in a few shards, one picked per backend, so that concurrent writers rarely wait on one
-- another): deliveries by state, and the figures of the results.
CREATE TABLE delivery_counts (
    run_id       text NOT NULL,
    shard        smallint NOT NULL,
    campaign_id  text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    planned      integer NOT NULL DEFAULT 0,
    queued       integer NOT NULL DEFAULT 0,
    sending      integer NOT NULL DEFAULT 0,
    sent         integer NOT NULL DEFAULT 0,
    delivered    integer NOT NULL DEFAULT 0,
    undelivered  integer NOT NULL DEFAULT 0,
    failed       integer NOT NULL DEFAULT 0,
    cancelled    integer NOT NULL DEFAULT 0,
    skipped      integer NOT NULL DEFAULT 0,
    in_flight    integer NOT NULL DEFAULT 0,
    with_sent_at      integer NOT NULL DEFAULT 0,
    with_delivered_at integer NOT NULL DEFAULT 0,
    replied           integer NOT NULL DEFAULT 0,
    response_sum double precision NOT NULL DEFAULT 0,  -- seconds from sent to first reply, summed
    response_n   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, shard)
);
CREATE INDEX delivery_counts_campaign ON delivery_counts (campaign_id);

-- Add a statement's changes (one row per run: how many deliveries it added to, or took from, each
-- state and figure; see the triggers below) to the flow of their campaigns, then to the counts,
-- then charge what the statement set as the deliveries' cost; wake the dispatchers and releasers
-- of campaigns that now have room (in flight or queued went down).
-- `by_campaign`: campaign id → [sends started, cost added]. Lock order, the same for every writer:
-- delivery rows, then campaign_flow rows (by campaign id), then delivery_counts rows (by run id),
-- then campaigns and accounts (the charge).
CREATE FUNCTION add_delivery_counts(
    changes delivery_counts[], by_campaign jsonb, flows boolean, counts boolean, charges boolean
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    roomier text[];
BEGIN
    IF flows THEN
    WITH f AS (
        SELECT c.campaign_id, sum(c.queued)::int AS queued, sum(c.in_flight)::int AS in_flight,
               COALESCE((by_campaign -> c.campaign_id ->> 0)::bigint, 0) AS started
        FROM unnest(changes) AS c GROUP BY c.campaign_id
    ), up AS (
        INSERT INTO campaign_flow AS cf (campaign_id, queued, in_flight, started)
        SELECT campaign_id, queued, in_flight, started FROM f
        WHERE queued <> 0 OR in_flight <> 0 OR started <> 0
        ORDER BY campaign_id
        ON CONFLICT (campaign_id) DO UPDATE SET
            queued = cf.queued + EXCLUDED.queued,
            in_flight = cf.in_flight + EXCLUDED.in_flight,
            started = cf.started + EXCLUDED.started
        RETURNING cf.campaign_id
    )
    SELECT array_agg(f.campaign_id) INTO roomier
    FROM f WHERE (f.queued < 0 OR f.in_flight < 0) AND f.campaign_id IN (SELECT campaign_id FROM up);
    PERFORM pg_notify('flow', c) FROM unnest(roomier) AS c;
    END IF;

    IF counts THEN
    INSERT INTO delivery_counts AS dc
    SELECT c.run_id, (pg_backend_pid() % 8)::smallint, c.campaign_id,
           c.planned, c.queued, c.sending, c.sent, c.delivered, c.undelivered, c.failed, c.cancelled,
           c.skipped, c.in_flight, c.with_sent_at, c.with_delivered_at, c.replied, c.response_sum, c.response_n
    FROM unnest(changes) AS c
    WHERE (c.planned, c.queued, c.sending, c.sent, c.delivered, c.undelivered, c.failed, c.cancelled,
           c.skipped, c.with_sent_at, c.with_delivered_at, c.replied, c.response_n)
          IS DISTINCT FROM (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    ORDER BY c.run_id
    ON CONFLICT (run_id, shard) DO UPDATE SET
        planned = dc.planned + EXCLUDED.planned, queued = dc.queued + EXCLUDED.queued,
        sending = dc.sending + EXCLUDED.sending, sent = dc.sent + EXCLUDED.sent,
        delivered = dc.delivered + EXCLUDED.delivered, undelivered = dc.undelivered + EXCLUDED.undelivered,
        failed = dc.failed + EXCLUDED.failed, cancelled = dc.cancelled + EXCLUDED.cancelled,
        skipped = dc.skipped + EXCLUDED.skipped, in_flight = dc.in_flight + EXCLUDED.in_flight,
        with_sent_at = dc.with_sent_at + EXCLUDED.with_sent_at,
        with_delivered_at = dc.with_delivered_at + EXCLUDED.with_delivered_at,
        replied = dc.replied + EXCLUDED.replied, response_sum = dc.response_sum + EXCLUDED.response_sum,
        response_n = dc.response_n + EXCLUDED.response_n;
    END IF;

    -- A send is charged when its cost is set (once): from its campaign's reservation, then from the
    -- account's balance once that is used up.
    IF charges THEN
    WITH charge AS (
        SELECT key AS campaign_id, (value ->> 1)::numeric AS amount
        FROM jsonb_each(by_campaign) WHERE (value ->> 1)::numeric > 0
    ), old AS (
        SELECT c.id, c.account_id, c.reserved, charge.amount FROM campaigns c JOIN charge ON charge.campaign_id = c.id
        ORDER BY c.id FOR NO KEY UPDATE OF c
    ), upd AS (
        UPDATE campaigns c SET reserved = old.reserved - LEAST(old.reserved, old.amount)
        FROM old WHERE c.id = old.id
        RETURNING old.account_id, old.amount - LEAST(old.reserved, old.amount) AS excess
    )
    UPDATE accounts a SET balance = a.balance - e.excess
    FROM (SELECT account_id, sum(excess) AS excess FROM upd GROUP BY account_id) AS e
    WHERE a.id = e.account_id AND e.excess > 0;
    END IF;
END;
$$;

-- A statement's changes, by run: what its new rows add (an INSERT), or what its new rows add and
-- its old rows take away (an UPDATE); and by campaign, the sends it started and the cost it set.
CREATE FUNCTION deliveries_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changes delivery_counts[];
    by_campaign jsonb;
    flows boolean;
    counts boolean;
    charges boolean;
BEGIN
    WITH g AS (
    SELECT d.run_id, min(d.campaign_id) AS campaign_id,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'planned'), 0)::int AS planned,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'queued'), 0)::int AS queued,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'sending'), 0)::int AS sending,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'sent'), 0)::int AS sent,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'delivered'), 0)::int AS delivered,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'undelivered'), 0)::int AS undelivered,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'failed'), 0)::int AS failed,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'cancelled'), 0)::int AS cancelled,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'skipped'), 0)::int AS skipped,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'sending' OR (d.state = 'sent' AND d.channel = 'voice')), 0)::int
                AS in_flight,
            COALESCE(sum(d.s) FILTER (WHERE d.sent_at IS NOT NULL), 0)::int AS with_sent_at,
            COALESCE(sum(d.s) FILTER (WHERE d.delivered_at IS NOT NULL), 0)::int AS with_delivered_at,
            COALESCE(sum(d.s) FILTER (WHERE d.replied_at IS NOT NULL), 0)::int AS replied,
            COALESCE(sum(d.s * extract(epoch FROM d.replied_at - d.sent_at)::float8)
                FILTER (WHERE d.replied_at IS NOT NULL AND d.sent_at IS NOT NULL), 0) AS response_sum,
            COALESCE(sum(d.s) FILTER (WHERE d.replied_at IS NOT NULL AND d.sent_at IS NOT NULL), 0)::int AS response_n,
            sum(d.s * d.attempts) AS started, sum(d.s * COALESCE(d.cost, 0)) AS cost
        FROM (
            SELECT run_id, campaign_id, state, channel, sent_at, delivered_at, replied_at, attempts, cost, 1 AS s
            FROM new_rows
        ) AS d
        GROUP BY d.run_id
    )
    SELECT (SELECT array_agg(ROW(g.run_id, 0, g.campaign_id, g.planned, g.queued, g.sending, g.sent, g.delivered,
                g.undelivered, g.failed, g.cancelled, g.skipped, g.in_flight, g.with_sent_at,
                g.with_delivered_at, g.replied, g.response_sum, g.response_n)::delivery_counts ORDER BY g.run_id) FROM g),
           (SELECT jsonb_object_agg(c.campaign_id, jsonb_build_array(c.started, c.cost)) FROM (
                SELECT campaign_id, sum(started) AS started, sum(cost) AS cost FROM g GROUP BY campaign_id) AS c),
           (SELECT bool_or(g.queued <> 0 OR g.in_flight <> 0 OR g.started <> 0) FROM g),
           (SELECT bool_or((g.planned, g.queued, g.sending, g.sent, g.delivered, g.undelivered, g.failed, g.cancelled,
                            g.skipped, g.with_sent_at, g.with_delivered_at, g.replied, g.response_n)
                           IS DISTINCT FROM (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)) FROM g),
           (SELECT bool_or(g.cost > 0) FROM g)
    INTO changes, by_campaign, flows, counts, charges;
    IF changes IS NOT NULL THEN
        PERFORM add_delivery_counts(changes, by_campaign, flows, counts, charges);
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION deliveries_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changes delivery_counts[];
    by_campaign jsonb;
    flows boolean;
    counts boolean;
    charges boolean;
BEGIN
    WITH g AS (
    SELECT d.run_id, min(d.campaign_id) AS campaign_id,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'planned'), 0)::int AS planned,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'queued'), 0)::int AS queued,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'sending'), 0)::int AS sending,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'sent'), 0)::int AS sent,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'delivered'), 0)::int AS delivered,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'undelivered'), 0)::int AS undelivered,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'failed'), 0)::int AS failed,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'cancelled'), 0)::int AS cancelled,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'skipped'), 0)::int AS skipped,
            COALESCE(sum(d.s) FILTER (WHERE d.state = 'sending' OR (d.state = 'sent' AND d.channel = 'voice')), 0)::int
                AS in_flight,
            COALESCE(sum(d.s) FILTER (WHERE d.sent_at IS NOT NULL), 0)::int AS with_sent_at,
            COALESCE(sum(d.s) FILTER (WHERE d.delivered_at IS NOT NULL), 0)::int AS with_delivered_at,
            COALESCE(sum(d.s) FILTER (WHERE d.replied_at IS NOT NULL), 0)::int AS replied,
            COALESCE(sum(d.s * extract(epoch FROM d.replied_at - d.sent_at)::float8)
                FILTER (WHERE d.replied_at IS NOT NULL AND d.sent_at IS NOT NULL), 0) AS response_sum,
            COALESCE(sum(d.s) FILTER (WHERE d.replied_at IS NOT NULL AND d.sent_at IS NOT NULL), 0)::int AS response_n,
            sum(d.s * d.attempts) AS started, sum(d.s * COALESCE(d.cost, 0)) AS cost
        FROM (
            SELECT run_id, campaign_id, state, channel, sent_at, delivered_at, replied_at, attempts, cost, 1 AS s
            FROM new_rows
            UNION ALL
            SELECT run_id, campaign_id, state, channel, sent_at, delivered_at, replied_at, attempts, cost, -1
            FROM old_rows
        ) AS d
        GROUP BY d.run_id
    )
    SELECT (SELECT array_agg(ROW(g.run_id, 0, g.campaign_id, g.planned, g.queued, g.sending, g.sent, g.delivered,
                g.undelivered, g.failed, g.cancelled, g.skipped, g.in_flight, g.with_sent_at,
                g.with_delivered_at, g.replied, g.response_sum, g.response_n)::delivery_counts ORDER BY g.run_id) FROM g),
           (SELECT jsonb_object_agg(c.campaign_id, jsonb_build_array(c.started, c.cost)) FROM (
                SELECT campaign_id, sum(started) AS started, sum(cost) AS cost FROM g GROUP BY campaign_id) AS c),
           (SELECT bool_or(g.queued <> 0 OR g.in_flight <> 0 OR g.started <> 0) FROM g),
           (SELECT bool_or((g.planned, g.queued, g.sending, g.sent, g.delivered, g.undelivered, g.failed, g.cancelled,
                            g.skipped, g.with_sent_at, g.with_delivered_at, g.replied, g.response_n)
                           IS DISTINCT FROM (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)) FROM g),
           (SELECT bool_or(g.cost > 0) FROM g)
    INTO changes, by_campaign, flows, counts, charges;
    IF changes IS NOT NULL THEN
        PERFORM add_delivery_counts(changes, by_campaign, flows, counts, charges);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER deliveries_counted_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deliveries_inserted();
CREATE TRIGGER deliveries_counted_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deliveries_updated();

-- The figures of deliveries that exist already.
WITH g AS (
    SELECT d.run_id, min(d.campaign_id) AS campaign_id,
        COALESCE(sum(d.s) FILTER (WHERE d.state = 'planned'), 0)::int AS planned,
        COALESCE(sum(d.s) FILTER (WHERE d.state = 'queued'), 0)::int AS queued,
        COALESCE(sum(d.s) FILTER (WHERE d.state = 'sending'), 0)::int AS sending,
        COALESCE(sum(d.s) FILTER (WHERE d.state = 'sent'), 0)::int AS sent,
        COALESCE(sum(d.s) FILTER (WHERE d.state = 'delivered'), 0)::int AS delivered,
        COALESCE(sum(d.s) FILTER (WHERE d.state = 'undelivered'), 0)::int AS undelivered,
        COALESCE(sum(d.s) FILTER (WHERE d.state = 'failed'), 0)::int AS failed,
        COALESCE(sum(d.s) FILTER (WHERE d.state = 'cancelled'), 0)::int AS cancelled,
        COALESCE(sum(d.s) FILTER (WHERE d.state = 'skipped'), 0)::int AS skipped,
        COALESCE(sum(d.s) FILTER (WHERE d.state = 'sending' OR (d.state = 'sent' AND d.channel = 'voice')), 0)::int
            AS in_flight,
        COALESCE(sum(d.s) FILTER (WHERE d.sent_at IS NOT NULL), 0)::int AS with_sent_at,
        COALESCE(sum(d.s) FILTER (WHERE d.delivered_at IS NOT NULL), 0)::int AS with_delivered_at,
        COALESCE(sum(d.s) FILTER (WHERE d.replied_at IS NOT NULL), 0)::int AS replied,
        COALESCE(sum(d.s * extract(epoch FROM d.replied_at - d.sent_at)::float8)
            FILTER (WHERE d.replied_at IS NOT NULL AND d.sent_at IS NOT NULL), 0) AS response_sum,
        COALESCE(sum(d.s) FILTER (WHERE d.replied_at IS NOT NULL AND d.sent_at IS NOT NULL), 0)::int AS response_n,
        sum(d.s * d.attempts) AS started, sum(d.s * COALESCE(d.cost, 0)) AS cost
    FROM (
        SELECT run_id, campaign_id, state, channel, sent_at, delivered_at, replied_at, attempts, cost, 1 AS s
        FROM deliveries
    ) AS d
    GROUP BY d.run_id
)
INSERT INTO delivery_counts
SELECT g.run_id, 0, g.campaign_id, g.planned, g.queued, g.sending, g.sent, g.delivered, g.undelivered, g.failed,
       g.cancelled, g.skipped, g.in_flight, g.with_sent_at, g.with_delivered_at, g.replied, g.response_sum,
       g.response_n
FROM g;
INSERT INTO campaign_flow (campaign_id, queued, in_flight, started)
SELECT campaign_id, count(*) FILTER (WHERE state = 'queued'),
       count(*) FILTER (WHERE state = 'sending' OR (channel = 'voice' AND state = 'sent')), sum(attempts)
FROM deliveries GROUP BY campaign_id;

-- A run is planned in chunks, each committed (the first sends start while the rest is planned):
-- `planning` until its last chunk, `planned_through` the last contact id planned so far.
ALTER TABLE runs ADD COLUMN planned_through text;

-- Indexes on what a state change does not rewrite where possible; counts replace the scans.
DROP INDEX deliveries_open;
DROP INDEX deliveries_campaign;
DROP INDEX deliveries_due;
CREATE INDEX deliveries_campaign ON deliveries (campaign_id, id);
CREATE INDEX deliveries_planned ON deliveries (campaign_id, send_at) WHERE state = 'planned';
-- what waits in the dispatch queues (a few per campaign): the sweeper looks for a lost command here
CREATE INDEX deliveries_queued ON deliveries (updated_at) WHERE state = 'queued';
CREATE INDEX runs_planned ON runs (campaign_id) WHERE status IN ('planning', 'planned');

-- Concurrency is counted in campaign_flow now; the per-slot lease rows are gone.
DROP TABLE concurrency_slots;
