//! The access log: one JSON object per request, written by a sink the caller chooses. The
//! library never prints; [`JsonLines`] writes to any `Write` on its own thread through a
//! bounded queue, so a slow disk never stalls a request (lines are dropped and counted when
//! the queue is full).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TryRecvError, TrySendError, sync_channel};

use serde::Serialize;

/// One request, as logged.
#[derive(Debug, Clone, Serialize)]
pub struct AccessEntry {
    /// RFC 3339 time the request arrived.
    pub time: String,
    /// The request id (also sent to the origin and the client).
    pub request_id: String,
    /// Client address.
    pub client: String,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'static str,
    /// Method.
    pub method: String,
    /// Host.
    pub host: String,
    /// Path and query as received.
    pub path: String,
    /// Status sent to the client.
    pub status: u16,
    /// Matched route.
    pub route: Option<String>,
    /// Origin group.
    pub group: Option<String>,
    /// The origin that answered.
    pub origin: Option<String>,
    /// Attempts after the first.
    pub retries: u32,
    /// `hit` (cookie honoured), `set` (new or moved) or absent.
    pub affinity: Option<&'static str>,
    /// Total time until the response body ended, in milliseconds.
    pub latency_ms: f64,
    /// Time to the origin's response headers, in milliseconds.
    pub origin_latency_ms: Option<f64>,
    /// Response body bytes sent.
    pub bytes_sent: u64,
    /// Whether the response body was fully sent.
    pub complete: bool,
    /// Why the edge answered itself, or why the last attempt failed.
    pub error: Option<String>,
    /// Rules that matched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

/// Where access log entries go.
pub trait AccessLog: Send + Sync + 'static {
    /// Record one request. Called on the request's task: must not block.
    fn log(&self, entry: AccessEntry);
}

/// Discards entries.
#[derive(Debug, Default)]
pub struct NoLog;

impl AccessLog for NoLog {
    fn log(&self, _entry: AccessEntry) {}
}

/// Emits entries as `tracing` events with target `tandem_edge::access`.
#[derive(Debug, Default)]
pub struct TracingLog;

impl AccessLog for TracingLog {
    fn log(&self, entry: AccessEntry) {
        if let Ok(line) = serde_json::to_string(&entry) {
            tracing::info!(target: "tandem_edge::access", "{line}");
        }
    }
}

/// JSON lines to a writer, on a dedicated thread.
#[derive(Debug)]
pub struct JsonLines {
    tx: SyncSender<AccessEntry>,
    dropped: Arc<AtomicU64>,
}

impl JsonLines {
    /// Start the writer thread; up to `queue` entries wait when the writer is slow.
    ///
    /// The thread does not block on the queue: it wakes every [`JsonLines::TICK`], writes
    /// what has arrived through a buffer and flushes. A request therefore only pushes its
    /// entry (no system call to wake a sleeping writer, which would cost more than the
    /// entry), and a busy edge writes its log in large blocks.
    pub fn new<W: Write + Send + 'static>(out: W, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<AccessEntry>(queue.max(1));
        std::thread::Builder::new()
            .name("edge-access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
                loop {
                    let mut wrote = false;
                    loop {
                        match rx.try_recv() {
                            Ok(e) => {
                                wrote = true;
                                if serde_json::to_writer(&mut out, &e).is_err()
                                    || out.write_all(b"\n").is_err()
                                {
                                    return;
                                }
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                let _ = out.flush();
                                return;
                            }
                        }
                    }
                    if wrote && out.flush().is_err() {
                        return;
                    }
                    std::thread::sleep(Self::TICK);
                }
            })?;
        Ok(JsonLines {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How often the writer thread looks for new entries.
    pub const TICK: std::time::Duration = std::time::Duration::from_millis(20);

    /// Entries dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl AccessLog for JsonLines {
    fn log(&self, entry: AccessEntry) {
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Format a UNIX time as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let ms = d.subsec_millis();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }
}
