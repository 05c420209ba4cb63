-- Bulk invitations too large to write within a request run as jobs (R69):
-- the file is validated in the request, its valid rows stored here, and a
-- worker writes them in order. Each row is written in one transaction with
-- its result and the job's cursor (`processed`), so a crash leaves every
-- row either written and recorded or untouched; another worker (or the same
-- sidecar after a restart) resumes at the next row once the lease ends.

create table bulk_job (
    job_id text primary key,
    org_id text not null references organization (org_id),
    -- the submitting user, as whom every row is authorized at write time
    actor_id text not null references app_user (user_id),
    -- their session had passed two-step verification (0/1)
    actor_mfa integer not null,
    -- the submitting request's id, carried into each row's audit record
    request_id text,
    -- the import's options as JSON, e.g. {"send": true}
    options text not null,
    -- queued, running, done or failed
    state text not null,
    total integer not null,
    -- the cursor: rows 1..processed (by seq) have their result
    processed integer not null default 0,
    succeeded integer not null default 0,
    failed integer not null default 0,
    -- why a failed job stopped (state failed)
    failure_reason text,
    -- consecutive attempts at the next row that failed for an internal
    -- reason (the database); the job fails after a few
    attempts integer not null default 0,
    -- the worker holding the job (a random id per claim) and the end of
    -- its lease, after which another worker may take the job over; a null
    -- claimant with a lease end is a retry time
    claimed_by text,
    claimed_until integer,
    created_at integer not null,
    finished_at integer
);
create index bulk_job_due on bulk_job (state, created_at);
create index bulk_job_by_org on bulk_job (org_id, created_at);

create table bulk_job_row (
    job_id text not null references bulk_job (job_id) on delete cascade,
    -- position in the job, 1..total: the order rows are written in
    seq integer not null,
    -- the data row of the file (1-based; the header is row 0)
    row_number integer not null,
    -- the row's e-mail, normalized
    email text not null,
    -- the row's cells as JSON ({"first_name": "Ann", ...}), read again
    -- and validated at write time
    cells text not null,
    -- null until written; then invited, saved, added, resent or failed
    outcome text,
    -- why a failed row was refused: the API's error code and message
    error_code text,
    error_message text,
    processed_at integer,
    primary key (job_id, seq)
);
create unique index bulk_job_row_by_row on bulk_job_row (job_id, row_number);
