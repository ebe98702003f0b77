//! Reading an event's state: its inventory when an owner takes it over, its onsales while
//! the owner runs, requests already processed, and payment events not applied yet.

use super::batch::parse_order_status;
use crate::booking::inventory::{
    CategoryInfo, GaCounts, HoldInfo, Inventory, OnsaleInfo, OrderRecord, PendingOrder, SeatInfo,
    StoredLine, TicketTypeInfo,
};
use crate::settlement::PaymentEventKind;
use marquee_protocol::booking::{SeatIndex, SeatState};
use serde_json::value::RawValue;
use sqlx::{PgConnection, PgPool, Row as _};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use uuid::Uuid;

/// Loads an event's inventory, or `None` if the event does not exist.
pub async fn load(db: &PgPool, event: Uuid) -> Result<Option<Inventory>, sqlx::Error> {
    let mut tx = crate::db::begin(db).await?;
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

/// The event's catalog version: it moves when what the event sells changes (a price category,
/// a ticket type or the seat map added), and the owner then loads the event again.
pub(crate) async fn catalog_version(
    conn: &mut PgConnection,
    event: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select catalog_version from event where event_id = $1")
        .bind(event)
        .fetch_optional(conn)
        .await
        .map(Option::unwrap_or_default)
}

/// The event's onsales (re-read periodically by the owner, since operators change them).
pub(crate) async fn load_onsales(
    conn: &mut PgConnection,
    event: Uuid,
) -> Result<Vec<OnsaleInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "select onsale_id,
                -- Only an onsale of an event the public can see sells: not a draft's, not a
                -- cancelled one's.
                status = 'live' and exists (
                    select 1 from event e where e.event_id = onsale.event_id
                      and e.status in ('published', 'on_sale', 'sold_out')
                ) as live,
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
pub(crate) async fn processed(
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
pub(crate) async fn unapplied_payments(
    db: &PgPool,
    event: Uuid,
    max: i64,
) -> Result<Vec<UnappliedPayment>, sqlx::Error> {
    let rows = sqlx::query(
        "select p.provider, p.provider_event_id, p.kind, p.payment_ref,
                p.amount_minor, p.currency::text as paid_currency,
                o.ticket_order_id, o.user_id, o.status::text as status,
                o.payment_provider, o.payment_ref as paid_ref, o.total_minor,
                o.currency::text as currency, h.onsale_id,
                o.checkout_provider, o.checkout_payment_ref
         from payment_event p join ticket_order o on o.ticket_order_id = p.ticket_order_id
         left join hold h on h.hold_id = o.hold_id
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
                    onsale: r.get("onsale_id"),
                    started: r
                        .get::<Option<String>, _>("checkout_provider")
                        .map(|p| (p, r.get("checkout_payment_ref"))),
                },
            }
        })
        .collect())
}
