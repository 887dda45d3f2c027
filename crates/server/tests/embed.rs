//! The one-line embed: `/whosin.js` and its stylesheet as a page on another
//! site loads them. (tests/node/embed.test.mjs runs the script in Chromium.)

mod common;

use common::*;

/// The embed's budget: it is loaded by every page view of every site that
/// embeds it.
const MAX_EMBED_BYTES: usize = 8 * 1024;

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
