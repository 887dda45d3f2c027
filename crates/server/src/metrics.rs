//! Process-wide counters, rendered in Prometheus text format by `/metrics`.
//!
//! Counters are plain atomics bumped on the paths that matter; gauges that
//! can be derived from state (channels, members) are computed at scrape time
//! instead of being kept in step on every change.

use crate::admission::Limit;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Frames received from clients.
    pub messages_in: AtomicU64,
    /// Frames queued to clients.
    pub messages_out: AtomicU64,
    /// Subscriptions refused for a bad or missing signature, and REST
    /// requests refused for bad authentication.
    pub auth_failures: AtomicU64,
    /// Clients closed because their outbound queue was full.
    pub slow_client_disconnects: AtomicU64,
    /// Frames from clients that could not be understood.
    pub malformed_frames: AtomicU64,
    /// REST API requests answered.
    pub rest_requests: AtomicU64,
    /// Signatures issued by `/pusher/auth`.
    pub auth_endpoint_signatures: AtomicU64,
    /// Redis operations that failed (the node served locally meanwhile).
    pub cluster_failures: AtomicU64,
    /// Operations for Redis dropped because its queue was full (events are
    /// lost to other nodes; presence is rewritten as a whole instead).
    pub cluster_shed: AtomicU64,
    /// Requests refused by a limit of [`crate::admission`], by limit (in
    /// the order of [`LIMITS`]).
    pub limited: [AtomicU64; 5],
    /// Webhook POSTs answered with success.
    pub webhook_batches_sent: AtomicU64,
    /// Webhook batches given up after their retries.
    pub webhook_batches_failed: AtomicU64,
    /// Webhook events dropped because a queue was full.
    pub webhook_events_dropped: AtomicU64,
}

/// The limits counted in `whosin_limited_total`, in the order of
/// [`Metrics::limited`].
const LIMITS: [Limit; 5] = [
    Limit::Connections,
    Limit::NewConnections,
    Limit::Signatures,
    Limit::PresenceUsers,
    Limit::Total,
];

/// Gauges computed from live state when scraped.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Open WebSocket connections.
    pub connections: u64,
    /// Occupied channels.
    pub channels: u64,
    /// Distinct users summed over presence channels.
    pub presence_members: u64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts webhook events dropped by a full queue.
    pub fn webhook_dropped(&self, n: u64) {
        self.webhook_events_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a request refused by `limit`.
    pub fn limited(&self, limit: Limit) {
        if let Some(i) = LIMITS.iter().position(|l| *l == limit) {
            Metrics::inc(&self.limited[i]);
        }
    }

    /// Prometheus text exposition of counters and gauges.
    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::with_capacity(1024);
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP whosin_{name} {help}\n# TYPE whosin_{name} gauge\nwhosin_{name} {v}"
            );
        };
        gauge("connections", "Open WebSocket connections.", g.connections);
        gauge("channels", "Occupied channels.", g.channels);
        gauge(
            "presence_members",
            "Distinct users summed over presence channels.",
            g.presence_members,
        );
        let counters = [
            (
                "connections_total",
                "Connections accepted since start.",
                &self.connections_total,
            ),
            (
                "messages_in_total",
                "Frames received from clients.",
                &self.messages_in,
            ),
            (
                "messages_out_total",
                "Frames queued to clients.",
                &self.messages_out,
            ),
            (
                "auth_failures_total",
                "Refused signatures (subscriptions and REST).",
                &self.auth_failures,
            ),
            (
                "slow_client_disconnects_total",
                "Clients closed because they could not keep up.",
                &self.slow_client_disconnects,
            ),
            (
                "malformed_frames_total",
                "Client frames that could not be understood.",
                &self.malformed_frames,
            ),
            (
                "rest_requests_total",
                "REST API requests answered.",
                &self.rest_requests,
            ),
            (
                "auth_endpoint_signatures_total",
                "Signatures issued by /pusher/auth.",
                &self.auth_endpoint_signatures,
            ),
            (
                "cluster_failures_total",
                "Redis operations that failed; the node served its own clients meanwhile.",
                &self.cluster_failures,
            ),
            (
                "webhook_batches_sent_total",
                "Webhook POSTs answered with success.",
                &self.webhook_batches_sent,
            ),
            (
                "webhook_batches_failed_total",
                "Webhook batches given up after retrying.",
                &self.webhook_batches_failed,
            ),
            (
                "webhook_events_dropped_total",
                "Webhook events dropped because a queue was full (the receiver too slow or down).",
                &self.webhook_events_dropped,
            ),
            (
                "cluster_shed_total",
                "Operations for Redis dropped by a full queue (presence is then rewritten whole).",
                &self.cluster_shed,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP whosin_{name} {help}\n# TYPE whosin_{name} counter\nwhosin_{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP whosin_limited_total Requests refused by a per-address limit or the connection cap.\n# TYPE whosin_limited_total counter"
        );
        for (limit, c) in LIMITS.iter().zip(&self.limited) {
            let _ = writeln!(
                out,
                "whosin_limited_total{{limit=\"{}\"}} {}",
                limit.label(),
                c.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series() {
        let m = Metrics::default();
        Metrics::inc(&m.messages_in);
        let text = m.render(Gauges {
            connections: 3,
            channels: 2,
            presence_members: 1,
        });
        assert!(text.contains("whosin_connections 3\n"));
        assert!(text.contains("whosin_messages_in_total 1\n"));
        assert!(text.contains("# TYPE whosin_slow_client_disconnects_total counter"));
        m.limited(Limit::Signatures);
        let text = m.render(Gauges::default());
        assert!(text.contains("whosin_limited_total{limit=\"signatures_per_ip\"} 1\n"));
        assert!(text.contains("whosin_limited_total{limit=\"total_connections\"} 0\n"));
    }
}
