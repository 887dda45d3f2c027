//! The client crate against `whosin serve` running as a separate process:
//! joins and leaves, server restarts (graceful and SIGKILL), a half-open
//! link, and the HTTP authorizer against the server's own auth endpoint.

mod common;

use common::*;
use std::time::Duration;
use whosin_client::{Client, ConnectionState, Endpoint, Event, HttpAuthorizer};

#[tokio::test]
async fn join_and_leave() {
    let server = ServerProcess::start(&[]);
    let (a, alog) = visitor(&server.url(), "alice");
    alog.wait_for(0, "alice's snapshot", |e| matches!(e, Event::Snapshot { members, me: Some(me), .. } if members.len() == 1 && me.id == "alice")).await;
    let (b, blog) = visitor(&server.url(), "bob");
    blog.wait_for(
        0,
        "bob's snapshot",
        |e| matches!(e, Event::Snapshot { members, .. } if members.len() == 2),
    )
    .await;
    alog.wait_for(
        0,
        "bob added",
        |e| matches!(e, Event::MemberAdded { member, count: 2, .. } if member.id == "bob"),
    )
    .await;
    let (me, members) = a.members(CHANNEL).unwrap();
    assert_eq!(me.unwrap().info["name"], "alice");
    assert_eq!(
        members.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    b.close();
    blog.wait_for(0, "bob disconnected", |e| {
        matches!(e, Event::State(ConnectionState::Disconnected { .. }))
    })
    .await;
    alog.wait_for(
        0,
        "bob removed",
        |e| matches!(e, Event::MemberRemoved { member, count: 1, .. } if member.id == "bob"),
    )
    .await;
    let (roster, tally) = replay(&alog.all());
    assert_eq!(roster, ["alice"]);
    assert_eq!(tally["bob"], (1, 1));
}

/// Restarts the server under three visitors while one of them leaves, and
/// checks the survivors come back with the right roster and a consistent
/// event stream (no duplicates, no missing removal).
async fn restart(kill: bool) {
    let mut server = ServerProcess::start(&[]);
    let port = server.port;
    let url = server.url();
    let (a, alog) = visitor(&url, "alice");
    let (b, blog) = visitor(&url, "bob");
    let (c, clog) = visitor(&url, "carol");
    for log in [&alog, &blog, &clog] {
        log.connected(0).await;
    }
    roster_becomes(&a, &["alice", "bob", "carol"]).await;
    let mark = alog.len();
    if kill {
        server.kill();
    } else {
        server.terminate();
    }
    alog.wait_for(mark, "alice reconnecting", |e| {
        matches!(e, Event::State(ConnectionState::Reconnecting { .. }))
    })
    .await;
    // Carol leaves while the server is down; the others keep their last roster.
    c.close();
    clog.wait_for(0, "carol closed", |e| {
        matches!(e, Event::State(ConnectionState::Disconnected { .. }))
    })
    .await;
    assert_eq!(
        a.members(CHANNEL).unwrap().1.len(),
        3,
        "the last roster is kept while reconnecting"
    );
    let _server = ServerProcess::start_on(port, &[]);
    let back = std::time::Instant::now();
    alog.connected(mark).await;
    blog.connected(1).await;
    // Backoff is capped at 800 ms in these visitors; allow for scheduling.
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "back after {:?}",
        back.elapsed()
    );
    roster_becomes(&a, &["alice", "bob"]).await;
    roster_becomes(&b, &["alice", "bob"]).await;
    let (final_roster, tally) = replay(&alog.all());
    assert_eq!(final_roster, ["alice", "bob"]);
    // Carol was in the first snapshot or added once after it; removed exactly once.
    let carol = tally["carol"];
    assert!(carol.0 <= 1 && carol.1 == 1, "carol {carol:?}");
    // Bob may have been seen leaving and coming back if alice resubscribed
    // first; replay() already proved that was consistent.
    let bob = tally.get("bob").copied().unwrap_or((0, 0));
    assert_eq!(
        bob.0,
        bob.1 + u32::from(bob.0 > bob.1),
        "bob's adds and removes alternate"
    );
    drop(b);
}

#[tokio::test]
async fn server_restart_graceful() {
    restart(false).await;
}

#[tokio::test]
async fn server_restart_sigkill() {
    restart(true).await;
}

#[tokio::test]
async fn half_open_link_is_detected_and_recovered() {
    let server = ServerProcess::start(&["--activity-timeout", "1", "--pong-timeout", "1"]);
    let relay = Relay::start(server.port).await;
    let (a, alog) = visitor(&server.url(), "alice");
    alog.connected(0).await;
    let (b, blog) = visitor(&relay.url(), "bob");
    blog.connected(0).await;
    roster_becomes(&a, &["alice", "bob"]).await;
    let mark = blog.len();
    relay.freeze();
    let frozen_at = std::time::Instant::now();
    let i = blog
        .wait_for(mark, "bob notices the dead link", |e| {
            matches!(e, Event::State(ConnectionState::Reconnecting { reason, .. }) if reason.contains("ping"))
        })
        .await;
    // activity_timeout (1 s, from the server) + pong timeout (1 s) + slack.
    assert!(
        frozen_at.elapsed() < Duration::from_secs(4),
        "detected after {:?}",
        frozen_at.elapsed()
    );
    blog.connected(i).await;
    roster_becomes(&b, &["alice", "bob"]).await;
    roster_becomes(&a, &["alice", "bob"]).await;
    replay(&alog.all());
    replay(&blog.all());
}

#[tokio::test]
async fn http_authorizer_against_the_servers_endpoint() {
    let server = ServerProcess::start(&[]);
    let auth = HttpAuthorizer::new(server.auth_url())
        .param("visitor_id", "v-http")
        .param("name", "Zed");
    let (client, events) = Client::builder(Endpoint::parse(&server.url(), KEY).unwrap())
        .authorizer(auth)
        .connect();
    let log = Log::new(events);
    client.subscribe(CHANNEL);
    log.wait_for(0, "snapshot with me", |e| {
        matches!(e, Event::Snapshot { me: Some(me), .. }
            if me.id == "v-http" && me.info["name"] == "Zed" && me.info["ip"] == "127.0.0.1")
    })
    .await;
    // A channel the endpoint does not sign: a refusal that says 403.
    client.subscribe("presence-elsewhere");
    log.wait_for(0, "refusal", |e| {
        matches!(e, Event::SubscriptionFailed { channel, status: Some(403), message } if channel == "presence-elsewhere" && message.contains("403"))
    })
    .await;
}

#[tokio::test]
async fn unknown_key_stops_without_retrying() {
    let server = ServerProcess::start(&[]);
    let (client, events) =
        Client::builder(Endpoint::parse(&server.url(), "no-such-key").unwrap()).connect();
    let log = Log::new(events);
    let i = log
        .wait_for(0, "stop", |e| {
            matches!(
                e,
                Event::State(ConnectionState::Disconnected {
                    reason: whosin_client::StopReason::UnknownAppKey(_)
                })
            )
        })
        .await;
    assert!(
        !log.all()[..i]
            .iter()
            .any(|e| matches!(e, Event::State(ConnectionState::Reconnecting { .. }))),
        "4001 must not be retried"
    );
    drop(client);
}

#[tokio::test]
async fn client_events_between_visitors() {
    let server = ServerProcess::start(&["--enable-client-events"]);
    let (a, alog) = visitor(&server.url(), "alice");
    let (b, blog) = visitor(&server.url(), "bob");
    roster_becomes(&a, &["alice", "bob"]).await;
    roster_becomes(&b, &["alice", "bob"]).await;
    a.trigger(CHANNEL, "wave", serde_json::json!({"hi": true}));
    blog.wait_for(0, "wave", |e| {
        matches!(e, Event::Message { event, user_id: Some(u), data, .. } if event == "client-wave" && u == "alice" && data.contains("hi"))
    })
    .await;
    assert!(
        !alog
            .all()
            .iter()
            .any(|e| matches!(e, Event::Message { .. })),
        "not echoed"
    );
}
