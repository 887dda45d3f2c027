//! Where to connect: host, port, TLS, optional path prefix, and the app key.

use std::fmt;

/// Why an endpoint could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a `ws://`, `wss://`, `http://` or `https://` URL.
    #[error(
        "{0:?} is not a server URL: use ws://HOST:PORT or wss://HOST (http and https work too)"
    )]
    BadUrl(String),
    /// An empty app key or cluster.
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

/// A Pusher-protocol server and the app to use on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `wss` when true.
    pub tls: bool,
    /// Path before `/app/{key}`, e.g. `/pusher` behind a proxy; empty for none.
    pub path: String,
    /// The app key.
    pub key: String,
}

impl Endpoint {
    /// A hosted Pusher Channels cluster: `wss://ws-{cluster}.pusher.com:443`.
    pub fn cluster(cluster: &str, key: &str) -> Result<Endpoint, EndpointError> {
        if cluster.is_empty() {
            return Err(EndpointError::Empty("cluster"));
        }
        if key.is_empty() {
            return Err(EndpointError::Empty("app key"));
        }
        Ok(Endpoint {
            host: format!("ws-{cluster}.pusher.com"),
            port: 443,
            tls: true,
            path: String::new(),
            key: key.to_owned(),
        })
    }

    /// Parses `ws://host:port[/path]` (or wss, http, https) for an app key.
    pub fn parse(url: &str, key: &str) -> Result<Endpoint, EndpointError> {
        if key.is_empty() {
            return Err(EndpointError::Empty("app key"));
        }
        let bad = || EndpointError::BadUrl(url.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return Err(bad()),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => default_port,
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() || path.contains('?') {
            return Err(bad());
        }
        Ok(Endpoint {
            host,
            port,
            tls,
            path: path.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The WebSocket URL, with the query pusher-js sends.
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "{}://{host}:{}{}/app/{}?protocol=7&client=whosin-rust&version={}&flash=false",
            if self.tls { "wss" } else { "ws" },
            self.port,
            self.path,
            self.key,
            env!("CARGO_PKG_VERSION"),
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "{}://{host}:{}{}",
            if self.tls { "wss" } else { "ws" },
            self.port,
            self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let e = Endpoint::parse("ws://127.0.0.1:6001", "k").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls, e.path.as_str()),
            ("127.0.0.1", 6001, false, "")
        );
        assert_eq!(
            e.url(),
            format!(
                "ws://127.0.0.1:6001/app/k?protocol=7&client=whosin-rust&version={}&flash=false",
                env!("CARGO_PKG_VERSION")
            )
        );
        let e = Endpoint::parse("wss://example.org/pusher/", "k").unwrap();
        assert_eq!((e.port, e.tls, e.path.as_str()), (443, true, "/pusher"));
        assert!(e.url().starts_with("wss://example.org:443/pusher/app/k?"));
        let e = Endpoint::parse("http://[::1]:7000", "k").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 7000));
        assert!(e.url().starts_with("ws://[::1]:7000/app/k"));
        assert_eq!(e.to_string(), "ws://[::1]:7000");
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "127.0.0.1:6001",
            "ftp://x",
            "ws://",
            "ws://h:notaport",
            "ws://h:70000",
            "ws://[::1",
            "ws://h/p?x=1",
        ] {
            assert!(Endpoint::parse(bad, "k").is_err(), "{bad}");
        }
        assert_eq!(
            Endpoint::parse("ws://h", ""),
            Err(EndpointError::Empty("app key"))
        );
        assert!(Endpoint::parse("ws://h", "k").unwrap().port == 80);
    }

    #[test]
    fn clusters() {
        let e = Endpoint::cluster("eu", "key").unwrap();
        assert_eq!(e.to_string(), "wss://ws-eu.pusher.com:443");
        assert!(Endpoint::cluster("", "key").is_err());
    }
}
