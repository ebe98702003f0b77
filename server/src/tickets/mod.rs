//! Tickets: what a paid order turns into, and what a gate scans.
//!
//! - [`qr`]: the signed QR payload (Ed25519), which a gate can check offline with the public
//!   key alone.
//! - [`checkin`]: scans: a ticket is admitted exactly once, every scan is published to the
//!   event's gates.
//! - [`http`]: the buyer's tickets, the public key, check-in over HTTP.

pub mod checkin;
pub mod http;
pub mod qr;

use crate::config::Secret;
use anyhow::Context as _;
use qr::TicketKey;
use sqlx::PgPool;

/// The key that signs ticket codes: the configured seed (`MARQUEE_TICKET_KEY`, 64 hex digits)
/// or, without one, the deployment's key in Postgres, made on first use. Every node and worker
/// of a deployment must sign with the same key, and the database is what they all share.
pub async fn signing_key(db: &PgPool, configured: Option<&Secret>) -> anyhow::Result<TicketKey> {
    if let Some(seed) = configured {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(seed.expose().trim(), &mut bytes)
            .context("MARQUEE_TICKET_KEY must be 64 hex digits (an Ed25519 seed)")?;
        return Ok(TicketKey::from_seed(&bytes));
    }
    let made_up: [u8; 32] = rand::random();
    // Whoever inserts first wins; everyone then reads the same row.
    let seed: Vec<u8> = sqlx::query_scalar(
        "with made as (
             insert into ticket_signing_key (key_id, seed) values ('default', $1)
             on conflict (key_id) do nothing returning seed
         )
         select seed from made union all
         select seed from ticket_signing_key where key_id = 'default'
         limit 1",
    )
    .bind(made_up.as_slice())
    .fetch_one(db)
    .await
    .context("reading the ticket signing key")?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| anyhow::anyhow!("the stored ticket key is not 32 bytes"))?;
    Ok(TicketKey::from_seed(&seed))
}
