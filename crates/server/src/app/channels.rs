//! The channel table: who is subscribed to what, each presence channel's
//! members, and delivery to local subscribers.
//!
//! Plain data behind the app's one lock (see [`super`]): nothing here waits,
//! so queuing a frame to every subscriber happens in the same critical
//! section as the change that caused it, which is what gives every
//! subscriber of a channel the same order of events.

use crate::outbox::{Frame, Outbox};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use whosin_protocol::frame::server;
use whosin_protocol::roster::subscription_succeeded_escaped;
use whosin_protocol::{Change, ChannelKind, EscapedMember, Presence};

/// A subscriber of one channel.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub outbox: Outbox,
    /// The presence user this connection holds on the channel.
    pub user_id: Option<Arc<str>>,
    /// The client address it counts against for the presence-user limit
    /// per address (`None`: exempt, or not a presence subscription).
    pub address: Option<IpAddr>,
}

/// Who holds a user present: one of this node's connections, or (in a
/// cluster's mirror) another node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Holder {
    /// A local connection, by number.
    Conn(u64),
    /// Another node, by id.
    Node(Arc<str>),
}

/// A presence channel's members (decided by the protocol's model) and the
/// server's wire cache beside them: each member's roster entry escaped once
/// when they appear, and the finished roster frame, built once per change
/// and shared by every subscribe until the next change.
#[derive(Debug, Default)]
pub(crate) struct PresenceChannel {
    /// Who is present, and who holds them.
    pub members: Presence<Holder>,
    wire: HashMap<Arc<str>, EscapedMember>,
    roster_frame: Option<Frame>,
    /// This node's connections per user, per client address: what the
    /// presence-user limit per address counts. Only limited addresses are
    /// here, so it is bounded by the connections that hold them.
    by_address: HashMap<IpAddr, HashMap<Arc<str>, u32>>,
}

impl PresenceChannel {
    /// Keeps the wire cache in step with a change the model made.
    pub fn record(&mut self, change: &Change) {
        match change {
            Change::Added { user_id, info } => {
                self.wire
                    .insert(user_id.clone(), EscapedMember::new(user_id, info));
            }
            Change::Removed { user_id, .. } => {
                self.wire.remove(user_id);
            }
        }
        self.roster_frame = None;
    }

    /// Whether a connection from `address` may hold `user`: yes when the
    /// address already holds that user, or holds fewer than `max` users.
    pub fn address_may_hold(&self, address: IpAddr, user: &str, max: usize) -> bool {
        self.by_address
            .get(&address)
            .is_none_or(|users| users.contains_key(user) || users.len() < max)
    }

    /// Counts a connection from `address` holding `user`.
    pub fn address_holds(&mut self, address: IpAddr, user: &Arc<str>) {
        *self
            .by_address
            .entry(address)
            .or_default()
            .entry(user.clone())
            .or_default() += 1;
    }

    /// Forgets one connection from `address` holding `user`.
    pub fn address_releases(&mut self, address: IpAddr, user: &str) {
        let Some(users) = self.by_address.get_mut(&address) else {
            return;
        };
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
        }
        if users.is_empty() {
            self.by_address.remove(&address);
        }
    }

    /// Whether one of this node's connections holds `user`.
    pub fn held_here(&self, user: &str) -> bool {
        self.members
            .holders(user)
            .iter()
            .any(|h| matches!(h, Holder::Conn(_)))
    }

    /// The `subscription_succeeded` frame with everyone present: built once
    /// per roster change, a clone of the same bytes after that.
    pub fn roster_frame(&mut self, channel: &str) -> Frame {
        let wire = &self.wire;
        self.roster_frame
            .get_or_insert_with(|| {
                Frame::from(subscription_succeeded_escaped(channel, || wire.values()))
            })
            .clone()
    }
}

/// One occupied channel. It exists only while it has subscribers.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    pub subscribers: HashMap<u64, Subscriber>,
    /// Present for presence channels.
    pub presence: Option<PresenceChannel>,
}

impl Channel {
    /// An empty channel of `kind`: presence channels carry members.
    pub fn new(kind: ChannelKind) -> Channel {
        Channel {
            subscribers: HashMap::new(),
            presence: (kind == ChannelKind::Presence).then(PresenceChannel::default),
        }
    }

    /// An empty channel that tracks presence (a presence channel, or the
    /// hidden set of signed-in users).
    pub fn presence() -> Channel {
        Channel::new(ChannelKind::Presence)
    }

    /// Nobody subscribed here and nobody present.
    fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.presence.as_ref().is_none_or(|p| p.members.is_empty())
    }

    /// `subscription_succeeded` for this channel: with the roster for a
    /// presence channel.
    pub fn succeeded(&mut self, name: &str) -> Frame {
        match self.presence.as_mut() {
            Some(p) => p.roster_frame(name),
            None => Frame::from(server::subscription_succeeded(name, None)),
        }
    }

    /// Queues `frame` to every subscriber but `except`.
    pub fn send_all(&self, frame: &Frame, except: Option<u64>) {
        self.send_unless(frame, |id, _| Some(id) == except);
    }

    /// Queues `frame` to every subscriber for which `skip` is false, in one
    /// pass (the exclusion is checked as the sends go, never by a scan first).
    pub fn send_unless(&self, frame: &Frame, skip: impl Fn(u64, &Outbox) -> bool) {
        for (id, sub) in &self.subscribers {
            if !skip(*id, &sub.outbox) {
                sub.outbox.send(frame.clone());
            }
        }
    }
}

/// Every occupied channel of an app.
#[derive(Debug, Default)]
pub(crate) struct ChannelTable {
    pub channels: HashMap<String, Channel>,
}

impl ChannelTable {
    /// Drops `name` when nobody is subscribed here and nobody is present
    /// (in a cluster, a channel with members on other nodes is kept: it is
    /// this node's mirror of them).
    pub fn forget_if_empty(&mut self, name: &str) {
        if self.channels.get(name).is_some_and(Channel::is_empty) {
            self.channels.remove(name);
        }
    }

    /// Drops every channel [`ChannelTable::forget_if_empty`] would.
    pub fn forget_all_empty(&mut self) {
        self.channels.retain(|_, c| !c.is_empty());
    }
}
