//! Channel kinds and the rules for channel names.

use crate::limits::MAX_CHANNEL_NAME_LEN;
use std::fmt;

/// The channel a signed-in user's server-to-user events go on (`sendToUser`):
/// `#server-to-user-{user_id}`. Reserved: a connection may subscribe only
/// to its own, once signed in as that user.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// The user a `#server-to-user-` channel belongs to.
pub fn server_to_user(name: &str) -> Option<&str> {
    name.strip_prefix(SERVER_TO_USER_PREFIX)
        .filter(|u| !u.is_empty())
}

/// Whether events on `name` are cached: `cache-`, `private-cache-`,
/// `private-encrypted-cache-` and `presence-cache-` channels replay their
/// last event to each new subscriber.
pub fn is_cache_channel(name: &str) -> bool {
    [
        "cache-",
        "private-cache-",
        "private-encrypted-cache-",
        "presence-cache-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// What kind of channel a name denotes; the prefix decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Anyone may subscribe; clients may not send events.
    Public,
    /// Subscribing needs a signature from the app's auth endpoint.
    Private,
    /// End-to-end encrypted private channel; the server relays it like a private one.
    PrivateEncrypted,
    /// A private channel that also tracks who is subscribed.
    Presence,
}

impl ChannelKind {
    /// The kind of channel a (valid) name denotes.
    pub fn of(name: &str) -> ChannelKind {
        if name.starts_with("presence-") {
            ChannelKind::Presence
        } else if name.starts_with("private-encrypted-") {
            ChannelKind::PrivateEncrypted
        } else if name.starts_with("private-") {
            ChannelKind::Private
        } else {
            ChannelKind::Public
        }
    }

    /// Whether subscribing needs an `auth` signature.
    pub fn needs_auth(self) -> bool {
        !matches!(self, ChannelKind::Public)
    }

    /// Whether clients may send `client-*` events on it.
    pub fn allows_client_events(self) -> bool {
        self.needs_auth()
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// The name is empty.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than the limit.
    #[error("channel name is {len} characters long; the limit is {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a character outside `A-Za-z0-9_-=@,.;`.
    #[error("channel name contains {0:?}; only A-Z a-z 0-9 _ - = @ , . ; are allowed")]
    BadCharacter(char),
    /// `#server-to-user-` channels are reserved for the server.
    #[error("channel names starting with '#' are reserved")]
    Reserved,
}

/// A channel name that has passed [`ChannelName::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(String);

impl ChannelName {
    /// Checks a name against Pusher's rules: 1–164 characters of
    /// `A-Za-z0-9_-=@,.;`.
    pub fn parse(name: &str) -> Result<ChannelName, ChannelNameError> {
        validate(name, MAX_CHANNEL_NAME_LEN)?;
        Ok(ChannelName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kind its prefix denotes.
    pub fn kind(&self) -> ChannelKind {
        ChannelKind::of(&self.0)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Checks a channel name with a configurable length limit.
pub fn validate(name: &str, max_len: usize) -> Result<(), ChannelNameError> {
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    // `#server-to-user-{id}` is the one reserved name a client may use.
    let checked = match name.strip_prefix('#') {
        Some(_) => server_to_user(name).ok_or(ChannelNameError::Reserved)?,
        None => name,
    };
    if let Some(c) = checked.chars().find(|c| !is_channel_char(*c)) {
        return Err(ChannelNameError::BadCharacter(c));
    }
    if name.len() > max_len {
        return Err(ChannelNameError::TooLong {
            len: name.len(),
            max: max_len,
        });
    }
    Ok(())
}

fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_prefix() {
        assert_eq!(ChannelKind::of("presence-x"), ChannelKind::Presence);
        assert_eq!(ChannelKind::of("private-x"), ChannelKind::Private);
        assert_eq!(
            ChannelKind::of("private-encrypted-x"),
            ChannelKind::PrivateEncrypted
        );
        assert_eq!(ChannelKind::of("x"), ChannelKind::Public);
        assert_eq!(ChannelKind::of("presence"), ChannelKind::Public);
        assert!(!ChannelKind::Public.needs_auth());
        assert!(ChannelKind::Presence.allows_client_events());
        assert!(!ChannelKind::Public.allows_client_events());
    }

    #[test]
    fn names_follow_the_rules() {
        assert!(ChannelName::parse("presence-whosin").is_ok());
        assert!(ChannelName::parse("a_b-c=d@e,f.g;h").is_ok());
        assert_eq!(ChannelName::parse(""), Err(ChannelNameError::Empty));
        assert_eq!(
            ChannelName::parse("a b"),
            Err(ChannelNameError::BadCharacter(' '))
        );
        assert_eq!(
            ChannelName::parse("é"),
            Err(ChannelNameError::BadCharacter('é'))
        );
        // The server-to-user channel is the one '#' name allowed.
        let own = ChannelName::parse("#server-to-user-1").unwrap();
        assert_eq!(own.kind(), ChannelKind::Public);
        assert_eq!(server_to_user(own.as_str()), Some("1"));
        for reserved in ["#server-to-user-", "#other", "#", "#server-to-user"] {
            assert_eq!(
                ChannelName::parse(reserved),
                Err(ChannelNameError::Reserved),
                "{reserved}"
            );
        }
        assert_eq!(
            ChannelName::parse("#server-to-user-a b"),
            Err(ChannelNameError::BadCharacter(' '))
        );
        assert_eq!(server_to_user("presence-x"), None);
        assert!(is_cache_channel("cache-x") && is_cache_channel("presence-cache-x"));
        assert!(
            is_cache_channel("private-cache-x") && is_cache_channel("private-encrypted-cache-x")
        );
        assert!(!is_cache_channel("x-cache-") && !is_cache_channel("private-x"));
        let ok = "a".repeat(164);
        assert!(ChannelName::parse(&ok).is_ok());
        let long = "a".repeat(165);
        assert_eq!(
            ChannelName::parse(&long),
            Err(ChannelNameError::TooLong { len: 165, max: 164 })
        );
        assert!(validate(&long, 200).is_ok());
    }

    #[test]
    fn error_messages_say_what_is_allowed() {
        let e = ChannelName::parse("a/b").unwrap_err().to_string();
        assert!(e.contains("only A-Z"), "{e}");
    }
}
