//! The two versions a standalone rollout moves traffic between.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;

use super::Traffic;

/// What the standalone runner needs to know and do about the workloads.
pub trait Workloads: Send + Sync {
    /// Revision the primary serves.
    fn primary_revision(&self) -> String;
    /// Revision the canary serves.
    fn canary_revision(&self) -> String;
    /// Make the primary serve what the canary serves (the "copy template" of a promotion).
    fn promote<'a>(&'a self, traffic: &'a dyn Traffic) -> BoxFuture<'a, Result<(), String>>;
}

/// Upstreams run by someone else, known only by address. Promotion points the gateway's primary
/// route at the canary's address: from then on the "primary" is the new version.
pub struct ExternalUpstreams {
    primary: Mutex<(SocketAddr, String)>,
    canary: (SocketAddr, String),
}

impl ExternalUpstreams {
    pub fn new(primary: (SocketAddr, String), canary: (SocketAddr, String)) -> Self {
        ExternalUpstreams {
            primary: Mutex::new(primary),
            canary,
        }
    }
}

impl Workloads for ExternalUpstreams {
    fn primary_revision(&self) -> String {
        self.primary.lock().1.clone()
    }

    fn canary_revision(&self) -> String {
        self.canary.1.clone()
    }

    fn promote<'a>(&'a self, traffic: &'a dyn Traffic) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            traffic.set_primary_address(self.canary.0);
            *self.primary.lock() = self.canary.clone();
            Ok(())
        })
    }
}

/// Waits until `address` accepts TCP connections, or fails naming it.
pub async fn wait_until_listening(
    role: &str,
    address: SocketAddr,
    patience: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::net::TcpStream::connect(address).await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "the {role} upstream {address} refuses connections ({error}); start it first"
                ))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
