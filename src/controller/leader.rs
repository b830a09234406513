//! Leader election on a coordination.k8s.io Lease: one replica writes, the others keep their
//! caches warm and take over when the leader stops renewing.
//!
//! Two rules keep two leaders from ever writing at once:
//! - **Expiry is judged by this replica's own clock.** A standby notes the monotonic instant
//!   at which it last saw the Lease change (its resourceVersion, compared for equality only)
//!   and takes over only once the Lease has stayed unchanged for its full duration. The
//!   holder's `renewTime` is never compared with the local wall clock, so skewed clocks cannot
//!   make a live lease look expired.
//! - **The leader's right to write ends by itself.** Each successful renewal opens the
//!   [`Leadership`] fence until the instant the attempt *started* plus the renew deadline,
//!   which is shorter than the lease duration. A leader that is frozen, partitioned or slow
//!   finds the fence closed before any standby can have taken over, and the fenced client
//!   refuses its writes; nothing has to exit mid-write.
//!
//! This is client-go's algorithm, written here rather than taken from a crate because the
//! fence has to sit in the client every write goes through.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use parking_lot::Mutex;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

impl LeaseSettings {
    /// How long a leader may go on writing after the start of its last successful renewal:
    /// two thirds of the lease, as client-go's defaults (15 s and 10 s).
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// How often the Lease is tried: client-go's 2 s for a 15 s lease.
    pub fn retry_period(&self) -> Duration {
        (self.duration * 2 / 15).max(Duration::from_millis(100))
    }
}

#[derive(Debug, Clone, Copy)]
enum Fence {
    /// No election: the only replica.
    Always,
    Until(Instant),
    Closed,
}

/// Whether this replica may write now, shared by the elector, the reconciler and the fenced
/// client.
#[derive(Debug, Clone)]
pub struct Leadership(Arc<Mutex<Fence>>);

impl Leadership {
    /// A replica that elects no leader writes always.
    pub fn unelected() -> Leadership {
        Leadership(Arc::new(Mutex::new(Fence::Always)))
    }

    /// A replica that elects starts as a standby.
    pub fn standby() -> Leadership {
        Leadership(Arc::new(Mutex::new(Fence::Closed)))
    }

    pub fn is_leading(&self) -> bool {
        match *self.0.lock() {
            Fence::Always => true,
            Fence::Until(until) => Instant::now() < until,
            Fence::Closed => false,
        }
    }

    fn open_until(&self, until: Instant) {
        *self.0.lock() = Fence::Until(until);
    }

    fn close(&self) {
        *self.0.lock() = Fence::Closed;
    }
}

/// The Lease version this replica last saw and when it first saw it.
struct Observed {
    version: Option<String>,
    at: Instant,
}

struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<Observed>,
}

fn holder(lease: &Lease) -> Option<&str> {
    let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
    (!holder.is_empty()).then_some(holder)
}

impl Elector {
    /// Notes when the Lease last changed, by this replica's clock.
    fn observe(&mut self, lease: &Lease, now: Instant) {
        let version = lease.metadata.resource_version.clone();
        if self
            .observed
            .as_ref()
            .is_none_or(|seen| seen.version != version)
        {
            self.observed = Some(Observed { version, at: now });
        }
    }

    /// Free when nobody holds it, or when it has not changed for its whole duration.
    fn is_free(&self, lease: &Lease, now: Instant) -> bool {
        let seconds = lease.spec.as_ref().and_then(|s| s.lease_duration_seconds);
        let duration =
            Duration::from_secs(u64::try_from(seconds.unwrap_or(15).max(1)).unwrap_or(15));
        let unchanged_since = self.observed.as_ref().map_or(now, |seen| seen.at);
        holder(lease).is_none() || now.duration_since(unchanged_since) > duration
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = Timestamp::now();
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.duration.as_secs().max(1) as i32),
            acquire_time: acquired.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Tries once to take or renew the lease; `Ok(true)` when this replica holds it now.
    async fn attempt(&mut self) -> Result<bool, kube::Error> {
        let name = self.settings.name.clone();
        let Some(mut lease) = self.api.get_opt(&name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return written(self.api.create(&PostParams::default(), &lease).await);
        };
        self.observe(&lease, Instant::now());
        let current = lease.spec.clone().unwrap_or_default();
        let mine = holder(&lease) == Some(self.settings.identity.as_str());
        if !mine && !self.is_free(&lease, Instant::now()) {
            return Ok(false);
        }
        let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let acquired = if mine { current.acquire_time } else { None };
        lease.spec = Some(self.spec(transitions, acquired));
        // The resourceVersion read above makes this a compare-and-swap: a rival's write wins.
        written(
            self.api
                .replace(&name, &PostParams::default(), &lease)
                .await,
        )
    }

    /// Gives the lease up, if this replica still holds it, so a standby takes over at its
    /// next try instead of after the lease duration.
    async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(());
        };
        if holder(&lease) != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        let mut spec = lease.spec.clone().unwrap_or_default();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        written(
            self.api
                .replace(&self.settings.name, &PostParams::default(), &lease)
                .await,
        )
        .map(|_| ())
    }
}

/// A write's answer: held when it landed, not held when a rival's write came first.
fn written(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// The running election: its fence, and the task that keeps it.
pub struct Election {
    pub leadership: Leadership,
    task: tokio::task::JoinHandle<Elector>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Starts electing on `client` (which must not be the fenced one: renewals are writes),
/// opening and closing `leadership`. `on_elected` runs each time this replica becomes the
/// leader.
pub fn start(
    client: Client,
    settings: LeaseSettings,
    leadership: Leadership,
    on_elected: impl Fn() + Send + 'static,
) -> Election {
    let elector = Elector {
        api: Api::namespaced(client, &settings.namespace),
        settings,
        observed: None,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(keep(elector, leadership.clone(), on_elected, stopped));
    Election {
        leadership,
        task,
        stop,
    }
}

async fn keep(
    mut elector: Elector,
    leadership: Leadership,
    on_elected: impl Fn(),
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Elector {
    let (lease, retry) = (
        elector.settings.name.clone(),
        elector.settings.retry_period(),
    );
    let deadline = elector.settings.renew_deadline();
    let mut leading = false;
    while !*stopped.borrow() {
        // Taken before the request: a slow answer shortens the fence, never lengthens it.
        let started = Instant::now();
        match elector.attempt().await {
            Ok(true) => {
                leadership.open_until(started + deadline);
                if !leading {
                    tracing::info!(%lease, identity = %elector.settings.identity, "became leader");
                    on_elected();
                }
                leading = true;
            }
            Ok(false) if leading => {
                leadership.close();
                tracing::warn!(%lease, "lost the lease to another replica; stopped writing");
                leading = false;
            }
            Ok(false) => tracing::debug!(%lease, "another replica leads; waiting"),
            Err(error) => tracing::warn!(%lease, %error, "lease not reachable; retrying"),
        }
        if leading && !leadership.is_leading() {
            tracing::warn!(%lease, "lease not renewed within the renew deadline; stopped writing");
            leading = false;
        }
        let _ = tokio::time::timeout(retry, stopped.changed()).await;
    }
    elector
}

impl Election {
    /// Stops writing, then gives the lease up (on SIGTERM, once the reconciles have ended).
    pub async fn release(self) {
        self.leadership.close();
        let _ = self.stop.send(true);
        let Ok(mut elector) = self.task.await else {
            return;
        };
        match elector.release().await {
            Ok(()) => tracing::info!(lease = %elector.settings.name, "released the lease"),
            Err(error) => tracing::warn!(%error, "could not release the lease; it expires"),
        }
    }
}

/// Refused by the fenced client: this replica does not lead now.
#[derive(Debug, thiserror::Error)]
#[error("not the leader: writes are fenced off")]
pub struct NotLeader;

/// A client for everything but the election: reads always go through, writes only while
/// `leadership` holds, checked as each request leaves, so no route, status, object or Event
/// write escapes a replica that lost the lease.
pub fn fenced_client(config: kube::Config, leadership: Leadership) -> Result<Client, kube::Error> {
    let layer =
        tower::filter::FilterLayer::new(move |request: http::Request<kube::client::Body>| {
            let reads = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
            if reads || leadership.is_leading() {
                Ok(request)
            } else {
                Err(NotLeader)
            }
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fence_closes_by_itself_at_the_deadline() {
        let leadership = Leadership::standby();
        assert!(!leadership.is_leading());
        leadership.open_until(Instant::now() + Duration::from_millis(50));
        assert!(leadership.is_leading());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(!leadership.is_leading(), "no renewal, no writes");
        assert!(Leadership::unelected().is_leading());
    }

    #[test]
    fn the_renew_deadline_is_inside_the_lease() {
        let settings = LeaseSettings {
            namespace: "ns".into(),
            name: "lease".into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
        };
        assert_eq!(settings.renew_deadline(), Duration::from_secs(10));
        assert_eq!(settings.retry_period(), Duration::from_secs(2));
    }
}
