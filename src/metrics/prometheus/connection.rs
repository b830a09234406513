//! How to reach one Prometheus: its address, credentials and TLS trust, read from a
//! MetricTemplate's provider and the Secret it names.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Credentials sent with every query.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    None,
    /// `Authorization: Bearer <token>`, from the Secret's `token` key.
    Bearer(String),
    /// HTTP basic auth, from the Secret's `username` and `password` keys.
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Auth {
    // Credentials never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Bearer(_) => "Bearer(***)",
            Auth::Basic { .. } => "Basic(***)",
        })
    }
}

/// Everything needed to query one Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connection {
    pub address: String,
    pub auth: Auth,
    /// PEM certificates to trust besides the system's (the Secret's `ca.crt`).
    pub ca_pem: Option<Vec<u8>>,
    pub insecure_skip_verify: bool,
    /// Headers sent with every query, checked as HTTP header names and values.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectionError {
    #[error("Secret {secret}: {reason}")]
    Secret { secret: String, reason: String },
    #[error("cannot build an HTTP client for {address}: {reason}")]
    Client { address: String, reason: String },
}

impl Connection {
    /// A connection with no credentials and the system's trust.
    pub fn plain(address: &str) -> Connection {
        Connection {
            address: address.to_string(),
            ..Connection::default()
        }
    }

    /// Reads credentials and trust from a Secret's data: `token`, or `username` and
    /// `password`, and optionally `ca.crt`.
    pub fn from_secret(
        address: &str,
        secret: &str,
        data: &BTreeMap<String, Vec<u8>>,
        insecure_skip_verify: bool,
    ) -> Result<Connection, ConnectionError> {
        let text = |key: &str| -> Result<Option<String>, ConnectionError> {
            data.get(key)
                .map(|bytes| {
                    String::from_utf8(bytes.clone())
                        .map(|s| s.trim().to_string())
                        .map_err(|_| ConnectionError::Secret {
                            secret: secret.to_string(),
                            reason: format!("key {key} is not UTF-8 text"),
                        })
                })
                .transpose()
        };
        let auth = match (text("token")?, text("username")?, text("password")?) {
            (Some(token), _, _) => Auth::Bearer(token),
            (None, Some(username), Some(password)) => Auth::Basic { username, password },
            (None, Some(_), None) => {
                return Err(ConnectionError::Secret {
                    secret: secret.to_string(),
                    reason: "has username but no password".into(),
                })
            }
            _ => Auth::None,
        };
        Ok(Connection {
            address: address.to_string(),
            auth,
            ca_pem: data.get("ca.crt").cloned(),
            insecure_skip_verify,
            headers: Vec::new(),
        })
    }

    /// Connections with the same TLS trust can share one HTTP client (and its pool).
    pub fn tls_key(&self) -> (Option<[u8; 32]>, bool) {
        (
            self.ca_pem.as_ref().map(|pem| Sha256::digest(pem).into()),
            self.insecure_skip_verify,
        )
    }

    /// An HTTP client trusting what this connection trusts.
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::Client, ConnectionError> {
        let failed = |reason: String| ConnectionError::Client {
            address: self.address.clone(),
            reason,
        };
        let mut builder = crate::http_client::builder(timeout);
        if let Some(pem) = &self.ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| failed(format!("ca.crt is not PEM: {e}")))?;
            if certificates.is_empty() {
                return Err(failed("ca.crt holds no certificate".into()));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if self.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        builder.build().map_err(|e| failed(e.to_string()))
    }
}

/// `provider.headers` as name/value pairs, each checked as HTTP allows; credentials go in the
/// Secret, never in a header written in the template.
pub fn template_headers(
    headers: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (name, values) in headers {
        let parsed = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("provider.headers: {name:?} is not an HTTP header name"))?;
        if parsed == reqwest::header::AUTHORIZATION || parsed == reqwest::header::HOST {
            return Err(format!(
                "provider.headers: {name} may not be set here (credentials belong in secretRef)"
            ));
        }
        for value in values {
            reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| format!("provider.headers.{name}: not a valid header value"))?;
            pairs.push((name.clone(), value.clone()));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn secret_keys_choose_the_credentials() {
        let token =
            Connection::from_secret("http://p", "s", &data(&[("token", "abc\n")]), false).unwrap();
        assert_eq!(token.auth, Auth::Bearer("abc".into()));
        let basic = Connection::from_secret(
            "http://p",
            "s",
            &data(&[("username", "u"), ("password", "p")]),
            false,
        )
        .unwrap();
        assert_eq!(
            basic.auth,
            Auth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let half = Connection::from_secret("http://p", "s", &data(&[("username", "u")]), false)
            .unwrap_err();
        assert!(half.to_string().contains("no password"));
        assert_eq!(format!("{:?}", token.auth), "Bearer(***)");
    }
}
