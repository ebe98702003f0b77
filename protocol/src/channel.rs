//! Channel names and who may subscribe to them.
//!
//! A channel name is `{kind}:{id}`. The id is 1 to 128 characters from `[A-Za-z0-9_.@/-]`, so a
//! name never needs escaping in JSON, URLs, Redis keys or logs.

use std::fmt;

/// The maximum length of a channel id (the part after `kind:`).
pub const MAX_CHANNEL_ID_LEN: usize = 128;

/// The kinds of channel, each with its own subscription rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChannelKind {
    /// `seats:{event}`: live seat availability (snapshot + deltas). Any authenticated user.
    Seats,
    /// `queue:{onsale}`: aggregate waiting-room counts. Any authenticated user.
    Queue,
    /// `inbox:{user}`: one buyer's private results. Subscribed server-side on connect; only its
    /// owner may (re)subscribe.
    Inbox,
    /// `admin:{onsale}`: operator dashboard feed. Role `admin`.
    Admin,
    /// `gate:{event}`: check-in scans for all gates of an event. Role `gate`.
    Gate,
}

impl ChannelKind {
    /// The prefix before the colon.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Seats => "seats",
            Self::Queue => "queue",
            Self::Inbox => "inbox",
            Self::Admin => "admin",
            Self::Gate => "gate",
        }
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        Some(match prefix {
            "seats" => Self::Seats,
            "queue" => Self::Queue,
            "inbox" => Self::Inbox,
            "admin" => Self::Admin,
            "gate" => Self::Gate,
            _ => return None,
        })
    }

    /// Whether deltas on this channel may be dropped under back-pressure (the subscriber is then
    /// told to resync). Only live seat availability qualifies: it is state, re-derivable from a
    /// snapshot. Results, queue positions and scans are never dropped.
    pub fn coalescible(self) -> bool {
        matches!(self, Self::Seats)
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelError {
    /// No `kind:` prefix, or an unknown kind.
    UnknownKind,
    /// The id is empty, too long, or has a character outside `[A-Za-z0-9_.@/-]`.
    BadId,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKind => {
                f.write_str("channel kind must be one of seats, queue, inbox, admin, gate")
            }
            Self::BadId => write!(
                f,
                "channel id must be 1 to {MAX_CHANNEL_ID_LEN} characters from [A-Za-z0-9_.@/-]"
            ),
        }
    }
}

impl std::error::Error for ChannelError {}

/// A parsed, valid channel name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel {
    kind: ChannelKind,
    name: String,
}

impl Channel {
    /// Parses and validates a channel name such as `seats:evt_42`.
    pub fn parse(name: &str) -> Result<Self, ChannelError> {
        let (prefix, id) = name.split_once(':').ok_or(ChannelError::UnknownKind)?;
        let kind = ChannelKind::from_prefix(prefix).ok_or(ChannelError::UnknownKind)?;
        if !valid_id(id) {
            return Err(ChannelError::BadId);
        }
        Ok(Self {
            kind,
            name: name.to_owned(),
        })
    }

    /// Builds a channel from a kind and an id, validating the id.
    pub fn new(kind: ChannelKind, id: &str) -> Result<Self, ChannelError> {
        if !valid_id(id) {
            return Err(ChannelError::BadId);
        }
        Ok(Self {
            kind,
            name: format!("{}:{id}", kind.prefix()),
        })
    }

    /// The private inbox of a user, optionally scoped by tenant (`inbox:{tenant}/{user}`), so
    /// that equal user ids in two tenants never share an inbox. Neither part may contain `/`:
    /// otherwise tenant `a` with user `b/c` and tenant `a/b` with user `c` would share one.
    pub fn inbox(tenant: Option<&str>, user: &str) -> Result<Self, ChannelError> {
        if user.contains('/') || tenant.is_some_and(|t| t.contains('/')) {
            return Err(ChannelError::BadId);
        }
        match tenant {
            Some(tenant) => Self::new(ChannelKind::Inbox, &format!("{tenant}/{user}")),
            None => Self::new(ChannelKind::Inbox, user),
        }
    }

    /// The channel's kind.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The whole name, e.g. `seats:evt_42`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The part after the colon.
    pub fn id(&self) -> &str {
        &self.name[self.kind.prefix().len() + 1..]
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CHANNEL_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_channel_parses_into_kind_and_id() {
        let ch = Channel::parse("seats:evt_42").unwrap();
        assert_eq!(ch.kind(), ChannelKind::Seats);
        assert_eq!(ch.id(), "evt_42");
        assert_eq!(ch.as_str(), "seats:evt_42");
    }

    #[test]
    fn unknown_kinds_and_bad_ids_are_refused() {
        assert_eq!(Channel::parse("rooms:1"), Err(ChannelError::UnknownKind));
        assert_eq!(Channel::parse("seats"), Err(ChannelError::UnknownKind));
        assert_eq!(Channel::parse("seats:"), Err(ChannelError::BadId));
        assert_eq!(Channel::parse("seats:a b"), Err(ChannelError::BadId));
        assert_eq!(Channel::parse("seats:a:b"), Err(ChannelError::BadId));
        let long = format!("seats:{}", "x".repeat(MAX_CHANNEL_ID_LEN + 1));
        assert_eq!(Channel::parse(&long), Err(ChannelError::BadId));
    }

    #[test]
    fn inbox_parts_cannot_contain_a_slash_so_two_tenants_never_share_an_inbox() {
        assert_eq!(Channel::inbox(Some("a"), "b/c"), Err(ChannelError::BadId));
        assert_eq!(Channel::inbox(Some("a/b"), "c"), Err(ChannelError::BadId));
        assert_eq!(Channel::inbox(None, "a/b/c"), Err(ChannelError::BadId));
    }

    #[test]
    fn inboxes_are_scoped_by_tenant_when_there_is_one() {
        assert_eq!(Channel::inbox(None, "u1").unwrap().as_str(), "inbox:u1");
        assert_eq!(
            Channel::inbox(Some("acme"), "u1").unwrap().as_str(),
            "inbox:acme/u1"
        );
    }

    #[test]
    fn only_seat_deltas_are_coalescible() {
        assert!(ChannelKind::Seats.coalescible());
        for kind in [
            ChannelKind::Queue,
            ChannelKind::Inbox,
            ChannelKind::Admin,
            ChannelKind::Gate,
        ] {
            assert!(!kind.coalescible());
        }
    }
}
