//! Process signals: SIGINT/SIGTERM cancel the shutdown token (graceful: services finish what
//! is in flight); SIGHUP asks for a reload, which the caller performs.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Cancel `token` on SIGINT or SIGTERM; send on the returned channel for every SIGHUP.
pub(crate) fn install(token: CancellationToken) -> anyhow::Result<mpsc::Receiver<()>> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); token.cancel(); return }
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); token.cancel(); return }
                _ = hup.recv() => {
                    // A reload already queued covers this one too.
                    let _ = tx.try_send(());
                }
                _ = token.cancelled() => return,
            }
        }
    });
    Ok(rx)
}
