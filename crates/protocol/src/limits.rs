//! Size and rate limits from Pusher's documentation, shared by server and client.
//!
//! The server may be configured above or below these; they are the defaults and
//! what a client can assume of a hosted Pusher.

/// Longest channel name Pusher accepts.
pub const MAX_CHANNEL_NAME_LEN: usize = 164;
/// Longest presence `user_id`.
pub const MAX_USER_ID_LEN: usize = 128;
/// Default limit on the encoded `user_info` of one presence member, in bytes.
pub const DEFAULT_MAX_USER_INFO_BYTES: usize = 1024;
/// Default limit on the `data` of one event, in bytes.
pub const DEFAULT_MAX_EVENT_DATA_BYTES: usize = 10 * 1024;
/// Client events a connection may send per second before it is closed (4301).
pub const DEFAULT_CLIENT_EVENTS_PER_SECOND: u32 = 10;
/// Events in one `/batch_events` request.
pub const MAX_BATCH_EVENTS: usize = 10;
/// Channels named in one `/events` request.
pub const MAX_TRIGGER_CHANNELS: usize = 100;
/// Longest event name.
pub const MAX_EVENT_NAME_LEN: usize = 200;
/// How far a REST request's `auth_timestamp` may be from the server's clock.
pub const REST_TIMESTAMP_TOLERANCE_SECS: u64 = 600;
/// Longest display name a visitor may choose (whosin's own rule: the auth
/// endpoint cuts longer names, the desktop refuses them).
pub const MAX_DISPLAY_NAME_CHARS: usize = 40;
