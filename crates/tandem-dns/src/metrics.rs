//! DNS metrics with stable names. Counter handles are resolved when the catalog is built, so
//! the query path increments an atomic and never looks a label set up.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The rcodes counted, in index order.
pub(crate) const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS",
];

/// Index into [`RCODES`] for a (possibly extended) rcode.
pub(crate) fn rcode_index(rcode: u16) -> usize {
    match rcode {
        0..=5 => rcode as usize,
        _ => 6,
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    profile: String,
    rcode: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    profile: String,
    endpoint: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// All DNS metrics.
#[derive(Debug, Clone, Default)]
pub struct DnsMetrics {
    queries: Family<QueryLabels, Counter>,
    answers: Family<AnswerLabels, Counter>,
    pub(crate) truncated: Counter,
    dropped: Family<ReasonLabels, Counter>,
    pub(crate) tcp_connections: Gauge,
    reloads: Family<ResultLabels, Counter>,
}

impl DnsMetrics {
    /// Create and register under `tandem_dns_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = DnsMetrics::default();
        let r = registry.sub_registry_with_prefix("tandem_dns");
        r.register(
            "queries",
            "Queries answered, by profile (empty for other names) and rcode",
            m.queries.clone(),
        );
        r.register(
            "answers",
            "Times an endpoint was included in an answer (traffic share)",
            m.answers.clone(),
        );
        r.register(
            "truncated",
            "UDP answers truncated (TC) so the client retries over TCP",
            m.truncated.clone(),
        );
        r.register(
            "dropped",
            "Packets dropped without an answer, by reason",
            m.dropped.clone(),
        );
        r.register(
            "tcp_connections",
            "Open TCP connections",
            m.tcp_connections.clone(),
        );
        r.register(
            "reloads",
            "Configuration reloads, by result",
            m.reloads.clone(),
        );
        m
    }

    pub(crate) fn query_counters(&self, profile: &str) -> Box<[Counter]> {
        RCODES
            .iter()
            .map(|rc| {
                self.queries
                    .get_or_create(&QueryLabels {
                        profile: profile.to_string(),
                        rcode: rc,
                    })
                    .clone()
            })
            .collect()
    }

    pub(crate) fn answer_counter(&self, profile: &str, endpoint: &str) -> Counter {
        self.answers
            .get_or_create(&AnswerLabels {
                profile: profile.to_string(),
                endpoint: endpoint.to_string(),
            })
            .clone()
    }

    pub(crate) fn dropped(&self, reason: &'static str) -> Counter {
        self.dropped.get_or_create(&ReasonLabels { reason }).clone()
    }

    /// Count a reload attempt.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }
}
