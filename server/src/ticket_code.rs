//! The QR code of a ticket: `MQ1.<payload>.<signature>`, both parts base64url without padding.
//!
//! The payload is 36 bytes: the ticket id (16), the event id (16) and the ticket's version
//! (4, big-endian). The signature is Ed25519 over those 36 bytes. A gate that knows the
//! deployment's public key ([`TicketKey::public_hex`]) checks a code without any network: the
//! signature proves Marquee issued it, the event id that it is for this event. The version is
//! what makes a transfer safe: the server knows each ticket's current version, so a code
//! signed for an older one (the seller's copy of a transferred ticket) is refused at an online
//! gate, and offline gates learn the new version when they sync.
//!
//! Ed25519 signatures are deterministic, so the same ticket at the same version always has the
//! same code: it is computed when needed, never stored.

use crate::secret::Secret;
use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sqlx::PgPool;
use uuid::Uuid;

/// The ticket-signing settings every node and worker of a deployment shares.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Tickets")]
pub struct Args {
    /// Ed25519 seed (64 hex digits) that signs tickets' QR codes. Without it, the deployment's
    /// key is made once and kept in Postgres, shared by every node and worker.
    #[arg(long, env = "MARQUEE_TICKET_KEY", hide_env_values = true)]
    pub ticket_key: Option<Secret>,
}

/// The prefix of every code, naming the format.
pub const PREFIX: &str = "MQ1.";

const PAYLOAD_LEN: usize = 36;

/// What a genuine code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketClaim {
    /// The ticket.
    pub ticket: Uuid,
    /// Its event.
    pub event: Uuid,
    /// The version it was signed for.
    pub version: u32,
}

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    /// Not `MQ1.<payload>.<signature>` with parts of the right length.
    #[error("not a Marquee ticket code")]
    Malformed,
    /// Well formed, but not signed by this deployment's key (forged or altered).
    #[error("the ticket code's signature is not genuine")]
    BadSignature,
}

/// The key that signs ticket codes.
#[derive(Clone)]
pub struct TicketKey {
    signing: SigningKey,
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TicketKey(public {})", self.public_hex())
    }
}

impl TicketKey {
    /// The key with this 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The public key, hex: what gates are configured with.
    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().as_bytes())
    }

    /// The code for `claim`.
    pub fn sign(&self, claim: &TicketClaim) -> String {
        let payload = payload(claim);
        let signature = self.signing.sign(&payload);
        format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// Checks a code against this key.
    pub fn verify(&self, code: &str) -> Result<TicketClaim, QrError> {
        verify_with(&self.signing.verifying_key(), code)
    }
}

fn payload(claim: &TicketClaim) -> [u8; PAYLOAD_LEN] {
    let mut payload = [0u8; PAYLOAD_LEN];
    payload[..16].copy_from_slice(claim.ticket.as_bytes());
    payload[16..32].copy_from_slice(claim.event.as_bytes());
    payload[32..].copy_from_slice(&claim.version.to_be_bytes());
    payload
}

/// Checks a code against a public key, as an offline gate does.
pub fn verify_with(key: &VerifyingKey, code: &str) -> Result<TicketClaim, QrError> {
    let rest = code.strip_prefix(PREFIX).ok_or(QrError::Malformed)?;
    let (payload, signature) = rest.split_once('.').ok_or(QrError::Malformed)?;
    // Exact lengths first: nothing oversized is decoded.
    if payload.len() != 48 || signature.len() != 86 {
        return Err(QrError::Malformed);
    }
    let mut bytes = [0u8; PAYLOAD_LEN];
    let n = URL_SAFE_NO_PAD
        .decode_slice(payload, &mut bytes)
        .map_err(|_| QrError::Malformed)?;
    let mut sig = [0u8; 64];
    let m = URL_SAFE_NO_PAD
        .decode_slice(signature, &mut sig)
        .map_err(|_| QrError::Malformed)?;
    if n != PAYLOAD_LEN || m != 64 {
        return Err(QrError::Malformed);
    }
    key.verify(&bytes, &Signature::from_bytes(&sig))
        .map_err(|_| QrError::BadSignature)?;
    let id = |range: std::ops::Range<usize>| {
        Uuid::from_slice(&bytes[range]).expect("sixteen bytes make a uuid")
    };
    Ok(TicketClaim {
        ticket: id(0..16),
        event: id(16..32),
        version: u32::from_be_bytes(bytes[32..].try_into().expect("four bytes")),
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> TicketClaim {
        TicketClaim {
            ticket: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
            event: Uuid::from_u128(0x0b9f_3c1e_6c1a_4c55_9a43_5a7e_1d2f_4b10),
            version: 1,
        }
    }

    #[test]
    fn a_code_round_trips_and_is_the_same_every_time() {
        let key = TicketKey::from_seed(&[7; 32]);
        let code = key.sign(&claim());
        assert!(code.starts_with(PREFIX));
        assert_eq!(code.len(), 4 + 48 + 1 + 86);
        assert_eq!(key.sign(&claim()), code, "deterministic");
        assert_eq!(key.verify(&code), Ok(claim()));
    }

    #[test]
    fn forged_altered_and_garbled_codes_are_refused() {
        let key = TicketKey::from_seed(&[7; 32]);
        let code = key.sign(&claim());
        let other = TicketKey::from_seed(&[8; 32]);
        assert_eq!(
            other.verify(&code),
            Err(QrError::BadSignature),
            "another key"
        );
        // Version 2 payload with version 1's signature: a transfer cannot be faked.
        let bumped = key.sign(&TicketClaim {
            version: 2,
            ..claim()
        });
        let spliced = format!("{}{}", &bumped[..4 + 48], &code[4 + 48..]);
        assert_eq!(key.verify(&spliced), Err(QrError::BadSignature));
        for garbled in [
            "",
            "MQ1.",
            "MQ2.abc.def",
            &code[..code.len() - 1],
            &format!("{code}A"),
            &code.replace('.', "!"),
            &format!("{}*{}", &code[..10], &code[11..]),
        ] {
            assert_eq!(key.verify(garbled), Err(QrError::Malformed), "{garbled:?}");
        }
    }
}
