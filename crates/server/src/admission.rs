//! Who may connect and be signed for: the limits per client address and the
//! process-wide connection cap, decided in one place before any app state
//! is touched.
//!
//! The auth endpoint signs presence for anyone on purpose, so without these
//! one address could open connections without end, or fetch signatures and
//! fill a presence channel with made-up visitors. Each address gets a
//! concurrent-connection count and two token buckets (new connections and
//! signatures per minute); the per-channel presence-user limit lives with
//! the channel (`app::channels`) and uses [`Gate::limited_key`] to know
//! which address a connection counts against.
//!
//! The limiter's own memory is bounded ([`IpLimits::max_tracked`]):
//! an address with no open connection holds only rate state, and such
//! entries are forgotten, idle ones first, when the table is full. IPv6
//! clients are keyed by their /64, the block one subscriber usually gets,
//! so that one host cannot step around its limits by changing addresses.

use crate::config::IpLimits;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Too many open connections from one address.
    Connections,
    /// Too many new connections from one address this minute.
    NewConnections,
    /// Too many signatures for one address this minute.
    Signatures,
    /// Too many presence users from one address in one channel.
    PresenceUsers,
    /// The process is at its connection cap.
    Total,
}

impl Limit {
    /// The label in `whosin_limited_total{limit="…"}`.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Connections => "connections_per_ip",
            Limit::NewConnections => "new_connections_per_ip",
            Limit::Signatures => "signatures_per_ip",
            Limit::PresenceUsers => "presence_users_per_ip",
            Limit::Total => "total_connections",
        }
    }
}

/// A refused request: what to tell the client, and when to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The limit that refused it.
    pub limit: Limit,
    /// Whole seconds until a retry can succeed (`Retry-After`).
    pub retry_after: u64,
    /// What happened and what to do, for the client.
    pub message: String,
}

/// Rate state: a token bucket of `per_minute` tokens refilled evenly.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_minute: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(per_minute),
            at: now,
        }
    }

    fn refill(&mut self, per_minute: u32, now: Instant) {
        let rate = f64::from(per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(per_minute));
        self.at = now;
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, per_minute: u32, now: Instant) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(());
        }
        self.refill(per_minute, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let rate = f64::from(per_minute) / 60.0;
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    fn is_full(&self, per_minute: u32, now: Instant) -> bool {
        let mut b = *self;
        b.refill(per_minute, now);
        b.tokens >= f64::from(per_minute)
    }
}

/// What is remembered about one address.
#[derive(Debug)]
struct Entry {
    connections: usize,
    new_connections: Bucket,
    signatures: Bucket,
    /// When a refusal was last logged for this address (once a minute).
    logged: Option<Instant>,
}

/// The per-address limits and the process-wide connection cap.
#[derive(Debug)]
pub struct Gate {
    limits: IpLimits,
    max_total: usize,
    total: AtomicUsize,
    /// When a refusal by the process's cap was last logged.
    total_logged: Mutex<Option<Instant>>,
    table: Mutex<HashMap<IpAddr, Entry>>,
    metrics: Arc<Metrics>,
}

/// Held by an admitted connection for its whole life: dropping it gives
/// back its place under the address's and the process's limits.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    key: Option<IpAddr>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(key) = self.key {
            let mut table = self.gate.table();
            if let Some(e) = table.get_mut(&key) {
                e.connections = e.connections.saturating_sub(1);
            }
        }
    }
}

impl Ticket {
    /// The address this connection counts against for the per-channel
    /// presence-user limit; `None` when it is exempt.
    pub fn key(&self) -> Option<IpAddr> {
        self.key
    }
}

/// The key an address is counted under: itself for IPv4, its /64 for IPv6.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Gate {
    /// A gate with these limits and `max_total` connections in all.
    pub fn new(limits: IpLimits, max_total: usize, metrics: Arc<Metrics>) -> Gate {
        Gate {
            limits,
            max_total,
            total: AtomicUsize::new(0),
            total_logged: Mutex::new(None),
            table: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key `ip` is limited under, or `None` when it is exempt.
    pub fn limited_key(&self, ip: IpAddr) -> Option<IpAddr> {
        (!(self.limits.exempt_loopback && ip.is_loopback())).then(|| key_of(ip))
    }

    /// Addresses remembered now (a gauge for `/metrics`).
    pub fn tracked(&self) -> usize {
        self.table().len()
    }

    /// Admits a new WebSocket connection from `ip`, or says why not.
    pub fn open(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            self.metrics.limited(Limit::Total);
            let now = Instant::now();
            let mut logged = self.total_logged.lock().unwrap_or_else(|e| e.into_inner());
            if logged.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60)) {
                *logged = Some(now);
                tracing::warn!(
                    max = self.max_total,
                    "connection refused: the server is at --max-total-connections (logged once a minute)"
                );
            }
            return Err(Refusal {
                limit: Limit::Total,
                retry_after: 5,
                message: "the server is at its connection limit; try again shortly".into(),
            });
        }
        // Made first, so that every refusal below gives its place back.
        let mut ticket = Ticket {
            gate: self.clone(),
            key: None,
        };
        let Some(key) = self.limited_key(ip) else {
            return Ok(ticket);
        };
        let now = Instant::now();
        let mut table = self.table();
        let limits = &self.limits;
        let Some(entry) = self.entry(&mut table, key, now) else {
            drop(table);
            return Err(self.refuse(ip, Limit::Connections, 5, now, None));
        };
        if limits.max_connections > 0 && entry.connections >= limits.max_connections {
            let message = format!(
                "{} connections are open from your address, the most allowed; close one first",
                limits.max_connections
            );
            return Err(self.refuse(ip, Limit::Connections, 5, now, Some((entry, message))));
        }
        if let Err(wait) = entry
            .new_connections
            .take(limits.new_connections_per_minute, now)
        {
            let message = format!(
                "over {} new connections a minute from your address; retry after {} s",
                limits.new_connections_per_minute,
                secs(wait)
            );
            return Err(self.refuse(
                ip,
                Limit::NewConnections,
                secs(wait),
                now,
                Some((entry, message)),
            ));
        }
        entry.connections += 1;
        ticket.key = Some(key);
        Ok(ticket)
    }

    /// Counts one auth-endpoint signature for `ip`, or says why not.
    pub fn sign(&self, ip: IpAddr) -> Result<(), Refusal> {
        let Some(key) = self.limited_key(ip) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut table = self.table();
        let per_minute = self.limits.signatures_per_minute;
        let Some(entry) = self.entry(&mut table, key, now) else {
            drop(table);
            return Err(self.refuse(ip, Limit::Signatures, 5, now, None));
        };
        match entry.signatures.take(per_minute, now) {
            Ok(()) => Ok(()),
            Err(wait) => {
                let message = format!(
                    "over {per_minute} signatures a minute for your address; retry after {} s",
                    secs(wait)
                );
                Err(self.refuse(
                    ip,
                    Limit::Signatures,
                    secs(wait),
                    now,
                    Some((entry, message)),
                ))
            }
        }
    }

    /// Counts and logs (once per address and minute) a refusal by a limit
    /// kept elsewhere (the presence-user limit of a channel).
    pub fn note(&self, ip: IpAddr, limit: Limit, detail: &str) {
        self.metrics.limited(limit);
        let now = Instant::now();
        let mut table = self.table();
        let log = match table.get_mut(&key_of(ip)) {
            Some(e) => Self::log_due(e, now),
            None => true,
        };
        if log {
            tracing::warn!(%ip, limit = limit.label(), "{detail}");
        }
    }

    fn log_due(e: &mut Entry, now: Instant) -> bool {
        let due = e
            .logged
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60));
        if due {
            e.logged = Some(now);
        }
        due
    }

    /// Builds a refusal, counts it, and logs it once per address and minute.
    fn refuse(
        &self,
        ip: IpAddr,
        limit: Limit,
        retry_after: u64,
        now: Instant,
        entry: Option<(&mut Entry, String)>,
    ) -> Refusal {
        self.metrics.limited(limit);
        let (log, message) = match entry {
            Some((e, m)) => (Self::log_due(e, now), m),
            None => (
                true,
                "the server is tracking too many addresses; try again shortly".to_owned(),
            ),
        };
        if log {
            tracing::warn!(%ip, limit = limit.label(), "refused: {message} (logged once a minute per address)");
        }
        Refusal {
            limit,
            retry_after: retry_after.max(1),
            message,
        }
    }

    /// The entry for `key`, made if needed. When the table is full, entries
    /// of addresses with no open connection are forgotten (idle ones, then
    /// any) until a tenth of it is free, so the sweep's cost is spread over
    /// many new addresses. `None` only if every remembered address holds a
    /// connection.
    fn entry<'t>(
        &self,
        table: &'t mut HashMap<IpAddr, Entry>,
        key: IpAddr,
        now: Instant,
    ) -> Option<&'t mut Entry> {
        let max = self.limits.max_tracked.max(1);
        if !table.contains_key(&key) && table.len() >= max {
            let l = &self.limits;
            table.retain(|_, e| {
                e.connections > 0
                    || !e.new_connections.is_full(l.new_connections_per_minute, now)
                    || !e.signatures.is_full(l.signatures_per_minute, now)
            });
            let target = max - max / 10 - 1;
            if table.len() > target {
                let mut excess = table.len() - target;
                table.retain(|_, e| {
                    if excess > 0 && e.connections == 0 {
                        excess -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
            if table.len() >= max {
                return None;
            }
        }
        Some(table.entry(key).or_insert_with(|| Entry {
            connections: 0,
            new_connections: Bucket::full(self.limits.new_connections_per_minute, now),
            signatures: Bucket::full(self.limits.signatures_per_minute, now),
            logged: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(limits: IpLimits, total: usize) -> Arc<Gate> {
        Arc::new(Gate::new(limits, total, Arc::new(Metrics::default())))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_per_address_are_capped_and_given_back() {
        let g = gate(
            IpLimits {
                max_connections: 3,
                ..IpLimits::default()
            },
            100,
        );
        let a = ip("203.0.113.1");
        let mut held: Vec<Ticket> = (0..3).map(|_| g.open(a).unwrap()).collect();
        let refused = g.open(a).unwrap_err();
        assert_eq!(refused.limit, Limit::Connections);
        // Another address is not affected.
        assert!(g.open(ip("203.0.113.2")).is_ok());
        held.pop();
        assert!(g.open(a).is_ok(), "a closed connection frees its place");
    }

    #[test]
    fn loopback_is_exempt_unless_configured() {
        let strict = IpLimits {
            max_connections: 1,
            exempt_loopback: false,
            ..IpLimits::default()
        };
        let g = gate(strict.clone(), 100);
        let _t = g.open(ip("127.0.0.1")).unwrap();
        assert!(g.open(ip("127.0.0.1")).is_err());
        let g = gate(
            IpLimits {
                exempt_loopback: true,
                ..strict
            },
            100,
        );
        let held: Vec<_> = (0..10).map(|_| g.open(ip("::1")).unwrap()).collect();
        assert!(held.iter().all(|t| t.key().is_none()));
        assert_eq!(g.tracked(), 0);
    }

    #[test]
    fn new_connections_and_signatures_are_rate_limited() {
        let g = gate(
            IpLimits {
                new_connections_per_minute: 5,
                signatures_per_minute: 2,
                ..IpLimits::default()
            },
            100,
        );
        let a = ip("198.51.100.7");
        for _ in 0..5 {
            drop(g.open(a).unwrap());
        }
        let r = g.open(a).unwrap_err();
        assert_eq!(r.limit, Limit::NewConnections);
        assert!((1..=12).contains(&r.retry_after), "{r:?}");
        assert!(g.sign(a).is_ok() && g.sign(a).is_ok());
        let r = g.sign(a).unwrap_err();
        assert_eq!(r.limit, Limit::Signatures);
        assert!((1..=30).contains(&r.retry_after), "{r:?}");
    }

    #[test]
    fn the_process_cap_counts_every_address() {
        let g = gate(IpLimits::default(), 2);
        let t1 = g.open(ip("127.0.0.1")).unwrap();
        let _t2 = g.open(ip("192.0.2.1")).unwrap();
        assert_eq!(g.open(ip("192.0.2.2")).unwrap_err().limit, Limit::Total);
        drop(t1);
        assert!(g.open(ip("192.0.2.2")).is_ok());
    }

    #[test]
    fn ipv6_is_limited_per_64() {
        let g = gate(
            IpLimits {
                max_connections: 2,
                ..IpLimits::default()
            },
            100,
        );
        let _a = g.open(ip("2001:db8:1:2::1")).unwrap();
        let _b = g.open(ip("2001:db8:1:2::ffff")).unwrap();
        assert!(g.open(ip("2001:db8:1:2:abcd::9")).is_err());
        assert!(g.open(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_addresses() {
        let g = gate(
            IpLimits {
                max_tracked: 100,
                ..IpLimits::default()
            },
            1000,
        );
        // Addresses that hold a connection are kept...
        let held: Vec<_> = (0..50)
            .map(|i| g.open(IpAddr::from([10, 0, 0, i as u8])).unwrap())
            .collect();
        // ...while a flood of signature requests from new addresses is not
        // remembered beyond the bound.
        for i in 0..10_000u32 {
            let [_, _, c, d] = i.to_be_bytes();
            g.sign(IpAddr::from([172, 16, c, d])).unwrap();
            assert!(g.tracked() <= 100);
        }
        drop(held);
        assert!(g.tracked() <= 100);
    }
}
