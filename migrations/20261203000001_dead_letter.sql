-- Commands no transaction can take: a queue entry that Postgres refuses even as a rejection
-- (its request id or user holds what no text column takes) is set apart here, byte for byte,
-- and acknowledged, so it never stops the event's other commands. Operators read them here.
create table dead_letter (
    dead_letter_id bigint generated always as identity
        constraint dead_letter_pkey primary key,
    event_id       uuid not null,
    -- The queue's id of the entry (a Redis stream id).
    command_id     text not null,
    -- The entry as the queue held it, serialized: bytes, since it may hold what text cannot.
    envelope       bytea not null,
    -- Why it could not be committed (Postgres's words; never shown to a client).
    reason         text not null,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);

create index dead_letter_event_idx on dead_letter (event_id, created_at);

create trigger dead_letter_set_updated_at before update on dead_letter
    for each row execute function set_updated_at();
