-- 0017: who answered a call, as Twilio's answering machine detection (AMD) said (`AnsweredBy`:
-- human, machine_start, machine_end_beep, machine_end_silence, machine_end_other, fax, unknown);
-- NULL when the campaign did not ask for detection or the call was never answered. Written once,
-- by the tracker's answer webhook (not on the send path); a nullable column without a default is
-- added without rewriting the table.
-- Never edit after merge: add a later file instead.
ALTER TABLE deliveries ADD COLUMN answered_by text;
