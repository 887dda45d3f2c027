//! One WebSocket connection: its task, from `connection_established` to the
//! last `member_removed` it causes.
//!
//! A single task per connection waits on four things: input from the
//! client, frames queued for it (its [`Mailbox`]), a close request (slow
//! client, terminate, rate limit) and server shutdown, plus one deadline for
//! the activity/pong timer. Input and output take turns in bounded slices,
//! so a client that floods cannot starve its own deliveries and a burst of
//! deliveries cannot stop it from being read. What the connection is to the
//! rest of the server lives in its `Handler` (mini-redis's name), whose
//! `Drop` is the cleanup, so a connection leaves its channels however the
//! task ends.

use crate::admission::Ticket;
use crate::app::App;
use crate::metrics::Metrics;
use crate::outbox::{Frame, Mailbox, Outbox};
use crate::shared::{LiveConnection, Shared};
use crate::ws::{Message, ReadError, Socket, CLOSE_WRITE_TIMEOUT};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant, Sleep};
use whosin_protocol::frame::server;
use whosin_protocol::sign::verify_signin_auth;
use whosin_protocol::{server_to_user, ClientFrame, CloseCode};

/// Frames written with one vectored write.
const WRITE_BATCH: usize = 64;
/// Messages handled before the task looks at its outbound queue again.
const READ_BUDGET: usize = 32;

/// One connection as the rest of the server knows it: what it joined, who
/// it signed in as, and what it may still send. Dropping it undoes the
/// membership (channels left, sign-in forgotten, quota slot given back).
struct Handler {
    /// The app the client connected to (by key).
    app: Arc<App>,
    /// Server-wide configuration and counters.
    shared: Arc<Shared>,
    /// Where frames for this client are queued; carries the connection's
    /// number and the socket id it was given.
    outbox: Outbox,
    /// Channels subscribed (a set: every subscribe looks here first), left
    /// on drop.
    channels: HashSet<String>,
    /// The user of a successful `pusher:signin`, forgotten on drop.
    signed_in: Option<String>,
    /// Client events sent in the current second (the rate limit).
    rate: RateWindow,
    /// Subscribes to channels this connection is already in, this second:
    /// each is answered with the roster again, so they are limited.
    repeats: RateWindow,
    /// Subscribes and unsubscribes still allowed: each costs the server a
    /// roster and member announcements, so a connection cycling through
    /// channels is held to a steady rate.
    churn: ChurnBudget,
    /// Its place under the limits per address and the process's cap,
    /// given back when the connection ends.
    ticket: Ticket,
}

/// Subscribes and unsubscribes a connection may send at once.
const CHURN_BURST: f64 = 200.0;
/// Subscribes and unsubscribes a connection may send per second, past the burst.
const CHURN_PER_SECOND: f64 = 20.0;

/// A token bucket for subscribes and unsubscribes ([`CHURN_BURST`] at
/// once, then [`CHURN_PER_SECOND`]). Both spend it; only subscribes are
/// refused when it is empty, since an unsubscribe only gives state back and
/// there can be no more of them than subscribes admitted.
struct ChurnBudget {
    tokens: f64,
    at: Instant,
}

impl ChurnBudget {
    fn new() -> ChurnBudget {
        ChurnBudget {
            tokens: CHURN_BURST,
            at: Instant::now(),
        }
    }

    /// Spends one token; `false` when there was none.
    fn spend(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * CHURN_PER_SECOND).min(CHURN_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Repeated subscribes to one channel a connection may send per second; a
/// client has no reason to send more than one (it is confirmed each time).
const REPEATED_SUBSCRIBES_PER_SECOND: u32 = 5;

impl Drop for Handler {
    fn drop(&mut self) {
        for ch in self.channels.drain() {
            self.app.unsubscribe(self.outbox.id, &ch);
        }
        if let Some(user) = self.signed_in.take() {
            self.app.sign_out(self.outbox.id, &user);
        }
        self.app.close_connection();
    }
}

/// Counts client events in one-second windows.
struct RateWindow {
    start: Instant,
    count: u32,
}

impl RateWindow {
    /// Counts one event; `false` once the limit per second is passed.
    fn allow(&mut self, limit: u32) -> bool {
        let now = Instant::now();
        if now.duration_since(self.start) >= Duration::from_secs(1) {
            self.start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= limit
    }
}

fn close_reason(code: u16) -> &'static str {
    CloseCode::from_code(code).map_or("", CloseCode::reason)
}

/// Refuses a connection: `pusher:error` with the code, then a close frame.
pub(crate) async fn refuse(mut sock: Socket, code: CloseCode) {
    let error = Frame::from(server::error(Some(code.code()), code.reason()));
    let _ = timeout(CLOSE_WRITE_TIMEOUT, sock.write_texts(&[error])).await;
    sock.close(code.code(), code.reason()).await;
}

/// How a connection ends.
enum End {
    /// We close it with this code.
    Close(u16),
    /// The client closed it (with this code); we answer in kind.
    ClientClosed(Option<u16>),
    /// The socket is gone.
    Lost,
}

/// Runs one accepted connection to its end.
pub(crate) async fn run(mut sock: Socket, shared: Arc<Shared>, app: Arc<App>, ticket: Ticket) {
    // Held to the very end, past the close handshake: shutdown waits for it.
    let Some(_live): Option<LiveConnection> = shared.track() else {
        Box::pin(refuse(sock, CloseCode::Reconnect)).await;
        return;
    };
    if !app.try_open_connection() {
        tracing::warn!(app = %app.config.id, "connection refused: over quota");
        Box::pin(refuse(sock, CloseCode::OverConnectionQuota)).await;
        return;
    }
    let id = shared.next_connection_id();
    let socket_id: Arc<str> = Arc::from(format!("{}.{}", shared.node_number, id));
    let (outbox, mailbox) = Outbox::with_bounds(
        id,
        socket_id.clone(),
        shared.config.outbound_queue,
        shared.config.outbound_queue_bytes,
        shared.metrics.clone(),
    );
    let mut handler = Handler {
        app: app.clone(),
        shared: shared.clone(),
        outbox,
        channels: HashSet::new(),
        signed_in: None,
        rate: RateWindow {
            start: Instant::now(),
            count: 0,
        },
        repeats: RateWindow {
            start: Instant::now(),
            count: 0,
        },
        churn: ChurnBudget::new(),
        ticket,
    };
    Metrics::inc(&shared.metrics.connections_total);
    let activity = shared.config.activity_timeout;
    let hello = Frame::from(server::connection_established(
        &socket_id,
        activity.as_secs(),
    ));
    if sock.write_texts(&[hello]).await.is_err() {
        drop(handler);
        Box::pin(sock.finish()).await;
        return;
    }
    tracing::debug!(socket_id = %socket_id, "connected");

    // The shutdown signal and the activity timer are created once and
    // polled in place: re-creating them on every wake-up re-registers a
    // waiter and a timer entry per delivered frame, which is most of a
    // broadcast's cost per subscriber.
    let shutdown = shutdown_requested(shared.shutdown.clone());
    tokio::pin!(shutdown);
    let mut live = Liveness::new(activity, shared.config.pong_timeout);
    let timer = sleep_until(live.deadline);
    tokio::pin!(timer);
    // The handshake may have left a frame behind: look before waiting.
    let mut more_input = true;

    let end = 'conn: loop {
        if let Some(code) = mailbox.close_requested() {
            break End::Close(code);
        }
        let more_output = mailbox.has_frames();
        tokio::select! {
            biased;
            _ = &mut shutdown => break End::Close(CloseCode::Reconnect.code()),
            r = sock.readable(), if !more_input => match r {
                Ok(()) => more_input = true,
                Err(_) => break End::Lost,
            },
            _ = mailbox.changed(), if !more_input && !more_output => {}
            _ = &mut timer, if !more_input => {
                if live.fired(timer.as_mut()) {
                    tracing::debug!(socket_id = %socket_id, "no pong: closing");
                    break End::Close(CloseCode::PongNotReceived.code());
                }
            }
            _ = std::future::ready(()), if more_input || more_output => {}
        }

        if std::mem::take(&mut live.ping_due) {
            handler.outbox.send(Frame::from(server::ping()));
        }
        if mailbox.has_frames() {
            let mut batch = Vec::new();
            mailbox.drain_into(&mut batch, WRITE_BATCH);
            // Boxed: one small allocation per batch written (~50 ns against
            // the ~8 µs a socket write costs) keeps the write's state out of
            // every idle connection's task.
            let write = sock.write_texts(&batch);
            let guarded = interruptible(
                write,
                &mailbox,
                shutdown.as_mut(),
                timer.as_mut(),
                &mut live,
            );
            if let Some(end) = Box::pin(guarded).await {
                break 'conn end;
            }
        }

        if more_input {
            more_input = false;
            for handled in 1..=READ_BUDGET {
                let msg = match sock.try_next() {
                    Ok(Some(msg)) => msg,
                    Ok(None) => break,
                    Err(ReadError::Ws(e)) => {
                        tracing::debug!(socket_id = %socket_id, error = %e, "bad frame");
                        Metrics::inc(&shared.metrics.malformed_frames);
                        break 'conn End::Close(e.close_code());
                    }
                    Err(ReadError::Io(e)) => {
                        tracing::debug!(socket_id = %socket_id, error = %e, "read error");
                        break 'conn End::Lost;
                    }
                };
                live.input();
                match msg {
                    Message::Text(text) => {
                        Metrics::inc(&shared.metrics.messages_in);
                        // Boxed: subscribing (and its Redis round trips
                        // in a cluster) is a large future, needed only
                        // while a message is handled, not for the life of
                        // every idle connection.
                        let handled = Box::pin(handler.apply(&text));
                        if let Some(code) = handled.await {
                            break 'conn End::Close(code.code());
                        }
                    }
                    Message::Binary(_) => {
                        Metrics::inc(&shared.metrics.malformed_frames);
                        handler.outbox.send(Frame::from(server::error(
                            None,
                            "binary frames are not part of the Pusher protocol; send JSON text frames",
                        )));
                    }
                    Message::Ping(payload) => {
                        // Boxed: WebSocket-level pings are rare (Pusher
                        // clients ping in JSON), and this state would
                        // otherwise be part of every connection's task.
                        let write = sock.pong(&payload);
                        let guarded = interruptible(
                            write,
                            &mailbox,
                            shutdown.as_mut(),
                            timer.as_mut(),
                            &mut live,
                        );
                        if let Some(end) = Box::pin(guarded).await {
                            break 'conn end;
                        }
                    }
                    Message::Pong => {}
                    Message::Close(code) => break 'conn End::ClientClosed(code),
                }
                if handled == READ_BUDGET {
                    more_input = true;
                }
            }
        }
    };
    // Leave channels before the close frame goes out, so peers learn at once.
    drop(handler);
    // Boxed, like message handling: the close handshake's timers and
    // buffers are needed once, at the end, not for the connection's life.
    match end {
        End::Close(code) => {
            if code == CloseCode::OverCapacity.code() {
                tracing::info!(socket_id = %socket_id, "closing a client that could not keep up");
            }
            Box::pin(sock.close(code, close_reason(code))).await;
        }
        End::ClientClosed(code) => Box::pin(sock.close(code.unwrap_or(1000), "")).await,
        End::Lost => Box::pin(sock.finish()).await,
    }
    tracing::debug!(socket_id = %socket_id, "disconnected");
}

/// Whether the client is alive: the activity/pong deadline.
///
/// Input moves the deadline without touching the timer (one timer
/// operation per quiet period, not one per message); when the timer fires
/// early it is re-armed for the moved deadline.
struct Liveness {
    deadline: Instant,
    awaiting_pong: bool,
    /// A ping is owed (decided while a write was blocked).
    ping_due: bool,
    activity: Duration,
    pong: Duration,
}

impl Liveness {
    fn new(activity: Duration, pong: Duration) -> Liveness {
        Liveness {
            deadline: Instant::now() + activity,
            awaiting_pong: false,
            ping_due: false,
            activity,
            pong,
        }
    }

    /// The client sent something.
    fn input(&mut self) {
        self.deadline = Instant::now() + self.activity;
        self.awaiting_pong = false;
    }

    /// The timer fired: re-arms it, owes a ping, or returns `true` when the
    /// client missed its pong and is gone.
    fn fired(&mut self, timer: Pin<&mut Sleep>) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            if self.awaiting_pong {
                return true;
            }
            self.awaiting_pong = true;
            self.ping_due = true;
            self.deadline = now + self.pong;
        }
        timer.reset(self.deadline);
        false
    }
}

/// Runs a write unless a close or shutdown comes first, or the client is
/// found dead: a client that stopped reading (its socket buffers full) and
/// sends nothing either misses its pong while the write is stuck, and is
/// closed with 4201 instead of holding its task for ever. `None` when the
/// write went out; otherwise how the connection ends (a close asked for
/// while the client was not reading is still tried, bounded, at the end).
async fn interruptible(
    write: impl Future<Output = std::io::Result<()>>,
    mailbox: &Mailbox,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
    mut timer: Pin<&mut Sleep>,
    live: &mut Liveness,
) -> Option<End> {
    let close = async {
        loop {
            if let Some(code) = mailbox.close_requested() {
                return code;
            }
            mailbox.changed().await;
        }
    };
    tokio::pin!(write, close);
    loop {
        tokio::select! {
            r = &mut write => return r.is_err().then_some(End::Lost),
            code = &mut close => return Some(End::Close(code)),
            _ = shutdown.as_mut() => return Some(End::Close(CloseCode::Reconnect.code())),
            _ = timer.as_mut() => {
                if live.fired(timer.as_mut()) {
                    return Some(End::Close(CloseCode::PongNotReceived.code()));
                }
            }
        }
    }
}

/// Resolves once the server begins to shut down.
async fn shutdown_requested(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl Handler {
    /// Acts on one text frame. Returns a close code when the connection must end.
    async fn apply(&mut self, text: &str) -> Option<CloseCode> {
        let app = &self.app;
        let shared = &self.shared;
        let frame = match ClientFrame::parse(text) {
            Ok(f) => f,
            Err(e) => {
                Metrics::inc(&shared.metrics.malformed_frames);
                self.outbox
                    .send(Frame::from(server::error(None, &e.to_string())));
                return None;
            }
        };
        match frame {
            ClientFrame::Ping => self.outbox.send(Frame::from(server::pong())),
            ClientFrame::Pong => {}
            ClientFrame::Subscribe(sub)
                if self.channels.contains(&sub.channel)
                    && !self.repeats.allow(REPEATED_SUBSCRIBES_PER_SECOND) =>
            {
                self.outbox.send(Frame::from(server::subscription_error(
                    &sub.channel,
                    429,
                    &format!(
                        "already subscribed to {}; repeated subscribes are limited to {REPEATED_SUBSCRIBES_PER_SECOND} per second",
                        sub.channel
                    ),
                )));
            }
            ClientFrame::Subscribe(sub)
                if !self.channels.contains(&sub.channel)
                    && self.channels.len() >= app.config.max_channels_per_connection =>
            {
                let max = app.config.max_channels_per_connection;
                let message = format!(
                    "this connection is in {max} channels, the most allowed: unsubscribe from one first"
                );
                self.outbox.send(Frame::from(server::error(
                    Some(CloseCode::OverChannelLimit.code()),
                    &message,
                )));
                self.outbox.send(Frame::from(server::subscription_error(
                    &sub.channel,
                    403,
                    &message,
                )));
            }
            ClientFrame::Subscribe(sub)
                if server_to_user(&sub.channel)
                    .is_some_and(|u| self.signed_in.as_deref() != Some(u)) =>
            {
                self.outbox.send(Frame::from(server::subscription_error(
                    &sub.channel,
                    403,
                    "a #server-to-user- channel is only for a connection signed in as that user (pusher:signin first)",
                )));
            }
            ClientFrame::Subscribe(sub) if !self.churn.spend() => {
                self.outbox.send(Frame::from(server::subscription_error(
                    &sub.channel,
                    429,
                    &format!(
                        "too many subscribes and unsubscribes: {CHURN_BURST} at once, then {CHURN_PER_SECOND} a second; retry in a second"
                    ),
                )));
            }
            ClientFrame::Subscribe(sub) => {
                match app.subscribe(&self.outbox, &sub, self.ticket.key()) {
                    Ok(_) => {
                        self.channels.insert(sub.channel);
                    }
                    Err(e) => {
                        if let (Some(limit), Some(address)) = (e.limit, self.ticket.key()) {
                            shared.gate.note(address, limit, &e.message);
                        }
                        tracing::debug!(channel = %sub.channel, status = e.status, error = %e.message, "subscription refused");
                        self.outbox.send(Frame::from(server::subscription_error(
                            &sub.channel,
                            e.status,
                            &e.message,
                        )));
                    }
                }
            }
            ClientFrame::Unsubscribe { channel } => {
                self.churn.spend();
                app.unsubscribe(self.outbox.id, &channel);
                self.channels.remove(&channel);
            }
            ClientFrame::Signin { auth, user_data } => {
                let verified = verify_signin_auth(
                    &app.config.key,
                    &app.config.secret,
                    &self.outbox.socket_id,
                    &user_data,
                    &auth,
                );
                let parsed = serde_json::from_str::<serde_json::Value>(&user_data).ok();
                let id_of = |v: &serde_json::Value| match v {
                    serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
                let user_id = parsed.as_ref().and_then(|v| id_of(&v["id"]));
                // Users to watch (their online status), as signed: at most
                // the first 100.
                let watchlist: Vec<String> = parsed
                    .as_ref()
                    .and_then(|v| v["watchlist"].as_array())
                    .map(|list| {
                        list.iter()
                            .filter_map(id_of)
                            .take(crate::app::MAX_WATCHLIST)
                            .collect()
                    })
                    .unwrap_or_default();
                match (verified, user_id) {
                    (Ok(()), Some(user)) => {
                        // Signing in again as the same user only replaces the
                        // watchlist: the user never went offline.
                        if let Some(old) = self.signed_in.replace(user.clone()) {
                            if old == user {
                                app.rewatch(&self.outbox, &watchlist);
                            } else {
                                app.sign_out(self.outbox.id, &old);
                                app.sign_in(&self.outbox, &user, &watchlist);
                            }
                        } else {
                            app.sign_in(&self.outbox, &user, &watchlist);
                        }
                        self.outbox
                            .send(Frame::from(server::signin_success(&user_data)));
                    }
                    (Err(e), _) => {
                        Metrics::inc(&shared.metrics.auth_failures);
                        self.outbox.send(Frame::from(server::error(
                            Some(CloseCode::Unauthorized.code()),
                            &format!("signin refused: {e}"),
                        )));
                    }
                    (Ok(()), None) => self.outbox.send(Frame::from(server::error(
                        None,
                        "signin user_data must be a JSON object with a non-empty \"id\"",
                    ))),
                }
            }
            ClientFrame::ClientEvent {
                event,
                channel,
                data,
            } => {
                if !self.rate.allow(app.config.client_events_per_second) {
                    return Some(CloseCode::ClientEventRateLimit);
                }
                if let Err(e) = app.client_event(&self.outbox, &channel, &event, &data) {
                    self.outbox
                        .send(Frame::from(server::error(None, &e.to_string())));
                }
            }
            ClientFrame::Other { event } => {
                tracing::trace!(%event, "ignoring unknown event");
            }
        }
        None
    }
}
