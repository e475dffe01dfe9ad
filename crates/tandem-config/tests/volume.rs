//! The `[volume]` section: a full example validates; regions, pairs, passwords and values are
//! checked with the file, line and key of each problem.

use std::time::Duration;

use tandem_config::parse;
use tandem_config::volume::Password;

const REGIONS: &str = r#"
[regions.eastus]
pair = "westus"

[regions.westus]
pair = "eastus"

[regions.lonely]
"#;

fn problems(src: &str) -> Vec<String> {
    match parse(src, "v.toml") {
        Ok(_) => panic!("expected the config to be refused:\n{src}"),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn minimal_volume_defaults_to_the_pair() {
    let src = format!(
        "{REGIONS}\n[volume.volumes.data]\nregion = \"eastus\"\nsource = \"/srv/data\"\nrepository = \"/srv/repo\"\npassword_env = \"PW\"\n\n[volume.volumes.data.standby]\ndir = \"/srv/standby\"\n"
    );
    let cfg = parse(&src, "v.toml").expect("valid");
    let v = cfg.volume.expect("volume").volumes.remove(0);
    assert_eq!(v.repository.region, "westus");
    assert_eq!(v.interval, Duration::from_secs(30));
    assert_eq!(v.lag_alert, Duration::from_secs(120));
    assert_eq!(v.concurrency, 4);
    assert_eq!(v.password, Password::Env("PW".into()));
    let s = v.standby.expect("standby");
    assert_eq!(s.region, "westus");
}

#[test]
fn repository_must_be_in_the_pair() {
    let src = format!(
        "{REGIONS}\n[volume.volumes.data]\nregion = \"eastus\"\nsource = \"/d\"\nrepository = \"/r\"\nrepository_region = \"eastus\"\npassword = \"x\"\n\n[volume.volumes.other]\nregion = \"lonely\"\nsource = \"/d\"\nrepository = \"/r\"\npassword = \"x\"\n\n[volume.volumes.third]\nregion = \"nowhere\"\nsource = \"/d\"\nrepository = \"/r\"\npassword = \"x\"\n"
    );
    let p = problems(&src);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(
        p[0].contains("volume.volumes.data.repository_region")
            && p[0].contains("same region")
            && p[0].contains("line 14"),
        "{p:?}"
    );
    assert!(
        p[1].contains("has no pair") && p[1].contains("volume.volumes.other.region"),
        "{p:?}"
    );
    assert!(p[2].contains("\"nowhere\" is not defined"), "{p:?}");
}

#[test]
fn bad_values_are_each_reported() {
    let src = format!(
        "{REGIONS}\n[volume.volumes.data]\nregion = \"eastus\"\nsource = \"/d\"\nrepository = \"ftp://x/y\"\npassword = \"x\"\npassword_env = \"Y\"\ninterval = \"10s\"\nlag_alert = \"5s\"\nbandwidth = \"lots\"\nconcurrency = 0\ncompression = 99\npre_hook = []\n\n[volume.volumes.data.retention]\nkeep_last = 0\n"
    );
    let p = problems(&src).join("\n");
    for needle in [
        "scheme \"ftp\" is not supported",
        "more than one of password",
        "lag_alert (5s) is shorter than interval (10s)",
        "not a transfer rate",
        "concurrency 0 is outside",
        "compression level 99",
        "the hook has no command",
        "keeps nothing",
    ] {
        assert!(p.contains(needle), "missing {needle:?} in:\n{p}");
    }
}

#[test]
fn passwords_are_redacted() {
    let src = format!(
        "{REGIONS}\n[volume.volumes.data]\nregion = \"eastus\"\nsource = \"/d\"\nrepository = \"/r\"\npassword = \"hunter2\"\n"
    );
    let cfg = parse(&src, "v.toml").expect("valid");
    let json = cfg.redacted_json();
    assert!(!json.contains("hunter2"), "{json}");
    assert!(json.contains("***"), "{json}");
}

#[test]
fn unknown_keys_are_refused() {
    let src = format!(
        "{REGIONS}\n[volume.volumes.data]\nregion = \"eastus\"\nsource = \"/d\"\nrepository = \"/r\"\npassword = \"x\"\nintervall = \"5s\"\n"
    );
    let p = problems(&src);
    assert!(p[0].contains("volume.volumes.data.intervall"), "{p:?}");
}
