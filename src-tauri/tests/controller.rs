//! The presence runtime without Tauri: a recording UI, the real embedded
//! server, real visitors. Notifications and start-at-login are opt-in.

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use whosin_client::{Client, Endpoint, LocalSigner, UserData};
use whosin_desktop::controller::{Controller, Options, Ui};
use whosin_desktop::settings::Editable;
use whosin_desktop::state::Notice;
use whosin_desktop::tray::TrayModel;

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Value>>,
    notices: Mutex<Vec<Notice>>,
    autostart: Mutex<Vec<bool>>,
    refuse_autostart: Mutex<bool>,
    alerts: Mutex<Vec<String>>,
}

impl Ui for Recorder {
    fn emit(&self, payload: &Value) {
        self.events.lock().unwrap().push(payload.clone());
    }
    fn tray(&self, _model: &TrayModel) {}
    fn notify(&self, notice: &Notice) {
        self.notices.lock().unwrap().push(notice.clone());
    }
    fn alert(&self, text: &str) {
        self.alerts.lock().unwrap().push(text.to_owned());
    }
    fn set_autostart(&self, on: bool) -> Result<(), String> {
        if *self.refuse_autostart.lock().unwrap() {
            return Err("no autostart directory".into());
        }
        self.autostart.lock().unwrap().push(on);
        Ok(())
    }
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn visitor(port: u16, secret: &str, id: &str, name: &str) -> Client {
    let signer =
        LocalSigner::new("whosin", secret).with_user(UserData::new(id, json!({"name": name})));
    let (c, _events) =
        Client::builder(Endpoint::parse(&format!("ws://127.0.0.1:{port}"), "whosin").unwrap())
            .authorizer(signer)
            .connect();
    c.subscribe("presence-whosin");
    c
}

/// Options for a controller of its own: a fresh settings and data folder,
/// a free port for the embedded server, no IP lookup.
fn fresh_options(name: &str) -> Options {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Options {
        config_dir: dir.clone(),
        data_dir: dir,
        embedded_port: port,
        ip_lookup: vec![],
        rest_interval: Duration::from_millis(100),
    }
}

/// A started controller of its own ([`fresh_options`]) with a recording
/// UI: the controller, the recorder, its folder and embedded port.
async fn started(name: &str) -> (Arc<Controller>, Arc<Recorder>, std::path::PathBuf, u16) {
    let options = fresh_options(name);
    let (dir, port) = (options.config_dir.clone(), options.embedded_port);
    let ui = Arc::new(Recorder::default());
    let c = Controller::new(ui.clone(), options).unwrap();
    c.start().await;
    (c, ui, dir, port)
}

/// The embedded server's secret, as the settings file in `dir` holds it.
fn embedded_secret(dir: &std::path::Path) -> String {
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
    s["embedded_secret"].as_str().unwrap().to_owned()
}

fn edit(c: &Controller, f: impl FnOnce(&mut Editable)) -> Editable {
    let mut e = c.settings();
    f(&mut e);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_and_autostart_are_opt_in() {
    let (c, ui, dir, port) = started("whosin-controller").await;
    until("online alone", || {
        c.snapshot()["count"] == 1 && c.snapshot()["state"]["state"] == "connected"
    })
    .await;
    let secret = embedded_secret(&dir);
    assert!(!c.settings().notifications, "off by default");
    assert!(!c.settings().autostart, "off by default");

    // Off: a visitor comes and goes without a notification.
    let v1 = visitor(port, &secret, "v1", "Vera");
    until("Vera in", || c.snapshot()["count"] == 2).await;
    v1.close();
    until("Vera out", || c.snapshot()["count"] == 1).await;
    assert!(ui.notices.lock().unwrap().is_empty());

    // On: arrivals and departures of others are notified, one each.
    c.save_settings(edit(&c, |e| e.notifications = true))
        .await
        .unwrap();
    until("online again", || {
        c.snapshot()["state"]["state"] == "connected" && c.snapshot()["count"] == 1
    })
    .await;
    let v2 = visitor(port, &secret, "v2", "Walt");
    until("Walt in", || c.snapshot()["count"] == 2).await;
    v2.close();
    until("Walt out", || c.snapshot()["count"] == 1).await;
    // The count moves before the notice is handed to the UI: wait for it.
    until("Walt's notices", || ui.notices.lock().unwrap().len() == 2).await;
    assert_eq!(
        *ui.notices.lock().unwrap(),
        vec![Notice::Joined("Walt".into()), Notice::Left("Walt".into())]
    );

    // Start at login: switched only when it changes; a failure is reported and nothing is saved.
    c.save_settings(edit(&c, |e| e.autostart = true))
        .await
        .unwrap();
    c.save_settings(edit(&c, |e| e.name = "Still Me".into()))
        .await
        .unwrap();
    assert_eq!(*ui.autostart.lock().unwrap(), vec![true]);
    *ui.refuse_autostart.lock().unwrap() = true;
    let err = c
        .save_settings(edit(&c, |e| e.autostart = false))
        .await
        .unwrap_err();
    assert!(err.contains("start at login"), "{err}");
    assert!(c.settings().autostart, "unchanged after the failure");
    c.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every count change lands in the history database; the chart's points
/// and today's peak come from it (also after a restart); an alert at 3
/// fires once when the count reaches it, not again while it stays there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_kept_and_alerts_fire_on_crossings() {
    let dir = std::env::temp_dir().join(format!("whosin-history-ctl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = Options {
        config_dir: dir.clone(),
        data_dir: dir.join("data"),
        embedded_port: port,
        ip_lookup: vec![],
        rest_interval: Duration::from_millis(100),
    };
    let ui = Arc::new(Recorder::default());
    let c = Controller::new(ui.clone(), options.clone()).unwrap();
    c.start().await;
    until("online alone", || {
        c.snapshot()["count"] == 1 && c.snapshot()["state"]["state"] == "connected"
    })
    .await;
    c.save_settings(edit(&c, |e| e.alert_at = Some(3)))
        .await
        .unwrap();
    until("online again", || {
        c.snapshot()["state"]["state"] == "connected" && c.snapshot()["count"] == 1
    })
    .await;
    let secret = embedded_secret(&dir);
    let v1 = visitor(port, &secret, "v1", "Vera");
    let v2 = visitor(port, &secret, "v2", "Walt");
    until("three", || c.snapshot()["count"] == 3).await;
    until("the alert", || ui.alerts.lock().unwrap().len() == 1).await;
    assert_eq!(
        ui.alerts.lock().unwrap()[0],
        "This computer: 3 online (your alert is at 3)"
    );
    v2.close();
    until("two", || c.snapshot()["count"] == 2).await;
    until("the history has the 2", || {
        c.history()["points"]
            .as_array()
            .is_some_and(|p| p.last().is_some_and(|p| p["last"] == 2))
    })
    .await;
    let h = c.history();
    assert_eq!(h["peak"]["value"], 3, "{h}");
    assert!(
        h["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peak"] == 3),
        "{h}"
    );
    assert!(
        c.tray_model().tooltip.contains("peak 3 today"),
        "{:?}",
        c.tray_model()
    );
    assert_eq!(
        ui.alerts.lock().unwrap().len(),
        1,
        "one alert for one crossing"
    );
    v1.close();
    c.shutdown().await;
    drop(c);
    // A restart reads the same history back.
    let c = Controller::new(Arc::new(Recorder::default()), options).unwrap();
    assert_eq!(c.history()["peak"]["value"], 3);
    assert!(dir.join("data").join("history.sqlite3").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two sites (the embedded default and another channel on the same server):
/// both joined, each with its count in `sites` and the tray's menu, the
/// tray's icon the total (or one chosen site), a visitor seen on the site
/// in the background, the window switching sites, removal back to one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sites_are_watched_at_once() {
    let (c, ui, dir, port) = started("whosin-sites-ctl").await;
    until("online alone", || {
        c.snapshot()["count"] == 1 && c.snapshot()["state"]["state"] == "connected"
    })
    .await;
    assert_eq!(c.sites()["sites"].as_array().unwrap().len(), 1);
    let one_site_menu = c.tray_model().menu;
    assert_eq!(one_site_menu[0], "1 online");

    c.add_site(
        serde_json::from_value(json!({"name": "Blog", "channel": "presence-blog"})).unwrap(),
    )
    .await
    .unwrap();
    let count_of = |i: usize| c.sites()["sites"][i]["count"].clone();
    until("both sites live", || count_of(0) == 1 && count_of(1) == 1).await;
    let secret = embedded_secret(&dir);
    let signer = LocalSigner::new("whosin", &secret)
        .with_user(UserData::new("reader", json!({"name": "Reader"})));
    let (reader, _events) =
        Client::builder(Endpoint::parse(&format!("ws://127.0.0.1:{port}"), "whosin").unwrap())
            .authorizer(signer)
            .connect();
    reader.subscribe("presence-blog");
    until("the reader on the blog", || count_of(1) == 2).await;
    until("the tray's total", || c.tray_model().count == Some(3)).await;
    let menu = c.tray_model().menu;
    assert!(
        menu.contains(&"This computer: 1 online".to_owned()),
        "{menu:?}"
    );
    assert!(menu.contains(&"Blog: 2 online".to_owned()), "{menu:?}");
    assert!(
        ui.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "sites"),
        "the window hears of the sites"
    );

    // The tray counts one chosen site.
    c.set_tray_site(Some("default".into())).unwrap();
    assert_eq!(c.tray_model().count, Some(1));
    c.set_tray_site(None).unwrap();

    // The window shows the blog: its roster, its history.
    c.select_site("site-1").await.unwrap();
    until("the blog shown", || {
        c.snapshot()["count"] == 2 && c.snapshot()["state"]["state"] == "connected"
    })
    .await;
    assert_eq!(c.sites()["sites"][1]["shown"], true);
    until("the blog's history", || c.history()["peak"]["value"] == 2).await;

    // Back to one site: the tray as before.
    c.remove_site("site-1").await.unwrap();
    until("one site again", || {
        c.sites()["sites"].as_array().unwrap().len() == 1 && c.snapshot()["count"] == 1
    })
    .await;
    assert_eq!(c.tray_model().menu[0], "1 online");
    assert!(!c.tray_model().menu.iter().any(|l| l.starts_with("Blog")));
    assert!(c
        .remove_site("default")
        .await
        .unwrap_err()
        .contains("last site"));
    reader.close();
    c.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// "Watch without being counted": on this computer's server (signed with
/// its secret) and on a remote whosin server (with its owner token), the
/// app sees everyone and is not one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_can_be_watched_without_being_counted() {
    let (c, _, dir, port) = started("whosin-watch-ctl").await;
    until("online alone", || c.snapshot()["count"] == 1).await;
    c.save_settings(edit(&c, |e| e.watch = true)).await.unwrap();
    until("watching: nobody here", || {
        c.snapshot()["state"]["state"] == "connected" && c.snapshot()["count"] == 0
    })
    .await;
    let secret = embedded_secret(&dir);
    let v = visitor(port, &secret, "v1", "Vera");
    until("Vera seen, the app not counted", || {
        c.snapshot()["count"] == 1
    })
    .await;
    assert_eq!(c.snapshot()["members"][0]["id"], "v1");
    v.close();

    // A remote whosin server with an owner token.
    let mut app = whosin_server::AppConfig::new("shop", "shop-key", "shop-secret");
    app.observer_token = Some("owner-token-7".into());
    let remote = whosin_server::start(whosin_server::ServerConfig::single(app, 0))
        .await
        .unwrap();
    let rport = remote.local_addr().port();
    c.add_site(
        serde_json::from_value(json!({
            "name": "Shop",
            "watch": true,
            "remote": {
                "url": format!("ws://127.0.0.1:{rport}"),
                "key": "shop-key",
                "auth_endpoint": format!("http://127.0.0.1:{rport}/pusher/auth"),
            },
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    // Without the owner token the server signs an ordinary visitor (the
    // app is counted): give it the token.
    c.select_site("site-1").await.unwrap();
    let mut e = c.settings();
    e.remote.as_mut().unwrap().observer_token = Some("owner-token-7".into());
    c.save_settings(e).await.unwrap();
    until("watching the shop", || {
        c.snapshot()["state"]["state"] == "connected" && c.snapshot()["count"] == 0
    })
    .await;
    let shopper = shopper(rport, "s1");
    until("the shopper seen", || c.snapshot()["count"] == 1).await;
    assert_eq!(
        remote.shared().apps[0].users("presence-whosin"),
        Some(vec!["s1".to_owned()]),
        "the server counts the shopper only"
    );
    // The server's count history, as the app reads it to fill the time it
    // was not running (the unsigned page copy of the signed REST path).
    let ep = Endpoint::parse(&format!("ws://127.0.0.1:{rport}"), "shop-key").unwrap();
    let points = whosin_desktop::history::server_history(&ep, "presence-whosin")
        .await
        .expect("a whosin server has a history");
    assert!(points.iter().any(|p| p.peak >= 1), "{points:?}");
    assert!(
        whosin_desktop::history::server_history(&ep, "presence-nobody-signs")
            .await
            .is_none(),
        "a channel the server does not sign has no public history"
    );
    shopper.close();
    c.shutdown().await;
    remote.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A shopper on `port`'s `shop-key` app, in `presence-whosin`.
fn shopper(port: u16, id: &str) -> Client {
    let signer = LocalSigner::new("shop-key", "shop-secret")
        .with_user(UserData::new(id, json!({"name": id})));
    let (cl, _e) =
        Client::builder(Endpoint::parse(&format!("ws://127.0.0.1:{port}"), "shop-key").unwrap())
            .authorizer(signer)
            .connect();
    cl.subscribe("presence-whosin");
    cl
}

/// On a server that has no observers for the app (here a whosin server
/// without an owner token, as hosted Pusher, Soketi or Sockudo would be), a
/// site set to watch with the app's id and secret is watched through the
/// REST API: no auth endpoint needed, the app sees who is there, and the
/// server does not count it.
#[tokio::test]
async fn a_site_can_be_watched_through_the_rest_api() {
    let (c, ui, dir, _) = started("whosin-rest-ctl").await;
    until("online alone", || c.snapshot()["count"] == 1).await;
    let remote = whosin_server::start(whosin_server::ServerConfig::single(
        whosin_server::AppConfig::new("shop", "shop-key", "shop-secret"),
        0,
    ))
    .await
    .unwrap();
    let rport = remote.local_addr().port();
    let site = |secret: &str| {
        serde_json::from_value(json!({
            "name": "Shop",
            "watch": true,
            "remote": {"url": format!("ws://127.0.0.1:{rport}"), "key": "shop-key", "app_id": "shop", "secret": secret},
        }))
        .unwrap()
    };
    // Only one of the id and the secret: said what to give.
    let half: whosin_desktop::settings::NewSite = serde_json::from_value(json!({
        "name": "Half", "watch": true,
        "remote": {"url": format!("ws://127.0.0.1:{rport}"), "key": "shop-key", "app_id": "shop"},
    }))
    .unwrap();
    let e = c.add_site(half).await.unwrap_err();
    assert!(e.contains("both the app id and the app secret"), "{e}");

    // A wrong secret: the server refuses, the window says why, and the app
    // stops asking.
    c.add_site(site("wrong-secret")).await.unwrap();
    c.select_site("site-1").await.unwrap();
    until("refused, and said so", || {
        let s = c.snapshot();
        s["state"]["state"] == "disconnected"
            && s["state"]["reason"].as_str().is_some_and(|r| {
                r.contains("HTTP 401") && r.contains("check the app id and secret")
            })
    })
    .await;

    // The right one.
    let mut e = c.settings();
    e.remote.as_mut().unwrap().secret = Some("shop-secret".into());
    c.save_settings(e).await.unwrap();
    until("watching the shop: nobody there", || {
        c.snapshot()["state"]["state"] == "connected" && c.snapshot()["count"] == 0
    })
    .await;
    let first = shopper(rport, "s1");
    let second = shopper(rport, "s2");
    until("both shoppers seen", || c.snapshot()["count"] == 2).await;
    let ids: Vec<Value> = c.snapshot()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!("s1"), json!("s2")]);
    assert_eq!(
        remote.shared().apps[0].users("presence-whosin"),
        Some(vec!["s1".to_owned(), "s2".to_owned()]),
        "the server counts the shoppers only"
    );
    first.close();
    until("the first shopper gone", || c.snapshot()["count"] == 1).await;
    assert_eq!(c.snapshot()["members"][0]["id"], "s2");
    // The window heard it as a leave, as from a WebSocket.
    until("a member_removed event for s1", || {
        ui.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "member_removed" && e.to_string().contains("\"s1\""))
    })
    .await;
    // In the sites list and the tray like any site.
    let sites = c.sites();
    let shop = sites["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "site-1")
        .cloned()
        .unwrap();
    assert_eq!(shop["count"], 1, "{sites}");
    second.close();
    c.shutdown().await;
    remote.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
