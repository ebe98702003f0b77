//! The outbox: how anything a transaction decides reaches the hub channels.
//!
//! A transaction that changes what clients must hear of (a booking batch, a check-in, an
//! operator's change to an onsale) writes its messages to the `outbox` table in the same
//! transaction, and [`relay`] publishes them once the transaction committed, in commit order.
//! So a message goes out if and only if its change committed: a crash in between delays it,
//! never loses it.
//!
//! Notifications owed to an outside service are written the same way ([`notification`]) and
//! delivered by [`crate::notify`].
//!
//! Messages are JSON text `{"channel": …, "data": …}` ([`message`]), serialized once by the
//! writer and published by the relay without being parsed again. A row holds a JSON array of
//! them ([`array()`]); rows that change an event's inventory carry the event id, so the seat-map
//! snapshot can wait until every such row is published.

pub mod relay;

use serde_json::value::RawValue;
use uuid::Uuid;

/// Where the outbox relay is woken (`NOTIFY` on commit).
pub const NOTIFY: &str = "marquee_outbox";

/// A message for the outbox relay: the JSON text of `{"channel": channel, "data": data}`.
///
/// Results and deltas are serialized once, in the writer, and travel as text from there to the
/// hub: the hot path builds no JSON trees.
pub fn message(channel: &str, data: &RawValue) -> String {
    let channel = serde_json::to_string(channel).expect("a string always serializes");
    let mut message = String::with_capacity(channel.len() + data.get().len() + 22);
    message.push_str("{\"channel\":");
    message.push_str(&channel);
    message.push_str(",\"data\":");
    message.push_str(data.get());
    message.push('}');
    message
}

/// The JSON array of an outbox row, from messages made by [`message`].
pub fn array(messages: &[String]) -> String {
    let mut row = String::with_capacity(messages.iter().map(|m| m.len() + 1).sum::<usize>() + 2);
    row.push('[');
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            row.push(',');
        }
        row.push_str(message);
    }
    row.push(']');
    row
}

/// Writes one outbox row of `messages` in the caller's transaction and wakes the relay when it
/// commits. `event` is the event whose inventory the row changes, if any.
pub async fn write(
    conn: &mut sqlx::PgConnection,
    tenant: Uuid,
    event: Option<Uuid>,
    messages: &[String],
) -> Result<(), sqlx::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "with row as (
             insert into outbox (tenant_id, event_id, messages) values ($1, $2, $3::json)
             returning 1
         )
         select pg_notify($4, '') from row",
    )
    .bind(tenant)
    .bind(event)
    .bind(array(messages))
    .bind(NOTIFY)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes a notification for the outside service (`MARQUEE_NOTIFY_URL`) in the caller's
/// transaction: it is owed once this commits, and [`crate::notify`] delivers it.
pub async fn notification(
    conn: &mut sqlx::PgConnection,
    tenant: Uuid,
    kind: &str,
    data: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("insert into notification (tenant_id, kind, data) values ($1, $2, $3::json)")
        .bind(tenant)
        .bind(kind)
        .bind(data.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_and_its_row_are_the_json_the_relay_reads() {
        let data = serde_json::value::to_raw_value(&serde_json::json!({"v": 3})).unwrap();
        let one = message("seats:e1", &data);
        assert_eq!(one, r#"{"channel":"seats:e1","data":{"v":3}}"#);
        let row = array(&[one.clone(), one]);
        let parsed: serde_json::Value = serde_json::from_str(&row).unwrap();
        assert_eq!(parsed.as_array().map(Vec::len), Some(2));
        assert_eq!(array(&[]), "[]");
    }
}
