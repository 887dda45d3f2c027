//! The one-line embed: `/whosin.js` and its stylesheet as a page on another
//! site loads them, and the CORS answers of `/pusher/auth` that let it sign.
//! (tests/node/embed.test.mjs runs the script in Chromium.)

mod common;

use common::*;

/// The embed's budget: it is loaded by every page view of every site that
/// embeds it.
const MAX_EMBED_BYTES: usize = 8 * 1024;

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const SIGN: &[u8] = b"socket_id=1.2&channel_name=presence-whosin";

#[tokio::test]
async fn the_script_and_its_stylesheet_are_served_small_and_typed() {
    let server = start(config()).await;
    let addr = server.local_addr();

    let js = http(addr, "GET", "/whosin.js", &[], b"").await;
    assert_eq!(js.status, 200, "{}", js.body);
    assert_eq!(
        js.header("content-type"),
        Some("application/javascript; charset=utf-8")
    );
    assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(js.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(
        js.header("cross-origin-resource-policy"),
        Some("cross-origin")
    );
    assert!(
        js.body.len() < MAX_EMBED_BYTES,
        "whosin.js is {} bytes, over its {MAX_EMBED_BYTES}-byte budget",
        js.body.len()
    );
    // A classic script: no module syntax, and text only (never HTML).
    assert!(js.body.contains("data-whosin-count") && js.body.contains("data-whosin-list"));
    for banned in [
        "import ",
        "export ",
        "innerHTML",
        "insertAdjacentHTML",
        "eval(",
    ] {
        assert!(!js.body.contains(banned), "whosin.js contains {banned:?}");
    }

    let css = http(addr, "GET", "/whosin-embed.css", &[], b"").await;
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.body.contains(".whosin-badge"));
}

/// Any origin may read the auth endpoint's answer while the app lists no
/// origins; the answer names that origin (never `*`) and varies by it.
#[tokio::test]
async fn the_auth_endpoint_answers_cors_for_any_page_by_default() {
    let server = start(config()).await;
    let addr = server.local_addr();
    let origin = ("Origin", "https://blog.example");

    let r = http(addr, "POST", "/pusher/auth", &[FORM, origin], SIGN).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://blog.example")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_eq!(r.header("access-control-allow-credentials"), None);

    // A client that is not a page (no Origin) is given no CORS grant.
    let plain = http(addr, "POST", "/pusher/auth", &[FORM], SIGN).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("access-control-allow-origin"), None);

    // The preflight a browser sends when a client adds a header.
    let pre = http(
        addr,
        "OPTIONS",
        "/pusher/auth",
        &[origin, ("Access-Control-Request-Method", "POST")],
        b"",
    )
    .await;
    assert_eq!(pre.status, 204, "{}", pre.body);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://blog.example")
    );
    assert!(pre
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("POST")));
}

/// With `allowed_origins`, only listed pages get a grant; others get the
/// 403 without one, so the browser does not even show them why.
#[tokio::test]
async fn only_listed_origins_get_a_cors_grant() {
    let mut cfg = config();
    cfg.apps[0].allowed_origins = vec!["https://site.example".into()];
    let server = start(cfg).await;
    let addr = server.local_addr();

    let evil = http(
        addr,
        "POST",
        "/pusher/auth",
        &[FORM, ("Origin", "https://evil.example")],
        SIGN,
    )
    .await;
    assert_eq!(evil.status, 403);
    assert_eq!(evil.header("access-control-allow-origin"), None);
    assert_eq!(evil.header("vary"), Some("Origin"));

    let listed = http(
        addr,
        "POST",
        "/pusher/auth",
        &[FORM, ("Origin", "https://site.example")],
        SIGN,
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.header("access-control-allow-origin"),
        Some("https://site.example")
    );

    let pre = |origin: &'static str| async move {
        let headers = [
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
        ];
        http(addr, "OPTIONS", "/pusher/auth", &headers, b"").await
    };
    let refused = pre("https://evil.example").await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("access-control-allow-origin"), None);
    assert_eq!(pre("https://site.example").await.status, 204);
}
