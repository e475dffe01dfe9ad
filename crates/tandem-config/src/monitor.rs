//! Health monitors: how an endpoint or origin is probed and when it counts as down. One
//! definition, used by the DNS traffic manager and the edge through `tandem-probe`.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::ctx::{Ctx, entries};
use crate::path::KeyPath;
use crate::value::{Dur, StatusRange};

/// The probe's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeProtocol {
    /// An HTTP request; healthy when the status is in `expected_status`.
    #[default]
    Http,
    /// An HTTP request over TLS.
    Https,
    /// A TCP connect; healthy when the connection is accepted.
    Tcp,
}

/// The HTTP method of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProbeMethod {
    /// `GET`.
    #[default]
    Get,
    /// `HEAD`.
    Head,
}

/// When a run of probe results changes an endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HealthPolicy {
    /// Traffic Manager style: down after more than `tolerated_failures` failures in a row,
    /// back up after `recover_after` successes in a row.
    Consecutive {
        /// Failures in a row that are still tolerated.
        tolerated_failures: u32,
        /// Successes in a row needed to come back.
        recover_after: u32,
    },
    /// Front Door style: healthy while at least `successes_required` of the last
    /// `sample_size` probes succeeded.
    Window {
        /// How many recent probes are considered.
        sample_size: u32,
        /// How many of them must have succeeded.
        successes_required: u32,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMonitor {
    #[serde(default)]
    protocol: ProbeProtocol,
    port: Option<u16>,
    path: Option<String>,
    host: Option<String>,
    #[serde(default)]
    method: ProbeMethod,
    #[serde(default)]
    headers: IndexMap<String, String>,
    expected_status: Option<Vec<StatusRange>>,
    interval: Option<Dur>,
    timeout: Option<Dur>,
    tolerated_failures: Option<u32>,
    recover_after: Option<u32>,
    sample_size: Option<u32>,
    successes_required: Option<u32>,
    tls_verify: Option<bool>,
    ca_file: Option<PathBuf>,
}

/// A health monitor, as validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Monitor {
    /// The monitor's name.
    pub name: String,
    /// HTTP, HTTPS or TCP.
    pub protocol: ProbeProtocol,
    /// Port to probe; `None` means the endpoint's own port (or 80/443 for HTTP/HTTPS).
    pub port: Option<u16>,
    /// Request path for HTTP(S) probes.
    pub path: String,
    /// Host header (and TLS SNI) for HTTP(S) probes; `None` means the endpoint's host.
    pub host: Option<String>,
    /// GET or HEAD.
    pub method: ProbeMethod,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Status codes that count as healthy.
    pub expected_status: Vec<StatusRange>,
    /// Time between probes (sub-second allowed).
    pub interval: Duration,
    /// How long one probe may take.
    pub timeout: Duration,
    /// When results change health.
    pub policy: HealthPolicy,
    /// Whether HTTPS probes verify the certificate.
    pub tls_verify: bool,
    /// Extra CA certificates (PEM) trusted by HTTPS probes.
    pub ca_file: Option<PathBuf>,
}

impl Monitor {
    /// Whether `status` counts as healthy.
    pub fn status_ok(&self, status: u16) -> bool {
        self.expected_status.iter().any(|r| r.contains(status))
    }

    /// The longest time from an endpoint dying to this monitor declaring it down, assuming
    /// every probe from the moment of death fails by timeout.
    pub fn detection_bound(&self) -> Duration {
        let probes = match self.policy {
            HealthPolicy::Consecutive {
                tolerated_failures, ..
            } => tolerated_failures + 1,
            HealthPolicy::Window {
                sample_size,
                successes_required,
            } => sample_size - successes_required + 1,
        };
        self.interval * probes + self.timeout
    }
}

/// Where and how to probe one endpoint or origin: the monitor plus the address it applies to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeTarget {
    /// `host:port` to connect to (a literal address or a name resolved at probe time).
    pub connect: String,
    /// Host header and TLS server name.
    pub host: String,
    /// The monitor.
    pub monitor: Monitor,
}

pub(crate) fn validate(ctx: &mut Ctx, raw: &IndexMap<String, RawMonitor>) -> Vec<Monitor> {
    let base = KeyPath::root().key("monitors");
    let mut out = Vec::new();
    for (key, name, m) in entries(&base, raw) {
        ctx.check_ident(&key, "monitor", name);
        let interval = m.interval.map_or(Duration::from_secs(30), |d| d.0);
        let timeout = m
            .timeout
            .map_or(interval.min(Duration::from_secs(10)), |d| d.0);
        if interval < Duration::from_millis(50) {
            ctx.error(
                &key.key("interval"),
                "probe interval is below 50ms",
                Some(
                    "use at least \"50ms\"; sub-second intervals such as \"250ms\" are fine".into(),
                ),
            );
        }
        if timeout.is_zero() || timeout > interval {
            ctx.error(
                &key.key("timeout"),
                "probe timeout must be above zero and not longer than the interval",
                Some(format!(
                    "set timeout to at most the interval ({})",
                    crate::value::format_duration(interval)
                )),
            );
        }
        let window = m.sample_size.is_some() || m.successes_required.is_some();
        let consecutive = m.tolerated_failures.is_some() || m.recover_after.is_some();
        let policy = if window && consecutive {
            ctx.error(
                &key,
                "`sample_size`/`successes_required` and `tolerated_failures`/`recover_after` cannot be mixed",
                Some("pick one health policy: a window of recent probes, or consecutive failures".into()),
            );
            HealthPolicy::Consecutive {
                tolerated_failures: 3,
                recover_after: 1,
            }
        } else if window {
            let sample_size = m.sample_size.unwrap_or(4);
            let successes_required = m.successes_required.unwrap_or(2);
            if sample_size == 0 || sample_size > 64 {
                ctx.error(
                    &key.key("sample_size"),
                    "sample_size must be between 1 and 64",
                    None,
                );
            }
            if successes_required == 0 || successes_required > sample_size {
                ctx.error(
                    &key.key("successes_required"),
                    "successes_required must be between 1 and sample_size",
                    None,
                );
            }
            HealthPolicy::Window {
                sample_size: sample_size.clamp(1, 64),
                successes_required: successes_required.clamp(1, sample_size.clamp(1, 64)),
            }
        } else {
            let recover_after = m.recover_after.unwrap_or(1);
            if recover_after == 0 {
                ctx.error(
                    &key.key("recover_after"),
                    "recover_after must be at least 1",
                    None,
                );
            }
            HealthPolicy::Consecutive {
                tolerated_failures: m.tolerated_failures.unwrap_or(3),
                recover_after: recover_after.max(1),
            }
        };
        if m.protocol == ProbeProtocol::Tcp {
            for (set, field) in [
                (m.path.is_some(), "path"),
                (m.host.is_some(), "host"),
                (!m.headers.is_empty(), "headers"),
                (m.expected_status.is_some(), "expected_status"),
            ] {
                if set {
                    ctx.error(
                        &key.key(field),
                        format!("`{field}` has no meaning for a tcp monitor"),
                        Some("remove it, or use protocol = \"http\"".into()),
                    );
                }
            }
        }
        let path = m.path.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            ctx.error(
                &key.key("path"),
                format!("probe path {path:?} must start with '/'"),
                None,
            );
        }
        for (hk, h, _) in entries(&key.key("headers"), &m.headers) {
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
            {
                ctx.error(&hk, format!("{h:?} is not a valid header name"), None);
            }
        }
        let expected_status = m
            .expected_status
            .clone()
            .unwrap_or_else(|| vec![StatusRange { lo: 200, hi: 299 }]);
        if expected_status.is_empty() {
            ctx.error(
                &key.key("expected_status"),
                "expected_status is empty, so no probe could ever succeed",
                Some("list at least one code or range, e.g. [\"200-299\"]".into()),
            );
        }
        if let Some(ca) = &m.ca_file
            && !ca.exists()
        {
            ctx.error(
                &key.key("ca_file"),
                format!("CA file {} does not exist", ca.display()),
                None,
            );
        }
        out.push(Monitor {
            name: name.clone(),
            protocol: m.protocol,
            port: m.port,
            path,
            host: m.host.clone(),
            method: m.method,
            headers: m
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            expected_status,
            interval,
            timeout,
            policy,
            tls_verify: m.tls_verify.unwrap_or(true),
            ca_file: m.ca_file.clone(),
        });
    }
    out
}
