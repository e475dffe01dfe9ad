//! Content storage through `object_store`: blobs and manifests are immutable objects named by
//! digest (`blobs/sha256/ab/abcdef…`). A local directory by default; S3, Azure Blob and GCS
//! by URL. Uploads are staged as files in the data directory and placed into storage only
//! after their digest has been verified, so storage never holds unverified bytes under a
//! digest's name.
//!
//! On a local directory a verified upload is placed with an fsync and an atomic rename (no
//! copy), and reads stream the file in large chunks on the blocking pool; elsewhere placement
//! is a multipart upload and reads are the store's own stream.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
};

use crate::oci::Digest;
use crate::oci::range::ByteRange;

/// Read chunk size for local files.
const READ_CHUNK: usize = 1024 * 1024;
/// Part size of multipart uploads to cloud stores.
const PART_SIZE: usize = 16 * 1024 * 1024;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URL could not be used.
    #[error("storage URL {url:?} is not usable: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The object store failed.
    #[error("object storage error: {0}; check the storage backend's reachability and credentials")]
    Store(#[from] object_store::Error),
    /// A local file operation failed.
    #[error("storage I/O error on {path}: {source}; check disk space and permissions")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Content that metadata says exists is missing from storage.
    #[error("content {0} is missing from storage")]
    Missing(String),
}

fn io(path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A byte stream of stored content.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Content storage.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Set when storage is a local directory: placement by rename, reads from the file.
    local: Option<Arc<LocalFileSystem>>,
    description: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// Where content lives in the store.
pub fn object_path(digest: &Digest) -> ObjPath {
    let hex = digest.hex();
    ObjPath::from(format!(
        "blobs/{}/{}/{}",
        digest.algorithm().as_str(),
        &hex[..2],
        hex
    ))
}

fn digest_from_path(p: &ObjPath) -> Option<String> {
    let parts: Vec<&str> = p.as_ref().split('/').collect();
    match parts.as_slice() {
        ["blobs", alg, _, hex] => Some(format!("{alg}:{hex}")),
        _ => None,
    }
}

impl Storage {
    /// Open storage: `url` (or `data_dir/storage` when `None`) with object-store options.
    pub fn open(
        url: Option<&str>,
        data_dir: &Path,
        options: &[(String, String)],
    ) -> Result<Storage, StorageError> {
        let local_dir = match url {
            None => Some(data_dir.join("storage")),
            Some(u) => u.strip_prefix("file://").map(PathBuf::from),
        };
        if let Some(dir) = local_dir {
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let fs = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| StorageError::Url {
                    url: dir.display().to_string(),
                    reason: e.to_string(),
                })?
                .with_fsync(true)
                .with_automatic_cleanup(true);
            let fs = Arc::new(fs);
            return Ok(Storage {
                store: fs.clone(),
                local: Some(fs),
                description: format!("file://{}", dir.display()),
            });
        }
        let url_s = url.unwrap_or_default();
        let parsed = reqwest::Url::parse(url_s).map_err(|e| StorageError::Url {
            url: url_s.to_string(),
            reason: e.to_string(),
        })?;
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, options.iter().map(|(k, v)| (k, v.clone())))
                .map_err(|e| StorageError::Url {
                    url: url_s.to_string(),
                    reason: e.to_string(),
                })?;
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            Arc::from(store)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
        };
        Ok(Storage {
            store,
            local: None,
            description: url_s.to_string(),
        })
    }

    /// Whether storage is a local directory.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Size of stored content, or `None` when it is not there.
    pub async fn size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match self.store.head(&object_path(digest)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stream content, whole or a range of it.
    pub async fn read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        let opts = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.start..r.end)),
            ..GetOptions::default()
        };
        let res = match self.store.get_opts(&object_path(digest), opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::Missing(digest.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let span = res.range.clone();
        match res.payload {
            GetResultPayload::File(file, path) => Ok(file_stream(file, path, span.start, span.end)),
            GetResultPayload::Stream(s) => Ok(s.map_err(std::io::Error::other).boxed()),
        }
    }

    /// Read small content (a manifest) whole.
    pub async fn read_all(&self, digest: &Digest) -> Result<Bytes, StorageError> {
        let mut s = self.read(digest, None).await?;
        let mut buf = Vec::new();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| io(Path::new(&digest.to_string()), e))?;
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    }

    /// Store small content (a manifest) whose digest the caller has verified.
    pub async fn put_bytes(&self, digest: &Digest, data: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&object_path(digest), PutPayload::from_bytes(data))
            .await?;
        Ok(())
    }

    /// Move a verified staged file into storage under its digest. The staged file is gone
    /// afterwards (renamed or uploaded and removed).
    pub async fn place(&self, staged: &Path, digest: &Digest) -> Result<(), StorageError> {
        let loc = object_path(digest);
        if let Some(fs) = &self.local {
            let target = fs.path_to_filesystem(&loc)?;
            let staged = staged.to_path_buf();
            return tokio::task::spawn_blocking(move || place_local(&staged, &target))
                .await
                .map_err(|e| io(Path::new("spawn_blocking"), std::io::Error::other(e)))?;
        }
        let upload = self.store.put_multipart(&loc).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut file = tokio::fs::File::open(staged)
            .await
            .map_err(|e| io(staged, e))?;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            use tokio::io::AsyncReadExt;
            let n = file.read(&mut buf).await.map_err(|e| io(staged, e))?;
            if n == 0 {
                break;
            }
            w.wait_for_capacity(4).await?;
            w.write(&buf[..n]);
        }
        w.finish().await?;
        let _ = tokio::fs::remove_file(staged).await;
        Ok(())
    }

    /// Delete content (GC). Missing content is not an error.
    pub async fn delete(&self, digest_str: &str) -> Result<(), StorageError> {
        let Ok(d) = Digest::parse(digest_str) else {
            return Ok(());
        };
        match self.store.delete(&object_path(&d)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored object under `blobs/`: digest string and last-modified time in ms.
    pub async fn list(&self) -> Result<Vec<(String, i64)>, StorageError> {
        let prefix = ObjPath::from("blobs");
        let metas: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                digest_from_path(&m.location).map(|d| (d, m.last_modified.timestamp_millis()))
            })
            .collect())
    }
}

fn place_local(staged: &Path, target: &Path) -> Result<(), StorageError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(staged)
        .map_err(|e| io(staged, e))?;
    f.sync_all().map_err(|e| io(staged, e))?;
    drop(f);
    let parent = target.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    if let Err(e) = std::fs::rename(staged, target) {
        // A different filesystem (EXDEV): copy, sync, rename into place.
        if e.raw_os_error() != Some(18) {
            return Err(io(target, e));
        }
        let tmp = target.with_extension("tmp");
        std::fs::copy(staged, &tmp).map_err(|e| io(&tmp, e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, target).map_err(|e| io(target, e))?;
        let _ = std::fs::remove_file(staged);
    }
    // Make the rename itself durable.
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Stream `start..end` of a file in large chunks read on the blocking pool, with one chunk
/// read ahead so disk and network overlap.
fn file_stream(file: std::fs::File, path: PathBuf, start: u64, end: u64) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(3);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut remaining = end.saturating_sub(start);
        while remaining > 0 {
            let want = remaining.min(READ_CHUNK as u64) as usize;
            // read_to_end fills spare capacity without zeroing it first.
            let mut buf = Vec::with_capacity(want);
            match (&mut file).take(want as u64).read_to_end(&mut buf) {
                Ok(n) if n == want => {
                    remaining -= want as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // client went away
                    }
                }
                Ok(n) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{}: short read ({n} of {want} bytes)", path.display()),
                    )));
                    return;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", path.display()),
                    )));
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(s: ByteStream) -> Vec<u8> {
        let chunks: Vec<Bytes> = s.try_collect().await.expect("bytes");
        chunks.concat()
    }

    #[tokio::test]
    async fn local_place_read_list_delete() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Storage::open(None, dir.path(), &[]).expect("open");
        let data = vec![7u8; 1_500_000];
        let d = Digest::sha256_of(&data);
        let staged = dir.path().join("staged");
        std::fs::write(&staged, &data).expect("write");
        s.place(&staged, &d).await.expect("place");
        assert!(!staged.exists());
        assert_eq!(s.size(&d).await.expect("size"), Some(data.len() as u64));
        let all: Vec<u8> = collect(s.read(&d, None).await.expect("read")).await;
        assert_eq!(all, data);
        let part = collect(
            s.read(&d, Some(ByteRange { start: 10, end: 20 }))
                .await
                .expect("range"),
        )
        .await;
        assert_eq!(part.len(), 10);
        assert_eq!(
            s.list().await.expect("list"),
            vec![(d.to_string(), s.list().await.expect("l")[0].1)]
        );
        s.delete(&d.to_string()).await.expect("delete");
        assert_eq!(s.size(&d).await.expect("size"), None);
    }

    #[tokio::test]
    async fn memory_store_works_too() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Storage::open(Some("memory://"), dir.path(), &[]).expect("open");
        let d = Digest::sha256_of(b"m");
        s.put_bytes(&d, Bytes::from_static(b"m"))
            .await
            .expect("put");
        assert_eq!(
            s.read_all(&d).await.expect("read"),
            Bytes::from_static(b"m")
        );
        let staged = dir.path().join("x");
        let data = vec![1u8; 100];
        std::fs::write(&staged, &data).expect("w");
        let d2 = Digest::sha256_of(&data);
        s.place(&staged, &d2).await.expect("place");
        assert_eq!(s.size(&d2).await.expect("size"), Some(100));
    }
}
