//! Template rendering: the query with its placeholders filled, or the problems, never a panic.
//! Input: the query, then `key=value` lines of templateVariables.
#![no_main]

use aviary::metrics::templates::{render, TemplateVars};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let mut lines = text.split('\n');
    let query = lines.next().unwrap_or_default();
    let variables = lines
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let vars = TemplateVars {
        name: "podinfo".into(),
        namespace: "test".into(),
        target: "podinfo".into(),
        service: "podinfo".into(),
        ingress: String::new(),
        interval: "1m".into(),
        variables,
    };
    let plain_values = vars.variables.values().all(|value| !value.contains('{'));
    if let Ok(rendered) = render(query, &vars) {
        // A value is pasted as it is, never expanded again; the plan refuses braces in values.
        if plain_values {
            assert!(!rendered.contains("{{"), "{query:?} rendered as {rendered:?}");
        }
    }
});
