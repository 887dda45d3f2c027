//! End-to-end helpers: `whosin serve` as a separate process, visitors made
//! with the client crate, an event log with deadlines, a consistency check
//! for presence event streams, and a TCP relay that can go half-open.
//! Cluster fault helpers (Redis, a fault proxy, raw observers) are in
//! [`faults`].

#![allow(dead_code)]

pub mod faults;
pub mod raw;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use whosin_client::{
    Backoff, Client, ConnectionState, Endpoint, Event, Events, LocalSigner, UserData,
};

pub const ID: &str = "e2e";
pub const KEY: &str = "e2e-key";
pub const SECRET: &str = "e2e-secret";
pub const CHANNEL: &str = "presence-whosin";
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The `whosin` binary cargo built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_whosin")
}

/// A `whosin serve` child process.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
}

impl ServerProcess {
    /// Starts on a free port.
    pub fn start(extra: &[&str]) -> ServerProcess {
        Self::start_on(0, extra)
    }

    /// Starts on `port` and waits for `listening on`.
    pub fn start_on(port: u16, extra: &[&str]) -> ServerProcess {
        let port_s = port.to_string();
        let mut args = vec![
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            &port_s,
            "--app-id",
            ID,
            "--app-key",
            KEY,
            "--app-secret",
            SECRET,
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new(bin())
            .args(&args)
            .env(
                "WHOSIN_LOG",
                std::env::var("WHOSIN_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn whosin serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("server printed `listening on` in time");
        let port = line
            .strip_prefix("listening on ")
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        ServerProcess { child, port }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}/pusher/auth", self.port)
    }

    /// SIGTERM and wait: graceful shutdown.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        wait_exit(&mut self.child, DEADLINE);
    }

    /// SIGKILL and wait: no goodbyes.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a child to exit, killing it after `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let until = std::time::Instant::now() + within;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `whosin ARGS` to its end and returns what it printed; panics if it
/// has not exited within `within` (it is killed first).
pub fn run_bounded(args: &[&str], within: Duration) -> std::process::Output {
    use std::io::Read;
    let mut child = std::process::Command::new(bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start whosin");
    // Drained while it runs, so a full pipe cannot stall it.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = wait_exit(&mut child, within)
        .unwrap_or_else(|| panic!("whosin {args:?} did not exit within {within:?}"));
    std::process::Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// A visitor: a client joined to [`CHANNEL`] as `user`, signing locally,
/// with fast timers so tests of failures finish quickly.
pub fn visitor(url: &str, user: &str) -> (Client, Log) {
    let endpoint = Endpoint::parse(url, KEY).unwrap();
    let signer = LocalSigner::new(KEY, SECRET)
        .with_user(UserData::new(user, serde_json::json!({"name": user})));
    let (client, events) = Client::builder(endpoint)
        .authorizer(signer)
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(800),
        ))
        .pong_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(3))
        .connect();
    client.subscribe(CHANNEL);
    (client, Log::new(events))
}

/// Every event a client emitted, gathered in the background.
#[derive(Clone)]
pub struct Log {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Log {
    pub fn new(mut events: Events) -> Log {
        let store = Arc::new(Mutex::new(Vec::new()));
        let s = store.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                s.lock().unwrap().push(e);
            }
        });
        Log { events: store }
    }

    pub fn all(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Waits until some event from index `from` on matches; returns its index.
    pub async fn wait_for(&self, from: usize, what: &str, pred: impl Fn(&Event) -> bool) -> usize {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(i) = self
                .events
                .lock()
                .unwrap()
                .iter()
                .skip(from)
                .position(&pred)
            {
                return from + i;
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}; events: {:#?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn connected(&self, from: usize) -> usize {
        self.wait_for(from, "connected", |e| {
            matches!(e, Event::State(ConnectionState::Connected { .. }))
        })
        .await
    }
}

/// Waits until a client's roster of [`CHANNEL`] is exactly `ids`.
pub async fn roster_becomes(client: &Client, ids: &[&str]) {
    let until = Instant::now() + DEADLINE;
    loop {
        let now: Vec<String> = client
            .members(CHANNEL)
            .map(|(_, m)| m.into_iter().map(|m| m.id).collect())
            .unwrap_or_default();
        if now == ids {
            return;
        }
        assert!(
            Instant::now() < until,
            "roster is {now:?}, expected {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Replays presence events and checks they tell a consistent story: a
/// snapshot first, nobody added twice or removed when absent, and each
/// event's count right. Returns the final roster and the (added, removed)
/// tallies per id.
pub fn replay(events: &[Event]) -> (Vec<String>, std::collections::BTreeMap<String, (u32, u32)>) {
    use std::collections::{BTreeMap, BTreeSet};
    let mut set: Option<BTreeSet<String>> = None;
    let mut tally: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for e in events {
        match e {
            Event::Snapshot { members, .. } => {
                assert!(
                    set.is_none(),
                    "a second Snapshot: reconnects must be reported as changes\n{events:#?}"
                );
                set = Some(members.iter().map(|m| m.id.clone()).collect());
            }
            Event::MemberAdded { member, count, .. } => {
                let s = set.as_mut().expect("member_added before the snapshot");
                assert!(
                    s.insert(member.id.clone()),
                    "{} added twice\n{events:#?}",
                    member.id
                );
                assert_eq!(*count, s.len(), "count after adding {}", member.id);
                tally.entry(member.id.clone()).or_default().0 += 1;
            }
            Event::MemberRemoved { member, count, .. } => {
                let s = set.as_mut().expect("member_removed before the snapshot");
                assert!(
                    s.remove(&member.id),
                    "{} removed while absent\n{events:#?}",
                    member.id
                );
                assert_eq!(*count, s.len(), "count after removing {}", member.id);
                tally.entry(member.id.clone()).or_default().1 += 1;
            }
            _ => {}
        }
    }
    (set.unwrap_or_default().into_iter().collect(), tally)
}

/// A TCP relay in front of a server that can freeze its connections: they
/// stay open but nothing more is forwarded either way, as with a dead NAT
/// entry or a suspended laptop. New connections are forwarded normally.
pub struct Relay {
    pub port: u16,
    conns: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Relay {
    pub async fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let list = conns.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let frozen = Arc::new(AtomicBool::new(false));
                list.lock().unwrap().push(frozen.clone());
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(pipe(dr, uw, frozen.clone()));
                tokio::spawn(pipe(ur, dw, frozen));
            }
        });
        Relay { port, conns }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Freezes every connection made so far.
    pub fn freeze(&self) {
        for f in self.conns.lock().unwrap().iter() {
            f.store(true, Ordering::SeqCst);
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            // Half-open: hold both sockets, forward nothing, never close.
            let _keep = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}
