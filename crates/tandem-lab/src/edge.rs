//! Each region's edge proxy in the lab: listeners on 127.0.x.1 from `[edge.instances]`, a
//! certificate for the routes' domains issued by the lab CA, and stop/start for region
//! failures (stopping drains the region's edge and closes its listeners for real).

use std::sync::Arc;

use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use tandem_config::Config;
use tandem_edge::waf::EdgeWaf;
use tandem_edge::{CertSource, CertSpec, Edge, EdgeOptions};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{LabError, RegionService};

/// One region's running edge.
pub(crate) struct LabEdge {
    region: String,
    pub(crate) edge: Edge,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    run: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
    describe: Vec<(String, String)>,
}

/// Start an edge for every region that has `[edge.instances.<region>]`, all serving the
/// config's WAF policies (compiled once, shared by the regions' edges).
pub(crate) async fn start(
    cfg: &Config,
    ca: &tandem_tls::LabCa,
    registry: &mut Registry,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(Vec<Arc<LabEdge>>, Option<EdgeWaf>), LabError> {
    let Some(edge_cfg) = &cfg.edge else {
        return Ok((Vec::new(), None));
    };
    let waf = EdgeWaf::load(cfg, registry)
        .await
        .map_err(|e| LabError::Edge(e.to_string()))?;
    // One certificate for every domain the routes name (wildcards included).
    let mut names: Vec<String> = edge_cfg
        .routes
        .iter()
        .flat_map(|r| r.domains.iter())
        .filter(|d| d.as_str() != "*")
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        names.push("localhost".into());
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let issued = ca.issue("edge", &refs)?;
    let mut out = Vec::new();
    for inst in &edge_cfg.instances {
        let mut opts = EdgeOptions::new(&inst.region);
        opts.inspector = waf.inspector();
        opts.extra_certificates = vec![CertSpec {
            domains: names.clone(),
            source: CertSource::Files {
                cert: issued.cert_path.clone(),
                key: issued.key_path.clone(),
            },
        }];
        let edge = Edge::new(cfg, opts, registry)?;
        let mut describe = Vec::new();
        for a in &inst.https {
            describe.push(("edge".to_string(), format!("https://{a}/")));
        }
        for a in &inst.http {
            describe.push(("edge".to_string(), format!("http://{a}/")));
        }
        let e = Arc::new(LabEdge {
            region: inst.region.clone(),
            edge,
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            run: Mutex::new(None),
            describe,
        });
        e.listen().await.map_err(LabError::Edge)?;
        let (edge, t) = (e.edge.clone(), shutdown.clone());
        tracker.spawn(async move {
            t.cancelled().await;
            edge.stop_probes().await;
        });
        out.push(e);
    }
    Ok((out, Some(waf)))
}

impl LabEdge {
    async fn listen(&self) -> Result<(), String> {
        let mut run = self.run.lock().await;
        if run.is_some() {
            return Ok(());
        }
        let listeners = self.edge.bind().await.map_err(|e| e.to_string())?;
        let stop = self.shutdown.child_token();
        let (edge, t) = (self.edge.clone(), stop.clone());
        let handle = self
            .tracker
            .spawn(async move { edge.run(listeners, t).await });
        *run = Some((stop, handle));
        Ok(())
    }

    async fn halt(&self) {
        let taken = self.run.lock().await.take();
        if let Some((stop, handle)) = taken {
            stop.cancel();
            let _ = handle.await;
        }
    }
}

impl RegionService for LabEdge {
    fn region(&self) -> &str {
        &self.region
    }
    fn describe(&self) -> Vec<(String, String)> {
        self.describe.clone()
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.halt())
    }
    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.listen())
    }
}
