-- Orders move on with their payments: a failed payment ends an order as `failed`; `paid_at`
-- and the provider's payment reference are kept; a late payment that found its seats taken is
-- refunded, and says so.
alter type order_status add value if not exists 'failed';

alter table ticket_order
    add column payment_provider text,
    add column payment_ref   text,
    add column paid_at       timestamptz,
    add column ended_reason  text;
-- The owner of an event loads its orders awaiting payment (they expire like holds).
create index ticket_order_pending_idx on ticket_order (event_id, payment_due_at)
    where status = 'pending_payment';

-- A ticket: one per seat, or per general-admission unit, of a paid order. `version` grows when
-- the ticket changes hands, which makes every QR code signed for an older version invalid.
create type ticket_status as enum ('valid', 'void');

create table ticket (
    ticket_id        uuid primary key,
    tenant_id        uuid not null,
    event_id         uuid not null,
    ticket_order_id  uuid not null,
    ticket_type_id   uuid not null,
    seat_id          uuid,
    -- The user holding the ticket now (the buyer, until a transfer).
    holder           text not null,
    version          integer not null default 1 constraint ticket_version_positive check (version >= 1),
    status           ticket_status not null default 'valid',
    checked_in_at    timestamptz,
    checked_in_gate  text,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    constraint ticket_order_same_event foreign key (event_id, ticket_order_id)
        references ticket_order (event_id, ticket_order_id),
    constraint ticket_seat_same_event foreign key (event_id, seat_id)
        references seat (event_id, seat_id),
    constraint ticket_type_same_event foreign key (event_id, ticket_type_id)
        references ticket_type (event_id, ticket_type_id),
    constraint ticket_event_same_tenant foreign key (tenant_id, event_id)
        references event (tenant_id, event_id)
);
-- No seat has two valid tickets, whatever the application does.
create unique index ticket_one_valid_per_seat on ticket (event_id, seat_id)
    where status = 'valid' and seat_id is not null;
create index ticket_holder_idx on ticket (tenant_id, holder);
create index ticket_order_idx on ticket (ticket_order_id);

create trigger ticket_set_updated_at before update on ticket for each row
    when (old.updated_at is not distinct from new.updated_at)
    execute function set_updated_at();

-- The Ed25519 key that signs tickets' QR codes, when the deployment does not configure one
-- (MARQUEE_TICKET_KEY): made once, shared by every node and worker through the database.
create table ticket_signing_key (
    key_id      text primary key,
    seed        bytea not null constraint ticket_signing_key_seed_is_32_bytes check (length(seed) = 32),
    created_at  timestamptz not null default now()
);
