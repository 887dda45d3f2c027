//! WebSocket transport for the server: the upgrade handshake, RFC 6455
//! framing, a socket type that owns its (small) buffers, and the stream
//! under it.
//!
//! The framing in [`frame`] is pure and unit-tested; [`Socket`] is the only
//! part that does I/O, through a [`Stream`].

pub mod frame;
pub mod handshake;
mod socket;
mod stream;

pub use frame::Message;
pub(crate) use socket::CLOSE_WRITE_TIMEOUT;
pub use socket::{ReadError, Socket};
pub use stream::Stream;
