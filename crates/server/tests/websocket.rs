//! The WebSocket side of the server, frame by frame, with raw frames.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use whosin_protocol::frame::ServerFrame;
use whosin_protocol::sign;

#[tokio::test]
async fn connection_established_has_socket_id_and_timeout() {
    let server = start(config()).await;
    let c = Client::connect(server.local_addr()).await;
    let (a, b) = c.socket_id.split_once('.').expect("socket id has a dot");
    assert!(
        !a.is_empty() && a.bytes().all(|x| x.is_ascii_digit()),
        "{}",
        c.socket_id
    );
    assert!(
        !b.is_empty() && b.bytes().all(|x| x.is_ascii_digit()),
        "{}",
        c.socket_id
    );
    assert_eq!(c.activity_timeout, 120);
    let c2 = Client::connect(server.local_addr()).await;
    assert_ne!(c.socket_id, c2.socket_id);
}

#[tokio::test]
async fn unknown_key_gets_4001() {
    let server = start(config()).await;
    let Err((frame, ws)) = Client::connect_key(server.local_addr(), "nope").await else {
        panic!("unknown key accepted");
    };
    assert!(
        matches!(
            frame,
            ServerFrame::Error {
                code: Some(4001),
                ..
            }
        ),
        "{frame:?}"
    );
    let mut c = Client {
        ws,
        socket_id: String::new(),
        activity_timeout: 0,
    };
    assert_eq!(c.closed(DEADLINE).await, Ended::Closed(4001));
}

#[tokio::test]
async fn over_connection_quota_gets_4004_and_frees_on_close() {
    let mut cfg = config();
    cfg.apps[0].max_connections = 2;
    let server = start(cfg).await;
    let addr = server.local_addr();
    let a = Client::connect(addr).await;
    let _b = Client::connect(addr).await;
    let Err((frame, ws)) = Client::connect_key(addr, KEY).await else {
        panic!("third connection accepted over a quota of 2");
    };
    assert!(
        matches!(
            frame,
            ServerFrame::Error {
                code: Some(4004),
                ..
            }
        ),
        "{frame:?}"
    );
    let mut c = Client {
        ws,
        socket_id: String::new(),
        activity_timeout: 0,
    };
    assert_eq!(c.closed(DEADLINE).await, Ended::Closed(4004));
    a.close().await;
    // The slot comes back once the server has seen the close.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if Client::connect_key(addr, KEY).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn ping_gets_pong() {
    let server = start(config()).await;
    let mut c = Client::connect(server.local_addr()).await;
    c.send(r#"{"event":"pusher:ping","data":{}}"#).await;
    assert_eq!(c.next().await, ServerFrame::Pong);
}

#[tokio::test]
async fn public_and_private_subscriptions() {
    let server = start(config()).await;
    let mut c = Client::connect(server.local_addr()).await;
    assert_eq!(
        c.subscribe_public("news").await,
        ServerFrame::SubscriptionSucceeded {
            channel: "news".into(),
            members: None
        }
    );
    assert_eq!(
        c.subscribe_private("private-room").await,
        ServerFrame::SubscriptionSucceeded {
            channel: "private-room".into(),
            members: None
        }
    );
    // Data as a string (other clients do this) works as well.
    let auth = sign::channel_auth(KEY, SECRET, &c.socket_id, "private-two", None);
    let data = json!({"channel":"private-two","auth":auth}).to_string();
    c.send_json(json!({"event":"pusher:subscribe","data":data}))
        .await;
    assert!(matches!(
        c.next().await,
        ServerFrame::SubscriptionSucceeded { .. }
    ));
}

async fn expect_sub_error(c: &mut Client, channel: &str, status: u16, contains: &str) {
    match c.next().await {
        ServerFrame::SubscriptionError {
            channel: ch,
            status: st,
            error,
        } => {
            assert_eq!(ch, channel);
            assert_eq!(st, status, "{error}");
            assert!(
                error.contains(contains),
                "{error:?} should mention {contains:?}"
            );
        }
        other => panic!("expected subscription_error, got {other:?}"),
    }
}

#[tokio::test]
async fn subscription_errors_say_why() {
    let mut cfg = config();
    cfg.apps[0].max_user_info_bytes = 100;
    let server = start(cfg).await;
    let mut c = Client::connect(server.local_addr()).await;

    // Invalid channel name.
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"bad name"}}))
        .await;
    expect_sub_error(&mut c, "bad name", 400, "invalid channel name").await;
    let long = "a".repeat(165);
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":long}}))
        .await;
    expect_sub_error(&mut c, &long, 400, "limit is 164").await;

    // Missing and bad signatures.
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"private-x"}}))
        .await;
    expect_sub_error(&mut c, "private-x", 401, "auth").await;
    let forged = sign::channel_auth(KEY, "wrong-secret", &c.socket_id, "private-x", None);
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"private-x","auth":forged}}))
        .await;
    expect_sub_error(&mut c, "private-x", 401, "invalid signature").await;
    let other_key = sign::channel_auth("other", SECRET, &c.socket_id, "private-x", None);
    c.send_json(
        json!({"event":"pusher:subscribe","data":{"channel":"private-x","auth":other_key}}),
    )
    .await;
    expect_sub_error(&mut c, "private-x", 401, "key").await;
    // Signed for another socket.
    let replay = sign::channel_auth(KEY, SECRET, "1.1", "private-x", None);
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"private-x","auth":replay}}))
        .await;
    expect_sub_error(&mut c, "private-x", 401, "invalid signature").await;

    // Presence: missing channel_data.
    let auth = sign::channel_auth(KEY, SECRET, &c.socket_id, "presence-p", None);
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"presence-p","auth":auth}}))
        .await;
    expect_sub_error(&mut c, "presence-p", 400, "channel_data").await;
    // Invalid channel_data (signed, but not a user).
    c.send_presence("presence-p", r#"{"name":"no id"}"#).await;
    expect_sub_error(&mut c, "presence-p", 400, "user_id").await;
    c.send_presence("presence-p", "not json").await;
    expect_sub_error(&mut c, "presence-p", 400, "user_id").await;
    // user_id over 128 characters.
    c.send_presence("presence-p", &presence_data(&"u".repeat(129)))
        .await;
    expect_sub_error(&mut c, "presence-p", 400, "limit is 128").await;
    // user_info over the limit.
    let big = json!({"user_id":"u1","user_info":{"bio":"x".repeat(200)}}).to_string();
    c.send_presence("presence-p", &big).await;
    expect_sub_error(&mut c, "presence-p", 413, "limit is 100").await;

    // Nothing above joined anything, and the connection still works.
    assert_eq!(c.join("presence-p", "ok-user").await.len(), 1);
    assert!(server.shared().apps[0].users("presence-p").unwrap() == vec!["ok-user".to_owned()]);
}

#[tokio::test]
async fn presence_join_leave_is_per_user() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let ch = "presence-room";
    let mut a = Client::connect(addr).await;
    let me = a.join(ch, "alice").await;
    assert_eq!(
        me,
        vec![("alice".into(), r#"{"name":"name of alice"}"#.into())]
    );

    let mut b1 = Client::connect(addr).await;
    let roster = b1.join(ch, "bob").await;
    assert_eq!(
        roster.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"],
        "joiner is in its own roster"
    );
    assert_eq!(
        a.next().await,
        ServerFrame::MemberAdded {
            channel: ch.into(),
            user_id: "bob".into(),
            user_info: r#"{"name":"name of bob"}"#.into()
        }
    );
    // Bob's second and third connections: no member_added to anyone.
    let mut b2 = Client::connect(addr).await;
    assert_eq!(b2.join(ch, "bob").await.len(), 2);
    let b3 = Client::connect(addr).await;
    let mut b3 = b3;
    assert_eq!(b3.join(ch, "bob").await.len(), 2);
    assert_eq!(
        a.drain().await,
        vec![],
        "a second tab must not announce the user again"
    );
    assert_eq!(b1.drain().await, vec![]);
    let info = server.shared().apps[0].channel_info(ch).await.unwrap();
    assert_eq!((info.subscription_count, info.user_count), (4, Some(2)));

    // Two of three close (one by unsubscribe, one by closing): bob stays.
    b2.send_json(json!({"event":"pusher:unsubscribe","data":{"channel":ch}}))
        .await;
    assert_eq!(b2.drain().await, vec![]);
    b3.close().await;
    assert_eq!(b2.drain().await, vec![]);
    assert_eq!(a.drain().await, vec![], "bob still has a connection");
    // The last one closes: exactly one member_removed.
    b1.close().await;
    assert_eq!(
        a.next().await,
        ServerFrame::MemberRemoved {
            channel: ch.into(),
            user_id: "bob".into()
        }
    );
    assert_eq!(a.drain().await, vec![]);
    assert_eq!(
        server.shared().apps[0].users(ch).unwrap(),
        vec!["alice".to_owned()]
    );
    a.close().await;
    // Everyone left: the channel is gone, occupancy back to zero.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while server.shared().apps[0].channel_info(ch).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "channel still occupied"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn member_cap_refuses_new_users_but_not_second_tabs() {
    let mut cfg = config();
    cfg.apps[0].max_presence_members = 2;
    let server = start(cfg).await;
    let addr = server.local_addr();
    let ch = "presence-small";
    let mut a = Client::connect(addr).await;
    a.join(ch, "a").await;
    let mut b = Client::connect(addr).await;
    b.join(ch, "b").await;
    let mut c = Client::connect(addr).await;
    c.send_presence(ch, &presence_data("c")).await;
    expect_sub_error(&mut c, ch, 403, "full").await;
    let mut a2 = Client::connect(addr).await;
    assert_eq!(
        a2.join(ch, "a").await.len(),
        2,
        "a present user's second tab is admitted"
    );
}

#[tokio::test]
async fn client_events_are_off_unless_the_app_enables_them() {
    let mut cfg = config();
    cfg.apps[0].client_events = false;
    let server = start(cfg).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.subscribe_private("private-r").await;
    b.subscribe_private("private-r").await;
    a.send_json(json!({"event":"client-x","channel":"private-r","data":{}}))
        .await;
    assert!(
        matches!(a.next().await, ServerFrame::Error { code: None, message } if message.contains("not enabled") && message.contains("--enable-client-events"))
    );
    assert_eq!(b.drain().await, vec![], "nothing delivered");
}

#[tokio::test]
async fn client_event_names_are_at_most_200_characters() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.subscribe_private("private-r").await;
    b.subscribe_private("private-r").await;
    let long = format!("client-{}", "n".repeat(194));
    a.send_json(json!({"event":long,"channel":"private-r","data":{}}))
        .await;
    assert!(
        matches!(a.next().await, ServerFrame::Error { message, .. } if message.contains("201 characters"))
    );
    let fits = format!("client-{}", "n".repeat(193));
    a.send_json(json!({"event":fits,"channel":"private-r","data":{}}))
        .await;
    assert!(matches!(b.next().await, ServerFrame::Event { event, .. } if event == fits));
}

#[tokio::test]
async fn client_events_rules() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.subscribe_public("pub").await;
    a.send_json(json!({"event":"client-x","channel":"pub","data":{}}))
        .await;
    assert!(
        matches!(a.next().await, ServerFrame::Error { code: None, message } if message.contains("private and presence"))
    );
    a.send_json(json!({"event":"client-x","channel":"private-z","data":{}}))
        .await;
    assert!(
        matches!(a.next().await, ServerFrame::Error { message, .. } if message.contains("subscribe"))
    );

    // Private: relayed to the other subscriber unchanged, never echoed.
    a.subscribe_private("private-r").await;
    b.subscribe_private("private-r").await;
    a.send(r#"{"event":"client-typing","channel":"private-r","data":{"k": [1,2]}}"#)
        .await;
    match b.next().await {
        ServerFrame::Event {
            event,
            channel,
            data,
            user_id,
        } => {
            assert_eq!(
                (event.as_str(), channel.as_deref(), data.as_str(), user_id),
                ("client-typing", Some("private-r"), r#"{"k": [1,2]}"#, None)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.drain().await, vec![], "no echo to the sender");

    // Presence: user_id added.
    a.join("presence-r", "ann").await;
    b.join("presence-r", "ben").await;
    let _ = a.next().await; // member_added ben
    b.send(r#"{"event":"client-hi","channel":"presence-r","data":"hello"}"#)
        .await;
    match a.next().await {
        ServerFrame::Event {
            event,
            user_id,
            data,
            ..
        } => {
            assert_eq!(
                (event.as_str(), user_id.as_deref(), data.as_str()),
                ("client-hi", Some("ben"), "hello")
            );
        }
        other => panic!("{other:?}"),
    }
    // Oversized data is refused with an error, connection kept.
    let big = "x".repeat(11 * 1024);
    b.send_json(json!({"event":"client-big","channel":"presence-r","data":big}))
        .await;
    assert!(
        matches!(b.next().await, ServerFrame::Error { message, .. } if message.contains("limit"))
    );
    assert_eq!(a.drain().await, vec![]);
}

#[tokio::test]
async fn client_event_flood_is_closed_with_4301() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.subscribe_private("private-f").await;
    b.subscribe_private("private-f").await;
    for i in 0..11 {
        a.send_json(json!({"event":"client-n","channel":"private-f","data":{"i":i}}))
            .await;
    }
    assert_eq!(a.closed(DEADLINE).await, Ended::Closed(4301));
    // At most 10 made it through to b; b itself is unaffected.
    let got = b
        .drain()
        .await
        .into_iter()
        .filter(|f| matches!(f, ServerFrame::Event { .. }))
        .count();
    assert!(got <= 10, "{got} events passed the limit of 10/s");
}

#[tokio::test]
async fn idle_client_is_pinged_and_a_silent_one_closed_with_4201() {
    let mut cfg = config();
    cfg.activity_timeout = Duration::from_secs(1);
    cfg.pong_timeout = Duration::from_millis(500);
    let server = start(cfg).await;
    let addr = server.local_addr();
    let mut watcher = Client::connect(addr).await;
    watcher.join("presence-h", "watcher").await;

    // An idle client is pinged after activity_timeout.
    let mut idle = Client::connect(addr).await;
    assert_eq!(idle.activity_timeout, 1);
    assert_eq!(idle.next().await, ServerFrame::Ping);
    idle.close().await;

    // A half-open client: joined, then silent (never reads, never answers).
    let mut silent = Client::connect(addr).await;
    silent.join("presence-h", "ghost").await;
    assert!(matches!(
        watcher.next_answering().await,
        ServerFrame::MemberAdded { .. }
    ));
    let started = tokio::time::Instant::now();
    // The watcher keeps answering pings, and sees the ghost removed within
    // activity_timeout + pong_timeout (plus scheduling slack).
    let removed = watcher.next_answering().await;
    assert_eq!(
        removed,
        ServerFrame::MemberRemoved {
            channel: "presence-h".into(),
            user_id: "ghost".into()
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(silent.closed(DEADLINE).await, Ended::Closed(4201));
    // The watcher, which answered every ping meanwhile, is still there.
    watcher.send(r#"{"event":"pusher:ping","data":{}}"#).await;
    assert_eq!(watcher.next_answering().await, ServerFrame::Pong);
}

/// A client that stops reading with its socket buffers full and nothing
/// more queued for it (so the queue bound never trips): the write to it is
/// stuck, and the activity timer must still find it dead.
#[tokio::test]
async fn a_reader_stuck_behind_full_socket_buffers_is_closed_by_the_activity_timer() {
    let mut cfg = config();
    cfg.activity_timeout = Duration::from_secs(1);
    cfg.pong_timeout = Duration::from_millis(500);
    cfg.outbound_queue = 100_000;
    cfg.outbound_queue_bytes = 1 << 30;
    let server = start(cfg).await;
    let addr = server.local_addr();
    let mut watcher = Client::connect(addr).await;
    watcher.join("presence-stuck", "watcher").await;
    let mut stuck = Client::connect(addr).await;
    stuck.join("presence-stuck", "stuck").await;
    stuck.subscribe_public("firehose").await;
    assert!(matches!(
        watcher.next_answering().await,
        ServerFrame::MemberAdded { .. }
    ));
    // 32 MB for a client that never reads again: more than loopback socket
    // buffers take, far less than its queue bounds (frames and bytes).
    let app = server.shared().apps[0].clone();
    let payload = "p".repeat(64 * 1024);
    for _ in 0..512 {
        app.trigger(&["firehose".to_owned()], "tick", &payload, None);
    }
    let started = tokio::time::Instant::now();
    let removed = tokio::time::timeout(Duration::from_secs(10), watcher.next_answering())
        .await
        .expect("the stuck reader removed within 10 s");
    assert_eq!(
        removed,
        ServerFrame::MemberRemoved {
            channel: "presence-stuck".into(),
            user_id: "stuck".into()
        },
        "after {:?}",
        started.elapsed()
    );
    assert_eq!(
        server
            .shared()
            .metrics
            .slow_client_disconnects
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "closed by the timer, not by the queue bound"
    );
}

#[tokio::test]
async fn graceful_shutdown_closes_with_4200_without_announcing_departures() {
    let server = start(config()).await;
    let mut a = Client::connect(server.local_addr()).await;
    a.join("presence-s", "a").await;
    let mut b = Client::connect(server.local_addr()).await;
    b.join("presence-s", "b").await;
    assert!(matches!(a.next().await, ServerFrame::MemberAdded { .. }));
    let stop = tokio::spawn(server.shutdown());
    // Everyone is being closed: nobody is told that the others left.
    for c in [&mut a, &mut b] {
        loop {
            match c.next_or_end(DEADLINE).await {
                Ok(ServerFrame::Ping) => {}
                Ok(other) => panic!("unexpected frame during shutdown: {other:?}"),
                Err(end) => {
                    assert_eq!(end, Ended::Closed(4200));
                    break;
                }
            }
        }
    }
    tokio::time::timeout(DEADLINE, stop).await.unwrap().unwrap();
}

#[tokio::test]
async fn slow_reader_is_dropped_and_others_get_everything() {
    let mut cfg = config();
    cfg.outbound_queue = 16;
    slow_reader_is_dropped(cfg).await;
}

/// The same with a frame bound that never trips: the byte bound (256 kB,
/// 32 of these 8 kB events) is what closes the slow reader.
#[tokio::test]
async fn slow_reader_is_dropped_by_the_byte_bound() {
    let mut cfg = config();
    cfg.outbound_queue = 100_000;
    cfg.outbound_queue_bytes = 256 * 1024;
    slow_reader_is_dropped(cfg).await;
}

async fn slow_reader_is_dropped(cfg: whosin_server::ServerConfig) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let server = start(cfg).await;
    let addr = server.local_addr();
    let mut slow = Client::connect(addr).await;
    slow.subscribe_public("firehose").await;
    let mut fast = Client::connect(addr).await;
    fast.subscribe_public("firehose").await;
    let app = server.shared().apps[0].clone();
    let payload = "p".repeat(8 * 1024);
    let total = 4000; // 32 MB: far more than socket buffers hold for the stalled reader
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    // The fast reader reads concurrently; the slow one never reads again.
    let reader = tokio::spawn(async move {
        while counter.load(Ordering::Acquire) < total {
            match fast.next().await {
                ServerFrame::Event { .. } => counter.fetch_add(1, Ordering::AcqRel),
                other => panic!("{other:?}"),
            };
        }
    });
    // Publish in rounds no larger than the queue, at the fast reader's pace.
    for round in 0..(total / 8) {
        for _ in 0..8 {
            app.trigger(&["firehose".to_owned()], "tick", &payload, None);
        }
        let want = (round + 1) * 8;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while received.load(Ordering::Acquire) < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fast reader stuck at {} of {want}",
                received.load(Ordering::Acquire)
            );
            tokio::task::yield_now().await;
        }
    }
    tokio::time::timeout(DEADLINE, reader)
        .await
        .unwrap()
        .unwrap();
    let m = &server.shared().metrics;
    assert_eq!(m.slow_client_disconnects.load(Ordering::Relaxed), 1);
    assert_eq!(
        app.channel_info("firehose")
            .await
            .map(|i| i.subscription_count),
        Some(1),
        "the slow client left the channel"
    );
    // When it reads again it finds the end: 4100 if the close frame got
    // through, else a dropped stream (a peer that stopped reading may never
    // take the close frame).
    let end = slow.closed(Duration::from_secs(20)).await;
    assert!(
        matches!(end, Ended::Closed(4100) | Ended::Dropped),
        "{end:?}"
    );
}

#[tokio::test]
async fn terminate_connections_closes_the_users_connections_with_4009() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let mut w = Client::connect(addr).await;
    w.join("presence-t", "w").await;
    let mut x1 = Client::connect(addr).await;
    x1.join("presence-t", "x").await;
    let mut x2 = Client::connect(addr).await;
    x2.join("presence-t", "x").await;
    let _ = w.next().await; // member_added x
    let r = rest(
        addr,
        "POST",
        &format!("/apps/{APP_ID}/users/x/terminate_connections"),
        &[],
        "{}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(x1.closed(DEADLINE).await, Ended::Closed(4009));
    assert_eq!(x2.closed(DEADLINE).await, Ended::Closed(4009));
    assert_eq!(
        w.next().await,
        ServerFrame::MemberRemoved {
            channel: "presence-t".into(),
            user_id: "x".into()
        }
    );
}

#[tokio::test]
async fn signin_is_verified() {
    let server = start(config()).await;
    let mut c = Client::connect(server.local_addr()).await;
    let user_data = r#"{"id":"u-9"}"#;
    let bad = sign::signin_auth(KEY, "nope", &c.socket_id, user_data);
    c.send_json(json!({"event":"pusher:signin","data":{"auth":bad,"user_data":user_data}}))
        .await;
    assert!(matches!(
        c.next().await,
        ServerFrame::Error {
            code: Some(4009),
            ..
        }
    ));
    let good = sign::signin_auth(KEY, SECRET, &c.socket_id, user_data);
    c.send_json(json!({"event":"pusher:signin","data":{"auth":good,"user_data":user_data}}))
        .await;
    assert!(
        matches!(c.next().await, ServerFrame::Event { event, .. } if event == "pusher:signin_success")
    );
    let r = rest(
        server.local_addr(),
        "POST",
        &format!("/apps/{APP_ID}/users/u-9/terminate_connections"),
        &[],
        "{}",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(c.closed(DEADLINE).await, Ended::Closed(4009));
}

#[tokio::test]
async fn oversized_frames_are_closed_with_1009() {
    let server = start(config()).await;
    let mut c = Client::connect(server.local_addr()).await;
    c.send("x".repeat(100 * 1024)).await;
    assert_eq!(c.closed(DEADLINE).await, Ended::Closed(1009));
}

#[tokio::test]
async fn a_half_sent_handshake_is_dropped_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config();
    cfg.header_read_timeout = Duration::from_millis(300);
    let server = start(cfg).await;
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /app/test-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut rest))
        .await
        .expect("the server hangs up on a client that never finishes its headers")
        .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        started.elapsed()
    );
    // A complete handshake on a new connection still works.
    Client::connect(server.local_addr()).await;
}

/// A member that repeats its presence subscribe gets the roster again a few
/// times a second, then `subscription_error` 429, and stays connected and
/// present (it did nothing wrong beyond asking too often).
#[tokio::test]
async fn repeated_presence_subscribes_are_rate_limited() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr).await;
    a.join("presence-r", "ann").await;
    let data = presence_data("ann");
    for _ in 0..20 {
        a.send_presence("presence-r", &data).await;
    }
    let frames = a.drain().await;
    let confirmed = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::SubscriptionSucceeded { .. }))
        .count();
    let refused = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::SubscriptionError { status: 429, .. }))
        .count();
    assert!((1..=5).contains(&confirmed), "{frames:?}");
    assert_eq!(confirmed + refused, 20, "{frames:?}");
    let mut b = Client::connect(addr).await;
    assert_eq!(
        b.join("presence-r", "bob").await.len(),
        2,
        "ann still present"
    );
}

/// One connection asking for 1000 channels gets the first 100 (the default
/// limit); each further subscribe is refused with `pusher:error` 4302 and a
/// `subscription_error`, the connection stays, and leaving one frees a slot.
#[tokio::test]
async fn channels_per_connection_are_bounded() {
    let server = start(config()).await;
    let mut c = Client::connect(server.local_addr()).await;
    for i in 0..1000 {
        c.send_json(json!({"event":"pusher:subscribe","data":{"channel":format!("ch-{i}")}}))
            .await;
    }
    let frames = c.drain().await;
    let ok = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::SubscriptionSucceeded { .. }))
        .count();
    let limited = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::Error { code: Some(4302), message } if message.contains("100 channels")))
        .count();
    let refused = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::SubscriptionError { status: 403, .. }))
        .count();
    assert_eq!((ok, limited, refused), (100, 900, 900));
    assert_eq!(
        server.shared().apps[0].channels("ch-").await.len(),
        100,
        "only the first 100 are held"
    );
    c.send_json(json!({"event":"pusher:unsubscribe","data":{"channel":"ch-0"}}))
        .await;
    assert!(matches!(
        c.subscribe_public("ch-999").await,
        ServerFrame::SubscriptionSucceeded { .. }
    ));
}
