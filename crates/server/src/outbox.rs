//! A connection's outbound side as the rest of the server sees it.
//!
//! Anyone may queue a frame for a connection without waiting: the queue is
//! bounded, and a connection whose queue is full is told to close (4100) and
//! counted as a slow client. That is what keeps one stalled reader from
//! growing memory or slowing a broadcast to everyone else.
//!
//! The queue is bounded twice: in frames, and in bytes (a frame's length
//! counts in every queue that holds it, even though the bytes are shared:
//! the bound is about what the client owes, so a client that asks for the
//! same 600 kB roster again and again without reading is closed after a few
//! dozen, whatever the sharing saves). A single frame larger than the byte
//! bound still goes to an empty queue, so a big roster is never refused.
//!
//! The queue is a plain `VecDeque` behind a mutex that is only ever held
//! for a push or a drain, with one `Notify` for both "frames are waiting"
//! and "close now". An idle connection's mailbox holds no allocation beyond
//! itself: the queue is allocated by the first frame and given back after a
//! burst.

use crate::metrics::Metrics;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use whosin_protocol::CloseCode;

/// An encoded frame. Cloning shares the bytes, so a broadcast encodes once.
pub type Frame = Arc<str>;

/// Queue capacity kept after a drain; a larger queue (left by a burst) is
/// given back.
const KEEP_QUEUE_CAPACITY: usize = 16;

/// Queued frames and their total length.
#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Frame>,
    bytes: usize,
}

/// The shared state behind an [`Outbox`], read by its connection task.
#[derive(Debug)]
pub struct Mailbox {
    queue: Mutex<Queue>,
    capacity: usize,
    max_bytes: usize,
    close_code: AtomicU16,
    notify: Notify,
    metrics: Arc<Metrics>,
}

impl Mailbox {
    /// Waits until frames are queued or a close is requested. A wake-up can
    /// find nothing to do; callers check both after it.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// The requested close code, once a close was asked for.
    pub fn close_requested(&self) -> Option<u16> {
        match self.close_code.load(Ordering::Acquire) {
            0 => None,
            c => Some(c),
        }
    }

    /// Requests a close with `code`; the first request wins and is the only
    /// one that returns `true`.
    pub fn close(&self, code: CloseCode) -> bool {
        let first = self
            .close_code
            .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            self.notify.notify_one();
        }
        first
    }

    /// Moves up to `max` queued frames into `into`, oldest first.
    pub fn drain_into(&self, into: &mut Vec<Frame>, max: usize) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let n = q.frames.len().min(max);
        let start = into.len();
        into.extend(q.frames.drain(..n));
        q.bytes -= into[start..].iter().map(|f| f.len()).sum::<usize>();
        if q.frames.is_empty() && q.frames.capacity() > KEEP_QUEUE_CAPACITY {
            q.frames = VecDeque::new();
        }
    }

    /// Whether frames are waiting.
    pub fn has_frames(&self) -> bool {
        !self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .frames
            .is_empty()
    }
}

/// The handle to one connection's outbound queue.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// Internal connection number, unique within the process.
    pub id: u64,
    /// The socket id the client was given.
    pub socket_id: Arc<str>,
    mailbox: Arc<Mailbox>,
}

impl Outbox {
    /// A new outbox and the mailbox its connection task reads, bounded to
    /// `capacity` frames (and no bound in bytes; see [`Outbox::with_bounds`]).
    pub fn new(
        id: u64,
        socket_id: Arc<str>,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Outbox, Arc<Mailbox>) {
        Outbox::with_bounds(id, socket_id, capacity, usize::MAX, metrics)
    }

    /// A new outbox bounded to `capacity` frames and `max_bytes` bytes.
    pub fn with_bounds(
        id: u64,
        socket_id: Arc<str>,
        capacity: usize,
        max_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> (Outbox, Arc<Mailbox>) {
        let mailbox = Arc::new(Mailbox {
            queue: Mutex::new(Queue::default()),
            capacity,
            max_bytes,
            close_code: AtomicU16::new(0),
            notify: Notify::new(),
            metrics,
        });
        (
            Outbox {
                id,
                socket_id,
                mailbox: mailbox.clone(),
            },
            mailbox,
        )
    }

    /// Queues a frame without waiting. A full queue marks the client as too
    /// slow and asks its task to close it. Frames for a connection that is
    /// closing are dropped.
    pub fn send(&self, frame: Frame) {
        let m = &*self.mailbox;
        if m.close_requested().is_some() {
            return;
        }
        // Some(was_empty) when queued.
        let queued = {
            let mut q = m.queue.lock().unwrap_or_else(|e| e.into_inner());
            let fits = q.frames.is_empty()
                || (q.frames.len() < m.capacity
                    && q.bytes.saturating_add(frame.len()) <= m.max_bytes);
            fits.then(|| {
                q.bytes += frame.len();
                q.frames.push_back(frame);
                q.frames.len() == 1
            })
        };
        if let Some(was_empty) = queued {
            Metrics::inc(&m.metrics.messages_out);
            // Only the first frame needs a wake-up: the task looks at the
            // queue again before it waits, so later ones are found then.
            // (This keeps a burst from waking a task stuck in a write.)
            if was_empty {
                m.notify.notify_one();
            }
        } else if m.close(CloseCode::OverCapacity) {
            Metrics::inc(&m.metrics.slow_client_disconnects);
        }
    }

    /// Asks the connection to close with `code`.
    pub fn close(&self, code: CloseCode) {
        self.mailbox.close(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_closes_once_and_drops_the_rest() {
        let metrics = Arc::new(Metrics::default());
        let (out, mb) = Outbox::new(1, Arc::from("1.1"), 2, metrics.clone());
        for i in 0..5 {
            out.send(Frame::from(i.to_string()));
        }
        assert_eq!(mb.close_requested(), Some(CloseCode::OverCapacity.code()));
        assert_eq!(metrics.slow_client_disconnects.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.messages_out.load(Ordering::Relaxed), 2);
        let mut got = Vec::new();
        mb.drain_into(&mut got, 10);
        assert_eq!(got, vec![Frame::from("0"), Frame::from("1")]);
    }

    #[test]
    fn drains_in_order_in_batches_and_gives_back_a_burst() {
        let (out, mb) = Outbox::new(1, Arc::from("1.1"), 1000, Arc::default());
        for i in 0..100 {
            out.send(Frame::from(i.to_string()));
        }
        let mut got = Vec::new();
        mb.drain_into(&mut got, 64);
        assert_eq!(got.len(), 64);
        assert!(mb.has_frames());
        mb.drain_into(&mut got, 64);
        assert_eq!(got.len(), 100);
        assert!(got.iter().enumerate().all(|(i, f)| **f == *i.to_string()));
        assert!(!mb.has_frames());
        assert_eq!(mb.queue.lock().unwrap().frames.capacity(), 0);
        assert_eq!(mb.queue.lock().unwrap().bytes, 0);
    }

    #[test]
    fn the_byte_bound_closes_a_client_that_owes_too_much_but_admits_one_big_frame() {
        let metrics = Arc::new(Metrics::default());
        let (out, mb) = Outbox::with_bounds(1, Arc::from("1.1"), 100, 10, metrics.clone());
        out.send(Frame::from("x".repeat(25)));
        assert_eq!(
            mb.close_requested(),
            None,
            "one frame over the bound still goes"
        );
        let mut got = Vec::new();
        mb.drain_into(&mut got, 10);
        out.send(Frame::from("abcd"));
        out.send(Frame::from("efgh"));
        assert_eq!(mb.close_requested(), None, "8 bytes fit in 10");
        out.send(Frame::from("ijkl"));
        assert_eq!(mb.close_requested(), Some(CloseCode::OverCapacity.code()));
        assert_eq!(metrics.slow_client_disconnects.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_send_wakes_a_waiting_task() {
        let (out, mb) = Outbox::new(1, Arc::from("1.1"), 10, Arc::default());
        let waiter = tokio::spawn({
            let mb = mb.clone();
            async move {
                while !mb.has_frames() {
                    mb.changed().await;
                }
            }
        });
        out.send(Frame::from("x"));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
    }
}
