//! Issue 12's features where the official clients cannot show them, against
//! `whosin serve` as a process: a `#server-to-user-` channel is only for
//! its own user, an observer is outside the member cap, and cache channels
//! replay across the nodes of a cluster. (pusher-js and the pusher SDK
//! check the rest: tests/node/site-owner.test.mjs.)

mod common;

use common::faults::Redis;
use common::raw::{data, Raw};
use common::*;
use serde_json::{json, Value};

/// Signs `raw` in as `user` with a signature made by the app secret.
async fn sign_in(raw: &mut Raw, user: &str) {
    let user_data = json!({ "id": user }).to_string();
    let auth = format!(
        "{KEY}:{}",
        whosin_protocol::sign::hmac_hex(
            SECRET,
            format!("{}::user::{user_data}", raw.socket_id).as_bytes()
        )
    );
    raw.send(json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}))
        .await;
    raw.next("pusher:signin_success").await;
}

async fn subscribe(raw: &mut Raw, channel: &str) -> Value {
    raw.send(json!({"event": "pusher:subscribe", "data": {"channel": channel}}))
        .await;
    raw.next_of(&[
        "pusher_internal:subscription_succeeded",
        "pusher:subscription_error",
    ])
    .await
}

/// pusher-js subscribes a signed-in user to `#server-to-user-{id}`; the
/// server takes that subscribe only from a connection signed in as `id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_channel_is_only_for_its_user() {
    let server = ServerProcess::start(&[]);
    let mut bob = Raw::open(server.port, None, None).await.unwrap();
    sign_in(&mut bob, "bob").await;
    let ok = subscribe(&mut bob, "#server-to-user-bob").await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );

    let mut anon = Raw::open(server.port, None, None).await.unwrap();
    let refused = subscribe(&mut anon, "#server-to-user-bob").await;
    assert_eq!(data(&refused)["status"], 403, "{refused}");
    let mut ann = Raw::open(server.port, None, None).await.unwrap();
    sign_in(&mut ann, "ann").await;
    let refused = subscribe(&mut ann, "#server-to-user-bob").await;
    assert_eq!(data(&refused)["status"], 403, "{refused}");
    // Other '#' names stay reserved.
    let refused = subscribe(&mut ann, "#online").await;
    assert_eq!(data(&refused)["status"], 400, "{refused}");
}

/// A channel at its member cap still admits an observer, who sees the
/// members and is not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_is_outside_the_member_cap() {
    let server = ServerProcess::start(&["--max-presence-members", "1"]);
    let join = |raw: &Raw, user: &str, observer: bool| {
        let mut cd = json!({"user_id": user, "user_info": {"name": user}});
        if observer {
            cd["observer"] = json!(true);
        }
        let cd = cd.to_string();
        let auth =
            whosin_protocol::sign::channel_auth(KEY, SECRET, &raw.socket_id, CHANNEL, Some(&cd));
        json!({"auth": auth, "channel_data": cd})
    };
    let mut v = Raw::open(server.port, None, None).await.unwrap();
    let signed = join(&v, "v1", false);
    let ok = v.subscribe_signed(CHANNEL, &signed).await;
    assert_eq!(data(&ok)["presence"]["count"], 1);
    let mut full = Raw::open(server.port, None, None).await.unwrap();
    let signed = join(&full, "v2", false);
    let refused = full.subscribe_signed(CHANNEL, &signed).await;
    assert_eq!(data(&refused)["status"], 403, "{refused}");
    let mut owner = Raw::open(server.port, None, None).await.unwrap();
    let signed = join(&owner, "owner", true);
    let ok = owner.subscribe_signed(CHANNEL, &signed).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(data(&ok)["presence"]["ids"], json!(["v1"]));
}

/// An event published on a cache channel through one node is replayed to
/// a subscriber on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_channels_replay_across_nodes() {
    let redis = Redis::start();
    let url = redis.url();
    let one = ServerProcess::start(&["--redis-url", &url, "--node-id", "c1"]);
    let two = ServerProcess::start(&["--redis-url", &url, "--node-id", "c2"]);
    // Triggered through node one's REST API (signed like the SDK does).
    let body =
        json!({"name": "headline", "channels": ["cache-news"], "data": "{\"n\":1}"}).to_string();
    let status = signed_post(one.port, "/apps/e2e/events", &body).await;
    assert_eq!(status, 200);
    let mut sub = Raw::open(two.port, None, None).await.unwrap();
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let ok = subscribe(&mut sub, "cache-news").await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
        let next = sub.next_of(&["headline", "pusher:cache_miss"]).await;
        if next["event"] == "headline" {
            assert_eq!(next["data"], "{\"n\":1}");
            break;
        }
        // The bus may not have carried it yet: look again, within the deadline.
        assert!(
            tokio::time::Instant::now() < until,
            "never replayed on node two"
        );
        sub.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "cache-news"}}))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// POSTs a REST body signed with the app secret (Pusher's request signing).
async fn signed_post(port: u16, path: &str, body: &str) -> u16 {
    let md5 = whosin_protocol::sign::body_md5(body.as_bytes());
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let query = format!("auth_key={KEY}&auth_timestamp={ts}&auth_version=1.0&body_md5={md5}");
    let sig = whosin_protocol::sign::hmac_hex(SECRET, format!("POST\n{path}\n{query}").as_bytes());
    reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}{path}?{query}&auth_signature={sig}"
        ))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Events named `name` for `user` among every batch received.
fn count_events(got: &std::sync::Mutex<Vec<Value>>, name: &str, user: &str) -> usize {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["name"] == name && e["user_id"] == user)
        .count()
}

/// A webhook receiver on a free port: every POST's body, answered 200.
async fn hook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let body: Value =
                        serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                    store.lock().unwrap().push(body);
                    buf.drain(..end + 4 + len);
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (url, got)
}

/// Waits (until [`DEADLINE`]) for the first webhook event `name` about `user`.
async fn until_event(got: &std::sync::Mutex<Vec<Value>>, name: &str, user: &str, what: &str) {
    let until = tokio::time::Instant::now() + DEADLINE;
    while count_events(got, name, user) == 0 {
        assert!(tokio::time::Instant::now() < until, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A `whosin serve` with these arguments.
fn start_node(args: &[String]) -> ServerProcess {
    ServerProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A node that dies holding a member: the survivor (the leader) sends its
/// `member_removed` once, after the node timeout and the grace period, and
/// the member's `member_added` was sent once, by the node it joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_departures_are_sent_once_by_the_leader() {
    let redis = Redis::start();
    let url = redis.url();
    let (hook, got) = hook_receiver().await;
    let args = |node: &'static str| {
        vec![
            "--redis-url".to_owned(),
            url.clone(),
            "--node-id".to_owned(),
            node.to_owned(),
            "--node-timeout".to_owned(),
            "2".to_owned(),
            "--webhook".to_owned(),
            hook.clone(),
            "--webhook-grace-ms".to_owned(),
            "300".to_owned(),
        ]
    };
    let a1 = args("d1");
    let one = start_node(&a1);
    let a2 = args("d2");
    let mut two = start_node(&a2);
    let watcher = common::faults::Observer::join(one.port, "watcher").await;
    let _doomed = common::faults::Observer::join(two.port, "doomed").await;
    watcher
        .roster_becomes(&["doomed", "watcher"], DEADLINE)
        .await;
    let events = |name: &str, user: &str| count_events(&got, name, user);
    // Its join was reported by its own node (what a node had not sent
    // when it died is lost with it).
    until_event(&got, "member_added", "doomed", "no member_added for doomed").await;
    two.kill();
    watcher.roster_becomes(&["watcher"], DEADLINE).await;
    until_event(
        &got,
        "member_removed",
        "doomed",
        "no member_removed for the dead node's member",
    )
    .await;
    // Settle past another grace period and batch: still once each.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(events("member_added", "doomed"), 1);
    assert_eq!(events("member_removed", "doomed"), 1);
    assert_eq!(events("member_added", "watcher"), 1);
    assert_eq!(events("member_removed", "watcher"), 0);
}

/// The leader itself leaving (a clean stop, its `Gone` heard at once): the
/// next node speaks for its members' departures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_leaves_the_next_node_reports_its_departures() {
    let redis = Redis::start();
    let url = redis.url();
    let (hook, got) = hook_receiver().await;
    let args = |node: &'static str| {
        vec![
            "--redis-url".to_owned(),
            url.clone(),
            "--node-id".to_owned(),
            node.to_owned(),
            "--webhook".to_owned(),
            hook.clone(),
            "--webhook-grace-ms".to_owned(),
            "300".to_owned(),
        ]
    };
    let a = args("a-leader");
    let mut leader = start_node(&a);
    let b = args("b-next");
    let next = start_node(&b);
    let watcher = common::faults::Observer::join(next.port, "watcher").await;
    let _leaving = common::faults::Observer::join(leader.port, "leaving").await;
    watcher
        .roster_becomes(&["leaving", "watcher"], DEADLINE)
        .await;
    let events = |name: &str, user: &str| count_events(&got, name, user);
    until_event(&got, "member_added", "leaving", "no member_added").await;
    // A heartbeat or two, so that both nodes know who leads.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    leader.terminate();
    watcher.roster_becomes(&["watcher"], DEADLINE).await;
    until_event(
        &got,
        "member_removed",
        "leaving",
        "the leader's member was never reported gone",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(events("member_removed", "leaving"), 1);
}
