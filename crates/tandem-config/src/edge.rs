//! The `[edge]` section: the edge proxy's listeners per region, certificates, routes, origin
//! groups and the rules engine. Its keys are documented in docs/config.md; the meaning of the
//! matching and selection rules in docs/edge.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use crate::ctx::{Ctx, entries};
use crate::path::KeyPath;
use crate::value::{Dur, is_ident, normalize_dns_name};

// ---------------------------------------------------------------------------------------------
// Raw (as written)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEdge {
    #[serde(default)]
    instances: IndexMap<String, RawInstance>,
    #[serde(default)]
    certificates: Vec<RawCertificate>,
    cert_reload_interval: Option<Dur>,
    access_log: Option<bool>,
    request_id_header: Option<String>,
    hsts: Option<RawHsts>,
    limits: Option<RawLimits>,
    timeouts: Option<RawTimeouts>,
    origin_ca_file: Option<PathBuf>,
    #[serde(default)]
    routes: IndexMap<String, RawRoute>,
    #[serde(default)]
    groups: IndexMap<String, RawGroup>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    #[serde(default)]
    https: Vec<String>,
    #[serde(default)]
    http: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    domains: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHsts {
    max_age: Option<Dur>,
    #[serde(default)]
    include_subdomains: bool,
    #[serde(default)]
    preload: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_header_bytes: Option<Size>,
    max_headers: Option<usize>,
    max_body_bytes: Option<Size>,
    max_connections: Option<usize>,
    max_concurrent_streams: Option<u32>,
    retry_buffer_bytes: Option<Size>,
    inspect_body_bytes: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect: Option<Dur>,
    first_byte: Option<Dur>,
    idle: Option<Dur>,
    client_header: Option<Dur>,
    drain: Option<Dur>,
    pool_idle: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    domains: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    group: Option<String>,
    #[serde(default)]
    http: HttpMode,
    waf: Option<String>,
    hsts: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    monitor: Option<String>,
    latency_sensitivity: Option<Dur>,
    #[serde(default)]
    when_all_unhealthy: AllUnhealthy,
    #[serde(default)]
    local_first: bool,
    retries: Option<u32>,
    retry_budget: Option<RawRetryBudget>,
    passive: Option<RawPassive>,
    affinity: Option<RawAffinity>,
    #[serde(default)]
    origins: Vec<RawOrigin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetryBudget {
    ratio: Option<f64>,
    min_per_second: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPassive {
    failures: Option<u32>,
    eject_for: Option<Dur>,
    #[serde(default = "yes")]
    enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAffinity {
    cookie: Option<String>,
    ttl: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrigin {
    name: String,
    address: String,
    host_header: Option<String>,
    #[serde(default)]
    tls: bool,
    priority: Option<u8>,
    weight: Option<u32>,
    #[serde(default = "yes")]
    enabled: bool,
    region: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    r#match: MatchMode,
    #[serde(default)]
    conditions: Vec<RawCondition>,
    actions: Vec<RawAction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    field: Field,
    name: Option<String>,
    #[serde(default)]
    op: Op,
    value: Option<StringOrList>,
    #[serde(default)]
    negate: bool,
    #[serde(default)]
    ignore_case: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "action", rename_all = "snake_case")]
enum RawAction {
    Rewrite {
        pattern: Option<String>,
        to: String,
        #[serde(default)]
        keep_query: Option<bool>,
    },
    Redirect {
        status: Option<u16>,
        location: String,
        pattern: Option<String>,
    },
    RequestHeader {
        op: HeaderOp,
        name: String,
        value: Option<String>,
    },
    ResponseHeader {
        op: HeaderOp,
        name: String,
        value: Option<String>,
    },
    OriginGroup {
        group: String,
    },
    Stop,
}

fn yes() -> bool {
    true
}

/// A byte size written as a number (`65536`) or with a unit (`"64KiB"`, `"10MB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(u64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(Size(n)),
            Either::S(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// Parse `"64KiB"`, `"10MB"`, `"1GiB"` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid size {s:?}; write a number of bytes or a number with a unit, like \"64KiB\" or \"10MB\"")
    })?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1_000_000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KB, KiB, MB, MiB, GB or GiB"
            ));
        }
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

// ---------------------------------------------------------------------------------------------
// Validated model
// ---------------------------------------------------------------------------------------------

/// What a route does with a request that arrived over plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMode {
    /// Answer `308 Permanent Redirect` to the same URL over HTTPS.
    #[default]
    Redirect,
    /// Serve it like an HTTPS request.
    Serve,
    /// Answer `403 Forbidden`.
    Reject,
}

/// What a group does when none of its enabled origins is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AllUnhealthy {
    /// Select among all enabled origins as if they were healthy: a probe outage must not take
    /// the site down (Front Door's behaviour).
    #[default]
    TryAll,
    /// Answer `503 Service Unavailable` without contacting an origin.
    Fail,
}

/// How a rule combines its conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// Every condition must hold.
    #[default]
    All,
    /// One condition is enough.
    Any,
}

/// What a rule condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The request's host, lower case, without port.
    Host,
    /// The path, without the query.
    Path,
    /// The raw query string (without `?`), or one query parameter when `name` is set.
    Query,
    /// A request header (`name` required); all values joined by `, `.
    Header,
    /// A cookie's value (`name` required).
    Cookie,
    /// The method.
    Method,
    /// The client's address, compared with CIDRs (`op = "in"`).
    ClientIp,
    /// `http` or `https`.
    Scheme,
}

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Equal to one of the values.
    #[default]
    Equals,
    /// Starts with one of the values.
    Prefix,
    /// Ends with one of the values.
    Suffix,
    /// Contains one of the values.
    Contains,
    /// Matches one of the regular expressions.
    Regex,
    /// The field is present (headers, cookies, query parameters).
    Exists,
    /// The client address is inside one of the CIDRs (`client_ip` only).
    In,
}

/// How a header action edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderOp {
    /// Replace every value with this one.
    Set,
    /// Add a value, keeping the existing ones.
    Append,
    /// Remove the header.
    Delete,
}

/// The edge proxy, as validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeConfig {
    /// Listeners per region: every region runs its own edge.
    pub instances: Vec<Instance>,
    /// Certificates, chosen by SNI.
    pub certificates: Vec<Certificate>,
    /// How often certificate files are checked for changes.
    pub cert_reload_interval: Duration,
    /// Whether every request is written to the access log.
    pub access_log: bool,
    /// The request id header added to requests and responses.
    pub request_id_header: String,
    /// HSTS on HTTPS responses, if set.
    pub hsts: Option<Hsts>,
    /// Size limits.
    pub limits: Limits,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Extra CA certificates (PEM) trusted for origins with `tls = true`.
    pub origin_ca_file: Option<PathBuf>,
    /// Routes, in file order.
    pub routes: Vec<Route>,
    /// Origin groups, in file order.
    pub groups: Vec<OriginGroup>,
    /// The rules engine, applied in order.
    pub rules: Vec<Rule>,
}

impl EdgeConfig {
    /// The listeners of a region.
    pub fn instance(&self, region: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.region == region)
    }
    /// An origin group by name.
    pub fn group(&self, name: &str) -> Option<&OriginGroup> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// A region's listeners.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    /// The region.
    pub region: String,
    /// HTTPS listen addresses.
    pub https: Vec<SocketAddr>,
    /// Plain HTTP listen addresses.
    pub http: Vec<SocketAddr>,
}

/// A certificate and its key, served for `domains`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Certificate {
    /// Exact names (`app.example.com`) or wildcards (`*.example.com`), lower case.
    pub domains: Vec<String>,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Strict-Transport-Security.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hsts {
    /// `max-age`.
    pub max_age: Duration,
    /// `includeSubDomains`.
    pub include_subdomains: bool,
    /// `preload`.
    pub preload: bool,
}

impl Hsts {
    /// The header value.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age.as_secs());
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// Size limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// The most bytes of request line and headers (431 above it).
    pub max_header_bytes: usize,
    /// The most request headers (431 above it).
    pub max_headers: usize,
    /// The largest request body (413 above it).
    pub max_body_bytes: u64,
    /// The most client connections at once per listener; more wait in the accept queue.
    pub max_connections: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// How much of a request body is kept so the request can be retried on another origin.
    pub retry_buffer_bytes: usize,
    /// How much of a request body is buffered for inspection when a WAF policy applies.
    pub inspect_body_bytes: usize,
}

/// Timeouts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeouts {
    /// TCP (and TLS) connect to an origin.
    pub connect: Duration,
    /// From sending the request to the response headers.
    pub first_byte: Duration,
    /// Longest silence on a body in either direction, and on an idle client connection.
    pub idle: Duration,
    /// For a client to send its TLS handshake and request headers.
    pub client_header: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain: Duration,
    /// How long an unused pooled origin connection is kept.
    pub pool_idle: Duration,
}

/// A route: domains and paths (and methods) to an origin group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// The route's name.
    pub name: String,
    /// Exact (`app.example.com`), wildcard (`*.example.com`) or `*` for any host.
    pub domains: Vec<String>,
    /// Exact paths (`/login`) or prefixes ending in `/*` (`/api/*`, `/*`).
    pub paths: Vec<String>,
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    /// The origin group; `None` only when every request is answered by a rule.
    pub group: Option<String>,
    /// Plain HTTP handling.
    pub http: HttpMode,
    /// The WAF policy's name, checked by the WAF section.
    pub waf: Option<String>,
    /// Whether HSTS is sent on this route (defaults to whether `[edge.hsts]` is set).
    pub hsts: bool,
}

/// An origin group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OriginGroup {
    /// The group's name.
    pub name: String,
    /// The monitor (from `[monitors]`) that probes every origin.
    pub monitor: Option<String>,
    /// Origins within this much of the fastest are all used.
    pub latency_sensitivity: Duration,
    /// Behaviour when nothing is healthy.
    pub when_all_unhealthy: AllUnhealthy,
    /// Origins in the edge's own region come before every other origin.
    pub local_first: bool,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Retries as a share of requests, on top of `min_retries_per_second`.
    pub retry_ratio: f64,
    /// Retries always allowed per second.
    pub min_retries_per_second: u32,
    /// Passive health: consecutive failures that eject an origin (0 = off).
    pub passive_failures: u32,
    /// Passive health: how long an ejected origin is skipped.
    pub passive_eject_for: Duration,
    /// Cookie affinity.
    pub affinity: Option<Affinity>,
    /// Origins in file order.
    pub origins: Vec<Origin>,
}

/// Session affinity by cookie.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Affinity {
    /// Cookie name.
    pub cookie: String,
    /// Cookie lifetime; `None` means a session cookie.
    pub ttl: Option<Duration>,
}

/// An origin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Origin {
    /// Name, unique within the group.
    pub name: String,
    /// `host:port` or `ip:port`.
    pub address: String,
    /// Host header sent to it; `None` keeps the client's.
    pub host_header: Option<String>,
    /// Connect with TLS.
    pub tls: bool,
    /// 1 (preferred) to 5.
    pub priority: u8,
    /// 1 to 1000.
    pub weight: u32,
    /// Disabled origins get no traffic and no probes.
    pub enabled: bool,
    /// The region the origin runs in.
    pub region: Option<String>,
}

/// A rule of the rules engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Name (for logs and metrics).
    pub name: String,
    /// All or any.
    pub match_mode: MatchMode,
    /// Conditions; none means always.
    pub conditions: Vec<Condition>,
    /// Actions in order.
    pub actions: Vec<Action>,
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    /// What is looked at.
    pub field: Field,
    /// Header, cookie or query parameter name.
    pub name: Option<String>,
    /// How it compares.
    pub op: Op,
    /// Values (any matches); regexes for `regex`, CIDRs for `in`.
    pub values: Vec<String>,
    /// Parsed CIDRs for `client_ip`.
    pub cidrs: Vec<IpNet>,
    /// Inverts the result.
    pub negate: bool,
    /// Compare case-insensitively.
    pub ignore_case: bool,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Rewrite the path sent to the origin: `pattern` (regex on the path, default `^(.*)$`)
    /// replaced by `to` (`$1` captures).
    Rewrite {
        /// Regex on the path.
        pattern: String,
        /// Replacement; may contain `?query`.
        to: String,
        /// Keep the original query string when `to` has none.
        keep_query: bool,
    },
    /// Answer with a redirect.
    Redirect {
        /// 301, 302, 307 or 308.
        status: u16,
        /// Location template: `{scheme}`, `{host}`, `{path}`, `{query}` and `$1` captures of
        /// `pattern`.
        location: String,
        /// Optional regex on the path whose captures `location` uses.
        pattern: Option<String>,
    },
    /// Edit a request header.
    RequestHeader {
        /// Set, append or delete.
        op: HeaderOp,
        /// Header name, lower case.
        name: String,
        /// Value (not for delete).
        value: String,
    },
    /// Edit a response header.
    ResponseHeader {
        /// Set, append or delete.
        op: HeaderOp,
        /// Header name, lower case.
        name: String,
        /// Value (not for delete).
        value: String,
    },
    /// Send the request to another origin group.
    OriginGroup {
        /// Its name.
        group: String,
    },
    /// Evaluate no further rules.
    Stop,
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

fn valid_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
}

fn valid_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

fn domain_pattern(ctx: &mut Ctx, key: &KeyPath, d: &str, allow_any: bool) -> Option<String> {
    if d == "*" {
        if allow_any {
            return Some("*".into());
        }
        ctx.error(
            key,
            "\"*\" is not allowed here",
            Some("name the domains, or use a wildcard like \"*.example.com\"".into()),
        );
        return None;
    }
    let (wild, rest) = match d.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, d),
    };
    match normalize_dns_name(rest) {
        Ok(n) if n.contains('*') => {
            ctx.error(
                key,
                format!("{d:?}: a wildcard may only be the whole first label"),
                Some("write it like \"*.example.com\"".into()),
            );
            None
        }
        Ok(n) => Some(if wild { format!("*.{n}") } else { n }),
        Err(e) => {
            ctx.error(key, e, None);
            None
        }
    }
}

fn check_regex(ctx: &mut Ctx, key: &KeyPath, pattern: &str) {
    // A light syntax check here keeps tandem-config free of a regex engine; the edge compiles
    // every pattern at start and refuses to start on a bad one, naming the rule.
    let mut depth = 0i32;
    let mut escaped = false;
    for c in pattern.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
    }
    if depth != 0 || escaped {
        ctx.error(
            key,
            format!("regular expression {pattern:?} has unbalanced parentheses or a trailing '\\'"),
            Some("check the pattern; the syntax is Rust's `regex` crate (like RE2)".into()),
        );
    }
}

pub(crate) fn validate(ctx: &mut Ctx, raw: &RawEdge) -> EdgeConfig {
    let base = KeyPath::root().key("edge");

    // Listeners.
    let mut instances = Vec::new();
    for (key, region, inst) in entries(&base.key("instances"), &raw.instances) {
        ctx.check_region(&key, region);
        let mut addrs = |field: &str, list: &[String]| -> Vec<SocketAddr> {
            list.iter()
                .enumerate()
                .filter_map(|(i, a)| {
                    ctx.parse(
                        &key.key(field).index(i),
                        a,
                        "socket address",
                        "\"127.0.1.1:8443\" or \"[::]:443\"",
                        a.parse::<SocketAddr>(),
                    )
                })
                .collect()
        };
        let https = addrs("https", &inst.https);
        let http = addrs("http", &inst.http);
        if inst.https.is_empty() && inst.http.is_empty() {
            ctx.error(
                &key,
                format!("the edge in region {region:?} has no listener"),
                Some("add https = [\"0.0.0.0:443\"] and/or http = [\"0.0.0.0:80\"]".into()),
            );
        }
        instances.push(Instance {
            region: region.clone(),
            https,
            http,
        });
    }
    let all_addrs: Vec<(String, SocketAddr)> = instances
        .iter()
        .flat_map(|i| {
            i.https
                .iter()
                .chain(i.http.iter())
                .map(move |a| (i.region.clone(), *a))
        })
        .collect();
    for (i, (region, a)) in all_addrs.iter().enumerate() {
        // Port 0 (any free port) is how tests and the lab bind; it never collides.
        if a.port() != 0 && all_addrs[..i].iter().any(|(_, b)| b == a) {
            ctx.error(
                &base.key("instances").key(region),
                format!("listen address {a} is used twice"),
                Some("every listener needs its own address and port".into()),
            );
        }
    }
    let any_https = instances.iter().any(|i| !i.https.is_empty());

    // Certificates.
    let mut certificates = Vec::new();
    for (i, c) in raw.certificates.iter().enumerate() {
        let key = base.key("certificates").index(i);
        if c.domains.is_empty() {
            ctx.error(
                &key.key("domains"),
                "a certificate needs at least one domain",
                Some("list the names it is served for, e.g. domains = [\"app.example.com\", \"*.example.com\"]".into()),
            );
        }
        let domains: Vec<String> = c
            .domains
            .iter()
            .enumerate()
            .filter_map(|(j, d)| domain_pattern(ctx, &key.key("domains").index(j), d, false))
            .collect();
        for (field, p) in [("cert", &c.cert), ("key", &c.key)] {
            if !p.exists() {
                ctx.error(
                    &key.key(field),
                    format!("{field} file {} does not exist", p.display()),
                    Some("give the path of a PEM file; relative paths are relative to the working directory".into()),
                );
            }
        }
        certificates.push(Certificate {
            domains,
            cert: c.cert.clone(),
            key: c.key.clone(),
        });
    }
    for (i, c) in certificates.iter().enumerate() {
        for d in &c.domains {
            if certificates[..i].iter().any(|o| o.domains.contains(d)) {
                ctx.error(
                    &base.key("certificates").index(i).key("domains"),
                    format!("domain {d:?} is served by two certificates"),
                    Some("each name may appear in one certificate entry".into()),
                );
            }
        }
    }
    let request_id_header = raw
        .request_id_header
        .clone()
        .unwrap_or_else(|| "x-request-id".into())
        .to_ascii_lowercase();
    if !valid_header_name(&request_id_header) {
        ctx.error(
            &base.key("request_id_header"),
            format!("{request_id_header:?} is not a valid header name"),
            None,
        );
    }

    let hsts = raw.hsts.as_ref().map(|h| Hsts {
        max_age: h.max_age.map_or(Duration::from_secs(31_536_000), |d| d.0),
        include_subdomains: h.include_subdomains,
        preload: h.preload,
    });
    if let Some(h) = &hsts
        && h.preload
        && (!h.include_subdomains || h.max_age < Duration::from_secs(31_536_000))
    {
        ctx.error(
            &base.key("hsts").key("preload"),
            "HSTS preload needs include_subdomains = true and max_age of at least one year",
            Some("see hstspreload.org; or remove preload".into()),
        );
    }

    // Limits.
    let dl = RawLimits::default();
    let l = raw.limits.as_ref().unwrap_or(&dl);
    let lk = base.key("limits");
    let limits = Limits {
        max_header_bytes: l.max_header_bytes.map_or(64 * 1024, |s| s.0 as usize),
        max_headers: l.max_headers.unwrap_or(100),
        max_body_bytes: l.max_body_bytes.map_or(100 * 1024 * 1024, |s| s.0),
        max_connections: l.max_connections.unwrap_or(10_000),
        max_concurrent_streams: l.max_concurrent_streams.unwrap_or(200),
        retry_buffer_bytes: l.retry_buffer_bytes.map_or(64 * 1024, |s| s.0 as usize),
        inspect_body_bytes: l.inspect_body_bytes.map_or(128 * 1024, |s| s.0 as usize),
    };
    if !(1024..=1024 * 1024).contains(&limits.max_header_bytes) {
        ctx.error(
            &lk.key("max_header_bytes"),
            "max_header_bytes must be between 1KiB and 1MiB",
            Some("the default of 64KiB fits any normal browser".into()),
        );
    }
    if !(8..=1000).contains(&limits.max_headers) {
        ctx.error(
            &lk.key("max_headers"),
            "max_headers must be between 8 and 1000",
            None,
        );
    }
    if limits.max_connections == 0 {
        ctx.error(
            &lk.key("max_connections"),
            "max_connections must be at least 1",
            None,
        );
    }
    if limits.max_concurrent_streams == 0 {
        ctx.error(
            &lk.key("max_concurrent_streams"),
            "max_concurrent_streams must be at least 1",
            None,
        );
    }

    // Timeouts.
    let dt = RawTimeouts::default();
    let t = raw.timeouts.as_ref().unwrap_or(&dt);
    let tk = base.key("timeouts");
    let timeouts = Timeouts {
        connect: t.connect.map_or(Duration::from_secs(3), |d| d.0),
        first_byte: t.first_byte.map_or(Duration::from_secs(60), |d| d.0),
        idle: t.idle.map_or(Duration::from_secs(60), |d| d.0),
        client_header: t.client_header.map_or(Duration::from_secs(10), |d| d.0),
        drain: t.drain.map_or(Duration::from_secs(30), |d| d.0),
        pool_idle: t.pool_idle.map_or(Duration::from_secs(90), |d| d.0),
    };
    for (name, d) in [
        ("connect", timeouts.connect),
        ("first_byte", timeouts.first_byte),
        ("idle", timeouts.idle),
        ("client_header", timeouts.client_header),
    ] {
        if d.is_zero() {
            ctx.error(
                &tk.key(name),
                format!("timeout {name} must be above zero"),
                None,
            );
        }
    }

    if let Some(ca) = &raw.origin_ca_file
        && !ca.exists()
    {
        ctx.error(
            &base.key("origin_ca_file"),
            format!("CA file {} does not exist", ca.display()),
            None,
        );
    }

    // Origin groups.
    let group_names: Vec<String> = raw.groups.keys().cloned().collect();
    let mut groups = Vec::new();
    for (key, name, g) in entries(&base.key("groups"), &raw.groups) {
        ctx.check_ident(&key, "origin group", name);
        if let Some(m) = &g.monitor {
            ctx.check_monitor(&key.key("monitor"), m);
        }
        if g.origins.is_empty() {
            ctx.error(
                &key.key("origins"),
                format!("origin group {name:?} has no origins"),
                Some(format!(
                    "add at least one [[edge.groups.{name}.origins]] table"
                )),
            );
        }
        let mut origins = Vec::new();
        for (i, o) in g.origins.iter().enumerate() {
            let ok = key.key("origins").index(i);
            ctx.check_ident(&ok.key("name"), "origin", &o.name);
            if g.origins[..i].iter().any(|x| x.name == o.name) {
                ctx.error(
                    &ok.key("name"),
                    format!("origin name {:?} is used twice in this group", o.name),
                    None,
                );
            }
            match o.address.rsplit_once(':') {
                Some((h, p))
                    if !h.is_empty()
                        && p.parse::<u16>().is_ok_and(|p| p != 0)
                        && (h.parse::<std::net::Ipv4Addr>().is_ok()
                            || (h.starts_with('[') && h.ends_with(']'))
                            || normalize_dns_name(h).is_ok()) => {}
                _ => ctx.error(
                    &ok.key("address"),
                    format!("{:?} is not a valid origin address", o.address),
                    Some("write host:port, like \"127.0.1.10:8000\", \"[2001:db8::1]:443\" or \"app.internal:8080\"".into()),
                ),
            }
            let priority = o.priority.unwrap_or(1);
            if !(1..=5).contains(&priority) {
                ctx.error(
                    &ok.key("priority"),
                    format!("priority {priority} is outside 1..=5"),
                    Some("1 is preferred; origins with 2..5 get traffic only when every better one is down".into()),
                );
            }
            let weight = o.weight.unwrap_or(1000);
            if !(1..=1000).contains(&weight) {
                ctx.error(
                    &ok.key("weight"),
                    format!("weight {weight} is outside 1..=1000"),
                    None,
                );
            }
            if let Some(r) = &o.region {
                ctx.check_region(&ok.key("region"), r);
            }
            if let Some(h) = &o.host_header
                && (h.is_empty() || !valid_header_value(h))
            {
                ctx.error(
                    &ok.key("host_header"),
                    format!("{h:?} is not a valid host header"),
                    None,
                );
            }
            origins.push(Origin {
                name: o.name.clone(),
                address: o.address.clone(),
                host_header: o.host_header.clone(),
                tls: o.tls,
                priority: priority.clamp(1, 5),
                weight: weight.clamp(1, 1000),
                enabled: o.enabled,
                region: o.region.clone(),
            });
        }
        if !origins.is_empty() && origins.iter().all(|o| !o.enabled) {
            ctx.error(
                &key.key("origins"),
                format!("every origin of group {name:?} is disabled"),
                Some("enable at least one, or remove the group".into()),
            );
        }
        if g.local_first && origins.iter().all(|o| o.region.is_none()) {
            ctx.error(
                &key.key("local_first"),
                "local_first needs origins with a `region`",
                Some("set region = \"...\" on each origin".into()),
            );
        }
        let retries = g.retries.unwrap_or(2);
        if retries > 10 {
            ctx.error(
                &key.key("retries"),
                "retries must be at most 10",
                Some("retries multiply load on a struggling origin; 1-3 is typical".into()),
            );
        }
        let (retry_ratio, min_retries_per_second) = match &g.retry_budget {
            Some(b) => (b.ratio.unwrap_or(0.2), b.min_per_second.unwrap_or(10)),
            None => (0.2, 10),
        };
        if !(0.0..=10.0).contains(&retry_ratio) || retry_ratio.is_nan() {
            ctx.error(
                &key.key("retry_budget").key("ratio"),
                "ratio must be between 0 and 10 (retries per request)",
                Some("0.2 allows one retry for every five requests".into()),
            );
        }
        let (passive_failures, passive_eject_for) = match &g.passive {
            Some(p) if !p.enabled => (0, Duration::from_secs(10)),
            Some(p) => (
                p.failures.unwrap_or(3),
                p.eject_for.map_or(Duration::from_secs(10), |d| d.0),
            ),
            None => (3, Duration::from_secs(10)),
        };
        if g.passive.as_ref().is_some_and(|p| p.enabled) && passive_failures == 0 {
            ctx.error(
                &key.key("passive").key("failures"),
                "failures must be at least 1",
                Some("to turn passive health off write enabled = false".into()),
            );
        }
        let affinity = g.affinity.as_ref().map(|a| {
            let cookie = a.cookie.clone().unwrap_or_else(|| "tandem_affinity".into());
            if !valid_header_name(&cookie) || cookie.contains(['=', ';', ',']) {
                ctx.error(
                    &key.key("affinity").key("cookie"),
                    format!("{cookie:?} is not a valid cookie name"),
                    None,
                );
            }
            Affinity {
                cookie,
                ttl: a.ttl.map(|d| d.0),
            }
        });
        groups.push(OriginGroup {
            name: name.clone(),
            monitor: g.monitor.clone(),
            latency_sensitivity: g
                .latency_sensitivity
                .map_or(Duration::from_millis(50), |d| d.0),
            when_all_unhealthy: g.when_all_unhealthy,
            local_first: g.local_first,
            retries: retries.min(10),
            retry_ratio,
            min_retries_per_second,
            passive_failures,
            passive_eject_for,
            affinity,
            origins,
        });
    }

    let check_group = |ctx: &mut Ctx, key: &KeyPath, g: &str| {
        if !group_names.iter().any(|n| n == g) {
            ctx.error(
                key,
                format!("origin group {g:?} is not defined"),
                Some(if group_names.is_empty() {
                    format!("add an [edge.groups.{g}] table with origins")
                } else {
                    format!(
                        "use one of the defined groups ({}), or add [edge.groups.{g}]",
                        group_names.join(", ")
                    )
                }),
            );
        }
    };

    // Rules (before routes: routes without a group need a rule that answers).
    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let key = base.key("rules").index(i);
        if !is_ident(&r.name) {
            ctx.check_ident(&key.key("name"), "rule", &r.name);
        }
        let mut conditions = Vec::new();
        for (j, c) in r.conditions.iter().enumerate() {
            let ck = key.key("conditions").index(j);
            let needs_name = matches!(c.field, Field::Header | Field::Cookie);
            if needs_name && c.name.is_none() {
                ctx.error(
                    &ck.key("name"),
                    format!("a {:?} condition needs `name`", c.field),
                    Some("name the header or cookie, e.g. name = \"x-beta\"".into()),
                );
            }
            if c.name.is_some() && !matches!(c.field, Field::Header | Field::Cookie | Field::Query)
            {
                ctx.error(
                    &ck.key("name"),
                    "`name` only applies to header, cookie and query conditions",
                    None,
                );
            }
            if c.op == Op::Exists
                && !matches!(c.field, Field::Header | Field::Cookie | Field::Query)
            {
                ctx.error(
                    &ck.key("op"),
                    "`exists` only applies to header, cookie and query conditions",
                    None,
                );
            }
            if (c.op == Op::In) != (c.field == Field::ClientIp) {
                ctx.error(
                    &ck.key("op"),
                    "client_ip conditions use op = \"in\" with CIDRs, and only they do",
                    Some(
                        "write { field = \"client_ip\", op = \"in\", value = [\"10.0.0.0/8\"] }"
                            .into(),
                    ),
                );
            }
            let values = c.value.as_ref().map_or_else(Vec::new, |v| match v {
                StringOrList::One(s) => vec![s.clone()],
                StringOrList::Many(v) => v.clone(),
            });
            if values.is_empty() && c.op != Op::Exists {
                ctx.error(
                    &ck.key("value"),
                    "the condition has no value to compare with",
                    Some("add value = \"...\" or value = [\"...\", \"...\"]".into()),
                );
            }
            let mut cidrs = Vec::new();
            for (k, v) in values.iter().enumerate() {
                if c.op == Op::Regex {
                    check_regex(ctx, &ck.key("value").index(k), v);
                }
                if c.field == Field::ClientIp {
                    let parsed = v
                        .parse::<IpNet>()
                        .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from));
                    if let Some(n) = ctx.parse(
                        &ck.key("value"),
                        v,
                        "CIDR",
                        "\"10.0.0.0/8\" or \"2001:db8::/32\"",
                        parsed,
                    ) {
                        cidrs.push(n);
                    }
                }
                if c.field == Field::Method && !METHODS.contains(&v.to_ascii_uppercase().as_str()) {
                    ctx.error(
                        &ck.key("value"),
                        format!("{v:?} is not an HTTP method"),
                        Some(format!("use one of {}", METHODS.join(", "))),
                    );
                }
            }
            conditions.push(Condition {
                field: c.field,
                name: c.name.as_ref().map(|n| match c.field {
                    Field::Header => n.to_ascii_lowercase(),
                    _ => n.clone(),
                }),
                op: c.op,
                values: StringOrList::Many(values).into_vec(),
                cidrs,
                negate: c.negate,
                ignore_case: c.ignore_case,
            });
        }
        if r.actions.is_empty() {
            ctx.error(
                &key.key("actions"),
                format!("rule {:?} has no actions", r.name),
                None,
            );
        }
        let mut actions = Vec::new();
        for (j, a) in r.actions.iter().enumerate() {
            let ak = key.key("actions").index(j);
            let action = match a {
                RawAction::Rewrite {
                    pattern,
                    to,
                    keep_query,
                } => {
                    let pattern = pattern.clone().unwrap_or_else(|| "^(.*)$".into());
                    check_regex(ctx, &ak.key("pattern"), &pattern);
                    if !to.starts_with('/') && !to.starts_with('$') {
                        ctx.error(
                            &ak.key("to"),
                            format!("rewrite target {to:?} must start with '/'"),
                            Some("write a path like \"/v2/$1\"".into()),
                        );
                    }
                    Action::Rewrite {
                        pattern,
                        to: to.clone(),
                        keep_query: keep_query.unwrap_or(true),
                    }
                }
                RawAction::Redirect {
                    status,
                    location,
                    pattern,
                } => {
                    let status = status.unwrap_or(302);
                    if ![301, 302, 303, 307, 308].contains(&status) {
                        ctx.error(
                            &ak.key("status"),
                            format!("redirect status {status} is not a redirect"),
                            Some("use 301, 302, 303, 307 or 308".into()),
                        );
                    }
                    if let Some(p) = pattern {
                        check_regex(ctx, &ak.key("pattern"), p);
                    }
                    Action::Redirect {
                        status,
                        location: location.clone(),
                        pattern: pattern.clone(),
                    }
                }
                RawAction::RequestHeader { op, name, value }
                | RawAction::ResponseHeader { op, name, value } => {
                    if !valid_header_name(name) {
                        ctx.error(
                            &ak.key("name"),
                            format!("{name:?} is not a valid header name"),
                            None,
                        );
                    }
                    let lname = name.to_ascii_lowercase();
                    if matches!(
                        lname.as_str(),
                        "host" | "content-length" | "transfer-encoding" | "connection"
                    ) {
                        ctx.error(
                            &ak.key("name"),
                            format!("header {name:?} is managed by the proxy and cannot be edited by a rule"),
                            Some("for the host sent to an origin use the origin's host_header".into()),
                        );
                    }
                    let value = match (op, value) {
                        (HeaderOp::Delete, Some(_)) => {
                            ctx.error(&ak.key("value"), "delete takes no value", None);
                            String::new()
                        }
                        (HeaderOp::Delete, None) => String::new(),
                        (_, Some(v)) => {
                            if !valid_header_value(v) {
                                ctx.error(
                                    &ak.key("value"),
                                    "header values must be printable ASCII",
                                    None,
                                );
                            }
                            v.clone()
                        }
                        (_, None) => {
                            ctx.error(&ak.key("value"), "set and append need a value", None);
                            String::new()
                        }
                    };
                    if matches!(a, RawAction::RequestHeader { .. }) {
                        Action::RequestHeader {
                            op: *op,
                            name: lname,
                            value,
                        }
                    } else {
                        Action::ResponseHeader {
                            op: *op,
                            name: lname,
                            value,
                        }
                    }
                }
                RawAction::OriginGroup { group } => {
                    check_group(ctx, &ak.key("group"), group);
                    Action::OriginGroup {
                        group: group.clone(),
                    }
                }
                RawAction::Stop => Action::Stop,
            };
            actions.push(action);
        }
        rules.push(Rule {
            name: r.name.clone(),
            match_mode: r.r#match,
            conditions,
            actions,
        });
    }

    // Routes.
    let mut routes = Vec::new();
    for (key, name, r) in entries(&base.key("routes"), &raw.routes) {
        ctx.check_ident(&key, "route", name);
        if r.domains.is_empty() {
            ctx.error(
                &key.key("domains"),
                format!("route {name:?} has no domains"),
                Some("list the host names it serves, e.g. domains = [\"app.example.com\"]; \"*\" matches any".into()),
            );
        }
        let domains: Vec<String> = r
            .domains
            .iter()
            .enumerate()
            .filter_map(|(i, d)| domain_pattern(ctx, &key.key("domains").index(i), d, true))
            .collect();
        let paths = if r.paths.is_empty() {
            vec!["/*".to_string()]
        } else {
            r.paths.clone()
        };
        for (i, p) in r.paths.iter().enumerate() {
            let star = p.find('*');
            let bad = !p.starts_with('/')
                || star.is_some_and(|s| s != p.len() - 1 || !p.ends_with("/*"))
                || p.contains(['?', '#', ' ']);
            if bad {
                ctx.error(
                    &key.key("paths").index(i),
                    format!("path pattern {p:?} is not valid"),
                    Some("write an exact path (\"/login\") or a prefix ending in \"/*\" (\"/api/*\", \"/*\")".into()),
                );
            }
        }
        let mut methods = Vec::new();
        for (i, m) in r.methods.iter().enumerate() {
            let up = m.to_ascii_uppercase();
            if METHODS.contains(&up.as_str()) {
                methods.push(up);
            } else {
                ctx.error(
                    &key.key("methods").index(i),
                    format!("{m:?} is not an HTTP method"),
                    Some(format!("use one of {}", METHODS.join(", "))),
                );
            }
        }
        match &r.group {
            Some(g) => check_group(ctx, &key.key("group"), g),
            None => {
                let answered = rules.iter().any(|rule| {
                    rule.actions
                        .iter()
                        .any(|a| matches!(a, Action::Redirect { .. } | Action::OriginGroup { .. }))
                });
                if !answered {
                    ctx.error(
                        &key.key("group"),
                        format!("route {name:?} has no origin group"),
                        Some("add group = \"NAME\" naming an [edge.groups.NAME] table".into()),
                    );
                }
            }
        }
        if let Some(w) = &r.waf {
            ctx.check_ident(&key.key("waf"), "WAF policy", w);
        }
        if !any_https && r.http == HttpMode::Redirect && !instances.is_empty() {
            ctx.error(
                &key.key("http"),
                format!("route {name:?} redirects plain HTTP to HTTPS, but no edge has an HTTPS listener"),
                Some("add https listeners under [edge.instances], or set http = \"serve\"".into()),
            );
        }
        routes.push(Route {
            name: name.clone(),
            domains,
            paths,
            methods,
            group: r.group.clone(),
            http: r.http,
            waf: r.waf.clone(),
            hsts: r.hsts.unwrap_or(hsts.is_some()),
        });
    }
    // The same host + path + methods twice can never be reached the second time.
    for (i, r) in routes.iter().enumerate() {
        for prev in &routes[..i] {
            if let Some(d) = r.domains.iter().find(|d| prev.domains.contains(d))
                && let Some(p) = r.paths.iter().find(|p| prev.paths.contains(p))
                && r.methods == prev.methods
            {
                ctx.error(
                    &base.key("routes").key(&r.name),
                    format!(
                        "route {:?} matches the same domain {d:?} and path {p:?} as route {:?}",
                        r.name, prev.name
                    ),
                    Some(
                        "the second could never be chosen; merge them or make one more specific"
                            .into(),
                    ),
                );
                break;
            }
        }
    }
    if routes.is_empty() && !instances.is_empty() {
        ctx.error(
            &base.key("routes"),
            "the edge has listeners but no routes",
            Some("add an [edge.routes.NAME] table with domains and group".into()),
        );
    }

    EdgeConfig {
        instances,
        certificates,
        cert_reload_interval: raw
            .cert_reload_interval
            .map_or(Duration::from_secs(10), |d| d.0)
            .max(Duration::from_millis(100)),
        access_log: raw.access_log.unwrap_or(true),
        request_id_header,
        hsts,
        limits,
        timeouts,
        origin_ca_file: raw.origin_ca_file.clone(),
        routes,
        groups,
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("12"), Ok(12));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1TB").is_err());
    }
}
