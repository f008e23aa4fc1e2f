//! The filesystem of a container that runs the database image's own programs by name (a
//! `bash -c` script, an exec probe): the host's root stands for the image (MariaDB 10.11 is the
//! host's), seen through a private mount namespace that dies with the command. In it each of the
//! container's volume mounts is bound at its mountPath, and the image's writable dirs (/tmp,
//! /var/run/mysqld) are the container's own unless a volume is mounted there, so that nothing a
//! script writes lands in the host's dirs. A mount point the host lacks (e.g. /mnt/conf.d) is
//! made in a tmpfs laid over its parent, as the image's empty directory. The harness's files
//! keep their paths under /tmp, where every host path of a volume lies.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The image's dirs a container writes without mounting a volume there: its own layer.
pub const IMAGE_DIRS: [&str; 2] = ["/tmp", "/var/run/mysqld"];

/// (container path, host path)
pub type Binds = Vec<(PathBuf, PathBuf)>;

/// The shell script (run as root by `sh -euc SCRIPT NAME PROGRAM ARGS...` in a new mount
/// namespace) that makes the mounts, then execs its arguments. `harness_root` is the cluster's
/// dir under /tmp, bound back into a container's own /tmp at its path.
pub fn mount_script(binds: &Binds, harness_root: &Path) -> Result<String> {
    let mut binds = binds.clone();
    // Parents before children: a later bind lands inside an earlier one.
    binds.sort_by_key(|(mount, _)| mount.components().count());
    let mut script = String::new();
    let mut tmpfs: Vec<&Path> = Vec::new();
    for (mount, _) in &binds {
        if mount.exists() || tmpfs.iter().any(|dir| mount.starts_with(dir)) {
            continue;
        }
        let parent = mount
            .parent()
            .filter(|parent| parent.is_dir())
            .with_context(|| {
                format!("mount point {}: its parent is no dir here", mount.display())
            })?;
        script.push_str(&format!(
            "mount -t tmpfs -o mode=0755 tmpfs {}\n",
            quote(parent)
        ));
        tmpfs.push(parent);
    }
    for (mount, host) in &binds {
        if !mount.exists() {
            script.push_str(&format!("mkdir -p {}\n", quote(mount)));
        }
        // --rbind carries the harness's dir bound inside the container's own /tmp along.
        let mut bind = "--bind";
        if mount == Path::new("/tmp") {
            let back = host.join(harness_root.strip_prefix("/tmp")?);
            script.push_str(&format!(
                "mkdir -p {back}\nmount --bind {root} {back}\n",
                back = quote(&back),
                root = quote(harness_root)
            ));
            bind = "--rbind";
        }
        script.push_str(&format!("mount {bind} {} {}\n", quote(host), quote(mount)));
    }
    script.push_str("exec \"$@\"\n");
    Ok(script)
}

/// The image dirs of `IMAGE_DIRS` that no volume covers, with the container's own host dirs
/// under `own` (which `make_host_dirs` creates).
pub fn own_dirs(mounts: &Binds, own: &Path) -> Binds {
    IMAGE_DIRS
        .iter()
        .map(Path::new)
        .filter(|dir| !mounts.iter().any(|(mount, _)| dir.starts_with(mount)))
        .map(|dir| {
            (
                dir.to_owned(),
                own.join(dir.strip_prefix("/").unwrap_or(dir)),
            )
        })
        .collect()
}

/// A word for sh, single-quoted.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Makes the binds' host dirs: the container's own image dirs (under `own`), open to any user as
/// the image's are to its users, and a volume's missing subPath, as the kubelet creates it.
pub fn make_host_dirs(binds: &Binds, own: &Path) -> Result<()> {
    for (_, host) in binds {
        if host.starts_with(own) {
            super::layout::make_dir(host, 0o1777, None)?;
        } else if !host.exists() {
            std::fs::create_dir_all(host)
                .with_context(|| format!("the subPath {}", host.display()))?;
        }
    }
    Ok(())
}
