//! Webhooks: push, delete and replicated events POSTed as JSON to configured URLs, with
//! exponential back-off retries. Events are queued in memory (bounded); when a queue is full
//! the oldest pending events are dropped and counted, so a dead endpoint never slows pushes.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tandem_config::registry::{Webhook, WebhookEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{Metrics, WebhookLabels};

/// An event as delivered.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unique id.
    pub id: String,
    /// RFC 3339-ish milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// `push`, `delete` or `replicated`.
    pub action: &'static str,
    /// The replica's region that sends it.
    pub region: String,
    /// The region where the change was made.
    pub origin: String,
    /// What it is about.
    pub target: Target,
}

/// An event's subject.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Repository.
    pub repository: String,
    /// Digest of the manifest or blob.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Tag, if the event is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Media type of a manifest.
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

const QUEUE: usize = 1024;

/// Fan-out of events to webhook workers.
#[derive(Clone, Default)]
pub struct Webhooks {
    senders: Vec<(WebhookEvent, mpsc::Sender<Arc<Event>>, Vec<WebhookEvent>)>,
}

impl Webhooks {
    /// Start a delivery worker for each webhook that applies to `region`.
    pub fn start(
        hooks: &[Webhook],
        region: &str,
        metrics: Arc<Metrics>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Webhooks {
        let client = reqwest::Client::builder()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let mut senders = Vec::new();
        for h in hooks {
            if !h.regions.is_empty() && !h.regions.iter().any(|r| r == region) {
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            tracker.spawn(deliver(
                h.clone(),
                rx,
                client.clone(),
                metrics.clone(),
                shutdown.clone(),
            ));
            senders.push((WebhookEvent::Push, tx, h.events.clone()));
        }
        Webhooks { senders }
    }

    /// Queue an event for every webhook that wants it; never waits.
    pub fn send(&self, kind: WebhookEvent, event: Event, metrics: &Metrics) {
        let ev = Arc::new(event);
        for (_, tx, events) in &self.senders {
            if events.contains(&kind) && tx.try_send(ev.clone()).is_err() {
                metrics
                    .webhooks
                    .get_or_create(&WebhookLabels {
                        webhook: "queue".into(),
                        result: "dropped",
                    })
                    .inc();
            }
        }
    }

    /// Whether any webhook is configured.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }
}

async fn deliver(
    hook: Webhook,
    mut rx: mpsc::Receiver<Arc<Event>>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let label = |result| WebhookLabels {
        webhook: hook.name.clone(),
        result,
    };
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = rx.recv() => match ev { Some(e) => e, None => return },
        };
        let body = match serde_json::to_vec(&*ev) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let signature = hook.secret.as_ref().and_then(|s| {
            let mut m = Hmac::<Sha256>::new_from_slice(s.expose().as_bytes()).ok()?;
            m.update(&body);
            Some(format!("sha256={}", hex::encode(m.finalize().into_bytes())))
        });
        let mut attempt = 0u32;
        loop {
            let mut req = client
                .post(&hook.url)
                .timeout(hook.timeout)
                .header("content-type", "application/json")
                .header("x-tandem-event", ev.action)
                .body(body.clone());
            if let Some(s) = &signature {
                req = req.header("x-tandem-signature", s);
            }
            let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
            if ok {
                metrics.webhooks.get_or_create(&label("delivered")).inc();
                break;
            }
            if attempt >= hook.max_retries {
                metrics.webhooks.get_or_create(&label("dropped")).inc();
                tracing::warn!(webhook = %hook.name, event = %ev.id, "webhook delivery failed after {} attempts; event dropped", attempt + 1);
                break;
            }
            attempt += 1;
            metrics.webhooks.get_or_create(&label("retried")).inc();
            let backoff = Duration::from_millis(200u64.saturating_mul(1 << attempt.min(8)));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff.min(Duration::from_secs(60))) => {}
            }
        }
    }
}
