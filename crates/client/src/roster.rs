//! The client's view of one presence channel, and reconciliation after a
//! reconnect.
//!
//! While the connection is down the last known roster is kept (the app goes
//! on showing it, marked as reconnecting). When the subscription succeeds
//! again, the fresh roster is compared with it and only the difference is
//! reported: whoever left meanwhile is removed, whoever came is added, and
//! nobody is added twice.

use crate::event::Member;
use serde_json::Value;
use std::collections::BTreeMap;

/// A change to report.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Someone present now who was not before.
    Added(Member),
    /// Someone gone who was present before.
    Removed(Member),
}

/// What applying a `subscription_succeeded` roster produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotOutcome {
    /// The first roster ever: report it whole.
    First(Vec<Member>),
    /// A roster after a reconnect: report only the changes.
    Reconciled(Vec<Change>),
}

/// Members of one presence channel, by id.
#[derive(Debug, Clone, Default)]
pub struct PresenceRoster {
    members: BTreeMap<String, Value>,
    /// The user id this client joined as, when known.
    pub me: Option<String>,
    seen_snapshot: bool,
}

impl PresenceRoster {
    /// An empty roster that has not seen a snapshot yet.
    pub fn new(me: Option<String>) -> PresenceRoster {
        PresenceRoster {
            members: BTreeMap::new(),
            me,
            seen_snapshot: false,
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members sorted by id.
    pub fn members(&self) -> Vec<Member> {
        self.members
            .iter()
            .map(|(id, info)| Member {
                id: id.clone(),
                info: info.clone(),
            })
            .collect()
    }

    /// This client's own member, if present.
    pub fn me(&self) -> Option<Member> {
        let id = self.me.as_ref()?;
        self.members.get(id).map(|info| Member {
            id: id.clone(),
            info: info.clone(),
        })
    }

    /// Replaces the roster with a fresh one from `subscription_succeeded`.
    pub fn apply_snapshot(
        &mut self,
        fresh: impl IntoIterator<Item = (String, Value)>,
    ) -> SnapshotOutcome {
        let fresh: BTreeMap<String, Value> = fresh.into_iter().collect();
        let old = std::mem::replace(&mut self.members, fresh);
        if !self.seen_snapshot {
            self.seen_snapshot = true;
            return SnapshotOutcome::First(self.members());
        }
        let mut changes = Vec::new();
        for (id, info) in &old {
            if !self.members.contains_key(id) {
                changes.push(Change::Removed(Member {
                    id: id.clone(),
                    info: info.clone(),
                }));
            }
        }
        for (id, info) in &self.members {
            if !old.contains_key(id) {
                changes.push(Change::Added(Member {
                    id: id.clone(),
                    info: info.clone(),
                }));
            }
        }
        SnapshotOutcome::Reconciled(changes)
    }

    /// A `member_added`; `None` when the member was already known (a
    /// duplicate is never reported).
    pub fn add(&mut self, id: &str, info: Value) -> Option<Member> {
        if self.members.contains_key(id) {
            return None;
        }
        self.members.insert(id.to_owned(), info.clone());
        Some(Member {
            id: id.to_owned(),
            info,
        })
    }

    /// A `member_removed`; `None` when the member was not known.
    pub fn remove(&mut self, id: &str) -> Option<Member> {
        self.members.remove(id).map(|info| Member {
            id: id.to_owned(),
            info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(ids: &[&str]) -> Vec<(String, Value)> {
        ids.iter()
            .map(|i| (i.to_string(), json!({"name": i})))
            .collect()
    }

    #[test]
    fn first_snapshot_then_diffs() {
        let mut r = PresenceRoster::new(Some("me".into()));
        let SnapshotOutcome::First(all) = r.apply_snapshot(m(&["me", "a", "b"])) else {
            panic!()
        };
        assert_eq!(all.len(), 3);
        assert_eq!(r.me().unwrap().id, "me");
        // While away: a left, c came.
        let SnapshotOutcome::Reconciled(ch) = r.apply_snapshot(m(&["me", "b", "c"])) else {
            panic!()
        };
        assert_eq!(
            ch,
            vec![
                Change::Removed(Member {
                    id: "a".into(),
                    info: json!({"name":"a"})
                }),
                Change::Added(Member {
                    id: "c".into(),
                    info: json!({"name":"c"})
                }),
            ]
        );
        // Nothing changed: nothing reported.
        assert_eq!(
            r.apply_snapshot(m(&["me", "b", "c"])),
            SnapshotOutcome::Reconciled(vec![])
        );
    }

    #[test]
    fn duplicates_are_not_reported() {
        let mut r = PresenceRoster::new(None);
        r.apply_snapshot(m(&["a"]));
        assert!(r.add("a", json!(null)).is_none());
        assert!(r.add("b", json!(null)).is_some());
        assert!(r.remove("c").is_none());
        assert_eq!(r.remove("b").unwrap().id, "b");
        assert!(r.remove("b").is_none());
        assert_eq!(r.len(), 1);
    }
}
