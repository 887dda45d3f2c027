//! The REST API: triggers, queries, and every refusal with its status.

mod common;

use common::*;
use serde_json::json;
use whosin_protocol::frame::ServerFrame;

fn events_path() -> String {
    format!("/apps/{APP_ID}/events")
}

#[tokio::test]
async fn trigger_reaches_subscribers_with_info_and_exclusion() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.join("presence-r", "a").await;
    b.join("presence-r", "b").await;
    let _ = a.next().await; // member_added b
    a.subscribe_public("pub").await;

    let body = json!({"name":"greet","channels":["presence-r","pub"],"data":"{\"hi\":1}","info":"user_count,subscription_count"}).to_string();
    let r = rest(addr, "POST", &events_path(), &[], &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"channels":{"presence-r":{"user_count":2,"subscription_count":2},"pub":{"subscription_count":1}}})
    );
    for expected_channel in ["presence-r", "pub"] {
        match a.next().await {
            ServerFrame::Event {
                event,
                channel,
                data,
                ..
            } => {
                assert_eq!(
                    (event.as_str(), channel.as_deref(), data.as_str()),
                    ("greet", Some(expected_channel), "{\"hi\":1}")
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(b.next().await, ServerFrame::Event { .. }));

    // socket_id excludes exactly that connection.
    let body =
        json!({"name":"x","channel":"presence-r","data":"d","socket_id":a.socket_id}).to_string();
    assert_eq!(
        rest(addr, "POST", &events_path(), &[], &body).await.status,
        200
    );
    assert!(matches!(b.next().await, ServerFrame::Event { event, .. } if event == "x"));
    assert_eq!(a.drain().await, vec![]);
    // Without info the answer is {}.
    let body = json!({"name":"y","channel":"empty","data":"d"}).to_string();
    let r = rest(addr, "POST", &events_path(), &[], &body).await;
    assert_eq!(r.json(), json!({}));
}

#[tokio::test]
async fn batch_events() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr).await;
    a.subscribe_public("one").await;
    a.subscribe_public("two").await;
    let body = json!({"batch":[
        {"name":"e1","channel":"one","data":"1"},
        {"name":"e2","channel":"two","data":"2","info":"subscription_count"}
    ]})
    .to_string();
    let r = rest(
        addr,
        "POST",
        &format!("/apps/{APP_ID}/batch_events"),
        &[],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"batch":[{},{"subscription_count":1}]}));
    assert!(matches!(a.next().await, ServerFrame::Event { event, .. } if event == "e1"));
    assert!(matches!(a.next().await, ServerFrame::Event { event, .. } if event == "e2"));

    // Eleven events: refused, nothing published.
    let batch: Vec<_> = (0..11)
        .map(|i| json!({"name":format!("n{i}"),"channel":"one","data":"x"}))
        .collect();
    let r = rest(
        addr,
        "POST",
        &format!("/apps/{APP_ID}/batch_events"),
        &[],
        &json!({"batch":batch}).to_string(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("at most 10"));
    // One bad event in a batch: nothing published.
    let body = json!({"batch":[{"name":"ok","channel":"one","data":"x"},{"name":"bad","channel":"bad name","data":"x"}]}).to_string();
    assert_eq!(
        rest(
            addr,
            "POST",
            &format!("/apps/{APP_ID}/batch_events"),
            &[],
            &body
        )
        .await
        .status,
        400
    );
    assert_eq!(a.drain().await, vec![]);
}

#[tokio::test]
async fn channel_queries_follow_occupancy() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    let mut b2 = Client::connect(addr).await;
    a.join("presence-q", "a").await;
    b.join("presence-q", "b").await;
    b2.join("presence-q", "b").await;
    a.subscribe_public("public-q").await;
    let chans = format!("/apps/{APP_ID}/channels");

    let r = rest(addr, "GET", &chans, &[], "").await;
    assert_eq!(
        r.json(),
        json!({"channels":{"presence-q":{},"public-q":{}}})
    );
    let r = rest(
        addr,
        "GET",
        &chans,
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        "",
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"channels":{"presence-q":{"user_count":2}}})
    );
    let r = rest(addr, "GET", &chans, &[("info", "user_count")], "").await;
    assert_eq!(r.status, 400, "user_count needs the presence- prefix");

    let r = rest(
        addr,
        "GET",
        &format!("{chans}/presence-q"),
        &[("info", "user_count,subscription_count")],
        "",
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"occupied":true,"user_count":2,"subscription_count":3})
    );
    let r = rest(
        addr,
        "GET",
        &format!("{chans}/public-q"),
        &[("info", "user_count")],
        "",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = rest(addr, "GET", &format!("{chans}/presence-q/users"), &[], "").await;
    assert_eq!(r.json(), json!({"users":[{"id":"a"},{"id":"b"}]}));
    let r = rest(addr, "GET", &format!("{chans}/public-q/users"), &[], "").await;
    assert_eq!(r.status, 400);

    a.close().await;
    b.close().await;
    b2.close().await;
    // Once everyone has left, nothing is occupied and counts are zero.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = rest(
            addr,
            "GET",
            &format!("{chans}/presence-q"),
            &[("info", "user_count")],
            "",
        )
        .await;
        if r.json() == json!({"occupied":false,"user_count":0}) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still occupied: {}",
            r.body
        );
        tokio::task::yield_now().await;
    }
    let r = rest(addr, "GET", &chans, &[], "").await;
    assert_eq!(r.json(), json!({"channels":{}}));
    let r = rest(addr, "GET", &format!("{chans}/presence-q/users"), &[], "").await;
    assert_eq!(r.json(), json!({"users":[]}));
}

#[tokio::test]
async fn refusals_have_pusher_statuses() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let body = json!({"name":"e","channel":"c","data":"d"}).to_string();
    let post = |path: String, body: String| async move {
        http(
            addr,
            "POST",
            &path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await
    };

    // Wrong secret → 401.
    let p = signed_path("POST", &events_path(), &[], body.as_bytes(), "wrong", now());
    let r = post(p, body.clone()).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap().contains("signature"));
    // Timestamp out of ±600 s → 401.
    let p = signed_path(
        "POST",
        &events_path(),
        &[],
        body.as_bytes(),
        SECRET,
        now() - 601,
    );
    let r = post(p, body.clone()).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("auth_timestamp"));
    let p = signed_path(
        "POST",
        &events_path(),
        &[],
        body.as_bytes(),
        SECRET,
        now() + 601,
    );
    assert_eq!(post(p, body.clone()).await.status, 401);
    // Body changed after signing → 401 (body_md5).
    let p = signed_path("POST", &events_path(), &[], body.as_bytes(), SECRET, now());
    let r = post(p, body.replace("\"e\"", "\"f\"")).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap().contains("body_md5"));
    // No signature at all → 401 naming what is missing.
    let r = post(events_path(), body.clone()).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].as_str().unwrap().contains("auth_key"));
    // Unknown app → 404.
    let r = rest(addr, "POST", "/apps/999/events", &[], &body).await;
    assert_eq!(r.status, 404);
    // Bad body → 400; bad channel → 400; too many channels → 400.
    assert_eq!(
        rest(addr, "POST", &events_path(), &[], "{not json")
            .await
            .status,
        400
    );
    let bad = json!({"name":"e","channel":"a b","data":"d"}).to_string();
    assert_eq!(
        rest(addr, "POST", &events_path(), &[], &bad).await.status,
        400
    );
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let bad = json!({"name":"e","channels":many,"data":"d"}).to_string();
    assert_eq!(
        rest(addr, "POST", &events_path(), &[], &bad).await.status,
        400
    );
    let bad = json!({"name":"e","channel":"c","data":"d","socket_id":"nope"}).to_string();
    assert_eq!(
        rest(addr, "POST", &events_path(), &[], &bad).await.status,
        400
    );
    // Data over 10 KB → 413.
    let big = json!({"name":"e","channel":"c","data":"x".repeat(10 * 1024 + 1)}).to_string();
    let r = rest(addr, "POST", &events_path(), &[], &big).await;
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].as_str().unwrap().contains("limit"));
    // Unknown route → 404 JSON.
    let r = http(addr, "GET", "/nope", &[], b"").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    // Failures are counted.
    let m = server
        .shared()
        .metrics
        .auth_failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(m >= 5, "{m}");
}

#[tokio::test]
async fn health_and_metrics() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let mut a = Client::connect(addr).await;
    a.join("presence-m", "a").await;
    let r = http(addr, "GET", "/health", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let r = http(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    for line in [
        "whosin_connections 1",
        "whosin_channels 1",
        "whosin_presence_members 1",
        "whosin_connections_total 1",
        "whosin_auth_failures_total 0",
        "whosin_slow_client_disconnects_total 0",
    ] {
        assert!(
            r.body.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            r.body
        );
    }
    assert!(r.body.contains("whosin_messages_in_total "));
    assert!(r.body.contains("whosin_messages_out_total "));
}

#[tokio::test]
async fn a_disabled_app_answers_403_and_refuses_connections_with_4003() {
    let mut cfg = config();
    cfg.apps[0].enabled = false;
    let server = start(cfg).await;
    let addr = server.local_addr();
    let body = json!({"name":"e","channel":"c","data":"d"}).to_string();
    let r = rest(addr, "POST", &events_path(), &[], &body).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["error"].as_str().unwrap().contains("disabled"));
    let Err((frame, ws)) = Client::connect_key(addr, KEY).await else {
        panic!("a disabled app accepted a connection");
    };
    assert!(
        matches!(
            frame,
            ServerFrame::Error {
                code: Some(4003),
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
    assert_eq!(c.closed(DEADLINE).await, Ended::Closed(4003));
}

/// A POST whose body is trickled in slower than the body-read timeout is
/// answered 408 and its connection closed; the server keeps serving.
#[tokio::test]
async fn a_trickled_request_body_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = config();
    cfg.body_read_timeout = std::time::Duration::from_secs(1);
    let server = start(cfg).await;
    let addr = server.local_addr();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("POST /apps/{APP_ID}/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{")
            .as_bytes(),
    )
    .await
    .unwrap();
    // One byte now and then, never the whole body.
    let trickle = async {
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if s.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_millis(1500), trickle).await;
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes within the deadline")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(http(addr, "GET", "/health", &[], b"").await.status, 200);
}

/// `/metrics` behind a token: 401 without it or with a wrong one.
#[tokio::test]
async fn metrics_can_require_a_token() {
    let mut cfg = config();
    cfg.metrics_token = Some("s3cret-token".into());
    let server = start(cfg).await;
    let addr = server.local_addr();
    assert_eq!(http(addr, "GET", "/metrics", &[], b"").await.status, 401);
    let wrong = [("Authorization", "Bearer nope")];
    assert_eq!(http(addr, "GET", "/metrics", &wrong, b"").await.status, 401);
    let right = [("Authorization", "Bearer s3cret-token")];
    let r = http(addr, "GET", "/metrics", &right, b"").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("whosin_connections"), "{}", r.body);
}
