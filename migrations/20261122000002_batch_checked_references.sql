-- The booking hot path, made cheaper without giving up what the constraints guarantee.
--
-- Every committed hold writes a `hold` row, a `seat_claim` row per seat and a
-- `processed_request` row, a thousand or more of each per batch. Measured on the two-core
-- reference machine (a batch of 2,000 single-seat holds, PostgreSQL 15):
--
--   * a foreign key is checked row by row: one lookup per row that also locks the referenced
--     row (`for key share`, which writes the lock into that row and the WAL). The four
--     foreign keys on those rows cost 22 µs of the 51 µs a hold took in all;
--   * the index of unacknowledged results cost another 5 µs per result;
--   * the `updated_at` trigger doubled the cost of the sweeper's status update (a plpgsql call
--     per row).
--
-- So, for these four references only, the check moves from each row to each statement: one
-- set-based lookup over the statement's new rows (its transition table), which finds a missing
-- parent just as surely, raises `foreign_key_violation` with the old constraint's name, and
-- takes no row locks. What the row locks protected against, a parent deleted while a child
-- is being inserted, cannot happen here: nothing deletes tenants, onsales, seats or holds
-- while an event sells (a seat goes only with its event), and a guard on each parent table
-- refuses a delete that would leave a child without its parent. Reference columns never change
-- after insert (a sold claim may drop its hold), and a guard refuses an update that changes
-- them.
--
-- The double-sale constraints are untouched: `seat_claim_pkey` still makes a second claim on
-- a seat impossible.

-- Fails the statement if one of its new rows (transition table `new_rows`) has non-null
-- reference columns `TG_ARGV[1]` with no row in `TG_ARGV[0]` holding the same values.
-- `TG_ARGV[2]` names the constraint in the error.
create function check_references_exist() returns trigger
language plpgsql as $$
declare
    missing boolean;
begin
    execute format(
        'select exists (select 1 from new_rows n where num_nulls(%1$s) = 0 and not exists ('
        'select 1 from %2$I p where (%3$s) = (%1$s)))',
        (select string_agg('n.' || quote_ident(btrim(c)), ', ') from unnest(string_to_array(tg_argv[1], ',')) c),
        tg_argv[0],
        (select string_agg('p.' || quote_ident(btrim(c)), ', ') from unnest(string_to_array(tg_argv[1], ',')) c)
    ) into missing;
    if missing then
        raise foreign_key_violation using
            message = format('insert into %I violates %s: no matching %I row', tg_table_name, tg_argv[2], tg_argv[0]),
            constraint = tg_argv[2];
    end if;
    return null;
end;
$$;

-- Fails the statement if one of the rows it deleted (transition table `old_rows`) is still
-- referenced from `TG_ARGV[0]` through columns `TG_ARGV[1]` (same names on both sides).
create function check_unreferenced() returns trigger
language plpgsql as $$
declare
    referenced boolean;
begin
    execute format(
        'select exists (select 1 from old_rows o join %1$I c on (%2$s) = (%3$s))',
        tg_argv[0],
        (select string_agg('c.' || quote_ident(btrim(c)), ', ') from unnest(string_to_array(tg_argv[1], ',')) c),
        (select string_agg('o.' || quote_ident(btrim(c)), ', ') from unnest(string_to_array(tg_argv[1], ',')) c)
    ) into referenced;
    if referenced then
        raise foreign_key_violation using
            message = format('delete from %I leaves %I rows without their parent', tg_table_name, tg_argv[0]),
            constraint = tg_argv[2];
    end if;
    return null;
end;
$$;

create function refuse_reference_change() returns trigger
language plpgsql as $$
begin
    raise foreign_key_violation using
        message = format('the references of a %I row never change', tg_table_name);
end;
$$;

-- hold → onsale (same tenant and event).
alter table hold drop constraint hold_onsale_same_event_and_tenant;
create trigger hold_onsale_same_event_and_tenant after insert on hold
    referencing new table as new_rows for each statement
    execute function check_references_exist('onsale', 'tenant_id, event_id, onsale_id', 'hold_onsale_same_event_and_tenant');
create trigger onsale_not_held after delete on onsale
    referencing old table as old_rows for each statement
    execute function check_unreferenced('hold', 'tenant_id, event_id, onsale_id', 'hold_onsale_same_event_and_tenant');
create trigger hold_references_fixed before update of tenant_id, event_id, onsale_id, hold_id on hold
    for each row when ((old.tenant_id, old.event_id, old.onsale_id, old.hold_id)
                       is distinct from (new.tenant_id, new.event_id, new.onsale_id, new.hold_id))
    execute function refuse_reference_change();

-- seat_claim → seat and seat_claim → hold (same event). The cascade from a deleted hold goes
-- with the foreign key; nothing deletes holds, and the guard below refuses it.
alter table seat_claim drop constraint seat_claim_seat_same_event;
alter table seat_claim drop constraint seat_claim_hold_same_event;
create trigger seat_claim_seat_same_event after insert on seat_claim
    referencing new table as new_rows for each statement
    execute function check_references_exist('seat', 'event_id, seat_id', 'seat_claim_seat_same_event');
create trigger seat_claim_hold_same_event after insert on seat_claim
    referencing new table as new_rows for each statement
    execute function check_references_exist('hold', 'event_id, hold_id', 'seat_claim_hold_same_event');
create trigger seat_not_claimed after delete on seat
    referencing old table as old_rows for each statement
    execute function check_unreferenced('seat_claim', 'event_id, seat_id', 'seat_claim_seat_same_event');
create trigger hold_not_claimed after delete on hold
    referencing old table as old_rows for each statement
    execute function check_unreferenced('seat_claim', 'event_id, hold_id', 'seat_claim_hold_same_event');
-- (A sold claim may let go of its hold: `hold_id` may become null, never another hold.)
create trigger seat_claim_references_fixed before update of event_id, seat_id, hold_id on seat_claim
    for each row when ((old.event_id, old.seat_id) is distinct from (new.event_id, new.seat_id)
                       or (new.hold_id is not null and new.hold_id is distinct from old.hold_id))
    execute function refuse_reference_change();

-- processed_request → tenant.
alter table processed_request drop constraint processed_request_tenant_id_fkey;
create trigger processed_request_tenant_exists after insert on processed_request
    referencing new table as new_rows for each statement
    execute function check_references_exist('tenant', 'tenant_id', 'processed_request_tenant_id_fkey');
create trigger tenant_has_no_requests after delete on tenant
    referencing old table as old_rows for each statement
    execute function check_unreferenced('processed_request', 'tenant_id', 'processed_request_tenant_id_fkey');
create trigger processed_request_references_fixed before update of tenant_id on processed_request
    for each row when (old.tenant_id is distinct from new.tenant_id)
    execute function refuse_reference_change();

-- A user's unacknowledged results are found through the primary key's (tenant_id, user_id)
-- prefix; a user has few requests, so a second index is not worth its cost on every result.
drop index processed_request_pending_idx;

-- `updated_at` is kept by a trigger only when the statement did not set it: hot-path updates set
-- `updated_at = now()` themselves and skip a plpgsql call per row.
do $$
declare
    t text;
begin
    foreach t in array array[
        'tenant', 'venue', 'event', 'seat_map', 'price_category', 'section', 'seat',
        'ticket_type', 'onsale', 'hold', 'hold_item', 'ticket_order', 'ticket_order_item',
        'seat_claim', 'processed_request', 'outbox', 'audit_log'
    ] loop
        execute format('drop trigger %I on %I', t || '_set_updated_at', t);
        execute format(
            'create trigger %I before update on %I for each row'
            ' when (old.updated_at is not distinct from new.updated_at)'
            ' execute function set_updated_at()',
            t || '_set_updated_at', t
        );
    end loop;
end;
$$;

-- Results and outbox messages are written once per command and read rarely (a retry, an inbox
-- snapshot, the relay): `json` stores the text as it is, while `jsonb` would take it apart on
-- every insert, the hot path's cost.
alter table outbox drop constraint outbox_messages_is_array;
alter table outbox alter column messages type json using messages::json;
alter table outbox add constraint outbox_messages_is_array check (json_typeof(messages) = 'array');
-- An outbox row lives for milliseconds: compressing its messages costs more than it saves.
alter table outbox alter column messages set storage external;
alter table processed_request alter column result type json using result::json;
-- The audit log is appended to on every batch and read whole: `json` keeps each detail as
-- written (a sweep's lists thousands of holds) without taking it apart on insert.
alter table audit_log alter column detail drop default;
alter table audit_log alter column detail type json using detail::json;
alter table audit_log alter column detail set default '{}';
-- Audit rows are kept; lz4 compresses a batch's detail many times faster than the default.
alter table audit_log alter column detail set compression lz4;
