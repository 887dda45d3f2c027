//! A raw Pusher-protocol-7 connection for tests that need what the
//! client crate hides: the HTTP answer to a refused open, any header on the
//! upgrade (`X-Forwarded-For`, `Origin`), and every frame as JSON.

use super::{DEADLINE, KEY};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A raw Pusher connection, opened as coming from some address.
pub struct Raw {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
}

/// How an open was refused: the HTTP status and its `Retry-After`.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Raw {
    /// Opens a connection to `port` as `from` (an `X-Forwarded-For`
    /// address; `None`: as the loopback peer itself), with `origin` if any.
    pub async fn open(port: u16, from: Option<&str>, origin: Option<&str>) -> Result<Raw, Refused> {
        let url = format!("ws://127.0.0.1:{port}/app/{KEY}?protocol=7&client=abuse-test");
        let mut req = url.into_client_request().unwrap();
        if let Some(ip) = from {
            req.headers_mut()
                .insert("x-forwarded-for", ip.parse().unwrap());
        }
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        let opened = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(req))
            .await
            .expect("the server answers an open in time");
        let ws = match opened {
            Ok((ws, _)) => ws,
            Err(WsError::Http(r)) => {
                return Err(Refused {
                    status: r.status().as_u16(),
                    retry_after: r
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    body: String::from_utf8_lossy(r.body().as_deref().unwrap_or_default())
                        .into_owned(),
                })
            }
            Err(e) => panic!("open failed without an HTTP answer: {e}"),
        };
        let mut raw = Raw {
            ws,
            socket_id: String::new(),
        };
        let hello = raw.next("pusher:connection_established").await;
        raw.socket_id = data(&hello)["socket_id"].as_str().unwrap().to_owned();
        Ok(raw)
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// The next frame whose event is `event` (others are skipped).
    pub async fn next(&mut self, event: &str) -> Value {
        self.next_of(&[event]).await
    }

    /// The next frame whose event is one of `events`.
    pub async fn next_of(&mut self, events: &[&str]) -> Value {
        let until = Instant::now() + DEADLINE;
        loop {
            let msg = tokio::time::timeout_at(until, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no {events:?} within {DEADLINE:?}"));
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if events.contains(&v["event"].as_str().unwrap_or("")) {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended waiting for {events:?}: {other:?}"),
            }
        }
    }

    /// Subscribes with what the auth endpoint answered; returns the
    /// `subscription_succeeded` or `subscription_error` frame.
    pub async fn subscribe_signed(&mut self, channel: &str, signed: &Value) -> Value {
        self.send(json!({"event": "pusher:subscribe", "data": {
            "channel": channel,
            "auth": signed["auth"],
            "channel_data": signed["channel_data"],
        }}))
        .await;
        self.next_of(&[
            "pusher_internal:subscription_succeeded",
            "pusher:subscription_error",
        ])
        .await
    }
}

/// A frame's `data`, parsed when it is a JSON string.
pub fn data(frame: &Value) -> Value {
    match &frame["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        v => v.clone(),
    }
}
