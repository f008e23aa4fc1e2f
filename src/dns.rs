//! Peer names through the cluster DNS, with cache lifetimes bounded: a pod that restarts
//! comes back with a new IP, and a cached old one would outlive it.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;

const MAX_CACHE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot read the resolver configuration (/etc/resolv.conf): {0}")]
    Config(String),
    #[error("{name} does not resolve: {reason}")]
    Lookup { name: String, reason: String },
}

#[derive(Clone)]
pub struct Resolver(TokioResolver);

impl Resolver {
    pub fn from_system() -> Result<Self, DnsError> {
        let mut builder =
            TokioResolver::builder_tokio().map_err(|e| DnsError::Config(e.to_string()))?;
        let options = builder.options_mut();
        options.positive_max_ttl = Some(MAX_CACHE);
        options.negative_max_ttl = Some(MAX_CACHE);
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Config(e.to_string()))?;
        Ok(Resolver(resolver))
    }

    pub async fn resolve(&self, name: &str) -> Result<IpAddr, DnsError> {
        let lookup_error = |reason: String| DnsError::Lookup {
            name: name.to_owned(),
            reason,
        };
        let found = self
            .0
            .lookup_ip(name)
            .await
            .map_err(|e| lookup_error(e.to_string()))?;
        found
            .iter()
            .next()
            .ok_or_else(|| lookup_error("no address in the answer".to_owned()))
    }
}
