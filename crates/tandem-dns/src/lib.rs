//! Tandem's global traffic manager: an authoritative DNS server for the configured zones that
//! answers profile names from live endpoint health.
//!
//! This crate owns the DNS side of failover: the wire protocol for an authoritative server
//! ([`wire`], pure functions over bytes), the catalog of zones, names and profiles compiled
//! from config, the routing methods (priority, weighted, performance, geographic, multivalue,
//! subnet, nested profiles), and the server (UDP worker threads, TCP tasks, reload, graceful
//! shutdown) with its metrics and admin API. Health comes from `tandem-probe`; where clients
//! are from `tandem-geo`.
//!
//! It does not own probing, config parsing or the process (signals, logging): the `tandem`
//! binary wires those.

mod admin;
mod catalog;
mod handler;
mod metrics;
mod route;
mod server;
pub mod wire;

pub use admin::DnsStatus;
pub use metrics::DnsMetrics;
pub use server::{DnsError, DnsServer, Listeners};
