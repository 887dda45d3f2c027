//! Who signs subscriptions to private and presence channels.
//!
//! * [`LocalSigner`] holds the app secret: for the desktop's embedded server,
//!   where the secret never leaves the machine.
//! * [`HttpAuthorizer`] asks an auth endpoint exactly as pusher-js does (POST
//!   form, extra params and headers) and also accepts a JSONP answer.
//! * Anything else implements [`Authorizer`].

use serde::Deserialize;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use whosin_protocol::sign::channel_auth;
use whosin_protocol::ChannelKind;

/// A boxed future, so authorizers can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a subscription needs: the signature, and for presence the signed data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChannelAuth {
    /// `key:signature`.
    pub auth: String,
    /// For presence channels: the JSON string that was signed.
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// Why a subscription could not be authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The endpoint refused (HTTP 401/403, or another non-success status).
    #[error("the auth endpoint refused {channel} with HTTP {status}: {message}")]
    Refused {
        /// Channel.
        channel: String,
        /// HTTP status.
        status: u16,
        /// The endpoint's message.
        message: String,
    },
    /// The endpoint could not be reached.
    #[error("cannot reach the auth endpoint {url}: {message}")]
    Unreachable {
        /// Endpoint.
        url: String,
        /// Why.
        message: String,
    },
    /// The answer was not `{"auth": ...}` (or a JSONP call with it).
    #[error("the auth endpoint answered something that is not {{\"auth\":...}}: {0}")]
    BadAnswer(String),
    /// The channel needs auth but no authorizer was given.
    #[error("{0} needs authorization: give a secret (local signing) or an auth endpoint")]
    NoAuthorizer(String),
    /// A presence channel but the signer has no user.
    #[error("{0} is a presence channel: the signer needs a user id")]
    NoUser(String),
}

/// Signs subscriptions. Implement it for custom auth flows.
pub trait Authorizer: Send + Sync + 'static {
    /// Authorizes `socket_id` to subscribe to `channel`.
    fn authorize<'a>(
        &'a self,
        socket_id: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<ChannelAuth, AuthError>>;
}

/// A presence user: id and info.
#[derive(Debug, Clone, PartialEq)]
pub struct UserData {
    /// The user id.
    pub id: String,
    /// The info shown to others, e.g. `{"name": "...", "ip": "..."}`.
    pub info: Value,
    /// Watch without being counted: a whosin server's observer (see
    /// [`UserData::watching`]).
    pub observer: bool,
}

impl UserData {
    /// A user.
    pub fn new(id: impl Into<String>, info: Value) -> UserData {
        UserData {
            id: id.into(),
            info,
            observer: false,
        }
    }

    /// This user as an observer: on a whosin server it receives the roster
    /// and every change but is never a member (other servers ignore the
    /// flag and count it as a member).
    pub fn watching(mut self) -> UserData {
        self.observer = true;
        self
    }

    /// The `channel_data` string for presence.
    pub fn channel_data(&self) -> String {
        let mut v = serde_json::json!({"user_id": self.id, "user_info": self.info});
        if self.observer {
            v["observer"] = Value::Bool(true);
        }
        v.to_string()
    }
}

/// Signs with the app secret, in process.
#[derive(Debug, Clone)]
pub struct LocalSigner {
    key: String,
    secret: String,
    user: Option<UserData>,
}

impl LocalSigner {
    /// A signer for an app.
    pub fn new(key: impl Into<String>, secret: impl Into<String>) -> LocalSigner {
        LocalSigner {
            key: key.into(),
            secret: secret.into(),
            user: None,
        }
    }

    /// The user to join presence channels as.
    pub fn with_user(mut self, user: UserData) -> LocalSigner {
        self.user = Some(user);
        self
    }

    /// Signs synchronously.
    pub fn sign(&self, socket_id: &str, channel: &str) -> Result<ChannelAuth, AuthError> {
        let channel_data = match ChannelKind::of(channel) {
            ChannelKind::Presence => Some(
                self.user
                    .as_ref()
                    .ok_or_else(|| AuthError::NoUser(channel.to_owned()))?
                    .channel_data(),
            ),
            _ => None,
        };
        Ok(ChannelAuth {
            auth: channel_auth(
                &self.key,
                &self.secret,
                socket_id,
                channel,
                channel_data.as_deref(),
            ),
            channel_data,
        })
    }
}

impl Authorizer for LocalSigner {
    fn authorize<'a>(
        &'a self,
        socket_id: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<ChannelAuth, AuthError>> {
        Box::pin(async move { self.sign(socket_id, channel) })
    }
}

/// A visitor id and the token a whosin auth endpoint gave with it.
///
/// A whosin server signs a visitor id asked for without its token only
/// while nobody with that id is present, so that an id read from the
/// roster cannot be used to appear as someone else. A client keeps the
/// token with the id and sends both, and so stays itself across reconnects
/// (its old connection may still be present) and restarts (when the
/// caller stores [`VisitorIdentity::get`]). If the server answers with
/// another id, that one is kept from then on.
///
/// Cloning shares it: the caller keeps a clone to read what was learned.
#[derive(Debug, Clone)]
pub struct VisitorIdentity(Arc<Mutex<Identity>>);

/// What a [`VisitorIdentity`] holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The visitor id (the presence `user_id`).
    pub id: String,
    /// The token for it, once an endpoint gave one.
    pub token: Option<String>,
}

impl VisitorIdentity {
    /// An identity with this id and, if known, its token.
    pub fn new(id: impl Into<String>, token: Option<String>) -> VisitorIdentity {
        VisitorIdentity(Arc::new(Mutex::new(Identity {
            id: id.into(),
            token,
        })))
    }

    /// The id and token now.
    pub fn get(&self) -> Identity {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps the `visitor_id` and `visitor_token` of an endpoint's answer
    /// (a whosin server's; other endpoints send neither).
    fn learn(&self, answer: &Value) {
        if let (Some(id), Some(token)) = (
            answer["visitor_id"].as_str(),
            answer["visitor_token"].as_str(),
        ) {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Identity {
                id: id.to_owned(),
                token: Some(token.to_owned()),
            };
        }
    }
}

/// Asks an HTTP auth endpoint, as pusher-js's ajax transport does.
#[derive(Debug, Clone)]
pub struct HttpAuthorizer {
    url: String,
    params: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    visitor: Option<VisitorIdentity>,
    http: reqwest::Client,
}

impl HttpAuthorizer {
    /// An authorizer for an endpoint URL, with a 10 s timeout.
    pub fn new(url: impl Into<String>) -> HttpAuthorizer {
        HttpAuthorizer {
            url: url.into(),
            params: Vec::new(),
            headers: Vec::new(),
            visitor: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// An extra form parameter (pusher-js `params`), e.g. `visitor_id`.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }

    /// Sends the visitor's id and token (`visitor_id`, `visitor_token`)
    /// with every request and keeps what the endpoint answers.
    pub fn visitor(mut self, identity: VisitorIdentity) -> Self {
        self.visitor = Some(identity);
        self
    }

    /// An extra header (pusher-js `headers`), e.g. a bearer token.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    async fn request(&self, socket_id: &str, channel: &str) -> Result<ChannelAuth, AuthError> {
        let mut form: Vec<(&str, &str)> = vec![("socket_id", socket_id), ("channel_name", channel)];
        let identity = self.visitor.as_ref().map(VisitorIdentity::get);
        if let Some(i) = &identity {
            form.push(("visitor_id", &i.id));
            if let Some(t) = &i.token {
                form.push(("visitor_token", t));
            }
        }
        form.extend(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut req = self.http.post(&self.url).form(&form);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let unreachable = |e: reqwest::Error| AuthError::Unreachable {
            url: self.url.clone(),
            message: e.to_string(),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let body = resp.text().await.map_err(unreachable)?;
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| body.chars().take(200).collect());
            return Err(AuthError::Refused {
                channel: channel.to_owned(),
                status: status.as_u16(),
                message,
            });
        }
        let answer = parse_auth_answer(&body)?;
        if let Some(v) = &self.visitor {
            if let Ok(json) = serde_json::from_str::<Value>(body.trim()) {
                v.learn(&json);
            }
        }
        Ok(answer)
    }
}

impl Authorizer for HttpAuthorizer {
    fn authorize<'a>(
        &'a self,
        socket_id: &'a str,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<ChannelAuth, AuthError>> {
        Box::pin(self.request(socket_id, channel))
    }
}

/// Parses `{"auth":..}` or a JSONP call `callback({"auth":..});`.
pub fn parse_auth_answer(body: &str) -> Result<ChannelAuth, AuthError> {
    let trimmed = body.trim();
    let json = if trimmed.starts_with('{') {
        trimmed
    } else {
        let start = trimmed.find('(').map(|i| i + 1);
        let end = trimmed.rfind(')');
        match (start, end) {
            (Some(s), Some(e)) if s <= e => &trimmed[s..e],
            _ => return Err(AuthError::BadAnswer(trimmed.chars().take(200).collect())),
        }
    };
    serde_json::from_str(json).map_err(|e| AuthError::BadAnswer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use whosin_protocol::sign::verify_channel_auth;

    #[test]
    fn local_signer_signs_private_and_presence() {
        let s = LocalSigner::new("k", "s");
        let a = s.sign("1.2", "private-x").unwrap();
        assert_eq!(
            verify_channel_auth("k", "s", "1.2", "private-x", None, &a.auth),
            Ok(())
        );
        assert_eq!(
            s.sign("1.2", "presence-x"),
            Err(AuthError::NoUser("presence-x".into()))
        );
        let s = s.with_user(UserData::new("u1", serde_json::json!({"name":"A"})));
        let a = s.sign("1.2", "presence-x").unwrap();
        let data = a.channel_data.clone().unwrap();
        assert_eq!(data, r#"{"user_id":"u1","user_info":{"name":"A"}}"#);
        assert_eq!(
            verify_channel_auth("k", "s", "1.2", "presence-x", Some(&data), &a.auth),
            Ok(())
        );
    }

    #[test]
    fn a_visitor_identity_keeps_what_the_endpoint_answers() {
        let v = VisitorIdentity::new("v1", None);
        let shared = v.clone();
        v.learn(&serde_json::json!({"auth": "k:1"}));
        assert_eq!(
            shared.get(),
            Identity {
                id: "v1".into(),
                token: None
            }
        );
        v.learn(&serde_json::json!({"visitor_id": "v2", "visitor_token": "t2"}));
        assert_eq!(
            shared.get(),
            Identity {
                id: "v2".into(),
                token: Some("t2".into())
            }
        );
    }

    #[test]
    fn answers_json_and_jsonp() {
        let j = parse_auth_answer(r#"{"auth":"k:1","channel_data":"{}"}"#).unwrap();
        assert_eq!(j.auth, "k:1");
        let p = parse_auth_answer(r#"Pusher.auth_callbacks['3']({"auth":"k:2"});"#).unwrap();
        assert_eq!((p.auth.as_str(), p.channel_data), ("k:2", None));
        assert!(matches!(
            parse_auth_answer("nope"),
            Err(AuthError::BadAnswer(_))
        ));
        assert!(matches!(
            parse_auth_answer("{}"),
            Err(AuthError::BadAnswer(_))
        ));
    }
}
