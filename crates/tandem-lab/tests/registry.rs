//! The lab's registry: a replica per region with anonymous pulls and printed push credentials;
//! failing a region stops its replica, restoring it lets it catch up.

use std::time::Duration;

use sha2::Digest as _;
use tandem_lab::Lab;
use tokio_util::sync::CancellationToken;

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind(format!("{ip}:0"))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_registry_replicates_and_survives_region_failure() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (pe, pw) = (free_port("127.0.1.1"), free_port("127.0.2.1"));
    let src = format!(
        r#"
[regions.eastus]
pair = "westus"
[regions.westus]
pair = "eastus"
[admin]
listen = "127.0.0.1:0"
[lab]
dir = "{}"
[registry]
anonymous_read = ["*"]
[registry.replication]
secret = "replaced-by-the-lab-at-start"
poll_wait = "2s"
retry_max = "300ms"
[registry.replicas.eastus]
listen = "127.0.1.1:{pe}"
[registry.replicas.westus]
listen = "127.0.2.1:{pw}"
"#,
        tmp.path().display()
    );
    let cfg = tandem_config::parse(&src, "lab.toml").expect("config");
    let token = CancellationToken::new();
    let lab = Lab::start(&cfg, token.clone()).await.expect("lab");
    let (user, password) = lab.registry_creds.clone().expect("creds");
    assert_eq!(user, "lab");
    let east = format!("http://127.0.1.1:{pe}");
    let west = format!("http://127.0.2.1:{pw}");
    let http = reqwest::Client::new();
    let push = |base: String, data: &'static [u8]| {
        let http = http.clone();
        let (user, password) = (user.clone(), password.clone());
        async move {
            let d = format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)));
            let r = http
                .post(format!("{base}/v2/demo/app/blobs/uploads/?digest={d}"))
                .basic_auth(user, Some(password))
                .body(data)
                .send()
                .await
                .expect("push");
            assert_eq!(r.status(), 201);
            d
        }
    };
    let pulled = |base: String, d: String| {
        let http = http.clone();
        async move {
            http.get(format!("{base}/v2/demo/app/blobs/{d}"))
                .send()
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        }
    };
    // Push in eastus, pull anonymously in westus.
    let d1 = push(east.clone(), b"from eastus").await;
    assert!(eventually(|| pulled(west.clone(), d1.clone())).await);
    // Fail eastus: its replica stops; westus keeps serving and takes pushes.
    lab.fail("eastus").await.expect("fail");
    assert!(!pulled(east.clone(), d1.clone()).await, "eastus is down");
    assert!(pulled(west.clone(), d1.clone()).await);
    let d2 = push(west.clone(), b"from westus while eastus is down").await;
    // Restore eastus: it catches up by itself.
    lab.restore("eastus").await.expect("restore");
    assert!(
        eventually(|| pulled(east.clone(), d2.clone())).await,
        "eastus caught up"
    );
    token.cancel();
    lab.closed().await;
}
