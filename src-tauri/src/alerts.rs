//! Alerts on a site's count: "it got busy" when the count reaches a
//! threshold, and "everyone left" when it drops to zero. Opt-in per site.
//!
//! A small state machine: an alert fires on a crossing (from below the
//! threshold to at or above it; from above zero to zero), at most once per
//! crossing — it re-arms only when the count has gone back across — and
//! not again within the cooldown, so a count hovering around the threshold
//! does not flood the desktop. The first count seen only sets the state:
//! starting the app while it is busy is not news.

use std::time::{Duration, Instant};

/// A site's alert settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rule {
    /// Notify when the count reaches this many.
    pub at_least: Option<u32>,
    /// Notify when everyone has left.
    pub when_empty: bool,
}

/// An alert to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// The count reached the threshold.
    Busy {
        /// The count now.
        count: u32,
        /// The threshold.
        threshold: u32,
    },
    /// The count dropped to zero.
    Empty,
}

impl Alert {
    /// The notification's text for a site called `site` (shown as plain
    /// text by the notification service, never as markup).
    pub fn text(&self, site: &str) -> String {
        match self {
            Alert::Busy { count, threshold } => {
                format!("{site}: {count} online (your alert is at {threshold})")
            }
            Alert::Empty => format!("{site}: everyone has left"),
        }
    }
}

/// One site's alert state.
#[derive(Debug)]
pub struct Alerts {
    rule: Rule,
    cooldown: Duration,
    last: Option<u32>,
    busy_fired: Option<Instant>,
    empty_fired: Option<Instant>,
}

impl Alerts {
    /// Alerts for `rule`, at most one per kind within `cooldown`.
    pub fn new(rule: Rule, cooldown: Duration) -> Alerts {
        Alerts {
            rule,
            cooldown,
            last: None,
            busy_fired: None,
            empty_fired: None,
        }
    }

    /// The count is now `count`: the alert to show, if any.
    pub fn observe(&mut self, count: u32, now: Instant) -> Option<Alert> {
        // The first count only sets the state.
        let before = self.last.replace(count)?;
        let cool = |fired: Option<Instant>| {
            fired.is_none_or(|t| now.saturating_duration_since(t) >= self.cooldown)
        };
        if let Some(n) = self.rule.at_least {
            if before < n && count >= n && cool(self.busy_fired) {
                self.busy_fired = Some(now);
                return Some(Alert::Busy {
                    count,
                    threshold: n,
                });
            }
        }
        if self.rule.when_empty && before > 0 && count == 0 && cool(self.empty_fired) {
            self.empty_fired = Some(now);
            return Some(Alert::Empty);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crossing_alerts_once_and_the_first_count_is_not_news() {
        let t = Instant::now();
        let mut a = Alerts::new(
            Rule {
                at_least: Some(3),
                when_empty: true,
            },
            Duration::from_secs(60),
        );
        assert_eq!(a.observe(5, t), None, "already busy at start");
        assert_eq!(a.observe(2, t), None);
        assert_eq!(
            a.observe(3, t),
            Some(Alert::Busy {
                count: 3,
                threshold: 3
            }),
            "a real crossing"
        );
    }

    #[test]
    fn crossings_alert_once_each_with_a_cooldown() {
        let t = Instant::now();
        let cooldown = Duration::from_secs(60);
        let mut a = Alerts::new(
            Rule {
                at_least: Some(3),
                when_empty: true,
            },
            cooldown,
        );
        assert_eq!(a.observe(1, t), None);
        assert_eq!(
            a.observe(3, t),
            Some(Alert::Busy {
                count: 3,
                threshold: 3
            })
        );
        assert_eq!(a.observe(4, t), None, "still above: the same crossing");
        assert_eq!(a.observe(2, t), None);
        assert_eq!(
            a.observe(3, t + Duration::from_secs(5)),
            None,
            "within the cooldown"
        );
        assert_eq!(a.observe(2, t + Duration::from_secs(61)), None);
        assert_eq!(
            a.observe(5, t + Duration::from_secs(62)),
            Some(Alert::Busy {
                count: 5,
                threshold: 3
            })
        );
        assert_eq!(
            a.observe(0, t + Duration::from_secs(63)),
            Some(Alert::Empty)
        );
        assert_eq!(a.observe(0, t + Duration::from_secs(64)), None);
        assert_eq!(a.observe(1, t + Duration::from_secs(65)), None);
        assert_eq!(a.observe(0, t + Duration::from_secs(66)), None, "cooldown");
    }

    #[test]
    fn no_rule_no_alerts_and_the_text_is_plain() {
        let t = Instant::now();
        let mut a = Alerts::new(Rule::default(), Duration::ZERO);
        for c in [0, 5, 0, 9, 0] {
            assert_eq!(a.observe(c, t), None);
        }
        assert_eq!(
            Alert::Busy {
                count: 12,
                threshold: 10
            }
            .text("<b>Shop</b>"),
            "<b>Shop</b>: 12 online (your alert is at 10)"
        );
        assert_eq!(Alert::Empty.text("Blog"), "Blog: everyone has left");
    }
}
