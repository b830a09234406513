//! Signed webhook calls: how the controller proves a call is its own, and how a receiver
//! checks it and refuses a replay.
//!
//! A signed call carries `X-Aviary-Timestamp` (Unix seconds), `X-Aviary-Nonce` (random, new per
//! attempt) and `X-Aviary-Signature`: `sha256=` and the hex HMAC-SHA256, under the shared
//! secret, of `METHOD\nPATH\nTIMESTAMP\nNONCE\n` followed by the exact body. Method and path are
//! covered, so a call signed for `/gate/check` cannot be sent to `/`; the nonce makes every
//! call's signature unique, so a receiver that remembers the signatures it accepted within the
//! tolerance refuses a replay even inside that window.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "x-aviary-timestamp";
pub const NONCE_HEADER: &str = "x-aviary-nonce";
pub const SIGNATURE_HEADER: &str = "x-aviary-signature";

/// What one signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub method: &'a str,
    /// The path and query, as the request line carries them (`/gate/check`).
    pub path: &'a str,
    pub timestamp: i64,
    pub nonce: &'a str,
    pub body: &'a [u8],
}

/// The three headers of a signed call as a receiver found them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed (it needs {TIMESTAMP_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER})")]
    Missing,
    #[error("{TIMESTAMP_HEADER} {0:?} is not a Unix time")]
    BadTimestamp(String),
    #[error("the signature is {0}s away from now, beyond the {1}s tolerance")]
    Stale(i64, i64),
    #[error("the signature does not match the request under the shared secret")]
    Mismatch,
    #[error("this signed request was already received: a replay is refused")]
    Replayed,
}

fn mac(key: &[u8], signed: &Signed<'_>) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    let head = format!(
        "{}\n{}\n{}\n{}\n",
        signed.method, signed.path, signed.timestamp, signed.nonce
    );
    mac.update(head.as_bytes());
    mac.update(signed.body);
    mac
}

/// The signature header's value.
pub fn sign(key: &[u8], signed: &Signed<'_>) -> String {
    let digest = mac(key, signed).finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The path and query of `url`, as its request line carries them and as a signature covers
/// them.
pub fn request_path(url: &reqwest::Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

/// A fresh nonce: 128 random bits in hex.
pub fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Checks a signed request as a receiver would: all headers present, a fresh timestamp, and a
/// matching HMAC over method, path, timestamp, nonce and body (compared in constant time).
pub fn verify(
    key: &[u8],
    presented: Presented<'_>,
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let Presented {
        timestamp: Some(timestamp),
        nonce: Some(nonce),
        signature: Some(signature),
    } = presented
    else {
        return Err(SignatureError::Missing);
    };
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp(timestamp.to_string()))?;
    let skew = now.abs_diff(sent);
    if skew > tolerance_seconds.unsigned_abs() {
        let skew = i64::try_from(skew).unwrap_or(i64::MAX);
        return Err(SignatureError::Stale(skew, tolerance_seconds));
    }
    let claimed = signature
        .trim()
        .strip_prefix("sha256=")
        .and_then(decode_hex)
        .ok_or(SignatureError::Mismatch)?;
    let signed = Signed {
        method,
        path,
        timestamp: sent,
        nonce,
        body,
    };
    mac(key, &signed)
        .verify_slice(&claimed)
        .map_err(|_| SignatureError::Mismatch)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signatures a receiver accepted and when each stops being acceptable anyway, so a replay
/// within the tolerance is refused. Bounded: when full, entries are refused rather than the
/// memory growing (a flood of valid signatures needs the secret).
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, i64>>,
    capacity: usize,
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        ReplayGuard {
            seen: Mutex::default(),
            capacity,
        }
    }

    /// Records `signature`, good until `expires` (Unix seconds); `Err` when it was seen before.
    pub fn first_use(&self, signature: &str, now: i64, expires: i64) -> Result<(), SignatureError> {
        let mut seen = self.seen.lock();
        if seen.len() >= self.capacity {
            seen.retain(|_, until| *until >= now);
        }
        if seen.contains_key(signature) || seen.len() >= self.capacity {
            return Err(SignatureError::Replayed);
        }
        seen.insert(signature.to_string(), expires);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn signed(body: &[u8]) -> Signed<'_> {
        Signed {
            method: "POST",
            path: "/gate/check",
            timestamp: NOW,
            nonce: "n1",
            body,
        }
    }

    fn check(
        key: &[u8],
        header: &str,
        path: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let presented = Presented {
            timestamp: Some("1800000000"),
            nonce: Some("n1"),
            signature: Some(header),
        };
        verify(key, presented, "POST", path, body, now, 300)
    }

    #[test]
    fn a_signature_covers_secret_path_body_and_time() {
        let body = br#"{"name":"podinfo"}"#;
        let header = sign(b"shared", &signed(body));
        let later = NOW + 10;
        assert_eq!(
            check(b"shared", &header, "/gate/check", body, later),
            Ok(())
        );
        let mismatch = Err(SignatureError::Mismatch);
        assert_eq!(
            check(b"another", &header, "/gate/check", body, later),
            mismatch
        );
        assert_eq!(check(b"shared", &header, "/", body, later), mismatch);
        assert_eq!(
            check(b"shared", &header, "/gate/check", b"{}", later),
            mismatch
        );
        assert_eq!(
            check(b"shared", &header, "/gate/check", body, NOW + 1000),
            Err(SignatureError::Stale(1000, 300))
        );
        let unsigned = verify(b"shared", Presented::default(), "POST", "/", body, NOW, 300);
        assert_eq!(unsigned, Err(SignatureError::Missing));
    }

    #[test]
    fn a_replay_is_refused_and_the_guard_stays_bounded() {
        let guard = ReplayGuard::new(2);
        assert_eq!(guard.first_use("a", NOW, NOW + 300), Ok(()));
        assert_eq!(
            guard.first_use("a", NOW, NOW + 300),
            Err(SignatureError::Replayed)
        );
        assert_eq!(guard.first_use("b", NOW, NOW + 1), Ok(()));
        // Full: the expired "b" makes room, the live "a" stays.
        assert_eq!(guard.first_use("c", NOW + 2, NOW + 302), Ok(()));
        assert_eq!(
            guard.first_use("a", NOW + 2, NOW + 302),
            Err(SignatureError::Replayed)
        );
    }
}
