//! A CA and the StatefulSet's one certificate, issued as cert-manager would issue the
//! `Certificate` of `k8s/tls/cert-manager` (its DNS names edited for the cluster's names, its
//! usages and private key) with the `openssl` CLI: what the Secret the `tls` volume mounts holds
//! (`tls.crt`, `tls.key`, `ca.crt`). The kubelet's projection of it into each pod is
//! `volumes.rs`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::cmd::run_blocking;
use super::layout::{self, Naming, PodPaths};
use super::manifest::{self, CertificateSpec};
use super::mapping::{TLS_VOLUME, Template};

/// The Secret's keys, as cert-manager names them.
const KEYS: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// cert-manager's usages when a Certificate lists none.
const DEFAULT_USAGES: [&str; 2] = ["digital signature", "key encipherment"];

/// A cert-manager usage as an X.509 extension: (usage, extendedKeyUsage?, openssl's name).
const USAGES: [(&str, bool, &str); 4] = [
    ("server auth", true, "serverAuth"),
    ("client auth", true, "clientAuth"),
    ("digital signature", false, "digitalSignature"),
    ("key encipherment", false, "keyEncipherment"),
];

/// The issuer: its CA and the certificate it issued last.
pub struct TlsSecret {
    dir: PathBuf,
    certificate: CertificateSpec,
    dns_names: Vec<String>,
    generation: u32,
}

impl TlsSecret {
    /// The issuer of the Secret the template's `tls` volume mounts (`k8s/tls`), its CA made in
    /// `dir`; None for a template without one. Blocking (it runs kubectl and openssl).
    pub fn for_template(template: &Template, dir: &Path) -> Result<Option<TlsSecret>> {
        let Some(secret) = template.secret_name(TLS_VOLUME) else {
            return Ok(None);
        };
        let certificate = manifest::certificate(secret)?;
        TlsSecret::create(dir, template.naming(), &certificate).map(Some)
    }

    /// Creates the CA in `dir` (its key stays there, out of the Secret) and issues the first
    /// certificate.
    pub fn create(dir: &Path, naming: &Naming, certificate: &CertificateSpec) -> Result<TlsSecret> {
        layout::make_dirs(&[dir.to_owned()])?;
        let mut secret = TlsSecret {
            dir: dir.to_owned(),
            certificate: certificate.clone(),
            dns_names: certificate
                .dns_names
                .iter()
                .map(|name| dns_name(name, naming))
                .collect::<Result<_>>()?,
            generation: 0,
        };
        let (key, cert) = (secret.ca_file("ca.key"), secret.ca_file("ca.crt"));
        secret.private_key(&key)?;
        run_blocking(
            "openssl",
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &key,
                "-days",
                "2",
                "-subj",
                "/CN=mysql-sts-agent test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                &cert,
            ],
        )?;
        secret.rotate()?;
        Ok(secret)
    }

    /// Issues a new certificate (a new key, as rotationPolicy Always gives, and a new serial),
    /// which `data` then holds; returns its serial as `openssl x509 -serial` prints it.
    pub fn rotate(&mut self) -> Result<String> {
        self.generation += 1;
        let generation = self.current();
        layout::make_dirs(std::slice::from_ref(&generation))?;
        let path = |name: &str| generation.join(name).to_string_lossy().into_owned();
        let ext = path("ext.cnf");
        layout::write_file(Path::new(&ext), &self.extensions()?, 0o644)?;
        let (key, csr, cert) = (path("tls.key"), path("tls.csr"), path("tls.crt"));
        self.private_key(&key)?;
        let subject = format!("/CN={}", self.dns_names.first().context("no DNS names")?);
        run_blocking(
            "openssl",
            &["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr],
        )?;
        run_blocking(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &self.ca_file("ca.crt"),
                "-CAkey",
                &self.ca_file("ca.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        )?;
        std::fs::copy(self.ca_file("ca.crt"), generation.join("ca.crt"))?;
        let serial = run_blocking("openssl", &["x509", "-noout", "-serial", "-in", &cert])?;
        Ok(serial.trim().trim_start_matches("serial=").to_owned())
    }

    /// The issuer's copy of the current certificate's `key`, for clients outside the pods.
    pub fn file(&self, key: &str) -> PathBuf {
        self.current().join(key)
    }

    /// The Secret's keys and values, as cert-manager writes them now.
    pub fn data(&self) -> Result<BTreeMap<String, String>> {
        KEYS.iter()
            .map(|key| {
                let file = self.file(key);
                let value = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                Ok(((*key).to_owned(), value))
            })
            .collect()
    }

    /// The Secret's current data into pod `pod`'s `tls` volume, as the kubelet writes it.
    pub fn project(&self, template: &Template, pod: &PodPaths) -> Result<()> {
        template.project_secret(TLS_VOLUME, &pod.tls(), &self.data()?)
    }

    fn current(&self) -> PathBuf {
        self.dir.join(format!("gen{}", self.generation))
    }

    fn ca_file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// A new key as the Certificate's privateKey asks, in cert-manager's default encoding
    /// (PKCS#1 for RSA, SEC 1 for ECDSA).
    fn private_key(&self, out: &str) -> Result<()> {
        let spec = self.certificate.private_key.as_ref();
        let algorithm = spec.and_then(|key| key.algorithm.as_deref());
        let size = spec.and_then(|key| key.size);
        match (algorithm.unwrap_or("RSA"), size) {
            ("RSA", size) => {
                let bits = size.unwrap_or(2048).to_string();
                run_blocking("openssl", &["genrsa", "-traditional", "-out", out, &bits])?
            }
            ("ECDSA", None | Some(256)) => run_blocking(
                "openssl",
                &[
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                    out,
                ],
            )?,
            (algorithm, size) => bail!("privateKey {algorithm} {size:?} is not simulated"),
        };
        Ok(())
    }

    /// The leaf's extensions: its DNS names and the Certificate's usages.
    fn extensions(&self) -> Result<String> {
        let listed: Vec<&str> = if self.certificate.usages.is_empty() {
            DEFAULT_USAGES.to_vec()
        } else {
            self.certificate.usages.iter().map(String::as_str).collect()
        };
        let (mut extended, mut key) = (Vec::new(), Vec::new());
        for usage in listed {
            let (_, is_extended, name) = USAGES
                .iter()
                .find(|(known, ..)| *known == usage)
                .with_context(|| format!("usage {usage:?} is not simulated"))?;
            if *is_extended {
                extended.push(*name);
            } else {
                key.push(*name);
            }
        }
        let names: Vec<String> = self.dns_names.iter().map(|n| format!("DNS:{n}")).collect();
        let mut text = format!(
            "subjectAltName = {}\nbasicConstraints = critical, CA:FALSE\n",
            names.join(", ")
        );
        if !key.is_empty() {
            text += &format!("keyUsage = critical, {}\n", key.join(", "));
        }
        if !extended.is_empty() {
            text += &format!("extendedKeyUsage = {}\n", extended.join(", "));
        }
        Ok(text)
    }
}

/// A DNS name of the example Certificate, which names the set `mysql` in `db` of
/// `cluster.local`, as a user edits it for `naming`: the pods' wildcard
/// (`*.<service>.<namespace>.svc.<domain>`) or the bare service name.
fn dns_name(name: &str, naming: &Naming) -> Result<String> {
    if name.starts_with("*.") {
        Ok(format!(
            "*.{}.{}.svc.{}",
            naming.service, naming.namespace, naming.cluster_domain
        ))
    } else if !name.contains('.') {
        Ok(naming.service.clone())
    } else {
        bail!("DNS name {name}: the harness maps the pods' wildcard and the service's name")
    }
}
