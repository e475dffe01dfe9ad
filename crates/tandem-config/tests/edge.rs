//! The `[edge]` section: a full example validates into the model, and mistakes are reported
//! with line, key and hint.
#![allow(missing_docs, clippy::unwrap_used)]

use tandem_config::edge::{Action, AllUnhealthy, HttpMode};
use tandem_config::parse;

const REGIONS: &str = "[regions.eastus]\npair = \"westus\"\n[regions.westus]\npair = \"eastus\"\n";

fn problems(src: &str) -> Vec<String> {
    match parse(src, "t.toml") {
        Ok(_) => panic!("expected the config to be refused:\n{src}"),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn the_example_validates_into_the_model() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/edge.toml"
    ))
    .unwrap();
    let cfg = parse(&src, "edge.toml").unwrap();
    let e = cfg.edge.unwrap();
    assert_eq!(
        e.instance("eastus").unwrap().http[0].to_string(),
        "127.0.1.1:8080"
    );
    let web = e.group("web").unwrap();
    assert!(web.local_first);
    assert_eq!(web.when_all_unhealthy, AllUnhealthy::TryAll);
    assert_eq!(web.affinity.as_ref().unwrap().cookie, "tandem_affinity");
    assert_eq!(web.origins[0].priority, 1);
    assert_eq!(web.origins[0].weight, 1000);
    assert_eq!(e.limits.max_body_bytes, 50 * 1024 * 1024);
    assert_eq!(e.routes[0].http, HttpMode::Serve);
    assert_eq!(e.routes[0].waf.as_deref(), Some("default"));
    assert!(
        e.routes[0].hsts,
        "HSTS defaults to on when [edge.hsts] is set"
    );
    assert!(matches!(e.rules[0].actions[0], Action::Rewrite { .. }));
    assert_eq!(e.rules[2].conditions[1].cidrs.len(), 2);
    assert_eq!(
        e.hsts.unwrap().header_value(),
        "max-age=31536000; includeSubDomains"
    );
}

#[test]
fn mistakes_name_line_key_and_hint() {
    let src = format!(
        r#"{REGIONS}
[edge.instances.centralus]
http = ["127.0.0.1:80"]

[edge.routes.app]
domains = ["app.*.com"]
paths = ["/api*"]
methods = ["FETCH"]
group = "nowhere"

[edge.groups.web]
monitor = "missing"
[[edge.groups.web.origins]]
name = "a"
address = "no-port"
priority = 9
weight = 0

[[edge.rules]]
name = "r"
conditions = [{{ field = "header", op = "equals", value = "x" }}]
actions = [{{ action = "redirect", status = 200, location = "/" }}]
"#
    );
    let p = problems(&src);
    let all = p.join("\n");
    for needle in [
        "edge.instances.centralus",
        "region \"centralus\" is not defined",
        "edge.routes.app.domains[0]",
        "a wildcard may only be the whole first label",
        "edge.routes.app.paths[0]",
        "edge.routes.app.methods[0]",
        "origin group \"nowhere\" is not defined",
        "monitor \"missing\" is not defined",
        "edge.groups.web.origins[0].address",
        "priority 9 is outside 1..=5",
        "weight 0 is outside 1..=1000",
        "edge.rules[0].conditions[0].name",
        "redirect status 200 is not a redirect",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert!(p.iter().all(|x| x.contains("line ")), "{all}");
    assert!(all.contains("hint:"), "{all}");
}

#[test]
fn unknown_keys_and_bad_sizes_fail() {
    let p = problems(&format!(
        "{REGIONS}\n[edge]\nlimits = {{ max_body_bytes = \"10 parsecs\" }}\n"
    ));
    assert!(p[0].contains("unknown size unit"), "{p:?}");
    let p = problems(&format!(
        "{REGIONS}\n[edge.groups.g]\n[[edge.groups.g.origins]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nweigth = 3\n"
    ));
    assert!(p[0].contains("weigth"), "{p:?}");
}

#[test]
fn unreachable_duplicate_routes_are_refused() {
    let src = format!(
        r#"{REGIONS}
[edge.instances.eastus]
http = ["127.0.0.1:8080"]
[edge.routes.a]
domains = ["x.example.com"]
group = "g"
http = "serve"
[edge.routes.b]
domains = ["x.example.com"]
group = "g"
http = "serve"
[edge.groups.g]
[[edge.groups.g.origins]]
name = "o"
address = "127.0.0.1:9000"
"#
    );
    let p = problems(&src);
    assert!(p[0].contains("could never be chosen"), "{p:?}");
}
