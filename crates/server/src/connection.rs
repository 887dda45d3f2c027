//! One WebSocket connection: its task, from `connection_established` to the
//! last `member_removed` it causes.
//!
//! A single task per connection selects over four things: frames from the
//! client, frames queued for it (its [`Outbox`]), a close request (slow
//! client, terminate, rate limit) and server shutdown, plus one deadline for
//! the activity/pong timer. Cleanup lives in [`Session`]'s `Drop`, so a
//! connection leaves its channels however the task ends.

use crate::app::App;
use crate::metrics::Metrics;
use crate::outbox::{Frame, Kill, Outbox};
use crate::server::Shared;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use whosin_protocol::frame::server;
use whosin_protocol::sign::verify_signin_auth;
use whosin_protocol::{ClientFrame, CloseCode};

/// Frames written before one flush: batching syscalls when a burst is queued.
const WRITE_BATCH: usize = 64;
/// How long a close frame may take to go out before the socket is dropped.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection's membership in the app, undone on drop.
struct Session {
    app: Arc<App>,
    outbox: Outbox,
    channels: Vec<String>,
    signed_in: Option<String>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for ch in self.channels.drain(..) {
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

/// Sends a close frame with a Pusher code, best effort and bounded in time.
pub(crate) async fn close_with(ws: &mut WebSocket, code: u16) {
    let reason = close_reason(code);
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = timeout(CLOSE_WRITE_TIMEOUT, ws.send(frame)).await;
}

fn close_reason(code: u16) -> &'static str {
    CloseCode::from_code(code).map_or("", CloseCode::reason)
}

/// Refuses a connection: `pusher:error` with the code, then a close frame.
pub(crate) async fn refuse(mut ws: WebSocket, code: CloseCode) {
    let _ = timeout(
        CLOSE_WRITE_TIMEOUT,
        ws.send(Message::Text(
            server::error(Some(code.code()), code.reason()).into(),
        )),
    )
    .await;
    close_with(&mut ws, code.code()).await;
}

/// Runs one accepted connection to its end.
pub(crate) async fn run(mut ws: WebSocket, shared: Arc<Shared>, app: Arc<App>) {
    if !app.try_open_connection() {
        tracing::warn!(app = %app.config.id, "connection refused: over quota");
        refuse(ws, CloseCode::OverConnectionQuota).await;
        return;
    }
    let id = shared.next_connection_id();
    let socket_id: Arc<str> = Arc::from(format!("{}.{}", shared.node_number, id));
    let (outbox, mut rx, kill) = Outbox::new(
        id,
        socket_id.clone(),
        shared.config.outbound_queue,
        shared.metrics.clone(),
    );
    let mut session = Session {
        app: app.clone(),
        outbox,
        channels: Vec::new(),
        signed_in: None,
    };
    Metrics::inc(&shared.metrics.connections_total);
    let activity = shared.config.activity_timeout;
    let hello = server::connection_established(&socket_id, activity.as_secs());
    if ws.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    tracing::debug!(socket_id = %socket_id, "connected");

    let mut shutdown = shared.shutdown.clone();
    let mut rate = RateWindow {
        start: Instant::now(),
        count: 0,
    };
    let mut deadline = Instant::now() + activity;
    let mut awaiting_pong = false;

    let code: Option<u16> = loop {
        tokio::select! {
            biased;
            code = kill.requested() => break Some(code),
            _ = shutdown.changed() => break Some(CloseCode::Reconnect.code()),
            Some(frame) = rx.recv() => {
                match write_batch(&mut ws, frame, &mut rx, &kill, &mut shutdown).await {
                    Written::All => {}
                    Written::Failed => break None,
                    // A close was asked for while the client was not reading:
                    // try to say why (bounded), then drop it.
                    Written::Interrupted(code) => break Some(code),
                }
            }
            incoming = ws.recv() => {
                let msg = match incoming {
                    Some(Ok(msg)) => msg,
                    Some(Err(e)) => {
                        tracing::debug!(socket_id = %socket_id, error = %e, "read error");
                        // Tell the client why, as RFC 6455 asks, when the
                        // socket can still take a close frame.
                        break Some(read_error_code(&e.to_string()));
                    }
                    None => break None,
                };
                deadline = Instant::now() + activity;
                awaiting_pong = false;
                match msg {
                    Message::Text(text) => {
                        Metrics::inc(&shared.metrics.messages_in);
                        if let Some(code) = handle_text(&mut session, &shared, &mut rate, text.as_str()).await {
                            break Some(code.code());
                        }
                    }
                    Message::Binary(_) => {
                        Metrics::inc(&shared.metrics.malformed_frames);
                        session.outbox.send(Frame::from(server::error(
                            None,
                            "binary frames are not part of the Pusher protocol; send JSON text frames",
                        )));
                    }
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            _ = sleep_until(deadline) => {
                if awaiting_pong {
                    tracing::debug!(socket_id = %socket_id, "no pong: closing");
                    break Some(CloseCode::PongNotReceived.code());
                }
                awaiting_pong = true;
                deadline = Instant::now() + shared.config.pong_timeout;
                session.outbox.send(Frame::from(server::ping()));
            }
        }
    };
    // Leave channels before the close frame goes out, so peers learn at once.
    drop(session);
    if let Some(code) = code {
        if code == CloseCode::OverCapacity.code() {
            tracing::info!(socket_id = %socket_id, "closing a client that could not keep up");
        }
        close_with(&mut ws, code).await;
    }
    tracing::debug!(socket_id = %socket_id, "disconnected");
}

/// How a batch write ended.
enum Written {
    /// Everything was written and flushed.
    All,
    /// The socket failed.
    Failed,
    /// A close (with this code) or shutdown came while the client was not
    /// reading: a stalled reader must not hold the task.
    Interrupted(u16),
}

/// The WebSocket close code for a read error: 1009 for a message over the
/// size limit, 1007 for invalid UTF-8, 1002 for other protocol violations.
/// axum hides tungstenite's error type, so its message is what there is.
fn read_error_code(message: &str) -> u16 {
    let m = message.to_ascii_lowercase();
    if m.contains("too long") || m.contains("space limit") {
        1009
    } else if m.contains("utf-8") || m.contains("utf8") {
        1007
    } else {
        1002
    }
}

/// Writes `first` and whatever else is queued (up to a batch), then flushes.
async fn write_batch(
    ws: &mut WebSocket,
    first: Frame,
    rx: &mut mpsc::Receiver<Frame>,
    kill: &Kill,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Written {
    let write = async {
        ws.feed(Message::Text(first)).await?;
        for _ in 1..WRITE_BATCH {
            match rx.try_recv() {
                Ok(f) => ws.feed(Message::Text(f)).await?,
                Err(_) => break,
            }
        }
        ws.flush().await
    };
    tokio::select! {
        r = write => if r.is_ok() { Written::All } else { Written::Failed },
        code = kill.requested() => Written::Interrupted(code),
        _ = shutdown.changed() => Written::Interrupted(CloseCode::Reconnect.code()),
    }
}

/// Acts on one text frame. Returns a close code when the connection must end.
async fn handle_text(
    session: &mut Session,
    shared: &Shared,
    rate: &mut RateWindow,
    text: &str,
) -> Option<CloseCode> {
    let app = &session.app;
    let frame = match ClientFrame::parse(text) {
        Ok(f) => f,
        Err(e) => {
            Metrics::inc(&shared.metrics.malformed_frames);
            session
                .outbox
                .send(Frame::from(server::error(None, &e.to_string())));
            return None;
        }
    };
    match frame {
        ClientFrame::Ping => session.outbox.send(Frame::from(server::pong())),
        ClientFrame::Pong => {}
        ClientFrame::Subscribe(sub) => match app.subscribe(&session.outbox, &sub).await {
            Ok(_) => {
                if !session.channels.contains(&sub.channel) {
                    session.channels.push(sub.channel);
                }
            }
            Err(e) => {
                tracing::debug!(channel = %sub.channel, status = e.status, error = %e.message, "subscription refused");
                session.outbox.send(Frame::from(server::subscription_error(
                    &sub.channel,
                    e.status,
                    &e.message,
                )));
            }
        },
        ClientFrame::Unsubscribe { channel } => {
            app.unsubscribe(session.outbox.id, &channel);
            session.channels.retain(|c| *c != channel);
        }
        ClientFrame::Signin { auth, user_data } => {
            let verified = verify_signin_auth(
                &app.config.key,
                &app.config.secret,
                &session.outbox.socket_id,
                &user_data,
                &auth,
            );
            let user_id = serde_json::from_str::<serde_json::Value>(&user_data)
                .ok()
                .and_then(|v| match &v["id"] {
                    serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
            match (verified, user_id) {
                (Ok(()), Some(user)) => {
                    if let Some(old) = session.signed_in.replace(user.clone()) {
                        app.sign_out(session.outbox.id, &old);
                    }
                    app.sign_in(&session.outbox, &user);
                    session
                        .outbox
                        .send(Frame::from(server::signin_success(&user_data)));
                }
                (Err(e), _) => {
                    Metrics::inc(&shared.metrics.auth_failures);
                    session.outbox.send(Frame::from(server::error(
                        Some(CloseCode::Unauthorized.code()),
                        &format!("signin refused: {e}"),
                    )));
                }
                (Ok(()), None) => session.outbox.send(Frame::from(server::error(
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
            if !rate.allow(app.config.client_events_per_second) {
                return Some(CloseCode::ClientEventRateLimit);
            }
            if let Err(e) = app.client_event(&session.outbox, &channel, &event, &data) {
                session
                    .outbox
                    .send(Frame::from(server::error(None, &e.to_string())));
            }
        }
        ClientFrame::Other { event } => {
            tracing::trace!(%event, "ignoring unknown event");
        }
    }
    None
}
