-- 0019: the circuit breaker. A campaign's thresholds (`circuit_breaker`: NULL takes the settings'
-- defaults, {"enabled": false} turns it off), why it paused itself (`paused_reason`), and its
-- window: the figures at the start of the window (launch, or the last resume), subtracted from the
-- campaign's counts (delivery_counts) to get the window's own, and its opt-outs (a STOP or an
-- unsubscribe answering one of its deliveries). Never edit after merge.

ALTER TABLE campaigns ADD COLUMN circuit_breaker jsonb;
ALTER TABLE campaigns ADD COLUMN paused_reason jsonb;

CREATE TABLE campaign_breaker (
    campaign_id       text PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    opt_outs          integer NOT NULL DEFAULT 0,
    base_finished     integer NOT NULL DEFAULT 0,
    base_failed       integer NOT NULL DEFAULT 0,
    base_accepted     integer NOT NULL DEFAULT 0,
    base_undelivered  integer NOT NULL DEFAULT 0,
    base_opt_outs     integer NOT NULL DEFAULT 0
);
