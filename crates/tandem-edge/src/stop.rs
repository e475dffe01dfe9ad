//! The connections' shutdown signal: one atomic load per check on the data path.
//!
//! A `CancellationToken` takes its tree's mutex for `is_cancelled` and for every poll of
//! `cancelled()` (two locks: the flag, then the waiter list to compare wakers). A keep-alive
//! connection asks once per request and polls once each time its read would block, which
//! made about 1% of the edge's CPU per plain HTTP/1.1 request. [`Stop`] answers both with an
//! atomic load, and [`Wait`] registers with the [`Notify`] again only when the task's waker
//! changed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// Fired once, when the edge's `run` is cancelled; never reset.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    fired: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Fire: every [`Wait`], current or future, completes.
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// A future that completes when the signal fires (at once if it has).
    pub(crate) fn wait(&self) -> Wait<'_> {
        Wait {
            stop: self,
            notified: self.notify.notified(),
            waker: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// See [`Stop::wait`].
    pub(crate) struct Wait<'a> {
        stop: &'a Stop,
        // Created with the future: `notify_waiters` completes every `Notified` that exists
        // when it is called, polled or not, so a fire between `wait()` and the first poll
        // is not lost.
        #[pin]
        notified: Notified<'a>,
        // The waker `notified` holds; while the task's waker is the same, polling again only
        // checks the flag.
        waker: Option<Waker>,
    }
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.stop.is_fired() {
            return Poll::Ready(());
        }
        if let Some(w) = this.waker.as_ref()
            && w.will_wake(cx.waker())
        {
            return Poll::Pending;
        }
        match this.notified.poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                *this.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn wakes_a_waiting_task_and_completes_at_once_after() {
        let stop = Arc::new(Stop::default());
        let waiting = tokio::spawn({
            let stop = stop.clone();
            async move { stop.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        stop.fire();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting task was not woken")
            .unwrap();
        assert!(stop.is_fired());
        tokio::time::timeout(Duration::from_secs(1), stop.wait())
            .await
            .expect("a wait after the fire did not complete");
    }

    #[tokio::test]
    async fn a_fire_between_wait_and_first_poll_is_not_lost() {
        let stop = Stop::default();
        let w = stop.wait();
        stop.fire();
        tokio::time::timeout(Duration::from_secs(1), w)
            .await
            .expect("lost");
    }

    #[tokio::test]
    async fn polled_again_with_another_waker_it_wakes_the_new_one() {
        // First polled by one task's waker, then moved to and polled by another task: the
        // fire must wake the second.
        let stop = Arc::new(Stop::default());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let first = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut w = Box::pin(wait_owned(stop));
                assert!(futures_poll_once(w.as_mut()).await.is_pending());
                tx.send(w).ok();
            }
        });
        first.await.unwrap();
        let w = rx.await.unwrap();
        let second = tokio::spawn(w);
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.fire();
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second task was not woken")
            .unwrap();
    }

    /// A `'static` wait, for moving between tasks in a test.
    async fn wait_owned(stop: Arc<Stop>) {
        stop.wait().await
    }

    async fn futures_poll_once<F: Future + Unpin>(mut f: F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut f).poll(cx))).await
    }
}
