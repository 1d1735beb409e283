-- 0024: a send's cost is held when it is claimed, not charged once the provider took it. Launch
-- reserves an estimate from the template's text, but a message rendered for its contact can cost
-- many times that (a long value in a variable, a character outside GSM-7), and sends charged after
-- the fact took an account's balance below zero. Now the claim (and a hand-over, which claims in a
-- finished send's place) sets each delivery's cost from its rendered text, before the provider is
-- asked; the statement's charge takes it from the reservation, then from the balance, and a claim
-- the balance cannot cover fails whole (SQLSTATE CA402: the dispatcher claims what it can afford,
-- or pauses the campaign saying why). A send that does not happen (a retry, a failure) sets its
-- cost back to NULL, and what the statement took comes back: to the reservation while the campaign
-- is live, else to the balance. A call holds its longest length and is settled when it ends.
-- Never edit after merge.

-- The costs a statement set (a hold, or a call's settlement) are charged: from the campaign's
-- reservation, then from the account's balance. The costs it took back (NULL again) return: to the
-- reservation of a live campaign, else to the balance (a finished run's was refunded). Sends the
-- balance cannot cover do not start; a call's settlement, which starts none, is charged whatever
-- it costs (the call took place). `by_campaign`: campaign id -> [sends started, cost added].
CREATE FUNCTION charge_costs(by_campaign jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    short boolean;
BEGIN
    WITH charge AS (
        SELECT key AS campaign_id, (value ->> 0)::bigint AS started, (value ->> 1)::numeric AS amount
        FROM jsonb_each(by_campaign) WHERE (value ->> 1)::numeric <> 0
    ), old AS (
        SELECT c.id, c.account_id, c.reserved, c.status IN ('scheduled', 'running', 'paused') AS live,
               charge.amount, charge.started
        FROM campaigns c JOIN charge ON charge.campaign_id = c.id
        ORDER BY c.id FOR NO KEY UPDATE OF c
    ), upd AS (
        UPDATE campaigns c SET reserved = CASE
            WHEN old.amount > 0 THEN old.reserved - LEAST(old.reserved, old.amount)
            WHEN old.live THEN old.reserved - old.amount
            ELSE old.reserved END
        FROM old WHERE c.id = old.id
        RETURNING old.account_id,
            CASE WHEN old.amount > 0 THEN old.amount - LEAST(old.reserved, old.amount)
                 WHEN old.live THEN 0
                 ELSE old.amount END AS excess,
            old.amount > 0 AND old.started > 0 AS starts
    ), paid AS (
        UPDATE accounts a SET balance = a.balance - e.excess
        FROM (SELECT account_id, sum(excess) AS excess, bool_or(starts) AS starts FROM upd GROUP BY account_id) AS e
        WHERE a.id = e.account_id AND e.excess <> 0
        RETURNING a.balance, e.excess, e.starts
    )
    SELECT bool_or(paid.starts AND paid.excess > 0 AND paid.balance < 0) INTO short FROM paid;
    IF short THEN
        RAISE EXCEPTION 'the balance cannot cover these sends' USING ERRCODE = 'CA402';
    END IF;
END;
$$;

-- Migration 0010's functions, changed in place where they charge (the rest of them as they are):
-- add_delivery_counts charges through charge_costs, and the counting triggers pass on a change of
-- cost either way (a cost taken back is a change too), not only a rise.
DO $$
DECLARE
    fn text;
    body text;
    patched text;
BEGIN
    body := pg_get_functiondef('add_delivery_counts'::regproc);
    patched := regexp_replace(body, 'IF charges THEN.*?END IF;', 'IF charges THEN PERFORM charge_costs(by_campaign); END IF;');
    IF patched = body THEN
        RAISE EXCEPTION 'add_delivery_counts does not charge as migration 0010 wrote it';
    END IF;
    EXECUTE patched;
    FOREACH fn IN ARRAY ARRAY['deliveries_inserted', 'deliveries_updated'] LOOP
        body := pg_get_functiondef(fn::regproc);
        IF position('bool_or(g.cost > 0)' IN body) = 0 THEN
            RAISE EXCEPTION '% does not pass on its charges as migration 0010 wrote it', fn;
        END IF;
        EXECUTE replace(body, 'bool_or(g.cost > 0)', 'bool_or(g.cost <> 0)');
    END LOOP;
END;
$$;
