//! The booking engine's Postgres side: loading an event's inventory, and committing a batch of
//! decided commands in one transaction.
//!
//! A batch writes every hold, release, expiry and checkout it contains, the processed request
//! ids with their results, one outbox row carrying the seat delta and the buyers' results, and
//! one audit row, all with set-based statements (`unnest` over arrays), so its cost grows with
//! the rows written and not with round trips. The event's `inventory_version` fences the owner:
//! the batch commits only if the version is still the one the owner loaded, so a second owner
//! working from stale memory fails instead of writing. Behind that, the schema's constraints
//! (one `seat_claim` per seat, the GA quota check) refuse a double sale outright.

use super::inventory::{
    CategoryInfo, Change, GaCounts, HoldEnd, HoldInfo, Inventory, OnsaleInfo, SeatInfo,
    TicketTypeInfo,
};
use super::orders::{OrderRecord, PendingOrder, Reclaimed, StoredLine};
use crate::settlement::PaymentEventKind;
use marquee_protocol::booking::{OrderStatus, SeatIndex, SeatState};
use serde_json::value::RawValue;
use sqlx::{PgConnection, PgPool, Row as _};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use uuid::Uuid;

/// A batch could not be committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// Another owner committed since this owner loaded the event: its memory is stale.
    #[error("the event's inventory moved on (another owner committed)")]
    Fenced,
    /// The database refused the batch (a constraint, or it is unreachable).
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A processed request to record: its idempotency key and its result.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The buyer.
    pub user: String,
    /// The client's request id.
    pub request_id: String,
    /// The queue entry that carried it.
    pub command_id: String,
    /// The result, as JSON text (serialized once, stored and published as it is).
    pub result: Box<RawValue>,
}

/// Everything one transaction writes.
#[derive(Debug, Default)]
pub struct Batch {
    /// State changes, in decision order.
    pub changes: Vec<Change>,
    /// Requests that took effect or were rejected, with their results.
    pub processed: Vec<Processed>,
    /// Messages for the outbox relay, in publication order, each made by [`crate::outbox::message`].
    pub messages: Vec<String>,
    /// Whether availability changed (then the inventory version moves up by one).
    pub bump: bool,
    /// Payment events applied: `(provider, event id, outcome)`.
    pub payments: Vec<(String, String, &'static str)>,
    /// Write notifications for the orders it pays, refunds or cancels.
    pub notify: bool,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.processed.is_empty()
            && self.messages.is_empty()
            && self.payments.is_empty()
    }
}

/// Loads an event's inventory, or `None` if the event does not exist.
pub async fn load(db: &PgPool, event: Uuid) -> Result<Option<Inventory>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let Some(head) = sqlx::query(
        "select e.tenant_id, e.inventory_version, coalesce(m.focal_x, 0) as fx, coalesce(m.focal_y, 0) as fy
         from event e left join seat_map m on m.event_id = e.event_id
         where e.event_id = $1",
    )
    .bind(event)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let tenant: Uuid = head.get("tenant_id");
    let version: i64 = head.get("inventory_version");
    let focal = (head.get::<f64, _>("fx"), head.get::<f64, _>("fy"));

    let category_rows = sqlx::query(
        "select price_category_id from price_category where event_id = $1 order by price_category_id",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?;
    let mut categories: Vec<CategoryInfo> = category_rows
        .iter()
        .map(|r| CategoryInfo {
            id: r.get(0),
            ticket_type: None,
        })
        .collect();
    let category_index: HashMap<Uuid, u32> = categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i as u32))
        .collect();

    let mut ticket_types = HashMap::new();
    let type_rows = sqlx::query(
        "select ticket_type_id, kind::text as kind, price_category_id, price_minor, currency::text as currency,
                min_per_order, max_per_order, ga_quota, ga_held, ga_sold
         from ticket_type where event_id = $1 order by ticket_type_id",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?;
    for r in type_rows {
        let id: Uuid = r.get("ticket_type_id");
        let kind: String = r.get("kind");
        let quota: Option<i32> = r.get("ga_quota");
        let ga = quota.map(|q| GaCounts {
            quota: q.max(0) as u32,
            held: r.get::<i32, _>("ga_held").max(0) as u32,
            sold: r.get::<i32, _>("ga_sold").max(0) as u32,
        });
        if kind == "seated"
            && let Some(c) = r
                .get::<Option<Uuid>, _>("price_category_id")
                .and_then(|c| category_index.get(&c))
        {
            categories[*c as usize].ticket_type.get_or_insert(id);
        }
        ticket_types.insert(
            id,
            TicketTypeInfo {
                price_minor: r.get("price_minor"),
                currency: r.get("currency"),
                min_per_order: r.get::<i32, _>("min_per_order").max(1) as u32,
                max_per_order: r.get::<i32, _>("max_per_order").max(1) as u32,
                ga,
            },
        );
    }

    let seat_rows = sqlx::query(
        "select s.seat_index, s.seat_id, s.price_category_id, s.section_id::text || '/' || s.row_label as row_key,
                s.seat_number, s.x, s.y, c.state::text as claim, c.hold_id as claim_hold
         from seat s left join seat_claim c on c.event_id = s.event_id and c.seat_id = s.seat_id
         where s.event_id = $1 order by s.seat_index",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?;
    let mut seats = Vec::with_capacity(seat_rows.len());
    let mut state = Vec::with_capacity(seat_rows.len());
    let mut layout = Vec::with_capacity(seat_rows.len());
    let mut held_seats: Vec<(Uuid, SeatIndex)> = Vec::new();
    for (i, r) in seat_rows.iter().enumerate() {
        let index: i32 = r.get("seat_index");
        if index as usize != i {
            return Err(sqlx::Error::Protocol(format!(
                "event {event}: seat indexes are not dense (found {index} at position {i})"
            )));
        }
        let seat_id: Uuid = r.get("seat_id");
        let category: Uuid = r.get("price_category_id");
        seats.push(SeatInfo {
            seat_id,
            category: category_index.get(&category).copied().unwrap_or(0),
        });
        state.push(match r.get::<Option<String>, _>("claim").as_deref() {
            None => SeatState::Free,
            Some("held") => {
                if let Some(hold) = r.get::<Option<Uuid>, _>("claim_hold") {
                    held_seats.push((hold, i as SeatIndex));
                }
                SeatState::Held
            }
            Some(_) => SeatState::Sold,
        });
        layout.push((
            r.get::<String, _>("row_key"),
            r.get::<i32, _>("seat_number"),
            i as SeatIndex,
            r.get::<f64, _>("x"),
            r.get::<f64, _>("y"),
        ));
    }
    let rows = Inventory::build_rows(&seats, &mut layout);

    let onsales = load_onsales(&mut tx, event).await?;

    let mut holds = HashMap::new();
    let mut expiry = BinaryHeap::new();
    for r in sqlx::query(
        "select hold_id, user_id, onsale_id, (extract(epoch from expires_at) * 1000)::int8 as expires_ms
         from hold where event_id = $1 and status = 'active'",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?
    {
        let id: Uuid = r.get("hold_id");
        let expires_at: i64 = r.get("expires_ms");
        expiry.push(Reverse((expires_at, id)));
        holds.insert(
            id,
            HoldInfo {
                user: r.get("user_id"),
                onsale: r.get("onsale_id"),
                seats: Vec::new(),
                ga: None,
                expires_at,
            },
        );
    }
    for (hold, seat) in held_seats {
        if let Some(h) = holds.get_mut(&hold) {
            h.seats.push(seat);
        }
    }
    for r in sqlx::query(
        "select i.hold_id, i.ticket_type_id, i.quantity
         from hold_item i join hold h on h.event_id = i.event_id and h.hold_id = i.hold_id
         where h.event_id = $1 and h.status = 'active'",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?
    {
        if let Some(hold) = holds.get_mut(&r.get::<Uuid, _>("hold_id")) {
            hold.ga = Some((
                r.get("ticket_type_id"),
                r.get::<i32, _>("quantity").max(0) as u32,
            ));
        }
    }
    let mut per_user: HashMap<String, u32> = HashMap::new();
    for r in sqlx::query(
        "select user_id, sum(quantity)::int8 as n from (
             select h.user_id, i.quantity from hold_item i
             join hold h on h.event_id = i.event_id and h.hold_id = i.hold_id
             where h.event_id = $1 and h.status = 'active'
           union all
             select h.user_id, 1 from seat_claim c
             join hold h on h.event_id = c.event_id and h.hold_id = c.hold_id
             where c.event_id = $1 and c.state = 'held'
           union all
             select o.user_id, i.quantity from ticket_order_item i
             join ticket_order o on o.event_id = i.event_id and o.ticket_order_id = i.ticket_order_id
             where o.event_id = $1 and o.status in ('pending_payment', 'paid')
         ) owned group by user_id",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?
    {
        per_user.insert(r.get("user_id"), r.get::<i64, _>("n").max(0) as u32);
    }
    let mut pending_rows: HashMap<Uuid, PendingOrder> = HashMap::new();
    for r in sqlx::query(
        "select o.ticket_order_id, o.user_id, h.onsale_id,
                (extract(epoch from o.payment_due_at) * 1000)::int8 as due_ms,
                (extract(epoch from o.created_at) * 1000)::int8 as created_ms
         from ticket_order o left join hold h on h.event_id = o.event_id and h.hold_id = o.hold_id
         where o.event_id = $1 and o.status = 'pending_payment'",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?
    {
        pending_rows.insert(
            r.get("ticket_order_id"),
            PendingOrder {
                user: r.get("user_id"),
                onsale: r.get("onsale_id"),
                seats: Vec::new(),
                ga: None,
                due: r.get::<Option<i64>, _>("due_ms").unwrap_or(0),
                created: r.get("created_ms"),
            },
        );
    }
    if !pending_rows.is_empty() {
        for r in sqlx::query(
            "select i.ticket_order_id, i.ticket_type_id, s.seat_index, i.quantity
             from ticket_order_item i
             join ticket_order o on o.event_id = i.event_id and o.ticket_order_id = i.ticket_order_id
             left join seat s on s.event_id = i.event_id and s.seat_id = i.seat_id
             where i.event_id = $1 and o.status = 'pending_payment'",
        )
        .bind(event)
        .fetch_all(&mut *tx)
        .await?
        {
            if let Some(p) = pending_rows.get_mut(&r.get::<Uuid, _>("ticket_order_id")) {
                match r.get::<Option<i32>, _>("seat_index") {
                    Some(i) => p.seats.push(i as SeatIndex),
                    None => {
                        p.ga = Some((
                            r.get("ticket_type_id"),
                            r.get::<i32, _>("quantity").max(0) as u32,
                        ))
                    }
                }
            }
        }
    }
    tx.commit().await?;
    let mut inventory = Inventory {
        tenant,
        event,
        version,
        focal,
        seats,
        state,
        rows,
        categories,
        ticket_types,
        onsales,
        holds,
        ended: HashMap::new(),
        per_user,
        expiry,
        pending: HashMap::new(),
        order_expiry: BinaryHeap::new(),
        orders: HashMap::new(),
    };
    for (order, pending) in pending_rows {
        inventory.add_pending(order, pending);
    }
    Ok(Some(inventory))
}

/// The event's onsales (re-read periodically by the owner, since operators change them).
pub async fn load_onsales(
    conn: &mut PgConnection,
    event: Uuid,
) -> Result<Vec<OnsaleInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "select onsale_id, status = 'live' as live,
                (extract(epoch from starts_at) * 1000)::int8 as starts_ms,
                (extract(epoch from ends_at) * 1000)::int8 as ends_ms,
                (extract(epoch from hold_duration) * 1000)::int8 as hold_ms,
                per_user_limit, requires_admission
         from onsale where event_id = $1",
    )
    .bind(event)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| OnsaleInfo {
            id: r.get("onsale_id"),
            live: r.get("live"),
            starts_at: r.get("starts_ms"),
            ends_at: r.get("ends_ms"),
            hold_ms: r.get("hold_ms"),
            per_user_limit: r.get::<i32, _>("per_user_limit").max(0) as u32,
            requires_admission: r.get("requires_admission"),
        })
        .collect())
}

/// The stored results of requests already processed, keyed by `(user, request id)`:
/// `(command id, result)`.
pub async fn processed(
    db: &PgPool,
    tenant: Uuid,
    keys: &[(String, String)],
) -> Result<HashMap<(String, String), (String, Box<RawValue>)>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (users, ids): (Vec<String>, Vec<String>) = keys.iter().cloned().unzip();
    let rows = sqlx::query(
        "select p.user_id, p.request_id, p.command_id, p.result::text as result
         from processed_request p
         join unnest($2::text[], $3::text[]) as k(user_id, request_id)
           on p.user_id = k.user_id and p.request_id = k.request_id
         where p.tenant_id = $1",
    )
    .bind(tenant)
    .bind(users)
    .bind(ids)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            let result = RawValue::from_string(r.get("result"))
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Ok((
                (r.get("user_id"), r.get("request_id")),
                (r.get("command_id"), result),
            ))
        })
        .collect()
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

/// The database spelling of an order status.
pub fn order_status(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::PendingPayment => "pending_payment",
        OrderStatus::Paid => "paid",
        OrderStatus::Failed => "failed",
        OrderStatus::Expired => "expired",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Refunded => "refunded",
        _ => "unknown",
    }
}

/// An order status as the database spells it.
pub fn parse_order_status(text: &str) -> OrderStatus {
    match text {
        "pending_payment" => OrderStatus::PendingPayment,
        "paid" => OrderStatus::Paid,
        "failed" => OrderStatus::Failed,
        "expired" => OrderStatus::Expired,
        "cancelled" => OrderStatus::Cancelled,
        "refunded" => OrderStatus::Refunded,
        _ => OrderStatus::Unknown,
    }
}

/// A recorded payment event that its order's owner has not applied yet.
#[derive(Debug, Clone)]
pub struct UnappliedPayment {
    /// The provider.
    pub provider: String,
    /// The provider's event id.
    pub event_id: String,
    /// What happened.
    pub kind: PaymentEventKind,
    /// The provider's payment reference.
    pub payment_ref: String,
    /// The amount and currency reported, if any.
    pub amount: Option<(i64, String)>,
    /// The order as Postgres has it now.
    pub order: OrderRecord,
}

impl UnappliedPayment {
    /// The event's key: `(provider, event id)`.
    pub fn key(&self) -> (String, String) {
        (self.provider.clone(), self.event_id.clone())
    }
}

/// Up to `max` payment events of `event`'s orders not applied yet, oldest first, with their
/// orders.
pub async fn unapplied_payments(
    db: &PgPool,
    event: Uuid,
    max: i64,
) -> Result<Vec<UnappliedPayment>, sqlx::Error> {
    let rows = sqlx::query(
        "select p.provider, p.provider_event_id, p.kind, p.payment_ref,
                p.amount_minor, p.currency::text as paid_currency,
                o.ticket_order_id, o.user_id, o.status::text as status,
                o.payment_provider, o.payment_ref as paid_ref, o.total_minor,
                o.currency::text as currency
         from payment_event p join ticket_order o on o.ticket_order_id = p.ticket_order_id
         where p.event_id = $1 and p.applied_at is null
         order by p.created_at, p.provider_event_id limit $2",
    )
    .bind(event)
    .bind(max)
    .fetch_all(db)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let orders: Vec<Uuid> = rows.iter().map(|r| r.get("ticket_order_id")).collect();
    let mut lines: HashMap<Uuid, Vec<StoredLine>> = HashMap::new();
    for r in sqlx::query(
        "select i.ticket_order_id, i.ticket_type_id, i.seat_id, s.seat_index, i.quantity
         from ticket_order_item i
         left join seat s on s.event_id = i.event_id and s.seat_id = i.seat_id
         where i.event_id = $1 and i.ticket_order_id = any($2)
         order by i.ticket_order_id, s.seat_index nulls last",
    )
    .bind(event)
    .bind(&orders)
    .fetch_all(db)
    .await?
    {
        let seat: Option<Uuid> = r.get("seat_id");
        let index: Option<i32> = r.get("seat_index");
        lines
            .entry(r.get("ticket_order_id"))
            .or_default()
            .push(StoredLine {
                ticket_type: r.get("ticket_type_id"),
                seat: seat.zip(index.map(|i| i as SeatIndex)),
                quantity: r.get::<i32, _>("quantity").max(0) as u32,
            });
    }
    Ok(rows
        .iter()
        .map(|r| {
            let id: Uuid = r.get("ticket_order_id");
            UnappliedPayment {
                provider: r.get("provider"),
                event_id: r.get("provider_event_id"),
                kind: r.get("kind"),
                payment_ref: r.get("payment_ref"),
                amount: r
                    .get::<Option<i64>, _>("amount_minor")
                    .zip(r.get::<Option<String>, _>("paid_currency")),
                order: OrderRecord {
                    id,
                    user: r.get("user_id"),
                    status: parse_order_status(r.get("status")),
                    lines: lines.get(&id).cloned().unwrap_or_default(),
                    paid_with: r
                        .get::<Option<String>, _>("payment_provider")
                        .zip(r.get::<Option<String>, _>("paid_ref")),
                    total_minor: r.get("total_minor"),
                    currency: r.get("currency"),
                },
            }
        })
        .collect())
}

/// Commits a batch for an owner that loaded the event at `version`. Returns the new version.
pub async fn commit(
    db: &PgPool,
    tenant: Uuid,
    event: Uuid,
    version: i64,
    actor: &str,
    batch: &Batch,
) -> Result<i64, CommitError> {
    let c = Columns::from_changes(&batch.changes);
    let mut tx = db.begin().await?;
    let bump = i64::from(batch.bump);
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
    if !c.order_id.is_empty() {
        sqlx::query(
            "insert into ticket_order (ticket_order_id, tenant_id, event_id, user_id, hold_id, total_minor, currency, payment_due_at)
             select o, $1, $2, u, h, t, c, to_timestamp(d / 1000.0)
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
    if !batch.processed.is_empty() {
        let users: Vec<&str> = batch.processed.iter().map(|p| p.user.as_str()).collect();
        let ids: Vec<&str> = batch
            .processed
            .iter()
            .map(|p| p.request_id.as_str())
            .collect();
        let commands: Vec<&str> = batch
            .processed
            .iter()
            .map(|p| p.command_id.as_str())
            .collect();
        let results: Vec<&str> = batch.processed.iter().map(|p| p.result.get()).collect();
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
    commit_orders(&mut tx, tenant, event, &batch.changes, batch.notify).await?;
    if !batch.payments.is_empty() {
        let providers: Vec<&str> = batch.payments.iter().map(|p| p.0.as_str()).collect();
        let ids: Vec<&str> = batch.payments.iter().map(|p| p.1.as_str()).collect();
        let outcomes: Vec<&str> = batch.payments.iter().map(|p| p.2).collect();
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
        if applied.rows_affected() != batch.payments.len() as u64 {
            // Another owner applied one of them already.
            return Err(CommitError::Fenced);
        }
    }
    // The outbox row, the audit row and the relay's wake-up in one statement (one round trip).
    let messages = (!batch.messages.is_empty()).then(|| crate::outbox::array(&batch.messages));
    let detail = (!c.audit.is_empty()).then(|| {
        let mut detail = c.audit;
        detail.version = version + bump;
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
    tx.commit().await?;
    Ok(version + bump)
}
