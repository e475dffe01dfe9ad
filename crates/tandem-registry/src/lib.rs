//! Tandem's geo-replicated OCI registry.
//!
//! This crate owns `tandem registry`: an OCI Distribution v1.1 registry (pull, push, chunked and
//! resumable uploads, mounts, tags, catalog, deletes, referrers) whose replicas, one per region,
//! all accept writes and replicate them to each other. State that can conflict — tags, a
//! manifest's presence in a repository, a blob's link into one — is a set of last-writer-wins
//! registers stamped with a hybrid logical clock and the writing region ([`hlc`]), so concurrent
//! writes resolve the same way in every region. Each replica keeps a durable change log of its
//! own writes in redb ([`meta`]); peers pull it with a cursor and fetch the content they lack
//! ([`replication`]). A pull of something not replicated yet is served from a peer
//! (read-through) and stored locally. Content lives in any `object_store` backend ([`storage`]).
//!
//! It does not own the config model (that is `tandem-config`'s `[registry]` section), the
//! admin API (`tandem-admin`) or the lab; it offers them a [`Replica`] handle with status and
//! metrics.
//!
//! The request path reads top to bottom in [`api`]; the operations behind it are in [`core`].

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod component;
pub mod core;
pub mod gc;
pub mod hlc;
pub mod meta;
pub mod metrics;
pub mod oci;
pub mod replication;
pub mod server;
pub mod status;
pub mod storage;
pub mod uploads;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use tandem_config::registry::RegistryConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::hash_password;

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The region has no `[registry.replicas.<region>]` table.
    #[error(
        "region {0:?} has no replica in [registry.replicas]; add [registry.replicas.{0}] with `listen`"
    )]
    NoReplica(String),
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}; check that it is writable")]
    DataDir {
        /// The directory.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The metadata database cannot be opened (another process may hold it).
    #[error("cannot open metadata: {0}")]
    Meta(#[from] meta::MetaError),
    /// Storage cannot be opened.
    #[error("cannot open storage: {0}")]
    Storage(#[from] storage::StorageError),
    /// TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] server::TlsError),
    /// A configured password hash is unusable.
    #[error(
        "registry.users.{user}.password_hash cannot be parsed: {reason}; regenerate it with `tandem registry --hash-password`"
    )]
    Hash {
        /// User.
        user: String,
        /// Why.
        reason: String,
    },
    /// The replication client could not be built (bad CA file).
    #[error("replication client: {0}")]
    Client(String),
    /// The listener's address could not be read.
    #[error("listener: {0}")]
    Listener(std::io::Error),
}

/// A running replica.
pub struct ReplicaHandle {
    core: Arc<core::Core>,
    replication: Arc<replication::ReplicationState>,
    addr: SocketAddr,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl ReplicaHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its region.
    pub fn region(&self) -> &str {
        &self.core.region
    }

    /// Replication status as JSON.
    pub async fn status(&self) -> serde_json::Value {
        match status::replica(&self.core, &self.replication).await {
            Ok(s) => serde_json::to_value(s).unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e.body() }),
        }
    }

    /// A repository's replication status as JSON.
    pub async fn repository_status(&self, repo: &str) -> serde_json::Value {
        match status::repository(&self.core, repo).await {
            Ok(s) => serde_json::to_value(s).unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e.body() }),
        }
    }

    /// Prometheus text exposition of this replica's metrics.
    pub fn metrics_text(&self) -> String {
        self.core.metrics.encode()
    }

    /// This replica as an admin-API component (status JSON, tables, repository view).
    pub fn component(&self) -> Arc<dyn tandem_admin::Component> {
        Self::component_of(&[self])
    }

    /// Several replicas of one process (the lab) as one admin-API component.
    pub fn component_of(handles: &[&ReplicaHandle]) -> Arc<dyn tandem_admin::Component> {
        Arc::new(component::RegistryComponent {
            replicas: handles
                .iter()
                .map(|h| (h.core.clone(), h.replication.clone()))
                .collect(),
        })
    }

    /// Register this replica's metrics in another Prometheus registry (the admin API's),
    /// labelled with the region.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.core.metrics.register_into(registry, &self.core.region);
    }

    /// Run garbage collection now.
    pub async fn gc(&self) -> Result<gc::GcReport, oci::ApiError> {
        gc::run(&self.core).await
    }

    /// The router (to mount under an admin API, or for tests).
    pub fn router(&self) -> axum::Router {
        api::router(api::AppState {
            core: self.core.clone(),
            replication: self.replication.clone(),
        })
    }

    /// Stop and wait until every task has finished.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Wait until the replica stops (after its shutdown token is cancelled).
    pub async fn wait(self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Knobs that are not configuration: how a replica takes part.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pull peers' change logs (on by default). Off, the replica still serves read-through
    /// from peers and peers still pull from it: a pull-through cache, and how tests observe
    /// read-through deterministically.
    pub replicate: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { replicate: true }
    }
}

/// A replica of one region.
pub struct Replica;

impl Replica {
    /// Start the replica of `region` on an already bound `listener`. It runs until `shutdown`
    /// is cancelled; the handle's [`ReplicaHandle::wait`] returns when it has stopped.
    pub async fn start(
        cfg: &RegistryConfig,
        region: &str,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<ReplicaHandle, StartError> {
        Self::start_with(cfg, region, listener, shutdown, Options::default()).await
    }

    /// [`Replica::start`] with [`Options`].
    pub async fn start_with(
        cfg: &RegistryConfig,
        region: &str,
        listener: TcpListener,
        shutdown: CancellationToken,
        opts: Options,
    ) -> Result<ReplicaHandle, StartError> {
        let rc = cfg
            .replica(region)
            .ok_or_else(|| StartError::NoReplica(region.to_string()))?
            .clone();
        for u in &cfg.users {
            auth::check_hash(u.password_hash.expose()).map_err(|reason| StartError::Hash {
                user: u.name.clone(),
                reason,
            })?;
        }
        let dd = |source| StartError::DataDir {
            path: rc.data_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&rc.data_dir).map_err(dd)?;
        let part_dir = rc.data_dir.join("replication");
        std::fs::create_dir_all(&part_dir).map_err(dd)?;
        let meta = meta::Meta::open(&rc.data_dir.join("meta.redb"), region)?;
        let options: Vec<(String, String)> = rc
            .storage_options
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect();
        let storage = storage::Storage::open(rc.storage.as_deref(), &rc.data_dir, &options)?;
        let uploads = uploads::Uploads::new(rc.data_dir.join("uploads")).map_err(dd)?;
        let tls = match &rc.tls {
            Some(t) => Some(server::load_tls(&t.cert, &t.key)?),
            None => None,
        };
        let addr = listener.local_addr().map_err(StartError::Listener)?;
        // With port 0 (tests) the configured URL cannot be known in advance.
        let url = if rc.listen.port() == 0 {
            format!("{}://{addr}", if tls.is_some() { "https" } else { "http" })
        } else {
            rc.url.clone()
        };

        let mut client = reqwest::Client::builder()
            .pool_max_idle_per_host(16)
            .connect_timeout(std::time::Duration::from_secs(5));
        if let Some(ca) = &cfg.replication.ca {
            let pem = std::fs::read(ca)
                .map_err(|e| StartError::Client(format!("{}: {e}", ca.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| StartError::Client(format!("{}: {e}", ca.display())))?
            {
                client = client.add_root_certificate(cert);
            }
        }
        let client = client
            .build()
            .map_err(|e| StartError::Client(e.to_string()))?;
        let secret = cfg
            .replication
            .secret
            .as_ref()
            .map(|s| s.expose().to_string())
            .unwrap_or_default();
        let peers = replication::peer::Peers {
            list: cfg
                .replicas
                .iter()
                .filter(|r| r.region != region)
                .map(|r| {
                    replication::peer::Peer::new(&r.region, &r.url, client.clone(), &secret, region)
                })
                .collect(),
            part_dir,
            timeout: cfg.replication.read_through_timeout,
        };

        let tracker = TaskTracker::new();
        let metrics = Arc::new(metrics::Metrics::new());
        let webhooks = webhooks::Webhooks::start(
            &cfg.webhooks,
            region,
            metrics.clone(),
            &tracker,
            shutdown.clone(),
        );
        let head = meta.head()?;
        let (head_tx, _) = tokio::sync::watch::channel(head);
        let core = Arc::new(core::Core {
            region: region.to_string(),
            url,
            cfg: Arc::new(cfg.clone()),
            meta,
            storage,
            auth: auth::Auth::new(cfg),
            uploads,
            locks: core::Locks::new(),
            metrics,
            webhooks,
            head: head_tx,
            peers,
            upload_slots: Arc::new(tokio::sync::Semaphore::new(
                cfg.limits.max_concurrent_uploads,
            )),
            shutdown: shutdown.clone(),
        });
        let replication = Arc::new(replication::ReplicationState::default());
        for p in core
            .peers
            .list
            .clone()
            .into_iter()
            .filter(|_| opts.replicate)
        {
            tracker.spawn(replication::pull_loop(
                core.clone(),
                p,
                replication.clone(),
                shutdown.clone(),
            ));
        }
        if cfg.gc.enabled {
            let core2 = core.clone();
            let sd = shutdown.clone();
            let every = cfg.gc.interval;
            tracker.spawn(async move {
                loop {
                    tokio::select! {
                        _ = sd.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    match gc::run(&core2).await {
                        Ok(r) => tracing::info!(
                            deleted = r.deleted,
                            bytes = r.deleted_bytes,
                            orphans = r.orphans,
                            uploads = r.uploads_expired,
                            "registry GC finished"
                        ),
                        Err(e) => tracing::warn!(error = ?e.code(), "registry GC failed"),
                    }
                }
            });
        }
        let app = api::router(api::AppState {
            core: core.clone(),
            replication: replication.clone(),
        });
        tracker.spawn(server::serve(
            listener,
            app,
            tls,
            shutdown.clone(),
            tracker.clone(),
        ));
        tracing::info!(%region, %addr, storage = ?core.storage, peers = core.peers.list.len(), "registry replica started");
        Ok(ReplicaHandle {
            core,
            replication,
            addr,
            tracker,
            shutdown,
        })
    }
}
