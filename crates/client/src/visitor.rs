//! A visitor: who joins, where, and who signs their presence — turned into a
//! client in one place, for `whosin join` / `watch` and the desktop alike.
//!
//! The small rules that both front ends need live here too, so they are
//! parsed once: a server URL *or* a hosted Pusher cluster
//! ([`endpoint_from`]), the display-name rule ([`check_name`]) and the IP
//! lookup list where `none` turns the lookup off ([`ip_lookup_endpoints`]).

use crate::auth::{HttpAuthorizer, LocalSigner, UserData, VisitorIdentity};
use crate::connection::{Client, ClientBuilder};
use crate::endpoint::Endpoint;
use serde_json::Value;
use whosin_protocol::limits::MAX_DISPLAY_NAME_CHARS;

/// A visitor setting that cannot be used, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VisitorError {
    /// Neither or both of a URL and a cluster, or a bad one.
    #[error("{0}")]
    Endpoint(String),
    /// The display name is empty, too long, or has control characters.
    #[error("name: {0}")]
    Name(String),
}

/// The server to connect to: a URL (`ws[s]://host:port`) or a hosted
/// Pusher cluster (`eu`, `mt1`…), exactly one of them.
pub fn endpoint_from(
    url: Option<&str>,
    cluster: Option<&str>,
    key: &str,
) -> Result<Endpoint, VisitorError> {
    match (url, cluster) {
        (Some(_), Some(_)) => Err(VisitorError::Endpoint(
            "give a server URL or a Pusher cluster, not both".into(),
        )),
        (None, None) => Err(VisitorError::Endpoint(
            "give a server URL (ws://host:port) or a Pusher cluster".into(),
        )),
        (Some(url), None) => Ok(Endpoint::parse(url, key)?),
        (None, Some(cluster)) => Ok(Endpoint::cluster(cluster, key)?),
    }
}

impl From<crate::endpoint::EndpointError> for VisitorError {
    fn from(e: crate::endpoint::EndpointError) -> VisitorError {
        VisitorError::Endpoint(e.to_string())
    }
}

/// A display name as others will see it: trimmed, not empty, at most
/// [`MAX_DISPLAY_NAME_CHARS`] characters, no control characters.
pub fn check_name(name: &str) -> Result<String, VisitorError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(VisitorError::Name("enter a name others will see".into()));
    }
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(VisitorError::Name(format!(
            "at most {MAX_DISPLAY_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(VisitorError::Name("no control characters".into()));
    }
    Ok(name.to_owned())
}

/// The public-IP lookup endpoints for a list a user gave: `none` anywhere
/// turns the lookup off, an empty list means the defaults.
pub fn ip_lookup_endpoints(given: &[String]) -> Vec<String> {
    if given.iter().any(|u| u.trim() == "none") {
        return Vec::new();
    }
    let given: Vec<String> = given
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if given.is_empty() {
        crate::ip::DEFAULT_ENDPOINTS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        given
    }
}

/// Who signs a visitor's presence.
#[derive(Debug, Clone)]
pub enum Signing {
    /// Signed here with the app secret (the embedded server, tools, tests);
    /// `info` is the visitor's `user_info`.
    Secret {
        /// The app secret.
        secret: String,
        /// The `user_info` to sign.
        info: Value,
    },
    /// Signed by an auth endpoint, told the visitor id and name as form
    /// parameters (plus any extra parameters and headers).
    AuthEndpoint {
        /// The endpoint's URL.
        url: String,
        /// Extra form parameters.
        params: Vec<(String, String)>,
        /// Extra HTTP headers.
        headers: Vec<(String, String)>,
    },
    /// Not signed: public channels only.
    Unsigned,
}

/// Everything that makes a visitor's client.
#[derive(Debug, Clone)]
pub struct Visitor {
    /// Where to connect (the app key is part of it).
    pub endpoint: Endpoint,
    /// The stable visitor id (the presence `user_id`) and, once a whosin
    /// auth endpoint gave it, its token; shared with the authorizer, so a
    /// clone shows what the endpoint answered (see [`VisitorIdentity`]).
    pub identity: VisitorIdentity,
    /// The display name, when chosen (an auth endpoint picks one otherwise).
    pub name: Option<String>,
    /// Who signs.
    pub signing: Signing,
    /// Watch without being counted (a whosin server's observer): signed
    /// with the secret, the subscription says so itself; through an auth
    /// endpoint, the caller adds the owner's `observer_token` parameter.
    pub watch: bool,
}

impl Visitor {
    /// A client builder for this visitor: its endpoint and its authorizer.
    /// Further settings (timeouts, backoff) can be added before `connect`.
    ///
    /// ```no_run
    /// use whosin_client::visitor::{Signing, Visitor};
    /// use whosin_client::VisitorIdentity;
    /// use whosin_client::Endpoint;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let visitor = Visitor {
    ///     endpoint: Endpoint::parse("ws://127.0.0.1:6001", "whosin")?,
    ///     identity: VisitorIdentity::new("v-1", None),
    ///     name: Some("Ada".into()),
    ///     signing: Signing::AuthEndpoint {
    ///         url: "http://127.0.0.1:6001/pusher/auth".into(),
    ///         params: vec![],
    ///         headers: vec![],
    ///     },
    ///     watch: false,
    /// };
    /// let (client, _events) = visitor.client().connect();
    /// client.subscribe("presence-whosin");
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> ClientBuilder {
        let builder = Client::builder(self.endpoint.clone());
        match &self.signing {
            Signing::Secret { secret, info } => {
                let user = UserData::new(self.identity.get().id, info.clone());
                let user = if self.watch { user.watching() } else { user };
                builder.authorizer(LocalSigner::new(&self.endpoint.key, secret).with_user(user))
            }
            Signing::AuthEndpoint {
                url,
                params,
                headers,
            } => {
                let mut a = HttpAuthorizer::new(url).visitor(self.identity.clone());
                if let Some(n) = &self.name {
                    a = a.param("name", n);
                }
                for (k, v) in params {
                    a = a.param(k, v);
                }
                for (k, v) in headers {
                    a = a.header(k, v);
                }
                builder.authorizer(a)
            }
            Signing::Unsigned => builder,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_or_a_cluster_exactly() {
        assert!(endpoint_from(Some("ws://127.0.0.1:6001"), None, "k").is_ok());
        assert!(endpoint_from(None, Some("eu"), "k").is_ok());
        assert!(matches!(
            endpoint_from(Some("ws://h:1"), Some("eu"), "k"),
            Err(VisitorError::Endpoint(m)) if m.contains("not both")
        ));
        assert!(matches!(
            endpoint_from(None, None, "k"),
            Err(VisitorError::Endpoint(m)) if m.contains("ws://host:port")
        ));
        assert!(endpoint_from(Some("ftp://x"), None, "k").is_err());
        assert!(
            endpoint_from(Some("ws://h:1"), None, "").is_err(),
            "a key is needed"
        );
    }

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(check_name("  Ada  ").unwrap(), "Ada");
        assert!(check_name("   ").is_err());
        assert!(check_name(&"x".repeat(MAX_DISPLAY_NAME_CHARS)).is_ok());
        assert!(check_name(&"é".repeat(MAX_DISPLAY_NAME_CHARS + 1)).is_err());
        assert!(check_name("a\nb").is_err());
    }

    #[test]
    fn none_turns_the_lookup_off_and_nothing_means_the_defaults() {
        assert!(ip_lookup_endpoints(&["none".into()]).is_empty());
        assert!(ip_lookup_endpoints(&["http://a".into(), " none ".into()]).is_empty());
        assert_eq!(
            ip_lookup_endpoints(&[]).len(),
            crate::ip::DEFAULT_ENDPOINTS.len()
        );
        assert_eq!(ip_lookup_endpoints(&[" http://a ".into()]), ["http://a"]);
    }
}
