//! Who is calling an HTTP route: the bearer token, verified, as an [`Identity`], and the
//! extractors routes take it through ([`Caller`], [`Admin`]).
//!
//! A route's state gives the extractors the verifier through `FromRef<S> for Arc<Verifier>`,
//! so every domain's state works with them.

use super::error::ApiError;
use crate::auth::{AuthError, Identity, Role, Verifier};
use crate::metrics;
use crate::security::SecurityEvent;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use std::sync::Arc;
use uuid::Uuid;

/// A refused token: 401, with the RFC 6750 challenge.
pub(crate) fn unauthorized(error: &AuthError) -> ApiError {
    metrics::auth_failure(error.reason());
    let challenge = match error {
        AuthError::Missing => r#"Bearer realm="marquee""#,
        _ => r#"Bearer realm="marquee", error="invalid_token""#,
    };
    ApiError::new(StatusCode::UNAUTHORIZED, error.code(), error.to_string())
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )
        .security(SecurityEvent::auth_failure(error.reason()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn query_token(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

/// Verifies the `Authorization: Bearer` token of an HTTP API call.
pub(crate) fn bearer_identity(
    verifier: &Verifier,
    headers: &HeaderMap,
) -> Result<Identity, ApiError> {
    let token = bearer(headers).ok_or_else(|| unauthorized(&AuthError::Missing))?;
    verifier.verify(token).map_err(|e| unauthorized(&e))
}

/// Verifies the caller's token from the header or, for browsers, the `access_token` query
/// parameter (a browser cannot set headers on a WebSocket upgrade).
pub(crate) fn header_or_query_identity(
    verifier: &Verifier,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Identity, ApiError> {
    let token = match bearer(headers) {
        Some(t) => Some(t.to_owned()),
        None => query_token(uri),
    };
    let token = token.ok_or_else(|| unauthorized(&AuthError::Missing))?;
    verifier.verify(&token).map_err(|e| unauthorized(&e))
}

/// The caller's tenant, for routes that need one.
pub(crate) fn tenant_of(identity: &Identity) -> Result<Uuid, ApiError> {
    identity
        .tenant_id()
        .ok_or_else(|| ApiError::forbidden("a token with a tenant is needed"))
}

/// Any caller with a valid bearer token.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<Verifier>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let verifier = Arc::<Verifier>::from_ref(state);
        bearer_identity(&verifier, &parts.headers).map(Self)
    }
}

/// An operator of one tenant, from the bearer token: role `admin` and a `tenant` claim.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The operator's user id (recorded as the audit actor).
    pub user: String,
    /// The tenant every query is scoped by.
    pub tenant: Uuid,
}

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    Arc<Verifier>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let verifier = Arc::<Verifier>::from_ref(state);
        let identity = bearer_identity(&verifier, &parts.headers)?;
        match identity.tenant_id() {
            Some(tenant) if identity.has_role(Role::Admin) => Ok(Self {
                user: identity.user,
                tenant,
            }),
            _ => Err(ApiError::forbidden(
                "the catalog admin API needs the admin role and a tenant",
            )),
        }
    }
}
