//! The one way Aviary builds outbound HTTP clients, so the TLS crypto provider is always set.

use std::sync::Once;
use std::time::Duration;

static CRYPTO: Once = Once::new();

/// Installs ring as the process-wide rustls provider (kube and reqwest share it). Idempotent.
pub fn install_crypto_provider() {
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client with a whole-request timeout.
pub fn client(timeout: Duration) -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("an HTTP client with only a timeout set always builds")
}
