//! The core: the process that runs all day.
//!
//! It holds the tray, the controller (the presence connections, the
//! history, the alerts) and the embedded server, and never makes a web
//! page: WebKit, the GL stack and WebKit's network process cost more than
//! everything else together, and they belong to the window, which lives in
//! a process of its own ([`crate::window`]) for as long as it is shown.
//! The core listens on a Unix socket ([`crate::link`]) for that process:
//! one window at a time, its commands run by [`crate::commands::run`], the
//! controller's events passed on to it, and its place kept (in
//! `window.json` beside the settings) for the next one.

use crate::commands;
use crate::controller::Controller;
use crate::link::{self, Place, ToCore, ToWindow};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tauri::{AppHandle, Runtime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// Environment a window process must not inherit from the core: what
/// WebDriver gave the process that started the core, so that only the window
/// it launched itself is automated.
pub const AUTOMATION_ENV: &[&str] = &[
    "WEBKIT_INSPECTOR_SERVER",
    "TAURI_WEBVIEW_AUTOMATION",
    "TAURI_AUTOMATION",
];

/// How long a window process started by Show has to say hello before Show
/// starts another.
const SPAWN_GRACE: Duration = Duration::from_secs(10);

/// The window the core knows of: at most one connected window process, and
/// where the last one was.
#[derive(Debug)]
pub struct Windows {
    current: Mutex<Current>,
    next_id: AtomicU64,
    place_file: PathBuf,
    socket: PathBuf,
    /// Environment the core set for itself that a window must not inherit.
    not_for_windows: Vec<&'static str>,
    /// This program as it was when the core started: after an upgrade
    /// replaced the file, `current_exe` names a deleted file, and the path
    /// starts the new version (whose hello then makes this core give way).
    exe: Option<PathBuf>,
    /// The lock that makes this the one core of its socket, held for the
    /// life of the process.
    _claim: Option<std::fs::File>,
}

#[derive(Debug, Default)]
struct Current {
    /// The connected window process: its connection's id and its lines' queue.
    window: Option<(u64, mpsc::UnboundedSender<String>)>,
    /// When Show last started a window process that has not said hello yet.
    spawned: Option<Instant>,
    place: Option<Place>,
}

impl Windows {
    /// `config_dir` holds `window.json`, the last window's place; `socket`
    /// is where the core listens (`claim` its lock, see [`listen`]);
    /// `not_for_windows` the environment the core set for itself alone.
    pub fn new(
        config_dir: &Path,
        socket: PathBuf,
        claim: Option<std::fs::File>,
        not_for_windows: Vec<&'static str>,
    ) -> Arc<Windows> {
        let place_file = config_dir.join("window.json");
        let place = std::fs::read_to_string(&place_file)
            .ok()
            .and_then(|s| serde_json::from_str::<Place>(&s).ok())
            .filter(Place::is_usable);
        Arc::new(Windows {
            current: Mutex::new(Current {
                place,
                ..Current::default()
            }),
            next_id: AtomicU64::new(1),
            place_file,
            socket,
            not_for_windows,
            exe: std::env::current_exe().ok(),
            _claim: claim,
        })
    }

    /// Removes the socket as the core exits, so that the next start does
    /// not try a dead one first.
    pub fn remove_socket(&self) {
        let _ = std::fs::remove_file(&self.socket);
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Passes an event for the page (already JSON) to the window, if one is
    /// shown. With none, there is nothing to do: a window made later starts
    /// from the `snapshot` command.
    pub fn event(&self, payload: &str) {
        // Most of the day no window is shown: nothing is read or written then.
        let current = self.current();
        let Some((_, tx)) = &current.window else {
            return;
        };
        if let Ok(payload) = serde_json::from_str::<Value>(payload) {
            let _ = tx.send(link::encode(&ToWindow::Event { payload }));
        }
    }

    /// The tray's Show window: brings the shown window to the front, or
    /// starts a window process (the same program, no arguments).
    pub fn show(&self) {
        let mut current = self.current();
        if let Some((_, tx)) = &current.window {
            let _ = tx.send(link::encode(&ToWindow::Focus));
            return;
        }
        if current.spawned.is_some_and(|t| t.elapsed() < SPAWN_GRACE) {
            return;
        }
        match spawn_window(self.exe.as_deref(), &self.not_for_windows) {
            Ok(()) => current.spawned = Some(Instant::now()),
            Err(e) => tracing::warn!("cannot open the window: {e}"),
        }
    }

    /// A window process said hello: it becomes the window, unless one is
    /// shown already (that one comes to the front instead). The answer is
    /// queued before the window is known as the current one, under the same
    /// lock, so that no event or Focus can reach it before its Open.
    fn hello(&self, tx: &mpsc::UnboundedSender<String>) -> Option<u64> {
        let mut current = self.current();
        current.spawned = None;
        if let Some((_, shown)) = &current.window {
            let _ = shown.send(link::encode(&ToWindow::Focus));
            let _ = tx.send(link::encode(&ToWindow::Shown));
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(link::encode(&ToWindow::Open {
            place: current.place,
        }));
        current.window = Some((id, tx.clone()));
        Some(id)
    }

    fn gone(&self, id: u64) {
        let mut current = self.current();
        if current.window.as_ref().is_some_and(|(w, _)| *w == id) {
            current.window = None;
        }
    }

    fn remember(&self, place: Place) {
        if !place.is_usable() {
            return;
        }
        self.current().place = Some(place);
        let json = serde_json::to_string(&place).expect("a place serializes");
        if let Err(e) = std::fs::write(&self.place_file, json) {
            tracing::debug!(error = %e, file = %self.place_file.display(), "cannot keep the window's place");
        }
    }
}

/// Starts a window process and reaps it when it ends.
fn spawn_window(exe: Option<&Path>, not_inherited: &[&str]) -> std::io::Result<()> {
    let exe = match exe {
        Some(e) => e.to_owned(),
        None => std::env::current_exe()?,
    };
    let mut cmd = Command::new(exe);
    cmd.stdin(Stdio::null());
    for var in AUTOMATION_ENV.iter().chain(not_inherited) {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn()?;
    std::thread::Builder::new()
        .name("window-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        })?;
    Ok(())
}

/// Claims `path` for this core and listens there: an exclusive lock on the
/// file beside it (`desktop.lock` for `desktop.sock`) decides which core is
/// the one, so that two starts at the same moment cannot both take the
/// socket; the winner replaces a socket file a core that ended left behind.
/// `None` when another core holds the claim (this one should leave).
pub fn listen(
    path: &Path,
) -> Result<Option<(std::os::unix::net::UnixListener, std::fs::File)>, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            format!(
                "cannot open {}: {e}; check that the folder is writable",
                lock_path.display()
            )
        })?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", lock_path.display()))
        }
    }
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| {
        format!(
            "cannot listen at {}: {e}; check that the folder is writable",
            path.display()
        )
    })?;
    // Only this user may drive the app.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot make {} private: {e}", path.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen at {}: {e}", path.display()))?;
    Ok(Some((listener, lock)))
}

/// Serves window processes until the app exits.
pub async fn serve<R: Runtime>(
    app: AppHandle<R>,
    controller: Arc<Controller>,
    windows: Arc<Windows>,
    listener: std::os::unix::net::UnixListener,
) {
    let listener = match UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for the window; Show window will not work");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let (app, c, w) = (app.clone(), controller.clone(), windows.clone());
                tauri::async_runtime::spawn(async move { connection(app, c, w, stream).await });
            }
            Err(e) => {
                // Out of descriptors or the like: wait rather than spin.
                tracing::warn!(error = %e, "cannot take a window's connection");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// One window process's connection: hello, then its calls and place.
async fn connection<R: Runtime>(
    app: AppHandle<R>,
    controller: Arc<Controller>,
    windows: Arc<Windows>,
    stream: UnixStream,
) {
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    // One writer, so that replies and events never interleave in a line.
    let writer = tauri::async_runtime::spawn(async move {
        while let Some(line) = rx.recv().await {
            if write.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    let mut id = None;
    let mut restart = false;
    loop {
        line.clear();
        match (&mut lines)
            .take(link::MAX_LINE as u64)
            .read_line(&mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) if !line.ends_with('\n') => {
                tracing::warn!("a window process sent an overlong line; closing its connection");
                break;
            }
            Ok(_) => {}
        }
        let message = match link::decode::<ToCore>(&line) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("{e}");
                break;
            }
        };
        match message {
            ToCore::Hello { pid, version } => {
                if version != link::VERSION {
                    // A window of another version: the program was upgraded
                    // under this core. Make way; the window starts the new one.
                    tracing::info!(pid, %version, "a window of another version of whosin: the core makes way for it");
                    let _ = tx.send(link::encode(&ToWindow::Restart));
                    restart = true;
                    break;
                }
                id = windows.hello(&tx);
                tracing::debug!(pid, shown = id.is_none(), "a window process said hello");
                if id.is_none() {
                    break;
                }
            }
            ToCore::Call {
                id: call,
                name,
                args,
            } => {
                let (app, c, tx) = (app.clone(), controller.clone(), tx.clone());
                tauri::async_runtime::spawn(async move {
                    let result = commands::run(&app, &c, &name, &args).await;
                    let _ = tx.send(link::encode(&ToWindow::Reply {
                        id: call,
                        result: result.into(),
                    }));
                });
            }
            // Sent as the window closes: it is leaving, so Show (or a
            // start) from now on makes a new one rather than focus it.
            ToCore::Place { place } => {
                windows.remember(place);
                if let Some(id) = id.take() {
                    windows.gone(id);
                }
            }
        }
    }
    if let Some(id) = id {
        windows.gone(id);
    }
    drop(tx);
    let _ = writer.await;
    if restart {
        controller.shutdown().await;
        app.exit(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> Option<ToWindow> {
        rx.try_recv().ok().map(|l| link::decode(&l).unwrap())
    }

    /// A window process's hello: its id (when it became the window) and the
    /// answer it got first.
    fn hello(w: &Windows) -> (Option<u64>, ToWindow, mpsc::UnboundedReceiver<String>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = w.hello(&tx);
        let answer = next(&mut rx).expect("an answer to hello");
        (id, answer, rx)
    }

    #[test]
    fn one_window_at_a_time_and_its_place_kept_across_restarts() {
        let dir = std::env::temp_dir().join(format!("whosin-core-windows-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let w = Windows::new(&dir, dir.join("desktop.sock"), None, vec![]);
        let (first, answer, mut rx1) = hello(&w);
        assert!(first.is_some());
        assert_eq!(answer, ToWindow::Open { place: None });

        // A second window process while one is shown: that one comes forward.
        let (second, answer, _rx2) = hello(&w);
        assert_eq!((second, answer), (None, ToWindow::Shown));
        assert_eq!(next(&mut rx1), Some(ToWindow::Focus));

        // Events reach the shown window, and nothing else.
        w.event(r#"{"event":"refresh","seq":4}"#);
        w.event("not json");
        assert_eq!(
            next(&mut rx1),
            Some(ToWindow::Event {
                payload: json!({"event": "refresh", "seq": 4})
            })
        );
        assert_eq!(next(&mut rx1), None);

        // It closes where it was; a place that cannot be used is not kept.
        let place = Place {
            x: 40.0,
            y: 30.0,
            width: 460.0,
            height: 600.0,
        };
        w.remember(place);
        w.remember(Place {
            width: 0.0,
            ..place
        });
        w.gone(first.unwrap());
        w.event(r#"{"seq":5}"#);
        assert_eq!(next(&mut rx1), None, "no window, no events");

        // The next window opens there, also after the app started again.
        assert_eq!(hello(&w).1, ToWindow::Open { place: Some(place) });
        let again = Windows::new(&dir, dir.join("desktop.sock"), None, vec![]);
        assert_eq!(hello(&again).1, ToWindow::Open { place: Some(place) });
        // A damaged file is no place.
        std::fs::write(dir.join("window.json"), "{").unwrap();
        let damaged = Windows::new(&dir, dir.join("desktop.sock"), None, vec![]);
        assert_eq!(hello(&damaged).1, ToWindow::Open { place: None });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_core_per_socket_and_a_stale_socket_is_replaced() {
        let dir = std::env::temp_dir().join(format!("whosin-core-listen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("desktop.sock");
        let first = listen(&path).unwrap().expect("the first core claims it");
        assert!(listen(&path).unwrap().is_none(), "a second core leaves");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The first core ended without removing its socket.
        drop(first);
        assert!(path.exists());
        let second = listen(&path).unwrap();
        assert!(second.is_some(), "the socket left behind is replaced");
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
