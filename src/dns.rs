//! Peer names through the cluster DNS, and the cluster domain from the pod's resolv.conf.
//!
//! Names are looked up fully qualified (a trailing dot): a miss is one query, not one per
//! search domain. Cache lifetimes are bounded: a pod that restarts comes back with a new IP,
//! and a cached old one would outlive it.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use hickory_resolver::TokioResolver;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";
const MAX_CACHE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot read the resolver configuration ({RESOLV_CONF}): {0}")]
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

    /// The first address of `name`, asked as the fully qualified `name.`.
    pub async fn resolve(&self, name: &str) -> Result<IpAddr, DnsError> {
        self.resolve_existing(name)
            .await?
            .ok_or_else(|| DnsError::Lookup {
                name: fully_qualified(name),
                reason: "no such name (NXDOMAIN)".to_owned(),
            })
    }

    /// Like `resolve`, but `None` when the DNS says the name does not exist (NXDOMAIN): for a
    /// pod's stable name, that the pod does not exist. Any other failure is an error.
    pub async fn resolve_existing(&self, name: &str) -> Result<Option<IpAddr>, DnsError> {
        let asked = fully_qualified(name);
        let lookup_error = |reason: String| DnsError::Lookup {
            name: asked.clone(),
            reason,
        };
        let found = match self.0.lookup_ip(asked.as_str()).await {
            Ok(found) => found,
            Err(e) if e.is_nx_domain() => return Ok(None),
            Err(e) => return Err(lookup_error(e.to_string())),
        };
        found
            .iter()
            .next()
            .map(Some)
            .ok_or_else(|| lookup_error("no address in the answer".to_owned()))
    }
}

/// `name` with the trailing dot that makes it absolute.
pub fn fully_qualified(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

/// What a resolv.conf says, as far as the agent cares: nameservers and the search list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
}

impl ResolvConf {
    /// As the C library reads it: the last `search` or `domain` line sets the list.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(str::to_owned)),
                Some("search" | "domain") => {
                    conf.search = words
                        .take_while(|w| !w.starts_with(['#', ';']))
                        .map(|w| w.trim_end_matches('.').to_owned())
                        .collect()
                }
                _ => {}
            }
        }
        conf
    }

    pub fn read(path: &Path) -> std::io::Result<ResolvConf> {
        std::fs::read_to_string(path).map(|text| ResolvConf::parse(&text))
    }

    /// The kubelet writes `<namespace>.svc.<cluster domain>` first in a pod's search list.
    pub fn cluster_domain(&self, namespace: &str) -> Option<String> {
        let prefix = format!("{namespace}.svc.");
        self.search
            .iter()
            .find_map(|entry| entry.strip_prefix(&prefix))
            .filter(|domain| !domain.is_empty())
            .map(str::to_owned)
    }

    /// One line for logs: what a failed lookup was up against.
    pub fn summary(&self) -> String {
        format!(
            "nameservers [{}], search [{}]",
            self.nameservers.join(" "),
            self.search.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "# written by the kubelet\n\
                       search shop.svc.k8s.example.net svc.k8s.example.net k8s.example.net ec2.internal\n\
                       nameserver 10.96.0.10\n\
                       options ndots:5\n";

    #[test]
    fn the_cluster_domain_comes_from_the_pods_search_list() {
        let conf = ResolvConf::parse(POD);
        assert_eq!(conf.nameservers, ["10.96.0.10"]);
        assert_eq!(
            conf.cluster_domain("shop").as_deref(),
            Some("k8s.example.net")
        );
        assert_eq!(
            conf.cluster_domain("default"),
            None,
            "another namespace's list"
        );
        assert_eq!(
            conf.summary(),
            "nameservers [10.96.0.10], search [shop.svc.k8s.example.net svc.k8s.example.net k8s.example.net ec2.internal]"
        );
    }

    #[test]
    fn the_last_search_line_wins_and_trailing_dots_go() {
        let conf = ResolvConf::parse(
            "search a.example\nsearch db.svc.cluster.local. svc.cluster.local.\n",
        );
        assert_eq!(conf.cluster_domain("db").as_deref(), Some("cluster.local"));
        assert_eq!(
            ResolvConf::parse("nameserver 1.1.1.1\n").cluster_domain("db"),
            None
        );
        assert_eq!(
            ResolvConf::parse("search db.svc.\n").cluster_domain("db"),
            None
        );
    }

    #[test]
    fn lookups_are_fully_qualified() {
        assert_eq!(
            fully_qualified("mysql-0.mysql.db.svc.cluster.local"),
            "mysql-0.mysql.db.svc.cluster.local."
        );
        assert_eq!(fully_qualified("a.b."), "a.b.");
    }
}
