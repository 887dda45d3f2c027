//! What the caller of the client sees.

use serde_json::Value;
use std::time::Duration;

/// A presence member.
#[derive(Debug, Clone, PartialEq)]
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
