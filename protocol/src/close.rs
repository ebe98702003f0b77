//! The WebSocket close codes a Marquee server uses, and what a client should do on each.

/// A documented close code. The numeric values never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: normal closure (the client asked, or the server had nothing more to say).
    Normal,
    /// 1009: a frame or message exceeded the server's maximum message size. Do not resend it.
    TooBig,
    /// 1011: an unexpected server error. Reconnect with backoff.
    InternalError,
    /// 1012: the node is restarting or draining. A `reconnect` message with a delay precedes it;
    /// reconnect after that delay (to any node) and resume.
    ServiceRestart,
    /// 4001: the access token's `exp` passed without a `refresh`. Reconnect with a fresh token.
    AuthExpired,
    /// 4002: the connection could not keep up with its outbound queue. Reconnect and resume.
    SlowConsumer,
    /// 4003: sustained abuse of the inbound rate limit. Reconnect only after backing off.
    RateLimited,
    /// 4004: no pong answered the server's ping in time. Reconnect and resume.
    HeartbeatTimeout,
    /// 4005: the token's sign-in session (`sid`) was ended by its user or an operator. Do not
    /// reconnect with it: its tokens are refused; sign in again.
    SessionEnded,
}

impl CloseCode {
    /// The numeric code sent in the close frame.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::TooBig => 1009,
            Self::InternalError => 1011,
            Self::ServiceRestart => 1012,
            Self::AuthExpired => 4001,
            Self::SlowConsumer => 4002,
            Self::RateLimited => 4003,
            Self::HeartbeatTimeout => 4004,
            Self::SessionEnded => 4005,
        }
    }

    /// The short reason string sent with the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::TooBig => "message_too_big",
            Self::InternalError => "internal_error",
            Self::ServiceRestart => "service_restart",
            Self::AuthExpired => "auth_expired",
            Self::SlowConsumer => "slow_consumer",
            Self::RateLimited => "rate_limited",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::SessionEnded => "session_ended",
        }
    }

    /// Looks up a close code by its numeric value.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// Whether a client should reconnect automatically after this close.
    pub fn should_reconnect(self) -> bool {
        !matches!(self, Self::Normal | Self::TooBig | Self::SessionEnded)
    }

    /// Every close code.
    pub const ALL: &'static [CloseCode] = &[
        Self::Normal,
        Self::TooBig,
        Self::InternalError,
        Self::ServiceRestart,
        Self::AuthExpired,
        Self::SlowConsumer,
        Self::RateLimited,
        Self::HeartbeatTimeout,
        Self::SessionEnded,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_code_round_trips_through_its_number() {
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(code.code()), Some(*code));
        }
        assert_eq!(CloseCode::from_code(4999), None);
    }
}
