//! Upload sessions: a staged file per session in the data directory, appended to by PATCH
//! (and the body of the closing PUT), with the sha256 computed as bytes arrive. Each append is
//! fsynced before it is acknowledged, so an acknowledged chunk survives a crash; after a
//! restart a session resumes from the staged file's length (the hash is then recomputed at the
//! end). Sessions idle longer than the upload TTL are removed by the janitor.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use crate::oci::{Algorithm, Digest, Hasher};

/// A session's live state. Held under a per-session async lock so appends never interleave.
#[derive(Clone)]
pub struct Live {
    /// Repository it uploads into.
    pub repo: String,
    /// Bytes staged so far.
    pub offset: u64,
    /// sha256 of the staged bytes; `None` after a restart (recomputed at the end).
    pub hasher: Option<Hasher>,
    /// Whether the session record is known to be durable (it is created with a lazy commit).
    pub durable: bool,
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The client's body broke off.
    #[error("request body broke off: {0}")]
    Body(String),
    /// The blob would exceed the configured limit.
    #[error("blob exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// The staged file could not be written.
    #[error("staging file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The session table.
pub struct Uploads {
    dir: PathBuf,
    live: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Live>>>>,
}

/// Coalesce body frames to this size before handing them to the writer thread.
const WRITE_CHUNK: usize = 1024 * 1024;

impl Uploads {
    /// Sessions staged under `dir`.
    pub fn new(dir: PathBuf) -> std::io::Result<Uploads> {
        std::fs::create_dir_all(&dir)?;
        Ok(Uploads {
            dir,
            live: Mutex::new(HashMap::new()),
        })
    }

    /// The staged file of a session.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Create the staged file of a new session.
    pub async fn create_file(&self, id: &str, repo: &str) -> std::io::Result<()> {
        let path = self.path(id);
        tokio::fs::File::create(&path).await?;
        self.insert(
            id,
            Live {
                repo: repo.to_string(),
                offset: 0,
                hasher: Some(Hasher::new(Algorithm::Sha256)),
                durable: false,
            },
        );
        Ok(())
    }

    fn insert(&self, id: &str, live: Live) -> Arc<tokio::sync::Mutex<Live>> {
        let l = Arc::new(tokio::sync::Mutex::new(live));
        if let Ok(mut m) = self.live.lock() {
            m.insert(id.to_string(), l.clone());
        }
        l
    }

    /// A session's live state, restored from its staged file if this process has not seen it
    /// (after a restart). `repo` comes from the durable session record.
    pub async fn get(&self, id: &str, repo: &str) -> Option<Arc<tokio::sync::Mutex<Live>>> {
        if let Some(l) = self.live.lock().ok().and_then(|m| m.get(id).cloned()) {
            return Some(l);
        }
        let len = tokio::fs::metadata(self.path(id)).await.ok()?.len();
        Some(self.insert(
            id,
            Live {
                repo: repo.to_string(),
                offset: len,
                hasher: (len == 0).then(|| Hasher::new(Algorithm::Sha256)),
                durable: true,
            },
        ))
    }

    /// Forget a session and delete its staged file (if still there).
    pub async fn remove(&self, id: &str) {
        if let Ok(mut m) = self.live.lock() {
            m.remove(id);
        }
        let _ = tokio::fs::remove_file(self.path(id)).await;
    }

    /// Append a body to a session. On return `live` reflects exactly what is on disk, even when
    /// the body broke off part way.
    pub async fn append<S, E>(
        &self,
        id: &str,
        live: &mut Live,
        body: S,
        limit: Option<u64>,
    ) -> Result<u64, AppendError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = self.path(id);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let hasher = live.hasher.take();
        let wpath = path.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut hasher = hasher;
            let mut written = 0u64;
            let res = (|| -> std::io::Result<()> {
                let mut f = std::fs::OpenOptions::new().append(true).open(&wpath)?;
                while let Some(chunk) = rx.blocking_recv() {
                    f.write_all(&chunk)?;
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    written += chunk.len() as u64;
                }
                f.sync_data()
            })();
            (written, hasher, res)
        });
        let mut body = body;
        let mut buf = BytesMut::with_capacity(WRITE_CHUNK);
        let mut total = live.offset;
        let mut failure: Option<AppendError> = None;
        while let Some(frame) = body.next().await {
            match frame {
                Ok(b) => {
                    total += b.len() as u64;
                    if let Some(max) = limit
                        && total > max
                    {
                        failure = Some(AppendError::TooLarge(max));
                        break;
                    }
                    buf.extend_from_slice(&b);
                    if buf.len() >= WRITE_CHUNK && tx.send(buf.split().freeze()).await.is_err() {
                        break; // writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    failure = Some(AppendError::Body(e.to_string()));
                    break;
                }
            }
        }
        // Bytes that arrived before a broken body are kept (the client resumes after them); a
        // body over the limit is not written past it.
        if !buf.is_empty() && !matches!(failure, Some(AppendError::TooLarge(_))) {
            let _ = tx.send(buf.freeze()).await;
        }
        drop(tx);
        let (written, hasher, res) = writer.await.map_err(|e| AppendError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        live.offset += written;
        live.hasher = hasher;
        if let Err(source) = res {
            // The file may hold a partial write; trust only its length from now on.
            live.hasher = None;
            if let Ok(m) = std::fs::metadata(&path) {
                live.offset = m.len();
            }
            return Err(AppendError::Io { path, source });
        }
        match failure {
            Some(f) => Err(f),
            None => Ok(live.offset),
        }
    }

    /// The digest of a session's staged bytes under `alg`: from the running hash when it is
    /// there and matches, otherwise by reading the file.
    pub async fn digest(
        &self,
        id: &str,
        live: &Live,
        alg: Algorithm,
    ) -> Result<Digest, AppendError> {
        if alg == Algorithm::Sha256
            && let Some(h) = &live.hasher
        {
            return Ok(h.clone().finish());
        }
        let path = self.path(id);
        tokio::task::spawn_blocking(move || hash_file(&path, alg))
            .await
            .map_err(|e| AppendError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })?
    }

    /// Ids of staged files on disk (for the janitor).
    pub fn staged_ids(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Hash a file.
pub fn hash_file(path: &Path, alg: Algorithm) -> Result<Digest, AppendError> {
    let io = |source| AppendError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; WRITE_CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn append_hash_and_resume() {
        let dir = tempfile::tempdir().expect("tmp");
        let u = Uploads::new(dir.path().to_path_buf()).expect("uploads");
        u.create_file("s1", "repo").await.expect("create");
        let live = u.get("s1", "repo").await.expect("live");
        let mut l = live.lock().await;
        let chunks: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ];
        let off = u
            .append("s1", &mut l, futures::stream::iter(chunks), None)
            .await
            .expect("append");
        assert_eq!(off, 11);
        let d = u.digest("s1", &l, Algorithm::Sha256).await.expect("digest");
        assert_eq!(d, Digest::sha256_of(b"hello world"));
        drop(l);
        // A broken body keeps what arrived.
        let u2 = Uploads::new(dir.path().to_path_buf()).expect("again");
        let live = u2.get("s1", "repo").await.expect("restored");
        let mut l = live.lock().await;
        assert_eq!(l.offset, 11);
        assert!(l.hasher.is_none());
        let chunks: Vec<Result<Bytes, String>> =
            vec![Ok(Bytes::from_static(b"!")), Err("reset".into())];
        let r = u2
            .append("s1", &mut l, futures::stream::iter(chunks), None)
            .await;
        assert!(matches!(r, Err(AppendError::Body(_))));
        assert_eq!(l.offset, 12);
        let d = u2.digest("s1", &l, Algorithm::Sha512).await.expect("512");
        assert_eq!(d, Digest::of(Algorithm::Sha512, b"hello world!"));
        let chunks: Vec<Result<Bytes, String>> = vec![Ok(Bytes::from(vec![0u8; 20]))];
        let r = u2
            .append("s1", &mut l, futures::stream::iter(chunks), Some(20))
            .await;
        assert!(matches!(r, Err(AppendError::TooLarge(20))));
    }
}
