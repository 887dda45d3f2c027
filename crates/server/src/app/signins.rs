//! Users signed in with `pusher:signin`, so that `terminate_connections`
//! reaches connections that hold no presence.

use crate::outbox::Outbox;
use std::collections::HashMap;
use std::sync::Arc;

/// user id → the connections signed in as that user.
#[derive(Debug, Default)]
pub(crate) struct SignIns {
    users: HashMap<Arc<str>, Vec<Outbox>>,
}

impl SignIns {
    /// Records a connection signed in as `user_id`.
    pub fn add(&mut self, outbox: &Outbox, user_id: &str) {
        let list = self.users.entry(Arc::from(user_id)).or_default();
        if !list.iter().any(|o| o.id == outbox.id) {
            list.push(outbox.clone());
        }
    }

    /// Forgets connection `conn`'s sign-in as `user_id`.
    pub fn remove(&mut self, conn: u64, user_id: &str) {
        if let Some(list) = self.users.get_mut(user_id) {
            list.retain(|o| o.id != conn);
            if list.is_empty() {
                self.users.remove(user_id);
            }
        }
    }

    /// The connections signed in as `user_id`.
    pub fn of(&self, user_id: &str) -> &[Outbox] {
        self.users.get(user_id).map_or(&[], Vec::as_slice)
    }
}
