-- 0025: what an answer to a contact costs. An SMS the tracker sends back (an agent's reply, the
-- answer to STOP/HELP/START) is charged to the account at its SMS price by segment, and its
-- message records the charge (`cost`); an agent's reply the balance could not cover is kept but
-- not sent, and says why (`error`; then `cost` stays NULL). Never edit after merge.

ALTER TABLE messages ADD COLUMN cost numeric(10, 4);
ALTER TABLE messages ADD COLUMN error text;
