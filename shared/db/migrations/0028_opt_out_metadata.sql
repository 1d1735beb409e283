-- 0028: metadata keys that name an opt-out. An inline or posted contact's `opted_out` (and
-- `opted_out_sms|email|voice`) were kept as metadata variables, changing no opt-out; they are now a
-- 422 (opt-outs change by PATCH /contacts/{id}), and a contact still carrying one could not be
-- saved unchanged from the dashboard. They are removed; the contacts' real opt-outs are untouched.
-- Never edit after merge.

UPDATE contacts
SET metadata = metadata - 'opted_out' - 'opted_out_sms' - 'opted_out_email' - 'opted_out_voice'
WHERE metadata ?| ARRAY['opted_out', 'opted_out_sms', 'opted_out_email', 'opted_out_voice'];
