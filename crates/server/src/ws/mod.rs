//! WebSocket transport for the server: the upgrade handshake, RFC 6455
//! framing, and a socket type that owns its (small) buffers.
//!
//! The framing in [`frame`] is pure and unit-tested; [`Socket`] is the only
//! part that does I/O.

pub mod frame;
pub mod handshake;
mod socket;

pub use frame::Message;
pub(crate) use socket::CLOSE_WRITE_TIMEOUT;
pub use socket::{ReadError, Socket};
