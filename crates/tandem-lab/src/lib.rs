//! The local multi-region lab behind `tandem up`.
//!
//! This crate owns wiring every Tandem service into one process on loopback, the way a team
//! would run them in several regions: each region gets its own addresses (eastus 127.0.1.x,
//! westus 127.0.2.x, ...), a demo app that says which region answered, and the region's own
//! Tandem services; the DNS traffic manager answers for the lab zone on 127.0.0.1:5353. A
//! region can be failed and restored while the lab runs (`tandem lab fail eastus`), which
//! stops and restarts its listeners for real, so failover can be watched with `dig` and
//! `curl` and measured.
//!
//! It does not own any service's behaviour; it only starts them with the lab's config and
//! the lab's certificate authority, and keeps the handles needed to stop and start them.

mod app;
mod edge;
pub mod registry;
mod volume;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tandem_admin::{Admin, Component, Table};
use tandem_config::Config;
use tandem_config::value::Secret;
use tandem_dns::{DnsServer, Listeners};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use app::DemoApp;

/// Something a region runs that a region failure stops.
pub trait RegionService: Send + Sync {
    /// The region it belongs to.
    fn region(&self) -> &str;
    /// What it serves, as (label, address) pairs for the lab's banner.
    fn describe(&self) -> Vec<(String, String)>;
    /// Stop listening and close every connection.
    fn stop(&self) -> BoxFuture<'_, ()>;
    /// Listen again on the same addresses.
    fn start(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// Why the lab could not start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The config has no `[lab]` section.
    #[error(
        "the config has no [lab] section; `tandem up` needs one (see examples/lab.toml), or run `tandem up` without -c for the built-in lab"
    )]
    NoLabSection,
    /// The lab directory could not be prepared.
    #[error("cannot prepare the lab directory {path}: {source}; pick a writable [lab] dir")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A demo app could not bind.
    #[error(
        "the {region} demo app cannot listen on {addr}: {source}; is another lab running? stop it or change [lab.apps.{region}] listen"
    )]
    App {
        /// The region.
        region: String,
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TLS material could not be made.
    #[error(transparent)]
    Tls(#[from] tandem_tls::TlsError),
    /// The DNS server failed to start.
    #[error(transparent)]
    Dns(#[from] tandem_dns::DnsError),
    /// An edge proxy failed to start.
    #[error(transparent)]
    EdgeConfig(#[from] tandem_edge::EdgeError),
    /// An edge proxy could not listen.
    #[error("edge: {0}")]
    Edge(String),
    /// The admin API could not bind.
    #[error(transparent)]
    Admin(#[from] tandem_admin::AdminError),
    /// A registry replica could not start.
    #[error("{0}")]
    Registry(String),
    /// A lab volume could not be set up.
    #[error("lab volume: {0}")]
    Volume(String),
}

/// Region state in the lab.
#[derive(Debug, Clone, Serialize)]
pub struct RegionState {
    /// Region name.
    pub region: String,
    /// `up` or `failed`.
    pub state: String,
    /// Addresses it serves.
    pub serves: Vec<(String, String)>,
}

struct LabInner {
    services: Vec<Arc<dyn RegionService>>,
    failed: Mutex<Vec<String>>,
    regions: Vec<String>,
}

impl LabInner {
    async fn fail(&self, region: &str) -> Result<usize, String> {
        if !self.regions.iter().any(|r| r == region) {
            return Err(format!(
                "no region {region:?} in this lab (regions: {})",
                self.regions.join(", ")
            ));
        }
        let mut failed = self.failed.lock().await;
        let mut n = 0;
        for s in self.services.iter().filter(|s| s.region() == region) {
            s.stop().await;
            n += 1;
        }
        if !failed.iter().any(|r| r == region) {
            failed.push(region.to_string());
        }
        tracing::warn!(region, listeners = n, "lab: region failed");
        Ok(n)
    }

    async fn restore(&self, region: &str) -> Result<usize, String> {
        if !self.regions.iter().any(|r| r == region) {
            return Err(format!(
                "no region {region:?} in this lab (regions: {})",
                self.regions.join(", ")
            ));
        }
        let mut failed = self.failed.lock().await;
        let mut n = 0;
        for s in self.services.iter().filter(|s| s.region() == region) {
            s.start().await?;
            n += 1;
        }
        failed.retain(|r| r != region);
        tracing::info!(region, listeners = n, "lab: region restored");
        Ok(n)
    }

    fn states(&self, failed: &[String]) -> Vec<RegionState> {
        self.regions
            .iter()
            .map(|r| RegionState {
                region: r.clone(),
                state: if failed.contains(r) {
                    "failed".into()
                } else {
                    "up".into()
                },
                serves: self
                    .services
                    .iter()
                    .filter(|s| s.region() == r)
                    .flat_map(|s| s.describe())
                    .collect(),
            })
            .collect()
    }
}

/// A running lab.
pub struct Lab {
    inner: Arc<LabInner>,
    /// Where the lab keeps its CA and admin token.
    pub dir: PathBuf,
    /// The lab CA's certificate (for `curl --cacert`).
    pub ca_cert: PathBuf,
    /// The admin API's address.
    pub admin_addr: std::net::SocketAddr,
    /// The DNS server's addresses.
    pub dns_addrs: Vec<std::net::SocketAddr>,
    /// The DNS server (for reloads).
    pub dns: Option<DnsServer>,
    /// The registry's push credentials (`lab`, random password), when the lab runs one.
    pub registry_creds: Option<(String, String)>,
    /// Registry replica URLs by region.
    pub registry_urls: Vec<(String, String)>,
    tracker: TaskTracker,
}

/// The file holding the lab's admin token.
pub fn token_path(dir: &Path) -> PathBuf {
    dir.join("admin-token")
}

impl Lab {
    /// Start every service of the lab described by `cfg`. Everything stops when `shutdown`
    /// is cancelled; await [`Lab::closed`] after that.
    pub async fn start(cfg: &Config, shutdown: CancellationToken) -> Result<Lab, LabError> {
        let lab = cfg.lab.as_ref().ok_or(LabError::NoLabSection)?;
        let dir = lab.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Dir {
            path: dir.clone(),
            source,
        })?;
        let ca = tandem_tls::LabCa::load_or_create(&dir)?;
        let token = match &cfg.admin.token {
            Some(t) => t.clone(),
            None => {
                let t: String = (0..32)
                    .map(|_| format!("{:x}", rand::random::<u8>() & 0xF))
                    .collect();
                write_private(&token_path(&dir), &t).map_err(|source| LabError::Dir {
                    path: token_path(&dir),
                    source,
                })?;
                Secret::new(t)
            }
        };
        let tracker = TaskTracker::new();
        let mut registry = Registry::default();
        let mut services: Vec<Arc<dyn RegionService>> = Vec::new();
        for a in &lab.apps {
            let app = DemoApp::start(&a.region, a.listen, volume::visits_file(cfg, &a.region))
                .await
                .map_err(|source| LabError::App {
                    region: a.region.clone(),
                    addr: a.listen,
                    source,
                })?;
            services.push(app);
        }
        let mut components: Vec<Arc<dyn Component>> = Vec::new();
        let (edges, waf) = edge::start(cfg, &ca, &mut registry, &shutdown, &tracker).await?;
        if !edges.is_empty() {
            components.push(Arc::new(tandem_edge::admin::EdgeComponent(
                edges.iter().map(|e| e.edge.clone()).collect(),
            )));
        }
        if let Some(w) = waf.filter(|_| cfg.waf.is_some()) {
            components.push(Arc::new(tandem_edge::waf::WafComponent(w)));
        }
        for e in &edges {
            services.push(e.clone());
        }
        let mut registry_creds = None;
        let mut registry_urls = Vec::new();
        if let Some(reg) = &cfg.registry {
            let (model, password) = registry::lab_model(reg, &dir).map_err(LabError::Registry)?;
            let model = Arc::new(model);
            let mut handles = Vec::new();
            for r in &model.replicas {
                let svc =
                    registry::RegistryService::start(model.clone(), &r.region, shutdown.clone())
                        .await
                        .map_err(LabError::Registry)?;
                svc.with_handle(|h| h.register_metrics(&mut registry)).await;
                registry_urls.push((r.region.clone(), r.url.clone()));
                handles.push(svc.clone());
                services.push(svc);
            }
            components.push(Arc::new(registry::LabRegistryComponent {
                services: handles,
            }));
            registry_creds = Some((registry::LAB_USER.to_string(), password));
        }
        let (volumes, volume_status) = volume::start(cfg, &shutdown, &tracker).await?;
        if let Some(status) = volume_status {
            status.register(&mut registry);
            components.push(Arc::new(tandem_volume::admin::VolumeComponent(status)));
        }
        for v in volumes {
            services.push(v);
        }
        let mut dns_addrs = Vec::new();
        let mut dns_server = None;
        if let Some(dns_cfg) = &cfg.dns {
            let server = DnsServer::new(cfg, &mut registry, shutdown.clone())?;
            let listeners = Listeners::bind(&dns_cfg.listen, dns_cfg.workers.clamp(1, 2)).await?;
            dns_addrs = listeners.local_addrs();
            components.push(server.component());
            let s = server.clone();
            let t = shutdown.clone();
            tracker.spawn(async move {
                if let Err(e) = s.run(listeners, t).await {
                    tracing::error!(error = %e, "DNS server failed");
                }
            });
            dns_server = Some(server);
        }
        let inner = Arc::new(LabInner {
            services,
            failed: Mutex::new(Vec::new()),
            regions: cfg.regions.iter().map(|r| r.name.clone()).collect(),
        });
        components.insert(
            0,
            Arc::new(LabComponent {
                inner: inner.clone(),
            }),
        );
        let admin = Admin::new(&cfg.regions, Some(token), registry, components);
        let listener = Admin::bind(cfg.admin.listen).await?;
        let admin_addr = listener.local_addr().map_err(|source| LabError::Dir {
            path: dir.clone(),
            source,
        })?;
        let t = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) = admin.serve(listener, t).await {
                tracing::error!(error = %e, "admin API failed");
            }
        });
        // Stop the demo apps on shutdown too.
        let stop_inner = inner.clone();
        let t = shutdown.clone();
        tracker.spawn(async move {
            t.cancelled().await;
            for s in &stop_inner.services {
                s.stop().await;
            }
        });
        tracker.close();
        Ok(Lab {
            inner,
            ca_cert: ca.ca_cert_path(),
            dir,
            admin_addr,
            dns_addrs,
            dns: dns_server,
            registry_creds,
            registry_urls,
            tracker,
        })
    }

    /// Fail a region: stop every listener it has.
    pub async fn fail(&self, region: &str) -> Result<usize, String> {
        self.inner.fail(region).await
    }

    /// Restore a failed region.
    pub async fn restore(&self, region: &str) -> Result<usize, String> {
        self.inner.restore(region).await
    }

    /// What each region serves and whether it is up.
    pub async fn regions(&self) -> Vec<RegionState> {
        let failed = self.inner.failed.lock().await.clone();
        self.inner.states(&failed)
    }

    /// Wait until every service has stopped (after the shutdown token was cancelled).
    pub async fn closed(&self) {
        self.tracker.wait().await;
    }
}

fn write_private(path: &Path, data: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)
}

struct LabComponent {
    inner: Arc<LabInner>,
}

impl Component for LabComponent {
    fn name(&self) -> &'static str {
        "lab"
    }
    fn status(&self) -> serde_json::Value {
        let failed = self
            .inner
            .failed
            .try_lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        serde_json::json!({ "regions": self.inner.states(&failed) })
    }
    fn tables(&self) -> Vec<Table> {
        let failed = self
            .inner
            .failed
            .try_lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        let mut t = Table::new("Lab regions", &["region", "state", "serves"]);
        for r in self.inner.states(&failed) {
            t.row(vec![
                r.region,
                r.state,
                r.serves
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]);
        }
        vec![t]
    }
    fn routes(&self) -> Router {
        Router::new()
            .route("/regions/{region}/fail", post(fail))
            .route("/regions/{region}/restore", post(restore))
            .with_state(self.inner.clone())
    }
}

async fn fail(
    State(inner): State<Arc<LabInner>>,
    UrlPath(region): UrlPath<String>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    match inner.fail(&region).await {
        Ok(n) => (
            StatusCode::OK,
            axum::Json(
                serde_json::json!({"region": region, "state": "failed", "listeners_stopped": n}),
            ),
        ),
        Err(e) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": e})),
        ),
    }
}

async fn restore(
    State(inner): State<Arc<LabInner>>,
    UrlPath(region): UrlPath<String>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    match inner.restore(&region).await {
        Ok(n) => (
            StatusCode::OK,
            axum::Json(
                serde_json::json!({"region": region, "state": "up", "listeners_started": n}),
            ),
        ),
        Err(e) => (
            StatusCode::CONFLICT,
            axum::Json(serde_json::json!({"error": e})),
        ),
    }
}
