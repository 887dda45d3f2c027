//! whosin's presence client: a resilient Pusher-protocol-7 client in Rust.
//!
//! It holds one WebSocket to any Pusher-compatible server (whosin, hosted
//! Pusher Channels, Soketi, Sockudo), keeps it alive with ping/pong, detects
//! dead and half-open links, reconnects as pusher-js does, resubscribes, and
//! reconciles presence rosters so the caller sees only real changes.
//!
//! ```no_run
//! use whosin_client::{Client, Endpoint, Event, LocalSigner, UserData};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = Endpoint::parse("ws://127.0.0.1:6001", "whosin")?;
//! let me = UserData::new("visitor-1", serde_json::json!({"name": "Ada"}));
//! let signer = LocalSigner::new("whosin", "secret").with_user(me);
//! let (client, mut events) = Client::builder(endpoint).authorizer(signer).connect();
//! client.subscribe("presence-whosin");
//! while let Some(event) = events.recv().await {
//!     if let Event::MemberAdded { member, count, .. } = event {
//!         println!("{} joined; {count} online", member.id);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Modules: [`endpoint`] (where to connect), [`auth`] (who signs
//! subscriptions), [`ip`] (public IP lookup), [`backoff`] (when to retry),
//! [`roster`] (presence reconciliation), [`event`] (what the caller sees),
//! [`session`] (the protocol as a pure state machine), [`rest`] (watching
//! through the REST API without being a member), [`visitor`] (who
//! joins where, signed by whom: one builder for every front end), and the connection
//! task in `connection`, which only moves bytes and keeps the timers.

#![warn(missing_docs)]

pub mod auth;
pub mod backoff;
mod connection;
pub mod endpoint;
pub mod event;
pub mod identity;
pub mod ip;
pub mod rest;
pub mod roster;
pub mod session;
pub mod visitor;

pub use auth::{
    AuthError, Authorizer, ChannelAuth, HttpAuthorizer, Identity, LocalSigner, UserData,
    VisitorIdentity,
};
pub use backoff::Backoff;
pub use connection::{Client, ClientBuilder, Events};
pub use endpoint::{Endpoint, EndpointError};
pub use event::{ConnectionState, Event, JsonEvent, JsonState, Member, StopReason};
pub use ip::{IpLookup, IpLookupError};
pub use rest::{RestWatch, RestWatchError};
pub use roster::{PresenceRoster, SnapshotOutcome};
pub use session::{after_close, Next, Output, Session};
pub use visitor::{Signing, Visitor, VisitorError};
