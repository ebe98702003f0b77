//! Committing a batch: every change an owner decided, in one transaction of named steps
//! ([`commit`]), each a set-based statement over arrays.

use super::batch::{Batch, CommitError, Processed, order_status};
use crate::booking::inventory::{Change, HoldEnd, Reclaimed};
use marquee_protocol::booking::OrderStatus;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use uuid::Uuid;

/// Commits a batch for an owner that loaded the event at `version`, step by step in one
/// transaction. Returns the new version.
pub async fn commit(
    db: &PgPool,
    tenant: Uuid,
    event: Uuid,
    version: i64,
    actor: &str,
    batch: &Batch,
) -> Result<i64, CommitError> {
    let started = std::time::Instant::now();
    let c = Columns::from_changes(&batch.changes);
    let bump = i64::from(batch.bump);
    let mut tx = crate::db::begin(db).await?;
    fence(&mut tx, event, version, bump).await?;
    insert_holds(&mut tx, tenant, event, &c).await?;
    end_holds(&mut tx, event, &c).await?;
    insert_orders(
        &mut tx,
        tenant,
        event,
        &c,
        batch.checkout_provider.as_deref(),
    )
    .await?;
    free_seats(&mut tx, event, &c).await?;
    count_ga(&mut tx, event, &c).await?;
    record_processed(&mut tx, tenant, event, &batch.processed).await?;
    commit_orders(&mut tx, tenant, event, &batch.changes, batch.notify).await?;
    mark_payments_applied(&mut tx, event, &batch.payments).await?;
    write_effects(&mut tx, tenant, event, &batch.effects).await?;
    let version = version + bump;
    write_outbox_and_audit(
        &mut tx,
        tenant,
        event,
        actor,
        version,
        &batch.messages,
        c.audit,
    )
    .await?;
    tx.commit().await?;
    crate::metrics::METRICS
        .batch_commit
        .record(started.elapsed().as_secs_f64());
    Ok(version)
}

/// The side effects the batch makes owed, for the effect relay. A key written before (the
/// same refund owed by a second report of one payment) is owed once.
async fn write_effects(
    tx: &mut PgConnection,
    tenant: Uuid,
    event: Uuid,
    effects: &[super::Effect],
) -> Result<(), CommitError> {
    if effects.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = effects.iter().map(|e| e.kind).collect();
    let providers: Vec<Option<&str>> = effects.iter().map(|e| e.provider.as_deref()).collect();
    let keys: Vec<&str> = effects.iter().map(|e| e.idempotency_key.as_str()).collect();
    let data: Vec<String> = effects.iter().map(|e| e.data.to_string()).collect();
    sqlx::query(
        "insert into effect (tenant_id, event_id, kind, provider, idempotency_key, data)
         select $1, $2, k, p, i, d::json
         from unnest($3::text[], $4::text[], $5::text[], $6::text[]) as x(k, p, i, d)
         on conflict (idempotency_key) do nothing",
    )
    .bind(tenant)
    .bind(event)
    .bind(&kinds)
    .bind(&providers)
    .bind(&keys)
    .bind(&data)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The owner's fence: the event's inventory version must still be the one the owner loaded;
/// it moves up by `bump`.
async fn fence(
    tx: &mut PgConnection,
    event: Uuid,
    version: i64,
    bump: i64,
) -> Result<(), CommitError> {
    let fenced = sqlx::query(
        "update event set inventory_version = inventory_version + $3, updated_at = now()
         where event_id = $1 and inventory_version = $2",
    )
    .bind(event)
    .bind(version)
    .bind(bump)
    .execute(&mut *tx)
    .await?;
    if fenced.rows_affected() != 1 {
        return Err(CommitError::Fenced);
    }
    Ok(())
}

/// New holds: their rows, their general-admission items and their seat claims.
async fn insert_holds(
    tx: &mut PgConnection,
    tenant: Uuid,
    event: Uuid,
    c: &Columns,
) -> Result<(), CommitError> {
    if !c.hold_id.is_empty() {
        sqlx::query(
            "insert into hold (hold_id, tenant_id, event_id, onsale_id, user_id, expires_at)
             select h, $1, $2, o, u, to_timestamp(e / 1000.0)
             from unnest($3::uuid[], $4::uuid[], $5::text[], $6::int8[]) as t(h, o, u, e)",
        )
        .bind(tenant)
        .bind(event)
        .bind(&c.hold_id)
        .bind(&c.hold_onsale)
        .bind(&c.hold_user)
        .bind(&c.hold_expires)
        .execute(&mut *tx)
        .await?;
    }
    if !c.item_hold.is_empty() {
        sqlx::query(
            "insert into hold_item (tenant_id, event_id, hold_id, ticket_type_id, quantity)
             select $1, $2, h, t, q from unnest($3::uuid[], $4::uuid[], $5::int4[]) as x(h, t, q)",
        )
        .bind(tenant)
        .bind(event)
        .bind(&c.item_hold)
        .bind(&c.item_type)
        .bind(&c.item_qty)
        .execute(&mut *tx)
        .await?;
    }
    if !c.claim_seat.is_empty() {
        sqlx::query(
            "insert into seat_claim (event_id, seat_id, tenant_id, state, hold_id)
             select $2, s, $1, 'held', h from unnest($3::uuid[], $4::uuid[]) as x(s, h)",
        )
        .bind(tenant)
        .bind(event)
        .bind(&c.claim_seat)
        .bind(&c.claim_hold)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Holds released, expired or checked out end: one statement per way of ending (a constant
/// status, no per-row cast). Fenced if another owner ended one already.
async fn end_holds(tx: &mut PgConnection, event: Uuid, c: &Columns) -> Result<(), CommitError> {
    // Ends holds: one statement per way of ending (a constant status, no per-row cast).
    for (status, holds) in [
        ("released", &c.audit.released),
        ("expired", &c.audit.expired),
        ("converted", &c.order_hold),
    ] {
        if holds.is_empty() {
            continue;
        }
        let ended = sqlx::query(
            "update hold set status = $2::hold_status, updated_at = now()
             where event_id = $1 and hold_id = any($3) and status = 'active'",
        )
        .bind(event)
        .bind(status)
        .bind(holds)
        .execute(&mut *tx)
        .await?;
        if ended.rows_affected() != holds.len() as u64 {
            // Some hold was already ended by someone else: this owner's memory is stale.
            return Err(CommitError::Fenced);
        }
    }
    Ok(())
}

/// Checked-out holds become orders: the order, its lines, and its seat claims sold.
async fn insert_orders(
    tx: &mut PgConnection,
    tenant: Uuid,
    event: Uuid,
    c: &Columns,
    provider: Option<&str>,
) -> Result<(), CommitError> {
    if !c.order_id.is_empty() {
        sqlx::query(
            "insert into ticket_order (ticket_order_id, tenant_id, event_id, user_id, hold_id, total_minor, currency, payment_due_at, checkout_provider)
             select o, $1, $2, u, h, t, c, to_timestamp(d / 1000.0), $9
             from unnest($3::uuid[], $4::uuid[], $5::text[], $6::int8[], $7::text[], $8::int8[]) as x(o, h, u, t, c, d)",
        )
        .bind(tenant)
        .bind(event)
        .bind(&c.order_id)
        .bind(&c.order_hold)
        .bind(&c.order_user)
        .bind(&c.order_total)
        .bind(&c.order_currency)
        .bind(&c.order_due)
        .bind(provider)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "insert into ticket_order_item (tenant_id, event_id, ticket_order_id, ticket_type_id, seat_id, quantity, unit_minor)
             select $1, $2, o, t, s, q, u
             from unnest($3::uuid[], $4::uuid[], $5::uuid[], $6::int4[], $7::int8[]) as x(o, t, s, q, u)",
        )
        .bind(tenant)
        .bind(event)
        .bind(&c.line_order)
        .bind(&c.line_type)
        .bind(&c.line_seat)
        .bind(&c.line_qty)
        .bind(&c.line_unit)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "update seat_claim set state = 'sold', ticket_order_id = x.o, updated_at = now()
             from unnest($2::uuid[], $3::uuid[]) as x(h, o)
             where seat_claim.event_id = $1 and seat_claim.hold_id = x.h",
        )
        .bind(event)
        .bind(&c.order_hold)
        .bind(&c.order_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Released and expired holds give their seats back (converted ones moved to their order).
async fn free_seats(tx: &mut PgConnection, event: Uuid, c: &Columns) -> Result<(), CommitError> {
    if !c.audit.released.is_empty() || !c.audit.expired.is_empty() {
        // Released and expired holds give their seats back (converted ones were moved above).
        let freed: Vec<Uuid> = c
            .audit
            .released
            .iter()
            .chain(&c.audit.expired)
            .copied()
            .collect();
        sqlx::query(
            "delete from seat_claim where event_id = $1 and hold_id = any($2) and state = 'held'",
        )
        .bind(event)
        .bind(&freed)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// General-admission counters move by what the batch held, freed and sold.
async fn count_ga(tx: &mut PgConnection, event: Uuid, c: &Columns) -> Result<(), CommitError> {
    if !c.ga.is_empty() {
        let mut ids: Vec<Uuid> = c.ga.keys().copied().collect();
        ids.sort();
        let held: Vec<i32> = ids.iter().map(|id| c.ga[id].0).collect();
        let sold: Vec<i32> = ids.iter().map(|id| c.ga[id].1).collect();
        sqlx::query(
            "update ticket_type set ga_held = ga_held + x.h, ga_sold = ga_sold + x.s, updated_at = now()
             from unnest($2::uuid[], $3::int4[], $4::int4[]) as x(id, h, s)
             where ticket_type.event_id = $1 and ticket_type.ticket_type_id = x.id",
        )
        .bind(event)
        .bind(&ids)
        .bind(&held)
        .bind(&sold)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Every decided request with its result: its idempotency record.
async fn record_processed(
    tx: &mut PgConnection,
    tenant: Uuid,
    event: Uuid,
    processed: &[Processed],
) -> Result<(), CommitError> {
    if !processed.is_empty() {
        let users: Vec<&str> = processed.iter().map(|p| p.user.as_str()).collect();
        let ids: Vec<&str> = processed.iter().map(|p| p.request_id.as_str()).collect();
        let commands: Vec<&str> = processed.iter().map(|p| p.command_id.as_str()).collect();
        let results: Vec<&str> = processed.iter().map(|p| p.result.get()).collect();
        sqlx::query(
            "insert into processed_request (tenant_id, user_id, request_id, event_id, command_id, result)
             select $1, u, r, $2, c, j::json from unnest($3::text[], $4::text[], $5::text[], $6::text[]) as x(u, r, c, j)",
        )
        .bind(tenant)
        .bind(event)
        .bind(users)
        .bind(ids)
        .bind(commands)
        .bind(results)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The payment events the batch applied, with their outcomes. Fenced if another owner
/// applied one already.
async fn mark_payments_applied(
    tx: &mut PgConnection,
    event: Uuid,
    payments: &[(String, String, &'static str)],
) -> Result<(), CommitError> {
    if !payments.is_empty() {
        let providers: Vec<&str> = payments.iter().map(|p| p.0.as_str()).collect();
        let ids: Vec<&str> = payments.iter().map(|p| p.1.as_str()).collect();
        let outcomes: Vec<&str> = payments.iter().map(|p| p.2).collect();
        let applied = sqlx::query(
            "update payment_event set applied_at = now(), outcome = x.o, updated_at = now()
             from unnest($2::text[], $3::text[], $4::text[]) as x(p, i, o)
             where payment_event.provider = x.p and payment_event.provider_event_id = x.i
               and payment_event.event_id = $1 and payment_event.applied_at is null",
        )
        .bind(event)
        .bind(providers)
        .bind(ids)
        .bind(outcomes)
        .execute(&mut *tx)
        .await?;
        if applied.rows_affected() != payments.len() as u64 {
            // Another owner applied one of them already.
            return Err(CommitError::Fenced);
        }
    }
    Ok(())
}

/// The outbox row (results and the seat delta), the audit row and the relay's wake-up, in one
/// statement (one round trip).
async fn write_outbox_and_audit(
    tx: &mut PgConnection,
    tenant: Uuid,
    event: Uuid,
    actor: &str,
    version: i64,
    messages: &[String],
    audit: AuditDetail,
) -> Result<(), CommitError> {
    // The outbox row, the audit row and the relay's wake-up in one statement (one round trip).
    let messages = (!messages.is_empty()).then(|| crate::outbox::array(messages));
    let detail = (!audit.is_empty()).then(|| {
        let mut detail = audit;
        detail.version = version;
        serde_json::to_string(&detail).expect("an audit detail always serializes")
    });
    sqlx::query(
        "with outbox_row as (
             insert into outbox (tenant_id, event_id, messages)
             select $1, $2, $3::json where $3 is not null
             returning 1
         ), audit_row as (
             insert into audit_log (tenant_id, actor, entity, entity_id, action, detail)
             select $1, $4, 'event', $2::text, 'inventory_changed', $5::json where $5 is not null
             returning 1
         )
         select pg_notify($6, '') from outbox_row",
    )
    .bind(tenant)
    .bind(event)
    .bind(messages)
    .bind(actor)
    .bind(detail)
    .bind(crate::outbox::NOTIFY)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The detail of a batch's audit row: the holds it touched, by action (`checked_out` lists
/// `[hold, order]` pairs), and the inventory version it produced. Empty lists are left out.
#[derive(Debug, Default, serde::Serialize)]
struct AuditDetail {
    version: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    held: Vec<Uuid>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    released: Vec<Uuid>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    expired: Vec<Uuid>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checked_out: Vec<[Uuid; 2]>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    paid: Vec<Uuid>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    orders_ended: Vec<Uuid>,
}

impl AuditDetail {
    fn is_empty(&self) -> bool {
        self.held.is_empty()
            && self.released.is_empty()
            && self.expired.is_empty()
            && self.checked_out.is_empty()
            && self.paid.is_empty()
            && self.orders_ended.is_empty()
    }
}

/// Arrays for one `unnest` insert per table.
#[derive(Default)]
struct Columns {
    hold_id: Vec<Uuid>,
    hold_onsale: Vec<Uuid>,
    hold_user: Vec<String>,
    hold_expires: Vec<i64>,
    item_hold: Vec<Uuid>,
    item_type: Vec<Uuid>,
    item_qty: Vec<i32>,
    claim_seat: Vec<Uuid>,
    claim_hold: Vec<Uuid>,
    ga: HashMap<Uuid, (i32, i32)>,
    order_id: Vec<Uuid>,
    order_hold: Vec<Uuid>,
    order_user: Vec<String>,
    order_total: Vec<i64>,
    order_currency: Vec<String>,
    order_due: Vec<i64>,
    line_order: Vec<Uuid>,
    line_type: Vec<Uuid>,
    line_seat: Vec<Option<Uuid>>,
    line_qty: Vec<i32>,
    line_unit: Vec<i64>,
    /// What the batch did, by action, for its audit row.
    audit: AuditDetail,
}

impl Columns {
    fn from_changes(changes: &[Change]) -> Self {
        let mut c = Self::default();
        for change in changes {
            match change {
                Change::Hold {
                    hold,
                    info,
                    seat_items,
                } => {
                    c.hold_id.push(*hold);
                    c.hold_onsale.push(info.onsale);
                    c.hold_user.push(info.user.clone());
                    c.hold_expires.push(info.expires_at);
                    for (seat, _) in seat_items {
                        c.claim_seat.push(*seat);
                        c.claim_hold.push(*hold);
                    }
                    if let Some((t, q)) = info.ga {
                        c.item_hold.push(*hold);
                        c.item_type.push(t);
                        c.item_qty.push(q as i32);
                        c.ga.entry(t).or_default().0 += q as i32;
                    }
                    c.audit.held.push(*hold);
                }
                Change::End { hold, how, ga } => {
                    if let Some((t, q)) = ga {
                        c.ga.entry(*t).or_default().0 -= *q as i32;
                    }
                    match how {
                        HoldEnd::Released => c.audit.released.push(*hold),
                        HoldEnd::Expired => c.audit.expired.push(*hold),
                    }
                }
                Change::Checkout {
                    hold,
                    order,
                    user,
                    total_minor,
                    currency,
                    payment_due_at,
                    lines,
                    ga,
                } => {
                    c.order_id.push(*order);
                    c.order_hold.push(*hold);
                    c.order_user.push(user.clone());
                    c.order_total.push(*total_minor);
                    c.order_currency.push(currency.clone());
                    c.order_due.push(*payment_due_at);
                    for line in lines {
                        c.line_order.push(*order);
                        c.line_type.push(line.ticket_type);
                        c.line_seat.push(line.seat);
                        c.line_qty.push(line.quantity as i32);
                        c.line_unit.push(line.unit_minor);
                    }
                    if let Some((t, q)) = ga {
                        let entry = c.ga.entry(*t).or_default();
                        entry.0 -= *q as i32;
                        entry.1 += *q as i32;
                    }
                    c.audit.checked_out.push([*hold, *order]);
                }
                Change::Paid {
                    order, reclaimed, ..
                } => {
                    if let Some(Reclaimed {
                        ga: Some((t, q)), ..
                    }) = reclaimed
                    {
                        c.ga.entry(*t).or_default().1 += *q as i32;
                    }
                    c.audit.paid.push(*order);
                }
                Change::OrderEnded {
                    order, freed, ga, ..
                } => {
                    if let (true, Some((t, q))) = (freed, ga) {
                        c.ga.entry(*t).or_default().1 -= *q as i32;
                    }
                    c.audit.orders_ended.push(*order);
                }
                Change::OrderExtended { .. } => {}
            }
        }
        c
    }
}

/// Writes the order changes of a batch: paid orders and their tickets, ended orders (their
/// seat claims go), extended deadlines. Orders change one at a time, at the pace payments
/// arrive, so these are plain per-order statements. Each checks the status it expects: a
/// mismatch means this owner's memory is stale, and the batch is refused.
async fn commit_orders(
    tx: &mut PgConnection,
    tenant: Uuid,
    event: Uuid,
    changes: &[Change],
    notify: bool,
) -> Result<(), CommitError> {
    for change in changes {
        match change {
            Change::Paid {
                order,
                user,
                provider,
                payment_ref,
                tickets,
                reclaimed,
            } => {
                let done = sqlx::query(
                    "update ticket_order set status = 'paid', paid_at = now(), payment_ref = $3,
                            payment_provider = $4, payment_due_at = null, updated_at = now()
                     where event_id = $1 and ticket_order_id = $2
                       and status in ('pending_payment', 'expired', 'failed')",
                )
                .bind(event)
                .bind(order)
                .bind(payment_ref)
                .bind(provider)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(CommitError::Fenced);
                }
                if let Some(Reclaimed { seats, .. }) = reclaimed {
                    sqlx::query(
                        "insert into seat_claim (event_id, seat_id, tenant_id, state, ticket_order_id)
                         select $2, s, $1, 'sold', $3 from unnest($4::uuid[]) as x(s)",
                    )
                    .bind(tenant)
                    .bind(event)
                    .bind(order)
                    .bind(seats)
                    .execute(&mut *tx)
                    .await?;
                }
                let ids: Vec<Uuid> = tickets.iter().map(|t| t.id).collect();
                let types: Vec<Uuid> = tickets.iter().map(|t| t.ticket_type).collect();
                let seats: Vec<Option<Uuid>> =
                    tickets.iter().map(|t| t.seat.map(|s| s.0)).collect();
                sqlx::query(
                    "insert into ticket (ticket_id, tenant_id, event_id, ticket_order_id, ticket_type_id, seat_id, holder)
                     select i, $1, $2, $3, t, s, $7
                     from unnest($4::uuid[], $5::uuid[], $6::uuid[]) as x(i, t, s)",
                )
                .bind(tenant)
                .bind(event)
                .bind(order)
                .bind(&ids)
                .bind(types)
                .bind(seats)
                .bind(user)
                .execute(&mut *tx)
                .await?;
                if notify {
                    let data = serde_json::json!({
                        "order": order, "event": event, "user": user, "tickets": ids,
                        "provider": provider, "payment": payment_ref,
                    });
                    crate::outbox::notification(tx, tenant, "order.paid", &data).await?;
                }
            }
            Change::OrderEnded {
                order,
                user,
                to,
                reason,
                freed,
                void_tickets,
                ..
            } => {
                let from: &[&str] = if *void_tickets {
                    &["paid"]
                } else if !*freed {
                    &["expired", "failed"]
                } else {
                    &["pending_payment"]
                };
                let done = sqlx::query(
                    "update ticket_order set status = $3::order_status, ended_reason = $4, updated_at = now()
                     where event_id = $1 and ticket_order_id = $2 and status::text = any($5)",
                )
                .bind(event)
                .bind(order)
                .bind(order_status(*to))
                .bind(reason)
                .bind(from)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(CommitError::Fenced);
                }
                if *freed {
                    sqlx::query(
                        "delete from seat_claim where event_id = $1 and ticket_order_id = $2",
                    )
                    .bind(event)
                    .bind(order)
                    .execute(&mut *tx)
                    .await?;
                }
                if notify && matches!(to, OrderStatus::Refunded | OrderStatus::Cancelled) {
                    let kind = if *to == OrderStatus::Refunded {
                        "order.refunded"
                    } else {
                        "order.cancelled"
                    };
                    let data = serde_json::json!({
                        "order": order, "event": event, "user": user, "reason": reason,
                    });
                    crate::outbox::notification(tx, tenant, kind, &data).await?;
                }
                if *void_tickets {
                    sqlx::query(
                        "update ticket set status = 'void', updated_at = now()
                         where event_id = $1 and ticket_order_id = $2",
                    )
                    .bind(event)
                    .bind(order)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            Change::OrderExtended { order, due } => {
                sqlx::query(
                    "update ticket_order set payment_due_at = to_timestamp($3 / 1000.0), updated_at = now()
                     where event_id = $1 and ticket_order_id = $2 and status = 'pending_payment'",
                )
                .bind(event)
                .bind(order)
                .bind(due)
                .execute(&mut *tx)
                .await?;
            }
            Change::Hold { .. } | Change::End { .. } | Change::Checkout { .. } => {}
        }
    }
    Ok(())
}

/// Sets a queue entry no transaction can take apart in `dead_letter`, byte for byte (see
/// the owner's docs: Postgres refused even its rejection).
pub(crate) async fn dead_letter(
    db: &PgPool,
    event: Uuid,
    entry: &crate::booking::queue::Entry,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let envelope = serde_json::to_vec(&entry.envelope).expect("an envelope serializes");
    sqlx::query(
        "insert into dead_letter (event_id, command_id, envelope, reason) values ($1, $2, $3, $4)",
    )
    .bind(event)
    .bind(entry.id.replace('\0', "\u{fffd}"))
    .bind(envelope)
    .bind(reason.replace('\0', "\u{fffd}"))
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a payment event that cannot be applied as applied with the outcome `unapplicable`,
/// so no owner reads it again.
pub(crate) async fn payment_unapplicable(
    db: &PgPool,
    event: Uuid,
    payment: &super::UnappliedPayment,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update payment_event set applied_at = now(), outcome = 'unapplicable', updated_at = now()
         where provider = $1 and provider_event_id = $2 and event_id = $3 and applied_at is null",
    )
    .bind(&payment.provider)
    .bind(&payment.event_id)
    .bind(event)
    .execute(db)
    .await?;
    Ok(())
}
