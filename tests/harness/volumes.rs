//! Volumes as provisioners and the kubelet make them: who owns a volume's root, and the group
//! ownership the kubelet applies for the pod's fsGroup. The agent and the servers run as the
//! template's user, so a volume they could not write on a cluster fails here too.

use std::fs::{self, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::Path;

use anyhow::{Context, Result};

use super::layout::make_dir;

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

/// What fsGroup adds: rw for owner and group on everything, x and setgid on dirs (as the
/// kubelet's SetVolumeOwnership).
const RW_MASK: u32 = 0o660;
const DIR_MASK: u32 = 0o770 | 0o2000;

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
                    apply_fs_group(dir, gid)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// An emptyDir: made 0777 by root, then fsGroup applied.
    pub fn make_empty_dir(&self, dir: &Path) -> Result<()> {
        make_dir(dir, 0o777, Some((0, 0)))?;
        self.fs_group.map_or(Ok(()), |gid| apply_fs_group(dir, gid))
    }

    /// A Secret volume's files: root's, with group fsGroup when set (their mode is defaultMode).
    pub fn project_secret(&self, dir: &Path) -> Result<()> {
        let Some(gid) = self.fs_group else {
            return Ok(());
        };
        for entry in fs::read_dir(dir)? {
            lchown(entry?.path(), Some(0), Some(gid))?;
        }
        Ok(())
    }
}

/// OnRootMismatch: the kubelet walks the volume only when its root lacks the group or the mode.
fn root_mismatch(dir: &Path, gid: u32) -> Result<bool> {
    let meta = fs::metadata(dir).with_context(|| format!("stat {}", dir.display()))?;
    Ok(meta.gid() != gid || meta.mode() & DIR_MASK != DIR_MASK)
}

/// chgrp -R `gid`, plus the modes fsGroup adds; symlinks are regrouped, never followed.
fn apply_fs_group(path: &Path, gid: u32) -> Result<()> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
    lchown(path, None, Some(gid)).with_context(|| format!("chgrp {}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mask = if meta.is_dir() { DIR_MASK } else { RW_MASK };
    fs::set_permissions(path, Permissions::from_mode(meta.mode() & 0o7777 | mask))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            apply_fs_group(&entry?.path(), gid)?;
        }
    }
    Ok(())
}
