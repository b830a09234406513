//! Leader election on a coordination.k8s.io Lease: one replica acts, the others wait and take
//! over within the lease duration when the leader stops renewing.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;

use super::ControllerError;

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

fn expired(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let Some(renewed) = &spec.renew_time else {
        return true;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    now.as_second() - renewed.0.as_second() > duration
}

/// Tries once to hold the lease; `Ok(true)` when this replica is the leader now.
async fn try_acquire(api: &Api<Lease>, settings: &LeaseSettings) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(settings.duration.as_secs() as i32),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    match api.get_opt(&settings.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec(0, None)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            }
        }
        Some(mut lease) => {
            let current = lease.spec.clone().unwrap_or_default();
            let mine = current.holder_identity.as_deref() == Some(settings.identity.as_str());
            if !mine && !expired(&lease, now) {
                return Ok(false);
            }
            let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!mine);
            let acquired = if mine { current.acquire_time } else { None };
            lease.spec = Some(spec(transitions, acquired));
            // The resourceVersion in `lease` makes this a compare-and-swap: a rival's write wins.
            match api
                .replace(&settings.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            }
        }
    }
}

/// Waits until this replica holds the lease.
pub async fn acquire(client: Client, settings: &LeaseSettings) -> Result<(), ControllerError> {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let retry = (settings.duration / 4).max(Duration::from_millis(500));
    loop {
        match try_acquire(&api, settings).await {
            Ok(true) => {
                tracing::info!(lease = %settings.name, identity = %settings.identity, "became leader");
                return Ok(());
            }
            Ok(false) => tracing::debug!(lease = %settings.name, "another replica leads; waiting"),
            Err(error) => tracing::warn!(%error, "lease not reachable; retrying"),
        }
        tokio::time::sleep(retry).await;
    }
}

/// Renews the lease; if it is lost the process exits, so a replica that is no longer leader
/// never acts (the other replica takes over).
pub fn keep_renewing(client: Client, settings: LeaseSettings) {
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let period = settings.duration / 3;
        let mut last_success = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(period).await;
            match try_acquire(&api, &settings).await {
                Ok(true) => last_success = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %settings.name, "lost the lease to another replica; exiting");
                    std::process::exit(3);
                }
                Err(error) if last_success.elapsed() > settings.duration => {
                    tracing::error!(%error, "could not renew the lease within its duration; exiting");
                    std::process::exit(3);
                }
                Err(error) => tracing::warn!(%error, "lease renewal failed; retrying"),
            }
        }
    });
}
