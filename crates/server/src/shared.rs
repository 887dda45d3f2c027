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
    /// Limits per client address and the process's connection cap.
    pub gate: Arc<crate::admission::Gate>,
    /// The port actually bound (with `--port 0`, the one the system chose):
    /// a loopback-only server's own page has it in its origin.
    pub port: u16,
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

    /// For a loopback-only server (see
    /// [`ServerConfig::loopback_only`](crate::ServerConfig)): refuses a
    /// request whose `Host` is not a loopback name, or whose `Origin` is
    /// another page than this server's own. `Ok` for other servers.
    pub fn check_local(&self, headers: &axum::http::HeaderMap) -> Result<(), String> {
        if !self.config.loopback_only {
            return Ok(());
        }
        let host_of = |authority: &str| -> String {
            let a = authority.trim().to_ascii_lowercase();
            if let Some(rest) = a.strip_prefix('[') {
                return rest.split(']').next().unwrap_or("").to_owned();
            }
            a.split(':').next().unwrap_or("").to_owned()
        };
        let loopback = |h: &str| matches!(h, "127.0.0.1" | "localhost" | "::1");
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !loopback(&host_of(host)) {
            return Err(format!(
                "this server serves this computer only: Host {host:?} is not 127.0.0.1, localhost or [::1]"
            ));
        }
        let Some(origin) = headers
            .get(axum::http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(());
        };
        let authority = origin
            .trim_end_matches('/')
            .strip_prefix("http://")
            .unwrap_or("");
        let port_ok = authority
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            == Some(self.port);
        if loopback(&host_of(authority)) && port_ok {
            Ok(())
        } else {
            Err(format!(
                "this server serves this computer only: pages from {origin} may not use it"
            ))
        }
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
