//! Scale-out through Redis: several nodes share presence and fan-out.
//!
//! * **Fan-out.** Every event for a channel is published once on the app's
//!   bus (`whosin:{app}:bus`) as its finished frame; every node, this one
//!   included, delivers it to its local subscribers. `socket_id` exclusion
//!   travels with it.
//! * **Presence.** Each node writes which users it holds per channel
//!   (`whosin:{app}:p:{channel}:{node}`); the cluster roster is the union over
//!   *live* nodes, read in one Lua script, so a subscribe never waits for
//!   other nodes to answer. Join and leave scripts are atomic in Redis, which
//!   is what makes `member_added`/`member_removed` exactly-once cluster-wide.
//! * **Liveness.** Nodes heartbeat into `whosin:nodes` (a sorted set scored
//!   by time). A node silent for `node_timeout` is excluded from every read at
//!   once, and one survivor (under a lock) sweeps its entries and announces
//!   the departures.
//! * **Trouble.** Redis operations for one node run in order through one
//!   writer task. When Redis is unreachable the node keeps serving its own
//!   clients (events are delivered locally, failures counted) and, when Redis
//!   is back, rewrites its own entries from its local state (resync).

use crate::app::App;
use crate::metrics::Metrics;
use crate::outbox::Frame;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use whosin_protocol::frame::server;

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

const NODES: &str = "whosin:nodes";

/// Shared by every script: the nodes whose heartbeat is younger than
/// `expiry` ms, by Redis's own clock.
const LIVE_LUA: &str = r#"
local function live_nodes(expiry)
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  return redis.call('ZRANGEBYSCORE', 'whosin:nodes', now - expiry, '+inf')
end
"#;

/// Shared by the roster and join scripts: the union of a channel's users
/// over live nodes and this one, and the `id, info, id, info...` answer.
const UNION_LUA: &str = r#"
local function union(prefix, ch, node, expiry)
  local seen, ids = {}, {}
  local function add(n)
    for _, u in ipairs(redis.call('HKEYS', prefix .. 'p:' .. ch .. ':' .. n)) do
      if not seen[u] then seen[u] = true; ids[#ids + 1] = u end
    end
  end
  add(node)
  for _, n in ipairs(live_nodes(expiry)) do
    if n ~= node then add(n) end
  end
  return seen, ids
end
local function with_info(prefix, ch, ids, out)
  for i = 1, #ids, 1000 do
    local part = {}
    for j = i, math.min(i + 999, #ids) do part[#part + 1] = ids[j] end
    local infos = redis.call('HMGET', prefix .. 'pi:' .. ch, unpack(part))
    for k, u in ipairs(part) do out[#out + 1] = u; out[#out + 1] = infos[k] or 'null' end
  end
  return out
end
"#;

/// The union of users of a channel over live nodes (and this node), with info.
const ROSTER_LUA: &str = r#"
local prefix, ch, node, expiry = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local _, ids = union(prefix, ch, node, expiry)
return with_info(prefix, ch, ids, {})
"#;

/// Adds `user` on this node; returns {added(1/0) or -1 when full, id, info, id, info...}.
const JOIN_LUA: &str = r#"
local prefix, ch, node, user, info, max, expiry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local seen, ids = union(prefix, ch, node, expiry)
local anywhere = seen[user] == true
if not anywhere and #ids >= max then return {-1} end
redis.call('HSET', prefix .. 'p:' .. ch .. ':' .. node, user, 1)
redis.call('SADD', prefix .. 'pc:' .. node, ch)
if not anywhere then
  redis.call('HSET', prefix .. 'pi:' .. ch, user, info)
  ids[#ids + 1] = user
end
return with_info(prefix, ch, ids, {anywhere and 0 or 1})
"#;

/// Removes `user` from this node; 1 when the user is now gone cluster-wide.
const LEAVE_LUA: &str = r#"
local prefix, ch, node, user, expiry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local mine = prefix .. 'p:' .. ch .. ':' .. node
if redis.call('HDEL', mine, user) == 0 then return 0 end
if redis.call('HLEN', mine) == 0 then redis.call('SREM', prefix .. 'pc:' .. node, ch) end
for _, n in ipairs(live_nodes(expiry)) do
  if n ~= node and redis.call('HEXISTS', prefix .. 'p:' .. ch .. ':' .. n, user) == 1 then return 0 end
end
redis.call('HDEL', prefix .. 'pi:' .. ch, user)
return 1
"#;

/// Removes a dead node's entries; returns {channel, user, ...} of users now
/// gone cluster-wide.
const SWEEP_LUA: &str = r#"
local prefix, dead, expiry = ARGV[1], ARGV[2], tonumber(ARGV[3])
local live = live_nodes(expiry)
local out = {}
for _, ch in ipairs(redis.call('SMEMBERS', prefix .. 'pc:' .. dead)) do
  local key = prefix .. 'p:' .. ch .. ':' .. dead
  for _, u in ipairs(redis.call('HKEYS', key)) do
    local elsewhere = false
    for _, n in ipairs(live) do
      if n ~= dead and redis.call('HEXISTS', prefix .. 'p:' .. ch .. ':' .. n, u) == 1 then elsewhere = true; break end
    end
    if not elsewhere then
      redis.call('HDEL', prefix .. 'pi:' .. ch, u)
      out[#out + 1] = ch; out[#out + 1] = u
    end
  end
  redis.call('DEL', key)
end
redis.call('DEL', prefix .. 'pc:' .. dead, prefix .. 'occ:' .. dead)
return out
"#;

/// Occupancy summed over live nodes: {channel, subscriptions, ...}.
const OCC_LUA: &str = r#"
local prefix, node, expiry = ARGV[1], ARGV[2], tonumber(ARGV[3])
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
for _, n in ipairs(live_nodes(expiry)) do
  if n ~= node then add(n) end
end
local out = {}
for _, c in ipairs(order) do if sums[c] > 0 then out[#out + 1] = c; out[#out + 1] = sums[c] end end
return out
"#;

/// The Lua scripts, hashed once.
struct Scripts {
    roster: Script,
    join: Script,
    leave: Script,
    sweep: Script,
    occupancy: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            roster: Script::new(&format!("{LIVE_LUA}{UNION_LUA}{ROSTER_LUA}")),
            join: Script::new(&format!("{LIVE_LUA}{UNION_LUA}{JOIN_LUA}")),
            leave: Script::new(&format!("{LIVE_LUA}{LEAVE_LUA}")),
            sweep: Script::new(&format!("{LIVE_LUA}{SWEEP_LUA}")),
            occupancy: Script::new(&format!("{LIVE_LUA}{OCC_LUA}")),
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
}

/// The result of a cluster join.
#[derive(Debug)]
pub enum JoinResult {
    /// Joined; `members` is the cluster roster, `added` whether the user is new.
    Joined {
        /// Whether this join made the user appear cluster-wide.
        added: bool,
        /// `(user_id, user_info JSON)` of everyone present.
        members: Vec<(String, String)>,
    },
    /// The channel is full cluster-wide.
    Full,
}

enum Op {
    Join {
        app: String,
        channel: String,
        user: String,
        info: String,
        max: usize,
        except: String,
        reply: oneshot::Sender<Option<JoinResult>>,
    },
    Leave {
        app: String,
        channel: String,
        user: String,
    },
    Occupancy {
        app: String,
        channel: String,
        delta: i64,
    },
    Publish {
        app: String,
        message: String,
    },
}

/// The cluster adapter of one node.
pub struct Cluster {
    config: ClusterConfig,
    ops: mpsc::UnboundedSender<Op>,
    reader: ConnectionManager,
    apps: OnceLock<Vec<Arc<App>>>,
    healthy: AtomicBool,
    metrics: Arc<Metrics>,
    scripts: Scripts,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.config.node_id)
            .finish_non_exhaustive()
    }
}

fn prefix(app: &str) -> String {
    format!("whosin:{app}:")
}

fn pairs(v: Vec<String>) -> Vec<(String, String)> {
    v.chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

impl Cluster {
    /// Connects to Redis (failing fast with a clear message when it is not
    /// there at start) and starts the writer, the bus reader and the
    /// heartbeat.
    pub async fn connect(
        config: ClusterConfig,
        app_ids: Vec<String>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Cluster>, String> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| format!("--redis-url {}: {e}", config.redis_url))?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let writer = client
            .get_connection_manager_with_config(manager_config.clone())
            .await
            .map_err(|e| {
                format!(
                    "cannot reach Redis at {}: {e} (is redis-server running?)",
                    config.redis_url
                )
            })?;
        let reader = client
            .get_connection_manager_with_config(manager_config)
            .await
            .map_err(|e| format!("cannot reach Redis at {}: {e}", config.redis_url))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let cluster = Arc::new(Cluster {
            config,
            ops: tx,
            reader,
            apps: OnceLock::new(),
            healthy: AtomicBool::new(true),
            metrics,
            scripts: Scripts::new(),
        });
        // Ready only when this node is on the bus and in the node set, so no
        // event published after "listening on" can miss it.
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(
            cluster
                .clone()
                .bus(client, app_ids, ready_tx, shutdown.clone()),
        );
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .map_err(|_| "could not subscribe to the Redis bus within 5 s".to_owned())?
            .map_err(|_| "the Redis bus task stopped".to_owned())?;
        let mut beat = writer.clone();
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut beat)
            .await
            .map_err(|e| format!("Redis: {e}"))?;
        let _: i64 = beat
            .zadd(NODES, &cluster.config.node_id, secs * 1000 + micros / 1000)
            .await
            .map_err(|e| format!("Redis: {e}"))?;
        tokio::spawn(cluster.clone().writer(writer.clone(), rx));
        tokio::spawn(cluster.clone().heartbeat(writer, shutdown));
        Ok(cluster)
    }

    /// The apps this node serves (set once, after they exist).
    pub fn attach(&self, apps: Vec<Arc<App>>) {
        let _ = self.apps.set(apps);
    }

    fn app(&self, id: &str) -> Option<&Arc<App>> {
        self.apps.get()?.iter().find(|a| a.config.id == id)
    }

    fn expiry_ms(&self) -> u64 {
        self.config.node_timeout.as_millis() as u64
    }

    /// Queues the join of `user` on this node; the answer (the cluster
    /// roster, read in the same atomic step) comes on the receiver, `None`
    /// when Redis is unreachable (the caller serves locally). Queued at once,
    /// so the caller can order it with its other operations.
    pub fn join_start(
        &self,
        app: &str,
        channel: &str,
        user: &str,
        info: &str,
        max: usize,
        except: &str,
    ) -> oneshot::Receiver<Option<JoinResult>> {
        let (reply, rx) = oneshot::channel();
        let op = Op::Join {
            app: app.to_owned(),
            channel: channel.to_owned(),
            user: user.to_owned(),
            info: info.to_owned(),
            max,
            except: except.to_owned(),
            reply,
        };
        let _ = self.ops.send(op);
        rx
    }

    /// Removes `user` from this node; the writer announces the departure
    /// when it is the last anywhere.
    pub fn leave(&self, app: &str, channel: &str, user: &str) {
        let _ = self.ops.send(Op::Leave {
            app: app.to_owned(),
            channel: channel.to_owned(),
            user: user.to_owned(),
        });
    }

    /// Counts a local subscription (+1) or unsubscription (-1).
    pub fn occupancy(&self, app: &str, channel: &str, delta: i64) {
        let _ = self.ops.send(Op::Occupancy {
            app: app.to_owned(),
            channel: channel.to_owned(),
            delta,
        });
    }

    /// Publishes a finished frame to every node (this one included).
    pub fn publish(&self, app: &str, channel: &str, frame: &str, except: Option<&str>) {
        let message = serde_json::to_string(&BusMessage::Event {
            c: channel.to_owned(),
            f: frame.to_owned(),
            x: except.map(str::to_owned),
        })
        .expect("bus messages serialize");
        let _ = self.ops.send(Op::Publish {
            app: app.to_owned(),
            message,
        });
    }

    /// Asks every node to close a user's connections.
    pub fn terminate(&self, app: &str, user: &str) {
        let message = serde_json::to_string(&BusMessage::Terminate { u: user.to_owned() })
            .expect("serializes");
        let _ = self.ops.send(Op::Publish {
            app: app.to_owned(),
            message,
        });
    }

    /// The cluster roster of a presence channel; `None` if Redis is down.
    pub async fn roster(&self, app: &str, channel: &str) -> Option<Vec<(String, String)>> {
        let mut con = self.reader.clone();
        match self.roster_with(&mut con, app, channel).await {
            Some(r) => Some(r),
            // A connection broken since its last use fails once, then
            // reconnects: one retry, still bounded by the response timeout.
            None => self.roster_with(&mut con, app, channel).await,
        }
    }

    async fn roster_with(
        &self,
        con: &mut ConnectionManager,
        app: &str,
        channel: &str,
    ) -> Option<Vec<(String, String)>> {
        let r: redis::RedisResult<Vec<String>> = self
            .scripts
            .roster
            .arg(prefix(app))
            .arg(channel)
            .arg(&self.config.node_id)
            .arg(self.expiry_ms())
            .invoke_async(con)
            .await;
        r.ok().map(pairs)
    }

    /// Subscriptions per occupied channel, summed over live nodes; `None`
    /// if Redis does not answer (one retry, for a connection broken since
    /// its last use).
    pub async fn occupancy_all(&self, app: &str) -> Option<BTreeMap<String, usize>> {
        let mut con = self.reader.clone();
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
    }

    fn failed(&self, what: &str, e: &redis::RedisError) {
        Metrics::inc(&self.metrics.cluster_failures);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %e, "Redis unreachable ({what}): serving local clients only until it is back");
        }
    }

    /// Runs this node's Redis writes in order.
    async fn writer(
        self: Arc<Self>,
        mut con: ConnectionManager,
        mut rx: mpsc::UnboundedReceiver<Op>,
    ) {
        let (join, leave) = (&self.scripts.join, &self.scripts.leave);
        while let Some(op) = rx.recv().await {
            // While Redis is known to be away, do not wait on it for every
            // operation (each would take the connection timeout, one after
            // the other): serve locally at once. The heartbeat keeps
            // probing; when Redis answers, the resync rewrites what was
            // skipped and announces the differences.
            if !self.healthy.load(Ordering::Acquire) {
                self.serve_locally(op);
                continue;
            }
            match op {
                Op::Join {
                    app,
                    channel,
                    user,
                    info,
                    max,
                    except,
                    reply,
                } => {
                    let r: redis::RedisResult<Vec<String>> = join
                        .arg(prefix(&app))
                        .arg(&channel)
                        .arg(&self.config.node_id)
                        .arg(&user)
                        .arg(&info)
                        .arg(max)
                        .arg(self.expiry_ms())
                        .invoke_async(&mut con)
                        .await;
                    let result = match r {
                        Ok(v) if v.first().map(String::as_str) == Some("-1") => {
                            Some(JoinResult::Full)
                        }
                        Ok(v) if !v.is_empty() => {
                            let added = v[0] == "1";
                            if added {
                                let frame = server::member_added(&channel, &user, &info);
                                self.publish_now(&mut con, &app, &channel, &frame, Some(&except))
                                    .await;
                            }
                            Some(JoinResult::Joined {
                                added,
                                members: pairs(v[1..].to_vec()),
                            })
                        }
                        Ok(_) => None,
                        Err(e) => {
                            self.failed("join", &e);
                            None
                        }
                    };
                    let _ = reply.send(result);
                }
                Op::Leave { app, channel, user } => {
                    let r: redis::RedisResult<i64> = leave
                        .arg(prefix(&app))
                        .arg(&channel)
                        .arg(&self.config.node_id)
                        .arg(&user)
                        .arg(self.expiry_ms())
                        .invoke_async(&mut con)
                        .await;
                    match r {
                        Ok(1) => {
                            let frame = server::member_removed(&channel, &user);
                            self.publish_now(&mut con, &app, &channel, &frame, None)
                                .await;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.failed("leave", &e);
                            // Local subscribers still learn of it.
                            let frame = server::member_removed(&channel, &user);
                            if let Some(a) = self.app(&app) {
                                a.deliver(&channel, &Frame::from(frame), None);
                            }
                        }
                    }
                }
                Op::Occupancy {
                    app,
                    channel,
                    delta,
                } => {
                    let key = format!("{}occ:{}", prefix(&app), self.config.node_id);
                    let r: redis::RedisResult<i64> = con.hincr(&key, &channel, delta).await;
                    match r {
                        Ok(n) if n <= 0 => {
                            let _: redis::RedisResult<i64> = con.hdel(&key, &channel).await;
                        }
                        Ok(_) => {}
                        Err(e) => self.failed("occupancy", &e),
                    }
                }
                Op::Publish { app, message } => {
                    let bus = format!("{}bus", prefix(&app));
                    let r: redis::RedisResult<i64> = con.publish(&bus, &message).await;
                    if let Err(e) = r {
                        self.failed("publish", &e);
                        self.on_bus(&app, &message);
                    }
                }
            }
        }
    }

    /// What an operation becomes while Redis is away: joins answer "serve
    /// from the local roster", departures and events reach local
    /// subscribers, occupancy waits for the resync.
    fn serve_locally(&self, op: Op) {
        match op {
            Op::Join { reply, .. } => {
                let _ = reply.send(None);
            }
            Op::Leave { app, channel, user } => {
                if let Some(a) = self.app(&app) {
                    a.deliver(
                        &channel,
                        &Frame::from(server::member_removed(&channel, &user)),
                        None,
                    );
                }
            }
            Op::Publish { app, message } => self.on_bus(&app, &message),
            Op::Occupancy { .. } => {}
        }
    }

    /// Publishes an event frame now (inside the writer, keeping order);
    /// delivers locally when Redis is down.
    async fn publish_now(
        &self,
        con: &mut ConnectionManager,
        app: &str,
        channel: &str,
        frame: &str,
        except: Option<&str>,
    ) {
        let message = serde_json::to_string(&BusMessage::Event {
            c: channel.to_owned(),
            f: frame.to_owned(),
            x: except.map(str::to_owned),
        })
        .expect("serializes");
        let bus = format!("{}bus", prefix(app));
        let r: redis::RedisResult<i64> = con.publish(&bus, &message).await;
        if let Err(e) = r {
            self.failed("publish", &e);
            self.on_bus(app, &message);
        }
    }

    /// Delivers one bus message to this node's subscribers.
    fn on_bus(&self, app: &str, payload: &str) {
        let Some(a) = self.app(app) else { return };
        match serde_json::from_str::<BusMessage>(payload) {
            Ok(BusMessage::Event { c, f, x }) => a.deliver(&c, &Frame::from(f), x.as_deref()),
            Ok(BusMessage::Terminate { u }) => {
                a.terminate_local(&u);
            }
            Err(e) => tracing::warn!(error = %e, "ignoring a bus message we do not understand"),
        }
    }

    /// Subscribes to every app's bus and delivers what arrives; reconnects
    /// when the connection drops, and then gives local presence subscribers
    /// the current roster (events published while off the bus are lost).
    async fn bus(
        self: Arc<Self>,
        client: redis::Client,
        apps: Vec<String>,
        ready: oneshot::Sender<()>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ready = Some(ready);
        loop {
            if *shutdown.borrow() {
                return;
            }
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    let mut ok = true;
                    for app in &apps {
                        if pubsub
                            .subscribe(format!("{}bus", prefix(app)))
                            .await
                            .is_err()
                        {
                            ok = false;
                        }
                    }
                    if ok {
                        match ready.take() {
                            Some(r) => {
                                let _ = r.send(());
                            }
                            None => {
                                tracing::info!("back on the Redis bus");
                                self.resend_rosters().await;
                            }
                        }
                        let mut stream = pubsub.on_message();
                        loop {
                            tokio::select! {
                                msg = stream.next() => match msg {
                                    Some(m) => {
                                        let chan: String = m.get_channel_name().to_owned();
                                        let app = chan.strip_prefix("whosin:").and_then(|s| s.strip_suffix(":bus")).unwrap_or("");
                                        if let Ok(payload) = m.get_payload::<String>() {
                                            self.on_bus(app, &payload);
                                        }
                                    }
                                    None => break,
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

    /// Sends every local presence subscriber the cluster roster as it is now.
    async fn resend_rosters(&self) {
        let mut con = self.reader.clone();
        for app in self.apps.get().into_iter().flatten() {
            self.resend_rosters_of(&mut con, app).await;
        }
    }

    /// The same for one app, over a given connection.
    async fn resend_rosters_of(&self, con: &mut ConnectionManager, app: &App) {
        for ch in app.local_presence().keys() {
            if let Some(members) = self.roster_with(con, &app.config.id, ch).await {
                let frame = whosin_protocol::roster::subscription_succeeded_for(
                    ch,
                    members.iter().map(|(u, i)| (u.as_str(), i.as_str())),
                );
                app.resend_roster(ch, Frame::from(frame));
            }
        }
    }

    /// Heartbeats, sweeps dead nodes, and resyncs after trouble.
    async fn heartbeat(
        self: Arc<Self>,
        mut con: ConnectionManager,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut first = true;
        loop {
            let beat: redis::RedisResult<i64> = async {
                let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut con).await?;
                let now_ms = secs * 1000 + micros / 1000;
                con.zadd(NODES, &self.config.node_id, now_ms).await
            }
            .await;
            match beat {
                Ok(new) => {
                    let was_down = !self.healthy.swap(true, Ordering::AcqRel);
                    // A fresh entry after the first beat means we were swept as
                    // dead (or Redis lost its data): rewrite our own entries.
                    if (new == 1 && !first) || was_down {
                        tracing::info!("Redis reachable again: resyncing this node's presence");
                        self.resync(&mut con).await;
                    }
                    first = false;
                    self.sweep_dead(&mut con).await;
                }
                Err(e) => self.failed("heartbeat", &e),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.heartbeat) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn sweep_dead(&self, con: &mut ConnectionManager) {
        let sweep = &self.scripts.sweep;
        let Ok((secs, micros)) = redis::cmd("TIME")
            .query_async::<(u64, u64)>(&mut *con)
            .await
        else {
            return;
        };
        let now = secs * 1000 + micros / 1000;
        let dead: Vec<String> = con
            .zrangebyscore(NODES, "-inf", now.saturating_sub(self.expiry_ms()) as f64)
            .await
            .unwrap_or_default();
        for node in dead.into_iter().filter(|n| *n != self.config.node_id) {
            let lock = format!("whosin:sweep:{node}");
            let got: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(&lock)
                .arg(&self.config.node_id)
                .arg("NX")
                .arg("PX")
                .arg(10_000)
                .query_async(&mut *con)
                .await;
            if !matches!(got, Ok(Some(_))) {
                continue;
            }
            tracing::info!(%node, "node stopped heartbeating: removing its members");
            for app in self.apps.get().into_iter().flatten() {
                let r: redis::RedisResult<Vec<String>> = sweep
                    .arg(prefix(&app.config.id))
                    .arg(&node)
                    .arg(self.expiry_ms())
                    .invoke_async(&mut *con)
                    .await;
                for (channel, user) in r.map(pairs).unwrap_or_default() {
                    let frame = server::member_removed(&channel, &user);
                    self.publish_now(con, &app.config.id, &channel, &frame, None)
                        .await;
                }
            }
            let _: redis::RedisResult<i64> = con.zrem(NODES, &node).await;
        }
    }

    /// Rewrites this node's entries from local state: stale ones leave
    /// (announced if last), missing ones join (announced if new).
    async fn resync(&self, con: &mut ConnectionManager) {
        let (join, leave) = (&self.scripts.join, &self.scripts.leave);
        for app in self.apps.get().into_iter().flatten() {
            let p = prefix(&app.config.id);
            let local = app.local_presence();
            let mut channels: Vec<String> = con
                .smembers(format!("{p}pc:{}", self.config.node_id))
                .await
                .unwrap_or_default();
            channels.extend(local.keys().cloned());
            channels.sort();
            channels.dedup();
            for ch in channels {
                let here: Vec<String> = con
                    .hkeys(format!("{p}p:{ch}:{}", self.config.node_id))
                    .await
                    .unwrap_or_default();
                let want = local.get(&ch).cloned().unwrap_or_default();
                for user in here.iter().filter(|u| !want.contains_key(*u)) {
                    let r: redis::RedisResult<i64> = leave
                        .arg(&p)
                        .arg(&ch)
                        .arg(&self.config.node_id)
                        .arg(user)
                        .arg(self.expiry_ms())
                        .invoke_async(&mut *con)
                        .await;
                    if let Ok(1) = r {
                        self.publish_now(
                            con,
                            &app.config.id,
                            &ch,
                            &server::member_removed(&ch, user),
                            None,
                        )
                        .await;
                    }
                }
                for (user, info) in want.iter().filter(|(u, _)| !here.contains(u)) {
                    let r: redis::RedisResult<Vec<String>> = join
                        .arg(&p)
                        .arg(&ch)
                        .arg(&self.config.node_id)
                        .arg(user)
                        .arg(info.as_ref())
                        .arg(usize::MAX / 2)
                        .arg(self.expiry_ms())
                        .invoke_async(&mut *con)
                        .await;
                    if matches!(
                        r.as_ref().map(|v| v.first().map(String::as_str)),
                        Ok(Some("1"))
                    ) {
                        self.publish_now(
                            con,
                            &app.config.id,
                            &ch,
                            &server::member_added(&ch, user, info),
                            None,
                        )
                        .await;
                    }
                }
            }
            // Redis may have lost what other nodes' clients were told while
            // it was away: give this node's presence subscribers the
            // cluster roster as it is now. Clients reconcile it (ours report
            // only the differences; pusher-js replaces its member list).
            self.resend_rosters_of(con, app).await;
            let occ = format!("{p}occ:{}", self.config.node_id);
            let _: redis::RedisResult<i64> = con.del(&occ).await;
            for (ch, n) in app.local_occupancy() {
                let _: redis::RedisResult<i64> = con.hset(&occ, ch, n).await;
            }
        }
    }

    /// On graceful shutdown, after the local connections closed: remove
    /// this node's members at once (announcing departures to the other
    /// nodes) and leave the node set.
    pub async fn depart(&self) {
        let mut con = self.reader.clone();
        self.leave_cluster(&mut con).await;
        tracing::info!(node = %self.config.node_id, "left the cluster");
    }

    async fn leave_cluster(&self, con: &mut ConnectionManager) {
        let sweep = &self.scripts.sweep;
        let _: redis::RedisResult<i64> = con.zrem(NODES, &self.config.node_id).await;
        for app in self.apps.get().into_iter().flatten() {
            let r: redis::RedisResult<Vec<String>> = sweep
                .arg(prefix(&app.config.id))
                .arg(&self.config.node_id)
                .arg(self.expiry_ms())
                .invoke_async(&mut *con)
                .await;
            for (channel, user) in r.map(pairs).unwrap_or_default() {
                let message = serde_json::to_string(&BusMessage::Event {
                    c: channel.clone(),
                    f: server::member_removed(&channel, &user),
                    x: None,
                })
                .expect("serializes");
                let _: redis::RedisResult<i64> = con
                    .publish(format!("{}bus", prefix(&app.config.id)), message)
                    .await;
            }
        }
    }
}

/// Local presence of an app for resync: channel → user → info.
pub type LocalPresence = HashMap<String, HashMap<String, Arc<str>>>;
