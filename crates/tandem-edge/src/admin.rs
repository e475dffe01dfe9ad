//! The edge in the admin API: `GET /api/v1/edge` (and the edge's part of `/api/v1/status`)
//! returns a list of [`crate::EdgeStatus`], one per edge in the process (one for
//! `tandem edge`, one per region in the lab); the status page and `tandem status` show the
//! origin tables.

use axum::routing::get;
use tandem_admin::{Component, Table};

use crate::Edge;

/// The edges of this process as one admin component.
#[derive(Debug, Clone)]
pub struct EdgeComponent(pub Vec<Edge>);

impl EdgeComponent {
    fn statuses(&self) -> Vec<crate::EdgeStatus> {
        self.0.iter().map(Edge::status).collect()
    }
}

impl Component for EdgeComponent {
    fn name(&self) -> &'static str {
        "edge"
    }

    fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.statuses()).unwrap_or_default()
    }

    fn tables(&self) -> Vec<Table> {
        self.statuses().iter().map(table).collect()
    }

    fn routes(&self) -> axum::Router {
        let me = self.clone();
        axum::Router::new().route(
            "/",
            get(move || {
                let me = me.clone();
                async move { axum::Json(me.statuses()) }
            }),
        )
    }
}

fn table(st: &crate::EdgeStatus) -> Table {
    let mut t = Table::new(
        format!("Edge origins ({})", st.region),
        &[
            "group", "origin", "address", "region", "tier", "weight", "state", "latency",
            "requests", "failures",
        ],
    );
    for g in &st.groups {
        for o in &g.origins {
            let state = if !o.enabled {
                "disabled".to_string()
            } else if let Some(ms) = o.ejected_ms {
                format!("ejected ({ms}ms)")
            } else if o.probe_up {
                "healthy".to_string()
            } else {
                "down".to_string()
            };
            t.row(vec![
                g.name.clone(),
                o.name.clone(),
                o.address.clone(),
                o.region.clone().unwrap_or_else(|| "-".into()),
                o.tier.to_string(),
                o.weight.to_string(),
                state,
                o.latency_ms
                    .map_or_else(|| "-".into(), |l| format!("{l:.1}ms")),
                o.requests.to_string(),
                o.failures.to_string(),
            ]);
        }
    }
    t
}
