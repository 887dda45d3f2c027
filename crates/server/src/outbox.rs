//! A connection's outbound side as the rest of the server sees it.
//!
//! Anyone may queue a frame for a connection without waiting: the queue is
//! bounded, and a connection whose queue is full is told to close (4100) and
//! counted as a slow client. That is what keeps one stalled reader from
//! growing memory or slowing a broadcast to everyone else.

use crate::metrics::Metrics;
use axum::extract::ws::Utf8Bytes;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};
use whosin_protocol::CloseCode;

/// An encoded frame. Cloning shares the bytes, so a broadcast encodes once.
pub type Frame = Utf8Bytes;

/// Asks a connection task to close with a code.
#[derive(Debug, Default)]
pub struct Kill {
    code: AtomicU16,
    notify: Notify,
}

impl Kill {
    /// Requests a close with `code`; the first request wins and is the only
    /// one that returns `true`.
    pub fn close(&self, code: CloseCode) -> bool {
        let first = self
            .code
            .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            self.notify.notify_one();
        }
        first
    }

    /// Waits until a close is requested and returns its code.
    pub async fn requested(&self) -> u16 {
        loop {
            let c = self.code.load(Ordering::Acquire);
            if c != 0 {
                return c;
            }
            self.notify.notified().await;
        }
    }
}

/// The handle to one connection's outbound queue.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// Internal connection number, unique within the process.
    pub id: u64,
    /// The socket id the client was given.
    pub socket_id: Arc<str>,
    tx: mpsc::Sender<Frame>,
    kill: Arc<Kill>,
    metrics: Arc<Metrics>,
}

impl Outbox {
    /// A new outbox and the receiving end for the connection task.
    pub fn new(
        id: u64,
        socket_id: Arc<str>,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Outbox, mpsc::Receiver<Frame>, Arc<Kill>) {
        let (tx, rx) = mpsc::channel(capacity);
        let kill = Arc::new(Kill::default());
        (
            Outbox {
                id,
                socket_id,
                tx,
                kill: kill.clone(),
                metrics,
            },
            rx,
            kill,
        )
    }

    /// Queues a frame without waiting. A full queue marks the client as too
    /// slow and asks its task to close it.
    pub fn send(&self, frame: Frame) {
        match self.tx.try_send(frame) {
            Ok(()) => Metrics::inc(&self.metrics.messages_out),
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.kill.close(CloseCode::OverCapacity) {
                    Metrics::inc(&self.metrics.slow_client_disconnects);
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Asks the connection to close with `code`.
    pub fn close(&self, code: CloseCode) {
        self.kill.close(code);
    }
}
