//! `whosin bench`: a load generator for any Pusher-protocol server.
//!
//! The `presence` scenario joins N members into one presence channel in
//! batches while an observer measures, per member, the time from sending the
//! subscribe to seeing its `member_added`, then closes them and measures the
//! time to `member_removed`. Every member's connection keeps reading (it
//! receives everyone else's joins too: the N² fan-out that makes presence
//! expensive), so the server is never excused for a slow reader.
//! Raw frames and local signing keep the generator itself cheap, and it stops
//! by itself: every wait has a deadline.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use whosin_protocol::frame::ServerFrame;
use whosin_protocol::sign;

/// `whosin bench` scenarios.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Join N members into one presence channel; measure member_added / member_removed latency.
    Presence(PresenceArgs),
    /// C presence channels of M members each, all at once (hosted Pusher's shape).
    Rooms(RoomsArgs),
    /// Hold N idle connections; measure the server's memory per connection.
    Idle(IdleArgs),
    /// S subscribers on one channel, REST triggers at a rate; measure delivery latency.
    Broadcast(BroadcastArgs),
    /// M members in a presence channel; one repeats its subscribe R times
    /// without reading; measure the server's memory and that others are served.
    Repeat(RepeatArgs),
}

/// Options of the repeat scenario.
#[derive(Debug, Args)]
pub struct RepeatArgs {
    /// Server URL (ws://HOST:PORT), loopback only.
    #[arg(long, default_value = "ws://127.0.0.1:6001")]
    url: String,
    /// App key.
    #[arg(long)]
    key: String,
    /// App secret (members sign locally).
    #[arg(long)]
    secret: String,
    /// Members in the channel (the repeater is one more).
    #[arg(long, default_value_t = 10_000)]
    members: usize,
    /// Subscribes the repeater sends after joining, without reading.
    #[arg(long, default_value_t = 10_000)]
    repeats: usize,
    /// Server process id (required: memory is read from /proc).
    #[arg(long)]
    server_pid: u32,
    /// Only the JSON line on stdout.
    #[arg(long)]
    json: bool,
}

/// Options of the rooms scenario.
#[derive(Debug, Args)]
pub struct RoomsArgs {
    /// Server URL (ws://HOST:PORT), loopback only.
    #[arg(long, default_value = "ws://127.0.0.1:6001")]
    url: String,
    /// App key.
    #[arg(long)]
    key: String,
    /// App secret (members sign locally).
    #[arg(long)]
    secret: String,
    /// Channels.
    #[arg(long, default_value_t = 50)]
    channels: usize,
    /// Members per channel.
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Members joined at once in each channel.
    #[arg(long, default_value_t = 25)]
    batch: usize,
    /// Give up after this many seconds in all.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Server process id: CPU and peak memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Only the JSON line on stdout.
    #[arg(long)]
    json: bool,
}

/// Options of the idle scenario.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Server URL (ws://HOST:PORT), loopback only.
    #[arg(long, default_value = "ws://127.0.0.1:6001")]
    url: String,
    /// App key.
    #[arg(long)]
    key: String,
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Server process id (required: memory is read from /proc).
    #[arg(long)]
    server_pid: u32,
    /// Keep the connections open this many seconds after the report (to
    /// inspect the server while they are held).
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// Only the JSON line on stdout.
    #[arg(long)]
    json: bool,
}

/// Options of the broadcast scenario.
#[derive(Debug, Args)]
pub struct BroadcastArgs {
    /// Server URL (ws://HOST:PORT), loopback only.
    #[arg(long, default_value = "ws://127.0.0.1:6001")]
    url: String,
    /// App id (REST path).
    #[arg(long)]
    app_id: String,
    /// App key.
    #[arg(long)]
    key: String,
    /// App secret (signs the REST triggers).
    #[arg(long)]
    secret: String,
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Events per second.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Seconds of triggering.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Padding added to each event's data, in bytes.
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
    /// Extra subscribers that subscribe and then never read: the server
    /// must drop them, not buffer for them without bound.
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// Server process id: CPU and peak memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Only the JSON line on stdout.
    #[arg(long)]
    json: bool,
}

/// Options of the presence scenario.
#[derive(Debug, Args)]
pub struct PresenceArgs {
    /// Server URL (ws://HOST:PORT); repeat for the nodes of a cluster: the
    /// observer uses the first, members go round-robin over all. Only
    /// loopback addresses unless --allow-remote.
    #[arg(long = "url", default_value = "ws://127.0.0.1:6001")]
    urls: Vec<String>,
    /// App key.
    #[arg(long)]
    key: String,
    /// App secret (members sign locally).
    #[arg(long)]
    secret: String,
    /// Members to join.
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Members joined at once.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Channel (a presence- channel).
    #[arg(long, default_value = "presence-bench")]
    channel: String,
    /// Give up after this many seconds in all.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Server process id: report its CPU time and peak memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Only the JSON line on stdout.
    #[arg(long)]
    json: bool,
    /// Allow a non-loopback target (never in tests).
    #[arg(long)]
    allow_remote: bool,
}

/// Runs a bench scenario.
pub async fn run(b: Bench) -> Result<()> {
    match b {
        Bench::Presence(a) => presence(a).await,
        Bench::Rooms(a) => rooms(a).await,
        Bench::Idle(a) => idle(a).await,
        Bench::Broadcast(a) => broadcast(a).await,
        Bench::Repeat(a) => repeat(a).await,
    }
}

/// The repeat scenario: what a member that asks for the roster again and
/// again, and never reads, costs the server, and whether the others are
/// still served meanwhile.
async fn repeat(a: RepeatArgs) -> Result<()> {
    let url = loopback_url(&a.url, &a.key, false)?;
    let channel = "presence-repeat";
    let frames = Arc::new(AtomicU64::new(0));
    let mut held = Vec::with_capacity(a.members);
    for start in (0..a.members).step_by(500) {
        let end = (start + 500).min(a.members);
        let batch = (start..end).map(|_| connect(&url, frames.clone()));
        for c in futures_util::future::join_all(batch).await {
            let mut m = c?;
            let sub = subscribe_frame(
                &a.key,
                &a.secret,
                &m.socket_id,
                channel,
                &format!("m{}", held.len()),
            );
            m.sink.send(Message::text(sub)).await?;
            held.push(m);
        }
        progress(a.json, "joining", end, a.members);
    }
    // The repeater: joins, then never reads again.
    let ws = open(&url).await?;
    let (mut sink, mut stream) = ws.split();
    let socket_id = established(&mut stream).await?;
    let sub = subscribe_frame(&a.key, &a.secret, &socket_id, channel, "repeater");
    // Settle: the members' frame count stops moving (every join announced)
    // before memory is read.
    let settle_until = Instant::now() + Duration::from_secs(600);
    let mut last = u64::MAX;
    while frames.load(Ordering::Relaxed) != last && Instant::now() < settle_until {
        last = frames.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let before = rss_kb(a.server_pid).context("cannot read the server's memory (--server-pid)")?;
    let mut peak = before;
    for i in 0..a.repeats {
        // A full socket blocks the send: bound it, and stop when it is stuck.
        if tokio::time::timeout(
            Duration::from_secs(2),
            sink.send(Message::text(sub.clone())),
        )
        .await
        .is_err()
        {
            progress(a.json, "repeating (blocked)", i, a.repeats);
            break;
        }
        if i % 100 == 0 {
            peak = peak.max(rss_kb(a.server_pid).unwrap_or(0));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    peak = peak.max(rss_kb(a.server_pid).unwrap_or(0));
    // Everyone else is still served: a newcomer's member_added reaches the members.
    let seen_before = frames.load(Ordering::Relaxed);
    let mut newcomer = connect(&url, frames.clone()).await?;
    let sub = subscribe_frame(&a.key, &a.secret, &newcomer.socket_id, channel, "newcomer");
    newcomer.sink.send(Message::text(sub)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while frames.load(Ordering::Relaxed) < seen_before + a.members as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = frames.load(Ordering::Relaxed) - seen_before;
    let after = rss_kb(a.server_pid).unwrap_or(0);
    let report = json!({
        "scenario": "repeat",
        "members": a.members,
        "repeats": a.repeats,
        "server_rss_before_kb": before,
        "server_rss_peak_kb": peak,
        "server_rss_after_kb": after,
        "frames_to_members_after_a_new_join": delivered,
    });
    if !a.json {
        eprintln!(
            "repeat: {} members, {} repeats; server RSS {} → peak {} kB; a new join reached {} frames",
            a.members, a.repeats, before, peak, delivered
        );
    }
    println!("{report}");
    drop((held, sink, stream, newcomer));
    Ok(())
}

/// A loopback-only WebSocket URL for an app.
fn loopback_url(url: &str, key: &str, allow_remote: bool) -> Result<String> {
    let endpoint = whosin_client::Endpoint::parse(url, key).map_err(anyhow::Error::msg)?;
    let loopback = endpoint.host == "localhost"
        || endpoint
            .host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    if !loopback && !allow_remote {
        bail!(
            "{} is not a loopback address; load tests target this machine only (--allow-remote to override)",
            endpoint.host
        );
    }
    Ok(endpoint.url())
}

/// Current RSS of a process, kB.
fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// A `kB` line of `/proc/PID/status` (`VmRSS:`, `VmHWM:`).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn rooms(a: RoomsArgs) -> Result<()> {
    let url = loopback_url(&a.url, &a.key, false)?;
    if a.channels == 0 || a.members == 0 || a.batch == 0 {
        bail!("--channels, --members and --batch must be at least 1");
    }
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let before = a.server_pid.and_then(proc_usage);
    let frames = Arc::new(AtomicU64::new(0));
    let urls = [url];
    let started = Instant::now();
    let runs = (0..a.channels).map(|c| {
        let channel = format!("presence-room-{c}");
        let (urls, frames, key, secret) = (&urls, &frames, &a.key, &a.secret);
        async move {
            room(
                urls, key, secret, &channel, a.members, a.batch, deadline, frames, true,
            )
            .await
        }
    });
    let results = futures_util::future::join_all(runs).await;
    let secs = started.elapsed().as_secs_f64();
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut lost, mut dup) = (0, 0);
    for r in results {
        let r = r?;
        added.extend(r.added_lat);
        removed.extend(r.removed_lat);
        lost += r.lost_added + r.lost_removed;
        dup += r.dup_added + r.dup_removed;
    }
    let server = server_usage(before, a.server_pid);
    let report = json!({
        "scenario": "rooms",
        "channels": a.channels,
        "members_per_channel": a.members,
        "member_added_ms": summary(added),
        "member_removed_ms": summary(removed),
        "lost": lost,
        "duplicate": dup,
        "seconds": round(secs),
        "frames_received_by_members": frames.load(Ordering::Relaxed),
        "server": server,
    });
    if !a.json {
        eprintln!(
            "rooms: {} channels × {} members: member_added {}, member_removed {}, lost {lost}, duplicate {dup}",
            a.channels, a.members, report["member_added_ms"], report["member_removed_ms"]
        );
    }
    println!("{report}");
    if lost + dup > 0 {
        bail!("events were lost or duplicated (see the JSON line)");
    }
    Ok(())
}

async fn idle(a: IdleArgs) -> Result<()> {
    let url = loopback_url(&a.url, &a.key, false)?;
    let before = rss_kb(a.server_pid)
        .context("cannot read the server's memory from /proc (--server-pid)")?;
    let frames = Arc::new(AtomicU64::new(0));
    let mut held = Vec::with_capacity(a.connections);
    for start in (0..a.connections).step_by(500) {
        let end = (start + 500).min(a.connections);
        let batch = (start..end).map(|_| connect(&url, frames.clone()));
        for c in futures_util::future::join_all(batch).await {
            held.push(c?);
        }
        progress(a.json, "opening", end, a.connections);
    }
    // Let the server settle its allocations for the new connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kb(a.server_pid).context("reading the server's memory")?;
    let per = (after.saturating_sub(before)) as f64 / a.connections as f64;
    let report = json!({
        "scenario": "idle",
        "connections": a.connections,
        "server_rss_before_kb": before,
        "server_rss_after_kb": after,
        "kb_per_connection": round(per),
    });
    if !a.json {
        eprintln!(
            "idle: {} connections, server RSS {} → {} kB, {:.1} kB per connection",
            a.connections, before, after, per
        );
    }
    println!("{report}");
    if a.hold > 0 {
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs(a.hold)).await;
    }
    drop(held);
    Ok(())
}

async fn broadcast(a: BroadcastArgs) -> Result<()> {
    let url = loopback_url(&a.url, &a.key, false)?;
    let endpoint = whosin_client::Endpoint::parse(&a.url, &a.key).map_err(anyhow::Error::msg)?;
    let before = a.server_pid.and_then(proc_usage);
    let channel = "bench-broadcast";
    let total = a.rate as u64 * a.seconds;
    // Each subscriber records latencies (ms) in its own vector and counts
    // deliveries in a shared counter: no per-delivery message passing, so
    // the generator spends its CPU on reading sockets, not on itself.
    let delivered_count = Arc::new(AtomicU64::new(0));
    // (event number, latency ms) per subscriber: the numbers show duplicates.
    type Recorder = Arc<std::sync::Mutex<Vec<(u32, f32)>>>;
    let mut recorders: Vec<Recorder> = Vec::with_capacity(a.subscribers);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    for start in (0..a.subscribers).step_by(200) {
        let end = (start + 200).min(a.subscribers);
        let batch = (start..end).map(|_| open(&url));
        for c in futures_util::future::join_all(batch).await {
            let mut ws = c.context("connecting a subscriber")?;
            ws.send(Message::Text(
                json!({"event":"pusher:subscribe","data":{"channel":channel}})
                    .to_string()
                    .into(),
            ))
            .await?;
            let recorder = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
            recorders.push(recorder.clone());
            let (count, ready) = (delivered_count.clone(), ready_tx.clone());
            tokio::spawn(async move {
                // Through tungstenite until subscribed (no event is sent
                // before every subscriber is), then raw: at 10 k
                // subscribers a general WebSocket reader costs the
                // generator more CPU than the server spends delivering.
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Text(t) = msg {
                        if matches!(
                            ServerFrame::parse(t.as_str()),
                            Ok(ServerFrame::SubscriptionSucceeded { .. })
                        ) {
                            let _ = ready.send(());
                            break;
                        }
                    }
                }
                let tokio_tungstenite::MaybeTlsStream::Plain(mut tcp) = ws.into_inner() else {
                    return;
                };
                let record = |text: &[u8], now: f64| {
                    let text = std::str::from_utf8(text).unwrap_or_default();
                    if let (Some(n), Some(sent)) = (event_number(text), sent_ms(text)) {
                        recorder
                            .lock()
                            .expect("recorder")
                            .push((n, (now - sent) as f32));
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                };
                let mut buf = Vec::with_capacity(4096);
                loop {
                    use tokio::io::AsyncReadExt;
                    match tcp.read_buf(&mut buf).await {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                    // Stamped on arrival, before any parsing.
                    let now = now_ms();
                    let mut at = 0;
                    while let Some((opcode, payload, used)) = unmasked_frame(&buf[at..]) {
                        if opcode == 1 {
                            record(&buf[at..][payload], now);
                        }
                        at += used;
                    }
                    buf.drain(..at);
                    buf.reserve(4096);
                }
            });
        }
        progress(a.json, "joining", end, a.subscribers);
    }
    let subscribed_by = tokio::time::Instant::now() + Duration::from_secs(30);
    for _ in 0..a.subscribers {
        tokio::time::timeout_at(subscribed_by, ready_rx.recv())
            .await
            .context("subscribers did not all subscribe within 30 s")?;
    }
    // Stalled subscribers: subscribed, then never read again (held open).
    let mut stalled = Vec::with_capacity(a.stalled);
    for _ in 0..a.stalled {
        let mut ws = open(&url)
            .await
            .context("connecting a stalled subscriber")?;
        ws.send(Message::Text(
            json!({"event":"pusher:subscribe","data":{"channel":channel}})
                .to_string()
                .into(),
        ))
        .await?;
        stalled.push(ws);
    }
    let padding = "x".repeat(a.payload_bytes);
    // Trigger at the rate, each event carrying its number and send time.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let base = format!("http://{}:{}", endpoint.host, endpoint.port);
    let period = Duration::from_secs_f64(1.0 / f64::from(a.rate.max(1)));
    let mut tick = tokio::time::interval(period);
    for n in 0..total {
        tick.tick().await;
        let body = json!({"name":"tick","channel":channel,"data": json!({"n": n, "t": now_ms(), "pad": padding}).to_string()}).to_string();
        let path = format!("/apps/{}/events", a.app_id);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let md5 = sign::body_md5(body.as_bytes());
        let query = sign::rest_query(&a.key, &a.secret, "POST", &path, &[("body_md5", &md5)], now);
        let url = format!("{base}{path}?{query}");
        let resp = http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("trigger refused: HTTP {}", resp.status());
        }
        progress(a.json, "sending", (n + 1) as usize, total as usize);
    }
    // Wait until every delivery arrived, or 10 s without progress.
    let expected = total * a.subscribers as u64;
    let mut last = (0, Instant::now());
    loop {
        let now = delivered_count.load(Ordering::Relaxed);
        if now >= expected {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each subscriber should see each event once: distinct numbers are
    // deliveries, repeats are duplicates, and only first arrivals count
    // towards latency.
    let mut lat: Vec<f64> = Vec::with_capacity(expected as usize);
    let mut duplicates = 0u64;
    for r in &recorders {
        let mut seen = r.lock().expect("recorder").clone();
        seen.sort_by_key(|&(n, _)| n);
        let before = seen.len();
        seen.dedup_by_key(|&mut (n, _)| n);
        duplicates += (before - seen.len()) as u64;
        lat.extend(seen.iter().map(|&(_, ms)| f64::from(ms)));
    }
    let delivered = lat.len() as u64;
    let lost = expected.saturating_sub(delivered);
    drop(stalled);
    // whosin counts the readers it dropped for not keeping up; other servers
    // may not say.
    let metrics = async {
        http.get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await
    };
    let slow_disconnects = metrics.await.ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("whosin_slow_client_disconnects_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    let server = server_usage(before, a.server_pid);
    let report = json!({
        "scenario": "broadcast",
        "subscribers": a.subscribers,
        "rate": a.rate,
        "events": total,
        "deliveries": delivered,
        "lost": lost,
        "duplicates": duplicates,
        "deliveries_per_second": round(delivered as f64 / a.seconds as f64),
        "latency_ms": summary(lat),
        "stalled_subscribers": a.stalled,
        "payload_bytes": a.payload_bytes,
        "slow_client_disconnects": slow_disconnects,
        "server": server,
    });
    if !a.json {
        eprintln!(
            "broadcast: {} subscribers, {} events at {}/s: {} deliveries, lost {}, duplicates {}, latency {}",
            a.subscribers,
            total,
            a.rate,
            delivered,
            lost,
            duplicates,
            report["latency_ms"]
        );
    }
    println!("{report}");
    if lost > 0 || duplicates > 0 {
        bail!("{lost} deliveries were lost and {duplicates} duplicated");
    }
    Ok(())
}

/// Milliseconds since the epoch, as f64, for send/receive stamps on one machine.
fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Latency summary in milliseconds.
fn summary(mut v: Vec<f64>) -> serde_json::Value {
    if v.is_empty() {
        return json!(null);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    json!({"p50": round(q(0.5)), "p99": round(q(0.99)), "max": round(v[v.len() - 1]), "n": v.len()})
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The server's CPU time since `before` and its peak RSS, or null without a pid.
fn server_usage(before: Option<(f64, u64)>, pid: Option<u32>) -> serde_json::Value {
    match (before, pid.and_then(proc_usage)) {
        (Some((c0, _)), Some((c1, hwm))) => {
            json!({"cpu_seconds": round(c1 - c0), "peak_rss_kb": hwm})
        }
        _ => json!(null),
    }
}

/// CPU seconds (user+system) and peak RSS (kB) of a process, from /proc.
fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = (fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / ticks;
    Some((cpu, status_kb(pid, "VmHWM:")?))
}

/// One observation: a member_added (true) or member_removed of a user, and when.
type Observation = (bool, String, Instant);

/// What the observer saw: user → arrival times of its member_added and
/// member_removed (more than one is a duplicate).
#[derive(Default)]
struct Seen {
    added: HashMap<String, Vec<Instant>>,
    removed: HashMap<String, Vec<Instant>>,
}

impl Seen {
    fn record(&mut self, (is_add, user, at): Observation) {
        let map = if is_add {
            &mut self.added
        } else {
            &mut self.removed
        };
        map.entry(user).or_default().push(at);
    }

    /// Takes observations until `done` holds, `until` passes, or the
    /// observer's connection is gone (nothing more can come: what is
    /// missing is reported as lost, without waiting out the deadline).
    async fn collect(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Observation>,
        until: Instant,
        done: impl Fn(&Seen) -> bool,
    ) {
        while !done(self) && Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                Ok(Some(o)) => self.record(o),
                Ok(None) => return,
                Err(_) => {}
            }
        }
    }
}

struct Member {
    sink: futures_util::stream::SplitSink<Ws, Message>,
    socket_id: String,
}

/// Opens one connection, returns its write half and socket id; the read
/// half is drained in a task that counts frames (and answers nothing: the
/// bench is short enough that pings do not matter, and a slow reader would
/// be the server's problem to report).
async fn connect(url: &str, frames: Arc<AtomicU64>) -> Result<Member> {
    let ws = open(url).await.context("connecting")?;
    let (sink, mut stream) = ws.split();
    let socket_id = established(&mut stream).await?;
    tokio::spawn(async move {
        while let Some(Ok(_)) = stream.next().await {
            frames.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(Member { sink, socket_id })
}

/// Reads up to `connection_established` and returns the socket id.
async fn established(stream: &mut futures_util::stream::SplitStream<Ws>) -> Result<String> {
    loop {
        let next = tokio::time::timeout(CONNECT_TIMEOUT, stream.next()).await;
        match next.context("no connection_established in time")? {
            Some(Ok(Message::Text(t))) => {
                if let Ok(ServerFrame::ConnectionEstablished { socket_id, .. }) =
                    ServerFrame::parse(t.as_str())
                {
                    return Ok(socket_id);
                }
            }
            Some(Ok(_)) => {}
            _ => bail!("the server closed before connection_established"),
        }
    }
}

/// A complete unmasked (server) frame at the start of `buf`: its opcode,
/// where its payload is, and how many bytes it takes.
fn unmasked_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, head) = match b1 & 0x7F {
        126 => (
            usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let end = head + len;
    (buf.len() >= end).then_some((b0 & 0x0F, head..end, end))
}

/// The send time carried by a broadcast event. `None` for any other frame.
fn sent_ms(frame: &str) -> Option<f64> {
    encoded_number(frame, r#"\"t\":"#)
}

/// The number of a broadcast event. `None` for any other frame.
fn event_number(frame: &str) -> Option<u32> {
    encoded_number(frame, r#"\"n\":"#).map(|n| n as u32)
}

/// A number in a broadcast event, found without parsing the frame: the
/// event data is a JSON string, so in the frame a field reads `\"t\":1234.5`
/// (`key` is that `\"t\":`).
fn encoded_number(frame: &str, key: &str) -> Option<f64> {
    let at = frame.find(key)? + key.len();
    let rest = &frame[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A client WebSocket as the bench opens it.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long opening one WebSocket (TCP, handshake, first frame) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a WebSocket, bounded by [`CONNECT_TIMEOUT`].
async fn open(url: &str) -> Result<Ws> {
    let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .context("timed out")??;
    Ok(ws)
}

fn subscribe_frame(key: &str, secret: &str, socket_id: &str, channel: &str, user: &str) -> String {
    let data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
    let auth = sign::channel_auth(key, secret, socket_id, channel, Some(&data));
    json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":data}})
        .to_string()
}

fn progress(quiet: bool, what: &str, done: usize, total: usize) {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return;
    }
    let width = 30;
    let filled = (done * width)
        .checked_div(total)
        .unwrap_or(width)
        .min(width);
    eprint!(
        "\r{what:<8} [{}{}] {done}/{total}",
        "#".repeat(filled),
        " ".repeat(width - filled)
    );
    let _ = std::io::stderr().flush();
    if done == total {
        eprintln!();
    }
}

/// What one presence channel's run measured.
struct RoomResult {
    added_lat: Vec<f64>,
    removed_lat: Vec<f64>,
    lost_added: usize,
    lost_removed: usize,
    dup_added: usize,
    dup_removed: usize,
    join_secs: f64,
    leave_secs: f64,
}

/// Joins `members` into `channel` in batches while an observer measures,
/// then closes them; members go round-robin over `urls`.
#[allow(clippy::too_many_arguments)]
async fn room(
    urls: &[String],
    key: &str,
    secret: &str,
    channel: &str,
    members: usize,
    batch: usize,
    deadline: Instant,
    frames: &Arc<AtomicU64>,
    quiet: bool,
) -> Result<RoomResult> {
    let url = urls[0].clone();
    let frames = frames.clone();

    // The observer: records when each member_added / member_removed arrives.
    let obs_ws = open(url.as_str()).await.context("observer connecting")?;
    let (mut obs_sink, mut obs_stream) = obs_ws.split();
    let obs_socket = loop {
        match tokio::time::timeout(Duration::from_secs(10), obs_stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                if let Ok(ServerFrame::ConnectionEstablished { socket_id, .. }) =
                    ServerFrame::parse(t.as_str())
                {
                    break socket_id;
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => bail!("observer: no connection_established"),
        }
    };
    obs_sink
        .send(Message::Text(
            subscribe_frame(key, secret, &obs_socket, channel, "observer").into(),
        ))
        .await?;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(bool, String, Instant)>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = obs_stream.next().await {
            let Message::Text(t) = msg else { continue };
            match ServerFrame::parse(t.as_str()) {
                Ok(ServerFrame::MemberAdded { user_id, .. }) => {
                    let _ = seen_tx.send((true, user_id, Instant::now()));
                }
                Ok(ServerFrame::MemberRemoved { user_id, .. }) => {
                    let _ = seen_tx.send((false, user_id, Instant::now()));
                }
                Ok(ServerFrame::SubscriptionSucceeded { .. }) => {
                    let _ = ready_tx.send(());
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx.recv())
        .await
        .context("observer: subscription not confirmed")?;

    let mut sent_join: HashMap<String, Instant> = HashMap::new();
    let mut seen = Seen::default();

    // Join in batches; each batch waits for its member_added (or the deadline).
    let join_started = Instant::now();
    let mut joined: Vec<(String, Member)> = Vec::with_capacity(members);
    for start in (0..members).step_by(batch) {
        let end = (start + batch).min(members);
        let batch = (start..end).map(|i| connect(&urls[i % urls.len()], frames.clone()));
        let conns = futures_util::future::join_all(batch).await;
        for (i, c) in (start..end).zip(conns) {
            let mut m = c?;
            let user = format!("m{i}");
            let frame = subscribe_frame(key, secret, &m.socket_id, channel, &user);
            sent_join.insert(user.clone(), Instant::now());
            m.sink.send(Message::Text(frame.into())).await?;
            joined.push((user, m));
        }
        seen.collect(&mut seen_rx, deadline, |s| s.added.len() >= end)
            .await;
        progress(quiet, "joining", end, members);
    }
    let join_secs = join_started.elapsed().as_secs_f64();

    // Leave in batches, closing each connection.
    let leave_started = Instant::now();
    let mut sent_leave: HashMap<String, Instant> = HashMap::new();
    let total = joined.len();
    let mut done = 0;
    while !joined.is_empty() {
        let take = batch.min(joined.len());
        for (user, mut m) in joined.drain(..take) {
            sent_leave.insert(user, Instant::now());
            let _ = m.sink.close().await;
        }
        done += take;
        seen.collect(&mut seen_rx, deadline, |s| s.removed.len() >= done)
            .await;
        progress(quiet, "leaving", done, total);
    }
    let leave_secs = leave_started.elapsed().as_secs_f64();
    // A short quiet period catches late duplicates, bounded.
    seen.collect(
        &mut seen_rx,
        Instant::now() + Duration::from_millis(500),
        |_| false,
    )
    .await;
    let Seen { added, removed } = seen;
    let _ = obs_sink.close().await;

    let lat = |sent: &HashMap<String, Instant>, seen: &HashMap<String, Vec<Instant>>| -> Vec<f64> {
        sent.iter()
            .filter_map(|(u, t)| {
                seen.get(u)
                    .and_then(|v| v.first())
                    .map(|s| s.duration_since(*t).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    let added_lat = lat(&sent_join, &added);
    let removed_lat = lat(&sent_leave, &removed);
    let lost_added = sent_join.keys().filter(|u| !added.contains_key(*u)).count();
    let lost_removed = sent_leave
        .keys()
        .filter(|u| !removed.contains_key(*u))
        .count();
    let dup_added: usize = added.values().map(|v| v.len() - 1).sum();
    let dup_removed: usize = removed.values().map(|v| v.len() - 1).sum();
    Ok(RoomResult {
        added_lat,
        removed_lat,
        lost_added,
        lost_removed,
        dup_added,
        dup_removed,
        join_secs,
        leave_secs,
    })
}

async fn presence(a: PresenceArgs) -> Result<()> {
    let urls = a
        .urls
        .iter()
        .map(|u| loopback_url(u, &a.key, a.allow_remote))
        .collect::<Result<Vec<_>>>()?;
    if !a.channel.starts_with("presence-") || a.members == 0 || a.batch == 0 {
        bail!("give a presence- channel, --members ≥ 1 and --batch ≥ 1");
    }
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let before = a.server_pid.and_then(proc_usage);
    let frames = Arc::new(AtomicU64::new(0));
    let r = room(
        &urls, &a.key, &a.secret, &a.channel, a.members, a.batch, deadline, &frames, a.json,
    )
    .await?;
    let RoomResult {
        added_lat,
        removed_lat,
        lost_added,
        lost_removed,
        dup_added,
        dup_removed,
        join_secs,
        leave_secs,
    } = r;
    let server = server_usage(before, a.server_pid);
    let report = json!({
        "scenario": "presence",
        "urls": a.urls,
        "members": a.members,
        "batch": a.batch,
        "member_added_ms": summary(added_lat),
        "member_removed_ms": summary(removed_lat),
        "lost_added": lost_added,
        "duplicate_added": dup_added,
        "lost_removed": lost_removed,
        "duplicate_removed": dup_removed,
        "join_per_second": round(a.members as f64 / join_secs),
        "leave_per_second": round(a.members as f64 / leave_secs),
        "frames_received_by_members": frames.load(Ordering::Relaxed),
        "server": server,
    });
    if !a.json {
        let f = |v: &serde_json::Value| {
            format!(
                "p50 {} ms, p99 {} ms, max {} ms",
                v["p50"], v["p99"], v["max"]
            )
        };
        eprintln!(
            "presence: {} members in batches of {} at {}",
            a.members,
            a.batch,
            a.urls.join(", ")
        );
        eprintln!("  member_added   {}", f(&report["member_added_ms"]));
        eprintln!("  member_removed {}", f(&report["member_removed_ms"]));
        eprintln!(
            "  lost/duplicate added {}/{}, removed {}/{}",
            lost_added, dup_added, lost_removed, dup_removed
        );
        eprintln!(
            "  joins {}/s, leaves {}/s, {} frames to members",
            report["join_per_second"],
            report["leave_per_second"],
            report["frames_received_by_members"]
        );
        if !server.is_null() {
            eprintln!(
                "  server: {} s CPU, peak RSS {} kB",
                server["cpu_seconds"], server["peak_rss_kb"]
            );
        }
    }
    println!("{report}");
    if lost_added + lost_removed + dup_added + dup_removed > 0 {
        bail!("events were lost or duplicated (see the JSON line)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmasked_frames_are_cut_from_a_stream() {
        let mut buf = vec![0x81, 2, b'h', b'i', 0x81, 126, 0, 200];
        buf.extend(std::iter::repeat_n(b'x', 200));
        buf.extend([0x81, 5, b'c']);
        assert_eq!(unmasked_frame(&buf), Some((1, 2..4, 4)));
        assert_eq!(unmasked_frame(&buf[4..]), Some((1, 4..204, 204)));
        assert_eq!(unmasked_frame(&buf[208..]), None);
        assert_eq!(unmasked_frame(&buf[..1]), None);
    }

    #[test]
    fn send_time_is_read_from_the_encoded_event() {
        let data = json!({"n": 3, "t": 1764400000123.25, "pad": ""}).to_string();
        let frame = json!({"event": "tick", "channel": "c", "data": data}).to_string();
        assert_eq!(sent_ms(&frame), Some(1764400000123.25));
        assert_eq!(event_number(&frame), Some(3));
        assert_eq!(
            sent_ms(
                r#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}"#
            ),
            None
        );
    }
}
