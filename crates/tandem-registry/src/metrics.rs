//! Prometheus metrics with stable names (`tandem_registry_*`). The registry is exposed at
//! `/metrics` on the replica's listener and can be merged into the admin API's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Endpoint kind (`manifest`, `blob`, `upload`, …).
    pub route: &'static str,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// Labels naming a peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// Peer region.
    pub peer: String,
}

/// Labels of a read-through.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadThroughLabels {
    /// `manifest` or `blob`.
    pub kind: &'static str,
    /// `hit` (served from a peer) or `miss`.
    pub result: &'static str,
}

/// Labels of a webhook delivery.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// Webhook name.
    pub webhook: String,
    /// `delivered`, `retried`, `dropped`.
    pub result: &'static str,
}

/// Every metric of a replica.
pub struct Metrics {
    /// The registry they are registered in.
    pub registry: Registry,
    /// `tandem_registry_requests_total{route,method,status}`
    pub requests: Family<RequestLabels, Counter>,
    /// `tandem_registry_request_duration_seconds{route}` (by route only, to bound cardinality)
    pub duration: Family<RouteOnly, Histogram>,
    /// `tandem_registry_received_bytes_total`
    pub bytes_in: Counter,
    /// `tandem_registry_sent_bytes_total`
    pub bytes_out: Counter,
    /// `tandem_registry_uploads_in_progress`
    pub uploads_in_progress: Gauge,
    /// `tandem_registry_replication_lag_seconds{peer}`
    pub lag_seconds: Family<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// `tandem_registry_replication_lag_changes{peer}`
    pub lag_changes: Family<PeerLabels, Gauge>,
    /// `tandem_registry_replication_applied_total{peer}`
    pub applied: Family<PeerLabels, Counter>,
    /// `tandem_registry_replication_fetched_bytes_total{peer}`
    pub fetched_bytes: Family<PeerLabels, Counter>,
    /// `tandem_registry_replication_errors_total{peer}`
    pub replication_errors: Family<PeerLabels, Counter>,
    /// `tandem_registry_read_through_total{kind,result}`
    pub read_through: Family<ReadThroughLabels, Counter>,
    /// `tandem_registry_gc_deleted_blobs_total`
    pub gc_deleted: Counter,
    /// `tandem_registry_gc_deleted_bytes_total`
    pub gc_bytes: Counter,
    /// `tandem_registry_tombstones_expired_total`
    pub tombstones_expired: Counter,
    /// `tandem_registry_webhook_deliveries_total{webhook,result}`
    pub webhooks: Family<WebhookLabels, Counter>,
}

/// Route label only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    /// Endpoint kind.
    pub route: &'static str,
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tandem_registry");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Registry API requests", requests.clone());
        let duration = Family::<RouteOnly, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 4.0, 10))
        });
        registry.register(
            "request_duration_seconds",
            "Time to the response head",
            duration.clone(),
        );
        let bytes_in = Counter::default();
        registry.register(
            "received_bytes",
            "Blob and manifest bytes received",
            bytes_in.clone(),
        );
        let bytes_out = Counter::default();
        registry.register(
            "sent_bytes",
            "Blob and manifest bytes sent",
            bytes_out.clone(),
        );
        let uploads_in_progress = Gauge::default();
        registry.register(
            "uploads_in_progress",
            "Upload requests streaming a body right now",
            uploads_in_progress.clone(),
        );
        let lag_seconds = Family::<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "replication_lag_seconds",
            "Age of the oldest change of the peer not applied here (0 when caught up)",
            lag_seconds.clone(),
        );
        let lag_changes = Family::<PeerLabels, Gauge>::default();
        registry.register(
            "replication_lag_changes",
            "Changes in the peer's log not applied here",
            lag_changes.clone(),
        );
        let applied = Family::<PeerLabels, Counter>::default();
        registry.register(
            "replication_applied",
            "Changes applied from the peer",
            applied.clone(),
        );
        let fetched_bytes = Family::<PeerLabels, Counter>::default();
        registry.register(
            "replication_fetched_bytes",
            "Content bytes fetched from the peer",
            fetched_bytes.clone(),
        );
        let replication_errors = Family::<PeerLabels, Counter>::default();
        registry.register(
            "replication_errors",
            "Failed replication rounds with the peer",
            replication_errors.clone(),
        );
        let read_through = Family::<ReadThroughLabels, Counter>::default();
        registry.register(
            "read_through",
            "Pulls of content not yet replicated, served from a peer",
            read_through.clone(),
        );
        let gc_deleted = Counter::default();
        registry.register(
            "gc_deleted_blobs",
            "Unreferenced content deleted by GC",
            gc_deleted.clone(),
        );
        let gc_bytes = Counter::default();
        registry.register("gc_deleted_bytes", "Bytes deleted by GC", gc_bytes.clone());
        let tombstones_expired = Counter::default();
        registry.register(
            "tombstones_expired",
            "Delete tombstones dropped after every replica saw them",
            tombstones_expired.clone(),
        );
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery outcomes",
            webhooks.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            bytes_in,
            bytes_out,
            uploads_in_progress,
            lag_seconds,
            lag_changes,
            applied,
            fetched_bytes,
            replication_errors,
            read_through,
            gc_deleted,
            gc_bytes,
            tombstones_expired,
            webhooks,
        }
    }

    /// Register the same metrics (shared handles) under `tandem_registry_*` in another
    /// registry, e.g. the admin API's, with a `region` label so several replicas of one process
    /// (the lab) do not collide.
    pub fn register_into(&self, registry: &mut Registry, region: &str) {
        let sub = registry.sub_registry_with_label((
            std::borrow::Cow::Borrowed("region"),
            std::borrow::Cow::Owned(region.to_string()),
        ));
        let sub = sub.sub_registry_with_prefix("tandem_registry");
        sub.register("requests", "Registry API requests", self.requests.clone());
        sub.register(
            "request_duration_seconds",
            "Time to the response head",
            self.duration.clone(),
        );
        sub.register(
            "received_bytes",
            "Blob and manifest bytes received",
            self.bytes_in.clone(),
        );
        sub.register(
            "sent_bytes",
            "Blob and manifest bytes sent",
            self.bytes_out.clone(),
        );
        sub.register(
            "uploads_in_progress",
            "Upload requests streaming a body right now",
            self.uploads_in_progress.clone(),
        );
        sub.register(
            "replication_lag_seconds",
            "Age of the oldest change of the peer not applied here (0 when caught up)",
            self.lag_seconds.clone(),
        );
        sub.register(
            "replication_lag_changes",
            "Changes in the peer's log not applied here",
            self.lag_changes.clone(),
        );
        sub.register(
            "replication_applied",
            "Changes applied from the peer",
            self.applied.clone(),
        );
        sub.register(
            "replication_fetched_bytes",
            "Content bytes fetched from the peer",
            self.fetched_bytes.clone(),
        );
        sub.register(
            "replication_errors",
            "Failed replication rounds with the peer",
            self.replication_errors.clone(),
        );
        sub.register(
            "read_through",
            "Pulls of content not yet replicated, served from a peer",
            self.read_through.clone(),
        );
        sub.register(
            "gc_deleted_blobs",
            "Unreferenced content deleted by GC",
            self.gc_deleted.clone(),
        );
        sub.register(
            "gc_deleted_bytes",
            "Bytes deleted by GC",
            self.gc_bytes.clone(),
        );
        sub.register(
            "tombstones_expired",
            "Delete tombstones dropped after every replica saw them",
            self.tombstones_expired.clone(),
        );
        sub.register(
            "webhook_deliveries",
            "Webhook delivery outcomes",
            self.webhooks.clone(),
        );
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
