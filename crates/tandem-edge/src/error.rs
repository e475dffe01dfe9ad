//! Errors. [`EdgeError`] stops the edge from starting or reloading and says what to fix;
//! [`ProxyError`] is one failed attempt at an origin and records where it came from and
//! whether another origin may be tried (Pingora's error model).

use std::fmt;

/// Why the edge could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The config has no `[edge]` section.
    #[error(
        "the config has no [edge] section\n    hint: add [edge.instances.<region>], [edge.routes.<name>] and [edge.groups.<name>]; see docs/edge.md"
    )]
    NoEdgeSection,
    /// The region has no `[edge.instances.<region>]` listeners.
    #[error(
        "the edge has no listeners for region {region:?}\n    hint: add [edge.instances.{region}] with https/http addresses, or pass --region with one of: {known}"
    )]
    NoInstance {
        /// The region asked for.
        region: String,
        /// The regions that have listeners.
        known: String,
    },
    /// A listener could not be bound.
    #[error(
        "cannot listen on {addr}: {source}\n    hint: is another process using the port, or is the address not on this machine?"
    )]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A certificate or key could not be loaded.
    #[error(
        "cannot load certificate {what}: {reason}\n    hint: give PEM files (certificate chain leaf first, and its private key)"
    )]
    Certificate {
        /// The file or source.
        what: String,
        /// Why.
        reason: String,
    },
    /// A route names a WAF policy that the edge's inspector does not serve.
    #[error(
        "route {route:?} uses WAF policy {policy:?}, but no WAF serves it\n    hint: start the edge with tandem_edge::waf::EdgeWaf as its inspector (tandem edge and tandem up do), and define [waf.policies.{policy}]"
    )]
    WafPolicyNotServed {
        /// The route.
        route: String,
        /// The policy it names.
        policy: String,
    },
    /// HTTPS listeners exist but no certificate does.
    #[error(
        "HTTPS listeners are configured but no certificate is\n    hint: add [[edge.certificates]] with domains, cert and key"
    )]
    NoCertificates,
    /// A regular expression in a rule failed to compile.
    #[error(
        "rule {rule:?}: bad regular expression {pattern:?}: {reason}\n    hint: the syntax is Rust's regex crate (like RE2: no look-around or back-references)"
    )]
    Regex {
        /// The rule.
        rule: String,
        /// The pattern.
        pattern: String,
        /// The compiler's message.
        reason: String,
    },
    /// A referenced monitor is missing from the config (it was validated, so this means the
    /// config passed to the edge is not the validated one).
    #[error("monitor {0:?} is not defined\n    hint: define [monitors.{0}]")]
    Monitor(String),
    /// A probe could not be started (an HTTPS monitor's TLS settings).
    #[error(
        "cannot start a health probe: {0}\n    hint: check the monitor's ca_file and tls_verify"
    )]
    Probe(String),
    /// The origin CA file could not be read.
    #[error(
        "cannot read origin CA file {path}: {reason}\n    hint: give a PEM file with one or more CA certificates"
    )]
    OriginCa {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client (bad request, went away, body too large).
    Client,
    /// The origin (refused, timed out, reset, answered garbage).
    Origin,
    /// The edge itself.
    Internal,
}

/// What went wrong with one attempt at an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyErrorKind {
    /// TCP or TLS connect failed or timed out: the request never left.
    Connect,
    /// No response headers within the first-byte timeout.
    FirstByteTimeout,
    /// The connection broke after the request was (partly) sent.
    Broken,
    /// The client's body broke or exceeded its limit while being sent.
    ClientBody,
    /// The request body exceeded the limit.
    BodyTooLarge,
}

/// One failed attempt.
#[derive(Debug, Clone)]
pub struct ProxyError {
    /// What happened.
    pub kind: ProxyErrorKind,
    /// Where.
    pub source: Source,
    /// Detail for the log.
    pub detail: String,
}

impl ProxyError {
    /// Whether the request cannot have been processed by the origin, so any method may be
    /// sent elsewhere.
    pub fn never_sent(&self) -> bool {
        self.kind == ProxyErrorKind::Connect
    }
    /// Whether it counts against the origin's passive health.
    pub fn origin_fault(&self) -> bool {
        self.source == Source::Origin
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:?}): {}", self.kind, self.source, self.detail)
    }
}
