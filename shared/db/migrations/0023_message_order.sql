-- 0023: a conversation's messages keep the order they were written in. `created_at` defaulted to
-- now(), the transaction's start: an inbound keyword and the answer written with it (STOP and
-- "You have been unsubscribed…", HELP and its notice, a voice opt-out and its goodbye) shared one
-- time, and a read ordered by (created_at, id) put them in the order of their random ids.
-- clock_timestamp() moves between the statements of one transaction; readers also put a message
-- in before an answer of the same instant (rows written before this migration). Never edit after
-- merge.

ALTER TABLE messages ALTER COLUMN created_at SET DEFAULT clock_timestamp();
