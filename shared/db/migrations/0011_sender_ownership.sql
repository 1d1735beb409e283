-- One phone number or email address is a sender of one account at most: the account that verified
-- it (a Twilio number of the platform's account, or an email whose owner clicked the link).
-- Before this, POST /senders verified anything at once; where two accounts both had one address
-- verified, the earlier keeps it and the later one's claim goes back to pending.
UPDATE sender_identities s SET verified_at = NULL
WHERE s.verified_at IS NOT NULL
  AND EXISTS (
      SELECT 1 FROM sender_identities o
      WHERE o.kind = s.kind AND o.address = s.address AND o.verified_at IS NOT NULL
        AND (o.verified_at, o.account_id) < (s.verified_at, s.account_id)
  );
CREATE UNIQUE INDEX sender_identities_owner ON sender_identities (kind, address) WHERE verified_at IS NOT NULL;
