-- 0021: sender rate limits. A sender identity's own `max_per_second` (NULL: the default for its
-- kind of number, from settings), and its pacing state: `rate_tat`, the earliest instant its next
-- send may start (a GCRA's theoretical arrival time), advanced by each claim that sends from it,
-- across every dispatcher replica and every campaign. Never edit after merge.

ALTER TABLE sender_identities ADD COLUMN max_per_second double precision
    CHECK (max_per_second IS NULL OR max_per_second > 0);
ALTER TABLE sender_identities ADD COLUMN rate_tat timestamptz;
