//! Helpers for the server's integration tests: an in-process server, a raw
//! protocol client on tokio-tungstenite, and a minimal HTTP client. Every
//! wait has a deadline; nothing sleeps for a fixed time to "let things settle".

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use whosin_protocol::frame::ServerFrame;
use whosin_protocol::sign;
use whosin_server::{AppConfig, Running, ServerConfig};

pub const APP_ID: &str = "42";
pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret";
/// How long any single expected frame may take.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A server config for tests: port 0, fast timers, client events on (the
/// tests exercise them; their default, off, is tested on its own).
pub fn config() -> ServerConfig {
    let mut app = AppConfig::new(APP_ID, KEY, SECRET);
    app.client_events = true;
    let mut c = ServerConfig::single(app, 0);
    c.shutdown_grace = Duration::from_secs(2);
    c
}

/// Starts a server in-process.
pub async fn start(config: ServerConfig) -> Running {
    whosin_server::start(config).await.expect("server starts")
}

/// A raw Pusher-protocol client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
    pub activity_timeout: u64,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code.
    Closed(u16),
    /// The stream ended without a close frame.
    Dropped,
}

impl Client {
    /// Connects to `/app/{key}` and reads `connection_established`.
    pub async fn connect(addr: SocketAddr) -> Client {
        Self::connect_key(addr, KEY)
            .await
            .expect("connection established")
    }

    /// Connects with any key; `Err` carries the first frame when it was not
    /// `connection_established`.
    pub async fn connect_key(
        addr: SocketAddr,
        key: &str,
    ) -> Result<Client, (ServerFrame, WebSocketStream<MaybeTlsStream<TcpStream>>)> {
        let url = format!("ws://{addr}/app/{key}?protocol=7&client=rust-test&version=0.1");
        let (ws, _) = timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect within deadline")
            .expect("websocket handshake");
        let mut c = Client {
            ws,
            socket_id: String::new(),
            activity_timeout: 0,
        };
        match c.next().await {
            ServerFrame::ConnectionEstablished {
                socket_id,
                activity_timeout,
            } => {
                c.socket_id = socket_id;
                c.activity_timeout = activity_timeout;
                Ok(c)
            }
            other => Err((other, c.ws)),
        }
    }

    /// Sends a text frame.
    pub async fn send(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::Text(text.into().into()))
            .await
            .expect("send");
    }

    /// Sends a JSON value.
    pub async fn send_json(&mut self, v: serde_json::Value) {
        self.send(v.to_string()).await;
    }

    /// The next protocol frame, skipping WebSocket-level pings; panics after
    /// the deadline or if the connection ends.
    pub async fn next(&mut self) -> ServerFrame {
        match self.next_or_end(DEADLINE).await {
            Ok(f) => f,
            Err(e) => panic!("expected a frame, connection ended: {e:?}"),
        }
    }

    /// The next frame that is not a `pusher:ping`, answering pings on the way
    /// as a live client does.
    pub async fn next_answering(&mut self) -> ServerFrame {
        loop {
            match self.next().await {
                ServerFrame::Ping => self.send(r#"{"event":"pusher:pong","data":{}}"#).await,
                f => return f,
            }
        }
    }

    /// The next frame, or how the connection ended. Panics after `within`.
    pub async fn next_or_end(&mut self, within: Duration) -> Result<ServerFrame, Ended> {
        loop {
            let msg = timeout(within, self.ws.next())
                .await
                .expect("a frame or close within the deadline");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Ok(ServerFrame::parse(t.as_str()).expect("server frames parse"))
                }
                Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => {
                    return Err(Ended::Closed(code.into()))
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Err(Ended::Dropped),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads frames until the connection closes, returning the close code.
    pub async fn closed(&mut self, within: Duration) -> Ended {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_or_end(left).await {
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
    }

    /// Subscribes without auth.
    pub async fn subscribe_public(&mut self, channel: &str) -> ServerFrame {
        self.send_json(serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel}}))
            .await;
        self.next().await
    }

    /// Subscribes to a private channel with a correct signature.
    pub async fn subscribe_private(&mut self, channel: &str) -> ServerFrame {
        let auth = sign::channel_auth(KEY, SECRET, &self.socket_id, channel, None);
        self.send_json(
            serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}}),
        )
        .await;
        self.next().await
    }

    /// Subscribes to a presence channel as `user_id` with a correct signature,
    /// returning the members of `subscription_succeeded` (or panicking).
    pub async fn join(&mut self, channel: &str, user_id: &str) -> Vec<(String, String)> {
        let data = presence_data(user_id);
        self.send_presence(channel, &data).await;
        match self.next().await {
            ServerFrame::SubscriptionSucceeded {
                members: Some(mut m),
                ..
            } => {
                m.sort();
                m
            }
            other => panic!("expected presence subscription_succeeded, got {other:?}"),
        }
    }

    /// Sends a presence subscribe with `channel_data`, signed correctly.
    pub async fn send_presence(&mut self, channel: &str, channel_data: &str) {
        let auth = sign::channel_auth(KEY, SECRET, &self.socket_id, channel, Some(channel_data));
        self.send_json(serde_json::json!({"event":"pusher:subscribe","data":{
            "channel":channel,"auth":auth,"channel_data":channel_data}}))
            .await;
    }

    /// A round trip through the server: everything the server queued for us
    /// before this call is read and returned. Proves absence of events
    /// without sleeping.
    pub async fn drain(&mut self) -> Vec<ServerFrame> {
        self.send(r#"{"event":"pusher:ping","data":{}}"#).await;
        let mut seen = Vec::new();
        loop {
            match self.next().await {
                ServerFrame::Pong => return seen,
                f => seen.push(f),
            }
        }
    }

    /// Closes the connection cleanly.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = timeout(DEADLINE, async { while self.ws.next().await.is_some() {} }).await;
    }
}

/// channel_data for a user with a name.
pub fn presence_data(user_id: &str) -> String {
    serde_json::json!({"user_id": user_id, "user_info": {"name": format!("name of {user_id}")}})
        .to_string()
}

/// A minimal HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the answer.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let mut req = format!("{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    timeout(DEADLINE, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("HTTP head");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signed REST request path with query, as the Pusher SDKs build it.
pub fn signed_path(
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    secret: &str,
    timestamp: u64,
) -> String {
    let ts = timestamp.to_string();
    let md5 = sign::body_md5(body);
    let mut params: Vec<(&str, &str)> = vec![
        ("auth_key", KEY),
        ("auth_timestamp", &ts),
        ("auth_version", "1.0"),
    ];
    if !body.is_empty() {
        params.push(("body_md5", &md5));
    }
    params.extend_from_slice(extra);
    let sig = sign::rest_signature(secret, method, path, params.iter().copied());
    let mut q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    q.push(format!("auth_signature={sig}"));
    format!("{path}?{}", q.join("&"))
}

/// Percent-encodes a query value.
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A signed REST call with the right secret and the current time.
pub async fn rest(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let p = signed_path(method, path, extra, body.as_bytes(), SECRET, now());
    http(
        addr,
        method,
        &p,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await
}
