-- Outbox delivery by several workers (sidecars sharing the database), and
-- invitation links minted when their message is sent.
--
-- A worker claims one message before it sends it: `claimed_by` is the
-- claim (a random id per attempt, so that only that attempt settles the
-- row) and `claimed_until` the end of its lease, after which a crashed
-- worker's message is claimed again.
alter table outbox add column claimed_by text;
alter table outbox add column claimed_until integer;
-- Unsent messages with one key are one message: queuing another replaces
-- it (the newest invitation of one member of one organization).
alter table outbox add column dedupe_key text;
-- Why a message was settled (`sent_at` set) without being sent, e.g. its
-- invitation was accepted, revoked or expired before delivery; null for a
-- delivered message.
alter table outbox add column cancelled_reason text;
create unique index outbox_one_unsent_per_key on outbox (dedupe_key) where sent_at is null;
