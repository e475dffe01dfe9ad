//! The config model against real files: every example parses, and broken files fail with
//! the file, line and key of the problem and a hint.

use std::path::Path;

use tandem_config::{ConfigError, builtin_lab, load, parse};

fn problems(src: &str) -> Vec<String> {
    match parse(src, "t.toml") {
        Ok(_) => panic!("expected the config to be refused:\n{src}"),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

const REGIONS: &str = r#"
[regions.eastus]
pair = "westus"

[regions.westus]
pair = "eastus"
"#;

#[test]
fn every_example_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 1, "no examples found in {}", dir.display());
    let lab = builtin_lab().expect("built-in lab");
    assert_eq!(lab.regions.len(), 2);
    assert_eq!(
        lab.region("eastus").and_then(|r| r.pair.as_deref()),
        Some("westus")
    );
}

#[test]
fn unknown_key_names_line_and_key() {
    let src = format!("{REGIONS}\n[regions.centralus]\nmoed = \"hot\"\n");
    let err = parse(&src, "t.toml").expect_err("unknown key");
    let text = err.to_string();
    assert!(text.contains("t.toml:9:1"), "{text}");
    assert!(text.contains("regions.centralus.moed"), "{text}");
    assert!(text.contains("unknown field `moed`"), "{text}");
    assert!(text.contains("hint:"), "{text}");
}

#[test]
fn wrong_type_is_reported_at_the_value() {
    let src = format!("{REGIONS}\n[monitors.web]\ninterval = 5\n");
    let p = problems(&src);
    assert!(p[0].contains("line 9"), "{p:?}");
    assert!(p[0].contains("monitors.web.interval"), "{p:?}");
    assert!(p[0].contains("\"5s\""), "{p:?}");
}

#[test]
fn bad_enum_value_lists_the_choices() {
    let src = "[regions.a]\nmode = \"tepid\"\n";
    let p = problems(src);
    assert!(p[0].contains("regions.a.mode"), "{p:?}");
    assert!(p[0].contains("hot") && p[0].contains("cold"), "{p:?}");
}

#[test]
fn pairs_must_exist_and_be_mutual() {
    let p =
        problems("[regions.a]\npair = \"b\"\n\n[regions.b]\n\n[regions.c]\npair = \"nowhere\"\n");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].contains("line 2") && p[0].contains("does not name \"a\" back"),
        "{p:?}"
    );
    assert!(
        p[0].contains("pair = \\\"a\\\"") || p[0].contains("pair = \"a\""),
        "{p:?}"
    );
    assert!(
        p[1].contains("line 7") && p[1].contains("\"nowhere\" is not defined"),
        "{p:?}"
    );
    assert!(p[1].contains("a, b, c"), "{p:?}");
}

#[test]
fn dangling_endpoint_region_and_monitor() {
    let src = format!(
        r#"{REGIONS}
[dns.zones."example.com"]
ns = ["ns1.example.com"]

[dns.profiles.app]
domain = "app.example.com"
method = "priority"
monitor = "missing"

[[dns.profiles.app.endpoints]]
name = "a"
region = "centralus"
address = "192.0.2.1"
"#
    );
    let p = problems(&src);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].contains("line 14") && p[0].contains("dns.profiles.app.monitor"),
        "{p:?}"
    );
    assert!(
        p[1].contains("line 18") && p[1].contains("dns.profiles.app.endpoints[0].region"),
        "{p:?}"
    );
    assert!(p[1].contains("eastus, westus"), "{p:?}");
}

#[test]
fn profiles_must_live_in_a_zone_and_not_cycle() {
    let src = r#"
[dns.zones."example.com"]
ns = ["ns1.example.com"]

[dns.profiles.a]
domain = "app.other.org"
method = "priority"
[[dns.profiles.a.endpoints]]
name = "x"
profile = "b"

[dns.profiles.b]
method = "weighted"
[[dns.profiles.b.endpoints]]
name = "y"
profile = "a"
"#;
    let p = problems(src);
    assert!(
        p.iter()
            .any(|m| m.contains("not inside any configured zone")),
        "{p:?}"
    );
    assert!(p.iter().any(|m| m.contains("cycle: a -> b -> a")), "{p:?}");
}

#[test]
fn endpoint_targets_are_exclusive() {
    let src = r#"
[dns.zones."example.com"]
ns = ["ns1.example.com"]
[dns.profiles.a]
domain = "a.example.com"
method = "multivalue"
[[dns.profiles.a.endpoints]]
name = "x"
address = "192.0.2.1"
host = "x.example.net"
[[dns.profiles.a.endpoints]]
name = "y"
host = "y.example.net"
"#;
    let p = problems(src);
    assert!(
        p.iter().any(|m| m.contains("more than one target")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.contains("multivalue profiles can only have address endpoints")),
        "{p:?}"
    );
}

#[test]
fn all_problems_are_reported_at_once_in_file_order() {
    let src = "[admin]\nlisten = \"nope\"\n\n[monitors.m]\ninterval = \"10ms\"\ntimeout = \"1s\"\n";
    let p = problems(src);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[0].contains("line 2"));
    assert!(p[1].contains("line 5") && p[1].contains("50ms"));
    assert!(p[2].contains("line 6") && p[2].contains("timeout"));
}

#[test]
fn secrets_are_redacted_when_printed() {
    let src = "[admin]\ntoken = \"s3cr3t-token-value\"\n";
    let cfg = parse(src, "t.toml").expect("valid");
    assert_eq!(
        cfg.admin.token.as_ref().map(|t| t.expose()),
        Some("s3cr3t-token-value")
    );
    let printed = cfg.redacted_json();
    assert!(!printed.contains("s3cr3t"), "{printed}");
    assert!(!format!("{cfg:?}").contains("s3cr3t"));
}

#[test]
fn missing_file_says_so() {
    let err = load(Path::new("/nonexistent/tandem.toml")).expect_err("missing");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/tandem.toml"));
}

#[test]
fn syntax_errors_have_a_line() {
    let err = parse("[regions.a\npair = 1\n", "t.toml").expect_err("syntax");
    let p = &err.problems()[0];
    assert_eq!(p.line, Some(1), "{err}");
}
