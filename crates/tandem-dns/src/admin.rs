//! The DNS part of the admin API: profile and endpoint status, traffic shares, and
//! enabling or disabling an endpoint at runtime.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use serde::Serialize;
use tandem_admin::{Component, Table};
use tandem_probe::{Outcome, State as ProbeState};

use crate::catalog::Target;
use crate::route::EpHealth;
use crate::server::{DnsServer, Inner};
use crate::wire::to_text;

/// How far back traffic shares look.
const SHARE_WINDOW: Duration = Duration::from_secs(10);

/// The DNS status document.
#[derive(Debug, Clone, Serialize)]
pub struct DnsStatus {
    /// Every profile.
    pub profiles: Vec<ProfileStatus>,
}

/// One profile's status.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileStatus {
    /// Key in config.
    pub name: String,
    /// DNS name served, if any.
    pub domain: Option<String>,
    /// Routing method.
    pub method: String,
    /// Answer TTL in seconds.
    pub ttl: u32,
    /// True when no endpoint is healthy and the profile answers with all enabled ones.
    pub all_down: bool,
    /// Endpoints in config order.
    pub endpoints: Vec<EndpointStatus>,
}

/// One endpoint's status.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    /// Name.
    pub name: String,
    /// Region, if set.
    pub region: Option<String>,
    /// What it answers with.
    pub target: String,
    /// `checking`, `online`, `degraded` or `disabled`.
    pub state: String,
    /// Whether it is in the answer set right now.
    pub eligible: bool,
    /// Answers that included it since start.
    pub answers: u64,
    /// Its share of this profile's answers over the last 10 seconds (percent), if any.
    pub share: Option<f64>,
    /// The last probe, if probed.
    pub last_probe: Option<Outcome>,
    /// Mean latency of recent successful probes, in milliseconds.
    pub latency_ms: Option<f64>,
}

/// Recent samples of the answer counters, for traffic shares over a window.
#[derive(Debug, Default)]
pub(crate) struct Shares {
    samples: VecDeque<(Instant, Vec<Vec<u64>>)>,
}

impl DnsServer {
    /// The current status.
    pub fn status(&self) -> DnsStatus {
        status(&self.inner)
    }

    /// The admin component for this server.
    pub fn component(&self) -> Arc<dyn Component> {
        Arc::new(DnsComponent {
            server: self.clone(),
        })
    }

    /// Take an endpoint out of (or back into) rotation, as an operator. Returns false if the
    /// profile or endpoint does not exist. The override survives reloads.
    pub fn set_endpoint_disabled(&self, profile: &str, endpoint: &str, disabled: bool) -> bool {
        let inner = &self.inner;
        let routing = inner.routing.load();
        let Some((pi, prof)) = routing
            .catalog
            .profiles
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == profile)
        else {
            return false;
        };
        let Some(ei) = prof.endpoints.iter().position(|e| e.name == endpoint) else {
            return false;
        };
        inner
            .overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((profile.to_string(), endpoint.to_string()), disabled);
        if let Some(Some(cell)) = inner
            .cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(pi)
            .and_then(|r| r.get(ei))
        {
            cell.set_disabled(disabled);
        }
        inner.rebuild_routing();
        tracing::info!(
            profile,
            endpoint,
            disabled,
            "endpoint {} by operator",
            if disabled { "disabled" } else { "enabled" }
        );
        true
    }
}

fn status(inner: &Inner) -> DnsStatus {
    let shares = &inner.shares;
    let routing = inner.routing.load();
    let cat = &routing.catalog;
    let cells = inner
        .cells
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let counts: Vec<Vec<u64>> = cat
        .profiles
        .iter()
        .map(|p| p.endpoints.iter().map(|e| e.answers.get()).collect())
        .collect();
    let base = {
        let mut s = shares.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while s.samples.len() > 1
            && s.samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > SHARE_WINDOW)
        {
            s.samples.pop_front();
        }
        if s.samples
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1))
        {
            s.samples.push_back((now, counts.clone()));
        }
        s.samples.front().map(|(_, c)| c.clone())
    };
    let profiles = cat
        .profiles
        .iter()
        .enumerate()
        .map(|(pi, p)| {
            let deltas: Vec<u64> = counts[pi]
                .iter()
                .enumerate()
                .map(|(ei, c)| {
                    c.saturating_sub(
                        base.as_ref()
                            .and_then(|b| b.get(pi))
                            .and_then(|r| r.get(ei))
                            .copied()
                            .unwrap_or(0),
                    )
                })
                .collect();
            let total: u64 = deltas.iter().sum();
            ProfileStatus {
                name: p.name.clone(),
                domain: p.domain.clone(),
                method: format!("{:?}", p.method).to_lowercase(),
                ttl: p.ttl,
                all_down: routing.all_down[pi],
                endpoints: p
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(ei, e)| {
                        let cell = cells
                            .get(pi)
                            .and_then(|r| r.get(ei))
                            .and_then(|c| c.as_ref());
                        let health = cell.map(|c| c.health());
                        let state = match (routing.health[pi][ei], health.as_ref().map(|h| h.state))
                        {
                            (EpHealth::Disabled, _) => "disabled",
                            (_, Some(s)) if s != ProbeState::Disabled => s.as_str(),
                            (EpHealth::Up, _) => "online",
                            (EpHealth::Down, _) => "degraded",
                        };
                        EndpointStatus {
                            name: e.name.clone(),
                            region: e.region.and_then(|r| cat.geo.regions().get(r).cloned()),
                            target: match &e.target {
                                Target::V4(a) => a.to_string(),
                                Target::V6(a) => a.to_string(),
                                Target::Host(h) => format!("CNAME {}", to_text(h)),
                                Target::Profile(c) => {
                                    format!("profile {}", cat.profiles[*c as usize].name)
                                }
                            },
                            state: state.to_string(),
                            eligible: routing.is_eligible(pi, ei),
                            answers: counts[pi][ei],
                            share: (total > 0).then(|| deltas[ei] as f64 * 100.0 / total as f64),
                            last_probe: health.as_ref().and_then(|h| h.last.clone()),
                            latency_ms: health
                                .as_ref()
                                .and_then(|h| h.latency)
                                .map(|d| d.as_secs_f64() * 1000.0),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    DnsStatus { profiles }
}

struct DnsComponent {
    server: DnsServer,
}

impl Component for DnsComponent {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn status(&self) -> serde_json::Value {
        serde_json::to_value(status(&self.server.inner)).unwrap_or_default()
    }

    fn tables(&self) -> Vec<Table> {
        let st = status(&self.server.inner);
        st.profiles
            .iter()
            .map(|p| {
                let mut t = Table::new(
                    format!(
                        "DNS profile {} ({}, {}{})",
                        p.name,
                        p.domain.as_deref().unwrap_or("nested"),
                        p.method,
                        if p.all_down {
                            ", ALL DOWN: answering with every enabled endpoint"
                        } else {
                            ""
                        }
                    ),
                    &[
                        "endpoint",
                        "region",
                        "target",
                        "state",
                        "in answer",
                        "share",
                        "last probe",
                        "latency",
                    ],
                );
                for e in &p.endpoints {
                    t.row(vec![
                        e.name.clone(),
                        e.region.clone().unwrap_or_else(|| "-".into()),
                        e.target.clone(),
                        e.state.clone(),
                        if e.eligible {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        e.share.map_or_else(|| "-".into(), |s| format!("{s:.0}%")),
                        e.last_probe
                            .as_ref()
                            .map_or_else(|| "-".into(), |o| o.detail.clone()),
                        e.latency_ms
                            .map_or_else(|| "-".into(), |l| format!("{l:.1}ms")),
                    ]);
                }
                t
            })
            .collect()
    }

    fn routes(&self) -> Router {
        Router::new()
            .route(
                "/profiles/{profile}/endpoints/{endpoint}/disable",
                post(disable),
            )
            .route(
                "/profiles/{profile}/endpoints/{endpoint}/enable",
                post(enable),
            )
            .with_state(self.server.clone())
    }
}

async fn disable(
    State(s): State<DnsServer>,
    Path((p, e)): Path<(String, String)>,
) -> impl IntoResponse {
    toggle(&s, &p, &e, true)
}

async fn enable(
    State(s): State<DnsServer>,
    Path((p, e)): Path<(String, String)>,
) -> impl IntoResponse {
    toggle(&s, &p, &e, false)
}

fn toggle(
    s: &DnsServer,
    p: &str,
    e: &str,
    disabled: bool,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    if s.set_endpoint_disabled(p, e, disabled) {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"profile": p, "endpoint": e, "disabled": disabled})),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            axum::Json(
                serde_json::json!({"error": format!("no endpoint {e:?} in profile {p:?}"), "hint": "GET /api/v1/status lists profiles and endpoints"}),
            ),
        )
    }
}
