//! The `Marquee-Signature` header that payment providers put on their hook calls.
//!
//! ```text
//! Marquee-Signature: t=1764345600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//! ```
//!
//! `v1` is the lowercase hex HMAC-SHA256, under the provider's hook secret, of the timestamp, a
//! `.` and the raw request body, byte for byte: `"<t>.<body>"`. Binding the timestamp into the
//! MAC is what makes the tolerance window a replay defence: an old call cannot be sent again
//! with a fresh `t`.
//!
//! Rotation: a provider may hold several secrets at once, and a header may carry several `v1`
//! values (one per secret the sender signs with). A call is genuine if any `v1` matches under
//! any active secret. To rotate, add the new secret, let the provider switch to it, then remove
//! the old one; no call is refused in between.
//!
//! The MAC is checked before the timestamp, so [`SignatureError::Expired`] always means "signed
//! by us, but too old or too far in the future": a replay or a badly wrong clock, never a
//! forgery. Comparisons are constant-time ([`Mac::verify_slice`]).

use hmac::{Hmac, Mac};
use marquee_protocol::ErrorCode;
use sha2::Sha256;

/// The header's name.
pub const HEADER: &str = "Marquee-Signature";

/// How far the signed timestamp may lie from the receiver's clock, either way, by default.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Why a hook call's signature was refused. Each maps to a stable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `Marquee-Signature` header.
    #[error("the Marquee-Signature header is missing")]
    Missing,
    /// The header is not `t=<unix seconds>,v1=<64 hex digits>[,v1=…]`.
    #[error("the Marquee-Signature header is malformed")]
    Malformed,
    /// No `v1` matches the body under any active secret: wrong secret or altered body.
    #[error("the signature does not match the body")]
    Mismatch,
    /// Genuine, but signed further from now than the tolerance allows.
    #[error("the signature's timestamp is outside the tolerance")]
    Expired,
}

impl SignatureError {
    /// The stable code of the HTTP 400 answer.
    pub fn code(self) -> ErrorCode {
        match self {
            Self::Missing => ErrorCode::SignatureMissing,
            Self::Malformed | Self::Mismatch => ErrorCode::SignatureInvalid,
            Self::Expired => ErrorCode::SignatureExpired,
        }
    }
}

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value a sender signing `body` at `timestamp` with `secret` sends.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// The parts of a well-formed header.
struct Parsed {
    timestamp: u64,
    tags: Vec<[u8; 32]>,
}

fn parse(header: &str) -> Result<Parsed, SignatureError> {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" if timestamp.is_none() => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed);
                }
                timestamp = Some(value.parse().map_err(|_| SignatureError::Malformed)?);
            }
            "v1" => {
                let mut tag = [0u8; 32];
                hex::decode_to_slice(value, &mut tag).map_err(|_| SignatureError::Malformed)?;
                tags.push(tag);
            }
            // Other schemes (a future `v2`) are skipped, so senders can add them first.
            "t" => return Err(SignatureError::Malformed),
            _ => {}
        }
        // A header is small; anything with dozens of parts is not a signature.
        if tags.len() > 8 {
            return Err(SignatureError::Malformed);
        }
    }
    match timestamp {
        Some(timestamp) if !tags.is_empty() => Ok(Parsed { timestamp, tags }),
        _ => Err(SignatureError::Malformed),
    }
}

/// Checks a hook call: `header` is the `Marquee-Signature` value if present, `body` the raw
/// body, `secrets` every active secret of the provider, `now` the receiver's unix time.
/// Returns the signed timestamp.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[impl AsRef<[u8]>],
    now: u64,
    tolerance_secs: u64,
) -> Result<u64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let parsed = parse(header)?;
    let genuine = secrets.iter().any(|secret| {
        parsed.tags.iter().any(|tag| {
            mac(secret.as_ref(), parsed.timestamp, body)
                .verify_slice(tag)
                .is_ok()
        })
    });
    if !genuine {
        return Err(SignatureError::Mismatch);
    }
    if parsed.timestamp.abs_diff(now) > tolerance_secs {
        return Err(SignatureError::Expired);
    }
    Ok(parsed.timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_345_600;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment.succeeded"}"#;

    fn check(header: Option<&str>, body: &[u8], secrets: &[&str]) -> Result<u64, SignatureError> {
        verify(header, body, secrets, NOW, DEFAULT_TOLERANCE_SECS)
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed with Python's standard library, not with this code:
        //   hmac.new(b"whsec_test", b'1764345600.{"id":"evt_1","type":"payment.succeeded"}',
        //            hashlib.sha256).hexdigest()
        assert_eq!(
            sign(b"whsec_test", NOW, BODY),
            "t=1764345600,v1=a6718c77515af0e0e7a4cee714b0acc38181a85e29d54bab33358ae44b592778"
        );
    }

    /// (name, header, body, active secrets, expected).
    type Case<'a> = (
        &'a str,
        Option<String>,
        &'a [u8],
        &'a [&'a str],
        Result<u64, SignatureError>,
    );

    #[test]
    fn the_signature_table() {
        let good = sign(b"current", NOW, BODY);
        let cases: &[Case<'_>] = &[
            ("valid", Some(good.clone()), BODY, &["current"], Ok(NOW)),
            (
                "tampered body",
                Some(good.clone()),
                br#"{"id":"evt_1","type":"payment.refunded"}"#,
                &["current"],
                Err(SignatureError::Mismatch),
            ),
            (
                "wrong secret",
                Some(good.clone()),
                BODY,
                &["another"],
                Err(SignatureError::Mismatch),
            ),
            (
                "rotated: old and new secret active, signed with the old",
                Some(sign(b"old", NOW, BODY)),
                BODY,
                &["new", "old"],
                Ok(NOW),
            ),
            (
                "rotated: the sender signs with both, receiver knows only the new",
                Some(format!(
                    "{},v1={}",
                    sign(b"old", NOW, BODY),
                    &sign(b"new", NOW, BODY)[16..]
                )),
                BODY,
                &["new"],
                Ok(NOW),
            ),
            (
                "stale timestamp",
                Some(sign(b"current", NOW - 301, BODY)),
                BODY,
                &["current"],
                Err(SignatureError::Expired),
            ),
            (
                "at the edge of the tolerance",
                Some(sign(b"current", NOW - 300, BODY)),
                BODY,
                &["current"],
                Ok(NOW - 300),
            ),
            (
                "from the future",
                Some(sign(b"current", NOW + 301, BODY)),
                BODY,
                &["current"],
                Err(SignatureError::Expired),
            ),
            (
                "a fresh timestamp on an old signature",
                Some(good.replace(&NOW.to_string(), &(NOW + 1).to_string())),
                BODY,
                &["current"],
                Err(SignatureError::Mismatch),
            ),
            (
                "missing header",
                None,
                BODY,
                &["current"],
                Err(SignatureError::Missing),
            ),
            (
                "empty header",
                Some(String::new()),
                BODY,
                &["current"],
                Err(SignatureError::Malformed),
            ),
            (
                "no timestamp",
                Some(good.split_once(',').unwrap().1.to_owned()),
                BODY,
                &["current"],
                Err(SignatureError::Malformed),
            ),
            (
                "no v1",
                Some(format!("t={NOW}")),
                BODY,
                &["current"],
                Err(SignatureError::Malformed),
            ),
            (
                "short v1",
                Some(format!("t={NOW},v1=abcd")),
                BODY,
                &["current"],
                Err(SignatureError::Malformed),
            ),
            (
                "negative timestamp",
                Some(format!("t=-{NOW},v1={}", "0".repeat(64))),
                BODY,
                &["current"],
                Err(SignatureError::Malformed),
            ),
            (
                "two timestamps",
                Some(format!("t={NOW},{good}")),
                BODY,
                &["current"],
                Err(SignatureError::Malformed),
            ),
            (
                "no secrets configured",
                Some(good),
                BODY,
                &[],
                Err(SignatureError::Mismatch),
            ),
        ];
        for (name, header, body, secrets, expected) in cases {
            assert_eq!(
                check(header.as_deref(), body, secrets),
                *expected,
                "case: {name}"
            );
        }
    }

    #[test]
    fn every_refusal_has_a_stable_code() {
        assert_eq!(SignatureError::Missing.code().as_str(), "signature_missing");
        assert_eq!(
            SignatureError::Malformed.code().as_str(),
            "signature_invalid"
        );
        assert_eq!(
            SignatureError::Mismatch.code().as_str(),
            "signature_invalid"
        );
        assert_eq!(SignatureError::Expired.code().as_str(), "signature_expired");
    }
}
