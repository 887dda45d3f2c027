//! The presence runtime behind the window and the tray: it owns the
//! settings, the client connection, the embedded server and the state, and
//! tells the UI about every change through [`Ui`]. Kept free of Tauri types
//! so it can be driven by tests with a recording `Ui`.

use crate::alerts::{Alerts, Rule};
use crate::embedded::Embedded;
use crate::history::{minute_points, HistoryStore};
use crate::settings::{Editable, Settings, Target};
use crate::settings::{NewSite, Site};
use crate::state::{DesktopState, Notice, Roster};
use crate::tray::{SiteLine, TrayModel};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use whosin_client::{Client, Events, IpLookup, Signing, Visitor, VisitorIdentity};

/// Where the controller's news goes.
pub trait Ui: Send + Sync + 'static {
    /// A numbered event for the window.
    fn emit(&self, payload: &Value);
    /// A new tray model.
    fn tray(&self, model: &TrayModel);
    /// Someone else joined or left (called only when notifications are on).
    fn notify(&self, _notice: &Notice) {}
    /// A count alert the user asked for (plain text).
    fn alert(&self, _text: &str) {}
    /// Turns start-at-login on or off.
    fn set_autostart(&self, _on: bool) -> Result<(), String> {
        Ok(())
    }
}

/// Startup options, from the environment in the app and set directly in tests.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where settings.json lives.
    pub config_dir: PathBuf,
    /// Where the count history database lives.
    pub data_dir: PathBuf,
    /// Port the embedded server prefers.
    pub embedded_port: u16,
    /// Public IP lookup endpoints (empty: no lookup).
    pub ip_lookup: Vec<String>,
    /// How often a site watched through a REST API is read
    /// ([`whosin_client::rest::DEFAULT_INTERVAL`] in the app).
    pub rest_interval: std::time::Duration,
}

/// A site's connection, made: the client and its events, the channel it
/// watches, the server, and the identity an auth endpoint may update.
struct Opened {
    client: Client,
    events: Events,
    channel: String,
    endpoint: whosin_client::Endpoint,
    identity: Option<VisitorIdentity>,
}

struct Inner {
    settings: Settings,
    state: DesktopState,
    client: Option<Client>,
    /// The visitor identity an auth endpoint may update (remote mode).
    identity: Option<VisitorIdentity>,
    /// The channel the client joins; its roster is the session's.
    channel: Option<String>,
    /// Bumped on every (re)connect, so a pump of an old client stops.
    generation: u64,
    embedded: Option<Embedded>,
    tray: Option<TrayModel>,
    /// Every count change, kept for the chart (`None` when the database
    /// cannot be opened: the app works on without history).
    history: Option<HistoryStore>,
    /// Each site's count alerts, by site id (made on first use).
    alerts: HashMap<String, Alerts>,
    /// Each site's count as last recorded, by site id.
    last_counts: HashMap<String, u32>,
    /// The sites watched beside the shown one, for their counts.
    others: Vec<Background>,
    /// Bumped whenever `others` is replaced, so their pumps stop.
    others_generation: u64,
    /// The shown site's count as the window's sites list last had it, so
    /// that a change of it (which comes through the shown site's own events)
    /// updates the list too.
    shown_in_sites: Option<Option<u32>>,
}

/// A site watched beside the one the window shows: its client, joined as
/// a visitor like the shown one, kept for its count.
struct Background {
    site: Site,
    client: Client,
    channel: String,
}

impl Background {
    fn count(&self) -> Option<u32> {
        self.client.count(&self.channel).map(|n| n as u32)
    }
}

/// Alerts of one kind are at most one per this long.
const ALERT_COOLDOWN: std::time::Duration = std::time::Duration::from_secs(5 * 60);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The start of today in the user's time zone, Unix milliseconds.
fn day_start_ms() -> i64 {
    use chrono::{Local, TimeZone};
    let today = Local::now().date_naive();
    today
        .and_hms_opt(0, 0, 0)
        .and_then(|t| Local.from_local_datetime(&t).earliest())
        .map_or(now_ms() - 24 * 3_600_000, |t| t.timestamp_millis())
}

fn alert_rule(s: &Site) -> Rule {
    Rule {
        at_least: s.alert_at,
        when_empty: s.alert_empty,
    }
}

/// A site's count now: the shown site's from the session, another's from
/// its background client; `None` while it is not live.
fn site_count(inner: &Inner, id: &str) -> Option<u32> {
    if inner.settings.site().id == id {
        return inner.state.live().then(|| inner.count()).flatten();
    }
    inner
        .others
        .iter()
        .find(|b| b.site.id == id)
        .and_then(Background::count)
}

/// Every site as the tray lists it.
fn site_lines(inner: &Inner) -> Vec<SiteLine> {
    inner
        .settings
        .sites
        .iter()
        .map(|s| SiteLine {
            name: s.name.clone(),
            count: site_count(inner, &s.id),
            in_tray: inner
                .settings
                .tray_site
                .as_deref()
                .is_none_or(|t| t == s.id),
        })
        .collect()
}

/// Today's peak of the history, if it has one.
fn peak_today(inner: &Inner) -> Option<u32> {
    let h = inner.history.as_ref()?;
    h.peak_since(&inner.settings.site().id, day_start_ms(), now_ms())
        .ok()
        .flatten()
        .map(|(v, _)| v)
}

impl Inner {
    /// The session's roster of the joined channel, if any.
    fn roster(&self) -> Option<Roster> {
        self.client.as_ref()?.members(self.channel.as_deref()?)
    }

    /// How many are in the shown site's channel (the roster's length,
    /// without copying it).
    fn count(&self) -> Option<u32> {
        let n = self.client.as_ref()?.count(self.channel.as_deref()?)?;
        Some(n as u32)
    }
}

/// The presence runtime.
pub struct Controller {
    ui: Arc<dyn Ui>,
    options: Options,
    inner: Mutex<Inner>,
    /// Held from taking a sequence number to handing the event to the UI, so
    /// the window receives events in sequence order whichever task sent them.
    /// Never held by commands that only read, and never while waiting on the
    /// main thread, so it cannot deadlock with the event loop.
    emit_order: Mutex<()>,
    /// The same for the tray: the last model applied is the last computed.
    tray_order: Mutex<()>,
    ip: IpLookup,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// Loads (or creates) the settings; nothing connects until [`Controller::start`].
    pub fn new(ui: Arc<dyn Ui>, options: Options) -> Result<Arc<Controller>, String> {
        let settings = Settings::load_or_create(&options.config_dir).map_err(|e| e.to_string())?;
        let ip = IpLookup::new(options.ip_lookup.clone());
        let history = match HistoryStore::open(&options.data_dir.join("history.sqlite3")) {
            Ok(h) => {
                if let Err(e) = h.prune(now_ms()) {
                    tracing::warn!("{e}");
                }
                Some(h)
            }
            Err(e) => {
                tracing::warn!("no count history this time: {e}");
                None
            }
        };
        Ok(Arc::new(Controller {
            ui,
            options,
            inner: Mutex::new(Inner {
                settings,
                state: DesktopState::default(),
                client: None,
                identity: None,
                channel: None,
                generation: 0,
                embedded: None,
                tray: None,
                history,
                alerts: HashMap::new(),
                last_counts: HashMap::new(),
                others: Vec::new(),
                others_generation: 0,
                shown_in_sites: None,
            }),
            emit_order: Mutex::new(()),
            tray_order: Mutex::new(()),
            ip,
        }))
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks up the public IP and joins as configured.
    pub async fn start(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let ip = match me.ip.lookup().await {
                Ok(ip) => Some(ip.to_string()),
                Err(e) => {
                    tracing::info!("{e}");
                    None
                }
            };
            let _order = me.emit_order.lock().unwrap_or_else(|e| e.into_inner());
            let payload = me.inner().state.set_public_ip(ip);
            me.ui.emit(&payload);
        });
        if let Err(e) = self.connect().await {
            tracing::warn!("{e}");
        }
    }

    /// Everything for the window.
    pub fn snapshot(&self) -> Value {
        let inner = self.inner();
        inner.state.snapshot(inner.roster().as_ref())
    }

    /// The settings panel's fields.
    pub fn settings(&self) -> Editable {
        self.inner().settings.editable()
    }

    /// The tray as last drawn.
    pub fn tray_model(&self) -> TrayModel {
        let inner = self.inner();
        let members = inner.roster().map(|r| r.1).unwrap_or_default();
        TrayModel::of(&inner.state, &members, peak_today(&inner)).with_sites(&site_lines(&inner))
    }

    /// The chart's data: the last 24 hours as per-minute points (the same
    /// shape as a whosin server's count history), today's peak and when.
    pub fn history(&self) -> Value {
        let inner = self.inner();
        let now = now_ms();
        let Some(h) = &inner.history else {
            return json!({"points": [], "peak": null});
        };
        let site = &inner.settings.site().id;
        let changes = h
            .changes(site, now - 24 * 3_600_000, now)
            .inspect_err(|e| tracing::warn!("{e}"))
            .unwrap_or_default();
        let peak = h
            .peak_since(site, day_start_ms(), now)
            .ok()
            .flatten()
            .map(|(value, t)| json!({"value": value, "t": t / 1000}));
        json!({"points": minute_points(&changes), "peak": peak})
    }

    /// Records the shown site's new count in the history and gives it to
    /// its alerts.
    fn observe_count(&self) {
        let (site, n) = {
            let inner = self.inner();
            let live =
                matches!(inner.state.conn, crate::state::Conn::Connected) && inner.state.joined;
            let Some(n) = live.then(|| inner.count()).flatten() else {
                return;
            };
            (inner.settings.site().clone(), n)
        };
        self.counted(&site, n);
    }

    /// A site has `n` online: the history and the alerts hear of it once
    /// per change.
    fn counted(&self, site: &Site, n: u32) {
        let alert = {
            let mut inner = self.inner();
            if inner.last_counts.get(&site.id) == Some(&n) {
                return;
            }
            inner.last_counts.insert(site.id.clone(), n);
            if let Some(h) = &inner.history {
                if let Err(e) = h.record(&site.id, now_ms(), n) {
                    tracing::warn!("{e}");
                }
            }
            inner
                .alerts
                .entry(site.id.clone())
                .or_insert_with(|| Alerts::new(alert_rule(site), ALERT_COOLDOWN))
                .observe(n, std::time::Instant::now())
                .map(|a| a.text(&site.name))
        };
        if let Some(text) = alert {
            self.ui.alert(&text);
        }
    }

    /// Every site with its count (`None` while it is not live), the shown
    /// one marked: the window's `#sites` and the tray's menu.
    pub fn sites(&self) -> Value {
        let inner = self.inner();
        let shown = inner.settings.site().id.clone();
        let list: Vec<Value> = inner
            .settings
            .sites
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "name": s.name,
                    "count": site_count(&inner, &s.id),
                    "shown": s.id == shown,
                    "in_tray": inner.settings.tray_site.as_deref().is_none_or(|t| t == s.id),
                })
            })
            .collect();
        json!({"sites": list, "tray_site": inner.settings.tray_site})
    }

    fn emit_sites(&self) {
        let mut payload = self.sites();
        {
            let mut inner = self.inner();
            let shown = inner.settings.site().id.clone();
            inner.shown_in_sites = Some(site_count(&inner, &shown));
        }
        payload["event"] = json!("sites");
        self.ui.emit(&payload);
    }

    /// Sends the sites list again when the shown site's count in it is no
    /// longer what the window has.
    fn emit_sites_if_shown_changed(&self) {
        let changed = {
            let inner = self.inner();
            let shown = inner.settings.site().id.clone();
            inner.shown_in_sites != Some(site_count(&inner, &shown))
        };
        if changed {
            self.emit_sites();
        }
    }

    /// Shows site `id` in the window (and reconnects the sites around it).
    pub async fn select_site(self: &Arc<Self>, id: &str) -> Result<Value, String> {
        let next = {
            let inner = self.inner();
            if !inner.settings.sites.iter().any(|s| s.id == id) {
                return Err(format!("no site {id:?}"));
            }
            let mut next = inner.settings.clone();
            next.selected = Some(id.to_owned());
            next
        };
        self.store(next).await
    }

    /// Adds a site; the error says what to fix.
    pub async fn add_site(self: &Arc<Self>, site: NewSite) -> Result<Value, String> {
        let (next, _id) = self
            .inner()
            .settings
            .with_site(site)
            .map_err(|e| e.to_string())?;
        self.store(next).await
    }

    /// Removes a site (not the last one).
    pub async fn remove_site(self: &Arc<Self>, id: &str) -> Result<Value, String> {
        let next = self
            .inner()
            .settings
            .without_site(id)
            .map_err(|e| e.to_string())?;
        self.store(next).await
    }

    /// Shows site `id`'s count in the tray, or (`None`) the total.
    pub fn set_tray_site(&self, id: Option<String>) -> Result<Value, String> {
        let next = {
            let inner = self.inner();
            if let Some(id) = &id {
                if !inner.settings.sites.iter().any(|s| &s.id == id) {
                    return Err(format!("no site {id:?}"));
                }
            }
            let mut next = inner.settings.clone();
            next.tray_site = id;
            next
        };
        next.save(&self.options.config_dir)
            .map_err(|e| e.to_string())?;
        self.inner().settings = next;
        self.refresh_tray();
        self.emit_sites();
        Ok(self.sites())
    }

    /// Saves new settings and reconnects every site.
    async fn store(self: &Arc<Self>, next: Settings) -> Result<Value, String> {
        next.save(&self.options.config_dir)
            .map_err(|e| e.to_string())?;
        self.inner().settings = next;
        self.connect().await?;
        self.refresh_window();
        Ok(self.sites())
    }

    /// Validates and applies new settings, then reconnects. Invalid settings
    /// change nothing and say what to fix.
    pub async fn save_settings(self: &Arc<Self>, e: Editable) -> Result<Value, String> {
        let next = {
            let inner = self.inner();
            let (next, _target) = inner.settings.with(e).map_err(|e| e.to_string())?;
            next
        };
        if next.autostart != self.inner().settings.autostart {
            self.ui
                .set_autostart(next.autostart)
                .map_err(|e| format!("start at login: {e}"))?;
        }
        next.save(&self.options.config_dir)
            .map_err(|e| e.to_string())?;
        {
            let mut inner = self.inner();
            let site = next.site();
            if alert_rule(site) != alert_rule(inner.settings.site()) {
                inner.alerts.remove(&site.id);
                inner.last_counts.remove(&site.id);
            }
            inner.settings = next;
        }
        self.connect().await?;
        Ok(self.refresh_window())
    }

    /// Joins or leaves the channel; the app stays open either way.
    pub async fn set_joined(self: &Arc<Self>, joined: bool) -> Result<Value, String> {
        if joined {
            self.connect().await?;
        } else {
            let mut inner = self.inner();
            inner.generation += 1;
            if let Some(c) = inner.client.take() {
                c.close();
            }
            inner.state.leave();
            drop(inner);
            self.refresh_tray();
        }
        Ok(self.refresh_window())
    }

    /// Sends the window a whole new picture (after leave, join, new
    /// settings), whoever asked for it: the window or the tray menu.
    fn refresh_window(&self) -> Value {
        let _order = self.emit_order.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = {
            let mut inner = self.inner();
            let roster = inner.roster();
            inner.state.refresh(roster.as_ref())
        };
        self.ui
            .emit(&json!({"event": "refresh", "seq": snapshot["seq"], "snapshot": snapshot}));
        snapshot
    }

    /// Closes the connection and the embedded server (on quit).
    pub async fn shutdown(&self) {
        let embedded = {
            let mut inner = self.inner();
            inner.generation += 1;
            if let Some(c) = inner.client.take() {
                c.close();
            }
            inner.others_generation += 1;
            for b in inner.others.drain(..) {
                b.client.close();
            }
            inner.embedded.take()
        };
        if let Some(e) = embedded {
            e.stop().await;
        }
    }

    /// (Re)connects with the current settings.
    async fn connect(self: &Arc<Self>) -> Result<(), String> {
        let (settings, target) = {
            let inner = self.inner();
            let target = inner.settings.target().map_err(|e| e.to_string())?;
            (inner.settings.clone(), target)
        };
        // Stop the current client first, so we never hold two memberships.
        let old_embedded = {
            let mut inner = self.inner();
            inner.generation += 1;
            if let Some(c) = inner.client.take() {
                c.close();
            }
            inner.state.restart();
            if !matches!(target, Target::Embedded { .. }) {
                inner.state.address = None;
                inner.embedded.take()
            } else {
                None
            }
        };
        if let Some(e) = old_embedded {
            e.stop().await;
        }
        self.refresh_tray();

        let Opened {
            client,
            events,
            channel,
            endpoint,
            identity,
        } = self.open(&settings, settings.site(), &target).await?;
        self.fill_gap(settings.site(), &endpoint, &channel);
        let generation = {
            let mut inner = self.inner();
            inner.state.me_id = Some(settings.visitor_id.clone());
            inner.identity = identity;
            inner.client = Some(client);
            inner.channel = Some(channel);
            inner.generation
        };
        let me = self.clone();
        tokio::spawn(async move { me.pump(generation, events).await });
        self.refresh_window();
        self.connect_others().await;
        Ok(())
    }

    /// Connects to `site` at `target` and subscribes its channel: as this
    /// visitor (or an observer), or, for a site watched through the REST
    /// API, by reading its user list without joining.
    async fn open(
        &self,
        settings: &Settings,
        site: &Site,
        target: &Target,
    ) -> Result<Opened, String> {
        if let Target::Rest {
            endpoint,
            app_id,
            secret,
            channel,
        } = target
        {
            let (client, events) = whosin_client::RestWatch::new(endpoint, app_id, secret)
                .map_err(|e| e.to_string())?
                .interval(self.options.rest_interval)
                .start();
            client.subscribe(channel);
            return Ok(Opened {
                client,
                events,
                channel: channel.clone(),
                endpoint: endpoint.clone(),
                identity: None,
            });
        }
        let (visitor, channel) = self.visitor_for(settings, site, target).await?;
        let (client, events) = visitor.client().connect();
        client.subscribe(&channel);
        Ok(Opened {
            client,
            events,
            channel,
            endpoint: visitor.endpoint.clone(),
            // Only an auth endpoint answers with an id and token to keep.
            identity: matches!(visitor.signing, Signing::AuthEndpoint { .. })
                .then(|| visitor.identity.clone()),
        })
    }

    /// Who joins `target` as this visitor, and on which channel: signed with
    /// the embedded server's secret, or by the remote auth endpoint.
    ///
    /// A site set to watch is joined as an observer (on whosin servers: it
    /// sees everyone and is not counted): signed so with the embedded
    /// server's secret, or given the remote server's owner token.
    async fn visitor_for(
        &self,
        settings: &Settings,
        site: &Site,
        target: &Target,
    ) -> Result<(Visitor, String), String> {
        Ok(match target {
            Target::Embedded { channel } => {
                let port = self.embedded_port(settings).await?;
                let endpoint = whosin_client::Endpoint::parse(
                    &format!("ws://127.0.0.1:{port}"),
                    crate::settings::EMBEDDED_APP,
                )
                .map_err(|e| e.to_string())?;
                let visitor = Visitor {
                    endpoint,
                    identity: VisitorIdentity::new(settings.visitor_id.clone(), None),
                    name: Some(settings.name.clone()),
                    signing: Signing::Secret {
                        secret: settings.embedded_secret.clone(),
                        info: json!({"name": settings.name, "ip": "127.0.0.1"}),
                    },
                    watch: site.watch,
                };
                (visitor, channel.clone())
            }
            Target::Remote {
                endpoint,
                auth_endpoint,
                channel,
            } => {
                let visitor = Visitor {
                    endpoint: endpoint.clone(),
                    identity: VisitorIdentity::new(
                        settings.visitor_id.clone(),
                        settings.visitor_token.clone(),
                    ),
                    name: Some(settings.name.clone()),
                    signing: Signing::AuthEndpoint {
                        url: auth_endpoint.clone(),
                        params: site
                            .remote
                            .as_ref()
                            .and_then(|r| r.observer_token.clone())
                            .filter(|_| site.watch)
                            .map(|t| ("observer_token".to_owned(), t))
                            .into_iter()
                            .collect(),
                        headers: Vec::new(),
                    },
                    watch: site.watch,
                };
                (visitor, channel.clone())
            }
            Target::Rest { .. } => {
                return Err("a site watched through the REST API has no visitor".into())
            }
        })
    }

    /// (Re)connects the sites beside the shown one, each joined as this
    /// visitor, for their counts.
    async fn connect_others(self: &Arc<Self>) {
        let (settings, generation) = {
            let mut inner = self.inner();
            inner.others_generation += 1;
            for b in inner.others.drain(..) {
                b.client.close();
            }
            (inner.settings.clone(), inner.others_generation)
        };
        let shown = settings.site().id.clone();
        for site in settings.sites.iter().filter(|s| s.id != shown) {
            let target = match site.target() {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(site = %site.name, "site not watched: {e}");
                    continue;
                }
            };
            let Opened {
                client,
                events,
                channel,
                endpoint,
                ..
            } = match self.open(&settings, site, &target).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(site = %site.name, "site not watched: {e}");
                    continue;
                }
            };
            self.fill_gap(site, &endpoint, &channel);
            {
                let mut inner = self.inner();
                if inner.others_generation != generation {
                    client.close();
                    return;
                }
                inner.others.push(Background {
                    site: site.clone(),
                    client,
                    channel,
                });
            }
            let me = self.clone();
            let id = site.id.clone();
            tokio::spawn(async move { me.pump_other(generation, id, events).await });
        }
        self.emit_sites();
    }

    /// Fills the time this app was not running with a remote whosin
    /// server's count history (in the background; nothing when the server
    /// has none).
    fn fill_gap(self: &Arc<Self>, site: &Site, endpoint: &whosin_client::Endpoint, channel: &str) {
        if site.remote.is_none() {
            return;
        }
        let (me, site, endpoint, channel) = (
            self.clone(),
            site.id.clone(),
            endpoint.clone(),
            channel.to_owned(),
        );
        tokio::spawn(async move {
            let Some(points) = crate::history::server_history(&endpoint, &channel).await else {
                return;
            };
            let inner = me.inner();
            let Some(h) = &inner.history else { return };
            let from = match h.last_time(&site) {
                Ok(Some(t)) => t - t.rem_euclid(60_000) + 60_000,
                _ => now_ms() - 24 * 3_600_000,
            };
            match h.fill(&site, from, &points) {
                Ok(n) if n > 0 => {
                    tracing::info!(site = %site, minutes = n, "history filled from the server")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("{e}"),
            }
        });
    }

    /// Follows a background site's count until its client is replaced.
    async fn pump_other(self: Arc<Self>, generation: u64, id: String, mut events: Events) {
        while events.recv().await.is_some() {
            let counted = {
                let inner = self.inner();
                if inner.others_generation != generation {
                    return;
                }
                inner
                    .others
                    .iter()
                    .find(|b| b.site.id == id)
                    .and_then(|b| Some((b.site.clone(), b.count()?)))
            };
            if let Some((site, n)) = counted {
                self.counted(&site, n);
            }
            self.refresh_tray();
            self.emit_sites();
        }
    }

    /// The embedded server's port, starting it when needed.
    async fn embedded_port(&self, settings: &Settings) -> Result<u16, String> {
        if let Some(e) = &self.inner().embedded {
            return Ok(e.port);
        }
        let e = Embedded::ensure(&settings.embedded_secret, self.options.embedded_port).await?;
        let port = e.port;
        let mut inner = self.inner();
        // The window tells where others can join only when it shows this
        // computer's site (a site in the background may start the server).
        if inner.settings.site().remote.is_none() {
            inner.state.address = Some(e.address());
        }
        inner.embedded = Some(e);
        Ok(port)
    }

    /// Forwards one client's events until a newer client replaces it.
    async fn pump(self: Arc<Self>, generation: u64, mut events: Events) {
        while let Some(event) = events.recv().await {
            let order = self.emit_order.lock().unwrap_or_else(|e| e.into_inner());
            let (payload, notice, notify) = {
                let mut inner = self.inner();
                if inner.generation != generation {
                    return;
                }
                let (payload, notice) = inner.state.apply(&event);
                (payload, notice, inner.settings.notifications)
            };
            if let Some(p) = payload {
                self.ui.emit(&p);
            }
            drop(order);
            if let (Some(n), true) = (notice, notify) {
                self.ui.notify(&n);
            }
            self.keep_identity();
            self.observe_count();
            self.refresh_tray();
            self.emit_sites_if_shown_changed();
        }
    }

    /// Stores the visitor id and token the auth endpoint answered with, when
    /// they changed, so the next start is the same visitor.
    fn keep_identity(&self) {
        let next = {
            let mut inner = self.inner();
            let Some(learned) = inner.identity.as_ref().map(VisitorIdentity::get) else {
                return;
            };
            let s = &mut inner.settings;
            if s.visitor_id == learned.id && s.visitor_token == learned.token {
                return;
            }
            s.visitor_id = learned.id.clone();
            s.visitor_token = learned.token;
            inner.state.me_id = Some(learned.id);
            inner.settings.clone()
        };
        if let Err(e) = next.save(&self.options.config_dir) {
            tracing::warn!(error = %e, "could not store the visitor token");
        }
    }

    /// Redraws the tray when what it shows changed.
    fn refresh_tray(&self) {
        let _order = self.tray_order.lock().unwrap_or_else(|e| e.into_inner());
        let model = {
            let mut inner = self.inner();
            let members = inner.roster().map(|r| r.1).unwrap_or_default();
            let model = TrayModel::of(&inner.state, &members, peak_today(&inner))
                .with_sites(&site_lines(&inner));
            if inner.tray.as_ref() == Some(&model) {
                return;
            }
            inner.tray = Some(model.clone());
            model
        };
        self.ui.tray(&model);
    }
}
