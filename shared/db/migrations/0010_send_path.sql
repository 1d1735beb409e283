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

-- One delivery's contribution to each figure (sign: +1 for a new row version, -1 for an old one).
CREATE FUNCTION delivery_figures(d deliveries, sign integer) RETURNS delivery_counts
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT d.run_id, 0::smallint, d.campaign_id,
        sign * (d.state = 'planned')::int, sign * (d.state = 'queued')::int,
        sign * (d.state = 'sending')::int, sign * (d.state = 'sent')::int,
        sign * (d.state = 'delivered')::int, sign * (d.state = 'undelivered')::int,
        sign * (d.state = 'failed')::int, sign * (d.state = 'cancelled')::int,
        sign * (d.state = 'skipped')::int,
        sign * (d.state = 'sending' OR (d.channel = 'voice' AND d.state = 'sent'))::int,
        sign * (d.sent_at IS NOT NULL)::int, sign * (d.delivered_at IS NOT NULL)::int,
        sign * (d.replied_at IS NOT NULL)::int,
        sign * COALESCE(extract(epoch FROM d.replied_at - d.sent_at)::float8, 0),
        sign * (d.replied_at IS NOT NULL AND d.sent_at IS NOT NULL)::int
$$;

-- Add a statement's changes (one row per run, each a sum of delivery_figures) to the counts, then
-- to the flow of their campaigns; wake the dispatchers and releasers of campaigns that now have
-- room (in flight or queued went down). Lock order, the same for every writer: delivery rows, then
-- campaign_flow rows (by campaign id), then delivery_counts rows (by run id).
CREATE FUNCTION add_delivery_counts(changes delivery_counts[], started_by_campaign jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    roomier text[];
BEGIN
    WITH f AS (
        SELECT c.campaign_id, sum(c.queued)::int AS queued, sum(c.in_flight)::int AS in_flight,
               COALESCE((started_by_campaign ->> c.campaign_id)::bigint, 0) AS started
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
END;
$$;

-- The sums of delivery_figures, by run.
CREATE FUNCTION sum_figures(rows delivery_counts[]) RETURNS delivery_counts[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(ROW(s.*)::delivery_counts ORDER BY s.run_id) FROM (
        SELECT f.run_id, 0::smallint, min(f.campaign_id), sum(f.planned)::int, sum(f.queued)::int,
               sum(f.sending)::int, sum(f.sent)::int, sum(f.delivered)::int, sum(f.undelivered)::int,
               sum(f.failed)::int, sum(f.cancelled)::int, sum(f.skipped)::int, sum(f.in_flight)::int,
               sum(f.with_sent_at)::int, sum(f.with_delivered_at)::int, sum(f.replied)::int,
               sum(f.response_sum)::float8, sum(f.response_n)::int
        FROM unnest(rows) AS f GROUP BY f.run_id
    ) AS s
$$;

CREATE FUNCTION deliveries_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM add_delivery_counts(
        (SELECT sum_figures(array_agg(delivery_figures(n, 1))) FROM new_rows AS n), '{}'::jsonb);
    RETURN NULL;
END;
$$;

CREATE FUNCTION deliveries_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM add_delivery_counts(
        (SELECT sum_figures(array_agg(f)) FROM (
            SELECT delivery_figures(n, 1) AS f FROM new_rows AS n
            UNION ALL
            SELECT delivery_figures(o, -1) FROM old_rows AS o) AS x),
        -- sends started: attempts only ever grow, one per claim
        (SELECT COALESCE(jsonb_object_agg(campaign_id, started), '{}'::jsonb) FROM (
            SELECT campaign_id, sum(attempts) AS started FROM (
                SELECT campaign_id, attempts FROM new_rows
                UNION ALL
                SELECT campaign_id, -attempts FROM old_rows) AS a
            GROUP BY campaign_id HAVING sum(attempts) <> 0) AS s));
    RETURN NULL;
END;
$$;

CREATE TRIGGER deliveries_counted_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deliveries_inserted();
CREATE TRIGGER deliveries_counted_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deliveries_updated();

-- The figures of deliveries that exist already.
INSERT INTO delivery_counts
SELECT (s).* FROM (
    SELECT unnest(sum_figures(array_agg(delivery_figures(d, 1)))) AS s FROM deliveries AS d
) AS x;
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
CREATE INDEX runs_planned ON runs (campaign_id) WHERE status IN ('planning', 'planned');

-- Concurrency is counted in campaign_flow now; the per-slot lease rows are gone.
DROP TABLE concurrency_slots;
