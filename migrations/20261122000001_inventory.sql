-- Inventory, sales and bookkeeping: the system of record for Marquee.
--
-- Conventions: singular table names, `<table>_id` keys (uuid), `created_at`/`updated_at` on
-- every table with a trigger for the latter, and every tenant-owned row carries `tenant_id`.
-- References between tenant-owned rows go through composite keys `(tenant_id, <x>_id)`, so a
-- row can never point at another tenant's data.
--
-- The invariants that matter live in constraints, not only in code:
--   * a seat is held or sold by at most one claim (`seat_claim` primary key);
--   * general-admission sales never exceed the quota (`ticket_type` check, updated in place
--     under the row lock, so concurrent buyers cannot race past it);
--   * a client request id takes effect once per user (`processed_request` primary key).

create function set_updated_at() returns trigger
language plpgsql as $$
begin
    new.updated_at = now();
    return new;
end;
$$;

create table tenant (
    tenant_id   uuid primary key default gen_random_uuid(),
    name        text not null constraint tenant_name_not_blank check (btrim(name) <> ''),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

create table venue (
    venue_id    uuid primary key default gen_random_uuid(),
    tenant_id   uuid not null references tenant (tenant_id),
    name        text not null constraint venue_name_not_blank check (btrim(name) <> ''),
    city        text not null,
    address     text not null default '',
    timezone    text not null default 'UTC',
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    constraint venue_tenant_key unique (tenant_id, venue_id)
);

create type event_status as enum ('draft', 'published', 'on_sale', 'sold_out', 'cancelled');

create table event (
    event_id     uuid primary key default gen_random_uuid(),
    tenant_id    uuid not null,
    venue_id     uuid not null,
    name         text not null constraint event_name_not_blank check (btrim(name) <> ''),
    description  text not null default '',
    category     text not null default '',
    starts_at    timestamptz not null,
    ends_at      timestamptz,
    status       event_status not null default 'draft',
    -- Bumped by every committed booking batch that changes availability. It versions the live
    -- seat map (snapshots and deltas carry it) and fences inventory owners: a batch commits only
    -- if the version is still the one its owner last saw, so a stale owner cannot write.
    inventory_version bigint not null default 0,
    -- Full-text search over the public listing.
    search       tsvector generated always as (
        to_tsvector('simple', name || ' ' || description || ' ' || category)
    ) stored,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint event_tenant_key unique (tenant_id, event_id),
    constraint event_venue_same_tenant foreign key (tenant_id, venue_id)
        references venue (tenant_id, venue_id),
    constraint event_ends_after_start check (ends_at is null or ends_at > starts_at)
);
create index event_tenant_starts_idx on event (tenant_id, starts_at);
create index event_public_starts_idx on event (starts_at) where status in ('published', 'on_sale', 'sold_out');
create index event_search_idx on event using gin (search);

-- One seat map per event; the focal point (e.g. the stage centre) drives best-available.
create table seat_map (
    seat_map_id  uuid primary key default gen_random_uuid(),
    tenant_id    uuid not null,
    event_id     uuid not null,
    focal_x      double precision not null default 0,
    focal_y      double precision not null default 0,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint seat_map_one_per_event unique (event_id),
    constraint seat_map_tenant_key unique (tenant_id, seat_map_id),
    constraint seat_map_event_same_tenant foreign key (tenant_id, event_id)
        references event (tenant_id, event_id) on delete cascade
);

create table price_category (
    price_category_id uuid primary key default gen_random_uuid(),
    tenant_id    uuid not null,
    event_id     uuid not null,
    name         text not null,
    price_minor  bigint not null constraint price_category_price_not_negative check (price_minor >= 0),
    currency     char(3) not null constraint price_category_currency_iso check (currency ~ '^[A-Z]{3}$'),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint price_category_tenant_key unique (tenant_id, price_category_id),
    constraint price_category_name_per_event unique (event_id, name),
    constraint price_category_event_same_tenant foreign key (tenant_id, event_id)
        references event (tenant_id, event_id) on delete cascade
);

create table section (
    section_id   uuid primary key default gen_random_uuid(),
    tenant_id    uuid not null,
    seat_map_id  uuid not null,
    name         text not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint section_tenant_key unique (tenant_id, section_id),
    constraint section_name_per_map unique (seat_map_id, name),
    constraint section_map_same_tenant foreign key (tenant_id, seat_map_id)
        references seat_map (tenant_id, seat_map_id) on delete cascade
);

create table seat (
    seat_id           uuid primary key default gen_random_uuid(),
    tenant_id         uuid not null,
    event_id          uuid not null,
    section_id        uuid not null,
    row_label         text not null,
    seat_number       integer not null constraint seat_number_positive check (seat_number > 0),
    -- The seat's place in the event's map, 0..n: live seat-map snapshots and deltas, and
    -- purchase commands, name seats by this index.
    seat_index        integer not null constraint seat_index_not_negative check (seat_index >= 0),
    x                 double precision not null,
    y                 double precision not null,
    price_category_id uuid not null,
    accessible        boolean not null default false,
    companion         boolean not null default false,
    restricted_view   boolean not null default false,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    constraint seat_tenant_key unique (tenant_id, seat_id),
    constraint seat_event_key unique (event_id, seat_id),
    constraint seat_position_unique unique (section_id, row_label, seat_number),
    constraint seat_index_per_event unique (event_id, seat_index),
    constraint seat_event_same_tenant foreign key (tenant_id, event_id)
        references event (tenant_id, event_id) on delete cascade,
    constraint seat_section_same_tenant foreign key (tenant_id, section_id)
        references section (tenant_id, section_id) on delete cascade,
    constraint seat_category_same_tenant foreign key (tenant_id, price_category_id)
        references price_category (tenant_id, price_category_id)
);

create type ticket_kind as enum ('seated', 'general_admission');

create table ticket_type (
    ticket_type_id    uuid primary key default gen_random_uuid(),
    tenant_id         uuid not null,
    event_id          uuid not null,
    name              text not null,
    kind              ticket_kind not null,
    price_category_id uuid,
    price_minor       bigint not null constraint ticket_type_price_not_negative check (price_minor >= 0),
    currency          char(3) not null constraint ticket_type_currency_iso check (currency ~ '^[A-Z]{3}$'),
    min_per_order     integer not null default 1,
    max_per_order     integer not null default 10,
    -- General admission: how many exist, and how many are held or sold right now. Holding and
    -- selling update these counters in place; the check makes overselling impossible even for
    -- concurrent transactions, which serialise on the row.
    ga_quota          integer,
    ga_held           integer not null default 0,
    ga_sold           integer not null default 0,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    constraint ticket_type_tenant_key unique (tenant_id, ticket_type_id),
    constraint ticket_type_event_key unique (event_id, ticket_type_id),
    constraint ticket_type_name_per_event unique (event_id, name),
    constraint ticket_type_event_same_tenant foreign key (tenant_id, event_id)
        references event (tenant_id, event_id) on delete cascade,
    constraint ticket_type_category_same_tenant foreign key (tenant_id, price_category_id)
        references price_category (tenant_id, price_category_id),
    constraint ticket_type_order_limits check (min_per_order >= 1 and max_per_order >= min_per_order),
    constraint ticket_type_ga_has_quota check ((kind = 'general_admission') = (ga_quota is not null)),
    constraint ticket_type_ga_counts_not_negative check (ga_held >= 0 and ga_sold >= 0),
    constraint ticket_type_ga_quota_not_exceeded check (ga_quota is null or ga_held + ga_sold <= ga_quota)
);

create type onsale_status as enum ('scheduled', 'pre_queue', 'live', 'paused', 'sold_out', 'closed');

create table onsale (
    onsale_id           uuid primary key default gen_random_uuid(),
    tenant_id           uuid not null,
    event_id            uuid not null,
    name                text not null default '',
    status              onsale_status not null default 'scheduled',
    starts_at           timestamptz not null,
    ends_at             timestamptz,
    hold_duration       interval not null default interval '10 minutes',
    per_user_limit      integer not null default 8,
    -- Until the waiting room lands, an onsale may let purchase commands through without an
    -- admission token; afterwards every onsale requires one.
    requires_admission  boolean not null default true,
    prequeue_opens_at   timestamptz,
    admission_rate      double precision not null default 10,
    active_cap          integer not null default 500,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    constraint onsale_tenant_key unique (tenant_id, onsale_id),
    constraint onsale_event_key unique (event_id, onsale_id),
    constraint onsale_tenant_event_key unique (tenant_id, event_id, onsale_id),
    constraint onsale_event_same_tenant foreign key (tenant_id, event_id)
        references event (tenant_id, event_id) on delete cascade,
    constraint onsale_ends_after_start check (ends_at is null or ends_at > starts_at),
    constraint onsale_prequeue_before_start check (prequeue_opens_at is null or prequeue_opens_at <= starts_at),
    constraint onsale_hold_duration_positive check (hold_duration > interval '0'),
    constraint onsale_per_user_limit_positive check (per_user_limit > 0),
    constraint onsale_admission_settings check (admission_rate > 0 and active_cap > 0)
);

create type hold_status as enum ('active', 'released', 'expired', 'converted');

-- A hold is a lease on inventory with an expiry. Its seats are its `seat_claim` rows (one
-- source of truth for who has a seat); its general-admission tickets are its `hold_item` rows.
-- Only the indexes the code queries exist: a hold is written on the hottest path there is, and
-- every index (and every index on `status`, which would stop in-place updates) costs there.
-- Ids are time-ordered (UUIDv7, chosen by the worker), so inserts append to the indexes.
create table hold (
    hold_id      uuid primary key,
    tenant_id    uuid not null,
    event_id     uuid not null,
    onsale_id    uuid not null,
    user_id      text not null,
    status       hold_status not null default 'active',
    expires_at   timestamptz not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    -- Also the index for "the active holds of an event" (the owner's load).
    constraint hold_event_key unique (event_id, hold_id),
    -- One key checks event, onsale and tenant together (the onsale's own keys tie it to its
    -- event and tenant): one lookup per hold instead of two.
    constraint hold_onsale_same_event_and_tenant foreign key (tenant_id, event_id, onsale_id)
        references onsale (tenant_id, event_id, onsale_id)
) with (fillfactor = 50);
-- fillfactor 50: room in every page for each row's next version, so ending a hold (the
-- sweeper expires thousands at once) is an in-place (HOT) update that touches no index.

-- General-admission lines of a hold.
create table hold_item (
    hold_item_id    uuid primary key default gen_random_uuid(),
    tenant_id       uuid not null,
    event_id        uuid not null,
    hold_id         uuid not null,
    ticket_type_id  uuid not null,
    quantity        integer not null constraint hold_item_quantity_positive check (quantity > 0),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint hold_item_hold_same_event foreign key (event_id, hold_id)
        references hold (event_id, hold_id) on delete cascade,
    constraint hold_item_type_same_event foreign key (event_id, ticket_type_id)
        references ticket_type (event_id, ticket_type_id)
);
create index hold_item_hold_idx on hold_item (event_id, hold_id);

create type order_status as enum ('pending_payment', 'paid', 'expired', 'cancelled', 'refunded');

-- `order` is a reserved word; an order of tickets is a `ticket_order`.
create table ticket_order (
    ticket_order_id uuid primary key default gen_random_uuid(),
    tenant_id       uuid not null,
    event_id        uuid not null,
    user_id         text not null,
    hold_id         uuid,
    status          order_status not null default 'pending_payment',
    total_minor     bigint not null constraint ticket_order_total_not_negative check (total_minor >= 0),
    currency        char(3) not null constraint ticket_order_currency_iso check (currency ~ '^[A-Z]{3}$'),
    payment_due_at  timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint ticket_order_tenant_key unique (tenant_id, ticket_order_id),
    constraint ticket_order_event_key unique (event_id, ticket_order_id),
    constraint ticket_order_event_same_tenant foreign key (tenant_id, event_id)
        references event (tenant_id, event_id),
    constraint ticket_order_hold_same_event foreign key (event_id, hold_id)
        references hold (event_id, hold_id),
    constraint ticket_order_one_per_hold unique (hold_id)
);
create index ticket_order_user_idx on ticket_order (tenant_id, user_id);

create table ticket_order_item (
    ticket_order_item_id uuid primary key default gen_random_uuid(),
    tenant_id       uuid not null,
    event_id        uuid not null,
    ticket_order_id uuid not null,
    ticket_type_id  uuid not null,
    seat_id         uuid,
    quantity        integer not null constraint ticket_order_item_quantity_positive check (quantity > 0),
    unit_minor      bigint not null constraint ticket_order_item_price_not_negative check (unit_minor >= 0),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint ticket_order_item_order_same_event foreign key (event_id, ticket_order_id)
        references ticket_order (event_id, ticket_order_id) on delete cascade,
    constraint ticket_order_item_seat_same_event foreign key (event_id, seat_id)
        references seat (event_id, seat_id),
    constraint ticket_order_item_type_same_event foreign key (event_id, ticket_type_id)
        references ticket_type (event_id, ticket_type_id),
    constraint ticket_order_item_seat_is_single check (seat_id is null or quantity = 1)
);
create index ticket_order_item_order_idx on ticket_order_item (ticket_order_id);

-- The last line of defence against a double sale: a seat that is held or sold has exactly one
-- claim row, owned either by a hold or by an order. Holding inserts it, converting a hold into
-- an order moves it, releasing or expiring deletes it. Two owners (or two buggy workers) can
-- never both claim a seat: the second insert fails on the primary key.
create type seat_claim_state as enum ('held', 'sold');

create table seat_claim (
    event_id        uuid not null,
    seat_id         uuid not null,
    tenant_id       uuid not null,
    state           seat_claim_state not null,
    hold_id         uuid,
    ticket_order_id uuid,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint seat_claim_pkey primary key (event_id, seat_id),
    constraint seat_claim_seat_same_event foreign key (event_id, seat_id)
        references seat (event_id, seat_id),
    constraint seat_claim_hold_same_event foreign key (event_id, hold_id)
        references hold (event_id, hold_id) on delete cascade,
    constraint seat_claim_order_same_event foreign key (event_id, ticket_order_id)
        references ticket_order (event_id, ticket_order_id),
    constraint seat_claim_one_owner check (
        (state = 'held' and hold_id is not null and ticket_order_id is null)
        or (state = 'sold' and ticket_order_id is not null)
    )
);
create index seat_claim_hold_idx on seat_claim (event_id, hold_id) where hold_id is not null;
create index seat_claim_order_idx on seat_claim (ticket_order_id) where ticket_order_id is not null;

-- Idempotency and durable results: a request id takes effect once per user; its result stays
-- here, pending until the client acknowledges it.
create table processed_request (
    tenant_id        uuid not null references tenant (tenant_id),
    user_id          text not null,
    request_id       text not null constraint processed_request_id_length check (length(request_id) between 1 and 128),
    event_id         uuid,
    -- The command-queue entry that produced the result: a redelivery of that same entry (its
    -- worker died before acknowledging it) is dropped silently, while a client's retry (a new
    -- entry with the same request id) gets the stored result again.
    command_id       text not null,
    result           jsonb not null,
    acknowledged_at  timestamptz,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    constraint processed_request_pkey primary key (tenant_id, user_id, request_id)
);
create index processed_request_pending_idx on processed_request (tenant_id, user_id, created_at)
    where acknowledged_at is null;

-- Messages to publish on hub channels, written in the same transaction as the change they
-- describe and published, in `outbox_id` order, by the outbox relay, which deletes each row
-- once it is published (so a row here is a message not yet out). One row carries everything
-- one transaction produced (`messages` is an array of `{"channel", "data"}`), so a batch of a
-- thousand commands costs one row, not a thousand.
create table outbox (
    outbox_id     bigint generated always as identity primary key,
    tenant_id     uuid not null references tenant (tenant_id),
    -- The event whose inventory changed, if any: the seat-map snapshot waits until every row of
    -- its event is published.
    event_id      uuid,
    messages      jsonb not null constraint outbox_messages_is_array check (jsonb_typeof(messages) = 'array'),
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create index outbox_event_idx on outbox (event_id);

-- Every state change, for operators and auditors.
create table audit_log (
    audit_log_id  bigint generated always as identity primary key,
    tenant_id     uuid not null references tenant (tenant_id),
    actor         text not null,
    entity        text not null,
    entity_id     text not null,
    action        text not null,
    detail        jsonb not null default '{}',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create index audit_log_entity_idx on audit_log (tenant_id, entity, entity_id, created_at);

do $$
declare
    t text;
begin
    foreach t in array array[
        'tenant', 'venue', 'event', 'seat_map', 'price_category', 'section', 'seat',
        'ticket_type', 'onsale', 'hold', 'hold_item', 'ticket_order', 'ticket_order_item',
        'seat_claim', 'processed_request', 'outbox', 'audit_log'
    ] loop
        execute format(
            'create trigger %I before update on %I for each row execute function set_updated_at()',
            t || '_set_updated_at', t
        );
    end loop;
end;
$$;
