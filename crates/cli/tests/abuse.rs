//! A public presence page that cannot be flooded, faked or hijacked
//! (issue 13), checked against `whosin serve` as a process.
//!
//! Every test talks to 127.0.0.1 only. Other client addresses are made by
//! `X-Forwarded-For`, which the server believes from loopback peers by
//! default (a reverse proxy on the same host): that is also how a real
//! deployment behind nginx passes them.

mod common;

use common::raw::{data, Raw};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What the auth endpoint answered.
struct Signed {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Signed {
    fn user_id(&self) -> String {
        let cd: Value = serde_json::from_str(self.body["channel_data"].as_str().unwrap()).unwrap();
        cd["user_id"].as_str().unwrap().to_owned()
    }
}

/// Asks the auth endpoint on `port` to sign `channel` for `socket_id`, as
/// `from` (`X-Forwarded-For`), with extra form fields.
async fn sign(
    http: &reqwest::Client,
    port: u16,
    from: Option<&str>,
    socket_id: &str,
    extra: &[(&str, &str)],
) -> Signed {
    let mut form = vec![("socket_id", socket_id), ("channel_name", CHANNEL)];
    form.extend_from_slice(extra);
    let mut req = http
        .post(format!("http://127.0.0.1:{port}/pusher/auth"))
        .form(&form);
    if let Some(ip) = from {
        req = req.header("x-forwarded-for", ip);
    }
    let r = req.send().await.expect("auth endpoint answers");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    Signed {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// `whosin_limited_total{limit="…"}` as `/metrics` shows it.
async fn limited(http: &reqwest::Client, port: u16, limit: &str) -> u64 {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("whosin_limited_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
}

/// One address gets its concurrent connections and no more (429 with
/// `Retry-After`, before the upgrade), then its new connections per minute;
/// another address and loopback clients are not affected; a closed
/// connection frees its place; the process-wide cap refuses with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_and_in_all_are_capped() {
    let server = ServerProcess::start(&[
        "--max-connections-per-ip",
        "5",
        "--new-connections-per-ip-per-minute",
        "8",
        "--max-total-connections",
        "20",
    ]);
    let port = server.port;
    let http = reqwest::Client::new();
    let a = Some("203.0.113.10");
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(Raw::open(port, a, None).await.expect("within the limit"));
    }
    let refused = Raw::open(port, a, None)
        .await
        .err()
        .expect("a sixth is refused");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.retry_after.is_some(), "{refused:?}");
    assert!(refused.body.contains("5 connections"), "{refused:?}");
    assert_eq!(limited(&http, port, "connections_per_ip").await, 1);

    // Another address, and loopback clients (exempt), are not affected.
    let other = Raw::open(port, Some("203.0.113.11"), None).await;
    assert!(other.is_ok());
    let mut local = Vec::new();
    for _ in 0..8 {
        local.push(
            Raw::open(port, None, None)
                .await
                .expect("loopback is exempt"),
        );
    }

    // A closed connection frees its place (the server sees the close
    // asynchronously: retry within the deadline).
    drop(held.pop());
    let until = Instant::now() + DEADLINE;
    let reopened = loop {
        match Raw::open(port, a, None).await {
            Ok(r) => break r,
            Err(e) if e.status == 429 && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("a freed place was not given back: {e:?}"),
        }
    };
    held.push(reopened);
    // 6 of the 8 new connections a minute are used; two more, then 429.
    for _ in 0..2 {
        drop(held.pop());
        let until = Instant::now() + DEADLINE;
        loop {
            match Raw::open(port, a, None).await {
                Ok(r) => {
                    held.push(r);
                    break;
                }
                Err(e) if e.body.contains("5 connections") && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("refused too early: {e:?}"),
            }
        }
    }
    drop(held.pop());
    let until = Instant::now() + DEADLINE;
    let rate = loop {
        match Raw::open(port, a, None).await {
            Err(e) if e.body.contains("5 connections") && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => break e,
            Ok(_) => panic!("a ninth new connection in a minute was admitted"),
        }
    };
    assert_eq!(rate.status, 429, "{rate:?}");
    assert!(rate.body.contains("new connections a minute"), "{rate:?}");
    let wait: u64 = rate.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=8).contains(&wait), "Retry-After {wait}");
    assert_eq!(limited(&http, port, "new_connections_per_ip").await, 1);

    // 4 + 1 + 8 = 13 open; the process takes 20 in all.
    for _ in 0..7 {
        local.push(Raw::open(port, None, None).await.expect("under the cap"));
    }
    let full = Raw::open(port, None, None)
        .await
        .err()
        .expect("the 21st is refused");
    assert_eq!(full.status, 503, "{full:?}");
    assert!(full.retry_after.is_some());
    assert_eq!(limited(&http, port, "total_connections").await, 1);
}

/// One address asks for 1000 signatures and joins with them: the auth
/// endpoint signs about its per-minute allowance and answers the rest with
/// 429 and `Retry-After`; of the joins, the channel admits the per-address
/// cap (10 users) and refuses the others with `subscription_error` 429; a
/// present user's second tab from that address still joins; a visitor from
/// another address still joins and sees the 10, not the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_signatures_from_one_address_fill_no_channel() {
    let server = ServerProcess::start(&[]);
    let port = server.port;
    let http = reqwest::Client::new();
    let flood = Some("198.51.100.66");

    let mut joined = Vec::new();
    let mut refused_joins = 0;
    let mut signed_ok = 0;
    let mut first_signed = None;
    for i in 0..30 {
        let mut c = Raw::open(port, flood, None)
            .await
            .expect("under 100 per address");
        let id = format!("flood-{i}");
        let s = sign(&http, port, flood, &c.socket_id, &[("visitor_id", &id)]).await;
        assert_eq!(s.status, 200, "{}", s.body);
        signed_ok += 1;
        let answer = c.subscribe_signed(CHANNEL, &s.body).await;
        match answer["event"].as_str() {
            Some("pusher_internal:subscription_succeeded") => {
                first_signed.get_or_insert((id, s.body["visitor_token"].clone()));
                joined.push(c);
            }
            _ => {
                let d = data(&answer);
                assert_eq!(d["status"], 429, "{answer}");
                assert!(
                    d["error"].as_str().unwrap().contains("from your address"),
                    "{answer}"
                );
                refused_joins += 1;
            }
        }
    }
    assert_eq!((joined.len(), refused_joins), (10, 20));

    // The rest of the thousand: the allowance runs out.
    let mut limited_signs = 0;
    for i in 30..1000 {
        let s = sign(
            &http,
            port,
            flood,
            &format!("1.{i}"),
            &[("visitor_id", &format!("flood-{i}"))],
        )
        .await;
        match s.status {
            200 => signed_ok += 1,
            429 => {
                limited_signs += 1;
                let wait: u64 = s
                    .retry_after
                    .as_deref()
                    .expect("Retry-After")
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&wait), "Retry-After {wait}");
            }
            other => panic!("unexpected {other}: {}", s.body),
        }
    }
    // 120 a minute, refilled at 2 a second while the loop runs.
    assert!((120..=140).contains(&signed_ok), "signed {signed_ok}");
    assert_eq!(signed_ok + limited_signs, 1000);
    assert_eq!(
        limited(&http, port, "signatures_per_ip").await,
        limited_signs as u64
    );
    assert_eq!(limited(&http, port, "presence_users_per_ip").await, 20);

    // A present user's second tab from the flooding address is admitted
    // (it adds no user); this one comes from a proxy-less loopback tool
    // with a signature made by the app's own secret.
    let (first_id, first_token) = first_signed.unwrap();
    let mut tab = Raw::open(port, flood, None).await.unwrap();
    let channel_data = json!({"user_id": first_id, "user_info": {"name": "tab"}}).to_string();
    let auth = whosin_protocol::sign::channel_auth(
        KEY,
        SECRET,
        &tab.socket_id,
        CHANNEL,
        Some(&channel_data),
    );
    let answer = tab
        .subscribe_signed(
            CHANNEL,
            &json!({"auth": auth, "channel_data": channel_data}),
        )
        .await;
    assert_eq!(
        answer["event"], "pusher_internal:subscription_succeeded",
        "{answer}"
    );
    assert!(first_token.is_string());

    // Someone else, from another address, joins and sees 10 + 1.
    let mut visitor = Raw::open(port, Some("192.0.2.5"), None).await.unwrap();
    let s = sign(&http, port, Some("192.0.2.5"), &visitor.socket_id, &[]).await;
    assert_eq!(s.status, 200);
    let answer = visitor.subscribe_signed(CHANNEL, &s.body).await;
    assert_eq!(
        answer["event"], "pusher_internal:subscription_succeeded",
        "{answer}"
    );
    assert_eq!(data(&answer)["presence"]["count"], 11, "{answer}");
}

/// Knowing a present visitor's id is not enough to appear as them: asked
/// for without its token (or with a wrong one) it is answered with a fresh
/// id; with its token it is kept (a second tab, a reconnect); a new bare id
/// is kept and given its token; once its holder has left, a bare id is
/// free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn present_visitor_ids_cannot_be_claimed() {
    let server = ServerProcess::start(&[]);
    let port = server.port;
    let http = reqwest::Client::new();

    // A new bare id is kept, with its token.
    let mut alice = Raw::open(port, Some("203.0.113.1"), None).await.unwrap();
    let s = sign(
        &http,
        port,
        Some("203.0.113.1"),
        &alice.socket_id,
        &[("visitor_id", "alice-1")],
    )
    .await;
    assert_eq!(s.user_id(), "alice-1");
    assert_eq!(s.body["visitor_id"], "alice-1");
    let token = s.body["visitor_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let answer = alice.subscribe_signed(CHANNEL, &s.body).await;
    assert_eq!(answer["event"], "pusher_internal:subscription_succeeded");

    // Someone who read "alice-1" in the roster gets another id.
    for extra in [
        vec![("visitor_id", "alice-1")],
        vec![("visitor_id", "alice-1"), ("visitor_token", "00ff")],
        vec![
            ("visitor_id", "alice-1"),
            ("visitor_token", &token[..token.len() - 1]),
        ],
    ] {
        let s = sign(&http, port, Some("198.51.100.9"), "1.1", &extra).await;
        assert_eq!(s.status, 200, "{}", s.body);
        assert_ne!(s.user_id(), "alice-1", "{extra:?}");
        assert_eq!(s.body["visitor_id"].as_str().unwrap(), s.user_id());
    }

    // Alice's second tab, with her token, is still Alice.
    let mut tab = Raw::open(port, Some("203.0.113.1"), None).await.unwrap();
    let s = sign(
        &http,
        port,
        Some("203.0.113.1"),
        &tab.socket_id,
        &[("visitor_id", "alice-1"), ("visitor_token", &token)],
    )
    .await;
    assert_eq!(s.user_id(), "alice-1");
    assert_eq!(s.body["visitor_token"], token.as_str());
    let answer = tab.subscribe_signed(CHANNEL, &s.body).await;
    assert_eq!(data(&answer)["presence"]["count"], 1, "one user, two tabs");

    // Gone: the bare id is free again.
    drop(alice);
    drop(tab);
    let until = Instant::now() + DEADLINE;
    loop {
        let s = sign(
            &http,
            port,
            Some("198.51.100.9"),
            "1.2",
            &[("visitor_id", "alice-1")],
        )
        .await;
        if s.user_id() == "alice-1" {
            break;
        }
        assert!(Instant::now() < until, "alice-1 still held after she left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The other refusals of issue 13 as a client of `whosin serve` sees them:
/// a page from an origin the app does not list (403 before the upgrade,
/// 403 from the auth endpoint), client events on an app that has not turned
/// them on (`pusher:error`, not delivered), 1000 subscriptions on one
/// connection (the first 100, then 4302 each), and one connection cycling
/// through channels faster than the churn allowance (429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_client_events_and_channel_bounds() {
    let server = ServerProcess::start(&["--allowed-origin", "https://site.example"]);
    let port = server.port;
    let http = reqwest::Client::new();

    let refused = Raw::open(port, None, Some("https://evil.example"))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.body.contains("not allowed"), "{refused:?}");
    let mut ok = Raw::open(port, None, Some("https://site.example"))
        .await
        .expect("listed origin");
    let r = http
        .post(format!("http://127.0.0.1:{port}/pusher/auth"))
        .header("origin", "https://evil.example")
        .form(&[("socket_id", "1.1"), ("channel_name", CHANNEL)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Client events are off unless the app turns them on.
    let s = sign(&http, port, None, &ok.socket_id, &[]).await;
    ok.subscribe_signed(CHANNEL, &s.body).await;
    let mut peer = Raw::open(port, None, None).await.unwrap();
    let s = sign(&http, port, None, &peer.socket_id, &[]).await;
    peer.subscribe_signed(CHANNEL, &s.body).await;
    ok.send(json!({"event": "client-hi", "channel": CHANNEL, "data": {}}))
        .await;
    let err = ok.next("pusher:error").await;
    assert!(err.to_string().contains("not enabled"), "{err}");
    // Not delivered: the peer's next frame is our marker, not client-hi.
    ok.send(json!({"event": "pusher:unsubscribe", "data": {"channel": CHANNEL}}))
        .await;
    let next = peer
        .next_of(&["client-hi", "pusher_internal:member_removed"])
        .await;
    assert_eq!(next["event"], "pusher_internal:member_removed", "{next}");

    // 1000 subscriptions on one connection: 100 held, 900 refused.
    let mut c = Raw::open(port, None, None).await.unwrap();
    for i in 0..1000 {
        c.send(json!({"event": "pusher:subscribe", "data": {"channel": format!("ch-{i}")}}))
            .await;
    }
    let (mut ok_subs, mut over) = (0, 0);
    while ok_subs + over < 1000 {
        let f = c
            .next_of(&["pusher_internal:subscription_succeeded", "pusher:error"])
            .await;
        if f["event"] == "pusher:error" {
            assert_eq!(data(&f)["code"], 4302, "{f}");
            over += 1;
        } else {
            ok_subs += 1;
        }
    }
    assert_eq!((ok_subs, over), (100, 900));

    // Cycling through channels: past the allowance, subscribes get 429.
    let mut churn = Raw::open(port, None, None).await.unwrap();
    for i in 0..300 {
        let ch = format!("cycle-{i}");
        churn
            .send(json!({"event": "pusher:subscribe", "data": {"channel": ch}}))
            .await;
        churn
            .send(json!({"event": "pusher:unsubscribe", "data": {"channel": ch}}))
            .await;
    }
    let mut slowed = 0;
    let mut answers = 0;
    while answers < 300 {
        let f = churn
            .next_of(&[
                "pusher_internal:subscription_succeeded",
                "pusher:subscription_error",
            ])
            .await;
        answers += 1;
        if f["event"] == "pusher:subscription_error" {
            assert_eq!(data(&f)["status"], 429, "{f}");
            slowed += 1;
        }
    }
    assert!(
        slowed >= 150,
        "only {slowed} of 300 subscribe+unsubscribe pairs were slowed"
    );
}

/// A request body trickled in slower than the body-read timeout is cut
/// off with 408, and the server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = ServerProcess::start(&["--body-read-timeout", "1"]);
    let port = server.port;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"POST /pusher/auth HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nsocket_id=")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let (mut rd, mut wr) = s.split();
    let read = async {
        // One byte every 300 ms: never idle long enough for a plain read
        // timeout, far too slow for the body.
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                _ = tokio::time::sleep(Duration::from_millis(300)) => {
                    if wr.write_all(b"1").await.is_err() { break; }
                }
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("cut off in time");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Still serving.
    assert!(Raw::open(port, None, None).await.is_ok());
}

/// A visitor id is the app's, not one channel's: an id present in one
/// signed channel, asked for bare for another, is answered with a fresh id
/// (so its token cannot be had that way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_present_in_one_channel_cannot_be_claimed_through_another() {
    let server = ServerProcess::start(&["--channel", "presence-a", "--channel", "presence-b"]);
    let port = server.port;
    let http = reqwest::Client::new();
    let post = |socket: String, channel: &'static str, id: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("http://127.0.0.1:{port}/pusher/auth"))
                .form(&[
                    ("socket_id", socket.as_str()),
                    ("channel_name", channel),
                    ("visitor_id", id),
                ])
                .send()
                .await
                .unwrap();
            serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()
        }
    };
    let mut alice = Raw::open(port, None, None).await.unwrap();
    let signed = post(alice.socket_id.clone(), "presence-a", "alice-2").await;
    assert_eq!(signed["visitor_id"], "alice-2");
    let ok = alice.subscribe_signed("presence-a", &signed).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let other = post("1.9".into(), "presence-b", "alice-2").await;
    assert_ne!(other["visitor_id"], "alice-2", "{other}");
}
