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

/// The most of a response body Aviary reads from a tenant's endpoint (a webhook, a Prometheus).
pub const MAX_BODY: usize = 64 * 1024;

/// The builder every outbound client starts from: a whole-request timeout, and redirects never
/// followed (a tenant's endpoint must not send a request, or its credentials, elsewhere).
pub fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
}

/// A client with a whole-request timeout that follows no redirect.
pub fn client(timeout: Duration) -> reqwest::Client {
    builder(timeout)
        .build()
        .expect("an HTTP client with only a timeout and a redirect policy always builds")
}

/// A response body that grew beyond its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is longer than {0} bytes")]
    TooLong(usize),
    #[error("the answer broke off: {0}")]
    Transport(String),
}

/// Reads at most `limit` bytes of `response`; a longer body is an error, and no more of it is
/// read.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(BodyError::TooLong(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Transport(e.to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLong(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `body` at `/big` and a redirect to `/big` at `/away`, on a free loopback port.
    async fn server(body: &'static [u8]) -> std::net::SocketAddr {
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/big", get(move || async move { body }))
            .route(
                "/away",
                get(|| async { axum::response::Redirect::temporary("/big") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    #[tokio::test]
    async fn a_long_answer_is_refused_and_a_redirect_is_not_followed() {
        static BIG: [u8; 200 * 1024] = [b'x'; 200 * 1024];
        let address = server(&BIG).await;
        let client = client(Duration::from_secs(5));
        let big = client
            .get(format!("http://{address}/big"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            read_limited(big, MAX_BODY).await,
            Err(BodyError::TooLong(MAX_BODY))
        );
        let small = client
            .get(format!("http://{address}/big"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            read_limited(small, 300 * 1024).await.unwrap().len(),
            BIG.len()
        );
        let away = client
            .get(format!("http://{address}/away"))
            .send()
            .await
            .unwrap();
        assert_eq!(away.status(), reqwest::StatusCode::TEMPORARY_REDIRECT);
    }
}
