//! Where a load may be sent. A webhook's metadata names the target, and a Canary is written by
//! a tenant: without a check, the loadtester would send load anywhere it can reach (the cloud's
//! metadata service, the API server, another team's database). By default only cluster Service
//! names are targets (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`); loopback only
//! with `--allow-loopback` (standalone runs), other hosts only with `--allow-target`. Whatever
//! a name resolves to is checked too: link-local, metadata and the API server's addresses are
//! never targets.

use std::net::{IpAddr, SocketAddr};

/// The allowlist, from the loadtester's flags.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// Loopback hosts are targets (`aviary run` and tests, where the upstreams are local).
    pub loopback: bool,
    /// More hosts: an exact name or address, or `.example.com` for a domain.
    pub extra: Vec<String>,
    /// The API server's own addresses, never a target: port 0 means every port of that address
    /// (in a cluster, `KUBERNETES_SERVICE_HOST`); a port, only that one (a kubeconfig's server
    /// on loopback, where the test upstreams live too).
    pub api_server: Vec<SocketAddr>,
}

/// Names that always mean the API server or a metadata service.
fn forbidden_name(host: &str) -> bool {
    host == "kubernetes"
        || host.starts_with("kubernetes.default")
        || host == "metadata"
        || host.starts_with("metadata.google.internal")
        || host == "instance-data"
}

/// Addresses that are never targets, whatever the allowlist says.
fn forbidden_address(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            let aws_metadata = v6.segments() == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254];
            link_local || aws_metadata || v6.is_unspecified() || v6.is_multicast()
        }
    }
}

/// A cluster Service's DNS name: one or two labels, or a third label `svc`.
fn service_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let dns_label = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    labels.iter().all(dns_label)
        && labels.first().is_none_or(|l| l.parse::<u32>().is_err())
        && (labels.len() <= 2 || labels.get(2) == Some(&"svc"))
}

impl Targets {
    fn listed(&self, host: &str) -> bool {
        self.extra
            .iter()
            .any(|allowed| match allowed.strip_prefix('.') {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == allowed,
            })
    }

    /// Whether `host` (as the URL writes it) may be a target, before any resolution.
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if forbidden_name(bare) {
            return Err(format!(
                "{bare} is the API server or a metadata service: never a target"
            ));
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check_address(SocketAddr::new(ip, 0), bare);
        }
        let loopback_name = bare == "localhost" || bare.ends_with(".localhost");
        let allowed = (loopback_name && self.loopback)
            || (!loopback_name && service_name(bare))
            || self.listed(bare);
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "{bare} is not a cluster Service name; --allow-target adds hosts"
            ))
        }
    }

    fn api_server(&self, address: SocketAddr) -> bool {
        self.api_server.iter().any(|server| {
            server.ip() == address.ip() && (server.port() == 0 || server.port() == address.port())
        })
    }

    /// Whether one address the target resolves to may be sent load (port 0: any port).
    pub fn check_address(&self, address: SocketAddr, host: &str) -> Result<(), String> {
        let ip = address.ip();
        if forbidden_address(ip) || self.api_server(address) {
            return Err(format!(
                "{host} is {ip}: link-local, metadata and API server addresses are never targets"
            ));
        }
        if ip.is_loopback() && !self.loopback {
            return Err(format!(
                "{host} is loopback ({ip}); only with --allow-loopback"
            ));
        }
        let literal = host.parse::<IpAddr>().is_ok();
        if literal && !ip.is_loopback() && !self.listed(host) {
            return Err(format!(
                "{host} is an address, not a cluster Service name; --allow-target adds it"
            ));
        }
        Ok(())
    }

    /// Checks `host` and every address it resolves to now.
    pub async fn check(&self, host: &str, port: u16) -> Result<(), String> {
        self.check_host(host)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check_address(SocketAddr::new(ip, port), bare);
        }
        let resolved = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|error| format!("{bare} does not resolve: {error}"))?;
        for address in resolved {
            self.check_address(address, bare)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Targets {
        Targets {
            api_server: vec![
                "10.96.0.1:0".parse().unwrap(),
                "127.0.0.1:6443".parse().unwrap(),
            ],
            ..Targets::default()
        }
    }

    #[test]
    fn service_names_are_targets_and_nothing_else_by_default() {
        let targets = cluster();
        for host in [
            "podinfo-canary",
            "podinfo-canary.test",
            "podinfo.test.svc",
            "podinfo.test.svc.cluster.local",
        ] {
            assert_eq!(targets.check_host(host), Ok(()), "{host}");
        }
        for host in [
            "169.254.169.254",
            "[fd00:ec2::254]",
            "metadata.google.internal",
            "kubernetes.default.svc",
            "kubernetes",
            "127.0.0.1",
            "localhost",
            "10.0.0.5",
            "example.com.evil.org",
        ] {
            assert!(targets.check_host(host).is_err(), "{host}");
        }
        let api = targets.check_address("10.96.0.1:443".parse().unwrap(), "podinfo");
        assert!(api.unwrap_err().contains("API server"));
        let mapped = targets.check_address("[::ffff:169.254.169.254]:80".parse().unwrap(), "x");
        assert!(mapped.is_err());
    }

    #[test]
    fn loopback_and_listed_hosts_only_when_allowed() {
        let targets = Targets {
            loopback: true,
            extra: vec![".example.com".into(), "10.0.0.5".into()],
            ..cluster()
        };
        for host in ["127.0.0.1", "localhost", "api.example.com", "10.0.0.5"] {
            assert_eq!(targets.check_host(host), Ok(()), "{host}");
        }
        assert!(targets.check_host("169.254.169.254").is_err());
        assert!(targets.check_host("example.com.evil.org").is_err());
        let local_api = targets.check_address("127.0.0.1:6443".parse().unwrap(), "127.0.0.1");
        assert!(local_api.is_err());
        let upstream = targets.check_address("127.0.0.1:8080".parse().unwrap(), "127.0.0.1");
        assert_eq!(upstream, Ok(()));
    }
}
