//! A real Envoy as the standalone router: Aviary writes its bootstrap (one listener, clusters
//! `primary` and `canary`, routes from a watched file) and starts it; every route change is a
//! new route file moved into place, which Envoy picks up without a restart. Its admin
//! listener serves `/stats/prometheus`, which the Envoy built-in checks read.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::Traffic;
use crate::engine::Routes;
use crate::plan::{Condition, RouteMatch};

#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    #[error("cannot write Envoy's configuration in {dir}: {source}")]
    Files {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start Envoy {binary:?}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("Envoy exited during start-up ({status}); its log: {log}")]
    Exited { status: String, log: String },
    #[error("Envoy's admin listener {admin} was not ready within {seconds}s; its log: {log}")]
    NotReady {
        admin: SocketAddr,
        seconds: u64,
        log: String,
    },
}

struct State {
    routes: Routes,
    matches: Vec<RouteMatch>,
    /// The cluster that serves the primary's share (`canary` after a promotion).
    primary_cluster: &'static str,
}

/// A running Envoy; killed when dropped.
pub struct EnvoyProxy {
    child: Mutex<std::process::Child>,
    dir: PathBuf,
    canary: SocketAddr,
    state: Mutex<State>,
    pub admin: SocketAddr,
}

fn cluster(name: &str, address: SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                "address": address.ip().to_string(), "port_value": address.port()
            } } } }] }]
        }
    })
}

fn bootstrap(
    listen: SocketAddr,
    admin: SocketAddr,
    routes_dir: &Path,
    primary: SocketAddr,
    canary: SocketAddr,
) -> Value {
    let socket = |a: SocketAddr| json!({ "socket_address": { "address": a.ip().to_string(), "port_value": a.port() } });
    json!({
        "node": { "id": "aviary", "cluster": "aviary" },
        "admin": { "address": socket(admin) },
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": socket(listen),
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "aviary",
                        "rds": {
                            "route_config_name": "aviary",
                            "config_source": {
                                "resource_api_version": "V3",
                                "path_config_source": {
                                    "path": routes_dir.join("rds.json"),
                                    "watched_directory": { "path": routes_dir }
                                }
                            }
                        },
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
                        }]
                    }
                }] }]
            }],
            "clusters": [cluster("primary", primary), cluster("canary", canary)]
        }
    })
}

fn string_match(condition: &Condition) -> Option<Value> {
    match condition {
        Condition::Exact(v) => Some(json!({ "exact": v })),
        Condition::Prefix(v) if !v.is_empty() => Some(json!({ "prefix": v })),
        Condition::Suffix(v) if !v.is_empty() => Some(json!({ "suffix": v })),
        Condition::Regex(v) => Some(json!({ "safe_regex": { "regex": v } })),
        _ => None,
    }
}

/// An Envoy route match for one A/B condition: headers, path and method. `None` when the
/// condition holds nothing Envoy can test, so it never becomes a catch-all to the canary.
fn route_match(condition: &RouteMatch) -> Option<Value> {
    let mut headers: Vec<Value> = condition
        .headers
        .iter()
        .filter_map(|(name, m)| Some(json!({ "name": name, "string_match": string_match(m)? })))
        .collect();
    if let Some(method) = condition.method.as_ref().and_then(string_match) {
        headers.push(json!({ "name": ":method", "string_match": method }));
    }
    let mut out = match &condition.uri {
        Some(Condition::Exact(path)) => json!({ "path": path }),
        Some(Condition::Prefix(prefix)) => json!({ "prefix": prefix }),
        Some(Condition::Regex(regex)) => json!({ "safe_regex": { "regex": regex } }),
        _ if headers.is_empty() => return None,
        _ => json!({ "prefix": "/" }),
    };
    if !headers.is_empty() {
        out["headers"] = Value::Array(headers);
    }
    Some(out)
}

/// Envoy's route configuration for `routes`: A/B matches first, then the weighted split.
fn route_configuration(state: &State) -> Value {
    let mut routes = Vec::new();
    if state.routes.match_to_canary {
        for condition in state.matches.iter().filter_map(route_match) {
            routes.push(json!({ "match": condition, "route": { "cluster": "canary" } }));
        }
    }
    let mut split = json!({
        "weighted_clusters": { "clusters": [
            { "name": state.primary_cluster, "weight": state.routes.primary_weight.max(0) },
            { "name": "canary", "weight": state.routes.canary_weight.max(0) }
        ] }
    });
    if state.routes.primary_weight + state.routes.canary_weight <= 0 {
        split = json!({ "cluster": state.primary_cluster });
    }
    if let Some(percent) = state.routes.mirror_percent {
        split["request_mirror_policies"] = json!([{
            "cluster": "canary",
            "runtime_fraction": { "default_value": { "numerator": percent, "denominator": "HUNDRED" } }
        }]);
    }
    routes.push(json!({ "match": { "prefix": "/" }, "route": split }));
    json!({
        "version_info": format!("{}", rand::random::<u32>()),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            "name": "aviary",
            "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }]
        }]
    })
}

impl EnvoyProxy {
    /// Writes the configuration, starts `binary` and waits until its admin listener is ready.
    pub async fn start(
        binary: &str,
        listen: SocketAddr,
        admin: SocketAddr,
        primary: SocketAddr,
        canary: SocketAddr,
    ) -> Result<EnvoyProxy, EnvoyError> {
        let dir = std::env::temp_dir().join(format!("aviary-envoy-{}", std::process::id()));
        let routes_dir = dir.join("routes");
        let files = |source| EnvoyError::Files {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&routes_dir).map_err(files)?;
        let proxy_state = State {
            routes: Routes::primary_only(),
            matches: Vec::new(),
            primary_cluster: "primary",
        };
        write_routes(&routes_dir, &route_configuration(&proxy_state)).map_err(files)?;
        let config = bootstrap(listen, admin, &routes_dir, primary, canary);
        std::fs::write(dir.join("envoy.json"), config.to_string()).map_err(files)?;
        let log_path = dir.join("envoy.log");
        let log = std::fs::File::create(&log_path).map_err(files)?;
        let mut child = std::process::Command::new(binary)
            .arg("-c")
            .arg(dir.join("envoy.json"))
            .args(["--disable-hot-restart", "-l", "warning"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| EnvoyError::Spawn {
                binary: binary.to_string(),
                source,
            })?;
        let http = crate::http_client::client(Duration::from_secs(2));
        let patience = Duration::from_secs(30);
        let deadline = tokio::time::Instant::now() + patience;
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(EnvoyError::Exited {
                    status: status.to_string(),
                    log: read_log(),
                });
            }
            let ready = http
                .get(format!("http://{admin}/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                return Err(EnvoyError::NotReady {
                    admin,
                    seconds: patience.as_secs(),
                    log: read_log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(%listen, %admin, "envoy started");
        Ok(EnvoyProxy {
            child: Mutex::new(child),
            dir,
            canary,
            state: Mutex::new(proxy_state),
            admin,
        })
    }

    fn rewrite(&self, state: &State) -> Result<(), String> {
        write_routes(&self.dir.join("routes"), &route_configuration(state))
            .map_err(|e| format!("cannot write Envoy's routes: {e}"))
    }
}

/// Writes the route file next to its final name and moves it into place, so Envoy never reads
/// half a file.
fn write_routes(dir: &Path, config: &Value) -> std::io::Result<()> {
    let staged = dir.join(".rds.json.next");
    std::fs::write(&staged, config.to_string())?;
    std::fs::rename(staged, dir.join("rds.json"))
}

impl Traffic for EnvoyProxy {
    fn set_routes(&self, routes: Routes, matches: &[RouteMatch]) -> Result<(), String> {
        let mut state = self.state.lock();
        state.routes = routes;
        state.matches = matches.to_vec();
        self.rewrite(&state)
    }

    fn routes(&self) -> Routes {
        self.state.lock().routes
    }

    fn set_primary_address(&self, primary: SocketAddr) {
        let mut state = self.state.lock();
        state.primary_cluster = if primary == self.canary {
            "canary"
        } else {
            "primary"
        };
        if let Err(error) = self.rewrite(&state) {
            tracing::error!(%error, "promotion not applied to Envoy");
        }
    }
}

impl Drop for EnvoyProxy {
    fn drop(&mut self) {
        let mut child = self.child.lock();
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn ab_conditions_never_become_a_catch_all() {
        let insider = RouteMatch {
            headers: BTreeMap::from([("x-canary".to_string(), Condition::Exact("insider".into()))]),
            ..Default::default()
        };
        let state = State {
            routes: Routes {
                match_to_canary: true,
                mirror_percent: Some(10),
                ..Routes::primary_only()
            },
            matches: vec![insider, RouteMatch::default()],
            primary_cluster: "primary",
        };
        let config = route_configuration(&state);
        let routes = &config["resources"][0]["virtual_hosts"][0]["routes"];
        assert_eq!(routes.as_array().unwrap().len(), 2, "{routes}");
        assert_eq!(
            routes[0]["match"]["headers"][0]["string_match"]["exact"],
            "insider"
        );
        assert_eq!(routes[0]["route"]["cluster"], "canary");
        assert_eq!(
            routes[1]["route"]["request_mirror_policies"][0]["runtime_fraction"]["default_value"]
                ["numerator"],
            10
        );
    }
}
