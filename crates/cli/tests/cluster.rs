//! Several `whosin serve` nodes sharing one real `redis-server` (started by
//! the test on a free port, in a temporary directory).

mod common;

use common::faults::Redis;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};
use whosin_client::{Client, ConnectionState, Event};

fn node(redis: &Redis, id: &str) -> ServerProcess {
    ServerProcess::start(&[
        "--redis-url",
        &redis.url(),
        "--node-id",
        id,
        "--node-timeout",
        "3",
        "--enable-client-events",
    ])
}

async fn rest_user_count(server: &ServerProcess) -> u64 {
    let path = format!("/apps/{ID}/channels/{CHANNEL}");
    rest_json(server, "GET", &path, &[("info", "user_count")], "")["user_count"]
        .as_u64()
        .expect("a user_count in the node's answer")
}

fn count(c: &Client) -> usize {
    c.members(CHANNEL).map_or(0, |(_, m)| m.len())
}

async fn until(what: &str, within: Duration, f: impl Fn() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_roster_and_survive_a_sigkill() {
    let redis = Redis::start();
    let n1 = node(&redis, "n1");
    let n2 = node(&redis, "n2");
    let mut n3 = node(&redis, "n3");
    let (a, alog) = visitor(&n1.url(), "alice");
    let (b, blog) = visitor(&n2.url(), "bob");
    let (c, _clog) = visitor(&n3.url(), "carol");
    for cl in [&a, &b, &c] {
        let cl = cl.clone();
        until("everyone sees 3", DEADLINE, move || count(&cl) == 3).await;
    }
    // The last joiner got everyone in subscription_succeeded.
    roster_becomes(&c, &["alice", "bob", "carol"]).await;
    assert_eq!(rest_user_count(&n1).await, 3);
    assert_eq!(rest_user_count(&n2).await, 3);

    // Dave holds connections on two nodes: added once, removed once at the last close.
    let (d1, _) = visitor(&n1.url(), "dave");
    let (d2, _) = visitor(&n2.url(), "dave");
    {
        let a = a.clone();
        until("dave seen", DEADLINE, move || count(&a) == 4).await;
    }
    let d2_ready = d2.clone();
    until("dave's second connection in", DEADLINE, move || {
        count(&d2_ready) == 4
    })
    .await;
    d1.close();
    // Still present through n2: no removal. A round trip proves nothing is pending:
    // bob joins a marker visitor and everyone sees it before we look.
    let (m, _) = visitor(&n3.url(), "marker");
    {
        let a = a.clone();
        until("marker seen", DEADLINE, move || count(&a) == 5).await;
    }
    assert!(
        a.members(CHANNEL).unwrap().1.iter().any(|x| x.id == "dave"),
        "dave still present"
    );
    m.close();
    d2.close();
    {
        let a = a.clone();
        until("dave gone", DEADLINE, move || count(&a) == 3).await;
    }
    let (_, tally) = replay(&alog.all());
    assert_eq!(
        tally.get("dave"),
        Some(&(1, 1)),
        "dave added once and removed once"
    );

    // SIGKILL n3: carol is removed on the others within the bound; nothing else is.
    n3.kill();
    let killed = Instant::now();
    {
        let a = a.clone();
        until(
            "carol removed after n3 died",
            Duration::from_secs(10),
            move || count(&a) == 2,
        )
        .await;
    }
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "took {:?}",
        killed.elapsed()
    );
    roster_becomes(&a, &["alice", "bob"]).await;
    roster_becomes(&b, &["alice", "bob"]).await;
    assert_eq!(rest_user_count(&n1).await, 2);
    let (_, tally) = replay(&blog.all());
    assert_eq!(
        tally.get("alice").map(|t| t.1).unwrap_or(0),
        0,
        "alice never removed"
    );
    drop(c);

    // Everyone leaves: every node reports 0 and no occupied channel.
    a.close();
    b.close();
    for n in [&n1, &n2] {
        let end = Instant::now() + DEADLINE;
        while rest_user_count(n).await != 0 {
            assert!(Instant::now() < end, "user_count stuck above 0 on a node");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let end = Instant::now() + DEADLINE;
        while rest_json(n, "GET", &format!("/apps/{ID}/channels"), &[], "")
            != serde_json::json!({"channels": {}})
        {
            assert!(Instant::now() < end, "a channel still occupied on a node");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_converges_to_the_truth() {
    let mut redis = Redis::start();
    let port = redis.port;
    let dir = redis.dir.clone();
    let n1 = node(&redis, "r1");
    let n2 = node(&redis, "r2");
    let (a, _) = visitor(&n1.url(), "ann");
    let (b, _) = visitor(&n2.url(), "ben");
    {
        let a = a.clone();
        until("both see 2", DEADLINE, move || count(&a) == 2).await;
    }
    // Redis goes away (and its data with it); ben leaves meanwhile.
    redis.kill();
    b.close();
    // Redis is back, empty: nodes re-publish their live members.
    let _redis = Redis::start_on(port, &dir);
    {
        let a = a.clone();
        until("ann sees ben gone", Duration::from_secs(15), move || {
            count(&a) == 1
        })
        .await;
    }
    let (c, _) = visitor(&n2.url(), "cleo");
    {
        let c = c.clone();
        until(
            "cleo sees ann across nodes again",
            Duration::from_secs(15),
            move || count(&c) == 2,
        )
        .await;
    }
    roster_becomes(&c, &["ann", "cleo"]).await;
    roster_becomes(&a, &["ann", "cleo"]).await;
}

/// Signed REST call against a node (with `extra` query parameters),
/// returning the JSON answer.
fn rest_json(
    server: &ServerProcess,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> serde_json::Value {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let md5 = whosin_protocol::sign::body_md5(body.as_bytes());
    let mut params = vec![
        ("auth_key", KEY),
        ("auth_timestamp", ts.as_str()),
        ("auth_version", "1.0"),
    ];
    if !body.is_empty() {
        params.push(("body_md5", md5.as_str()));
    }
    params.extend_from_slice(extra);
    let sig = whosin_protocol::sign::rest_signature(SECRET, method, path, params.iter().copied());
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = format!(
        "http://127.0.0.1:{}{path}?{}&auth_signature={sig}",
        server.port,
        query.join("&")
    );
    let mut cmd = Command::new("curl");
    cmd.args(["-sf", "-m", "5", "-X", method, &url]);
    if !body.is_empty() {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let out = cmd.output().expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_terminations_cross_nodes() {
    let redis = Redis::start();
    let n1 = node(&redis, "e1");
    let n2 = node(&redis, "e2");
    let (a, alog) = visitor(&n1.url(), "amy");
    let (b, blog) = visitor(&n2.url(), "bo");
    for c in [&a, &b] {
        let c = c.clone();
        until("both see 2", DEADLINE, move || count(&c) == 2).await;
    }
    // A client event from n1 reaches n2, not echoed.
    a.trigger(CHANNEL, "wave", serde_json::json!({"from": "amy"}));
    blog.wait_for(0, "wave on n2", |e| matches!(e, Event::Message { event, user_id: Some(u), .. } if event == "client-wave" && u == "amy")).await;
    // A REST trigger on n2 excluding amy's socket reaches bo only.
    let amy_socket = match a.state() {
        ConnectionState::Connected { socket_id } => socket_id,
        s => panic!("{s:?}"),
    };
    let body = serde_json::json!({"name": "news", "channel": CHANNEL, "data": "hello", "socket_id": amy_socket}).to_string();
    assert_eq!(
        rest_json(&n2, "POST", &format!("/apps/{ID}/events"), &[], &body),
        serde_json::json!({})
    );
    let body =
        serde_json::json!({"name": "news2", "channel": CHANNEL, "data": "hello"}).to_string();
    rest_json(&n2, "POST", &format!("/apps/{ID}/events"), &[], &body);
    blog.wait_for(
        0,
        "news on n2",
        |e| matches!(e, Event::Message { event, .. } if event == "news"),
    )
    .await;
    alog.wait_for(
        0,
        "news2 on n1",
        |e| matches!(e, Event::Message { event, .. } if event == "news2"),
    )
    .await;
    assert!(!alog.all().iter().any(
        |e| matches!(e, Event::Message { event, .. } if event == "news" || event == "client-wave")
    ));
    // Users listed cluster-wide from either node.
    let users = rest_json(
        &n1,
        "GET",
        &format!("/apps/{ID}/channels/{CHANNEL}/users"),
        &[],
        "",
    );
    assert_eq!(
        users,
        serde_json::json!({"users":[{"id":"amy"},{"id":"bo"}]})
    );
    // terminate_connections on n1 closes bo's connection on n2 (4009: final).
    rest_json(
        &n1,
        "POST",
        &format!("/apps/{ID}/users/bo/terminate_connections"),
        &[],
        "{}",
    );
    blog.wait_for(0, "bo terminated", |e| {
        matches!(
            e,
            Event::State(ConnectionState::Disconnected {
                reason: whosin_client::StopReason::Unauthorized(_)
            })
        )
    })
    .await;
    let a2 = a.clone();
    until("bo removed on n1", DEADLINE, move || count(&a2) == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_keeps_subscribes_and_queries_under_a_second() {
    let redis = Redis::start();
    let mut nodes: Vec<ServerProcess> = (0..3).map(|i| node(&redis, &format!("rr{i}"))).collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let (watcher, _) = visitor(&nodes[0].url(), "watcher");
    let (steady, _) = visitor(&nodes[1].url(), "steady");
    {
        let w = watcher.clone();
        until("watcher sees 2", DEADLINE, move || count(&w) == 2).await;
    }
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    for i in 0..3 {
        nodes[i].terminate();
        for (j, n) in nodes.iter().enumerate().filter(|(j, _)| *j != i) {
            for k in 0..3 {
                // A presence subscribe on a live node, timed to its snapshot.
                let started = Instant::now();
                let (c, log) = visitor(&n.url(), &format!("probe-{i}-{j}-{k}"));
                log.wait_for(0, "probe snapshot", |e| matches!(e, Event::Snapshot { .. }))
                    .await;
                worst = worst.max(started.elapsed());
                c.close();
                // A REST query on the same node.
                let started = Instant::now();
                let v = rest_json(n, "GET", &format!("/apps/{ID}/channels"), &[], "");
                assert!(v["channels"].is_object(), "{v}");
                worst = worst.max(started.elapsed());
                probes += 2;
            }
        }
        nodes[i] = ServerProcess::start_on(
            ports[i],
            &[
                "--redis-url",
                &redis.url(),
                "--node-id",
                &format!("rr{i}"),
                "--node-timeout",
                "3",
            ],
        );
    }
    assert!(
        worst < Duration::from_secs(1),
        "slowest of {probes} probes took {worst:?}"
    );
    // The visitors came back through their own reconnects; the roster is right.
    let w = watcher.clone();
    until(
        "watcher and steady back together",
        Duration::from_secs(15),
        move || {
            w.members(CHANNEL).is_some_and(|(_, m)| {
                m.iter().map(|x| x.id.as_str()).collect::<Vec<_>>() == ["steady", "watcher"]
            })
        },
    )
    .await;
    drop(steady);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopping_gracefully_removes_its_members_at_once() {
    let redis = Redis::start();
    // A long node timeout: only the graceful path can remove them quickly.
    let args = |id: &'static str| {
        vec![
            "--redis-url".to_owned(),
            redis.url(),
            "--node-id".into(),
            id.into(),
            "--node-timeout".into(),
            "30".into(),
        ]
    };
    let n1 = ServerProcess::start(&args("g1").iter().map(String::as_str).collect::<Vec<_>>());
    let mut n2 = ServerProcess::start(&args("g2").iter().map(String::as_str).collect::<Vec<_>>());
    let (a, _) = visitor(&n1.url(), "stays");
    let (b, _) = visitor(&n2.url(), "goes");
    let a2 = a.clone();
    until("both present", DEADLINE, move || count(&a2) == 2).await;
    // The client on n2 tries to come back (4200 asks it to) but n2 stays
    // down: its member must go with the node, not after the 30 s timeout.
    n2.terminate();
    let stopped = Instant::now();
    let a3 = a.clone();
    until("goes removed", Duration::from_secs(5), move || {
        count(&a3) == 1
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "took {:?} with a 30 s node timeout",
        stopped.elapsed()
    );
    assert_eq!(rest_user_count(&n1).await, 1);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_cap_is_cluster_wide_and_admits_a_present_users_second_tab() {
    let redis = Redis::start();
    let args = |id: &'static str| {
        vec![
            "--redis-url".to_owned(),
            redis.url(),
            "--node-id".into(),
            id.into(),
            "--max-presence-members".into(),
            "2".into(),
        ]
    };
    let n1 = ServerProcess::start(&args("c1").iter().map(String::as_str).collect::<Vec<_>>());
    let n2 = ServerProcess::start(&args("c2").iter().map(String::as_str).collect::<Vec<_>>());
    let (a, _) = visitor(&n1.url(), "first");
    let (b, _) = visitor(&n2.url(), "second");
    let a2 = a.clone();
    until("two members", DEADLINE, move || count(&a2) == 2).await;
    // A third user, on either node, is refused.
    let (_c, clog) = visitor(&n1.url(), "third");
    clog.wait_for(0, "refusal", |e| {
        matches!(
            e,
            Event::SubscriptionFailed {
                status: Some(403),
                ..
            }
        )
    })
    .await;
    // The first user's second tab, on the other node, is admitted.
    let (tab, tlog) = visitor(&n2.url(), "first");
    tlog.wait_for(
        0,
        "second tab joined",
        |e| matches!(e, Event::Snapshot { members, .. } if members.len() == 2),
    )
    .await;
    drop((b, tab));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_a_node_serves_its_own_clients() {
    let mut redis = Redis::start();
    let n1 = node(&redis, "d1");
    let (a, _) = visitor(&n1.url(), "ada");
    let (_b, blog) = visitor(&n1.url(), "bea");
    let a2 = a.clone();
    until("both on n1", DEADLINE, move || count(&a2) == 2).await;
    redis.kill();
    // Client events and presence changes between clients of the same node still flow.
    a.trigger(CHANNEL, "ping", serde_json::json!({}));
    blog.wait_for(
        0,
        "client event with Redis down",
        |e| matches!(e, Event::Message { event, .. } if event == "client-ping"),
    )
    .await;
    let (c, _) = visitor(&n1.url(), "cy");
    let a3 = a.clone();
    until("cy seen locally with Redis down", DEADLINE, move || {
        count(&a3) == 3
    })
    .await;
    c.close();
    let a4 = a.clone();
    until("cy gone locally with Redis down", DEADLINE, move || {
        count(&a4) == 2
    })
    .await;
    // The failures are counted.
    let metrics = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{}/metrics", n1.port)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.stdout);
    let failures: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("whosin_cluster_failures_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(failures > 0, "{text}");
}
