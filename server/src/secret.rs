//! Secrets in settings: kept out of `Debug` output and logs.

use std::fmt;

/// A secret string that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Fewest bytes a signing secret may have: 256 bits, the HMAC-SHA256 key size. A shorter one
/// (`change-me`) can be guessed offline from one signed token.
pub const MIN_SECRET_LEN: usize = 32;

impl Secret {
    /// The secret, if it is at least [`MIN_SECRET_LEN`] bytes; `what` names it in the refusal.
    pub fn strong(self, what: &str) -> Result<Self, String> {
        if self.0.len() < MIN_SECRET_LEN {
            return Err(format!(
                "{what} must be at least {MIN_SECRET_LEN} bytes (e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(self)
    }
}

/// The clap value parser of a signing secret: refused when shorter than [`MIN_SECRET_LEN`].
pub fn parse_strong(text: &str) -> Result<Secret, String> {
    Secret::new(text).strong("the secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused() {
        assert!(parse_strong("change-me").is_err());
        assert!(parse_strong(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
