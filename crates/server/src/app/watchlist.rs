//! Watchlists: who a signed-in connection watches, and the
//! `pusher_internal:watchlist_events` it is told when those users come
//! online (their first signed-in connection anywhere) or go offline (their
//! last one closes).
//!
//! Whether a user is online is decided by the presence core itself: every
//! signed-in connection holds its user in a hidden presence set,
//! [`ONLINE`], which a cluster shares like any presence channel. So a user
//! is online once across every node, and the `Added` / `Removed` changes of
//! that set are exactly the online and offline events.

use crate::outbox::{Frame, Outbox};
use std::collections::HashMap;
use std::sync::Arc;
use whosin_protocol::frame::server;
use whosin_protocol::Change;

/// The hidden presence set of signed-in users. Its name cannot be a
/// channel a client subscribes to (`#` names other than the
/// server-to-user ones are refused), and the REST API never lists it.
pub(crate) const ONLINE: &str = "#online";

/// Most users one connection may watch (Pusher's limit).
pub const MAX_WATCHLIST: usize = 100;

/// Watching connections, by the user they watch.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    by_watched: HashMap<Arc<str>, Vec<Outbox>>,
    of_conn: HashMap<u64, Vec<Arc<str>>>,
}

impl Watchers {
    /// Records that `outbox` watches `users` (replacing an earlier list).
    pub fn watch(&mut self, outbox: &Outbox, users: &[String]) {
        self.forget(outbox.id);
        let mut list: Vec<Arc<str>> = Vec::with_capacity(users.len());
        for u in users {
            if list.iter().any(|l| **l == **u) {
                continue;
            }
            let u: Arc<str> = Arc::from(u.as_str());
            self.by_watched
                .entry(u.clone())
                .or_default()
                .push(outbox.clone());
            list.push(u);
        }
        if !list.is_empty() {
            self.of_conn.insert(outbox.id, list);
        }
    }

    /// Forgets what connection `conn` watches.
    pub fn forget(&mut self, conn: u64) {
        for u in self.of_conn.remove(&conn).unwrap_or_default() {
            if let Some(list) = self.by_watched.get_mut(&u) {
                list.retain(|o| o.id != conn);
                if list.is_empty() {
                    self.by_watched.remove(&u);
                }
            }
        }
    }

    /// Tells the watchers of the user in `change` that it came online
    /// (`Added`) or went offline (`Removed`).
    pub fn notify(&self, change: &Change) {
        let (user, online) = match change {
            Change::Added { user_id, .. } => (user_id, true),
            Change::Removed { user_id, .. } => (user_id, false),
        };
        let Some(list) = self.by_watched.get(user) else {
            return;
        };
        let frame = Frame::from(server::watchlist_events(online, &[user]));
        for o in list {
            o.send(frame.clone());
        }
    }
}
