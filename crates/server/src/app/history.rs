//! Count history: each presence channel's member count at one-minute
//! resolution over the last 24 hours — the peak and the last value of each
//! minute in which the count changed.
//!
//! Recorded where the presence core's changes are announced, so it cannot
//! disagree with what clients were told; in a cluster every node's mirror
//! sees every change, and the leader also keeps the minutes in Redis, so a
//! node that starts later serves the day it missed. Bounded: 1440 minutes
//! per channel, and at most [`MAX_CHANNELS`] channels per app (the channel
//! changed longest ago makes room). A minute without a point had no change:
//! its count is the last one before it.

use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};

/// Minutes kept.
pub const MINUTES: u64 = 24 * 60;
/// Presence channels tracked per app.
pub const MAX_CHANNELS: usize = 1000;

/// One minute of a channel's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Point {
    /// Unix time of the minute's start, in seconds.
    pub t: u64,
    /// The highest count in that minute.
    pub peak: usize,
    /// The count at the minute's end (or now, for the current minute).
    pub last: usize,
}

/// The minutes of every tracked channel.
#[derive(Debug, Default)]
pub(crate) struct History {
    series: HashMap<String, VecDeque<Point>>,
    /// Minutes (channel, minute) changed since the leader last saved them:
    /// every one, so a save round that spans a minute boundary keeps the
    /// earlier minute's final peak and value too.
    unsaved: HashSet<(String, u64)>,
}

/// The current Unix minute's start, in seconds.
pub fn this_minute() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    secs - secs % 60
}

impl History {
    /// Records that `channel` now has `count` members, at minute `t`.
    pub fn record(&mut self, channel: &str, count: usize, t: u64) {
        if !self.series.contains_key(channel) && self.series.len() >= MAX_CHANNELS {
            let stalest = self
                .series
                .iter()
                .min_by_key(|(_, s)| s.back().map_or(0, |p| p.t))
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                self.series.remove(&k);
                self.unsaved.retain(|(c, _)| *c != k);
            }
        }
        let s = self.series.entry(channel.to_owned()).or_default();
        match s.back_mut() {
            Some(p) if p.t == t => {
                p.peak = p.peak.max(count);
                p.last = count;
            }
            _ => s.push_back(Point {
                t,
                peak: count,
                last: count,
            }),
        }
        while s.front().is_some_and(|p| p.t + MINUTES * 60 <= t) {
            s.pop_front();
        }
        self.unsaved.insert((channel.to_owned(), t));
    }

    /// The points of `channel` within the last 24 hours of `now`.
    pub fn points(&self, channel: &str, now: u64) -> Vec<Point> {
        self.series.get(channel).map_or_else(Vec::new, |s| {
            s.iter()
                .filter(|p| p.t + MINUTES * 60 > now)
                .copied()
                .collect()
        })
    }

    /// Every minute changed since the last call, with its point.
    pub fn take_unsaved(&mut self) -> Vec<(String, Point)> {
        let keys: Vec<(String, u64)> = self.unsaved.drain().collect();
        keys.into_iter()
            .filter_map(|(n, t)| {
                let p = *self.series.get(&n)?.iter().rev().find(|p| p.t == t)?;
                Some((n, p))
            })
            .collect()
    }
}

/// `mine` completed with what `stored` (read back from Redis) knows, in
/// time order: minutes only Redis has are added; for a minute both have,
/// the peak is the higher one (a node that started mid-minute saw only part
/// of it) and the last value is this node's (its own, newer).
pub fn merge(mine: Vec<Point>, stored: Vec<Point>, now: u64) -> Vec<Point> {
    let mut by_t: std::collections::BTreeMap<u64, Point> = stored
        .into_iter()
        .filter(|p| p.t + MINUTES * 60 > now)
        .map(|p| (p.t, p))
        .collect();
    for p in mine {
        let merged = match by_t.get(&p.t) {
            Some(s) => Point {
                peak: p.peak.max(s.peak),
                ..p
            },
            None => p,
        };
        by_t.insert(p.t, merged);
    }
    by_t.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_keeps_its_peak_and_last_value() {
        let mut h = History::default();
        let t0 = 1_000_020 * 60;
        for c in [1, 5, 3] {
            h.record("presence-a", c, t0);
        }
        h.record("presence-a", 2, t0 + 60);
        assert_eq!(
            h.points("presence-a", t0 + 60),
            vec![
                Point {
                    t: t0,
                    peak: 5,
                    last: 3
                },
                Point {
                    t: t0 + 60,
                    peak: 2,
                    last: 2
                }
            ]
        );
        let mut unsaved = h.take_unsaved();
        unsaved.sort_by_key(|(_, p)| p.t);
        assert_eq!(
            unsaved,
            vec![
                (
                    "presence-a".into(),
                    Point {
                        t: t0,
                        peak: 5,
                        last: 3
                    }
                ),
                (
                    "presence-a".into(),
                    Point {
                        t: t0 + 60,
                        peak: 2,
                        last: 2
                    }
                ),
            ],
            "both minutes, the earlier one with its final values"
        );
        assert!(h.take_unsaved().is_empty());
    }

    #[test]
    fn only_the_last_day_is_kept() {
        let mut h = History::default();
        let t0 = 60 * 60 * 24 * 1000;
        h.record("presence-a", 1, t0);
        h.record("presence-a", 2, t0 + 60 * (MINUTES - 1));
        assert_eq!(h.points("presence-a", t0 + 60 * (MINUTES - 1)).len(), 2);
        h.record("presence-a", 3, t0 + 60 * MINUTES);
        let p = h.points("presence-a", t0 + 60 * MINUTES);
        assert_eq!(p.first().map(|p| p.last), Some(2), "{p:?}");
        assert!(h.series["presence-a"].len() <= MINUTES as usize);
    }

    #[test]
    fn channels_are_bounded_and_stored_minutes_fill_the_gaps() {
        let mut h = History::default();
        for i in 0..MAX_CHANNELS + 10 {
            h.record(&format!("presence-{i}"), 1, 60 * (i as u64 + 1));
        }
        assert_eq!(h.series.len(), MAX_CHANNELS);
        assert!(
            h.points("presence-0", 60 * 2000).is_empty(),
            "the stalest went"
        );
        let now = 60 * 10;
        let mine = vec![Point {
            t: 60 * 9,
            peak: 4,
            last: 4,
        }];
        let stored = vec![
            Point {
                t: 60 * 8,
                peak: 2,
                last: 1,
            },
            Point {
                t: 60 * 9,
                peak: 9,
                last: 9,
            },
        ];
        assert_eq!(
            merge(mine, stored, now),
            vec![
                Point {
                    t: 60 * 8,
                    peak: 2,
                    last: 1
                },
                Point {
                    t: 60 * 9,
                    peak: 9,
                    last: 4
                }
            ]
        );
    }
}
