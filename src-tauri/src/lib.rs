//! whosin desktop: a tray monitor of who is online that joins as a visitor.
//!
//! Modules: [`settings`] (stored, validated), [`state`] (what is shown),
//! [`badge`] (the count drawn into the tray image), [`tray`] (icon and menu),
//! [`embedded`] (the server inside the app), [`controller`] (the presence
//! runtime wiring the client to the UI), [`commands`] (what the page may
//! call). This file is the Tauri shell: events, window and tray behaviour.
//!
//! The app is two processes of this one program. The core (`--core`, see
//! [`core`]) runs all day: tray, controller, embedded server, and no web
//! page. The window (no arguments, see [`window`]) is made on Show and ends
//! when the window closes, taking WebKit (about 200 MB with its web and
//! network processes, and the GL stack) with it. A start at login
//! (`--hidden`) starts only the core. [`link`] is what they say to each
//! other.

pub mod alerts;
pub mod badge;
pub mod commands;
pub mod controller;
pub mod core;
pub mod embedded;
pub mod history;
pub mod link;
pub mod settings;
pub mod state;
pub mod theme;
pub mod tray;
pub mod window;

use controller::{Controller, Options, Ui};
use serde_json::Value;
use state::Notice;
use std::path::PathBuf;
use std::sync::Arc;
use tauri::{AppHandle, Emitter, Listener, Manager, RunEvent, Runtime};
use tray::TrayModel;

/// The event the window listens to.
pub const EVENT: &str = "presence";

/// The window's label; its settings (page, title, size) are the entry of this
/// label in `tauri.conf.json`, which Show uses again to make it.
pub const WINDOW: &str = "main";

/// Sends the controller's news to the window and the tray of a Tauri app.
struct TauriUi<R: Runtime> {
    app: AppHandle<R>,
}

impl<R: Runtime> Ui for TauriUi<R> {
    fn emit(&self, payload: &Value) {
        if let Err(e) = self.app.emit(EVENT, payload) {
            tracing::warn!(error = %e, "could not send an event to the window");
        }
    }

    fn tray(&self, model: &TrayModel) {
        tray::update(&self.app, model);
    }

    fn notify(&self, notice: &Notice) {
        use tauri_plugin_notification::NotificationExt;
        let body = match notice {
            Notice::Joined(name) => format!("{name} joined"),
            Notice::Left(name) => format!("{name} left"),
        };
        if let Err(e) = self
            .app
            .notification()
            .builder()
            .title("whosin")
            .body(body)
            .show()
        {
            tracing::debug!(error = %e, "could not show a notification");
        }
    }

    fn alert(&self, text: &str) {
        use tauri_plugin_notification::NotificationExt;
        if let Err(e) = self
            .app
            .notification()
            .builder()
            .title("whosin")
            .body(text)
            .show()
        {
            tracing::debug!(error = %e, "could not show an alert");
        }
    }

    fn set_autostart(&self, on: bool) -> Result<(), String> {
        use tauri_plugin_autostart::ManagerExt;
        let launcher = self.app.autolaunch();
        let result = if on {
            launcher.enable()
        } else {
            launcher.disable()
        };
        result.map_err(|e| e.to_string())
    }
}

/// Startup options: `WHOSIN_CONFIG_DIR`, `WHOSIN_DATA_DIR`, `WHOSIN_DESKTOP_PORT`,
/// `WHOSIN_IP_LOOKUP` (comma list, or `none`) override the defaults.
fn options<R: Runtime>(app: &AppHandle<R>) -> Options {
    let config_dir = std::env::var_os("WHOSIN_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| app.path().app_config_dir().ok())
        .unwrap_or_else(|| std::env::temp_dir().join("whosin"));
    let embedded_port = std::env::var("WHOSIN_DESKTOP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(6001);
    // A comma-separated list; `none` turns the lookup off, unset means the
    // defaults (the same rule as `whosin join --ip-lookup`).
    let given: Vec<String> = std::env::var("WHOSIN_IP_LOOKUP")
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let ip_lookup = whosin_client::visitor::ip_lookup_endpoints(&given);
    // A given config dir (tests, portable setups) also holds the data,
    // unless WHOSIN_DATA_DIR says otherwise.
    let data_dir = std::env::var_os("WHOSIN_DATA_DIR")
        .or_else(|| std::env::var_os("WHOSIN_CONFIG_DIR"))
        .map(PathBuf::from)
        .or_else(|| app.path().app_data_dir().ok())
        .unwrap_or_else(|| config_dir.clone());
    Options {
        config_dir,
        data_dir,
        embedded_port,
        ip_lookup,
        rest_interval: whosin_client::rest::DEFAULT_INTERVAL,
    }
}

/// The core's run loop events: it stays in the tray until Quit (an exit
/// with a code; one with none would come from a last window closing, and
/// the core has none), and leaves no socket behind.
pub fn on_run_event<R: Runtime>(app: &AppHandle<R>, event: RunEvent) {
    match event {
        RunEvent::ExitRequested {
            code: None, api, ..
        } => api.prevent_exit(),
        RunEvent::Exit => {
            if let Some(w) = app.try_state::<Arc<core::Windows>>() {
                w.remove_socket();
            }
        }
        _ => {}
    }
}

/// The tray menu's actions.
pub(crate) fn on_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    let Some(c) = app
        .try_state::<Arc<Controller>>()
        .map(|s| s.inner().clone())
    else {
        return;
    };
    match id {
        "show" => {
            if let Some(w) = app.try_state::<Arc<core::Windows>>() {
                w.show();
            }
        }
        "join" => {
            let joined = c.tray_model().joined;
            tauri::async_runtime::spawn(async move {
                if let Err(e) = c.set_joined(!joined).await {
                    tracing::warn!("{e}");
                }
            });
        }
        "quit" => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                c.shutdown().await;
                app.exit(0);
            });
        }
        _ => {}
    }
}

/// Adds the commands to a builder (the core's in [`run`], the mock runtime's
/// in tests, where the page's webview is in the same process as the
/// controller).
pub fn configure<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder.invoke_handler(commands::handler())
}

/// Sets up the controller and the tray for an app.
pub fn setup<R: Runtime>(app: &AppHandle<R>, with_tray: bool) -> Result<Arc<Controller>, String> {
    let ui: Arc<dyn Ui> = Arc::new(TauriUi { app: app.clone() });
    let controller = Controller::new(ui, options(app))?;
    app.manage(controller.clone());
    if with_tray {
        tray::create(app, &controller.tray_model())
            .map_err(|e| format!("cannot create the tray icon: {e}"))?;
    }
    let c = controller.clone();
    tauri::async_runtime::spawn(async move { c.start().await });
    Ok(controller)
}

/// Sets an environment variable for this process unless the user set it,
/// saying whether it did. Only before any thread starts: nothing reads the
/// environment yet.
fn default_env(name: &str, value: &str) -> bool {
    if std::env::var_os(name).is_some() {
        return false;
    }
    std::env::set_var(name, value);
    true
}

/// Runs the desktop app: the core with `--core`, only makes sure the core
/// runs with `--hidden` (a start at login), else the window. Other
/// arguments (WebDriver adds its own) are ignored.
pub fn run() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHOSIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let result = if has("--core") {
        run_core()
    } else {
        run_window(!has("--hidden"))
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The window process (or, with `window: false`, a start that only makes
/// sure the core runs).
fn run_window(window: bool) -> Result<(), String> {
    let socket = link::socket_path_from_env();
    match window::reach_core(&socket, window)? {
        Some(window::Hello::Open {
            link,
            reader,
            place,
        }) => window::run(link, reader, place),
        // A window is shown already (now in front), or none was asked for.
        Some(window::Hello::Shown) | None => Ok(()),
    }
}

/// The core: tray, controller, embedded server, the window's socket.
fn run_core() -> Result<(), String> {
    // The core never draws: GTK need not look for OpenGL when it opens the
    // display (which loads Mesa and LLVM, 30 MB for the life of the app),
    // and there is nothing for a screen reader to read (the tray's menu is
    // drawn, and read, by the desktop's tray host).
    // Windows it starts must not inherit these: theirs draw, and are read.
    let not_for_windows: Vec<&'static str> = [("GDK_GL", "disable"), ("NO_AT_BRIDGE", "1")]
        .into_iter()
        .filter(|(name, value)| default_env(name, value))
        .map(|(name, _)| name)
        .collect();
    let socket = link::socket_path_from_env();
    // One core per socket: a second one (two starts at the same moment)
    // leaves at once, and the window process that started it finds the
    // first on the socket.
    let Some((listener, claim)) = core::listen(&socket)? else {
        eprintln!(
            "whosin is already running (it answers at {})",
            socket.display()
        );
        return Ok(());
    };
    let app = configure(tauri::Builder::default())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec!["--hidden"]),
        ))
        .setup(move |app| {
            // An error returned here would panic in Tauri: say it and leave.
            let controller = match setup(app.handle(), true) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: whosin could not start: {e}");
                    std::process::exit(1);
                }
            };
            let windows = core::Windows::new(
                &options(app.handle()).config_dir,
                socket.clone(),
                Some(claim),
                not_for_windows.clone(),
            );
            app.manage(windows.clone());
            let events = windows.clone();
            app.listen_any(EVENT, move |e| events.event(e.payload()));
            tauri::async_runtime::spawn(core::serve(
                app.handle().clone(),
                controller,
                windows,
                listener,
            ));
            Ok(())
        })
        .build(tauri::generate_context!())
        .map_err(|e| format!("whosin could not start: {e}"))?;
    app.run(on_run_event);
    Ok(())
}
