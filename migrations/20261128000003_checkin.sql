-- Every scan a gate sent, once: the gate's scan id is the idempotency key, so a retried or
-- re-uploaded scan gets its first answer back and changes nothing. The ticket's own
-- `checked_in_at` is what admits a ticket once; this table is the gates' record.
create table checkin_scan (
    tenant_id    uuid not null references tenant (tenant_id),
    scan_id      text not null constraint checkin_scan_id_length check (length(scan_id) between 1 and 128),
    ticket_id    uuid,
    event_id     uuid,
    gate         text not null,
    scanned_at   timestamptz not null,
    -- The answer given (a ScanResult), returned again for the same scan id.
    result       json not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint checkin_scan_pkey primary key (tenant_id, scan_id)
);
create index checkin_scan_ticket_idx on checkin_scan (ticket_id) where ticket_id is not null;

create trigger checkin_scan_set_updated_at before update on checkin_scan for each row
    when (old.updated_at is not distinct from new.updated_at)
    execute function set_updated_at();
