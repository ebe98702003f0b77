-- Payment providers' hook calls. Each provider event is recorded once: the provider's event id
-- is the deduplication key, so a provider that sends an event twice (they all retry) changes
-- nothing the second time. The row is written before the hook answers 200, so an acknowledged
-- event is never lost; `applied_at` says whether the order's owner has acted on it yet.
-- `cancelled` comes from operators (provider `operator`), never from a provider's hook.
create type payment_event_kind as enum ('succeeded', 'failed', 'processing', 'refunded', 'cancelled');

create table payment_event (
    provider           text not null constraint payment_event_provider_length check (length(provider) between 1 and 64),
    provider_event_id  text not null constraint payment_event_id_length check (length(provider_event_id) between 1 and 255),
    tenant_id          uuid not null,
    -- The order's event, whose owner applies the event to the order.
    event_id           uuid not null,
    ticket_order_id    uuid not null,
    kind               payment_event_kind not null,
    -- The provider's reference for the payment (one order may see several attempts).
    payment_ref        text not null constraint payment_event_ref_length check (length(payment_ref) between 1 and 255),
    amount_minor       bigint constraint payment_event_amount_not_negative check (amount_minor >= 0),
    currency           char(3) constraint payment_event_currency_iso check (currency ~ '^[A-Z]{3}$'),
    -- The signed timestamp of the call that delivered it.
    signed_at          timestamptz not null,
    -- The body as received, for audits and disputes.
    body               json not null,
    applied_at         timestamptz,
    -- What applying it did to the order (for operators), once applied.
    outcome            text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    constraint payment_event_pkey primary key (provider, provider_event_id),
    constraint payment_event_order_same_tenant foreign key (tenant_id, ticket_order_id)
        references ticket_order (tenant_id, ticket_order_id),
    constraint payment_event_order_same_event foreign key (event_id, ticket_order_id)
        references ticket_order (event_id, ticket_order_id)
);
-- What an event's owner reads: the events not applied yet, oldest first.
create index payment_event_unapplied_idx on payment_event (event_id, created_at)
    where applied_at is null;

create trigger payment_event_set_updated_at before update on payment_event for each row
    when (old.updated_at is not distinct from new.updated_at)
    execute function set_updated_at();
