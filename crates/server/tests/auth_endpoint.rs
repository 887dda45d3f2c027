//! `/pusher/auth`: what it signs, for whom, and what it refuses.

mod common;

use common::*;
use serde_json::{json, Value};
use whosin_protocol::frame::ServerFrame;
use whosin_protocol::sign;
use whosin_server::config::IpNet;

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

async fn post_auth(
    addr: std::net::SocketAddr,
    form: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut h = vec![FORM];
    h.extend_from_slice(headers);
    http(addr, "POST", "/pusher/auth", &h, form.as_bytes()).await
}

fn channel_data(r: &HttpResponse) -> Value {
    serde_json::from_str(r.json()["channel_data"].as_str().expect("channel_data")).unwrap()
}

#[tokio::test]
async fn signs_presence_with_stable_identity_that_the_server_accepts() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let mut c = Client::connect(addr).await;
    let form = format!(
        "socket_id={}&channel_name=presence-whosin&visitor_id=visitor-1",
        c.socket_id
    );
    let r = post_auth(addr, &form, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    let data = channel_data(&r);
    assert_eq!(data["user_id"], "visitor-1");
    assert_eq!(data["user_info"]["ip"], "127.0.0.1");
    let name = data["user_info"]["name"].as_str().unwrap().to_owned();
    assert!(!name.is_empty());
    // The signature is right for this socket, channel and data.
    assert_eq!(
        sign::verify_channel_auth(
            KEY,
            SECRET,
            &c.socket_id,
            "presence-whosin",
            body["channel_data"].as_str(),
            body["auth"].as_str().unwrap()
        ),
        Ok(())
    );
    // The same visitor gets the same name; another visitor another id.
    let again = post_auth(addr, &form, &[]).await;
    assert_eq!(channel_data(&again)["user_info"]["name"], name.as_str());
    let fresh = post_auth(
        addr,
        &format!("socket_id={}&channel_name=presence-whosin", c.socket_id),
        &[],
    )
    .await;
    let fresh_id = channel_data(&fresh)["user_id"].as_str().unwrap().to_owned();
    assert!(fresh_id.len() >= 8 && fresh_id != "visitor-1");
    // An invalid visitor_id is replaced, not trusted.
    let bad = post_auth(
        addr,
        &format!(
            "socket_id={}&channel_name=presence-whosin&visitor_id=%3Cscript%3E",
            c.socket_id
        ),
        &[],
    )
    .await;
    assert_ne!(channel_data(&bad)["user_id"], "<script>");
    // A chosen name is used, trimmed and capped.
    let named = post_auth(
        addr,
        &format!(
            "socket_id={}&channel_name=presence-whosin&visitor_id=v2&name=%20{}%20",
            c.socket_id,
            "A".repeat(60)
        ),
        &[],
    )
    .await;
    assert_eq!(channel_data(&named)["user_info"]["name"], "A".repeat(40));
    let ctrl = post_auth(
        addr,
        &format!(
            "socket_id={}&channel_name=presence-whosin&name=a%07b",
            c.socket_id
        ),
        &[],
    )
    .await;
    assert_eq!(ctrl.status, 400);

    // The signed answer subscribes for real.
    c.send_json(json!({"event":"pusher:subscribe","data":{"channel":"presence-whosin","auth":body["auth"],"channel_data":body["channel_data"]}})).await;
    match c.next().await {
        ServerFrame::SubscriptionSucceeded {
            members: Some(m), ..
        } => {
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].0, "visitor-1");
            assert!(m[0].1.contains(&name));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn refuses_what_it_does_not_serve() {
    let mut cfg = config();
    cfg.apps[0].auth_channels = vec!["presence-whosin".into(), "private-room".into()];
    let server = start(cfg).await;
    let addr = server.local_addr();
    let r = post_auth(addr, "socket_id=1.2&channel_name=presence-other", &[]).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("presence-whosin"));
    let r = post_auth(addr, "socket_id=1.2&channel_name=private-room", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["auth"],
        sign::channel_auth(KEY, SECRET, "1.2", "private-room", None)
    );
    assert!(r.json().get("channel_data").is_none());
    for (form, why) in [
        ("channel_name=presence-whosin", "socket_id"),
        ("socket_id=12&channel_name=presence-whosin", "socket_id"),
        ("socket_id=1.2", "channel_name"),
        ("socket_id=1.2&channel_name=bad%20name", "channel_name"),
    ] {
        let r = post_auth(addr, form, &[]).await;
        assert_eq!(r.status, 400, "{form}");
        assert!(
            r.json()["error"].as_str().unwrap().contains(why),
            "{form}: {}",
            r.body
        );
    }
    let r = post_auth(
        addr,
        "socket_id=1.2&channel_name=presence-whosin&app_key=nope",
        &[],
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn jsonp_answers_only_safe_callbacks() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let cb = encode("Pusher.auth_callbacks['3']");
    let r = http(
        addr,
        "GET",
        &format!(
            "/pusher/auth?socket_id=1.2&channel_name=presence-whosin&visitor_id=jp&callback={cb}"
        ),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/javascript"));
    let inner = r
        .body
        .strip_prefix("Pusher.auth_callbacks['3'](")
        .and_then(|s| s.strip_suffix(");"))
        .unwrap_or_else(|| panic!("not a JSONP call: {}", r.body));
    let v: Value = serde_json::from_str(inner).unwrap();
    assert!(v["auth"].as_str().unwrap().starts_with(&format!("{KEY}:")));
    for evil in ["alert(1);x", "x</script>", "a b", "a['1'](2)", ""] {
        let r = http(
            addr,
            "GET",
            &format!(
                "/pusher/auth?socket_id=1.2&channel_name=presence-whosin&callback={}",
                encode(evil)
            ),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 400, "{evil:?} must be refused");
        assert!(
            !r.body.contains("alert"),
            "the callback must never be echoed"
        );
    }
    let r = http(
        addr,
        "GET",
        "/pusher/auth?socket_id=1.2&channel_name=presence-whosin",
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = http(
        addr,
        "GET",
        &format!("/pusher/auth?socket_id=1.2&channel_name=presence-other&callback={cb}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn forwarded_for_only_from_trusted_proxies_and_masking() {
    // Untrusted peer: X-Forwarded-For is ignored.
    let mut cfg = config();
    cfg.trust_loopback_proxy = false;
    let server = start(cfg).await;
    let r = post_auth(
        server.local_addr(),
        "socket_id=1.2&channel_name=presence-whosin",
        &[("X-Forwarded-For", "203.0.113.9")],
    )
    .await;
    assert_eq!(channel_data(&r)["user_info"]["ip"], "127.0.0.1");

    // Loopback trusted as a proxy (listed, or by default): the forwarded
    // address is recorded, masked on request.
    let mut listed = config();
    listed.trust_loopback_proxy = false;
    listed.trusted_proxies = vec![IpNet::parse("127.0.0.0/8").unwrap()];
    for cfg in [listed, config()] {
        let server = start(cfg).await;
        let r = post_auth(
            server.local_addr(),
            "socket_id=1.2&channel_name=presence-whosin",
            &[("X-Forwarded-For", "203.0.113.9, 127.0.0.5")],
        )
        .await;
        assert_eq!(channel_data(&r)["user_info"]["ip"], "203.0.113.9");
    }
    let mut cfg = config();
    cfg.apps[0].mask_ips = true;
    let server = start(cfg).await;
    let r = post_auth(
        server.local_addr(),
        "socket_id=1.2&channel_name=presence-whosin",
        &[("X-Forwarded-For", "203.0.113.9")],
    )
    .await;
    assert_eq!(channel_data(&r)["user_info"]["ip"], "203.0.113.*");
}

/// With allowed origins set, a WebSocket open or an auth request from a
/// page on another origin is refused with 403 before anything happens;
/// listed origins and non-browser clients (no Origin) are served.
#[tokio::test]
async fn only_listed_origins_may_connect_and_sign() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut cfg = config();
    cfg.apps[0].allowed_origins = vec!["https://site.example".into()];
    let server = start(cfg).await;
    let addr = server.local_addr();
    let open = |origin: Option<&'static str>| async move {
        let mut req = format!("ws://{addr}/app/{KEY}?protocol=7")
            .into_client_request()
            .unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req).await
    };
    match open(Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    assert!(
        open(Some("https://SITE.example/")).await.is_ok(),
        "listed (case and / ignored)"
    );
    assert!(open(None).await.is_ok(), "no Origin: not a browser");

    let form = "socket_id=1.2&channel_name=presence-whosin&visitor_id=v1";
    let evil = post_auth(addr, form, &[("Origin", "https://evil.example")]).await;
    assert_eq!(evil.status, 403);
    assert!(evil.body.contains("--allowed-origin"), "{}", evil.body);
    let ok = post_auth(addr, form, &[("Origin", "https://site.example")]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

/// A loopback-only server (the desktop's embedded one) serves requests
/// naming a loopback host and, among browser pages, only its own.
#[tokio::test]
async fn a_loopback_only_server_serves_this_computer_and_its_own_page_only() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut cfg = config();
    cfg.loopback_only = true;
    let server = start(cfg).await;
    let addr = server.local_addr();
    let port = addr.port();
    assert_eq!(http(addr, "GET", "/health", &[], b"").await.status, 200);
    // DNS rebinding: a name that resolved to 127.0.0.1 for an attacker's page.
    let rebound = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        String::from_utf8_lossy(&raw).into_owned()
    };
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let open = |origin: String| async move {
        let mut req = format!("ws://{addr}/app/{KEY}?protocol=7")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("Origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(req).await.map(|_| ())
    };
    assert!(open(format!("http://127.0.0.1:{port}")).await.is_ok());
    assert!(open(format!("http://localhost:{port}/")).await.is_ok());
    for other in [
        "http://127.0.0.1:1".to_owned(),
        "https://evil.example".to_owned(),
        format!("http://evil.example:{port}"),
    ] {
        match open(other.clone()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 403, "{other}")
            }
            r => panic!("{other}: expected 403, got {r:?}"),
        }
    }
    let form = "socket_id=1.2&channel_name=presence-whosin&visitor_id=v1";
    let other_page = post_auth(addr, form, &[("Origin", "http://localhost:3000")]).await;
    assert_eq!(other_page.status, 403);
    let own = format!("http://127.0.0.1:{port}");
    assert_eq!(
        post_auth(addr, form, &[("Origin", own.as_str())])
            .await
            .status,
        200
    );
}
