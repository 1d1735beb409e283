-- 0002: list contacts and groups newest first without sorting the whole account.
-- Never edit after merge: add 0003_… instead.

CREATE INDEX contacts_account_created ON contacts (account_id, created_at DESC, id DESC);
CREATE INDEX contact_groups_account_created ON contact_groups (account_id, created_at DESC, id DESC);
