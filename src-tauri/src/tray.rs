//! The tray icon: the count in the image, and a menu that carries what the
//! Linux tray cannot show (no tooltip, no click events): "N online", up to
//! ten names, Show window, Join/Leave, Quit.

use crate::badge::{self, Tone};
use crate::state::{Conn, DesktopState};
use serde::Serialize;
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Runtime};
use whosin_client::Member;

/// The tray's id.
pub const TRAY_ID: &str = "whosin";
/// Names listed in the menu at most.
pub const MAX_NAMES: usize = 10;

/// What the tray shows; kept so tests can read it through a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrayModel {
    /// Count drawn in the icon (`None` when not live).
    pub count: Option<usize>,
    /// Text drawn in the icon.
    pub icon_text: String,
    /// Colour of the disc: online, waiting, offline.
    pub tone: &'static str,
    /// Title beside the icon (macOS, some Linux desktops).
    pub title: String,
    /// The tooltip: "N online · peak M today" once the day has a peak
    /// (Linux trays show no tooltip; the menu carries the peak too).
    pub tooltip: String,
    /// Menu item labels, top to bottom (separators as "-").
    pub menu: Vec<String>,
    /// Whether the visitor is in the channel (the Join/Leave item).
    pub joined: bool,
}

/// One site as the tray lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteLine {
    /// Its name.
    pub name: String,
    /// Its count, `None` while it is not live.
    pub count: Option<u32>,
    /// Whether the tray's count includes it (all, or the chosen one).
    pub in_tray: bool,
}

impl TrayModel {
    /// With several sites: the icon shows the total of the sites the tray
    /// counts (all by default, or the one chosen), and the menu lists every
    /// site with its count under the headline. One site: unchanged.
    pub fn with_sites(mut self, sites: &[SiteLine]) -> TrayModel {
        if sites.len() < 2 {
            return self;
        }
        let live: Vec<u32> = sites
            .iter()
            .filter(|s| s.in_tray)
            .filter_map(|s| s.count)
            .collect();
        if !live.is_empty() {
            let n = live.iter().sum::<u32>() as usize;
            let headline = format!("{n} online");
            self.count = Some(n);
            self.icon_text = badge::label(Some(n));
            self.tone = "online";
            self.title = headline.clone();
            self.tooltip = headline.clone();
            if let Some(first) = self.menu.first_mut() {
                *first = headline;
            }
        }
        let lines = sites.iter().map(|s| {
            let n = s
                .count
                .map_or("offline".to_owned(), |n| format!("{n} online"));
            format!("{}: {n}", s.name)
        });
        let at = 1.min(self.menu.len());
        let mut with: Vec<String> = self.menu[..at].to_vec();
        with.extend(lines);
        with.push("-".into());
        with.extend(self.menu[at..].iter().cloned());
        self.menu = with;
        self
    }

    /// The model for a state, the session's members and today's peak
    /// (`None` before there is one).
    pub fn of(s: &DesktopState, members: &[Member], peak_today: Option<u32>) -> TrayModel {
        let tone = match (&s.conn, s.joined) {
            (_, false) | (Conn::Disconnected { .. }, _) => Tone::Offline,
            (Conn::Connected, true) => Tone::Online,
            _ => Tone::Waiting,
        };
        // While reconnecting the last count stays, greyed as "waiting".
        let count = match tone {
            Tone::Offline => None,
            _ if matches!(s.conn, Conn::Connecting) => None,
            _ => Some(members.len()),
        };
        let headline = match (&s.conn, count) {
            (_, _) if !s.joined => "Not joined".to_owned(),
            (Conn::Disconnected { .. }, _) => "Offline".to_owned(),
            (Conn::Reconnecting { .. }, Some(n)) => format!("{n} online (reconnecting…)"),
            (_, Some(n)) => format!("{n} online"),
            (_, None) => "Connecting…".to_owned(),
        };
        let tooltip = match (count, peak_today) {
            (Some(n), Some(p)) if s.joined => format!("{n} online · peak {p} today"),
            _ => headline.clone(),
        };
        let mut menu = vec![headline.clone()];
        if let (Some(p), true) = (peak_today, s.joined) {
            menu.push(format!("Peak today: {p}"));
        }
        let names = s.names(members, MAX_NAMES);
        if !names.is_empty() && s.joined {
            menu.push("-".into());
            menu.extend(names);
            if members.len() > MAX_NAMES {
                menu.push(format!("and {} more", members.len() - MAX_NAMES));
            }
        }
        menu.push("-".into());
        menu.push("Show window".into());
        menu.push(if s.joined { "Leave" } else { "Join" }.into());
        menu.push("Quit".into());
        TrayModel {
            icon_text: badge::label(count),
            count,
            tone: match tone {
                Tone::Online => "online",
                Tone::Waiting => "waiting",
                Tone::Offline => "offline",
            },
            title: headline,
            tooltip,
            menu,
            joined: s.joined,
        }
    }

    fn tone(&self) -> Tone {
        match self.tone {
            "online" => Tone::Online,
            "waiting" => Tone::Waiting,
            _ => Tone::Offline,
        }
    }
}

fn menu<R: Runtime>(app: &AppHandle<R>, model: &TrayModel) -> tauri::Result<Menu<R>> {
    let menu = Menu::new(app)?;
    let last = model.menu.len() - 3;
    for (i, label) in model.menu.iter().enumerate() {
        if label == "-" {
            menu.append(&PredefinedMenuItem::separator(app)?)?;
            continue;
        }
        let (id, enabled) = match i {
            _ if i == last => ("show", true),
            _ if i == last + 1 => ("join", true),
            _ if i == last + 2 => ("quit", true),
            _ => ("info", false),
        };
        let id = if id == "info" {
            format!("info-{i}")
        } else {
            id.to_owned()
        };
        // `&` marks an access key in menu labels: doubled, a name keeps it.
        let text = label.replace('&', "&&");
        menu.append(&MenuItem::with_id(app, id, text, enabled, None::<&str>)?)?;
    }
    Ok(menu)
}

fn image(model: &TrayModel) -> Image<'static> {
    let b = badge::render(model.count, model.tone());
    Image::new_owned(b.rgba, badge::SIZE, badge::SIZE)
}

/// Creates the tray icon.
pub fn create<R: Runtime>(app: &AppHandle<R>, model: &TrayModel) -> tauri::Result<()> {
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(image(model))
        .menu(&menu(app, model)?)
        .title(&model.title)
        .tooltip(&model.tooltip)
        .on_menu_event(|app, event| crate::on_menu(app, event.id().as_ref()))
        .build(app)?;
    Ok(())
}

/// Shows a new model: a fresh image, title, tooltip and menu.
pub fn update<R: Runtime>(app: &AppHandle<R>, model: &TrayModel) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    let result = (|| -> tauri::Result<()> {
        tray.set_icon(Some(image(model)))?;
        tray.set_title(Some(&model.title))?;
        tray.set_tooltip(Some(&model.tooltip))?;
        tray.set_menu(Some(menu(app, model)?))?;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not update the tray");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whosin_client::{ConnectionState, Event};

    #[test]
    fn several_sites_show_their_total_and_a_line_each() {
        let mut s = DesktopState::default();
        s.apply(&Event::State(ConnectionState::Connected {
            socket_id: "1.1".into(),
        }));
        s.joined = true;
        let one = TrayModel::of(&s, &[], None);
        let line = |name: &str, count, in_tray| SiteLine {
            name: name.into(),
            count,
            in_tray,
        };
        assert_eq!(
            one.clone().with_sites(&[line("Only", Some(0), true)]),
            one,
            "one site: as before"
        );
        let m = one.clone().with_sites(&[
            line("Shop", Some(3), true),
            line("Blog", Some(2), true),
            line("Docs", None, true),
        ]);
        assert_eq!(m.count, Some(5));
        assert_eq!(m.icon_text, "5");
        assert_eq!(
            &m.menu[..5],
            [
                "5 online",
                "Shop: 3 online",
                "Blog: 2 online",
                "Docs: offline",
                "-"
            ]
        );
        let chosen = one.with_sites(&[line("Shop", Some(3), false), line("Blog", Some(2), true)]);
        assert_eq!(chosen.count, Some(2));
    }

    #[test]
    fn model_follows_the_state() {
        let mut s = DesktopState::default();
        assert_eq!(TrayModel::of(&s, &[], None).title, "Connecting…");
        s.apply(&Event::State(ConnectionState::Connected {
            socket_id: "1.1".into(),
        }));
        let me = Member {
            id: "me".into(),
            info: serde_json::json!({"name":"Ada"}),
        };
        s.apply(&Event::Snapshot {
            channel: "c".into(),
            me: Some(me.clone()),
            members: vec![me.clone()],
        });
        let mut members = vec![me];
        let m = TrayModel::of(&s, &members, None);
        assert_eq!(
            (m.count, m.icon_text.as_str(), m.tone),
            (Some(1), "1", "online")
        );
        assert_eq!(
            m.menu,
            [
                "1 online",
                "-",
                "Ada (you)",
                "-",
                "Show window",
                "Leave",
                "Quit"
            ]
        );
        for i in 0..12 {
            members.push(Member {
                id: format!("u{i:02}"),
                info: serde_json::json!({"name": format!("User {i:02}")}),
            });
        }
        let m = TrayModel::of(&s, &members, None);
        assert_eq!(m.title, "13 online");
        assert_eq!(m.menu.iter().filter(|l| l.starts_with("User")).count(), 9);
        assert!(m.menu.contains(&"and 3 more".to_owned()));
        s.leave();
        let m = TrayModel::of(&s, &members, None);
        assert_eq!(
            (m.count, m.tone, m.title.as_str()),
            (None, "offline", "Not joined")
        );
        assert_eq!(m.menu, ["Not joined", "-", "Show window", "Join", "Quit"]);
    }
}
