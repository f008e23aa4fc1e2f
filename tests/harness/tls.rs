//! A CA and the StatefulSet's one certificate, as cert-manager's `Certificate` in `k8s/tls`
//! issues it (`*.<service>.<namespace>.svc.<domain>` and the service, serverAuth + clientAuth),
//! made with the `openssl` CLI and projected into `<root>/tls` as the kubelet projects a
//! Secret: `tls.crt`, `tls.key` and `ca.crt` are symlinks through `..data`, a symlink to the
//! current generation's directory, which an update replaces in one rename.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::cmd::run_blocking;
use super::layout::{self, Naming};

const KEYS: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// The mounted Secret and the CA that signs what goes into it.
pub struct TlsSecret {
    dir: PathBuf,
    wildcard: String,
    service: String,
    generation: u32,
}

impl TlsSecret {
    /// Creates the CA (its key stays beside the Secret, out of it) and issues the first
    /// certificate. Every file is world-readable: each pod's containers run as their own users,
    /// and a Secret's files would be theirs by fsGroup.
    pub fn create(dir: &Path, naming: &Naming) -> Result<TlsSecret> {
        layout::make_dirs(&[dir.to_owned()])?;
        let ca_dir = dir.join("..ca");
        layout::make_dirs(std::slice::from_ref(&ca_dir))?;
        let path = |name: &str| ca_dir.join(name).to_string_lossy().into_owned();
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
                &path("ca.key"),
                "-out",
                &path("ca.crt"),
            ],
        )?;
        let mut secret = TlsSecret {
            dir: dir.to_owned(),
            wildcard: format!(
                "*.{}.{}.svc.{}",
                naming.service, naming.namespace, naming.cluster_domain
            ),
            service: naming.service.clone(),
            generation: 0,
        };
        secret.rotate()?;
        Ok(secret)
    }

    /// Issues a new certificate (a new key and serial) and swaps it in as the kubelet updates a
    /// mounted Secret; returns its serial as `openssl x509 -serial` prints it.
    pub fn rotate(&mut self) -> Result<String> {
        self.generation += 1;
        let generation = self.dir.join(format!("..gen{}", self.generation));
        layout::make_dirs(std::slice::from_ref(&generation))?;
        let ca_dir = self.dir.join("..ca");
        let path = |dir: &Path, name: &str| dir.join(name).to_string_lossy().into_owned();
        let ext = path(&generation, "ext.cnf");
        layout::write_file(
            Path::new(&ext),
            &format!(
                "subjectAltName = DNS:{}, DNS:{}\n\
                 extendedKeyUsage = serverAuth, clientAuth\n\
                 keyUsage = critical, digitalSignature, keyEncipherment\n\
                 basicConstraints = critical, CA:FALSE\n",
                self.wildcard, self.service
            ),
            0o644,
        )?;
        let (key, csr, cert) = (
            path(&generation, "tls.key"),
            path(&generation, "tls.csr"),
            path(&generation, "tls.crt"),
        );
        run_blocking(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={}", self.wildcard),
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
                &path(&ca_dir, "ca.crt"),
                "-CAkey",
                &path(&ca_dir, "ca.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        )?;
        std::fs::copy(ca_dir.join("ca.crt"), generation.join("ca.crt"))?;
        for name in KEYS {
            std::fs::set_permissions(
                generation.join(name),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )?;
        }
        // The kubelet's AtomicWriter: a new `..data` link renamed over the old one.
        let next = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(generation.file_name().context("a generation name")?, &next)?;
        std::fs::rename(&next, self.dir.join("..data"))?;
        for name in KEYS {
            let link = self.dir.join(name);
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), link)?;
            }
        }
        let serial = run_blocking("openssl", &["x509", "-noout", "-serial", "-in", &cert])?;
        Ok(serial.trim().trim_start_matches("serial=").to_owned())
    }

    pub fn file(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// The agent's settings for these files: the servers' TLS, replication over TLS and the
    /// peer channel over mutual TLS.
    pub fn agent_env(&self) -> Vec<(String, String)> {
        let path = |key: &str| self.file(key).to_string_lossy().into_owned();
        vec![
            ("MYSQL_STS_TLS_CERT_FILE".into(), path("tls.crt")),
            ("MYSQL_STS_TLS_KEY_FILE".into(), path("tls.key")),
            ("MYSQL_STS_TLS_CA_FILE".into(), path("ca.crt")),
            ("MYSQL_STS_REPLICATION_TLS".into(), "true".into()),
            ("MYSQL_STS_CLONE_TLS".into(), "true".into()),
            ("MYSQL_STS_CLONE_TLS_CLIENT_AUTH".into(), "true".into()),
        ]
    }
}
