//! Signature verification over any headers and body: never a panic, and what `sign` makes
//! verifies while any change to the body does not.
#![no_main]

use aviary::signature::{sign, verify, Presented, Signed};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (timestamp, nonce, signature) = (parts.next(), parts.next(), parts.next());
    let body = parts.next().unwrap_or_default().as_bytes();
    let presented = Presented {
        timestamp,
        nonce,
        signature,
    };
    let _ = verify(b"key", presented, "POST", "/", body, NOW, 300);
    let nonce = nonce.unwrap_or_default();
    let signed = Signed {
        method: "POST",
        path: "/",
        timestamp: NOW,
        nonce,
        body,
    };
    let header = sign(b"key", &signed);
    let good = Presented {
        timestamp: Some("1800000000"),
        nonce: Some(nonce),
        signature: Some(&header),
    };
    assert_eq!(verify(b"key", good, "POST", "/", body, NOW, 300), Ok(()));
    let mut changed = body.to_vec();
    changed.push(b'x');
    assert!(verify(b"key", good, "POST", "/", &changed, NOW, 300).is_err());
});
