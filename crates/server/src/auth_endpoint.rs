//! `/pusher/auth`: the auth endpoint the tutorial ran beside its page, built
//! in so browsers and desktops need nothing else.
//!
//! It signs only the channels the app lists in `auth_channels`, gives each
//! visitor a stable id and name, and records the IP it observes. The JSONP
//! form answers `callback(json);` — and, unlike the tutorial, only for a
//! callback that is a plain JavaScript identifier path, so it cannot be used
//! to inject script.

use crate::app::App;
use crate::cors;
use crate::identity;
use crate::metrics::Metrics;
use crate::rest::{error, is_socket_id};
use crate::server::Shared;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use whosin_protocol::sign::channel_auth;
use whosin_protocol::{ChannelKind, ChannelName};

/// Longest JSONP callback accepted.
const MAX_CALLBACK_LEN: usize = 128;

/// What a client sends, by form (POST) or query (GET).
#[derive(Debug, Default, Deserialize)]
pub struct AuthParams {
    socket_id: Option<String>,
    channel_name: Option<String>,
    visitor_id: Option<String>,
    /// The token this endpoint gave with `visitor_id` (see
    /// [`identity::visitor_token`]).
    visitor_token: Option<String>,
    name: Option<String>,
    /// The app's `observer_token`, to be signed as an observer.
    observer_token: Option<String>,
    callback: Option<String>,
    app_key: Option<String>,
}

/// POST form, as pusher-js's ajax transport sends it, and the one-line
/// embed from pages of other sites (see [`cors`]).
pub async fn form(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: Result<Form<AuthParams>, FormRejection>,
) -> Response {
    let app_key = params.as_ref().ok().and_then(|p| p.app_key.clone());
    let response = sign_form(&shared, peer, &headers, params);
    let app = app_for(&shared, app_key.as_deref()).map(|a| &a.config);
    cors::answer(app, &headers, response)
}

/// [`form`]'s answer before CORS.
fn sign_form(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    params: Result<Form<AuthParams>, FormRejection>,
) -> Response {
    let Form(params) = match params {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "send socket_id and channel_name as application/x-www-form-urlencoded ({e})"
                ),
            )
        }
    };
    let ip = shared.config.client_ip(peer.ip(), headers);
    match authorize(shared, &params, ip, headers) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(refused) => refused.respond(error),
    }
}

/// Why a request was not signed.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    message: String,
    /// For 429: seconds until a retry can succeed.
    retry_after: Option<u64>,
}

impl Refused {
    fn new(status: StatusCode, message: impl Into<String>) -> Refused {
        Refused {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The response `build` makes for it, with `Retry-After` when known.
    fn respond(self, build: impl FnOnce(StatusCode, &str) -> Response) -> Response {
        let mut r = build(self.status, &self.message);
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        r
    }
}

/// GET with `callback`: the JSONP transport.
pub async fn jsonp(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<AuthParams>,
) -> Response {
    let Some(callback) = params.callback.as_deref() else {
        return error(
            StatusCode::BAD_REQUEST,
            "GET needs a callback parameter (JSONP); use POST for JSON",
        );
    };
    if !is_safe_callback(callback) {
        return error(
            StatusCode::BAD_REQUEST,
            "callback must be a plain JavaScript name such as Pusher.auth_callbacks['3']",
        );
    }
    let ip = shared.config.client_ip(peer.ip(), &headers);
    let script = |status: StatusCode, body: String| {
        (
            status,
            [
                (
                    header::CONTENT_TYPE,
                    "application/javascript; charset=utf-8",
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            format!("{callback}({body});"),
        )
            .into_response()
    };
    match authorize(&shared, &params, ip, &headers) {
        Ok(body) => script(StatusCode::OK, body),
        Err(refused) => {
            refused.respond(|status, msg| script(status, json!({ "error": msg }).to_string()))
        }
    }
}

/// Signs a subscription for the client at `ip`, or says why not.
///
/// A presence visitor keeps the id it asks for when it shows the token this
/// endpoint gave with it, or when nobody with that id is present in the
/// channel (a new id chosen by the client, an older page); otherwise it is
/// given a fresh id, so an id read from the roster is not enough to appear
/// as someone who is here. Every answer carries the id's token.
fn authorize(
    shared: &Shared,
    p: &AuthParams,
    ip: IpAddr,
    headers: &HeaderMap,
) -> Result<String, Refused> {
    let bad = |m: &str| Refused::new(StatusCode::BAD_REQUEST, m);
    let app = app_for(shared, p.app_key.as_deref()).ok_or_else(|| match &p.app_key {
        Some(k) => Refused::new(StatusCode::NOT_FOUND, format!("unknown app_key {k:?}")),
        None => bad("no app configured"),
    })?;
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    app.config
        .check_origin(origin)
        .map_err(|m| Refused::new(StatusCode::FORBIDDEN, m))?;
    let socket_id = p
        .socket_id
        .as_deref()
        .ok_or_else(|| bad("socket_id is missing"))?;
    if !is_socket_id(socket_id) {
        return Err(bad("socket_id must look like 123.456"));
    }
    let channel = p
        .channel_name
        .as_deref()
        .ok_or_else(|| bad("channel_name is missing"))?;
    let name = ChannelName::parse(channel).map_err(|e| bad(&format!("channel_name: {e}")))?;
    if !app.config.auth_channels.iter().any(|c| c == channel) {
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            format!(
                "this auth endpoint does not sign {channel:?}; it signs only {}",
                app.config.auth_channels.join(", ")
            ),
        ));
    }
    if name.kind() == ChannelKind::Public {
        return Err(bad("public channels need no authorization"));
    }
    shared.gate.sign(ip).map_err(|r| Refused {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: r.message,
        retry_after: Some(r.retry_after),
    })?;
    let body = match name.kind() {
        ChannelKind::Presence => {
            let secret = &app.config.secret;
            let asked = p
                .visitor_id
                .as_deref()
                .filter(|v| identity::is_valid_visitor_id(v));
            let user_id = match asked {
                Some(id)
                    if p.visitor_token
                        .as_deref()
                        .is_some_and(|t| identity::verify_visitor_token(secret, id, t)) =>
                {
                    id.to_owned()
                }
                Some(id) if !app.is_present_anywhere(id) => id.to_owned(),
                Some(id) => {
                    tracing::debug!(
                        visitor_id = id,
                        %ip,
                        "visitor id asked for without its token while present: a fresh id given"
                    );
                    identity::new_visitor_id()
                }
                None => identity::new_visitor_id(),
            };
            let display = match p.name.as_deref() {
                Some(n) => identity::clean_name(n).map_err(|e| bad(&e.to_string()))?,
                None => None,
            }
            .unwrap_or_else(|| identity::fake_name(&user_id));
            let observer = match (&p.observer_token, &app.config.observer_token) {
                (None, _) => false,
                (Some(given), Some(token)) if whosin_protocol::sign::constant_time_eq(
                    given.as_bytes(),
                    token.as_bytes(),
                ) =>
                {
                    true
                }
                (Some(_), _) => {
                    return Err(Refused::new(
                        StatusCode::FORBIDDEN,
                        "observer_token is not this app's owner token (observer_token in the app's TOML)",
                    ))
                }
            };
            let mut data = json!({
                "user_id": user_id,
                "user_info": {
                    "name": display,
                    "ip": identity::display_ip(ip, app.config.mask_ips),
                }
            });
            if observer {
                data["observer"] = json!(true);
            }
            let channel_data = data.to_string();
            let auth = channel_auth(
                &app.config.key,
                &app.config.secret,
                socket_id,
                channel,
                Some(&channel_data),
            );
            json!({
                "auth": auth,
                "channel_data": channel_data,
                "visitor_id": user_id,
                "visitor_token": identity::visitor_token(secret, &user_id),
            })
        }
        // Private and private-encrypted (public ones were refused above).
        _ => {
            let auth = channel_auth(
                &app.config.key,
                &app.config.secret,
                socket_id,
                channel,
                None,
            );
            json!({ "auth": auth })
        }
    };
    Metrics::inc(&shared.metrics.auth_endpoint_signatures);
    Ok(body.to_string())
}

/// The app a request is for: the one with its `app_key`, else the first.
fn app_for<'a>(shared: &'a Shared, app_key: Option<&str>) -> Option<&'a Arc<App>> {
    match app_key {
        Some(k) => shared.app_by_key(k),
        None => shared.apps.first(),
    }
}

/// Whether a JSONP callback is a plain identifier path: `a.b`, `a['3']`,
/// `a[3]`, `a["x"]`, made of identifier characters only.
pub fn is_safe_callback(cb: &str) -> bool {
    fn ident(s: &[u8], i: &mut usize) -> bool {
        let start = *i;
        while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_' || s[*i] == b'$') {
            *i += 1;
        }
        *i > start && !s[start].is_ascii_digit()
    }
    if cb.is_empty() || cb.len() > MAX_CALLBACK_LEN {
        return false;
    }
    let s = cb.as_bytes();
    let mut i = 0;
    if !ident(s, &mut i) {
        return false;
    }
    while i < s.len() {
        match s[i] {
            b'.' => {
                i += 1;
                if !ident(s, &mut i) {
                    return false;
                }
            }
            b'[' => {
                i += 1;
                let quote = match s.get(i) {
                    Some(q @ (b'\'' | b'"')) => {
                        i += 1;
                        Some(*q)
                    }
                    _ => None,
                };
                let start = i;
                while i < s.len()
                    && (s[i].is_ascii_alphanumeric()
                        || s[i] == b'_'
                        || s[i] == b'$'
                        || s[i] == b'-')
                {
                    if quote.is_none() && !s[i].is_ascii_digit() {
                        return false;
                    }
                    i += 1;
                }
                if i == start {
                    return false;
                }
                if let Some(q) = quote {
                    if s.get(i) != Some(&q) {
                        return false;
                    }
                    i += 1;
                }
                if s.get(i) != Some(&b']') {
                    return false;
                }
                i += 1;
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks() {
        for ok in [
            "cb",
            "Pusher.auth_callbacks['3']",
            "Pusher.auth_callbacks[\"3\"]",
            "Pusher.auth_callbacks[3]",
            "$jsonp_1.x",
            "a.b.c['d-e']",
        ] {
            assert!(is_safe_callback(ok), "{ok}");
        }
        for bad in [
            "",
            "alert(1);x",
            "a b",
            "a;b",
            "3a",
            "a[]",
            "a['3'",
            "a['3]",
            "a[x]",
            "a.",
            "a..b",
            "</script><script>alert(1)</script>",
            "a['3'](1)",
            "a[\"3']",
            &"a".repeat(200),
        ] {
            assert!(!is_safe_callback(bad), "{bad}");
        }
    }
}
