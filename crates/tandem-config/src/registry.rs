//! The `[registry]` section: the geo-replicated OCI registry. One replica per region, each with
//! its own listener, storage and data directory; shared users, anonymous-read rules, token
//! signing key, replication secret, webhooks and limits. Its keys are documented in
//! docs/config.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::ctx::{Ctx, entries};
use crate::path::KeyPath;
use crate::value::{Dur, Secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistry {
    #[serde(default)]
    replicas: IndexMap<String, RawReplica>,
    #[serde(default)]
    anonymous_read: Vec<String>,
    #[serde(default)]
    users: IndexMap<String, RawUser>,
    token: Option<RawToken>,
    #[serde(default)]
    replication: RawReplication,
    #[serde(default)]
    webhooks: IndexMap<String, RawWebhook>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    gc: RawGc,
    deletes: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplica {
    listen: String,
    url: Option<String>,
    data_dir: Option<PathBuf>,
    storage: Option<String>,
    #[serde(default)]
    storage_options: IndexMap<String, Secret>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    password_hash: Secret,
    push: Option<Vec<String>>,
    #[serde(default)]
    delete: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    key: Option<Secret>,
    key_env: Option<String>,
    ttl: Option<Dur>,
    service: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplication {
    secret: Option<Secret>,
    secret_env: Option<String>,
    ca: Option<PathBuf>,
    concurrency: Option<usize>,
    batch: Option<usize>,
    poll_wait: Option<Dur>,
    retry_max: Option<Dur>,
    read_through: Option<bool>,
    read_through_timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    #[serde(default)]
    events: Vec<WebhookEvent>,
    #[serde(default)]
    regions: Vec<String>,
    secret: Option<Secret>,
    timeout: Option<Dur>,
    max_retries: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_manifest_bytes: Option<u64>,
    max_blob_bytes: Option<u64>,
    max_concurrent_uploads: Option<usize>,
    upload_ttl: Option<Dur>,
    max_page_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGc {
    interval: Option<Dur>,
    grace: Option<Dur>,
    enabled: Option<bool>,
}

/// The `[registry]` section, as validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegistryConfig {
    /// One replica per region, in file order.
    pub replicas: Vec<Replica>,
    /// Repository patterns anyone may pull without credentials (`*`, `public/*`, `exact/name`).
    pub anonymous_read: Vec<String>,
    /// Users who may authenticate, in file order.
    pub users: Vec<User>,
    /// The Docker token flow; `None` means clients authenticate with Basic auth only.
    pub token: Option<TokenConfig>,
    /// How replicas talk to each other.
    pub replication: Replication,
    /// Webhooks, in file order.
    pub webhooks: Vec<Webhook>,
    /// Size and rate limits.
    pub limits: Limits,
    /// Garbage collection of unreferenced blobs.
    pub gc: Gc,
    /// Whether manifests, tags and blobs may be deleted through the API.
    pub deletes: bool,
}

impl RegistryConfig {
    /// The replica of a region.
    pub fn replica(&self, region: &str) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.region == region)
    }
}

/// A region's replica.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replica {
    /// The region it serves.
    pub region: String,
    /// Where it listens.
    pub listen: SocketAddr,
    /// The base URL clients and peers reach it at (`http://127.0.1.1:5000`); used for peers,
    /// `Location` headers are relative, and the token realm.
    pub url: String,
    /// Metadata, upload staging and replication state.
    pub data_dir: PathBuf,
    /// Where blobs and manifests are stored: `file:///path`, `s3://bucket/prefix`,
    /// `az://container/prefix`, `gs://bucket/prefix`, or `memory://` for tests; `None` means
    /// the directory `storage` under `data_dir`.
    pub storage: Option<String>,
    /// Options passed to the object store (e.g. `aws_region`, `azure_storage_account_name`);
    /// values are secrets.
    pub storage_options: Vec<(String, Secret)>,
    /// TLS certificate and key; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// PEM files for a TLS listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A user who may push.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// A PHC argon2 hash (`$argon2id$...`) or a bcrypt hash (`$2b$...`).
    pub password_hash: Secret,
    /// Repository patterns the user may push to; `["*"]` by default.
    pub push: Vec<String>,
    /// Whether the user may delete in the repositories it may push to.
    pub delete: bool,
}

/// The Docker token flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenConfig {
    /// HMAC-SHA256 signing key for the tokens this registry issues and accepts.
    pub key: Secret,
    /// How long a token is valid.
    pub ttl: Duration,
    /// The service name in challenges and tokens.
    pub service: String,
}

/// Replication between replicas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replication {
    /// Shared secret that replicas present to each other as a bearer token.
    pub secret: Option<Secret>,
    /// CA certificate (PEM) to verify peers served over https.
    pub ca: Option<PathBuf>,
    /// Blobs fetched from a peer at once.
    pub concurrency: usize,
    /// Changes pulled per request.
    pub batch: usize,
    /// How long a change-log poll waits for new changes (long poll).
    pub poll_wait: Duration,
    /// The longest back-off between failed pulls.
    pub retry_max: Duration,
    /// Serve pulls of content not replicated yet from a peer.
    pub read_through: bool,
    /// How long a read-through waits for a peer to answer.
    pub read_through_timeout: Duration,
}

/// What a webhook is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookEvent {
    /// A manifest or tag was pushed to this replica.
    Push,
    /// A manifest, tag or blob was deleted at this replica.
    Delete,
    /// A manifest or tag pushed elsewhere arrived at this replica.
    Replicated,
}

/// A webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Webhook {
    /// Its key in the config.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// The events sent (all when the list in the file is empty).
    pub events: Vec<WebhookEvent>,
    /// The regions whose replicas send it (all when empty).
    pub regions: Vec<String>,
    /// HMAC-SHA256 key that signs each body (`X-Tandem-Signature: sha256=<hex>`).
    pub secret: Option<Secret>,
    /// Timeout of one delivery attempt.
    pub timeout: Duration,
    /// Attempts after the first before the event is dropped.
    pub max_retries: u32,
}

/// Limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// The largest manifest accepted (413 above it). Default 4 MiB.
    pub max_manifest_bytes: u64,
    /// The largest blob accepted; `None` for no limit.
    pub max_blob_bytes: Option<u64>,
    /// Uploads in progress at once per replica; more get 429 TOOMANYREQUESTS.
    pub max_concurrent_uploads: usize,
    /// Idle uploads are removed after this long.
    pub upload_ttl: Duration,
    /// The most entries one tags or catalog page returns.
    pub max_page_size: usize,
}

/// Garbage collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gc {
    /// Whether GC runs periodically.
    pub enabled: bool,
    /// How often it runs.
    pub interval: Duration,
    /// Unreferenced content younger than this is kept (covers uploads and replication in
    /// flight).
    pub grace: Duration,
}

/// The default listen port of a replica.
pub const DEFAULT_REGISTRY_PORT: u16 = 5000;

const STORAGE_SCHEMES: &[&str] = &[
    "file", "memory", "s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl",
];

fn check_pattern(ctx: &mut Ctx, key: &KeyPath, p: &str) {
    let body = p.strip_suffix('*').unwrap_or(p);
    let ok = p == "*"
        || (!body.is_empty()
            && body.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'-' | b'/')
            }));
    if !ok {
        ctx.error(
            key,
            format!("{p:?} is not a repository pattern"),
            Some("write `*` for every repository, `team/*` for a prefix, or an exact name like `team/app` (lower case)".into()),
        );
    }
}

fn secret_or_env(
    ctx: &mut Ctx,
    base: &KeyPath,
    field: &str,
    value: Option<&Secret>,
    env: Option<&String>,
) -> Option<Secret> {
    match (value, env) {
        (Some(_), Some(_)) => {
            ctx.error(
                &base.key(format!("{field}_env")),
                format!("both `{field}` and `{field}_env` are set"),
                Some(format!("keep one: `{field}_env` (an environment variable's name) keeps the secret out of the file")),
            );
            None
        }
        (Some(s), None) => Some(s.clone()),
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                ctx.error(
                    &base.key(format!("{field}_env")),
                    format!("environment variable {var:?} is not set or empty"),
                    Some(format!(
                        "export {var}=<value> before starting, or remove `{field}_env`"
                    )),
                );
                None
            }
        },
        (None, None) => None,
    }
}

pub(crate) fn validate(ctx: &mut Ctx, raw: &RawRegistry) -> RegistryConfig {
    let base = KeyPath::root().key("registry");
    let mut replicas = Vec::new();
    if raw.replicas.is_empty() {
        ctx.error(
            &base,
            "the registry has no replica",
            Some("add a [registry.replicas.<region>] table with `listen` for each region that runs one".into()),
        );
    }
    for (key, region, r) in entries(&base.key("replicas"), &raw.replicas) {
        ctx.check_region(&key, region);
        let listen = ctx.parse(
            &key.key("listen"),
            &r.listen,
            "socket address",
            "\"127.0.1.1:5000\"",
            r.listen.parse::<SocketAddr>(),
        );
        if let Some(l) = listen
            && replicas.iter().any(|o: &Replica| o.listen == l)
        {
            ctx.error(
                &key.key("listen"),
                format!("{l} is already the listen address of another replica"),
                Some("give every replica its own address or port".into()),
            );
        }
        let scheme = if r.tls.is_some() { "https" } else { "http" };
        let url = match (&r.url, listen) {
            (Some(u), _) => {
                let u = u.trim_end_matches('/').to_string();
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    ctx.error(
                        &key.key("url"),
                        format!("{u:?} is not an http(s) URL"),
                        Some("write it like \"https://registry.eastus.example.com\"".into()),
                    );
                }
                u
            }
            (None, Some(l)) => format!("{scheme}://{l}"),
            (None, None) => String::new(),
        };
        let data_dir = r
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!(".tandem-registry/{region}")));
        let storage = match &r.storage {
            Some(s) => {
                match s.split_once("://") {
                    Some((scheme, _)) if STORAGE_SCHEMES.contains(&scheme) => {}
                    _ => ctx.error(
                        &key.key("storage"),
                        format!("{s:?} is not a supported storage URL"),
                        Some(format!(
                            "use one of the schemes {} (e.g. \"s3://bucket/prefix\" or \"file:///var/lib/tandem/blobs\"), or leave it out to store under data_dir",
                            STORAGE_SCHEMES.join(", ")
                        )),
                    ),
                }
                if let Some(path) = s.strip_prefix("file://")
                    && !path.starts_with('/')
                {
                    ctx.error(
                        &key.key("storage"),
                        format!("{s:?} is not an absolute file URL"),
                        Some("file URLs need an absolute path: \"file:///var/lib/tandem/blobs\"; leave `storage` out to use data_dir/storage".into()),
                    );
                }
                Some(s.clone())
            }
            None => None,
        };
        let tls = r.tls.as_ref().map(|t| {
            for (f, p) in [("cert", &t.cert), ("key", &t.key)] {
                if !p.exists() {
                    ctx.error(
                        &key.key("tls").key(f),
                        format!("{} does not exist", p.display()),
                        Some("give the path of a PEM file readable by tandem".into()),
                    );
                }
            }
            TlsFiles {
                cert: t.cert.clone(),
                key: t.key.clone(),
            }
        });
        replicas.push(Replica {
            region: region.clone(),
            listen: listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_REGISTRY_PORT))),
            url,
            data_dir,
            storage,
            storage_options: r
                .storage_options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tls,
        });
    }

    for (i, p) in raw.anonymous_read.iter().enumerate() {
        check_pattern(ctx, &base.key("anonymous_read").index(i), p);
    }

    let mut users = Vec::new();
    for (key, name, u) in entries(&base.key("users"), &raw.users) {
        if name.is_empty() || name.contains(':') || name.len() > 128 {
            ctx.error(
                &key,
                format!("user name {name:?} is not valid"),
                Some("use 1-128 characters without ':'".into()),
            );
        }
        let h = u.password_hash.expose();
        if !(h.starts_with("$argon2")
            || h.starts_with("$2a$")
            || h.starts_with("$2b$")
            || h.starts_with("$2y$"))
        {
            ctx.error(
                &key.key("password_hash"),
                "the password hash is neither argon2 (`$argon2id$...`) nor bcrypt (`$2b$...`)",
                Some("generate one with `tandem registry --hash-password` (reads the password from stdin); never put a plain password here".into()),
            );
        }
        let push = u.push.clone().unwrap_or_else(|| vec!["*".into()]);
        for (i, p) in push.iter().enumerate() {
            check_pattern(ctx, &key.key("push").index(i), p);
        }
        users.push(User {
            name: name.clone(),
            password_hash: u.password_hash.clone(),
            push,
            delete: u.delete,
        });
    }

    let token = raw.token.as_ref().and_then(|t| {
        let tk = base.key("token");
        let key = secret_or_env(ctx, &tk, "key", t.key.as_ref(), t.key_env.as_ref());
        let key = match key {
            Some(k) => k,
            None => {
                if t.key.is_none() && t.key_env.is_none() {
                    ctx.error(
                        &tk,
                        "the token flow needs a signing key",
                        Some("set `key_env` to an environment variable holding at least 32 random bytes (e.g. `openssl rand -hex 32`)".into()),
                    );
                }
                return None;
            }
        };
        if key.expose().len() < 32 {
            ctx.error(
                &tk.key("key"),
                "the token signing key is shorter than 32 characters",
                Some("use `openssl rand -hex 32`".into()),
            );
        }
        let ttl = t.ttl.map(|d| d.0).unwrap_or(Duration::from_secs(300));
        if ttl < Duration::from_secs(10) || ttl > Duration::from_secs(24 * 3600) {
            ctx.error(
                &tk.key("ttl"),
                "the token ttl must be between 10s and 24h",
                Some("5m is the usual value".into()),
            );
        }
        Some(TokenConfig {
            key,
            ttl,
            service: t.service.clone().unwrap_or_else(|| "tandem-registry".into()),
        })
    });

    let rb = base.key("replication");
    let rr = &raw.replication;
    let secret = secret_or_env(
        ctx,
        &rb,
        "secret",
        rr.secret.as_ref(),
        rr.secret_env.as_ref(),
    );
    if let Some(s) = &secret
        && s.expose().len() < 16
    {
        ctx.error(
            &rb.key("secret"),
            "the replication secret is shorter than 16 characters",
            Some("use `openssl rand -hex 24`".into()),
        );
    }
    if raw.replicas.len() > 1 && secret.is_none() && rr.secret.is_none() && rr.secret_env.is_none()
    {
        ctx.error(
            &rb,
            "several replicas are configured but replication has no secret",
            Some("add [registry.replication] with `secret_env = \"TANDEM_REGISTRY_SECRET\"` (or `secret`); replicas authenticate to each other with it".into()),
        );
    }
    if let Some(ca) = &rr.ca
        && !ca.exists()
    {
        ctx.error(
            &rb.key("ca"),
            format!("{} does not exist", ca.display()),
            Some(
                "give the path of the PEM CA certificate that signed the peers' certificates"
                    .into(),
            ),
        );
    }
    let concurrency = rr.concurrency.unwrap_or(4);
    if !(1..=64).contains(&concurrency) {
        ctx.error(
            &rb.key("concurrency"),
            "concurrency must be 1..=64",
            Some("4 suits most links".into()),
        );
    }
    let batch = rr.batch.unwrap_or(500);
    if !(1..=10_000).contains(&batch) {
        ctx.error(
            &rb.key("batch"),
            "batch must be 1..=10000",
            Some("500 is the default".into()),
        );
    }
    let replication = Replication {
        secret,
        ca: rr.ca.clone(),
        concurrency,
        batch,
        poll_wait: rr.poll_wait.map(|d| d.0).unwrap_or(Duration::from_secs(20)),
        retry_max: rr.retry_max.map(|d| d.0).unwrap_or(Duration::from_secs(10)),
        read_through: rr.read_through.unwrap_or(true),
        read_through_timeout: rr
            .read_through_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(3)),
    };

    let mut webhooks = Vec::new();
    for (key, name, w) in entries(&base.key("webhooks"), &raw.webhooks) {
        ctx.check_ident(&key, "webhook", name);
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            ctx.error(
                &key.key("url"),
                format!("{:?} is not an http(s) URL", w.url),
                Some("write it like \"https://hooks.example.com/registry\"".into()),
            );
        }
        for (i, r) in w.regions.iter().enumerate() {
            ctx.check_region(&key.key("regions").index(i), r);
        }
        webhooks.push(Webhook {
            name: name.clone(),
            url: w.url.clone(),
            events: if w.events.is_empty() {
                vec![
                    WebhookEvent::Push,
                    WebhookEvent::Delete,
                    WebhookEvent::Replicated,
                ]
            } else {
                w.events.clone()
            },
            regions: w.regions.clone(),
            secret: w.secret.clone(),
            timeout: w.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(5)),
            max_retries: w.max_retries.unwrap_or(5),
        });
    }

    let lb = base.key("limits");
    let rl = &raw.limits;
    let max_manifest_bytes = rl.max_manifest_bytes.unwrap_or(4 * 1024 * 1024);
    if !(4 * 1024..=64 * 1024 * 1024).contains(&max_manifest_bytes) {
        ctx.error(
            &lb.key("max_manifest_bytes"),
            "max_manifest_bytes must be between 4096 and 67108864",
            Some("the spec says registries should accept at least 4 MiB (4194304)".into()),
        );
    }
    let max_concurrent_uploads = rl.max_concurrent_uploads.unwrap_or(256);
    if max_concurrent_uploads == 0 {
        ctx.error(
            &lb.key("max_concurrent_uploads"),
            "must be at least 1",
            None,
        );
    }
    let max_page_size = rl.max_page_size.unwrap_or(1000);
    if max_page_size == 0 {
        ctx.error(&lb.key("max_page_size"), "must be at least 1", None);
    }
    let limits = Limits {
        max_manifest_bytes,
        max_blob_bytes: rl.max_blob_bytes,
        max_concurrent_uploads,
        upload_ttl: rl
            .upload_ttl
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(24 * 3600)),
        max_page_size,
    };

    let g = &raw.gc;
    let gc = Gc {
        enabled: g.enabled.unwrap_or(true),
        interval: g.interval.map(|d| d.0).unwrap_or(Duration::from_secs(3600)),
        grace: g.grace.map(|d| d.0).unwrap_or(Duration::from_secs(3600)),
    };
    if gc.interval < Duration::from_secs(1) {
        ctx.error(
            &base.key("gc").key("interval"),
            "gc interval must be at least 1s",
            Some("1h is the default".into()),
        );
    }

    RegistryConfig {
        replicas,
        anonymous_read: raw.anonymous_read.clone(),
        users,
        token,
        replication,
        webhooks,
        limits,
        gc,
        deletes: raw.deletes.unwrap_or(true),
    }
}
