//! Watching a presence channel through the server's REST API.
//!
//! A client that subscribes to a presence channel is one of its members:
//! on servers without observers (hosted Pusher, Soketi, Sockudo) a monitor
//! that joins is counted as a visitor. With the app's id and secret, the
//! REST API's user list (`GET /apps/{id}/channels/{channel}/users`, signed)
//! says who is present without joining. The watcher reads it every
//! `interval` and hands it to the same [`Session`] a WebSocket client
//! feeds, so the caller gets the same [`Client`] and [`Events`]: a
//! `Snapshot` first, then `MemberAdded` and `MemberRemoved` as the list
//! changes. Members carry only their id (the REST API gives no
//! `user_info`), and a visit shorter than the interval may go unseen.

use crate::connection::{handles, Command, Ends};
use crate::endpoint::Endpoint;
use crate::event::{ConnectionState, Event, StopReason};
use crate::session::{Output, Session};
use crate::{Client, Events};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::{sleep_until, Instant};
use whosin_protocol::sign;

/// How often the list is read unless told otherwise: hosted Pusher counts
/// every request against the app's quota, and a count 10 s late is still
/// a live count.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The longest a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a watcher cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestWatchError {
    /// The app id or secret is empty.
    #[error("watching through the REST API needs the app's {0}; the site's owner has it")]
    Missing(&'static str),
}

/// A presence channel watched through the REST API.
#[derive(Debug, Clone)]
pub struct RestWatch {
    base: String,
    app_id: String,
    key: String,
    secret: String,
    interval: Duration,
}

/// What one read of the list came to.
#[derive(Debug, Clone, PartialEq)]
enum Poll {
    /// The ids present now.
    Users(Vec<String>),
    /// A refusal that another try will not change (wrong secret, no such
    /// app): stop until the settings change.
    Stop(StopReason),
    /// Try again later (unreachable, overloaded).
    Retry { reason: String, unreachable: bool },
}

impl RestWatch {
    /// A watcher of the server `endpoint` points at: its REST API is on the
    /// same host and port over HTTP (HTTPS for `wss`), under the same path
    /// prefix; a hosted Pusher cluster's is `api-{cluster}.pusher.com`.
    pub fn new(
        endpoint: &Endpoint,
        app_id: &str,
        secret: &str,
    ) -> Result<RestWatch, RestWatchError> {
        if app_id.trim().is_empty() {
            return Err(RestWatchError::Missing("id"));
        }
        if secret.is_empty() {
            return Err(RestWatchError::Missing("secret"));
        }
        let scheme = if endpoint.tls { "https" } else { "http" };
        let host = match endpoint
            .host
            .strip_prefix("ws-")
            .and_then(|h| h.strip_suffix(".pusher.com"))
        {
            Some(cluster) => format!("api-{cluster}.pusher.com"),
            // The legacy host without a cluster.
            None if endpoint.host == "ws.pusherapp.com" => "api.pusherapp.com".into(),
            None if endpoint.host.contains(':') => format!("[{}]", endpoint.host),
            None => endpoint.host.clone(),
        };
        Ok(RestWatch {
            base: format!("{scheme}://{host}:{}{}", endpoint.port, endpoint.path),
            app_id: app_id.trim().to_owned(),
            key: endpoint.key.clone(),
            secret: secret.to_owned(),
            interval: DEFAULT_INTERVAL,
        })
    }

    /// How often the list is read (at least every 100 ms).
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every.max(Duration::from_millis(100));
        self
    }

    /// Where the REST API is, e.g. `https://api-eu.pusher.com:443`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The signed URL of `channel`'s user list at `now` (seconds since the
    /// epoch). The signature covers the API's own path (`/apps/…`), not the
    /// endpoint's prefix: a proxy that serves the server under a prefix
    /// strips it before the server checks the signature.
    pub fn users_url(&self, channel: &str, now: u64) -> String {
        let path = format!("/apps/{}/channels/{channel}/users", self.app_id);
        let query = sign::rest_query(&self.key, &self.secret, "GET", &path, &[], now);
        format!("{}{path}?{query}", self.base)
    }

    /// Starts watching on the current tokio runtime; [`Client::subscribe`]
    /// names the channel (one at a time), [`Client::close`] stops it.
    pub fn start(self) -> (Client, Events) {
        let (client, events, ends) = handles(Session::new(false), 1024);
        tokio::spawn(self.run(ends));
        (client, events)
    }

    async fn run(self, mut ends: Ends) {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default();
        set_state(&ends, ConnectionState::Connecting).await;
        let mut channel: Option<String> = None;
        let mut connected = false;
        let mut next = Instant::now();
        // The read under way, and the channel it is of: commands are taken
        // while it waits, so Close never waits for a slow server.
        let mut in_flight: Option<(String, Read)> = None;
        loop {
            tokio::select! {
                command = ends.commands.recv() => match command {
                    None | Some(Command::Close) => {
                        set_state(&ends, ConnectionState::Disconnected { reason: StopReason::Closed }).await;
                        return;
                    }
                    Some(Command::Subscribe(ch)) => {
                        channel = Some(ch);
                        in_flight = None;
                        next = Instant::now();
                    }
                    Some(Command::Unsubscribe(ch)) => {
                        if channel.as_deref() == Some(ch.as_str()) {
                            channel = None;
                            in_flight = None;
                        }
                        lock(&ends).session.unsubscribe(&ch);
                    }
                    // Nothing to send them with: a watcher is not a member.
                    Some(Command::Trigger { .. }) => {}
                },
                _ = sleep_until(next), if in_flight.is_none() && channel.is_some() => {
                    let ch = channel.clone().unwrap_or_default();
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or_default();
                    let read = fetch(http.clone(), self.users_url(&ch, now), self.base.clone());
                    in_flight = Some((ch, Box::pin(read)));
                }
                polled = async { in_flight.as_mut().expect("a read under way").1.as_mut().await }, if in_flight.is_some() => {
                    let ch = in_flight.take().map(|(ch, _)| ch).unwrap_or_default();
                    match polled {
                        Poll::Users(ids) => {
                            if !connected {
                                connected = true;
                                set_state(&ends, ConnectionState::Connected { socket_id: "rest".into() }).await;
                            }
                            let outputs = lock(&ends)
                                .session
                                .roster(ch, ids.into_iter().map(|id| (id, Value::Null)));
                            for output in outputs {
                                if let Output::Emit(e) = output {
                                    let _ = ends.events.send(e).await;
                                }
                            }
                        }
                        Poll::Stop(reason) => {
                            set_state(&ends, ConnectionState::Disconnected { reason }).await;
                            return;
                        }
                        Poll::Retry { reason, unreachable } => {
                            connected = false;
                            set_state(&ends, ConnectionState::Reconnecting { delay: self.interval, reason, unreachable }).await;
                        }
                    }
                    next = Instant::now() + self.interval;
                }
            }
        }
    }
}

/// A read of the user list under way.
type Read = Pin<Box<dyn Future<Output = Poll> + Send>>;

/// One read of the user list at `url` (the REST API at `base`).
async fn fetch(http: reqwest::Client, url: String, base: String) -> Poll {
    let response = match http.get(url).send().await {
        Ok(r) => r,
        Err(e) => {
            return Poll::Retry {
                reason: format!("cannot reach the REST API at {base}: {e}"),
                unreachable: true,
            }
        }
    };
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    answer(status, &body, &base)
}

/// What the server's answer means.
fn answer(status: u16, body: &str, base: &str) -> Poll {
    let said: String = body.trim().chars().take(200).collect();
    match status {
        200 => match parse_users(body) {
            Ok(ids) => Poll::Users(ids),
            Err(e) => Poll::Retry {
                reason: e,
                unreachable: false,
            },
        },
        400..=404 => Poll::Stop(StopReason::RestRefused {
            status,
            reason: format!("{said} (from {base})"),
        }),
        _ => Poll::Retry {
            reason: format!("the REST API at {base} answered HTTP {status}: {said}"),
            unreachable: false,
        },
    }
}

/// The ids in a user list (`{"users":[{"id":"1"},…]}`).
pub fn parse_users(body: &str) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct User {
        id: String,
    }
    #[derive(serde::Deserialize)]
    struct Users {
        users: Vec<User>,
    }
    serde_json::from_str::<Users>(body)
        .map(|u| u.users.into_iter().map(|u| u.id).collect())
        .map_err(|e| format!("the REST API's user list is not readable ({e}); is this a Pusher-compatible server?"))
}

fn lock(ends: &Ends) -> std::sync::MutexGuard<'_, crate::connection::View> {
    ends.view.lock().unwrap_or_else(|e| e.into_inner())
}

async fn set_state(ends: &Ends, state: ConnectionState) {
    lock(ends).state = state.clone();
    let _ = ends.events.send(Event::State(state)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_api_is_beside_the_websocket() {
        let at = |url: &str| {
            RestWatch::new(&Endpoint::parse(url, "key").unwrap(), "7", "s")
                .unwrap()
                .base()
                .to_owned()
        };
        assert_eq!(at("ws://127.0.0.1:6001"), "http://127.0.0.1:6001");
        assert_eq!(at("wss://example.com"), "https://example.com:443");
        assert_eq!(at("ws://[::1]:6001"), "http://[::1]:6001");
        let pusher = Endpoint::cluster("eu", "key").unwrap();
        assert_eq!(
            RestWatch::new(&pusher, "7", "s").unwrap().base(),
            "https://api-eu.pusher.com:443"
        );
        assert_eq!(
            at("wss://ws.pusherapp.com"),
            "https://api.pusherapp.com:443"
        );
    }

    #[test]
    fn an_id_and_a_secret_are_needed() {
        let ep = Endpoint::parse("ws://127.0.0.1:6001", "key").unwrap();
        assert_eq!(
            RestWatch::new(&ep, " ", "s").unwrap_err(),
            RestWatchError::Missing("id")
        );
        assert_eq!(
            RestWatch::new(&ep, "7", "").unwrap_err().to_string(),
            "watching through the REST API needs the app's secret; the site's owner has it"
        );
    }

    #[test]
    fn the_user_list_url_is_signed() {
        let ep = Endpoint::parse("ws://127.0.0.1:6001", "278d425bdf160c739803").unwrap();
        let w = RestWatch::new(&ep, "3", "7ad3773142a6692b25b8").unwrap();
        let url = w.users_url("presence-whosin", 1353088179);
        let path = "/apps/3/channels/presence-whosin/users";
        let sig = sign::rest_signature(
            "7ad3773142a6692b25b8",
            "GET",
            path,
            [
                ("auth_key", "278d425bdf160c739803"),
                ("auth_timestamp", "1353088179"),
                ("auth_version", "1.0"),
            ],
        );
        assert_eq!(
            url,
            format!("http://127.0.0.1:6001{path}?auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&auth_signature={sig}")
        );
    }

    const B: &str = "http://127.0.0.1:6001";

    #[test]
    fn answers_are_users_a_refusal_or_a_retry() {
        assert_eq!(
            answer(200, r#"{"users":[{"id":"a"},{"id":"b"}]}"#, B),
            Poll::Users(vec!["a".into(), "b".into()])
        );
        assert_eq!(answer(200, r#"{"users":[]}"#, B), Poll::Users(vec![]));
        assert!(matches!(
            answer(200, "<html>", B),
            Poll::Retry {
                unreachable: false,
                ..
            }
        ));
        assert_eq!(
            answer(401, "Invalid signature", B),
            Poll::Stop(StopReason::RestRefused {
                status: 401,
                reason: "Invalid signature (from http://127.0.0.1:6001)".into()
            })
        );
        assert!(matches!(answer(404, "", B), Poll::Stop(_)));
        assert!(
            matches!(answer(503, "busy", B), Poll::Retry { ref reason, .. } if reason.contains(B))
        );
        assert!(matches!(answer(429, "", B), Poll::Retry { .. }));
    }
}
