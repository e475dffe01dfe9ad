//! Health probing shared by the DNS traffic manager and the edge.
//!
//! This crate owns the probes (HTTP, HTTPS, TCP; path, host, method, headers, expected status
//! ranges, interval, timeout) and the state machine that turns their results into an endpoint
//! state (checking, online, degraded, disabled) under either health policy: Traffic Manager's
//! consecutive failures or Front Door's window of recent samples. It also takes passive
//! reports (a request that failed) so a dying origin leaves before its next probe.
//!
//! Each target gets a [`Cell`]: one task probes it and publishes a new [`Health`] snapshot
//! after every probe through `arc-swap`, so readers on the query or request path never take a
//! lock. State changes bump a `watch` generation so owners can rebuild what depends on
//! health (the DNS answer snapshot) without polling.
//!
//! It does not own what health means for routing; the DNS and edge crates decide that.

mod check;
mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tandem_config::monitor::{ProbeProtocol, ProbeTarget};
use tokio::sync::watch;
use tokio_rustls::rustls::ClientConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use state::{Health, Outcome, State};

use state::Machine;

/// Labels of probe metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// The service that owns the target (`dns`, `edge`).
    pub service: String,
    /// The target's id, e.g. `app/eastus`.
    pub target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    service: String,
    target: String,
    result: &'static str,
}

/// Probe metrics: latency, results and health per target.
#[derive(Debug, Clone)]
pub struct ProbeMetrics {
    duration: Family<ProbeLabels, Histogram>,
    results: Family<ResultLabels, Counter>,
    healthy: Family<ProbeLabels, Gauge>,
    changes: Family<ProbeLabels, Counter>,
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        ProbeMetrics {
            duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
            }),
            results: Family::default(),
            healthy: Family::default(),
            changes: Family::default(),
        }
    }
}

impl ProbeMetrics {
    /// Create the metrics and register them (prefix `tandem_probe_`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = ProbeMetrics::default();
        let r = registry.sub_registry_with_prefix("tandem_probe");
        r.register(
            "duration_seconds",
            "Time from connect to the probe's answer",
            m.duration.clone(),
        );
        r.register("results", "Probe results by outcome", m.results.clone());
        r.register(
            "healthy",
            "1 when the target may receive traffic (checking or online), else 0",
            m.healthy.clone(),
        );
        r.register(
            "state_changes",
            "Health state transitions",
            m.changes.clone(),
        );
        m
    }
}

/// What to probe, with an id for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The service that owns it (`dns`, `edge`).
    pub service: &'static str,
    /// Stable id within the service, e.g. `app/eastus`.
    pub id: String,
    /// Address, monitor and host.
    pub probe: ProbeTarget,
    /// Passive failures in a row that take the target out before its next probe
    /// (`None`: passive reports are ignored).
    pub passive_threshold: Option<u32>,
}

/// A borrowed [`Health`] snapshot (see [`Cell::health_ref`]).
struct HealthRef(arc_swap::Guard<Arc<Health>>);

impl std::ops::Deref for HealthRef {
    type Target = Health;
    fn deref(&self) -> &Health {
        &self.0
    }
}

/// One probed target: its health, readable lock-free, and its controls.
#[derive(Debug)]
pub struct Cell {
    target: Target,
    health: ArcSwap<Health>,
    machine: Mutex<Machine>,
    passive_fails: AtomicU32,
    stop: CancellationToken,
    changed: watch::Sender<u64>,
    metrics: ProbeMetrics,
}

impl Cell {
    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The latest health snapshot (lock-free).
    pub fn health(&self) -> Arc<Health> {
        self.health.load_full()
    }

    /// The latest health snapshot, borrowed for a short read (no reference count taken).
    pub fn health_ref(&self) -> impl std::ops::Deref<Target = Health> + '_ {
        HealthRef(self.health.load())
    }

    /// Shorthand for the current state.
    pub fn state(&self) -> State {
        self.health.load().state
    }

    /// Take the target out (or put it back) administratively.
    pub fn set_disabled(&self, disabled: bool) {
        self.apply(|m, now| m.set_disabled(disabled, now));
    }

    /// Report the result of a real request to this target (passive health). After
    /// `passive_threshold` failures in a row the target is degraded until probes recover it.
    pub fn report_passive(&self, ok: bool) {
        let Some(threshold) = self.target.passive_threshold else {
            return;
        };
        if ok {
            if self.passive_fails.load(Ordering::Relaxed) != 0 {
                self.passive_fails.store(0, Ordering::Relaxed);
            }
            return;
        }
        let n = self.passive_fails.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= threshold && self.state() != State::Degraded {
            self.passive_fails.store(0, Ordering::Relaxed);
            tracing::warn!(service = self.target.service, target = %self.target.id, failures = n, "taken out by passive health");
            self.apply(|m, now| m.passive_down(now));
        }
    }

    /// Stop probing this target.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    fn observe(&self, outcome: Outcome) {
        let labels = self.labels();
        self.metrics
            .duration
            .get_or_create(&labels)
            .observe(outcome.latency.as_secs_f64());
        self.metrics
            .results
            .get_or_create(&ResultLabels {
                service: labels.service.clone(),
                target: labels.target.clone(),
                result: if outcome.ok { "ok" } else { "fail" },
            })
            .inc();
        if !outcome.ok {
            tracing::debug!(service = self.target.service, target = %self.target.id, detail = %outcome.detail, "probe failed");
        }
        self.apply(|m, _| m.observe(outcome));
    }

    fn labels(&self) -> ProbeLabels {
        ProbeLabels {
            service: self.target.service.to_string(),
            target: self.target.id.clone(),
        }
    }

    fn apply(&self, f: impl FnOnce(&mut Machine, SystemTime) -> bool) {
        let (changed, snap) = {
            let mut m = self.machine.lock().unwrap_or_else(|p| p.into_inner());
            let changed = f(&mut m, SystemTime::now());
            (changed, m.snapshot())
        };
        let state = snap.state;
        let detail = snap
            .last
            .as_ref()
            .map(|o| o.detail.clone())
            .unwrap_or_default();
        self.health.store(Arc::new(snap));
        if changed {
            let labels = self.labels();
            self.metrics
                .healthy
                .get_or_create(&labels)
                .set(i64::from(state.is_healthy()));
            self.metrics.changes.get_or_create(&labels).inc();
            tracing::info!(service = self.target.service, target = %self.target.id, state = state.as_str(), last = %detail, "health changed");
            self.changed.send_modify(|g| *g = g.wrapping_add(1));
        }
    }
}

/// TLS client configurations are shared by monitors with the same verification settings.
type TlsKey = (bool, Option<std::path::PathBuf>);

/// Runs probes for a service. Dropping it does not stop the probes; cancel the token.
#[derive(Debug)]
pub struct Prober {
    token: CancellationToken,
    tracker: TaskTracker,
    changed: watch::Sender<u64>,
    metrics: ProbeMetrics,
    tls: Mutex<HashMap<TlsKey, Arc<ClientConfig>>>,
}

/// Why a target could not be probed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The TLS client configuration for an HTTPS monitor could not be built.
    #[error("monitor {monitor:?}: {source}")]
    Tls {
        /// The monitor.
        monitor: String,
        /// The TLS error.
        source: tandem_tls::TlsError,
    },
}

impl Prober {
    /// A prober whose tasks stop when `token` is cancelled.
    pub fn new(token: CancellationToken, metrics: ProbeMetrics) -> Self {
        Prober {
            token,
            tracker: TaskTracker::new(),
            changed: watch::Sender::new(0),
            metrics,
            tls: Mutex::new(HashMap::new()),
        }
    }

    /// A receiver whose value changes whenever any target's state changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Start probing a target; the returned cell holds its health.
    pub fn add(&self, target: Target) -> Result<Arc<Cell>, ProbeError> {
        let tls = self.tls_for(&target)?;
        let cell = Arc::new(Cell {
            health: ArcSwap::from_pointee(
                Machine::new(target.probe.monitor.policy, SystemTime::now()).snapshot(),
            ),
            machine: Mutex::new(Machine::new(target.probe.monitor.policy, SystemTime::now())),
            passive_fails: AtomicU32::new(0),
            stop: self.token.child_token(),
            changed: self.changed.clone(),
            metrics: self.metrics.clone(),
            target,
        });
        self.metrics.healthy.get_or_create(&cell.labels()).set(1);
        let c = cell.clone();
        self.tracker.spawn(async move { run(c, tls).await });
        Ok(cell)
    }

    /// Wait for every probe task to finish after the token was cancelled.
    pub async fn closed(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn tls_for(&self, target: &Target) -> Result<Option<Arc<ClientConfig>>, ProbeError> {
        let m = &target.probe.monitor;
        if m.protocol != ProbeProtocol::Https {
            return Ok(None);
        }
        let key = (m.tls_verify, m.ca_file.clone());
        let mut cache = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return Ok(Some(c.clone()));
        }
        let cfg = tandem_tls::client_config(&tandem_tls::ClientTls {
            insecure: !m.tls_verify,
            ca_files: m.ca_file.iter().cloned().collect(),
            alpn: vec![b"http/1.1".to_vec()],
        })
        .map_err(|source| ProbeError::Tls {
            monitor: m.name.clone(),
            source,
        })?;
        cache.insert(key, cfg.clone());
        Ok(Some(cfg))
    }
}

async fn run(cell: Arc<Cell>, tls: Option<Arc<ClientConfig>>) {
    let interval = cell.target.probe.monitor.interval;
    // Spread the first probes of many targets over a fraction of the interval.
    let jitter = Duration::from_millis(rand::random_range(
        0..=(interval.as_millis() as u64 / 10).min(100),
    ));
    tokio::select! {
        _ = cell.stop.cancelled() => return,
        _ = tokio::time::sleep(jitter) => {}
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cell.stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if cell.state() == State::Disabled {
            continue;
        }
        let outcome = tokio::select! {
            _ = cell.stop.cancelled() => return,
            o = check::probe(&cell.target.probe, tls.as_ref()) => o,
        };
        cell.observe(outcome);
    }
}
