//! Policies end to end: custom rules before managed rules, modes, exclusions, rate limits,
//! geography, verdicts, metrics.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use tandem_config::waf::WafMode;
use tandem_waf::policy::GeoLookup;
use tandem_waf::transaction::RequestHead;
use tandem_waf::{Policy, RouteOptions, RuleSet, Verdict, WafMetrics, ftw};

fn crs_rules() -> Option<Arc<RuleSet>> {
    static RULES: OnceLock<Option<Arc<RuleSet>>> = OnceLock::new();
    RULES
        .get_or_init(|| {
            let dir = ftw::default_crs_dir()?;
            Some(Arc::new(
                tandem_waf::policy::load_managed_rules(&dir, &[], false).expect("CRS loads"),
            ))
        })
        .clone()
}

fn policy_cfg(toml_policy: &str) -> tandem_config::waf::WafPolicy {
    let src = format!("[waf.policies.p]\n{toml_policy}");
    let cfg = tandem_config::parse(&src, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    cfg.waf.expect("waf").policies.remove(0)
}

fn head(method: &str, uri: &str, client: &str, headers: &[(&str, &str)]) -> RequestHead {
    let mut h = vec![
        ("Host", "shop.example.com"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        ),
        ("Accept", "text/html"),
    ];
    h.extend_from_slice(headers);
    RequestHead {
        method: method.into(),
        uri: uri.as_bytes().to_vec(),
        protocol: "HTTP/1.1".into(),
        headers: h
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        client: format!("{client}:5555").parse().expect("addr"),
        server: None,
        request_id: "req-42".into(),
    }
}

fn run(p: &Arc<Policy>, h: &RequestHead, body: &[u8]) -> tandem_waf::Outcome {
    let mut t = p.transaction(
        h,
        &RouteOptions {
            route: "shop".into(),
            ..Default::default()
        },
    );
    if t.request_headers().is_continue() && t.wants_request_body() {
        t.request_body(body, false);
    }
    t.finish()
}

const SQLI: &str = "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--";

#[test]
fn prevention_blocks_with_status_body_and_request_id() {
    let Some(rules) = crs_rules() else { return };
    let cfg = policy_cfg("crs = \"/unused\"\nblock_status = 406\n");
    let p = Arc::new(
        Policy::compile(&cfg, None, Some(rules), WafMetrics::default()).expect("compiles"),
    );
    let o = run(&p, &head("GET", SQLI, "198.51.100.9", &[]), b"");
    match &o.verdict {
        Verdict::Block { status, body, rule } => {
            assert_eq!(*status, 406);
            assert!(body.contains("req-42"), "{body}");
            assert_eq!(rule, "949110");
        }
        v => panic!("not blocked: {v:?}"),
    }
    assert!(o.anomaly_score >= 5, "{}", o.anomaly_score);
    assert!(
        o.matches
            .iter()
            .any(|m| m.rule_id == 942100 || m.rule_id / 1000 == 942)
    );
    let benign = run(
        &p,
        &head("GET", "/products?page=2&sort=price", "198.51.100.9", &[]),
        b"",
    );
    assert_eq!(benign.verdict, Verdict::Continue, "{:?}", benign.matches);
    assert_eq!(benign.anomaly_score, 0);
}

#[test]
fn detection_mode_only_reports() {
    let Some(rules) = crs_rules() else { return };
    let cfg = policy_cfg("crs = \"/unused\"\nmode = \"detection\"\n");
    let p = Arc::new(
        Policy::compile(&cfg, None, Some(rules), WafMetrics::default()).expect("compiles"),
    );
    let o = run(&p, &head("GET", SQLI, "198.51.100.9", &[]), b"");
    assert_eq!(o.verdict, Verdict::Continue);
    assert_eq!(o.would_block.as_deref(), Some("949110"));
    assert_eq!(o.mode, WafMode::Detection);
    // A route can turn the WAF off.
    let mut t = p.transaction(
        &head("GET", SQLI, "198.51.100.9", &[]),
        &RouteOptions {
            route: "static".into(),
            mode: Some(WafMode::Off),
            ..Default::default()
        },
    );
    assert!(t.request_headers().is_continue());
    assert!(t.finish().matches.is_empty());
}

#[test]
fn exclusions_by_target_and_path() {
    let Some(rules) = crs_rules() else { return };
    let cfg = policy_cfg(
        "crs = \"/unused\"\n[[waf.policies.p.exclusions]]\ntags = [\"attack-sqli\"]\ntarget = \"ARGS:q\"\npath_prefix = \"/search\"\n",
    );
    let p = Arc::new(
        Policy::compile(&cfg, None, Some(rules), WafMetrics::default()).expect("compiles"),
    );
    let o = run(&p, &head("GET", SQLI, "198.51.100.9", &[]), b"");
    assert!(
        !o.matches
            .iter()
            .any(|m| m.tags.iter().any(|t| t == "attack-sqli")),
        "{:?}",
        o.matches.iter().map(|m| m.rule_id).collect::<Vec<_>>()
    );
    // Elsewhere the same argument is still inspected.
    let o = run(
        &p,
        &head(
            "GET",
            &SQLI.replace("/search", "/other"),
            "198.51.100.9",
            &[],
        ),
        b"",
    );
    assert!(!o.verdict.is_continue());
}

struct FixedGeo;
impl GeoLookup for FixedGeo {
    fn locate(&self, ip: IpAddr) -> (Option<[u8; 2]>, Option<[u8; 2]>) {
        if ip.to_string().starts_with("203.0.113.") {
            (Some(*b"DE"), Some(*b"EU"))
        } else {
            (Some(*b"US"), Some(*b"NA"))
        }
    }
}

const CUSTOM: &str = r#"
managed_rules = false

[[waf.policies.p.custom_rules]]
name = "office"
priority = 1
action = "allow"
[[waf.policies.p.custom_rules.match]]
variable = "remote_addr"
operator = "ip_match"
values = ["192.0.2.0/24"]

[[waf.policies.p.custom_rules]]
name = "eu-admin"
priority = 2
action = "block"
[[waf.policies.p.custom_rules.match]]
variable = "request_path"
operator = "begins_with"
values = ["/admin"]
transforms = ["lowercase"]
[[waf.policies.p.custom_rules.match]]
variable = "remote_addr"
operator = "geo_match"
values = ["GEO-EU"]

[[waf.policies.p.custom_rules]]
name = "old-site"
priority = 3
action = "redirect"
redirect_url = "https://new.example.com/"
[[waf.policies.p.custom_rules.match]]
variable = "request_header"
selector = "host"
operator = "equal"
values = ["old.example.com"]

[[waf.policies.p.custom_rules]]
name = "curl"
priority = 4
action = "log"
[[waf.policies.p.custom_rules.match]]
variable = "request_header"
selector = "user-agent"
operator = "regex"
values = ["(?i)^curl/"]

[[waf.policies.p.custom_rules]]
name = "login-rate"
priority = 5
action = "block"
rate_limit = { threshold = 3, window = "1m" }
[[waf.policies.p.custom_rules.match]]
variable = "request_path"
operator = "equal"
values = ["/login"]

[[waf.policies.p.custom_rules]]
name = "big-body"
priority = 6
action = "block"
[[waf.policies.p.custom_rules.match]]
variable = "request_body"
operator = "greater_than"
values = ["10"]
"#;

#[test]
fn custom_rules_in_priority_order() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = WafMetrics::register(&mut registry);
    let p = Arc::new(
        Policy::compile(&policy_cfg(CUSTOM), Some(Arc::new(FixedGeo)), None, metrics)
            .expect("compiles"),
    );
    // Geography: EU clients may not reach /admin, others may; the office always may.
    let o = run(&p, &head("GET", "/ADMIN/users", "203.0.113.5", &[]), b"");
    assert!(
        matches!(o.verdict, Verdict::Block { ref rule, status: 403, .. } if rule == "eu-admin"),
        "{o:?}"
    );
    assert!(
        run(&p, &head("GET", "/admin", "198.51.100.5", &[]), b"")
            .verdict
            .is_continue()
    );
    let o = run(&p, &head("GET", "/admin", "192.0.2.7", &[]), b"");
    assert!(o.verdict.is_continue());
    assert_eq!(o.custom_matches, vec!["office"]);
    // Redirect.
    let o = run(
        &p,
        &head("GET", "/", "198.51.100.5", &[("Host", "old.example.com")]),
        b"",
    );
    assert!(
        matches!(o.verdict, Verdict::Redirect { ref location, .. } if location == "https://new.example.com/"),
        "{o:?}"
    );
    // Log only.
    let o = run(
        &p,
        &head("GET", "/", "198.51.100.5", &[("User-Agent", "curl/8.0")]),
        b"",
    );
    assert!(o.verdict.is_continue());
    assert!(o.custom_matches.contains(&"curl".to_string()));
    // Rate limit: the fourth login within the window is refused with 429; others are not.
    for i in 0..3 {
        let o = run(&p, &head("POST", "/login", "198.51.100.77", &[]), b"u=a");
        assert!(o.verdict.is_continue(), "attempt {i}: {o:?}");
    }
    let o = run(&p, &head("POST", "/login", "198.51.100.77", &[]), b"u=a");
    assert!(
        matches!(o.verdict, Verdict::Block { status: 429, .. }),
        "{o:?}"
    );
    assert!(
        run(&p, &head("POST", "/login", "198.51.100.78", &[]), b"u=a")
            .verdict
            .is_continue()
    );
    // Body size, decided once the body is seen.
    let o = run(
        &p,
        &head("POST", "/upload", "198.51.100.5", &[]),
        b"0123456789abcdef",
    );
    assert!(
        matches!(o.verdict, Verdict::Block { ref rule, .. } if rule == "big-body"),
        "{o:?}"
    );
    // Metrics.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    assert!(
        text.contains("tandem_waf_blocks_total{policy=\"p\",route=\"shop\",rule=\"eu-admin\"} 1"),
        "{text}"
    );
    assert!(text.contains("tandem_waf_evaluations_total"), "{text}");
    assert!(text.contains("tandem_waf_seconds_bucket"), "{text}");
}

#[test]
fn missing_crs_is_a_clear_error() {
    let cfg = policy_cfg("crs = \"/nonexistent/coreruleset\"\n");
    let e = Policy::compile(&cfg, None, None, WafMetrics::default()).expect_err("missing");
    let text = e.to_string();
    assert!(
        text.contains("waf.policies.p.crs") && text.contains("/nonexistent/coreruleset"),
        "{text}"
    );
}

#[test]
fn policies_share_compiled_rules() {
    let Some(dir) = ftw::default_crs_dir() else {
        return;
    };
    let src = format!(
        "[waf]\ncrs = \"{}\"\n[waf.policies.a]\nmode = \"prevention\"\n[waf.policies.b]\nmode = \"detection\"\nparanoia_level = 2\n",
        dir.display()
    );
    let cfg = tandem_config::parse(&src, "t.toml").expect("valid");
    let all =
        tandem_waf::WafPolicies::compile(&cfg.waf.expect("waf"), None, &WafMetrics::default())
            .expect("compiles");
    let (a, b) = (all.get("a").expect("a"), all.get("b").expect("b"));
    assert!(Arc::ptr_eq(
        a.rules().expect("rules"),
        b.rules().expect("rules")
    ));
    assert_eq!(all.status().as_array().map(Vec::len), Some(2));
    let o = run(b, &head("GET", SQLI, "198.51.100.9", &[]), b"");
    assert!(o.verdict.is_continue() && o.would_block.is_some());
}

#[test]
fn response_bodies_are_inspected_when_asked() {
    let Some(dir) = ftw::default_crs_dir() else {
        return;
    };
    let cfg = policy_cfg(&format!(
        "crs = \"{}\"\ninspect_response_body = true\n",
        dir.display()
    ));
    let p = Arc::new(Policy::compile(&cfg, None, None, WafMetrics::default()).expect("compiles"));
    let mut t = p.transaction(
        &head("GET", "/report", "198.51.100.9", &[]),
        &RouteOptions::default(),
    );
    assert!(t.request_headers().is_continue());
    let headers = vec![(b"Content-Type".to_vec(), b"text/html".to_vec())];
    assert!(t.response_headers(200, &headers).is_continue());
    assert!(t.wants_response_body());
    let leak = b"<html>Warning: mysql_fetch_array() expects parameter 1 to be resource, boolean given in /var/www/x.php on line 3</html>";
    let v = t.response_body(leak);
    let o = t.finish();
    assert!(
        !v.is_continue(),
        "{:?}",
        o.matches.iter().map(|m| m.rule_id).collect::<Vec<_>>()
    );
    assert!(
        o.matches
            .iter()
            .any(|m| m.rule_id / 1000 == 951 || m.rule_id / 1000 == 953)
    );
}
