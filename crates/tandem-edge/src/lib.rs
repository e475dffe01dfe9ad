//! Tandem's edge proxy: the Front Door of the reference architecture.
//!
//! It owns the layer-7 entry point of one region: TLS termination with a certificate per
//! custom domain chosen by SNI, HTTP/1.1 and HTTP/2, routes from domains and paths to origin
//! groups, Front Door's origin selection (health, priority, latency sensitivity, weighted
//! round-robin), active and passive health, retries that hide a dying region from idempotent
//! requests, cookie affinity, the rules engine, proxy header hygiene, access logs, metrics and
//! the origin state shown by the admin API.
//!
//! It does not own: the config model (`tandem-config`), the WAF (`tandem-waf` plugs in through
//! [`RequestInspector`]), the admin HTTP server (`tandem-admin` mounts [`admin::EdgeComponent`]),
//! active probes (`tandem-probe`), or certificate issuance (the lab's CA hands PEM in through
//! [`EdgeOptions::extra_certificates`]).
//!
//! The life of a request reads top to bottom in [`proxy`]: receive, match route, rules, WAF,
//! pick origin, forward with retries, response rules, log.
//!
//! ```no_run
//! # async fn demo(cfg: tandem_config::Config) -> Result<(), tandem_edge::EdgeError> {
//! use tandem_edge::{Edge, EdgeOptions};
//! use tokio_util::sync::CancellationToken;
//! let mut registry = prometheus_client::registry::Registry::default();
//! let edge = Edge::new(&cfg, EdgeOptions::new("eastus"), &mut registry)?;
//! let listeners = edge.bind().await?;
//! let cancel = CancellationToken::new();
//! edge.run(listeners, cancel.clone()).await; // until cancel, then drains
//! # Ok(()) }
//! ```

pub mod access_log;
pub mod admin;
pub mod balance;
pub mod body;
pub mod client;
pub mod error;
pub mod h1;
mod h1_server;
pub mod headers;
pub mod inspect;
pub mod metrics;
pub mod proxy;
pub mod route;
pub mod rules;
mod server;
pub mod status;
mod stop;
pub mod tls;
pub mod waf;
pub mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::HeaderValue;
use http::header::HeaderName;
use prometheus_client::registry::Registry;
use tandem_config::Config;
use tandem_config::edge::{EdgeConfig, HttpMode};
use tandem_config::monitor::{Monitor, ProbeTarget};
use tandem_probe::{ProbeMetrics, Prober, Target};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use access_log::{AccessEntry, AccessLog, JsonLines, NoLog, TracingLog};
pub use error::EdgeError;
pub use inspect::{NoInspection, RequestHead, RequestInspector, Transaction, Verdict};
pub use status::EdgeStatus;
pub use tls::{CertSource, CertSpec};

use balance::{Clock, GroupRt, HealthMap, RetryBudget};
use client::OriginClient;
use metrics::{Metrics, OriginMetrics, RouteMetrics};
use route::RouteTable;
use rules::RuleSet;
use tls::{CertStore, SniResolver};

/// How an edge is started besides its config.
pub struct EdgeOptions {
    /// The region this edge serves (selects `[edge.instances.<region>]` and `local_first`).
    pub region: String,
    /// The WAF phase; [`NoInspection`] by default.
    pub inspector: Arc<dyn RequestInspector>,
    /// Where access log entries go; [`TracingLog`] by default.
    pub access_log: Arc<dyn AccessLog>,
    /// Certificates on top of `[[edge.certificates]]` (the lab's CA-issued certificate).
    pub extra_certificates: Vec<CertSpec>,
}

impl EdgeOptions {
    /// Defaults for a region.
    pub fn new(region: impl Into<String>) -> Self {
        EdgeOptions {
            region: region.into(),
            inspector: Arc::new(NoInspection),
            access_log: Arc::new(TracingLog),
            extra_certificates: Vec::new(),
        }
    }
}

/// Bound listeners of one edge.
#[derive(Debug, Default)]
pub struct Listeners {
    /// HTTPS.
    pub https: Vec<TcpListener>,
    /// Plain HTTP.
    pub http: Vec<TcpListener>,
}

impl Listeners {
    /// The bound HTTPS addresses.
    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.https
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
    /// The bound HTTP addresses.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

/// A route at run time.
#[derive(Debug)]
pub(crate) struct RouteRt {
    pub(crate) name: String,
    pub(crate) group: Option<usize>,
    pub(crate) http: HttpMode,
    pub(crate) waf: Option<String>,
    pub(crate) hsts: bool,
    pub(crate) metrics: Arc<RouteMetrics>,
}

/// Per-group metric handles.
#[derive(Debug)]
pub(crate) struct GroupMetrics {
    pub(crate) retries: prometheus_client::metrics::counter::Counter,
    pub(crate) no_origin: prometheus_client::metrics::counter::Counter,
    pub(crate) origins: Vec<OriginMetrics>,
}

/// Everything a request needs, swapped whole on reload.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) cfg: Arc<EdgeConfig>,
    pub(crate) table: RouteTable,
    pub(crate) routes: Vec<RouteRt>,
    pub(crate) groups: Vec<GroupRt>,
    pub(crate) group_metrics: Vec<GroupMetrics>,
    pub(crate) rules: RuleSet,
    pub(crate) hsts: Option<HeaderValue>,
    pub(crate) request_id_header: HeaderName,
    /// The port plain-HTTP redirects point at (`None` = 443).
    pub(crate) https_port: Option<u16>,
    /// Monitors by name, for the probers.
    pub(crate) monitors: Vec<Monitor>,
}

pub(crate) struct Inner {
    pub(crate) region: String,
    pub(crate) snapshot: ArcSwap<Snapshot>,
    health: Mutex<HealthMap>,
    budgets: Mutex<HashMap<String, Arc<RetryBudget>>>,
    /// Origin connection pools by address, kept across reloads.
    pools: Mutex<HashMap<client::Target, Arc<client::OriginPool>>>,
    pub(crate) client: OriginClient,
    pub(crate) resolver: Arc<SniResolver>,
    pub(crate) ids: headers::RequestIds,
    pub(crate) metrics: Metrics,
    pub(crate) clock: Clock,
    pub(crate) inspector: Arc<dyn RequestInspector>,
    pub(crate) access_log: Arc<dyn AccessLog>,
    extra_certificates: Vec<CertSpec>,
    prober: Prober,
    /// Stops the probes when the edge stops.
    probe_token: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// The running `run`'s shutdown signal: upgraded (spliced) connections close when it
    /// fires and the drain timeout has passed.
    pub(crate) stopping: Mutex<CancellationToken>,
    /// The port of the first bound HTTPS listener, for plain-HTTP redirects (0 = use config).
    pub(crate) https_port: std::sync::atomic::AtomicU16,
}

/// A running (or ready to run) edge for one region. Cheap to clone.
#[derive(Clone)]
pub struct Edge {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

fn cert_specs(cfg: &EdgeConfig, extra: &[CertSpec]) -> Vec<CertSpec> {
    cfg.certificates
        .iter()
        .map(|c| CertSpec {
            domains: c.domains.clone(),
            source: CertSource::Files {
                cert: c.cert.clone(),
                key: c.key.clone(),
            },
        })
        .chain(extra.iter().cloned())
        .collect()
}

impl Edge {
    /// Prepare an edge from a validated config: loads certificates, compiles routes and
    /// rules, sets up the origin pool. Nothing listens until [`Edge::run`].
    ///
    /// Metrics (`tandem_edge_*` and the probes' `tandem_probe_*`) are registered in
    /// `registry`; active probes start now and stop when [`Edge::run`] returns.
    pub fn new(
        config: &Config,
        opts: EdgeOptions,
        registry: &mut Registry,
    ) -> Result<Edge, EdgeError> {
        let cfg = config.edge.as_ref().ok_or(EdgeError::NoEdgeSection)?;
        if cfg.instance(&opts.region).is_none() {
            return Err(EdgeError::NoInstance {
                region: opts.region.clone(),
                known: cfg
                    .instances
                    .iter()
                    .map(|i| i.region.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let specs = cert_specs(cfg, &opts.extra_certificates);
        let store = CertStore::load(&specs)?;
        let resolver = Arc::new(SniResolver::new(store, specs));
        let client = client::client(cfg)?;
        let metrics = Metrics::default();
        metrics.register(registry);
        let probe_metrics = ProbeMetrics::register(registry);
        let probe_token = CancellationToken::new();
        let inner = Arc::new(Inner {
            region: opts.region,
            snapshot: ArcSwap::from_pointee(Snapshot::placeholder()),
            health: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
            pools: Mutex::new(HashMap::new()),
            client,
            resolver,
            ids: headers::RequestIds::default(),
            metrics,
            clock: Clock::default(),
            inspector: opts.inspector,
            access_log: opts.access_log,
            extra_certificates: opts.extra_certificates,
            prober: Prober::new(probe_token.clone(), probe_metrics),
            probe_token,
            tracker: TaskTracker::new(),
            stopping: Mutex::new(CancellationToken::new()),
            https_port: std::sync::atomic::AtomicU16::new(0),
        });
        let edge = Edge { inner };
        let snap = edge.build_snapshot(config, cfg)?;
        edge.start_probes(&snap)?;
        edge.inner.snapshot.store(Arc::new(snap));
        Ok(edge)
    }

    fn build_snapshot(&self, config: &Config, cfg: &EdgeConfig) -> Result<Snapshot, EdgeError> {
        let inner = &self.inner;
        let mut health = inner
            .health
            .lock()
            .map_err(|_| EdgeError::Monitor("<health lock poisoned>".into()))?;
        let mut budgets = inner
            .budgets
            .lock()
            .map_err(|_| EdgeError::Monitor("<budget lock poisoned>".into()))?;
        let mut groups = Vec::new();
        let mut group_metrics = Vec::new();
        for g in &cfg.groups {
            if let Some(m) = &g.monitor
                && !config.monitors.iter().any(|x| &x.name == m)
            {
                return Err(EdgeError::Monitor(m.clone()));
            }
            let budget = budgets
                .entry(g.name.clone())
                .or_insert_with(|| {
                    Arc::new(RetryBudget::new(g.retry_ratio, g.min_retries_per_second))
                })
                .clone();
            let mut rt = GroupRt::new(g, Some(&inner.region), &mut health, budget);
            let mut pools = inner
                .pools
                .lock()
                .map_err(|_| EdgeError::Monitor("<pool lock poisoned>".into()))?;
            for o in &mut rt.origins {
                let key = client::target(&o.cfg.address, o.cfg.tls);
                o.pool = pools.entry(key).or_insert_with(|| o.pool.clone()).clone();
            }
            drop(pools);
            group_metrics.push(GroupMetrics {
                retries: inner.metrics.retries(&g.name),
                no_origin: inner.metrics.no_origin(&g.name),
                origins: rt
                    .origins
                    .iter()
                    .map(|o| inner.metrics.origin(&g.name, &o.cfg.name))
                    .collect(),
            });
            groups.push(rt);
        }
        if let Some(r) = cfg
            .routes
            .iter()
            .find(|r| r.waf.as_deref().is_some_and(|w| !inner.inspector.serves(w)))
        {
            return Err(EdgeError::WafPolicyNotServed {
                route: r.name.clone(),
                policy: r.waf.clone().unwrap_or_default(),
            });
        }
        let group_index = |name: &str| cfg.groups.iter().position(|g| g.name == name);
        let rules = RuleSet::compile(&cfg.rules, group_index)?;
        let routes = cfg
            .routes
            .iter()
            .map(|r| RouteRt {
                name: r.name.clone(),
                group: r.group.as_deref().and_then(group_index),
                http: r.http,
                waf: r.waf.clone(),
                hsts: r.hsts,
                metrics: Arc::new(inner.metrics.route(&r.name)),
            })
            .collect();
        let https_port = cfg
            .instance(&inner.region)
            .and_then(|i| i.https.first())
            .map(|a| a.port())
            .filter(|p| *p != 443);
        Ok(Snapshot {
            cfg: Arc::new(cfg.clone()),
            table: RouteTable::new(&cfg.routes),
            routes,
            groups,
            group_metrics,
            rules,
            hsts: cfg
                .hsts
                .as_ref()
                .and_then(|h| HeaderValue::from_str(&h.header_value()).ok()),
            request_id_header: HeaderName::from_bytes(cfg.request_id_header.as_bytes())
                .unwrap_or(HeaderName::from_static("x-request-id")),
            https_port,
            monitors: config.monitors.clone(),
        })
    }

    /// Bind the listeners of `[edge.instances.<region>]`.
    pub async fn bind(&self) -> Result<Listeners, EdgeError> {
        let snap = self.inner.snapshot.load();
        let Some(inst) = snap.cfg.instance(&self.inner.region) else {
            return Err(EdgeError::NoInstance {
                region: self.inner.region.clone(),
                known: String::new(),
            });
        };
        let mut l = Listeners::default();
        for a in &inst.https {
            l.https.push(server::bind(*a)?);
        }
        for a in &inst.http {
            l.http.push(server::bind(*a)?);
        }
        Ok(l)
    }

    /// Serve on `listeners` until `cancel`, then stop accepting, let in-flight requests finish
    /// (up to `timeouts.drain`) and return. Probes and certificate reloads run meanwhile.
    ///
    /// `run` may be called again after it returned (with newly bound listeners): that is how
    /// the lab fails and restores a region. Probes keep running between runs; stop them with
    /// [`Edge::stop_probes`] when the edge is done for good.
    pub async fn run(&self, listeners: Listeners, cancel: CancellationToken) {
        let tracker = self.inner.tracker.clone();
        tracker.reopen();
        *self
            .inner
            .stopping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cancel.clone();
        if !listeners.https.is_empty() && self.inner.resolver.is_empty() {
            tracing::error!("{}", EdgeError::NoCertificates);
        }
        if let Some(a) = listeners.https_addrs().first() {
            self.inner
                .https_port
                .store(a.port(), std::sync::atomic::Ordering::Relaxed);
        }
        // Certificate reload loop.
        {
            let inner = self.inner.clone();
            let cancel = cancel.clone();
            tracker.spawn(async move {
                loop {
                    let every = inner.snapshot.load().cfg.cert_reload_interval;
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    match inner.resolver.reload_if_changed() {
                        Ok(true) => {
                            inner.metrics.cert_reload(true);
                            tracing::info!(certificates = inner.resolver.len(), "certificates reloaded");
                        }
                        Ok(false) => {}
                        Err(e) => {
                            inner.metrics.cert_reload(false);
                            tracing::error!(error = %e, "certificate reload failed; the previous certificates stay in service");
                        }
                    }
                }
            });
        }
        // Health gauges.
        {
            let inner = self.inner.clone();
            let cancel = cancel.clone();
            tracker.spawn(async move {
                // Refresh on every probe state change, and each second for latencies and
                // passive ejections.
                let mut changed = inner.prober.subscribe();
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tick.tick() => {}
                        r = changed.changed() => if r.is_err() { return },
                    }
                    inner.refresh_gauges();
                    inner.evict_idle();
                }
            });
        }
        let tls = if listeners.https.is_empty() {
            None
        } else {
            match tls::server_config(self.inner.resolver.clone()) {
                Ok(c) => Some(tokio_rustls::TlsAcceptor::from(c)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the TLS configuration");
                    None
                }
            }
        };
        // The listeners and their connections watch `stop`, which this task fires when
        // `cancel` is (one atomic load per check on the data path: `stop.rs`).
        let stop = Arc::new(stop::Stop::default());
        {
            let stop = stop.clone();
            let cancel = cancel.clone();
            tracker.spawn(async move {
                cancel.cancelled().await;
                stop.fire();
            });
        }
        for l in listeners.https {
            if let Some(acceptor) = tls.clone() {
                tracker.spawn(server::accept_loop(
                    self.inner.clone(),
                    l,
                    Some(acceptor),
                    stop.clone(),
                ));
            }
        }
        for l in listeners.http {
            tracker.spawn(server::accept_loop(
                self.inner.clone(),
                l,
                None,
                stop.clone(),
            ));
        }
        cancel.cancelled().await;
        tracker.close();
        tracker.wait().await;
    }

    /// Stop the active probes and wait for them (final shutdown).
    pub async fn stop_probes(&self) {
        self.inner.probe_token.cancel();
        self.inner.prober.closed().await;
    }

    /// Give every enabled origin of a group with a monitor a probe cell. An origin whose probe
    /// target did not change keeps its cell (and its health) across reloads.
    fn start_probes(&self, snap: &Snapshot) -> Result<(), EdgeError> {
        for g in &snap.groups {
            let monitor = snap
                .cfg
                .group(&g.name)
                .and_then(|c| c.monitor.as_deref())
                .and_then(|m| snap.monitors.iter().find(|x| x.name == m));
            for o in &g.origins {
                let target = monitor.filter(|_| o.cfg.enabled).map(|m| ProbeTarget {
                    connect: probe_authority(&o.cfg.address, m),
                    host: m
                        .host
                        .clone()
                        .or_else(|| o.cfg.host_header.clone())
                        .unwrap_or_else(|| o.authority.host().to_string()),
                    monitor: m.clone(),
                });
                let current = o.health.probe.load_full();
                if current.as_ref().map(|c| &c.target().probe) == target.as_ref() {
                    continue;
                }
                if let Some(c) = current {
                    c.stop();
                }
                let cell = match target {
                    Some(probe) => Some(
                        self.inner
                            .prober
                            .add(Target {
                                service: "edge",
                                id: format!("{}/{}", g.name, o.cfg.name),
                                probe,
                                // Passive health is the edge's own (time-bounded ejection).
                                passive_threshold: None,
                            })
                            .map_err(|e| EdgeError::Probe(e.to_string()))?,
                    ),
                    None => None,
                };
                o.health.probe.store(cell);
            }
        }
        Ok(())
    }

    /// Replace routes, groups, rules and certificates from a new validated config without
    /// dropping connections: requests in flight finish on the old snapshot, new requests use
    /// the new one; origins that keep their group, name and address keep their health.
    /// Listener addresses, timeouts of open connections and the origin pool settings need a
    /// restart.
    pub fn reload(&self, config: &Config) -> Result<(), EdgeError> {
        let cfg = config.edge.as_ref().ok_or(EdgeError::NoEdgeSection)?;
        let snap = self.build_snapshot(config, cfg)?;
        self.start_probes(&snap)?;
        self.inner
            .resolver
            .replace(cert_specs(cfg, &self.inner.extra_certificates))?;
        let snap = Arc::new(snap);
        self.inner.snapshot.store(snap.clone());
        tracing::info!(
            routes = snap.routes.len(),
            groups = snap.groups.len(),
            "edge config reloaded"
        );
        Ok(())
    }

    /// The state of every origin group, for the admin API and `tandem status`.
    pub fn status(&self) -> EdgeStatus {
        status::collect(&self.inner)
    }

    /// The region this edge serves.
    pub fn region(&self) -> &str {
        &self.inner.region
    }
}

impl Inner {
    /// Close origin connections idle for longer than `timeouts.pool_idle`.
    fn evict_idle(&self) {
        let max_idle = self.snapshot.load().cfg.timeouts.pool_idle;
        if let Ok(mut pools) = self.pools.lock() {
            // A pool no origin of the current config uses goes once it is empty.
            pools.retain(|_, p| Arc::strong_count(p) > 1 || p.idle_len() > 0);
            for p in pools.values() {
                p.evict(max_idle);
            }
        }
    }

    fn refresh_gauges(&self) {
        let snap = self.snapshot.load();
        let now = self.clock.now_ms();
        for (g, gm) in snap.groups.iter().zip(&snap.group_metrics) {
            for (o, om) in g.origins.iter().zip(&gm.origins) {
                om.healthy
                    .set(i64::from(o.cfg.enabled && o.health.healthy(now)));
                om.latency.set(o.health.latency_us() as f64 / 1e6);
            }
        }
    }
}

impl Snapshot {
    fn placeholder() -> Snapshot {
        Snapshot {
            cfg: Arc::new(EdgeConfig {
                instances: vec![],
                certificates: vec![],
                cert_reload_interval: std::time::Duration::from_secs(10),
                access_log: false,
                request_id_header: "x-request-id".into(),
                hsts: None,
                limits: tandem_config::edge::Limits {
                    max_header_bytes: 65536,
                    max_headers: 100,
                    max_body_bytes: 0,
                    max_connections: 1,
                    max_concurrent_streams: 1,
                    retry_buffer_bytes: 0,
                    inspect_body_bytes: 0,
                },
                timeouts: tandem_config::edge::Timeouts {
                    connect: std::time::Duration::from_secs(1),
                    first_byte: std::time::Duration::from_secs(1),
                    idle: std::time::Duration::from_secs(1),
                    client_header: std::time::Duration::from_secs(1),
                    drain: std::time::Duration::from_secs(1),
                    pool_idle: std::time::Duration::from_secs(1),
                },
                origin_ca_file: None,
                routes: vec![],
                groups: vec![],
                rules: vec![],
            }),
            table: RouteTable::default(),
            routes: vec![],
            groups: vec![],
            group_metrics: vec![],
            rules: RuleSet::default(),
            hsts: None,
            request_id_header: HeaderName::from_static("x-request-id"),
            https_port: None,
            monitors: vec![],
        }
    }
}

/// The `host:port` a monitor probes for an origin address (the monitor's port, when set,
/// replaces the origin's).
pub fn probe_authority(origin_address: &str, monitor: &Monitor) -> String {
    match (monitor.port, origin_address.rsplit_once(':')) {
        (Some(p), Some((host, _))) => format!("{host}:{p}"),
        _ => origin_address.to_string(),
    }
}
