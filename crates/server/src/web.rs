//! The visitor page: the same `ui/` the desktop app shows, built into the
//! binary and served at `/`, so a browser pointed at the server is a visitor
//! too. `whosin.json` tells the page which app key and channel to use.

use crate::server::Shared;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// The page's files, embedded at build time.
const FILES: [(&str, &str, &str); 6] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/app.js"),
    ),
    (
        "view.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/view.js"),
    ),
    (
        "transport.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/transport.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../../ui/style.css"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../ui/chart.js"),
    ),
];

/// The page may talk only to this server.
const CSP: &str =
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'";

/// Serves one embedded file by name; `None` when there is no such file.
pub fn file(name: &str) -> Option<Response> {
    let (_, mime, body) = FILES.iter().find(|(n, _, _)| *n == name)?;
    Some(
        (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "no-cache"),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
    )
}

/// The one-line embed (`ui/embed/`): a classic script any site includes
/// with one `<script>` tag, and the stylesheet of the badge it shows.
///
/// Cached for five minutes: the URL carries no version, so a long lifetime
/// would keep an old script after an upgrade, while `no-cache` would make
/// every page view of every embedding site ask this server again. Any
/// origin may read them (CORS `*`, `Cross-Origin-Resource-Policy:
/// cross-origin`) so a page can load them with `crossorigin` or under
/// `Cross-Origin-Embedder-Policy`; they hold nothing private.
const EMBED: [(&str, &str, &str); 2] = [
    (
        "whosin.js",
        "application/javascript; charset=utf-8",
        include_str!("../../../ui/embed/whosin.js"),
    ),
    (
        "whosin-embed.css",
        "text/css; charset=utf-8",
        include_str!("../../../ui/embed/whosin-embed.css"),
    ),
];

/// Serves one file of the embed by name; `None` when there is no such file.
pub fn embed_file(name: &str) -> Option<Response> {
    let (_, mime, body) = EMBED.iter().find(|(n, _, _)| *n == name)?;
    Some(
        (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "public, max-age=300"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (
                    header::HeaderName::from_static("cross-origin-resource-policy"),
                    "cross-origin",
                ),
            ],
            *body,
        )
            .into_response(),
    )
}

/// `GET /whosin.js`.
pub async fn embed_script() -> Response {
    embed_file("whosin.js").expect("whosin.js is embedded")
}

/// `GET /whosin-embed.css`.
pub async fn embed_style() -> Response {
    embed_file("whosin-embed.css").expect("whosin-embed.css is embedded")
}

/// `GET /`.
pub async fn index() -> Response {
    file("index.html").expect("index.html is embedded")
}

/// `GET /history.json?channel=NAME[&app_key=KEY]`: the page's chart. Only
/// for a presence channel the app's auth endpoint signs, whose count anyone
/// may see by joining; the signed REST path serves every channel.
pub async fn history(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let app = match q.get("app_key") {
        Some(k) => shared.app_by_key(k),
        None => shared.apps.first(),
    };
    let Some(app) = app else {
        return crate::rest::error(axum::http::StatusCode::NOT_FOUND, "unknown app_key");
    };
    let channel = q.get("channel").map(String::as_str).unwrap_or_default();
    let public =
        channel.starts_with("presence-") && app.config.auth_channels.iter().any(|c| c == channel);
    if !public {
        return crate::rest::error(
            axum::http::StatusCode::NOT_FOUND,
            "history.json serves the presence channels this server's auth endpoint signs; use the signed REST path /apps/{id}/channels/{name}/history for others",
        );
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        crate::rest::history_json(app, channel).await.to_string(),
    )
        .into_response()
}

/// `GET /whosin.json`: the first app's key and its first signed channel.
pub async fn config(State(shared): State<Arc<Shared>>) -> Response {
    let app = &shared.apps[0].config;
    let channel = app
        .auth_channels
        .iter()
        .find(|c| c.starts_with("presence-"))
        .or(app.auth_channels.first())
        .cloned()
        .unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        json!({"key": app.key, "channel": channel, "auth_endpoint": "pusher/auth"}).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_file_is_served() {
        for name in [
            "index.html",
            "app.js",
            "view.js",
            "transport.js",
            "style.css",
            "chart.js",
        ] {
            assert!(super::file(name).is_some(), "{name}");
        }
        assert!(super::file("../Cargo.toml").is_none());
        for name in ["whosin.js", "whosin-embed.css"] {
            assert!(super::embed_file(name).is_some(), "{name}");
        }
    }
}
