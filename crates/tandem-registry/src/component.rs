//! The registry as a `tandem-admin` component: replication status as JSON and tables, and a
//! per-repository view under `/api/v1/registry/repositories?name=<repo>`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use tandem_admin::{Component, Table};

use crate::core::Core;
use crate::replication::ReplicationState;

type Replicas = Arc<Vec<(Arc<Core>, Arc<ReplicationState>)>>;

/// One or more replicas of this process, as one admin component.
pub struct RegistryComponent {
    pub(crate) replicas: Vec<(Arc<Core>, Arc<ReplicationState>)>,
}

impl RegistryComponent {
    /// Status of every replica, read synchronously (redb reads take microseconds).
    fn replica_json(core: &Core, state: &ReplicationState) -> serde_json::Value {
        let peers = state.snapshot();
        let counts = core.meta.counts().unwrap_or_default();
        let head = counts.get("log_head").copied().unwrap_or(0);
        serde_json::json!({
            "region": core.region,
            "url": core.url,
            "head": head,
            "in_sync": peers.iter().all(|p| p.lag_changes == 0 && p.last_error.is_none()),
            "peers": peers,
            "counts": counts,
        })
    }
}

impl Component for RegistryComponent {
    fn name(&self) -> &'static str {
        "registry"
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "replicas": self
                .replicas
                .iter()
                .map(|(c, s)| Self::replica_json(c, s))
                .collect::<Vec<_>>(),
        })
    }

    fn tables(&self) -> Vec<Table> {
        let mut t = Table::new(
            "Registry replication",
            &[
                "replica",
                "url",
                "peer",
                "behind (changes)",
                "lag (s)",
                "last contact",
                "error",
            ],
        );
        for (core, state) in &self.replicas {
            let peers = state.snapshot();
            if peers.is_empty() {
                t.row(vec![
                    core.region.clone(),
                    core.url.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
            for p in peers {
                t.row(vec![
                    core.region.clone(),
                    core.url.clone(),
                    p.region.clone(),
                    p.lag_changes.to_string(),
                    format!("{:.2}", p.lag_seconds),
                    p.last_contact_ms_ago
                        .map(|ms| format!("{:.1}s ago", ms as f64 / 1000.0))
                        .unwrap_or_else(|| "never".into()),
                    p.last_error.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
        }
        vec![t]
    }

    fn routes(&self) -> Router {
        Router::new()
            .route("/repositories", get(repository))
            .with_state(Arc::new(self.replicas.clone()))
    }
}

#[derive(Deserialize)]
struct RepoQuery {
    name: String,
}

async fn repository(
    State(replicas): State<Replicas>,
    Query(q): Query<RepoQuery>,
) -> axum::response::Response {
    let mut out = Vec::new();
    for (core, _) in replicas.iter() {
        match crate::status::repository(core, &q.name).await {
            Ok(s) => out.push(serde_json::to_value(s).unwrap_or_default()),
            Err(e) => return e.into_response(),
        }
    }
    axum::Json(serde_json::json!({ "repository": q.name, "replicas": out })).into_response()
}
