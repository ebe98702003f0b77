-- Side effects a booking batch makes owed beyond Postgres: start the payment of an order just
-- checked out, refund a payment, hand an admission slot back. Each is written in the batch's
-- own transaction (so none is owed that was not decided, and none decided is lost), then
-- carried out by the effect relay of a booking worker, retried with backoff and marked done.
-- The idempotency key is what the provider is given with the call (one payment per order, one
-- refund per payment): a relay that dies between the call and marking it done calls again with
-- the same key, and the provider answers the first call's result rather than acting twice.
create table effect (
    effect_id        bigint generated always as identity primary key,
    tenant_id        uuid not null references tenant (tenant_id),
    event_id         uuid not null references event (event_id),
    kind             text not null constraint effect_kind_known check (
                         kind in ('payment.start', 'payment.refund', 'slot.finish')),
    -- The payment provider the call goes to (payment kinds only): only a relay with that
    -- provider configured claims it.
    provider         text,
    idempotency_key  text not null constraint effect_idempotency_key_unique unique,
    data             json not null,
    attempts         integer not null default 0,
    -- When a relay may try (again); a relay claims a row by moving this forward.
    next_attempt_at  timestamptz not null default now(),
    done_at          timestamptz,
    -- What the call answered (a payment's reference), or why nothing needed doing.
    result           text,
    -- Set when the relay gave up (after too many attempts): an operator finishes it by hand.
    failed_at        timestamptz,
    last_error       text,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    constraint effect_payment_has_provider check ((kind = 'slot.finish') = (provider is null))
);
create index effect_due_idx on effect (next_attempt_at)
    where done_at is null and failed_at is null;
create index effect_event_idx on effect (event_id);

create trigger effect_set_updated_at before update on effect for each row
    when (old.updated_at is not distinct from new.updated_at)
    execute function set_updated_at();

-- Workers look for events with active holds every few seconds (so events the command queue
-- forgot, after Redis lost its data, are owned again).
create index hold_active_idx on hold (event_id) where status = 'active';
