//! Kubernetes name rules (DNS-1123) for everything that ends up in a DNS name or in the server's
//! option file: a name that breaks them would query the wrong name or add an option.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} {value:?} is not a valid {rule}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub rule: &'static str,
}

const LABEL_RULE: &str =
    "DNS-1123 label (1 to 63 of a-z, 0-9 and '-', starting and ending with a letter or digit)";
const SUBDOMAIN_RULE: &str =
    "DNS-1123 subdomain (dot-separated DNS-1123 labels, at most 253 characters)";

fn is_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
}

/// A namespace, a Service or a pod's hostname.
pub fn label(what: &'static str, value: &str) -> Result<(), NameError> {
    if is_label(value) {
        Ok(())
    } else {
        Err(NameError {
            what,
            value: value.to_owned(),
            rule: LABEL_RULE,
        })
    }
}

/// A cluster domain such as `cluster.local`.
pub fn subdomain(what: &'static str, value: &str) -> Result<(), NameError> {
    if value.len() <= 253 && value.split('.').all(is_label) {
        Ok(())
    } else {
        Err(NameError {
            what,
            value: value.to_owned(),
            rule: SUBDOMAIN_RULE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for good in ["a", "mysql", "billing-db-12", "0", "x".repeat(63).as_str()] {
            assert_eq!(label("name", good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a\nb",
            "a b",
            "x".repeat(64).as_str(),
        ] {
            assert!(label("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subdomains() {
        for good in ["cluster.local", "k8s.example.net", "local"] {
            assert_eq!(subdomain("domain", good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "cluster..local",
            "cluster.local.",
            "Cluster.local",
            "a\n.b",
        ] {
            assert!(subdomain("domain", bad).is_err(), "{bad:?}");
        }
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        assert!(subdomain("domain", &long).is_err());
    }

    #[test]
    fn the_error_names_the_setting_and_the_rule() {
        let err = label("--namespace", "Prod").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--namespace \"Prod\" is not a valid DNS-1123 label"),
            "{err}"
        );
    }
}
