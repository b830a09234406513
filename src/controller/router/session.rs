//! Sticky sessions during a weighted rollout (`analysis.sessionAffinity`): a response from the
//! canary sets a cookie, and a request carrying it keeps going to the canary, so one user does
//! not flip between versions from request to request. With `primaryCookieName`, users who
//! landed on the primary stay there too.

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
    fn new(name: &str, max_age: i32) -> Cookie {
        Cookie {
            name: name.to_string(),
            set_cookie: format!("{name}=1; Max-Age={max_age}; Path=/"),
            request_pattern: format!("(^|.*; ?){}=.*", regex::escape(name)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionCookies {
    pub canary: Cookie,
    pub primary: Option<Cookie>,
}

/// The cookies in force for `routes`: only while traffic is split by weight, since A/B routing
/// and full promotion already decide per request.
pub fn session_cookies(plan: &Plan, routes: Routes) -> Option<SessionCookies> {
    let affinity = plan.analysis.session_affinity.as_ref()?;
    let split = routes.canary_weight > 0 && routes.canary_weight < 100;
    if !split || routes.match_to_canary {
        return None;
    }
    let max_age = affinity.max_age;
    Some(SessionCookies {
        canary: Cookie::new(&affinity.cookie_name, max_age),
        primary: affinity
            .primary_cookie_name
            .as_deref()
            .map(|name| Cookie::new(name, max_age)),
    })
}
