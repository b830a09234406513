//! Loadtester requests: a webhook payload's metadata read into a load, and its target checked
//! against the default allowlist; never a panic, and no metadata address is ever a target.
#![no_main]

use std::collections::BTreeMap;

use aviary::loadtester::{LoadRequest, Targets};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(metadata) = serde_json::from_slice::<BTreeMap<String, String>>(body) else {
        return;
    };
    let Ok(request) = LoadRequest::from_metadata(&metadata) else {
        return;
    };
    let _ = request.key("podinfo.test");
    let host = request.plan.uri.host().unwrap_or_default();
    let targets = Targets::default();
    if targets.check_host(host).is_ok() {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        assert!(
            bare.parse::<std::net::IpAddr>().is_err(),
            "an address passed as a Service name: {host}"
        );
    }
});
