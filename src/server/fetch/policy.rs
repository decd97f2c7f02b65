//! What the operator allows the server to fetch from beyond the public internet
//! (`cortex server --allow-fetch CIDR|HOST`), and the decision for one address. Pure.

use std::net::IpAddr;

use ipnet::IpNet;

use super::addresses::{self, Special};

/// One `--allow-fetch` entry: a network (`10.0.0.0/8`, `127.0.0.1`) or a host name
/// (`files.internal`), which is then fetched from whatever it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Net(IpNet),
    Host(String),
}

impl std::str::FromStr for Allowed {
    type Err = String;

    fn from_str(s: &str) -> Result<Allowed, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Allowed::Net(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Allowed::Net(IpNet::from(ip)));
        }
        let host = s.trim_end_matches('.').to_ascii_lowercase();
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid || s.contains('/') {
            return Err(format!(
                "{s:?} is neither a network (CIDR such as 10.0.0.0/8, or one address) nor a host name"
            ));
        }
        Ok(Allowed::Host(host))
    }
}

/// Why an address is not fetched from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A URL naming a special address itself.
    #[error("{ip} is {}, which this server does not fetch from (an operator can allow it with `cortex server --allow-fetch {}`)", .rule.rule(), single(*.ip))]
    Address { ip: IpAddr, rule: Special },
    /// A host name that resolves to a special address (which one is not told).
    #[error("{host} resolves to {}, which this server does not fetch from (an operator can allow it with `cortex server --allow-fetch {host}`)", .rule.rule())]
    Host { host: String, rule: Special },
}

fn single(ip: IpAddr) -> String {
    IpNet::from(ip).to_string()
}

/// The addresses `delimited_files` may be fetched from: every public one, and the special ones
/// the operator allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchPolicy {
    allowed: Vec<Allowed>,
}

impl FetchPolicy {
    pub fn new(allowed: Vec<Allowed>) -> FetchPolicy {
        FetchPolicy { allowed }
    }

    /// Whether `host` (a name, as it appears in a URL) was allowed by name: then every address
    /// it resolves to is.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.allowed
            .iter()
            .any(|a| matches!(a, Allowed::Host(h) if h.eq_ignore_ascii_case(host)))
    }

    /// Whether the address `ip` may be connected to (a URL naming it, or one a name resolved
    /// to): public, or in a network the operator allowed.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Special> {
        let Some(rule) = addresses::special(ip) else {
            return Ok(());
        };
        let reached = addresses::canonical(ip);
        let allowed = self.allowed.iter().any(|a| match a {
            Allowed::Net(net) => net.contains(&ip) || net.contains(&reached),
            Allowed::Host(_) => false,
        });
        if allowed {
            Ok(())
        } else {
            Err(rule)
        }
    }

    /// A URL's host given as an address.
    pub fn check_literal(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.check_ip(ip)
            .map_err(|rule| Refusal::Address { ip, rule })
    }

    /// A host name and every address it resolved to: all must be allowed (a name that
    /// resolves to a public address and a private one is refused).
    pub fn check_resolved(&self, host: &str, ips: &[IpAddr]) -> Result<(), Refusal> {
        if self.allows_host(host) {
            return Ok(());
        }
        for ip in ips {
            self.check_ip(*ip).map_err(|rule| Refusal::Host {
                host: host.to_string(),
                rule,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> FetchPolicy {
        FetchPolicy::new(entries.iter().map(|e| e.parse().unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn by_default_special_addresses_are_refused_naming_the_rule() {
        let p = FetchPolicy::default();
        assert!(p.check_literal(ip("93.184.215.14")).is_ok());
        let e = p.check_literal(ip("127.0.0.1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "127.0.0.1 is a loopback address, which this server does not fetch from (an operator can allow it with `cortex server --allow-fetch 127.0.0.1/32`)"
        );
        let e = p
            .check_resolved("metadata.internal", &[ip("8.8.8.8"), ip("169.254.169.254")])
            .unwrap_err();
        assert_eq!(
            e,
            Refusal::Host {
                host: "metadata.internal".into(),
                rule: Special::LinkLocal
            }
        );
        assert!(
            !e.to_string().contains("169.254"),
            "what a name resolves to is not told: {e}"
        );
    }

    #[test]
    fn networks_and_hosts_the_operator_allowed_pass() {
        let p = policy(&["10.0.0.0/8", "127.0.0.2", "Files.Internal."]);
        assert!(p.check_literal(ip("10.9.8.7")).is_ok());
        assert!(p.check_literal(ip("::ffff:10.9.8.7")).is_ok());
        assert!(p.check_literal(ip("127.0.0.2")).is_ok());
        assert!(p.check_literal(ip("127.0.0.1")).is_err());
        assert!(p.check_literal(ip("192.168.0.1")).is_err());
        assert!(p
            .check_resolved("files.internal", &[ip("127.0.0.1")])
            .is_ok());
        assert!(p.check_resolved("localhost", &[ip("127.0.0.1")]).is_err());
        assert!(p.check_resolved("other", &[ip("10.0.0.1")]).is_ok());
    }

    #[test]
    fn entries_that_are_neither_a_network_nor_a_host_are_refused() {
        for bad in ["10.0.0.0/33", "", "a b", "http://x", "x/8"] {
            assert!(bad.parse::<Allowed>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.1.2.3/8".parse::<Allowed>().unwrap(),
            Allowed::Net("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            "::1".parse::<Allowed>().unwrap(),
            Allowed::Net("::1/128".parse().unwrap())
        );
    }
}
