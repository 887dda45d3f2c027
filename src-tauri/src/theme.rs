//! The desktop's light or dark preference, for the window.
//!
//! Desktops publish it through the settings portal
//! (`org.freedesktop.portal.Settings`, key `org.freedesktop.appearance
//! color-scheme`). Tauri's own listener for it (its `dbus` feature) runs in
//! every process for the life of the app and wakes every 5 seconds, and the
//! core, which has no window, would pay that all day. So the feature is off
//! and the window process asks here instead: once as the window is made,
//! then by waiting for the portal's change signal, which costs nothing while
//! nothing changes and ends with the window. Both on a thread of their own:
//! a bus that is slow to start the portal never holds up the window.
//! (On Linux the preference reaches WebKit only through `set_theme` on the
//! made window; a window builder's theme is not used there.)

use tauri::{Runtime, Theme, WebviewWindow};
use zbus::zvariant::{OwnedValue, Value};

const PORTAL: &str = "org.freedesktop.portal.Desktop";
const PATH: &str = "/org/freedesktop/portal/desktop";
const SETTINGS: &str = "org.freedesktop.portal.Settings";
const NAMESPACE: &str = "org.freedesktop.appearance";
const KEY: &str = "color-scheme";

/// The portal's value as a theme: 1 prefers dark, 2 prefers light, 0 has no
/// preference (the window's default, light).
pub fn from_scheme(scheme: u32) -> Option<Theme> {
    match scheme {
        1 => Some(Theme::Dark),
        2 => Some(Theme::Light),
        _ => None,
    }
}

/// The number in a portal value, however deep in variants it is (older
/// portals wrap `Read`'s answer twice).
fn scheme_of(value: &Value<'_>) -> Option<u32> {
    match value {
        Value::U32(n) => Some(*n),
        Value::Value(inner) => scheme_of(inner),
        _ => None,
    }
}

/// The desktop's preference now, asked on `conn`; `None` when there is no
/// portal or no preference.
fn current(conn: &zbus::blocking::Connection) -> Option<Theme> {
    let reply = conn
        .call_method(
            Some(PORTAL),
            PATH,
            Some(SETTINGS),
            "Read",
            &(NAMESPACE, KEY),
        )
        .map_err(|e| tracing::debug!(error = %e, "no light or dark preference from the portal"))
        .ok()?;
    let value: OwnedValue = reply.body().deserialize().ok()?;
    let theme = from_scheme(scheme_of(&value)?);
    tracing::debug!(?theme, "the desktop's preference");
    theme
}

/// Gives the window the desktop's preference now, then follows its changes
/// for as long as the window process lives, on a thread of its own that
/// sleeps until the portal speaks. It listens for changes before it asks,
/// so that a change in between is not lost; a portal slow to start delays
/// only this thread.
pub fn follow<R: Runtime>(window: WebviewWindow<R>) {
    let run = move || -> zbus::Result<()> {
        let conn = zbus::blocking::Connection::session()?;
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface(SETTINGS)?
            .member("SettingChanged")?
            .build();
        let changes = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, None)?;
        if let Some(theme) = current(&conn) {
            let _ = window.set_theme(Some(theme));
        }
        for message in changes {
            let message = message?;
            let Ok((namespace, key, value)) =
                message.body().deserialize::<(String, String, OwnedValue)>()
            else {
                continue;
            };
            if namespace == NAMESPACE && key == KEY {
                if let Some(scheme) = scheme_of(&value) {
                    let _ = window.set_theme(from_scheme(scheme));
                }
            }
        }
        Ok(())
    };
    let _ = std::thread::Builder::new()
        .name("theme".into())
        .spawn(move || {
            if let Err(e) = run() {
                tracing::debug!(error = %e, "not following the desktop's light or dark preference");
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portal_scheme_reads_as_a_theme_however_wrapped() {
        assert_eq!(from_scheme(1), Some(Theme::Dark));
        assert_eq!(from_scheme(2), Some(Theme::Light));
        assert_eq!(from_scheme(0), None);
        assert_eq!(from_scheme(7), None);
        let twice = Value::Value(Box::new(Value::Value(Box::new(Value::U32(1)))));
        assert_eq!(scheme_of(&twice), Some(1));
        assert_eq!(scheme_of(&Value::U32(2)), Some(2));
        assert_eq!(scheme_of(&Value::Str("dark".into())), None);
    }
}
