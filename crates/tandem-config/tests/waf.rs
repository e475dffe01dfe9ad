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
