//! What every request and connection shares: the validated configuration,
//! the apps, the counters and the shutdown signal. In a module of its own
//! so that the modules it serves (server, connection, REST) depend on it
//! and not on each other.

use crate::app::App;
use crate::config::ServerConfig;
use crate::metrics::{Gauges, Metrics};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// What every request and connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The configuration, validated.
    pub config: ServerConfig,
    /// Apps in configuration order.
    pub apps: Vec<Arc<App>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Becomes `true` when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// What this node shares with its cluster (nothing on a single node).
    pub backplane: Arc<dyn crate::backplane::Backplane>,
    /// First part of every socket id: random per process, so ids from a
    /// restarted server do not collide with the previous run's.
    pub node_number: u32,
    pub(crate) next_id: AtomicU64,
    /// Cloned into every connection's state and taken away at shutdown: the
    /// last clone's drop is how shutdown learns that every connection is
    /// gone (mini-redis's drop guard), without polling a count.
    pub(crate) live: Mutex<Option<mpsc::Sender<()>>>,
}

/// Held by a connection for its whole life; see [`Shared::track`].
#[derive(Debug)]
pub struct LiveConnection {
    _guard: mpsc::Sender<()>,
}

impl Shared {
    /// A guard for a new connection, or `None` once shutdown has begun.
    pub fn track(&self) -> Option<LiveConnection> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.as_ref()
            .map(|tx| LiveConnection { _guard: tx.clone() })
    }

    /// Stops handing out guards; the returned sender is the last one not
    /// held by a connection.
    pub(crate) fn stop_tracking(&self) -> Option<mpsc::Sender<()>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// A fresh connection number.
    pub fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The app with this key.
    pub fn app_by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.apps.iter().find(|a| a.config.key == key)
    }

    /// The app with this id.
    pub fn app_by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.apps.iter().find(|a| a.config.id == id)
    }

    /// Gauges summed over apps.
    pub fn gauges(&self) -> Gauges {
        self.apps
            .iter()
            .map(|a| a.gauges())
            .fold(Gauges::default(), |acc, g| Gauges {
                connections: acc.connections + g.connections,
                channels: acc.channels + g.channels,
                presence_members: acc.presence_members + g.presence_members,
            })
    }
}
