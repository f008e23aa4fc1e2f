//! Volumes as provisioners and the kubelet make them: who owns a volume's root, and the group
//! ownership the kubelet applies for the pod's fsGroup. The agent and the servers run as the
//! template's user, so a volume they could not write on a cluster fails here too.

use std::collections::BTreeMap;
use std::fs::{self, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::Path;

use anyhow::{Context, Result};
use nix::unistd::geteuid;

use super::layout::{make_dir, write_file};

/// How the data volume (the volumeClaimTemplate) comes from its provisioner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VolumeLayout {
    /// The common case: a root-owned filesystem whose driver supports fsGroup, so the kubelet
    /// makes its root `root:<fsGroup>` 2775 (recursively per fsGroupChangePolicy).
    #[default]
    FsGroup,
    /// Some CSI drivers: the root belongs to the pod's runAsUser:runAsGroup, mode 0755, and
    /// the kubelet leaves ownership alone.
    PodUid,
    /// hostPath, local-path: root-owned 0777, and the driver has no fsGroup support.
    HostPath,
    /// The template with every securityContext removed: everything runs as root, and the
    /// volume's root is root:root 0755.
    RootTemplate,
}

impl VolumeLayout {
    /// Whether the kubelet applies fsGroup to the data volume.
    fn applies_fs_group(self) -> bool {
        matches!(self, VolumeLayout::FsGroup | VolumeLayout::RootTemplate)
    }
}

/// What the kubelet applies to one pod's volumes, from the template and the layout.
#[derive(Clone, Copy, Debug)]
pub struct Ownership {
    pub layout: VolumeLayout,
    pub fs_group: Option<u32>,
    /// fsGroupChangePolicy Always (the default), else OnRootMismatch.
    pub always: bool,
    /// The pod's runAsUser:runAsGroup (root's when unset).
    pub pod_user: (u32, u32),
}

/// What fsGroup adds to files and to dirs, as the kubelet's SetVolumeOwnership: rw for owner
/// and group (x and setgid on dirs), or read for them on a read-only volume (a Secret's).
#[derive(Clone, Copy)]
struct Masks {
    file: u32,
    dir: u32,
}

const READ_WRITE: Masks = Masks {
    file: 0o660,
    dir: 0o770 | 0o2000,
};
const READ_ONLY: Masks = Masks {
    file: 0o440,
    dir: 0o110 | 0o2000,
};

impl Ownership {
    /// The data volume as its provisioner hands it out.
    pub fn provision_claim(&self, dir: &Path) -> Result<()> {
        let (owner, mode) = match self.layout {
            VolumeLayout::FsGroup | VolumeLayout::RootTemplate => ((0, 0), 0o755),
            VolumeLayout::PodUid => (self.pod_user, 0o755),
            VolumeLayout::HostPath => ((0, 0), 0o777),
        };
        make_dir(dir, mode, Some(owner))
    }

    /// The kubelet mounting the data volume at a pod start.
    pub fn mount_claim(&self, dir: &Path) -> Result<()> {
        match self.fs_group {
            Some(gid) if self.layout.applies_fs_group() => {
                if self.always || root_mismatch(dir, gid)? {
                    apply_fs_group(dir, gid, READ_WRITE)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// An emptyDir: made 0777 by root, then fsGroup applied.
    pub fn make_empty_dir(&self, dir: &Path) -> Result<()> {
        make_dir(dir, 0o777, Some((0, 0)))?;
        self.fs_group
            .map_or(Ok(()), |gid| apply_fs_group(dir, gid, READ_WRITE))
    }

    /// A Secret volume as the kubelet's AtomicWriter writes it, at mount and at each update of
    /// the Secret: `data`'s files (mode `mode`, root's, with the fsGroup the kubelet gives a
    /// read-only volume) in a new `..<generation>` directory, then a new `..data` link to it
    /// renamed over the old one, each key a link through `..data`, and the previous generation
    /// removed. A reader sees the old files or the new ones, never a mix. Only root can set the
    /// group: a check without root (tests/manifests.rs) leaves it.
    pub fn project_secret(
        &self,
        dir: &Path,
        data: &BTreeMap<String, String>,
        mode: u32,
    ) -> Result<()> {
        let group = self.fs_group.filter(|_| geteuid().is_root());
        make_dir(dir, 0o755, None)?;
        let data_link = dir.join("..data");
        let previous = fs::read_link(&data_link).ok();
        let generation = format!("..{}", next_generation(dir)?);
        let new = dir.join(&generation);
        make_dir(&new, 0o755, None)?;
        for (key, value) in data {
            let file = new.join(key);
            write_file(&file, value, mode)?;
            // The umask must not narrow it.
            fs::set_permissions(&file, Permissions::from_mode(mode))?;
        }
        if let Some(gid) = group {
            apply_fs_group(&new, gid, READ_ONLY)?;
        }
        let next = dir.join("..data_tmp");
        symlink(&generation, &next)?;
        fs::rename(&next, &data_link)?;
        for key in data.keys() {
            let link = dir.join(key);
            if link.symlink_metadata().is_err() {
                symlink(Path::new("..data").join(key), &link)?;
            }
        }
        if let Some(gid) = group {
            apply_fs_group(dir, gid, READ_ONLY)?;
        }
        if let Some(previous) = previous {
            fs::remove_dir_all(dir.join(previous))?;
        }
        Ok(())
    }
}

/// The number after the highest `..<n>` generation in `dir`.
fn next_generation(dir: &Path) -> Result<u32> {
    let mut highest = 0;
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let number = name.to_str().and_then(|n| n.strip_prefix(".."));
        if let Some(n) = number.and_then(|n| n.parse::<u32>().ok()) {
            highest = highest.max(n);
        }
    }
    Ok(highest + 1)
}

/// OnRootMismatch: the kubelet walks the volume only when its root lacks the group or the mode.
fn root_mismatch(dir: &Path, gid: u32) -> Result<bool> {
    let meta = fs::metadata(dir).with_context(|| format!("stat {}", dir.display()))?;
    Ok(meta.gid() != gid || meta.mode() & READ_WRITE.dir != READ_WRITE.dir)
}

/// chgrp -R `gid`, plus the modes fsGroup adds; symlinks are regrouped, never followed.
fn apply_fs_group(path: &Path, gid: u32, masks: Masks) -> Result<()> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
    lchown(path, None, Some(gid)).with_context(|| format!("chgrp {}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mask = if meta.is_dir() { masks.dir } else { masks.file };
    fs::set_permissions(path, Permissions::from_mode(meta.mode() & 0o7777 | mask))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            apply_fs_group(&entry?.path(), gid, masks)?;
        }
    }
    Ok(())
}
