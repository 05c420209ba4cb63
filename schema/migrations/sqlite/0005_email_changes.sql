-- Changes of a person's e-mail address (their login, R71-R74), pending
-- until the new address confirms them through a one-time link. The link's
-- secret is minted when its message is sent (like an invitation's), so
-- the outbox never holds a working link.
create table email_change (
    change_id text primary key,
    -- the person whose login changes
    user_id text not null,
    -- the organization the change was requested in (authorized and
    -- audited there); the change dies with that membership
    org_id text not null,
    -- the login when the change was requested, and the one to confirm
    -- (both normalized: trimmed and lower-cased)
    old_email text not null,
    new_email text not null,
    -- sha256 of the link's secret (hex); the secret itself is never stored
    token_hash text not null unique,
    -- PENDING, CONFIRMED or SUPERSEDED (EXPIRED is derived from expires_at)
    state text not null,
    -- the administrator who asked, asked again as the principal when the
    -- link is confirmed, with whether their session had passed MFA (0/1)
    requested_by text not null,
    requested_mfa integer not null,
    created_at integer not null,
    expires_at integer not null,
    decided_at integer,
    foreign key (org_id, user_id) references membership (org_id, user_id) on delete cascade
);
-- at most one pending change per person: a newer request supersedes it
create unique index email_change_one_pending on email_change (user_id) where state = 'PENDING';

-- The e-mail change whose confirmation link a message carries, minted when
-- it is sent (as `invitation_id` is for invitation links).
alter table outbox add column email_change_id text;
