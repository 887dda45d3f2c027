//! Binding, routing and the server's lifetime: start, serve, shut down.
//!
//! Graceful shutdown is done once, here: a watch channel tells every
//! connection task to close with 4200 (so clients reconnect elsewhere or
//! later), and [`Running::shutdown`] waits for them, bounded by the grace
//! period.

use crate::app::App;
use crate::backplane::{Backplane, Local, RedisBackplane};
use crate::config::{ConfigError, ServerConfig};
use crate::metrics::Metrics;
pub use crate::shared::Shared;
use crate::tls::{Tls, TlsError};
use crate::ws::{self, Socket, Stream};
use crate::{auth_endpoint, connection, cors, rest, web};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;
use whosin_protocol::CloseCode;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis could not be reached at start.
    #[error("{0}")]
    Cluster(String),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another server using the port? try --port 0 for a free one)")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A server that is serving.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// Ends (`None`) when the last connection's guard is dropped.
    all_closed: mpsc::Receiver<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state, for tests and metrics.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Closes every connection with 4200, waits for them within the grace
    /// period, and stops accepting.
    pub async fn shutdown(self) {
        // Before any connection closes: the departures that follow are the
        // cluster's to report.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.shared.backplane.leaving(),
        )
        .await;
        for app in &self.shared.apps {
            app.begin_shutdown();
        }
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + self.shared.config.shutdown_grace;
        drop(self.shared.stop_tracking());
        let mut all_closed = self.all_closed;
        let _ = tokio::time::timeout_at(deadline, all_closed.recv()).await;
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.shared.backplane.depart(),
        )
        .await;
        let _ = tokio::time::timeout_at(deadline, self.task).await;
    }
}

/// Validates the configuration, binds, and starts serving in the background.
pub async fn start(config: ServerConfig) -> Result<Running, StartError> {
    config.validate()?;
    // Before binding: a certificate that cannot be used stops the start
    // without taking the port.
    let tls = config.tls.as_ref().map(Tls::load).transpose()?;
    let addr = format!("{}:{}", config.host, config.port);
    let host = config.host.trim_start_matches('[').trim_end_matches(']');
    let listener = TcpListener::bind((host, config.port))
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let metrics = Arc::new(Metrics::default());
    let (stop, shutdown) = watch::channel(false);
    let (live, all_closed) = mpsc::channel(1);
    // What other nodes do reaches the apps through this channel and one
    // task, so the backplane holds no pointer back to them.
    let (inbound_tx, inbound_rx) = mpsc::channel(4096);
    let backplane: Arc<dyn Backplane> = match config.cluster.clone() {
        Some(cc) => {
            let node = cc.node_id.clone();
            let ids = config.apps.iter().map(|a| a.id.clone()).collect();
            let b = RedisBackplane::connect(cc, ids, metrics.clone(), inbound_tx, shutdown.clone())
                .await
                .map_err(StartError::Cluster)?;
            tracing::info!(%node, "joined the cluster");
            b
        }
        None => Arc::new(Local),
    };
    let apps: Vec<Arc<App>> = config
        .apps
        .iter()
        .map(|a| Arc::new(App::new(a.clone(), metrics.clone(), backplane.clone())))
        .collect();
    tokio::spawn(crate::app::dispatch(apps.clone(), inbound_rx));
    for app in &apps {
        app.spawn_tasks(
            shutdown.clone(),
            config.webhook_grace,
            config.cluster.is_some(),
        );
    }
    let gate = Arc::new(crate::admission::Gate::new(
        config.ip_limits.clone(),
        config.max_total_connections,
        metrics.clone(),
    ));
    let shared = Arc::new(Shared {
        gate,
        config,
        apps,
        metrics,
        shutdown: shutdown.clone(),
        backplane,
        node_number: rand::random::<u32>() % 1_000_000_000,
        next_id: AtomicU64::new(1),
        port: local.port(),
        live: std::sync::Mutex::new(Some(live)),
    });
    let router = router(shared.clone());
    if let Some(tls) = &tls {
        crate::tls::reload_on_hangup(tls.clone(), shutdown.clone())?;
        tracing::info!(
            cert = %tls.files().cert.display(),
            key = %tls.files().key.display(),
            "TLS on: this port speaks https:// and wss:// only; SIGHUP re-reads the certificate"
        );
    }
    let task = tokio::spawn(accept_loop(listener, router, shared.clone(), tls, shutdown));
    Ok(Running {
        addr: local,
        shared,
        stop,
        all_closed,
        task,
    })
}

/// Accepts TCP connections and serves HTTP/1.1 (with upgrades to WebSocket)
/// on each, over TLS when `tls` is set, until shutdown. Written out rather
/// than `axum::serve` for the header read timeout, which `axum::serve` does
/// not offer: a half-sent handshake (slowloris) is dropped instead of
/// holding a socket forever.
async fn accept_loop(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    tls: Option<Tls>,
    mut shutdown: watch::Receiver<bool>,
) {
    let header_read_timeout = shared.config.header_read_timeout;
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly, never stop serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let shutdown = shutdown.clone();
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut stream = match tls {
                None => Stream::from(stream),
                Some(tls) => match tls.accept(stream, header_read_timeout).await {
                    Some(s) => s,
                    None => return,
                },
            };
            match first_bytes(&mut stream, header_read_timeout).await {
                // Nothing within the header read timeout: not held.
                None => {}
                Some(true) => direct_websocket(stream, remote, shared).await,
                Some(false) => {
                    // Boxed: the HTTP connection's state is large, and a
                    // WebSocket task should not carry its size for life.
                    Box::pin(serve_http(
                        stream,
                        remote,
                        router,
                        header_read_timeout,
                        shutdown,
                    ))
                    .await;
                }
            }
        });
    }
}

/// Whether the first bytes the client sent are `GET /app/`: a WebSocket
/// open, taken on the fast path that skips the HTTP stack (its per-request
/// buffers and task). Anything else, including a first segment too short to
/// tell, goes to hyper (`Some(false)`), which also serves `/app/` upgrades.
/// `None` when nothing came within the header read timeout.
async fn first_bytes(stream: &mut Stream, header_read_timeout: Duration) -> Option<bool> {
    const PREFIX: &[u8] = b"GET /app/";
    let mut probe = [0u8; PREFIX.len()];
    match tokio::time::timeout(header_read_timeout, stream.peek(&mut probe)).await {
        Err(_) => None,
        Ok(Ok(n)) => Some(n == PREFIX.len() && probe == PREFIX),
        Ok(Err(_)) => Some(false),
    }
}

/// The largest request head the fast path reads.
const MAX_HEAD: usize = 16 * 1024;

/// Opens a WebSocket without the HTTP stack and starts its connection task.
async fn direct_websocket(stream: Stream, remote: SocketAddr, shared: Arc<Shared>) {
    // Boxed and in its own function: the handshake's buffers and headers
    // are freed before the connection's long life begins.
    let opened = Box::pin(direct_handshake(stream, remote, &shared)).await;
    if let Some((socket, key, protocol_ok, ticket)) = opened {
        open_socket(socket, shared, key, protocol_ok, ticket).await;
    }
}

/// A refused request head: the status, the message, and extra headers
/// (`Sec-WebSocket-Version`, `Retry-After`).
type HeadRefusal = (StatusCode, String, Vec<(header::HeaderName, String)>);

/// Admits a WebSocket open from `remote` under the limits per address and
/// the process's cap (see [`crate::admission`]), or says how to refuse it:
/// 429 for an address over its limits, 503 for a full server, both with
/// `Retry-After`.
fn admit(
    shared: &Arc<Shared>,
    remote: SocketAddr,
    headers: &header::HeaderMap,
) -> Result<crate::admission::Ticket, HeadRefusal> {
    let ip = shared.config.client_ip(remote.ip(), headers);
    shared.gate.open(ip).map_err(|r| {
        let status = if r.limit == crate::admission::Limit::Total {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        (
            status,
            r.message,
            vec![(header::RETRY_AFTER, r.retry_after.to_string())],
        )
    })
}

/// Reads and checks the request head and answers 101, or answers with the
/// error and returns `None`.
async fn direct_handshake(
    mut stream: Stream,
    remote: SocketAddr,
    shared: &Arc<Shared>,
) -> Option<(Socket, String, bool, crate::admission::Ticket)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + shared.config.header_read_timeout;
    let mut buf = Vec::with_capacity(1024);
    let refusal = loop {
        match ws::handshake::parse_head(&buf) {
            Ok(Some(req)) => break Ok(req),
            Ok(None) if buf.len() < MAX_HEAD => {}
            Ok(None) | Err(ws::handshake::HeadError::TooManyHeaders) => {
                break Err((
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large".to_owned(),
                    Vec::new(),
                ))
            }
            Err(e) => break Err((StatusCode::BAD_REQUEST, e.to_string(), Vec::new())),
        }
        buf.reserve(1024);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            // Closed, failed, or too slow (a half-sent head is not held).
            _ => return None,
        }
    }
    .and_then(|req| {
        let Some((key, protocol)) = ws::handshake::app_target(&req.target) else {
            let msg = "not found: see the README for the endpoints whosin serves";
            return Err((StatusCode::NOT_FOUND, msg.to_owned(), Vec::new()));
        };
        if let Err(msg) = shared
            .check_local(&req.headers)
            .and_then(|()| check_origin(shared, key, &req.headers))
        {
            return Err((StatusCode::FORBIDDEN, msg, Vec::new()));
        }
        let accept =
            ws::handshake::accept(&axum::http::Method::GET, &req.headers).map_err(|e| {
                let version = (e == ws::handshake::HandshakeError::Version)
                    .then(|| (header::SEC_WEBSOCKET_VERSION, "13".to_owned()));
                (e.status(), e.to_string(), version.into_iter().collect())
            })?;
        let ticket = admit(shared, remote, &req.headers)?;
        Ok((
            req.head_len,
            key.to_owned(),
            protocol_ok(protocol),
            accept,
            ticket,
        ))
    });
    let (head_len, key, protocol_ok, accept, ticket) = match refusal {
        Ok(opened) => opened,
        Err((status, message, extra)) => {
            reply(stream, status, &message, &extra).await;
            return None;
        }
    };
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
        accept.to_str().unwrap_or_default()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.flush().await.ok()?;
    let leftover = buf[head_len..].to_vec();
    let socket = Socket::new(stream, leftover, shared.config.max_message_bytes);
    Some((socket, key, protocol_ok, ticket))
}

/// Refuses a WebSocket open from a browser origin the app does not list
/// (checked before the upgrade, so the page sees a failed handshake). An
/// unknown key is left to the connection (4001).
fn check_origin(shared: &Shared, key: &str, headers: &header::HeaderMap) -> Result<(), String> {
    let Some(app) = shared.app_by_key(key) else {
        return Ok(());
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    app.config.check_origin(origin).inspect_err(|_| {
        tracing::debug!(
            origin = origin.unwrap_or(""),
            "WebSocket refused: origin not allowed"
        )
    })
}

/// Answers a fast-path request with an error and closes.
async fn reply(
    mut stream: Stream,
    status: StatusCode,
    message: &str,
    headers: &[(header::HeaderName, String)],
) {
    use tokio::io::AsyncWriteExt;
    let body = serde_json::json!({ "error": message }).to_string();
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    // One write: head and body leave in one segment (one TLS record), so a
    // client that reads the head once (tungstenite keeps only what came
    // with it as the body) does not lose the message.
    let response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Serves HTTP/1.1 (REST, auth, web page, and upgrades that did not take
/// the fast path) on one connection until it ends or the server stops.
async fn serve_http(
    stream: Stream,
    remote: SocketAddr,
    router: Router,
    header_read_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        router.clone().oneshot(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
            }
        }
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// Resolves once shutdown has begun (the guard of `wait_for` is dropped at
/// once, so the future stays `Send`).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/app/{key}", any(websocket))
        .route("/apps/{app_id}/events", post(rest::events))
        .route("/apps/{app_id}/batch_events", post(rest::batch_events))
        .route("/apps/{app_id}/channels", get(rest::channels))
        .route("/apps/{app_id}/channels/{channel}", get(rest::channel))
        .route("/apps/{app_id}/channels/{channel}/users", get(rest::users))
        .route(
            "/apps/{app_id}/channels/{channel}/history",
            get(rest::history),
        )
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(rest::terminate),
        )
        .route(
            "/pusher/auth",
            get(auth_endpoint::jsonp)
                .post(auth_endpoint::form)
                .options(cors::preflight),
        )
        .route("/", get(web::index))
        .route("/whosin.json", get(web::config))
        .route("/history.json", get(web::history))
        .route("/whosin.js", get(web::embed_script))
        .route("/whosin-embed.css", get(web::embed_style))
        .route("/{file}", get(static_file))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            read_body_in_time,
        ))
        .with_state(shared)
}

/// Largest request body read (REST's `/events` carry at most 100 channels
/// and 10 KB of data; this is far above and still bounded).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Refuses what a loopback-only server must not serve (see
/// [`Shared::check_local`]), then reads a request's body within the
/// body-read timeout before any handler sees it: a body trickled in slower (a slowloris on POST) is answered 408
/// and its connection freed, instead of holding a task for ever.
async fn read_body_in_time(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(msg) = shared.check_local(request.headers()) {
        return rest::error(StatusCode::FORBIDDEN, &msg);
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(shared.config.body_read_timeout, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY_BYTES} bytes, or broken off"),
            )
                .into_response()
        }
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONNECTION, "close")],
                format!(
                    "request body not received within {} s",
                    shared.config.body_read_timeout.as_secs()
                ),
            )
                .into_response()
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// Opens a WebSocket on `/app/{key}` and hands it to a connection task.
///
/// The upgrade is done by hand (see [`ws::handshake`]) so the task owns the
/// [`Stream`] itself: its buffers are then only as large as the traffic.
async fn websocket(
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    mut req: Request<axum::body::Body>,
) -> Response {
    if let Err(msg) = check_origin(&shared, &key, req.headers()) {
        return rest::error(StatusCode::FORBIDDEN, &msg);
    }
    let accept = match ws::handshake::accept(req.method(), req.headers()) {
        Ok(a) => a,
        Err(e) => {
            let mut r = rest::error(e.status(), &e.to_string());
            if e == ws::handshake::HandshakeError::Version {
                r.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    header::HeaderValue::from_static("13"),
                );
            }
            return r;
        }
    };
    let ticket = match admit(&shared, remote, req.headers()) {
        Ok(t) => t,
        Err((status, message, headers)) => {
            let mut r = rest::error(status, &message);
            for (name, value) in headers {
                if let Ok(v) = header::HeaderValue::from_str(&value) {
                    r.headers_mut().insert(name, v);
                }
            }
            return r;
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let max = shared.config.max_message_bytes;
    let protocol_ok = protocol_ok(query.get("protocol").map(String::as_str));
    let task = async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let Some(socket) = into_socket(upgraded, max) else {
            tracing::error!("upgraded connection is not a whosin stream; dropping it");
            return;
        };
        open_socket(socket, shared, key, protocol_ok, ticket).await;
    };
    tokio::spawn(task);
    let mut r = Response::new(axum::body::Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    r
}

/// Pusher protocol 7 is spoken; 5 and 6 differ only in ways we accept.
fn protocol_ok(protocol: Option<&str>) -> bool {
    protocol.is_none_or(|p| p.parse::<u32>().is_ok_and(|v| (5..=7).contains(&v)))
}

/// Runs an opened WebSocket for the app with `key`, or refuses it.
async fn open_socket(
    socket: Socket,
    shared: Arc<Shared>,
    key: String,
    protocol_ok: bool,
    ticket: crate::admission::Ticket,
) {
    match shared.app_by_key(&key).cloned() {
        None => {
            tracing::info!(%key, "connection refused: unknown app key");
            Box::pin(connection::refuse(socket, CloseCode::UnknownAppKey)).await
        }
        Some(app) if !app.config.enabled => {
            Box::pin(connection::refuse(socket, CloseCode::AppDisabled)).await
        }
        Some(_) if !protocol_ok => {
            Box::pin(connection::refuse(socket, CloseCode::UnsupportedProtocol)).await
        }
        // A task of its own, sized to the connection alone: the task that
        // accepted it (and carried the handshake's state) ends here.
        Some(app) => {
            tokio::spawn(connection::run(socket, shared, app, ticket));
        }
    }
}

/// The stream under an upgraded connection, with what hyper had
/// read past the handshake. A separate function so that hyper's read buffer
/// (8 KiB, which the leftover bytes point into) is freed here rather than
/// held by the connection task for its whole life.
fn into_socket(upgraded: hyper::upgrade::Upgraded, max_message: usize) -> Option<Socket> {
    let parts = upgraded.downcast::<TokioIo<Stream>>().ok()?;
    let leftover = parts.read_buf.to_vec();
    Some(Socket::new(parts.io.into_inner(), leftover, max_message))
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let g = shared.gauges();
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            r#"{{"status":"ok","connections":{},"channels":{}}}"#,
            g.connections, g.channels
        ),
    )
        .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: header::HeaderMap) -> Response {
    if let Some(token) = &shared.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| {
            whosin_protocol::sign::constant_time_eq(g.as_bytes(), token.as_bytes())
        });
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "send Authorization: Bearer <the --metrics-token>",
            )
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(shared.gauges()),
    )
        .into_response()
}

async fn static_file(Path(file): Path<String>) -> Response {
    match web::file(&file) {
        Some(r) => r,
        None => not_found().await,
    }
}

async fn not_found() -> Response {
    rest::error(
        StatusCode::NOT_FOUND,
        "not found: see the README for the endpoints whosin serves",
    )
}
