//! The lab's registry: one replica per region (on the address `[registry.replicas.<region>]`
//! gives, 127.0.x.1:5000 in the built-in lab), replicating to each other, anonymous pulls, and a
//! push user whose random password the lab prints as `creds: USER:PASSWORD`. Failing a region
//! stops its replica for real; restoring it restarts the replica, which catches up by itself.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use tandem_config::registry::{RegistryConfig, User};
use tandem_config::value::Secret;
use tandem_registry::{Replica, ReplicaHandle};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::RegionService;

/// The lab's push user.
pub const LAB_USER: &str = "lab";

fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:x}", rand::random::<u8>() & 0xF))
        .collect()
}

/// The lab's registry model: the configured one, with a push user of a fresh random password,
/// a fresh replication secret, and data under the lab directory. Returns it with the password.
pub fn lab_model(cfg: &RegistryConfig, lab_dir: &Path) -> Result<(RegistryConfig, String), String> {
    let mut m = cfg.clone();
    let password = random_hex(24);
    let hash = tandem_registry::hash_password(&password)?;
    m.users.retain(|u| u.name != LAB_USER);
    m.users.push(User {
        name: LAB_USER.into(),
        password_hash: Secret::new(hash),
        push: vec!["*".into()],
        delete: true,
    });
    m.replication.secret = Some(Secret::new(random_hex(32)));
    for r in &mut m.replicas {
        r.data_dir = lab_dir.join("registry").join(&r.region);
    }
    Ok((m, password))
}

/// One region's replica as a lab region service.
pub struct RegistryService {
    region: String,
    model: Arc<RegistryConfig>,
    running: Mutex<Option<(ReplicaHandle, CancellationToken)>>,
    parent: CancellationToken,
}

impl RegistryService {
    /// Start the replica of `region`.
    pub async fn start(
        model: Arc<RegistryConfig>,
        region: &str,
        parent: CancellationToken,
    ) -> Result<Arc<RegistryService>, String> {
        let s = Arc::new(RegistryService {
            region: region.to_string(),
            model,
            running: Mutex::new(None),
            parent,
        });
        s.launch().await?;
        Ok(s)
    }

    async fn launch(&self) -> Result<(), String> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let listen = self
            .model
            .replica(&self.region)
            .ok_or_else(|| format!("no replica for {}", self.region))?
            .listen;
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            format!(
                "registry replica {} cannot listen on {listen}: {e}; is another lab running?",
                self.region
            )
        })?;
        let token = self.parent.child_token();
        let handle = Replica::start(&self.model, &self.region, listener, token.clone())
            .await
            .map_err(|e| format!("registry replica {}: {e}", self.region))?;
        *running = Some((handle, token));
        Ok(())
    }

    /// The running replica's admin component and metrics hook, if it runs.
    pub async fn with_handle<T>(&self, f: impl FnOnce(&ReplicaHandle) -> T) -> Option<T> {
        self.running.lock().await.as_ref().map(|(h, _)| f(h))
    }
}

impl RegionService for RegistryService {
    fn region(&self) -> &str {
        &self.region
    }
    fn describe(&self) -> Vec<(String, String)> {
        let url = self
            .model
            .replica(&self.region)
            .map(|r| r.url.clone())
            .unwrap_or_default();
        vec![("registry".into(), url)]
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some((h, t)) = self.running.lock().await.take() {
                t.cancel();
                h.wait().await;
            }
        })
    }
    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.launch())
    }
}

/// The lab's replicas as one admin component that follows stops and restarts.
pub struct LabRegistryComponent {
    /// One service per region.
    pub services: Vec<Arc<RegistryService>>,
}

impl LabRegistryComponent {
    fn current<T>(&self, f: impl FnOnce(Arc<dyn tandem_admin::Component>) -> T) -> T {
        let guards: Vec<_> = self
            .services
            .iter()
            .filter_map(|s| s.running.try_lock().ok())
            .collect();
        let handles: Vec<&ReplicaHandle> = guards
            .iter()
            .filter_map(|g| g.as_ref().map(|(h, _)| h))
            .collect();
        f(ReplicaHandle::component_of(&handles))
    }
}

impl tandem_admin::Component for LabRegistryComponent {
    fn name(&self) -> &'static str {
        "registry"
    }
    fn status(&self) -> serde_json::Value {
        self.current(|c| c.status())
    }
    fn tables(&self) -> Vec<tandem_admin::Table> {
        self.current(|c| c.tables())
    }
}
