//! Test harness: start replicas on loopback port 0 with real config, and a small OCI client.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tandem_registry::{Replica, ReplicaHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const USER: &str = "ci";
pub const PASSWORD: &str = "s3cret-pushing-password";
pub const SECRET: &str = "replication-secret-0123456789";

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Extra TOML for the `[registry]` section and per-replica tables.
#[derive(Clone, Default)]
pub struct Opts {
    pub registry_extra: String,
    /// Appended to every replica's section; `{region}` is replaced by the replica's region.
    pub replica_extra: String,
}

pub struct Node {
    pub region: String,
    pub addr: std::net::SocketAddr,
    pub dir: PathBuf,
    pub handle: Option<ReplicaHandle>,
    pub token: CancellationToken,
}

pub struct Lab {
    pub tmp: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub config: String,
    pub hash: String,
    /// Peers reach each replica through these, so a test can cut the link between regions
    /// while clients still reach both.
    pub proxies: Vec<Proxy>,
}

/// A TCP forwarder that can be cut (a network partition) and healed.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    epoch: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: std::net::SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = l.local_addr().expect("addr");
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (epoch, _) = tokio::sync::watch::channel(0u64);
        let up2 = up.clone();
        let ep = epoch.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = l.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = ep.subscribe();
                tokio::spawn(async move {
                    let Ok(mut out) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, up, epoch }
    }

    /// Partition: drop live connections and refuse new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Heal.
    pub fn heal(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn hash() -> String {
    // One argon2 hash per process: hashing is deliberately slow.
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| tandem_registry::hash_password(PASSWORD).expect("hash"))
        .clone()
}

impl Lab {
    /// Start replicas for `regions` (all replicating to each other).
    pub async fn start(regions: &[&str], opts: Opts) -> Lab {
        Self::start_with(regions, opts, &[]).await
    }

    /// Start replicas; `no_pull[i]` starts replica i without pulling peers' logs.
    pub async fn start_with(regions: &[&str], opts: Opts, no_pull: &[usize]) -> Lab {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut listeners = Vec::new();
        for _ in regions {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        }
        let addrs: Vec<_> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr"))
            .collect();
        let mut proxies = Vec::new();
        for a in &addrs {
            proxies.push(Proxy::start(*a).await);
        }
        let urls: Vec<_> = proxies.iter().map(|p| p.addr).collect();
        let config = Self::config(tmp.path(), regions, &addrs, &urls, &opts);
        let mut lab = Lab {
            tmp,
            nodes: Vec::new(),
            config,
            hash: hash(),
            proxies,
        };
        for (i, ((r, l), a)) in regions.iter().zip(listeners).zip(addrs).enumerate() {
            let token = CancellationToken::new();
            let cfg = lab.model();
            let o = tandem_registry::Options {
                replicate: !no_pull.contains(&i),
            };
            let handle = Replica::start_with(&cfg, r, l, token.clone(), o)
                .await
                .expect("start");
            lab.nodes.push(Node {
                region: r.to_string(),
                addr: a,
                dir: lab.tmp.path().join(r),
                handle: Some(handle),
                token,
            });
        }
        lab
    }

    fn config(
        dir: &Path,
        regions: &[&str],
        addrs: &[std::net::SocketAddr],
        urls: &[std::net::SocketAddr],
        opts: &Opts,
    ) -> String {
        let mut s = String::new();
        for r in regions {
            s.push_str(&format!("[regions.{r}]\n"));
        }
        s.push_str(&format!(
            "[registry]\nanonymous_read = [\"public/*\"]\n{}\n[registry.users.{USER}]\npassword_hash = \"{}\"\ndelete = true\n[registry.users.reader]\npassword_hash = \"{}\"\npush = [\"reader-only/*\"]\n[registry.replication]\nsecret = \"{SECRET}\"\npoll_wait = \"2s\"\nretry_max = \"500ms\"\nread_through_timeout = \"2s\"\n",
            opts.registry_extra,
            hash(),
            hash(),
        ));
        for ((r, a), u) in regions.iter().zip(addrs).zip(urls) {
            s.push_str(&format!(
                "[registry.replicas.{r}]\nlisten = \"{a}\"\nurl = \"http://{u}\"\ndata_dir = \"{}\"\n{}\n",
                dir.join(r).display(),
                opts.replica_extra.replace("{region}", r)
            ));
        }
        s
    }

    pub fn model(&self) -> tandem_config::registry::RegistryConfig {
        tandem_config::parse(&self.config, "lab.toml")
            .unwrap_or_else(|e| panic!("{e}\n{}", self.config))
            .registry
            .expect("registry")
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].addr)
    }

    pub fn client(&self, i: usize) -> Client {
        Client::new(&self.url(i), Some((USER, PASSWORD)))
    }

    pub fn anon(&self, i: usize) -> Client {
        Client::new(&self.url(i), None)
    }

    /// Stop a replica (graceful).
    pub async fn stop(&mut self, i: usize) {
        if let Some(h) = self.nodes[i].handle.take() {
            h.shutdown().await;
        }
    }

    /// Restart a stopped replica on its old address.
    pub async fn restart(&mut self, i: usize) {
        let addr = self.nodes[i].addr;
        let mut tries = 0;
        let l = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        };
        let token = CancellationToken::new();
        let cfg = self.model();
        let h = Replica::start(&cfg, &self.nodes[i].region.clone(), l, token.clone())
            .await
            .expect("restart");
        self.nodes[i].handle = Some(h);
        self.nodes[i].token = token;
    }

    pub fn handle(&self, i: usize) -> &ReplicaHandle {
        self.nodes[i].handle.as_ref().expect("running")
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// A minimal OCI client over reqwest.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub auth: Option<String>,
}

#[derive(Clone)]
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub digest: String,
}

/// An OCI image with random layers of the given sizes.
pub fn image(seed: u64, sizes: &[usize]) -> Image {
    let mut layers = Vec::new();
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    for &n in sizes {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(x as u8);
        }
        layers.push(v);
    }
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":[{}]}},"seed":{seed}}}"#,
        layers.iter().map(|l| format!("\"{}\"", sha256(l))).collect::<Vec<_>>().join(",")
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        sha256(&config),
        config.len(),
        layers
            .iter()
            .map(|l| format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#,
                sha256(l),
                l.len()
            ))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes();
    let digest = sha256(&manifest);
    Image {
        config,
        layers,
        manifest,
        digest,
    }
}

impl Client {
    pub fn new(base: &str, creds: Option<(&str, &str)>) -> Client {
        Client {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            auth: creds.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let r = self.http.request(method, url);
        match &self.auth {
            Some(a) => r.header("authorization", a),
            None => r,
        }
    }

    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        let r = self
            .req(
                reqwest::Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("post");
        assert_eq!(
            r.status(),
            201,
            "push blob: {}",
            r.text().await.unwrap_or_default()
        );
        d
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> reqwest::Response {
        self.req(
            reqwest::Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .expect("put manifest")
    }

    /// PUT a manifest; `None` when the request itself fails (the server died).
    pub async fn put_manifest_opt(
        &self,
        repo: &str,
        reference: &str,
        body: &[u8],
    ) -> Option<reqwest::Response> {
        self.req(
            reqwest::Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.to_vec())
        .send()
        .await
        .ok()
    }

    pub async fn push_image(&self, repo: &str, tag: &str, img: &Image) {
        self.push_blob(repo, &img.config).await;
        for l in &img.layers {
            self.push_blob(repo, l).await;
        }
        let r = self
            .put_manifest(
                repo,
                tag,
                "application/vnd.oci.image.manifest.v1+json",
                &img.manifest,
            )
            .await;
        assert_eq!(
            r.status(),
            201,
            "push manifest: {}",
            r.text().await.unwrap_or_default()
        );
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.req(reqwest::Method::GET, path)
            .send()
            .await
            .expect("get")
    }

    /// The digest a tag points at, if it resolves.
    pub async fn tag_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let r = self
            .req(
                reqwest::Method::HEAD,
                &format!("/v2/{repo}/manifests/{tag}"),
            )
            .send()
            .await
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        r.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Poll `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether a tool is installed; in CI (`TANDEM_CI=1`) a missing tool fails the test.
pub fn have_tool(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("TANDEM_CI").as_deref() == Ok("1") {
            panic!("{name} is required in CI (apt-get install {name})");
        }
        eprintln!("skipping: {name} is not installed (apt-get install {name})");
    }
    found
}
