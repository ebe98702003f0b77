//! Access-token verification.
//!
//! Every token is a JWT verified with one pinned algorithm (HS256 with a shared secret, or RS256
//! or EdDSA with a public key). `exp` is required, `nbf` is honoured, and `iss`/`aud` are
//! required when configured. Anything else, `alg: none` included, is refused with a stable
//! [`ErrorCode`] and a metrics reason.

use crate::secret::Secret;
use clap::ValueEnum;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use marquee_protocol::{Channel, ErrorCode};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use uuid::Uuid;

/// The JWT algorithm the server pins. Tokens signed with any other algorithm (including `none`)
/// are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with the shared secret `MARQUEE_JWT_SECRET`.
    #[value(name = "HS256")]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256, verified with the public key `MARQUEE_JWT_PUBLIC_KEY`.
    #[value(name = "RS256")]
    Rs256,
    /// Ed25519, verified with the public key `MARQUEE_JWT_PUBLIC_KEY`.
    #[value(name = "EdDSA")]
    EdDsa,
}

/// How access tokens are verified.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Access tokens")]
pub struct Args {
    /// Shared secret for HS256 access tokens.
    #[arg(long, env = "MARQUEE_JWT_SECRET", hide_env_values = true, value_parser = crate::secret::parse_strong)]
    pub jwt_secret: Option<Secret>,

    /// PEM public key (or a path to a PEM file) for RS256 or EdDSA access tokens.
    #[arg(long, env = "MARQUEE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,

    /// Pinned token algorithm. Defaults to HS256 with a secret and RS256 with a public key.
    #[arg(long, env = "MARQUEE_JWT_ALGORITHM", value_enum)]
    pub jwt_algorithm: Option<JwtAlgorithm>,

    /// Required `iss` claim, when set.
    #[arg(long, env = "MARQUEE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, when set.
    #[arg(long, env = "MARQUEE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew tolerated when checking `exp` and `nbf`.
    #[arg(long, env = "MARQUEE_JWT_LEEWAY", default_value = "5s", value_parser = crate::clock::parse_duration)]
    pub jwt_leeway: Duration,
}

/// The claims Marquee reads from an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The tenant the user belongs to, if the deployment is multi-tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Roles such as `admin` or `gate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Not before, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience: one string, or an array of them (both are valid JWT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// The sign-in session the token belongs to (OpenID Connect's `sid`): every token issued
    /// for one sign-in carries the same one, and ending the session refuses them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// The `aud` claim, which JWT allows as a string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl From<&str> for Audience {
    fn from(value: &str) -> Self {
        Self::One(value.to_owned())
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`).
    pub user: String,
    /// The tenant, when the token names one.
    pub tenant: Option<String>,
    /// Roles granted by the token.
    pub roles: Vec<String>,
    /// When the token expires, unix seconds.
    pub expires_at: u64,
    /// The sign-in session (`sid`), when the token names one.
    pub sid: Option<String>,
}

/// A role that unlocks operator or gate features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Onsale operators.
    Admin,
    /// Check-in devices.
    Gate,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Gate => "gate",
        }
    }
}

impl Identity {
    /// Whether the caller holds a role.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.iter().any(|r| r == role.as_str())
    }

    /// The caller's tenant, when the token names one that is a tenant id.
    pub fn tenant_id(&self) -> Option<Uuid> {
        self.tenant.as_deref().and_then(|t| Uuid::parse_str(t).ok())
    }

    /// The caller's private inbox channel.
    pub fn inbox(&self) -> Option<Channel> {
        Channel::inbox(self.tenant.as_deref(), &self.user).ok()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token at all.
    #[error("an access token is required")]
    Missing,
    /// Not a well-formed JWT.
    #[error("the access token is not a well-formed JWT")]
    Malformed,
    /// Signed with an algorithm other than the pinned one (`none` included).
    #[error("the access token's algorithm is not accepted")]
    Algorithm,
    /// The signature does not verify.
    #[error("the access token's signature is invalid")]
    Signature,
    /// `iss` is missing or wrong.
    #[error("the access token's issuer is not accepted")]
    Issuer,
    /// `aud` is missing or wrong.
    #[error("the access token's audience is not accepted")]
    Audience,
    /// A required claim (`exp`, `sub`) is missing or has the wrong type.
    #[error("the access token lacks a required claim")]
    Claims,
    /// `exp` has passed.
    #[error("the access token has expired")]
    Expired,
    /// `nbf` lies in the future.
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// A refresh token for another user, or another session, than the connection's.
    #[error("a refreshed token must be for the same user and session")]
    UserChanged,
    /// The token's session (`sid`) was ended by its user or an operator.
    #[error("the access token's session was ended; sign in again")]
    Revoked,
}

impl AuthError {
    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Missing => ErrorCode::TokenMissing,
            Self::Malformed => ErrorCode::TokenMalformed,
            Self::Expired => ErrorCode::TokenExpired,
            Self::NotYetValid => ErrorCode::TokenNotYetValid,
            Self::Algorithm
            | Self::Signature
            | Self::Issuer
            | Self::Audience
            | Self::Claims
            | Self::UserChanged
            | Self::Revoked => ErrorCode::TokenInvalid,
        }
    }

    /// A finer reason for the `marquee_auth_failures_total` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::Signature => "signature",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Claims => "claims",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UserChanged => "user_changed",
            Self::Revoked => "revoked",
        }
    }
}

/// Why the verifier could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Neither a secret nor a public key was configured.
    #[error("set MARQUEE_JWT_SECRET (HS256) or MARQUEE_JWT_PUBLIC_KEY (RS256/EdDSA)")]
    NoKey,
    /// HS256 was asked for without a secret, or RS256/EdDSA without a public key.
    #[error("algorithm {0:?} needs {1}")]
    Mismatch(JwtAlgorithm, &'static str),
    /// The public key could not be read or parsed.
    #[error("cannot use the JWT public key: {0}")]
    BadKey(String),
}

/// Verifies access tokens against the configured key, algorithm and claims, and refuses
/// those of ended sessions ([`Revocations`]).
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    revoked: Revocations,
}

/// The sessions ended on this deployment, by tenant and `sid`: tokens naming one are refused.
/// Shared by every clone of a [`Verifier`]; `crate::sessions` keeps it in step with Postgres
/// on every node.
#[derive(Debug, Clone, Default)]
pub struct Revocations(Arc<RwLock<HashSet<(String, String)>>>);

impl Revocations {
    /// Records that `sid` of `tenant` (empty without one) was ended.
    pub fn insert(&self, tenant: &str, sid: &str) {
        self.0
            .write()
            .expect("revocations lock")
            .insert((tenant.to_owned(), sid.to_owned()));
    }

    /// Replaces every entry with `ended` (a reload from the database).
    pub fn replace(&self, ended: HashSet<(String, String)>) {
        *self.0.write().expect("revocations lock") = ended;
    }

    /// Whether `identity`'s session was ended.
    pub fn ended(&self, identity: &Identity) -> bool {
        let Some(sid) = identity.sid.as_deref() else {
            return false;
        };
        let tenant = identity.tenant.as_deref().unwrap_or("");
        let set = self.0.read().expect("revocations lock");
        !set.is_empty() && set.contains(&(tenant.to_owned(), sid.to_owned()))
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier from its settings.
    pub fn from_args(config: &Args) -> Result<Self, KeyError> {
        let algorithm = match (
            config.jwt_algorithm,
            &config.jwt_secret,
            &config.jwt_public_key,
        ) {
            (Some(alg), _, _) => alg,
            (None, Some(_), _) => JwtAlgorithm::Hs256,
            (None, None, Some(_)) => JwtAlgorithm::Rs256,
            (None, None, None) => return Err(KeyError::NoKey),
        };
        let (key, alg) = match algorithm {
            JwtAlgorithm::Hs256 => {
                let secret = config
                    .jwt_secret
                    .as_ref()
                    .ok_or(KeyError::Mismatch(algorithm, "MARQUEE_JWT_SECRET"))?;
                (
                    DecodingKey::from_secret(secret.expose().as_bytes()),
                    Algorithm::HS256,
                )
            }
            JwtAlgorithm::Rs256 | JwtAlgorithm::EdDsa => {
                let pem = config
                    .jwt_public_key
                    .as_deref()
                    .ok_or(KeyError::Mismatch(algorithm, "MARQUEE_JWT_PUBLIC_KEY"))?;
                let pem = read_pem(pem)?;
                if algorithm == JwtAlgorithm::Rs256 {
                    let key = DecodingKey::from_rsa_pem(pem.as_bytes())
                        .map_err(|e| KeyError::BadKey(e.to_string()))?;
                    (key, Algorithm::RS256)
                } else {
                    let key = DecodingKey::from_ed_pem(pem.as_bytes())
                        .map_err(|e| KeyError::BadKey(e.to_string()))?;
                    (key, Algorithm::EdDSA)
                }
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = config.jwt_leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &config.jwt_issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &config.jwt_audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key,
            validation,
            revoked: Revocations::default(),
        })
    }

    /// Verifies a token and returns who it speaks for.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.split('.').count() != 3 {
            return Err(AuthError::Malformed);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| classify(e.kind()))?;
        let claims = data.claims;
        if claims.sub.is_empty() || Channel::inbox(claims.tenant.as_deref(), &claims.sub).is_err() {
            // The user id must be usable as a channel id; anything else is a bad claim.
            return Err(AuthError::Claims);
        }
        // One spelling per tenant: a UUID claim in capitals or without hyphens names the same
        // tenant, and its inbox, results and keys must be the same strings.
        let tenant = claims
            .tenant
            .map(|t| Uuid::parse_str(&t).map_or(t, |id| id.to_string()));
        if claims.sid.as_deref().is_some_and(|sid| !valid_sid(sid)) {
            return Err(AuthError::Claims);
        }
        let identity = Identity {
            user: claims.sub,
            tenant,
            roles: claims.roles,
            expires_at: claims.exp,
            sid: claims.sid,
        };
        if self.revoked.ended(&identity) {
            return Err(AuthError::Revoked);
        }
        Ok(identity)
    }

    /// The ended sessions this verifier refuses.
    pub fn revocations(&self) -> &Revocations {
        &self.revoked
    }

    /// The tolerated clock skew, in seconds.
    pub fn leeway(&self) -> u64 {
        self.validation.leeway
    }
}

/// Longest `sid` accepted.
pub const MAX_SID_LEN: usize = 128;

/// A `sid` is an opaque id of 1 to [`MAX_SID_LEN`] printable ASCII characters: it is stored,
/// listed and compared, never interpreted.
pub fn valid_sid(sid: &str) -> bool {
    !sid.is_empty() && sid.len() <= MAX_SID_LEN && sid.bytes().all(|b| b.is_ascii_graphic())
}

fn classify(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => AuthError::Algorithm,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::Issuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::Audience,
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::InvalidSubject => AuthError::Claims,
        // A header naming an algorithm outside the library's list (`none`, say) fails to
        // deserialize; claims of the wrong shape (a missing `sub` or `exp`, a string `exp`)
        // are refused claims; any other JSON failure is a malformed token.
        ErrorKind::Json(e) if e.to_string().contains("variant") => AuthError::Algorithm,
        ErrorKind::Json(e)
            if e.to_string().contains("missing field")
                || e.to_string().contains("invalid type") =>
        {
            AuthError::Claims
        }
        _ => AuthError::Malformed,
    }
}

fn read_pem(value: &str) -> Result<String, KeyError> {
    if value.contains("-----BEGIN") {
        Ok(value.to_owned())
    } else {
        std::fs::read_to_string(value).map_err(|e| KeyError::BadKey(format!("{value}: {e}")))
    }
}

/// Signs HS256 tokens; used by the demo, tests and tools, never by the hub itself.
pub fn sign_hs256(secret: &str, claims: &Claims) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing with a byte secret cannot fail")
}

/// An HS256 token for `user` with `roles`, valid for `ttl_secs` from now: what the demo, the
/// `marquee token` command and the load generator hand out.
pub fn mint_hs256(secret: &str, user: &str, roles: &[&str], ttl_secs: u64) -> String {
    sign_hs256(
        secret,
        &Claims {
            sub: user.to_owned(),
            tenant: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            exp: crate::clock::now_secs() + ttl_secs,
            nbf: None,
            iss: None,
            aud: None,
            sid: None,
        },
    )
}
