-- 0022: the dispatchers' own wake-up channel. Migration 0010's `flow` NOTIFY names a campaign whose
-- queue or in-flight count went down: the releaser's cue (room in a dispatch queue). The
-- dispatchers listened to it too, so every hand-over (a queued delivery claimed in a sent one's
-- place: the queue one shorter, in flight unchanged) woke every replica's lane of a campaign at its
-- limit for a claim that found no room: one empty statement, holding the campaign's flow row, per
-- recorded batch. `room` names a campaign whose in-flight count went down, the one thing a
-- dispatcher waits for: sent by its `campaign_flow` row as the count changes (the counting
-- triggers move it once per statement, by the statement's net change). Never edit after merge.

CREATE FUNCTION campaign_flow_room() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('room', NEW.campaign_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER campaign_flow_room AFTER UPDATE OF in_flight ON campaign_flow
    FOR EACH ROW WHEN (NEW.in_flight < OLD.in_flight) EXECUTE FUNCTION campaign_flow_room();
