-- 0022: the dispatchers' own wake-up channel. Migration 0010's `flow` NOTIFY names a campaign whose
-- queue or in-flight count went down: the releaser's cue (room in a dispatch queue). The
-- dispatchers listened to it too, so every hand-over (a queued delivery claimed in a sent one's
-- place: the queue one shorter, in flight unchanged) woke every replica's lane of a campaign at its
-- limit for a claim that found no room: one empty statement, holding the campaign's flow row, per
-- recorded batch. `room` names only the campaigns whose in-flight count went down, the one thing a
-- dispatcher waits for. The function is 0010's with that one change. Never edit after merge.

CREATE OR REPLACE FUNCTION add_delivery_counts(
    changes delivery_counts[], by_campaign jsonb, flows boolean, counts boolean, charges boolean
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    roomier text[];
    freed text[];
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
    SELECT array_agg(f.campaign_id) FILTER (WHERE f.queued < 0 OR f.in_flight < 0),
           array_agg(f.campaign_id) FILTER (WHERE f.in_flight < 0)
    INTO roomier, freed
    FROM f WHERE f.campaign_id IN (SELECT campaign_id FROM up);
    PERFORM pg_notify('flow', c) FROM unnest(roomier) AS c;
    PERFORM pg_notify('room', c) FROM unnest(freed) AS c;
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
