//! The window process: the app's window, for as long as it is shown.
//!
//! Starting the app starts this process. It finds the core on its socket
//! ([`crate::link`]), starting it first when nothing answers, and says
//! hello: if a window is already shown the core brings it to the front and
//! this process exits; otherwise it makes the window where the last one
//! was. The page's commands go to the core and come back answered; the
//! core's events come to the page. Closing the window tells the core where
//! it was and ends the process, and with it WebKit and all it loaded; the
//! core stays in the tray.

use crate::commands;
use crate::link::{self, Place, ToCore, ToWindow};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tauri::ipc::{Invoke, InvokeError};
use tauri::{AppHandle, Emitter, Manager, Runtime, WebviewWindowBuilder, WindowEvent};
use tokio::sync::oneshot;

/// How long a core that was just started has to answer.
const CORE_START: Duration = Duration::from_secs(20);

/// The window process's end of the socket: calls out, answers back.
#[derive(Debug)]
pub struct Link {
    write: Mutex<UnixStream>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>,
}

impl Link {
    fn send(&self, message: &ToCore) -> std::io::Result<()> {
        let line = link::encode(message);
        let mut w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        w.write_all(line.as_bytes())
    }

    /// Runs a page command in the core.
    pub async fn call(&self, name: String, args: Value) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, tx);
        if let Err(e) = self.send(&ToCore::Call { id, name, args }) {
            self.pending().remove(&id);
            return Err(format!("the app's core is gone ({e}); start whosin again"));
        }
        rx.await
            .unwrap_or_else(|_| Err("the app's core is gone; start whosin again".into()))
    }

    fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Result<Value, String>>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the core where the window is as it closes. Written at once: the
    /// process ends right after.
    fn place(&self, place: Place) {
        let _ = self.send(&ToCore::Place { place });
    }
}

/// What the core said to this window process's hello.
#[derive(Debug)]
pub enum Hello {
    /// Make the window (at the place, if there is one).
    Open {
        link: Arc<Link>,
        reader: BufReader<UnixStream>,
        place: Option<Place>,
    },
    /// A window is shown already and came to the front.
    Shown,
}

/// Finds the core at `socket`, starting it (this program with `--core`)
/// when nothing answers, and says hello. With `hello: false` (a start at
/// login) it only makes sure the core runs. A core of another version (the
/// package was upgraded while it ran) makes way, and this starts the new one.
pub fn reach_core(socket: &Path, hello: bool) -> Result<Option<Hello>, String> {
    for _ in 0..2 {
        let stream = match UnixStream::connect(socket) {
            Ok(s) => s,
            Err(_) => start_core(socket)?,
        };
        if !hello {
            return Ok(None);
        }
        let write = stream
            .try_clone()
            .map_err(|e| format!("cannot use the app's socket: {e}"))?;
        let link = Arc::new(Link {
            write: Mutex::new(write),
            next_id: AtomicU64::new(1),
            pending: Mutex::default(),
        });
        link.send(&ToCore::Hello {
            pid: std::process::id(),
            version: link::VERSION.into(),
        })
        .map_err(|e| format!("cannot reach the app's core: {e}; start whosin again"))?;
        let mut reader = BufReader::new(stream);
        let answer = read_message(&mut reader)?
            .ok_or("the app's core closed the connection; start whosin again")?;
        match answer {
            ToWindow::Open { place } => {
                return Ok(Some(Hello::Open {
                    link,
                    reader,
                    place,
                }))
            }
            ToWindow::Shown => return Ok(Some(Hello::Shown)),
            ToWindow::Restart => wait_gone(socket)?,
            other => {
                return Err(format!(
                    "the app's core answered {other:?} to hello; start whosin again"
                ))
            }
        }
    }
    Err("whosin's core of another version did not make way; choose Quit in its tray menu, then start whosin again".into())
}

/// Waits until the core at `socket` no longer answers.
fn wait_gone(socket: &Path) -> Result<(), String> {
    let until = Instant::now() + CORE_START;
    while UnixStream::connect(socket).is_ok() {
        if Instant::now() > until {
            return Err("whosin's core of another version did not end; choose Quit in its tray menu, then start whosin again".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Starts the core in a process group of its own (so that a Ctrl-C meant
/// for the window leaves the tray alone) and waits until it answers. A core
/// that ends at once with success found another one holding the claim
/// (two starts at the same moment): that one answers soon.
fn start_core(socket: &Path) -> Result<UnixStream, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--core").stdin(Stdio::null()).process_group(0);
    for var in crate::core::AUTOMATION_ENV {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start whosin's core: {e}"))?;
    let until = Instant::now() + CORE_START;
    loop {
        if let Ok(s) = UnixStream::connect(socket) {
            // The core runs on by itself; its exit is not this process's to wait for.
            drop(child);
            return Ok(s);
        }
        if let Ok(Some(status)) = child.try_wait() {
            if !status.success() {
                return UnixStream::connect(socket).map_err(|_| {
                    format!(
                        "whosin's core stopped at start ({status}); run `whosin-desktop --core` in a terminal to see why"
                    )
                });
            }
        }
        if Instant::now() > until {
            return Err(format!(
                "whosin's core did not answer at {} within {} s; run `whosin-desktop --core` in a terminal to see why",
                socket.display(),
                CORE_START.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One message from the core, or `None` when it closed the connection.
fn read_message(reader: &mut BufReader<UnixStream>) -> Result<Option<ToWindow>, String> {
    let mut line = String::new();
    let n = reader
        .by_ref()
        .take(link::MAX_LINE as u64)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read from the app's core: {e}"))?;
    if n == 0 {
        return Ok(None);
    }
    link::decode(&line).map(Some).map_err(|e| e.to_string())
}

/// The invoke handler of the window process: every page command goes to
/// the core.
pub fn handler<R: Runtime>(link: Arc<Link>) -> impl Fn(Invoke<R>) -> bool + Send + Sync + 'static {
    move |invoke: Invoke<R>| {
        let name = invoke.message.command().to_owned();
        if !commands::NAMES.contains(&name.as_str()) {
            return false;
        }
        let args = commands::args_of(invoke.message.payload());
        let link = link.clone();
        invoke
            .resolver
            .respond_async(async move { link.call(name, args).await.map_err(InvokeError::from) });
        true
    }
}

/// Reads the core's lines for the life of the process: answers to calls,
/// events for the page, Focus. When the core goes (Quit, or it ended) the
/// window goes too.
pub fn pump<R: Runtime>(app: AppHandle<R>, link: Arc<Link>, mut reader: BufReader<UnixStream>) {
    loop {
        match read_message(&mut reader) {
            Ok(Some(ToWindow::Reply { id, result })) => {
                if let Some(tx) = link.pending().remove(&id) {
                    let _ = tx.send(result.into());
                }
            }
            Ok(Some(ToWindow::Event { payload })) => {
                if let Err(e) = app.emit(crate::EVENT, payload) {
                    tracing::warn!(error = %e, "could not send an event to the page");
                }
            }
            Ok(Some(ToWindow::Focus)) => {
                if let Some(w) = app.get_webview_window(crate::WINDOW) {
                    let _ = w.unminimize();
                    let _ = w.show();
                    let _ = w.set_focus();
                }
            }
            Ok(Some(other)) => tracing::debug!("unexpected from the core: {other:?}"),
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("{e}");
                break;
            }
        }
    }
    // Calls still waiting get "the core is gone".
    link.pending().clear();
    app.exit(0);
}

/// Makes the window from its entry in `tauri.conf.json`, at `place` when it
/// is on one of the monitors there are now.
pub fn open<R: Runtime>(app: &AppHandle<R>, place: Option<Place>) -> Result<(), String> {
    let config = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == crate::WINDOW)
        .cloned()
        .ok_or_else(|| format!("tauri.conf.json has no window \"{}\"", crate::WINDOW))?;
    let mut builder = WebviewWindowBuilder::from_config(app, &config).map_err(|e| e.to_string())?;
    if let Some(p) = place.filter(|p| p.is_on(&screens(app))) {
        builder = builder.position(p.x, p.y).inner_size(p.width, p.height);
    }
    let window = builder.build().map_err(|e| e.to_string())?;
    let _ = window.set_focus();
    crate::theme::follow(window);
    Ok(())
}

/// The monitors in logical pixels.
fn screens<R: Runtime>(app: &AppHandle<R>) -> Vec<Place> {
    app.available_monitors()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let scale = m.scale_factor();
            let (p, s) = (
                m.position().to_logical::<f64>(scale),
                m.size().to_logical::<f64>(scale),
            );
            Place {
                x: p.x,
                y: p.y,
                width: s.width,
                height: s.height,
            }
        })
        .collect()
}

/// Where a window is, in logical pixels; `None` for a window whose size
/// reads as zero (not mapped yet, or a runtime that does not know).
pub fn place_of<R: Runtime>(window: &tauri::Window<R>) -> Option<Place> {
    let (Ok(position), Ok(size), Ok(scale)) = (
        window.outer_position(),
        window.inner_size(),
        window.scale_factor(),
    ) else {
        return None;
    };
    if size.width == 0 || size.height == 0 {
        return None;
    }
    let (position, size) = (
        position.to_logical::<f64>(scale),
        size.to_logical::<f64>(scale),
    );
    Some(Place {
        x: position.x,
        y: position.y,
        width: size.width,
        height: size.height,
    })
}

/// Runs the window process's Tauri app until the window closes.
pub fn run(
    link: Arc<Link>,
    reader: BufReader<UnixStream>,
    place: Option<Place>,
) -> Result<(), String> {
    let pump_link = link.clone();
    let close_link = link.clone();
    let app = tauri::Builder::default()
        .invoke_handler(handler(link))
        .on_window_event(move |window, event| {
            if let WindowEvent::CloseRequested { .. } = event {
                if let Some(p) = place_of(window) {
                    close_link.place(p);
                }
            }
        })
        .setup(move |app| {
            // An error returned here would panic in Tauri: say it and leave.
            if let Err(e) = open(app.handle(), place) {
                eprintln!("error: whosin could not open its window: {e}");
                std::process::exit(1);
            }
            let handle = app.handle().clone();
            if let Err(e) = std::thread::Builder::new()
                .name("core-link".into())
                .spawn(move || pump(handle, pump_link, reader))
            {
                eprintln!("error: whosin could not open its window: {e}");
                std::process::exit(1);
            }
            Ok(())
        })
        .build(tauri::generate_context!())
        .map_err(|e| format!("whosin could not open its window: {e}"))?;
    app.run(|_, _| {});
    Ok(())
}
