//! The presence roster: a small state machine kept apart from any transport.
//!
//! Presence is per user, not per connection. A user is in the roster while at
//! least one of their connections is subscribed; [`Roster::join`] says whether
//! a join made the user appear and [`Roster::leave`] whether a leave made them
//! disappear. Those two answers are the only places `member_added` and
//! `member_removed` come from, which is what makes them exactly-once per user
//! transition however tabs and reconnects interleave.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// One present user: what they said about themselves when they first joined,
/// and the connections holding them.
#[derive(Debug, Clone)]
pub struct Member<C> {
    /// The `user_info` JSON as first given, kept encoded so it is never
    /// re-serialized per event.
    pub info: Arc<str>,
    /// This member's `"id":info` entry as it stands inside the escaped
    /// `data` string of `subscription_succeeded`; its first `id_len` bytes
    /// are the entry in `ids`. Escaped once at join, so a joiner's roster is
    /// a concatenation rather than an encoding of every member again.
    escaped: Box<str>,
    id_len: usize,
    conns: Vec<C>,
}

impl<C> Member<C> {
    /// The connections holding this user.
    pub fn connections(&self) -> &[C] {
        &self.conns
    }
}

/// What a join did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// The user was not present: announce `member_added`.
    Added,
    /// Another connection of this user was already present: say nothing.
    AlreadyPresent,
    /// This connection had already joined as this user: nothing changed.
    Duplicate,
}

/// What a leave did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leave {
    /// The user's last connection left: announce `member_removed`.
    Removed,
    /// The user still has other connections: say nothing.
    StillPresent,
    /// That connection did not hold that user: nothing changed.
    NotMember,
}

/// Users of one presence channel and the connections that hold them.
#[derive(Debug, Clone)]
pub struct Roster<C> {
    users: HashMap<Arc<str>, Member<C>>,
    connections: usize,
}

impl<C> Default for Roster<C> {
    fn default() -> Self {
        Roster {
            users: HashMap::new(),
            connections: 0,
        }
    }
}

impl<C: Eq + Hash + Clone> Roster<C> {
    /// An empty roster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of distinct users present.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no one is present.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Number of connections across all users.
    pub fn connection_count(&self) -> usize {
        self.connections
    }

    /// Whether `user_id` is present.
    pub fn contains(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    /// A present user.
    pub fn get(&self, user_id: &str) -> Option<&Member<C>> {
        self.users.get(user_id)
    }

    /// Whether a join of `user_id` fits under a cap of `max_members` users.
    /// A user who is already present always fits: a second tab is never
    /// refused by the cap.
    pub fn admits(&self, user_id: &str, max_members: usize) -> bool {
        self.contains(user_id) || self.users.len() < max_members
    }

    /// Adds connection `conn` as `user_id`. The first connection's info is kept.
    pub fn join(&mut self, user_id: &str, info: Arc<str>, conn: C) -> Join {
        if let Some(member) = self.users.get_mut(user_id) {
            if member.conns.contains(&conn) {
                return Join::Duplicate;
            }
            member.conns.push(conn);
            self.connections += 1;
            return Join::AlreadyPresent;
        }
        let (escaped, id_len) = escaped_entry(user_id, &info);
        self.users.insert(
            Arc::from(user_id),
            Member {
                info,
                escaped: escaped.into_boxed_str(),
                id_len,
                conns: vec![conn],
            },
        );
        self.connections += 1;
        Join::Added
    }

    /// Removes connection `conn` from `user_id`.
    pub fn leave(&mut self, user_id: &str, conn: &C) -> Leave {
        let Some(member) = self.users.get_mut(user_id) else {
            return Leave::NotMember;
        };
        let Some(pos) = member.conns.iter().position(|c| c == conn) else {
            return Leave::NotMember;
        };
        member.conns.swap_remove(pos);
        self.connections -= 1;
        if member.conns.is_empty() {
            self.users.remove(user_id);
            Leave::Removed
        } else {
            Leave::StillPresent
        }
    }

    /// Iterates over `(user_id, member)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Member<C>)> {
        self.users.iter().map(|(k, v)| (&**k, v))
    }

    /// The whole `pusher_internal:subscription_succeeded` frame for
    /// `channel`, from the entries escaped at join: the same text as
    /// `server::subscription_succeeded(channel, Some(&self.presence_json()))`
    /// without encoding the roster and then escaping it again.
    pub fn subscription_succeeded(&self, channel: &str) -> String {
        escaped_presence_frame(channel, || {
            self.users.values().map(|m| (&*m.escaped, m.id_len))
        })
    }

    /// The `{"presence":{"ids":[..],"hash":{..},"count":N}}` JSON of
    /// `subscription_succeeded`, built straight from the stored encodings.
    pub fn presence_json(&self) -> String {
        presence_json(self.users.iter().map(|(id, m)| (&**id, &*m.info)))
    }
}

/// The `subscription_succeeded` presence JSON for `(user_id, user_info JSON)`
/// pairs, e.g. a cluster-wide roster read from Redis.
pub fn presence_json<'a>(members: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut ids = String::from("[");
    let mut hash = String::from("{");
    let mut count = 0usize;
    for (id, info) in members {
        if count > 0 {
            ids.push(',');
            hash.push(',');
        }
        count += 1;
        let quoted = json_string(id);
        ids.push_str(&quoted);
        hash.push_str(&quoted);
        hash.push(':');
        hash.push_str(info);
    }
    ids.push(']');
    hash.push('}');
    format!(r#"{{"presence":{{"ids":{ids},"hash":{hash},"count":{count}}}}}"#)
}

/// The `subscription_succeeded` frame for `(user_id, user_info JSON)`
/// pairs, e.g. a cluster-wide roster read from Redis: each entry escaped
/// once, in one pass, the same text as encoding [`presence_json`] and
/// escaping it.
pub fn subscription_succeeded_for<'a>(
    channel: &str,
    members: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let entries: Vec<(String, usize)> = members
        .into_iter()
        .map(|(id, info)| escaped_entry(id, info))
        .collect();
    escaped_presence_frame(channel, || entries.iter().map(|(e, n)| (e.as_str(), *n)))
}

/// A member's `"id":info` entry escaped as the contents of a JSON string,
/// and the length of its `"id"` part (the member's entry in `ids`).
fn escaped_entry(user_id: &str, info: &str) -> (String, usize) {
    let mut escaped = String::new();
    escape_json_text(&mut escaped, &json_string(user_id));
    let id_len = escaped.len();
    escaped.push(':');
    escape_json_text(&mut escaped, info);
    (escaped, id_len)
}

/// Assembles a presence `subscription_succeeded` frame from escaped
/// entries; `entries` is walked twice (ids, then hash) in the same order.
fn escaped_presence_frame<'a, I>(channel: &str, entries: impl Fn() -> I) -> String
where
    I: Iterator<Item = (&'a str, usize)>,
{
    let (mut size, mut count) = (80, 0);
    for (e, id_len) in entries() {
        size += e.len() + id_len + 2;
        count += 1;
    }
    let mut data = String::with_capacity(size);
    data.push_str(r#""{\"presence\":{\"ids\":["#);
    for (i, (e, id_len)) in entries().enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str(&e[..id_len]);
    }
    data.push_str(r#"],\"hash\":{"#);
    for (i, (e, _)) in entries().enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str(e);
    }
    data.push_str(&format!(r#"}},\"count\":{count}}}}}""#));
    crate::frame::server::subscription_succeeded_quoted(channel, &data)
}

/// A string as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialize")
}

/// Appends `s` escaped as the contents of a JSON string, exactly as
/// serde_json escapes: `"` and `\`, the short forms `\b \f \n \r \t`, and
/// `\u00xx` for other control characters; everything else as is.
pub(crate) fn escape_json_text(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str(&format!("\\u{:04x}", b));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn info(s: &str) -> Arc<str> {
        Arc::from(format!(r#"{{"name":"{s}"}}"#))
    }

    #[test]
    fn first_connection_adds_last_removes() {
        let mut r = Roster::new();
        assert_eq!(r.join("u1", info("a"), 1), Join::Added);
        assert_eq!(r.join("u1", info("b"), 2), Join::AlreadyPresent);
        assert_eq!(r.join("u1", info("b"), 2), Join::Duplicate);
        assert_eq!(r.len(), 1);
        assert_eq!(r.connection_count(), 2);
        assert_eq!(&*r.get("u1").unwrap().info, r#"{"name":"a"}"#);
        assert_eq!(r.leave("u1", &1), Leave::StillPresent);
        assert_eq!(r.leave("u1", &1), Leave::NotMember);
        assert_eq!(r.leave("u2", &2), Leave::NotMember);
        assert_eq!(r.leave("u1", &2), Leave::Removed);
        assert!(r.is_empty());
        assert_eq!(r.connection_count(), 0);
    }

    #[test]
    fn cap_never_refuses_a_present_user() {
        let mut r = Roster::new();
        r.join("a", info("a"), 1);
        r.join("b", info("b"), 2);
        assert!(!r.admits("c", 2));
        assert!(r.admits("a", 2));
        assert!(r.admits("c", 3));
    }

    #[test]
    fn subscription_succeeded_from_escaped_entries_is_the_encoded_frame() {
        let ids = [
            "plain",
            "with \"quotes\"",
            "back\\slash",
            "tab\tnew\nline",
            "ctl\u{1}\u{1f}",
            "é ü 日本",
            "sl/ash",
            "del\u{7f}",
        ];
        let infos = [
            r#"{"name":"Ada"}"#,
            r#"{"name":"a \"b\" c","ip":"203.0.113.7"}"#,
            r#"{"path":"C:\\x","nl":"a\nb","u":"\u0001"}"#,
            r#"{"name":"日本","nested":{"k":[1,2,{"z":null}]}}"#,
            "null",
        ];
        let mut r = Roster::new();
        assert_eq!(
            r.subscription_succeeded("presence-x"),
            crate::frame::server::subscription_succeeded("presence-x", Some(&r.presence_json()))
        );
        for (n, id) in ids.iter().enumerate() {
            r.join(id, Arc::from(infos[n % infos.len()]), n);
            for ch in ["presence-x", "presence-\"odd\""] {
                let want =
                    crate::frame::server::subscription_succeeded(ch, Some(&r.presence_json()));
                assert_eq!(r.subscription_succeeded(ch), want, "after {id:?}");
            }
        }
        let pairs: Vec<(String, String)> = r
            .iter()
            .map(|(id, m)| (id.to_owned(), m.info.to_string()))
            .collect();
        let pairs = pairs.iter().map(|(a, b)| (a.as_str(), b.as_str()));
        assert_eq!(
            subscription_succeeded_for("presence-x", pairs.clone()),
            crate::frame::server::subscription_succeeded("presence-x", Some(&presence_json(pairs)))
        );
        r.leave("plain", &0);
        let want =
            crate::frame::server::subscription_succeeded("presence-x", Some(&r.presence_json()));
        assert_eq!(r.subscription_succeeded("presence-x"), want);
    }

    #[test]
    fn escaping_matches_serde_json_for_every_ascii_byte() {
        let all: String = (0u8..128).map(char::from).collect();
        let mut out = String::new();
        escape_json_text(&mut out, &all);
        let serde = json_string(&all);
        assert_eq!(format!("\"{out}\""), serde);
    }

    #[test]
    fn presence_json_shape() {
        let mut r = Roster::new();
        r.join("x\"y", Arc::from("null"), 1);
        let v: serde_json::Value = serde_json::from_str(&r.presence_json()).unwrap();
        assert_eq!(v["presence"]["count"], 1);
        assert_eq!(v["presence"]["ids"][0], "x\"y");
        assert!(v["presence"]["hash"]["x\"y"].is_null());
        let empty: Roster<u32> = Roster::new();
        assert_eq!(
            empty.presence_json(),
            r#"{"presence":{"ids":[],"hash":{},"count":0}}"#
        );
    }

    /// A tiny deterministic generator so the property test needs no crate and
    /// every failure names a seed that replays it.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random interleavings of joins and leaves of many connections of many
    /// users, checked against a model: `Added`/`Removed` come exactly once per
    /// user transition (absent→present, present→absent) and the final roster
    /// equals the model.
    #[test]
    fn random_interleavings_match_model() {
        for seed in 1..=300u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut roster: Roster<u32> = Roster::new();
            // Model: user -> set of connections.
            let mut model: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
            let users = 1 + rng.below(12);
            let conns = 1 + rng.below(40) as u32;
            // Which user each connection joins as (a connection holds one user).
            let owner: Vec<String> = (0..conns)
                .map(|_| format!("user-{}", rng.below(users)))
                .collect();
            let mut added: BTreeMap<String, u32> = BTreeMap::new();
            let mut removed: BTreeMap<String, u32> = BTreeMap::new();
            let mut transitions_in: BTreeMap<String, u32> = BTreeMap::new();
            let mut transitions_out: BTreeMap<String, u32> = BTreeMap::new();
            for _ in 0..(50 + rng.below(400)) {
                let c = rng.below(conns as u64) as u32;
                let user = &owner[c as usize];
                let was_present = model.get(user).is_some_and(|s| !s.is_empty());
                if rng.below(2) == 0 {
                    let res = roster.join(user, Arc::from("{}"), c);
                    let set = model.entry(user.clone()).or_default();
                    let fresh = set.insert(c);
                    match res {
                        Join::Added => *added.entry(user.clone()).or_default() += 1,
                        Join::AlreadyPresent => assert!(fresh && was_present, "seed {seed}"),
                        Join::Duplicate => assert!(!fresh, "seed {seed}"),
                    }
                    if !was_present {
                        *transitions_in.entry(user.clone()).or_default() += 1;
                    }
                } else {
                    let res = roster.leave(user, &c);
                    let held = model.get_mut(user).is_some_and(|s| s.remove(&c));
                    let now_present = model.get(user).is_some_and(|s| !s.is_empty());
                    match res {
                        Leave::Removed => {
                            assert!(held && !now_present, "seed {seed}");
                            *removed.entry(user.clone()).or_default() += 1;
                        }
                        Leave::StillPresent => assert!(held && now_present, "seed {seed}"),
                        Leave::NotMember => assert!(!held, "seed {seed}"),
                    }
                    if was_present && !now_present {
                        *transitions_out.entry(user.clone()).or_default() += 1;
                    }
                }
            }
            assert_eq!(added, transitions_in, "seed {seed}: added once per arrival");
            assert_eq!(
                removed, transitions_out,
                "seed {seed}: removed once per departure"
            );
            let expected: BTreeMap<&str, usize> = model
                .iter()
                .filter(|(_, s)| !s.is_empty())
                .map(|(u, s)| (u.as_str(), s.len()))
                .collect();
            let actual: BTreeMap<&str, usize> = roster
                .iter()
                .map(|(u, m)| (u, m.connections().len()))
                .collect();
            assert_eq!(actual, expected, "seed {seed}: final roster");
            assert_eq!(
                roster.connection_count(),
                expected.values().sum::<usize>(),
                "seed {seed}"
            );
        }
    }
}
