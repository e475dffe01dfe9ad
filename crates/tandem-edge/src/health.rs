//! Active health probes for origins, until the shared `tandem-probe` crate takes over: one
//! task per probed origin sends the monitor's request every `interval`, applies the monitor's
//! policy (consecutive failures, or Front Door's window of `sample_size` probes of which
//! `successes_required` must succeed) and writes the verdict and a smoothed latency into the
//! origin's [`Health`] cell, which selection reads without a lock.
//!
//! Probes use a fresh connection each time (no pooling), so a dead origin is noticed by the
//! next probe and the latency includes the connect, as a client's first request would.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tandem_config::monitor::{HealthPolicy, Monitor, ProbeMethod, ProbeProtocol};
use tokio_util::sync::CancellationToken;

use crate::balance::Health;
use crate::client::Connector;

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// Group and origin, for logs.
    pub label: String,
    /// `host:port` to connect to (the monitor's port replaces the origin's when set).
    pub authority: String,
    /// Host header.
    pub host: String,
    /// The monitor.
    pub monitor: Monitor,
}

/// The policy state machine.
#[derive(Debug)]
pub struct Verdicts {
    policy: HealthPolicy,
    up: bool,
    run: u32,
    window: VecDeque<bool>,
}

impl Verdicts {
    /// Starts healthy: a restarting edge must not refuse traffic until the first probes.
    pub fn new(policy: HealthPolicy) -> Self {
        Verdicts {
            policy,
            up: true,
            run: 0,
            window: VecDeque::new(),
        }
    }

    /// Feed one probe result; returns the verdict.
    pub fn push(&mut self, ok: bool) -> bool {
        match self.policy {
            HealthPolicy::Consecutive {
                tolerated_failures,
                recover_after,
            } => {
                if ok == self.up {
                    self.run = 0;
                } else {
                    self.run += 1;
                    let needed = if self.up {
                        tolerated_failures + 1
                    } else {
                        recover_after
                    };
                    if self.run >= needed {
                        self.up = ok;
                        self.run = 0;
                    }
                }
            }
            HealthPolicy::Window {
                sample_size,
                successes_required,
            } => {
                self.window.push_back(ok);
                while self.window.len() > sample_size as usize {
                    self.window.pop_front();
                }
                // Missing samples (just started) count as successes.
                let missing = sample_size as usize - self.window.len();
                let good = self.window.iter().filter(|b| **b).count() + missing;
                self.up = good >= successes_required as usize;
            }
        }
        self.up
    }
}

/// Probe one target until cancelled.
pub async fn run(
    target: ProbeTarget,
    health: Arc<Health>,
    connector: Connector,
    cancel: CancellationToken,
) {
    let client: Client<Connector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let m = &target.monitor;
    let mut verdicts = Verdicts::new(m.policy);
    let mut tick = tokio::time::interval(m.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let start = Instant::now();
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(m.timeout, probe_once(&client, &target)) => match r {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {:?}", m.timeout)),
            },
        };
        let ok = result.is_ok();
        if ok {
            let us = start.elapsed().as_micros().max(1) as u64;
            let prev = health.latency_us.load(Ordering::Relaxed);
            let next = if prev == 0 {
                us
            } else {
                (prev * 7 + us * 3) / 10
            };
            health.latency_us.store(next.max(1), Ordering::Relaxed);
        } else {
            health.probe_failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut e) = health.last_probe_error.lock() {
            *e = result.as_ref().err().cloned();
        }
        let was = health.probe_up.load(Ordering::Relaxed);
        let up = verdicts.push(ok);
        if up != was {
            health.probe_up.store(up, Ordering::Relaxed);
            match &result {
                Ok(()) => tracing::info!(origin = %target.label, "origin is healthy again"),
                Err(e) => tracing::warn!(origin = %target.label, error = %e, "origin is down"),
            }
        }
    }
}

async fn probe_once(
    client: &Client<Connector, Empty<Bytes>>,
    t: &ProbeTarget,
) -> Result<(), String> {
    let m = &t.monitor;
    if m.protocol == ProbeProtocol::Tcp {
        return tokio::net::TcpStream::connect(&t.authority)
            .await
            .map(|_| ())
            .map_err(|e| format!("connect: {e}"));
    }
    let scheme = if m.protocol == ProbeProtocol::Https {
        "https"
    } else {
        "http"
    };
    let uri = format!("{scheme}://{}{}", t.authority, m.path);
    let mut b = http::Request::builder()
        .method(match m.method {
            ProbeMethod::Get => http::Method::GET,
            ProbeMethod::Head => http::Method::HEAD,
        })
        .uri(uri)
        .header(http::header::HOST, &t.host)
        .header(http::header::USER_AGENT, "tandem-edge-probe");
    for (k, v) in &m.headers {
        b = b.header(k, v);
    }
    let req = b.body(Empty::new()).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(x) = src {
            s.push_str(": ");
            s.push_str(&x.to_string());
            src = x.source();
        }
        s
    })?;
    let status = resp.status().as_u16();
    if m.status_ok(status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// The authority a monitor probes for an origin address.
pub fn probe_authority(origin_address: &str, monitor: &Monitor) -> String {
    match (monitor.port, origin_address.rsplit_once(':')) {
        (Some(p), Some((host, _))) => format!("{host}:{p}"),
        _ => origin_address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_policy() {
        let mut v = Verdicts::new(HealthPolicy::Consecutive {
            tolerated_failures: 1,
            recover_after: 2,
        });
        assert!(v.push(false));
        assert!(!v.push(false));
        assert!(!v.push(true));
        assert!(!v.push(false));
        assert!(!v.push(true));
        assert!(v.push(true));
    }

    #[test]
    fn window_policy() {
        let mut v = Verdicts::new(HealthPolicy::Window {
            sample_size: 4,
            successes_required: 3,
        });
        assert!(v.push(false));
        assert!(!v.push(false));
        assert!(!v.push(true));
        assert!(!v.push(true));
        assert!(v.push(true));
    }
}
