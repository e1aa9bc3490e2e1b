//! The DNS resolver of every connection's HTTP client: resolves with the system resolver and
//! hands the HTTP client only the addresses the connection's [`Guard`] allows, so the address
//! checked is the address connected to (no second lookup an attacker's DNS could answer
//! differently). A name with no allowed address fails with the guard's [`Refusal`], which a
//! caller finds in the error chain (egress reports it as `PERMISSION_DENIED`).

use std::{net::SocketAddr, sync::Arc};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::guard::{Guard, Refusal};

/// Where addresses come from.
#[derive(Debug, Clone)]
enum Lookup {
    /// The operating system's resolver (`getaddrinfo`).
    System,
    /// Fixed answers, for tests of the guard's resolver path.
    #[cfg(test)]
    Fixed(Vec<std::net::IpAddr>),
}

/// A resolver that filters answers through a connection's guard.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: Arc<Guard>,
    lookup: Lookup,
}

impl GuardedResolver {
    pub fn new(guard: Arc<Guard>) -> Self {
        Self {
            guard,
            lookup: Lookup::System,
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let lookup = self.lookup.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = match lookup {
                Lookup::System => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
                #[cfg(test)]
                Lookup::Fixed(ips) => ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
            };
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|address| match guard.check_ip(address.ip()) {
                    Ok(()) => true,
                    Err(refusal) => {
                        refused = Some(refusal);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let refusal = refused.unwrap_or(Refusal {
                    reason: "name has no address",
                });
                tracing::debug!(reason = refusal.reason, "resolved addresses refused");
                return Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::guard::tests::REFUSED;

    fn resolver(guard: Guard, ips: &[&str]) -> GuardedResolver {
        GuardedResolver {
            guard: Arc::new(guard),
            lookup: Lookup::Fixed(ips.iter().map(|ip| ip.parse().expect(ip)).collect()),
        }
    }

    async fn resolve(resolver: &GuardedResolver) -> Result<Vec<IpAddr>, String> {
        let name: Name = "partner.example".parse().expect("name");
        match resolver.resolve(name).await {
            Ok(addrs) => Ok(addrs.map(|a| a.ip()).collect()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_any_refused_address_is_refused() {
        for ip in REFUSED {
            let outcome = resolve(&resolver(Guard::default(), &[ip])).await;
            assert!(outcome.is_err(), "{ip} resolved: {outcome:?}");
        }
    }

    #[tokio::test]
    async fn only_allowed_answers_are_handed_on() {
        let outcome = resolve(&resolver(Guard::default(), &["10.0.0.1", "8.8.8.8"])).await;
        assert_eq!(outcome, Ok(vec!["8.8.8.8".parse().expect("ip")]));
    }

    #[tokio::test]
    async fn an_allowed_range_resolves() {
        let guard = Guard::new(vec!["10.0.0.0/8".parse().expect("net")]);
        let outcome = resolve(&resolver(guard, &["10.0.0.1", "::1"])).await;
        assert_eq!(outcome, Ok(vec!["10.0.0.1".parse().expect("ip")]));
    }
}
