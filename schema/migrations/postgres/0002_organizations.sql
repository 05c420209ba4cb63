-- Organizations, people and their memberships: the invitation service's
-- own rows. Every change here is projected, in the same transaction, into
-- the `entity` table (User, Organization, Membership, Department) that the
-- decision engine reads.

create table organization (
    -- the organization's id, also its Cedar `tenant` (e.g. "acme")
    org_id text primary key,
    name text not null,
    -- "require two-step verification" (0/1)
    require_mfa bigint not null default 0,
    created_at bigint not null
);

create table app_user (
    user_id text primary key,
    -- normalized: trimmed and lower-cased; one person, one login
    email text not null unique,
    first_name text not null,
    last_name text not null,
    -- argon2id PHC string; null until the person accepts an invitation
    password_hash text,
    -- platform (system) administrator (0/1)
    system_admin bigint not null default 0,
    created_at bigint not null
);

create table department (
    org_id text not null references organization (org_id),
    department_id text not null,
    name text not null,
    primary key (org_id, department_id)
);

create table membership (
    org_id text not null references organization (org_id),
    user_id text not null references app_user (user_id),
    -- PENDING (invited, not accepted), ACTIVE or INACTIVE
    status text not null,
    -- the role preset the levels were derived from
    role text not null,
    -- {"organization": "Manage", ..., "uploadGenerations": "Yes"}
    permissions text not null,
    -- {"active": ["a1"], "retirement": []}: a present type is restricted
    restrictions text not null,
    department_id text,
    -- third-party agent (0/1), approved by a system administrator (0/1)
    agent bigint not null default 0,
    agent_approved bigint not null default 0,
    -- reference of the signed Notice of Agent Designation
    agent_designation text,
    invited_by text references app_user (user_id),
    created_at bigint not null,
    updated_at bigint not null,
    primary key (org_id, user_id)
);

create table invitation (
    invitation_id text primary key,
    org_id text not null,
    user_id text not null,
    -- the address the link was sent to; acceptance is bound to it
    email text not null,
    -- sha256 of the link's secret (hex); the secret itself is never stored
    token_hash text not null unique,
    -- PENDING, ACCEPTED, DECLINED or REVOKED (EXPIRED is derived from expires_at)
    state text not null,
    invited_by text not null,
    created_at bigint not null,
    expires_at bigint not null,
    decided_at bigint,
    foreign key (org_id, user_id) references membership (org_id, user_id) on delete cascade
);
-- at most one live invitation per membership
create unique index invitation_one_pending on invitation (org_id, user_id) where state = 'PENDING';
create index invitation_by_org_time on invitation (org_id, created_at);
create index invitation_by_inviter on invitation (invited_by, state);

-- E-mail waiting to be delivered, written in the same transaction as the
-- change that caused it.
create table outbox (
    message_id text primary key,
    -- the invitation the message carries, if any (to flag failed deliveries)
    invitation_id text,
    recipient text not null,
    subject text not null,
    body text not null,
    created_at bigint not null,
    attempts bigint not null default 0,
    next_attempt_at bigint not null,
    sent_at bigint,
    -- the last delivery error; with sent_at null and attempts at the
    -- maximum, the message has failed
    last_error text
);
create index outbox_due on outbox (sent_at, next_attempt_at);

-- Append-only record of every administrative action and decision that
-- changed something. Never updated nor deleted (see the triggers).
create table audit_event (
    event_id bigserial primary key,
    at bigint not null,
    -- user id of the actor, or "system" / "cli"
    actor text not null,
    org_id text,
    -- what was acted on, e.g. "Membership::\"acme/u1\""
    target text,
    action text not null,
    -- "ok" or "denied: <reason>"
    outcome text not null,
    before_state text,
    after_state text,
    request_id text
);
create index audit_by_org_time on audit_event (org_id, at);
create function audit_event_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_event is append-only';
end;
$$;
create trigger audit_event_no_change before update or delete on audit_event
    for each row execute function audit_event_append_only();
