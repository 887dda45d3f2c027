//! CORS for `/pusher/auth`, so that the one-line embed (`/whosin.js`) on a
//! page of another site can post to it and read the answer.
//!
//! A page's origin may read an answer exactly when its app would sign for
//! that origin ([`AppConfig::check_origin`], the rule the WebSocket path
//! applies too), so CORS grants nothing the origin check refuses. The answer
//! names that one origin, never `*`, with `Vary: Origin` so that caches keep
//! answers apart, and allows no credentials: the endpoint reads no cookies.
//! The embed's urlencoded POST is a simple request, which browsers send
//! without a preflight; [`preflight`] answers the `OPTIONS` of clients that
//! add a header all the same.

use crate::config::AppConfig;
use crate::rest::error;
use crate::server::Shared;
use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// How long a browser may reuse a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The request's `Origin` when `allowed` says yes to it; `None` without one
/// (not a page: nothing to grant) or when it is not text.
fn granted(headers: &HeaderMap, allowed: impl Fn(&str) -> bool) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    allowed(origin.to_str().ok()?).then(|| origin.clone())
}

/// Adds the CORS headers for a request to `app` (`None`: an unknown app,
/// whose answer no page may read) to `response`.
pub fn answer(app: Option<&AppConfig>, request: &HeaderMap, mut response: Response) -> Response {
    let origin = app.and_then(|a| granted(request, |o| a.check_origin(Some(o)).is_ok()));
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        // So that a page can tell when to retry after a 429.
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
    response
}

/// `OPTIONS /pusher/auth`. A preflight has no body, so no `app_key`: the
/// origin may go on when any app allows it, and the request that follows
/// is checked against its own app.
pub async fn preflight(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let allowed = |o: &str| {
        shared
            .apps
            .iter()
            .any(|a| a.config.check_origin(Some(o)).is_ok())
    };
    let Some(origin) = granted(&headers, allowed) else {
        let mut r = error(
            StatusCode::FORBIDDEN,
            "this origin may not use the auth endpoint; its operator lists the allowed ones with --allowed-origin",
        );
        r.headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
        return r;
    };
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, GET"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Content-Type"),
            ),
            (
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE),
            ),
            (header::VARY, HeaderValue::from_static("Origin")),
        ],
    )
        .into_response()
}
