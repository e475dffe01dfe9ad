//! Every policy of a `[waf]` section, compiled once and shared by the edge's workers.
//! Policies with the same managed rules (CRS copy, extra files, response inspection) share
//! one compiled [`RuleSet`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tandem_config::waf::{WafConfig, WafMode};

use crate::metrics::WafMetrics;
use crate::policy::{GeoLookup, Policy, PolicyError, load_managed_rules};
use crate::ruleset::RuleSet;

/// The compiled policies, by name.
#[derive(Debug, Default, Clone)]
pub struct WafPolicies {
    by_name: HashMap<String, Arc<Policy>>,
}

impl WafPolicies {
    /// Compile every policy of `cfg`. Loading CRS takes about half a second per distinct
    /// rule set; call this off the async runtime (`spawn_blocking`) when reloading.
    pub fn compile(
        cfg: &WafConfig,
        geo: Option<Arc<dyn GeoLookup>>,
        metrics: &WafMetrics,
    ) -> Result<WafPolicies, PolicyError> {
        let mut shared: HashMap<(PathBuf, Vec<PathBuf>, bool), Arc<RuleSet>> = HashMap::new();
        let mut by_name = HashMap::new();
        for p in &cfg.policies {
            let rules = match &p.crs {
                Some(dir) if p.mode != WafMode::Off => {
                    let key = (dir.clone(), p.rules_files.clone(), p.inspect_response_body);
                    match shared.get(&key) {
                        Some(r) => Some(r.clone()),
                        None => {
                            if !dir.exists() {
                                return Err(PolicyError::MissingCrs {
                                    policy: p.name.clone(),
                                    crs: dir.display().to_string(),
                                });
                            }
                            let rs = Arc::new(
                                load_managed_rules(dir, &p.rules_files, p.inspect_response_body)
                                    .map_err(|source| PolicyError::Rules {
                                        policy: p.name.clone(),
                                        crs: dir.display().to_string(),
                                        source,
                                    })?,
                            );
                            shared.insert(key, rs.clone());
                            Some(rs)
                        }
                    }
                }
                _ => None,
            };
            let policy = Policy::compile(p, geo.clone(), rules, metrics.clone())?;
            by_name.insert(p.name.clone(), Arc::new(policy));
        }
        Ok(WafPolicies { by_name })
    }

    /// A policy by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Policy>> {
        self.by_name.get(name)
    }

    /// Policy names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Status for the admin API: per policy, its mode and rule counts.
    pub fn status(&self) -> serde_json::Value {
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort();
        serde_json::Value::Array(
            names
                .into_iter()
                .filter_map(|n| self.by_name.get(n))
                .map(|p| {
                    serde_json::json!({
                        "policy": p.name(),
                        "mode": p.mode(),
                        "managed_rules": p.rules().map_or(0, |r| r.rule_count()),
                        "request_body_limit": p.request_body_limit(),
                    })
                })
                .collect(),
        )
    }
}
