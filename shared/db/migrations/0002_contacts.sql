-- 0002: list contacts and groups newest first without sorting the whole account.
-- (account_id, created_at) rather than (…, id): a batch shares one created_at, so the index
-- deduplicates and an import appends to it; pages break ties by id with an incremental sort.
-- Never edit after merge: add 0003_… instead.

CREATE INDEX contacts_account_created ON contacts (account_id, created_at);
CREATE INDEX contact_groups_account_created ON contact_groups (account_id, created_at);
