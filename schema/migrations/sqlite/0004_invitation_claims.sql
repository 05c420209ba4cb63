-- An accept claims its link before it hashes the new password, so that
-- simultaneous accepts of one link are answered at once and only the
-- claimant pays for argon2. The claim is a lease: an accept that dies
-- between claiming and finishing blocks the link only until
-- `claimed_until`; a refused password gives the claim back at once.

-- the claimant (a random id); null when nobody holds the link
alter table invitation add column claim_id text;
-- unix seconds after which the claim no longer holds
alter table invitation add column claimed_until integer;
