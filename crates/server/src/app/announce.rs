//! The one place where presence changes become what leaves the server.
//!
//! The presence model ([`whosin_protocol::presence`]) decides; this module
//! announces: it keeps the channel's wire cache in step with the change and
//! queues `member_added` / `member_removed` to the channel's subscribers.
//! Later outputs of a change (webhooks, subscription counts, watchlists)
//! hook in here, so that they cannot disagree with the frames.

use super::channels::Channel;
use crate::outbox::Frame;
use whosin_protocol::frame::server;
use whosin_protocol::Change;

/// The frame that tells a channel's subscribers about `change`.
fn frame_for(channel: &str, change: &Change) -> Frame {
    Frame::from(match change {
        Change::Added { user_id, info } => server::member_added(channel, user_id, info),
        Change::Removed { user_id, .. } => server::member_removed(channel, user_id),
    })
}

/// Applies `change` to the channel's wire cache and tells every local
/// subscriber but `except` (the joiner, who learns it from its roster).
pub(crate) fn announce(name: &str, channel: &mut Channel, change: &Change, except: Option<u64>) {
    if let Some(p) = channel.presence.as_mut() {
        p.record(change);
    }
    channel.send_all(&frame_for(name, change), except);
}
