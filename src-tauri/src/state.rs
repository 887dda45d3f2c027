//! What the window and the tray show, as a small state machine apart from
//! Tauri: client events go in, UI events (numbered, so the window can tell
//! which came after its snapshot) come out, in the JSON every front end
//! shares ([`JsonEvent`], pinned by `tests/golden/presence-events.json`).
//!
//! Who is present is not kept here: the client's session keeps the one
//! roster ([`whosin_client::Client::members`]), and the functions that draw
//! the whole picture take it as an argument. Events already say who came
//! or went (with the last known info) and how many are online.

use serde_json::{json, Value};
use whosin_client::{ConnectionState, Event, JsonEvent, Member};

/// A presence roster as the client's session knows it: this visitor (when
/// listed) and everyone, sorted by id.
pub type Roster = (Option<Member>, Vec<Member>);

/// Connection state as the window shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    /// First attempt.
    Connecting,
    /// Joined the server.
    Connected,
    /// Waiting to retry.
    Reconnecting {
        /// Delay before the next attempt, ms.
        delay_ms: u64,
        /// Why.
        reason: String,
    },
    /// Stopped, with why.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The user left the channel (the app keeps running).
    Left,
}

impl Conn {
    fn json(&self) -> Value {
        match self {
            Conn::Connecting => json!({"state":"connecting"}),
            Conn::Connected => json!({"state":"connected"}),
            Conn::Reconnecting { delay_ms, reason } => {
                json!({"state":"reconnecting","delay_ms":delay_ms,"reason":reason})
            }
            Conn::Disconnected { reason } => json!({"state":"disconnected","reason":reason}),
            Conn::Left => json!({"state":"left"}),
        }
    }
}

/// Everything the window and tray show.
#[derive(Debug, Clone)]
pub struct DesktopState {
    seq: u64,
    /// Connection state.
    pub conn: Conn,
    /// This visitor's id.
    pub me_id: Option<String>,
    /// Whether the user wants to be in the channel.
    pub joined: bool,
    /// The looked-up public IP.
    pub public_ip: Option<String>,
    /// Where others can reach the embedded server, if any.
    pub address: Option<String>,
}

impl Default for DesktopState {
    fn default() -> Self {
        DesktopState {
            seq: 0,
            conn: Conn::Connecting,
            me_id: None,
            joined: true,
            public_ip: None,
            address: None,
        }
    }
}

/// A change worth telling the user about (notifications).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Someone else joined.
    Joined(String),
    /// Someone else left.
    Left(String),
}

/// A member's display name.
pub fn display_name(id: &str, info: &Value) -> String {
    info["name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or(id)
        .to_owned()
}

/// A client event as the window receives it: the same JSON as
/// `whosin join --json` ([`JsonEvent`]); [`DesktopState`] adds its number.
fn wire(e: &Event) -> Value {
    serde_json::to_value(JsonEvent::from(e)).unwrap_or(Value::Null)
}

fn member_json(m: &Member) -> Value {
    json!({"id": m.id, "info": m.info})
}

impl DesktopState {
    /// Whether the count is live (connected and joined).
    pub fn live(&self) -> bool {
        self.conn == Conn::Connected && self.joined
    }

    /// Up to `n` names of `members` for the tray menu: you first, then by
    /// name.
    pub fn names(&self, members: &[Member], n: usize) -> Vec<String> {
        let mut v: Vec<(bool, String)> = members
            .iter()
            .map(|m| {
                (
                    Some(&m.id) != self.me_id.as_ref(),
                    display_name(&m.id, &m.info),
                )
            })
            .collect();
        v.sort();
        v.into_iter()
            .take(n)
            .map(|(other, name)| if other { name } else { format!("{name} (you)") })
            .collect()
    }

    fn next(&mut self, mut payload: Value) -> Value {
        self.seq += 1;
        payload["seq"] = json!(self.seq);
        payload
    }

    /// Applies a client event; returns the UI event to emit (if any) and a
    /// notice about someone else (if any).
    pub fn apply(&mut self, e: &Event) -> (Option<Value>, Option<Notice>) {
        match e {
            Event::State(s) => {
                self.conn = match s {
                    ConnectionState::Connecting => Conn::Connecting,
                    ConnectionState::Connected { .. } => Conn::Connected,
                    ConnectionState::Reconnecting { delay, reason, .. } => Conn::Reconnecting {
                        delay_ms: delay.as_millis() as u64,
                        reason: reason.clone(),
                    },
                    ConnectionState::Disconnected { reason } => Conn::Disconnected {
                        reason: reason.to_string(),
                    },
                };
                (Some(self.next(wire(e))), None)
            }
            Event::Snapshot { me, .. } => {
                if let Some(me) = me {
                    self.me_id = Some(me.id.clone());
                }
                (Some(self.next(wire(e))), None)
            }
            // The session reports each arrival and departure once.
            Event::MemberAdded { member, .. } => {
                let notice = (Some(&member.id) != self.me_id.as_ref())
                    .then(|| Notice::Joined(display_name(&member.id, &member.info)));
                (Some(self.next(wire(e))), notice)
            }
            Event::MemberRemoved { member, .. } => {
                let notice = (Some(&member.id) != self.me_id.as_ref())
                    .then(|| Notice::Left(display_name(&member.id, &member.info)));
                (Some(self.next(wire(e))), notice)
            }
            Event::SubscriptionFailed { message, .. } => {
                self.conn = Conn::Disconnected {
                    reason: format!("cannot join: {message}"),
                };
                (Some(self.next(wire(e))), None)
            }
            _ => (None, None),
        }
    }

    /// The user left the channel: nobody is shown until they join again.
    pub fn leave(&mut self) {
        self.joined = false;
        self.conn = Conn::Left;
        self.seq += 1;
    }

    /// A new connection is starting (join, or new settings).
    pub fn restart(&mut self) {
        self.joined = true;
        self.conn = Conn::Connecting;
        self.seq += 1;
    }

    /// Takes a new sequence number for a whole-picture refresh and returns
    /// the snapshot carrying it.
    pub fn refresh(&mut self, roster: Option<&Roster>) -> Value {
        self.seq += 1;
        self.snapshot(roster)
    }

    /// Records the public IP and returns its UI event.
    pub fn set_public_ip(&mut self, ip: Option<String>) -> Value {
        self.public_ip = ip.clone();
        self.next(json!({"event":"public_ip","ip":ip}))
    }

    /// Everything, for the window's first paint (and after commands), with
    /// the session's `roster` (none while not joined or before the first
    /// roster). Events numbered after it may repeat what it already shows;
    /// the window applies them as set changes, so that is harmless.
    pub fn snapshot(&self, roster: Option<&Roster>) -> Value {
        let (me, members) = match (roster, self.joined) {
            (Some((me, members)), true) => (me.clone(), members.as_slice()),
            _ => (None, &[][..]),
        };
        json!({
            "seq": self.seq,
            "state": self.conn.json(),
            "me": me.as_ref().map(member_json),
            "members": members.iter().map(member_json).collect::<Vec<_>>(),
            "joined": self.joined,
            "public_ip": self.public_ip,
            "address": self.address,
            "count": members.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn m(id: &str) -> Member {
        Member {
            id: id.into(),
            info: json!({"name": format!("N{id}"), "ip": "127.0.0.1"}),
        }
    }

    fn roster(ids: &[&str]) -> Roster {
        let members: Vec<Member> = ids.iter().map(|i| m(i)).collect();
        (members.iter().find(|x| x.id == "me").cloned(), members)
    }

    #[test]
    fn follows_a_session() {
        let mut s = DesktopState::default();
        let (p, _) = s.apply(&Event::State(ConnectionState::Connected {
            socket_id: "1.1".into(),
        }));
        assert_eq!(p.unwrap()["seq"], 1);
        let (p, _) = s.apply(&Event::Snapshot {
            channel: "c".into(),
            me: Some(m("me")),
            members: vec![m("me"), m("a")],
        });
        assert_eq!(p.unwrap()["members"].as_array().unwrap().len(), 2);
        assert!(s.live());
        let added = Event::MemberAdded {
            channel: "c".into(),
            member: m("b"),
            count: 3,
        };
        let (p, n) = s.apply(&added);
        let mut p = p.unwrap();
        assert_eq!(p["count"], 3);
        assert_eq!(p.as_object_mut().unwrap().remove("seq"), Some(json!(3)));
        assert_eq!(
            p,
            serde_json::to_value(JsonEvent::from(&added)).unwrap(),
            "the window gets the JSON of whosin join --json"
        );
        assert_eq!(n, Some(Notice::Joined("Nb".into())));
        let (p, n) = s.apply(&Event::MemberRemoved {
            channel: "c".into(),
            member: m("a"),
            count: 2,
        });
        assert_eq!(p.unwrap()["member"]["info"]["name"], "Na");
        assert_eq!(n, Some(Notice::Left("Na".into())));
        let now = roster(&["b", "me"]);
        assert_eq!(
            s.names(&now.1, 10),
            vec!["Nme (you)".to_owned(), "Nb".to_owned()]
        );
        let snap = s.snapshot(Some(&now));
        assert_eq!(snap["count"], 2);
        assert_eq!(snap["me"]["id"], "me");
        assert_eq!(snap["seq"], 4);
    }

    #[test]
    fn reconnecting_keeps_the_state_and_leaving_shows_nobody() {
        let mut s = DesktopState::default();
        s.apply(&Event::Snapshot {
            channel: "c".into(),
            me: Some(m("me")),
            members: vec![m("me"), m("a")],
        });
        let (p, _) = s.apply(&Event::State(ConnectionState::Reconnecting {
            delay: Duration::from_millis(1500),
            reason: "lost".into(),
            unreachable: false,
        }));
        let p = p.unwrap();
        assert_eq!(
            (p["state"].as_str(), p["delay_ms"].as_u64()),
            (Some("reconnecting"), Some(1500))
        );
        assert!(!s.live());
        s.leave();
        let kept = roster(&["a", "me"]);
        assert_eq!(
            s.snapshot(Some(&kept))["count"],
            0,
            "not joined: nobody shown"
        );
        assert_eq!(s.snapshot(None)["state"]["state"], "left");
        assert!(!s.snapshot(None)["joined"].as_bool().unwrap());
        s.restart();
        assert!(s.joined);
        assert_eq!(s.snapshot(Some(&kept))["count"], 2);
    }

    #[test]
    fn own_arrival_is_not_a_notice_and_names_are_capped() {
        let mut s = DesktopState::default();
        s.apply(&Event::Snapshot {
            channel: "c".into(),
            me: Some(m("me")),
            members: vec![m("me")],
        });
        let ids: Vec<String> = (0..20).map(|i| format!("{i:02}")).collect();
        let mut all: Vec<&str> = ids.iter().map(String::as_str).collect();
        all.push("me");
        let r = roster(&all);
        assert_eq!(s.names(&r.1, 10).len(), 10);
        assert_eq!(s.names(&r.1, 10)[0], "Nme (you)");
        let (_, n) = s.apply(&Event::MemberRemoved {
            channel: "c".into(),
            member: m("me"),
            count: 0,
        });
        assert_eq!(n, None);
    }
}
