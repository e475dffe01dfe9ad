//! The edge's state as JSON for the admin API (`/api/v1/edge`) and `tandem status`.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::Inner;

/// The whole edge.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeStatus {
    /// The region this edge serves.
    pub region: String,
    /// Certificates in service.
    pub certificates: usize,
    /// Routes.
    pub routes: Vec<String>,
    /// Origin groups.
    pub groups: Vec<GroupStatus>,
}

/// One origin group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    /// Name.
    pub name: String,
    /// Whether any enabled origin is healthy.
    pub healthy: bool,
    /// Origins.
    pub origins: Vec<OriginStatus>,
}

/// One origin.
#[derive(Debug, Clone, Serialize)]
pub struct OriginStatus {
    /// Name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Region.
    pub region: Option<String>,
    /// Configured priority.
    pub priority: u8,
    /// Selection tier after `local_first` (lower is preferred).
    pub tier: u16,
    /// Weight.
    pub weight: u32,
    /// Enabled in config.
    pub enabled: bool,
    /// Selectable now: probe up and not ejected.
    pub healthy: bool,
    /// The active probe's verdict.
    pub probe_up: bool,
    /// Ejected by passive health, and for how many more milliseconds.
    pub ejected_ms: Option<u64>,
    /// Smoothed probe latency in milliseconds.
    pub latency_ms: Option<f64>,
    /// The last probe error.
    pub last_probe_error: Option<String>,
    /// Requests sent (attempts).
    pub requests: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Attempts in flight.
    pub in_flight: i64,
}

pub(crate) fn collect(inner: &Inner) -> EdgeStatus {
    let snap = inner.snapshot.load();
    let now = inner.clock.now_ms();
    EdgeStatus {
        region: inner.region.clone(),
        certificates: inner.resolver.len(),
        routes: snap.routes.iter().map(|r| r.name.clone()).collect(),
        groups: snap
            .groups
            .iter()
            .map(|g| GroupStatus {
                name: g.name.clone(),
                healthy: g.any_healthy(now),
                origins: g
                    .origins
                    .iter()
                    .map(|o| {
                        let h = &o.health;
                        let until = h.ejected_until_ms.load(Ordering::Relaxed);
                        let lat = h.latency_us();
                        OriginStatus {
                            name: o.cfg.name.clone(),
                            address: o.cfg.address.clone(),
                            region: o.cfg.region.clone(),
                            priority: o.cfg.priority,
                            tier: o.tier,
                            weight: o.cfg.weight,
                            enabled: o.cfg.enabled,
                            healthy: o.cfg.enabled && h.healthy(now),
                            probe_up: h.probe_up(),
                            ejected_ms: (until > now).then(|| until - now),
                            latency_ms: (lat > 0).then(|| lat as f64 / 1000.0),
                            last_probe_error: h.last_probe_error(),
                            requests: h.requests.load(Ordering::Relaxed),
                            failures: h.failures.load(Ordering::Relaxed),
                            in_flight: h.in_flight.load(Ordering::Relaxed),
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}
