//! The life of a request, top to bottom (Pingora's phases):
//!
//! 1. **receive**: refuse ambiguous framing (400), oversized headers (431) and bodies (413);
//!    find the host; assign a request id.
//! 2. **route**: the most specific route for host, path and method ([`crate::route`]); plain
//!    HTTP is redirected, served or refused per route.
//! 3. **rules**: the rules engine may rewrite, redirect, edit headers or change the group.
//! 4. **inspect**: the WAF phase ([`crate::inspect`]) for routes with a `waf` policy.
//! 5. **upstream request**: hop-by-hop headers out, `X-Forwarded-*`/`Forwarded` and the
//!    request id in, the origin's host header.
//! 6. **pick origin and forward with retries**: affinity first, else Front Door selection;
//!    a failed attempt (connect error, timeout, broken connection, 502/503/504) goes to the
//!    next eligible origin while the method is idempotent or the body was never sent (or is
//!    still buffered), within `retries` and the group's retry budget.
//! 7. **response**: hop-by-hop out, request id, HSTS, affinity cookie, response rules, WAF.
//! 8. **log**: when the response body ends, the access log entry and metrics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use smallvec::SmallVec;
use tandem_config::edge::HttpMode;

use crate::access_log::{AccessEntry, rfc3339};
use crate::balance::NoOrigin;
use crate::body::{
    self, BoxBody, ClientBody, Idle, Limited, OnEnd, Prefixed, ReplayBody, TooLarge,
};
use crate::client::{OriginError, PooledBody};
use crate::error::{ProxyError, ProxyErrorKind, Source};
use crate::h1;
use crate::headers;
use crate::inspect::{RequestHead, Transaction, Verdict};
use crate::rules::{RuleOutcome, RuleRequest};
use crate::watch::{InFlight, Watch};
use crate::{Inner, Snapshot};

/// How the client connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The client connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub client: SocketAddr,
    /// HTTP or HTTPS.
    pub scheme: Scheme,
    /// The client in forwarding headers, formatted once per connection.
    pub node: Arc<headers::ClientNode>,
    /// The connection's deadlines (HTTP/1).
    pub watch: Arc<Watch>,
}

/// What the log phase needs, filled in as the request goes.
struct Ctx {
    start: Instant,
    request_id: HeaderValue,
    info: ConnInfo,
    method: Method,
    version: Version,
    host: String,
    uri: Uri,
    route: Option<usize>,
    group: Option<usize>,
    origin: Option<usize>,
    retries: u32,
    affinity: Option<&'static str>,
    origin_latency: Option<f64>,
    error: Option<String>,
    rules: Vec<String>,
}

/// The request handler given to hyper. Never fails: every problem becomes a response.
pub(crate) async fn handle(
    inner: Arc<Inner>,
    info: ConnInfo,
    req: Request<ClientBody>,
) -> Result<Response<BoxBody>, Infallible> {
    let snap = inner.snapshot.load_full();
    // HTTP/1 requests hold the connection's head deadline off until their response ends.
    let in_flight = if req.version() == Version::HTTP_2 {
        info.watch.set_h2();
        None
    } else {
        Some(info.watch.request())
    };
    let mut ctx = Ctx {
        start: Instant::now(),
        request_id: inner.ids.next(),
        info,
        method: req.method().clone(),
        version: req.version(),
        host: String::new(),
        // Only the access log reads it.
        uri: if snap.cfg.access_log {
            req.uri().clone()
        } else {
            Uri::default()
        },
        route: None,
        group: None,
        origin: None,
        retries: 0,
        affinity: None,
        origin_latency: None,
        error: None,
        rules: Vec::new(),
    };
    // The request's big state (origin exchange, retries, TLS to the origin) lives in a box of
    // its own: the future hyper holds and moves (into a task per HTTP/2 stream, between that
    // task's states) stays about a kilobyte. The box is allocated before the future is made,
    // so the future is built in place instead of on the stack and then copied (3 KB) into it
    // (1-2% of the CPU per request). One box for the whole handler measured no better.
    let fut = Box::write(Box::new_uninit(), proxy(&inner, &snap, &mut ctx, req));
    let resp = match Box::into_pin(fut).await {
        Ok(r) => r,
        Err((status, why)) => {
            ctx.error = Some(why.to_string());
            local_response(status, why)
        }
    };
    Ok(finish(&inner, &snap, ctx, resp, in_flight))
}

type Answer = (StatusCode, &'static str);

async fn proxy(
    inner: &Arc<Inner>,
    snap: &Arc<Snapshot>,
    ctx: &mut Ctx,
    mut req: Request<ClientBody>,
) -> Result<Response<BoxBody>, Answer> {
    let limits = &snap.cfg.limits;

    // 1. receive
    if let Err(e) = headers::check_framing(req.headers()) {
        inner.metrics.rejected.inc();
        return Err((StatusCode::BAD_REQUEST, e.reason()));
    }
    if req.headers().len() > limits.max_headers
        || headers::header_bytes(req.headers())
            + req.uri().path_and_query().map_or(0, |p| p.as_str().len())
            > limits.max_header_bytes
    {
        inner.metrics.rejected.inc();
        return Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers are too large",
        ));
    }
    let Some(host) = headers::request_host(req.uri(), req.headers()) else {
        inner.metrics.rejected.inc();
        return Err((StatusCode::BAD_REQUEST, "request has no Host"));
    };
    ctx.host = host;
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if content_length.is_some_and(|n| n > limits.max_body_bytes) {
        inner.metrics.rejected.inc();
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "request body is too large"));
    }

    // 2. route
    let Some(ri) = snap.table.find(&ctx.host, req.uri().path(), req.method()) else {
        return Err((StatusCode::NOT_FOUND, "no route for this host and path"));
    };
    ctx.route = Some(ri);
    let route = &snap.routes[ri];
    if ctx.info.scheme == Scheme::Http {
        match route.http {
            HttpMode::Serve => {}
            HttpMode::Reject => return Err((StatusCode::FORBIDDEN, "use HTTPS")),
            HttpMode::Redirect => {
                let bound = inner.https_port.load(Ordering::Relaxed);
                let port = match (bound, snap.https_port) {
                    (443, _) => String::new(),
                    (0, Some(p)) => format!(":{p}"),
                    (0, None) => String::new(),
                    (p, _) => format!(":{p}"),
                };
                let pq = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                let loc = format!("https://{}{port}{pq}", authority_host(&ctx.host));
                return Ok(redirect(StatusCode::PERMANENT_REDIRECT, &loc));
            }
        }
    }

    // 3. rules
    // Without rules the origin gets the client's path and query as they are (no copy).
    let mut rewritten_pq: Option<String> = None;
    let outcome = if snap.rules.is_empty() {
        RuleOutcome::default()
    } else {
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        let mut rr = RuleRequest {
            host: &ctx.host,
            path,
            query,
            headers: req.headers_mut(),
            method: &ctx.method,
            client_ip: ctx.info.client.ip(),
            scheme: ctx.info.scheme.as_str(),
        };
        let out = snap.rules.apply(&mut rr);
        rewritten_pq = Some(match rr.query {
            Some(q) => format!("{}?{q}", rr.path),
            None => rr.path,
        });
        out
    };
    ctx.rules = outcome.matched.clone();
    if let Some((status, location)) = &outcome.redirect {
        let mut r = redirect(*status, location);
        for e in &outcome.response_headers {
            e.apply(r.headers_mut());
        }
        return Ok(r);
    }
    let Some(gi) = outcome.group.or(route.group) else {
        return Err((StatusCode::NOT_FOUND, "route has no origin group"));
    };
    ctx.group = Some(gi);
    let group = &snap.groups[gi];
    let gm = &snap.group_metrics[gi];

    // 4. inspect (WAF)
    let upgrade = ctx.version == Version::HTTP_11 && headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    let mut client_body: BoxBody = if http_body::Body::is_end_stream(&incoming) {
        body::empty()
    } else {
        Idle::new(
            Limited::new(incoming, limits.max_body_bytes),
            snap.cfg.timeouts.idle,
        )
        .boxed_unsync()
    };
    let mut txn: Option<Box<dyn Transaction>> = None;
    if let Some(policy) = &route.waf {
        let rid = ctx.request_id.to_str().unwrap_or("");
        let head = RequestHead {
            policy,
            route: &route.name,
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            headers: &parts.headers,
            client: ctx.info.client,
            request_id: rid,
        };
        if let Some(mut t) = inner.inspector.transaction(&head) {
            if let Some(r) = verdict_response(t.request_headers()) {
                ctx.error = Some("blocked by WAF (headers)".into());
                t.finish();
                return Ok(r);
            }
            if t.wants_body() {
                let limit = t.body_limit().map_or(limits.inspect_body_bytes, |l| {
                    l.min(limits.inspect_body_bytes)
                });
                let (prefix, truncated, rest) = Box::pin(read_prefix(client_body, limit)).await?;
                if let Some(r) = verdict_response(t.request_body(&prefix, truncated)) {
                    ctx.error = Some("blocked by WAF (body)".into());
                    t.finish();
                    return Ok(r);
                }
                client_body = match rest {
                    Some(rest) => Prefixed::new(prefix, rest).boxed_unsync(),
                    None => body::full(prefix),
                };
            }
            txn = Some(t);
        }
    }

    // 5. upstream request head
    // HTTP/1.1 sends Host; HTTP/2 sends :authority, which becomes Host towards the origin.
    // Every attempt sets `Host` (below), so the client's leaves the map; the other fields the
    // proxy adds go next to the request's own in the origin's head, not into its map
    // (`headers::AddedFields`).
    let client_host_header = parts.headers.remove(header::HOST).or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    // hyper already answered `100 Continue` to the client when the body was first read; the
    // origin gets the body without waiting for its own 100.
    parts.headers.remove(header::EXPECT);
    let mut added = headers::AddedFields::new();
    headers::add_forwarded(
        &mut parts.headers,
        &mut added,
        &ctx.info.node,
        ctx.info.scheme.as_str(),
        &ctx.host,
    );
    headers::set_added(
        &mut parts.headers,
        &mut added,
        snap.request_id_header.clone(),
        ctx.request_id.clone(),
    );
    let path_and_query = match rewritten_pq {
        Some(pq) => PathAndQuery::from_maybe_shared(Bytes::from(pq))
            .map_err(|_| (StatusCode::BAD_REQUEST, "request path is not valid"))?,
        None => parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    };
    let affinity_cookie = group
        .affinity
        .as_ref()
        .and_then(|a| headers::cookie(&parts.headers, &a.cookie).map(str::to_string));

    // 6. pick origin and forward with retries
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    let replay = ReplayBody::new(client_body, limits.retry_buffer_bytes);
    let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
    // Every attempt goes to a different origin: a group of one never needs a second attempt
    // (and its request headers need no copy for one).
    let max_attempts = (group.retries as usize + 1).min(group.origins.len().max(1));
    group.budget.deposit();
    let mut last_error: Option<ProxyError> = None;
    let mut last_response: Option<Response<PooledBody>> = None;
    loop {
        let now = inner.clock.now_ms();
        let pick = if tried.is_empty()
            && let Some(tok) = &affinity_cookie
            && let Some(i) = group.by_token(tok, &tried, now)
        {
            ctx.affinity = Some("hit");
            Ok(i)
        } else {
            group.select(&tried, now)
        };
        let oi = match pick {
            Ok(i) => i,
            Err(NoOrigin::AllUnhealthy) => {
                gm.no_origin.inc();
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no healthy origin in the group",
                ));
            }
            Err(NoOrigin::Exhausted) => break,
        };
        if !tried.is_empty() {
            ctx.retries += 1;
            gm.retries.inc();
        }
        tried.push(oi);
        ctx.origin = Some(oi);
        let origin = &group.origins[oi];
        let om = &gm.origins[oi];

        // Origin-form: the connection already says which origin.
        let uri = Uri::from(path_and_query.clone());
        let mut up = Request::new(replay.attempt());
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = uri;
        *up.version_mut() = Version::HTTP_11;
        // The last possible attempt takes the headers; earlier ones keep them for a retry.
        *up.headers_mut() = if tried.len() >= max_attempts {
            std::mem::take(&mut parts.headers)
        } else {
            parts.headers.clone()
        };
        let host_value = origin
            .host_header
            .clone()
            .or_else(|| client_host_header.clone())
            .or_else(|| HeaderValue::from_str(&authority_host(&ctx.host)).ok());

        origin.health.requests.fetch_add(1, Ordering::Relaxed);
        origin.health.in_flight.fetch_add(1, Ordering::Relaxed);
        // Only the access log reads the origin's latency.
        let sent_at = snap.cfg.access_log.then(Instant::now);
        let send = inner.client.send(
            &origin.pool,
            up,
            h1::Added {
                host: host_value.as_ref(),
                fields: &added,
            },
            client_upgrade.is_some(),
            &inner.tracker,
        );
        let first_byte = snap.cfg.timeouts.first_byte;
        let result = if ctx.version == Version::HTTP_2 {
            tokio::time::timeout(first_byte, send).await.ok()
        } else {
            let deadline = now + first_byte.as_millis() as u64;
            ctx.info.watch.first_byte(deadline, send).await
        };
        origin.health.in_flight.fetch_sub(1, Ordering::Relaxed);
        let err = match result {
            Some(Ok(resp)) => {
                ctx.origin_latency = sent_at.map(|t| t.elapsed().as_secs_f64() * 1000.0);
                let status = resp.status().as_u16();
                let failed = status >= 500 && status != 501 && status != 505;
                // Only failures need the time (ejection and the retry budget).
                let now = if failed { inner.clock.now_ms() } else { 0 };
                group.record(oi, failed, now);
                if failed {
                    om.status_5xx.inc();
                } else {
                    om.ok.inc();
                }
                let retryable_status = matches!(status, 502..=504);
                if retryable_status
                    && idempotent
                    && replay.replayable()
                    && tried.len() < max_attempts
                    && group.budget.withdraw(now)
                {
                    last_response = Some(resp);
                    last_error = None;
                    continue;
                }
                last_response = Some(resp);
                break;
            }
            Some(Err(e)) => classify(&e, &replay),
            None => ProxyError {
                kind: ProxyErrorKind::FirstByteTimeout,
                source: Source::Origin,
                detail: format!("no response within {:?}", snap.cfg.timeouts.first_byte),
            },
        };
        let now = inner.clock.now_ms();
        match err.kind {
            ProxyErrorKind::Connect => {
                om.connect_error.inc();
            }
            ProxyErrorKind::FirstByteTimeout => {
                om.timeout.inc();
            }
            ProxyErrorKind::Broken => {
                om.broken.inc();
            }
            _ => {}
        }
        if err.origin_fault() {
            group.record(oi, true, now);
        }
        tracing::debug!(request_id = ?ctx.request_id, origin = %origin.cfg.name, error = %err, "attempt failed");
        match err.kind {
            ProxyErrorKind::BodyTooLarge => {
                return Err((StatusCode::PAYLOAD_TOO_LARGE, "request body is too large"));
            }
            ProxyErrorKind::ClientBody => {
                return Err((StatusCode::BAD_REQUEST, "request body could not be read"));
            }
            _ => {}
        }
        let may_retry = (idempotent || err.never_sent() || replay.untouched())
            && replay.replayable()
            && !upgrade_sent(&client_upgrade, &err)
            && tried.len() < max_attempts;
        last_error = Some(err);
        last_response = None;
        if !may_retry || !group.budget.withdraw(now) {
            break;
        }
    }
    // The answer (or, when every attempt failed, the last 5xx) goes on; without a WAF
    // transaction the response phase does not wait for anything, and the WAF's does in a
    // box of its own, so neither weighs on every request's future.
    if let Some(resp) = last_response {
        let cookie = affinity_cookie.as_deref();
        return Ok(match txn {
            None => respond(inner, snap, ctx, resp, &outcome, client_upgrade, cookie),
            Some(t) => {
                let inspected = inspect_response(snap, ctx, resp, t);
                match Box::pin(inspected).await {
                    Ok(resp) => respond(inner, snap, ctx, resp, &outcome, client_upgrade, cookie),
                    Err(refused) => refused,
                }
            }
        });
    }
    match last_error {
        Some(e) => {
            ctx.error = Some(e.to_string());
            let (status, why) = match e.kind {
                ProxyErrorKind::FirstByteTimeout => {
                    (StatusCode::GATEWAY_TIMEOUT, "origin did not answer in time")
                }
                _ => (StatusCode::BAD_GATEWAY, "origin unreachable"),
            };
            Ok(local_response(status, why))
        }
        None => {
            gm.no_origin.inc();
            Err((StatusCode::SERVICE_UNAVAILABLE, "no origin available"))
        }
    }
}

fn upgrade_sent(client_upgrade: &Option<hyper::upgrade::OnUpgrade>, err: &ProxyError) -> bool {
    client_upgrade.is_some() && !err.never_sent()
}

fn classify(e: &OriginError, replay: &ReplayBody) -> ProxyError {
    // Walk the source chain for a body-limit error from our side.
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if s.downcast_ref::<TooLarge>().is_some() {
            return ProxyError {
                kind: ProxyErrorKind::BodyTooLarge,
                source: Source::Client,
                detail: s.to_string(),
            };
        }
        src = s.source();
    }
    if replay.client_failed() || matches!(e, OriginError::Request(_)) {
        return ProxyError {
            kind: ProxyErrorKind::ClientBody,
            source: Source::Client,
            detail: error_chain(e),
        };
    }
    ProxyError {
        kind: if e.is_connect() {
            ProxyErrorKind::Connect
        } else {
            ProxyErrorKind::Broken
        },
        source: Source::Origin,
        detail: error_chain(e),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// Step 7 for WAF routes: the response phases of the transaction (headers, and the body when
/// the policy inspects it). `Err` is the answer to send instead (a block or a failed origin).
async fn inspect_response(
    snap: &Snapshot,
    ctx: &mut Ctx,
    resp: Response<PooledBody>,
    txn: Box<dyn Transaction>,
) -> Result<Response<crate::waf::OriginBody>, Response<BoxBody>> {
    let (parts, origin_body) = resp.into_parts();
    let inspected =
        crate::waf::response_phase(Some(txn), &parts, origin_body, snap.cfg.timeouts.idle).await;
    match inspected {
        Ok(b) => Ok(Response::from_parts(parts, b)),
        Err((v, why)) => {
            ctx.error = Some(why.into());
            Err(verdict_response(v)
                .unwrap_or_else(|| local_response(StatusCode::BAD_GATEWAY, "origin failed")))
        }
    }
}

/// Step 7, the response phase.
fn respond<B>(
    inner: &Arc<Inner>,
    snap: &Snapshot,
    ctx: &mut Ctx,
    mut resp: Response<B>,
    outcome: &RuleOutcome,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    affinity_cookie: Option<&str>,
) -> Response<BoxBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<body::BoxError>,
{
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    // WebSocket and other upgrades: splice the two connections once both sides switched.
    if switching && let Some(client_up) = client_upgrade {
        let origin_up = hyper::upgrade::on(&mut resp);
        let stopping = inner
            .stopping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let drain = snap.cfg.timeouts.drain;
        inner
            .tracker
            .spawn(splice(client_up, origin_up, stopping, drain));
    }
    let (mut parts, origin_body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, switching);
    if let (Some(gi), Some(oi)) = (ctx.group, ctx.origin) {
        let group = &snap.groups[gi];
        if let Some(a) = &group.affinity {
            let token = &group.origins[oi].token;
            if affinity_cookie != Some(token.as_str()) {
                ctx.affinity = Some("set");
                let mut c = format!("{}={token}; Path=/; HttpOnly; SameSite=Lax", a.cookie);
                if ctx.info.scheme == Scheme::Https {
                    c.push_str("; Secure");
                }
                if let Some(ttl) = a.ttl {
                    c.push_str(&format!("; Max-Age={}", ttl.as_secs()));
                }
                if let Ok(v) = HeaderValue::from_str(&c) {
                    parts.headers.append(header::SET_COOKIE, v);
                }
            }
        }
    }
    for e in &outcome.response_headers {
        e.apply(&mut parts.headers);
    }
    let body: BoxBody = if switching {
        body::empty()
    } else {
        Idle::new(origin_body, snap.cfg.timeouts.idle).boxed_unsync()
    };
    Response::from_parts(parts, body)
}

/// Copy both ways between the upgraded connections until either side closes, or until the
/// drain timeout after the edge began to stop.
async fn splice(
    client: hyper::upgrade::OnUpgrade,
    origin: hyper::upgrade::OnUpgrade,
    stopping: tokio_util::sync::CancellationToken,
    drain: std::time::Duration,
) {
    let (c, o) = match tokio::join!(client, origin) {
        (Ok(c), Ok(o)) => (c, o),
        (c, o) => {
            tracing::debug!(client = ?c.err(), origin = ?o.err(), "upgrade failed");
            return;
        }
    };
    let mut c = hyper_util::rt::TokioIo::new(c);
    let mut o = hyper_util::rt::TokioIo::new(o);
    let stop = async {
        stopping.cancelled().await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut c, &mut o) => if let Err(e) = r {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        },
        () = stop => tracing::debug!("edge stopping: upgraded connection closed after the drain timeout"),
    }
}

/// Step 8, the log phase: headers every response gets, then metrics and the access log when
/// the body has been sent.
fn finish(
    inner: &Arc<Inner>,
    snap: &Arc<Snapshot>,
    ctx: Ctx,
    mut resp: Response<BoxBody>,
    in_flight: Option<InFlight>,
) -> Response<BoxBody> {
    let status = resp.status().as_u16();
    let h = resp.headers_mut();
    // Values that change per response, per second or per resource: h2's HPACK encoder adds
    // each new one to the connection's dynamic table, chained behind the older values of
    // the same name, and compares the next response's value with every entry of that chain
    // (the `Date` chain grows by one a second until eviction, ~60 entries). Marked
    // sensitive, they are sent as never-indexed literals with no table walk: −2.1% (request
    // id) and −2.9% (`Date`) CPU per HTTP/2 request (bench/edge/ab.sh, MODE=h2), and −1.8%
    // more for validators and lengths when responses differ (FILES=100). HTTP/1 ignores it.
    let mut rid = ctx.request_id.clone();
    rid.set_sensitive(true);
    h.insert(snap.request_id_header.clone(), rid);
    if ctx.version == Version::HTTP_2 {
        for name in [
            header::DATE,
            header::ETAG,
            header::LAST_MODIFIED,
            header::CONTENT_LENGTH,
        ] {
            if let Some(v) = h.get_mut(name) {
                v.set_sensitive(true);
            }
        }
    }
    if ctx.info.scheme == Scheme::Https
        && let Some(hsts) = &snap.hsts
        && ctx.route.is_none_or(|r| snap.routes[r].hsts)
    {
        h.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    let route_metrics = ctx.route.map(|r| Arc::clone(&snap.routes[r].metrics));
    let log = snap.cfg.access_log.then(|| inner.access_log.clone());
    let Some(log) = log else {
        // No access log: the end of the body only feeds the route's metrics and ends the
        // request on its connection, so the closure carries three words instead of the
        // whole request context.
        if route_metrics.is_none() && in_flight.is_none() {
            return resp;
        }
        let start = ctx.start;
        let (parts, body) = resp.into_parts();
        let body = OnEnd::new(body, move |_, _| {
            if let Some(m) = route_metrics {
                m.observe(status, start.elapsed().as_secs_f64());
            }
            drop(in_flight);
        });
        return Response::from_parts(parts, body.boxed_unsync());
    };
    let snap = snap.clone();
    let (parts, body) = resp.into_parts();
    let body = OnEnd::new(body, move |bytes, complete| {
        let elapsed = ctx.start.elapsed();
        let secs = elapsed.as_secs_f64();
        if let Some(m) = &route_metrics {
            m.observe(status, secs);
        }
        {
            let route = ctx.route.map(|r| &snap.routes[r]);
            let group = ctx.group.map(|g| &snap.groups[g]);
            log.log(AccessEntry {
                // The arrival time, from one clock read at the end instead of one per
                // request whether or not it is logged.
                time: rfc3339(SystemTime::now() - elapsed),
                request_id: ctx.request_id.to_str().unwrap_or("").to_string(),
                client: ctx.info.client.to_string(),
                scheme: ctx.info.scheme.as_str(),
                protocol: match ctx.version {
                    Version::HTTP_2 => "HTTP/2",
                    Version::HTTP_10 => "HTTP/1.0",
                    _ => "HTTP/1.1",
                },
                method: ctx.method.to_string(),
                host: ctx.host,
                path: ctx
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string(),
                status,
                route: route.map(|r| r.name.clone()),
                group: group.map(|g| g.name.clone()),
                origin: group
                    .zip(ctx.origin)
                    .map(|(g, o)| g.origins[o].cfg.name.clone()),
                retries: ctx.retries,
                affinity: ctx.affinity,
                latency_ms: secs * 1000.0,
                origin_latency_ms: ctx.origin_latency,
                bytes_sent: bytes,
                complete,
                error: ctx.error,
                rules: ctx.rules,
            });
        }
        drop(in_flight);
    });
    Response::from_parts(parts, body.boxed_unsync())
}

/// Read up to `limit` bytes of a body for inspection; the rest (if any) stays in the stream.
async fn read_prefix(
    mut b: BoxBody,
    limit: usize,
) -> Result<(Bytes, bool, Option<BoxBody>), Answer> {
    let mut buf = BytesMut::new();
    loop {
        match b.frame().await {
            None => return Ok((buf.freeze(), false, None)),
            Some(Err(e)) => {
                if e.downcast_ref::<TooLarge>().is_some() {
                    return Err((StatusCode::PAYLOAD_TOO_LARGE, "request body is too large"));
                }
                return Err((StatusCode::BAD_REQUEST, "request body could not be read"));
            }
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                    if buf.len() > limit {
                        return Ok((buf.freeze(), true, Some(b)));
                    }
                }
            }
        }
    }
}

fn verdict_response(v: Verdict) -> Option<Response<BoxBody>> {
    match v {
        Verdict::Continue => None,
        Verdict::Block { status, body } => {
            let mut r = Response::new(body::full(body));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Some(r)
        }
        Verdict::Redirect { status, location } => Some(redirect(status, &location)),
    }
}

fn authority_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn redirect(status: StatusCode, location: &str) -> Response<BoxBody> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn local_response(status: StatusCode, why: &str) -> Response<BoxBody> {
    let mut r = Response::new(body::full(format!("{} {why}\n", status.as_u16())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
