//! Server configuration: what apps exist, their limits, and the timings every
//! connection runs under. The CLI fills this from flags, `WHOSIN_*`
//! variables and an optional TOML file; tests build it directly.

use serde::Deserialize;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use whosin_protocol::limits;

/// One Pusher app: its credentials and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// App id, used in REST paths (`/apps/{id}/...`).
    pub id: String,
    /// Public key, used in WebSocket URLs and auth strings.
    pub key: String,
    /// Secret for every signature. Never sent to clients.
    pub secret: String,
    /// Most simultaneous connections; further ones are closed with 4004.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Most distinct users in one presence channel. A user already present is
    /// always admitted with another connection.
    #[serde(default = "defaults::max_presence_members")]
    pub max_presence_members: usize,
    /// Largest encoded `user_info` of a presence member, in bytes.
    #[serde(default = "defaults::max_user_info_bytes")]
    pub max_user_info_bytes: usize,
    /// Largest event `data`, in bytes (REST triggers and client events).
    #[serde(default = "defaults::max_event_data_bytes")]
    pub max_event_data_bytes: usize,
    /// Browser origins (`https://example.com`) allowed to open WebSockets
    /// and use the auth endpoint; empty means any. Requests without an
    /// `Origin` (non-browser clients) are not affected.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Whether clients may send `client-*` events to each other (off unless
    /// the app enables them, as in Pusher: otherwise any anonymous visitor
    /// could broadcast to everyone on a public presence page).
    #[serde(default)]
    pub client_events: bool,
    /// Channels one connection may be subscribed to at once; a subscribe
    /// beyond it is refused (`pusher:error` 4302), the connection stays.
    #[serde(default = "defaults::max_channels_per_connection")]
    pub max_channels_per_connection: usize,
    /// Distinct presence users one client address may have in one channel;
    /// a subscribe beyond it is refused (`pusher:subscription_error` 429)
    /// and the channel still admits everyone else. Exempt addresses (see
    /// [`IpLimits::exempt_loopback`]) are not counted.
    #[serde(default = "defaults::max_presence_users_per_ip")]
    pub max_presence_users_per_ip: usize,
    /// Client events one connection may send per second; more closes it (4301).
    #[serde(default = "defaults::client_events_per_second")]
    pub client_events_per_second: u32,
    /// Channels the built-in auth endpoint (`/pusher/auth`) will sign.
    #[serde(default = "defaults::auth_channels")]
    pub auth_channels: Vec<String>,
    /// Where the app's webhooks go (see [`crate::webhooks`]).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Whether subscribers of public and private channels are told the
    /// channel's subscription count (`pusher_internal:subscription_count`,
    /// at most about once a second per channel), as Pusher does when the
    /// app turns it on.
    #[serde(default)]
    pub subscription_count: bool,
    /// The owner's token for watching without being counted: a request to
    /// the auth endpoint with `observer_token` equal to it is signed as an
    /// observer (`"observer": true`), which receives the roster and every
    /// change but is never a member. Unset (the default): the public
    /// endpoint never signs an observer.
    #[serde(default)]
    pub observer_token: Option<String>,
    /// Whether the auth endpoint masks the last part of visitor IPs.
    #[serde(default)]
    pub mask_ips: bool,
    /// A disabled app refuses connections (4003) and REST calls (403) but
    /// stays in the configuration.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
}

impl AppConfig {
    /// Whether a request with this `Origin` header (if any) may use the
    /// app: any origin when none are listed, no header (not a browser)
    /// always; otherwise an exact match, ignoring case and a trailing `/`.
    /// The refusal says what to do, for the 403 that carries it.
    pub fn check_origin(&self, origin: Option<&str>) -> Result<(), String> {
        let norm = |o: &str| o.trim().trim_end_matches('/').to_ascii_lowercase();
        let allowed = match origin {
            _ if self.allowed_origins.is_empty() => true,
            None => true,
            Some(o) => self.allowed_origins.iter().any(|a| norm(a) == norm(o)),
        };
        if allowed {
            return Ok(());
        }
        Err(format!(
            "origin {} is not allowed for this app; its operator lists the allowed ones with --allowed-origin",
            origin.unwrap_or("")
        ))
    }

    /// An app with the given credentials and every default.
    pub fn new(id: impl Into<String>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        AppConfig {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            max_connections: defaults::max_connections(),
            max_presence_members: defaults::max_presence_members(),
            max_user_info_bytes: defaults::max_user_info_bytes(),
            max_event_data_bytes: defaults::max_event_data_bytes(),
            allowed_origins: Vec::new(),
            client_events: false,
            max_channels_per_connection: defaults::max_channels_per_connection(),
            max_presence_users_per_ip: defaults::max_presence_users_per_ip(),
            client_events_per_second: defaults::client_events_per_second(),
            auth_channels: defaults::auth_channels(),
            mask_ips: false,
            observer_token: None,
            subscription_count: false,
            webhooks: Vec::new(),
            enabled: true,
        }
    }
}

/// Defaults, named so the TOML loader and [`AppConfig::new`] agree.
pub mod defaults {
    use super::limits;

    /// The channel the tutorial and the desktop app use.
    pub const CHANNEL: &str = "presence-whosin";
    /// Port Soketi and the tutorial's local setups use.
    pub const PORT: u16 = 6001;

    pub(crate) fn max_connections() -> usize {
        100_000
    }
    pub(crate) fn max_presence_members() -> usize {
        10_000
    }
    pub(crate) fn max_user_info_bytes() -> usize {
        limits::DEFAULT_MAX_USER_INFO_BYTES
    }
    pub(crate) fn max_event_data_bytes() -> usize {
        limits::DEFAULT_MAX_EVENT_DATA_BYTES
    }
    pub(crate) fn max_channels_per_connection() -> usize {
        100
    }
    pub(crate) fn max_presence_users_per_ip() -> usize {
        10
    }
    pub(crate) fn client_events_per_second() -> u32 {
        limits::DEFAULT_CLIENT_EVENTS_PER_SECOND
    }
    pub(crate) fn enabled() -> bool {
        true
    }
    pub(crate) fn auth_channels() -> Vec<String> {
        vec![CHANNEL.to_owned()]
    }
}

/// A network in CIDR form, for `--trusted-proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `10.0.0.0/8`, `::1/128` or a bare address (a single host).
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0..={max}"))?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IpNet::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A webhook receiver of an app (`[[apps.webhooks]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// The event names it takes; empty (the default) means all.
    #[serde(default)]
    pub event_types: Vec<String>,
}

/// The webhook events whosin sends (Pusher's names).
pub const WEBHOOK_EVENTS: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

/// What one client address may do, whatever app it uses (see
/// [`crate::admission`]). A limit of 0 means none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpLimits {
    /// Open WebSocket connections from one address; more are refused
    /// with HTTP 429 before the upgrade.
    pub max_connections: usize,
    /// New WebSocket connections from one address per minute (a burst of
    /// that many, then refilled evenly); more get 429 with `Retry-After`.
    pub new_connections_per_minute: u32,
    /// Signatures the auth endpoint gives one address per minute; more get
    /// 429 with `Retry-After`.
    pub signatures_per_minute: u32,
    /// Loopback clients (no trusted proxy in front: local tools,
    /// benchmarks, the desktop's own page) are not limited.
    pub exempt_loopback: bool,
    /// Addresses the limiter remembers at most; past it, addresses with no
    /// open connection are forgotten first, so its memory stays bounded
    /// whatever a flood of addresses does.
    pub max_tracked: usize,
}

impl Default for IpLimits {
    fn default() -> Self {
        IpLimits {
            max_connections: 100,
            new_connections_per_minute: 300,
            signatures_per_minute: 120,
            exempt_loopback: true,
            max_tracked: 100_000,
        }
    }
}

/// Everything one server process runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// The apps served; the first is the one `/pusher/auth` signs for by default.
    pub apps: Vec<AppConfig>,
    /// Silence after which the server pings a client (and what it tells
    /// clients in `connection_established`).
    pub activity_timeout: Duration,
    /// How long a client has to answer our ping before it is closed (4201).
    pub pong_timeout: Duration,
    /// Frames that may wait for one slow client before it is disconnected.
    pub outbound_queue: usize,
    /// Bytes that may wait for one slow client before it is disconnected
    /// (a single larger frame still goes to an empty queue).
    pub outbound_queue_bytes: usize,
    /// Largest WebSocket message accepted from a client, in bytes.
    pub max_message_bytes: usize,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Whether loopback peers are trusted proxies too (the default): a
    /// reverse proxy on the same host then passes the real client address.
    pub trust_loopback_proxy: bool,
    /// Limits per client address.
    pub ip_limits: IpLimits,
    /// How long `member_removed` and `channel_vacated` webhooks wait: a user
    /// or subscriber back within it produces neither (a page reload).
    pub webhook_grace: Duration,
    /// Open WebSocket connections the whole process accepts, over every app
    /// (more are refused with HTTP 503 before the upgrade): keeps the
    /// process under its file descriptor limit, with room for REST and Redis.
    pub max_total_connections: usize,
    /// How long graceful shutdown waits for connections to close.
    pub shutdown_grace: Duration,
    /// How long a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request body (REST, auth
    /// endpoint): a body trickled in slower is cut off with 408.
    pub body_read_timeout: Duration,
    /// A server for this computer only (the desktop's embedded one): every
    /// request must name a loopback host (`Host`), and a browser page may
    /// only be this server's own (`Origin` `http://127.0.0.1:PORT`,
    /// `localhost` or `[::1]` with this server's port). Stops other web
    /// pages in the user's browser, and DNS rebinding, from reaching it.
    pub loopback_only: bool,
    /// When set, `/metrics` answers only requests with
    /// `Authorization: Bearer <token>` (401 otherwise).
    pub metrics_token: Option<String>,
    /// Redis scale-out; `None` for a single node.
    pub cluster: Option<crate::backplane::ClusterConfig>,
    /// TLS on the listening port (`https://`, `wss://`); `None` for plain
    /// TCP.
    pub tls: Option<TlsFiles>,
}

/// Where the server's certificate and key are (PEM). Paths, not contents:
/// the files are read at start and again on every reload (SIGHUP), so a
/// renewed certificate is picked up without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (Let's Encrypt's `fullchain.pem`).
    pub cert: std::path::PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1; Let's Encrypt's `privkey.pem`).
    pub key: std::path::PathBuf,
}

impl ServerConfig {
    /// The client's address for a request from `peer`: `X-Forwarded-For`
    /// is believed only from a trusted proxy (see
    /// [`crate::identity::client_ip`]).
    pub fn client_ip(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        crate::identity::client_ip(
            peer,
            headers,
            &self.trusted_proxies,
            self.trust_loopback_proxy,
        )
    }

    /// One app, every default, bound to 127.0.0.1 on `port`.
    pub fn single(app: AppConfig, port: u16) -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port,
            apps: vec![app],
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            outbound_queue: 1024,
            outbound_queue_bytes: 16 * 1024 * 1024,
            max_message_bytes: 64 * 1024,
            trusted_proxies: Vec::new(),
            trust_loopback_proxy: true,
            ip_limits: IpLimits::default(),
            max_total_connections: 100_000,
            webhook_grace: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            loopback_only: false,
            metrics_token: None,
            cluster: None,
            tls: None,
        }
    }

    /// Checks the settings a typo could break, with messages that say how to fix them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.apps.is_empty() {
            return Err(ConfigError::Invalid("no app configured: give --app-id/--app-key/--app-secret or [[apps]] in the config file".into()));
        }
        for (i, a) in self.apps.iter().enumerate() {
            for (what, v) in [("id", &a.id), ("key", &a.key), ("secret", &a.secret)] {
                if v.is_empty() || v.contains(char::is_whitespace) || v.contains(':') {
                    return Err(ConfigError::Invalid(format!(
                        "app #{} has an invalid {what} {v:?}: it must be non-empty, without spaces or ':'",
                        i + 1
                    )));
                }
            }
            if self.apps[..i]
                .iter()
                .any(|b| b.id == a.id || b.key == a.key)
            {
                return Err(ConfigError::Invalid(format!(
                    "app id {:?} or key {:?} is used twice",
                    a.id, a.key
                )));
            }
            for ch in &a.auth_channels {
                whosin_protocol::ChannelName::parse(ch)
                    .map_err(|e| ConfigError::Invalid(format!("auth channel {ch:?}: {e}")))?;
            }
            if a.observer_token
                .as_deref()
                .is_some_and(|t| t.trim().len() < 8)
            {
                return Err(ConfigError::Invalid(format!(
                    "app {:?}: observer_token must be at least 8 characters (anyone who sends it watches unseen)",
                    a.id
                )));
            }
            for w in &a.webhooks {
                if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                    return Err(ConfigError::Invalid(format!(
                        "webhook URL {:?} of app {:?} must start with http:// or https://",
                        w.url, a.id
                    )));
                }
                if let Some(t) = w
                    .event_types
                    .iter()
                    .find(|t| !WEBHOOK_EVENTS.contains(&t.as_str()))
                {
                    return Err(ConfigError::Invalid(format!(
                        "webhook event type {t:?} is not one of {}",
                        WEBHOOK_EVENTS.join(", ")
                    )));
                }
            }
            if a.max_presence_members == 0 {
                return Err(ConfigError::Invalid(
                    "max_presence_members must be at least 1".into(),
                ));
            }
        }
        if self.activity_timeout < Duration::from_secs(1) || self.pong_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "activity timeout must be at least 1 s and pong timeout above 0".into(),
            ));
        }
        if self.outbound_queue == 0 {
            return Err(ConfigError::Invalid(
                "outbound queue must hold at least 1 frame".into(),
            ));
        }
        if self.outbound_queue_bytes < 64 * 1024 {
            return Err(ConfigError::Invalid(format!(
                "outbound queue bytes is {}: it must be at least 65536 (64 KiB), or every busy client would be closed",
                self.outbound_queue_bytes
            )));
        }
        Ok(())
    }
}

/// A configuration problem, said so that the user knows what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for whosin.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The TOML file. Every field is optional; flags override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Bind address.
    pub host: Option<String>,
    /// Bind port.
    pub port: Option<u16>,
    /// Seconds of silence before a ping.
    pub activity_timeout: Option<u64>,
    /// Seconds to wait for a pong.
    pub pong_timeout: Option<u64>,
    /// Frames queued per connection.
    pub outbound_queue: Option<usize>,
    /// Bytes queued per connection.
    pub outbound_queue_bytes: Option<usize>,
    /// Largest client message, bytes.
    pub max_message_bytes: Option<usize>,
    /// Seconds a request body may take to arrive.
    pub body_read_timeout: Option<u64>,
    /// Token `/metrics` asks for.
    pub metrics_token: Option<String>,
    /// TLS certificate chain (PEM), with `tls_key`.
    pub tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM), with `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// Trusted proxy networks.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Whether loopback peers are trusted proxies (default true).
    pub trust_loopback_proxy: Option<bool>,
    /// Open connections per client address (default 100).
    pub max_connections_per_ip: Option<usize>,
    /// New connections per client address per minute (default 300).
    pub new_connections_per_ip_per_minute: Option<u32>,
    /// Auth-endpoint signatures per client address per minute (default 120).
    pub signatures_per_ip_per_minute: Option<u32>,
    /// Whether loopback clients are exempt from the per-address limits
    /// (default true).
    pub exempt_loopback: Option<bool>,
    /// Open WebSocket connections over the whole process (default 100000).
    pub max_total_connections: Option<usize>,
    /// Milliseconds `member_removed` / `channel_vacated` webhooks wait (default 3000).
    pub webhook_grace_ms: Option<u64>,
    /// The apps.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

impl FileConfig {
    /// Reads and parses a TOML config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipnet_contains() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        let h = IpNet::parse("::1").unwrap();
        assert!(h.contains("::1".parse().unwrap()));
        assert!(!h.contains("::2".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("nope").is_err());
    }

    #[test]
    fn toml_file_parses_with_defaults() {
        let f: FileConfig = toml::from_str(
            r#"
            port = 7000
            trusted_proxies = ["127.0.0.1/32"]
            [[apps]]
            id = "1"
            key = "k"
            secret = "s"
            max_presence_members = 5
            [[apps]]
            id = "2"
            key = "k2"
            secret = "s2"
            auth_channels = ["presence-a", "private-b"]
            "#,
        )
        .unwrap();
        assert_eq!(f.port, Some(7000));
        assert_eq!(f.apps[0].max_presence_members, 5);
        assert_eq!(f.apps[0].auth_channels, vec!["presence-whosin"]);
        assert_eq!(f.apps[1].auth_channels.len(), 2);
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
    }

    #[test]
    fn validation_messages() {
        let mut c = ServerConfig::single(AppConfig::new("1", "k", "s"), 0);
        assert!(c.validate().is_ok());
        c.apps.push(AppConfig::new("1", "k2", "s"));
        assert!(c.validate().unwrap_err().to_string().contains("used twice"));
        c.apps.pop();
        c.apps[0].key = "a b".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("invalid key"));
    }
}
