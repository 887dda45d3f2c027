//! The client's side of the protocol as a pure state machine: server frames
//! and the caller's requests in, [`Output`]s (frames to send, events to
//! report, authorizations to run) out. No sockets, no clocks, no tasks: the
//! connection task (`connection`) only moves bytes and keeps the timers, so
//! everything the protocol decides is decided here and unit tested without
//! a server.
//!
//! The session outlives connections: the channels the caller wants and the
//! presence rosters are kept while reconnecting, so that a new connection
//! resubscribes everything and a fresh roster is reported as the changes it
//! brings (see [`crate::roster`]). Client frames are encoded by the protocol
//! crate (`frame::client`), and what a close code means comes from
//! `CloseCode::advice_for`, in one place: [`after_close`].

use crate::auth::{AuthError, ChannelAuth};
use crate::event::{Event, Member, StopReason};
use crate::roster::{Change, PresenceRoster, SnapshotOutcome};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use whosin_protocol::close::ReconnectAdvice;
use whosin_protocol::frame::{client, ServerFrame};
use whosin_protocol::{ChannelKind, CloseCode};

/// What the session asks of its connection task.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this text frame to the server.
    Send(String),
    /// Report this event to the caller.
    Emit(Event),
    /// Have the authorizer sign `channel` for `socket_id`, then hand the
    /// result to [`Session::authorized`].
    Authorize {
        /// The connection the signature is for.
        socket_id: String,
        /// The channel to sign.
        channel: String,
    },
}

/// What to do after a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Do not reconnect (4000–4099).
    Stop(StopReason),
    /// Reconnect: at once (4200–4299) or after a backoff (4100–4199, a
    /// lost link, anything else).
    Reconnect {
        /// Without waiting.
        immediate: bool,
        /// What happened, for the caller.
        reason: String,
    },
}

/// What a close frame (code and reason; `None` for a link lost without
/// one) means for the next attempt, by Pusher's ranges as pusher-js reads
/// them.
pub fn after_close(close: Option<(u16, &str)>) -> Next {
    let Some((code, reason)) = close else {
        return Next::Reconnect {
            immediate: false,
            reason: "closed by the server".into(),
        };
    };
    let text = format!("closed by the server ({code}: {reason})");
    match CloseCode::advice_for(code) {
        ReconnectAdvice::Stop => Next::Stop(match code {
            4001 => StopReason::UnknownAppKey(reason.to_owned()),
            4004 => StopReason::OverQuota(reason.to_owned()),
            4009 => StopReason::Unauthorized(reason.to_owned()),
            _ => StopReason::Refused {
                code,
                reason: reason.to_owned(),
            },
        }),
        ReconnectAdvice::Immediately => Next::Reconnect {
            immediate: true,
            reason: text,
        },
        ReconnectAdvice::Backoff => Next::Reconnect {
            immediate: false,
            reason: text,
        },
    }
}

/// One client's protocol state across connections.
///
/// ```
/// use whosin_client::{Event, Output, Session};
///
/// let mut session = Session::new(false);
/// session.subscribe("news");
/// // Connected: the session asks for the subscribe frame to be sent.
/// let out = session.connected("123.456");
/// assert!(matches!(&out[..], [Output::Send(frame)] if frame.contains("pusher:subscribe")));
/// // The server confirms: the session reports it.
/// let out = session.on_frame(
///     r#"{"event":"pusher_internal:subscription_succeeded","channel":"news","data":"{}"}"#,
/// );
/// assert_eq!(out, [Output::Emit(Event::Subscribed { channel: "news".into() })]);
/// ```
#[derive(Debug, Default)]
pub struct Session {
    /// Channels the caller wants, subscribed again on every connection.
    wanted: BTreeSet<String>,
    /// The current connection's socket id; `None` while not connected.
    socket_id: Option<String>,
    /// Presence channels' members as last known (kept while reconnecting).
    rosters: HashMap<String, PresenceRoster>,
    /// Whether private and presence channels can be signed at all.
    has_authorizer: bool,
}

impl Session {
    /// A session that wants nothing yet; `has_authorizer` says whether
    /// private and presence subscriptions can be signed.
    pub fn new(has_authorizer: bool) -> Session {
        Session {
            has_authorizer,
            ..Session::default()
        }
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        self.socket_id.is_some()
    }

    /// A connection is up with `socket_id`: every wanted channel is
    /// subscribed again.
    pub fn connected(&mut self, socket_id: &str) -> Vec<Output> {
        self.socket_id = Some(socket_id.to_owned());
        let wanted: Vec<String> = self.wanted.iter().cloned().collect();
        wanted.iter().flat_map(|ch| self.start(ch)).collect()
    }

    /// The connection is gone; rosters are kept until the next snapshot.
    pub fn disconnected(&mut self) {
        self.socket_id = None;
    }

    /// The caller wants `channel` (now, and after every reconnect).
    pub fn subscribe(&mut self, channel: &str) -> Vec<Output> {
        if !self.wanted.insert(channel.to_owned()) || !self.is_connected() {
            return Vec::new();
        }
        self.start(channel)
    }

    /// The caller leaves `channel`.
    pub fn unsubscribe(&mut self, channel: &str) -> Vec<Output> {
        if !self.wanted.remove(channel) {
            return Vec::new();
        }
        self.rosters.remove(channel);
        if self.is_connected() {
            vec![Output::Send(client::unsubscribe(channel))]
        } else {
            Vec::new()
        }
    }

    /// A client event (`client-` is prepended when missing). Dropped when
    /// not connected: Pusher does not queue client events either.
    pub fn trigger(&self, channel: &str, event: &str, data: &Value) -> Vec<Output> {
        if !self.is_connected() {
            tracing::warn!(%channel, %event, "client event dropped: not connected");
            return Vec::new();
        }
        let event = if event.starts_with("client-") {
            event.to_owned()
        } else {
            format!("client-{event}")
        };
        vec![Output::Send(client::event(
            &event,
            channel,
            &data.to_string(),
        ))]
    }

    /// Subscribes at once (public) or asks for a signature.
    fn start(&mut self, channel: &str) -> Vec<Output> {
        let Some(socket_id) = self.socket_id.clone() else {
            return Vec::new();
        };
        if !ChannelKind::of(channel).needs_auth() {
            return vec![Output::Send(client::subscribe(channel, None, None))];
        }
        if !self.has_authorizer {
            return vec![Output::Emit(Event::SubscriptionFailed {
                channel: channel.to_owned(),
                status: None,
                message: AuthError::NoAuthorizer(channel.to_owned()).to_string(),
            })];
        }
        vec![Output::Authorize {
            socket_id,
            channel: channel.to_owned(),
        }]
    }

    /// The authorizer's answer for `channel` on connection `socket_id`.
    /// Answers for an earlier connection, or a channel no longer wanted,
    /// are dropped.
    pub fn authorized(
        &mut self,
        socket_id: &str,
        channel: &str,
        result: Result<ChannelAuth, AuthError>,
    ) -> Vec<Output> {
        if self.socket_id.as_deref() != Some(socket_id) || !self.wanted.contains(channel) {
            return Vec::new();
        }
        match result {
            Ok(auth) => {
                if let Some(data) = &auth.channel_data {
                    // An observer is never in the roster: it has no "me".
                    let me = serde_json::from_str::<Value>(data)
                        .ok()
                        .filter(|v| v["observer"] != Value::Bool(true))
                        .and_then(|v| match &v["user_id"] {
                            Value::String(s) => Some(s.clone()),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        });
                    self.rosters
                        .entry(channel.to_owned())
                        .or_insert_with(|| PresenceRoster::new(None))
                        .me = me;
                }
                vec![Output::Send(client::subscribe(
                    channel,
                    Some(&auth.auth),
                    auth.channel_data.as_deref(),
                ))]
            }
            Err(e) => {
                let status = match &e {
                    AuthError::Refused { status, .. } => Some(*status),
                    _ => None,
                };
                tracing::warn!(%channel, error = %e, "authorization failed");
                vec![Output::Emit(Event::SubscriptionFailed {
                    channel: channel.to_owned(),
                    status,
                    message: e.to_string(),
                })]
            }
        }
    }

    /// One text frame from the server.
    pub fn on_frame(&mut self, text: &str) -> Vec<Output> {
        let frame = match ServerFrame::parse(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "ignoring a frame we do not understand");
                return Vec::new();
            }
        };
        let emit = |e: Event| vec![Output::Emit(e)];
        match frame {
            ServerFrame::Ping => vec![Output::Send(client::pong())],
            ServerFrame::Pong | ServerFrame::ConnectionEstablished { .. } => Vec::new(),
            ServerFrame::SubscriptionSucceeded {
                channel,
                members: None,
            } => emit(Event::Subscribed { channel }),
            ServerFrame::SubscriptionSucceeded {
                channel,
                members: Some(list),
            } => self.on_snapshot(channel, list),
            ServerFrame::SubscriptionError {
                channel,
                status,
                error,
            } => emit(Event::SubscriptionFailed {
                channel,
                status: (status != 0).then_some(status),
                message: error,
            }),
            ServerFrame::MemberAdded {
                channel,
                user_id,
                user_info,
            } => {
                let info = serde_json::from_str(&user_info).unwrap_or(Value::Null);
                let Some(r) = self.rosters.get_mut(&channel) else {
                    return Vec::new();
                };
                match r.add(&user_id, info) {
                    Some(member) => emit(Event::MemberAdded {
                        count: r.len(),
                        channel,
                        member,
                    }),
                    None => Vec::new(),
                }
            }
            ServerFrame::MemberRemoved { channel, user_id } => {
                let Some(r) = self.rosters.get_mut(&channel) else {
                    return Vec::new();
                };
                match r.remove(&user_id) {
                    Some(member) => emit(Event::MemberRemoved {
                        count: r.len(),
                        channel,
                        member,
                    }),
                    None => Vec::new(),
                }
            }
            ServerFrame::Error { code, message } => emit(Event::ServerError { code, message }),
            ServerFrame::Event {
                event,
                channel: Some(channel),
                data,
                user_id,
            } => emit(Event::Message {
                channel,
                event,
                data,
                user_id,
            }),
            ServerFrame::Event { channel: None, .. } => Vec::new(),
        }
    }

    /// A presence roster from `subscription_succeeded` (each member's info
    /// as the JSON text the frame carries).
    fn on_snapshot(&mut self, channel: String, list: Vec<(String, String)>) -> Vec<Output> {
        let fresh = list
            .into_iter()
            .map(|(id, info)| (id, serde_json::from_str(&info).unwrap_or(Value::Null)));
        self.roster(channel, fresh)
    }

    /// Everyone present in a presence channel now, however it was learnt
    /// (a `subscription_succeeded`, or a REST API's user list): the first
    /// roster is reported whole, a later one as the changes it brings,
    /// counts stepping through them.
    pub fn roster(
        &mut self,
        channel: String,
        fresh: impl IntoIterator<Item = (String, Value)>,
    ) -> Vec<Output> {
        let roster = self
            .rosters
            .entry(channel.clone())
            .or_insert_with(|| PresenceRoster::new(None));
        match roster.apply_snapshot(fresh) {
            SnapshotOutcome::First(members) => vec![Output::Emit(Event::Snapshot {
                me: roster.me(),
                channel,
                members,
            })],
            SnapshotOutcome::Reconciled(changes) => {
                // Before the changes there were len + removed - added.
                let removed = changes
                    .iter()
                    .filter(|c| matches!(c, Change::Removed(_)))
                    .count();
                let mut count = roster.len() + removed - (changes.len() - removed);
                changes
                    .into_iter()
                    .map(|change| {
                        Output::Emit(match change {
                            Change::Removed(member) => {
                                count -= 1;
                                Event::MemberRemoved {
                                    channel: channel.clone(),
                                    member,
                                    count,
                                }
                            }
                            Change::Added(member) => {
                                count += 1;
                                Event::MemberAdded {
                                    channel: channel.clone(),
                                    member,
                                    count,
                                }
                            }
                        })
                    })
                    .collect()
            }
        }
    }

    /// How many are in a presence channel as last known, without copying
    /// the members.
    pub fn count(&self, channel: &str) -> Option<usize> {
        self.rosters.get(channel).map(PresenceRoster::len)
    }

    /// `(me, members)` of a presence channel as last known.
    pub fn members(&self, channel: &str) -> Option<(Option<Member>, Vec<Member>)> {
        let r = self.rosters.get(channel)?;
        Some((r.me(), r.members()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use whosin_protocol::frame::server;
    use whosin_protocol::roster::subscription_succeeded_for;
    use whosin_protocol::ClientFrame;

    fn sent(out: &[Output]) -> Vec<ClientFrame> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(t) => Some(ClientFrame::parse(t).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn events(out: Vec<Output>) -> Vec<Event> {
        out.into_iter()
            .filter_map(|o| match o {
                Output::Emit(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn member(id: &str) -> Member {
        Member {
            id: id.into(),
            info: json!({"name": id}),
        }
    }

    fn roster_frame(channel: &str, ids: &[&str]) -> String {
        let infos: Vec<(String, String)> = ids
            .iter()
            .map(|i| (i.to_string(), json!({"name": i}).to_string()))
            .collect();
        subscription_succeeded_for(channel, infos.iter().map(|(a, b)| (a.as_str(), b.as_str())))
    }

    fn signed(me: &str) -> ChannelAuth {
        ChannelAuth {
            auth: "k:sig".into(),
            channel_data: Some(json!({"user_id": me, "user_info": {"name": me}}).to_string()),
        }
    }

    /// A session connected as `1.1` and joined to `presence-x` as `me`,
    /// with the first roster `ids` applied.
    fn joined(me: &str, ids: &[&str]) -> Session {
        let mut s = Session::new(true);
        s.subscribe("presence-x");
        s.connected("1.1");
        s.authorized("1.1", "presence-x", Ok(signed(me)));
        s.on_frame(&roster_frame("presence-x", ids));
        s
    }

    #[test]
    fn connecting_subscribes_every_wanted_channel_and_signs_private_ones() {
        let mut s = Session::new(true);
        assert!(
            s.subscribe("news").is_empty(),
            "nothing is sent before a connection"
        );
        s.subscribe("presence-x");
        let out = s.connected("1.1");
        assert_eq!(
            sent(&out),
            vec![ClientFrame::Subscribe(whosin_protocol::SubscribeData {
                channel: "news".into(),
                auth: None,
                channel_data: None
            })]
        );
        assert!(out.contains(&Output::Authorize {
            socket_id: "1.1".into(),
            channel: "presence-x".into()
        }));
        let out = s.authorized("1.1", "presence-x", Ok(signed("me")));
        let ClientFrame::Subscribe(sub) = &sent(&out)[0] else {
            panic!("{out:?}")
        };
        assert_eq!(sub.auth.as_deref(), Some("k:sig"));
        assert!(sub
            .channel_data
            .as_deref()
            .unwrap()
            .contains(r#""user_id":"me""#));
        assert!(s.subscribe("news").is_empty(), "already wanted");
    }

    #[test]
    fn signatures_for_an_earlier_connection_or_a_channel_left_are_dropped() {
        let mut s = Session::new(true);
        s.subscribe("presence-x");
        s.connected("1.1");
        s.disconnected();
        s.connected("1.2");
        assert!(s
            .authorized("1.1", "presence-x", Ok(signed("me")))
            .is_empty());
        s.unsubscribe("presence-x");
        assert!(s
            .authorized("1.2", "presence-x", Ok(signed("me")))
            .is_empty());
    }

    #[test]
    fn refusals_are_reported_with_their_status() {
        let mut s = Session::new(false);
        s.subscribe("private-a");
        assert!(matches!(
            &events(s.connected("1.1"))[..],
            [Event::SubscriptionFailed { status: None, .. }]
        ));
        let mut s = Session::new(true);
        s.subscribe("private-a");
        s.connected("1.1");
        let refused = AuthError::Refused {
            channel: "private-a".into(),
            status: 403,
            message: "no".into(),
        };
        assert!(matches!(
            &events(s.authorized("1.1", "private-a", Err(refused)))[..],
            [Event::SubscriptionFailed {
                status: Some(403),
                ..
            }]
        ));
        let error = server::subscription_error("private-a", 401, "bad signature");
        assert!(matches!(
            &events(s.on_frame(&error))[..],
            [Event::SubscriptionFailed {
                status: Some(401),
                ..
            }]
        ));
    }

    #[test]
    fn the_first_roster_is_a_snapshot_with_me_then_members_come_and_go() {
        let mut s = Session::new(true);
        s.subscribe("presence-x");
        s.connected("1.1");
        s.authorized("1.1", "presence-x", Ok(signed("me")));
        assert_eq!(
            events(s.on_frame(&roster_frame("presence-x", &["a", "me"]))),
            vec![Event::Snapshot {
                channel: "presence-x".into(),
                me: Some(member("me")),
                members: vec![member("a"), member("me")],
            }]
        );
        let added = server::member_added("presence-x", "b", r#"{"name":"b"}"#);
        assert_eq!(
            events(s.on_frame(&added)),
            vec![Event::MemberAdded {
                channel: "presence-x".into(),
                member: member("b"),
                count: 3
            }]
        );
        assert!(s.on_frame(&added).is_empty(), "a duplicate is not reported");
        let removed = server::member_removed("presence-x", "a");
        assert_eq!(
            events(s.on_frame(&removed)),
            vec![Event::MemberRemoved {
                channel: "presence-x".into(),
                member: member("a"),
                count: 2
            }]
        );
        assert!(
            s.on_frame(&removed).is_empty(),
            "nor a removal of someone absent"
        );
        assert_eq!(s.members("presence-x").unwrap().1.len(), 2);
        assert_eq!(s.count("presence-x"), Some(2));
        assert_eq!(s.count("presence-other"), None);
    }

    #[test]
    fn a_reconnect_reports_who_left_and_who_came_while_away() {
        let mut s = joined("me", &["a", "b", "me"]);
        s.disconnected();
        assert!(!s.is_connected() && s.members("presence-x").unwrap().1.len() == 3);
        let out = s.connected("1.2");
        assert!(out.contains(&Output::Authorize {
            socket_id: "1.2".into(),
            channel: "presence-x".into()
        }));
        s.authorized("1.2", "presence-x", Ok(signed("me")));
        assert_eq!(
            events(s.on_frame(&roster_frame("presence-x", &["b", "c", "me"]))),
            vec![
                Event::MemberRemoved {
                    channel: "presence-x".into(),
                    member: member("a"),
                    count: 2
                },
                Event::MemberAdded {
                    channel: "presence-x".into(),
                    member: member("c"),
                    count: 3
                },
            ]
        );
        assert!(
            events(s.on_frame(&roster_frame("presence-x", &["b", "c", "me"]))).is_empty(),
            "the same roster again changes nothing"
        );
    }

    #[test]
    fn an_observer_of_a_user_with_many_tabs_sees_them_once() {
        // A server that (wrongly) announces every tab: each repeat is dropped.
        let mut s = joined("obs", &["obs"]);
        let tab = server::member_added("presence-x", "u", r#"{"name":"u"}"#);
        let seen: Vec<Event> = (0..5).flat_map(|_| events(s.on_frame(&tab))).collect();
        assert_eq!(seen.len(), 1);
        let gone = server::member_removed("presence-x", "u");
        let seen: Vec<Event> = (0..5).flat_map(|_| events(s.on_frame(&gone))).collect();
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn pings_are_answered_events_reported_and_client_events_sent_only_when_connected() {
        let mut s = Session::new(true);
        assert!(s.trigger("private-a", "typing", &json!({})).is_empty());
        s.connected("1.1");
        assert_eq!(sent(&s.on_frame(&server::ping())), vec![ClientFrame::Pong]);
        let ev = server::event("news", "n", whosin_protocol::frame::Data::Str("hi"), None);
        assert!(
            matches!(&events(s.on_frame(&ev))[..], [Event::Message { data, .. }] if data == "hi")
        );
        assert_eq!(
            sent(&s.trigger("private-a", "typing", &json!({"on": true}))),
            vec![ClientFrame::ClientEvent {
                event: "client-typing".into(),
                channel: "private-a".into(),
                data: r#"{"on":true}"#.into()
            }]
        );
        assert!(s.on_frame("not json").is_empty());
    }

    #[test]
    fn leaving_a_channel_forgets_its_roster() {
        let mut s = joined("me", &["me"]);
        assert_eq!(
            sent(&s.unsubscribe("presence-x")),
            vec![ClientFrame::Unsubscribe {
                channel: "presence-x".into()
            }]
        );
        assert!(s.members("presence-x").is_none());
        assert!(s.unsubscribe("presence-x").is_empty());
    }

    #[test]
    fn every_close_code_class() {
        let stop = |c: u16| after_close(Some((c, "why")));
        assert_eq!(
            stop(4001),
            Next::Stop(StopReason::UnknownAppKey("why".into()))
        );
        assert_eq!(stop(4004), Next::Stop(StopReason::OverQuota("why".into())));
        assert_eq!(
            stop(4009),
            Next::Stop(StopReason::Unauthorized("why".into()))
        );
        assert_eq!(
            stop(4050),
            Next::Stop(StopReason::Refused {
                code: 4050,
                reason: "why".into()
            })
        );
        for (code, immediate) in [
            (4100, false),
            (4199, false),
            (4200, true),
            (4201, true),
            (4301, false),
            (1006, false),
            (1000, false),
        ] {
            assert!(
                matches!(after_close(Some((code, "x"))), Next::Reconnect { immediate: i, .. } if i == immediate),
                "{code}"
            );
        }
        assert!(matches!(
            after_close(None),
            Next::Reconnect {
                immediate: false,
                ..
            }
        ));
    }
}
