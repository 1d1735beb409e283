-- 0008: a delivery receipt that never arrived (a lost status callback) is asked for: deliveries
-- accepted but without a final status are looked up at the provider a few times, spaced out.
-- Never edit after merge: add 0009_… instead.
ALTER TABLE deliveries
    ADD COLUMN status_checks integer NOT NULL DEFAULT 0,
    ADD COLUMN status_checked_at timestamptz;
CREATE INDEX deliveries_awaiting_receipt ON deliveries (sent_at) WHERE state = 'sent';
