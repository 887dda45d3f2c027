//! Cache channels: the last event of each `cache-` channel (and its
//! private, encrypted and presence forms), replayed to each new subscriber,
//! or `pusher:cache_miss` when there is none.
//!
//! Every node records the events it delivers, whether they were published
//! here or came over the cluster bus, so a subscriber on any node gets the
//! last event published on any node while it was up. Bounded in time (an
//! event is forgotten after [`TTL`], as in Pusher) and in size
//! ([`MAX_CHANNELS`]; the oldest entry makes room).

use crate::outbox::Frame;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an event is replayed.
pub(crate) const TTL: Duration = Duration::from_secs(30 * 60);
/// Cache channels remembered at most per app.
pub(crate) const MAX_CHANNELS: usize = 10_000;

/// The last event per cache channel.
#[derive(Debug, Default)]
pub(crate) struct LastEvents {
    events: HashMap<String, (Frame, Instant)>,
}

impl LastEvents {
    /// Records `frame` as the last event of `channel`.
    pub fn record(&mut self, channel: &str, frame: &Frame) {
        let now = Instant::now();
        if !self.events.contains_key(channel) && self.events.len() >= MAX_CHANNELS {
            self.events
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < TTL);
            if self.events.len() >= MAX_CHANNELS {
                let oldest = self
                    .events
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.events.remove(&k);
                }
            }
        }
        match self.events.get_mut(channel) {
            Some(e) => *e = (frame.clone(), now),
            None => {
                self.events.insert(channel.to_owned(), (frame.clone(), now));
            }
        }
    }

    /// The last event of `channel`, if it is recent enough.
    pub fn last(&mut self, channel: &str) -> Option<Frame> {
        let (frame, at) = self.events.get(channel)?;
        if at.elapsed() < TTL {
            return Some(frame.clone());
        }
        self.events.remove(channel);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_event_and_stays_bounded() {
        let mut c = LastEvents::default();
        assert!(c.last("cache-a").is_none());
        c.record("cache-a", &Frame::from("one".to_owned()));
        c.record("cache-a", &Frame::from("two".to_owned()));
        assert_eq!(c.last("cache-a").as_deref(), Some("two"));
        for i in 0..MAX_CHANNELS + 5 {
            c.record(&format!("cache-{i}"), &Frame::from(i.to_string()));
        }
        assert!(c.events.len() <= MAX_CHANNELS);
        assert_eq!(
            c.last(&format!("cache-{}", MAX_CHANNELS + 4)).as_deref(),
            Some(format!("{}", MAX_CHANNELS + 4).as_str())
        );
    }
}
