-- 0027: time zones stored under a name that is no IANA zone. The check let in every file the
-- host's tz database loads: its own setting (`localtime`), `Factory`, `posixrules`, the trees
-- `posix/…` and `right/…`; these are now a 422 (shared/domain/zones.py), and planning stops at a
-- campaign's or an account's stored name that is no zone. Each is renamed to the zone it read:
-- `posix/X` and `right/X` to X (right/ counts leap seconds, 27 s off every clock), `posixrules` to
-- America/New_York (the tz database's default for it), `localtime` (the image's: Etc/UTC) and
-- `Factory` (offset 0) to UTC. Never edit after merge.

CREATE FUNCTION pg_temp.zone_renamed(name text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE regexp_replace(name, '^(posix|right)/', '')
        WHEN 'posixrules' THEN 'America/New_York'
        WHEN 'localtime' THEN 'UTC'
        WHEN 'Factory' THEN 'UTC'
        ELSE regexp_replace(name, '^(posix|right)/', '')
    END
$$;

UPDATE accounts SET default_timezone = pg_temp.zone_renamed(default_timezone)
    WHERE default_timezone <> pg_temp.zone_renamed(default_timezone);
UPDATE campaigns SET timezone = pg_temp.zone_renamed(timezone)
    WHERE timezone <> pg_temp.zone_renamed(timezone);
UPDATE contacts SET timezone = pg_temp.zone_renamed(timezone)
    WHERE timezone <> pg_temp.zone_renamed(timezone);

DROP FUNCTION pg_temp.zone_renamed(text);
