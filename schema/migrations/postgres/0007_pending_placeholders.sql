-- A pending member invited at an address that already had a user row (an
-- account, or someone invited elsewhere) is held under a placeholder user
-- of its own, so that the inviter never learns the account's id nor that
-- it exists (R48 with consent, R58). A placeholder has no login: its
-- `email` is `placeholder:<user_id>`, never an address, and the address it
-- was invited at is here. Accepting moves the membership to the account
-- that holds the address then, and deletes the placeholder.

-- the invited address of a placeholder; null for every real user
alter table app_user add column invited_email text;
create index app_user_by_invited_email on app_user (invited_email);
