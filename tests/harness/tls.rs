//! A CA and the StatefulSet's one certificate, as cert-manager's `Certificate` in `k8s/tls`
//! issues it (`*.<service>.<namespace>.svc.<domain>` and the service, serverAuth + clientAuth),
//! made with the `openssl` CLI into `<root>/tls` as a mounted Secret's `tls.crt`, `tls.key`
//! and `ca.crt`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::cmd::run_blocking;
use super::layout::{self, Naming};

pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TlsFiles {
    /// The agent's settings for these files, replication over TLS included.
    pub fn agent_env(&self) -> Vec<(String, String)> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            ("MYSQL_STS_TLS_CERT_FILE".into(), path(&self.cert)),
            ("MYSQL_STS_TLS_KEY_FILE".into(), path(&self.key)),
            ("MYSQL_STS_TLS_CA_FILE".into(), path(&self.ca)),
            ("MYSQL_STS_REPLICATION_TLS".into(), "true".into()),
        ]
    }
}

/// Issues the CA and the set's certificate into `dir`. Every file is world-readable: each pod's
/// containers run as their own users, and a Secret's files would be theirs by fsGroup.
pub fn issue(dir: &Path, naming: &Naming) -> Result<TlsFiles> {
    layout::make_dirs(&[dir.to_owned()])?;
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (ca_key, ca, key, csr, cert, ext) = (
        file("ca.key"),
        file("ca.crt"),
        file("tls.key"),
        file("tls.csr"),
        file("tls.crt"),
        file("ext.cnf"),
    );
    run_blocking(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mysql-sts-agent test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ],
    )?;
    let wildcard = format!(
        "*.{}.{}.svc.{}",
        naming.service, naming.namespace, naming.cluster_domain
    );
    layout::write_file(
        Path::new(&ext),
        &format!(
            "subjectAltName = DNS:{wildcard}, DNS:{service}\n\
             extendedKeyUsage = serverAuth, clientAuth\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             basicConstraints = critical, CA:FALSE\n",
            service = naming.service
        ),
        0o644,
    )?;
    run_blocking(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={wildcard}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    )?;
    run_blocking(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    )?;
    for name in [&key, &cert, &ca] {
        std::fs::set_permissions(name, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    }
    Ok(TlsFiles {
        cert: cert.into(),
        key: key.into(),
        ca: ca.into(),
    })
}
