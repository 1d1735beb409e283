-- 0012: a contact's deliveries found by index: a contact's history (dashboard, API) and the
-- cancelling of a deleted contact's unsent deliveries scanned the whole table. contact_id never
-- changes; the index costs each new row version one entry (measured: within the run-to-run noise,
-- a few per cent of PostgreSQL's time a message in bench_dispatch.py).
-- Never edit after merge: add 0013_… instead.
CREATE INDEX deliveries_contact ON deliveries (contact_id);
