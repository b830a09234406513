//! Watches that list again when the server has forgotten where they stood.
//!
//! kube-runtime's watcher, once its connection ends, starts a new watch at the last
//! resourceVersion it saw. An API server that restarted rebuilds its watch cache from a later
//! revision and answers that request with 410 Gone before any event is sent. The watcher then
//! asks for the same version again, forever, and the store it feeds never changes: a rollout
//! waits on a Deployment that became ready long ago. Here a 410 on a watch start replaces the
//! watcher with a fresh one, which lists from scratch; the reflector swaps its store whole when
//! that list is done.

use std::fmt::Debug;

use futures::{stream, Stream, StreamExt};
use kube::api::Api;
use kube::runtime::watcher;
use kube::Resource;
use serde::de::DeserializeOwned;

/// How long one watch request lasts. A watch the server accepted while it was coming back can
/// stay silent for good (seen after an API server crash followed by an etcd restart); the
/// watcher's idle timeout, this plus a margin, is what ends it. kube-runtime's 290 s would
/// outlast a progress deadline; a restart per kind every half minute costs nothing per canary.
const WATCH_SECONDS: u32 = 30;

/// `watcher(api, config)`, listing again whenever a watch start is refused as expired.
pub fn relisting<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let config = config.timeout(WATCH_SECONDS);
    let start = move || watcher(api.clone(), config.clone()).boxed();
    let first = start();
    stream::unfold((first, start), |(mut inner, start)| async move {
        let item = inner.next().await?;
        trace_progress(&item);
        if expired(&item) {
            tracing::warn!(
                kind = std::any::type_name::<K>(),
                "watch resourceVersion expired; listing again"
            );
            inner = start();
        }
        Some((item, (inner, start)))
    })
}

/// A refusal (401/403) does not heal by retrying, unlike a restarting API server: an operator
/// must see it.
fn refused(error: &watcher::Error) -> bool {
    let status = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status,
        watcher::Error::WatchError(status) => status,
        _ => return false,
    };
    matches!(status.code, 401 | 403)
}

/// Lists and errors, with the kind they are about: a store that stops changing shows here.
fn trace_progress<K: Resource>(item: &watcher::Result<watcher::Event<K>>) {
    let kind = std::any::type_name::<K>();
    match item {
        Ok(watcher::Event::Init) => tracing::debug!(kind, "watch listing"),
        Ok(watcher::Event::InitDone) => tracing::debug!(kind, "watch listed"),
        Err(error) if refused(error) => {
            tracing::warn!(kind, %error, "watch refused: the controller's account lacks list or watch on this kind")
        }
        Err(error) => tracing::debug!(kind, %error, "watch error"),
        Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => tracing::trace!(
            kind,
            name = object.meta().name.as_deref().unwrap_or_default(),
            version = object
                .meta()
                .resource_version
                .as_deref()
                .unwrap_or_default(),
            "watch event"
        ),
        Ok(_) => {}
    }
}

/// A watch start the server refused because the version it resumes from is gone.
fn expired<K>(item: &watcher::Result<watcher::Event<K>>) -> bool {
    matches!(
        item,
        Err(watcher::Error::WatchStartFailed(kube::Error::Api(status))) if status.code == 410
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::core::Status;

    fn refused(code: u16) -> watcher::Result<watcher::Event<Deployment>> {
        let status =
            Status::failure("too old resource version: 338 (427)", "Expired").with_code(code);
        Err(watcher::Error::WatchStartFailed(kube::Error::Api(
            Box::new(status),
        )))
    }

    #[test]
    fn only_a_refused_watch_start_with_gone_lists_again() {
        assert!(expired(&refused(410)));
        assert!(!expired(&refused(500)));
        assert!(!expired::<Deployment>(&Ok(watcher::Event::InitDone)));
    }
}
