//! `whosin join` and `whosin watch`: a visitor in a terminal.
//!
//! `join` prints what happens (or, with `--json`, one JSON object per line,
//! a contract scripts and tests rely on); `watch` redraws the live list in
//! place. Both stay until interrupted and exit with a distinct code when
//! they cannot go on: see [`exit`].

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::time::Duration;
use whosin_client::{
    identity, visitor, Client, ConnectionState, Event, IpLookup, JsonEvent, Member, Signing,
    StopReason, Visitor,
};

/// Exit codes of `join` and `watch`, documented in the README.
pub mod exit {
    // 0: interrupted (Ctrl-C, SIGTERM), the normal end.
    /// Anything not listed below.
    pub const OTHER: u8 = 1;
    /// Bad arguments.
    pub const USAGE: u8 = 2;
    /// The auth endpoint or the server refused the subscription (401/403, 4009).
    pub const AUTH_REFUSED: u8 = 3;
    /// The server does not know the app key (4001).
    pub const UNKNOWN_KEY: u8 = 4;
    /// The server could not be reached at the first attempt.
    pub const UNREACHABLE: u8 = 5;
    /// The server refused the connection for another reason (4000–4099).
    pub const REFUSED: u8 = 6;
}

/// Options shared by `join` and `watch`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Server URL: ws://HOST:PORT or wss://HOST (http/https accepted).
    #[arg(long, env = "WHOSIN_URL", conflicts_with = "cluster")]
    url: Option<String>,
    /// Hosted Pusher cluster instead of --url (e.g. eu, mt1).
    #[arg(long, env = "WHOSIN_CLUSTER")]
    cluster: Option<String>,
    /// App key.
    #[arg(long, env = "WHOSIN_APP_KEY")]
    key: String,
    /// App secret, to sign locally (own or embedded server only).
    #[arg(
        long,
        env = "WHOSIN_APP_SECRET",
        hide_env_values = true,
        conflicts_with = "auth_endpoint"
    )]
    secret: Option<String>,
    /// Auth endpoint URL (e.g. http://127.0.0.1:6001/pusher/auth).
    #[arg(long, env = "WHOSIN_AUTH_ENDPOINT")]
    auth_endpoint: Option<String>,
    /// Extra auth endpoint form parameter, KEY=VALUE (repeat for several).
    #[arg(long = "auth-param", value_parser = parse_pair::<'='>)]
    auth_params: Vec<(String, String)>,
    /// Extra auth endpoint header, NAME:VALUE (repeat for several).
    #[arg(long = "auth-header", value_parser = parse_pair::<':'>)]
    auth_headers: Vec<(String, String)>,
    /// Presence channel to join.
    #[arg(long, default_value = "presence-whosin")]
    channel: String,
    /// Display name (default: chosen by the auth endpoint, or a random fake name).
    #[arg(long)]
    name: Option<String>,
    /// Stable visitor id (default: a new random one).
    #[arg(long)]
    visitor_id: Option<String>,
    /// With --secret: the IP to show (default: looked up).
    #[arg(long)]
    ip: Option<String>,
    /// Public IP lookup service (repeat for several, tried in order; "none" to skip).
    #[arg(long = "ip-lookup")]
    ip_lookup: Vec<String>,
    /// One JSON object per line on stdout.
    #[arg(long)]
    json: bool,
    /// Seconds of silence before we ping the server (the server's value wins if smaller).
    #[arg(long, default_value_t = 120)]
    activity_timeout: u64,
    /// Seconds the server has to answer our ping.
    #[arg(long, default_value_t = 30)]
    pong_timeout: u64,
}

fn parse_pair<const SEP: char>(s: &str) -> Result<(String, String), String> {
    s.split_once(SEP)
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected NAME{SEP}VALUE, got {s:?}"))
}

/// A failure with its exit code.
#[derive(Debug)]
pub struct Exit {
    /// Exit code.
    pub code: u8,
    /// What to tell the user.
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    Exit {
        code,
        message: message.into(),
    }
    .into()
}

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `join`: a line per event.
    Lines,
    /// `join --json`: a JSON object per line.
    Json,
    /// `watch`: the list redrawn in place.
    Board,
}

/// Runs `join` (or `watch` with `board`).
pub async fn run(args: JoinArgs, board: bool) -> Result<()> {
    let mode = if args.json {
        Mode::Json
    } else if board {
        Mode::Board
    } else {
        Mode::Lines
    };
    let endpoint = visitor::endpoint_from(args.url.as_deref(), args.cluster.as_deref(), &args.key)
        .map_err(|e| fail(exit::USAGE, format!("{e} (--url or --cluster)")))?;
    let visitor_id = args
        .visitor_id
        .clone()
        .unwrap_or_else(identity::new_visitor_id);

    let lookups = visitor::ip_lookup_endpoints(&args.ip_lookup);
    let public_ip = if lookups.is_empty() {
        None
    } else {
        match IpLookup::new(lookups).lookup().await {
            Ok(ip) => {
                emit(
                    mode,
                    &JsonEvent::PublicIp { ip: ip.to_string() },
                    &format!("your public IP: {ip}"),
                );
                Some(ip.to_string())
            }
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    };

    let signing = match (&args.secret, &args.auth_endpoint) {
        (Some(secret), _) => {
            let mut info = json!({"name": args.name.clone().unwrap_or_else(identity::random_name)});
            if let Some(ip) = args.ip.clone().or(public_ip) {
                info["ip"] = Value::String(ip);
            }
            Signing::Secret {
                secret: secret.clone(),
                info,
            }
        }
        (None, Some(url)) => Signing::AuthEndpoint {
            url: url.clone(),
            params: args.auth_params.clone(),
            headers: args.auth_headers.clone(),
        },
        (None, None)
            if args.channel.starts_with("presence-") || args.channel.starts_with("private-") =>
        {
            return Err(fail(
                exit::USAGE,
                format!(
                    "{} needs authorization: give --secret or --auth-endpoint",
                    args.channel
                ),
            ))
        }
        (None, None) => Signing::Unsigned,
    };
    let visitor = Visitor {
        endpoint: endpoint.clone(),
        identity: whosin_client::VisitorIdentity::new(visitor_id, None),
        name: args.name.clone(),
        signing,
        watch: false,
    };
    let builder = visitor
        .client()
        .activity_timeout(Duration::from_secs(args.activity_timeout.max(1)))
        .pong_timeout(Duration::from_secs(args.pong_timeout.max(1)));
    let (client, mut events) = builder.connect();
    client.subscribe(&args.channel);

    let mut board_state = Board::new(&args.channel, &endpoint.to_string());
    let mut ever_connected = false;
    let mut stop = std::pin::pin!(signal());
    loop {
        let event = tokio::select! {
            _ = &mut stop => {
                client.close();
                // Let the close frame go out, bounded.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(e) = events.recv().await {
                        if matches!(e, Event::State(ConnectionState::Disconnected { .. })) { break; }
                    }
                }).await;
                return Ok(());
            }
            e = events.recv() => match e {
                Some(e) => e,
                None => return Ok(()),
            },
        };
        if mode == Mode::Board {
            board_state.apply(&event);
            board_state.draw(&client);
        } else {
            show(mode, &event);
        }
        match &event {
            Event::State(ConnectionState::Connected { .. }) => ever_connected = true,
            Event::State(ConnectionState::Reconnecting {
                reason,
                unreachable: true,
                ..
            }) if !ever_connected => {
                client.close();
                return Err(fail(
                    exit::UNREACHABLE,
                    format!("{reason} (is the server running? check --url)"),
                ));
            }
            Event::State(ConnectionState::Disconnected { reason }) => {
                let code = match reason {
                    StopReason::Closed => return Ok(()),
                    StopReason::UnknownAppKey(_) => exit::UNKNOWN_KEY,
                    StopReason::Unauthorized(_) => exit::AUTH_REFUSED,
                    StopReason::OverQuota(_)
                    | StopReason::Refused { .. }
                    | StopReason::RestRefused { .. } => exit::REFUSED,
                };
                return Err(fail(code, reason.to_string()));
            }
            Event::SubscriptionFailed {
                channel,
                status,
                message,
            } if *channel == args.channel => {
                client.close();
                let code = if matches!(status, Some(401 | 403)) {
                    exit::AUTH_REFUSED
                } else {
                    exit::OTHER
                };
                return Err(fail(code, format!("cannot join {channel}: {message}")));
            }
            _ => {}
        }
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn emit(mode: Mode, v: &JsonEvent, human: &str) {
    let mut out = std::io::stdout().lock();
    let _ = match mode {
        Mode::Json => writeln!(out, "{v}"),
        Mode::Lines => writeln!(out, "{human}"),
        Mode::Board => Ok(()),
    };
    let _ = out.flush();
}

/// "name — ip", the tutorial's line.
fn label(m: &Member) -> String {
    let name = m.info["name"].as_str().unwrap_or(&m.id);
    match m.info["ip"].as_str() {
        Some(ip) => format!("{name} — {ip}"),
        None => name.to_owned(),
    }
}

/// One event as a line: its JSON form ([`JsonEvent`], the public contract)
/// or words for a person.
fn show(mode: Mode, e: &Event) {
    let human = match e {
        Event::State(s) => match s {
            ConnectionState::Connecting => "connecting…".to_owned(),
            ConnectionState::Connected { socket_id } => format!("connected (socket {socket_id})"),
            ConnectionState::Reconnecting { delay, reason, .. } => {
                format!("reconnecting in {:.1} s: {reason}", delay.as_secs_f64())
            }
            ConnectionState::Disconnected { reason } => format!("disconnected: {reason}"),
        },
        Event::Snapshot {
            channel,
            me,
            members,
        } => {
            let mut h = format!("{} online in {channel}:", members.len());
            for m in members {
                let you = if me.as_ref().is_some_and(|me| me.id == m.id) {
                    " (you)"
                } else {
                    ""
                };
                h.push_str(&format!("\n  {}{you}", label(m)));
            }
            h
        }
        Event::MemberAdded { member, count, .. } => {
            format!("+ {} joined · {count} online", label(member))
        }
        Event::MemberRemoved { member, count, .. } => {
            format!("- {} left · {count} online", label(member))
        }
        Event::SubscriptionFailed {
            channel, message, ..
        } => format!("cannot join {channel}: {message}"),
        Event::Subscribed { channel } => format!("subscribed to {channel}"),
        Event::Message {
            channel,
            event,
            data,
            ..
        } => format!("{channel}: {event} {data}"),
        Event::ServerError { message, .. } => format!("server error: {message}"),
    };
    emit(mode, &JsonEvent::from(e), &human);
}

/// The `watch` screen: state, count and the list, redrawn in place.
struct Board {
    channel: String,
    server: String,
    state: String,
    tty: bool,
}

impl Board {
    fn new(channel: &str, server: &str) -> Board {
        Board {
            channel: channel.to_owned(),
            server: server.to_owned(),
            state: "connecting…".into(),
            tty: std::io::stdout().is_terminal(),
        }
    }

    fn apply(&mut self, e: &Event) {
        match e {
            Event::State(ConnectionState::Connecting) => self.state = "connecting…".into(),
            Event::State(ConnectionState::Connected { .. }) => self.state = "online".into(),
            Event::State(ConnectionState::Reconnecting { delay, reason, .. }) => {
                self.state = format!(
                    "reconnecting in {:.0} s ({reason})",
                    delay.as_secs_f64().ceil()
                )
            }
            Event::State(ConnectionState::Disconnected { reason }) => {
                self.state = format!("offline: {reason}")
            }
            Event::SubscriptionFailed { message, .. } => {
                self.state = format!("cannot join: {message}")
            }
            _ => {}
        }
    }

    fn draw(&self, client: &Client) {
        let (me, members) = client.members(&self.channel).unwrap_or((None, Vec::new()));
        let mut s = String::new();
        if self.tty {
            s.push_str("\x1b[H\x1b[2J");
        }
        s.push_str(&format!(
            "whosin · {} · {}\n{}\n\n{} online\n",
            self.channel,
            self.server,
            self.state,
            members.len()
        ));
        for m in &members {
            let you = if me.as_ref().is_some_and(|me| me.id == m.id) {
                "  ← you"
            } else {
                ""
            };
            s.push_str(&format!("  {}{you}\n", label(m)));
        }
        if !self.tty {
            s.push('\n');
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    }
}
