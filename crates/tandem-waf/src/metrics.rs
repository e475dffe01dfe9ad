//! WAF metrics with stable names:
//!
//! - `tandem_waf_evaluations_total{policy,route}`: requests evaluated,
//! - `tandem_waf_matches_total{policy,route,rule}`: rules (managed ids or custom names) that
//!   matched and log,
//! - `tandem_waf_blocks_total{policy,route,rule}`: requests refused, by the deciding rule,
//! - `tandem_waf_seconds{policy}`: time spent in the WAF per request (histogram).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    policy: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    policy: String,
    route: String,
    rule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

fn time_histogram() -> Histogram {
    Histogram::new([
        0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
        0.1,
    ])
}

/// The WAF's metrics. Cheap to clone (handles share the same counters).
#[derive(Debug, Clone)]
pub struct WafMetrics {
    evaluations: Family<RouteLabels, Counter>,
    matches: Family<RuleLabels, Counter>,
    blocks: Family<RuleLabels, Counter>,
    seconds: Family<PolicyLabels, Histogram, fn() -> Histogram>,
}

impl Default for WafMetrics {
    fn default() -> Self {
        WafMetrics {
            evaluations: Family::default(),
            matches: Family::default(),
            blocks: Family::default(),
            seconds: Family::new_with_constructor(time_histogram),
        }
    }
}

impl WafMetrics {
    /// Metrics registered in `registry` (under the `tandem_waf_` prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = WafMetrics::default();
        registry.register(
            "tandem_waf_evaluations",
            "Requests evaluated by the WAF",
            m.evaluations.clone(),
        );
        registry.register(
            "tandem_waf_matches",
            "WAF rules that matched (managed rule id or custom rule name)",
            m.matches.clone(),
        );
        registry.register(
            "tandem_waf_blocks",
            "Requests the WAF refused, by deciding rule",
            m.blocks.clone(),
        );
        registry.register(
            "tandem_waf_seconds",
            "Time spent in the WAF per request",
            m.seconds.clone(),
        );
        m
    }

    /// The evaluations counter of a (policy, route), resolved once per route.
    pub(crate) fn evaluation_counter(&self, policy: &str, route: &str) -> Counter {
        self.evaluations
            .get_or_create(&RouteLabels {
                policy: policy.to_string(),
                route: route.to_string(),
            })
            .clone()
    }

    pub(crate) fn matched(&self, policy: &str, route: &str, rule: &str) {
        self.matches
            .get_or_create(&RuleLabels {
                policy: policy.to_string(),
                route: route.to_string(),
                rule: rule.to_string(),
            })
            .inc();
    }

    pub(crate) fn blocked(&self, policy: &str, route: &str, rule: &str) {
        self.blocks
            .get_or_create(&RuleLabels {
                policy: policy.to_string(),
                route: route.to_string(),
                rule: rule.to_string(),
            })
            .inc();
    }

    /// The time histogram of a policy, resolved once per route.
    pub(crate) fn time_histogram(&self, policy: &str) -> Histogram {
        self.seconds
            .get_or_create(&PolicyLabels {
                policy: policy.to_string(),
            })
            .clone()
    }
}
