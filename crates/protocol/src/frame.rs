//! Frames on the wire, both directions.
//!
//! Pusher sends `data` of `pusher:*` and `pusher_internal:*` events as a JSON
//! *string* holding JSON ("double-encoded"), while clients send `data` of
//! their own `pusher:subscribe` as an object (pusher-js) or a string (others).
//! Both quirks are handled here and nowhere else: callers get typed values
//! and hand typed values in.

use crate::limits::MAX_USER_ID_LEN;
use crate::roster::json_string;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// Why a frame could not be understood. The message is sent back to the
/// client in `pusher:error`, so it says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not JSON, or not an object with a string `event`.
    #[error("frame must be a JSON object with a string \"event\": {0}")]
    Malformed(String),
    /// A field the event needs is absent or of the wrong type.
    #[error("{event}: {problem}")]
    BadField {
        /// The event.
        event: String,
        /// What is wrong.
        problem: String,
    },
}

/// The envelope every frame shares. `data` stays raw so client-event payloads
/// are forwarded byte for byte.
#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    user_id: Option<serde_json::Value>,
}

/// What a client asked for in `pusher:subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubscribeData {
    /// The channel name, not yet validated.
    pub channel: String,
    /// `key:signature` for private and presence channels.
    #[serde(default)]
    pub auth: Option<String>,
    /// For presence: the JSON string that was signed.
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// A frame from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `pusher:ping`: answer with `pusher:pong`.
    Ping,
    /// `pusher:pong`: the answer to our ping.
    Pong,
    /// `pusher:subscribe`.
    Subscribe(SubscribeData),
    /// `pusher:unsubscribe`.
    Unsubscribe {
        /// The channel to leave.
        channel: String,
    },
    /// `pusher:signin` (user authentication).
    Signin {
        /// `key:signature`.
        auth: String,
        /// The signed user data JSON.
        user_data: String,
    },
    /// A `client-*` event to relay to the channel's other subscribers.
    ClientEvent {
        /// Event name, starting with `client-`.
        event: String,
        /// Channel it is for.
        channel: String,
        /// The payload as raw JSON, relayed unchanged.
        data: String,
    },
    /// Any other event: ignored, as Pusher does, so newer clients keep working.
    Other {
        /// Its name.
        event: String,
    },
}

impl ClientFrame {
    /// Parses one text frame from a client.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let env: Envelope<'_> =
            serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
        let bad = |problem: &str| FrameError::BadField {
            event: env.event.clone(),
            problem: problem.to_owned(),
        };
        match env.event.as_str() {
            "pusher:ping" => Ok(ClientFrame::Ping),
            "pusher:pong" => Ok(ClientFrame::Pong),
            "pusher:subscribe" => {
                let data = env.data.ok_or_else(|| bad("missing data"))?;
                let sub: SubscribeData = decode_data(data).map_err(|e| {
                    bad(&format!(
                        "data must be {{\"channel\":string,\"auth\"?:string,\"channel_data\"?:string}} ({e})"
                    ))
                })?;
                Ok(ClientFrame::Subscribe(sub))
            }
            "pusher:unsubscribe" => {
                #[derive(Deserialize)]
                struct Unsub {
                    channel: String,
                }
                let data = env.data.ok_or_else(|| bad("missing data"))?;
                let u: Unsub = decode_data(data)
                    .map_err(|e| bad(&format!("data must be {{\"channel\":string}} ({e})")))?;
                Ok(ClientFrame::Unsubscribe { channel: u.channel })
            }
            "pusher:signin" => {
                #[derive(Deserialize)]
                struct Signin {
                    auth: String,
                    user_data: String,
                }
                let data = env.data.ok_or_else(|| bad("missing data"))?;
                let s: Signin = decode_data(data).map_err(|e| {
                    bad(&format!(
                        "data must be {{\"auth\":string,\"user_data\":string}} ({e})"
                    ))
                })?;
                Ok(ClientFrame::Signin {
                    auth: s.auth,
                    user_data: s.user_data,
                })
            }
            ev if ev.starts_with("client-") => {
                let channel = env
                    .channel
                    .clone()
                    .ok_or_else(|| bad("client events need a \"channel\""))?;
                let data = env
                    .data
                    .map(|d| d.get().to_owned())
                    .unwrap_or_else(|| "{}".into());
                Ok(ClientFrame::ClientEvent {
                    event: env.event.clone(),
                    channel,
                    data,
                })
            }
            _ => Ok(ClientFrame::Other { event: env.event }),
        }
    }
}

/// Decodes `data` that may be an object or a string holding one.
fn decode_data<T: for<'de> Deserialize<'de>>(raw: &RawValue) -> Result<T, serde_json::Error> {
    let text = raw.get();
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text)?;
        serde_json::from_str(&inner)
    } else {
        serde_json::from_str(text)
    }
}

/// Why presence `channel_data` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceDataError {
    /// Not a JSON object with `user_id`.
    #[error("channel_data must be a JSON object with a \"user_id\" (string or number) and an optional \"user_info\"")]
    Invalid,
    /// `user_id` is empty.
    #[error("user_id must not be empty")]
    EmptyUserId,
    /// `user_id` is longer than allowed.
    #[error("user_id is {len} characters long; the limit is {max}")]
    UserIdTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `user_info` is larger than allowed.
    #[error("user_info is {len} bytes; the limit is {max}")]
    UserInfoTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Presence `channel_data`: who the subscriber says they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceData {
    /// The user id, numbers turned into their decimal text as Pusher does.
    pub user_id: String,
    /// `user_info` as encoded JSON (`null` when absent).
    pub user_info: Arc<str>,
    /// A whosin extension: `"observer": true` beside `user_id` (signed like
    /// the rest) makes the subscription a watcher that receives the roster
    /// and every change but is never a member itself.
    pub observer: bool,
}

impl PresenceData {
    /// Parses and checks `channel_data` against the id and info limits.
    pub fn parse(
        channel_data: &str,
        max_user_info: usize,
    ) -> Result<PresenceData, PresenceDataError> {
        #[derive(Deserialize)]
        struct Raw<'a> {
            user_id: serde_json::Value,
            #[serde(default, borrow)]
            user_info: Option<&'a RawValue>,
            #[serde(default)]
            observer: Option<serde_json::Value>,
        }
        let raw: Raw<'_> =
            serde_json::from_str(channel_data).map_err(|_| PresenceDataError::Invalid)?;
        let user_id = match raw.user_id {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(PresenceDataError::Invalid),
        };
        if user_id.is_empty() {
            return Err(PresenceDataError::EmptyUserId);
        }
        let len = user_id.chars().count();
        if len > MAX_USER_ID_LEN {
            return Err(PresenceDataError::UserIdTooLong {
                len,
                max: MAX_USER_ID_LEN,
            });
        }
        let info = raw.user_info.map(|r| r.get()).unwrap_or("null");
        if info.len() > max_user_info {
            return Err(PresenceDataError::UserInfoTooLarge {
                len: info.len(),
                max: max_user_info,
            });
        }
        Ok(PresenceData {
            user_id,
            user_info: Arc::from(info),
            // Only a literal `true`: anything else is an ordinary member.
            observer: raw.observer == Some(serde_json::Value::Bool(true)),
        })
    }
}

/// The payload of an event sent to subscribers.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// A string payload (REST triggers): sent as a JSON string literal.
    Str(&'a str),
    /// Raw JSON (client events): sent as it came.
    Raw(&'a str),
}

fn frame(event: &str, channel: Option<&str>, data: Data<'_>, user_id: Option<&str>) -> String {
    let data_len = match data {
        Data::Str(d) => d.len() + d.len() / 8 + 2,
        Data::Raw(r) => r.len(),
    };
    let mut out = String::with_capacity(64 + event.len() + channel.map_or(0, str::len) + data_len);
    out.push_str(r#"{"event":"#);
    out.push_str(&json_string(event));
    if let Some(ch) = channel {
        out.push_str(r#","channel":"#);
        out.push_str(&json_string(ch));
    }
    out.push_str(r#","data":"#);
    match data {
        Data::Str(s) => out.push_str(&json_string(s)),
        Data::Raw(r) => out.push_str(r),
    }
    if let Some(u) = user_id {
        out.push_str(r#","user_id":"#);
        out.push_str(&json_string(u));
    }
    out.push('}');
    out
}

/// Encoders for what a client sends. Unlike the server's `pusher:*` frames,
/// a client's `data` is a JSON object, not a string (as pusher-js sends).
pub mod client {
    use super::*;

    /// `pusher:ping`.
    pub fn ping() -> String {
        frame("pusher:ping", None, Data::Raw("{}"), None)
    }

    /// `pusher:pong`, the answer to the server's ping.
    pub fn pong() -> String {
        frame("pusher:pong", None, Data::Raw("{}"), None)
    }

    /// `pusher:subscribe`; `auth` for private and presence channels,
    /// `channel_data` (the JSON text that was signed) for presence.
    pub fn subscribe(channel: &str, auth: Option<&str>, channel_data: Option<&str>) -> String {
        let mut data = format!(r#"{{"channel":{}"#, json_string(channel));
        if let Some(a) = auth {
            data.push_str(r#","auth":"#);
            data.push_str(&json_string(a));
        }
        if let Some(cd) = channel_data {
            data.push_str(r#","channel_data":"#);
            data.push_str(&json_string(cd));
        }
        data.push('}');
        frame("pusher:subscribe", None, Data::Raw(&data), None)
    }

    /// `pusher:unsubscribe`.
    pub fn unsubscribe(channel: &str) -> String {
        let data = format!(r#"{{"channel":{}}}"#, json_string(channel));
        frame("pusher:unsubscribe", None, Data::Raw(&data), None)
    }

    /// A client event on `channel`; `data` is raw JSON, sent as it is.
    pub fn event(event: &str, channel: &str, data: &str) -> String {
        frame(event, Some(channel), Data::Raw(data), None)
    }
}

/// Encoders for what a server sends. Each returns the finished frame text,
/// so a broadcast is encoded once and the same bytes go to every subscriber.
pub mod server {
    use super::*;

    /// `pusher:connection_established`.
    pub fn connection_established(socket_id: &str, activity_timeout: u64) -> String {
        let inner = format!(
            r#"{{"socket_id":{},"activity_timeout":{activity_timeout}}}"#,
            json_string(socket_id)
        );
        frame(
            "pusher:connection_established",
            None,
            Data::Str(&inner),
            None,
        )
    }

    /// `pusher:error`; `code` is a 4xxx code or none for a recoverable problem.
    pub fn error(code: Option<u16>, message: &str) -> String {
        let code = code.map_or("null".to_owned(), |c| c.to_string());
        let inner = format!(r#"{{"code":{code},"message":{}}}"#, json_string(message));
        frame("pusher:error", None, Data::Str(&inner), None)
    }

    /// `pusher:ping`.
    pub fn ping() -> String {
        frame("pusher:ping", None, Data::Str("{}"), None)
    }

    /// `pusher:pong`.
    pub fn pong() -> String {
        frame("pusher:pong", None, Data::Str("{}"), None)
    }

    /// `pusher_internal:subscription_succeeded`; `presence_json` is
    /// [`crate::roster::presence_json`] for presence channels.
    pub fn subscription_succeeded(channel: &str, presence_json: Option<&str>) -> String {
        frame(
            "pusher_internal:subscription_succeeded",
            Some(channel),
            Data::Str(presence_json.unwrap_or("{}")),
            None,
        )
    }

    /// `pusher_internal:subscription_succeeded` with `data` already a JSON
    /// string literal, quotes included (see
    /// [`crate::roster::subscription_succeeded_escaped`]).
    pub fn subscription_succeeded_quoted(channel: &str, data: &str) -> String {
        frame(
            "pusher_internal:subscription_succeeded",
            Some(channel),
            Data::Raw(data),
            None,
        )
    }

    /// `pusher:subscription_error` with an HTTP-like status and a message.
    pub fn subscription_error(channel: &str, status: u16, message: &str) -> String {
        let inner = format!(
            r#"{{"type":"AuthError","error":{},"status":{status}}}"#,
            json_string(message)
        );
        frame(
            "pusher:subscription_error",
            Some(channel),
            Data::Str(&inner),
            None,
        )
    }

    /// `pusher_internal:member_added`.
    pub fn member_added(channel: &str, user_id: &str, user_info: &str) -> String {
        let inner = format!(
            r#"{{"user_id":{},"user_info":{user_info}}}"#,
            json_string(user_id)
        );
        frame(
            "pusher_internal:member_added",
            Some(channel),
            Data::Str(&inner),
            None,
        )
    }

    /// `pusher_internal:member_removed`.
    pub fn member_removed(channel: &str, user_id: &str) -> String {
        let inner = format!(r#"{{"user_id":{}}}"#, json_string(user_id));
        frame(
            "pusher_internal:member_removed",
            Some(channel),
            Data::Str(&inner),
            None,
        )
    }

    /// `pusher_internal:subscription_count`: how many connections are
    /// subscribed to a public or private channel (pusher-js 8 fires
    /// `pusher:subscription_count` with it).
    pub fn subscription_count(channel: &str, count: usize) -> String {
        let inner = format!(r#"{{"subscription_count":{count}}}"#);
        frame(
            "pusher_internal:subscription_count",
            Some(channel),
            Data::Str(&inner),
            None,
        )
    }

    /// `pusher:cache_miss`: a cache channel had no event to replay.
    pub fn cache_miss(channel: &str) -> String {
        frame("pusher:cache_miss", Some(channel), Data::Str("{}"), None)
    }

    /// `pusher_internal:watchlist_events`: watched users who came online
    /// (`online: true`) or went offline.
    pub fn watchlist_events(online: bool, user_ids: &[&str]) -> String {
        let ids: Vec<String> = user_ids.iter().map(|u| json_string(u)).collect();
        let inner = format!(
            r#"{{"events":[{{"name":"{}","user_ids":[{}]}}]}}"#,
            if online { "online" } else { "offline" },
            ids.join(",")
        );
        frame(
            "pusher_internal:watchlist_events",
            None,
            Data::Str(&inner),
            None,
        )
    }

    /// `pusher:signin_success`.
    pub fn signin_success(user_data: &str) -> String {
        let inner = format!(r#"{{"user_data":{}}}"#, json_string(user_data));
        frame("pusher:signin_success", None, Data::Str(&inner), None)
    }

    /// An application event on a channel (REST trigger or client event).
    pub fn event(event: &str, channel: &str, data: Data<'_>, user_id: Option<&str>) -> String {
        frame(event, Some(channel), data, user_id)
    }
}

/// A frame from a server, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// `pusher:connection_established`.
    ConnectionEstablished {
        /// `^\d+\.\d+$`.
        socket_id: String,
        /// Seconds of silence after which the client should ping.
        activity_timeout: u64,
    },
    /// `pusher:error`.
    Error {
        /// 4xxx code, if any.
        code: Option<u16>,
        /// What went wrong.
        message: String,
    },
    /// `pusher:ping`.
    Ping,
    /// `pusher:pong`.
    Pong,
    /// `pusher_internal:subscription_succeeded`.
    SubscriptionSucceeded {
        /// The channel.
        channel: String,
        /// For presence channels: `(user_id, user_info JSON)` of every member.
        members: Option<Vec<(String, String)>>,
    },
    /// `pusher:subscription_error`.
    SubscriptionError {
        /// The channel.
        channel: String,
        /// HTTP-like status.
        status: u16,
        /// Message.
        error: String,
    },
    /// `pusher_internal:member_added`.
    MemberAdded {
        /// The channel.
        channel: String,
        /// Who.
        user_id: String,
        /// Their info, as JSON.
        user_info: String,
    },
    /// `pusher_internal:member_removed`.
    MemberRemoved {
        /// The channel.
        channel: String,
        /// Who.
        user_id: String,
    },
    /// Any other event on a channel.
    Event {
        /// Event name.
        event: String,
        /// Channel, if any.
        channel: Option<String>,
        /// Payload: the string's content if `data` was a string, else the raw JSON.
        data: String,
        /// Sender of a client event on a presence channel.
        user_id: Option<String>,
    },
}

impl ServerFrame {
    /// Parses one text frame from a server.
    pub fn parse(text: &str) -> Result<ServerFrame, FrameError> {
        let env: Envelope<'_> =
            serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
        let bad = |problem: String| FrameError::BadField {
            event: env.event.clone(),
            problem,
        };
        let channel = || {
            env.channel
                .clone()
                .ok_or_else(|| bad("missing channel".into()))
        };
        let value = || -> Result<serde_json::Value, FrameError> {
            match env.data {
                Some(d) => decode_data(d).map_err(|e| bad(e.to_string())),
                None => Ok(serde_json::Value::Null),
            }
        };
        let str_field = |v: &serde_json::Value, k: &str| -> Result<String, FrameError> {
            match &v[k] {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                _ => Err(bad(format!("missing {k}"))),
            }
        };
        Ok(match env.event.as_str() {
            "pusher:connection_established" => {
                let v = value()?;
                ServerFrame::ConnectionEstablished {
                    socket_id: str_field(&v, "socket_id")?,
                    activity_timeout: v["activity_timeout"].as_u64().unwrap_or(120),
                }
            }
            "pusher:error" => {
                let v = value()?;
                ServerFrame::Error {
                    code: v["code"].as_u64().and_then(|c| u16::try_from(c).ok()),
                    message: v["message"].as_str().unwrap_or_default().to_owned(),
                }
            }
            "pusher:ping" => ServerFrame::Ping,
            "pusher:pong" => ServerFrame::Pong,
            "pusher_internal:subscription_succeeded" => {
                let v = value()?;
                let members = v.get("presence").map(|p| {
                    p["hash"]
                        .as_object()
                        .map(|h| h.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
                        .unwrap_or_default()
                });
                ServerFrame::SubscriptionSucceeded {
                    channel: channel()?,
                    members,
                }
            }
            "pusher:subscription_error" => {
                let v = value()?;
                ServerFrame::SubscriptionError {
                    channel: channel()?,
                    status: v["status"]
                        .as_u64()
                        .and_then(|c| u16::try_from(c).ok())
                        .unwrap_or(0),
                    error: v["error"].as_str().unwrap_or_default().to_owned(),
                }
            }
            "pusher_internal:member_added" => {
                let v = value()?;
                ServerFrame::MemberAdded {
                    channel: channel()?,
                    user_id: str_field(&v, "user_id")?,
                    user_info: v["user_info"].to_string(),
                }
            }
            "pusher_internal:member_removed" => {
                let v = value()?;
                ServerFrame::MemberRemoved {
                    channel: channel()?,
                    user_id: str_field(&v, "user_id")?,
                }
            }
            _ => {
                let data = match env.data {
                    Some(d) if d.get().starts_with('"') => {
                        serde_json::from_str::<String>(d.get()).map_err(|e| bad(e.to_string()))?
                    }
                    Some(d) => d.get().to_owned(),
                    None => String::new(),
                };
                ServerFrame::Event {
                    event: env.event.clone(),
                    channel: env.channel.clone(),
                    data,
                    user_id: env.user_id.as_ref().map(|u| match u {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_data_as_object_or_string() {
        let obj = r#"{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s","channel_data":"{\"user_id\":1}"}}"#;
        let s =
            r#"{"event":"pusher:subscribe","data":"{\"channel\":\"private-a\",\"auth\":\"k:s\"}"}"#;
        assert_eq!(
            ClientFrame::parse(obj).unwrap(),
            ClientFrame::Subscribe(SubscribeData {
                channel: "presence-a".into(),
                auth: Some("k:s".into()),
                channel_data: Some(r#"{"user_id":1}"#.into()),
            })
        );
        assert_eq!(
            ClientFrame::parse(s).unwrap(),
            ClientFrame::Subscribe(SubscribeData {
                channel: "private-a".into(),
                auth: Some("k:s".into()),
                channel_data: None,
            })
        );
    }

    #[test]
    fn control_frames() {
        assert_eq!(
            ClientFrame::parse(r#"{"event":"pusher:ping","data":{}}"#).unwrap(),
            ClientFrame::Ping
        );
        assert_eq!(
            ClientFrame::parse(r#"{"event":"pusher:pong"}"#).unwrap(),
            ClientFrame::Pong
        );
        assert_eq!(
            ClientFrame::parse(r#"{"event":"pusher:unsubscribe","data":{"channel":"a"}}"#).unwrap(),
            ClientFrame::Unsubscribe {
                channel: "a".into()
            }
        );
        assert_eq!(
            ClientFrame::parse(
                r#"{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{}"}}"#
            )
            .unwrap(),
            ClientFrame::Signin {
                auth: "k:s".into(),
                user_data: "{}".into()
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"event":"whatever"}"#).unwrap(),
            ClientFrame::Other {
                event: "whatever".into()
            }
        );
    }

    #[test]
    fn client_event_keeps_raw_data() {
        let f = r#"{"event":"client-hi","channel":"private-a","data":{"b": [1, 2]}}"#;
        assert_eq!(
            ClientFrame::parse(f).unwrap(),
            ClientFrame::ClientEvent {
                event: "client-hi".into(),
                channel: "private-a".into(),
                data: r#"{"b": [1, 2]}"#.into(),
            }
        );
        assert!(matches!(
            ClientFrame::parse(r#"{"event":"client-hi","data":{}}"#),
            Err(FrameError::BadField { .. })
        ));
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        for bad in [
            "",
            "null",
            "[]",
            "{",
            r#"{"event":1}"#,
            r#"{"data":{}}"#,
            r#"{"event":"pusher:subscribe"}"#,
            r#"{"event":"pusher:subscribe","data":1}"#,
            r#"{"event":"pusher:subscribe","data":"not json"}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":5}}"#,
            r#"{"event":"pusher:unsubscribe","data":[]}"#,
            r#"{"event":"pusher:signin","data":{"auth":"x"}}"#,
        ] {
            assert!(
                ClientFrame::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn presence_data_rules() {
        let p = PresenceData::parse(
            r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#,
            1024,
        )
        .unwrap();
        assert_eq!(p.user_id, "10");
        assert_eq!(&*p.user_info, r#"{"name":"Mr. Channels"}"#);
        let p = PresenceData::parse(r#"{"user_id":"abc"}"#, 1024).unwrap();
        assert_eq!(&*p.user_info, "null");
        assert!(!p.observer);
        let o = PresenceData::parse(r#"{"user_id":"m","observer":true}"#, 1024).unwrap();
        assert!(o.observer);
        for not in [r#""true""#, "1", "false", "null"] {
            let p = PresenceData::parse(&format!(r#"{{"user_id":"m","observer":{not}}}"#), 1024)
                .unwrap();
            assert!(!p.observer, "{not}");
        }
        assert_eq!(
            PresenceData::parse("nope", 1024),
            Err(PresenceDataError::Invalid)
        );
        assert_eq!(
            PresenceData::parse(r#"{"user_id":true}"#, 1024),
            Err(PresenceDataError::Invalid)
        );
        assert_eq!(
            PresenceData::parse(r#"{"user_id":""}"#, 1024),
            Err(PresenceDataError::EmptyUserId)
        );
        let long = format!(r#"{{"user_id":"{}"}}"#, "x".repeat(129));
        assert_eq!(
            PresenceData::parse(&long, 1024),
            Err(PresenceDataError::UserIdTooLong { len: 129, max: 128 })
        );
        let ok = format!(r#"{{"user_id":"{}"}}"#, "x".repeat(128));
        assert!(PresenceData::parse(&ok, 1024).is_ok());
        let big = format!(r#"{{"user_id":"a","user_info":"{}"}}"#, "y".repeat(1100));
        assert!(matches!(
            PresenceData::parse(&big, 1024),
            Err(PresenceDataError::UserInfoTooLarge { max: 1024, .. })
        ));
    }

    #[test]
    fn server_frames_round_trip() {
        let cases = [
            (
                server::connection_established("1.2", 120),
                ServerFrame::ConnectionEstablished {
                    socket_id: "1.2".into(),
                    activity_timeout: 120,
                },
            ),
            (
                server::error(Some(4001), "nope"),
                ServerFrame::Error {
                    code: Some(4001),
                    message: "nope".into(),
                },
            ),
            (
                server::error(None, "soft"),
                ServerFrame::Error {
                    code: None,
                    message: "soft".into(),
                },
            ),
            (server::ping(), ServerFrame::Ping),
            (server::pong(), ServerFrame::Pong),
            (
                server::subscription_succeeded("a", None),
                ServerFrame::SubscriptionSucceeded {
                    channel: "a".into(),
                    members: None,
                },
            ),
            (
                server::subscription_error("private-a", 401, "bad \"sig\""),
                ServerFrame::SubscriptionError {
                    channel: "private-a".into(),
                    status: 401,
                    error: "bad \"sig\"".into(),
                },
            ),
            (
                server::member_added("presence-a", "u1", r#"{"name":"A"}"#),
                ServerFrame::MemberAdded {
                    channel: "presence-a".into(),
                    user_id: "u1".into(),
                    user_info: r#"{"name":"A"}"#.into(),
                },
            ),
            (
                server::member_removed("presence-a", "u1"),
                ServerFrame::MemberRemoved {
                    channel: "presence-a".into(),
                    user_id: "u1".into(),
                },
            ),
            (
                server::event("ev", "a", Data::Str("{\"x\":1}"), None),
                ServerFrame::Event {
                    event: "ev".into(),
                    channel: Some("a".into()),
                    data: "{\"x\":1}".into(),
                    user_id: None,
                },
            ),
            (
                server::event("client-x", "presence-a", Data::Raw("{\"x\":1}"), Some("u")),
                ServerFrame::Event {
                    event: "client-x".into(),
                    channel: Some("presence-a".into()),
                    data: "{\"x\":1}".into(),
                    user_id: Some("u".into()),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(ServerFrame::parse(&text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn pusher_internal_data_is_double_encoded() {
        let f = server::connection_established("1.2", 30);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert!(v["data"].is_string(), "{f}");
        let f = server::member_added("presence-a", "u", "null");
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert!(v["data"].is_string(), "{f}");
    }

    #[test]
    fn subscription_succeeded_presence_round_trip() {
        let json = crate::roster::presence_json([("u1", r#"{"name":"A"}"#), ("u2", "null")]);
        let f = server::subscription_succeeded("presence-x", Some(&json));
        let ServerFrame::SubscriptionSucceeded {
            members: Some(mut m),
            ..
        } = ServerFrame::parse(&f).unwrap()
        else {
            panic!("{f}")
        };
        m.sort();
        assert_eq!(
            m,
            vec![
                ("u1".to_owned(), r#"{"name":"A"}"#.to_owned()),
                ("u2".to_owned(), "null".to_owned())
            ]
        );
    }

    #[test]
    fn client_frames_round_trip_through_the_parser() {
        assert_eq!(
            ClientFrame::parse(&client::ping()).unwrap(),
            ClientFrame::Ping
        );
        assert_eq!(
            ClientFrame::parse(&client::pong()).unwrap(),
            ClientFrame::Pong
        );
        let data = r#"{"user_id":"u \"1\"","user_info":{"name":"Ad\na"}}"#;
        assert_eq!(
            ClientFrame::parse(&client::subscribe("presence-a", Some("k:sig"), Some(data)))
                .unwrap(),
            ClientFrame::Subscribe(SubscribeData {
                channel: "presence-a".into(),
                auth: Some("k:sig".into()),
                channel_data: Some(data.into()),
            })
        );
        assert_eq!(
            ClientFrame::parse(&client::subscribe("news", None, None)).unwrap(),
            ClientFrame::Subscribe(SubscribeData {
                channel: "news".into(),
                auth: None,
                channel_data: None,
            })
        );
        assert_eq!(
            ClientFrame::parse(&client::unsubscribe("news")).unwrap(),
            ClientFrame::Unsubscribe {
                channel: "news".into()
            }
        );
        assert_eq!(
            ClientFrame::parse(&client::event(
                "client-x",
                "private-a",
                r#"{"k":[1,"two"]}"#
            ))
            .unwrap(),
            ClientFrame::ClientEvent {
                event: "client-x".into(),
                channel: "private-a".into(),
                data: r#"{"k":[1,"two"]}"#.into(),
            }
        );
    }
}
