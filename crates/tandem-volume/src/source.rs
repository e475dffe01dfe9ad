//! The directory being replicated, as rustic reads it — with two additions rustic lacks:
//! files that change while they are read, or cannot be read, are recorded (the agent takes
//! another snapshot at once, so they are retried), and a shutdown request stops the walk so the
//! snapshot in progress can be abandoned cleanly.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustic_core::{
    Excludes, LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, ReadSource,
    ReadSourceEntry, ReadSourceOpen, RusticResult,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// A file that was not captured consistently.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileIssue {
    /// The path, relative to the volume.
    pub path: String,
    /// What happened.
    pub problem: String,
}

/// What the snapshot saw go wrong while reading.
#[derive(Debug, Default)]
pub(crate) struct ReadLog {
    /// Changed while being read (size or modification time differ from the scan).
    pub(crate) changed: Mutex<Vec<FileIssue>>,
    /// Could not be read (the file is left out of this snapshot).
    pub(crate) unreadable: Mutex<Vec<FileIssue>>,
    /// Set when the walk stopped for a shutdown.
    pub(crate) abandoned: AtomicBool,
}

impl ReadLog {
    fn push(list: &Mutex<Vec<FileIssue>>, issue: FileIssue) {
        if let Ok(mut l) = list.lock()
            && l.len() < 1000
        {
            l.push(issue);
        }
    }

    pub(crate) fn take(list: &Mutex<Vec<FileIssue>>) -> Vec<FileIssue> {
        list.lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// The volume's directory as a rustic source.
pub(crate) struct VolumeSource {
    inner: LocalSource,
    root: PathBuf,
    cancel: CancellationToken,
    log: Arc<ReadLog>,
    fence: Arc<AtomicBool>,
}

impl std::fmt::Debug for VolumeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeSource")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl VolumeSource {
    pub(crate) fn new(
        root: &Path,
        exclude: &[String],
        cancel: CancellationToken,
        log: Arc<ReadLog>,
        fence: Arc<AtomicBool>,
    ) -> RusticResult<Self> {
        let mut excludes = Excludes::default();
        // rustic's globs are ignore-crate overrides: a leading `!` excludes.
        excludes.globs = exclude.iter().map(|g| format!("!{g}")).collect();
        let inner = LocalSource::new(
            LocalSourceSaveOptions::default(),
            &excludes,
            &LocalSourceFilterOptions::default(),
            &[root],
        )?;
        Ok(VolumeSource {
            inner,
            root: root.to_path_buf(),
            cancel,
            log,
            fence,
        })
    }
}

impl ReadSource for VolumeSource {
    type Open = TrackedOpen;
    type Iter = Walker;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Self::Iter {
        Walker {
            inner: Box::new(self.inner.entries()),
            root: self.root.clone(),
            cancel: self.cancel.clone(),
            log: self.log.clone(),
            fence: self.fence.clone(),
        }
    }
}

type InnerOpen = <LocalSource as ReadSource>::Open;

/// Walks the directory, stopping at a shutdown request.
pub(crate) struct Walker {
    inner: Box<dyn Iterator<Item = RusticResult<ReadSourceEntry<InnerOpen>>> + Send>,
    root: PathBuf,
    cancel: CancellationToken,
    log: Arc<ReadLog>,
    fence: Arc<AtomicBool>,
}

impl Iterator for Walker {
    type Item = RusticResult<ReadSourceEntry<TrackedOpen>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cancel.is_cancelled() {
            // Fence first: the archiver writes the snapshot file right after the walk ends.
            self.fence.store(true, Ordering::SeqCst);
            self.log.abandoned.store(true, Ordering::SeqCst);
            return None;
        }
        let item = self.inner.next()?;
        Some(item.map(|e| {
            let rel = e
                .path
                .strip_prefix(&self.root)
                .unwrap_or(&e.path)
                .display()
                .to_string();
            let meta = &e.node.meta;
            let expect = Expect {
                size: meta.size,
                mtime_ns: meta.mtime.map(|t| t.as_nanosecond()),
            };
            ReadSourceEntry {
                open: e.open.map(|inner| TrackedOpen {
                    inner,
                    path: e.path.clone(),
                    rel,
                    expect,
                    log: self.log.clone(),
                }),
                path: e.path,
                node: e.node,
            }
        }))
    }
}

#[derive(Debug, Clone, Copy)]
struct Expect {
    size: u64,
    mtime_ns: Option<i128>,
}

/// Opens a file for the archiver and remembers what the scan saw of it.
#[derive(Debug)]
pub(crate) struct TrackedOpen {
    inner: InnerOpen,
    path: PathBuf,
    rel: String,
    expect: Expect,
    log: Arc<ReadLog>,
}

impl ReadSourceOpen for TrackedOpen {
    type Reader = TrackedReader;

    fn open(self) -> RusticResult<Self::Reader> {
        match self.inner.open() {
            Ok(file) => Ok(TrackedReader {
                file,
                rel: self.rel,
                expect: self.expect,
                log: self.log,
                done: false,
            }),
            Err(e) => {
                // A file deleted between the scan and the read is a deletion, not a problem:
                // the next snapshot records it as gone.
                if self.path.symlink_metadata().is_ok() {
                    ReadLog::push(
                        &self.log.unreadable,
                        FileIssue {
                            path: self.rel,
                            problem: e.display_log(),
                        },
                    );
                } else {
                    ReadLog::push(
                        &self.log.changed,
                        FileIssue {
                            path: self.rel,
                            problem: "deleted while the snapshot was taken".into(),
                        },
                    );
                }
                Err(e)
            }
        }
    }
}

/// Reads a file and, at its end, checks that it did not change while it was read.
#[derive(Debug)]
pub(crate) struct TrackedReader {
    file: File,
    rel: String,
    expect: Expect,
    log: Arc<ReadLog>,
    done: bool,
}

impl Read for TrackedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.file.read(buf) {
            Ok(0) if !buf.is_empty() && !self.done => {
                self.done = true;
                if let Ok(m) = self.file.metadata() {
                    let mtime_ns = m.modified().ok().and_then(|t| {
                        t.duration_since(std::time::UNIX_EPOCH)
                            .ok()
                            .map(|d| d.as_nanos() as i128)
                    });
                    let changed = m.len() != self.expect.size
                        || (self.expect.mtime_ns.is_some() && mtime_ns != self.expect.mtime_ns);
                    if changed {
                        ReadLog::push(
                            &self.log.changed,
                            FileIssue {
                                path: self.rel.clone(),
                                problem:
                                    "changed while it was read; the next snapshot reads it again"
                                        .into(),
                            },
                        );
                    }
                }
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) => {
                ReadLog::push(
                    &self.log.unreadable,
                    FileIssue {
                        path: self.rel.clone(),
                        problem: e.to_string(),
                    },
                );
                Err(e)
            }
        }
    }
}
