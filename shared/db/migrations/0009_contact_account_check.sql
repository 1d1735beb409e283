-- 0009: the account check of new contacts (0006) reads the statement's rows once instead of twice.
-- Never edit after merge: add 0010_… instead.
CREATE OR REPLACE FUNCTION contacts_check_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted text[];
    locked integer;
    missing text;
BEGIN
    SELECT array_agg(n.account_id) INTO wanted FROM (SELECT DISTINCT account_id FROM new_contacts) n;
    PERFORM 1 FROM accounts a WHERE a.id = ANY (wanted) FOR KEY SHARE;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < cardinality(wanted) THEN
        SELECT w INTO missing FROM unnest(wanted) w WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = w) LIMIT 1;
        RAISE EXCEPTION 'insert on table "contacts" violates the account check: account % does not exist', missing
            USING ERRCODE = 'foreign_key_violation', TABLE = 'contacts', COLUMN = 'account_id';
    END IF;
    RETURN NULL;
END
$$;
