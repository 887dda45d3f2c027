//! The connection task: one per client, owning the WebSocket.
//!
//! It only moves bytes and keeps time: it connects, reads
//! `connection_established`, and then selects over frames from the server,
//! commands from the [`Client`] handle, finished authorizations and one
//! deadline for the ping/pong timer, handing each to the pure [`Session`]
//! and carrying out what it answers ([`Output`]). When a connection ends,
//! [`after_close`] decides what comes next, as in pusher-js: 4000–4099
//! stop, 4100–4199 back off, 4200–4299 reconnect at once, anything else
//! (network loss, a dead link) backs off with jitter.

use crate::auth::{AuthError, Authorizer, ChannelAuth};
use crate::backoff::Backoff;
use crate::endpoint::Endpoint;
use crate::event::{ConnectionState, Event, Member, StopReason};
use crate::session::{after_close, Next, Output, Session};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use whosin_protocol::frame::{client, ServerFrame};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connection that lived shorter than this and was closed with a
/// "reconnect at once" code is retried with backoff instead, so a server that
/// keeps closing immediately is not hammered.
const MIN_HEALTHY_LIFETIME: Duration = Duration::from_secs(1);

/// Settings for a client; see [`Client::builder`].
pub struct ClientBuilder {
    endpoint: Endpoint,
    authorizer: Option<Arc<dyn Authorizer>>,
    activity_timeout: Duration,
    pong_timeout: Duration,
    connect_timeout: Duration,
    backoff: Backoff,
    event_capacity: usize,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("activity_timeout", &self.activity_timeout)
            .field("pong_timeout", &self.pong_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Who signs private and presence subscriptions.
    pub fn authorizer(mut self, a: impl Authorizer) -> Self {
        self.authorizer = Some(Arc::new(a));
        self
    }

    /// Like [`ClientBuilder::authorizer`], for an authorizer already shared.
    pub fn shared_authorizer(mut self, a: Arc<dyn Authorizer>) -> Self {
        self.authorizer = Some(a);
        self
    }

    /// Silence after which we ping; the smaller of this and the server's
    /// value is used. Default 120 s, as pusher-js.
    pub fn activity_timeout(mut self, d: Duration) -> Self {
        self.activity_timeout = d;
        self
    }

    /// Time the server has to answer our ping before the link counts as
    /// dead. Default 30 s, as pusher-js.
    pub fn pong_timeout(mut self, d: Duration) -> Self {
        self.pong_timeout = d;
        self
    }

    /// Time for TCP, TLS, the WebSocket handshake and
    /// `connection_established` together. Default 10 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Reconnect backoff. Default 1 s doubling to 30 s, with jitter.
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.backoff = b;
        self
    }

    /// Starts the connection task on the current tokio runtime.
    pub fn connect(self) -> (Client, Events) {
        let (client, events, ends) =
            handles(Session::new(self.authorizer.is_some()), self.event_capacity);
        let (auth_tx, auth_rx) = mpsc::unbounded_channel();
        let task = Task {
            endpoint: self.endpoint,
            authorizer: self.authorizer,
            activity_timeout: self.activity_timeout,
            pong_timeout: self.pong_timeout,
            connect_timeout: self.connect_timeout,
            backoff: self.backoff,
            commands: ends.commands,
            events: ends.events,
            view: ends.view,
            auth_tx,
            auth_rx,
        };
        tokio::spawn(task.run());
        (client, events)
    }
}

/// The task's ends of a [`Client`] and its [`Events`]: commands in, events
/// out, and the view both share. The WebSocket task holds them, and so does
/// the REST watcher ([`crate::rest`]), so that callers see one kind of client.
pub(crate) struct Ends {
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) view: Arc<Mutex<View>>,
}

/// A client handle, its events, and the ends a task keeps.
pub(crate) fn handles(session: Session, event_capacity: usize) -> (Client, Events, Ends) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::channel(event_capacity);
    let view = Arc::new(Mutex::new(View {
        state: ConnectionState::Connecting,
        session,
    }));
    (
        Client {
            commands: cmd_tx,
            view: view.clone(),
        },
        Events { rx: ev_rx },
        Ends {
            commands: cmd_rx,
            events: ev_tx,
            view,
        },
    )
}

/// The stream of [`Event`]s of one client.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has stopped and every event
    /// was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// What a [`Client`] handle asks of its task.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe(String),
    Unsubscribe(String),
    Trigger {
        channel: String,
        event: String,
        data: Value,
    },
    Close,
}

/// What the handle can read without asking the task: the state, and the
/// session (the one place the rosters are kept).
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) state: ConnectionState,
    pub(crate) session: Session,
}

/// A handle to a running client. Cheap to clone; the connection closes when
/// [`Client::close`] is called or every handle is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    view: Arc<Mutex<View>>,
}

impl Client {
    /// Settings for a client of `endpoint`.
    pub fn builder(endpoint: Endpoint) -> ClientBuilder {
        ClientBuilder {
            endpoint,
            authorizer: None,
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            event_capacity: 1024,
        }
    }

    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to a channel, now and after every reconnect.
    pub fn subscribe(&self, channel: &str) {
        let _ = self.commands.send(Command::Subscribe(channel.to_owned()));
    }

    /// Leaves a channel.
    pub fn unsubscribe(&self, channel: &str) {
        let _ = self.commands.send(Command::Unsubscribe(channel.to_owned()));
    }

    /// Sends a client event (`client-` is prepended when missing). Dropped
    /// when not connected, as client events are not queued by Pusher either.
    pub fn trigger(&self, channel: &str, event: &str, data: Value) {
        let _ = self.commands.send(Command::Trigger {
            channel: channel.to_owned(),
            event: event.to_owned(),
            data,
        });
    }

    /// Closes the connection for good.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        self.view().state.clone()
    }

    /// How many are in a presence channel as last known (what
    /// [`Client::members`] would list, without copying it).
    pub fn count(&self, channel: &str) -> Option<usize> {
        self.view().session.count(channel)
    }

    /// `(me, members)` of a presence channel as last known; `None` before
    /// its first snapshot or for a channel not subscribed.
    pub fn members(&self, channel: &str) -> Option<(Option<Member>, Vec<Member>)> {
        self.view().session.members(channel)
    }
}

/// How a session (one WebSocket) ended.
enum Outcome {
    /// The caller closed the client.
    Closed,
    /// A 4000–4099 close: do not reconnect.
    Stop(StopReason),
    /// Reconnect; at once when `immediate`.
    Retry {
        immediate: bool,
        reason: String,
        unreachable: bool,
    },
}

struct Task {
    endpoint: Endpoint,
    authorizer: Option<Arc<dyn Authorizer>>,
    activity_timeout: Duration,
    pong_timeout: Duration,
    connect_timeout: Duration,
    backoff: Backoff,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    view: Arc<Mutex<View>>,
    auth_tx: mpsc::UnboundedSender<(String, String, Result<ChannelAuth, AuthError>)>,
    auth_rx: mpsc::UnboundedReceiver<(String, String, Result<ChannelAuth, AuthError>)>,
}

impl Task {
    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn emit(&self, e: Event) {
        // A caller that dropped its Events still gets queries answered.
        let _ = self.events.send(e).await;
    }

    async fn set_state(&self, s: ConnectionState) {
        self.view().state = s.clone();
        self.emit(Event::State(s)).await;
    }

    async fn run(mut self) {
        self.set_state(ConnectionState::Connecting).await;
        loop {
            let started = Instant::now();
            let outcome = match self.connect().await {
                Ok((ws, socket_id, server_timeout)) => {
                    self.session(ws, socket_id, server_timeout).await
                }
                Err(outcome) => outcome,
            };
            let (delay, reason, unreachable) = match outcome {
                Outcome::Closed => {
                    self.set_state(ConnectionState::Disconnected {
                        reason: StopReason::Closed,
                    })
                    .await;
                    return;
                }
                Outcome::Stop(reason) => {
                    tracing::warn!(%reason, "connection refused for good");
                    self.set_state(ConnectionState::Disconnected { reason })
                        .await;
                    return;
                }
                Outcome::Retry {
                    immediate,
                    reason,
                    unreachable,
                } => {
                    let delay = if immediate && started.elapsed() >= MIN_HEALTHY_LIFETIME {
                        Duration::ZERO
                    } else {
                        self.backoff.next_delay()
                    };
                    (delay, reason, unreachable)
                }
            };
            tracing::info!(?delay, %reason, "reconnecting");
            self.set_state(ConnectionState::Reconnecting {
                delay,
                reason,
                unreachable,
            })
            .await;
            if !self.wait(delay).await {
                self.set_state(ConnectionState::Disconnected {
                    reason: StopReason::Closed,
                })
                .await;
                return;
            }
        }
    }

    /// Waits before a reconnect, still taking commands. `false` if closed.
    async fn wait(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = sleep_until(until) => return true,
                cmd = self.commands.recv() => match cmd {
                    None | Some(Command::Close) => return false,
                    // Not connected: the session only takes note.
                    Some(cmd) => { self.command(cmd); }
                },
            }
        }
    }

    /// Opens the WebSocket and reads `connection_established`. A close
    /// before that (e.g. 4001 for an unknown key) is classified like any
    /// other; failing to get there at all is "unreachable".
    async fn connect(&mut self) -> Result<(Ws, String, u64), Outcome> {
        let unreachable = |reason: String| Outcome::Retry {
            immediate: false,
            reason,
            unreachable: true,
        };
        let url = self.endpoint.url();
        let attempt = async {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .map_err(|e| unreachable(format!("cannot reach {}: {e}", self.endpoint)))?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => match ServerFrame::parse(t.as_str()) {
                        Ok(ServerFrame::ConnectionEstablished {
                            socket_id,
                            activity_timeout,
                        }) => return Ok((ws, socket_id, activity_timeout)),
                        Ok(ServerFrame::Error { code, message }) => {
                            // A refusal (e.g. 4001) is followed by a close
                            // frame; read on to act on its code.
                            tracing::debug!(?code, %message, "error before connection_established");
                        }
                        _ => {}
                    },
                    Some(Ok(Message::Close(frame))) => return Err(closed(frame.as_ref())),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        return Err(unreachable(format!(
                            "connection to {} failed: {e}",
                            self.endpoint
                        )))
                    }
                    None => {
                        return Err(unreachable(format!(
                            "{} closed the connection",
                            self.endpoint
                        )))
                    }
                }
            }
        };
        match timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(unreachable(format!(
                "no answer from {} within {:?}",
                self.endpoint, self.connect_timeout
            ))),
        }
    }

    async fn session(&mut self, mut ws: Ws, socket_id: String, server_timeout: u64) -> Outcome {
        self.backoff.reset();
        let activity = self
            .activity_timeout
            .min(Duration::from_secs(server_timeout.max(1)));
        self.set_state(ConnectionState::Connected {
            socket_id: socket_id.clone(),
        })
        .await;
        let out = self.view().session.connected(&socket_id);
        let outcome = self.connected(&mut ws, out, activity).await;
        self.view().session.disconnected();
        outcome
    }

    /// The life of one connection, until it ends.
    async fn connected(&mut self, ws: &mut Ws, first: Vec<Output>, activity: Duration) -> Outcome {
        if let Err(reason) = self.perform(ws, first).await {
            return lost(reason);
        }
        let mut deadline = Instant::now() + activity;
        let mut awaiting_pong = false;
        loop {
            let out = tokio::select! {
                msg = ws.next() => {
                    deadline = Instant::now() + activity;
                    awaiting_pong = false;
                    match msg {
                        Some(Ok(Message::Text(t))) => self.view().session.on_frame(t.as_str()),
                        Some(Ok(Message::Close(frame))) => return closed(frame.as_ref()),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return lost(format!("connection lost: {e}")),
                        None => return lost("connection lost: the server went away".into()),
                    }
                }
                cmd = self.commands.recv() => match cmd.unwrap_or(Command::Close) {
                    Command::Close => {
                        let _ = timeout(Duration::from_secs(1), ws.close(Some(CloseFrame {
                            code: WsCloseCode::Normal,
                            reason: "client closed".into(),
                        }))).await;
                        return Outcome::Closed;
                    }
                    cmd => self.command(cmd),
                },
                Some((sid, channel, result)) = self.auth_rx.recv() => {
                    self.view().session.authorized(&sid, &channel, result)
                }
                _ = sleep_until(deadline) => {
                    if awaiting_pong {
                        return lost(format!(
                            "no answer to ping within {:?}: the link is dead or half-open",
                            self.pong_timeout
                        ));
                    }
                    awaiting_pong = true;
                    deadline = Instant::now() + self.pong_timeout;
                    vec![Output::Send(client::ping())]
                }
            };
            if let Err(reason) = self.perform(ws, out).await {
                return lost(reason);
            }
        }
    }

    /// Hands a command of the caller to the session.
    fn command(&mut self, cmd: Command) -> Vec<Output> {
        let mut view = self.view();
        match cmd {
            Command::Subscribe(ch) => view.session.subscribe(&ch),
            Command::Unsubscribe(ch) => view.session.unsubscribe(&ch),
            Command::Trigger {
                channel,
                event,
                data,
            } => view.session.trigger(&channel, &event, &data),
            Command::Close => Vec::new(),
        }
    }

    /// Carries out what the session asked: frames go out, events to the
    /// caller, authorizations run in tasks of their own (their answers come
    /// back on `auth_rx`).
    async fn perform(&mut self, ws: &mut Ws, outputs: Vec<Output>) -> Result<(), String> {
        for output in outputs {
            match output {
                Output::Send(text) => send(ws, text).await?,
                Output::Emit(event) => self.emit(event).await,
                Output::Authorize { socket_id, channel } => {
                    let Some(authorizer) = self.authorizer.clone() else {
                        continue;
                    };
                    let tx = self.auth_tx.clone();
                    tokio::spawn(async move {
                        let result = authorizer.authorize(&socket_id, &channel).await;
                        let _ = tx.send((socket_id, channel, result));
                    });
                }
            }
        }
        Ok(())
    }
}

fn lost(reason: String) -> Outcome {
    Outcome::Retry {
        immediate: false,
        reason,
        unreachable: false,
    }
}

async fn send(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| format!("connection lost while sending: {e}"))
}

/// What a close frame means for the next attempt (see [`after_close`]).
fn closed(frame: Option<&CloseFrame>) -> Outcome {
    match after_close(frame.map(|f| (u16::from(f.code), f.reason.as_str()))) {
        Next::Stop(reason) => Outcome::Stop(reason),
        Next::Reconnect { immediate, reason } => Outcome::Retry {
            immediate,
            reason,
            unreachable: false,
        },
    }
}
