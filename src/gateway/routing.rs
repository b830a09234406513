//! Which upstream a request goes to: A/B matches first, then the weighted split.

use std::net::SocketAddr;

use http::request::Parts;
use regex::Regex;

use crate::engine::Routes;
use crate::plan::{Condition as Declared, RouteMatch};

/// The two backends of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Upstream {
    Primary,
    Canary,
}

impl Upstream {
    pub fn as_str(self) -> &'static str {
        match self {
            Upstream::Primary => "primary",
            Upstream::Canary => "canary",
        }
    }
}

/// A header condition compiled once, when the routes are set, not per request.
#[derive(Debug, Clone)]
enum Condition {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
}

impl Condition {
    fn compile(field: &str, declared: &Declared) -> Result<Condition, MatchError> {
        Ok(match declared {
            Declared::Exact(exact) => Condition::Exact(exact.clone()),
            Declared::Prefix(prefix) => Condition::Prefix(prefix.clone()),
            Declared::Suffix(suffix) => Condition::Suffix(suffix.clone()),
            Declared::Regex(pattern) => {
                // Istio and Envoy match the whole value with RE2 semantics.
                let anchored = format!("^(?:{pattern})$");
                Condition::Regex(Regex::new(&anchored).map_err(|e| MatchError::BadRegex {
                    field: field.to_string(),
                    reason: e.to_string(),
                })?)
            }
        })
    }

    fn accepts(&self, value: &str) -> bool {
        match self {
            Condition::Exact(expected) => value == expected,
            Condition::Prefix(prefix) => value.starts_with(prefix.as_str()),
            Condition::Suffix(suffix) => value.ends_with(suffix.as_str()),
            Condition::Regex(regex) => regex.is_match(value),
        }
    }
}

/// A request condition the gateway cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error("{field}: invalid regex: {reason}")]
    BadRegex { field: String, reason: String },
    #[error("{field}: {name:?} is not a header name")]
    BadHeader { field: String, name: String },
}

/// One compiled A/B rule: every header and the path condition must hold.
#[derive(Debug, Clone, Default)]
struct Rule {
    headers: Vec<(http::HeaderName, Condition)>,
    uri: Option<Condition>,
}

impl Rule {
    fn accepts(&self, parts: &Parts) -> bool {
        let headers_hold = self.headers.iter().all(|(name, condition)| {
            parts
                .headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .any(|value| condition.accepts(value))
        });
        let uri_holds = self
            .uri
            .as_ref()
            .is_none_or(|condition| condition.accepts(parts.uri.path()));
        headers_hold && uri_holds
    }
}

/// The routing state the proxy reads on every request. Replaced whole when routes change, so a
/// request in flight keeps the decision it was made with.
#[derive(Debug, Clone)]
pub struct RouteTable {
    pub primary: SocketAddr,
    pub canary: SocketAddr,
    pub routes: Routes,
    rules: Vec<Rule>,
}

impl RouteTable {
    /// A table sending everything to the primary.
    pub fn new(primary: SocketAddr, canary: SocketAddr) -> Self {
        RouteTable {
            primary,
            canary,
            routes: Routes::primary_only(),
            rules: Vec::new(),
        }
    }

    /// The same table with new weights and A/B rules; the rules are compiled here.
    pub fn with_routes(
        &self,
        routes: Routes,
        matches: &[RouteMatch],
    ) -> Result<RouteTable, MatchError> {
        let mut rules = Vec::new();
        for (index, request_match) in matches.iter().enumerate() {
            let mut rule = Rule::default();
            for (name, spec) in &request_match.headers {
                let field = format!("analysis.match[{index}].headers.{name}");
                let header = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| MatchError::BadHeader {
                        field: field.clone(),
                        name: name.clone(),
                    })?;
                rule.headers
                    .push((header, Condition::compile(&field, spec)?));
            }
            if let Some(uri) = &request_match.uri {
                rule.uri = Some(Condition::compile(
                    &format!("analysis.match[{index}].uri"),
                    uri,
                )?);
            }
            rules.push(rule);
        }
        Ok(RouteTable {
            routes,
            rules,
            ..self.clone()
        })
    }

    /// Picks the upstream for a request; `roll` is a uniform number in [0, 100).
    pub fn choose(&self, parts: &Parts, roll: u32) -> Upstream {
        if self.routes.match_to_canary && self.rules.iter().any(|rule| rule.accepts(parts)) {
            return Upstream::Canary;
        }
        let canary_weight = self.routes.canary_weight.clamp(0, 100) as u32;
        if roll < canary_weight {
            Upstream::Canary
        } else {
            Upstream::Primary
        }
    }

    /// Whether a request sent to `chosen` should also be copied to the canary.
    pub fn mirrors(&self, chosen: Upstream, roll: u32) -> bool {
        chosen == Upstream::Primary
            && self
                .routes
                .mirror_percent
                .is_some_and(|percent| roll < percent.clamp(0, 100) as u32)
    }

    pub fn address(&self, upstream: Upstream) -> SocketAddr {
        match upstream {
            Upstream::Primary => self.primary,
            Upstream::Canary => self.canary,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn table() -> RouteTable {
        RouteTable::new(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
    }

    fn request(headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri("/api/items");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn header_match(name: &str, condition: Declared) -> RouteMatch {
        RouteMatch {
            headers: BTreeMap::from([(name.to_string(), condition)]),
            ..RouteMatch::default()
        }
    }

    #[test]
    fn weights_split_by_roll() {
        let table = table().with_routes(Routes::weighted(30), &[]).unwrap();
        let parts = request(&[]);
        let canary = (0..100)
            .filter(|roll| table.choose(&parts, *roll) == Upstream::Canary)
            .count();
        assert_eq!(canary, 30);
    }

    #[test]
    fn header_and_cookie_matches_go_to_canary() {
        let routes = Routes {
            match_to_canary: true,
            ..Routes::primary_only()
        };
        let matches = [
            header_match("x-canary", Declared::Exact("insider".into())),
            header_match(
                "cookie",
                Declared::Regex("^(.*?;)?(canary=always)(;.*)?$".into()),
            ),
        ];
        let table = table().with_routes(routes, &matches).unwrap();
        assert_eq!(
            table.choose(&request(&[("x-canary", "insider")]), 99),
            Upstream::Canary
        );
        assert_eq!(
            table.choose(&request(&[("cookie", "canary=always; a=b")]), 99),
            Upstream::Canary
        );
        assert_eq!(
            table.choose(&request(&[("x-canary", "other")]), 0),
            Upstream::Primary
        );
    }

    #[test]
    fn prefix_suffix_and_bad_regex() {
        let routes = Routes {
            match_to_canary: true,
            ..Routes::primary_only()
        };
        let prefix = header_match("user-agent", Declared::Prefix("Mozilla".into()));
        let table = table().with_routes(routes, &[prefix]).unwrap();
        assert_eq!(
            table.choose(&request(&[("user-agent", "Mozilla/5.0")]), 99),
            Upstream::Canary
        );
        let bad = header_match("x", Declared::Regex("(".into()));
        let error = table.with_routes(routes, &[bad]).unwrap_err();
        assert!(error.to_string().contains("analysis.match[0].headers.x"));
    }

    #[test]
    fn mirror_copies_only_primary_traffic() {
        let routes = Routes {
            mirror_percent: Some(50),
            ..Routes::primary_only()
        };
        let table = table().with_routes(routes, &[]).unwrap();
        assert!(table.mirrors(Upstream::Primary, 10));
        assert!(!table.mirrors(Upstream::Primary, 60));
        assert!(!table.mirrors(Upstream::Canary, 10));
    }
}
