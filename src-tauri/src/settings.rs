//! The desktop's settings: who this visitor is and which server to join.
//!
//! Made once per install (a visitor id, a fake name, the embedded server's
//! secret) and kept as JSON in the OS config directory. Every change is
//! validated into a [`Target`] first, so a typo gets a message that says what
//! to fix and the running connection is left alone.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use whosin_client::visitor::{self, VisitorError};
use whosin_client::{identity, Endpoint};
use whosin_protocol::{ChannelKind, ChannelName};

/// The channel the tutorial, the web page and the embedded server use.
pub const DEFAULT_CHANNEL: &str = "presence-whosin";
/// Longest display name.
pub use whosin_protocol::limits::MAX_DISPLAY_NAME_CHARS as MAX_NAME_CHARS;
/// The embedded server's app key and id; its secret is per install.
pub const EMBEDDED_APP: &str = "whosin";

/// A remote Pusher-protocol server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Remote {
    /// `ws://host:port` or `wss://host`; or give `cluster`.
    #[serde(default)]
    pub url: Option<String>,
    /// A hosted Pusher cluster name (e.g. `eu`).
    #[serde(default)]
    pub cluster: Option<String>,
    /// The app key.
    #[serde(default)]
    pub key: String,
    /// The auth endpoint that signs the presence subscription.
    #[serde(default)]
    pub auth_endpoint: String,
    /// A whosin server's owner token (its `observer_token`), with which its
    /// auth endpoint signs this app as an observer when the site is set to
    /// watch. Kept in the settings file (0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observer_token: Option<String>,
    /// The app's id, with [`Remote::secret`]: a site set to watch is then
    /// watched through the server's REST API, not counted, on any
    /// Pusher-compatible server (hosted Pusher, Soketi, Sockudo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// The app's secret, which the site's owner gives for REST watching.
    /// Kept in the settings file (0600); never sent anywhere but as REST
    /// signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl Remote {
    /// The same with its fields trimmed and empty ones dropped.
    fn normalized(self) -> Remote {
        let text = |v: Option<String>| v.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        Remote {
            url: text(self.url),
            cluster: text(self.cluster),
            key: self.key.trim().to_owned(),
            auth_endpoint: self.auth_endpoint.trim().to_owned(),
            observer_token: text(self.observer_token),
            app_id: text(self.app_id),
            secret: text(self.secret),
        }
    }
}

/// One site the app watches: a server and a presence channel on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Stable id (the history's key); `default` for the first one.
    pub id: String,
    /// What the window and the tray call it.
    pub name: String,
    /// `None`: the embedded server on this computer.
    #[serde(default)]
    pub remote: Option<Remote>,
    /// Presence channel; `None` for the default.
    #[serde(default)]
    pub channel: Option<String>,
    /// Notify when the count reaches this many (off by default).
    #[serde(default)]
    pub alert_at: Option<u32>,
    /// Notify when everyone has left (off by default).
    #[serde(default)]
    pub alert_empty: bool,
    /// Watch without being counted (whosin servers: this computer's, or a
    /// remote one with its owner token; any server through its REST API
    /// with [`Remote::app_id`] and [`Remote::secret`]); otherwise joined as
    /// a visitor.
    #[serde(default)]
    pub watch: bool,
}

/// The id of the first site, the one a fresh install and an older settings
/// file get.
pub const FIRST_SITE: &str = "default";

impl Site {
    /// The embedded server, joined as a visitor: a fresh install's site.
    pub fn this_computer() -> Site {
        Site {
            id: FIRST_SITE.into(),
            name: "This computer".into(),
            remote: None,
            channel: None,
            alert_at: None,
            alert_empty: false,
            watch: false,
        }
    }

    /// The channel to join.
    pub fn channel(&self) -> &str {
        self.channel.as_deref().unwrap_or(DEFAULT_CHANNEL)
    }

    /// A name for a site on `remote`: its host, or its Pusher cluster.
    fn name_for(remote: &Option<Remote>) -> String {
        match remote {
            None => "This computer".into(),
            Some(r) => r
                .url
                .as_deref()
                .and_then(|u| u.split("://").nth(1))
                .map(|rest| rest.split(['/', ':']).next().unwrap_or(rest).to_owned())
                .or_else(|| r.cluster.as_ref().map(|c| format!("Pusher {c}")))
                .unwrap_or_else(|| "Remote server".into()),
        }
    }
}

/// Everything stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Stable visitor id, so restarts and reconnects are the same person.
    pub visitor_id: String,
    /// The token a whosin auth endpoint gave with the visitor id: without
    /// it, a server gives a fresh id while the old one is still present
    /// (see `whosin_client::VisitorIdentity`).
    #[serde(default)]
    pub visitor_token: Option<String>,
    /// Display name: a random fake name made once, editable.
    pub name: String,
    /// The sites watched, the first one at the top (never empty once
    /// loaded: an older file's single site is migrated into it).
    #[serde(default)]
    pub sites: Vec<Site>,
    /// The site the window shows (`None`: the first).
    #[serde(default)]
    pub selected: Option<String>,
    /// The site whose count the tray shows (`None`: the total of all).
    #[serde(default)]
    pub tray_site: Option<String>,
    /// Files written before several sites had these four at the top level;
    /// they are read once, moved into the first site, and not written again.
    #[serde(default, skip_serializing)]
    channel: Option<String>,
    #[serde(default, skip_serializing)]
    remote: Option<Remote>,
    #[serde(default, skip_serializing)]
    alert_at: Option<u32>,
    #[serde(default, skip_serializing)]
    alert_empty: bool,
    /// Notify when someone joins or leaves (off by default).
    #[serde(default)]
    pub notifications: bool,
    /// Start with the desktop session (off by default).
    #[serde(default)]
    pub autostart: bool,
    /// The embedded server's secret, made once. Never used in remote mode.
    pub embedded_secret: String,
}

/// What the settings panel edits; the rest is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Editable {
    /// Display name.
    pub name: String,
    /// Channel, `None` for the default.
    #[serde(default)]
    pub channel: Option<String>,
    /// Remote server, `None` for the embedded one.
    #[serde(default)]
    pub remote: Option<Remote>,
    /// Notifications on joins and leaves.
    #[serde(default)]
    pub notifications: bool,
    /// Start at login.
    #[serde(default)]
    pub autostart: bool,
    /// Alert when the count reaches this many.
    #[serde(default)]
    pub alert_at: Option<u32>,
    /// Alert when everyone has left.
    #[serde(default)]
    pub alert_empty: bool,
    /// Watch the shown site without being counted.
    #[serde(default)]
    pub watch: bool,
}

/// Where to connect, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Start (or reuse) the server on this computer and sign locally.
    Embedded {
        /// Channel.
        channel: String,
    },
    /// A remote server and its auth endpoint; no secret involved.
    Remote {
        /// Where.
        endpoint: Endpoint,
        /// Who signs.
        auth_endpoint: String,
        /// Channel.
        channel: String,
    },
    /// A remote server watched through its REST API with the app's secret
    /// (a site set to watch, given the app id and secret).
    Rest {
        /// The server (its REST API is beside it).
        endpoint: Endpoint,
        /// The app's id.
        app_id: String,
        /// The app's secret.
        secret: String,
        /// Channel.
        channel: String,
    },
}

/// A setting that cannot be used, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The name is empty, too long, or has control characters.
    #[error("name: {0}")]
    Name(String),
    /// The channel is not a valid presence channel.
    #[error("channel: {0}")]
    Channel(String),
    /// The remote server is not usable.
    #[error("server: {0}")]
    Server(String),
    /// The file could not be read or written.
    #[error("settings file {path}: {message}")]
    File {
        /// Which file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// A new file (truncated if it exists) that only its owner may read.
fn new_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = o.open(path)?;
    // An existing file keeps its mode through `open`: set it again.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}

/// Makes an existing settings file readable by its owner only (files
/// written by earlier versions were 0644), saying so once.
fn owner_only(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "settings file made readable by its owner only (it holds a secret)")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "settings file is readable by others and could not be fixed: run chmod 600 on it")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

impl Settings {
    /// Fresh settings: a new visitor id, a fake name, a new embedded secret.
    pub fn fresh() -> Settings {
        Settings {
            visitor_id: identity::new_visitor_id(),
            visitor_token: None,
            name: identity::random_name(),
            sites: vec![Site::this_computer()],
            selected: None,
            tray_site: None,
            channel: None,
            remote: None,
            alert_at: None,
            alert_empty: false,
            notifications: false,
            autostart: false,
            embedded_secret: identity::new_visitor_id() + &identity::new_visitor_id(),
        }
    }

    /// The file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("settings.json")
    }

    /// Loads the settings, creating and saving fresh ones on first run.
    /// A corrupt file is kept aside (`settings.json.broken`) rather than
    /// silently lost, and fresh settings are used.
    pub fn load_or_create(dir: &Path) -> Result<Settings, SettingsError> {
        let path = Self::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str::<Settings>(&text) {
                Ok(mut s) => {
                    owner_only(&path);
                    if s.migrate() {
                        tracing::info!(path = %path.display(), "settings moved into the list of sites");
                        s.save(dir)?;
                    }
                    return Ok(s);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "settings file is corrupt; starting fresh");
                    let _ = std::fs::rename(&path, path.with_extension("json.broken"));
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SettingsError::File {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
            }
        }
        let s = Settings::fresh();
        s.save(dir)?;
        Ok(s)
    }

    /// Writes the settings atomically (write a temp file, then rename).
    pub fn save(&self, dir: &Path) -> Result<(), SettingsError> {
        let path = Self::path(dir);
        let err = |e: std::io::Error| SettingsError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("settings serialize");
        // Created readable by the owner only: the file holds the embedded
        // server's secret.
        let mut file = new_private_file(&tmp).map_err(err)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(err)?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// Moves an older file's single site into `sites` (and makes sure
    /// there is one); `true` when something changed and should be saved.
    fn migrate(&mut self) -> bool {
        if !self.sites.is_empty() {
            return false;
        }
        let remote = self.remote.take();
        self.sites.push(Site {
            id: FIRST_SITE.into(),
            name: Site::name_for(&remote),
            remote,
            channel: self.channel.take(),
            alert_at: self.alert_at.take(),
            alert_empty: std::mem::take(&mut self.alert_empty),
            watch: false,
        });
        true
    }

    /// The site the window shows: the selected one, else the first.
    pub fn site(&self) -> &Site {
        let first = self.sites.first();
        self.selected
            .as_deref()
            .and_then(|id| self.sites.iter().find(|s| s.id == id))
            .or(first)
            .unwrap_or_else(|| fallback_site())
    }

    fn site_mut(&mut self) -> &mut Site {
        if self.sites.is_empty() {
            self.sites.push(Site::this_computer());
        }
        let i = self
            .selected
            .as_deref()
            .and_then(|id| self.sites.iter().position(|s| s.id == id))
            .unwrap_or(0);
        &mut self.sites[i]
    }

    /// The editable part, for the settings panel: the visitor and the
    /// shown site.
    pub fn editable(&self) -> Editable {
        let site = self.site();
        Editable {
            name: self.name.clone(),
            channel: site.channel.clone(),
            remote: site.remote.clone(),
            notifications: self.notifications,
            autostart: self.autostart,
            alert_at: site.alert_at,
            alert_empty: site.alert_empty,
            watch: site.watch,
        }
    }

    /// These settings with `e` applied and checked; `self` is unchanged
    /// when `e` is invalid.
    pub fn with(&self, e: Editable) -> Result<(Settings, Target), SettingsError> {
        let mut next = self.clone();
        next.name = e.name.trim().to_owned();
        next.notifications = e.notifications;
        next.autostart = e.autostart;
        let site = next.site_mut();
        site.channel = e
            .channel
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        site.remote = e.remote.map(Remote::normalized);
        site.alert_at = e.alert_at.filter(|n| *n > 0);
        site.alert_empty = e.alert_empty;
        site.watch = e.watch;
        let target = next.target()?;
        Ok((next, target))
    }

    /// The channel to join on the shown site.
    pub fn channel(&self) -> &str {
        self.site().channel()
    }

    /// Validates the visitor and the shown site and says where to connect.
    pub fn target(&self) -> Result<Target, SettingsError> {
        visitor::check_name(&self.name).map_err(|e| match e {
            VisitorError::Name(m) => SettingsError::Name(m),
            other => SettingsError::Name(other.to_string()),
        })?;
        self.site().target()
    }
}

/// A new site as the window's "Add a site" form gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSite {
    /// What to call it.
    pub name: String,
    /// `None`: this computer's embedded server (another channel on it).
    #[serde(default)]
    pub remote: Option<Remote>,
    /// Presence channel; `None` for the default.
    #[serde(default)]
    pub channel: Option<String>,
    /// Watch without being counted.
    #[serde(default)]
    pub watch: bool,
}

impl Settings {
    /// These settings with a new site added (checked first, with a message
    /// that says what to fix); returns them and the new site's id.
    pub fn with_site(&self, n: NewSite) -> Result<(Settings, String), SettingsError> {
        let name = n.name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(SettingsError::Name(format!(
                "a site needs a name of 1 to {MAX_NAME_CHARS} characters"
            )));
        }
        let mut id = String::new();
        for i in 1.. {
            id = format!("site-{i}");
            if !self.sites.iter().any(|s| s.id == id) {
                break;
            }
        }
        let site = Site {
            id: id.clone(),
            name: name.to_owned(),
            remote: n.remote.map(Remote::normalized),
            channel: n
                .channel
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty()),
            alert_at: None,
            alert_empty: false,
            watch: n.watch,
        };
        site.target()?;
        if self
            .sites
            .iter()
            .any(|s| s.remote == site.remote && s.channel() == site.channel())
        {
            return Err(SettingsError::Channel(format!(
                "{} is already watched on that server",
                site.channel()
            )));
        }
        let mut next = self.clone();
        next.sites.push(site);
        Ok((next, id))
    }

    /// These settings without site `id` (the last site cannot go).
    pub fn without_site(&self, id: &str) -> Result<Settings, SettingsError> {
        if self.sites.len() <= 1 {
            return Err(SettingsError::Server(
                "the last site cannot be removed; change its server in Settings instead".into(),
            ));
        }
        let mut next = self.clone();
        next.sites.retain(|s| s.id != id);
        if next.selected.as_deref() == Some(id) {
            next.selected = None;
        }
        if next.tray_site.as_deref() == Some(id) {
            next.tray_site = None;
        }
        Ok(next)
    }
}

/// A site for the moment `sites` is empty (never, once loaded).
fn fallback_site() -> &'static Site {
    static SITE: std::sync::OnceLock<Site> = std::sync::OnceLock::new();
    SITE.get_or_init(Site::this_computer)
}

impl Site {
    /// Validates the site and says where to connect.
    pub fn target(&self) -> Result<Target, SettingsError> {
        let channel = self.channel().to_owned();
        let parsed =
            ChannelName::parse(&channel).map_err(|e| SettingsError::Channel(e.to_string()))?;
        if parsed.kind() != ChannelKind::Presence {
            return Err(SettingsError::Channel(format!(
                "{channel:?} is not a presence channel; its name must start with presence-"
            )));
        }
        let Some(remote) = &self.remote else {
            return Ok(Target::Embedded { channel });
        };
        let endpoint = visitor::endpoint_from(
            remote.url.as_deref(),
            remote.cluster.as_deref(),
            &remote.key,
        )
        .map_err(|e| SettingsError::Server(e.to_string()))?;
        if let Some(id) = &remote.app_id {
            if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(SettingsError::Server(format!(
                    "the app id {id:?} can only have letters, digits, - and _ (it is the number or name in the server's app settings)"
                )));
            }
        }
        match (&remote.app_id, &remote.secret) {
            (Some(app_id), Some(secret)) if self.watch => {
                return Ok(Target::Rest {
                    endpoint,
                    app_id: app_id.clone(),
                    secret: secret.clone(),
                    channel,
                });
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(SettingsError::Server(
                    "give both the app id and the app secret (to watch through the REST API), or neither".into(),
                ));
            }
            _ => {}
        }
        let auth = &remote.auth_endpoint;
        if !(auth.starts_with("http://") || auth.starts_with("https://")) || auth.len() < 10 {
            let watch_hint = if remote.app_id.is_some() && remote.secret.is_some() {
                "; or tick \"Watch without being counted\" to watch with the app id and secret instead"
            } else {
                ""
            };
            return Err(SettingsError::Server(format!(
                "the auth endpoint must be an http:// or https:// URL, e.g. https://example.com/pusher/auth{watch_hint}"
            )));
        }
        Ok(Target::Remote {
            endpoint,
            auth_endpoint: auth.clone(),
            channel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(url: Option<&str>, cluster: Option<&str>, key: &str, auth: &str) -> Editable {
        Editable {
            name: "Ada".into(),
            channel: None,
            remote: Some(Remote {
                url: url.map(Into::into),
                cluster: cluster.map(Into::into),
                key: key.into(),
                auth_endpoint: auth.into(),
                observer_token: None,
                app_id: None,
                secret: None,
            }),
            notifications: false,
            autostart: false,
            alert_at: None,
            alert_empty: false,
            watch: false,
        }
    }

    #[test]
    fn fresh_settings_are_embedded_and_valid() {
        let s = Settings::fresh();
        assert_eq!(
            s.target(),
            Ok(Target::Embedded {
                channel: DEFAULT_CHANNEL.into()
            })
        );
        assert_eq!(s.visitor_id.len(), 16);
        assert!(s.embedded_secret.len() >= 32);
        assert_ne!(Settings::fresh().visitor_id, s.visitor_id);
    }

    #[test]
    fn remote_settings_are_checked_with_messages() {
        let s = Settings::fresh();
        let (next, target) = s
            .with(remote(
                Some(" ws://example.org:6001 "),
                None,
                "k",
                "https://example.org/auth",
            ))
            .unwrap();
        assert!(
            matches!(target, Target::Remote { ref endpoint, .. } if endpoint.port == 6001 && endpoint.key == "k")
        );
        assert_eq!(
            next.site().remote.clone().unwrap().url.as_deref(),
            Some("ws://example.org:6001")
        );
        let (_, t) = s
            .with(remote(None, Some("eu"), "k", "https://example.org/auth"))
            .unwrap();
        assert!(
            matches!(t, Target::Remote { ref endpoint, .. } if endpoint.host == "ws-eu.pusher.com")
        );

        let err = |e: Editable| s.with(e).unwrap_err().to_string();
        assert!(
            err(remote(Some("ws://a"), Some("eu"), "k", "https://a/auth")).contains("not both")
        );
        assert!(err(remote(None, None, "k", "https://a/auth")).contains("server URL"));
        assert!(err(remote(Some("example.org"), None, "k", "https://a/auth")).contains("ws://"));
        assert!(err(remote(Some("ws://a"), None, "", "https://a/auth")).contains("app key"));
        assert!(err(remote(Some("ws://a"), None, "k", "a/auth")).contains("auth endpoint"));
        let mut bad = remote(Some("ws://a"), None, "k", "https://a/auth");
        bad.channel = Some("private-x".into());
        assert!(err(bad.clone()).contains("presence-"));
        bad.channel = Some("presence bad".into());
        assert!(err(bad).contains("channel"));
        let mut e = s.editable();
        e.name = "  ".into();
        assert!(err(e.clone()).starts_with("name"));
        e.name = "x".repeat(41);
        assert!(err(e).contains("40"));
    }

    #[test]
    fn saved_and_loaded_and_a_corrupt_file_is_kept_aside() {
        let dir = std::env::temp_dir().join(format!("whosin-settings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = Settings::load_or_create(&dir).unwrap();
        let again = Settings::load_or_create(&dir).unwrap();
        assert_eq!(first, again, "made once, then kept");
        std::fs::write(Settings::path(&dir), "{ nope").unwrap();
        let fresh = Settings::load_or_create(&dir).unwrap();
        assert_ne!(fresh.visitor_id, first.visitor_id);
        assert!(dir.join("settings.json.broken").exists());
        // The visitor token is kept; a file from before it loads without one.
        let mut with_token = fresh.clone();
        with_token.visitor_token = Some("t".repeat(64));
        with_token.save(&dir).unwrap();
        assert_eq!(Settings::load_or_create(&dir).unwrap(), with_token);
        let mut old: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(Settings::path(&dir)).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("visitor_token");
        std::fs::write(Settings::path(&dir), old.to_string()).unwrap();
        let loaded = Settings::load_or_create(&dir).unwrap();
        assert_eq!(
            (loaded.visitor_id, loaded.visitor_token),
            (fresh.visitor_id, None)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_single_site_file_is_migrated_into_the_list_of_sites() {
        let dir =
            std::env::temp_dir().join(format!("whosin-settings-sites-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // What the app wrote before several sites.
        let old = serde_json::json!({
            "visitor_id": "v-old",
            "name": "Ada",
            "channel": "presence-shop",
            "remote": {"url": "wss://shop.example:443", "key": "k", "auth_endpoint": "https://shop.example/pusher/auth"},
            "alert_at": 5,
            "notifications": true,
            "embedded_secret": "s".repeat(32),
        });
        std::fs::write(Settings::path(&dir), old.to_string()).unwrap();
        let s = Settings::load_or_create(&dir).unwrap();
        assert_eq!(s.visitor_id, "v-old");
        assert!(s.notifications);
        assert_eq!(s.sites.len(), 1);
        let site = &s.sites[0];
        assert_eq!(
            (site.id.as_str(), site.name.as_str()),
            (FIRST_SITE, "shop.example")
        );
        assert_eq!(site.channel(), "presence-shop");
        assert_eq!(site.alert_at, Some(5));
        assert_eq!(site.remote.as_ref().unwrap().key, "k");
        assert!(
            matches!(s.target(), Ok(Target::Remote { ref channel, .. }) if channel == "presence-shop")
        );
        // Saved in the new shape: the old top-level fields are gone.
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(Settings::path(&dir)).unwrap()).unwrap();
        assert!(
            saved.get("remote").is_none() && saved.get("channel").is_none(),
            "{saved}"
        );
        assert_eq!(saved["sites"][0]["channel"], "presence-shop");
        assert_eq!(
            Settings::load_or_create(&dir).unwrap(),
            s,
            "stable once migrated"
        );
        // A fresh install: one site, this computer, joined as a visitor.
        let fresh = Settings::fresh();
        assert_eq!(fresh.sites, vec![Site::this_computer()]);
        assert_eq!(fresh.site().name, "This computer");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_settings_file_is_readable_by_its_owner_only_and_an_old_one_is_fixed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("whosin-settings-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mode = || {
            std::fs::metadata(Settings::path(&dir))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        Settings::load_or_create(&dir).unwrap();
        assert_eq!(mode(), 0o600, "written 0600");
        std::fs::set_permissions(Settings::path(&dir), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        Settings::load_or_create(&dir).unwrap();
        assert_eq!(mode(), 0o600, "an older 0644 file is fixed on start");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_watched_site_with_the_app_secret_is_watched_through_rest() {
        let mut site = Site {
            id: "s".into(),
            name: "Shop".into(),
            remote: Some(
                Remote {
                    url: Some(" wss://example.com ".into()),
                    key: "k".into(),
                    app_id: Some(" 7 ".into()),
                    secret: Some("x".into()),
                    ..Remote::default()
                }
                .normalized(),
            ),
            channel: None,
            alert_at: None,
            alert_empty: false,
            watch: true,
        };
        // No auth endpoint needed: nobody joins.
        assert!(
            matches!(site.target(), Ok(Target::Rest { ref app_id, ref secret, ref channel, .. })
                if app_id == "7" && secret == "x" && channel == DEFAULT_CHANNEL),
            "{:?}",
            site.target()
        );
        // Joined as a visitor, the auth endpoint is needed again, and the
        // error says how the id and secret would be used.
        site.watch = false;
        assert!(
            matches!(site.target(), Err(SettingsError::Server(ref m)) if m.contains("auth endpoint") && m.contains("tick \"Watch without being counted\"")),
            "{:?}",
            site.target()
        );
        site.watch = true;
        site.remote.as_mut().unwrap().app_id = Some("7/../x".into());
        assert!(
            matches!(site.target(), Err(SettingsError::Server(ref m)) if m.contains("letters, digits")),
            "{:?}",
            site.target()
        );
        site.remote.as_mut().unwrap().app_id = Some("7".into());
        // An id without its secret says what is missing.
        site.watch = true;
        site.remote.as_mut().unwrap().secret = None;
        assert!(
            matches!(site.target(), Err(SettingsError::Server(ref m)) if m.contains("both the app id and the app secret")),
            "{:?}",
            site.target()
        );
    }
}
