//! Volume replication in the admin API: its JSON status (under `components.volume` of
//! `GET /api/v1/status`) and tables for `tandem status` and the status page, lag (the RPO now) first.

use std::sync::Arc;

use tandem_admin::{Component, Table};

use crate::Status;

/// The admin component for every agent and standby of this process.
#[derive(Debug, Clone)]
pub struct VolumeComponent(pub Arc<Status>);

fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1}s")
    } else {
        format!("{s:.0}s")
    }
}

impl Component for VolumeComponent {
    fn name(&self) -> &'static str {
        "volume"
    }

    fn status(&self) -> serde_json::Value {
        self.0.json()
    }

    fn tables(&self) -> Vec<Table> {
        let doc = self.0.json();
        let mut agents = Table::new(
            "Volume replication (lag = age of the oldest change not yet in the paired region: the RPO now)",
            &[
                "volume",
                "direction",
                "from",
                "state",
                "lag",
                "alert at",
                "last snapshot",
                "snapshots",
                "last error",
            ],
        );
        for a in doc["agents"].as_array().into_iter().flatten() {
            let s = |k: &str| a[k].as_str().unwrap_or("-").to_string();
            let lag = a["lag_seconds"].as_f64().unwrap_or(0.0);
            agents.row(vec![
                s("volume"),
                s("direction"),
                s("region"),
                if a["alert"].as_bool().unwrap_or(false) {
                    format!("{} LAGGING", s("state"))
                } else {
                    s("state")
                },
                secs(lag),
                secs(a["lag_alert_seconds"].as_f64().unwrap_or(0.0)),
                a["last_snapshot"]["short_id"]
                    .as_str()
                    .map_or("-".into(), |id| {
                        format!(
                            "{id} ({})",
                            a["last_snapshot"]["time"].as_str().unwrap_or("")
                        )
                    }),
                a["snapshots"].as_u64().unwrap_or(0).to_string(),
                s("last_error"),
            ]);
        }
        let mut standbys = Table::new(
            "Volume standbys",
            &[
                "volume",
                "region",
                "dir",
                "state",
                "applied",
                "data age",
                "last error",
            ],
        );
        for sb in doc["standbys"].as_array().into_iter().flatten() {
            let s = |k: &str| sb[k].as_str().unwrap_or("-").to_string();
            standbys.row(vec![
                s("volume"),
                s("region"),
                s("dir"),
                s("state"),
                sb["applied"]["short_id"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string(),
                sb["data_age_seconds"].as_f64().map_or("-".into(), secs),
                s("last_error"),
            ]);
        }
        vec![agents, standbys]
    }
}
