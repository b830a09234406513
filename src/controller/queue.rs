//! The reconcile queue: at most a fixed number of reconciles run at once, and the rest wait
//! here, counted, so that how far the controller is behind is a metric rather than a guess.

use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::{Semaphore, SemaphorePermit};

#[derive(Debug)]
pub struct ReconcileQueue {
    slots: Semaphore,
    waiting: AtomicI64,
    running: AtomicI64,
}

/// A running reconcile's place; dropping it frees the place.
pub struct Slot<'a> {
    queue: &'a ReconcileQueue,
    _permit: SemaphorePermit<'a>,
}

impl ReconcileQueue {
    pub fn new(concurrency: usize) -> Self {
        ReconcileQueue {
            slots: Semaphore::new(concurrency),
            waiting: AtomicI64::new(0),
            running: AtomicI64::new(0),
        }
    }

    /// Waits for a free place, counted as waiting until it has one.
    pub async fn enter(&self) -> Slot<'_> {
        let waiting = Waiting::new(&self.waiting);
        let permit = self.slots.acquire().await;
        drop(waiting);
        // The semaphore is never closed.
        let permit = permit.unwrap_or_else(|_| unreachable!("the reconcile queue is never closed"));
        self.running.fetch_add(1, Ordering::Relaxed);
        Slot {
            queue: self,
            _permit: permit,
        }
    }

    /// Reconciles waiting for a place, and reconciles running.
    pub fn depth(&self) -> (i64, i64) {
        let waiting = self.waiting.load(Ordering::Relaxed);
        (waiting, self.running.load(Ordering::Relaxed))
    }
}

/// Counts one waiter for as long as it lives, so a wait abandoned (at shutdown) uncounts too.
struct Waiting<'a>(&'a AtomicI64);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicI64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.queue.running.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reconciles_beyond_the_limit_are_counted_as_waiting() {
        let queue = std::sync::Arc::new(ReconcileQueue::new(1));
        let first = queue.enter().await;
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let _slot = queue.enter().await;
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(queue.depth(), (1, 1));
        drop(first);
        waiter.await.unwrap();
        assert_eq!(queue.depth(), (0, 0));
    }
}
