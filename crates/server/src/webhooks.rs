//! Webhooks: a site's backend learns who came and went, in Pusher's format.
//!
//! The app tells this module what happened as [`Signal`]s, from the one
//! place each thing is decided (presence changes where the presence core
//! decides them, occupancy where subscribers are added and removed), with a
//! `try_send` that never waits: a slow or dead receiver can never slow
//! delivery to WebSocket clients. One task per app turns signals into
//! events:
//!
//! * **Grace period.** `member_removed` and `channel_vacated` wait
//!   ([`crate::ServerConfig::webhook_grace`], 3 s by default, as Pusher
//!   does): a user who comes back within it (a page reload) produces
//!   neither the removal nor a second `member_added`, and a channel
//!   re-occupied within it neither the vacated nor a second occupied.
//!   Before a delayed event is sent, the cluster-wide view is asked again
//!   (the user present on another node, the channel occupied elsewhere: not
//!   sent).
//! * **Batches.** Events are gathered for [`BATCH_WINDOW`] (at most
//!   [`MAX_BATCH`]) and POSTed as `{"time_ms":…,"events":[…]}` with
//!   `X-Pusher-Key` and `X-Pusher-Signature` (hex HMAC-SHA256 of the body
//!   with the app secret) to every URL whose `event_types` take them.
//! * **Retries.** A failed or timed-out POST is retried with backoff for
//!   [`RETRY_FOR`]; then the batch is given up and counted.
//! * **Bounded.** Signals wait in a queue of [`QUEUE`]; batches wait per
//!   URL in a queue of [`BATCHES_QUEUED`]. What does not fit is dropped,
//!   counted in `whosin_webhook_events_dropped_total` and logged (once a
//!   minute).
//!
//! In a cluster each event is sent once, by one node: presence and
//! occupancy changes by the node where the connection that caused them
//! lives; the removals caused by a dead node by the cluster's leader (the
//! live node with the smallest id). See docs/operations.md for the cases
//! where two nodes race.

use crate::app::App;
use crate::config::WebhookConfig;
use crate::metrics::Metrics;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

/// Signals waiting for the webhook task, per app.
pub const QUEUE: usize = 10_000;
/// How long events are gathered into one POST.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Most events in one POST.
pub const MAX_BATCH: usize = 100;
/// Batches waiting per receiver URL.
pub const BATCHES_QUEUED: usize = 64;
/// How long a batch is retried before it is given up.
pub const RETRY_FOR: Duration = Duration::from_secs(60);
/// How long one POST may take.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// Something that happened, for the webhook task to turn into events.
#[derive(Debug, Clone)]
pub enum Signal {
    /// This node's first subscriber of a channel.
    Occupied(String),
    /// This node's last subscriber of a channel left.
    Vacated(String),
    /// A user became present in a presence channel.
    Added {
        /// The channel.
        channel: String,
        /// The user.
        user: String,
    },
    /// A user stopped being present.
    Removed {
        /// The channel.
        channel: String,
        /// The user.
        user: String,
    },
    /// An event sent as it is (`client_event`, `cache_miss`,
    /// `subscription_count`).
    Now(Value),
}

/// The sending side, held by the app.
#[derive(Debug, Clone)]
pub struct Hooks {
    tx: mpsc::Sender<Signal>,
    metrics: Arc<Metrics>,
    /// When a full queue was last logged.
    logged: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Hooks {
    /// Queues a signal without waiting; when the queue is full it is
    /// dropped and counted.
    pub fn signal(&self, s: Signal) {
        if self.tx.try_send(s).is_err() {
            self.metrics.webhook_dropped(1);
            let now = Instant::now();
            let mut last = self.logged.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60)) {
                *last = Some(now);
                tracing::warn!(
                    "webhook queue full ({QUEUE} events): events dropped (counted in whosin_webhook_events_dropped_total; logged once a minute)"
                );
            }
        }
    }
}

/// Starts the webhook task of `app` when it has receivers; `None` otherwise.
pub fn start(
    app_id: &str,
    key: &str,
    secret: &str,
    receivers: &[WebhookConfig],
    grace: Duration,
    metrics: Arc<Metrics>,
) -> Option<(Hooks, Pending)> {
    if receivers.is_empty() {
        return None;
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let http = reqwest::Client::builder()
        .timeout(POST_TIMEOUT)
        .build()
        .unwrap_or_default();
    let senders = receivers
        .iter()
        .map(|r| {
            let (btx, brx) = mpsc::channel(BATCHES_QUEUED);
            let s = Sender {
                url: r.url.clone(),
                key: key.to_owned(),
                secret: secret.to_owned(),
                http: http.clone(),
                metrics: metrics.clone(),
            };
            tokio::spawn(s.run(brx));
            Route {
                url: r.url.clone(),
                types: r.event_types.clone(),
                tx: btx,
            }
        })
        .collect();
    let hooks = Hooks {
        tx,
        metrics: metrics.clone(),
        logged: Arc::default(),
    };
    let pending = Pending {
        app_id: app_id.to_owned(),
        rx,
        routes: senders,
        grace,
        metrics,
    };
    Some((hooks, pending))
}

/// The receiving side, until the task runs it with its app.
#[derive(Debug)]
pub struct Pending {
    app_id: String,
    rx: mpsc::Receiver<Signal>,
    routes: Vec<Route>,
    grace: Duration,
    metrics: Arc<Metrics>,
}

/// What the webhook task holds between signals.
#[derive(Debug, Default)]
struct Pending2 {
    /// Removals waiting out the grace period, by (channel, user).
    removed: HashMap<(String, String), Instant>,
    /// Vacated channels waiting out the grace period.
    vacated: HashMap<String, Instant>,
    /// Channels occupied here, to check against the other nodes.
    occupied: Vec<String>,
    /// Events ready to send.
    batch: Vec<Value>,
}

/// One receiver URL: the event types it takes and its batch queue.
#[derive(Debug)]
struct Route {
    url: String,
    types: Vec<String>,
    tx: mpsc::Sender<Arc<Vec<Value>>>,
}

impl Pending {
    /// Runs the app's webhook task until the server shuts down. Holds the
    /// app weakly: the app owns the sending side.
    ///
    /// Signals are taken in bursts (the queue is drained without waiting),
    /// and what needs the cluster's view (is a channel occupied on another
    /// node?) is asked once per burst for all its channels, so a slow Redis
    /// slows the bursts, not each signal. At shutdown, removals still in
    /// their grace period are sent at once: they happened.
    pub async fn run(mut self, app: Weak<App>, mut shutdown: watch::Receiver<bool>) {
        let mut st = Pending2::default();
        let mut flush_at: Option<Instant> = None;
        loop {
            let next_due = st
                .removed
                .values()
                .chain(st.vacated.values())
                .min()
                .copied();
            let wake = [next_due, flush_at].into_iter().flatten().min();
            let mut stopping = false;
            tokio::select! {
                s = self.rx.recv() => {
                    let Some(s) = s else { break };
                    self.apply(s, &mut st);
                    for _ in 0..QUEUE {
                        match self.rx.try_recv() {
                            Ok(s) => self.apply(s, &mut st),
                            Err(_) => break,
                        }
                    }
                }
                _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
                _ = stopped(&mut shutdown) => stopping = true,
            }
            let Some(app) = app.upgrade() else { break };
            let now = if stopping {
                Instant::now() + self.grace
            } else {
                Instant::now()
            };
            // Occupied here: news only if no other node had subscribers.
            if !st.occupied.is_empty() {
                let channels = std::mem::take(&mut st.occupied);
                let elsewhere = app.occupied_elsewhere(&channels).await;
                for (channel, e) in channels.into_iter().zip(elsewhere) {
                    if !e {
                        st.batch
                            .push(json!({"name": "channel_occupied", "channel": channel}));
                    }
                }
            }
            let due: Vec<(String, String)> = st
                .removed
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for (channel, user) in due {
                st.removed.remove(&(channel.clone(), user.clone()));
                // Back on another node meanwhile: no removal.
                if !app.is_present(&channel, &user) {
                    st.batch
                        .push(member_event("member_removed", &channel, &user));
                }
                if st.batch.len() >= MAX_BATCH {
                    self.flush(&mut st.batch);
                }
            }
            let due: Vec<String> = st
                .vacated
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(k, _)| k.clone())
                .collect();
            if !due.is_empty() {
                for c in &due {
                    st.vacated.remove(c);
                }
                let anywhere = app.occupied_anywhere(&due).await;
                for (channel, occupied) in due.into_iter().zip(anywhere) {
                    if !occupied {
                        st.batch
                            .push(json!({"name": "channel_vacated", "channel": channel}));
                    }
                }
            }
            drop(app);
            if stopping {
                break;
            }
            let now = Instant::now();
            if !st.batch.is_empty() && flush_at.is_none() {
                flush_at = Some(now + BATCH_WINDOW);
            }
            if flush_at.is_some_and(|at| at <= now) || st.batch.len() >= MAX_BATCH {
                self.flush(&mut st.batch);
                flush_at = None;
            }
        }
        self.flush(&mut st.batch);
        tracing::debug!(app = %self.app_id, "webhook task stopped");
    }

    /// Takes one signal into the task's state, without waiting.
    fn apply(&self, s: Signal, st: &mut Pending2) {
        let due = Instant::now() + self.grace;
        match s {
            Signal::Added { channel, user } => {
                // Back within the grace period: neither event.
                if st
                    .removed
                    .remove(&(channel.clone(), user.clone()))
                    .is_none()
                {
                    st.batch.push(member_event("member_added", &channel, &user));
                }
            }
            Signal::Removed { channel, user } => {
                st.removed.insert((channel, user), due);
            }
            Signal::Occupied(channel) => {
                // Re-occupied within the grace period: neither event.
                if st.vacated.remove(&channel).is_none() {
                    st.occupied.push(channel);
                }
            }
            Signal::Vacated(channel) => {
                st.vacated.insert(channel, due);
            }
            Signal::Now(event) => st.batch.push(event),
        }
    }

    /// Hands the batch to every receiver whose event types take some of it.
    fn flush(&self, batch: &mut Vec<Value>) {
        if batch.is_empty() {
            return;
        }
        let events = std::mem::take(batch);
        let all = Arc::new(events);
        for route in &self.routes {
            let mine: Arc<Vec<Value>> = if route.types.is_empty() {
                all.clone()
            } else {
                let picked: Vec<Value> = all
                    .iter()
                    .filter(|e| {
                        e["name"]
                            .as_str()
                            .is_some_and(|n| route.types.iter().any(|t| t == n))
                    })
                    .cloned()
                    .collect();
                if picked.is_empty() {
                    continue;
                }
                Arc::new(picked)
            };
            let n = mine.len();
            if route.tx.try_send(mine).is_err() {
                self.metrics.webhook_dropped(n as u64);
                tracing::warn!(url = %route.url, events = n, "webhook receiver is behind: events dropped");
            }
        }
    }
}

/// Resolves once shutdown has begun (the guard is dropped at once, so the
/// task's future stays `Send`).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn member_event(name: &str, channel: &str, user: &str) -> Value {
    json!({"name": name, "channel": channel, "user_id": user})
}

/// Posts batches to one receiver, one at a time, retrying each.
struct Sender {
    url: String,
    key: String,
    secret: String,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Vec<Value>>>) {
        while let Some(events) = rx.recv().await {
            let time_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let body = json!({"time_ms": time_ms, "events": &*events}).to_string();
            let signature = whosin_protocol::sign::webhook_signature(&self.secret, body.as_bytes());
            let give_up = Instant::now() + RETRY_FOR;
            let mut backoff = Duration::from_millis(500);
            loop {
                let sent = self
                    .http
                    .post(&self.url)
                    .header("content-type", "application/json")
                    .header("x-pusher-key", &self.key)
                    .header("x-pusher-signature", &signature)
                    .body(body.clone())
                    .send()
                    .await;
                let why = match sent {
                    Ok(r) if r.status().is_success() => {
                        Metrics::inc(&self.metrics.webhook_batches_sent);
                        break;
                    }
                    Ok(r) => format!("HTTP {}", r.status().as_u16()),
                    Err(e) if e.is_timeout() => "no answer in time".to_owned(),
                    Err(e) => format!("cannot reach it ({})", e.without_url()),
                };
                if Instant::now() + backoff > give_up {
                    Metrics::inc(&self.metrics.webhook_batches_failed);
                    tracing::warn!(url = %self.url, events = events.len(), "webhook given up after {} s: {why}", RETRY_FOR.as_secs());
                    break;
                }
                tracing::debug!(url = %self.url, "webhook failed ({why}); retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
