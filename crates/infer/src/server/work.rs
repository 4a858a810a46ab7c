//! Expensive CPU work (quality checks, features, scoring): a few at a time with a short queue, each on the
//! blocking pool, stopped when the request that asked for it goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;
use crate::recommend::Cancel;

/// `slots` computations at a time; up to `2 × slots` requests wait for one, any more are refused at once.
#[derive(Debug)]
pub(super) struct HeavySlots {
    slots: usize,
    semaphore: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Counts a request waiting for a slot while it waits (also when its future is dropped while waiting).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HeavySlots {
    pub(super) fn new(slots: usize) -> Self {
        let slots = slots.max(1);
        Self { slots, semaphore: Arc::new(Semaphore::new(slots)), waiting: AtomicUsize::new(0) }
    }

    /// A slot, after waiting in the queue; None when every slot is taken and the queue is full.
    pub(super) async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = Arc::clone(&self.semaphore).try_acquire_owned() {
            return Some(p);
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.slots * 2 {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let _waiting = Waiting(&self.waiting);
        Arc::clone(&self.semaphore).acquire_owned().await.ok()
    }

    /// Computations holding a slot now.
    pub(super) fn running(&self) -> usize {
        self.slots.saturating_sub(self.semaphore.available_permits())
    }
}

/// Sets its [`Cancel`] when dropped: the request's future went away (timeout, client gone) or finished.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs `work` on the blocking pool, holding `slot` until the work itself ends (not merely until the request
/// gives up, so the slots bound the CPU really in use). When the returned future is dropped before the work
/// ends, the work's [`Cancel`] is set and it stops at its next checkpoint.
pub(super) async fn cancellable<T: Send + 'static>(
    slot: Option<OwnedSemaphorePermit>,
    work: impl FnOnce(&Cancel) -> Result<T, Error> + Send + 'static,
) -> Result<Result<T, Error>, tokio::task::JoinError> {
    let cancel = Cancel::new();
    let _on_drop = CancelOnDrop(cancel.clone());
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work(&cancel)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    async fn until(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_and_a_dropped_waiter_leaves_it() {
        let slots = Arc::new(HeavySlots::new(1));
        let held = slots.acquire().await.expect("a free slot");
        assert_eq!(slots.running(), 1);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let s = Arc::clone(&slots);
                tokio::spawn(async move { s.acquire().await.is_some() })
            })
            .collect();
        until("two waiters", || slots.waiting.load(Ordering::Relaxed) == 2).await;
        assert!(slots.acquire().await.is_none(), "a third waiter exceeds the queue of 2 × slots");
        // A waiter whose request is dropped leaves the queue.
        waiters[0].abort();
        until("the aborted waiter to leave", || slots.waiting.load(Ordering::Relaxed) == 1).await;
        drop(held);
        assert!(waiters.into_iter().nth(1).unwrap().await.unwrap(), "the remaining waiter gets the slot");
        until("the slot to come back", || slots.running() == 0).await;
        assert_eq!(slots.waiting.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_requests_stop_their_work_and_the_slot_returns_only_when_it_stops() {
        let slots = HeavySlots::new(1);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        let slot = slots.acquire().await;
        let mut request = Box::pin(cancellable(slot, move |cancel| {
            let _ = started_tx.send(());
            // Stage 1 (features, say) runs until the test lets it go.
            let _ = go_rx.recv();
            let stopped = cancel.check();
            let _ = done_tx.send(stopped.is_err());
            stopped?;
            // Stage 2 must not run.
            Ok(42)
        }));
        tokio::select! {
            _ = &mut request => panic!("the work cannot finish before it is let go"),
            _ = started_rx => {}
        }
        // The request goes away (what the timeout middleware does) while stage 1 runs.
        drop(request);
        assert_eq!(slots.running(), 1, "the slot stays taken while the work still runs");
        go_tx.send(()).unwrap();
        assert!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), "the checkpoint saw the cancellation");
        until("the slot to come back", || slots.running() == 0).await;

        // Not cancelled: the work runs to the end.
        let slot = slots.acquire().await;
        let r = cancellable(slot, |cancel| cancel.check().map(|()| 7)).await.unwrap().unwrap();
        assert_eq!(r, 7);
    }
}
