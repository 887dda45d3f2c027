//! The wire between the window and the core.
//!
//! The app runs as two processes (see [`crate::core`] and [`crate::window`]):
//! the core, which runs all day with the tray, the controller and the
//! embedded server and never loads a web page, and a window process made on
//! Show and gone when the window closes, with WebKit and everything it
//! loads. They talk over a Unix socket, one JSON object per line. This
//! module is the format only: what each side may say, how a line is read,
//! where the socket is. It does no I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// This program's version: a window and a core of different versions (the
/// package was upgraded while the core ran) do not work together; the old
/// core makes way.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The app's identifier (`tauri.conf.json`), whose config folder holds the
/// socket when there is no runtime folder.
pub const IDENTIFIER: &str = "dev.whosin.desktop";

/// The longest line either side accepts (a snapshot with a few thousand
/// visitors fits many times over); a longer one ends the connection.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// What a window process says to the core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToCore {
    /// The first line: a window process would like to show the window.
    Hello {
        /// Its process id, for the core's log.
        pid: u32,
        /// Its [`VERSION`].
        #[serde(default)]
        version: String,
    },
    /// A command of the page ([`crate::commands::NAMES`]), answered by a
    /// [`ToWindow::Reply`] with the same `id`.
    Call { id: u64, name: String, args: Value },
    /// Where the window is as it closes, for the next window to open there.
    Place { place: Place },
}

/// What the core says to a window process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToWindow {
    /// The answer to [`ToCore::Hello`]: make the window, at `place` if known.
    Open { place: Option<Place> },
    /// The answer to [`ToCore::Hello`] when a window is already shown: the
    /// core brought it to the front; this process has nothing to do.
    Shown,
    /// The answer to a [`ToCore::Call`]: the command's value, or the text
    /// the page shows.
    Reply {
        id: u64,
        #[serde(flatten)]
        result: Outcome,
    },
    /// An event for the page (the controller's numbered `presence` events).
    Event { payload: Value },
    /// Bring the window to the front (the tray's Show window, a second start).
    Focus,
    /// The answer to a [`ToCore::Hello`] of another version: this core is
    /// ending; start the one of the window's version.
    Restart,
}

/// A command's result on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(Value),
    Err(String),
}

impl From<Result<Value, String>> for Outcome {
    fn from(r: Result<Value, String>) -> Self {
        match r {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Err(e),
        }
    }
}

impl From<Outcome> for Result<Value, String> {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Ok(v) => Ok(v),
            Outcome::Err(e) => Err(e),
        }
    }
}

/// A window's place in logical pixels (what a window builder takes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Place {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl Place {
    /// Whether the place is worth opening at: a real size, finite numbers.
    pub fn is_usable(&self) -> bool {
        [self.x, self.y, self.width, self.height]
            .iter()
            .all(|v| v.is_finite())
            && self.width >= 1.0
            && self.height >= 1.0
    }

    /// Whether enough of the window's title bar would be on one of the
    /// `screens` (logical rectangles) to grab it: a monitor unplugged since
    /// it closed leaves it nowhere, and then the window system places it.
    pub fn is_on(&self, screens: &[Place]) -> bool {
        const GRAB: f64 = 40.0;
        screens.iter().any(|s| {
            let left = self.x.max(s.x);
            let right = (self.x + self.width).min(s.x + s.width);
            right - left >= GRAB && self.y >= s.y && self.y + GRAB <= s.y + s.height
        })
    }
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the other side of the app sent something unreadable ({0}); start the app again")]
    Malformed(#[from] serde_json::Error),
}

/// One message as a line (JSON and a newline).
pub fn encode<T: Serialize>(message: &T) -> String {
    let mut line = serde_json::to_string(message).expect("link messages serialize");
    line.push('\n');
    line
}

/// One message from a line (with or without its newline).
pub fn decode<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, LinkError> {
    Ok(serde_json::from_str(line.trim_end())?)
}

/// Where the core listens. `WHOSIN_CONFIG_DIR` (tests, portable setups) puts
/// it beside the settings, so two configurations are two apps; otherwise it
/// is the user's runtime folder (`XDG_RUNTIME_DIR`, private to the user and
/// cleared at logout), else the app's config folder in the user's home
/// (never a shared folder such as /tmp, where another user could take the
/// name first).
pub fn socket_path(
    config_dir: Option<&Path>,
    runtime_dir: Option<&Path>,
    config_home: &Path,
) -> PathBuf {
    if let Some(dir) = config_dir {
        return dir.join("desktop.sock");
    }
    if let Some(dir) = runtime_dir {
        return dir.join("whosin-desktop.sock");
    }
    config_home.join(IDENTIFIER).join("desktop.sock")
}

/// [`socket_path`] from this process's environment (`XDG_CONFIG_HOME`, else
/// `~/.config`, is the config home).
pub fn socket_path_from_env() -> PathBuf {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let config_home = var("XDG_CONFIG_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".config")))
        .unwrap_or_else(std::env::temp_dir);
    socket_path(
        var("WHOSIN_CONFIG_DIR").as_deref(),
        var("XDG_RUNTIME_DIR").as_deref(),
        &config_home,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_are_one_tagged_json_line_each() {
        let call = ToCore::Call {
            id: 7,
            name: "select_site".into(),
            args: json!({"id": "site-1"}),
        };
        let line = encode(&call);
        assert_eq!(
            line,
            "{\"t\":\"call\",\"id\":7,\"name\":\"select_site\",\"args\":{\"id\":\"site-1\"}}\n"
        );
        assert_eq!(decode::<ToCore>(&line).unwrap(), call);
        let reply = ToWindow::Reply {
            id: 7,
            result: Outcome::Err("no such site".into()),
        };
        assert_eq!(
            encode(&reply),
            "{\"t\":\"reply\",\"id\":7,\"err\":\"no such site\"}\n"
        );
        assert_eq!(decode::<ToWindow>(&encode(&reply)).unwrap(), reply);
        let ok = ToWindow::Reply {
            id: 8,
            result: Outcome::Ok(json!({"count": 2})),
        };
        assert_eq!(decode::<ToWindow>(&encode(&ok)).unwrap(), ok);
        for m in [
            ToWindow::Open { place: None },
            ToWindow::Shown,
            ToWindow::Focus,
            ToWindow::Restart,
            ToWindow::Event {
                payload: json!({"seq": 1}),
            },
        ] {
            assert_eq!(decode::<ToWindow>(&encode(&m)).unwrap(), m);
        }
    }

    #[test]
    fn unreadable_lines_are_errors_that_say_what_to_do() {
        for bad in [
            "",
            "{",
            "{\"t\":\"nonsense\"}",
            "{\"t\":\"call\",\"id\":\"x\"}",
        ] {
            let e = decode::<ToCore>(bad).unwrap_err().to_string();
            assert!(e.contains("start the app again"), "{bad}: {e}");
        }
    }

    #[test]
    fn results_convert_both_ways() {
        let ok: Result<Value, String> = Ok(json!(1));
        assert_eq!(Result::from(Outcome::from(ok.clone())), ok);
        let err: Result<Value, String> = Err("x".into());
        assert_eq!(Result::from(Outcome::from(err.clone())), err);
    }

    #[test]
    fn a_place_is_used_only_if_it_can_be_grabbed_on_a_screen() {
        let screen = Place {
            x: 0.0,
            y: 0.0,
            width: 1024.0,
            height: 768.0,
        };
        let second = Place {
            x: 1024.0,
            ..screen
        };
        let at = |x, y| Place {
            x,
            y,
            width: 420.0,
            height: 640.0,
        };
        assert!(at(40.0, 30.0).is_on(&[screen]));
        // Mostly off the right edge, but 44 px of its title bar can still
        // be grabbed; with 24 px, not.
        assert!(at(980.0, 30.0).is_on(&[screen]));
        assert!(!at(1000.0, 30.0).is_on(&[screen]));
        // On a second monitor that is gone.
        assert!(at(1200.0, 30.0).is_on(&[screen, second]));
        assert!(!at(1200.0, 30.0).is_on(&[screen]));
        // The title bar above the top or below the bottom.
        assert!(!at(40.0, -10.0).is_on(&[screen]));
        assert!(!at(40.0, 750.0).is_on(&[screen]));
        assert!(!at(40.0, 30.0).is_on(&[]));
        assert!(at(40.0, 30.0).is_usable());
        assert!(!Place {
            width: 0.0,
            ..at(0.0, 0.0)
        }
        .is_usable());
        assert!(!at(f64::NAN, 0.0).is_usable());
    }

    #[test]
    fn the_socket_is_beside_a_given_config_else_in_the_runtime_folder() {
        let home = Path::new("/home/ann/.config");
        assert_eq!(
            socket_path(Some(Path::new("/c")), Some(Path::new("/r")), home),
            Path::new("/c/desktop.sock")
        );
        assert_eq!(
            socket_path(None, Some(Path::new("/r")), home),
            Path::new("/r/whosin-desktop.sock")
        );
        assert_eq!(
            socket_path(None, None, home),
            Path::new("/home/ann/.config/dev.whosin.desktop/desktop.sock")
        );
    }

    #[test]
    fn a_hello_says_its_version_and_one_without_is_of_another() {
        let hello = ToCore::Hello {
            pid: 9,
            version: VERSION.into(),
        };
        assert_eq!(decode::<ToCore>(&encode(&hello)).unwrap(), hello);
        assert_eq!(
            decode::<ToCore>(r#"{"t":"hello","pid":9}"#).unwrap(),
            ToCore::Hello {
                pid: 9,
                version: String::new()
            }
        );
    }

    #[test]
    fn the_identifier_is_tauri_conf_json_s() {
        let conf: serde_json::Value =
            serde_json::from_str(include_str!("../tauri.conf.json")).unwrap();
        assert_eq!(conf["identifier"], IDENTIFIER);
    }
}
