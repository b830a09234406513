//! A/B match conditions, each string condition read into exactly one kind, and what the router
//! of a canary can express.

use std::collections::BTreeMap;

use crate::api::{CanaryAnalysis, RequestMatch, StringMatch};

use super::{Findings, SessionAffinity};

/// A string condition of exactly one kind. A regex is checked to compile when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(String),
}

/// One A/B condition (a subset of Istio's HTTPMatchRequest), read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    pub name: Option<String>,
    pub headers: BTreeMap<String, Condition>,
    pub without_headers: BTreeMap<String, Condition>,
    pub query_params: BTreeMap<String, Condition>,
    pub uri: Option<Condition>,
    pub method: Option<Condition>,
    pub scheme: Option<Condition>,
    pub authority: Option<Condition>,
    pub port: Option<i32>,
    pub ignore_uri_case: Option<bool>,
    pub source_labels: BTreeMap<String, String>,
    pub source_namespace: Option<String>,
    pub gateways: Vec<String>,
}

impl Condition {
    /// The one kind `wire` names, or why it names none or several; a regex must compile.
    pub fn read(wire: &StringMatch) -> Result<Condition, String> {
        let set: Vec<(&str, Condition)> = [
            ("exact", wire.exact.clone().map(Condition::Exact)),
            ("prefix", wire.prefix.clone().map(Condition::Prefix)),
            ("suffix", wire.suffix.clone().map(Condition::Suffix)),
            ("regex", wire.regex.clone().map(Condition::Regex)),
        ]
        .into_iter()
        .filter_map(|(name, condition)| Some((name, condition?)))
        .collect();
        let condition = match <[_; 1]>::try_from(set) {
            Ok([(_, only)]) => only,
            Err(set) if set.is_empty() => {
                return Err("needs one of exact, prefix, suffix or regex".into())
            }
            Err(several) => {
                let names: Vec<&str> = several.iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "sets {}: exactly one of exact, prefix, suffix or regex may be set",
                    names.join(" and ")
                ));
            }
        };
        if let Condition::Regex(pattern) = &condition {
            regex::Regex::new(pattern)
                .map_err(|error| format!("invalid regex {pattern:?}: {error}"))?;
        }
        Ok(condition)
    }
}

/// The A/B conditions and the session affinity: how requests are told apart.
pub(super) fn requests(
    analysis: &CanaryAnalysis,
    findings: &mut Findings,
) -> (Vec<RouteMatch>, Option<SessionAffinity>) {
    let affinity = session_affinity(analysis, findings);
    let conditions = read_conditions(&analysis.r#match, "spec.analysis.match", findings);
    (conditions, affinity)
}

/// Checks `spec.service.match` as the A/B conditions are checked: it is written into the route
/// every request takes, so a bad regex there would break the whole route.
pub(super) fn check_service_matches(declared: &[RequestMatch], findings: &mut Findings) {
    read_conditions(declared, "spec.service.match", findings);
}

/// Reads every condition; each one that is not exactly one kind is an error at its path.
fn read_conditions(
    declared: &[RequestMatch],
    base: &str,
    findings: &mut Findings,
) -> Vec<RouteMatch> {
    declared
        .iter()
        .enumerate()
        .map(|(index, request)| read_one(request, &format!("{base}[{index}]"), findings))
        .collect()
}

fn read_one(request: &RequestMatch, base: &str, findings: &mut Findings) -> RouteMatch {
    for name in request.headers.keys().chain(request.without_headers.keys()) {
        if http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).is_err() {
            let message = format!("{name:?} is not an HTTP header name");
            findings.error(&format!("{base}.headers.{name}"), message);
        }
    }
    let mut one = |field: String, wire: &StringMatch| match Condition::read(wire) {
        Ok(condition) => Some(condition),
        Err(reason) => {
            findings.error(&format!("{base}.{field}"), reason);
            None
        }
    };
    let mut map = |section: &str,
                   wires: &BTreeMap<String, StringMatch>|
     -> BTreeMap<String, Condition> {
        wires
            .iter()
            .filter_map(|(key, wire)| Some((key.clone(), one(format!("{section}.{key}"), wire)?)))
            .collect()
    };
    let headers = map("headers", &request.headers);
    let without_headers = map("withoutHeaders", &request.without_headers);
    let query_params = map("queryParams", &request.query_params);
    let mut single = |field: &str, wire: &Option<StringMatch>| {
        wire.as_ref().and_then(|wire| one(field.to_string(), wire))
    };
    RouteMatch {
        name: request.name.clone(),
        headers,
        without_headers,
        query_params,
        uri: single("uri", &request.uri),
        method: single("method", &request.method),
        scheme: single("scheme", &request.scheme),
        authority: single("authority", &request.authority),
        port: request.port,
        ignore_uri_case: request.ignore_uri_case,
        source_labels: request.source_labels.clone(),
        source_namespace: request.source_namespace.clone(),
        gateways: request.gateways.clone(),
    }
}

/// Cookie lifetime when `maxAge` is unset: one day, as Flagger.
const DEFAULT_COOKIE_MAX_AGE: i32 = 86_400;

fn session_affinity(analysis: &CanaryAnalysis, findings: &mut Findings) -> Option<SessionAffinity> {
    let affinity = analysis.session_affinity.as_ref()?;
    if affinity.cookie_name.trim().is_empty() {
        findings.error(
            "spec.analysis.sessionAffinity.cookieName",
            "cookieName must not be empty",
        );
    }
    if affinity.primary_cookie_name.as_deref() == Some(affinity.cookie_name.as_str()) {
        findings.error(
            "spec.analysis.sessionAffinity.primaryCookieName",
            format!("primaryCookieName {:?} equals cookieName: the two cookies must differ or no session could be told apart", affinity.cookie_name),
        );
    }
    let max_age = match affinity.max_age {
        Some(age) if age <= 0 => {
            findings.warning(
                "spec.analysis.sessionAffinity.maxAge",
                format!("maxAge {age} makes every session cookie expire at once"),
            );
            age
        }
        age => age.unwrap_or(DEFAULT_COOKIE_MAX_AGE),
    };
    Some(SessionAffinity {
        cookie_name: affinity.cookie_name.clone(),
        primary_cookie_name: affinity.primary_cookie_name.clone(),
        max_age,
        attributes: cookie_attributes(affinity, findings),
    })
}

/// A cookie name is an RFC 6265 token: anything else could end the header it is written into.
fn check_cookie_name(path: &str, name: &str, findings: &mut Findings) {
    let separator = |c: char| "()<>@,;:\\\"/[]?={} \t".contains(c);
    if name.chars().any(|c| !c.is_ascii_graphic() || separator(c)) {
        findings.error(
            path,
            format!("{name:?} is not a cookie name: use letters, digits and !#$%&'*+-.^_`|~"),
        );
    }
}

/// The attributes of the session cookies, each refused when it could break out of its place
/// in the `Set-Cookie` header.
fn cookie_attributes(affinity: &crate::api::SessionAffinity, findings: &mut Findings) -> String {
    let base = "spec.analysis.sessionAffinity";
    check_cookie_name(
        &format!("{base}.cookieName"),
        &affinity.cookie_name,
        findings,
    );
    if let Some(name) = &affinity.primary_cookie_name {
        check_cookie_name(&format!("{base}.primaryCookieName"), name, findings);
    }
    let path = affinity.path.as_deref().unwrap_or("/");
    if !path.starts_with('/') || path.chars().any(|c| c.is_ascii_control() || c == ';') {
        findings.error(
            &format!("{base}.path"),
            format!("{path:?} is not a cookie path: it starts with / and has no ; or control characters"),
        );
    }
    let mut out = format!("; Path={path}");
    if let Some(domain) = &affinity.domain {
        let host = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
        if domain.is_empty() || !domain.chars().all(host) {
            findings.error(
                &format!("{base}.domain"),
                format!("{domain:?} is not a domain name"),
            );
        }
        out.push_str(&format!("; Domain={domain}"));
    }
    if let Some(same_site) = affinity.same_site {
        out.push_str(&format!("; SameSite={same_site:?}"));
    }
    let flags = [
        (affinity.secure, "; Secure"),
        (affinity.http_only, "; HttpOnly"),
        (affinity.partitioned, "; Partitioned"),
    ];
    for (_, flag) in flags.iter().filter(|(on, _)| *on) {
        out.push_str(flag);
    }
    out
}
