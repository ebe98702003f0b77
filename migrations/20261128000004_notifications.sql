-- Notifications for an outside service (an email sender, a CRM): order paid, refunded or
-- cancelled, ticket transferred. Written in the same transaction as the change they describe
-- (so none is lost and none describes a change that did not happen), then delivered by the
-- notification sender as signed HTTP calls, retried with backoff until the receiver answers
-- 2xx. Receivers deduplicate by `notification_id`: delivery is at least once.
create table notification (
    notification_id  bigint generated always as identity primary key,
    tenant_id        uuid not null references tenant (tenant_id),
    kind             text not null constraint notification_kind_known check (
                         kind in ('order.paid', 'order.refunded', 'order.cancelled', 'ticket.transferred')),
    data             json not null,
    attempts         integer not null default 0,
    -- When the sender may try (again); a sender claims a row by moving this forward.
    next_attempt_at  timestamptz not null default now(),
    delivered_at     timestamptz,
    -- Set when the sender gave up (after too many attempts).
    failed_at        timestamptz,
    last_error       text,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);
create index notification_due_idx on notification (next_attempt_at)
    where delivered_at is null and failed_at is null;

create trigger notification_set_updated_at before update on notification for each row
    when (old.updated_at is not distinct from new.updated_at)
    execute function set_updated_at();
