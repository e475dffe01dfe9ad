//! The `[waf]` section: policies, exclusions and custom rules, and the errors a reviewer
//! sees for mistakes.

use tandem_config::parse;
use tandem_config::waf::{CustomAction, MatchOperator, MatchVariable, WafMode};

fn problems(src: &str) -> Vec<String> {
    match parse(src, "t.toml") {
        Ok(_) => panic!("expected the config to be refused:\n{src}"),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn a_full_policy_validates() {
    let cfg = parse(
        r#"
[waf]
crs = "/nonexistent/crs"

[waf.policies.shop]
mode = "detection"
paranoia_level = 2
request_body_limit = "64KiB"

[[waf.policies.shop.exclusions]]
rule_ids = [942100, "942200-942299"]
target = "ARGS:q"

[[waf.policies.shop.custom_rules]]
name = "later"
priority = 20
action = "log"
[[waf.policies.shop.custom_rules.match]]
variable = "request_header"
selector = "User-Agent"
operator = "contains"
values = ["curl"]
transforms = ["lowercase"]

[[waf.policies.shop.custom_rules]]
name = "first"
priority = 1
action = "block"
rate_limit = { threshold = 10, window = "1m" }
"#,
        "t.toml",
    )
    .expect("valid");
    let waf = cfg.waf.expect("waf section");
    let p = waf.policy("shop").expect("policy");
    assert_eq!(p.mode, WafMode::Detection);
    assert_eq!(p.paranoia_level, 2);
    assert_eq!(p.detection_paranoia_level, 2);
    assert_eq!(p.request_body_limit, 65536);
    assert_eq!(
        p.exclusions[0].rule_ids,
        vec![(942100, 942100), (942200, 942299)]
    );
    assert_eq!(p.custom_rules[0].name, "first", "sorted by priority");
    assert_eq!(p.custom_rules[0].action, CustomAction::Block);
    assert_eq!(
        p.custom_rules[1].conditions[0].variable,
        MatchVariable::RequestHeader
    );
    assert_eq!(
        p.custom_rules[1].conditions[0].operator,
        MatchOperator::Contains
    );
    assert_eq!(p.block_status, 403);
    assert!(p.block_body.contains("{request_id}"));
}

#[test]
fn mistakes_name_their_keys() {
    let p = problems(
        r#"
[waf.policies.x]
paranoia_level = 5
crs = "/nonexistent"

[[waf.policies.x.custom_rules]]
name = "a"
priority = 1
action = "redirect"
[[waf.policies.x.custom_rules.match]]
variable = "remote_addr"
operator = "ip_match"
values = ["10.0.0.0/33"]

[[waf.policies.x.custom_rules]]
name = "b"
priority = 1
action = "block"
"#,
    );
    let all = p.join("\n");
    assert!(all.contains("waf.policies.x.paranoia_level"), "{all}");
    assert!(all.contains("redirect_url"), "{all}");
    assert!(all.contains("custom_rules[0].match[0].values[0]"), "{all}");
    assert!(all.contains("priority 1 is also used"), "{all}");
    assert!(all.contains("has no match conditions"), "{all}");
}

#[test]
fn managed_rules_need_a_crs_copy() {
    let p = problems("[waf.policies.x]\nmode = \"prevention\"\n");
    assert!(p[0].contains("waf.policies.x.crs"), "{p:?}");
    assert!(p[0].contains("no Core Rule Set"), "{p:?}");
    parse(
        "[waf.policies.x]\nmanaged_rules = false\n[[waf.policies.x.custom_rules]]\nname = \"r\"\npriority = 1\naction = \"block\"\nrate_limit = { threshold = 5, window = \"10s\" }\n",
        "t.toml",
    )
    .expect("custom rules only");
}

#[test]
fn unknown_keys_and_values_are_refused() {
    let p = problems("[waf.policies.x]\nmode = \"block\"\ncrs = \"/c\"\n");
    assert!(p[0].contains("off") && p[0].contains("prevention"), "{p:?}");
    let p = problems("[waf.policies.x]\ncrs = \"/c\"\nparanoia = 2\n");
    assert!(p[0].contains("unknown field `paranoia`"), "{p:?}");
}

const EDGE: &str = r#"
[regions.eastus]
pair = "westus"
[regions.westus]
pair = "eastus"

[edge.instances.eastus]
http = ["127.0.0.1:8080"]

[edge.routes.shop]
domains = ["shop.example.com"]
group = "web"
http = "serve"
waf = "shop"

[edge.routes.search]
domains = ["search.example.com"]
group = "web"
http = "serve"
waf = "shop"

[edge.routes.open]
domains = ["open.example.com"]
group = "web"
http = "serve"

[edge.groups.web]
[[edge.groups.web.origins]]
name = "a"
address = "127.0.0.1:9000"
"#;

#[test]
fn per_route_mode_and_exclusions() {
    let cfg = parse(
        &format!(
            r#"{EDGE}
[waf.policies.shop]
crs = "/nonexistent/crs"
request_body_over_limit = "inspect_prefix"

[waf.policies.shop.routes.search]
mode = "detection"

[[waf.policies.shop.routes.search.exclusions]]
tags = ["attack-sqli"]
target = "ARGS:q"
"#
        ),
        "t.toml",
    )
    .expect("valid");
    let p = cfg.waf.expect("waf").policies.remove(0);
    assert_eq!(
        p.request_body_over_limit,
        tandem_config::waf::BodyOverLimit::InspectPrefix
    );
    assert_eq!(p.routes.len(), 1);
    assert_eq!(p.routes[0].route, "search");
    assert_eq!(p.routes[0].mode, Some(WafMode::Detection));
    assert_eq!(p.routes[0].exclusions[0].target.as_deref(), Some("ARGS:q"));
}

#[test]
fn routes_and_policies_are_cross_checked() {
    // A route naming an undefined policy.
    let p = problems(&format!(
        "{}\n[waf.policies.other]\ncrs = \"/c\"\n",
        EDGE.replace(
            "waf = \"shop\"\n\n[edge.routes.search]",
            "waf = \"nope\"\n\n[edge.routes.search]"
        )
    ));
    let all = p.join("\n");
    assert!(all.contains("edge.routes.shop.waf"), "{all}");
    assert!(all.contains("\"nope\" is not defined"), "{all}");
    // Route settings for a route that does not exist, or that uses another policy.
    let p = problems(&format!(
        "{EDGE}\n[waf.policies.shop]\ncrs = \"/c\"\n[waf.policies.shop.routes.nowhere]\nmode = \"off\"\n[waf.policies.shop.routes.open]\nmode = \"off\"\n"
    ));
    let all = p.join("\n");
    assert!(all.contains("waf.policies.shop.routes.nowhere"), "{all}");
    assert!(all.contains("there is no edge route \"nowhere\""), "{all}");
    assert!(all.contains("waf.policies.shop.routes.open"), "{all}");
    assert!(all.contains("does not use policy \"shop\""), "{all}");
    // A policy that inspects more body than the edge buffers.
    let p = problems(&format!(
        "{EDGE}\n[waf.policies.shop]\ncrs = \"/c\"\nrequest_body_limit = \"1MiB\"\n"
    ));
    let all = p.join("\n");
    assert!(
        all.contains("waf.policies.shop.request_body_limit"),
        "{all}"
    );
    assert!(all.contains("inspect_body_bytes"), "{all}");
    parse(
        &format!(
            "{}\n[waf.policies.shop]\ncrs = \"/c\"\nrequest_body_limit = \"1MiB\"\n",
            EDGE.replace(
                "[edge.instances.eastus]",
                "[edge.limits]\ninspect_body_bytes = \"1MiB\"\n\n[edge.instances.eastus]"
            )
        ),
        "t.toml",
    )
    .expect("the edge buffers enough");
}
