//! The presence model: who is in a presence channel, decided in one place.
//!
//! Presence is per user, not per connection. A user is present while at
//! least one *holder* holds them: on one node a holder is a connection; in a
//! cluster a node's mirror also counts the other nodes that hold the user.
//! Every decision returns the [`Change`] it made — [`Change::Added`] when a
//! user appears, [`Change::Removed`] when the last holder lets go — and
//! nothing else announces presence, which is what makes `member_added` and
//! `member_removed` exactly-once per user transition however tabs,
//! reconnects and nodes interleave. The member cap is part of the join: a
//! join that does not fit is refused with [`Full`], and a user who is already
//! present always fits (a second tab is never refused).
//!
//! The model is pure (no I/O, no clocks) and knows nothing about frames: the
//! server turns changes into frames, and keeps its own wire cache beside it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// A change in who is present, with the member it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The user was absent and is now present.
    Added {
        /// The user.
        user_id: Arc<str>,
        /// Their `user_info` JSON, as first given.
        info: Arc<str>,
    },
    /// The user's last holder let go.
    Removed {
        /// The user.
        user_id: Arc<str>,
        /// Their `user_info` JSON, as it was while present.
        info: Arc<str>,
    },
}

impl Change {
    /// The user the change is about.
    pub fn user_id(&self) -> &str {
        match self {
            Change::Added { user_id, .. } | Change::Removed { user_id, .. } => user_id,
        }
    }
}

/// A join refused by the member cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the channel is full: it holds the maximum of {max} members")]
pub struct Full {
    /// The cap that was reached.
    pub max: usize,
}

/// One present user: what they said about themselves when they first joined,
/// and who holds them.
#[derive(Debug, Clone)]
struct Entry<H> {
    info: Arc<str>,
    /// Almost always one or two (tabs, nodes): a vector beats a set here.
    holders: Vec<H>,
}

/// The users of one presence channel and the holders that keep them present.
#[derive(Debug, Clone)]
pub struct Presence<H> {
    users: HashMap<Arc<str>, Entry<H>>,
    holds: usize,
}

impl<H> Default for Presence<H> {
    fn default() -> Self {
        Presence {
            users: HashMap::new(),
            holds: 0,
        }
    }
}

impl<H: Eq + Hash + Clone> Presence<H> {
    /// No one present.
    pub fn new() -> Self {
        Self::default()
    }

    /// Distinct users present.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no one is present.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Holds across all users (connections, and nodes in a mirror).
    pub fn hold_count(&self) -> usize {
        self.holds
    }

    /// Whether `user_id` is present.
    pub fn contains(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    /// A present user's info.
    pub fn info(&self, user_id: &str) -> Option<&Arc<str>> {
        self.users.get(user_id).map(|e| &e.info)
    }

    /// Who holds a present user (empty when absent).
    pub fn holders(&self, user_id: &str) -> &[H] {
        self.users.get(user_id).map_or(&[], |e| &e.holders)
    }

    /// Whether `holder` holds `user_id`.
    pub fn holds(&self, user_id: &str, holder: &H) -> bool {
        self.holders(user_id).contains(holder)
    }

    /// `holder` takes `user_id`. `Ok(Some(Added))` when the user appears,
    /// `Ok(None)` when they were already present (another holder, or this
    /// one again), `Err(Full)` when a new user would exceed `max` users.
    /// The first holder's info is kept.
    pub fn join(
        &mut self,
        user_id: &str,
        info: Arc<str>,
        holder: H,
        max: usize,
    ) -> Result<Option<Change>, Full> {
        if let Some(entry) = self.users.get_mut(user_id) {
            if !entry.holders.contains(&holder) {
                entry.holders.push(holder);
                self.holds += 1;
            }
            return Ok(None);
        }
        if self.users.len() >= max {
            return Err(Full { max });
        }
        let user_id: Arc<str> = Arc::from(user_id);
        self.users.insert(
            user_id.clone(),
            Entry {
                info: info.clone(),
                holders: vec![holder],
            },
        );
        self.holds += 1;
        Ok(Some(Change::Added { user_id, info }))
    }

    /// `holder` lets go of `user_id`: `Some(Removed)` when it was the last.
    pub fn leave(&mut self, user_id: &str, holder: &H) -> Option<Change> {
        let entry = self.users.get_mut(user_id)?;
        let pos = entry.holders.iter().position(|h| h == holder)?;
        entry.holders.swap_remove(pos);
        self.holds -= 1;
        if !entry.holders.is_empty() {
            return None;
        }
        let (user_id, entry) = self.users.remove_entry(user_id)?;
        Some(Change::Removed {
            user_id,
            info: entry.info,
        })
    }

    /// `holder` lets go of every user (a node found dead): the removals,
    /// in no particular order.
    pub fn release(&mut self, holder: &H) -> Vec<Change> {
        let held: Vec<Arc<str>> = self
            .users
            .iter()
            .filter(|(_, e)| e.holders.contains(holder))
            .map(|(u, _)| u.clone())
            .collect();
        held.iter().filter_map(|u| self.leave(u, holder)).collect()
    }

    /// `(user_id, info)` of everyone present, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>)> {
        self.users.iter().map(|(k, e)| (k, &e.info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn info(s: &str) -> Arc<str> {
        Arc::from(format!(r#"{{"name":"{s}"}}"#))
    }

    fn added(u: &str, i: &str) -> Option<Change> {
        Some(Change::Added {
            user_id: Arc::from(u),
            info: info(i),
        })
    }

    #[test]
    fn first_holder_adds_last_removes() {
        let mut p = Presence::new();
        assert_eq!(p.join("u1", info("a"), 1, 10), Ok(added("u1", "a")));
        assert_eq!(p.join("u1", info("b"), 2, 10), Ok(None));
        assert_eq!(
            p.join("u1", info("b"), 2, 10),
            Ok(None),
            "same holder again"
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p.hold_count(), 2);
        assert_eq!(&**p.info("u1").unwrap(), r#"{"name":"a"}"#);
        assert_eq!(p.leave("u1", &1), None);
        assert_eq!(p.leave("u1", &1), None, "not a holder any more");
        assert_eq!(p.leave("u2", &2), None, "never present");
        assert_eq!(
            p.leave("u1", &2),
            Some(Change::Removed {
                user_id: Arc::from("u1"),
                info: info("a")
            })
        );
        assert!(p.is_empty());
        assert_eq!(p.hold_count(), 0);
    }

    #[test]
    fn the_cap_refuses_new_users_but_never_a_present_one() {
        let mut p = Presence::new();
        p.join("a", info("a"), 1, 2).unwrap();
        p.join("b", info("b"), 2, 2).unwrap();
        assert_eq!(p.join("c", info("c"), 3, 2), Err(Full { max: 2 }));
        assert_eq!(p.join("a", info("a"), 4, 2), Ok(None), "a second tab fits");
        assert_eq!(p.len(), 2);
        assert!(!p.contains("c"));
        assert_eq!(p.join("c", info("c"), 3, 3), Ok(added("c", "c")));
    }

    #[test]
    fn release_removes_only_users_held_by_nobody_else() {
        let mut p: Presence<&str> = Presence::new();
        p.join("a", info("a"), "n1", usize::MAX).unwrap();
        p.join("b", info("b"), "n1", usize::MAX).unwrap();
        p.join("b", info("b"), "n2", usize::MAX).unwrap();
        p.join("c", info("c"), "n2", usize::MAX).unwrap();
        let mut gone: Vec<String> = p
            .release(&"n1")
            .iter()
            .map(|c| c.user_id().to_owned())
            .collect();
        gone.sort();
        assert_eq!(gone, ["a"]);
        assert_eq!(p.holders("b"), ["n2"]);
        assert!(
            p.release(&"n1").is_empty(),
            "releasing twice changes nothing"
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

    /// Random interleavings of joins, leaves and releases of many holders of
    /// many users under a random cap, checked against a reference: `Added` /
    /// `Removed` come exactly once per user transition (absent→present,
    /// present→absent), refusals exactly when a new user would pass the cap,
    /// and the final state equals the reference.
    #[test]
    fn random_interleavings_match_the_reference() {
        for seed in 1..=400u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut p: Presence<u32> = Presence::new();
            // Reference: user -> set of holders.
            let mut model: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
            let users = 1 + rng.below(12);
            let holders = 1 + rng.below(40) as u32;
            let max = 1 + rng.below(users + 2) as usize;
            let mut changes: BTreeMap<String, (u32, u32)> = BTreeMap::new();
            let mut transitions: BTreeMap<String, (u32, u32)> = BTreeMap::new();
            for _ in 0..(50 + rng.below(400)) {
                let h = rng.below(holders as u64) as u32;
                let user = format!("user-{}", rng.below(users));
                let present = |m: &BTreeMap<String, BTreeSet<u32>>, u: &str| {
                    m.get(u).is_some_and(|s| !s.is_empty())
                };
                let before: BTreeSet<String> = model
                    .iter()
                    .filter(|(_, s)| !s.is_empty())
                    .map(|(u, _)| u.clone())
                    .collect();
                let got = match rng.below(9) {
                    0..=3 => {
                        let fits = present(&model, &user) || before.len() < max;
                        let r = p.join(&user, Arc::from("{}"), h, max);
                        assert_eq!(r.is_ok(), fits, "seed {seed}: refusal iff over the cap");
                        if fits {
                            model.entry(user.clone()).or_default().insert(h);
                        }
                        r.ok().flatten().into_iter().collect::<Vec<_>>()
                    }
                    4..=7 => {
                        if let Some(s) = model.get_mut(&user) {
                            s.remove(&h);
                        }
                        p.leave(&user, &h).into_iter().collect()
                    }
                    _ => {
                        for s in model.values_mut() {
                            s.remove(&h);
                        }
                        p.release(&h)
                    }
                };
                let after: BTreeSet<String> = model
                    .iter()
                    .filter(|(_, s)| !s.is_empty())
                    .map(|(u, _)| u.clone())
                    .collect();
                for u in after.difference(&before) {
                    transitions.entry(u.clone()).or_default().0 += 1;
                }
                for u in before.difference(&after) {
                    transitions.entry(u.clone()).or_default().1 += 1;
                }
                for c in got {
                    let t = changes.entry(c.user_id().to_owned()).or_default();
                    match c {
                        Change::Added { .. } => t.0 += 1,
                        Change::Removed { .. } => t.1 += 1,
                    }
                }
                assert!(p.len() <= max, "seed {seed}: cap exceeded");
            }
            assert_eq!(
                changes, transitions,
                "seed {seed}: one change per transition"
            );
            let expected: BTreeMap<&str, usize> = model
                .iter()
                .filter(|(_, s)| !s.is_empty())
                .map(|(u, s)| (u.as_str(), s.len()))
                .collect();
            let actual: BTreeMap<&str, usize> =
                p.iter().map(|(u, _)| (&**u, p.holders(u).len())).collect();
            assert_eq!(actual, expected, "seed {seed}: final state");
            assert_eq!(
                p.hold_count(),
                expected.values().sum::<usize>(),
                "seed {seed}"
            );
        }
    }
}
