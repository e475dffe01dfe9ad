//! The admin API every Tandem process serves on one listener.
//!
//! This crate owns the contract between services and operators: each service is a
//! [`Component`] that gives a detailed JSON status, a few human [`Table`]s, and its own
//! routes (mounted under `/api/v1/<component>`). The admin server adds `/metrics`
//! (Prometheus text from one shared registry), `/api/v1/status` (all components), `/healthz`,
//! and `/`, a status page that polls the same JSON. Writes (any method but GET/HEAD) need the
//! bearer token from `[admin]`; without one configured, writes are refused.
//!
//! It does not own what a component reports; `tandem status` renders the same tables in a
//! terminal with [`render_tables`].

mod page;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tandem_config::value::Secret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A table for humans: the status page and `tandem status` both render it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Heading, e.g. `DNS profile app (app.tandem.test, priority)`.
    pub title: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with a title and columns.
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Self {
        Table {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

/// What a service gives the admin API.
pub trait Component: Send + Sync + 'static {
    /// Short name, also the URL segment: `dns`, `edge`, `registry`, `volume`, `lab`.
    fn name(&self) -> &'static str;
    /// Detailed status as JSON.
    fn status(&self) -> serde_json::Value;
    /// The same for humans.
    fn tables(&self) -> Vec<Table>;
    /// Extra routes, mounted under `/api/v1/<name>`. Writes are token-protected by the server.
    fn routes(&self) -> Router {
        Router::new()
    }
}

/// The body of `GET /api/v1/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusDoc {
    /// Tandem's version.
    pub version: String,
    /// Every table of every component, regions first.
    pub tables: Vec<Table>,
    /// Each component's detailed status by name.
    pub components: serde_json::Map<String, serde_json::Value>,
}

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listen address is in use or not allowed.
    #[error(
        "admin API cannot listen on {addr}: {source}; set [admin] listen to a free address or pass --admin"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

struct Inner {
    token: Option<Secret>,
    registry: Registry,
    regions: Table,
    components: Vec<Arc<dyn Component>>,
}

/// Builds and runs the admin server.
pub struct Admin {
    inner: Arc<Inner>,
}

impl Admin {
    /// An admin API for `regions`, protected by `token`, exporting `registry`.
    pub fn new(
        regions: &[tandem_config::Region],
        token: Option<Secret>,
        registry: Registry,
        components: Vec<Arc<dyn Component>>,
    ) -> Self {
        let mut t = Table::new("Regions", &["region", "pair", "mode", "location"]);
        for r in regions {
            t.row(vec![
                r.name.clone(),
                r.pair.clone().unwrap_or_else(|| "-".into()),
                format!("{:?}", r.mode).to_lowercase(),
                r.location.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        Admin {
            inner: Arc::new(Inner {
                token,
                registry,
                regions: t,
                components,
            }),
        }
    }

    /// The full router (useful for tests that do not want a socket).
    pub fn router(&self) -> Router {
        let mut api = Router::new()
            .route("/status", get(status))
            .with_state(self.inner.clone());
        for c in &self.inner.components {
            api = api.nest(&format!("/{}", c.name()), c.routes());
        }
        Router::new()
            .route("/", get(|| async { Html(page::PAGE) }))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(metrics))
            .with_state(self.inner.clone())
            .nest("/api/v1", api)
            .layer(middleware::from_fn_with_state(self.inner.clone(), auth))
    }

    /// Serve on an already bound listener until `shutdown` is cancelled.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let app = self.router();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }

    /// Bind `addr`, with an error that says what to do.
    /// Bind `addr`, log where the API is, and serve it on a task until `shutdown`: what every
    /// long-running command does with its admin API.
    pub async fn spawn(
        self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, AdminError> {
        let listener = Self::bind(addr).await?;
        tracing::info!(admin = %addr, "admin API and status page at http://{addr}/");
        Ok(tokio::spawn(self.serve(listener, shutdown)))
    }

    /// Bind the admin API's listener.
    pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AdminError> {
        TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })
    }

    /// The status document (what `GET /api/v1/status` returns).
    pub fn status_doc(&self) -> StatusDoc {
        build_status(&self.inner)
    }
}

fn build_status(inner: &Inner) -> StatusDoc {
    let mut doc = StatusDoc {
        version: env!("CARGO_PKG_VERSION").to_string(),
        tables: vec![inner.regions.clone()],
        components: serde_json::Map::new(),
    };
    for c in &inner.components {
        doc.tables.extend(c.tables());
        doc.components.insert(c.name().to_string(), c.status());
    }
    doc
}

async fn status(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    axum::Json(build_status(&inner))
}

async fn metrics(State(inner): State<Arc<Inner>>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &inner.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

/// Writes need `Authorization: Bearer <token>`.
async fn auth(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let Some(token) = &inner.token else {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "error": "writes are disabled: no admin token is configured",
                "hint": "set [admin] token or token_env in tandem.toml, then send Authorization: Bearer <token>",
            })),
        )
            .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        tracing::warn!(method = %req.method(), path = %req.uri().path(), "admin write refused: bad or missing token");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({
                "error": "missing or wrong bearer token",
                "hint": "send Authorization: Bearer <token> with the token from [admin] (tandem lab commands read it from the lab directory)",
            })),
        )
            .into_response();
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Render tables for a terminal, with aligned columns.
pub fn render_tables(tables: &[Table]) -> String {
    let mut out = String::new();
    for t in tables {
        out.push_str(&t.title);
        out.push('\n');
        let mut widths: Vec<usize> = t.columns.iter().map(|c| c.chars().count()).collect();
        for r in &t.rows {
            for (i, c) in r.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("  ");
            for (i, c) in cells.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(w.saturating_sub(c.chars().count()) + 2));
                }
            }
            s.push('\n');
            s
        };
        out.push_str(&line(
            &t.columns
                .iter()
                .map(|c| c.to_uppercase())
                .collect::<Vec<_>>(),
        ));
        if t.rows.is_empty() {
            out.push_str("  (none)\n");
        }
        for r in &t.rows {
            out.push_str(&line(r));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Component for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn status(&self) -> serde_json::Value {
            serde_json::json!({"answers": 3})
        }
        fn tables(&self) -> Vec<Table> {
            let mut t = Table::new("Fake", &["a", "b"]);
            t.row(vec!["x".into(), "yy".into()]);
            vec![t]
        }
        fn routes(&self) -> Router {
            Router::new().route("/poke", axum::routing::post(|| async { "poked\n" }))
        }
    }

    async fn start(token: Option<&str>) -> (String, CancellationToken) {
        let mut registry = Registry::default();
        let c = prometheus_client::metrics::counter::Counter::<u64>::default();
        c.inc();
        registry.register("tandem_test_things", "Things", c);
        let admin = Admin::new(&[], token.map(Secret::new), registry, vec![Arc::new(Fake)]);
        let l = Admin::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        let t = CancellationToken::new();
        tokio::spawn(admin.serve(l, t.clone()));
        (url, t)
    }

    #[tokio::test]
    async fn status_metrics_and_page() {
        let (url, t) = start(Some("0123456789")).await;
        let doc: StatusDoc = reqwest::get(format!("{url}/api/v1/status"))
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(doc.components["fake"]["answers"], 3);
        assert_eq!(doc.tables.len(), 2);
        let m = reqwest::get(format!("{url}/metrics"))
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        assert!(m.contains("tandem_test_things_total 1"), "{m}");
        let page = reqwest::get(&url)
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        assert!(page.contains("/api/v1/status"));
        t.cancel();
    }

    #[tokio::test]
    async fn writes_need_the_token() {
        let (url, t) = start(Some("0123456789")).await;
        let c = reqwest::Client::new();
        let r = c
            .post(format!("{url}/api/v1/fake/poke"))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 401);
        let r = c
            .post(format!("{url}/api/v1/fake/poke"))
            .bearer_auth("wrong-token")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 401);
        let r = c
            .post(format!("{url}/api/v1/fake/poke"))
            .bearer_auth("0123456789")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        t.cancel();
        let (url, t) = start(None).await;
        let r = c
            .post(format!("{url}/api/v1/fake/poke"))
            .bearer_auth("x")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 403);
        assert!(r.text().await.expect("body").contains("no admin token"));
        t.cancel();
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new("T", &["name", "state"]);
        t.row(vec!["eastus".into(), "online".into()]);
        t.row(vec!["w".into(), "degraded".into()]);
        let s = render_tables(&[t]);
        assert!(
            s.contains("  NAME    STATE\n  eastus  online\n  w       degraded\n"),
            "{s}"
        );
    }
}
