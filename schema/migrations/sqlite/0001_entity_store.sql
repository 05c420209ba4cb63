-- The entity store the decision engine reads. Host-owned entities arrive
-- through the entity API; users, organizations and memberships are
-- projected here by the invitation service in the same transaction as its
-- own rows, so the engine reads one table whatever the model.
create table entity (
    entity_type text not null,
    entity_id text not null,
    -- normalized Cedar entity JSON: {"uid", "attrs", "parents", "tags"}
    body text not null,
    updated_at integer not null,
    primary key (entity_type, entity_id)
);

-- One row: bumped by every entity write, so that sidecars sharing the
-- database notice changes by reading one number.
create table store_revision (
    id integer primary key check (id = 1),
    revision integer not null
);
insert into store_revision (id, revision) values (1, 0);

-- Which entity each revision changed (upserts and deletes alike), read by
-- other sidecars to drop exactly those entities from their caches.
create table entity_change (
    revision integer not null,
    entity_type text not null,
    entity_id text not null
);
create index entity_change_revision on entity_change (revision);
