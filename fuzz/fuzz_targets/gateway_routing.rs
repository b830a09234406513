//! The embedded gateway's request routing: A/B rules compiled from any condition, and any
//! request routed by them; never a panic, and a request is only sent to the canary by a rule
//! or by its weight. Input lines: header name, exact|prefix|suffix|regex, the condition's
//! value, the request's header value, the request's path.
#![no_main]

use std::collections::BTreeMap;

use aviary::engine::Routes;
use aviary::gateway::{RouteTable, Upstream};
use aviary::plan::{Condition, RouteMatch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let lines: Vec<&str> = text.splitn(5, '\n').collect();
    let [name, kind, value, header, path] = lines[..] else {
        return;
    };
    let condition = match kind {
        "exact" => Condition::Exact(value.into()),
        "prefix" => Condition::Prefix(value.into()),
        "suffix" => Condition::Suffix(value.into()),
        _ => Condition::Regex(value.into()),
    };
    let rule = RouteMatch {
        headers: BTreeMap::from([(name.to_string(), condition.clone())]),
        uri: Some(condition),
        ..RouteMatch::default()
    };
    let routes = Routes {
        primary_weight: 100,
        canary_weight: 0,
        match_to_canary: true,
        mirror_percent: None,
    };
    let table = RouteTable::new("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
    let Ok(table) = table.with_routes(routes, &[rule]) else {
        return;
    };
    let mut request = http::Request::builder();
    if let (Ok(name), Ok(value)) = (
        http::HeaderName::from_bytes(name.as_bytes()),
        http::HeaderValue::from_str(header),
    ) {
        request = request.header(name, value);
    }
    let Ok(request) = request.uri(path).body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    for roll in [0, 50, 99] {
        let chosen = table.choose(&parts, roll);
        let _ = table.mirrors(chosen, roll);
        assert!(matches!(chosen, Upstream::Primary | Upstream::Canary));
    }
});
