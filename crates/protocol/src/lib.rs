//! The Pusher Channels protocol, version 7, as whosin speaks it.
//!
//! This crate is pure: no sockets, no clocks, no tasks. The server and the
//! client both build on it, so everything that must agree between them — the
//! shape of a frame, what a valid channel name is, how a subscription is
//! signed, how presence membership changes — is decided here, once, and unit
//! tested without any I/O.
//!
//! * [`frame`] parses what a client sends and encodes what a server sends,
//!   handling Pusher's double-encoded `data` field in one place.
//! * [`channel`] knows channel kinds and name rules.
//! * [`sign`] makes and checks every HMAC the protocol uses (channel auth,
//!   user sign-in, REST requests, webhooks), comparing in constant time.
//! * [`presence`] is the presence model: users, who holds them, and the
//!   exact changes (added, removed) each join and leave makes.
//! * [`roster`] encodes a roster into `subscription_succeeded`.
//! * [`close`] names the WebSocket close codes and what a client should do.
//! * [`limits`] holds the size limits Pusher documents.

pub mod channel;
pub mod close;
pub mod frame;
pub mod limits;
pub mod presence;
pub mod roster;
pub mod sign;

pub use channel::{
    is_cache_channel, server_to_user, ChannelKind, ChannelName, ChannelNameError,
    SERVER_TO_USER_PREFIX,
};
pub use close::CloseCode;
pub use frame::{ClientFrame, FrameError, PresenceData, SubscribeData};
pub use presence::{Change, Full, Presence};
pub use roster::EscapedMember;
