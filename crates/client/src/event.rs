//! What the caller of the client sees.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// A presence member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The user id.
    pub id: String,
    /// Their `user_info` (`null` when the server sent none).
    pub info: Value,
}

/// Why the client stopped for good (no further reconnects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// 4001: the server does not know the app key.
    UnknownAppKey(String),
    /// 4009: the connection was not authorized or was terminated.
    Unauthorized(String),
    /// 4004: the app is over its connection quota.
    OverQuota(String),
    /// Another 4000–4099 close.
    Refused {
        /// The close code.
        code: u16,
        /// The server's reason.
        reason: String,
    },
    /// The REST API refused a watcher's request (HTTP 400–404: a wrong
    /// secret or app id, no such channel); see [`crate::rest`].
    RestRefused {
        /// The HTTP status.
        status: u16,
        /// What the server said.
        reason: String,
    },
    /// The caller closed the client.
    Closed,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::UnknownAppKey(r) => write!(
                f,
                "the server does not know this app key (4001: {r}); check --key"
            ),
            StopReason::Unauthorized(r) => write!(f, "not authorized (4009: {r})"),
            StopReason::OverQuota(r) => {
                write!(f, "the app is over its connection quota (4004: {r})")
            }
            StopReason::Refused { code, reason } => {
                write!(f, "the server refused the connection ({code}: {reason})")
            }
            StopReason::RestRefused { status, reason } => write!(
                f,
                "the REST API refused to list the channel's users (HTTP {status}: {reason}); check the app id and secret"
            ),
            StopReason::Closed => write!(f, "closed"),
        }
    }
}

/// The connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// First connection attempt in progress.
    Connecting,
    /// Connected with this socket id.
    Connected {
        /// The socket id the server gave.
        socket_id: String,
    },
    /// Lost; the next attempt starts after `delay`.
    Reconnecting {
        /// Wait before the next attempt.
        delay: Duration,
        /// What happened.
        reason: String,
        /// The last attempt could not reach the server at all (no TCP or
        /// WebSocket handshake), as opposed to a connection that was lost.
        unreachable: bool,
    },
    /// Stopped for good.
    Disconnected {
        /// Why.
        reason: StopReason,
    },
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The connection state changed.
    State(ConnectionState),
    /// A public or private channel is subscribed.
    Subscribed {
        /// The channel.
        channel: String,
    },
    /// A presence channel is subscribed for the first time: everyone present.
    Snapshot {
        /// The channel.
        channel: String,
        /// This client's own member, when the server listed it.
        me: Option<Member>,
        /// Every member, `me` included, sorted by id.
        members: Vec<Member>,
    },
    /// Someone arrived (or was found present after a reconnect).
    MemberAdded {
        /// The channel.
        channel: String,
        /// Who.
        member: Member,
        /// Members now.
        count: usize,
    },
    /// Someone left (or was found gone after a reconnect).
    MemberRemoved {
        /// The channel.
        channel: String,
        /// Who (with their last known info).
        member: Member,
        /// Members now.
        count: usize,
    },
    /// A subscription was refused, by the authorizer or the server.
    SubscriptionFailed {
        /// The channel.
        channel: String,
        /// HTTP-like status (401/403 for auth refusals) when known.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
    /// An application or client event on a channel.
    Message {
        /// The channel.
        channel: String,
        /// Event name.
        event: String,
        /// Payload (the string's content when it was a JSON string).
        data: String,
        /// Sender, for client events on presence channels.
        user_id: Option<String>,
    },
    /// The server reported a problem with something we sent (`pusher:error`).
    ServerError {
        /// Its code, if any.
        code: Option<u16>,
        /// Its message.
        message: String,
    },
}

/// The JSON form of an [`Event`]: one object per event, tagged by `event`.
///
/// This is the line `whosin join --json` prints (a public contract, see the
/// README), and the shape the desktop window and the web page render. The
/// golden file `tests/golden/presence-events.json` pins it: the Rust tests
/// check the [`crate::Session`] against it, the page's JavaScript tests
/// check `ui/transport.js` against the same file.
///
/// ```
/// use whosin_client::{Event, JsonEvent, Member};
///
/// let e = Event::MemberAdded {
///     channel: "presence-whosin".into(),
///     member: Member { id: "ada".into(), info: serde_json::json!({"name": "Ada"}) },
///     count: 2,
/// };
/// assert_eq!(
///     JsonEvent::from(&e).to_string(),
///     r#"{"event":"member_added","channel":"presence-whosin","member":{"id":"ada","info":{"name":"Ada"}},"count":2}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JsonEvent {
    /// The connection state.
    State(JsonState),
    /// Everyone present in a presence channel, at the first subscription.
    Snapshot {
        /// The channel.
        channel: String,
        /// How many.
        count: usize,
        /// This client's own member, when listed.
        me: Option<Member>,
        /// Everyone, sorted by id.
        members: Vec<Member>,
    },
    /// Someone arrived.
    MemberAdded {
        /// The channel.
        channel: String,
        /// Who.
        member: Member,
        /// How many now.
        count: usize,
    },
    /// Someone left.
    MemberRemoved {
        /// The channel.
        channel: String,
        /// Who.
        member: Member,
        /// How many now.
        count: usize,
    },
    /// A subscription was refused.
    SubscriptionError {
        /// The channel.
        channel: String,
        /// HTTP-like status, when known.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
    /// A public or private channel is subscribed.
    Subscribed {
        /// The channel.
        channel: String,
    },
    /// An event on a channel.
    Message {
        /// The channel.
        channel: String,
        /// The event's name.
        name: String,
        /// Its payload.
        data: String,
        /// The sender, for client events on presence channels.
        user_id: Option<String>,
    },
    /// The server reported a problem (`pusher:error`).
    ServerError {
        /// Its code, if any.
        code: Option<u16>,
        /// Its message.
        message: String,
    },
    /// The public IP address a lookup found.
    PublicIp {
        /// The address.
        ip: String,
    },
}

/// The `state` of a [`JsonEvent::State`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JsonState {
    /// The first attempt is under way.
    Connecting,
    /// Connected.
    Connected {
        /// The socket id.
        socket_id: String,
    },
    /// Lost; the next attempt is after `delay_ms`.
    Reconnecting {
        /// Milliseconds until the next attempt.
        delay_ms: u64,
        /// What happened.
        reason: String,
    },
    /// Stopped for good.
    Disconnected {
        /// Why.
        reason: String,
    },
}

impl From<&ConnectionState> for JsonState {
    fn from(s: &ConnectionState) -> JsonState {
        match s {
            ConnectionState::Connecting => JsonState::Connecting,
            ConnectionState::Connected { socket_id } => JsonState::Connected {
                socket_id: socket_id.clone(),
            },
            ConnectionState::Reconnecting { delay, reason, .. } => JsonState::Reconnecting {
                delay_ms: delay.as_millis() as u64,
                reason: reason.clone(),
            },
            ConnectionState::Disconnected { reason } => JsonState::Disconnected {
                reason: reason.to_string(),
            },
        }
    }
}

impl From<&Event> for JsonEvent {
    fn from(e: &Event) -> JsonEvent {
        match e.clone() {
            Event::State(s) => JsonEvent::State(JsonState::from(&s)),
            Event::Subscribed { channel } => JsonEvent::Subscribed { channel },
            Event::Snapshot {
                channel,
                me,
                members,
            } => JsonEvent::Snapshot {
                channel,
                count: members.len(),
                me,
                members,
            },
            Event::MemberAdded {
                channel,
                member,
                count,
            } => JsonEvent::MemberAdded {
                channel,
                member,
                count,
            },
            Event::MemberRemoved {
                channel,
                member,
                count,
            } => JsonEvent::MemberRemoved {
                channel,
                member,
                count,
            },
            Event::SubscriptionFailed {
                channel,
                status,
                message,
            } => JsonEvent::SubscriptionError {
                channel,
                status,
                message,
            },
            Event::Message {
                channel,
                event,
                data,
                user_id,
            } => JsonEvent::Message {
                channel,
                name: event,
                data,
                user_id,
            },
            Event::ServerError { code, message } => JsonEvent::ServerError { code, message },
        }
    }
}

impl std::fmt::Display for JsonEvent {
    /// One JSON line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| std::fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_lines_keep_the_readme_contract() {
        let line = |e: Event| serde_json::to_value(JsonEvent::from(&e)).unwrap();
        assert_eq!(
            line(Event::State(ConnectionState::Reconnecting {
                delay: Duration::from_millis(850),
                reason: "lost".into(),
                unreachable: false
            })),
            json!({"event":"state","state":"reconnecting","delay_ms":850,"reason":"lost"})
        );
        assert_eq!(
            line(Event::State(ConnectionState::Connected {
                socket_id: "1.2".into()
            })),
            json!({"event":"state","state":"connected","socket_id":"1.2"})
        );
        assert_eq!(
            line(Event::State(ConnectionState::Connecting)),
            json!({"event":"state","state":"connecting"})
        );
        let ann = Member {
            id: "ann".into(),
            info: json!({"name":"Ann"}),
        };
        assert_eq!(
            line(Event::Snapshot {
                channel: "presence-w".into(),
                me: Some(ann.clone()),
                members: vec![ann.clone()]
            }),
            json!({"event":"snapshot","channel":"presence-w","count":1,
                   "me":{"id":"ann","info":{"name":"Ann"}},"members":[{"id":"ann","info":{"name":"Ann"}}]})
        );
        assert_eq!(
            line(Event::Message {
                channel: "c".into(),
                event: "client-x".into(),
                data: "{}".into(),
                user_id: None
            }),
            json!({"event":"message","channel":"c","name":"client-x","data":"{}","user_id":null})
        );
        assert_eq!(
            line(Event::SubscriptionFailed {
                channel: "c".into(),
                status: Some(403),
                message: "no".into()
            }),
            json!({"event":"subscription_error","channel":"c","status":403,"message":"no"})
        );
        let back: JsonEvent =
            serde_json::from_value(json!({"event":"public_ip","ip":"192.0.2.1"})).unwrap();
        assert_eq!(
            back,
            JsonEvent::PublicIp {
                ip: "192.0.2.1".into()
            }
        );
    }
}
