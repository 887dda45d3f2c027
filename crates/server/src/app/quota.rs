//! The per-app connection quota (`max_connections`), taken and given back
//! without a lock.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Open connections of one app, bounded by its quota.
#[derive(Debug)]
pub(crate) struct ConnectionQuota {
    open: AtomicUsize,
    max: usize,
}

impl ConnectionQuota {
    pub fn new(max: usize) -> ConnectionQuota {
        ConnectionQuota {
            open: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes a slot, or `false` when the quota is used up.
    pub fn try_take(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a slot back.
    pub fn give_back(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Slots in use.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}
