//! `aviary validate` over the examples (all accepted) and over each bad case (each refused with its
//! field path and line).

use std::path::PathBuf;

use aviary::validate::{validate_text, Options, Severity};

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// The YAML blocks of the README that are Aviary manifests.
fn readme_manifests() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .split("```yaml")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.contains("aviary.dev/v1beta1"))
        .map(str::to_string)
        .collect()
}

fn assert_clean(label: &str, text: &str) {
    let report = validate_text(
        text,
        Options {
            allow_short_intervals: true,
            ..Default::default()
        },
    );
    let errors: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{label}: {errors:#?}");
    assert!(!report.manifests.is_empty(), "{label}: nothing read");
}

#[test]
fn every_example_in_tests_is_accepted() {
    let files = examples();
    assert!(files.len() >= 5, "examples missing: {files:?}");
    for path in files {
        assert_clean(
            &path.display().to_string(),
            &std::fs::read_to_string(&path).unwrap(),
        );
    }
}

#[test]
fn every_manifest_in_the_readme_is_accepted() {
    let blocks = readme_manifests();
    assert!(!blocks.is_empty(), "the README shows no manifest");
    for (index, block) in blocks.iter().enumerate() {
        assert_clean(&format!("README block {index}"), block);
    }
}

const HEADER: &str =
    "apiVersion: aviary.dev/v1beta1\nkind: Canary\nmetadata:\n  name: bad\nspec:\n";

/// Validates a Canary whose spec is `body` (indented two spaces, starting at line 6) and returns
/// the errors as (path, line, message).
fn errors(body: &str, options: Options) -> Vec<(String, usize, String)> {
    let text = format!("{HEADER}{body}");
    validate_text(&text, options)
        .findings
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| (f.path, f.line, f.message))
        .collect()
}

fn assert_refused(body: &str, path: &str, line: usize, fragment: &str) {
    let found = errors(body, Options::default());
    assert!(
        found
            .iter()
            .any(|(p, l, m)| p == path && *l == line && m.contains(fragment)),
        "expected {path} at line {line} containing {fragment:?}, got {found:#?}"
    );
}

const VALID_START: &str = "  targetRef:\n    name: podinfo\n  service:\n    port: 80\n";

#[test]
fn unknown_field_is_refused() {
    assert_refused(
        "  targetRef:\n    name: podinfo\n  service:\n    port: 80\n    prot: 81\n",
        "spec.service.prot",
        10,
        "unknown field `prot`",
    );
}

#[test]
fn wrong_type_is_refused() {
    assert_refused(
        "  targetRef:\n    name: podinfo\n  service:\n    port: eighty\n",
        "spec.service.port",
        9,
        "invalid type",
    );
}

#[test]
fn interval_syntax_and_minimum() {
    let body = |interval: &str| format!("{VALID_START}  analysis:\n    interval: {interval}\n");
    assert_refused(
        &body("1m30s"),
        "spec.analysis.interval",
        11,
        "^[0-9]+(m|s)$",
    );
    assert_refused(&body("5s"), "spec.analysis.interval", 11, "minimum of 10s");
    assert_refused(
        &body("ten"),
        "spec.analysis.interval",
        11,
        "number followed by a unit",
    );
    let allowed = errors(
        &body("2s"),
        Options {
            allow_short_intervals: true,
            ..Default::default()
        },
    );
    assert!(allowed.is_empty(), "{allowed:?}");
}

#[test]
fn weights_past_max_are_flaggers_and_decreasing_ones_are_refused() {
    // Flagger caps a step at maxWeight and ignores maxWeight under stepWeights: both are
    // accepted with a warning that says what the rollout will do.
    for body in [
        "    maxWeight: 30\n    stepWeight: 40\n",
        "    maxWeight: 30\n    stepWeights: [10, 50]\n",
    ] {
        let text = format!("{HEADER}{VALID_START}  analysis:\n{body}");
        let findings = validate_text(&text, Options::default()).findings;
        assert!(
            findings.iter().all(|f| f.severity == Severity::Warning) && !findings.is_empty(),
            "{findings:#?}"
        );
    }
    assert_refused(
        &format!("{VALID_START}  analysis:\n    stepWeights:\n      - 10\n      - 5\n"),
        "spec.analysis.stepWeights[1]",
        13,
        "must increase",
    );
}

#[test]
fn missing_target_ref_and_port() {
    assert_refused(
        "  service:\n    port: 80\n",
        "spec.targetRef",
        5,
        "missing field `targetRef`",
    );
    assert_refused(
        "  targetRef:\n    name: podinfo\n  service:\n    name: x\n",
        "spec.service.port",
        8,
        "missing field `port`",
    );
}

#[test]
fn a_daemon_set_cannot_be_autoscaled() {
    let body = "  targetRef:\n    kind: DaemonSet\n    name: agent\n  service:\n    port: 80\n  \
                autoscalerRef:\n    apiVersion: autoscaling/v2\n    kind: HorizontalPodAutoscaler\n    \
                name: agent\n";
    assert_refused(body, "spec.autoscalerRef", 11, "DaemonSet");
}

const KNATIVE_TARGET: &str =
    "  targetRef:\n    apiVersion: serving.knative.dev/v1\n    kind: Service\n    name: greeter\n";

#[test]
fn a_knative_service_needs_no_service_block_but_the_knative_provider() {
    let accepted = format!("{HEADER}  provider: knative\n{KNATIVE_TARGET}");
    assert!(!validate_text(&accepted, Options::default()).has_errors());
    assert_refused(KNATIVE_TARGET, "spec.provider", 5, "set provider knative");
    let autoscaled =
        format!("  provider: knative\n{KNATIVE_TARGET}  autoscalerRef:\n    name: greeter\n");
    assert_refused(&autoscaled, "spec.autoscalerRef", 11, "Knative scales");
}

#[test]
fn other_targets_still_need_a_port_and_knative_needs_a_knative_target() {
    let body = "  provider: knative\n  targetRef:\n    name: podinfo\n";
    assert_refused(body, "spec.service.port", 5, "required");
    assert_refused(body, "spec.targetRef.kind", 7, "kind Service");
}

#[test]
fn require_mtls_is_refused_where_it_cannot_be_confirmed() {
    let body = format!("  provider: kuma\n{VALID_START}  analysis:\n    requireMTLS: true\n");
    assert_refused(&body, "spec.analysis.requireMTLS", 12, "provider kuma");
}

#[test]
fn threshold_range_min_above_max() {
    assert_refused(
        &format!(
            "{VALID_START}  analysis:\n    metrics:\n      - name: request-success-rate\n        thresholdRange:\n          min: 99\n          max: 10\n"
        ),
        "spec.analysis.metrics[0].thresholdRange",
        13,
        "min 99 is greater than max 10",
    );
}

#[test]
fn iterations_with_step_weight_is_only_a_warning() {
    let text = format!("{HEADER}{VALID_START}  analysis:\n    iterations: 3\n    stepWeight: 10\n");
    let report = validate_text(&text, Options::default());
    assert!(!report.has_errors());
    let warning = report
        .findings
        .iter()
        .find(|f| f.severity == Severity::Warning)
        .unwrap();
    assert_eq!(warning.path, "spec.analysis.iterations");
    assert!(warning.message.contains("iterations wins"));
}

#[test]
fn flagger_api_version_gets_a_hint_and_yaml_errors_a_line() {
    let text = "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata:\n  name: x\nspec: {}\n";
    let report = validate_text(text, Options::default());
    assert!(report.findings[0]
        .message
        .contains("change apiVersion flagger.app/v1beta1"));
    let report = validate_text("kind: Canary\nspec: [unclosed\n", Options::default());
    assert!(report.has_errors());
    assert_eq!(report.findings[0].path, "(yaml)");
}

#[test]
fn metric_template_with_unknown_variable_is_refused() {
    let text = "apiVersion: aviary.dev/v1beta1\nkind: MetricTemplate\nmetadata:\n  name: t\nspec:\n  provider:\n    type: prometheus\n  query: sum(rate(x{ns=\"{{ namespce }}\"}[{{ interval }}]))\n";
    let report = validate_text(text, Options::default());
    let error = report
        .findings
        .iter()
        .find(|f| f.severity == Severity::Error)
        .unwrap();
    assert_eq!((error.path.as_str(), error.line), ("spec.query", 8));
    assert!(error.message.contains("namespce"));
}

#[test]
fn what_a_router_cannot_serve_is_refused_with_the_field() {
    assert_refused(
        &format!("  provider: gatewayapi:v1\n{VALID_START}"),
        "spec.service.gatewayRefs",
        9,
        "needs gatewayRefs",
    );
    assert_refused(
        &format!(
            "  provider: linkerd\n{VALID_START}  analysis:\n    iterations: 2\n    mirror: true\n"
        ),
        "spec.analysis.mirror",
        13,
        "cannot mirror",
    );
    assert_refused(
        &format!("  provider: linkerd\n{VALID_START}  analysis:\n    iterations: 2\n    match:\n      - headers:\n          x-canary:\n            exact: insider\n"),
        "spec.analysis.match",
        13,
        "cannot route by header",
    );
    assert_refused(
        &format!("{VALID_START}  analysis:\n    sessionAffinity:\n      cookieName: flavor\n      primaryCookieName: flavor\n"),
        "spec.analysis.sessionAffinity.primaryCookieName",
        13,
        "equals cookieName",
    );
    assert_refused(
        &format!("  provider: appmesh\n{VALID_START}"),
        "spec.provider",
        6,
        "gatewayapi:v1",
    );
}

#[test]
fn a_string_match_is_exactly_one_kind_and_a_regex_compiles() {
    let matching = |condition: &str| {
        format!("{VALID_START}  analysis:\n    iterations: 2\n    match:\n      - headers:\n          x-user:\n{condition}")
    };
    assert_refused(
        &matching("            prefix: insider\n            regex: \"^ins.*\"\n"),
        "spec.analysis.match[0].headers.x-user",
        14,
        "sets prefix and regex: exactly one",
    );
    assert_refused(
        &matching("            regex: \"(unclosed\"\n"),
        "spec.analysis.match[0].headers.x-user",
        14,
        "invalid regex",
    );
    assert!(errors(
        &matching("            exact: insider\n"),
        Options::default()
    )
    .is_empty());
}

#[test]
fn istio_and_gateway_api_keep_sessions_and_smi_cannot() {
    let affinity = |provider: &str| {
        format!("  provider: {provider}\n  targetRef:\n    name: podinfo\n  service:\n    port: 80\n    gatewayRefs:\n      - name: edge\n  analysis:\n    iterations: 2\n    sessionAffinity:\n      cookieName: flavor\n")
    };
    for provider in ["istio", "gatewayapi:v1"] {
        let found = errors(&affinity(provider), Options::default());
        assert!(found.is_empty(), "{provider}: {found:#?}");
    }
    assert_refused(
        &affinity("linkerd"),
        "spec.analysis.sessionAffinity",
        15,
        "provider smi:v1alpha2 cannot keep sessions on the canary",
    );
}

#[test]
fn promotion_windows_are_checked_field_by_field() {
    let body = |schedule: &str, duration: &str, zone: &str| {
        format!(
            "{VALID_START}  analysis:\n    promotionWindows:\n      - schedule: \"{schedule}\"\n        duration: {duration}\n        timeZone: {zone}\n"
        )
    };
    assert_refused(
        &body("0 25 * * *", "2h", "Europe/Berlin"),
        "spec.analysis.promotionWindows[0].schedule",
        12,
        "is not a cron expression",
    );
    assert_refused(
        &body("0 9 * * Mon-Fri", "forever", "Europe/Berlin"),
        "spec.analysis.promotionWindows[0].duration",
        13,
        "forever",
    );
    assert_refused(
        &body("0 9 * * Mon-Fri", "8h", "Mars/Olympus"),
        "spec.analysis.promotionWindows[0].timeZone",
        14,
        "not a known IANA time zone",
    );
    assert!(errors(
        &body("0 9 * * Mon-Fri", "8h", "Europe/Berlin"),
        Options::default()
    )
    .is_empty());
}

/// Every duration has a cap, and what overflows is an error with its path, never a crash.
#[test]
fn durations_have_caps_and_overflow_is_an_error() {
    let analysis = |lines: &str| format!("{VALID_START}  analysis:\n{lines}");
    assert_refused(
        &analysis("    interval: 18446744073709551615s1s\n"),
        "spec.analysis.interval",
        11,
        "longer than",
    );
    assert_refused(
        &analysis("    interval: 25h\n"),
        "spec.analysis.interval",
        11,
        "longer than 86400s",
    );
    assert_refused(
        &analysis("    interval: 1m\n    metrics:\n      - name: request-success-rate\n        interval: 48h\n"),
        "spec.analysis.metrics[0].interval",
        14,
        "longer than",
    );
    let hook = |extra: &str| {
        analysis(&format!(
            "    interval: 1m\n    webhooks:\n      - name: load\n        url: http://loadtester/\n{extra}"
        ))
    };
    assert_refused(
        &hook("        timeout: 10m\n"),
        "spec.analysis.webhooks[0].timeout",
        15,
        "300s",
    );
    assert_refused(
        &hook("        retries: 50\n"),
        "spec.analysis.webhooks[0].retries",
        15,
        "between 0 and 10",
    );
    let report = validate_text(
        &format!(
            "apiVersion: aviary.dev/v1beta1\nkind: Canary\nmetadata:\n  name: podinfo\nspec:\n{}",
            hook("        timeout: 2m\n")
        ),
        Options::default(),
    );
    let warning = report
        .findings
        .iter()
        .find(|f| f.severity == Severity::Warning)
        .expect("a warning");
    assert!(
        warning.message.contains("give up after the interval"),
        "{warning}"
    );
    assert!(!report.has_errors(), "{:?}", report.findings);
    assert_refused(
        &analysis("    promotionWindows:\n      - schedule: \"0 8 * * 1-5\"\n        duration: 3000000000h\n"),
        "spec.analysis.promotionWindows[0].duration",
        13,
        "longer than",
    );
}

#[test]
fn template_variables_cannot_change_a_query() {
    let metric = |value: &str| {
        format!("{VALID_START}  analysis:\n    metrics:\n      - name: errors\n        templateRef:\n          name: errors\n        templateVariables:\n          route: '{value}'\n")
    };
    assert_refused(
        &metric(r#"x"} or vector(1) #"#),
        "spec.analysis.metrics[0].templateVariables.route",
        16,
        "'\"' may not appear",
    );
    assert_refused(
        &metric("a}"),
        "spec.analysis.metrics[0].templateVariables.route",
        16,
        "braces",
    );
    assert!(errors(&metric("/api/v[0-9]+/.*"), Options::default()).is_empty());
}

#[test]
fn a_manifest_cannot_name_the_envoy_program() {
    let body = format!(
        "{VALID_START}  standalone:\n    proxy: envoy\n    envoyBinary: /tmp/evil\n    listen: 127.0.0.1:8080\n    primary:\n      address: 127.0.0.1:9001\n    canary:\n      address: 127.0.0.1:9002\n"
    );
    assert_refused(&body, "spec.standalone.envoyBinary", 12, "--envoy-binary");
}

#[test]
fn metric_names_and_list_lengths_are_bounded() {
    let metric = |name: &str| {
        format!("{VALID_START}  analysis:\n    metrics:\n      - name: \"{name}\"\n        templateRef:\n          name: errors\n")
    };
    assert!(errors(&metric("404s percentage"), Options::default()).is_empty());
    assert_refused(
        &metric("errors\\nforged"),
        "spec.analysis.metrics[0].name",
        12,
        "must be 1 to 63",
    );
    let many: String = (0..33)
        .map(|i| format!("      - name: hook{i}\n        url: http://loadtester/\n"))
        .collect();
    assert_refused(
        &format!("{VALID_START}  analysis:\n    webhooks:\n{many}"),
        "spec.analysis.webhooks",
        11,
        "at most 32",
    );
}
