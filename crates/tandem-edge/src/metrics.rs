//! Prometheus metrics with stable names. Handles for each route and origin are created when a
//! config snapshot is built, so the request path only increments atomics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOnly {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    group: String,
    origin: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginOnly {
    group: String,
    origin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupOnly {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric of the edge.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Family<RouteLabels, Counter>,
    duration: HistFamily<RouteOnly>,
    origin_requests: Family<OriginLabels, Counter>,
    origin_healthy: Family<OriginOnly, Gauge>,
    origin_latency: Family<OriginOnly, Gauge<f64, std::sync::atomic::AtomicU64>>,
    retries: Family<GroupOnly, Counter>,
    no_origin: Family<GroupOnly, Counter>,
    /// Client connections open now.
    pub connections: Gauge,
    /// TLS handshakes that failed.
    pub tls_failures: Counter,
    cert_reloads: Family<ResultLabel, Counter>,
    /// Requests the edge refused before routing (malformed, too large).
    pub rejected: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            origin_requests: Family::default(),
            origin_healthy: Family::default(),
            origin_latency: Family::default(),
            retries: Family::default(),
            no_origin: Family::default(),
            connections: Gauge::default(),
            tls_failures: Counter::default(),
            cert_reloads: Family::default(),
            rejected: Counter::default(),
        }
    }
}

/// Status classes in the order of [`RouteMetrics::by_class`].
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Pre-resolved handles of one route.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
}

impl RouteMetrics {
    /// Count a finished request.
    pub fn observe(&self, status: u16, seconds: f64) {
        let i = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[i].inc();
        self.duration.observe(seconds);
    }
}

/// Pre-resolved handles of one origin.
#[derive(Debug, Clone)]
pub struct OriginMetrics {
    /// Answers below 500.
    pub ok: Counter,
    /// 5xx answers.
    pub status_5xx: Counter,
    /// Connect failures.
    pub connect_error: Counter,
    /// First-byte timeouts.
    pub timeout: Counter,
    /// Connections broken mid-request.
    pub broken: Counter,
    /// 1 when selectable.
    pub healthy: Gauge,
    /// Probe latency.
    pub latency: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    /// Register everything under `tandem_edge_*`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "tandem_edge_requests",
            "Requests answered, by route and status class",
            self.requests.clone(),
        );
        r.register(
            "tandem_edge_request_duration_seconds",
            "Time from request to the end of the response body, by route",
            self.duration.clone(),
        );
        r.register(
            "tandem_edge_origin_requests",
            "Attempts at origins, by outcome (ok, 5xx, connect_error, timeout, broken)",
            self.origin_requests.clone(),
        );
        r.register(
            "tandem_edge_origin_healthy",
            "1 when an origin is selectable (probe up and not ejected)",
            self.origin_healthy.clone(),
        );
        r.register(
            "tandem_edge_origin_probe_latency_seconds",
            "Smoothed active-probe latency of an origin",
            self.origin_latency.clone(),
        );
        r.register(
            "tandem_edge_retries",
            "Attempts after the first, by origin group",
            self.retries.clone(),
        );
        r.register(
            "tandem_edge_no_origin",
            "Requests answered 502/503 because no origin could take them",
            self.no_origin.clone(),
        );
        r.register(
            "tandem_edge_connections",
            "Client connections open now",
            self.connections.clone(),
        );
        r.register(
            "tandem_edge_tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            self.tls_failures.clone(),
        );
        r.register(
            "tandem_edge_cert_reloads",
            "Certificate reloads by result",
            self.cert_reloads.clone(),
        );
        r.register(
            "tandem_edge_rejected_requests",
            "Requests refused before routing (malformed framing, limits)",
            self.rejected.clone(),
        );
    }

    /// Handles for a route.
    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            by_class: CLASSES.map(|class| {
                self.requests.get_or_create_owned(&RouteLabels {
                    route: route.to_string(),
                    class,
                })
            }),
            duration: self.duration.get_or_create_owned(&RouteOnly {
                route: route.to_string(),
            }),
        }
    }

    /// Handles for an origin.
    pub fn origin(&self, group: &str, origin: &str) -> OriginMetrics {
        let c = |outcome| {
            self.origin_requests.get_or_create_owned(&OriginLabels {
                group: group.to_string(),
                origin: origin.to_string(),
                outcome,
            })
        };
        let only = OriginOnly {
            group: group.to_string(),
            origin: origin.to_string(),
        };
        OriginMetrics {
            ok: c("ok"),
            status_5xx: c("5xx"),
            connect_error: c("connect_error"),
            timeout: c("timeout"),
            broken: c("broken"),
            healthy: self.origin_healthy.get_or_create_owned(&only),
            latency: self.origin_latency.get_or_create_owned(&only),
        }
    }

    /// Retry counter of a group.
    pub fn retries(&self, group: &str) -> Counter {
        self.retries.get_or_create_owned(&GroupOnly {
            group: group.to_string(),
        })
    }

    /// No-origin counter of a group.
    pub fn no_origin(&self, group: &str) -> Counter {
        self.no_origin.get_or_create_owned(&GroupOnly {
            group: group.to_string(),
        })
    }

    /// Count a certificate reload.
    pub fn cert_reload(&self, ok: bool) {
        self.cert_reloads
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }
}
