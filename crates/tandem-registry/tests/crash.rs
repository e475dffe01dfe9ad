//! kill -9 at arbitrary moments: replicas run as child processes (this test binary re-executed),
//! are killed with SIGKILL while pushes and replication are in flight, and restarted. Every
//! acknowledged push must be pullable, complete and byte-identical, in both regions; nothing
//! half-written may be visible.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tandem_testkit::KillOnDrop;

use common::{Client, PASSWORD, SECRET, USER, eventually, image, sha256};

const CHILD_CONFIG: &str = "TANDEM_CRASH_CHILD_CONFIG";
const CHILD_REGION: &str = "TANDEM_CRASH_CHILD_REGION";

/// Not a test on its own: when re-executed with the env vars set, runs one replica until
/// killed.
#[test]
fn child_replica() {
    let (Ok(path), Ok(region)) = (std::env::var(CHILD_CONFIG), std::env::var(CHILD_REGION)) else {
        return;
    };
    // Warnings go to stderr, which the parent appends to `<region>.log` next to the config.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("tandem_registry=info")
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let cfg = tandem_config::load(std::path::Path::new(&path)).expect("config");
        let reg = cfg.registry.expect("registry");
        let listen = reg.replica(&region).expect("replica").listen;
        let l = tokio::net::TcpListener::bind(listen).await.expect("bind");
        let token = tokio_util::sync::CancellationToken::new();
        let _h = tandem_registry::Replica::start(&reg, &region, l, token)
            .await
            .expect("start");
        std::future::pending::<()>().await;
    });
}

fn spawn(config: &std::path::Path, region: &str) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(config, region))
        .expect("replica log");
    Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "child_replica",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_CONFIG, config)
        .env(CHILD_REGION, region)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .map(KillOnDrop)
        .expect("spawn child replica")
}

fn log_path(config: &std::path::Path, region: &str) -> std::path::PathBuf {
    config.with_file_name(format!("{region}.log"))
}

/// The last lines a replica logged, for a failure message.
fn log_tail(config: &std::path::Path, region: &str) -> String {
    let text = std::fs::read_to_string(log_path(config, region)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

async fn up(c: &Client) {
    eventually(Duration::from_secs(20), || async {
        c.http
            .get(format!("{}/healthz", c.base))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
    })
    .await
    .expect("replica came up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_pushes_and_replication_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (ea, wa) = (free_addr(), free_addr());
    let hash = tandem_registry::hash_password(PASSWORD).expect("hash");
    let cfg = format!(
        "[regions.eastus]\n[regions.westus]\n[registry]\n[registry.users.{USER}]\npassword_hash = \"{hash}\"\n[registry.replication]\nsecret = \"{SECRET}\"\npoll_wait = \"2s\"\nretry_max = \"300ms\"\n[registry.replicas.eastus]\nlisten = \"{ea}\"\ndata_dir = \"{}\"\n[registry.replicas.westus]\nlisten = \"{wa}\"\ndata_dir = \"{}\"\n",
        tmp.path().join("eastus").display(),
        tmp.path().join("westus").display()
    );
    let path = tmp.path().join("tandem.toml");
    std::fs::write(&path, cfg).expect("config");
    let mut east = spawn(&path, "eastus");
    let mut west = spawn(&path, "westus");
    let ec = Client::new(&format!("http://{ea}"), Some((USER, PASSWORD)));
    let wc = Client::new(&format!("http://{wa}"), Some((USER, PASSWORD)));
    up(&ec).await;
    up(&wc).await;

    let mut acked = Vec::new();
    for round in 0..3u64 {
        // Push a stream of images; kill westus part way (mid-replication), then eastus
        // (mid-push), at different moments each round.
        let pusher = {
            let ec = ec.clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                for i in 0..40u64 {
                    let img = image(round * 100 + i, &[150_000, 20_000]);
                    let tag = format!("r{round}-{i}");
                    let ok = async {
                        for b in std::iter::once(&img.config).chain(img.layers.iter()) {
                            let r = ec
                                .req(
                                    reqwest::Method::POST,
                                    &format!("/v2/crash/app/blobs/uploads/?digest={}", sha256(b)),
                                )
                                .body(b.clone())
                                .send()
                                .await
                                .ok()?;
                            if r.status() != 201 {
                                return None;
                            }
                        }
                        let r = ec
                            .put_manifest_opt("crash/app", &tag, &img.manifest)
                            .await?;
                        (r.status() == 201).then_some(())
                    }
                    .await;
                    match ok {
                        Some(()) => done.push((tag, img)),
                        None => break, // eastus was killed
                    }
                }
                done
            })
        };
        tokio::time::sleep(Duration::from_millis(200 + round * 150)).await;
        west.kill().expect("kill -9 westus");
        let _ = west.wait();
        tokio::time::sleep(Duration::from_millis(150 + round * 100)).await;
        east.kill().expect("kill -9 eastus");
        let _ = east.wait();
        let done = pusher.await.expect("pusher");
        eprintln!(
            "round {round}: {} of 40 pushes acknowledged before kill -9",
            done.len()
        );
        acked.extend(done);
        east = spawn(&path, "eastus");
        west = spawn(&path, "westus");
        up(&ec).await;
        up(&wc).await;
    }
    assert!(
        !acked.is_empty(),
        "some pushes were acknowledged before the kills"
    );
    // Every acknowledged push is complete in eastus, and arrives complete in westus.
    for (tag, img) in &acked {
        for (name, c) in [("eastus", &ec), ("westus", &wc)] {
            let ok = eventually(Duration::from_secs(30), || async {
                let r = c.get(&format!("/v2/crash/app/manifests/{tag}")).await;
                if r.status() != 200 {
                    return None;
                }
                (r.bytes().await.ok()?.as_ref() == img.manifest.as_slice()).then_some(())
            })
            .await;
            assert!(ok.is_some(), "{tag} missing in {name} after kill -9");
            for b in std::iter::once(&img.config).chain(img.layers.iter()) {
                let r = c.get(&format!("/v2/crash/app/blobs/{}", sha256(b))).await;
                assert_eq!(
                    r.status(),
                    200,
                    "{tag}: blob missing in {name}; its log ends:\n{}",
                    log_tail(&path, name)
                );
                assert_eq!(
                    r.bytes().await.expect("bytes").as_ref(),
                    b.as_slice(),
                    "{tag}: blob corrupt in {name}"
                );
            }
        }
    }
    // Whatever tags exist (acknowledged or not) are complete: nothing half-written is visible.
    let v: serde_json::Value = ec
        .get("/v2/crash/app/tags/list")
        .await
        .json()
        .await
        .expect("tags");
    for t in v["tags"].as_array().expect("tags") {
        let t = t.as_str().expect("tag");
        let r = ec.get(&format!("/v2/crash/app/manifests/{t}")).await;
        assert_eq!(r.status(), 200, "{t}");
        let m: serde_json::Value = r.json().await.expect("manifest");
        for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().expect("layers").iter())
        {
            let d = d["digest"].as_str().expect("digest");
            assert_eq!(
                ec.get(&format!("/v2/crash/app/blobs/{d}")).await.status(),
                200,
                "{t} references missing {d}"
            );
        }
    }
    let _ = east.kill();
    let _ = west.kill();
    let _ = east.wait();
    let _ = west.wait();
}
