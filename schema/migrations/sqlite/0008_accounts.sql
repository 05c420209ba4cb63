-- Who is signed in: console sessions, failed sign-in attempts (throttling
-- shared by every sidecar on the database), password reset links and
-- two-step verification (TOTP secrets and recovery codes). Secrets that
-- are only ever presented (session ids, reset links, recovery codes) are
-- stored as SHA-256 hashes.

create table account_session (
    -- sha256 of the cookie's 256-bit id (hex); the id itself is never stored
    session_hash text primary key,
    user_id text not null references app_user (user_id) on delete cascade,
    -- what the password let the person do: TOTP (a code is asked next),
    -- ENROLL (two-step verification must be set up first) or COMPLETE
    stage text not null,
    -- the session passed two-step verification (0/1): `context.mfa`
    mfa integer not null,
    -- the per-session token every console form carries
    csrf text not null,
    created_at integer not null,
    last_seen_at integer not null
);
create index account_session_by_user on account_session (user_id);

-- One row per failed attempt, by scope: `account:<email>` or
-- `address:<ip>`. Rows older than the window are deleted as new ones come.
create table login_failure (
    scope text not null,
    at integer not null
);
create index login_failure_by_scope on login_failure (scope, at);

create table password_reset (
    reset_id text primary key,
    user_id text not null references app_user (user_id) on delete cascade,
    -- sha256 of the link's secret (hex), minted when the message is sent
    token_hash text not null unique,
    created_at integer not null,
    expires_at integer not null,
    used_at integer
);
create index password_reset_by_user on password_reset (user_id, created_at);

-- The reset whose link a message carries (minted when it is sent, as for
-- invitations).
alter table outbox add column password_reset_id text;

create table totp_secret (
    user_id text primary key references app_user (user_id) on delete cascade,
    -- base32 RFC 6238 secret (the codes are computed from it, so it cannot
    -- be hashed)
    secret text not null,
    -- confirmed with a code (0/1); unconfirmed secrets are enrollments in
    -- progress and ask nothing at sign-in
    confirmed integer not null default 0,
    -- the time step of the last accepted code: older or equal ones are replays
    last_step integer not null default 0,
    created_at integer not null
);

create table recovery_code (
    user_id text not null references app_user (user_id) on delete cascade,
    -- sha256 of the code (hex)
    code_hash text not null,
    used_at integer,
    primary key (user_id, code_hash)
);
