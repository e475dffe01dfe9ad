//! Metadata in redb: the replicated registers (tags, manifests, blob links), the change log,
//! replication cursors, what content is stored, upload sessions, and the indexes derived from
//! registers (referrers, catalog, which digests are in use).
//!
//! Every state change happens in one redb write transaction (fsynced on commit), so a kill -9
//! leaves either all of a change or none of it; an acknowledged push has been committed.
//! Indexes are updated in the same transaction as the register they derive from.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::hlc::{Clock, Hlc, Register, Stamp, now_ms, wins};
use crate::oci::Digest;

const REGS: TableDefinition<&str, &[u8]> = TableDefinition::new("registers");
const CONTENT: TableDefinition<&str, (u64, u64)> = TableDefinition::new("content");
const USES: TableDefinition<&str, u8> = TableDefinition::new("uses");
const REFERRERS: TableDefinition<&str, u8> = TableDefinition::new("referrers");
const REPOS: TableDefinition<&str, u8> = TableDefinition::new("repos");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
const VIEWS: TableDefinition<&str, &[u8]> = TableDefinition::new("peer_views");
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
const TOMBS: TableDefinition<&str, &[u8]> = TableDefinition::new("tombstones");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

/// A metadata failure. These are internal: the request fails with 500 and the message.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// redb reported an error (disk full, corruption, I/O).
    #[error("metadata database error: {0}; check the data directory's disk and permissions")]
    Db(#[from] redb::Error),
    /// A stored record could not be decoded.
    #[error("metadata record {0:?} is unreadable: {1}")]
    Decode(String, String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MetaError {
            fn from(e: $t) -> Self {
                MetaError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What a register is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Key {
    /// A tag in a repository.
    Tag {
        /// Repository.
        repo: String,
        /// Tag.
        tag: String,
    },
    /// A manifest's presence in a repository.
    Manifest {
        /// Repository.
        repo: String,
        /// Manifest digest.
        digest: Digest,
    },
    /// A blob's link into a repository.
    Blob {
        /// Repository.
        repo: String,
        /// Blob digest.
        digest: Digest,
    },
}

impl Key {
    /// The storage key: `T\0repo\0tag`, `M\0repo\0digest`, `B\0repo\0digest`.
    pub fn encode(&self) -> String {
        match self {
            Key::Tag { repo, tag } => format!("T\0{repo}\0{tag}"),
            Key::Manifest { repo, digest } => format!("M\0{repo}\0{digest}"),
            Key::Blob { repo, digest } => format!("B\0{repo}\0{digest}"),
        }
    }

    fn decode(s: &str) -> Option<Key> {
        let mut it = s.split('\0');
        let kind = it.next()?;
        let repo = it.next()?.to_string();
        let last = it.next()?;
        Some(match kind {
            "T" => Key::Tag {
                repo,
                tag: last.to_string(),
            },
            "M" => Key::Manifest {
                repo,
                digest: Digest::parse(last).ok()?,
            },
            "B" => Key::Blob {
                repo,
                digest: Digest::parse(last).ok()?,
            },
            _ => return None,
        })
    }

    /// The repository.
    pub fn repo(&self) -> &str {
        match self {
            Key::Tag { repo, .. } | Key::Manifest { repo, .. } | Key::Blob { repo, .. } => repo,
        }
    }
}

/// A manifest's metadata, as its register holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestMeta {
    /// Media type (also the Content-Type served).
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Blobs it references.
    #[serde(default)]
    pub blobs: Vec<Digest>,
    /// Manifests it references (index children).
    #[serde(default)]
    pub manifests: Vec<Digest>,
    /// Its subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    /// Its artifact type for referrers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A register's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Value {
    /// A tag points at a manifest.
    Tag {
        /// The manifest's digest.
        digest: Digest,
    },
    /// A manifest is present.
    Manifest(ManifestMeta),
    /// A blob is linked.
    Blob {
        /// Its size.
        size: u64,
    },
}

/// A stored register: the winning write and where it sits in its origin's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The register.
    #[serde(flatten)]
    pub reg: Register<Value>,
    /// The write's sequence number in its origin region's change log.
    pub origin_seq: u64,
}

impl Entry {
    /// The value if present.
    pub fn value(&self) -> Option<&Value> {
        self.reg.value.as_ref()
    }
}

/// One entry of a replica's change log: a register write made at that replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the log (1-based, gapless).
    pub seq: u64,
    /// Wall time of the write, for lag in seconds.
    pub at_ms: u64,
    /// What was written.
    pub key: Key,
    /// The register written.
    pub reg: Register<Value>,
}

/// What we last heard from a peer about its own state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// The peer's log head.
    pub head: u64,
    /// The peer's applied position in every other region's log (including ours).
    pub applied: BTreeMap<String, u64>,
    /// When we heard it.
    pub at_ms: u64,
}

/// An upload session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Repository it uploads into.
    pub repo: String,
    /// When it started.
    pub created_ms: u64,
}

/// A tombstone waiting to expire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// Region that wrote the delete.
    pub origin: String,
    /// Its position in the origin's log.
    pub origin_seq: u64,
    /// Per peer: that peer's log head when it reported having the tombstone. The tombstone can
    /// go once every peer has reported it and we have applied each peer's log that far.
    pub acks: BTreeMap<String, u64>,
}

/// The result of applying a write: did it win, and what did it replace.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The key.
    pub key: Key,
    /// The new register.
    pub entry: Entry,
    /// The value it replaced, if any.
    pub previous: Option<Entry>,
}

/// The metadata store.
#[derive(Clone)]
pub struct Meta {
    db: Arc<Database>,
    region: Arc<str>,
    clock: Arc<Mutex<Clock>>,
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, MetaError> {
    serde_json::from_slice(bytes).map_err(|e| MetaError::Decode(what.to_string(), e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our own types always serialize.
    serde_json::to_vec(v).unwrap_or_default()
}

fn prefix_end(prefix: &str) -> String {
    // Every prefix we scan ends in '\0'; the range end replaces it with '\x01'.
    let mut s = prefix.to_string();
    s.pop();
    s.push('\x01');
    s
}

impl Meta {
    /// Open (or create) the database at `path` for `region`.
    pub fn open(path: &Path, region: &str) -> Result<Meta, MetaError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            // Create every table so readers never see "table does not exist".
            txn.open_table(REGS)?;
            txn.open_table(CONTENT)?;
            txn.open_table(USES)?;
            txn.open_table(REFERRERS)?;
            txn.open_table(REPOS)?;
            txn.open_table(LOG)?;
            txn.open_table(CURSORS)?;
            txn.open_table(VIEWS)?;
            txn.open_table(UPLOADS)?;
            txn.open_table(TOMBS)?;
            txn.open_table(STATE)?;
        }
        txn.commit()?;
        let last = {
            let r = db.begin_read()?;
            let t = r.open_table(STATE)?;
            match t.get("hlc")? {
                Some(v) => decode::<Hlc>("hlc", v.value())?,
                None => Hlc::default(),
            }
        };
        Ok(Meta {
            db: Arc::new(db),
            region: region.into(),
            clock: Arc::new(Mutex::new(Clock::resume(last))),
        })
    }

    /// This replica's region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Run a write transaction. `f` reads and writes through the [`Writer`]; everything it did
    /// commits atomically when it returns `Ok`, and nothing does when it returns `Err`.
    pub fn write<T, E: From<MetaError>>(
        &self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<T, E>,
    ) -> Result<(T, Vec<Change>), E> {
        self.write_with(true, f)
    }

    /// A write that is not fsynced on its own: it becomes durable with the next durable
    /// commit. For state whose loss in a crash is harmless (a new, still empty upload session:
    /// the client is told the session is unknown and starts another).
    pub fn write_lazy<T, E: From<MetaError>>(
        &self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<T, E>,
    ) -> Result<(T, Vec<Change>), E> {
        self.write_with(false, f)
    }

    fn write_with<T, E: From<MetaError>>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut Writer<'_>) -> Result<T, E>,
    ) -> Result<(T, Vec<Change>), E> {
        let mut txn = self.db.begin_write().map_err(MetaError::from)?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| MetaError::Db(e.into()))?;
        }
        let (out, changes) = {
            let mut w = Writer {
                meta: self,
                txn: &txn,
                changes: Vec::new(),
            };
            let out = f(&mut w)?;
            (out, w.changes)
        };
        let last = self.clock.lock().map(|c| c.last()).unwrap_or_default();
        {
            let mut st = txn.open_table(STATE).map_err(MetaError::from)?;
            st.insert("hlc", encode(&last).as_slice())
                .map_err(MetaError::from)?;
        }
        txn.commit().map_err(MetaError::from)?;
        Ok((out, changes))
    }

    fn read(&self) -> Result<redb::ReadTransaction, MetaError> {
        Ok(self.db.begin_read()?)
    }

    /// A register.
    pub fn get(&self, key: &Key) -> Result<Option<Entry>, MetaError> {
        let r = self.read()?;
        let t = r.open_table(REGS)?;
        let k = key.encode();
        match t.get(k.as_str())? {
            Some(v) => Ok(Some(decode(&k, v.value())?)),
            None => Ok(None),
        }
    }

    /// A register's value if present.
    pub fn get_value(&self, key: &Key) -> Result<Option<Value>, MetaError> {
        Ok(self.get(key)?.and_then(|e| e.reg.value))
    }

    /// Whether a repository has ever had content.
    pub fn repo_exists(&self, repo: &str) -> Result<bool, MetaError> {
        let r = self.read()?;
        let t = r.open_table(REPOS)?;
        Ok(t.get(repo)?.is_some())
    }

    /// Present tags of a repository, sorted, after `last`, at most `n`; and whether more follow.
    pub fn tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<(String, Digest)>, bool), MetaError> {
        let r = self.read()?;
        let t = r.open_table(REGS)?;
        let prefix = format!("T\0{repo}\0");
        let start = match last {
            // '\0' sorts below every tag character, so "last\0" starts right after "last".
            Some(l) => format!("{prefix}{l}\0"),
            None => prefix.clone(),
        };
        let end = prefix_end(&prefix);
        let mut out = Vec::new();
        for item in t.range(start.as_str()..end.as_str())? {
            let (k, v) = item?;
            let e: Entry = decode(k.value(), v.value())?;
            if let Some(Value::Tag { digest }) = e.reg.value {
                if out.len() == n {
                    return Ok((out, true));
                }
                let tag = k.value()[prefix.len()..].to_string();
                out.push((tag, digest));
            }
        }
        Ok((out, false))
    }

    /// Every tag register of a repository, present or not.
    pub fn tag_entries(&self, repo: &str) -> Result<Vec<(String, Entry)>, MetaError> {
        let r = self.read()?;
        let t = r.open_table(REGS)?;
        let prefix = format!("T\0{repo}\0");
        let end = prefix_end(&prefix);
        let mut out = Vec::new();
        for item in t.range(prefix.as_str()..end.as_str())? {
            let (k, v) = item?;
            out.push((
                k.value()[prefix.len()..].to_string(),
                decode(k.value(), v.value())?,
            ));
        }
        Ok(out)
    }

    /// Repositories after `last`, at most `n`, and whether more follow.
    pub fn repos(
        &self,
        last: Option<&str>,
        n: usize,
        filter: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<String>, bool), MetaError> {
        let r = self.read()?;
        let t = r.open_table(REPOS)?;
        let mut out = Vec::new();
        let iter = match last {
            Some(l) => {
                t.range::<&str>((std::ops::Bound::Excluded(l), std::ops::Bound::Unbounded))?
            }
            None => t.range::<&str>(..)?,
        };
        for item in iter {
            let (k, _) = item?;
            if !filter(k.value()) {
                continue;
            }
            if out.len() == n {
                return Ok((out, true));
            }
            out.push(k.value().to_string());
        }
        Ok((out, false))
    }

    /// Present manifests in `repo` whose subject is `subject`.
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> Result<Vec<(Digest, ManifestMeta)>, MetaError> {
        let r = self.read()?;
        let t = r.open_table(REFERRERS)?;
        let regs = r.open_table(REGS)?;
        let prefix = format!("{repo}\0{subject}\0");
        let end = prefix_end(&prefix);
        let mut out = Vec::new();
        for item in t.range(prefix.as_str()..end.as_str())? {
            let (k, _) = item?;
            let Ok(d) = Digest::parse(&k.value()[prefix.len()..]) else {
                continue;
            };
            let key = Key::Manifest {
                repo: repo.to_string(),
                digest: d.clone(),
            }
            .encode();
            if let Some(v) = regs.get(key.as_str())? {
                let e: Entry = decode(&key, v.value())?;
                if let Some(Value::Manifest(m)) = e.reg.value {
                    out.push((d, m));
                }
            }
        }
        Ok(out)
    }

    /// Stored content: `(size, created_ms)`.
    pub fn content(&self, digest: &Digest) -> Result<Option<(u64, u64)>, MetaError> {
        let r = self.read()?;
        let t = r.open_table(CONTENT)?;
        Ok(t.get(digest.to_string().as_str())?.map(|v| v.value()))
    }

    /// Every stored content digest with its size and creation time.
    pub fn all_content(&self) -> Result<Vec<(String, u64, u64)>, MetaError> {
        let r = self.read()?;
        let t = r.open_table(CONTENT)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            let (size, created) = v.value();
            out.push((k.value().to_string(), size, created));
        }
        Ok(out)
    }

    /// Whether any present register uses `digest` (a link, a manifest, a manifest's reference).
    pub fn in_use(&self, digest: &str) -> Result<bool, MetaError> {
        let r = self.read()?;
        let t = r.open_table(USES)?;
        in_use(&t, digest)
    }

    /// The log head (0 when empty).
    pub fn head(&self) -> Result<u64, MetaError> {
        let r = self.read()?;
        let t = r.open_table(LOG)?;
        Ok(t.last()?.map(|(k, _)| k.value()).unwrap_or(0))
    }

    /// Log entries after `since`, at most `limit`.
    pub fn changes_since(&self, since: u64, limit: usize) -> Result<Vec<Change>, MetaError> {
        let r = self.read()?;
        let t = r.open_table(LOG)?;
        let mut out = Vec::new();
        for item in t.range(since + 1..)? {
            let (k, v) = item?;
            out.push(decode(&format!("log {}", k.value()), v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Our applied position in every peer's log.
    pub fn cursors(&self) -> Result<BTreeMap<String, u64>, MetaError> {
        let r = self.read()?;
        let t = r.open_table(CURSORS)?;
        let mut out = BTreeMap::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.insert(k.value().to_string(), v.value());
        }
        Ok(out)
    }

    /// What every peer last told us.
    pub fn views(&self) -> Result<BTreeMap<String, PeerView>, MetaError> {
        let r = self.read()?;
        let t = r.open_table(VIEWS)?;
        let mut out = BTreeMap::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.insert(k.value().to_string(), decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// An upload session.
    pub fn upload(&self, id: &str) -> Result<Option<UploadRecord>, MetaError> {
        let r = self.read()?;
        let t = r.open_table(UPLOADS)?;
        match t.get(id)? {
            Some(v) => Ok(Some(decode(id, v.value())?)),
            None => Ok(None),
        }
    }

    /// Every upload session.
    pub fn uploads(&self) -> Result<Vec<(String, UploadRecord)>, MetaError> {
        let r = self.read()?;
        let t = r.open_table(UPLOADS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), decode(k.value(), v.value())?));
        }
        Ok(out)
    }

    /// Every pending tombstone.
    pub fn tombstones(&self) -> Result<Vec<(String, Tombstone)>, MetaError> {
        let r = self.read()?;
        let t = r.open_table(TOMBS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), decode(k.value(), v.value())?));
        }
        Ok(out)
    }

    /// Count of registers by kind and of present ones, for status.
    pub fn counts(&self) -> Result<BTreeMap<&'static str, u64>, MetaError> {
        let r = self.read()?;
        let mut out = BTreeMap::new();
        out.insert("log_head", {
            let t = r.open_table(LOG)?;
            t.last()?.map(|(k, _)| k.value()).unwrap_or(0)
        });
        out.insert("repositories", r.open_table(REPOS)?.len()?);
        out.insert("content", r.open_table(CONTENT)?.len()?);
        out.insert("registers", r.open_table(REGS)?.len()?);
        out.insert("tombstones", r.open_table(TOMBS)?.len()?);
        out.insert("uploads", r.open_table(UPLOADS)?.len()?);
        Ok(out)
    }
}

fn in_use(t: &impl ReadableTable<&'static str, u8>, digest: &str) -> Result<bool, MetaError> {
    let prefix = format!("{digest}\0");
    let end = prefix_end(&prefix);
    Ok(t.range(prefix.as_str()..end.as_str())?.next().is_some())
}

/// The handle a write transaction's closure gets.
pub struct Writer<'a> {
    meta: &'a Meta,
    txn: &'a redb::WriteTransaction,
    changes: Vec<Change>,
}

impl Writer<'_> {
    /// A register as this transaction sees it.
    pub fn get(&self, key: &Key) -> Result<Option<Entry>, MetaError> {
        let t = self.txn.open_table(REGS)?;
        let k = key.encode();
        let v = t.get(k.as_str())?;
        match v {
            Some(v) => Ok(Some(decode(&k, v.value())?)),
            None => Ok(None),
        }
    }

    /// A register's value if present.
    pub fn get_value(&self, key: &Key) -> Result<Option<Value>, MetaError> {
        Ok(self.get(key)?.and_then(|e| e.reg.value))
    }

    /// Write a register at this replica: stamped now, appended to the change log. Local writes
    /// always win locally (the clock is past everything this replica has seen).
    pub fn put_local(&mut self, key: Key, value: Option<Value>) -> Result<Applied, MetaError> {
        let hlc = match self.meta.clock.lock() {
            Ok(mut c) => c.tick(now_ms()),
            Err(p) => p.into_inner().tick(now_ms()),
        };
        let reg = Register {
            stamp: Stamp {
                hlc,
                region: self.meta.region.to_string(),
            },
            value,
        };
        let seq = {
            let t = self.txn.open_table(LOG)?;
            t.last()?.map(|(k, _)| k.value()).unwrap_or(0) + 1
        };
        let change = Change {
            seq,
            at_ms: now_ms(),
            key: key.clone(),
            reg: reg.clone(),
        };
        {
            let mut t = self.txn.open_table(LOG)?;
            t.insert(seq, encode(&change).as_slice())?;
        }
        self.changes.push(change);
        let entry = Entry {
            reg,
            origin_seq: seq,
        };
        let previous = self.get(&key)?;
        self.store(&key, &entry, previous.as_ref())?;
        Ok(Applied {
            key,
            entry,
            previous,
        })
    }

    /// Merge a register written elsewhere. Returns what changed when it won.
    pub fn merge(&mut self, key: &Key, incoming: Entry) -> Result<Option<Applied>, MetaError> {
        match self.meta.clock.lock() {
            Ok(mut c) => c.observe(incoming.reg.stamp.hlc),
            Err(p) => p.into_inner().observe(incoming.reg.stamp.hlc),
        }
        let previous = self.get(key)?;
        if !wins(previous.as_ref().map(|e| &e.reg), &incoming.reg) {
            return Ok(None);
        }
        self.store(key, &incoming, previous.as_ref())?;
        Ok(Some(Applied {
            key: key.clone(),
            entry: incoming,
            previous,
        }))
    }

    /// Drop a register entirely (an expired tombstone).
    pub fn forget(&mut self, encoded_key: &str) -> Result<(), MetaError> {
        let mut t = self.txn.open_table(REGS)?;
        let gone = match t.get(encoded_key)? {
            Some(v) => decode::<Entry>(encoded_key, v.value())?.reg.value.is_none(),
            None => true,
        };
        if gone {
            t.remove(encoded_key)?;
            let mut tombs = self.txn.open_table(TOMBS)?;
            tombs.remove(encoded_key)?;
        }
        Ok(())
    }

    fn store(
        &mut self,
        key: &Key,
        entry: &Entry,
        previous: Option<&Entry>,
    ) -> Result<(), MetaError> {
        let k = key.encode();
        {
            let mut t = self.txn.open_table(REGS)?;
            t.insert(k.as_str(), encode(entry).as_slice())?;
        }
        let repo = key.repo();
        // Retract the old value's index entries, then add the new one's.
        if let Some(prev) = previous.and_then(|p| p.reg.value.as_ref()) {
            self.index(key, prev, false)?;
        }
        {
            let mut tombs = self.txn.open_table(TOMBS)?;
            match &entry.reg.value {
                Some(v) => {
                    self.index(key, v, true)?;
                    self.txn.open_table(REPOS)?.insert(repo, 1)?;
                    tombs.remove(k.as_str())?;
                }
                None => {
                    let tomb = Tombstone {
                        origin: entry.reg.stamp.region.clone(),
                        origin_seq: entry.origin_seq,
                        acks: BTreeMap::new(),
                    };
                    tombs.insert(k.as_str(), encode(&tomb).as_slice())?;
                }
            }
        }
        Ok(())
    }

    fn index(&mut self, key: &Key, value: &Value, add: bool) -> Result<(), MetaError> {
        let mut uses = self.txn.open_table(USES)?;
        let mut put = |k: String| -> Result<(), MetaError> {
            if add {
                uses.insert(k.as_str(), 1)?;
            } else {
                uses.remove(k.as_str())?;
            }
            Ok(())
        };
        match (key, value) {
            (Key::Blob { repo, digest }, Value::Blob { .. }) => {
                put(format!("{digest}\0L\0{repo}\0"))?
            }
            (Key::Manifest { repo, digest }, Value::Manifest(m)) => {
                put(format!("{digest}\0M\0{repo}\0"))?;
                for b in m.blobs.iter().chain(m.manifests.iter()) {
                    put(format!("{b}\0R\0{repo}\0{digest}"))?;
                }
                drop(uses);
                if let Some(s) = &m.subject {
                    let mut refs = self.txn.open_table(REFERRERS)?;
                    let rk = format!("{repo}\0{s}\0{digest}");
                    if add {
                        refs.insert(rk.as_str(), 1)?;
                    } else {
                        refs.remove(rk.as_str())?;
                    }
                }
            }
            // A tag pins its manifest's content too, so GC never removes a tagged manifest
            // even if its manifest register lags behind.
            (Key::Tag { repo, tag }, Value::Tag { digest }) => {
                put(format!("{digest}\0T\0{repo}\0{tag}"))?
            }
            _ => {}
        }
        Ok(())
    }

    /// Stored content as this transaction sees it.
    pub fn content(&self, digest: &Digest) -> Result<Option<(u64, u64)>, MetaError> {
        let t = self.txn.open_table(CONTENT)?;
        Ok(t.get(digest.to_string().as_str())?.map(|v| v.value()))
    }

    /// Record that content is stored (after the bytes are durable in storage).
    pub fn put_content(&mut self, digest: &Digest, size: u64) -> Result<(), MetaError> {
        let mut t = self.txn.open_table(CONTENT)?;
        let k = digest.to_string();
        if t.get(k.as_str())?.is_none() {
            t.insert(k.as_str(), (size, now_ms()))?;
        }
        Ok(())
    }

    /// Whether any present register uses `digest`.
    pub fn in_use(&self, digest: &str) -> Result<bool, MetaError> {
        let t = self.txn.open_table(USES)?;
        in_use(&t, digest)
    }

    /// Forget stored content (GC, before the bytes are deleted).
    pub fn remove_content(&mut self, digest: &str) -> Result<(), MetaError> {
        self.txn.open_table(CONTENT)?.remove(digest)?;
        Ok(())
    }

    /// Set our applied position in a peer's log.
    pub fn set_cursor(&mut self, peer: &str, seq: u64) -> Result<(), MetaError> {
        self.txn.open_table(CURSORS)?.insert(peer, seq)?;
        Ok(())
    }

    /// Our applied position in a peer's log.
    pub fn cursor(&self, peer: &str) -> Result<u64, MetaError> {
        Ok(self
            .txn
            .open_table(CURSORS)?
            .get(peer)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Remember what a peer told us about itself.
    pub fn set_view(&mut self, peer: &str, view: &PeerView) -> Result<(), MetaError> {
        self.txn
            .open_table(VIEWS)?
            .insert(peer, encode(view).as_slice())?;
        Ok(())
    }

    /// Record an upload session.
    pub fn put_upload(&mut self, id: &str, rec: &UploadRecord) -> Result<(), MetaError> {
        self.txn
            .open_table(UPLOADS)?
            .insert(id, encode(rec).as_slice())?;
        Ok(())
    }

    /// Forget an upload session.
    pub fn remove_upload(&mut self, id: &str) -> Result<bool, MetaError> {
        Ok(self.txn.open_table(UPLOADS)?.remove(id)?.is_some())
    }

    /// Update a pending tombstone's acknowledgements.
    pub fn set_tombstone(&mut self, key: &str, t: &Tombstone) -> Result<(), MetaError> {
        let mut tombs = self.txn.open_table(TOMBS)?;
        if tombs.get(key)?.is_some() {
            tombs.insert(key, encode(t).as_slice())?;
        }
        Ok(())
    }
}

/// Decode a stored register key (for status and tombstone expiry).
pub fn decode_key(s: &str) -> Option<Key> {
    Key::decode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(region: &str) -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = Meta::open(&dir.path().join("meta.redb"), region).expect("open");
        (dir, m)
    }

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    #[test]
    fn local_writes_log_and_index() {
        let (_d, m) = meta("eastus");
        let ((), changes) = m
            .write(|w| -> Result<(), MetaError> {
                w.put_local(
                    Key::Blob {
                        repo: "a".into(),
                        digest: d("l"),
                    },
                    Some(Value::Blob { size: 1 }),
                )?;
                w.put_local(
                    Key::Tag {
                        repo: "a".into(),
                        tag: "v1".into(),
                    },
                    Some(Value::Tag { digest: d("m") }),
                )?;
                Ok(())
            })
            .expect("write");
        assert_eq!(changes.len(), 2);
        assert_eq!(m.head().expect("head"), 2);
        assert!(m.in_use(&d("l").to_string()).expect("uses"));
        assert!(m.repo_exists("a").expect("repo"));
        let (tags, more) = m.tags("a", None, 10).expect("tags");
        assert_eq!(tags.len(), 1);
        assert!(!more);
        m.write(|w| -> Result<(), MetaError> {
            w.put_local(
                Key::Blob {
                    repo: "a".into(),
                    digest: d("l"),
                },
                None,
            )?;
            Ok(())
        })
        .expect("delete");
        assert!(!m.in_use(&d("l").to_string()).expect("uses"));
        assert_eq!(m.tombstones().expect("tombs").len(), 1);
        assert_eq!(m.changes_since(1, 10).expect("since").len(), 2);
    }

    #[test]
    fn merge_keeps_the_greater_stamp() {
        let (_d, m) = meta("westus");
        let key = Key::Tag {
            repo: "a".into(),
            tag: "t".into(),
        };
        let mk = |wall, region: &str, digest| Entry {
            reg: Register {
                stamp: Stamp {
                    hlc: Hlc {
                        wall_ms: wall,
                        logical: 0,
                    },
                    region: region.into(),
                },
                value: Some(Value::Tag { digest }),
            },
            origin_seq: 1,
        };
        m.write(|w| -> Result<(), MetaError> {
            assert!(w.merge(&key, mk(10, "eastus", d("x")))?.is_some());
            assert!(w.merge(&key, mk(9, "eastus", d("y")))?.is_none());
            assert!(w.merge(&key, mk(10, "westus", d("z")))?.is_some());
            Ok(())
        })
        .expect("merge");
        assert_eq!(
            m.get_value(&key).expect("get"),
            Some(Value::Tag { digest: d("z") })
        );
    }
}
