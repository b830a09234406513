//! Webhook calls and metric queries that outlast a reconcile. A tenant's webhook may take its
//! whole timeout, and its `metricsServer` may never answer; if a reconcile waited for them,
//! 128 such canaries would hold every reconcile worker and stall every other canary's
//! schedule. So a reconcile waits a moment only: work still running then goes on in its own
//! task, the reconcile ends without deciding, and the work's end triggers the canary's next
//! reconcile, which takes the result and decides the same step. Work is keyed by the canary,
//! what it is and the status it was started for, so a result is only ever used for the step
//! that asked for it.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kube::runtime::reflector::ObjectRef;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::api::{Canary, CanaryStatus, HookType};

/// How long a reconcile waits for a batch of hooks it started before leaving it running.
const PATIENCE: Duration = Duration::from_millis(250);
/// Batches running at once across all canaries; beyond, a batch waits for a slot (inside its
/// task, never in a reconcile worker).
const MAX_RUNNING: usize = 256;
/// A result not taken within this long belongs to a step that is gone.
const FORGET_AFTER: Duration = Duration::from_secs(900);

fn status_hash(status: &CanaryStatus) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(status)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// What a batch of work is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Work {
    Hooks(HookType),
    Metrics,
}

/// Which step a batch was started for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    canary: ObjectRef<Canary>,
    work: Work,
    status: u64,
}

impl Key {
    pub fn new(canary: ObjectRef<Canary>, work: Work, status: &CanaryStatus) -> Key {
        Key {
            canary,
            work,
            status: status_hash(status),
        }
    }
}

struct Slot<T> {
    result: watch::Receiver<Option<T>>,
    started: Instant,
    /// Set once a reconcile stopped waiting: only then does the end wake the canary.
    left: Arc<AtomicBool>,
}

/// The batches in flight and the results waiting to be taken.
pub struct Deferred<T> {
    slots: Mutex<HashMap<Key, Slot<T>>>,
    permits: Arc<Semaphore>,
    /// Wakes the canary whose batch finished.
    wake: mpsc::UnboundedSender<ObjectRef<Canary>>,
}

/// Where finished batches send the canary to reconcile.
pub type Wake = mpsc::UnboundedSender<ObjectRef<Canary>>;

/// The channel that wakes canaries whose batch ended.
pub fn wake_channel() -> (Wake, mpsc::UnboundedReceiver<ObjectRef<Canary>>) {
    mpsc::unbounded_channel()
}

impl<T: Clone + Send + Sync + 'static> Deferred<T> {
    pub fn new(wake: Wake) -> Deferred<T> {
        Deferred {
            slots: Mutex::default(),
            permits: Arc::new(Semaphore::new(MAX_RUNNING)),
            wake,
        }
    }

    /// The outcomes of the batch for `key`: at once when it has ended, after a short wait when
    /// it is started now, or `None` while it runs on (the canary is reconciled when it ends).
    pub async fn outcomes(&self, key: Key, work: BoxFuture<'static, T>) -> Option<T> {
        let (mut result, left, fresh) = self.slot(&key, work);
        if fresh {
            let waited = tokio::time::timeout(PATIENCE, result.wait_for(Option::is_some)).await;
            if waited.is_err() {
                left.store(true, Ordering::SeqCst);
            }
        }
        // Looked at after `left` is set, so a batch that ended meanwhile is taken here rather
        // than missed by both this reconcile and the wake-up. The result stays until the step
        // is decided ([`Deferred::settle`]): a step may need hooks and then metrics, and the
        // reconcile that takes the second must still find the first.
        // Bound first: the borrow's guard must end before `result` does.
        let ended = result.borrow().clone();
        ended
    }

    /// The step of `canary` at `status` is decided: its results are let go of, so the next
    /// step, even one with an equal status, measures and calls afresh.
    pub fn settle(&self, canary: &ObjectRef<Canary>, status: &CanaryStatus) {
        let status = status_hash(status);
        self.slots
            .lock()
            .retain(|key, _| !(key.canary == *canary && key.status == status));
    }

    /// A deleted canary's results (and those of any step gone long ago) are let go of.
    pub fn forget(&self, canary: &ObjectRef<Canary>) {
        let now = Instant::now();
        self.slots.lock().retain(|key, slot| {
            key.canary != *canary && now.duration_since(slot.started) < FORGET_AFTER
        });
    }

    /// The slot of `key`, started with `work` when there is none (`true` then).
    fn slot(
        &self,
        key: &Key,
        work: BoxFuture<'static, T>,
    ) -> (watch::Receiver<Option<T>>, Arc<AtomicBool>, bool) {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(key) {
            return (slot.result.clone(), slot.left.clone(), false);
        }
        let now = Instant::now();
        slots.retain(|_, slot| now.duration_since(slot.started) < FORGET_AFTER);
        let (send, result) = watch::channel(None);
        let left = Arc::new(AtomicBool::new(false));
        let (permits, wake, canary) = (self.permits.clone(), self.wake.clone(), key.canary.clone());
        let gone = left.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let outcomes = work.await;
            let _ = send.send(Some(outcomes));
            if gone.load(Ordering::SeqCst) {
                let _ = wake.send(canary);
            }
        });
        let slot = Slot {
            result: result.clone(),
            started: now,
            left: left.clone(),
        };
        slots.insert(key.clone(), slot);
        (result, left, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::HookOutcome;

    type Outcomes = Vec<HookOutcome>;

    fn key(status: &CanaryStatus) -> Key {
        Key::new(
            ObjectRef::new("podinfo").within("test"),
            Work::Hooks(HookType::Rollout),
            status,
        )
    }

    fn outcome(name: &str) -> Outcomes {
        vec![HookOutcome {
            name: name.into(),
            ok: true,
            message: "status 200".into(),
        }]
    }

    #[tokio::test]
    async fn a_quick_batch_answers_at_once_and_a_slow_one_later_for_its_own_step() {
        let (wake, mut woken) = wake_channel();
        let deferred = Deferred::<Outcomes>::new(wake);
        let status = CanaryStatus::default();
        let quick = Box::pin(async { outcome("quick") });
        assert_eq!(
            deferred.outcomes(key(&status), quick).await,
            Some(outcome("quick"))
        );
        deferred.settle(&ObjectRef::new("podinfo").within("test"), &status);

        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let slow = Box::pin(async move {
            let _ = released.await;
            outcome("slow")
        });
        assert_eq!(deferred.outcomes(key(&status), slow).await, None);
        // Asked again while it runs: no second call, no wait.
        let again = Box::pin(async { outcome("second call") });
        assert_eq!(deferred.outcomes(key(&status), again).await, None);
        release.send(()).unwrap();
        assert_eq!(woken.recv().await.unwrap().name, "podinfo");
        let taken = Box::pin(async { outcome("unused") });
        assert_eq!(
            deferred.outcomes(key(&status), taken).await,
            Some(outcome("slow"))
        );
        // Kept until the step is decided; then the same status calls afresh.
        let kept = Box::pin(async { outcome("unused") });
        assert_eq!(
            deferred.outcomes(key(&status), kept).await,
            Some(outcome("slow"))
        );
        deferred.settle(&ObjectRef::new("podinfo").within("test"), &status);
        let afresh = Box::pin(async { outcome("afresh") });
        assert_eq!(
            deferred.outcomes(key(&status), afresh).await,
            Some(outcome("afresh"))
        );
        // Another step's key never sees that result.
        let moved = CanaryStatus {
            canary_weight: 20,
            ..CanaryStatus::default()
        };
        let fresh = Box::pin(async { outcome("next step") });
        assert_eq!(
            deferred.outcomes(key(&moved), fresh).await,
            Some(outcome("next step"))
        );
    }
}
