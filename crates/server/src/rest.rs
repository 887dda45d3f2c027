//! The HTTP REST API of Pusher Channels: triggering events and querying
//! channels and users, each request signed with the app's secret.

use crate::app::{App, ChannelInfo};
use crate::metrics::Metrics;
use crate::server::Shared;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use whosin_protocol::limits::{
    MAX_BATCH_EVENTS, MAX_EVENT_NAME_LEN, MAX_TRIGGER_CHANNELS, REST_TIMESTAMP_TOLERANCE_SECS,
};
use whosin_protocol::sign::{verify_rest, RestRequest};
use whosin_protocol::{ChannelKind, ChannelName};

/// A refused request: a status and a message saying what to fix.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, &self.message)
    }
}

/// Handler result: a JSON body or an [`ApiError`].
type ApiResult = Result<Response, ApiError>;

/// A JSON error body `{"error": message}` with a status.
pub fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message }).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> ApiResult {
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

/// Finds the app and checks the request's signature, timestamp and body MD5.
fn authenticate(
    shared: &Shared,
    app_id: &str,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<Arc<App>, ApiError> {
    Metrics::inc(&shared.metrics.rest_requests);
    let app = shared.app_by_id(app_id).cloned().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("unknown app id {app_id:?}"))
    })?;
    if !app.config.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("app {app_id:?} is disabled in this server's configuration"),
        ));
    }
    let Ok(Query(params)) = Query::<Vec<(String, String)>>::try_from_uri(uri) else {
        return Err(ApiError::bad("the query string is not valid"));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let req = RestRequest {
        method: method.as_str(),
        path: uri.path(),
        params: &params,
        body,
    };
    match verify_rest(
        &app.config.key,
        &app.config.secret,
        &req,
        now,
        REST_TIMESTAMP_TOLERANCE_SECS,
    ) {
        Ok(()) => Ok(app),
        Err(e) => {
            Metrics::inc(&shared.metrics.auth_failures);
            Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
        }
    }
}

/// One event to publish, as `/events` and each `/batch_events` entry carry it.
#[derive(Debug, Deserialize)]
struct EventBody {
    name: String,
    data: Value,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

/// A checked event ready to publish.
struct Checked {
    name: String,
    data: String,
    channels: Vec<String>,
    socket_id: Option<String>,
    info: Vec<String>,
}

fn check_event(app: &App, ev: EventBody) -> Result<Checked, ApiError> {
    let bad = ApiError::bad;
    if ev.name.is_empty() || ev.name.len() > MAX_EVENT_NAME_LEN {
        return Err(bad(format!(
            "event name must be 1 to {MAX_EVENT_NAME_LEN} characters"
        )));
    }
    let channels = match (ev.channels, ev.channel) {
        (Some(list), None) => list,
        (None, Some(one)) => vec![one],
        _ => {
            return Err(bad(
                "give either \"channels\" (a list) or \"channel\"".into()
            ))
        }
    };
    if channels.is_empty() || channels.len() > MAX_TRIGGER_CHANNELS {
        return Err(bad(format!(
            "an event goes to 1 to {MAX_TRIGGER_CHANNELS} channels"
        )));
    }
    for c in &channels {
        ChannelName::parse(c).map_err(|e| bad(format!("channel {c:?}: {e}")))?;
    }
    if let Some(s) = &ev.socket_id {
        if !is_socket_id(s) {
            return Err(bad(format!("socket_id {s:?} must look like 123.456")));
        }
    }
    let data = match ev.data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    if data.len() > app.config.max_event_data_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "event data is {} bytes; the limit is {}",
                data.len(),
                app.config.max_event_data_bytes
            ),
        ));
    }
    let info = parse_info(ev.info.as_deref());
    Ok(Checked {
        name: ev.name,
        data,
        channels,
        socket_id: ev.socket_id,
        info,
    })
}

/// Whether a string has the socket id shape `^\d+\.\d+$`.
pub fn is_socket_id(s: &str) -> bool {
    let Some((a, b)) = s.split_once('.') else {
        return false;
    };
    !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
}

fn parse_info(info: Option<&str>) -> Vec<String> {
    info.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn info_json(info: Option<ChannelInfo>, wanted: &[String]) -> Value {
    let mut m = Map::new();
    let info = info.unwrap_or(ChannelInfo {
        subscription_count: 0,
        user_count: None,
    });
    for w in wanted {
        match w.as_str() {
            "subscription_count" => {
                m.insert(w.clone(), json!(info.subscription_count));
            }
            "user_count" => {
                m.insert(w.clone(), json!(info.user_count.unwrap_or(0)));
            }
            _ => {}
        }
    }
    Value::Object(m)
}

async fn publish(app: &App, ev: &Checked) -> Value {
    app.trigger(&ev.channels, &ev.name, &ev.data, ev.socket_id.as_deref());
    let mut channels = Map::new();
    if !ev.info.is_empty() {
        for c in &ev.channels {
            let wanted: Vec<String> = ev
                .info
                .iter()
                .filter(|w| {
                    w.as_str() != "user_count" || ChannelKind::of(c) == ChannelKind::Presence
                })
                .cloned()
                .collect();
            channels.insert(c.clone(), info_json(app.channel_info(c).await, &wanted));
        }
    }
    Value::Object(channels)
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("request body is not valid: {e}")))
}

/// `POST /apps/{id}/events`.
pub async fn events(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let app = authenticate(&shared, &app_id, &method, &uri, &body)?;
    let ev: EventBody = parse_body(&body)?;
    let checked = check_event(&app, ev)?;
    let channels = publish(&app, &checked).await;
    if checked.info.is_empty() {
        ok(json!({}))
    } else {
        ok(json!({ "channels": channels }))
    }
}

/// `POST /apps/{id}/batch_events`.
pub async fn batch_events(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    #[derive(Deserialize)]
    struct Batch {
        batch: Vec<EventBody>,
    }
    let app = authenticate(&shared, &app_id, &method, &uri, &body)?;
    let batch: Batch = parse_body(&body)?;
    if batch.batch.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::bad(format!(
            "a batch holds at most {MAX_BATCH_EVENTS} events"
        )));
    }
    // Check every event before publishing any, so a bad batch publishes nothing.
    let mut checked = Vec::with_capacity(batch.batch.len());
    for ev in batch.batch {
        checked.push(check_event(&app, ev)?);
    }
    let any_info = checked.iter().any(|c| !c.info.is_empty());
    let mut results: Vec<Value> = Vec::with_capacity(checked.len());
    for c in &checked {
        let channels = publish(&app, c).await;
        results.push(
            channels
                .as_object()
                .and_then(|m| m.values().next().cloned())
                .unwrap_or_else(|| json!({})),
        );
    }
    if any_info {
        ok(json!({ "batch": results }))
    } else {
        ok(json!({}))
    }
}

/// `GET /apps/{id}/channels`.
pub async fn channels(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
) -> ApiResult {
    let app = authenticate(&shared, &app_id, &method, &uri, b"")?;
    let params = query_map(&uri);
    let prefix = params
        .get("filter_by_prefix")
        .map(String::as_str)
        .unwrap_or("");
    let info = parse_info(params.get("info").map(String::as_str));
    if info.iter().any(|i| i == "user_count") && !prefix.starts_with("presence-") {
        return Err(ApiError::bad(
            "info=user_count is only allowed with filter_by_prefix=presence-",
        ));
    }
    let mut channels = Map::new();
    for (name, ci) in app.channels(prefix).await {
        channels.insert(name, info_json(Some(ci), &info));
    }
    ok(json!({ "channels": channels }))
}

/// `GET /apps/{id}/channels/{name}`.
pub async fn channel(
    State(shared): State<Arc<Shared>>,
    Path((app_id, channel)): Path<(String, String)>,
    method: Method,
    uri: Uri,
) -> ApiResult {
    let app = authenticate(&shared, &app_id, &method, &uri, b"")?;
    if let Err(e) = ChannelName::parse(&channel) {
        return Err(ApiError::bad(format!("channel {channel:?}: {e}")));
    }
    let info = parse_info(query_map(&uri).get("info").map(String::as_str));
    if info.iter().any(|i| i == "user_count") && ChannelKind::of(&channel) != ChannelKind::Presence
    {
        return Err(ApiError::bad(
            "info=user_count is only available for presence channels",
        ));
    }
    let ci = app.channel_info(&channel).await;
    let mut body = info_json(ci, &info);
    if let Value::Object(m) = &mut body {
        m.insert("occupied".into(), json!(ci.is_some()));
    }
    ok(body)
}

/// `GET /apps/{id}/channels/{name}/history` (a whosin extension): the
/// presence channel's member count over the last 24 hours, one point per
/// minute in which it changed, and the count now.
pub async fn history(
    State(shared): State<Arc<Shared>>,
    Path((app_id, channel)): Path<(String, String)>,
    method: Method,
    uri: Uri,
) -> ApiResult {
    let app = authenticate(&shared, &app_id, &method, &uri, b"")?;
    if ChannelKind::of(&channel) != ChannelKind::Presence {
        return Err(ApiError::bad("history is kept for presence channels only"));
    }
    ok(history_json(&app, &channel).await)
}

/// The history answer shared by the REST path and the page's
/// `/history.json`.
pub async fn history_json(app: &crate::app::App, channel: &str) -> Value {
    let points = app.history(channel).await;
    let count = app.users(channel).map_or(0, |u| u.len());
    json!({
        "channel": channel,
        "resolution_s": 60,
        "count": count,
        "points": points,
    })
}

/// `GET /apps/{id}/channels/{name}/users`.
pub async fn users(
    State(shared): State<Arc<Shared>>,
    Path((app_id, channel)): Path<(String, String)>,
    method: Method,
    uri: Uri,
) -> ApiResult {
    let app = authenticate(&shared, &app_id, &method, &uri, b"")?;
    if ChannelKind::of(&channel) != ChannelKind::Presence {
        return Err(ApiError::bad(
            "users can only be listed for presence channels",
        ));
    }
    let ids = app.users(&channel).unwrap_or_default();
    let users: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    ok(json!({ "users": users }))
}

/// `POST /apps/{id}/users/{user_id}/terminate_connections`.
pub async fn terminate(
    State(shared): State<Arc<Shared>>,
    Path((app_id, user_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let app = authenticate(&shared, &app_id, &method, &uri, &body)?;
    let n = app.terminate_user(&user_id);
    tracing::info!(%user_id, connections = n, "terminated connections");
    ok(json!({}))
}

fn query_map(uri: &Uri) -> std::collections::HashMap<String, String> {
    Query::try_from_uri(uri)
        .map(|Query(m)| m)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids() {
        assert!(is_socket_id("123.456"));
        assert!(!is_socket_id("123"));
        assert!(!is_socket_id("a.1"));
        assert!(!is_socket_id(".1"));
        assert!(!is_socket_id("1.2.3"));
    }
}
