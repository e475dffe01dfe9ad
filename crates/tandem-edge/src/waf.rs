//! The WAF in the edge's request path: [`EdgeWaf`] serves the `[waf]` policies of the config
//! to the routes that name them (`waf = "NAME"`), through the edge's [`RequestInspector`]
//! hook.
//!
//! - **Per route**: each route gets its policy compiled with the route's settings
//!   (`[waf.policies.NAME.routes.ROUTE]`: mode and extra exclusions) once, at load time; a
//!   request only looks its route up. A route without `waf`, or whose mode is `off`, costs
//!   nothing: no transaction is created.
//! - **Phases**: request headers, the request body (buffered up to the policy's
//!   `request_body_limit`, never more than `[edge.limits] inspect_body_bytes`), response
//!   headers, and the response body when the policy has `inspect_response_body` (buffered up
//!   to the rule set's response limit before anything is sent, so a verdict can still
//!   replace it).
//! - **Verdicts**: block with the policy's status and body (which carries the request id),
//!   redirect, or (for SecLang `drop`) block.
//! - **Logs and metrics**: one `tandem::waf` log event per matched rule and per decision,
//!   `tandem_waf_*` metrics per policy, route and rule (`tandem_waf::metrics`), and counters
//!   for the admin API ([`WafComponent`], `/api/v1/waf`, and `tandem status`).
//! - **Reload**: [`reload`] compiles the new policies on a blocking thread (loading CRS takes
//!   about half a second), then swaps them in together with the edge's routes. A config whose
//!   policies do not compile is refused and the running policies keep serving.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, Version};
use http_body_util::{BodyExt, Either};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tandem_admin::{Component, Table};
use tandem_config::Config;
use tandem_config::waf::{MatchOperator, WafMode};
use tandem_waf::policy::{GeoLookup, PolicyError};
use tandem_waf::{PolicyTransaction, RouteOptions, RoutePolicy, WafMetrics, WafPolicies};

use crate::body::{BoxBody, Prefixed};
use crate::inspect::{self, RequestHead, RequestInspector, Verdict};
use crate::{Edge, EdgeError};

/// Why WAF policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WafLoadError {
    /// A policy did not compile (its managed rules, a custom rule or an exclusion).
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// Geography is needed by a `geo_match` condition but could not be loaded.
    #[error(
        "policy {policy:?} has geo_match conditions but the geography did not load: {reason}\n    hint: fix [geo] (networks or the MaxMind database path)"
    )]
    Geo {
        /// The policy that needs it.
        policy: String,
        /// Why it did not load.
        reason: String,
    },
    /// The compiler thread stopped (a bug).
    #[error("the WAF compiler thread stopped: {0}")]
    Compiler(String),
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new WAF policies did not compile; nothing changed.
    #[error("WAF: {0}")]
    Waf(#[from] WafLoadError),
    /// The edge refused the new config; nothing changed.
    #[error("edge: {0}")]
    Edge(#[from] EdgeError),
}

/// Counters of one policy for the admin API, kept across reloads.
#[derive(Debug, Default)]
struct Counters {
    inspected: AtomicU64,
    blocked: AtomicU64,
    detected: AtomicU64,
    matches: AtomicU64,
    micros: AtomicU64,
}

/// A route's policy as requests use it.
struct RouteEntry {
    policy: String,
    route: Arc<RoutePolicy>,
    counters: Arc<Counters>,
}

/// What one load of the config compiled.
struct State {
    generation: u64,
    loaded_at: SystemTime,
    compile: Duration,
    policies: WafPolicies,
    /// By route name.
    routes: HashMap<String, RouteEntry>,
    /// By policy name: the policy with default route settings, for a request whose route the
    /// state does not know (only between the WAF's swap and the edge's during a reload).
    fallback: HashMap<String, RouteEntry>,
}

impl State {
    fn empty() -> State {
        State {
            generation: 0,
            loaded_at: SystemTime::now(),
            compile: Duration::ZERO,
            policies: WafPolicies::default(),
            routes: HashMap::new(),
            fallback: HashMap::new(),
        }
    }

    fn entry(&self, route: &str, policy: &str) -> Option<&RouteEntry> {
        match self.routes.get(route) {
            Some(e) if e.policy == policy => Some(e),
            _ => self.fallback.get(policy),
        }
    }
}

struct Shared {
    state: ArcSwap<State>,
    metrics: WafMetrics,
    geo: Mutex<Option<Arc<dyn GeoLookup>>>,
    counters: Mutex<HashMap<String, Arc<Counters>>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// The WAF policies an edge serves. Cheap to clone; pass [`EdgeWaf::inspector`] as
/// [`crate::EdgeOptions::inspector`].
#[derive(Clone)]
pub struct EdgeWaf {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EdgeWaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.state.load();
        f.debug_struct("EdgeWaf")
            .field("generation", &st.generation)
            .field("routes", &st.routes.len())
            .finish()
    }
}

/// Compiled policies waiting to be swapped in ([`EdgeWaf::prepare`], [`EdgeWaf::commit`]).
pub struct Prepared {
    state: State,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("routes", &self.state.routes.len())
            .finish()
    }
}

fn needs_geo(cfg: &Config) -> Option<String> {
    cfg.waf.as_ref().and_then(|w| {
        w.policies
            .iter()
            .find(|p| {
                p.custom_rules.iter().any(|r| {
                    r.conditions
                        .iter()
                        .any(|c| c.operator == MatchOperator::GeoMatch)
                })
            })
            .map(|p| p.name.clone())
    })
}

fn load_geo(cfg: &Config) -> Result<Option<Arc<dyn GeoLookup>>, WafLoadError> {
    let Some(policy) = needs_geo(cfg) else {
        return Ok(None);
    };
    let regions: Vec<String> = cfg.regions.iter().map(|r| r.name.clone()).collect();
    match tandem_geo::Geo::new(&cfg.geo, &regions) {
        Ok(g) => Ok(Some(Arc::new(g))),
        Err(e) => Err(WafLoadError::Geo {
            policy,
            reason: e.to_string(),
        }),
    }
}

impl EdgeWaf {
    /// An edge WAF with no policies; its metrics are registered in `registry`. Load policies
    /// with [`EdgeWaf::prepare`] and [`EdgeWaf::commit`], or start with [`EdgeWaf::load`].
    pub fn new(registry: &mut Registry) -> EdgeWaf {
        EdgeWaf {
            shared: Arc::new(Shared {
                state: ArcSwap::from_pointee(State::empty()),
                metrics: WafMetrics::register(registry),
                geo: Mutex::new(None),
                counters: Mutex::new(HashMap::new()),
                reloads_ok: AtomicU64::new(0),
                reloads_failed: AtomicU64::new(0),
                last_error: Mutex::new(None),
            }),
        }
    }

    /// Compile the policies of `config` on a blocking thread and serve them.
    pub async fn load(config: &Config, registry: &mut Registry) -> Result<EdgeWaf, WafLoadError> {
        let waf = EdgeWaf::new(registry);
        let p = waf.prepare(config).await?;
        waf.commit(p);
        Ok(waf)
    }

    /// Compile the policies of `config` on the calling thread (for callers without a
    /// runtime; this blocks for about half a second per Core Rule Set copy).
    pub fn compile_blocking(&self, config: &Config) -> Result<Prepared, WafLoadError> {
        let t = Instant::now();
        let geo = load_geo(config)?;
        let geo = geo.or_else(|| self.shared.geo.lock().ok().and_then(|g| g.clone()));
        let policies = match &config.waf {
            Some(w) => WafPolicies::compile(w, geo.clone(), &self.shared.metrics)?,
            None => WafPolicies::default(),
        };
        if let Ok(mut g) = self.shared.geo.lock() {
            g.clone_from(&geo);
        }
        let mut counters = self
            .shared
            .counters
            .lock()
            .map_err(|_| WafLoadError::Compiler("counters lock poisoned".into()))?;
        let mut counter = |name: &str| counters.entry(name.to_string()).or_default().clone();
        let mut routes = HashMap::new();
        let mut fallback = HashMap::new();
        let cfg_policies = config.waf.as_ref().map_or(&[][..], |w| &w.policies[..]);
        for pc in cfg_policies {
            let Some(policy) = policies.get(&pc.name) else {
                continue;
            };
            fallback.insert(
                pc.name.clone(),
                RouteEntry {
                    policy: pc.name.clone(),
                    route: Arc::new(policy.for_route(&RouteOptions {
                        route: "-".into(),
                        ..RouteOptions::default()
                    })?),
                    counters: counter(&pc.name),
                },
            );
        }
        for r in config.edge.iter().flat_map(|e| &e.routes) {
            let Some(name) = &r.waf else { continue };
            let Some(policy) = policies.get(name) else {
                continue;
            };
            let over = cfg_policies
                .iter()
                .find(|p| &p.name == name)
                .and_then(|p| p.routes.iter().find(|o| o.route == r.name));
            let opts = RouteOptions {
                route: r.name.clone(),
                mode: over.and_then(|o| o.mode),
                exclusions: over.map(|o| o.exclusions.clone()).unwrap_or_default(),
            };
            routes.insert(
                r.name.clone(),
                RouteEntry {
                    policy: name.clone(),
                    route: Arc::new(policy.for_route(&opts)?),
                    counters: counter(name),
                },
            );
        }
        Ok(Prepared {
            state: State {
                generation: 0,
                loaded_at: SystemTime::now(),
                compile: t.elapsed(),
                policies,
                routes,
                fallback,
            },
        })
    }

    /// Compile the policies of `config` on a blocking thread (`spawn_blocking`), leaving the
    /// ones in service untouched.
    pub async fn prepare(&self, config: &Config) -> Result<Prepared, WafLoadError> {
        let me = self.clone();
        let config = config.clone();
        let r = tokio::task::spawn_blocking(move || me.compile_blocking(&config))
            .await
            .map_err(|e| WafLoadError::Compiler(e.to_string()))?;
        if let Err(e) = &r {
            self.shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut l) = self.shared.last_error.lock() {
                *l = Some(e.to_string());
            }
        }
        r
    }

    /// Serve prepared policies from now on; transactions already started finish with the
    /// policies they started with.
    pub fn commit(&self, p: Prepared) {
        let mut state = p.state;
        state.generation = self.shared.state.load().generation + 1;
        self.shared.reloads_ok.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.shared.last_error.lock() {
            *l = None;
        }
        tracing::info!(
            target: "tandem::waf",
            generation = state.generation,
            policies = state.policies.names().count(),
            routes = state.routes.len(),
            compile_ms = state.compile.as_millis() as u64,
            "waf policies loaded"
        );
        self.shared.state.store(Arc::new(state));
    }

    /// Swap in `next` while keeping, under their names, the policies of the current state that
    /// `next` lacks, so requests routed by the edge's previous snapshot still find theirs.
    /// Returns the state to restore if the edge refuses the new config.
    fn commit_transition(&self, next: &Prepared) -> Arc<State> {
        let old = self.shared.state.load_full();
        let mut routes: HashMap<String, RouteEntry> = HashMap::new();
        let mut fallback: HashMap<String, RouteEntry> = HashMap::new();
        let copy = |e: &RouteEntry| RouteEntry {
            policy: e.policy.clone(),
            route: e.route.clone(),
            counters: e.counters.clone(),
        };
        for (k, e) in &next.state.routes {
            routes.insert(k.clone(), copy(e));
        }
        for (k, e) in &next.state.fallback {
            fallback.insert(k.clone(), copy(e));
        }
        for (k, e) in &old.fallback {
            fallback.entry(k.clone()).or_insert_with(|| copy(e));
        }
        self.shared.state.store(Arc::new(State {
            generation: old.generation,
            loaded_at: old.loaded_at,
            compile: old.compile,
            policies: next.state.policies.clone(),
            routes,
            fallback,
        }));
        old
    }

    /// The inspector to give the edge ([`crate::EdgeOptions::inspector`]).
    pub fn inspector(&self) -> Arc<dyn RequestInspector> {
        Arc::new(self.clone())
    }

    /// The WAF's state for the admin API and `tandem status`.
    pub fn status(&self) -> WafStatus {
        let st = self.shared.state.load();
        let mut policies: Vec<PolicyStatus> = Vec::new();
        let mut names: Vec<&str> = st.policies.names().collect();
        names.sort_unstable();
        for name in names {
            let Some(p) = st.policies.get(name) else {
                continue;
            };
            let c = st.fallback.get(name).map(|e| e.counters.clone());
            let load = |f: fn(&Counters) -> &AtomicU64| {
                c.as_ref().map_or(0, |c| f(c).load(Ordering::Relaxed))
            };
            let inspected = load(|c| &c.inspected);
            let mut routes: Vec<String> = st
                .routes
                .iter()
                .filter(|(_, e)| e.policy == name)
                .map(|(r, _)| r.clone())
                .collect();
            routes.sort();
            policies.push(PolicyStatus {
                policy: name.to_string(),
                mode: p.mode(),
                managed_rules: p.rules().map_or(0, |r| r.rule_count()),
                custom_rules: p.custom_rule_count(),
                paranoia_level: p.paranoia_level(),
                request_body_limit: p.request_body_limit(),
                routes,
                inspected,
                blocked: load(|c| &c.blocked),
                detected: load(|c| &c.detected),
                rule_matches: load(|c| &c.matches),
                mean_micros: load(|c| &c.micros).checked_div(inspected).unwrap_or(0),
            });
        }
        let mut routes: Vec<RouteStatus> = st
            .routes
            .iter()
            .map(|(name, e)| RouteStatus {
                route: name.clone(),
                policy: e.policy.clone(),
                mode: e.route.mode(),
            })
            .collect();
        routes.sort_by(|a, b| a.route.cmp(&b.route));
        WafStatus {
            generation: st.generation,
            loaded_at: crate::access_log::rfc3339(st.loaded_at),
            compile_ms: st.compile.as_millis() as u64,
            reloads_ok: self.shared.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.shared.reloads_failed.load(Ordering::Relaxed),
            last_error: self.shared.last_error.lock().ok().and_then(|l| l.clone()),
            policies,
            routes,
        }
    }
}

/// Reload an edge and its WAF from a new validated config, without dropping traffic: the
/// policies compile on a blocking thread first; if they fail, nothing changes. Then policies
/// and routes are swapped; if the edge refuses its part, the previous policies come back.
pub async fn reload(edge: &Edge, waf: &EdgeWaf, config: &Config) -> Result<(), ReloadError> {
    let next = waf.prepare(config).await?;
    let previous = waf.commit_transition(&next);
    if let Err(e) = edge.reload(config) {
        waf.shared.state.store(previous);
        waf.shared.reloads_failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = waf.shared.last_error.lock() {
            *l = Some(e.to_string());
        }
        return Err(e.into());
    }
    waf.commit(next);
    Ok(())
}

/// The WAF's state as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WafStatus {
    /// Increases with every successful (re)load.
    pub generation: u64,
    /// When the policies in service were loaded (RFC 3339).
    pub loaded_at: String,
    /// How long compiling them took.
    pub compile_ms: u64,
    /// Successful loads.
    pub reloads_ok: u64,
    /// Refused loads.
    pub reloads_failed: u64,
    /// Why the last load was refused, if it was.
    pub last_error: Option<String>,
    /// Policies.
    pub policies: Vec<PolicyStatus>,
    /// Routes with a policy.
    pub routes: Vec<RouteStatus>,
}

/// One policy.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    /// Name.
    pub policy: String,
    /// The policy's mode (routes may override it).
    pub mode: WafMode,
    /// Managed (SecLang) rules loaded.
    pub managed_rules: usize,
    /// Custom rules.
    pub custom_rules: usize,
    /// Blocking paranoia level.
    pub paranoia_level: u8,
    /// Request body bytes inspected.
    pub request_body_limit: usize,
    /// Routes using it.
    pub routes: Vec<String>,
    /// Requests inspected since the edge started.
    pub inspected: u64,
    /// Requests refused (or redirected).
    pub blocked: u64,
    /// Requests that detection mode would have refused.
    pub detected: u64,
    /// Rule matches logged.
    pub rule_matches: u64,
    /// Mean WAF time per inspected request, in microseconds.
    pub mean_micros: u64,
}

/// One route with a policy.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    /// Route name.
    pub route: String,
    /// Policy name.
    pub policy: String,
    /// The mode in effect on the route.
    pub mode: WafMode,
}

impl RequestInspector for EdgeWaf {
    fn transaction(&self, h: &RequestHead<'_>) -> Option<Box<dyn inspect::Transaction>> {
        let st = self.shared.state.load();
        let Some(e) = st.entry(h.route, h.policy) else {
            // The edge refuses configs whose routes name unknown policies; getting here means
            // the WAF lost a policy in service. Fail closed.
            tracing::error!(target: "tandem::waf", route = h.route, policy = h.policy, request_id = h.request_id, "no WAF policy for the route; refusing the request");
            return Some(Box::new(Unavailable));
        };
        if e.route.mode() == WafMode::Off {
            return None;
        }
        let mut head = tandem_waf::RequestHead::from_http(
            h.method,
            h.uri,
            h.version,
            h.headers,
            h.client,
            h.request_id,
        );
        // HTTP/2 carries the host in :authority; rules (and ModSecurity behind nginx) expect
        // a Host header.
        if h.version == Version::HTTP_2
            && !h.headers.contains_key(http::header::HOST)
            && let Some(a) = h.uri.authority()
        {
            head.headers
                .push((b"host".to_vec(), a.as_str().as_bytes().to_vec()));
        }
        e.counters.inspected.fetch_add(1, Ordering::Relaxed);
        Some(Box::new(Txn {
            t: Some(e.route.start(head)),
            counters: e.counters.clone(),
        }))
    }

    fn serves(&self, name: &str) -> bool {
        self.shared.state.load().policies.get(name).is_some()
    }
}

/// Refuses every request: a route whose policy is missing.
struct Unavailable;

impl inspect::Transaction for Unavailable {
    fn request_headers(&mut self) -> Verdict {
        Verdict::Block {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: "503 the web application firewall policy for this route is unavailable\n".into(),
        }
    }
}

struct Txn {
    t: Option<PolicyTransaction>,
    counters: Arc<Counters>,
}

fn verdict(v: tandem_waf::Verdict, block_body: impl FnOnce() -> String) -> Verdict {
    let status = |s: u16, default: StatusCode| StatusCode::from_u16(s).unwrap_or(default);
    match v {
        tandem_waf::Verdict::Continue => Verdict::Continue,
        tandem_waf::Verdict::Block {
            status: s, body, ..
        } => Verdict::Block {
            status: status(s, StatusCode::FORBIDDEN),
            body,
        },
        tandem_waf::Verdict::Redirect {
            status: s,
            location,
            ..
        } => Verdict::Redirect {
            status: status(s, StatusCode::FOUND),
            location,
        },
        // SecLang `drop`: the edge answers like a block rather than cutting the connection,
        // which on HTTP/2 would cut every other stream of the client too.
        tandem_waf::Verdict::Drop { .. } => Verdict::Block {
            status: StatusCode::FORBIDDEN,
            body: block_body(),
        },
    }
}

impl Txn {
    fn step(&mut self, f: impl FnOnce(&mut PolicyTransaction) -> tandem_waf::Verdict) -> Verdict {
        match self.t.as_mut() {
            Some(t) => {
                let v = f(t);
                verdict(v, || t.block_body())
            }
            None => Verdict::Continue,
        }
    }
}

impl inspect::Transaction for Txn {
    fn request_headers(&mut self) -> Verdict {
        self.step(PolicyTransaction::request_headers)
    }

    fn wants_body(&self) -> bool {
        self.t
            .as_ref()
            .is_some_and(PolicyTransaction::wants_request_body)
    }

    fn body_limit(&self) -> Option<usize> {
        self.t.as_ref().map(|t| t.policy().request_body_limit())
    }

    fn request_body(&mut self, body: &Bytes, truncated: bool) -> Verdict {
        self.step(|t| t.request_body(body, truncated))
    }

    fn response_headers(&mut self, status: StatusCode, headers: &HeaderMap) -> Verdict {
        if !self
            .t
            .as_ref()
            .is_some_and(PolicyTransaction::wants_response_headers)
        {
            return Verdict::Continue;
        }
        let hs = headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
        self.step(|t| t.response_header_pairs(status.as_u16(), hs))
    }

    fn wants_response_body(&self) -> Option<usize> {
        self.t
            .as_ref()
            .filter(|t| t.wants_response_body())
            .map(PolicyTransaction::response_body_limit)
    }

    fn response_body(&mut self, body: &Bytes, _truncated: bool) -> Verdict {
        self.step(|t| t.response_body(body))
    }

    fn finish(&mut self) {
        let Some(t) = self.t.take() else { return };
        let o = t.finish();
        let c = &self.counters;
        if !o.verdict.is_continue() {
            c.blocked.fetch_add(1, Ordering::Relaxed);
        } else if o.would_block.is_some() {
            c.detected.fetch_add(1, Ordering::Relaxed);
        }
        c.matches.fetch_add(
            (o.matches.len() + o.custom_matches.len()) as u64,
            Ordering::Relaxed,
        );
        c.micros
            .fetch_add(o.duration.as_micros() as u64, Ordering::Relaxed);
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        // A request abandoned mid-way (client gone) still gets its log entries and counts.
        inspect::Transaction::finish(self);
    }
}

/// The origin's body after the WAF's response phase: untouched, or rebuilt from the buffered
/// prefix and the rest of the stream.
pub(crate) type OriginBody = Either<crate::client::PooledBody, BoxBody>;

/// The response phase: response headers, then (when the policy asks) the first bytes of the
/// response body, then the end of the transaction (logging, metrics). An error is a verdict
/// to answer with instead, and why.
pub(crate) async fn response_phase(
    txn: Option<Box<dyn inspect::Transaction>>,
    parts: &http::response::Parts,
    body: crate::client::PooledBody,
    idle: Duration,
) -> Result<OriginBody, (Verdict, &'static str)> {
    let Some(mut t) = txn else {
        return Ok(Either::Left(body));
    };
    let v = t.response_headers(parts.status, &parts.headers);
    if !matches!(v, Verdict::Continue) {
        t.finish();
        return Err((v, "blocked by WAF (response headers)"));
    }
    let limit = match t.wants_response_body() {
        Some(l) if parts.status != StatusCode::SWITCHING_PROTOCOLS => l,
        _ => {
            t.finish();
            return Ok(Either::Left(body));
        }
    };
    let mut body = body;
    let mut buf = BytesMut::new();
    let mut ended = false;
    while buf.len() <= limit {
        match tokio::time::timeout(idle, body.frame()).await {
            Ok(None) => {
                ended = true;
                break;
            }
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
            Ok(Some(Err(_))) | Err(_) => {
                t.finish();
                return Err((
                    Verdict::Block {
                        status: StatusCode::BAD_GATEWAY,
                        body: "502 origin response could not be read\n".into(),
                    },
                    "origin response body failed while the WAF buffered it",
                ));
            }
        }
    }
    let prefix = buf.freeze();
    let v = t.response_body(&prefix, !ended);
    t.finish();
    if !matches!(v, Verdict::Continue) {
        return Err((v, "blocked by WAF (response body)"));
    }
    Ok(Either::Right(if ended {
        crate::body::full(prefix)
    } else {
        Prefixed::new(prefix, body.boxed_unsync()).boxed_unsync()
    }))
}

/// The WAF in the admin API: `GET /api/v1/waf` returns [`WafStatus`]; the status page and
/// `tandem status` show a table of policies.
#[derive(Debug, Clone)]
pub struct WafComponent(pub EdgeWaf);

impl Component for WafComponent {
    fn name(&self) -> &'static str {
        "waf"
    }

    fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.0.status()).unwrap_or_default()
    }

    fn tables(&self) -> Vec<Table> {
        let st = self.0.status();
        let mut t = Table::new(
            format!("WAF policies (generation {})", st.generation),
            &[
                "policy",
                "mode",
                "rules",
                "custom",
                "PL",
                "routes",
                "inspected",
                "blocked",
                "detected",
                "matches",
                "µs/req",
            ],
        );
        for p in &st.policies {
            t.row(vec![
                p.policy.clone(),
                mode_name(p.mode).to_string(),
                p.managed_rules.to_string(),
                p.custom_rules.to_string(),
                p.paranoia_level.to_string(),
                if p.routes.is_empty() {
                    "-".into()
                } else {
                    p.routes.join(", ")
                },
                p.inspected.to_string(),
                p.blocked.to_string(),
                p.detected.to_string(),
                p.rule_matches.to_string(),
                p.mean_micros.to_string(),
            ]);
        }
        let mut tables = vec![t];
        if st.policies.iter().flat_map(|p| &p.routes).any(|r| {
            st.routes
                .iter()
                .any(|x| &x.route == r && Some(x.mode) != mode_of(&st, &x.policy))
        }) {
            let mut r = Table::new("WAF route overrides", &["route", "policy", "mode"]);
            for x in &st.routes {
                if Some(x.mode) != mode_of(&st, &x.policy) {
                    r.row(vec![
                        x.route.clone(),
                        x.policy.clone(),
                        mode_name(x.mode).to_string(),
                    ]);
                }
            }
            tables.push(r);
        }
        if let Some(e) = &st.last_error {
            let mut r = Table::new("WAF last reload error", &["error"]);
            r.row(vec![e.clone()]);
            tables.push(r);
        }
        tables
    }

    fn routes(&self) -> axum::Router {
        let me = self.0.clone();
        axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let me = me.clone();
                async move { axum::Json(me.status()) }
            }),
        )
    }
}

fn mode_of(st: &WafStatus, policy: &str) -> Option<WafMode> {
    st.policies
        .iter()
        .find(|p| p.policy == policy)
        .map(|p| p.mode)
}

fn mode_name(m: WafMode) -> &'static str {
    match m {
        WafMode::Off => "off",
        WafMode::Detection => "detection",
        WafMode::Prevention => "prevention",
    }
}
