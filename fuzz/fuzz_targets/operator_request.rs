//! Operator requests: only the canonical form reads, and it reads back to the same bytes.
#![no_main]

use aviary::api::OperatorRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(request) = OperatorRequest::parse(text) {
        let again = serde_json::to_string(&request).expect("a request serialises");
        assert_eq!(again, text, "a request read from a non-canonical form");
        assert!(!request.by.contains('"'));
    }
});
