//! whosin desktop: a tray monitor of who is online that joins as a visitor.
//!
//! Modules: [`settings`] (stored, validated), [`state`] (what is shown),
//! [`badge`] (the count drawn into the tray image), [`tray`] (icon and menu),
//! [`embedded`] (the server inside the app), [`controller`] (the presence
//! runtime wiring the client to the UI), [`commands`] (what the page may
//! call). This file is the Tauri shell: events, window and tray behaviour.
//!
//! The window is made and unmade, not hidden: a tray app runs all day and
//! WebKit's web process (about 160 MB) lives exactly as long as the window's
//! webview. Closing the window remembers its place and destroys it; Show makes
//! it again from `tauri.conf.json` where it was, and the page rebuilds itself
//! from the `snapshot` command. The app itself stays in the tray: see
//! [`on_run_event`].

pub mod alerts;
pub mod badge;
pub mod commands;
pub mod controller;
pub mod embedded;
pub mod history;
pub mod settings;
pub mod state;
pub mod tray;

use controller::{Controller, Options, Ui};
use serde_json::Value;
use state::Notice;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tauri::{AppHandle, Emitter, Manager, RunEvent, Runtime, WebviewWindowBuilder, WindowEvent};
use tray::TrayModel;

/// The event the window listens to.
pub const EVENT: &str = "presence";

/// The window's label; its settings (page, title, size) are the entry of this
/// label in `tauri.conf.json`, which Show uses again to make it.
pub const WINDOW: &str = "main";

/// Where the window was when it was last closed, so Show opens it there.
#[derive(Debug, Default)]
struct LastPlace(Mutex<Option<Place>>);

/// A window's place in logical pixels (what a builder takes).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Place {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
}

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
    }
}

/// Shows the window, making it again if it was closed (the tray's Show
/// window, a second start of the app).
fn show_window<R: Runtime>(app: &AppHandle<R>) {
    if let Some(w) = app.get_webview_window(WINDOW) {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
        return;
    }
    if let Err(e) = open_window(app) {
        tracing::warn!("cannot open the window: {e}");
    }
}

/// Makes the window from its entry in `tauri.conf.json`, at the place it
/// was closed at (the first time: where the window system puts it).
fn open_window<R: Runtime>(app: &AppHandle<R>) -> Result<(), String> {
    let config = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == WINDOW)
        .cloned()
        .ok_or_else(|| format!("tauri.conf.json has no window \"{WINDOW}\""))?;
    let mut builder = WebviewWindowBuilder::from_config(app, &config).map_err(|e| e.to_string())?;
    if let Some(p) = last_place(app) {
        builder = builder.position(p.x, p.y).inner_size(p.width, p.height);
    }
    let window = builder.build().map_err(|e| e.to_string())?;
    let _ = window.set_focus();
    Ok(())
}

fn last_place<R: Runtime>(app: &AppHandle<R>) -> Option<Place> {
    let place = app.try_state::<LastPlace>()?;
    let last = *place.0.lock().unwrap_or_else(|e| e.into_inner());
    last
}

/// Remembers where a window about to close is. A window whose size reads as
/// zero (not mapped yet, or a runtime that does not know) leaves the last
/// place as it was.
fn remember_place<R: Runtime>(window: &tauri::Window<R>) {
    let (Ok(position), Ok(size), Ok(scale)) = (
        window.outer_position(),
        window.inner_size(),
        window.scale_factor(),
    ) else {
        return;
    };
    if size.width == 0 || size.height == 0 {
        return;
    }
    let (position, size) = (
        position.to_logical::<f64>(scale),
        size.to_logical::<f64>(scale),
    );
    if let Some(last) = window.try_state::<LastPlace>() {
        *last.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Place {
            x: position.x,
            y: position.y,
            width: size.width,
            height: size.height,
        });
    }
}

/// The app's run loop events: when its last window closes the app stays in
/// the tray. An exit the app asks for itself (Quit, which has an exit code)
/// goes ahead; one that comes from the last window closing (no code) is
/// refused.
pub fn on_run_event<R: Runtime>(_app: &AppHandle<R>, event: RunEvent) {
    if let RunEvent::ExitRequested {
        code: None, api, ..
    } = event
    {
        api.prevent_exit();
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
        "show" => show_window(app),
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

/// Adds the commands and window behaviour to a builder (the real one in
/// [`run`], the mock runtime's in tests).
pub fn configure<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder
        .invoke_handler(commands::handler())
        .manage(LastPlace::default())
        .on_window_event(|window, event| {
            // Closing the window releases it (and its web process); the app
            // lives on in the tray.
            if let WindowEvent::CloseRequested { .. } = event {
                if window.label() == WINDOW {
                    remember_place(window);
                }
            }
        })
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

/// Turns off WebKit's monitor of the system's memory, unless the user set
/// `WEBKIT_DISABLE_MEMORY_PRESSURE_MONITOR` (`=0` keeps it): a thread of this
/// process that reads the system's memory every 5 s for the life of the app,
/// window or not, and the last timer left while the window is closed
/// (docs/benchmarks.md). The cost: WebKit no longer tells the page's process
/// when the system runs short of memory, and the page is small (a list and
/// a chart).
#[cfg(target_os = "linux")]
fn no_webkit_memory_monitor() {
    const MONITOR: &str = "WEBKIT_DISABLE_MEMORY_PRESSURE_MONITOR";
    if std::env::var_os(MONITOR).is_none() {
        // Before any thread starts: nothing reads the environment yet.
        std::env::set_var(MONITOR, "1");
    }
}

/// Runs the desktop app.
pub fn run() {
    #[cfg(target_os = "linux")]
    no_webkit_memory_monitor();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHOSIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let app = configure(tauri::Builder::default())
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            show_window(app)
        }))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .setup(|app| {
            setup(app.handle(), true).map_err(|e| -> Box<dyn std::error::Error> { e.into() })?;
            Ok(())
        })
        .build(tauri::generate_context!());
    match app {
        Ok(app) => app.run(on_run_event),
        Err(e) => {
            eprintln!("error: whosin could not start: {e}");
            std::process::exit(1);
        }
    }
}
