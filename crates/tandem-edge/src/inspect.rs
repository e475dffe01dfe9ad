//! The WAF phase: a [`RequestInspector`] looks at each request (and, when it asks, its body)
//! before an origin is picked, and at the response (headers, and the body when it asks).
//! [`crate::waf::EdgeWaf`] implements it with `tandem-waf`'s policies; [`NoInspection`] is
//! the default for an edge without a WAF and refuses to serve routes that name a policy.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, Version};

/// What the inspector sees of a request.
#[derive(Debug)]
pub struct RequestHead<'a> {
    /// The route's WAF policy name (`waf = "..."` on the route).
    pub policy: &'a str,
    /// The route's name.
    pub route: &'a str,
    /// Method.
    pub method: &'a Method,
    /// The URI as received (path and query).
    pub uri: &'a Uri,
    /// HTTP version.
    pub version: Version,
    /// Headers as received.
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub client: std::net::SocketAddr,
    /// The request id.
    pub request_id: &'a str,
}

/// An inspector's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Continue,
    /// Answer with this status (and body) instead of proxying.
    Block {
        /// Usually 403.
        status: StatusCode,
        /// Short text for the client.
        body: String,
    },
    /// Answer with a redirect.
    Redirect {
        /// 302 or 307 usually.
        status: StatusCode,
        /// Where to.
        location: String,
    },
}

/// One request's inspection, created by [`RequestInspector::transaction`].
pub trait Transaction: Send {
    /// After the request headers.
    fn request_headers(&mut self) -> Verdict {
        Verdict::Continue
    }
    /// Whether the inspector wants the request body; the edge then buffers it up to
    /// `limits.inspect_body_bytes` before calling [`Transaction::request_body`].
    fn wants_body(&self) -> bool {
        false
    }
    /// The most body bytes the inspector wants; the edge buffers the smaller of this and
    /// `limits.inspect_body_bytes`.
    fn body_limit(&self) -> Option<usize> {
        None
    }
    /// The (buffered) request body; `truncated` when it was longer than the limit.
    fn request_body(&mut self, _body: &Bytes, _truncated: bool) -> Verdict {
        Verdict::Continue
    }
    /// The origin's response headers.
    fn response_headers(&mut self, _status: StatusCode, _headers: &HeaderMap) -> Verdict {
        Verdict::Continue
    }
    /// Whether the inspector wants the response body, and then how many bytes of it: the
    /// edge buffers that much before sending the response on, so a verdict can still replace
    /// it.
    fn wants_response_body(&self) -> Option<usize> {
        None
    }
    /// The (buffered) response body; `truncated` when it was longer than the limit.
    fn response_body(&mut self, _body: &Bytes, _truncated: bool) -> Verdict {
        Verdict::Continue
    }
    /// The end of the request: for logging and anomaly scoring.
    fn finish(&mut self) {}
}

/// Something that inspects requests for a named policy (the WAF).
pub trait RequestInspector: Send + Sync + 'static {
    /// Start inspecting a request of a route with a `waf` policy. `None` skips inspection.
    fn transaction(&self, head: &RequestHead<'_>) -> Option<Box<dyn Transaction>>;
    /// Whether this inspector serves the policy `name`; the edge refuses a config whose
    /// routes name a policy nobody serves rather than forwarding those requests unchecked.
    fn serves(&self, _name: &str) -> bool {
        true
    }
}

/// The default: inspects nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoInspection;

impl RequestInspector for NoInspection {
    fn transaction(&self, _head: &RequestHead<'_>) -> Option<Box<dyn Transaction>> {
        None
    }
    fn serves(&self, _name: &str) -> bool {
        false
    }
}
