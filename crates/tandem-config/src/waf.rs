//! The `[waf]` section: named WAF policies that edge routes refer to (`waf = "NAME"`).
//! Its keys are documented in docs/config.md.
//!
//! A policy has a mode, the managed rules (a copy of the OWASP Core Rule Set, its paranoia
//! level and anomaly thresholds), exclusions, and custom rules evaluated before the managed
//! rules in priority order (IP lists, geography, methods, sizes, match conditions, rate
//! limits), in the shape of Azure Front Door's WAF policies.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use crate::ctx::{Ctx, entries};
use crate::path::KeyPath;
use crate::value::Dur;

/// What a policy does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WafMode {
    /// Not evaluated at all.
    Off,
    /// Evaluated and logged; nothing is blocked.
    Detection,
    /// Evaluated; requests over the threshold (or matching a block rule) are refused.
    #[default]
    Prevention,
}

/// What happens to a request whose body is longer than the policy's `request_body_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyOverLimit {
    /// Refuse it with 413 (in prevention mode; detection mode logs it): nothing past the
    /// limit can hide an attack. ModSecurity's `SecRequestBodyLimitAction Reject`.
    #[default]
    Block,
    /// Inspect the first `request_body_limit` bytes and forward the whole body (uploads).
    /// ModSecurity's `ProcessPartial`.
    InspectPrefix,
}

/// A custom rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomAction {
    /// Let the request through and skip every later rule, managed rules included.
    Allow,
    /// Refuse the request (in prevention mode).
    Block,
    /// Log the match and go on.
    Log,
    /// Redirect the client (in prevention mode).
    Redirect,
}

/// The part of the request a match condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchVariable {
    /// The client address (the TCP peer, or the first address the edge trusts).
    RemoteAddr,
    /// The method.
    RequestMethod,
    /// The path and query as sent.
    RequestUri,
    /// The path, percent-decoded.
    RequestPath,
    /// The query string, or one query argument with `selector`.
    QueryString,
    /// Form arguments of the body (`selector` names one).
    PostArgs,
    /// A request header (`selector` names it).
    RequestHeader,
    /// A cookie (`selector` names it).
    Cookies,
    /// The request body.
    RequestBody,
}

impl MatchVariable {
    fn needs_selector(self) -> bool {
        matches!(self, MatchVariable::RequestHeader)
    }
}

/// How a match condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOperator {
    /// Always (the variable only has to exist).
    Any,
    /// The address is in one of the networks.
    IpMatch,
    /// The client's country or continent is one of the codes.
    GeoMatch,
    /// Equal to one of the values.
    Equal,
    /// Contains one of the values.
    Contains,
    /// Starts with one of the values.
    BeginsWith,
    /// Ends with one of the values.
    EndsWith,
    /// Matches one of the regular expressions.
    Regex,
    /// Size (bytes) below the value.
    LessThan,
    /// Size (bytes) above the value.
    GreaterThan,
    /// Size (bytes) at most the value.
    LessThanOrEqual,
    /// Size (bytes) at least the value.
    GreaterThanOrEqual,
}

/// A transformation applied to the value before comparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchTransform {
    /// Lower case.
    Lowercase,
    /// Upper case.
    Uppercase,
    /// Trim whitespace.
    Trim,
    /// Percent-decode.
    UrlDecode,
    /// Percent-encode.
    UrlEncode,
    /// Drop NUL bytes.
    RemoveNulls,
    /// Decode HTML entities.
    HtmlEntityDecode,
    /// Collapse whitespace.
    CompressWhitespace,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWaf {
    crs: Option<PathBuf>,
    #[serde(default)]
    policies: IndexMap<String, RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    mode: WafMode,
    crs: Option<PathBuf>,
    #[serde(default = "yes")]
    managed_rules: bool,
    paranoia_level: Option<u8>,
    detection_paranoia_level: Option<u8>,
    inbound_threshold: Option<u32>,
    outbound_threshold: Option<u32>,
    block_status: Option<u16>,
    block_body: Option<String>,
    request_body_limit: Option<Bytes>,
    #[serde(default)]
    inspect_response_body: bool,
    time_budget: Option<Dur>,
    #[serde(default)]
    rules_files: Vec<PathBuf>,
    #[serde(default)]
    exclusions: Vec<RawExclusion>,
    #[serde(default)]
    custom_rules: Vec<RawCustomRule>,
    request_body_over_limit: Option<BodyOverLimit>,
    #[serde(default)]
    routes: IndexMap<String, RawRouteOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouteOverride {
    mode: Option<WafMode>,
    #[serde(default)]
    exclusions: Vec<RawExclusion>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExclusion {
    #[serde(default)]
    rule_ids: Vec<IdOrRange>,
    #[serde(default)]
    tags: Vec<String>,
    target: Option<String>,
    path_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdOrRange {
    Id(u32),
    Range(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustomRule {
    name: String,
    priority: u32,
    action: CustomAction,
    #[serde(default = "yes")]
    enabled: bool,
    redirect_url: Option<String>,
    rate_limit: Option<RawRateLimit>,
    #[serde(default, rename = "match")]
    conditions: Vec<RawCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    threshold: u32,
    window: Dur,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    variable: MatchVariable,
    selector: Option<String>,
    operator: MatchOperator,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    negate: bool,
    #[serde(default)]
    transforms: Vec<MatchTransform>,
}

/// A byte count: an integer, or a string with a unit (`"128KiB"`, `"10MB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bytes(u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(u64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(Bytes(n)),
            Either::S(s) => parse_bytes(&s).map(Bytes).map_err(serde::de::Error::custom),
        }
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write bytes like 131072 or \"128KiB\""))?;
    let mul = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// The `[waf]` section, as validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WafConfig {
    /// Policies by name, in file order.
    pub policies: Vec<WafPolicy>,
}

impl WafConfig {
    /// A policy by name.
    pub fn policy(&self, name: &str) -> Option<&WafPolicy> {
        self.policies.iter().find(|p| p.name == name)
    }
}

/// One WAF policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WafPolicy {
    /// The policy's key.
    pub name: String,
    /// Off, detection or prevention.
    pub mode: WafMode,
    /// The Core Rule Set copy (a directory with `rules/` and `crs-setup.conf[.example]`);
    /// `None` when managed rules are off.
    pub crs: Option<PathBuf>,
    /// Blocking paranoia level, 1-4.
    pub paranoia_level: u8,
    /// Detection paranoia level (rules above the blocking level only log), >= blocking.
    pub detection_paranoia_level: u8,
    /// Inbound anomaly score at which a request is blocked.
    pub inbound_threshold: u32,
    /// Outbound anomaly score at which a response is blocked.
    pub outbound_threshold: u32,
    /// Status of a blocked request.
    pub block_status: u16,
    /// Body of a blocked request; `{request_id}` is replaced by the request id.
    pub block_body: String,
    /// Largest request body the edge buffers for inspection, in bytes.
    pub request_body_limit: u64,
    /// Whether response bodies are inspected (text types only).
    pub inspect_response_body: bool,
    /// The most time the rules may take for one request.
    pub time_budget: Duration,
    /// Extra SecLang files loaded after the managed rules.
    pub rules_files: Vec<PathBuf>,
    /// Rule exclusions.
    pub exclusions: Vec<Exclusion>,
    /// Custom rules, sorted by priority.
    pub custom_rules: Vec<CustomRule>,
    /// What happens to bodies longer than `request_body_limit`.
    pub request_body_over_limit: BodyOverLimit,
    /// Per-route settings (`[waf.policies.NAME.routes.ROUTE]`): mode and extra exclusions
    /// for one edge route that uses this policy.
    pub routes: Vec<RouteOverride>,
}

/// Settings of a policy for one edge route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteOverride {
    /// The edge route's name.
    pub route: String,
    /// Replaces the policy's mode on this route (`off` switches the WAF off there).
    pub mode: Option<WafMode>,
    /// Exclusions on top of the policy's, on this route only.
    pub exclusions: Vec<Exclusion>,
}

/// Turn rules (or one target of them) off.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exclusion {
    /// Rule id ranges (inclusive).
    pub rule_ids: Vec<(u32, u32)>,
    /// Rule tags.
    pub tags: Vec<String>,
    /// Only this target (SecLang syntax, like `ARGS:password` or `REQUEST_COOKIES:/^sess/`);
    /// `None` removes the rules entirely.
    pub target: Option<String>,
    /// Only for request paths starting with this.
    pub path_prefix: Option<String>,
}

/// A custom rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomRule {
    /// Name, unique in the policy.
    pub name: String,
    /// Lower runs first.
    pub priority: u32,
    /// What to do on a match.
    pub action: CustomAction,
    /// Where `redirect` sends the client.
    pub redirect_url: Option<String>,
    /// Rate limit: the rule matches once a client exceeds it (and its conditions hold).
    pub rate_limit: Option<RateLimit>,
    /// Conditions, all of which must hold.
    pub conditions: Vec<Condition>,
}

/// Requests per client address over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub threshold: u32,
    /// The window.
    pub window: Duration,
}

/// One match condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    /// What it looks at.
    pub variable: MatchVariable,
    /// Header, cookie or argument name.
    pub selector: Option<String>,
    /// How it compares.
    pub operator: MatchOperator,
    /// Values (any one may match).
    pub values: Vec<String>,
    /// Networks, for `ip_match`.
    pub networks: Vec<IpNet>,
    /// Inverts the result.
    pub negate: bool,
    /// Applied in order before comparing.
    pub transforms: Vec<MatchTransform>,
}

/// The default blocked-request body.
pub const DEFAULT_BLOCK_BODY: &str =
    "Request blocked by the web application firewall. Request id: {request_id}\n";

pub(crate) fn validate(ctx: &mut Ctx, raw: &RawWaf) -> WafConfig {
    let base = KeyPath::root().key("waf");
    let mut policies = Vec::new();
    if raw.policies.is_empty() {
        ctx.error(
            &base,
            "the [waf] section has no policies",
            Some("add one, e.g. [waf.policies.default] with mode = \"prevention\" and crs = \"/etc/tandem/crs\"".into()),
        );
    }
    for (key, name, p) in entries(&base.key("policies"), &raw.policies) {
        ctx.check_ident(&key, "policy", name);
        policies.push(validate_policy(ctx, &key, name, p, raw.crs.as_ref()));
    }
    WafConfig { policies }
}

fn validate_policy(
    ctx: &mut Ctx,
    key: &KeyPath,
    name: &str,
    p: &RawPolicy,
    default_crs: Option<&PathBuf>,
) -> WafPolicy {
    let crs = if p.managed_rules {
        match p.crs.as_ref().or(default_crs) {
            Some(dir) => {
                // A missing directory is reported when the WAF loads it (`tandem waf check`):
                // configs are often validated on a machine other than the one serving.
                if dir.exists() && !dir.join("rules").is_dir() {
                    ctx.error(
                        &key.key("crs"),
                        format!("{} is not a Core Rule Set directory (it has no rules/ folder)", dir.display()),
                        Some("point crs at a copy of coreruleset (the folder holding rules/ and crs-setup.conf.example)".into()),
                    );
                }
                Some(dir.clone())
            }
            None => {
                ctx.error(
                    &key.key("crs"),
                    "managed rules are on but no Core Rule Set copy is configured",
                    Some("set crs = \"/path/to/coreruleset\" here or under [waf], or managed_rules = false".into()),
                );
                None
            }
        }
    } else {
        if p.crs.is_some() {
            ctx.error(
                &key.key("crs"),
                "crs is set but managed_rules = false",
                Some("remove crs, or turn managed rules on".into()),
            );
        }
        None
    };
    let paranoia_level = p.paranoia_level.unwrap_or(1);
    if !(1..=4).contains(&paranoia_level) {
        ctx.error(
            &key.key("paranoia_level"),
            format!("paranoia level {paranoia_level} is outside 1..=4"),
            Some("1 suits most sites; higher levels catch more and need exclusions for false positives".into()),
        );
    }
    let detection_paranoia_level = p.detection_paranoia_level.unwrap_or(paranoia_level);
    if !(1..=4).contains(&detection_paranoia_level) || detection_paranoia_level < paranoia_level {
        ctx.error(
            &key.key("detection_paranoia_level"),
            format!(
                "detection paranoia level {detection_paranoia_level} must be in 1..=4 and at least paranoia_level ({paranoia_level})"
            ),
            Some("rules between the two levels are logged but never block".into()),
        );
    }
    let inbound_threshold = p.inbound_threshold.unwrap_or(5);
    let outbound_threshold = p.outbound_threshold.unwrap_or(4);
    for (k, v) in [
        ("inbound_threshold", inbound_threshold),
        ("outbound_threshold", outbound_threshold),
    ] {
        if v == 0 {
            ctx.error(
                &key.key(k),
                "an anomaly threshold of 0 blocks every request",
                Some(
                    "CRS's defaults are 5 (inbound) and 4 (outbound); one critical rule scores 5"
                        .into(),
                ),
            );
        }
    }
    let block_status = p.block_status.unwrap_or(403);
    if !(400..=599).contains(&block_status) {
        ctx.error(
            &key.key("block_status"),
            format!("block status {block_status} is not an error status (400-599)"),
            Some("403 is the usual choice; 429 suits rate limits".into()),
        );
    }
    let request_body_limit = p.request_body_limit.map_or(131_072, |b| b.0);
    if request_body_limit > (1 << 30) {
        ctx.error(
            &key.key("request_body_limit"),
            "request_body_limit is above 1 GiB",
            Some("the edge buffers this much per request in memory; keep it to what your forms and APIs need".into()),
        );
    }
    let time_budget = p.time_budget.map_or(Duration::from_millis(50), |d| d.0);
    if time_budget.is_zero() {
        ctx.error(
            &key.key("time_budget"),
            "time_budget must be above zero",
            None,
        );
    }
    for (i, f) in p.rules_files.iter().enumerate() {
        if f.exists() && !f.is_file() {
            ctx.error(
                &key.key("rules_files").index(i),
                format!("rules file {} is not a file", f.display()),
                Some("give the path of a SecLang .conf file".into()),
            );
        }
    }
    let exclusions = validate_exclusions(ctx, &key.key("exclusions"), &p.exclusions);
    let mut routes = Vec::new();
    for (rk, route, r) in entries(&key.key("routes"), &p.routes) {
        routes.push(RouteOverride {
            route: route.clone(),
            mode: r.mode,
            exclusions: validate_exclusions(ctx, &rk.key("exclusions"), &r.exclusions),
        });
    }
    let mut custom_rules = Vec::new();
    for (i, r) in p.custom_rules.iter().enumerate() {
        let rk = key.key("custom_rules").index(i);
        if p.custom_rules[..i].iter().any(|o| o.name == r.name) {
            ctx.error(
                &rk.key("name"),
                format!("custom rule name {:?} is used twice", r.name),
                None,
            );
        }
        if let Some(o) = p.custom_rules[..i]
            .iter()
            .find(|o| o.priority == r.priority)
        {
            ctx.error(
                &rk.key("priority"),
                format!("priority {} is also used by rule {:?}", r.priority, o.name),
                Some("priorities order the rules; give each rule its own".into()),
            );
        }
        ctx.check_ident(&rk.key("name"), "custom rule", &r.name);
        match (r.action, &r.redirect_url) {
            (CustomAction::Redirect, None) => ctx.error(
                &rk.key("redirect_url"),
                "action = \"redirect\" needs redirect_url",
                Some("e.g. redirect_url = \"https://example.com/blocked\"".into()),
            ),
            (CustomAction::Redirect, Some(u))
                if !(u.starts_with("http://")
                    || u.starts_with("https://")
                    || u.starts_with('/')) =>
            {
                ctx.error(
                    &rk.key("redirect_url"),
                    format!("{u:?} is not an absolute URL or path"),
                    None,
                )
            }
            (a, Some(_)) if a != CustomAction::Redirect => ctx.error(
                &rk.key("redirect_url"),
                "redirect_url only applies to action = \"redirect\"",
                None,
            ),
            _ => {}
        }
        let rate_limit = r.rate_limit.as_ref().map(|rl| {
            if rl.threshold == 0 {
                ctx.error(
                    &rk.key("rate_limit").key("threshold"),
                    "a rate limit threshold must be above 0",
                    None,
                );
            }
            if rl.window.0 < Duration::from_secs(1) || rl.window.0 > Duration::from_secs(3600) {
                ctx.error(
                    &rk.key("rate_limit").key("window"),
                    "the rate limit window must be between 1s and 1h",
                    Some("Front Door uses 1m or 5m windows".into()),
                );
            }
            RateLimit {
                threshold: rl.threshold,
                window: rl.window.0,
            }
        });
        if r.conditions.is_empty() && rate_limit.is_none() {
            ctx.error(
                &rk,
                format!("custom rule {:?} has no match conditions", r.name),
                Some("add a [[...custom_rules.match]] table, or a rate_limit".into()),
            );
        }
        let mut conditions = Vec::new();
        for (j, c) in r.conditions.iter().enumerate() {
            let ck = rk.key("match").index(j);
            if let Some(cond) = validate_condition(ctx, &ck, c) {
                conditions.push(cond);
            }
        }
        if r.enabled {
            custom_rules.push(CustomRule {
                name: r.name.clone(),
                priority: r.priority,
                action: r.action,
                redirect_url: r.redirect_url.clone(),
                rate_limit,
                conditions,
            });
        }
    }
    custom_rules.sort_by_key(|r| r.priority);
    WafPolicy {
        name: name.to_string(),
        mode: p.mode,
        crs,
        paranoia_level,
        detection_paranoia_level,
        inbound_threshold,
        outbound_threshold,
        block_status,
        block_body: p
            .block_body
            .clone()
            .unwrap_or_else(|| DEFAULT_BLOCK_BODY.to_string()),
        request_body_limit,
        inspect_response_body: p.inspect_response_body,
        time_budget,
        rules_files: p.rules_files.clone(),
        exclusions,
        custom_rules,
        request_body_over_limit: p.request_body_over_limit.unwrap_or_default(),
        routes,
    }
}

fn validate_exclusions(ctx: &mut Ctx, key: &KeyPath, raw: &[RawExclusion]) -> Vec<Exclusion> {
    let mut exclusions = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let ek = key.index(i);
        let mut ids = Vec::new();
        for (j, r) in e.rule_ids.iter().enumerate() {
            match r {
                IdOrRange::Id(n) => ids.push((*n, *n)),
                IdOrRange::Range(s) => match parse_range(s) {
                    Some(r) => ids.push(r),
                    None => ctx.error(
                        &ek.key("rule_ids").index(j),
                        format!("{s:?} is not a rule id or range"),
                        Some("write 942100 or \"942100-942199\"".into()),
                    ),
                },
            }
        }
        if ids.is_empty() && e.tags.is_empty() {
            ctx.error(
                &ek,
                "an exclusion needs rule_ids or tags",
                Some("e.g. rule_ids = [942100] or tags = [\"attack-sqli\"]".into()),
            );
        }
        if let Some(t) = &e.target
            && !valid_target(t)
        {
            ctx.error(
                &ek.key("target"),
                format!("{t:?} is not a rule target"),
                Some("write a collection and key in SecLang syntax, like \"ARGS:password\", \"REQUEST_HEADERS:User-Agent\" or \"REQUEST_COOKIES:/^session/\"".into()),
            );
        }
        if let Some(pp) = &e.path_prefix
            && !pp.starts_with('/')
        {
            ctx.error(
                &ek.key("path_prefix"),
                "path_prefix must start with '/'",
                None,
            );
        }
        exclusions.push(Exclusion {
            rule_ids: ids,
            tags: e.tags.clone(),
            target: e.target.clone(),
            path_prefix: e.path_prefix.clone(),
        });
    }
    exclusions
}

fn validate_condition(ctx: &mut Ctx, ck: &KeyPath, c: &RawCondition) -> Option<Condition> {
    if c.variable.needs_selector() && c.selector.is_none() {
        ctx.error(
            &ck.key("selector"),
            "request_header needs a selector (the header name)",
            Some("e.g. selector = \"User-Agent\"".into()),
        );
    }
    if c.operator != MatchOperator::Any && c.values.is_empty() {
        ctx.error(
            &ck.key("values"),
            "the condition has no values to compare with",
            Some("add values = [...], or use operator = \"any\"".into()),
        );
    }
    let mut networks = Vec::new();
    match c.operator {
        MatchOperator::IpMatch => {
            if c.variable != MatchVariable::RemoteAddr {
                ctx.error(
                    &ck.key("operator"),
                    "ip_match only applies to variable = \"remote_addr\"",
                    None,
                );
            }
            for (i, v) in c.values.iter().enumerate() {
                let parsed = v
                    .parse::<IpNet>()
                    .or_else(|_| v.parse::<IpAddr>().map(IpNet::from));
                match parsed {
                    Ok(n) => networks.push(n.trunc()),
                    Err(e) => ctx.error(
                        &ck.key("values").index(i),
                        format!("{v:?} is not an address or CIDR network ({e})"),
                        Some("write it like \"203.0.113.0/24\" or \"2001:db8::1\"".into()),
                    ),
                }
            }
        }
        MatchOperator::GeoMatch => {
            if c.variable != MatchVariable::RemoteAddr {
                ctx.error(
                    &ck.key("operator"),
                    "geo_match only applies to variable = \"remote_addr\"",
                    None,
                );
            }
            for (i, v) in c.values.iter().enumerate() {
                let up = v.to_ascii_uppercase();
                let ok = up
                    .strip_prefix("GEO-")
                    .is_some_and(|c| crate::geo::CONTINENTS.contains(&c))
                    || (up.len() == 2 && up.bytes().all(|b| b.is_ascii_alphabetic()));
                if !ok {
                    ctx.error(
                        &ck.key("values").index(i),
                        format!("{v:?} is not a country or continent code"),
                        Some("use a country (\"US\") or a continent (\"GEO-EU\"); locations come from [geo]".into()),
                    );
                }
            }
        }
        MatchOperator::Regex => {
            for (i, v) in c.values.iter().enumerate() {
                if v.is_empty() {
                    ctx.error(
                        &ck.key("values").index(i),
                        "an empty regular expression matches everything",
                        None,
                    );
                }
            }
        }
        MatchOperator::LessThan
        | MatchOperator::GreaterThan
        | MatchOperator::LessThanOrEqual
        | MatchOperator::GreaterThanOrEqual => {
            for (i, v) in c.values.iter().enumerate() {
                if parse_bytes(v).is_err() {
                    ctx.error(
                        &ck.key("values").index(i),
                        format!("{v:?} is not a size"),
                        Some("size operators compare the length in bytes: write \"1024\" or \"8KiB\"".into()),
                    );
                }
            }
        }
        _ => {
            if c.variable == MatchVariable::RemoteAddr && c.operator != MatchOperator::Any {
                ctx.error(
                    &ck.key("operator"),
                    "remote_addr is compared with ip_match or geo_match",
                    None,
                );
            }
        }
    }
    Some(Condition {
        variable: c.variable,
        selector: c.selector.clone(),
        operator: c.operator,
        values: c.values.clone(),
        networks,
        negate: c.negate,
        transforms: c.transforms.clone(),
    })
}

/// Parse a size as the custom-rule size operators take it.
pub fn condition_size(s: &str) -> Option<u64> {
    parse_bytes(s).ok()
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let n = s.trim().parse().ok()?;
            (n, n)
        }
    };
    (a <= b).then_some((a, b))
}

fn valid_target(t: &str) -> bool {
    let name = t.split(':').next().unwrap_or("");
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
}

/// Cross-check the edge's routes and the WAF policies, once both sections are validated:
///
/// - every `waf = "NAME"` on an edge route names a defined policy;
/// - every `[waf.policies.NAME.routes.ROUTE]` names an edge route that uses that policy;
/// - the edge buffers at least `request_body_limit` bytes of body for every policy a route
///   uses (`[edge.limits] inspect_body_bytes`), so no policy silently sees less than it
///   was configured to inspect.
pub(crate) fn check_references(
    ctx: &mut Ctx,
    waf: Option<&WafConfig>,
    edge: &crate::edge::EdgeConfig,
) {
    let routes = KeyPath::root().key("edge").key("routes");
    for r in &edge.routes {
        let Some(name) = &r.waf else { continue };
        let key = routes.key(&r.name).key("waf");
        let Some(policy) = waf.and_then(|w| w.policy(name)) else {
            let hint = match waf {
                Some(w) if !w.policies.is_empty() => format!(
                    "use one of the defined policies ({}), or add [waf.policies.{name}]",
                    w.policies
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => format!("define it: add a [waf.policies.{name}] table with mode and crs"),
            };
            ctx.error(
                &key,
                format!("WAF policy {name:?} is not defined"),
                Some(hint),
            );
            continue;
        };
        if policy.request_body_limit > edge.limits.inspect_body_bytes as u64 {
            ctx.error(
                &KeyPath::root()
                    .key("waf")
                    .key("policies")
                    .key(name)
                    .key("request_body_limit"),
                format!(
                    "policy {name:?} inspects up to {} bytes of body, but the edge buffers only {} (route {:?} uses it)",
                    policy.request_body_limit, edge.limits.inspect_body_bytes, r.name
                ),
                Some(format!(
                    "raise [edge.limits] inspect_body_bytes to at least {}, or lower request_body_limit",
                    policy.request_body_limit
                )),
            );
        }
    }
    let Some(waf) = waf else { return };
    for p in &waf.policies {
        for o in &p.routes {
            let key = KeyPath::root()
                .key("waf")
                .key("policies")
                .key(&p.name)
                .key("routes")
                .key(&o.route);
            match edge.routes.iter().find(|r| r.name == o.route) {
                None => ctx.error(
                    &key,
                    format!("there is no edge route {:?}", o.route),
                    Some(format!(
                        "name a route of [edge.routes] that has waf = {:?}",
                        p.name
                    )),
                ),
                Some(r) if r.waf.as_deref() != Some(p.name.as_str()) => ctx.error(
                    &key,
                    format!(
                        "edge route {:?} does not use policy {:?} (its waf is {})",
                        o.route,
                        p.name,
                        r.waf
                            .as_deref()
                            .map_or_else(|| "not set".to_string(), |w| format!("{w:?}"))
                    ),
                    Some(format!(
                        "set waf = {:?} on [edge.routes.{}], or move these settings under the policy it uses",
                        p.name, o.route
                    )),
                ),
                Some(_) => {}
            }
        }
    }
}
