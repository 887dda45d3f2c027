//! `whosin serve`: flags, `WHOSIN_*` variables and the TOML file merged into
//! one [`ServerConfig`], then the server run until SIGINT or SIGTERM.

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use whosin_server::config::{defaults, FileConfig, IpNet};
use whosin_server::{AppConfig, ServerConfig, TlsFiles};

/// Options of `whosin serve`. Every flag can also be set by the variable named
/// in its help; flags beat variables, variables beat the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WHOSIN_HOST")]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one (the chosen port is printed).
    #[arg(long, env = "WHOSIN_PORT")]
    port: Option<u16>,
    /// App id (REST paths /apps/{id}/...).
    #[arg(long, env = "WHOSIN_APP_ID")]
    app_id: Option<String>,
    /// App key (WebSocket path /app/{key}).
    #[arg(long, env = "WHOSIN_APP_KEY")]
    app_key: Option<String>,
    /// App secret (signs subscriptions and REST requests).
    #[arg(long, env = "WHOSIN_APP_SECRET", hide_env_values = true)]
    app_secret: Option<String>,
    /// Most distinct users in one presence channel.
    #[arg(long, env = "WHOSIN_MAX_PRESENCE_MEMBERS")]
    max_presence_members: Option<usize>,
    /// Most simultaneous connections for the app (more are closed with 4004).
    #[arg(long, env = "WHOSIN_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Channel the auth endpoint signs (repeat for several). Default: presence-whosin.
    #[arg(long = "channel", env = "WHOSIN_CHANNEL", value_delimiter = ',')]
    channels: Vec<String>,
    /// Mask the host part of visitor IPs in what the auth endpoint signs.
    #[arg(long, env = "WHOSIN_MASK_IPS")]
    mask_ips: bool,
    /// Network whose X-Forwarded-For is trusted (CIDR; repeat for several).
    #[arg(
        long = "trusted-proxy",
        env = "WHOSIN_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<String>,
    /// Also believe X-Forwarded-For from loopback peers, i.e. a reverse
    /// proxy on this host (default true; `false` to turn off).
    #[arg(long, env = "WHOSIN_TRUST_LOOPBACK_PROXY", action = clap::ArgAction::Set, value_name = "BOOL")]
    trust_loopback_proxy: Option<bool>,
    /// Open WebSocket connections one client address may have (default 100; 0: no limit).
    #[arg(long, env = "WHOSIN_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// New WebSocket connections one client address may open per minute (default 300; 0: no limit).
    #[arg(long, env = "WHOSIN_NEW_CONNECTIONS_PER_IP_PER_MINUTE")]
    new_connections_per_ip_per_minute: Option<u32>,
    /// Signatures the auth endpoint gives one client address per minute (default 120; 0: no limit).
    #[arg(long, env = "WHOSIN_SIGNATURES_PER_IP_PER_MINUTE")]
    signatures_per_ip_per_minute: Option<u32>,
    /// Distinct presence users one client address may have in one channel (default 10; 0: no limit).
    #[arg(long, env = "WHOSIN_MAX_PRESENCE_USERS_PER_IP")]
    max_presence_users_per_ip: Option<usize>,
    /// Leave loopback clients (no trusted proxy in front) out of the
    /// per-address limits (default true; `false` to limit them too).
    #[arg(long, env = "WHOSIN_EXEMPT_LOOPBACK", action = clap::ArgAction::Set, value_name = "BOOL")]
    exempt_loopback: Option<bool>,
    /// Open WebSocket connections over the whole process (default 100000;
    /// keep it below `ulimit -n`).
    #[arg(long, env = "WHOSIN_MAX_TOTAL_CONNECTIONS")]
    max_total_connections: Option<usize>,
    /// Seconds of silence before the server pings a client.
    #[arg(long, env = "WHOSIN_ACTIVITY_TIMEOUT")]
    activity_timeout: Option<u64>,
    /// Seconds a client has to answer a ping before it is dropped (4201).
    #[arg(long, env = "WHOSIN_PONG_TIMEOUT")]
    pong_timeout: Option<u64>,
    /// Frames that may queue for one client before it counts as too slow (4100).
    #[arg(long, env = "WHOSIN_OUTBOUND_QUEUE")]
    outbound_queue: Option<usize>,
    /// Seconds a request body may take to arrive (default 30; slower: 408).
    #[arg(long, env = "WHOSIN_BODY_READ_TIMEOUT")]
    body_read_timeout: Option<u64>,
    /// Serve /metrics only with `Authorization: Bearer TOKEN`.
    #[arg(long, env = "WHOSIN_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// A browser origin allowed to connect and use the auth endpoint
    /// (repeatable; default: any). Requests without Origin are not affected.
    #[arg(
        long = "allowed-origin",
        env = "WHOSIN_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// Channels one connection may be in at once (default 100).
    #[arg(long, env = "WHOSIN_MAX_CHANNELS_PER_CONNECTION")]
    max_channels_per_connection: Option<usize>,
    /// Let clients send client-* events to each other on private and
    /// presence channels (off by default, as in Pusher).
    #[arg(long, env = "WHOSIN_ENABLE_CLIENT_EVENTS")]
    enable_client_events: bool,
    /// A URL that receives the app's webhooks (every event type; repeat for
    /// several). For event-type filters and several apps, use
    /// `[[apps.webhooks]]` in the config file.
    #[arg(long = "webhook", env = "WHOSIN_WEBHOOKS", value_delimiter = ',')]
    webhooks: Vec<String>,
    /// Milliseconds member_removed and channel_vacated webhooks wait, so a
    /// page reload is neither a leave nor a join (default 3000).
    #[arg(long, env = "WHOSIN_WEBHOOK_GRACE_MS")]
    webhook_grace_ms: Option<u64>,
    /// Tell subscribers of public and private channels their subscription
    /// count (pusher:subscription_count), at most about once a second.
    #[arg(long, env = "WHOSIN_SUBSCRIPTION_COUNT")]
    subscription_count: bool,
    /// The owner's token: the auth endpoint signs a request with
    /// `observer_token=TOKEN` as an observer (sees the channel, is never a
    /// member). Unset: it never signs observers.
    #[arg(long, env = "WHOSIN_OBSERVER_TOKEN", hide_env_values = true)]
    observer_token: Option<String>,
    /// Bytes that may queue for one client before it counts as too slow (4100).
    #[arg(long, env = "WHOSIN_OUTBOUND_QUEUE_BYTES")]
    outbound_queue_bytes: Option<usize>,
    /// TLS certificate chain (PEM, server's first, e.g. fullchain.pem):
    /// with --tls-key, the port speaks https:// and wss:// only. SIGHUP
    /// re-reads both files.
    #[arg(long, env = "WHOSIN_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM, e.g. privkey.pem), with --tls-cert.
    #[arg(long, env = "WHOSIN_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// TOML config file (several apps go here; see the README).
    #[arg(long, env = "WHOSIN_CONFIG")]
    config: Option<PathBuf>,
    /// Join a cluster of nodes sharing this Redis (redis://HOST:PORT).
    #[arg(long, env = "WHOSIN_REDIS_URL")]
    redis_url: Option<String>,
    /// This node's id in the cluster (default: host name and process id).
    #[arg(long, env = "WHOSIN_NODE_ID", requires = "redis_url")]
    node_id: Option<String>,
    /// Seconds of silence after which the other nodes remove a node's members.
    #[arg(
        long,
        env = "WHOSIN_NODE_TIMEOUT",
        default_value_t = 5,
        requires = "redis_url"
    )]
    node_timeout: u64,
}

/// Builds the configuration. Returns it and a note for each default chosen.
fn build_config(args: ServeArgs) -> Result<(ServerConfig, Vec<String>)> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let mut notes = Vec::new();
    let mut apps = file.apps;
    let flag_app = args.app_id.is_some() || args.app_key.is_some() || args.app_secret.is_some();
    if flag_app {
        let (Some(id), Some(key), Some(secret)) = (args.app_id, args.app_key, args.app_secret)
        else {
            anyhow::bail!("give all three of --app-id, --app-key and --app-secret (or none, for a local default app)");
        };
        // The file's settings of that app are kept; the flags give its
        // credentials (flags beat the file, field by field).
        let mut app = apps
            .iter()
            .position(|a| a.id == id)
            .map(|i| apps.remove(i))
            .unwrap_or_else(|| AppConfig::new(id.clone(), key.clone(), secret.clone()));
        app.key = key;
        app.secret = secret;
        apps.retain(|a| a.key != app.key);
        apps.insert(0, app);
    }
    if apps.is_empty() {
        let secret = whosin_server::identity::new_visitor_id();
        notes.push(format!(
            "no app configured: serving app id \"whosin\", key \"whosin\", secret \"{secret}\" (random for this run; set --app-secret to fix it)"
        ));
        apps.push(AppConfig::new("whosin", "whosin", secret));
    }
    for app in &mut apps {
        if let Some(n) = args.max_presence_members {
            app.max_presence_members = n;
        }
        if let Some(n) = args.max_connections {
            app.max_connections = n;
        }
        if !args.channels.is_empty() {
            app.auth_channels = args.channels.clone();
        }
        if args.mask_ips {
            app.mask_ips = true;
        }
        if args.enable_client_events {
            app.client_events = true;
        }
        if let Some(n) = args.max_channels_per_connection {
            app.max_channels_per_connection = n;
        }
        if let Some(n) = args.max_presence_users_per_ip {
            app.max_presence_users_per_ip = n;
        }
        if args.subscription_count {
            app.subscription_count = true;
        }
        for url in &args.webhooks {
            app.webhooks.push(whosin_server::config::WebhookConfig {
                url: url.clone(),
                event_types: Vec::new(),
            });
        }
        if let Some(t) = &args.observer_token {
            app.observer_token = Some(t.clone());
        }
        if !args.allowed_origins.is_empty() {
            app.allowed_origins = args.allowed_origins.clone();
        }
    }
    let host = args.host.or(file.host).unwrap_or_else(|| {
        notes.push("no --host: listening on 127.0.0.1 only".into());
        "127.0.0.1".into()
    });
    let port = args.port.or(file.port).unwrap_or(defaults::PORT);
    let mut config = ServerConfig::single(apps.remove(0), port);
    config.apps.extend(apps);
    config.host = host;
    if let Some(s) = args.activity_timeout.or(file.activity_timeout) {
        config.activity_timeout = Duration::from_secs(s);
    }
    if let Some(s) = args.pong_timeout.or(file.pong_timeout) {
        config.pong_timeout = Duration::from_secs(s);
    }
    if let Some(n) = args.outbound_queue.or(file.outbound_queue) {
        config.outbound_queue = n;
    }
    if let Some(n) = args.outbound_queue_bytes.or(file.outbound_queue_bytes) {
        config.outbound_queue_bytes = n;
    }
    if let Some(s) = args.body_read_timeout.or(file.body_read_timeout) {
        config.body_read_timeout = Duration::from_secs(s.max(1));
    }
    config.metrics_token = args.metrics_token.or(file.metrics_token);
    config.tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => anyhow::bail!(
            "give both --tls-cert and --tls-key (or tls_cert and tls_key in the config file) for TLS, or neither for plain TCP"
        ),
    };
    if let Some(n) = file.max_message_bytes {
        config.max_message_bytes = n;
    }
    if let Some(b) = args.trust_loopback_proxy.or(file.trust_loopback_proxy) {
        config.trust_loopback_proxy = b;
    }
    let limits = &mut config.ip_limits;
    if let Some(n) = args.max_connections_per_ip.or(file.max_connections_per_ip) {
        limits.max_connections = n;
    }
    if let Some(n) = args
        .new_connections_per_ip_per_minute
        .or(file.new_connections_per_ip_per_minute)
    {
        limits.new_connections_per_minute = n;
    }
    if let Some(n) = args
        .signatures_per_ip_per_minute
        .or(file.signatures_per_ip_per_minute)
    {
        limits.signatures_per_minute = n;
    }
    if let Some(b) = args.exempt_loopback.or(file.exempt_loopback) {
        limits.exempt_loopback = b;
    }
    if let Some(n) = args.max_total_connections.or(file.max_total_connections) {
        config.max_total_connections = n;
    }
    if let Some(ms) = args.webhook_grace_ms.or(file.webhook_grace_ms) {
        config.webhook_grace = Duration::from_millis(ms);
    }
    config.trusted_proxies = file.trusted_proxies;
    for p in &args.trusted_proxies {
        config.trusted_proxies.push(
            IpNet::parse(p)
                .map_err(anyhow::Error::msg)
                .context("--trusted-proxy")?,
        );
    }
    if let Some(url) = args.redis_url {
        let node = args.node_id.unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let mut cc = whosin_server::backplane::ClusterConfig::new(url, node);
        cc.node_timeout = Duration::from_secs(args.node_timeout.max(2));
        cc.heartbeat = (cc.node_timeout / 5).max(Duration::from_millis(200));
        config.cluster = Some(cc);
    }
    config.validate()?;
    Ok((config, notes))
}

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(args: ServeArgs) -> Result<()> {
    let (config, notes) = build_config(args)?;
    for n in &notes {
        tracing::info!("{n}");
    }
    let apps: Vec<String> = config
        .apps
        .iter()
        .map(|a| format!("{} (key {})", a.id, a.key))
        .collect();
    let (ws, http) = match config.tls {
        Some(_) => ("wss", "https"),
        None => ("ws", "http"),
    };
    let running = whosin_server::start(config).await?;
    let addr = running.local_addr();
    tracing::info!(apps = %apps.join(", "), "whosin server ready: {ws}://{addr}/app/KEY, REST {http}://{addr}/apps/ID, auth {http}://{addr}/pusher/auth");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}").context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
    }
    wait_for_signal().await?;
    tracing::info!("shutting down: closing connections with 4200 so clients reconnect");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<(ServerConfig, Vec<String>)> {
        let t = T::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))?;
        build_config(t.a)
    }

    #[test]
    fn no_configuration_picks_a_local_default_and_says_so() {
        let (c, notes) = parse(&[]).unwrap();
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 6001);
        assert_eq!(c.apps.len(), 1);
        assert_eq!(c.apps[0].key, "whosin");
        assert_eq!(c.apps[0].auth_channels, vec!["presence-whosin"]);
        assert!(notes.iter().any(|n| n.contains("no app configured")));
    }

    #[test]
    fn limits_per_address_have_defaults_and_flags() {
        let (c, _) = parse(&[]).unwrap();
        assert!(c.trust_loopback_proxy && c.ip_limits.exempt_loopback);
        assert_eq!(c.ip_limits.max_connections, 100);
        assert_eq!(c.apps[0].max_presence_users_per_ip, 10);
        let (c, _) = parse(&[
            "--trust-loopback-proxy",
            "false",
            "--exempt-loopback",
            "false",
            "--max-connections-per-ip",
            "3",
            "--new-connections-per-ip-per-minute",
            "4",
            "--signatures-per-ip-per-minute",
            "5",
            "--max-presence-users-per-ip",
            "6",
            "--max-total-connections",
            "7",
        ])
        .unwrap();
        assert!(!c.trust_loopback_proxy && !c.ip_limits.exempt_loopback);
        let l = &c.ip_limits;
        assert_eq!(
            (
                l.max_connections,
                l.new_connections_per_minute,
                l.signatures_per_minute
            ),
            (3, 4, 5)
        );
        assert_eq!(c.apps[0].max_presence_users_per_ip, 6);
        assert_eq!(c.max_total_connections, 7);
        assert!(parse(&["--exempt-loopback", "maybe"]).is_err());
    }

    #[test]
    fn flags_set_the_app() {
        let (c, _) = parse(&[
            "--host",
            "::1",
            "--port",
            "0",
            "--app-id",
            "7",
            "--app-key",
            "k",
            "--app-secret",
            "s",
            "--max-presence-members",
            "3",
            "--channel",
            "presence-a",
            "--channel",
            "private-b",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--activity-timeout",
            "30",
            "--mask-ips",
        ])
        .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 0));
        assert_eq!((c.apps[0].id.as_str(), c.apps[0].key.as_str()), ("7", "k"));
        assert_eq!(c.apps[0].max_presence_members, 3);
        assert_eq!(c.apps[0].auth_channels, vec!["presence-a", "private-b"]);
        assert!(c.apps[0].mask_ips);
        assert_eq!(c.trusted_proxies.len(), 1);
        assert_eq!(c.activity_timeout, Duration::from_secs(30));
    }

    #[test]
    fn partial_app_flags_are_an_error_that_says_what_to_do() {
        let e = parse(&["--app-id", "1"]).unwrap_err().to_string();
        assert!(e.contains("--app-key"), "{e}");
        let e = parse(&["--trusted-proxy", "nonsense"]).unwrap_err();
        assert!(format!("{e:#}").contains("not an IP"), "{e:#}");
    }

    #[test]
    fn tls_files_come_in_pairs_from_flags_or_the_file() {
        let (c, _) = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(
            (tls.cert.to_str(), tls.key.to_str()),
            (Some("c.pem"), Some("k.pem"))
        );
        assert!(parse(&[]).unwrap().0.tls.is_none());
        let e = parse(&["--tls-cert", "c.pem"]).unwrap_err().to_string();
        assert!(e.contains("--tls-key") && e.contains("neither"), "{e}");

        let dir = std::env::temp_dir().join(format!("whosin-cli-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("whosin.toml");
        std::fs::write(
            &file,
            "tls_cert = \"/etc/f.pem\"\ntls_key = \"/etc/p.pem\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let (c, _) = parse(&["--config", path, "--tls-key", "mine.pem"]).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert.to_str(), Some("/etc/f.pem"));
        assert_eq!(
            tls.key.to_str(),
            Some("mine.pem"),
            "the flag beats the file"
        );
        std::fs::write(&file, "tls_key = \"/etc/p.pem\"\n").unwrap();
        let e = parse(&["--config", path]).unwrap_err().to_string();
        assert!(e.contains("tls_cert"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_file_serves_several_apps_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("whosin-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("whosin.toml");
        std::fs::write(
            &file,
            "port = 7100\n[[apps]]\nid = \"1\"\nkey = \"k1\"\nsecret = \"s1\"\n[[apps]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"s2\"\nmax_presence_members = 9\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let (c, notes) = parse(&["--config", path]).unwrap();
        assert_eq!(c.port, 7100);
        assert_eq!(c.apps.len(), 2);
        assert_eq!(c.apps[1].max_presence_members, 9);
        assert!(!notes.iter().any(|n| n.contains("no app configured")));
        let (c, _) = parse(&["--config", path, "--port", "0"]).unwrap();
        assert_eq!(c.port, 0);
        std::fs::write(&file, "apps = 3").unwrap();
        let e = parse(&["--config", path]).unwrap_err().to_string();
        assert!(e.contains("is invalid"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
