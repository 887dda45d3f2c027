//! Helpers for cluster fault tests: a real `redis-server` that can be
//! killed and restarted on its port, a fault-injecting TCP proxy in front
//! of it, and a raw WebSocket observer whose every frame is recorded and
//! replayed by an exactly-once checker.
//!
//! Our own client reconciles rosters (a duplicate `member_added` or a
//! resent roster that differs is silently absorbed), so exactly-once has to
//! be judged on raw frames: that is what [`Observer`] and [`replay_raw`] do.

use super::{CHANNEL, DEADLINE, KEY, SECRET};
use futures_util::{SinkExt, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------- Redis

/// A `redis-server` on a free port of 127.0.0.1, without persistence, in a
/// temporary directory.
///
/// With `WHOSIN_TEST_REDIS_MONITOR=1`, every command Redis runs is logged
/// (`redis-cli monitor`) to `monitor-<port>.log` in the temporary
/// directory, kept after the test: a debugging aid.
pub struct Redis {
    child: Child,
    monitor: Option<Child>,
    pub port: u16,
    pub dir: std::path::PathBuf,
}

impl Redis {
    /// Starts on `port` and waits until it accepts connections.
    pub fn start_on(port: u16, dir: &std::path::Path) -> Redis {
        let child = Redis::spawn(port, dir);
        Redis {
            child,
            monitor: Redis::monitor(port),
            port,
            dir: dir.to_owned(),
        }
    }

    fn monitor(port: u16) -> Option<Child> {
        std::env::var_os("WHOSIN_TEST_REDIS_MONITOR")?;
        let path = std::env::temp_dir().join(format!("monitor-{port}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok()?;
        eprintln!("Redis monitor: {}", path.display());
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "monitor"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .ok()
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Child {
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        let until = Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Starts on a free port.
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("whosin-redis-{port}-{}", std::process::id()));
        Redis::start_on(port, &dir)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL and wait: the data (in memory only) is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut m) = self.monitor.take() {
            let _ = m.kill();
            let _ = m.wait();
        }
    }

    /// Kills this server and starts a fresh, empty one on the same port.
    pub fn restart_empty(&mut self) {
        self.kill();
        self.child = Redis::spawn(self.port, &self.dir);
        self.monitor = Redis::monitor(self.port);
    }

    /// Runs one command with `redis-cli` straight against the server (not
    /// through any proxy) and returns its raw output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed with redis-server");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits (bounded) until `f(self)` holds.
    pub async fn until(&self, what: &str, within: Duration, f: impl Fn(&Redis) -> bool) {
        let end = Instant::now() + within;
        while !f(self) {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what} in Redis"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------- Proxy

/// What the [`Proxy`] does, switched at runtime for every connection,
/// current and future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Forward client→Redis, swallow Redis→client: commands run in Redis
    /// but their replies never arrive (an unknown outcome for the client).
    /// TCP never loses bytes, so a connection that swallowed any is closed
    /// when the mode changes away from `Blackhole`: it could only have
    /// ended with a timeout in real life, and its reply stream is broken.
    Blackhole,
    /// Forward both ways, Redis→client bytes each held back this long
    /// (order kept).
    Delay(Duration),
    /// Close every connection; new ones are accepted and closed at once.
    Cut,
}

/// A fault-injecting TCP proxy on 127.0.0.1 in front of one upstream port.
pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts in [`Mode::Pass`]. Needs a multi-thread runtime (the test's
    /// own thread may block while nodes start through it).
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, rx) = watch::channel(Mode::Pass);
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                if *rx.borrow() == Mode::Cut {
                    drop(down);
                    continue;
                }
                tokio::spawn(proxy_conn(down, upstream, rx.clone()));
            }
        });
        Proxy { port, mode, accept }
    }

    /// `redis://` URL for a node behind this proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.set(Mode::Cut);
    }
}

/// One proxied connection; ends (closing both sides) when either side
/// closes, on `Cut`, or when leaving `Blackhole` after swallowing bytes.
async fn proxy_conn(down: TcpStream, upstream: u16, mode: watch::Receiver<Mode>) {
    let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = (down.set_nodelay(true), up.set_nodelay(true));
    let (mut dr, mut dw) = down.into_split();
    let (mut ur, mut uw) = up.into_split();
    let swallowed = AtomicBool::new(false);
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let to_redis = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match dr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if uw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let from_redis = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match ur.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let now = tokio::time::Instant::now();
            let m = *mode.borrow();
            match m {
                Mode::Pass => drop(tx.send((now, buf[..n].to_vec()))),
                Mode::Delay(d) => drop(tx.send((now + d, buf[..n].to_vec()))),
                Mode::Blackhole => swallowed.store(true, Ordering::SeqCst),
                Mode::Cut => return,
            }
        }
    };
    let to_client = async {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if dw.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    let mut control = mode.clone();
    let control = async {
        loop {
            let m = *control.borrow_and_update();
            match m {
                Mode::Cut => return,
                Mode::Pass | Mode::Delay(_) if swallowed.load(Ordering::SeqCst) => return,
                _ => {}
            }
            if control.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = to_redis => {}
        _ = from_redis => {}
        _ = to_client => {}
        _ = control => {}
    }
}

// ---------------------------------------------------------------- Observer

/// A raw Pusher-protocol-7 client joined to [`CHANNEL`] as one user: it
/// answers pings and records every text frame it receives, unchanged.
/// Closing it (or dropping it) is that user's connection going away.
pub struct Observer {
    pub name: String,
    pub user: String,
    frames: Arc<Mutex<Vec<(Instant, String)>>>,
    open: Arc<AtomicBool>,
    close: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Connects to the node on `port` and subscribes as `user`, without
    /// waiting for the answer.
    pub fn start(port: u16, user: &str) -> Observer {
        Observer::start_named(port, user, user)
    }

    /// The same, with a name for messages (e.g. "o1@n1").
    pub fn start_named(port: u16, user: &str, name: &str) -> Observer {
        let frames: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let open = Arc::new(AtomicBool::new(true));
        let (close_tx, close_rx) = tokio::sync::oneshot::channel();
        let url = format!("ws://127.0.0.1:{port}/app/{KEY}?protocol=7&client=whosin-e2e");
        let task = tokio::spawn(observe(
            url,
            user.to_owned(),
            frames.clone(),
            open.clone(),
            close_rx,
        ));
        Observer {
            name: name.to_owned(),
            user: user.to_owned(),
            frames,
            open,
            close: Some(close_tx),
            task,
        }
    }

    /// Starts and waits (bounded) for the first `subscription_succeeded`.
    pub async fn join(port: u16, user: &str) -> Observer {
        let o = Observer::start(port, user);
        o.subscribed(DEADLINE).await;
        o
    }

    /// Waits (bounded) until the subscription was confirmed.
    pub async fn subscribed(&self, within: Duration) -> Replay {
        self.until("subscription_succeeded", within, |_| true).await
    }

    /// Every text frame so far, in order.
    pub fn frames(&self) -> Vec<String> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// Whether the WebSocket is still open (not closed by either side).
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Replays the frames so far; `Ok(None)` before the first roster.
    pub fn replay(&self) -> Result<Option<Replay>, String> {
        replay_raw(&self.frames())
    }

    /// The replay so far; panics with the stream if it is not exact.
    pub fn exact(&self) -> Replay {
        match self.replay() {
            Ok(Some(r)) => r,
            Ok(None) => panic!(
                "{}: no subscription_succeeded yet\n{}",
                self.name,
                self.story()
            ),
            Err(e) => panic!("{}: {e}\n{}", self.name, self.story()),
        }
    }

    /// Waits until the replayed stream satisfies `cond`, within `within`.
    /// Fails at once if the stream stops being exact (a duplicate, a ghost
    /// or a silent roster change), or if the connection closes.
    pub async fn until(
        &self,
        what: &str,
        within: Duration,
        cond: impl Fn(&Replay) -> bool,
    ) -> Replay {
        let end = Instant::now() + within;
        loop {
            match self.replay() {
                Err(e) => panic!("{} (waiting for {what}): {e}\n{}", self.name, self.story()),
                Ok(Some(r)) if cond(&r) => return r,
                _ => {}
            }
            assert!(
                self.is_open(),
                "{}: connection closed while waiting for {what}\n{}",
                self.name,
                self.story()
            );
            assert!(
                Instant::now() < end,
                "{}: timed out after {within:?} waiting for {what}\n{}",
                self.name,
                self.story()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the replayed roster is exactly `ids`.
    pub async fn roster_becomes(&self, ids: &[&str], within: Duration) -> Replay {
        let want: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
        self.until(&format!("roster {ids:?}"), within, |r| r.members == want)
            .await
    }

    /// Closes the connection (a normal WebSocket close): the user leaves.
    pub fn close(&mut self) {
        if let Some(c) = self.close.take() {
            let _ = c.send(());
        }
    }

    /// The presence frames so far in short form, one per line with the
    /// time since the first frame: `+x`, `-x`, `roster[a,b]`.
    pub fn story(&self) -> String {
        let frames = self.frames.lock().unwrap().clone();
        let t0 = frames.first().map(|f| f.0);
        let mut s = format!("{} frames (user {}):", self.name, self.user);
        for (at, f) in &frames {
            if let Some(p) = presence_frame(f) {
                let dt = at.duration_since(t0.unwrap());
                s.push_str(&format!("\n  {:>6.3}s {p}", dt.as_secs_f64()));
            }
        }
        s
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.close();
        self.task.abort();
    }
}

async fn observe(
    url: String,
    user: String,
    frames: Arc<Mutex<Vec<(Instant, String)>>>,
    open: Arc<AtomicBool>,
    mut close: tokio::sync::oneshot::Receiver<()>,
) {
    let ws = tokio::select! {
        r = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url.as_str())) => r,
        _ = &mut close => { open.store(false, Ordering::SeqCst); return; }
    };
    let Ok(Ok((ws, _))) = ws else {
        open.store(false, Ordering::SeqCst);
        panic!("observer {user}: could not connect to {url}");
    };
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let text = t.as_str().to_owned();
                    frames.lock().unwrap().push((Instant::now(), text.clone()));
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                    let reply = match v["event"].as_str() {
                        Some("pusher:connection_established") => {
                            let data: serde_json::Value =
                                serde_json::from_str(v["data"].as_str().unwrap_or("{}")).unwrap_or_default();
                            let socket_id = data["socket_id"].as_str().unwrap_or_default();
                            let channel_data = serde_json::json!({
                                "user_id": user,
                                "user_info": {"name": user},
                            })
                            .to_string();
                            let auth = whosin_protocol::sign::channel_auth(
                                KEY, SECRET, socket_id, CHANNEL, Some(&channel_data),
                            );
                            Some(serde_json::json!({
                                "event": "pusher:subscribe",
                                "data": {"channel": CHANNEL, "auth": auth, "channel_data": channel_data},
                            }))
                        }
                        Some("pusher:ping") => Some(serde_json::json!({"event": "pusher:pong", "data": {}})),
                        _ => None,
                    };
                    if let Some(r) = reply {
                        if sink.send(Message::Text(r.to_string().into())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = &mut close => {
                let _ = sink.send(Message::Close(None)).await;
                let _ = sink.close().await;
                break;
            }
        }
    }
    open.store(false, Ordering::SeqCst);
}

/// `+x`, `-x` or `roster[a,b]` for a presence frame of [`CHANNEL`].
fn presence_frame(f: &str) -> Option<String> {
    match parse(f)? {
        Presence::Roster(ids) => Some(format!(
            "roster[{}]",
            ids.into_iter().collect::<Vec<_>>().join(",")
        )),
        Presence::Added(u) => Some(format!("+{u}")),
        Presence::Removed(u) => Some(format!("-{u}")),
    }
}

enum Presence {
    Roster(BTreeSet<String>),
    Added(String),
    Removed(String),
}

fn parse(frame: &str) -> Option<Presence> {
    let v: serde_json::Value = serde_json::from_str(frame).ok()?;
    if v["channel"].as_str() != Some(CHANNEL) {
        return None;
    }
    let data: serde_json::Value = match &v["data"] {
        serde_json::Value::String(s) => serde_json::from_str(s).ok()?,
        other => other.clone(),
    };
    match v["event"].as_str()? {
        "pusher_internal:subscription_succeeded" => {
            let ids = data["presence"]["ids"].as_array()?;
            Some(Presence::Roster(
                ids.iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
            ))
        }
        "pusher_internal:member_added" => {
            Some(Presence::Added(data["user_id"].as_str()?.to_owned()))
        }
        "pusher_internal:member_removed" => {
            Some(Presence::Removed(data["user_id"].as_str()?.to_owned()))
        }
        _ => None,
    }
}

/// What a raw presence stream amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The roster after the last frame.
    pub members: BTreeSet<String>,
    /// `(member_added, member_removed)` frames per user id.
    pub tally: BTreeMap<String, (u32, u32)>,
    /// How many `subscription_succeeded` frames (1 = never resent).
    pub rosters: u32,
}

impl Replay {
    /// `(added, removed)` for `user`, `(0, 0)` if never mentioned.
    pub fn of(&self, user: &str) -> (u32, u32) {
        self.tally.get(user).copied().unwrap_or((0, 0))
    }
}

/// Replays raw frames: the first `subscription_succeeded` sets the roster;
/// each `member_added` must be for an absent user and each
/// `member_removed` for a present one; a later `subscription_succeeded`
/// must equal the replayed roster (if it differs, the client missed an
/// added/removed event and was silently corrected). `Ok(None)` before the
/// first roster; `Err` describes the first violation.
pub fn replay_raw(frames: &[String]) -> Result<Option<Replay>, String> {
    let mut r: Option<Replay> = None;
    for (i, f) in frames.iter().enumerate() {
        let Some(p) = parse(f) else { continue };
        match (p, r.as_mut()) {
            (Presence::Roster(ids), None) => {
                r = Some(Replay {
                    members: ids,
                    tally: BTreeMap::new(),
                    rosters: 1,
                })
            }
            (Presence::Roster(ids), Some(r)) => {
                r.rosters += 1;
                if ids != r.members {
                    let missed_add: Vec<_> = ids.difference(&r.members).collect();
                    let missed_rm: Vec<_> = r.members.difference(&ids).collect();
                    return Err(format!(
                        "frame {i}: resent roster differs from the replayed one \
                         (silently added {missed_add:?}, silently removed {missed_rm:?})"
                    ));
                }
            }
            (Presence::Added(u) | Presence::Removed(u), None) => {
                return Err(format!(
                    "frame {i}: member event for {u} before subscription_succeeded"
                ))
            }
            (Presence::Added(u), Some(r)) => {
                if !r.members.insert(u.clone()) {
                    return Err(format!(
                        "frame {i}: member_added for {u}, already present (duplicate)"
                    ));
                }
                r.tally.entry(u).or_default().0 += 1;
            }
            (Presence::Removed(u), Some(r)) => {
                if !r.members.remove(&u) {
                    return Err(format!(
                        "frame {i}: member_removed for {u}, not present (ghost)"
                    ));
                }
                r.tally.entry(u).or_default().1 += 1;
            }
        }
    }
    Ok(r)
}

// ---------------------------------------------------------------- misc

/// `whosin_cluster_failures_total` of a node (0 if unreadable).
pub fn cluster_failures(port: u16) -> u64 {
    let out = Command::new("curl")
        .args([
            "-sf",
            "-m",
            "2",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("whosin_cluster_failures_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sends a signal (`STOP`, `CONT`, ...) to a process.
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill -{sig} {pid}");
}
