//! TLS of the peer channel (`/clone`, `/donor`, `/data` between pods' agents): the server's
//! config, rebuilt when the mounted files change, and the config a joiner connects with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::config::TlsFiles;

/// How often the server's files are read again: cert-manager renews well before expiry, and a
/// mounted Secret's update reaches the pod within a minute or so anyway.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("the CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The three files' bytes as read together. No `Debug`: it holds the private key.
#[derive(Clone, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl Contents {
    fn read(files: &TlsFiles) -> Result<Contents, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok(Contents {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
            ca: read(&files.ca)?,
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The parser's error names no key material.
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| pem_error(path, e))
}

fn roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, pem)? {
        roots.add(cert).map_err(|e| pem_error(path, e))?;
    }
    Ok(roots)
}

/// What a loaded certificate says, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Hexadecimal, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: String,
}

impl CertSummary {
    /// Reads the serial and the end of validity from a DER certificate: the fields in their
    /// fixed places of `TBSCertificate` (RFC 5280, 4.1).
    pub fn of(cert: &[u8]) -> Option<CertSummary> {
        let (_, certificate, _) = der_element(cert)?;
        let (_, tbs, _) = der_element(certificate)?;
        let (tag, version, after_version) = der_element(tbs)?;
        let (_, serial, rest) = if tag == 0xa0 {
            der_element(after_version)?
        } else {
            (tag, version, after_version)
        };
        let (_, _signature, rest) = der_element(rest)?;
        let (_, _issuer, rest) = der_element(rest)?;
        let (_, validity, _) = der_element(rest)?;
        let (_, _not_before, rest) = der_element(validity)?;
        let (tag, not_after, _) = der_element(rest)?;
        let not_after = std::str::from_utf8(not_after).ok()?;
        let full_year = match tag {
            // UTCTime: YYMMDDHHMMSSZ, years 1950 to 2049.
            0x17 => {
                let century = if not_after.get(..2)? < "50" {
                    "20"
                } else {
                    "19"
                };
                format!("{century}{not_after}")
            }
            // GeneralizedTime: YYYYMMDDHHMMSSZ.
            0x18 => not_after.to_owned(),
            _ => return None,
        };
        let digits = full_year.strip_suffix('Z')?;
        if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let part = |range: std::ops::Range<usize>| &digits[range];
        let serial = serial.strip_prefix(&[0]).unwrap_or(serial);
        Some(CertSummary {
            serial: serial.iter().map(|b| format!("{b:02X}")).collect(),
            not_after: format!(
                "{}-{}-{}T{}:{}:{}Z",
                part(0..4),
                part(4..6),
                part(6..8),
                part(8..10),
                part(10..12),
                part(12..14)
            ),
        })
    }
}

/// One DER element: its tag, its content and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len, rest) = rest.split_at(count);
        let len = len.iter().fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        (len, rest)
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn server_config(
    files: &TlsFiles,
    contents: &Contents,
    client_auth: bool,
) -> Result<(Arc<ServerConfig>, Option<CertSummary>), TlsError> {
    let chain = certificates(&files.cert, &contents.cert)?;
    let key = private_key(&files.key, &contents.key)?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = if client_auth {
        let roots = Arc::new(roots(&files.ca, &contents.ca)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let summary = CertSummary::of(&chain[0]);
    // Refuses a key that is not the certificate's (e.g. read halfway through a rotation).
    let config = builder.with_single_cert(chain, key)?;
    Ok((Arc::new(config), summary))
}

/// What reading the files again did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Loaded(Option<CertSummary>),
    /// A change that does not load (the reason), first seen now: the old config stays.
    Failed(String),
    /// The same failure as last time: said once already.
    StillFailing,
}

struct Loaded {
    contents: Contents,
    last_failure: Option<String>,
}

/// The peer channel's server side: a config rebuilt whenever the certificate, key or CA files
/// change (cert-manager swaps a mounted Secret's `..data` symlink; reading follows it), picked
/// up by the next connection. Rebuilding the whole config keeps the three consistent, and needs
/// no resolver or verifier of our own.
pub struct ServerTls {
    files: TlsFiles,
    client_auth: bool,
    current: RwLock<Arc<ServerConfig>>,
    loaded: Mutex<Loaded>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    pub fn load(
        files: TlsFiles,
        client_auth: bool,
    ) -> Result<(ServerTls, Option<CertSummary>), TlsError> {
        let contents = Contents::read(&files)?;
        let (config, summary) = server_config(&files, &contents, client_auth)?;
        let tls = ServerTls {
            files,
            client_auth,
            current: RwLock::new(config),
            loaded: Mutex::new(Loaded {
                contents,
                last_failure: None,
            }),
        };
        Ok((tls, summary))
    }

    /// The config for a new connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the files; when they changed and load, the next connections get them.
    pub fn reload(&self) -> Reload {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let attempt = Contents::read(&self.files).and_then(|contents| {
            if contents == loaded.contents {
                return Ok(None);
            }
            let (config, summary) = server_config(&self.files, &contents, self.client_auth)?;
            Ok(Some((contents, config, summary)))
        });
        match attempt {
            Ok(None) => Reload::Unchanged,
            Ok(Some((contents, config, summary))) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
                loaded.contents = contents;
                loaded.last_failure = None;
                Reload::Loaded(summary)
            }
            Err(e) => {
                let reason = e.to_string();
                if loaded.last_failure.as_deref() == Some(reason.as_str()) {
                    Reload::StillFailing
                } else {
                    loaded.last_failure = Some(reason.clone());
                    Reload::Failed(reason)
                }
            }
        }
    }

    /// Reloads every `every` until `shutdown`, logging each new certificate and each new
    /// failure once.
    pub async fn watch(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let this = self.clone();
            let Ok(outcome) = tokio::task::spawn_blocking(move || this.reload()).await else {
                continue;
            };
            match outcome {
                Reload::Loaded(summary) => tracing::info!(
                    cert = %self.files.cert.display(),
                    serial = summary.as_ref().map_or("?", |s| s.serial.as_str()),
                    not_after = summary.as_ref().map_or("?", |s| s.not_after.as_str()),
                    "peer channel: the certificate files changed, new connections get the new certificate"
                ),
                Reload::Failed(reason) => tracing::warn!(
                    "peer channel: the certificate files changed but do not load, keeping the previous certificate: {reason}"
                ),
                Reload::Unchanged | Reload::StillFailing => {}
            }
        }
    }
}

/// The local server's copy of the TLS files: it reads them when it starts, and again when told
/// (`FLUSH SSL`, `ALTER INSTANCE RELOAD TLS`); this says when to tell it.
pub struct ServerFiles {
    files: TlsFiles,
    /// What the server was last told to load; none before the first time.
    told: Option<Contents>,
    checked_at: Option<std::time::Instant>,
}

/// Files the server has not loaded yet.
pub struct Unloaded {
    contents: Contents,
    pub certificate: Option<CertSummary>,
}

impl ServerFiles {
    pub fn new(files: TlsFiles) -> ServerFiles {
        ServerFiles {
            files,
            told: None,
            checked_at: None,
        }
    }

    /// At most once per `RELOAD_CHECK_EVERY`: the files, when they differ from what the server
    /// was last told to load (always, the first time: they may have changed since it started).
    pub fn unloaded(&mut self, now: std::time::Instant) -> Result<Option<Unloaded>, TlsError> {
        if self
            .checked_at
            .is_some_and(|at| now.saturating_duration_since(at) < RELOAD_CHECK_EVERY)
        {
            return Ok(None);
        }
        self.checked_at = Some(now);
        let contents = Contents::read(&self.files)?;
        if self.told.as_ref() == Some(&contents) {
            return Ok(None);
        }
        let certificate = certificates(&self.files.cert, &contents.cert)
            .ok()
            .and_then(|chain| CertSummary::of(&chain[0]));
        Ok(Some(Unloaded {
            contents,
            certificate,
        }))
    }

    /// The server loaded them.
    pub fn loaded(&mut self, unloaded: Unloaded) {
        self.told = Some(unloaded.contents);
    }
}

/// What a joiner connects to a donor's peer channel with: the CA as the only root, and the
/// pod's own certificate, presented when the donor asks for one (mutual TLS).
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let contents = Contents::read(files)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(&files.ca, &contents.ca)?)
        .with_client_auth_cert(
            certificates(&files.cert, &contents.cert)?,
            private_key(&files.key, &contents.key)?,
        )?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(Path::new(FIXTURES).join(name)).unwrap()
    }

    /// A mounted Secret's files in a temp dir, holding certificate `which` ("1" or "2").
    fn mounted(dir: &Path, which: &str) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            ca: dir.join("ca.crt"),
        };
        std::fs::write(&files.cert, fixture(&format!("tls{which}.crt"))).unwrap();
        std::fs::write(&files.key, fixture(&format!("tls{which}.key"))).unwrap();
        std::fs::write(&files.ca, fixture("ca.crt")).unwrap();
        files
    }

    #[test]
    fn a_certificates_serial_and_expiry_are_read_from_its_der() {
        let der = certificates(Path::new("tls1.crt"), &fixture("tls1.crt")).unwrap();
        assert_eq!(
            CertSummary::of(&der[0]),
            Some(CertSummary {
                serial: "1001".into(),
                not_after: "2126-11-06T02:31:30Z".into(),
            })
        );
        assert_eq!(CertSummary::of(b"\x30\x03\x02\x01"), None);
        assert_eq!(CertSummary::of(&[]), None);
    }

    #[test]
    fn changed_files_are_loaded_and_a_bad_change_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = mounted(dir.path(), "1");
        let (tls, summary) = ServerTls::load(files.clone(), true).unwrap();
        assert_eq!(summary.unwrap().serial, "1001");
        let first = tls.config();
        assert_eq!(tls.reload(), Reload::Unchanged);
        assert!(Arc::ptr_eq(&first, &tls.config()), "nothing changed");

        // Halfway through a rotation: the new certificate with the old key.
        std::fs::write(&files.cert, fixture("tls2.crt")).unwrap();
        let Reload::Failed(reason) = tls.reload() else {
            panic!("a key that is not the certificate's must not load")
        };
        assert!(!reason.contains("PRIVATE KEY"), "{reason}");
        assert_eq!(tls.reload(), Reload::StillFailing, "said once");
        assert!(Arc::ptr_eq(&first, &tls.config()), "the old one stays");

        std::fs::write(&files.key, fixture("tls2.key")).unwrap();
        let Reload::Loaded(Some(summary)) = tls.reload() else {
            panic!("the rotated pair loads")
        };
        assert_eq!(summary.serial, "1002");
        assert!(!Arc::ptr_eq(&first, &tls.config()));
        assert_eq!(tls.reload(), Reload::Unchanged);

        std::fs::remove_file(&files.key).unwrap();
        assert!(matches!(tls.reload(), Reload::Failed(r) if r.starts_with("reading ")));
    }

    #[test]
    fn the_server_is_told_once_at_first_then_only_of_changes_at_most_every_few_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let files = mounted(dir.path(), "1");
        let mut server = ServerFiles::new(files.clone());
        let start = std::time::Instant::now();
        let first = server
            .unloaded(start)
            .unwrap()
            .expect("told the first time");
        assert_eq!(first.certificate.as_ref().unwrap().serial, "1001");
        server.loaded(first);
        let later = start + RELOAD_CHECK_EVERY;
        assert!(server.unloaded(later).unwrap().is_none(), "unchanged");

        std::fs::write(&files.cert, fixture("tls2.crt")).unwrap();
        std::fs::write(&files.key, fixture("tls2.key")).unwrap();
        let soon = later + RELOAD_CHECK_EVERY / 2;
        assert!(server.unloaded(soon).unwrap().is_none(), "not checked yet");
        let next = later + RELOAD_CHECK_EVERY;
        let rotated = server.unloaded(next).unwrap().expect("changed");
        assert_eq!(rotated.certificate.as_ref().unwrap().serial, "1002");
        // Not loaded (the statement failed): asked again at the next check.
        let retry = next + RELOAD_CHECK_EVERY;
        let again = server.unloaded(retry).unwrap().expect("still unloaded");
        server.loaded(again);
        assert!(
            server
                .unloaded(retry + RELOAD_CHECK_EVERY)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_client_config_needs_the_ca_and_the_pods_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = mounted(dir.path(), "1");
        assert!(client_config(&files).is_ok());
        std::fs::write(&files.ca, "not PEM").unwrap();
        let err = client_config(&files).err().unwrap().to_string();
        assert!(err.ends_with("ca.crt: no PEM certificate in it"), "{err}");
    }
}
