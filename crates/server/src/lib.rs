//! whosin's Pusher-compatible server.
//!
//! One concern per module, in the manner of mini-redis:
//! * [`admission`] — limits per client address, the process's connection cap.
//! * [`config`] — apps, limits, timings; TOML file loading.
//! * [`server`] — binding, routing, lifetime and graceful shutdown.
//! * [`shared`] — what every request and connection shares.
//! * [`connection`] — one WebSocket connection's task.
//! * [`outbox`] — a connection's bounded outbound queue.
//! * [`app`] — one app's channels, subscribers and presence members.
//! * [`backplane`] — what the nodes of a cluster share: local, or Redis.
//! * [`rest`] — the signed REST API.
//! * [`auth_endpoint`] and [`identity`] — `/pusher/auth`, names and IPs;
//!   [`cors`] — which other sites' pages may read its answers.
//! * [`metrics`] — counters for `/metrics`.
//! * [`web`] — the visitor page at `/` (the shared `ui/`) and the one-line
//!   embed at `/whosin.js`.
//! * [`webhooks`] — events for the site's backend, batched and retried.
//! * [`tls`] — the certificate for `https://` and `wss://`, reloaded on SIGHUP.

pub mod admission;
pub mod app;
pub mod auth_endpoint;
pub mod backplane;
pub mod config;
pub mod connection;
pub mod cors;
pub mod identity;
pub mod metrics;
pub mod outbox;
pub mod rest;
pub mod server;
pub mod shared;
pub mod tls;
pub mod web;
pub mod webhooks;
pub mod ws;

pub use config::{AppConfig, ServerConfig, TlsFiles};
pub use server::{start, Running, StartError};
