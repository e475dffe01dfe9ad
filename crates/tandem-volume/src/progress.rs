//! Progress of long operations (snapshot, restore, check, prune), reported through one trait
//! so that the library never prints: the CLI renders it, the lab logs it, tests ignore it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};

/// What is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes.
    Bytes,
    /// Items (files, packs, snapshots).
    Items,
    /// No count, only activity.
    Spinner,
}

/// Receives progress of a long operation. Calls come from worker threads.
pub trait ProgressSink: Send + Sync + fmt::Debug + 'static {
    /// A phase starts (`"backing up"`, `"restoring"`, `"reading index"`).
    fn phase(&self, title: &str, unit: Unit);
    /// The phase's total is known.
    fn total(&self, title: &str, total: u64);
    /// The phase advanced; `done` is the running count.
    fn advance(&self, title: &str, done: u64);
    /// The phase ended.
    fn finish(&self, title: &str);
}

/// A sink that discards everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl ProgressSink for Quiet {
    fn phase(&self, _: &str, _: Unit) {}
    fn total(&self, _: &str, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str) {}
}

/// Adapts a [`ProgressSink`] to rustic's progress bars.
#[derive(Debug, Clone)]
pub(crate) struct Bars(pub(crate) Arc<dyn ProgressSink>);

impl ProgressBars for Bars {
    fn progress(&self, progress_type: ProgressType, prefix: &str) -> Progress {
        let unit = match progress_type {
            ProgressType::Bytes => Unit::Bytes,
            ProgressType::Counter => Unit::Items,
            ProgressType::Spinner => Unit::Spinner,
        };
        let title = prefix.trim_end_matches("...").trim().to_string();
        if !title.is_empty() {
            self.0.phase(&title, unit);
        }
        Progress::new(Bar {
            sink: self.0.clone(),
            title: std::sync::Mutex::new(title),
            done: AtomicU64::new(0),
        })
    }
}

#[derive(Debug)]
struct Bar {
    sink: Arc<dyn ProgressSink>,
    title: std::sync::Mutex<String>,
    done: AtomicU64,
}

impl Bar {
    fn title(&self) -> String {
        self.title.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

impl RusticProgress for Bar {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.sink.total(&self.title(), len);
    }
    fn set_title(&self, title: &str) {
        if let Ok(mut t) = self.title.lock() {
            *t = title.trim_end_matches("...").trim().to_string();
        }
    }
    fn inc(&self, inc: u64) {
        let done = self.done.fetch_add(inc, Ordering::Relaxed) + inc;
        self.sink.advance(&self.title(), done);
    }
    fn finish(&self) {
        self.sink.finish(&self.title());
    }
}
