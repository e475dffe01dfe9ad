//! Volume replication in the lab: for every `[volume.volumes.*]`, the replication agent runs
//! as a service of the volume's region (failing the region stops it, so the lag grows and is
//! visible) and the standby as a service of the paired region. The directories are created
//! and the source is seeded, so `tandem up` shows replication with nothing to set up.

use std::sync::Arc;

use futures::future::BoxFuture;
use tandem_config::Config;
use tandem_volume::{AgentOptions, Direction, Status, VolumeSpec};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{LabError, RegionService};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Agent,
    Standby,
}

/// A volume's agent or standby, stoppable and restartable with its region.
pub(crate) struct VolumeService {
    region: String,
    role: Role,
    spec: Arc<VolumeSpec>,
    status: Arc<Status>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    running: Mutex<Option<CancellationToken>>,
}

impl VolumeService {
    async fn launch(&self) {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return;
        }
        let token = self.shutdown.child_token();
        let (spec, status, t) = (self.spec.clone(), self.status.clone(), token.clone());
        let role = self.role;
        let name = spec.name.clone();
        self.tracker.spawn(async move {
            let result = match role {
                Role::Agent => {
                    tandem_volume::run_agent(spec, status, AgentOptions::default(), t).await
                }
                Role::Standby => tandem_volume::run_standby(spec, status, t).await,
            };
            if let Err(e) = result {
                tracing::error!(volume = %name, error = %e, "lab volume service stopped");
            }
        });
        *running = Some(token);
    }
}

impl RegionService for VolumeService {
    fn region(&self) -> &str {
        &self.region
    }
    fn describe(&self) -> Vec<(String, String)> {
        match self.role {
            Role::Agent => vec![(
                "volume".into(),
                format!(
                    "{} -> {} ({})",
                    self.spec.source.display(),
                    self.spec.repository.location,
                    self.spec.name
                ),
            )],
            Role::Standby => vec![(
                "standby".into(),
                self.spec.standby.as_ref().map_or_else(String::new, |s| {
                    format!("{} ({})", s.dir.display(), self.spec.name)
                }),
            )],
        }
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(t) = self.running.lock().await.take() {
                t.cancel();
            }
        })
    }
    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.launch().await;
            Ok(())
        })
    }
}

/// Start every volume's agent and standby. Returns the services and the shared status.
pub(crate) async fn start(
    cfg: &Config,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(Vec<Arc<VolumeService>>, Option<Arc<Status>>), LabError> {
    let Some(vcfg) = &cfg.volume else {
        return Ok((Vec::new(), None));
    };
    let status = Arc::new(Status::new());
    let mut out = Vec::new();
    for v in &vcfg.volumes {
        let spec = Arc::new(
            VolumeSpec::new(vcfg, v, Direction::Forward)
                .map_err(|e| LabError::Volume(e.to_string()))?,
        );
        let mkdir = |p: &std::path::Path| {
            std::fs::create_dir_all(p).map_err(|source| LabError::Dir {
                path: p.to_path_buf(),
                source,
            })
        };
        mkdir(&spec.source)?;
        let readme = spec.source.join("README.txt");
        if !readme.exists() {
            std::fs::write(&readme, format!("The lab's {} volume in {}: every file here is replicated to the paired region.\nThe demo app appends each request it serves to visits.log.\n", v.name, v.region))
                .map_err(|source| LabError::Dir { path: readme.clone(), source })?;
        }
        if let Some(dir) = spec
            .repository
            .location
            .strip_prefix("file://")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                (!spec.repository.location.contains("://"))
                    .then(|| std::path::PathBuf::from(&spec.repository.location))
            })
        {
            mkdir(&dir)?;
        }
        let mut roles = vec![(v.region.clone(), Role::Agent)];
        if let Some(sb) = &spec.standby {
            if let Some(parent) = sb.dir.parent() {
                mkdir(parent)?;
            }
            roles.push((sb.region.clone(), Role::Standby));
        }
        for (region, role) in roles {
            let svc = Arc::new(VolumeService {
                region,
                role,
                spec: spec.clone(),
                status: status.clone(),
                shutdown: shutdown.clone(),
                tracker: tracker.clone(),
                running: Mutex::new(None),
            });
            svc.launch().await;
            out.push(svc);
        }
    }
    Ok((out, Some(status)))
}

/// The file a region's demo app appends its visits to: the source of a volume of that
/// region, if the lab replicates one.
pub(crate) fn visits_file(cfg: &Config, region: &str) -> Option<std::path::PathBuf> {
    let vcfg = cfg.volume.as_ref()?;
    vcfg.volumes
        .iter()
        .find(|v| v.region == region)
        .map(|v| v.source.join("visits.log"))
}
