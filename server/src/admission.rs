//! Admission: the contract between the waiting room and booking, owned by neither.
//!
//! The waiting room admits buyers and booking sells to them; each needs one thing of the
//! other, and both import this module instead of each other:
//! - admission tokens ([`AdmissionKey`]), which the waiting room issues and booking's workers
//!   check on every purchase command;
//! - [`Purchases`]: booking takes the purchase a buyer staged while waiting, the moment the
//!   waiting room admits them;
//! - [`Slots`]: the waiting room takes back the admission slot of a buyer who finished
//!   shopping (checked out or released), so the next buyer gets it;
//! - [`Pauses`]: an operator's pause (or resume) switches the waiting room's line at once.
//!
//! # Admission tokens
//!
//! A token is a JWT signed with HS256 under the admission secret (`--admission-secret`), a key
//! of its own, separate from whatever signs the buyers' session tokens: the waiting room issues
//! admissions and the booking workers check them, and nobody else needs the key. Its claims
//! bind it to one tenant, one user (`sub`) and one onsale, with an expiry (`exp`) and the
//! audience [`AUDIENCE`], so a session token can never pass for an admission.
//!
//! The worker checks the signature, audience and expiry when it decides a command
//! ([`AdmissionKey::verify`]); the inventory then checks that the admission is for this buyer
//! and the onsale open now (`Inventory::apply`). Anything else is `admission_required`.

use crate::secret::Secret;
use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use marquee_protocol::booking::Command;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The admission settings every node and worker of a deployment shares.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Admission")]
pub struct Args {
    /// Key that signs and checks waiting-room admissions (HS256). Every node and worker of a
    /// deployment needs the same one. Without it, onsales that require an admission refuse
    /// every purchase command.
    #[arg(long, env = "MARQUEE_ADMISSION_SECRET", hide_env_values = true, value_parser = crate::secret::parse_strong)]
    pub admission_secret: Option<Secret>,
}

impl Args {
    /// The admission key, when a secret is configured.
    pub fn key(&self) -> Option<AdmissionKey> {
        self.admission_secret.as_ref().map(AdmissionKey::new)
    }
}

/// A purchase the waiting room makes on an admitted buyer's behalf: the one they staged while
/// waiting, as their own command with their admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedPurchase {
    /// The buyer's tenant.
    pub tenant: Uuid,
    /// The event the purchase is for.
    pub event: Uuid,
    /// The buyer.
    pub user: String,
    /// The command's idempotency key (one per admission, so it never takes effect twice).
    pub request_id: String,
    /// The command.
    pub command: Command,
    /// The buyer's admission token.
    pub admission: String,
}

/// What the waiting room asks of booking: take a staged purchase. Its result reaches the
/// buyer's inbox like any command's.
pub trait Purchases: Send + Sync + std::fmt::Debug + 'static {
    /// Queues the purchase; an error says why it could not be (the buyer can still buy by hand).
    fn submit(&self, purchase: StagedPurchase) -> BoxFuture<'_, Result<(), String>>;
}

/// What booking asks of the waiting room: whether an admission still stands, and the
/// admission slot of a buyer who finished shopping goes to the next buyer.
pub trait Slots: Send + Sync + std::fmt::Debug + 'static {
    /// Ends `user`'s admission to `onsale`, handing its slot on.
    fn finish<'a>(&'a self, onsale: Uuid, user: &'a str) -> BoxFuture<'a, Result<(), String>>;

    /// Whether `user` is admitted to `onsale` now: a genuine admission token outlives its
    /// place when the buyer checked out, released, left the queue or was expired, and is
    /// refused from then on.
    fn is_admitted<'a>(
        &'a self,
        onsale: Uuid,
        user: &'a str,
    ) -> BoxFuture<'a, Result<bool, String>>;
}

/// What the catalog asks of the waiting room when an operator pauses or resumes an onsale:
/// switch its line between `live` and `paused` now, so admission has stopped by the time the
/// operator's request returns. Without it the admission controller would see the change at
/// its next read of the settings, up to a second later, and admit meanwhile: an operator who
/// pauses because the payment provider is down wants nobody admitted after the click.
pub trait Pauses: Send + Sync + std::fmt::Debug + 'static {
    /// Switches `onsale`'s line to `paused` (or back to `live`) if it is in the other of the
    /// two; a line in any other state (a pre-queue not drawn yet, closed) is left to the
    /// admission controller.
    fn switch(&self, onsale: Uuid, paused: bool) -> BoxFuture<'_, Result<(), String>>;
}

/// The audience of every admission token.
pub const AUDIENCE: &str = "marquee:admission";

/// The claims of an admission token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionClaims {
    /// The admitted user.
    pub sub: String,
    /// The user's tenant.
    pub tenant: Uuid,
    /// The onsale the admission is for.
    pub onsale: Uuid,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Always [`AUDIENCE`].
    pub aud: String,
}

/// A verified admission: signed by the admission key, for its audience, not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionPass {
    /// The admitted user.
    pub user: String,
    /// The user's tenant.
    pub tenant: Uuid,
    /// The onsale the admission is for.
    pub onsale: Uuid,
}

/// The key that signs and checks admission tokens.
#[derive(Clone)]
pub struct AdmissionKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for AdmissionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionKey(***)")
    }
}

impl AdmissionKey {
    /// The key for `secret`.
    pub fn new(secret: &Secret) -> Self {
        let bytes = secret.expose().as_bytes();
        // Pinned algorithm, required expiry and audience, no leeway: an admission lasts
        // exactly as long as the waiting room said.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        }
    }

    /// An admission for `user` of `tenant` to `onsale`, valid until `exp` (unix seconds).
    pub fn issue(&self, tenant: Uuid, user: &str, onsale: Uuid, exp: u64) -> String {
        let claims = AdmissionClaims {
            sub: user.to_owned(),
            tenant,
            onsale,
            exp,
            aud: AUDIENCE.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with a byte secret cannot fail")
    }

    /// The admission `token` grants, if it is genuine and has not expired.
    pub fn verify(&self, token: &str) -> Option<AdmissionPass> {
        let data = jsonwebtoken::decode::<AdmissionClaims>(token, &self.decoding, &self.validation)
            .ok()?;
        Some(AdmissionPass {
            user: data.claims.sub,
            tenant: data.claims.tenant,
            onsale: data.claims.onsale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_secs;

    fn key(secret: &str) -> AdmissionKey {
        AdmissionKey::new(&Secret::new(secret))
    }

    #[test]
    fn a_genuine_admission_verifies_and_nothing_else_does() {
        let k = key("admission-secret-0123456789");
        let (tenant, onsale) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let token = k.issue(tenant, "ana", onsale, now_secs() + 60);
        assert_eq!(
            k.verify(&token),
            Some(AdmissionPass {
                user: "ana".into(),
                tenant,
                onsale
            })
        );
        // Expired, signed with another key, tampered with, or not a token at all.
        assert_eq!(
            k.verify(&k.issue(tenant, "ana", onsale, now_secs() - 1)),
            None
        );
        assert_eq!(key("another-secret-0123456789").verify(&token), None);
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 2, 'x');
        assert_eq!(k.verify(&tampered), None);
        assert_eq!(k.verify("admitted"), None);
        // A session token signed with the same secret is not an admission (no audience).
        let session = crate::auth::mint_hs256("admission-secret-0123456789", "ana", &[], 60);
        assert_eq!(k.verify(&session), None);
    }
}
