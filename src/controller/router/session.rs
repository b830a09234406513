//! Sticky sessions during a weighted rollout (`analysis.sessionAffinity`): a response from the
//! canary sets a cookie, and a request carrying it keeps going to the canary, so one user does
//! not flip between versions from request to request. With `primaryCookieName`, users who
//! landed on the primary stay there too.

use crate::api::CanaryStatus;
use crate::engine::Routes;
use crate::plan::Plan;

#[derive(Debug, Clone, PartialEq)]
pub struct Cookie {
    pub name: String,
    /// The `Set-Cookie` value a response from this side carries.
    pub set_cookie: String,
    /// A regular expression over the `Cookie` request header that finds this cookie.
    pub request_pattern: String,
}

impl Cookie {
    /// `attributes` were checked when the plan was read (no `;` or control character can get
    /// into them or into `name`).
    fn new(name: &str, value: &str, max_age: i32, attributes: &str) -> Cookie {
        Cookie {
            name: name.to_string(),
            set_cookie: format!("{name}={value}; Max-Age={max_age}{attributes}"),
            request_pattern: format!(
                "(^|.*; ?){}={}(;.*)?",
                regex::escape(name),
                regex::escape(value)
            ),
        }
    }
}

/// The value of this run's cookie `name` as the status records it (`name=value`). Only letters
/// and digits are taken from the status, so nothing written there can reach a header unchecked;
/// a status without it (written before the run began) gives `1`.
fn run_value<'a>(recorded: Option<&'a str>, name: &str) -> &'a str {
    recorded
        .and_then(|cookie| cookie.strip_prefix(name)?.strip_prefix('='))
        .filter(|value| !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or("1")
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionCookies {
    pub canary: Cookie,
    pub primary: Option<Cookie>,
}

/// The cookies in force for `routes`: only while traffic is split by weight, since A/B routing
/// and full promotion already decide per request.
pub fn session_cookies(
    plan: &Plan,
    status: Option<&CanaryStatus>,
    routes: Routes,
) -> Option<SessionCookies> {
    let affinity = plan.analysis.session_affinity.as_ref()?;
    let split = routes.canary_weight > 0 && routes.canary_weight < 100;
    if !split || routes.match_to_canary {
        return None;
    }
    let (max_age, attributes) = (affinity.max_age, affinity.attributes.as_str());
    let canary = status.and_then(|s| s.session_affinity_cookie.as_deref());
    let primary = status.and_then(|s| s.primary_session_affinity_cookie.as_deref());
    let name = &affinity.cookie_name;
    Some(SessionCookies {
        canary: Cookie::new(name, run_value(canary, name), max_age, attributes),
        primary: affinity
            .primary_cookie_name
            .as_deref()
            .map(|name| Cookie::new(name, run_value(primary, name), max_age, attributes)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_value_is_taken_only_when_plain() {
        assert_eq!(run_value(Some("user=5f9c7d"), "user"), "5f9c7d");
        assert_eq!(run_value(Some("user=a; Domain=evil"), "user"), "1");
        assert_eq!(run_value(Some("other=abc"), "user"), "1");
        assert_eq!(run_value(None, "user"), "1");
    }

    #[test]
    fn the_request_pattern_finds_this_runs_cookie_only() {
        let cookie = Cookie::new("user", "abc", 60, "; Path=/");
        let pattern = regex::Regex::new(&format!("^(?:{})$", cookie.request_pattern)).unwrap();
        assert!(pattern.is_match("user=abc"));
        assert!(pattern.is_match("x=1; user=abc; y=2"));
        assert!(!pattern.is_match("user=old"));
        assert_eq!(cookie.set_cookie, "user=abc; Max-Age=60; Path=/");
    }
}
