//! `mysql-sts-agent install DIR`: the agent image's first init container copies the binary into
//! a volume, so that the later containers run it inside the database image, beside the server's
//! own tools.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil;

pub const BINARY_NAME: &str = "mysql-sts-agent";

#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    Copied { path: PathBuf, bytes: u64 },
    AlreadyThere { path: PathBuf },
}

#[derive(Debug, thiserror::Error)]
#[error("installing into {dir}: {what}: {source}")]
pub struct InstallError {
    dir: PathBuf,
    what: &'static str,
    source: io::Error,
}

/// Copies the running binary to `dir/mysql-sts-agent`: a temp file, fsync, rename, so a reader
/// sees the old binary or the new one; the same binary already there is left alone.
pub fn install(dir: &Path) -> Result<Installed, InstallError> {
    let error = |what| {
        move |source| InstallError {
            dir: dir.to_owned(),
            what,
            source,
        }
    };
    let source = std::env::current_exe().map_err(error("locating this binary"))?;
    let binary = fs::read(&source).map_err(error("reading this binary"))?;
    install_bytes(dir, &binary)
}

fn install_bytes(dir: &Path, binary: &[u8]) -> Result<Installed, InstallError> {
    let path = dir.join(BINARY_NAME);
    if fs::read(&path).is_ok_and(|present| present == binary) {
        return Ok(Installed::AlreadyThere { path });
    }
    fsutil::write_atomic(&path, binary, 0o755).map_err(|source| InstallError {
        dir: dir.to_owned(),
        what: "writing the copy",
        source,
    })?;
    Ok(Installed::Copied {
        path,
        bytes: binary.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn copies_once_then_leaves_the_same_binary_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BINARY_NAME);
        assert_eq!(
            install_bytes(dir.path(), b"v1").unwrap(),
            Installed::Copied {
                path: path.clone(),
                bytes: 2
            }
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            install_bytes(dir.path(), b"v1").unwrap(),
            Installed::AlreadyThere { path: path.clone() }
        );
        // A different binary (an upgrade) replaces it; no temp file is left behind.
        install_bytes(dir.path(), b"v2").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"v2");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let err = install_bytes(Path::new("/nonexistent/agent"), b"x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("installing into /nonexistent/agent: writing the copy")
        );
    }
}
