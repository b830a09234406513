//! MetricTemplates at run time: each metric of a Canary resolved to what will be asked (a
//! built-in, or a rendered query against a Prometheus connection) before the rollout starts, so
//! a missing template, an unknown variable or a broken Secret is reported in the status with the
//! field path, not discovered mid-rollout.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;

use super::prometheus::{Connection, PrometheusClient};
use super::{MetricError, MetricProvider, MetricQuery};
use crate::api::MetricTemplateSpec;
use crate::judge::sampling::SamplingModel;
use crate::plan::{Metric, MetricSource, Plan};

/// What `{{ … }}` placeholders are filled with (Flagger's variables).
#[derive(Debug, Clone, Default)]
pub struct TemplateVars {
    /// The Canary's name.
    pub name: String,
    pub namespace: String,
    /// The target Deployment's name.
    pub target: String,
    /// The apex Service's name.
    pub service: String,
    pub ingress: String,
    /// The metric's window, as PromQL writes it (`1m`).
    pub interval: String,
    /// The metric's `templateVariables`.
    pub variables: BTreeMap<String, String>,
}

/// Fills a query's placeholders; every problem (unclosed braces, an unknown variable, a
/// `variables.x` the metric does not set) is returned, not just the first.
pub fn render(query: &str, vars: &TemplateVars) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(query.len());
    let mut problems = Vec::new();
    let mut rest = query;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            problems.push(format!(
                "unclosed {{{{ at {:?}",
                after.chars().take(20).collect::<String>()
            ));
            rest = "";
            break;
        };
        let variable = after[..close].trim();
        let value = match variable {
            "name" => Some(vars.name.as_str()),
            "namespace" => Some(vars.namespace.as_str()),
            "target" => Some(vars.target.as_str()),
            "service" => Some(vars.service.as_str()),
            "ingress" => Some(vars.ingress.as_str()),
            "interval" => Some(vars.interval.as_str()),
            other => match other.strip_prefix("variables.") {
                Some(key) => match vars.variables.get(key) {
                    Some(value) => Some(value.as_str()),
                    None => {
                        problems.push(format!(
                            "{{{{ {variable} }}}} is used but templateVariables has no {key:?}"
                        ));
                        None
                    }
                },
                None => {
                    problems.push(format!("unknown variable {{{{ {variable} }}}}; use name, namespace, target, service, ingress, interval or variables.<key>"));
                    None
                }
            },
        };
        out.push_str(value.unwrap_or_default());
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A query ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedQuery {
    pub query: String,
    /// For `compare: primary`: the query over one sub-interval, for the canary and for the
    /// primary (`target` is `<target>-primary`).
    pub canary_samples: Option<String>,
    pub primary_samples: Option<String>,
    pub connection: Connection,
}

/// How one metric of a Canary is measured.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Builtin,
    Query(ResolvedQuery),
}

/// A problem with one metric, at its field path.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateProblem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Where templates and Secrets come from (the watch-fed stores, or the manifest file).
pub trait TemplateSource {
    fn template(&self, namespace: &str, name: &str) -> Option<MetricTemplateSpec>;
    /// A Secret's data; `Err` explains why it cannot be read here.
    fn secret(&self, namespace: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String>;
}

/// Resolves every metric of the plan, in order. `default_address` is the Prometheus of inline
/// queries and of templates without an address.
pub fn resolve(
    plan: &Plan,
    base: &TemplateVars,
    default_address: &str,
    sampling: SamplingModel,
    source: &dyn TemplateSource,
) -> Result<Vec<(String, Resolution)>, Vec<TemplateProblem>> {
    let mut resolved = Vec::new();
    let mut problems = Vec::new();
    let sample_window = sampling.query_window(sampling.sub_interval(plan.interval));
    for (index, metric) in plan.analysis.metrics.iter().enumerate() {
        let path = format!("spec.analysis.metrics[{index}]");
        let found = resolve_one(
            metric,
            &path,
            base,
            (default_address, sample_window),
            source,
        );
        match found {
            Ok(resolution) => resolved.push((metric.name.clone(), resolution)),
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(problems)
    }
}

fn resolve_one(
    metric: &Metric,
    path: &str,
    base: &TemplateVars,
    (default_address, sample_window): (&str, Duration),
    source: &dyn TemplateSource,
) -> Result<Resolution, Vec<TemplateProblem>> {
    let (query, connection, field) = match &metric.source {
        MetricSource::Builtin => return Ok(Resolution::Builtin),
        MetricSource::Query(query) => (query.clone(), Connection::plain(default_address), "query"),
        MetricSource::Template {
            name, namespace, ..
        } => {
            let namespace = namespace.as_deref().unwrap_or(&base.namespace);
            let (query, connection) = template_query(namespace, name, default_address, source)
                .map_err(|message| {
                    vec![TemplateProblem {
                        path: format!("{path}.templateRef"),
                        message,
                    }]
                })?;
            (query, connection, "templateRef")
        }
    };
    let vars = TemplateVars {
        interval: super::prometheus::promql_window(metric.window),
        variables: metric.variables.clone(),
        ..base.clone()
    };
    let problems = |found: Vec<String>| {
        found
            .into_iter()
            .map(|message| TemplateProblem {
                path: format!("{path}.{field}"),
                message,
            })
            .collect::<Vec<_>>()
    };
    let rendered = render(&query, &vars).map_err(problems)?;
    let (canary_samples, primary_samples) = match metric.judge {
        Some(_) => {
            let (canary, primary) = sample_queries(&query, sample_window, &vars);
            (Some(canary), Some(primary))
        }
        None => (None, None),
    };
    Ok(Resolution::Query(ResolvedQuery {
        query: rendered,
        canary_samples,
        primary_samples,
        connection,
    }))
}

/// For `compare: primary`: the query over one sample's window (a sub-interval and a scrape),
/// for the canary and the primary.
fn sample_queries(query: &str, window: Duration, vars: &TemplateVars) -> (String, String) {
    let sampled = TemplateVars {
        interval: super::prometheus::promql_window(window),
        ..vars.clone()
    };
    let primary = TemplateVars {
        target: crate::naming::primary(&vars.target),
        ..sampled.clone()
    };
    (
        render(query, &sampled).unwrap_or_default(),
        render(query, &primary).unwrap_or_default(),
    )
}

/// A MetricTemplate's query and the connection to its Prometheus, credentials included.
fn template_query(
    namespace: &str,
    name: &str,
    default_address: &str,
    source: &dyn TemplateSource,
) -> Result<(String, Connection), String> {
    let template = source
        .template(namespace, name)
        .ok_or_else(|| format!("MetricTemplate {namespace}/{name} not found"))?;
    let provider = &template.provider;
    if provider.r#type != "prometheus" {
        return Err(format!(
            "MetricTemplate {namespace}/{name} has provider type {:?}; only prometheus is supported",
            provider.r#type
        ));
    }
    // A template's credentials go to its own address only, never to a Prometheus the canary
    // names.
    if provider.secret_ref.is_some() && provider.address.is_none() {
        return Err(format!(
            "MetricTemplate {namespace}/{name} has a secretRef but no address: its credentials are sent to its own address only"
        ));
    }
    // Headers select tenants in a multi-tenant Prometheus (X-Scope-OrgID and the like): sent to
    // the controller's shared Prometheus they would let one team read another's metrics.
    if !provider.headers.is_empty() && provider.address.is_none() {
        return Err(format!(
            "MetricTemplate {namespace}/{name} has provider.headers but no address: headers are sent to the template's own address only"
        ));
    }
    let headers = super::prometheus::template_headers(&provider.headers)
        .map_err(|message| format!("MetricTemplate {namespace}/{name}: {message}"))?;
    let address = provider
        .address
        .clone()
        .unwrap_or_else(|| default_address.to_string());
    let connection = match &provider.secret_ref {
        None => Ok(Connection {
            insecure_skip_verify: provider.insecure_skip_verify,
            ..Connection::plain(&address)
        }),
        Some(secret) => source.secret(namespace, &secret.name).and_then(|data| {
            Connection::from_secret(
                &address,
                &format!("{namespace}/{}", secret.name),
                &data,
                provider.insecure_skip_verify,
            )
            .map_err(|e| e.to_string())
        }),
    };
    let connection =
        connection.map_err(|message| format!("MetricTemplate {namespace}/{name}: {message}"))?;
    Ok((
        template.query,
        Connection {
            headers,
            ..connection
        },
    ))
}

/// A TLS trust: the digest of the extra CA bundle and whether verification is off.
type TlsKey = (Option<[u8; 32]>, bool);

/// Builds Prometheus clients, sharing one HTTP client per TLS trust.
pub struct PrometheusPool {
    timeout: std::time::Duration,
    clients: parking_lot::Mutex<BTreeMap<TlsKey, reqwest::Client>>,
}

impl PrometheusPool {
    pub fn new(timeout: std::time::Duration) -> PrometheusPool {
        PrometheusPool {
            timeout,
            clients: Default::default(),
        }
    }

    /// A client for `connection` whose queries give up after `timeout`.
    pub fn client(
        &self,
        connection: &Connection,
        timeout: std::time::Duration,
    ) -> Result<PrometheusClient, MetricError> {
        let key = connection.tls_key();
        let mut clients = self.clients.lock();
        let http = match clients.get(&key) {
            Some(http) => http.clone(),
            None => {
                let http =
                    connection
                        .http_client(self.timeout)
                        .map_err(|e| MetricError::Provider {
                            provider: "prometheus",
                            reason: e.to_string(),
                        })?;
                clients.insert(key, http.clone());
                http
            }
        };
        Ok(
            PrometheusClient::with_http(http, &connection.address, timeout)
                .with_auth(connection.auth.clone())
                .with_headers(connection.headers.clone()),
        )
    }
}

/// Built-ins from `builtins`, every other metric from its resolved query.
pub struct WithTemplates<'a> {
    pub builtins: &'a dyn MetricProvider,
    pub resolved: &'a [(String, Resolution)],
    pub pool: &'a PrometheusPool,
    /// What a no-data answer names.
    pub workload: String,
    pub timeout: std::time::Duration,
}

impl MetricProvider for WithTemplates<'_> {
    fn measure<'a>(&'a self, query: &'a MetricQuery) -> BoxFuture<'a, Result<f64, MetricError>> {
        Box::pin(async move {
            let resolution = self
                .resolved
                .iter()
                .find(|(name, _)| *name == query.name)
                .map(|(_, r)| r);
            match resolution {
                Some(Resolution::Query(resolved)) => {
                    let client = self.pool.client(&resolved.connection, self.timeout)?;
                    client
                        .query_number(&resolved.query, &self.workload, query.window.as_secs())
                        .await
                }
                _ => self.builtins.measure(query).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_flagger_variables() {
        let vars = TemplateVars {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo".into(),
            interval: "1m".into(),
            variables: BTreeMap::from([("route".to_string(), "/api".to_string())]),
            ..Default::default()
        };
        let query = "sum(rate(x{ns=\"{{ namespace }}\",wl=\"{{target}}\",path=\"{{ variables.route }}\"}[{{ interval }}]))";
        assert_eq!(
            render(query, &vars).unwrap(),
            "sum(rate(x{ns=\"test\",wl=\"podinfo\",path=\"/api\"}[1m]))"
        );
        let problems = render("{{ variables.missing }} {{ nope }} {{ open", &vars).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("templateVariables has no \"missing\""));
    }

    struct NoTemplates;

    impl TemplateSource for NoTemplates {
        fn template(&self, _: &str, _: &str) -> Option<MetricTemplateSpec> {
            None
        }

        fn secret(&self, _: &str, _: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
            Err("no secrets here".into())
        }
    }

    /// `templateVariables` fill an inline `query` as they fill a template's.
    #[test]
    fn an_inline_query_reads_the_metric_variables() {
        let spec: crate::api::CanarySpec = serde_json::from_value(serde_json::json!({
            "targetRef": { "name": "podinfo" },
            "service": { "port": 80 },
            "analysis": { "metrics": [{
                "name": "errors",
                "query": "sum(rate(x{path=\"{{ variables.route }}\"}[{{ interval }}]))",
                "templateVariables": { "route": "/api" },
                "thresholdRange": { "max": 1 }
            }] }
        }))
        .unwrap();
        let plan = crate::plan::plan(&spec, Default::default()).unwrap();
        let base = TemplateVars::default();
        let resolved = resolve(
            &plan,
            &base,
            "http://prometheus:9090",
            SamplingModel::default(),
            &NoTemplates,
        )
        .unwrap();
        let Resolution::Query(query) = &resolved[0].1 else {
            panic!("a query: {resolved:?}");
        };
        assert_eq!(query.query, "sum(rate(x{path=\"/api\"}[60s]))");
    }

    /// A template whose Secret would follow the canary's metricsServer.
    struct CredentialsWithoutAddress;

    impl TemplateSource for CredentialsWithoutAddress {
        fn template(&self, _: &str, _: &str) -> Option<MetricTemplateSpec> {
            serde_json::from_value(serde_json::json!({
                "provider": { "type": "prometheus", "secretRef": { "name": "prom-auth" } },
                "query": "up"
            }))
            .ok()
        }

        fn secret(&self, _: &str, _: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
            Ok(BTreeMap::from([("token".to_string(), b"s3cret".to_vec())]))
        }
    }

    /// A template's credentials never go to an address the canary chose.
    #[test]
    fn credentials_go_only_to_their_templates_own_address() {
        let spec: crate::api::CanarySpec = serde_json::from_value(serde_json::json!({
            "targetRef": { "name": "podinfo" },
            "service": { "port": 80 },
            "metricsServer": "http://tenant-prometheus.evil:9090",
            "analysis": { "metrics": [{
                "name": "up", "templateRef": { "name": "shared", "namespace": "monitoring" },
                "thresholdRange": { "min": 1 }
            }] }
        }))
        .unwrap();
        let plan = crate::plan::plan(&spec, Default::default()).unwrap();
        let address = plan.metrics_server.clone().unwrap();
        let problems = resolve(
            &plan,
            &TemplateVars::default(),
            &address,
            SamplingModel::default(),
            &CredentialsWithoutAddress,
        )
        .unwrap_err();
        assert!(
            problems[0].message.contains("secretRef but no address"),
            "{problems:?}"
        );
    }
}
