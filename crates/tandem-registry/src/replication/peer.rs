//! Talking to peer replicas: their change log, their registers, their content. Used by the
//! replication loop and by read-through. Every request carries the replication secret as a
//! bearer token and this replica's region in `X-Tandem-Region`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::core::Core;
use crate::meta::{Change, Entry, Key, Value};
use crate::oci::{Digest, Hasher, Reference};

/// A replica's answer to a change-log poll.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangesPage {
    /// The answering replica's region.
    pub region: String,
    /// Its log head.
    pub head: u64,
    /// Its applied position in every other replica's log.
    pub applied: std::collections::BTreeMap<String, u64>,
    /// Changes after the requested position.
    pub changes: Vec<Change>,
}

/// A failure talking to a peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Transport failure.
    #[error("peer {peer} unreachable: {source}")]
    Http {
        /// Peer region.
        peer: String,
        /// Error.
        source: reqwest::Error,
    },
    /// Unexpected status.
    #[error("peer {peer} answered {status} for {what}")]
    Status {
        /// Peer region.
        peer: String,
        /// Status.
        status: u16,
        /// Request.
        what: String,
    },
    /// Content did not match its digest.
    #[error("content {0} from peer did not match its digest; it was discarded")]
    Digest(String),
    /// Local failure while storing.
    #[error("storing fetched content failed: {0}")]
    Local(String),
    /// The peer is another region than configured.
    #[error(
        "peer at {url} says it is region {actual:?}, expected {expected:?}; check registry.replicas urls"
    )]
    WrongRegion {
        /// URL.
        url: String,
        /// Expected region.
        expected: String,
        /// Region it claims.
        actual: String,
    },
}

/// One peer.
#[derive(Clone)]
pub struct Peer {
    /// Its region.
    pub region: String,
    /// Its base URL.
    pub url: String,
    client: reqwest::Client,
    secret: String,
    me: String,
}

/// What a fetch brought back.
pub enum Fetched {
    /// Stored locally now (or already was).
    Stored,
    /// The peer does not have it (404).
    NotFound,
}

impl Peer {
    /// A peer client.
    pub fn new(region: &str, url: &str, client: reqwest::Client, secret: &str, me: &str) -> Peer {
        Peer {
            region: region.to_string(),
            url: url.trim_end_matches('/').to_string(),
            client,
            secret: secret.to_string(),
            me: me.to_string(),
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.secret)
            .header("x-tandem-region", &self.me)
    }

    fn http(&self, source: reqwest::Error) -> PeerError {
        PeerError::Http {
            peer: self.region.clone(),
            source,
        }
    }

    /// Poll the peer's change log after `since`, waiting up to `wait` for new changes.
    pub async fn changes(
        &self,
        since: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangesPage, PeerError> {
        let resp = self
            .get(&format!(
                "/_tandem/registry/v1/changes?since={since}&limit={limit}&wait_ms={}",
                wait.as_millis()
            ))
            .timeout(wait + Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| self.http(e))?;
        if !resp.status().is_success() {
            return Err(PeerError::Status {
                peer: self.region.clone(),
                status: resp.status().as_u16(),
                what: "changes".into(),
            });
        }
        let page: ChangesPage = resp.json().await.map_err(|e| self.http(e))?;
        if page.region != self.region {
            return Err(PeerError::WrongRegion {
                url: self.url.clone(),
                expected: self.region.clone(),
                actual: page.region,
            });
        }
        Ok(page)
    }

    /// The peer's current register for `key`.
    pub async fn register(&self, key: &Key, timeout: Duration) -> Result<Option<Entry>, PeerError> {
        let (kind, name) = match key {
            Key::Tag { tag, .. } => ("tag", tag.clone()),
            Key::Manifest { digest, .. } => ("manifest", digest.to_string()),
            Key::Blob { digest, .. } => ("blob", digest.to_string()),
        };
        let mut url = reqwest::Url::parse(&format!("{}/_tandem/registry/v1/registers", self.url))
            .map_err(|e| PeerError::Local(format!("peer url {}: {e}", self.url)))?;
        url.query_pairs_mut()
            .append_pair("kind", kind)
            .append_pair("repo", key.repo())
            .append_pair("name", &name);
        let resp = self
            .client
            .get(url)
            .bearer_auth(&self.secret)
            .header("x-tandem-region", &self.me)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.http(e))?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp.json().await.map_err(|e| self.http(e))?)),
            404 => Ok(None),
            s => Err(PeerError::Status {
                peer: self.region.clone(),
                status: s,
                what: format!("register {kind} {name}"),
            }),
        }
    }

    /// Fetch content by digest into local storage, verifying it. Resumes a partial download
    /// left in `part_dir` by an earlier attempt with a Range request.
    pub async fn fetch_content(
        &self,
        core: &Arc<Core>,
        digest: &Digest,
        part_dir: &Path,
    ) -> Result<Fetched, PeerError> {
        let _g = core.locks.lock(&digest.to_string()).await;
        if core
            .has_content(digest)
            .await
            .map_err(|e| PeerError::Local(format!("{:?}", e.code())))?
        {
            return Ok(Fetched::Stored);
        }
        let part: PathBuf = part_dir.join(format!(
            "{}-{}.part",
            digest.algorithm().as_str(),
            digest.hex()
        ));
        let have = tokio::fs::metadata(&part)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let mut req = self.get(&format!("/_tandem/registry/v1/content/{digest}"));
        if have > 0 {
            req = req.header("range", format!("bytes={have}-"));
        }
        let resp = req.send().await.map_err(|e| self.http(e))?;
        let status = resp.status().as_u16();
        let append = match status {
            206 => true,
            200 => false,
            404 => return Ok(Fetched::NotFound),
            416 => {
                // Our partial file is already complete or bogus: start over.
                let _ = tokio::fs::remove_file(&part).await;
                return Err(PeerError::Status {
                    peer: self.region.clone(),
                    status,
                    what: format!("content {digest} (restarting)"),
                });
            }
            s => {
                return Err(PeerError::Status {
                    peer: self.region.clone(),
                    status: s,
                    what: format!("content {digest}"),
                });
            }
        };
        // Hash what we already have, then stream the rest to the file while hashing.
        let mut hasher = Hasher::new(digest.algorithm());
        if append {
            let p = part.clone();
            let h = hasher.clone();
            hasher = tokio::task::spawn_blocking(move || -> std::io::Result<Hasher> {
                use std::io::Read;
                let mut h = h;
                let mut f = std::fs::File::open(&p)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                Ok(h)
            })
            .await
            .map_err(|e| PeerError::Local(e.to_string()))?
            .map_err(|e| PeerError::Local(e.to_string()))?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(&part)
            .await
            .map_err(|e| PeerError::Local(e.to_string()))?;
        let mut stream = resp.bytes_stream();
        let mut got = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.http(e))?;
            hasher.update(&chunk);
            use tokio::io::AsyncWriteExt;
            file.write_all(&chunk)
                .await
                .map_err(|e| PeerError::Local(e.to_string()))?;
            got += chunk.len() as u64;
        }
        {
            use tokio::io::AsyncWriteExt;
            file.flush()
                .await
                .map_err(|e| PeerError::Local(e.to_string()))?;
        }
        drop(file);
        core.metrics
            .fetched_bytes
            .get_or_create(&crate::metrics::PeerLabels {
                peer: self.region.clone(),
            })
            .inc_by(got);
        if &hasher.finish() != digest {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(PeerError::Digest(digest.to_string()));
        }
        let size = tokio::fs::metadata(&part)
            .await
            .map(|m| m.len())
            .map_err(|e| PeerError::Local(e.to_string()))?;
        core.storage
            .place(&part, digest)
            .await
            .map_err(|e| PeerError::Local(e.to_string()))?;
        let d = digest.clone();
        core.write(move |w| Ok(w.put_content(&d, size)?))
            .await
            .map_err(|e| PeerError::Local(format!("{:?}", e.code())))?;
        Ok(Fetched::Stored)
    }
}

/// All peers of a replica.
#[derive(Clone, Default)]
pub struct Peers {
    /// The peers.
    pub list: Vec<Peer>,
    /// Where partial downloads are kept.
    pub part_dir: PathBuf,
    /// Read-through timeout.
    pub timeout: Duration,
}

impl Peers {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The newest register for `key` among peers that answer in time.
    async fn newest(&self, key: &Key) -> Option<(Peer, Entry)> {
        let futs = self.list.iter().map(|p| {
            let key = key.clone();
            async move {
                // One retry: the first attempt may land on a pooled connection to a peer
                // process that has since restarted.
                let mut r = p.register(&key, self.timeout).await;
                if r.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    r = p.register(&key, self.timeout).await;
                }
                match r {
                    Ok(Some(e)) => Some((p.clone(), e)),
                    Ok(None) => None,
                    Err(err) => {
                        tracing::debug!(peer = %p.region, error = %err, "read-through: peer did not answer");
                        None
                    }
                }
            }
        });
        futures::future::join_all(futs)
            .await
            .into_iter()
            .flatten()
            .max_by(|a, b| a.1.reg.stamp.cmp(&b.1.reg.stamp))
    }

    /// Pull a manifest (and the tag naming it) from the peer that has the newest value, store
    /// it here, and apply the peer's registers. Returns whether it is now present locally.
    pub async fn read_through_manifest(
        &self,
        core: &Arc<Core>,
        repo: &str,
        reference: &Reference,
    ) -> bool {
        let fut = async {
            let mut regs = Vec::new();
            let digest = match reference {
                Reference::Digest(d) => d.clone(),
                Reference::Tag(t) => {
                    let key = Key::Tag {
                        repo: repo.to_string(),
                        tag: t.clone(),
                    };
                    let (_, e) = self.newest(&key).await?;
                    let Some(Value::Tag { digest }) = e.value().cloned() else {
                        return None;
                    };
                    regs.push((key, e));
                    digest
                }
            };
            let mkey = Key::Manifest {
                repo: repo.to_string(),
                digest: digest.clone(),
            };
            let (peer, e) = self.newest(&mkey).await?;
            e.value()?;
            match peer.fetch_content(core, &digest, &self.part_dir).await {
                Ok(Fetched::Stored) => {}
                _ => return None,
            }
            regs.push((mkey, e));
            core.apply_remote(regs).await.ok()
        };
        tokio::time::timeout(self.timeout * 4, fut)
            .await
            .ok()
            .flatten()
            .is_some()
    }

    /// Pull a blob linked in `repo` at a peer; store it and apply the peer's link.
    pub async fn read_through_blob(&self, core: &Arc<Core>, repo: &str, digest: &Digest) -> bool {
        let key = Key::Blob {
            repo: repo.to_string(),
            digest: digest.clone(),
        };
        let Some((peer, e)) = tokio::time::timeout(self.timeout, self.newest(&key))
            .await
            .ok()
            .flatten()
        else {
            return false;
        };
        if e.value().is_none() {
            return false;
        }
        // No overall timeout on the transfer itself: a large layer takes as long as it takes.
        // One retry on a transport error (a stale pooled connection); the download resumes.
        let mut fetched = peer.fetch_content(core, digest, &self.part_dir).await;
        if fetched.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fetched = peer.fetch_content(core, digest, &self.part_dir).await;
        }
        match fetched {
            Ok(Fetched::Stored) => core.apply_remote(vec![(key, e)]).await.is_ok(),
            Ok(Fetched::NotFound) => false,
            Err(err) => {
                tracing::warn!(peer = %peer.region, %digest, error = %err, "read-through of a blob failed");
                false
            }
        }
    }
}
