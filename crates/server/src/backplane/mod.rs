//! What the nodes of a cluster share, behind one interface.
//!
//! An app talks to its [`Backplane`] and never to Redis: it publishes event
//! frames, says which users this node holds or no longer holds, counts its
//! subscriptions, and asks cluster-wide questions. [`Local`] is the
//! backplane of a single node (nothing is shared, the app delivers itself);
//! [`redis::RedisBackplane`] shares through Redis.
//!
//! What other nodes do comes back as [`Inbound`] messages on a channel that
//! one task ([`crate::app::dispatch`]) routes to the apps: the backplane
//! holds no pointer to the apps and this module does not know them, so
//! there is no cycle between them.
//!
//! Presence in a cluster works like Phoenix.Tracker: each node is the
//! authority on its own connections and tells the others which users it
//! holds; every node keeps a mirror of the whole cluster in its apps'
//! presence models (a remote node is one more holder of a user) and decides,
//! from that mirror, what its own clients are told. A join therefore never
//! waits for Redis, and a client can only ever see one `member_added` per
//! appearance in its node's mirror.

pub mod redis;

pub use self::redis::{ClusterConfig, RedisBackplane};

use crate::app::history::Point;
use crate::outbox::Frame;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A future returned by a backplane query.
pub type Query<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether a publication reached the other nodes' delivery path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Every node (this one included) delivers it.
    Shared,
    /// Nothing is shared: the caller delivers to its own subscribers.
    NotShared,
}

/// The interface of what a cluster shares.
pub trait Backplane: Send + Sync + Debug {
    /// Publishes a finished event frame on `channel` to every node's
    /// subscribers but the connection with socket id `except`.
    fn publish(&self, app: &str, channel: &str, frame: &Frame, except: Option<&str>) -> Published;

    /// This node now holds `user` in `channel` (`info` is its user_info
    /// JSON), or no longer does (`None`). Called in the order the changes
    /// happened, under the app's lock.
    fn presence(&self, app: &str, channel: &str, user: &str, info: Option<&str>);

    /// This node's subscriptions to `channel` changed by `delta`.
    fn occupancy(&self, app: &str, channel: &str, delta: i64);

    /// Closes every connection of `user`, on every node.
    fn terminate(&self, app: &str, user: &str) -> Published;

    /// Subscriptions per occupied channel, summed over live nodes; `None`
    /// when nothing is shared or the cluster cannot be asked now (the
    /// caller answers from this node's view).
    fn occupancy_all<'a>(&'a self, app: &'a str) -> Query<'a, Option<BTreeMap<String, usize>>>;

    /// Subscriptions to each of `channels` on the other live nodes (for
    /// subscription counts: this node adds its own, which it knows
    /// exactly); `None` when nothing is shared or Redis cannot be asked.
    fn remote_occupancy<'a>(
        &'a self,
        app: &'a str,
        channels: &'a [String],
    ) -> Query<'a, Option<Vec<usize>>>;

    /// Everything this node holds in `app` (`(channel, user, info)`) and its
    /// subscriptions per channel, replacing what the cluster knows of it:
    /// the answer to [`Inbound::Republish`], given under the app's lock.
    fn republish(&self, app: &str, holds: Vec<Hold>, occupancy: Vec<(String, usize)>);

    /// Keeps the newest minute of each channel's count history where every
    /// node can read it (called by the leader only; nothing on one node).
    fn history_save(&self, app: &str, points: Vec<(String, Point)>) -> Query<'_, ()>;

    /// A channel's count history as the cluster kept it; `None` when
    /// nothing is shared or Redis cannot be asked.
    fn history_load<'a>(&'a self, app: &'a str, channel: &'a str) -> Query<'a, Option<Vec<Point>>>;

    /// Whether anything is shared (a cluster): a query answered `None`
    /// then means Redis could not be asked, not that there is nothing.
    fn shares(&self) -> bool;

    /// Whether this node speaks for the cluster where one node must (the
    /// webhooks of a dead node's departures): the live node with the
    /// smallest id. Always `true` on a single node.
    fn is_leader(&self) -> bool;

    /// Called once when the server begins to shut down, before it closes
    /// its connections: tells the others that the departures it announces
    /// next come from its shutdown (their webhooks are the others' to send).
    fn leaving(&self) -> Query<'_, ()>;

    /// Called once when the server stops accepting, after its connections
    /// closed: leave the cluster, telling the others at once.
    fn depart(&self) -> Query<'_, ()>;
}

/// The backplane of a single node: nothing is shared.
#[derive(Debug, Default)]
pub struct Local;

impl Backplane for Local {
    fn publish(&self, _: &str, _: &str, _: &Frame, _: Option<&str>) -> Published {
        Published::NotShared
    }
    fn presence(&self, _: &str, _: &str, _: &str, _: Option<&str>) {}
    fn occupancy(&self, _: &str, _: &str, _: i64) {}
    fn terminate(&self, _: &str, _: &str) -> Published {
        Published::NotShared
    }
    fn occupancy_all<'a>(&'a self, _: &'a str) -> Query<'a, Option<BTreeMap<String, usize>>> {
        Box::pin(std::future::ready(None))
    }
    fn remote_occupancy<'a>(
        &'a self,
        _: &'a str,
        _: &'a [String],
    ) -> Query<'a, Option<Vec<usize>>> {
        Box::pin(std::future::ready(None))
    }
    fn republish(&self, _: &str, _: Vec<Hold>, _: Vec<(String, usize)>) {}
    fn is_leader(&self) -> bool {
        true
    }
    fn shares(&self) -> bool {
        false
    }
    fn history_save(&self, _: &str, _: Vec<(String, Point)>) -> Query<'_, ()> {
        Box::pin(std::future::ready(()))
    }
    fn history_load<'a>(&'a self, _: &'a str, _: &'a str) -> Query<'a, Option<Vec<Point>>> {
        Box::pin(std::future::ready(None))
    }
    fn leaving(&self) -> Query<'_, ()> {
        Box::pin(std::future::ready(()))
    }
    fn depart(&self) -> Query<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// One user held by a remote node: `(channel, user_id, user_info JSON)`.
pub type Hold = (String, String, Arc<str>);

/// What other nodes did, for this node's apps.
#[derive(Debug)]
pub enum Inbound {
    /// Deliver an event frame to local subscribers of `channel`.
    Deliver {
        /// App id.
        app: String,
        /// Channel name.
        channel: String,
        /// The finished frame.
        frame: Frame,
        /// Socket id left out.
        except: Option<String>,
    },
    /// Node `node` now holds (`info: Some`) or no longer holds a user.
    Presence {
        /// App id.
        app: String,
        /// The node.
        node: Arc<str>,
        /// Channel name.
        channel: String,
        /// The user.
        user: String,
        /// Their user_info JSON while held.
        info: Option<Arc<str>>,
    },
    /// Everything node `node` holds, replacing what was known of it.
    Snapshot {
        /// App id.
        app: String,
        /// The node.
        node: Arc<str>,
        /// What it holds.
        holds: Vec<Hold>,
    },
    /// Node `node` is shutting down: the departures it announces next are
    /// reported (webhooks) by this cluster's leader.
    Leaving {
        /// The node.
        node: Arc<str>,
    },
    /// Node `node` is gone (dead, or left): it holds nobody any more.
    Gone {
        /// The node.
        node: Arc<str>,
    },
    /// This node's state in the cluster is unknown (a reply never came, a
    /// change was shed, Redis lost it): rewrite it, see
    /// [`Backplane::republish`].
    Republish {
        /// App id.
        app: String,
    },
    /// Close this node's connections of `user`.
    Terminate {
        /// App id.
        app: String,
        /// The user.
        user: String,
    },
}
