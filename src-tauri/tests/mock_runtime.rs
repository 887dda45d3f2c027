//! The desktop app's commands and events on Tauri's mock runtime: no display,
//! but the real controller, the real embedded server and a real visitor.

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{Listener, WebviewWindow};
use whosin_client::{Client, Endpoint, LocalSigner, UserData};

fn call(
    w: &WebviewWindow<tauri::test::MockRuntime>,
    cmd: &str,
    body: Value,
) -> Result<Value, Value> {
    get_ipc_response(
        w,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            // On Linux the IPC origin must be tauri://localhost to count as local.
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::Json(body),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|b| b.deserialize::<Value>().unwrap())
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn commands_and_events_without_a_display() {
    let dir = std::env::temp_dir().join(format!("whosin-desktop-mock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // This file holds one test, so setting the process environment is safe.
    std::env::set_var("WHOSIN_CONFIG_DIR", &dir);
    std::env::set_var("WHOSIN_DESKTOP_PORT", port.to_string());
    std::env::set_var("WHOSIN_IP_LOOKUP", "none");

    let app = whosin_desktop::configure(mock_builder())
        .build(mock_context(noop_assets()))
        .unwrap();
    let events: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = events.clone();
    app.listen_any(whosin_desktop::EVENT, move |e| {
        sink.lock()
            .unwrap()
            .push(serde_json::from_str(e.payload()).unwrap());
    });
    whosin_desktop::setup(app.handle(), false).unwrap();
    let w = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .unwrap();

    // It joins its own embedded server as the only visitor.
    wait_until("the app online with 1 visitor", || {
        let s = call(&w, "snapshot", json!({})).unwrap();
        s["state"]["state"] == "connected" && s["count"] == 1
    });
    let snap = call(&w, "snapshot", json!({})).unwrap();
    assert_eq!(
        snap["address"],
        format!("Others on this computer can join at http://127.0.0.1:{port}/")
    );
    let me = snap["me"].clone();
    assert_eq!(me["info"]["ip"], "127.0.0.1");
    let tray = call(&w, "tray_state", json!({})).unwrap();
    assert_eq!(tray["icon_text"], "1");
    assert_eq!(tray["title"], "1 online");

    // Another visitor arrives through the embedded server.
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
    assert_eq!(
        settings["visitor_id"], me["id"],
        "the visitor id is made once and stored"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let visitor: Client = rt.block_on(async {
        let signer =
            LocalSigner::new("whosin", settings["embedded_secret"].as_str().unwrap()).with_user(
                UserData::new("guest", json!({"name": "Guest Visitor", "ip": "127.0.0.1"})),
            );
        let (c, _events) =
            Client::builder(Endpoint::parse(&format!("ws://127.0.0.1:{port}"), "whosin").unwrap())
                .authorizer(signer)
                .connect();
        c.subscribe("presence-whosin");
        c
    });
    wait_until("2 in the tray", || {
        call(&w, "tray_state", json!({})).unwrap()["icon_text"] == "2"
    });
    let tray = call(&w, "tray_state", json!({})).unwrap();
    assert!(
        tray["menu"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "Guest Visitor"),
        "{tray}"
    );
    wait_until("a member_added event", || {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "member_added" && e["member"]["id"] == "guest")
    });
    // Every event is numbered, in order.
    let seqs: Vec<u64> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");

    // Invalid settings are refused with a reason and change nothing.
    let bad = json!({"settings": {"name": "Ada", "remote": {"url": "not a url", "key": "k", "auth_endpoint": "https://x/auth"}}});
    let err = call(&w, "save_settings", bad).unwrap_err();
    assert!(err.as_str().unwrap().starts_with("server:"), "{err}");
    assert_eq!(
        call(&w, "get_settings", json!({})).unwrap()["remote"],
        Value::Null
    );
    assert_eq!(call(&w, "snapshot", json!({})).unwrap()["count"], 2);

    // Leave: the app stays, the tray says so; join again: back to 2.
    let left = call(&w, "set_joined", json!({"joined": false})).unwrap();
    assert_eq!(left["joined"], false);
    assert_eq!(
        call(&w, "tray_state", json!({})).unwrap()["title"],
        "Not joined"
    );
    // The window was told: a refresh that says "not joined" (the startup
    // refresh said joined, so this one is the leave's).
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "refresh" && e["snapshot"]["joined"] == false));
    call(&w, "set_joined", json!({"joined": true})).unwrap();
    wait_until("2 again after joining", || {
        call(&w, "tray_state", json!({})).unwrap()["icon_text"] == "2"
    });

    // A valid rename takes effect without a restart.
    let renamed = json!({"settings": {"name": "Renamed Person", "channel": null, "remote": null, "notifications": false}});
    call(&w, "save_settings", renamed).unwrap();
    wait_until("the new name in the list", || {
        let s = call(&w, "snapshot", json!({})).unwrap();
        s["me"]["info"]["name"] == "Renamed Person" && s["count"] == 2
    });

    // The visitor leaves: 1.
    visitor.close();
    wait_until("1 after the visitor left", || {
        call(&w, "tray_state", json!({})).unwrap()["icon_text"] == "1"
    });

    // Remote mode: another Pusher-protocol server with its auth endpoint; no secret needed.
    let remote = rt.block_on(async {
        let app = whosin_server::AppConfig::new("r1", "remote-key", "remote-secret");
        whosin_server::start(whosin_server::ServerConfig::single(app, 0))
            .await
            .unwrap()
    });
    let rport = remote.local_addr().port();
    let settings = json!({"settings": {"name": "Remote Ada", "channel": null, "notifications": false, "remote": {
        "url": format!("ws://127.0.0.1:{rport}"), "key": "remote-key",
        "auth_endpoint": format!("http://127.0.0.1:{rport}/pusher/auth")}}});
    call(&w, "save_settings", settings).unwrap();
    wait_until("joined the remote server", || {
        let s = call(&w, "snapshot", json!({})).unwrap();
        s["state"]["state"] == "connected"
            && s["me"]["info"]["name"] == "Remote Ada"
            && s["count"] == 1
    });
    let snap = call(&w, "snapshot", json!({})).unwrap();
    assert_eq!(
        snap["me"]["info"]["ip"], "127.0.0.1",
        "the remote auth endpoint recorded the IP"
    );
    assert_eq!(
        snap["address"],
        Value::Null,
        "no embedded address in remote mode"
    );
    assert_eq!(
        remote.shared().apps[0].users("presence-whosin").unwrap(),
        vec![me["id"].as_str().unwrap().to_owned()]
    );
    wait_until("the embedded server stopped", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
    let stored = std::fs::read_to_string(dir.join("settings.json")).unwrap();
    assert!(
        !stored.contains("remote-secret"),
        "no remote secret is stored"
    );

    // And back to the embedded default.
    call(&w, "save_settings", json!({"settings": {"name": "Home Again", "channel": null, "remote": null, "notifications": false}})).unwrap();
    wait_until("back on the embedded server", || {
        let s = call(&w, "snapshot", json!({})).unwrap();
        s["state"]["state"] == "connected" && s["me"]["info"]["name"] == "Home Again"
    });
    wait_until("gone from the remote server", || {
        remote.shared().apps[0].users("presence-whosin").is_none()
    });
    let seqs: Vec<u64> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
