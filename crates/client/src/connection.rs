//! The connection task: one per client, owning the WebSocket.
//!
//! It connects, reads `connection_established`, (re)subscribes every wanted
//! channel, and then selects over frames from the server, commands from the
//! [`Client`] handle, finished authorizations and one deadline for the
//! ping/pong timer. When a session ends, the close code decides what comes
//! next, as in pusher-js: 4000–4099 stop, 4100–4199 back off, 4200–4299
//! reconnect at once, anything else (network loss, a dead link) backs off
//! with jitter.

use crate::auth::{AuthError, Authorizer, ChannelAuth};
use crate::backoff::Backoff;
use crate::endpoint::Endpoint;
use crate::event::{ConnectionState, Event, Member, StopReason};
use crate::roster::{Change, PresenceRoster, SnapshotOutcome};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use whosin_protocol::frame::ServerFrame;
use whosin_protocol::ChannelKind;

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
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::channel(self.event_capacity);
        let view = Arc::new(Mutex::new(View {
            state: ConnectionState::Connecting,
            rosters: HashMap::new(),
        }));
        let (auth_tx, auth_rx) = mpsc::unbounded_channel();
        let task = Task {
            endpoint: self.endpoint,
            authorizer: self.authorizer,
            activity_timeout: self.activity_timeout,
            pong_timeout: self.pong_timeout,
            connect_timeout: self.connect_timeout,
            backoff: self.backoff,
            commands: cmd_rx,
            events: ev_tx,
            view: view.clone(),
            wanted: BTreeSet::new(),
            auth_tx,
            auth_rx,
        };
        tokio::spawn(task.run());
        (
            Client {
                commands: cmd_tx,
                view,
            },
            Events { rx: ev_rx },
        )
    }
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

#[derive(Debug)]
enum Command {
    Subscribe(String),
    Unsubscribe(String),
    Trigger {
        channel: String,
        event: String,
        data: Value,
    },
    Close,
}

/// What the handle can read without asking the task.
#[derive(Debug)]
struct View {
    state: ConnectionState,
    rosters: HashMap<String, PresenceRoster>,
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
        let event = if event.starts_with("client-") {
            event.to_owned()
        } else {
            format!("client-{event}")
        };
        let _ = self.commands.send(Command::Trigger {
            channel: channel.to_owned(),
            event,
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

    /// `(me, members)` of a presence channel as last known; `None` before
    /// its first snapshot or for a channel not subscribed.
    pub fn members(&self, channel: &str) -> Option<(Option<Member>, Vec<Member>)> {
        let view = self.view();
        let r = view.rosters.get(channel)?;
        Some((r.me(), r.members()))
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
    /// Channels the caller wants, resubscribed after every reconnect.
    wanted: BTreeSet<String>,
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
                    Some(Command::Subscribe(ch)) => { self.wanted.insert(ch); }
                    Some(Command::Unsubscribe(ch)) => {
                        self.wanted.remove(&ch);
                        self.view().rosters.remove(&ch);
                    }
                    Some(Command::Trigger { channel, event, .. }) => {
                        tracing::warn!(%channel, %event, "client event dropped: not connected");
                    }
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
                    Some(Ok(Message::Close(frame))) => return Err(classify_close(frame.as_ref())),
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
        let wanted: Vec<String> = self.wanted.iter().cloned().collect();
        for ch in wanted {
            if let Err(reason) = self.start_subscribe(&mut ws, &socket_id, &ch).await {
                return lost(reason);
            }
        }
        let mut deadline = Instant::now() + activity;
        let mut awaiting_pong = false;
        loop {
            tokio::select! {
                msg = ws.next() => {
                    deadline = Instant::now() + activity;
                    awaiting_pong = false;
                    match msg {
                        Some(Ok(Message::Text(t))) => {
                            if let Err(reason) = self.on_frame(&mut ws, t.as_str()).await {
                                return lost(reason);
                            }
                        }
                        Some(Ok(Message::Close(frame))) => return classify_close(frame.as_ref()),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return lost(format!("connection lost: {e}")),
                        None => return lost("connection lost: the server went away".into()),
                    }
                }
                cmd = self.commands.recv() => {
                    let cmd = cmd.unwrap_or(Command::Close);
                    match self.on_command(&mut ws, &socket_id, cmd).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = timeout(Duration::from_secs(1), ws.close(Some(CloseFrame {
                                code: WsCloseCode::Normal,
                                reason: "client closed".into(),
                            }))).await;
                            return Outcome::Closed;
                        }
                        Err(reason) => return lost(reason),
                    }
                }
                Some((sid, channel, result)) = self.auth_rx.recv() => {
                    if sid == socket_id && self.wanted.contains(&channel) {
                        if let Err(reason) = self.finish_subscribe(&mut ws, &channel, result).await {
                            return lost(reason);
                        }
                    }
                }
                _ = sleep_until(deadline) => {
                    if awaiting_pong {
                        return lost(format!(
                            "no answer to ping within {:?}: the link is dead or half-open",
                            self.pong_timeout
                        ));
                    }
                    if let Err(e) = send(&mut ws, json!({"event":"pusher:ping","data":{}})).await {
                        return lost(e);
                    }
                    awaiting_pong = true;
                    deadline = Instant::now() + self.pong_timeout;
                }
            }
        }
    }

    /// Handles a command; `Ok(false)` means close.
    async fn on_command(
        &mut self,
        ws: &mut Ws,
        socket_id: &str,
        cmd: Command,
    ) -> Result<bool, String> {
        match cmd {
            Command::Close => return Ok(false),
            Command::Subscribe(ch) => {
                if self.wanted.insert(ch.clone()) {
                    self.start_subscribe(ws, socket_id, &ch).await?;
                }
            }
            Command::Unsubscribe(ch) => {
                if self.wanted.remove(&ch) {
                    self.view().rosters.remove(&ch);
                    send(
                        ws,
                        json!({"event":"pusher:unsubscribe","data":{"channel":ch}}),
                    )
                    .await?;
                }
            }
            Command::Trigger {
                channel,
                event,
                data,
            } => {
                send(ws, json!({"event":event,"channel":channel,"data":data})).await?;
            }
        }
        Ok(true)
    }

    /// Subscribes at once (public) or starts the authorization.
    async fn start_subscribe(
        &mut self,
        ws: &mut Ws,
        socket_id: &str,
        channel: &str,
    ) -> Result<(), String> {
        let kind = ChannelKind::of(channel);
        if !kind.needs_auth() {
            return send(
                ws,
                json!({"event":"pusher:subscribe","data":{"channel":channel}}),
            )
            .await;
        }
        let Some(authorizer) = self.authorizer.clone() else {
            self.emit(Event::SubscriptionFailed {
                channel: channel.to_owned(),
                status: None,
                message: AuthError::NoAuthorizer(channel.to_owned()).to_string(),
            })
            .await;
            return Ok(());
        };
        let tx = self.auth_tx.clone();
        let (sid, ch) = (socket_id.to_owned(), channel.to_owned());
        tokio::spawn(async move {
            let result = authorizer.authorize(&sid, &ch).await;
            let _ = tx.send((sid, ch, result));
        });
        Ok(())
    }

    /// Sends the subscribe once its authorization is back.
    async fn finish_subscribe(
        &mut self,
        ws: &mut Ws,
        channel: &str,
        result: Result<ChannelAuth, AuthError>,
    ) -> Result<(), String> {
        match result {
            Ok(auth) => {
                if let Some(data) = &auth.channel_data {
                    let me = serde_json::from_str::<Value>(data).ok().and_then(|v| {
                        match &v["user_id"] {
                            Value::String(s) => Some(s.clone()),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        }
                    });
                    let mut view = self.view();
                    let roster = view
                        .rosters
                        .entry(channel.to_owned())
                        .or_insert_with(|| PresenceRoster::new(None));
                    roster.me = me;
                }
                let mut data = json!({"channel": channel, "auth": auth.auth});
                if let Some(cd) = auth.channel_data {
                    data["channel_data"] = Value::String(cd);
                }
                send(ws, json!({"event":"pusher:subscribe","data":data})).await
            }
            Err(e) => {
                let status = match &e {
                    AuthError::Refused { status, .. } => Some(*status),
                    _ => None,
                };
                tracing::warn!(%channel, error = %e, "authorization failed");
                self.emit(Event::SubscriptionFailed {
                    channel: channel.to_owned(),
                    status,
                    message: e.to_string(),
                })
                .await;
                Ok(())
            }
        }
    }

    async fn on_frame(&mut self, ws: &mut Ws, text: &str) -> Result<(), String> {
        let frame = match ServerFrame::parse(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "ignoring a frame we do not understand");
                return Ok(());
            }
        };
        match frame {
            ServerFrame::Ping => send(ws, json!({"event":"pusher:pong","data":{}})).await?,
            ServerFrame::Pong | ServerFrame::ConnectionEstablished { .. } => {}
            ServerFrame::SubscriptionSucceeded {
                channel,
                members: None,
            } => {
                self.emit(Event::Subscribed { channel }).await;
            }
            ServerFrame::SubscriptionSucceeded {
                channel,
                members: Some(list),
            } => {
                self.on_snapshot(channel, list).await;
            }
            ServerFrame::SubscriptionError {
                channel,
                status,
                error,
            } => {
                self.emit(Event::SubscriptionFailed {
                    channel,
                    status: (status != 0).then_some(status),
                    message: error,
                })
                .await;
            }
            ServerFrame::MemberAdded {
                channel,
                user_id,
                user_info,
            } => {
                let info = serde_json::from_str(&user_info).unwrap_or(Value::Null);
                let added = {
                    let mut view = self.view();
                    view.rosters
                        .get_mut(&channel)
                        .and_then(|r| r.add(&user_id, info).map(|m| (m, r.len())))
                };
                if let Some((member, count)) = added {
                    self.emit(Event::MemberAdded {
                        channel,
                        member,
                        count,
                    })
                    .await;
                }
            }
            ServerFrame::MemberRemoved { channel, user_id } => {
                let removed = {
                    let mut view = self.view();
                    view.rosters
                        .get_mut(&channel)
                        .and_then(|r| r.remove(&user_id).map(|m| (m, r.len())))
                };
                if let Some((member, count)) = removed {
                    self.emit(Event::MemberRemoved {
                        channel,
                        member,
                        count,
                    })
                    .await;
                }
            }
            ServerFrame::Error { code, message } => {
                self.emit(Event::ServerError { code, message }).await;
            }
            ServerFrame::Event {
                event,
                channel,
                data,
                user_id,
            } => {
                if let Some(channel) = channel {
                    self.emit(Event::Message {
                        channel,
                        event,
                        data,
                        user_id,
                    })
                    .await;
                }
            }
        }
        Ok(())
    }

    async fn on_snapshot(&mut self, channel: String, list: Vec<(String, String)>) {
        let fresh = list
            .into_iter()
            .map(|(id, info)| (id, serde_json::from_str(&info).unwrap_or(Value::Null)));
        let (outcome, me, len) = {
            let mut view = self.view();
            let roster = view
                .rosters
                .entry(channel.clone())
                .or_insert_with(|| PresenceRoster::new(None));
            let outcome = roster.apply_snapshot(fresh);
            (outcome, roster.me(), roster.len())
        };
        match outcome {
            SnapshotOutcome::First(members) => {
                self.emit(Event::Snapshot {
                    channel,
                    me,
                    members,
                })
                .await;
            }
            SnapshotOutcome::Reconciled(changes) => {
                // Counts step through the changes so each event is consistent.
                let removed = changes
                    .iter()
                    .filter(|c| matches!(c, Change::Removed(_)))
                    .count();
                let mut count = len + removed;
                for change in changes {
                    let event = match change {
                        Change::Removed(member) => {
                            count -= 1;
                            Event::MemberRemoved {
                                channel: channel.clone(),
                                member,
                                count,
                            }
                        }
                        Change::Added(member) => Event::MemberAdded {
                            channel: channel.clone(),
                            member,
                            count,
                        },
                    };
                    self.emit(event).await;
                }
            }
        }
    }
}

fn lost(reason: String) -> Outcome {
    Outcome::Retry {
        immediate: false,
        reason,
        unreachable: false,
    }
}

async fn send(ws: &mut Ws, v: Value) -> Result<(), String> {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .map_err(|e| format!("connection lost while sending: {e}"))
}

fn close_reason_text(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => format!("closed by the server ({}: {})", u16::from(f.code), f.reason),
        None => "closed by the server".into(),
    }
}

/// Pusher's close-code ranges, acted on as pusher-js does.
fn classify_close(frame: Option<&CloseFrame>) -> Outcome {
    let Some(f) = frame else {
        return lost(close_reason_text(None));
    };
    let code = u16::from(f.code);
    let reason = f.reason.to_string();
    match code {
        4001 => Outcome::Stop(StopReason::UnknownAppKey(reason)),
        4004 => Outcome::Stop(StopReason::OverQuota(reason)),
        4009 => Outcome::Stop(StopReason::Unauthorized(reason)),
        4000..=4099 => Outcome::Stop(StopReason::Refused { code, reason }),
        4100..=4199 => Outcome::Retry {
            immediate: false,
            reason: close_reason_text(frame),
            unreachable: false,
        },
        4200..=4299 => Outcome::Retry {
            immediate: true,
            reason: close_reason_text(frame),
            unreachable: false,
        },
        _ => lost(close_reason_text(frame)),
    }
}
