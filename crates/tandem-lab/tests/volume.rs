//! The lab's volume replication: the eastus demo app's visits reach the westus standby; failing
//! eastus stops its agent (nothing new is replicated) and restoring it catches up.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tandem_lab::Lab;
use tokio_util::sync::CancellationToken;

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_volume_reaches_the_standby_and_stops_with_its_region() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().display();
    let app = free_port("127.0.1.10");
    let src = format!(
        r#"
[regions.eastus]
pair = "westus"
[regions.westus]
pair = "eastus"
[admin]
listen = "127.0.0.1:0"
[lab]
dir = "{d}/lab"
[lab.apps.eastus]
listen = "127.0.1.10:{app}"
[volume]
state_dir = "{d}/state"
[volume.volumes.demo]
region = "eastus"
source = "{d}/eastus/volume"
repository = "{d}/westus/repo"
password = "lab-volume-password"
interval = "1s"
[volume.volumes.demo.standby]
dir = "{d}/westus/volume"
poll_interval = "300ms"
"#
    );
    let cfg = tandem_config::parse(&src, "lab.toml").unwrap();
    let token = CancellationToken::new();
    let lab = Lab::start(&cfg, token.clone()).await.unwrap();
    let standby = tmp.path().join("westus/volume");

    // The seeded README and a visit recorded by the eastus demo app reach westus.
    reqwest::get(format!("http://127.0.1.10:{app}/hello"))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || std::fs::read_to_string(
            standby.join("visits.log")
        )
        .is_ok_and(|s| s.contains("eastus /hello")))
        .await,
        "the visit reached the standby"
    );
    assert!(standby.join("README.txt").exists());

    // Failing eastus stops its agent: a file written now stays behind...
    lab.fail("eastus").await.unwrap();
    std::fs::write(
        tmp.path().join("eastus/volume/late.txt"),
        "written while eastus is down",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !standby.join("late.txt").exists(),
        "nothing replicates while the region is failed"
    );
    // ...and arrives once it is restored.
    lab.restore("eastus").await.unwrap();
    assert!(
        eventually(Duration::from_secs(30), || standby
            .join("late.txt")
            .exists())
        .await
    );
    let regions = lab.regions().await;
    assert!(
        regions
            .iter()
            .any(|r| r.serves.iter().any(|(k, _)| k == "standby"))
    );
    token.cancel();
    lab.closed().await;
}
