//! Subscription counts: `pusher_internal:subscription_count` to the
//! subscribers of public and private channels when the number of
//! subscriptions changes, for apps that turn it on.
//!
//! Coalesced: a subscribe or unsubscribe only marks its channel; one task
//! per app wakes on the first mark, sends the counts of the marked
//! channels, then waits a second before it looks again. A burst of
//! thousands of subscribes is one frame per channel and second, and the
//! last value is always sent. In a cluster the count is this node's own
//! subscriptions plus the other nodes' (read from Redis), and the frame is
//! published to every node. A channel is looked at once more a second
//! after it was sent, so that two nodes changing it at once, each reading
//! the other before its write landed, still end on the right number.

use super::App;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long the task waits between two sends for one channel.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// Sends the app's subscription counts until the server shuts down.
pub(crate) async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    // Channels sent last round, with what was sent: looked at once more.
    let mut recheck: HashMap<String, usize> = HashMap::new();
    loop {
        if recheck.is_empty() {
            tokio::select! {
                _ = app.counts_wake.notified() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
        let marked = app.take_marked_counts();
        let mut channels: Vec<String> = marked.clone();
        channels.extend(recheck.keys().filter(|c| !marked.contains(c)).cloned());
        if channels.is_empty() {
            continue;
        }
        let remote = app
            .backplane
            .remote_occupancy(&app.config.id, &channels)
            .await;
        if remote.is_none() && app.backplane.shares() {
            // Redis could not be asked: this node's count alone is not the
            // total. Look again next round.
            recheck = channels.into_iter().map(|c| (c, usize::MAX)).collect();
            tokio::select! {
                _ = tokio::time::sleep(INTERVAL) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            continue;
        }
        let local = app.local_subscriptions(&channels);
        let mut next = HashMap::new();
        let mut send = Vec::new();
        for (i, channel) in channels.into_iter().enumerate() {
            let total = local[i] + remote.as_ref().and_then(|r| r.get(i)).copied().unwrap_or(0);
            let changed = recheck.get(&channel) != Some(&total);
            if marked.contains(&channel) || changed {
                send.push((channel.clone(), total));
                if marked.contains(&channel) {
                    next.insert(channel, total);
                }
            }
        }
        app.publish_counts(&send);
        recheck = next;
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
