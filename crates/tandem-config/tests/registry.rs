//! The `[registry]` section: a full config validates into the model, and mistakes are reported
//! with their key and a hint.

use tandem_config::parse;
use tandem_config::registry::WebhookEvent;

const REGIONS: &str = "[regions.eastus]\npair = \"westus\"\n[regions.westus]\npair = \"eastus\"\n";

fn problems(src: &str) -> Vec<String> {
    match parse(src, "t.toml") {
        Ok(_) => panic!("expected the config to be refused:\n{src}"),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn a_full_registry_section_validates() {
    let src = format!(
        r#"{REGIONS}
[registry]
anonymous_read = ["public/*"]
deletes = false
[registry.replicas.eastus]
listen = "127.0.1.1:5000"
data_dir = "/tmp/e"
storage = "s3://bucket/prefix"
storage_options = {{ aws_region = "us-east-1" }}
[registry.replicas.westus]
listen = "127.0.2.1:5000"
url = "https://registry.westus.example.com/"
[registry.users.ci]
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"
push = ["team/*"]
delete = true
[registry.token]
key = "0123456789abcdef0123456789abcdef"
ttl = "10m"
[registry.replication]
secret = "a-long-replication-secret"
concurrency = 8
[registry.webhooks.audit]
url = "http://hooks.example.com/x"
events = ["push"]
regions = ["eastus"]
[registry.limits]
max_manifest_bytes = 8388608
[registry.gc]
interval = "30m"
grace = "2h"
"#
    );
    let cfg = parse(&src, "t.toml").expect("valid");
    let r = cfg.registry.expect("registry");
    assert_eq!(r.replicas.len(), 2);
    let e = r.replica("eastus").expect("eastus");
    assert_eq!(e.url, "http://127.0.1.1:5000");
    assert_eq!(e.storage.as_deref(), Some("s3://bucket/prefix"));
    assert_eq!(e.storage_options[0].0, "aws_region");
    assert_eq!(
        r.replica("westus").expect("westus").url,
        "https://registry.westus.example.com"
    );
    assert!(!r.deletes);
    assert_eq!(r.users[0].push, vec!["team/*"]);
    assert_eq!(r.token.as_ref().map(|t| t.ttl.as_secs()), Some(600));
    assert_eq!(r.replication.concurrency, 8);
    assert_eq!(r.webhooks[0].events, vec![WebhookEvent::Push]);
    assert_eq!(r.limits.max_manifest_bytes, 8 * 1024 * 1024);
    assert_eq!(r.gc.grace.as_secs(), 7200);
    // Secrets never print.
    let printed = format!("{:?}", r);
    assert!(!printed.contains("a-long-replication-secret"));
    assert!(!printed.contains("0123456789abcdef0123456789abcdef"));
}

#[test]
fn replicas_need_defined_regions_and_distinct_addresses() {
    let src = format!(
        r#"{REGIONS}
[registry.replication]
secret = "a-long-replication-secret"
[registry.replicas.eastus]
listen = "127.0.0.1:5000"
[registry.replicas.centralus]
listen = "127.0.0.1:5000"
"#
    );
    let p = problems(&src);
    assert!(
        p.iter().any(|m| m.contains("registry.replicas.centralus")
            && m.contains("\"centralus\" is not defined")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|m| m.contains("already the listen address")),
        "{p:?}"
    );
}

#[test]
fn several_replicas_need_a_replication_secret() {
    let src = format!(
        "{REGIONS}\n[registry.replicas.eastus]\nlisten = \"127.0.0.1:5000\"\n[registry.replicas.westus]\nlisten = \"127.0.0.1:5001\"\n"
    );
    let p = problems(&src);
    assert!(
        p.iter()
            .any(|m| m.contains("replication has no secret") && m.contains("secret_env")),
        "{p:?}"
    );
}

#[test]
fn bad_values_are_reported_with_hints() {
    let src = format!(
        r#"{REGIONS}
[registry]
anonymous_read = ["Public Stuff"]
[registry.replicas.eastus]
listen = "nope"
storage = "ftp://x"
[registry.users.bob]
password_hash = "plaintext"
[registry.token]
key = "short"
[registry.limits]
max_manifest_bytes = 10
"#
    );
    let p = problems(&src);
    let all = p.join("\n");
    assert!(all.contains("registry.anonymous_read[0]"), "{all}");
    assert!(all.contains("registry.replicas.eastus.listen"), "{all}");
    assert!(all.contains("not a supported storage URL"), "{all}");
    assert!(all.contains("--hash-password"), "{all}");
    assert!(all.contains("shorter than 32"), "{all}");
    assert!(all.contains("max_manifest_bytes"), "{all}");
}

#[test]
fn unknown_registry_keys_fail() {
    let src =
        format!("{REGIONS}\n[registry.replicas.eastus]\nlisten = \"127.0.0.1:5000\"\nlsiten = 1\n");
    let p = problems(&src);
    assert!(p[0].contains("unknown field `lsiten`"), "{p:?}");
}
