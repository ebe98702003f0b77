//! Waiting-room admission tokens: what lets a buyer's purchase commands through an onsale that
//! admits buyers through its waiting room.
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

use crate::config::Secret;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    use crate::auth::now_secs;

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
