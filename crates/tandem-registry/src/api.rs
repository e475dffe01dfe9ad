//! The HTTP API: the OCI distribution endpoints under `/v2/`, the token endpoint, and the
//! replication and status endpoints under `/_tandem/registry/v1/`. A request's life is written
//! in order in `v2` (and `handle`): route, validate the name, authenticate, authorize, handle, record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use futures::TryStreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde::Deserialize;

use crate::auth::{Action, Identity};
use crate::core::{Core, blocking, range_header};
use crate::meta::Key;
use crate::metrics::{RequestLabels, RouteOnly};
use crate::oci::error::ErrorEntry;
use crate::oci::manifest::OCI_INDEX;
use crate::oci::name::{ReferenceError, route, valid_name};
use crate::oci::range::{RangeRequest, parse_content_range, parse_range};
use crate::oci::{ApiError, Code, Digest, Reference, Route};
use crate::replication::{self, ReplicationState};

const API_VERSION: &str = "registry/2.0";

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct AppState {
    /// The registry.
    pub core: Arc<Core>,
    /// Replication status.
    pub replication: Arc<ReplicationState>,
}

/// The replica's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(v2))
        .route("/v2/", any(v2))
        .route("/v2/{*rest}", any(v2))
        .route("/token", get(token))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/_tandem/registry/v1/changes", get(changes))
        .route("/_tandem/registry/v1/registers", get(registers))
        .route("/_tandem/registry/v1/content/{digest}", get(content))
        .route("/_tandem/registry/v1/status", get(status))
        .route("/_tandem/registry/v1/gc", post(gc))
        .with_state(state)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            "docker-distribution-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.append(k, v);
            }
        }
        r
    }
}

fn ok(status: StatusCode) -> http::response::Builder {
    Response::builder()
        .status(status)
        .header("docker-distribution-api-version", API_VERSION)
}

fn build(b: http::response::Builder, body: Body) -> Response {
    b.body(body)
        .unwrap_or_else(|e| ApiError::internal(format!("response: {e}")).into_response())
}

fn query(uri: &http::Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            url_pairs(q)
                .into_iter()
                .collect::<HashMap<String, String>>()
        })
        .unwrap_or_default()
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route_label(r: &Route<'_>) -> &'static str {
    match r {
        Route::Base => "base",
        Route::Catalog => "catalog",
        Route::Tags { .. } => "tags",
        Route::Manifest { .. } => "manifest",
        Route::Blob { .. } => "blob",
        Route::UploadStart { .. } | Route::Upload { .. } => "upload",
        Route::Referrers { .. } => "referrers",
    }
}

fn required_action(method: &Method, r: &Route<'_>) -> Action {
    match (method, r) {
        (&Method::DELETE, Route::Manifest { .. } | Route::Blob { .. }) => Action::Delete,
        (&Method::PUT, Route::Manifest { .. }) => Action::Push,
        (_, Route::UploadStart { .. } | Route::Upload { .. }) => Action::Push,
        _ => Action::Pull,
    }
}

fn repo_of<'a>(r: &Route<'a>) -> Option<&'a str> {
    match r {
        Route::Base | Route::Catalog => None,
        Route::Tags { name }
        | Route::Manifest { name, .. }
        | Route::Blob { name, .. }
        | Route::UploadStart { name }
        | Route::Upload { name, .. }
        | Route::Referrers { name, .. } => Some(name),
    }
}

fn unauthorized(core: &Core, scope: Option<String>, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, Code::Unauthorized, message).header(
        header::WWW_AUTHENTICATE,
        core.auth.challenge(&core.url, scope.as_deref()),
    )
}

async fn identify(core: &Core, headers: &HeaderMap) -> Result<Identity, ApiError> {
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    core.auth
        .identify(h)
        .await
        .map_err(|e| unauthorized(core, None, &e.to_string()))
}

/// Every `/v2/` request.
async fn v2(
    State(st): State<AppState>,
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let core = &st.core;
    let path = percent_decode(uri.path(), false);
    let rest = path
        .strip_prefix("/v2/")
        .or_else(|| path.strip_prefix("/v2").map(|r| r.trim_start_matches('/')))
        .unwrap_or("");
    let Some(r) = route(rest) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            Code::Unsupported,
            format!("no registry endpoint at {path}"),
        )
        .into_response();
    };
    let label = route_label(&r);
    let span = tracing::debug_span!("request", %method, path = %path, route = label);
    let _e = span.enter();
    let resp = match handle(core, &method, &uri, &headers, body, &r).await {
        Ok(resp) => resp,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(%method, path = %path, status = e.status.as_u16(), code = ?e.code(), "request failed");
            }
            e.into_response()
        }
    };
    core.metrics
        .requests
        .get_or_create(&RequestLabels {
            route: label,
            method: method.to_string(),
            status: resp.status().as_u16(),
        })
        .inc();
    core.metrics
        .duration
        .get_or_create(&RouteOnly { route: label })
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn handle(
    core: &Arc<Core>,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: Body,
    r: &Route<'_>,
) -> Result<Response, ApiError> {
    // 1. Validate the name before anything else: a bad name is NAME_INVALID, not a 404.
    let repo = repo_of(r);
    if let Some(name) = repo
        && !valid_name(name)
    {
        return Err(ApiError::name_invalid(name));
    }
    // 2. Authenticate and authorize.
    let id = identify(core, headers).await?;
    let action = required_action(method, r);
    match (r, repo) {
        (Route::Base, _) if matches!(id, Identity::Anonymous) && !core.auth.open() => {
            return Err(unauthorized(core, None, "authentication required"));
        }
        (Route::Base | Route::Catalog, _) => {}
        (_, Some(name)) if !core.auth.allowed(&id, name, action) => {
            let actions = match action {
                Action::Pull => "pull",
                Action::Push => "pull,push",
                Action::Delete => "delete",
            };
            let scope = format!("repository:{name}:{actions}");
            return Err(if matches!(id, Identity::Anonymous) {
                unauthorized(core, Some(scope), "authentication required")
            } else {
                ApiError::denied(format!(
                    "{action:?} on {name} is not allowed for this account"
                ))
                .detail(serde_json::json!({ "repository": name }))
            });
        }
        _ => {}
    }
    // 3. Handle.
    let q = query(uri);
    match (r, method.clone()) {
        (Route::Base, Method::GET | Method::HEAD) => Ok(build(
            ok(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"),
            Body::from("{}"),
        )),
        (Route::Catalog, Method::GET) => catalog(core, &id, &q).await,
        (Route::Tags { name }, Method::GET) => tags(core, name, &q).await,
        (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            get_manifest(core, name, reference, method == Method::HEAD).await
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            put_manifest(core, name, reference, headers, body).await
        }
        (Route::Manifest { name, reference }, Method::DELETE) => {
            if !core.cfg.deletes {
                return Err(ApiError::unsupported(
                    "deletes are disabled on this registry",
                ));
            }
            let reference = parse_reference(reference)?;
            core.delete_manifest(name, &reference).await?;
            Ok(build(ok(StatusCode::ACCEPTED), Body::empty()))
        }
        (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
            let digest = parse_digest(digest)?;
            let Some(size) = core.blob_size(name, &digest).await? else {
                return Err(ApiError::blob_unknown(&digest.to_string()));
            };
            serve_content(
                core,
                &digest,
                size,
                headers,
                method == Method::HEAD,
                "application/octet-stream",
            )
            .await
        }
        (Route::Blob { name, digest }, Method::DELETE) => {
            if !core.cfg.deletes {
                return Err(ApiError::unsupported(
                    "deletes are disabled on this registry",
                ));
            }
            let digest = parse_digest(digest)?;
            core.delete_blob(name, &digest).await?;
            Ok(build(ok(StatusCode::ACCEPTED), Body::empty()))
        }
        (Route::UploadStart { name }, Method::POST) => {
            start_upload(core, &id, name, &q, body).await
        }
        (Route::Upload { name, id: uid }, m) => upload(core, name, uid, m, headers, &q, body).await,
        (Route::Referrers { name, digest }, Method::GET) => referrers(core, name, digest, &q).await,
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unsupported,
            format!("{method} is not supported on this endpoint"),
        )),
    }
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| {
        ApiError::digest_invalid(e.to_string()).detail(serde_json::json!({ "digest": s }))
    })
}

fn parse_reference(s: &str) -> Result<Reference, ApiError> {
    Reference::parse(s).map_err(|e| match e {
        ReferenceError::Digest(d) => ApiError::digest_invalid(d.to_string()),
        ReferenceError::Tag(_) => {
            ApiError::manifest_invalid(e.to_string()).detail(serde_json::json!({ "reference": s }))
        }
    })
}

fn page_size(core: &Core, q: &HashMap<String, String>) -> Result<Option<usize>, ApiError> {
    match q.get("n") {
        None => Ok(None),
        Some(n) => n
            .parse::<usize>()
            .map(|n| Some(n.min(core.cfg.limits.max_page_size)))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    Code::Unsupported,
                    format!("n={n:?} is not a number"),
                )
            }),
    }
}

async fn catalog(
    core: &Arc<Core>,
    id: &Identity,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    if matches!(id, Identity::Anonymous) && core.cfg.anonymous_read.is_empty() {
        return Err(unauthorized(
            core,
            Some("registry:catalog:*".into()),
            "authentication required",
        ));
    }
    let n = page_size(core, q)?.unwrap_or(core.cfg.limits.max_page_size);
    let last = q.get("last").cloned();
    let meta = core.meta.clone();
    let core2 = core.clone();
    let id2 = id.clone();
    let (repos, more) =
        blocking(move || Ok(meta.repos(last.as_deref(), n, &|r| core2.auth.can_list(&id2, r))?))
            .await?;
    let mut b = ok(StatusCode::OK).header(header::CONTENT_TYPE, "application/json");
    if more
        && n > 0
        && let Some(l) = repos.last()
    {
        b = b.header(
            header::LINK,
            format!("</v2/_catalog?n={n}&last={l}>; rel=\"next\""),
        );
    }
    let body = serde_json::json!({ "repositories": repos }).to_string();
    Ok(build(b, Body::from(body)))
}

async fn tags(
    core: &Arc<Core>,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let n = page_size(core, q)?;
    let last = q.get("last").cloned();
    let meta = core.meta.clone();
    let repo = name.to_string();
    let max = core.cfg.limits.max_page_size;
    let (exists, tags, more) = blocking(move || {
        let exists = meta.repo_exists(&repo)?;
        let (t, more) = meta.tags(&repo, last.as_deref(), n.unwrap_or(max))?;
        Ok((exists, t, more))
    })
    .await?;
    if !exists {
        return Err(ApiError::name_unknown(name));
    }
    let names: Vec<String> = tags.into_iter().map(|(t, _)| t).collect();
    let mut b = ok(StatusCode::OK).header(header::CONTENT_TYPE, "application/json");
    if more
        && let (Some(n), Some(l)) = (n.or(Some(max)), names.last())
        && n > 0
    {
        b = b.header(
            header::LINK,
            format!("</v2/{name}/tags/list?n={n}&last={l}>; rel=\"next\""),
        );
    }
    let body = serde_json::json!({ "name": name, "tags": names }).to_string();
    Ok(build(b, Body::from(body)))
}

async fn get_manifest(
    core: &Arc<Core>,
    name: &str,
    reference: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let reference = parse_reference(reference)?;
    let Some(res) = core.resolve(name, &reference).await? else {
        return Err(ApiError::manifest_unknown(&reference.to_string()));
    };
    let b = ok(StatusCode::OK)
        .header(header::CONTENT_TYPE, &res.meta.media_type)
        .header("docker-content-digest", res.digest.to_string())
        .header(header::ETAG, format!("\"{}\"", res.digest))
        .header(header::CONTENT_LENGTH, res.meta.size);
    if head {
        return Ok(build(b, Body::empty()));
    }
    let bytes = core.storage.read_all(&res.digest).await?;
    core.metrics.bytes_out.inc_by(bytes.len() as u64);
    Ok(build(b, Body::from(bytes)))
}

async fn put_manifest(
    core: &Arc<Core>,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let reference = parse_reference(reference)?;
    let max = core.cfg.limits.max_manifest_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ManifestInvalid,
            format!("manifest is larger than this registry's limit of {max} bytes"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max
    {
        // Read (and drop) a moderately oversized body so the client sees the 413 instead of a
        // reset connection; anything bigger is cut off.
        if len <= 64 * 1024 * 1024 {
            let mut s = body.into_data_stream();
            while let Some(Ok(_)) = futures::StreamExt::next(&mut s).await {}
        }
        return Err(too_large());
    }
    let bytes = http_body_util::Limited::new(body, max as usize)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                ApiError::manifest_invalid(format!("could not read the manifest body: {e}"))
            }
        })?
        .to_bytes();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (digest, subject) = core
        .put_manifest(name, &reference, content_type, bytes)
        .await?;
    let mut b = ok(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .header("docker-content-digest", digest.to_string());
    if let Some(s) = subject {
        b = b.header("oci-subject", s.to_string());
    }
    Ok(build(b, Body::empty()))
}

async fn serve_content(
    core: &Arc<Core>,
    digest: &Digest,
    size: u64,
    headers: &HeaderMap,
    head: bool,
    content_type: &str,
) -> Result<Response, ApiError> {
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let base = ok(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header("docker-content-digest", digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::ACCEPT_RANGES, "bytes");
    let (b, r) = match range {
        RangeRequest::Full => (base.header(header::CONTENT_LENGTH, size), None),
        RangeRequest::Partial(r) => (
            base.status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_LENGTH, r.end - r.start)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{size}", r.start, r.end - 1),
                ),
            Some(r),
        ),
        RangeRequest::Unsatisfiable => {
            return Ok(build(
                ok(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{size}")),
                Body::empty(),
            ));
        }
    };
    if head || size == 0 {
        return Ok(build(b, Body::empty()));
    }
    let stream = core.storage.read(digest, r).await?;
    let counter = core.metrics.bytes_out.clone();
    let stream = stream.inspect_ok(move |chunk| {
        counter.inc_by(chunk.len() as u64);
    });
    Ok(build(b, Body::from_stream(stream)))
}

fn upload_headers(
    b: http::response::Builder,
    name: &str,
    id: &str,
    offset: u64,
) -> http::response::Builder {
    b.header(header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}"))
        .header(header::RANGE, range_header(offset))
        .header("docker-upload-uuid", id)
        .header(header::CONTENT_LENGTH, 0)
}

async fn start_upload(
    core: &Arc<Core>,
    id: &Identity,
    name: &str,
    q: &HashMap<String, String>,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(mount) = q.get("mount") {
        let digest = parse_digest(mount)?;
        if let Some(from) = q.get("from")
            && valid_name(from)
            && core.auth.allowed(id, from, Action::Pull)
            && core.mount(name, from, &digest).await?
        {
            return Ok(build(
                ok(StatusCode::CREATED)
                    .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
                    .header("docker-content-digest", digest.to_string())
                    .header(header::CONTENT_LENGTH, 0),
                Body::empty(),
            ));
        }
        // Cannot mount: start an ordinary upload, as the spec asks.
    }
    let uid = core.start_upload(name).await?;
    if let Some(d) = q.get("digest") {
        // Monolithic upload in a single POST.
        let digest = parse_digest(d)?;
        let live = core.upload(name, &uid).await?;
        let mut l = live.lock().await;
        if let Err(e) = core
            .append(&uid, &mut l, None, body.into_data_stream(), false)
            .await
        {
            // A single request cannot be resumed: drop the session it created.
            drop(l);
            let _ = core.cancel_upload(&uid).await;
            return Err(e);
        }
        core.finish_upload(name, &uid, &l, &digest).await?;
        return Ok(build(
            ok(StatusCode::CREATED)
                .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
                .header("docker-content-digest", digest.to_string())
                .header(header::CONTENT_LENGTH, 0),
            Body::empty(),
        ));
    }
    Ok(build(
        upload_headers(ok(StatusCode::ACCEPTED), name, &uid, 0),
        Body::empty(),
    ))
}

async fn upload(
    core: &Arc<Core>,
    name: &str,
    uid: &str,
    method: Method,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    body: Body,
) -> Result<Response, ApiError> {
    let live = core.upload(name, uid).await?;
    let content_range = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            parse_content_range(v).ok_or_else(|| {
                ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    Code::BlobUploadInvalid,
                    format!("Content-Range {v:?} is not <start>-<end>"),
                )
            })
        })
        .transpose()?;
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some((a, b)), Some(len)) = (content_range, content_length)
        && b - a + 1 != len
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::SizeInvalid,
            format!(
                "Content-Range {a}-{b} covers {} bytes but Content-Length is {len}",
                b - a + 1
            ),
        ));
    }
    match method {
        Method::GET | Method::HEAD => {
            let l = live.lock().await;
            Ok(build(
                upload_headers(ok(StatusCode::NO_CONTENT), name, uid, l.offset),
                Body::empty(),
            ))
        }
        Method::PATCH => {
            let mut l = live.lock().await;
            let offset = core
                .append(
                    uid,
                    &mut l,
                    content_range.map(|(a, _)| a),
                    body.into_data_stream(),
                    true,
                )
                .await?;
            Ok(build(
                upload_headers(ok(StatusCode::ACCEPTED), name, uid, offset),
                Body::empty(),
            ))
        }
        Method::PUT => {
            let Some(d) = q.get("digest") else {
                return Err(ApiError::digest_invalid(
                    "the closing PUT needs ?digest=<digest> of the whole blob",
                ));
            };
            let digest = parse_digest(d)?;
            let mut l = live.lock().await;
            if content_length != Some(0) {
                core.append(
                    uid,
                    &mut l,
                    content_range.map(|(a, _)| a),
                    body.into_data_stream(),
                    false,
                )
                .await?;
            }
            core.finish_upload(name, uid, &l, &digest).await?;
            Ok(build(
                ok(StatusCode::CREATED)
                    .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
                    .header("docker-content-digest", digest.to_string())
                    .header(header::CONTENT_LENGTH, 0),
                Body::empty(),
            ))
        }
        Method::DELETE => {
            drop(live);
            core.cancel_upload(uid).await?;
            Ok(build(ok(StatusCode::NO_CONTENT), Body::empty()))
        }
        m => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unsupported,
            format!("{m} is not supported on an upload"),
        )),
    }
}

async fn referrers(
    core: &Arc<Core>,
    name: &str,
    digest: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let subject = parse_digest(digest)?;
    let filter = q.get("artifactType").cloned().filter(|s| !s.is_empty());
    let meta = core.meta.clone();
    let repo = name.to_string();
    let list = blocking(move || Ok(meta.referrers(&repo, &subject)?)).await?;
    let manifests: Vec<serde_json::Value> = list
        .into_iter()
        .filter(|(_, m)| filter.is_none() || m.artifact_type == filter)
        .map(|(d, m)| {
            let mut v = serde_json::json!({
                "mediaType": m.media_type,
                "digest": d.to_string(),
                "size": m.size,
            });
            if let Some(a) = &m.artifact_type {
                v["artifactType"] = serde_json::Value::String(a.clone());
            }
            if !m.annotations.is_empty() {
                v["annotations"] = serde_json::to_value(&m.annotations).unwrap_or_default();
            }
            v
        })
        .collect();
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    })
    .to_string();
    let mut b = ok(StatusCode::OK).header(header::CONTENT_TYPE, OCI_INDEX);
    if filter.is_some() {
        b = b.header("oci-filters-applied", "artifactType");
    }
    Ok(build(b, Body::from(body)))
}

// ----- token endpoint ------------------------------------------------------------------------

async fn token(State(st): State<AppState>, uri: http::Uri, headers: HeaderMap) -> Response {
    let core = &st.core;
    if !core.auth.tokens_enabled() {
        return ApiError::unsupported("the token flow is not configured; use Basic auth")
            .into_response();
    }
    let id = match identify(core, &headers).await {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let scopes: Vec<String> = uri
        .query()
        .map(url_pairs)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect();
    match core.auth.issue_token(&id, &scopes) {
        Some((t, claims)) => {
            let body = serde_json::json!({
                "token": t,
                "access_token": t,
                "expires_in": core.auth.token_ttl().as_secs(),
                "issued_at": iso8601(claims.iat),
            });
            build(
                ok(StatusCode::OK).header(header::CONTENT_TYPE, "application/json"),
                Body::from(body.to_string()),
            )
        }
        None => ApiError::internal("could not issue a token").into_response(),
    }
}

fn iso8601(secs: u64) -> String {
    // Civil-from-days (Howard Hinnant), enough for a timestamp field.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

// ----- internal endpoints --------------------------------------------------------------------

async fn require_replica(core: &Core, headers: &HeaderMap) -> Result<(), ApiError> {
    match identify(core, headers).await? {
        Identity::Replica => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            Code::Unauthorized,
            "replication endpoints need the replication secret as a bearer token",
        )),
    }
}

#[derive(Deserialize)]
struct ChangesQuery {
    since: Option<u64>,
    limit: Option<usize>,
    wait_ms: Option<u64>,
}

async fn changes(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ChangesQuery>,
) -> Response {
    if let Err(e) = require_replica(&st.core, &headers).await {
        return e.into_response();
    }
    let wait = std::time::Duration::from_millis(q.wait_ms.unwrap_or(0));
    match replication::serve_changes(&st.core, q.since.unwrap_or(0), q.limit.unwrap_or(500), wait)
        .await
    {
        Ok(page) => axum::Json(page).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct RegisterQuery {
    kind: String,
    repo: String,
    name: String,
}

async fn registers(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<RegisterQuery>,
) -> Response {
    if let Err(e) = require_replica(&st.core, &headers).await {
        return e.into_response();
    }
    let key = match q.kind.as_str() {
        "tag" => Key::Tag {
            repo: q.repo,
            tag: q.name,
        },
        "manifest" | "blob" => {
            let digest = match parse_digest(&q.name) {
                Ok(d) => d,
                Err(e) => return e.into_response(),
            };
            if q.kind == "manifest" {
                Key::Manifest {
                    repo: q.repo,
                    digest,
                }
            } else {
                Key::Blob {
                    repo: q.repo,
                    digest,
                }
            }
        }
        _ => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::Unsupported,
                "kind is tag, manifest or blob",
            )
            .into_response();
        }
    };
    let meta = st.core.meta.clone();
    match blocking(move || Ok(meta.get(&key)?)).await {
        Ok(Some(e)) => axum::Json(e).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn content(
    State(st): State<AppState>,
    axum::extract::Path(digest): axum::extract::Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let core = &st.core;
    if let Err(e) = require_replica(core, &headers).await {
        return e.into_response();
    }
    let digest = match parse_digest(&digest) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let size = match core.meta.content(&digest) {
        Ok(Some((size, _))) => size,
        Ok(None) => return ApiError::blob_unknown(&digest.to_string()).into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    match serve_content(
        core,
        &digest,
        size,
        &headers,
        method == Method::HEAD,
        "application/octet-stream",
    )
    .await
    {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    build(
        ok(StatusCode::OK).header(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        Body::from(st.core.metrics.encode()),
    )
}

#[derive(Deserialize)]
struct StatusQuery {
    repository: Option<String>,
}

async fn status(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<StatusQuery>,
) -> Response {
    let core = &st.core;
    let id = match identify(core, &headers).await {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    if matches!(id, Identity::Anonymous) && !core.auth.open() {
        return unauthorized(core, None, "status needs credentials").into_response();
    }
    let r = match q.repository {
        Some(repo) => crate::status::repository(core, &repo)
            .await
            .map(|v| axum::Json(v).into_response()),
        None => crate::status::replica(core, &st.replication)
            .await
            .map(|v| axum::Json(v).into_response()),
    };
    r.unwrap_or_else(|e| e.into_response())
}

async fn gc(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let core = &st.core;
    match identify(core, &headers).await {
        Ok(Identity::Replica) => {}
        Ok(Identity::User(u)) if core.cfg.users.iter().any(|x| x.name == u && x.delete) => {}
        Ok(_) => {
            return ApiError::denied(
                "GC needs the replication secret or a user with delete rights",
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    }
    match crate::gc::run(core).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Read a whole small body (used by tests of the router).
pub async fn body_bytes(b: Body) -> Result<Bytes, ApiError> {
    b.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Make an error entry (for multi-error bodies).
pub fn entry(code: Code, message: &str) -> ErrorEntry {
    ErrorEntry {
        code,
        message: message.to_string(),
        detail: serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_and_dates() {
        assert_eq!(percent_decode("sha256%3Aab", false), "sha256:ab");
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        let q = url_pairs("scope=repository%3Aa%3Apull&service=x");
        assert_eq!(q[0].1, "repository:a:pull");
    }
}
