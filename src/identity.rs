//! Who this pod is: everything derived from its hostname and the naming config.

use serde::Serialize;

use crate::names::{self, NameError};

/// The first ordinal (normally 0) is the primary; every other ordinal replicates from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        })
    }
}

/// The DNS names a StatefulSet's headless service gives its pods, and where its ordinals start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// The headless service; `None` means the StatefulSet's own name.
    pub service: Option<String>,
    pub namespace: String,
    pub cluster_domain: String,
    /// `spec.ordinals.start` of the StatefulSet: this ordinal is the primary.
    pub first_ordinal: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub hostname: String,
    pub statefulset: String,
    pub service: String,
    pub ordinal: u32,
    pub first_ordinal: u32,
    pub server_id: u32,
    pub role: Role,
    pub fqdn: String,
    /// Ordinal-1, the pod this one clones from; `None` on the first ordinal.
    pub donor_fqdn: Option<String>,
    pub primary_fqdn: String,
    #[serde(skip)]
    domain_suffix: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error(
        "hostname {0:?} does not end in -<ordinal>: expected <statefulset>-<number> such as mysql-2"
    )]
    NoOrdinal(String),
    #[error(
        "server id offset {offset} + ordinal {ordinal} is not a valid server_id (1 to 4294967295)"
    )]
    ServerIdOutOfRange { offset: u32, ordinal: u32 },
    #[error(
        "hostname {hostname:?} has ordinal {ordinal}, below the first ordinal {first} \
         (--first-ordinal, the StatefulSet's spec.ordinals.start)"
    )]
    BelowFirstOrdinal {
        hostname: String,
        ordinal: u32,
        first: u32,
    },
    #[error(transparent)]
    Name(#[from] NameError),
}

impl Identity {
    pub fn derive(
        hostname: &str,
        naming: &Naming,
        server_id_offset: u32,
    ) -> Result<Self, IdentityError> {
        let (statefulset, ordinal) = parse_hostname(hostname)?;
        names::label("the hostname", &format!("{statefulset}-{ordinal}"))?;
        let first = naming.first_ordinal;
        if ordinal < first {
            return Err(IdentityError::BelowFirstOrdinal {
                hostname: hostname.to_owned(),
                ordinal,
                first,
            });
        }
        let server_id = server_id_offset
            .checked_add(ordinal)
            .filter(|id| *id != 0)
            .ok_or(IdentityError::ServerIdOutOfRange {
                offset: server_id_offset,
                ordinal,
            })?;
        let service = naming
            .service
            .clone()
            .unwrap_or_else(|| statefulset.clone());
        names::label("the service (--service)", &service)?;
        names::label("the namespace (--namespace)", &naming.namespace)?;
        names::subdomain("the cluster domain", &naming.cluster_domain)?;
        let domain_suffix = format!(
            "{service}.{}.svc.{}",
            naming.namespace, naming.cluster_domain
        );
        let pod_fqdn = |n: u32| format!("{statefulset}-{n}.{domain_suffix}");
        Ok(Identity {
            hostname: hostname.to_owned(),
            fqdn: pod_fqdn(ordinal),
            donor_fqdn: (ordinal > first).then(|| pod_fqdn(ordinal - 1)),
            primary_fqdn: pod_fqdn(first),
            role: if ordinal == first {
                Role::Primary
            } else {
                Role::Replica
            },
            statefulset,
            service,
            ordinal,
            first_ordinal: first,
            server_id,
            domain_suffix,
        })
    }

    /// The stable name of another pod of the same StatefulSet.
    pub fn peer_fqdn(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}.{}", self.statefulset, self.domain_suffix)
    }

    /// The primary's pod name, e.g. `mysql-0`, for messages.
    pub fn primary_name(&self) -> String {
        format!("{}-{}", self.statefulset, self.first_ordinal)
    }
}

/// `mysql-2` -> (`mysql`, 2). A fully qualified hostname is cut at its first dot.
fn parse_hostname(hostname: &str) -> Result<(String, u32), IdentityError> {
    let no_ordinal = || IdentityError::NoOrdinal(hostname.to_owned());
    let short = hostname.split('.').next().unwrap_or_default();
    let (set, ordinal) = short.rsplit_once('-').ok_or_else(no_ordinal)?;
    let canonical_number = !ordinal.is_empty()
        && ordinal.bytes().all(|b| b.is_ascii_digit())
        && (ordinal == "0" || !ordinal.starts_with('0'));
    if set.is_empty() || !canonical_number {
        return Err(no_ordinal());
    }
    let ordinal = ordinal.parse().map_err(|_| no_ordinal())?;
    Ok((set.to_owned(), ordinal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming {
            service: None,
            namespace: "prod".into(),
            cluster_domain: "cluster.local".into(),
            first_ordinal: 0,
        }
    }

    #[test]
    fn replica_identity_names_its_donor_and_primary() {
        let id = Identity::derive("mysql-2", &naming(), 100).unwrap();
        assert_eq!(id.ordinal, 2);
        assert_eq!(id.server_id, 102);
        assert_eq!(id.role, Role::Replica);
        assert_eq!(id.fqdn, "mysql-2.mysql.prod.svc.cluster.local");
        assert_eq!(
            id.donor_fqdn.as_deref(),
            Some("mysql-1.mysql.prod.svc.cluster.local")
        );
        assert_eq!(id.primary_fqdn, "mysql-0.mysql.prod.svc.cluster.local");
        assert_eq!(id.peer_fqdn(7), "mysql-7.mysql.prod.svc.cluster.local");
    }

    #[test]
    fn ordinal_zero_is_the_primary_without_donor() {
        let id = Identity::derive("db-0", &naming(), 1).unwrap();
        assert_eq!(id.role, Role::Primary);
        assert_eq!(id.server_id, 1);
        assert_eq!(id.donor_fqdn, None);
        assert_eq!(id.primary_fqdn, id.fqdn);
    }

    #[test]
    fn service_name_and_dashes_in_the_set_name() {
        let naming = Naming {
            service: Some("db-headless".into()),
            ..naming()
        };
        let id = Identity::derive("my-sql-set-11.db-headless.prod.svc", &naming, 100).unwrap();
        assert_eq!(id.statefulset, "my-sql-set");
        assert_eq!(id.ordinal, 11);
        assert_eq!(id.fqdn, "my-sql-set-11.db-headless.prod.svc.cluster.local");
    }

    #[test]
    fn the_first_ordinal_is_the_primary_and_the_next_clones_it() {
        let naming = Naming {
            service: Some("billing-db-hl".into()),
            namespace: "shop".into(),
            cluster_domain: "k8s.example.net".into(),
            first_ordinal: 10,
        };
        let primary = Identity::derive("billing-db-10", &naming, 100).unwrap();
        assert_eq!(primary.role, Role::Primary);
        assert_eq!(primary.donor_fqdn, None);
        assert_eq!(primary.server_id, 110);
        assert_eq!(primary.primary_name(), "billing-db-10");
        let replica = Identity::derive("billing-db-11", &naming, 100).unwrap();
        assert_eq!(replica.role, Role::Replica);
        assert_eq!(
            replica.donor_fqdn.as_deref(),
            Some("billing-db-10.billing-db-hl.shop.svc.k8s.example.net")
        );
        assert_eq!(replica.primary_fqdn, primary.fqdn);
        assert!(matches!(
            Identity::derive("billing-db-9", &naming, 100),
            Err(IdentityError::BelowFirstOrdinal {
                ordinal: 9,
                first: 10,
                ..
            })
        ));
    }

    #[test]
    fn names_that_would_break_dns_or_the_option_file_are_refused() {
        let bad = |naming: Naming, hostname: &str| {
            matches!(
                Identity::derive(hostname, &naming, 100),
                Err(IdentityError::Name(_))
            )
        };
        assert!(bad(naming(), "My_SQL-1"));
        assert!(bad(naming(), "mysql\nlog_bin=x-1"));
        assert!(bad(
            Naming {
                service: Some("db\nskip_grant_tables".into()),
                ..naming()
            },
            "mysql-1"
        ));
        assert!(bad(
            Naming {
                namespace: "Prod".into(),
                ..naming()
            },
            "mysql-1"
        ));
        assert!(bad(
            Naming {
                cluster_domain: "cluster.local\n[mysqld]".into(),
                ..naming()
            },
            "mysql-1"
        ));
    }

    #[test]
    fn hostnames_without_an_ordinal_are_refused() {
        for bad in [
            "mysql",
            "mysql-",
            "-1",
            "mysql-a",
            "mysql-01",
            "mysql-1a",
            "",
            "mysql-99999999999",
        ] {
            assert_eq!(
                Identity::derive(bad, &naming(), 100),
                Err(IdentityError::NoOrdinal(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_id_must_be_valid() {
        assert!(matches!(
            Identity::derive("mysql-0", &naming(), 0),
            Err(IdentityError::ServerIdOutOfRange { .. })
        ));
        assert!(matches!(
            Identity::derive("mysql-2", &naming(), u32::MAX - 1),
            Err(IdentityError::ServerIdOutOfRange { .. })
        ));
    }
}
