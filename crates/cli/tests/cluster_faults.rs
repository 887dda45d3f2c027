//! Fault tests of the Redis cluster mode, judged on raw frames: every
//! observer must see exactly one `member_added` and one `member_removed`
//! per real transition of a user (no duplicate, no ghost, no resent roster
//! that silently differs), and end with the true roster, within a bound of
//! about the node timeout plus a few seconds after the fault heals.
//!
//! Faults: replies lost after a command ran (a Redis reply timeout, i.e.
//! an unknown outcome), a Redis outage, a Redis restart that lost its data,
//! a node paused past the node timeout, a node killed, and a slow Redis
//! while a node has much to resync. Observers are [`Observer`]s (raw
//! WebSocket clients); the fault proxy is a [`Proxy`].
//!
//! Every one of a, b, c, d, g and h failed on the cluster adapter that
//! decided presence in Redis scripts (before the node mirrors of issue
//! #10); e and f held already.

mod common;

use common::faults::*;
use common::*;
use std::time::{Duration, Instant};

/// A cluster node on `redis_url` (Redis itself or a [`Proxy`]).
fn node(redis_url: &str, id: &str, node_timeout: u64) -> ServerProcess {
    ServerProcess::start(&[
        "--redis-url",
        redis_url,
        "--node-id",
        id,
        "--node-timeout",
        &node_timeout.to_string(),
    ])
}

/// How long after a fault heals every observer must be right again: the
/// node timeout (a departure is noticed within it) plus a few seconds.
fn bound(node_timeout: u64) -> Duration {
    Duration::from_secs(node_timeout + 3)
}

/// How long a black-holed reply is withheld: longer than the nodes' 1 s
/// Redis response timeout, so the node has given up on the answer.
const UNKNOWN_OUTCOME: Duration = Duration::from_millis(1500);

/// Whether Redis records `node` as holding `user` in [`CHANNEL`] (the
/// layout of `crates/server/src/backplane/redis.rs`): lets a test see that
/// a write whose reply it withholds did run.
fn held_in_redis(redis: &Redis, node: &str, user: &str) -> bool {
    let key = format!("whosin:{ID}:n:{node}");
    redis.cli(&["HEXISTS", &key, &format!("{CHANNEL}\n{user}")]) == "1"
}

/// A user joins and leaves on `node` (seen by `watcher`), so every script
/// the node runs for a join or a leave is loaded in Redis: scripts run by
/// hash, and an unknown one would fail (`NOSCRIPT`) instead of running
/// when the test withholds its reply.
async fn warm_up(node: &ServerProcess, watcher: &Observer) {
    let mut w = Observer::join(node.port, "warm-up").await;
    watcher
        .until("warm-up added", DEADLINE, |r| r.members.contains("warm-up"))
        .await;
    w.close();
    watcher
        .until("warm-up removed", DEADLINE, |r| {
            !r.members.contains("warm-up")
        })
        .await;
}

/// How soon a command sent into a black hole must show in Redis: well
/// under any node timeout, so that no sweep can be what the test sees.
const RAN: Duration = Duration::from_secs(1);

/// Waits until every observer's roster is `ids`.
async fn all_see(obs: &[&Observer], ids: &[&str], within: Duration) {
    for o in obs {
        o.roster_becomes(ids, within).await;
    }
}

/// Keeps checking that every observer's stream stays exact until `end`.
/// This is an observation window (proving that no late duplicate or ghost
/// arrives), not a wait for a condition.
async fn hold_exact(obs: &[&Observer], end: Instant) {
    loop {
        for o in obs {
            let bad = match o.replay() {
                Ok(Some(_)) if o.is_open() => continue,
                Ok(Some(_)) => "connection closed".to_owned(),
                Ok(None) => "no subscription_succeeded".to_owned(),
                Err(e) => e,
            };
            let all: Vec<String> = obs.iter().map(|o| o.story()).collect();
            panic!("{}: {bad}\n{}", o.name, all.join("\n"));
        }
        if Instant::now() >= end {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that since `base`, `o` saw exactly the `(added, removed)`
/// counts in `want` (users not listed: none at all), and that its roster
/// is `truth`.
fn assert_since(o: &Observer, base: &Replay, truth: &[&str], want: &[(&str, (u32, u32))]) {
    let now = o.exact();
    let mut got: Vec<(String, (u32, u32))> = now
        .tally
        .iter()
        .map(|(u, t)| {
            let b = base.of(u);
            (u.clone(), (t.0 - b.0, t.1 - b.1))
        })
        .filter(|(_, d)| *d != (0, 0))
        .collect();
    got.sort();
    let mut want: Vec<(String, (u32, u32))> =
        want.iter().map(|(u, d)| (u.to_string(), *d)).collect();
    want.sort();
    assert_eq!(
        got,
        want,
        "{}: (added, removed) per user since the fault\n{}",
        o.name,
        o.story()
    );
    let truth: std::collections::BTreeSet<String> = truth.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        now.members,
        truth,
        "{}: final roster\n{}",
        o.name,
        o.story()
    );
}

// ------------------------------------------------------------ self-tests

fn roster_frame(ids: &[&str]) -> String {
    let hash: serde_json::Map<String, serde_json::Value> = ids
        .iter()
        .map(|i| (i.to_string(), serde_json::json!({})))
        .collect();
    let data = serde_json::json!({"presence": {"ids": ids, "hash": hash, "count": ids.len()}});
    serde_json::json!({"event": "pusher_internal:subscription_succeeded", "channel": CHANNEL, "data": data.to_string()}).to_string()
}

fn member_frame(kind: &str, u: &str) -> String {
    let data = serde_json::json!({"user_id": u}).to_string();
    serde_json::json!({"event": format!("pusher_internal:member_{kind}"), "channel": CHANNEL, "data": data}).to_string()
}

#[test]
fn the_raw_checker_catches_duplicates_ghosts_and_silent_roster_changes() {
    let ok = [
        roster_frame(&["a"]),
        member_frame("added", "b"),
        member_frame("removed", "a"),
        roster_frame(&["b"]),
    ];
    let r = replay_raw(&ok).unwrap().unwrap();
    assert_eq!(r.members, ["b".to_owned()].into());
    assert_eq!((r.of("a"), r.of("b"), r.rosters), ((0, 1), (1, 0), 2));
    assert_eq!(replay_raw(&[]).unwrap(), None);
    let dup = [roster_frame(&["a"]), member_frame("added", "a")];
    assert!(replay_raw(&dup).unwrap_err().contains("duplicate"));
    let ghost = [roster_frame(&["a"]), member_frame("removed", "b")];
    assert!(replay_raw(&ghost).unwrap_err().contains("ghost"));
    let silent = [roster_frame(&["a"]), roster_frame(&["a", "b"])];
    assert!(replay_raw(&silent)
        .unwrap_err()
        .contains("silently added [\"b\"]"));
    assert!(replay_raw(&[member_frame("added", "a")])
        .unwrap_err()
        .contains("before"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_passes_delays_blackholes_and_cuts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port).await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", proxy.port));
    async fn ping(s: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
        s.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 64];
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }
    let mut s = connect().await.unwrap();
    assert_eq!(ping(&mut s, DEADLINE).await.as_deref(), Some("+PONG\r\n"));
    // Delay: the reply comes, late.
    proxy.set(Mode::Delay(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(ping(&mut s, DEADLINE).await.as_deref(), Some("+PONG\r\n"));
    assert!(t.elapsed() >= Duration::from_millis(300));
    // Blackhole: the command runs in Redis, the reply never comes.
    proxy.set(Mode::Blackhole);
    s.write_all(b"SET k v\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf))
            .await
            .is_err(),
        "a reply got through the blackhole"
    );
    redis
        .until("SET ran", DEADLINE, |r| r.cli(&["GET", "k"]) == "v")
        .await;
    // Back to pass: the connection that lost a reply is closed; new ones work.
    proxy.set(Mode::Pass);
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let mut s = connect().await.unwrap();
    assert_eq!(ping(&mut s, DEADLINE).await.as_deref(), Some("+PONG\r\n"));
    // Cut: open connections end, new ones are closed at once.
    proxy.set(Mode::Cut);
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let mut s = connect().await.unwrap();
    assert_eq!(ping(&mut s, DEADLINE).await, None);
    proxy.set(Mode::Pass);
    let mut s = connect().await.unwrap();
    assert_eq!(ping(&mut s, DEADLINE).await.as_deref(), Some("+PONG\r\n"));
}

// ------------------------------------------------------------ faults

/// a. A join whose reply is lost (the JOIN ran in Redis; the node timed
/// out): the other node must still announce the user once, and its later
/// leave once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_whose_reply_is_lost_is_announced_once_on_every_node() {
    // Longer than the black hole, so nobody is swept for it.
    const T: u64 = 5;
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port).await;
    let n1 = node(&proxy.url(), "fa-1", T);
    let n2 = node(&redis.url(), "fa-2", T);
    let o1 = Observer::join(n1.port, "o1").await;
    let o2 = Observer::join(n2.port, "o2").await;
    all_see(&[&o1, &o2], &["o1", "o2"], DEADLINE).await;
    warm_up(&n1, &o2).await;
    let (b1, b2) = (o1.exact(), o2.exact());

    proxy.set(Mode::Blackhole);
    let mut x = Observer::start(n1.port, "x");
    redis
        .until("x's JOIN ran", RAN, |r| held_in_redis(r, "fa-1", "x"))
        .await;
    tokio::time::sleep(UNKNOWN_OUTCOME).await;
    proxy.set(Mode::Pass);
    let healed = Instant::now();

    x.subscribed(bound(T)).await;
    for o in [&o2, &o1] {
        o.until("x added", bound(T), |r| r.members.contains("x"))
            .await;
    }
    hold_exact(&[&o1, &o2, &x], healed + bound(T)).await;
    assert_since(&o1, &b1, &["o1", "o2", "x"], &[("x", (1, 0))]);
    assert_since(&o2, &b2, &["o1", "o2", "x"], &[("x", (1, 0))]);
    x.roster_becomes(&["o1", "o2", "x"], DEADLINE).await;

    x.close();
    let left = Instant::now();
    for o in [&o2, &o1] {
        o.until("x removed", bound(T), |r| !r.members.contains("x"))
            .await;
    }
    hold_exact(&[&o1, &o2], left + bound(T)).await;
    assert_since(&o1, &b1, &["o1", "o2"], &[("x", (1, 1))]);
    assert_since(&o2, &b2, &["o1", "o2"], &[("x", (1, 1))]);
}

/// b. A leave whose reply is lost (the LEAVE ran in Redis; the node timed
/// out): the other node must still announce the departure, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_a_leave_whose_reply_is_lost_is_announced_once_on_every_node() {
    // Longer than the black hole, so nobody is swept for it.
    const T: u64 = 5;
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port).await;
    let n1 = node(&proxy.url(), "fb-1", T);
    let n2 = node(&redis.url(), "fb-2", T);
    let o1 = Observer::join(n1.port, "o1").await;
    let o2 = Observer::join(n2.port, "o2").await;
    let mut x = Observer::join(n1.port, "x").await;
    all_see(&[&o1, &o2, &x], &["o1", "o2", "x"], DEADLINE).await;
    warm_up(&n1, &o2).await;
    let (b1, b2) = (o1.exact(), o2.exact());
    assert!(held_in_redis(&redis, "fb-1", "x"), "x's join is in Redis");

    proxy.set(Mode::Blackhole);
    x.close();
    redis
        .until("x's LEAVE ran", RAN, |r| !held_in_redis(r, "fb-1", "x"))
        .await;
    tokio::time::sleep(UNKNOWN_OUTCOME).await;
    proxy.set(Mode::Pass);
    let healed = Instant::now();

    for o in [&o2, &o1] {
        o.until("x removed", bound(T), |r| !r.members.contains("x"))
            .await;
    }
    hold_exact(&[&o1, &o2], healed + bound(T)).await;
    assert_since(&o1, &b1, &["o1", "o2"], &[("x", (0, 1))]);
    assert_since(&o2, &b2, &["o1", "o2"], &[("x", (0, 1))]);
}

/// c. A Redis outage shorter than the node timeout, Redis keeping its
/// data: joins and leaves on both nodes during it reach every observer
/// exactly once afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_a_redis_outage_loses_no_presence_change() {
    // Longer than the outage, so nobody is swept for it: this test is
    // about the changes made meanwhile.
    const T: u64 = 5;
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port).await;
    let n1 = node(&proxy.url(), "fc-1", T);
    let n2 = node(&proxy.url(), "fc-2", T);
    let o1 = Observer::join(n1.port, "o1").await;
    let o2 = Observer::join(n2.port, "o2").await;
    let a = Observer::join(n1.port, "a").await;
    let b = Observer::join(n2.port, "b").await;
    let mut l1 = Observer::join(n1.port, "l1").await;
    let mut l2 = Observer::join(n2.port, "l2").await;
    let before = ["o1", "o2", "a", "b", "l1", "l2"];
    all_see(&[&o1, &o2, &a, &b, &l1, &l2], &before, DEADLINE).await;
    let stayers = [&o1, &o2, &a, &b];
    let bases: Vec<Replay> = stayers.iter().map(|o| o.exact()).collect();

    proxy.set(Mode::Cut);
    let cut = Instant::now();
    // Each node keeps serving its own clients meanwhile. One change at a
    // time: concurrent ones race on their own (see
    // `h_concurrent_joins_on_one_node_each_get_an_exact_stream`).
    l1.close();
    o1.until("l1 out (locally)", DEADLINE, |r| !r.members.contains("l1"))
        .await;
    l2.close();
    o2.until("l2 out (locally)", DEADLINE, |r| !r.members.contains("l2"))
        .await;
    let c = Observer::join(n1.port, "c").await;
    o1.until("c in (locally)", DEADLINE, |r| r.members.contains("c"))
        .await;
    let d = Observer::join(n2.port, "d").await;
    o2.until("d in (locally)", DEADLINE, |r| r.members.contains("d"))
        .await;
    let outage = Duration::from_secs(3);
    assert!(
        cut.elapsed() < outage,
        "setup too slow: {:?}",
        cut.elapsed()
    );
    tokio::time::sleep_until((cut + outage).into()).await;
    proxy.set(Mode::Pass);
    let healed = Instant::now();

    let truth = ["o1", "o2", "a", "b", "c", "d"];
    all_see(&[&o1, &o2, &a, &b, &c, &d], &truth, bound(T)).await;
    hold_exact(&[&o1, &o2, &a, &b, &c, &d], healed + bound(T)).await;
    let want = [("c", (1, 0)), ("d", (1, 0)), ("l1", (0, 1)), ("l2", (0, 1))];
    for (o, base) in stayers.iter().zip(&bases) {
        assert_since(o, base, &truth, &want);
    }
}

/// d. Redis restarts empty: users who stayed all along see no change at
/// all; a user who left during the outage is removed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_a_redis_restart_that_lost_its_data_changes_nothing_for_stayers() {
    const T: u64 = 3;
    let mut redis = Redis::start();
    let n1 = node(&redis.url(), "fd-1", T);
    let n2 = node(&redis.url(), "fd-2", T);
    let o1 = Observer::join(n1.port, "o1").await;
    let o2 = Observer::join(n2.port, "o2").await;
    let a = Observer::join(n1.port, "a").await;
    let b = Observer::join(n2.port, "b").await;
    let mut l = Observer::join(n2.port, "l").await;
    all_see(&[&o1, &o2, &a, &b], &["o1", "o2", "a", "b", "l"], DEADLINE).await;
    let stayers = [&o1, &o2, &a, &b];
    let bases: Vec<Replay> = stayers.iter().map(|o| o.exact()).collect();

    redis.kill();
    l.close();
    // n2 serves its own clients meanwhile.
    o2.until("l out (locally)", DEADLINE, |r| !r.members.contains("l"))
        .await;
    redis.restart_empty();
    let healed = Instant::now();

    let truth = ["o1", "o2", "a", "b"];
    all_see(&stayers, &truth, bound(T)).await;
    hold_exact(&stayers, healed + bound(T)).await;
    for (o, base) in stayers.iter().zip(&bases) {
        assert_since(o, base, &truth, &[("l", (0, 1))]);
    }
}

/// e. A node paused (SIGSTOP) past the node timeout, then resumed: the
/// others see its users removed once, then added back once; its own
/// observers end right with an exact stream; nobody else is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_a_node_paused_past_the_timeout_leaves_and_comes_back_once() {
    const T: u64 = 3;
    let redis = Redis::start();
    let n1 = node(&redis.url(), "fe-1", T);
    let n2 = node(&redis.url(), "fe-2", T);
    let o1 = Observer::join(n1.port, "o1").await;
    let a = Observer::join(n1.port, "a").await;
    let both1 = Observer::join(n1.port, "both").await;
    let o2 = Observer::join(n2.port, "o2").await;
    let b = Observer::join(n2.port, "b").await;
    let both2 = Observer::join(n2.port, "both").await;
    let truth = ["o1", "a", "both", "o2", "b"];
    let everyone = [&o1, &a, &both1, &o2, &b, &both2];
    all_see(&everyone, &truth, DEADLINE).await;
    let on_n1 = [&o1, &a, &both1];
    let bases: Vec<Replay> = on_n1.iter().map(|o| o.exact()).collect();
    let bases2: Vec<Replay> = [&o2, &b, &both2].iter().map(|o| o.exact()).collect();

    let pid = n2.child.id();
    signal(pid, "STOP");
    let stopped = Instant::now();
    for o in on_n1 {
        o.until("n2's users removed", bound(T), |r| {
            !r.members.contains("o2") && !r.members.contains("b")
        })
        .await;
    }
    let gone = stopped.elapsed();
    signal(pid, "CONT");
    let cont = Instant::now();

    all_see(&everyone, &truth, bound(T)).await;
    hold_exact(&everyone, cont + bound(T)).await;
    for (o, base) in on_n1.iter().zip(&bases) {
        assert_since(o, base, &truth, &[("o2", (1, 1)), ("b", (1, 1))]);
    }
    // n2's own observers: exact, right, and nobody on n1 ever removed
    // (n2's own users may show as removed and back, consistently).
    for (o, base) in [&o2, &b, &both2].iter().zip(&bases2) {
        let now = o.exact();
        for u in ["o1", "a", "both"] {
            assert_eq!(
                now.of(u),
                base.of(u),
                "{}: {u} changed\n{}",
                o.name,
                o.story()
            );
        }
        for u in ["o2", "b"] {
            let d = (now.of(u).0 - base.of(u).0, now.of(u).1 - base.of(u).1);
            assert!(
                d == (0, 0) || d == (1, 1),
                "{}: {u} {d:?}\n{}",
                o.name,
                o.story()
            );
        }
    }
    assert!(gone < bound(T), "n2's users removed after {gone:?}");
}

/// f. A node killed (SIGKILL): every survivor sees each of its users
/// removed once within the bound, a user also on a survivor never, and
/// nobody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_a_killed_nodes_users_are_removed_once_everywhere() {
    const T: u64 = 3;
    let redis = Redis::start();
    let n1 = node(&redis.url(), "ff-1", T);
    let n2 = node(&redis.url(), "ff-2", T);
    let mut n3 = node(&redis.url(), "ff-3", T);
    let o1 = Observer::join(n1.port, "o1").await;
    let o2 = Observer::join(n2.port, "o2").await;
    let a = Observer::join(n1.port, "a").await;
    let _both1 = Observer::join(n1.port, "both").await;
    let _both3 = Observer::join(n3.port, "both").await;
    let _o3 = Observer::join(n3.port, "o3").await;
    let _c = Observer::join(n3.port, "c").await;
    let survivors = [&o1, &o2, &a];
    all_see(&survivors, &["o1", "o2", "a", "both", "o3", "c"], DEADLINE).await;
    let bases: Vec<Replay> = survivors.iter().map(|o| o.exact()).collect();

    n3.kill();
    let killed = Instant::now();
    let truth = ["o1", "o2", "a", "both"];
    all_see(&survivors, &truth, bound(T)).await;
    let took = killed.elapsed();
    hold_exact(&survivors, killed + bound(T) + Duration::from_secs(1)).await;
    for (o, base) in survivors.iter().zip(&bases) {
        assert_since(o, base, &truth, &[("o3", (0, 1)), ("c", (0, 1))]);
    }
    assert!(took < bound(T), "removed after {took:?}");
}

/// g. A node with much to resync on a slow Redis keeps heartbeating: the
/// others must not take it for dead (and remove its users) meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_a_long_resync_does_not_delay_the_heartbeat() {
    // Longer than the short cut below, so the cut itself sweeps nobody.
    const T: u64 = 5;
    const USERS: usize = 30;
    const SLOW: Duration = Duration::from_millis(200);
    let redis = Redis::start();
    let proxy = Proxy::start(redis.port).await;
    let n1 = node(&redis.url(), "fg-1", T);
    let n2 = node(&proxy.url(), "fg-2", T);
    let o1 = Observer::join(n1.port, "o1").await;
    let o2 = Observer::join(n2.port, "o2").await;
    let s = Observer::join(n2.port, "s").await;
    all_see(&[&o1, &o2, &s], &["o1", "o2", "s"], DEADLINE).await;
    let base = o1.exact();

    // n2 loses Redis briefly; many users join it meanwhile (served locally).
    proxy.set(Mode::Cut);
    let cut = Instant::now();
    // One at a time: concurrent joins race on their own (see
    // `h_concurrent_joins_on_one_node_each_get_an_exact_stream`).
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(Observer::join(n2.port, &format!("u{i:02}")).await);
    }
    let names: Vec<String> = users.iter().map(|u| u.user.clone()).collect();
    o2.until("the users in (locally)", DEADLINE, |r| {
        names.iter().all(|n| r.members.contains(n))
    })
    .await;
    assert!(
        cut.elapsed() < Duration::from_secs(T - 2),
        "setup too slow: {:?}",
        cut.elapsed()
    );
    // Redis is back for n2, but slow: every reply takes SLOW. Today's
    // resync makes two round trips per user, one after the other
    // (> 2 * USERS * SLOW = 12 s, well past the node timeout).
    proxy.set(Mode::Delay(SLOW));
    let healed = Instant::now();
    let within = Duration::from_secs(20);
    o1.until("n2's new users, n2 never swept", within, |r| {
        assert_eq!(
            (r.of("s").1, r.of("o2").1),
            (0, 0),
            "n1 removed n2's users: n2 was taken for dead after {:?}\n{}",
            healed.elapsed(),
            o1.story()
        );
        names.iter().all(|n| r.members.contains(n))
    })
    .await;
    let done = Instant::now();
    let everyone: Vec<&Observer> = [&o1, &o2, &s].into_iter().chain(&users).collect();
    let mut truth: Vec<&str> = vec!["o1", "o2", "s"];
    truth.extend(names.iter().map(String::as_str));
    all_see(&everyone, &truth, bound(T)).await;
    hold_exact(&everyone, done + bound(T)).await;
    let want: Vec<(&str, (u32, u32))> = names.iter().map(|n| (n.as_str(), (1, 0))).collect();
    assert_since(&o1, &base, &truth, &want);
}

/// h. Many users join one node at once (a healthy cluster): each joiner's
/// stream is exact too: a user both in its roster and in a
/// `member_added` held while its join was pending is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_concurrent_joins_on_one_node_each_get_an_exact_stream() {
    const T: u64 = 3;
    const USERS: usize = 20;
    let redis = Redis::start();
    let n1 = node(&redis.url(), "fh-1", T);
    let n2 = node(&redis.url(), "fh-2", T);
    let o1 = Observer::join(n1.port, "o1").await;
    let o2 = Observer::join(n2.port, "o2").await;
    all_see(&[&o1, &o2], &["o1", "o2"], DEADLINE).await;
    let users: Vec<Observer> = (0..USERS)
        .map(|i| Observer::start(n1.port, &format!("u{i:02}")))
        .collect();
    let mut truth: Vec<&str> = vec!["o1", "o2"];
    truth.extend(users.iter().map(|u| u.user.as_str()));
    let everyone: Vec<&Observer> = [&o1, &o2].into_iter().chain(&users).collect();
    all_see(&everyone, &truth, DEADLINE).await;
    hold_exact(&everyone, Instant::now() + Duration::from_secs(1)).await;
}
