//! The Redis backplane: several nodes share fan-out and presence.
//!
//! * **Fan-out.** Every event for a channel is published once on the app's
//!   bus (`whosin:{app}:bus`) as its finished frame; every node, this one
//!   included, delivers it to its local subscribers. Events go through a
//!   bounded queue and a writer that sends what is queued in one pipeline;
//!   what a full queue sheds is counted (`whosin_cluster_shed_total`) and
//!   logged.
//! * **Presence.** Each node is the authority on its own connections. It
//!   keeps which users it holds in `whosin:{app}:n:{node}` and announces each
//!   change on the bus, numbered (`inst`, `seq`), in one atomic O(1) script:
//!   state and announcement cannot part. Every node mirrors the others from
//!   the bus into its apps' presence models; a gap in the numbers, a bus
//!   reconnect or a `sync` makes it re-read that node's state (a snapshot)
//!   in order with the bus. A join reads no roster from Redis.
//! * **Unknown outcomes.** A presence write whose reply never came, was
//!   refused (the node's state is gone: swept, or Redis lost its data) or was
//!   shed marks this node dirty; once Redis answers it rewrites all it holds
//!   in one script and publishes `sync`, and the others re-read it. So a
//!   lost reply costs one snapshot, never a ghost or a missed member.
//! * **Liveness.** Nodes heartbeat into `whosin:nodes` (a sorted set scored
//!   by Redis time) from a task of their own, on a connection of its own, so
//!   no other work delays a beat. A node silent for `node_timeout` is
//!   released by every node's mirror, and its keys are swept by a script
//!   that re-checks, atomically, that it is still silent. A node is only
//!   judged by one that has itself been in touch with Redis for a whole
//!   `node_timeout`, so after a Redis restart nobody is declared dead before
//!   it had the chance to beat again. A node that finds itself swept (its
//!   heartbeat entry was new) rewrites its state and publishes `sync` once.

use super::{Backplane, Hold, Inbound, Published, Query};
use crate::app::history::{Point, MINUTES as HISTORY_MINUTES};
use crate::metrics::Metrics;
use crate::outbox::Frame;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::Script;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Cluster settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port`.
    pub redis_url: String,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Silence after which a node counts as dead.
    pub node_timeout: Duration,
}

impl ClusterConfig {
    /// Defaults: heartbeat every second, dead after 5 s (departures are
    /// announced within about 6 s).
    pub fn new(redis_url: impl Into<String>, node_id: impl Into<String>) -> Self {
        ClusterConfig {
            redis_url: redis_url.into(),
            node_id: node_id.into(),
            heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
        }
    }
}

/// Event operations queued at most; more are shed (counted and logged).
const EVENT_QUEUE: usize = 65_536;
/// Presence changes queued at most; more mark the node dirty (it rewrites
/// its whole state once Redis keeps up again).
const PRESENCE_QUEUE: usize = 65_536;
/// Operations sent in one pipeline or one script call.
const BATCH: usize = 256;

/// Applies a batch of this node's presence changes, each once and in
/// order: skips what an earlier rewrite already covers (seq not newer), and
/// refuses the whole batch (-1) when the node's state is not its own any
/// more (swept, Redis lost its data, or another process took the node id),
/// so that a partial state is never published.
const PRESENCE_LUA: &str = r#"
local prefix, node, inst = ARGV[1], ARGV[2], ARGV[3]
local meta, holds, bus = prefix .. 'm:' .. node, prefix .. 'n:' .. node, prefix .. 'bus'
if redis.call('HGET', meta, 'inst') ~= inst then return -1 end
local cur = tonumber(redis.call('HGET', meta, 'seq')) or 0
for i = 4, #ARGV, 4 do
  local seq = tonumber(ARGV[i])
  if seq > cur then
    if ARGV[i + 2] == '' then
      redis.call('HDEL', holds, ARGV[i + 1])
    else
      redis.call('HSET', holds, ARGV[i + 1], ARGV[i + 2])
    end
    redis.call('PUBLISH', bus, ARGV[i + 3])
    cur = seq
  end
end
redis.call('HSET', meta, 'seq', cur)
return 1
"#;

/// Rewrites everything this node holds (and its subscription counts) and
/// publishes `sync`: ARGV prefix, node, inst, seq, message, n, then n
/// (field, info) pairs, then (channel, count) pairs.
const REPUBLISH_LUA: &str = r#"
local prefix, node, inst, seq, msg, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local meta, holds, occ = prefix .. 'm:' .. node, prefix .. 'n:' .. node, prefix .. 'occ:' .. node
redis.call('DEL', holds, occ)
local i = 7
for _ = 1, n do
  redis.call('HSET', holds, ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  redis.call('HSET', occ, ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', meta, 'inst', inst, 'seq', seq)
redis.call('PUBLISH', prefix .. 'bus', msg)
return 1
"#;

/// A node's state as one consistent read: {inst, seq, field, info, ...},
/// or {} when it is unknown (swept, or lost with Redis's data).
const SNAPSHOT_LUA: &str = r#"
local prefix, node = ARGV[1], ARGV[2]
local meta = redis.call('HMGET', prefix .. 'm:' .. node, 'inst', 'seq')
if not meta[1] then return {} end
local out = {meta[1], meta[2] or '0'}
local kv = redis.call('HGETALL', prefix .. 'n:' .. node)
for i = 1, #kv do out[#out + 1] = kv[i] end
return out
"#;

/// One heartbeat: this node's score set to Redis's time, and a `beat` on
/// every app's bus (ARGV 2: the message, 3..: the bus channels) so that
/// every node's bus reader hears something at least once a beat; returns
/// {1 if the entry is new else 0, now_ms, node, score, node, score, ...}.
const HEARTBEAT_LUA: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local added = redis.call('ZADD', 'whosin:nodes', now, ARGV[1])
for i = 3, #ARGV do
  redis.call('PUBLISH', ARGV[i], ARGV[2])
end
local out = {added, now}
local all = redis.call('ZRANGE', 'whosin:nodes', 0, -1, 'WITHSCORES')
for i = 1, #all do out[#out + 1] = all[i] end
return out
"#;

/// Removes a dead node's keys in every app (ARGV: node, cutoff_ms, app
/// prefixes...) after re-checking, atomically, that it is still silent.
const SWEEP_LUA: &str = r#"
local node, cutoff = ARGV[1], tonumber(ARGV[2])
local score = redis.call('ZSCORE', 'whosin:nodes', node)
if score and tonumber(score) >= cutoff then return 0 end
for i = 3, #ARGV do
  local p = ARGV[i]
  redis.call('DEL', p .. 'n:' .. node, p .. 'm:' .. node, p .. 'occ:' .. node)
end
redis.call('ZREM', 'whosin:nodes', node)
return 1
"#;

/// Leaves the cluster, but only if this process still owns the node id
/// (ARGV: node, process, `gone` message, app prefixes...): a late old
/// process never removes a newer one's members.
const DEPART_LUA: &str = r#"
local node, inst, gone = ARGV[1], ARGV[2], ARGV[3]
local mine = false
for i = 4, #ARGV do
  local p = ARGV[i]
  if redis.call('HGET', p .. 'm:' .. node, 'inst') == inst then
    mine = true
    redis.call('DEL', p .. 'n:' .. node, p .. 'm:' .. node, p .. 'occ:' .. node)
    redis.call('PUBLISH', p .. 'bus', gone)
  end
end
if mine then redis.call('ZREM', 'whosin:nodes', node) end
return mine and 1 or 0
"#;

/// Subscriptions summed over live nodes: {channel, count, ...}.
const OCC_LUA: &str = r#"
local prefix, node, expiry = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local nodes = redis.call('ZRANGEBYSCORE', 'whosin:nodes', now - expiry, '+inf')
local sums, order = {}, {}
local function add(n)
  local kv = redis.call('HGETALL', prefix .. 'occ:' .. n)
  for i = 1, #kv, 2 do
    local c, v = kv[i], tonumber(kv[i + 1])
    if not sums[c] then sums[c] = 0; order[#order + 1] = c end
    sums[c] = sums[c] + v
  end
end
add(node)
for _, n in ipairs(nodes) do
  if n ~= node then add(n) end
end
local out = {}
for _, c in ipairs(order) do if sums[c] > 0 then out[#out + 1] = c; out[#out + 1] = sums[c] end end
return out
"#;

/// Subscriptions to each of the channels ARGV[4..] summed over the live
/// nodes other than this one (ARGV[2]).
const OCC_OTHERS_LUA: &str = r#"
local prefix, node, expiry = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local nodes = redis.call('ZRANGEBYSCORE', 'whosin:nodes', now - expiry, '+inf')
local out = {}
for i = 4, #ARGV do out[i - 3] = 0 end
for _, n in ipairs(nodes) do
  if n ~= node then
    local key = prefix .. 'occ:' .. n
    for i = 4, #ARGV do
      local v = redis.call('HGET', key, ARGV[i])
      if v then out[i - 3] = out[i - 3] + tonumber(v) end
    end
  end
end
return out
"#;

/// The scripts, hashed once.
struct Scripts {
    presence: Script,
    republish: Script,
    snapshot: Script,
    heartbeat: Script,
    sweep: Script,
    depart: Script,
    occupancy: Script,
    occupancy_others: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            presence: Script::new(PRESENCE_LUA),
            republish: Script::new(REPUBLISH_LUA),
            snapshot: Script::new(SNAPSHOT_LUA),
            heartbeat: Script::new(HEARTBEAT_LUA),
            sweep: Script::new(SWEEP_LUA),
            depart: Script::new(DEPART_LUA),
            occupancy: Script::new(OCC_LUA),
            occupancy_others: Script::new(OCC_OTHERS_LUA),
        }
    }
}

/// A message on an app's bus.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k")]
enum BusMessage {
    /// Deliver a finished frame on a channel, except to one socket.
    #[serde(rename = "ev")]
    Event {
        c: String,
        f: String,
        #[serde(default)]
        x: Option<String>,
    },
    /// Close every local connection of a user (REST terminate_connections).
    #[serde(rename = "term")]
    Terminate { u: String },
    /// Node `n` (process `i`) holds user `u` in channel `c` with info `v`,
    /// or no longer does (`v` null); its change number `s`.
    #[serde(rename = "p")]
    Presence {
        n: String,
        i: String,
        s: u64,
        c: String,
        u: String,
        v: Option<String>,
    },
    /// Node `n` rewrote its whole state at change number `s`: re-read it.
    #[serde(rename = "sync")]
    Sync { n: String, i: String, s: u64 },
    /// Node `n` left the cluster.
    #[serde(rename = "gone")]
    Gone { n: String },
    /// Node `n` is shutting down: the departures it announces next are
    /// the cluster's news (it says nothing of them itself).
    #[serde(rename = "leaving")]
    Leaving { n: String },
    /// Node `n` is alive (sent with every heartbeat): a bus that hears
    /// nothing, not even these, is dead and is opened again.
    #[serde(rename = "beat")]
    Beat {
        #[allow(dead_code)]
        n: String,
    },
}

impl BusMessage {
    fn encode(&self) -> String {
        serde_json::to_string(self).expect("bus messages serialize")
    }
}

/// One of this node's presence changes, numbered.
#[derive(Debug)]
struct Change {
    seq: u64,
    field: String,
    info: Option<String>,
    message: String,
}

/// What the presence writer does, in order.
#[derive(Debug)]
enum PresenceOp {
    Change { app: usize, change: Change },
    Republish { args: Vec<String> },
}

/// An event-writer operation.
#[derive(Debug)]
enum EventOp {
    Publish {
        app: usize,
        message: String,
    },
    Occupancy {
        app: usize,
        channel: String,
        delta: i64,
    },
}

/// Per app: its key prefix and its change counter.
#[derive(Debug)]
struct AppKeys {
    id: String,
    prefix: String,
    /// Numbers this node's presence changes; taken under the app's lock, so
    /// the numbers follow the order of the changes.
    seq: AtomicU64,
}

/// Messages from the heartbeat to the bus task (which owns the mirror's
/// bookkeeping, so that everything about a remote node happens in one
/// order).
#[derive(Debug)]
enum Control {
    /// The nodes alive and the nodes judged dead, as of this beat.
    Liveness {
        live: Vec<String>,
        dead: Vec<String>,
    },
}

/// The Redis backplane of one node.
pub struct RedisBackplane {
    config: ClusterConfig,
    inst: String,
    apps: Vec<AppKeys>,
    events: mpsc::Sender<EventOp>,
    presence: mpsc::Sender<PresenceOp>,
    /// A presence change was shed or failed: rewrite everything.
    dirty: Arc<AtomicBool>,
    reader: ConnectionManager,
    healthy: AtomicBool,
    /// Whether this node had the smallest id among the live nodes at the
    /// last heartbeat (see [`Backplane::is_leader`]).
    leader: AtomicBool,
    /// The live nodes of the last heartbeat, so that a node that leaves or
    /// dies is taken out at once (the leader may be the one that went).
    live: std::sync::Mutex<Vec<String>>,
    metrics: Arc<Metrics>,
    scripts: Scripts,
    inbound: mpsc::Sender<Inbound>,
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("node", &self.config.node_id)
            .finish_non_exhaustive()
    }
}

/// A Redis URL as it may be shown: any password replaced by `***`, so it
/// never reaches a log line or an error message.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth_host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match auth_host.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

fn prefix(app: &str) -> String {
    format!("whosin:{app}:")
}

/// A holding's field in a node's hash: channel names have no newline.
fn field(channel: &str, user: &str) -> String {
    format!("{channel}\n{user}")
}

fn pairs(v: Vec<String>) -> Vec<(String, String)> {
    v.chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

impl RedisBackplane {
    /// Connects to Redis (failing fast with a clear message when it is not
    /// there at start), resets this node's state, and starts the writers,
    /// the bus reader and the heartbeat. What other nodes do arrives on
    /// `inbound`.
    pub async fn connect(
        config: ClusterConfig,
        app_ids: Vec<String>,
        metrics: Arc<Metrics>,
        inbound: mpsc::Sender<Inbound>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<RedisBackplane>, String> {
        let shown = redacted(&config.redis_url);
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| format!("--redis-url {shown}: {e}"))?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        // rediss:// trusts the system's roots; a private CA is added with
        // SSL_CERT_FILE, which the hint says since that is the usual miss.
        let hint = if config.redis_url.starts_with("rediss://") {
            "is redis-server running with TLS on that port? its certificate must chain to a CA the system trusts, or to the one in SSL_CERT_FILE"
        } else {
            "is redis-server running?"
        };
        let connect = || async {
            client
                .get_connection_manager_with_config(manager_config.clone())
                .await
                .map_err(|e| format!("cannot reach Redis at {shown}: {e} ({hint})"))
        };
        let events_con = connect().await?;
        let presence_con = connect().await?;
        let beat_con = connect().await?;
        let reader = connect().await?;
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (presence_tx, presence_rx) = mpsc::channel(PRESENCE_QUEUE);
        let backplane = Arc::new(RedisBackplane {
            inst: format!("{:016x}", rand::random::<u64>()),
            apps: app_ids
                .iter()
                .map(|id| AppKeys {
                    id: id.clone(),
                    prefix: prefix(id),
                    seq: AtomicU64::new(0),
                })
                .collect(),
            config,
            events: events_tx,
            presence: presence_tx,
            dirty: Arc::new(AtomicBool::new(false)),
            reader,
            healthy: AtomicBool::new(true),
            leader: AtomicBool::new(false),
            live: std::sync::Mutex::new(Vec::new()),
            metrics,
            scripts: Scripts::new(),
            inbound,
        });
        // In the node set first, so that no sweep of an earlier process
        // with this node id can land after the state below is written.
        let mut con = backplane.reader.clone();
        let first: Vec<String> = backplane
            .beat()
            .invoke_async(&mut con)
            .await
            .map_err(|e| format!("Redis: {e}"))?;
        let nodes: Vec<String> = pairs(first.into_iter().skip(2).collect())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        // A fresh, empty state under this process's number: whatever an
        // earlier process with this node id left is replaced, and the
        // others re-read it.
        for app in 0..backplane.apps.len() {
            let args = backplane.republish_args(app, Vec::new(), Vec::new());
            backplane
                .scripts
                .republish
                .prepare_invoke()
                .arg(args)
                .invoke_async::<i64>(&mut con)
                .await
                .map_err(|e| format!("Redis: {e}"))?;
        }
        // Ready only when this node is on the bus, so no change published
        // after "listening on" can miss it; the snapshots of the nodes
        // already there are read right after subscribing.
        let (ready_tx, ready_rx) = oneshot::channel();
        let (control_tx, control_rx) = mpsc::channel(16);
        tokio::spawn(
            backplane
                .clone()
                .bus(client, nodes, ready_tx, control_rx, shutdown.clone()),
        );
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .map_err(|_| "could not subscribe to the Redis bus within 5 s".to_owned())?
            .map_err(|_| "the Redis bus task stopped".to_owned())?;
        tokio::spawn(backplane.clone().event_writer(events_con, events_rx));
        tokio::spawn(backplane.clone().presence_writer(presence_con, presence_rx));
        tokio::spawn(backplane.clone().heartbeat(beat_con, control_tx, shutdown));
        Ok(backplane)
    }

    /// The heartbeat script's invocation: this node, and every app's bus.
    fn beat(&self) -> redis::ScriptInvocation<'_> {
        let mut inv = self.scripts.heartbeat.prepare_invoke();
        let message = BusMessage::Beat {
            n: self.config.node_id.clone(),
        }
        .encode();
        inv.arg(&self.config.node_id).arg(message);
        for app in &self.apps {
            inv.arg(format!("{}bus", app.prefix));
        }
        inv
    }

    fn app_index(&self, id: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.id == id)
    }

    fn expiry_ms(&self) -> u64 {
        self.config.node_timeout.as_millis() as u64
    }

    /// A failed read beside the write path (a snapshot, a sweep, the bus
    /// connecting): counted and logged, but it does not take the node off
    /// Redis; only the writers and the heartbeat decide that.
    fn noted(&self, what: &str, e: &redis::RedisError) {
        Metrics::inc(&self.metrics.cluster_failures);
        tracing::debug!(error = %e, "Redis {what} failed; retried at the next heartbeat");
    }

    fn failed(&self, what: &str, e: &redis::RedisError) {
        Metrics::inc(&self.metrics.cluster_failures);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %e, "Redis unreachable ({what}): serving local clients only until it is back");
        }
    }

    /// The arguments of the republish script for app `app`.
    fn republish_args(
        &self,
        app: usize,
        holds: Vec<(String, String, Arc<str>)>,
        occupancy: Vec<(String, usize)>,
    ) -> Vec<String> {
        let keys = &self.apps[app];
        // A number of its own (taken under the app's lock, like a change's):
        // every other node then sees the rewrite as newer than anything it
        // applied, even when changes before it were lost.
        let seq = keys.seq.fetch_add(1, Ordering::AcqRel) + 1;
        let sync = BusMessage::Sync {
            n: self.config.node_id.clone(),
            i: self.inst.clone(),
            s: seq,
        }
        .encode();
        let mut args = vec![
            keys.prefix.clone(),
            self.config.node_id.clone(),
            self.inst.clone(),
            seq.to_string(),
            sync,
            holds.len().to_string(),
        ];
        for (channel, user, info) in holds {
            args.push(field(&channel, &user));
            args.push(info.to_string());
        }
        for (channel, n) in occupancy {
            args.push(channel);
            args.push(n.to_string());
        }
        args
    }

    /// Runs this node's event operations in order, a pipeline per batch.
    async fn event_writer(
        self: Arc<Self>,
        mut con: ConnectionManager,
        mut rx: mpsc::Receiver<EventOp>,
    ) {
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            // While Redis is known to be away, do not wait on it for every
            // batch: serve locally at once. The heartbeat keeps probing.
            if self.healthy.load(Ordering::Acquire) {
                let mut pipe = redis::pipe();
                for op in &batch {
                    match op {
                        EventOp::Publish { app, message } => {
                            pipe.publish(format!("{}bus", self.apps[*app].prefix), message)
                                .ignore();
                        }
                        EventOp::Occupancy {
                            app,
                            channel,
                            delta,
                        } => {
                            let key =
                                format!("{}occ:{}", self.apps[*app].prefix, self.config.node_id);
                            pipe.hincr(&key, channel, *delta).ignore();
                        }
                    }
                }
                let r: redis::RedisResult<()> = pipe.query_async(&mut con).await;
                match r {
                    Ok(()) => {
                        batch.clear();
                        continue;
                    }
                    Err(e) => {
                        self.failed("publish", &e);
                        // Occupancy is rewritten with the state.
                        self.dirty.store(true, Ordering::Release);
                    }
                }
            } else {
                self.dirty.store(true, Ordering::Release);
            }
            // Not shared: this node's subscribers still get the events.
            for op in batch.drain(..) {
                if let EventOp::Publish { app, message } = op {
                    self.deliver_locally(app, &message).await;
                }
            }
        }
    }

    /// Delivers an event message to this node's subscribers without Redis.
    async fn deliver_locally(&self, app: usize, message: &str) {
        if let Ok(BusMessage::Event { c, f, x }) = serde_json::from_str(message) {
            let _ = self
                .inbound
                .send(Inbound::Deliver {
                    app: self.apps[app].id.clone(),
                    channel: c,
                    frame: Frame::from(f),
                    except: x,
                })
                .await;
        } else if let Ok(BusMessage::Terminate { u }) = serde_json::from_str(message) {
            let _ = self
                .inbound
                .send(Inbound::Terminate {
                    app: self.apps[app].id.clone(),
                    user: u,
                })
                .await;
        }
    }

    /// Writes this node's presence changes in order, one script call per
    /// batch (per app). A failure, an unknown outcome or a refusal marks the
    /// node dirty; the heartbeat has it rewritten once Redis answers.
    async fn presence_writer(
        self: Arc<Self>,
        mut con: ConnectionManager,
        mut rx: mpsc::Receiver<PresenceOp>,
    ) {
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let mut ops = batch.drain(..).peekable();
            while let Some(op) = ops.next() {
                match op {
                    PresenceOp::Republish { args, .. } => {
                        if !self.healthy.load(Ordering::Acquire) {
                            self.dirty.store(true, Ordering::Release);
                            continue;
                        }
                        let r: redis::RedisResult<i64> = self
                            .scripts
                            .republish
                            .prepare_invoke()
                            .arg(args)
                            .invoke_async(&mut con)
                            .await;
                        if let Err(e) = r {
                            self.failed("republish", &e);
                            self.dirty.store(true, Ordering::Release);
                        }
                    }
                    PresenceOp::Change { app, change } => {
                        // This change and the ones after it for the same app.
                        let keys = &self.apps[app];
                        let mut args = vec![
                            keys.prefix.clone(),
                            self.config.node_id.clone(),
                            self.inst.clone(),
                        ];
                        let mut push = |c: Change| {
                            args.push(c.seq.to_string());
                            args.push(c.field);
                            args.push(c.info.unwrap_or_default());
                            args.push(c.message);
                        };
                        push(change);
                        while let Some(PresenceOp::Change { app: a, .. }) = ops.peek() {
                            if *a != app {
                                break;
                            }
                            if let Some(PresenceOp::Change { change, .. }) = ops.next() {
                                push(change);
                            }
                        }
                        if !self.healthy.load(Ordering::Acquire) {
                            self.dirty.store(true, Ordering::Release);
                            continue;
                        }
                        let r: redis::RedisResult<i64> = self
                            .scripts
                            .presence
                            .prepare_invoke()
                            .arg(args)
                            .invoke_async(&mut con)
                            .await;
                        match r {
                            Ok(1) => {}
                            Ok(_) => {
                                tracing::info!(
                                    "this node's presence state is gone from Redis: rewriting it"
                                );
                                self.dirty.store(true, Ordering::Release);
                            }
                            Err(e) => {
                                // Ran or not: unknown. The rewrite settles it.
                                self.failed("presence", &e);
                                self.dirty.store(true, Ordering::Release);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Asks every app to rewrite its state (they answer through
    /// `Backplane::republish`). Never waits: when the inbound queue is full
    /// the node stays dirty and the next heartbeat asks again.
    fn request_republish(&self) {
        self.dirty.store(false, Ordering::Release);
        for app in &self.apps {
            let asked = self.inbound.try_send(Inbound::Republish {
                app: app.id.clone(),
            });
            if asked.is_err() {
                self.dirty.store(true, Ordering::Release);
            }
        }
    }

    /// Reads one node's state of one app; `None` when it is unknown or
    /// Redis does not answer.
    async fn snapshot(
        &self,
        con: &mut ConnectionManager,
        app: usize,
        node: &str,
    ) -> Result<Option<(String, u64, Vec<Hold>)>, redis::RedisError> {
        let v: Vec<String> = self
            .scripts
            .snapshot
            .arg(&self.apps[app].prefix)
            .arg(node)
            .invoke_async(con)
            .await?;
        let mut it = v.into_iter();
        let (Some(inst), Some(seq)) = (it.next(), it.next()) else {
            return Ok(None);
        };
        let holds = pairs(it.collect())
            .into_iter()
            .filter_map(|(f, info)| {
                let (c, u) = f.split_once('\n')?;
                Some((c.to_owned(), u.to_owned(), Arc::from(info)))
            })
            .collect();
        Ok(Some((inst, seq.parse().unwrap_or(0), holds)))
    }

    /// Subscribes to every app's bus and turns what arrives into
    /// [`Inbound`] messages, in order. Keeps, per app and remote node, the
    /// last change number applied; a gap, a new process or a `sync` makes it
    /// read that node's snapshot before going on.
    async fn bus(
        self: Arc<Self>,
        client: redis::Client,
        initial_nodes: Vec<String>,
        ready: oneshot::Sender<()>,
        mut control: mpsc::Receiver<Control>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut mirror = Mirror {
            known: HashMap::new(),
            dead: HashSet::new(),
            stale: HashSet::new(),
        };
        let mut ready = Some(ready);
        let mut con = self.reader.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    let mut ok = true;
                    for app in &self.apps {
                        if pubsub
                            .subscribe(format!("{}bus", app.prefix))
                            .await
                            .is_err()
                        {
                            ok = false;
                        }
                    }
                    if ok {
                        // Anything may have been missed while off the bus:
                        // every node's state is read again (at start: the
                        // nodes already there).
                        let starting = ready.take();
                        let nodes = match &starting {
                            Some(_) => initial_nodes.clone(),
                            None => {
                                tracing::info!("back on the Redis bus");
                                let mut all: Vec<String> =
                                    mirror.known.keys().map(|(_, n)| n.to_string()).collect();
                                all.sort();
                                all.dedup();
                                all
                            }
                        };
                        for node in nodes.iter().filter(|n| **n != self.config.node_id) {
                            for app in 0..self.apps.len() {
                                mirror.stale.insert((app, Arc::from(node.as_str())));
                            }
                        }
                        // Ready as soon as this node is on the bus: the
                        // others' states follow as snapshots (announced
                        // as arrivals to anyone already connected), and
                        // the start never waits on the apps' queue.
                        if let Some(r) = starting {
                            let _ = r.send(());
                        }
                        self.refresh_stale(&mut con, &mut mirror).await;
                        let mut stream = pubsub.on_message();
                        // Every node's heartbeat is heard here each beat:
                        // silence this long means the connection is dead
                        // (no reset came, e.g. a dropped NAT entry).
                        let silence = self.config.node_timeout.max(self.config.heartbeat * 3);
                        let mut last_heard = Instant::now();
                        loop {
                            tokio::select! {
                                _ = tokio::time::sleep_until(last_heard + silence) => {
                                    tracing::warn!(?silence, "nothing heard on the Redis bus: reconnecting");
                                    break;
                                }
                                msg = stream.next() => match msg {
                                    Some(m) => {
                                        last_heard = Instant::now();
                                        let chan = m.get_channel_name().to_owned();
                                        let Some(app) = self.apps.iter().position(|a| chan.strip_prefix(&a.prefix) == Some("bus")) else { continue };
                                        if let Ok(payload) = m.get_payload::<String>() {
                                            self.on_bus(&mut con, &mut mirror, app, &payload).await;
                                        }
                                    }
                                    None => break,
                                },
                                c = control.recv() => match c {
                                    Some(c) => self.on_control(&mut con, &mut mirror, c).await,
                                    None => return,
                                },
                                _ = shutdown.changed() => return,
                            }
                        }
                    }
                    tracing::warn!("lost the Redis bus; reconnecting");
                }
                Err(e) => self.failed("bus", &e),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One bus message.
    async fn on_bus(
        &self,
        con: &mut ConnectionManager,
        mirror: &mut Mirror,
        app: usize,
        payload: &str,
    ) {
        let app_id = self.apps[app].id.clone();
        let msg = match serde_json::from_str::<BusMessage>(payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a bus message we do not understand");
                return;
            }
        };
        let inbound = match msg {
            BusMessage::Event { c, f, x } => Inbound::Deliver {
                app: app_id,
                channel: c,
                frame: Frame::from(f),
                except: x,
            },
            BusMessage::Terminate { u } => Inbound::Terminate {
                app: app_id,
                user: u,
            },
            BusMessage::Beat { .. } => return,
            BusMessage::Gone { n } => {
                if n == self.config.node_id {
                    return;
                }
                self.node_gone(mirror, Arc::from(n)).await;
                return;
            }
            BusMessage::Leaving { n } => {
                if n == self.config.node_id {
                    return;
                }
                let rest: Vec<String> = self
                    .live
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .filter(|l| **l != n)
                    .cloned()
                    .collect();
                self.set_live(rest);
                let _ = self
                    .inbound
                    .send(Inbound::Leaving { node: Arc::from(n) })
                    .await;
                return;
            }
            BusMessage::Sync { n, i, s } => {
                if n == self.config.node_id || mirror.dead.contains(n.as_str()) {
                    return;
                }
                let node: Arc<str> = Arc::from(n);
                let newer = match mirror.known.get(&(app, node.clone())) {
                    Some((inst, seq)) => *inst != i || s > *seq,
                    None => true,
                };
                if newer {
                    mirror.stale.insert((app, node));
                    self.refresh_stale(con, mirror).await;
                }
                return;
            }
            BusMessage::Presence { n, i, s, c, u, v } => {
                if n == self.config.node_id || mirror.dead.contains(n.as_str()) {
                    return;
                }
                let node: Arc<str> = Arc::from(n);
                match mirror.known.get_mut(&(app, node.clone())) {
                    Some((inst, seq)) if *inst == i && s <= *seq => return,
                    Some((inst, seq)) if *inst == i && s == *seq + 1 => *seq = s,
                    _ => {
                        // A gap, or a process we have not read yet.
                        mirror.stale.insert((app, node));
                        self.refresh_stale(con, mirror).await;
                        return;
                    }
                }
                Inbound::Presence {
                    app: app_id,
                    node,
                    channel: c,
                    user: u,
                    info: v.map(Arc::from),
                }
            }
        };
        let _ = self.inbound.send(inbound).await;
    }

    /// Liveness from the heartbeat: the dead are released, the living that
    /// were thought dead are read again.
    async fn on_control(&self, con: &mut ConnectionManager, mirror: &mut Mirror, c: Control) {
        let Control::Liveness { live, dead } = c;
        for n in dead {
            if n != self.config.node_id && !mirror.dead.contains(n.as_str()) {
                tracing::info!(node = %n, "node stopped heartbeating: releasing its members");
                self.node_gone(mirror, Arc::from(n)).await;
            }
        }
        for n in live {
            if n == self.config.node_id {
                continue;
            }
            let back = mirror.dead.remove(n.as_str());
            if back {
                tracing::info!(node = %n, "node is back: reading its state");
            }
            // Back from the dead, or alive and never read (its announcements
            // went by while this node was off the bus): read it.
            let node: Arc<str> = Arc::from(n.as_str());
            for app in 0..self.apps.len() {
                if back || !mirror.known.contains_key(&(app, node.clone())) {
                    mirror.stale.insert((app, node.clone()));
                }
            }
        }
        self.refresh_stale(con, mirror).await;
    }

    /// The live nodes now; this node leads when its id is the smallest.
    fn set_live(&self, live: Vec<String>) {
        let mut l = self.live.lock().unwrap_or_else(|e| e.into_inner());
        *l = live;
        let first = l.iter().all(|n| n.as_str() >= self.config.node_id.as_str());
        self.leader.store(first, Ordering::Release);
    }

    /// Forgets a node: every app releases what it held. The leader is
    /// worked out again without it first, so that when the leader itself
    /// left, the next one speaks for its departures.
    async fn node_gone(&self, mirror: &mut Mirror, node: Arc<str>) {
        let rest: Vec<String> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|n| n.as_str() != &*node)
            .cloned()
            .collect();
        self.set_live(rest);
        mirror.known.retain(|(_, n), _| *n != node);
        mirror.stale.retain(|(_, n)| *n != node);
        mirror.dead.insert(node.clone());
        let _ = self.inbound.send(Inbound::Gone { node }).await;
    }

    /// Reads the snapshot of every (app, node) marked stale; what cannot be
    /// read now stays marked for the next try (the next beat).
    async fn refresh_stale(&self, con: &mut ConnectionManager, mirror: &mut Mirror) {
        let stale: Vec<(usize, Arc<str>)> = mirror.stale.iter().cloned().collect();
        for (app, node) in stale {
            if mirror.dead.contains(&node) {
                mirror.stale.remove(&(app, node));
                continue;
            }
            match self.snapshot(con, app, &node).await {
                Ok(Some((inst, seq, holds))) => {
                    mirror.stale.remove(&(app, node.clone()));
                    mirror.known.insert((app, node.clone()), (inst, seq));
                    let _ = self
                        .inbound
                        .send(Inbound::Snapshot {
                            app: self.apps[app].id.clone(),
                            node,
                            holds,
                        })
                        .await;
                }
                // Unknown for now (being rewritten): its `sync` will come.
                Ok(None) => {
                    mirror.stale.remove(&(app, node));
                }
                Err(e) => self.noted("snapshot", &e),
            }
        }
    }

    /// Heartbeats on a connection of its own, judges the other nodes, and
    /// has this node's state rewritten after trouble.
    async fn heartbeat(
        self: Arc<Self>,
        mut con: ConnectionManager,
        control: mpsc::Sender<Control>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // Since when Redis has answered every beat (None: it did not).
        let mut healthy_since = Some(Instant::now());
        // Each node's last heartbeat (Redis time, ms) as last seen.
        let mut last_seen: HashMap<String, u64> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.heartbeat) => {}
                _ = shutdown.changed() => return,
            }
            let r: redis::RedisResult<Vec<String>> = self.beat().invoke_async(&mut con).await;
            let v = match r {
                Ok(v) if v.len() >= 2 => v,
                Ok(_) => continue,
                Err(e) => {
                    self.failed("heartbeat", &e);
                    healthy_since = None;
                    continue;
                }
            };
            let was_down = !self.healthy.swap(true, Ordering::AcqRel);
            if was_down {
                // Redis may have come back from older data, or writes may
                // have been skipped meanwhile: say everything again.
                tracing::info!("Redis reachable again: rewriting this node's state");
                self.dirty.store(true, Ordering::Release);
            }
            let since = *healthy_since.get_or_insert_with(Instant::now);
            // A new entry means this node was swept as dead, or Redis lost
            // its data: the others no longer know what it holds.
            if v[0] == "1" {
                tracing::info!("this node was unknown to Redis (swept, or Redis lost its data): rewriting its state");
                self.dirty.store(true, Ordering::Release);
            }
            if self.dirty.load(Ordering::Acquire) {
                self.request_republish();
            }
            let now: u64 = v[1].parse().unwrap_or(0);
            let mut live = Vec::new();
            for (node, score) in pairs(v[2..].to_vec()) {
                let score: u64 = score.parse::<f64>().map_or(0, |s| s as u64);
                last_seen.insert(node, score);
            }
            let cutoff = now.saturating_sub(self.expiry_ms());
            let mut dead = Vec::new();
            for (node, score) in &last_seen {
                if *score >= cutoff {
                    live.push(node.clone());
                } else {
                    dead.push(node.clone());
                }
            }
            self.set_live(live.clone());
            // Only a node that has been in touch for a whole timeout may
            // judge: the others had the time to beat again.
            if since.elapsed() < self.config.node_timeout {
                dead.clear();
            }
            // Sweeps run beside the heartbeat, never in its way.
            for node in dead.iter().filter(|n| **n != self.config.node_id) {
                let (me, node) = (self.clone(), node.clone());
                tokio::spawn(async move { me.sweep(&node, cutoff).await });
            }
            // Never waits on the bus task either: when it is busy, the dead
            // stay in `last_seen` and are reported again at the next beat.
            let reported = control.try_send(Control::Liveness {
                live,
                dead: dead.clone(),
            });
            if reported.is_ok() {
                last_seen.retain(|n, _| !dead.contains(n));
            }
        }
    }

    /// Removes a dead node's keys if it is still silent.
    async fn sweep(&self, node: &str, cutoff: u64) {
        let mut con = self.reader.clone();
        let con = &mut con;
        let mut inv = self.scripts.sweep.prepare_invoke();
        inv.arg(node).arg(cutoff);
        for app in &self.apps {
            inv.arg(&app.prefix);
        }
        let r: redis::RedisResult<i64> = inv.invoke_async(con).await;
        if let Err(e) = r {
            self.noted("sweep", &e);
        }
    }
}

/// The bus task's bookkeeping about remote nodes.
struct Mirror {
    /// (app, node) → (process, last change number applied).
    known: HashMap<(usize, Arc<str>), (String, u64)>,
    /// Nodes released as dead or gone; their messages are ignored until the
    /// heartbeat sees them alive again.
    dead: HashSet<Arc<str>>,
    /// (app, node) whose snapshot must be read.
    stale: HashSet<(usize, Arc<str>)>,
}

impl Backplane for RedisBackplane {
    fn publish(&self, app: &str, channel: &str, frame: &Frame, except: Option<&str>) -> Published {
        let Some(i) = self.app_index(app) else {
            return Published::NotShared;
        };
        let message = BusMessage::Event {
            c: channel.to_owned(),
            f: frame.to_string(),
            x: except.map(str::to_owned),
        }
        .encode();
        self.queue_event(EventOp::Publish { app: i, message })
    }

    fn presence(&self, app: &str, channel: &str, user: &str, info: Option<&str>) {
        let Some(i) = self.app_index(app) else { return };
        let seq = self.apps[i].seq.fetch_add(1, Ordering::AcqRel) + 1;
        let message = BusMessage::Presence {
            n: self.config.node_id.clone(),
            i: self.inst.clone(),
            s: seq,
            c: channel.to_owned(),
            u: user.to_owned(),
            v: info.map(str::to_owned),
        }
        .encode();
        let change = Change {
            seq,
            field: field(channel, user),
            info: info.map(str::to_owned),
            message,
        };
        if self
            .presence
            .try_send(PresenceOp::Change { app: i, change })
            .is_err()
        {
            Metrics::inc(&self.metrics.cluster_shed);
            if !self.dirty.swap(true, Ordering::AcqRel) {
                tracing::warn!("presence queue to Redis full: this node will rewrite its state");
            }
        }
    }

    fn occupancy(&self, app: &str, channel: &str, delta: i64) {
        if let Some(i) = self.app_index(app) {
            self.queue_event(EventOp::Occupancy {
                app: i,
                channel: channel.to_owned(),
                delta,
            });
        }
    }

    fn terminate(&self, app: &str, user: &str) -> Published {
        let Some(i) = self.app_index(app) else {
            return Published::NotShared;
        };
        let message = BusMessage::Terminate { u: user.to_owned() }.encode();
        self.queue_event(EventOp::Publish { app: i, message })
    }

    fn occupancy_all<'a>(&'a self, app: &'a str) -> Query<'a, Option<BTreeMap<String, usize>>> {
        Box::pin(async move {
            let mut con = self.reader.clone();
            // A connection broken since its last use fails once, then
            // reconnects: one retry, still bounded by the response timeout.
            for _ in 0..2 {
                let r: redis::RedisResult<Vec<String>> = self
                    .scripts
                    .occupancy
                    .arg(prefix(app))
                    .arg(&self.config.node_id)
                    .arg(self.expiry_ms())
                    .invoke_async(&mut con)
                    .await;
                if let Ok(v) = r {
                    return Some(
                        pairs(v)
                            .into_iter()
                            .map(|(c, n)| (c, n.parse().unwrap_or(0)))
                            .collect(),
                    );
                }
            }
            None
        })
    }

    fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    fn shares(&self) -> bool {
        true
    }

    /// Each channel's minutes are a sorted set scored by the minute, its
    /// members `t,peak,last`: a minute saved again replaces itself, and
    /// minutes older than a day are removed on every save, so the key stays
    /// bounded however long the channel lives.
    fn history_save(&self, app: &str, points: Vec<(String, Point)>) -> Query<'_, ()> {
        let p = prefix(app);
        Box::pin(async move {
            let mut con = self.reader.clone();
            let mut pipe = redis::pipe();
            for (channel, point) in &points {
                let key = format!("{p}h:{channel}");
                let oldest = point.t.saturating_sub(HISTORY_MINUTES * 60);
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(format!("({oldest}"))
                    .ignore()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg(point.t)
                    .arg(point.t)
                    .ignore()
                    .zadd(
                        &key,
                        format!("{},{},{}", point.t, point.peak, point.last),
                        point.t,
                    )
                    .ignore()
                    .expire(&key, (HISTORY_MINUTES as i64 + 60) * 60)
                    .ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut con).await {
                self.noted("history save", &e);
            }
        })
    }

    fn history_load<'a>(&'a self, app: &'a str, channel: &'a str) -> Query<'a, Option<Vec<Point>>> {
        Box::pin(async move {
            let mut con = self.reader.clone();
            let key = format!("{}h:{channel}", prefix(app));
            let now = crate::app::history::this_minute();
            let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(format!("({}", now.saturating_sub(HISTORY_MINUTES * 60)))
                .arg("+inf")
                .query_async(&mut con)
                .await
                .ok()?;
            Some(
                members
                    .into_iter()
                    .filter_map(|m| {
                        let mut f = m.split(',');
                        Some(Point {
                            t: f.next()?.parse().ok()?,
                            peak: f.next()?.parse().ok()?,
                            last: f.next()?.parse().ok()?,
                        })
                    })
                    .collect(),
            )
        })
    }

    fn remote_occupancy<'a>(
        &'a self,
        app: &'a str,
        channels: &'a [String],
    ) -> Query<'a, Option<Vec<usize>>> {
        Box::pin(async move {
            let mut con = self.reader.clone();
            for _ in 0..2 {
                let mut inv = self.scripts.occupancy_others.prepare_invoke();
                inv.arg(prefix(app))
                    .arg(&self.config.node_id)
                    .arg(self.expiry_ms());
                for c in channels {
                    inv.arg(c);
                }
                let r: redis::RedisResult<Vec<i64>> = inv.invoke_async(&mut con).await;
                if let Ok(v) = r {
                    return Some(v.into_iter().map(|n| n.max(0) as usize).collect());
                }
            }
            None
        })
    }

    fn leaving(&self) -> Query<'_, ()> {
        Box::pin(async move {
            let mut con = self.reader.clone();
            let message = BusMessage::Leaving {
                n: self.config.node_id.clone(),
            }
            .encode();
            let mut pipe = redis::pipe();
            for app in &self.apps {
                pipe.publish(format!("{}bus", app.prefix), &message)
                    .ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut con).await {
                self.noted("leaving", &e);
            }
        })
    }

    fn depart(&self) -> Query<'_, ()> {
        Box::pin(async move {
            let mut con = self.reader.clone();
            let gone = BusMessage::Gone {
                n: self.config.node_id.clone(),
            }
            .encode();
            let mut inv = self.scripts.depart.prepare_invoke();
            inv.arg(&self.config.node_id).arg(&self.inst).arg(gone);
            for app in &self.apps {
                inv.arg(&app.prefix);
            }
            match inv.invoke_async::<i64>(&mut con).await {
                Ok(1) => tracing::info!(node = %self.config.node_id, "left the cluster"),
                Ok(_) => tracing::info!(
                    node = %self.config.node_id,
                    "left the cluster (another process holds this node id now)"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "could not leave the cluster cleanly; the others will time this node out")
                }
            }
        })
    }

    fn republish(&self, app: &str, holds: Vec<Hold>, occupancy: Vec<(String, usize)>) {
        let Some(i) = self.app_index(app) else { return };
        let args = self.republish_args(i, holds, occupancy);
        if self
            .presence
            .try_send(PresenceOp::Republish { args })
            .is_err()
        {
            self.dirty.store(true, Ordering::Release);
        }
    }
}

impl RedisBackplane {
    /// Queues an event operation without waiting; a full queue sheds it.
    fn queue_event(&self, op: EventOp) -> Published {
        match self.events.try_send(op) {
            Ok(()) => Published::Shared,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let before = self.metrics.cluster_shed.fetch_add(1, Ordering::Relaxed);
                if before.is_power_of_two() || before == 0 {
                    tracing::warn!(
                        shed = before + 1,
                        "event queue to Redis full: events are being shed"
                    );
                }
                Published::Shared
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Published::NotShared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redacted("redis://:hunter2@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            redacted("rediss://app:p@ss:w@rd@host:6380"),
            "rediss://app:***@host:6380"
        );
        assert!(!redacted("redis://u:secret@h").contains("secret"));
    }
}
