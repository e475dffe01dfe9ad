//! Tandem's WAF policy: what the edge calls for each request.
//!
//! A [`Policy`] is compiled once from a validated `[waf.policies.NAME]`: the managed rules
//! (Tandem's base config, the CRS copy, extra rule files) become one shared [`RuleSet`];
//! custom rules, exclusions and rate limiters are compiled beside it. Per request the edge
//! opens a [`PolicyTransaction`] and calls, in order,
//!
//! ```text
//! let mut waf = policy.transaction(&head, &route_opts);
//! if let Verdict::Continue = waf.request_headers() { ... }     // custom rules, CRS phase 1
//! if waf.wants_request_body() { waf.request_body(&body) }       // body processors, phase 2
//! waf.response_headers(status, &headers)                        // phase 3
//! let outcome = waf.finish();                                   // log, metrics, verdict
//! ```
//!
//! Custom rules run first, in priority order; `allow` ends evaluation (managed rules are
//! skipped), `block` and `redirect` decide (in prevention mode), `log` only records. In
//! detection mode nothing is ever blocked, but every decision that would have been taken is
//! in the outcome and the log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tandem_config::waf::{
    BodyOverLimit, Condition, CustomAction, MatchOperator, MatchTransform, MatchVariable, WafMode,
    WafPolicy,
};

use crate::body;
use crate::error::LoadError;
use crate::metrics::WafMetrics;
use crate::pattern::Pattern;
use crate::rule::EngineMode;
use crate::ruleset::{Loader, RuleSet};
use crate::seclang::parse_variables;
use crate::transaction::{Budget, InterruptAction, MatchRecord, RequestHead, Transaction};
use crate::transform::Transform;
use crate::variable::Target;

/// The name under which a refused over-long body is logged and counted.
pub const OVER_LIMIT_RULE: &str = "request_body_limit";

/// Why a policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The managed rules did not load.
    #[error("waf.policies.{policy}: managed rules from {crs}: {source}")]
    Rules {
        /// Policy name.
        policy: String,
        /// The CRS directory.
        crs: String,
        /// What went wrong.
        source: LoadError,
    },
    /// The CRS directory does not exist.
    #[error(
        "waf.policies.{policy}.crs: {crs} does not exist; install a copy of the Core Rule Set there or fix the path"
    )]
    MissingCrs {
        /// Policy name.
        policy: String,
        /// The path.
        crs: String,
    },
    /// A custom rule or exclusion did not compile.
    #[error("waf.policies.{policy}.{key}: {message}")]
    Invalid {
        /// Policy name.
        policy: String,
        /// The key inside the policy.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// What the edge should do with the request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Verdict {
    /// Carry on.
    Continue,
    /// Answer with this status and body instead of forwarding.
    Block {
        /// HTTP status.
        status: u16,
        /// Response body (the policy's, with the request id filled in).
        body: String,
        /// The rule that decided (managed id or custom rule name).
        rule: String,
    },
    /// Redirect the client.
    Redirect {
        /// HTTP status (302 unless a rule says otherwise).
        status: u16,
        /// Location header.
        location: String,
        /// The rule that decided.
        rule: String,
    },
    /// Close the connection without an answer.
    Drop {
        /// The rule that decided.
        rule: String,
    },
}

impl Verdict {
    /// Whether the request goes on to the origin.
    pub fn is_continue(&self) -> bool {
        matches!(self, Verdict::Continue)
    }
}

/// Per-route settings the edge passes in.
#[derive(Debug, Clone, Default)]
pub struct RouteOptions {
    /// Route name (for metrics and logs).
    pub route: String,
    /// Overrides the policy's mode for this route.
    pub mode: Option<WafMode>,
    /// Extra exclusions for this route.
    pub exclusions: Vec<tandem_config::waf::Exclusion>,
}

/// Everything the WAF found about one request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The final verdict.
    pub verdict: Verdict,
    /// Request id.
    pub request_id: String,
    /// Policy name.
    pub policy: String,
    /// Route name.
    pub route: String,
    /// Mode in effect.
    pub mode: WafMode,
    /// Custom rules that matched, by name.
    pub custom_matches: Vec<String>,
    /// Managed rules that matched and log.
    pub matches: Vec<MatchRecord>,
    /// The inbound anomaly score.
    pub anomaly_score: i64,
    /// Time spent in the WAF.
    #[serde(serialize_with = "ser_micros")]
    pub duration: Duration,
    /// The time budget ran out and some rules were not evaluated.
    pub budget_exceeded: bool,
    /// What would have been decided without detection mode.
    pub would_block: Option<String>,
}

fn ser_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

/// Looks up where a client is (country and continent codes).
pub trait GeoLookup: Send + Sync {
    /// Country and continent of `ip`, upper case, if known.
    fn locate(&self, ip: IpAddr) -> (Option<[u8; 2]>, Option<[u8; 2]>);
}

impl GeoLookup for tandem_geo::Geo {
    fn locate(&self, ip: IpAddr) -> (Option<[u8; 2]>, Option<[u8; 2]>) {
        let loc = self.lookup(ip, 128);
        (loc.country, loc.continent)
    }
}

#[derive(Debug)]
struct CustomRule {
    name: String,
    action: CustomAction,
    redirect_url: Option<String>,
    rate: Option<RateLimiter>,
    conditions: Vec<CompiledCondition>,
    needs_body: bool,
}

#[derive(Debug)]
struct CompiledCondition {
    c: Condition,
    transforms: Vec<Transform>,
    regexes: Vec<Pattern>,
    sizes: Vec<u64>,
    geo: Vec<Geo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Geo {
    Country([u8; 2]),
    Continent([u8; 2]),
}

#[derive(Debug)]
struct Exclusion {
    ids: Vec<(u32, u32)>,
    tags: Vec<String>,
    target: Option<Arc<Target>>,
    path_prefix: Option<String>,
}

/// Fixed-window request counters per client address, bounded in size.
#[derive(Debug)]
struct RateLimiter {
    threshold: u32,
    window: Duration,
    shards: Vec<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
}

const RATE_SHARDS: usize = 16;
const RATE_MAX_PER_SHARD: usize = 16_384;

impl RateLimiter {
    fn new(threshold: u32, window: Duration) -> Self {
        RateLimiter {
            threshold,
            window,
            shards: (0..RATE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    /// Count a request; true when the client is over the limit.
    fn hit(&self, ip: IpAddr, now: Instant) -> bool {
        let h = match ip {
            IpAddr::V4(a) => u32::from(a) as usize,
            IpAddr::V6(a) => (u128::from(a) >> 64) as usize,
        };
        let shard = &self.shards[h.wrapping_mul(0x9E37_79B9) % RATE_SHARDS];
        let Ok(mut m) = shard.lock() else {
            return false;
        };
        if m.len() >= RATE_MAX_PER_SHARD {
            let window = self.window;
            m.retain(|_, (start, _)| now.duration_since(*start) < window);
            if m.len() >= RATE_MAX_PER_SHARD {
                // Still full of live clients: forget the oldest half rather than grow.
                let mut starts: Vec<Instant> = m.values().map(|(s, _)| *s).collect();
                starts.sort();
                let cut = starts[starts.len() / 2];
                m.retain(|_, (s, _)| *s > cut);
            }
        }
        let e = m.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1 > self.threshold
    }
}

/// A compiled policy.
pub struct Policy {
    name: String,
    mode: WafMode,
    rules: Option<Arc<RuleSet>>,
    custom: Vec<CustomRule>,
    exclusions: Vec<Exclusion>,
    block_status: u16,
    block_body: String,
    body_limit: usize,
    body_over_limit: BodyOverLimit,
    inspect_response_body: bool,
    budget: Duration,
    paranoia: (u8, u8),
    thresholds: (u32, u32),
    geo: Option<Arc<dyn GeoLookup>>,
    metrics: WafMetrics,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field(
                "managed_rules",
                &self.rules.as_ref().map(|r| r.rule_count()),
            )
            .field("custom_rules", &self.custom.len())
            .finish()
    }
}

/// Load managed rules: Tandem's base config, the CRS copy, then extra files.
pub fn load_managed_rules(
    crs: &std::path::Path,
    extra_files: &[PathBuf],
    response_body: bool,
) -> Result<RuleSet, LoadError> {
    let mut l = Loader::new();
    l.add_text(crate::ftw::BASE_CONF, "<base.conf>", crs)?;
    let setup = ["crs-setup.conf", "crs-setup.conf.example"]
        .iter()
        .map(|f| crs.join(f))
        .find(|p| p.exists());
    if let Some(s) = setup {
        l.add_file(&s)?;
    }
    l.add_text("Include rules/*.conf", "<crs>", crs)?;
    for f in extra_files {
        l.add_file(f)?;
    }
    l.settings_mut().response_body_access = response_body;
    l.finish()
}

impl Policy {
    /// Compile a policy. `geo` answers geography conditions; `rules` may pass an already
    /// loaded rule set to share between policies with the same CRS copy.
    pub fn compile(
        cfg: &WafPolicy,
        geo: Option<Arc<dyn GeoLookup>>,
        rules: Option<Arc<RuleSet>>,
        metrics: WafMetrics,
    ) -> Result<Policy, PolicyError> {
        let invalid = |key: String, message: String| PolicyError::Invalid {
            policy: cfg.name.clone(),
            key,
            message,
        };
        let rules = match (&cfg.crs, rules) {
            (_, Some(r)) => Some(r),
            (Some(dir), None) if cfg.mode != WafMode::Off => {
                if !dir.exists() {
                    return Err(PolicyError::MissingCrs {
                        policy: cfg.name.clone(),
                        crs: dir.display().to_string(),
                    });
                }
                Some(Arc::new(
                    load_managed_rules(dir, &cfg.rules_files, cfg.inspect_response_body).map_err(
                        |source| PolicyError::Rules {
                            policy: cfg.name.clone(),
                            crs: dir.display().to_string(),
                            source,
                        },
                    )?,
                ))
            }
            _ => None,
        };
        let mut custom = Vec::new();
        for (i, r) in cfg.custom_rules.iter().enumerate() {
            let mut conditions = Vec::new();
            for (j, c) in r.conditions.iter().enumerate() {
                let key = format!("custom_rules[{i}].match[{j}]");
                let mut regexes = Vec::new();
                if c.operator == MatchOperator::Regex {
                    for v in &c.values {
                        regexes.push(Pattern::new(v).map_err(|e| invalid(key.clone(), e))?);
                    }
                }
                let sizes = if matches!(
                    c.operator,
                    MatchOperator::LessThan
                        | MatchOperator::GreaterThan
                        | MatchOperator::LessThanOrEqual
                        | MatchOperator::GreaterThanOrEqual
                ) {
                    c.values
                        .iter()
                        .filter_map(|v| tandem_config::waf::condition_size(v))
                        .collect()
                } else {
                    Vec::new()
                };
                let geo = c
                    .values
                    .iter()
                    .filter_map(|v| {
                        let up = v.to_ascii_uppercase();
                        let code = |s: &str| -> Option<[u8; 2]> {
                            let b = s.as_bytes();
                            (b.len() == 2).then(|| [b[0], b[1]])
                        };
                        match up.strip_prefix("GEO-") {
                            Some(c) => code(c).map(Geo::Continent),
                            None => code(&up).map(Geo::Country),
                        }
                    })
                    .collect();
                conditions.push(CompiledCondition {
                    transforms: c.transforms.iter().map(|t| map_transform(*t)).collect(),
                    c: c.clone(),
                    regexes,
                    sizes,
                    geo,
                });
            }
            let needs_body = r.conditions.iter().any(|c| {
                matches!(
                    c.variable,
                    MatchVariable::PostArgs | MatchVariable::RequestBody
                )
            });
            custom.push(CustomRule {
                name: r.name.clone(),
                action: r.action,
                redirect_url: r.redirect_url.clone(),
                rate: r
                    .rate_limit
                    .map(|rl| RateLimiter::new(rl.threshold, rl.window)),
                conditions,
                needs_body,
            });
        }
        let exclusions = cfg
            .exclusions
            .iter()
            .enumerate()
            .map(|(i, e)| compile_exclusion(e).map_err(|m| invalid(format!("exclusions[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            name: cfg.name.clone(),
            mode: cfg.mode,
            rules,
            custom,
            exclusions,
            block_status: cfg.block_status,
            block_body: cfg.block_body.clone(),
            body_limit: usize::try_from(cfg.request_body_limit).unwrap_or(usize::MAX),
            body_over_limit: cfg.request_body_over_limit,
            inspect_response_body: cfg.inspect_response_body,
            budget: cfg.time_budget,
            paranoia: (cfg.paranoia_level, cfg.detection_paranoia_level),
            thresholds: (cfg.inbound_threshold, cfg.outbound_threshold),
            geo,
            metrics,
        })
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its mode.
    pub fn mode(&self) -> WafMode {
        self.mode
    }

    /// The most request-body bytes the edge should buffer for inspection.
    pub fn request_body_limit(&self) -> usize {
        self.body_limit
    }

    /// Number of custom rules.
    pub fn custom_rule_count(&self) -> usize {
        self.custom.len()
    }

    /// The blocking paranoia level.
    pub fn paranoia_level(&self) -> u8 {
        self.paranoia.0
    }

    /// The managed rules, if any.
    pub fn rules(&self) -> Option<&Arc<RuleSet>> {
        self.rules.as_ref()
    }

    /// Compile the settings of one route (its mode and extra exclusions) once, so that each
    /// request only looks them up.
    pub fn for_route(self: &Arc<Self>, opts: &RouteOptions) -> Result<RoutePolicy, PolicyError> {
        let exclusions = opts
            .exclusions
            .iter()
            .enumerate()
            .map(|(i, e)| {
                compile_exclusion(e).map_err(|message| PolicyError::Invalid {
                    policy: self.name.clone(),
                    key: format!("routes.{}.exclusions[{i}]", opts.route),
                    message,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let route: Arc<str> = Arc::from(opts.route.as_str());
        Ok(RoutePolicy {
            policy: self.clone(),
            mode: opts.mode.unwrap_or(self.mode),
            exclusions,
            evaluations: self.metrics.evaluation_counter(&self.name, &route),
            seconds: self.metrics.time_histogram(&self.name),
            route,
        })
    }

    /// Start evaluating a request (compiles `opts` on each call: for repeated use, compile
    /// them once with [`Policy::for_route`]).
    pub fn transaction(
        self: &Arc<Self>,
        head: &RequestHead,
        opts: &RouteOptions,
    ) -> PolicyTransaction {
        // Exclusions that do not compile were reported when the policy loaded.
        let route = self
            .for_route(opts)
            .unwrap_or_else(|_| route_without_exclusions(self, opts));
        route.start(head.clone())
    }
}

fn route_without_exclusions(p: &Arc<Policy>, opts: &RouteOptions) -> RoutePolicy {
    let route: Arc<str> = Arc::from(opts.route.as_str());
    RoutePolicy {
        policy: p.clone(),
        mode: opts.mode.unwrap_or(p.mode),
        exclusions: Vec::new(),
        evaluations: p.metrics.evaluation_counter(&p.name, &route),
        seconds: p.metrics.time_histogram(&p.name),
        route,
    }
}

/// A policy as one route uses it: the route's mode and exclusions compiled, its metric
/// handles resolved. Built at load time; cheap to share.
pub struct RoutePolicy {
    policy: Arc<Policy>,
    route: Arc<str>,
    mode: WafMode,
    exclusions: Vec<Exclusion>,
    evaluations: Counter,
    seconds: Histogram,
}

impl std::fmt::Debug for RoutePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutePolicy")
            .field("policy", &self.policy.name)
            .field("route", &self.route)
            .field("mode", &self.mode)
            .finish()
    }
}

impl RoutePolicy {
    /// The mode in effect on this route.
    pub fn mode(&self) -> WafMode {
        self.mode
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The route's name.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Start evaluating a request. With the mode `off` nothing is evaluated; callers skip
    /// the WAF entirely in that case (check [`RoutePolicy::mode`]).
    pub fn start(&self, head: RequestHead) -> PolicyTransaction {
        let p = &self.policy;
        let mode = self.mode;
        let started = Instant::now();
        let mut tx = None;
        if mode != WafMode::Off {
            self.evaluations.inc();
            if let Some(rs) = &p.rules {
                let mut t = Transaction::new(rs.clone(), &head);
                t.set_mode(match mode {
                    WafMode::Prevention => EngineMode::On,
                    _ => EngineMode::DetectionOnly,
                });
                t.set_budget(Budget { time: p.budget });
                t.set_tx_int("blocking_paranoia_level", i64::from(p.paranoia.0));
                t.set_tx_int("detection_paranoia_level", i64::from(p.paranoia.1));
                t.set_tx_int("inbound_anomaly_score_threshold", i64::from(p.thresholds.0));
                t.set_tx_int(
                    "outbound_anomaly_score_threshold",
                    i64::from(p.thresholds.1),
                );
                if !p.exclusions.is_empty() || !self.exclusions.is_empty() {
                    let path = path_of(&head.uri);
                    for e in p.exclusions.iter().chain(&self.exclusions) {
                        apply_exclusion(&mut t, e, &path);
                    }
                }
                tx = Some(t);
            }
        }
        PolicyTransaction {
            policy: p.clone(),
            head,
            route: self.route.clone(),
            mode,
            tx,
            next_custom: 0,
            allowed: false,
            verdict: Verdict::Continue,
            would_block: None,
            custom_matches: Vec::new(),
            body: None,
            spent: started.elapsed(),
            finished: false,
            seconds: self.seconds.clone(),
        }
    }
}

fn path_of(uri: &[u8]) -> Vec<u8> {
    let end = uri
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(uri.len());
    crate::transform::percent_decode(&uri[..end])
}

fn compile_exclusion(e: &tandem_config::waf::Exclusion) -> Result<Exclusion, String> {
    let target = match &e.target {
        Some(t) => {
            let raw = parse_variables(t)?;
            let first = raw.first().ok_or_else(|| format!("no target in {t:?}"))?;
            Some(Arc::new(Target::compile(first)?))
        }
        None => None,
    };
    Ok(Exclusion {
        ids: e.rule_ids.clone(),
        tags: e.tags.clone(),
        target,
        path_prefix: e.path_prefix.clone(),
    })
}

fn apply_exclusion(t: &mut Transaction, e: &Exclusion, path: &[u8]) {
    if let Some(p) = &e.path_prefix
        && !path.starts_with(p.as_bytes())
    {
        return;
    }
    match &e.target {
        None => t.remove_rules(&e.ids, &e.tags),
        Some(target) => {
            t.remove_target(&e.ids, target.clone());
            for tag in &e.tags {
                t.remove_target_by_tag(tag, target.clone());
            }
        }
    }
}

fn map_transform(t: MatchTransform) -> Transform {
    match t {
        MatchTransform::Lowercase => Transform::Lowercase,
        MatchTransform::Uppercase => Transform::Uppercase,
        MatchTransform::Trim => Transform::Trim,
        MatchTransform::UrlDecode => Transform::UrlDecodeUni,
        MatchTransform::UrlEncode => Transform::UrlEncode,
        MatchTransform::RemoveNulls => Transform::RemoveNulls,
        MatchTransform::HtmlEntityDecode => Transform::HtmlEntityDecode,
        MatchTransform::CompressWhitespace => Transform::CompressWhitespace,
    }
}

/// One request's evaluation under a policy.
pub struct PolicyTransaction {
    policy: Arc<Policy>,
    head: RequestHead,
    route: Arc<str>,
    mode: WafMode,
    tx: Option<Transaction>,
    next_custom: usize,
    allowed: bool,
    verdict: Verdict,
    would_block: Option<String>,
    custom_matches: Vec<String>,
    body: Option<Vec<u8>>,
    spent: Duration,
    finished: bool,
    seconds: Histogram,
}

impl std::fmt::Debug for PolicyTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyTransaction")
            .field("policy", &self.policy.name)
            .field("route", &self.route)
            .field("verdict", &self.verdict)
            .finish()
    }
}

impl PolicyTransaction {
    /// Custom rules (those that need no body) and managed rules on the request line and
    /// headers.
    pub fn request_headers(&mut self) -> Verdict {
        let t = Instant::now();
        if self.mode != WafMode::Off && self.verdict.is_continue() {
            self.run_custom(false);
            if !self.allowed
                && self.verdict.is_continue()
                && self.next_custom >= self.policy.custom.len()
            {
                self.run_managed(|tx| {
                    tx.process_request_headers();
                });
            }
        }
        self.spent += t.elapsed();
        self.verdict.clone()
    }

    /// Whether the edge should buffer the body (up to [`Policy::request_body_limit`]) and
    /// call [`PolicyTransaction::request_body`].
    pub fn wants_request_body(&self) -> bool {
        self.mode != WafMode::Off
            && self.verdict.is_continue()
            && !self.allowed
            && (self.next_custom < self.policy.custom.len()
                || self
                    .tx
                    .as_ref()
                    .is_some_and(Transaction::wants_request_body))
    }

    /// The request body as the edge buffered it: the whole body, or (with `truncated`) its
    /// first bytes, cut somewhere past [`Policy::request_body_limit`]. Runs the remaining
    /// custom rules, the body processors and the managed rules on the body.
    ///
    /// A body longer than the limit is refused with 413 when the policy's
    /// `request_body_over_limit` is `block` (logged only in detection mode); with
    /// `inspect_prefix` its first `request_body_limit` bytes are inspected.
    pub fn request_body(&mut self, body: &[u8], truncated: bool) -> Verdict {
        let t = Instant::now();
        let limit = self.policy.body_limit;
        if self.mode != WafMode::Off
            && self.verdict.is_continue()
            && !self.allowed
            && (truncated || body.len() > limit)
            && self.policy.body_over_limit == BodyOverLimit::Block
        {
            let v = Verdict::Block {
                status: 413,
                body: self.block_body(),
                rule: OVER_LIMIT_RULE.to_string(),
            };
            self.custom_matches.push(OVER_LIMIT_RULE.to_string());
            self.decide(v, OVER_LIMIT_RULE);
        }
        if self.mode != WafMode::Off && self.verdict.is_continue() && !self.allowed {
            self.body = Some(body[..body.len().min(limit)].to_vec());
            let headers_done = self.next_custom >= self.policy.custom.len();
            self.run_custom(true);
            if !self.allowed && self.verdict.is_continue() {
                let b = self.body.take().unwrap_or_default();
                self.run_managed(|tx| {
                    if !headers_done {
                        tx.process_request_headers();
                    }
                    tx.process_request_body(&b);
                });
                self.body = Some(b);
            }
        }
        self.spent += t.elapsed();
        self.verdict.clone()
    }

    /// Response headers (phase 3).
    pub fn response_headers(&mut self, status: u16, headers: &[(Vec<u8>, Vec<u8>)]) -> Verdict {
        self.response_header_pairs(
            status,
            headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
        )
    }

    /// [`PolicyTransaction::response_headers`] from borrowed (name, value) pairs, such as an
    /// HTTP library's header map: the transaction copies them once.
    pub fn response_header_pairs<'h>(
        &mut self,
        status: u16,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) -> Verdict {
        let t = Instant::now();
        if self.mode != WafMode::Off && self.verdict.is_continue() && !self.allowed {
            // A request whose body was never offered still gets phase 2 first.
            self.run_managed(|tx| {
                tx.process_response_header_pairs(status, "HTTP/1.1", headers);
            });
        }
        self.spent += t.elapsed();
        self.verdict.clone()
    }

    /// Whether the edge should buffer the response body for [`PolicyTransaction::response_body`].
    pub fn wants_response_body(&self) -> bool {
        self.policy.inspect_response_body
            && self.verdict.is_continue()
            && !self.allowed
            && self
                .tx
                .as_ref()
                .is_some_and(Transaction::wants_response_body)
    }

    /// The most response-body bytes to buffer for [`PolicyTransaction::response_body`]
    /// (`SecResponseBodyLimit`).
    pub fn response_body_limit(&self) -> usize {
        self.policy
            .rules
            .as_ref()
            .map_or(0, |r| r.settings.response_body_limit)
    }

    /// Whether any managed rule looks at the response headers (phase 3), so the edge can skip
    /// copying them when none does.
    pub fn wants_response_headers(&self) -> bool {
        self.mode != WafMode::Off
            && self.verdict.is_continue()
            && !self.allowed
            && self
                .policy
                .rules
                .as_ref()
                .is_some_and(|r| !r.phase(3).is_empty() || !r.phase(4).is_empty())
    }

    /// The response body (phase 4), when [`PolicyTransaction::wants_response_body`].
    pub fn response_body(&mut self, body: &[u8]) -> Verdict {
        let t = Instant::now();
        if self.verdict.is_continue() && !self.allowed {
            self.run_managed(|tx| {
                tx.process_response_body(body);
            });
        }
        self.spent += t.elapsed();
        self.verdict.clone()
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The verdict so far.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// Finish: run the logging phase, write one log entry per match, count metrics, and
    /// return everything that was found.
    pub fn finish(mut self) -> Outcome {
        let t = Instant::now();
        if let Some(tx) = self.tx.as_mut()
            && !self.allowed
        {
            tx.process_logging();
        }
        self.spent += t.elapsed();
        self.finished = true;
        let p = &self.policy;
        let matches: Vec<MatchRecord> = self
            .tx
            .as_ref()
            .map(|t| t.matches().to_vec())
            .unwrap_or_default();
        let anomaly_score = self.tx.as_ref().map_or(0, Transaction::anomaly_score);
        let budget_exceeded = self.tx.as_ref().is_some_and(Transaction::budget_exceeded);
        for m in &matches {
            p.metrics
                .matched(&p.name, &self.route, &m.rule_id.to_string());
            tracing::warn!(
                target: "tandem::waf",
                request_id = %self.head.request_id,
                policy = %p.name,
                route = %self.route,
                mode = ?self.mode,
                rule_id = m.rule_id,
                msg = %m.message,
                data = %m.data,
                matched_var = %m.matched_var,
                severity = m.severity.map(crate::rule::severity_name).unwrap_or(""),
                anomaly_score,
                client = %self.head.client.ip(),
                "waf rule matched"
            );
        }
        for name in &self.custom_matches {
            p.metrics.matched(&p.name, &self.route, name);
            tracing::warn!(
                target: "tandem::waf",
                request_id = %self.head.request_id,
                policy = %p.name,
                route = %self.route,
                mode = ?self.mode,
                custom_rule = %name,
                client = %self.head.client.ip(),
                "waf custom rule matched"
            );
        }
        if let Some(rule) = match &self.verdict {
            Verdict::Continue => None,
            Verdict::Block { rule, .. }
            | Verdict::Redirect { rule, .. }
            | Verdict::Drop { rule } => Some(rule.clone()),
        } {
            p.metrics.blocked(&p.name, &self.route, &rule);
            tracing::warn!(
                target: "tandem::waf",
                request_id = %self.head.request_id,
                policy = %p.name,
                route = %self.route,
                rule = %rule,
                anomaly_score,
                "waf blocked request"
            );
        }
        if budget_exceeded {
            tracing::warn!(
                target: "tandem::waf",
                request_id = %self.head.request_id,
                policy = %p.name,
                "waf time budget exceeded; some rules were not evaluated"
            );
        }
        if self.mode != WafMode::Off {
            self.seconds.observe(self.spent.as_secs_f64());
        }
        Outcome {
            verdict: self.verdict.clone(),
            request_id: self.head.request_id.clone(),
            policy: p.name.clone(),
            route: self.route.to_string(),
            mode: self.mode,
            custom_matches: self.custom_matches.clone(),
            matches,
            anomaly_score,
            duration: self.spent,
            budget_exceeded,
            would_block: self.would_block.clone(),
        }
    }

    /// The policy's block body for this request (with its request id).
    pub fn block_body(&self) -> String {
        self.policy
            .block_body
            .replace("{request_id}", &self.head.request_id)
    }

    fn decide(&mut self, v: Verdict, rule: &str) {
        if self.mode == WafMode::Prevention {
            self.verdict = v;
        } else if self.would_block.is_none() {
            self.would_block = Some(rule.to_string());
        }
    }

    fn run_managed(&mut self, f: impl FnOnce(&mut Transaction)) {
        let Some(tx) = self.tx.as_mut() else { return };
        f(tx);
        if self.would_block.is_none()
            && self.mode != WafMode::Prevention
            && let Some(m) = tx.matches().iter().find(|m| m.disruptive)
        {
            self.would_block = Some(m.rule_id.to_string());
        }
        let Some(i) = tx.interruption().cloned() else {
            return;
        };
        let rule = i.rule_id.to_string();
        let v = match i.action {
            InterruptAction::Deny => Verdict::Block {
                status: if i.status == 403 {
                    self.policy.block_status
                } else {
                    i.status
                },
                body: self.block_body(),
                rule: rule.clone(),
            },
            InterruptAction::Drop => Verdict::Drop { rule: rule.clone() },
            InterruptAction::Redirect { location } => Verdict::Redirect {
                status: if (300..400).contains(&i.status) {
                    i.status
                } else {
                    302
                },
                location,
                rule: rule.clone(),
            },
        };
        self.decide(v, &rule);
    }

    /// Custom rules from `next_custom` on; stops before the first rule that needs the body
    /// unless `with_body`.
    fn run_custom(&mut self, with_body: bool) {
        let policy = self.policy.clone();
        while self.next_custom < policy.custom.len() {
            let r = &policy.custom[self.next_custom];
            if r.needs_body && !with_body {
                return;
            }
            self.next_custom += 1;
            if !r.conditions.iter().all(|c| self.condition(c)) {
                continue;
            }
            if let Some(rl) = &r.rate
                && !rl.hit(self.head.client.ip(), Instant::now())
            {
                continue;
            }
            self.custom_matches.push(r.name.clone());
            match r.action {
                CustomAction::Allow => {
                    self.allowed = true;
                    return;
                }
                CustomAction::Log => {}
                CustomAction::Block => {
                    let v = Verdict::Block {
                        status: if r.rate.is_some() && policy.block_status == 403 {
                            429
                        } else {
                            policy.block_status
                        },
                        body: self.block_body(),
                        rule: r.name.clone(),
                    };
                    self.decide(v, &r.name);
                    if !self.verdict.is_continue() {
                        return;
                    }
                }
                CustomAction::Redirect => {
                    let v = Verdict::Redirect {
                        status: 302,
                        location: r.redirect_url.clone().unwrap_or_else(|| "/".into()),
                        rule: r.name.clone(),
                    };
                    self.decide(v, &r.name);
                    if !self.verdict.is_continue() {
                        return;
                    }
                }
            }
        }
    }

    fn values(&self, c: &Condition) -> Vec<Vec<u8>> {
        let h = &self.head;
        let sel = c.selector.as_deref().map(str::as_bytes);
        let pick = |pairs: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<Vec<u8>> {
            pairs
                .into_iter()
                .filter(|(n, _)| sel.is_none_or(|s| n.eq_ignore_ascii_case(s)))
                .map(|(_, v)| v)
                .collect()
        };
        match c.variable {
            MatchVariable::RemoteAddr => vec![h.client.ip().to_string().into_bytes()],
            MatchVariable::RequestMethod => vec![h.method.as_bytes().to_vec()],
            MatchVariable::RequestUri => vec![h.uri.clone()],
            MatchVariable::RequestPath => vec![path_of(&h.uri)],
            MatchVariable::QueryString => {
                let q = h
                    .uri
                    .iter()
                    .position(|&c| c == b'?')
                    .map_or(&[][..], |p| &h.uri[p + 1..]);
                if sel.is_some() {
                    pick(body::parse_urlencoded(q, b'&', 1000).0)
                } else {
                    vec![q.to_vec()]
                }
            }
            MatchVariable::PostArgs => {
                let b = self.body.as_deref().unwrap_or_default();
                pick(body::parse_urlencoded(b, b'&', 1000).0)
            }
            MatchVariable::RequestHeader => pick(h.headers.clone()),
            MatchVariable::Cookies => {
                let mut out = Vec::new();
                for (n, v) in &h.headers {
                    if n.eq_ignore_ascii_case(b"cookie") {
                        body::parse_cookies(v, &mut out);
                    }
                }
                pick(out)
            }
            MatchVariable::RequestBody => vec![self.body.clone().unwrap_or_default()],
        }
    }

    fn condition(&self, cc: &CompiledCondition) -> bool {
        let c = &cc.c;
        let result = match c.operator {
            MatchOperator::IpMatch => {
                let ip = self.head.client.ip();
                c.networks.iter().any(|n| n.contains(&ip))
            }
            MatchOperator::GeoMatch => match &self.policy.geo {
                Some(g) => {
                    let (country, continent) = g.locate(self.head.client.ip());
                    cc.geo.iter().any(|want| match want {
                        Geo::Country(cc) => country.as_ref() == Some(cc),
                        Geo::Continent(cc) => continent.as_ref() == Some(cc),
                    })
                }
                None => false,
            },
            _ => {
                let values = self.values(c);
                values.iter().any(|raw| {
                    let mut v = raw.clone();
                    let mut scratch = Vec::new();
                    for t in &cc.transforms {
                        if t.apply(&v, &mut scratch) {
                            std::mem::swap(&mut v, &mut scratch);
                        }
                    }
                    let len = v.len() as u64;
                    match c.operator {
                        MatchOperator::Any => true,
                        MatchOperator::Equal => c.values.iter().any(|x| x.as_bytes() == v),
                        MatchOperator::Contains => c
                            .values
                            .iter()
                            .any(|x| memchr::memmem::find(&v, x.as_bytes()).is_some()),
                        MatchOperator::BeginsWith => {
                            c.values.iter().any(|x| v.starts_with(x.as_bytes()))
                        }
                        MatchOperator::EndsWith => {
                            c.values.iter().any(|x| v.ends_with(x.as_bytes()))
                        }
                        MatchOperator::Regex => {
                            cc.regexes.iter().any(|r| r.is_match(&v).unwrap_or(false))
                        }
                        MatchOperator::LessThan => cc.sizes.iter().any(|&s| len < s),
                        MatchOperator::GreaterThan => cc.sizes.iter().any(|&s| len > s),
                        MatchOperator::LessThanOrEqual => cc.sizes.iter().any(|&s| len <= s),
                        MatchOperator::GreaterThanOrEqual => cc.sizes.iter().any(|&s| len >= s),
                        MatchOperator::IpMatch | MatchOperator::GeoMatch => false,
                    }
                })
            }
        };
        result != c.negate
    }
}
