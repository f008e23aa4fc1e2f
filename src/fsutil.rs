//! Small filesystem steps that must be crash-safe.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Temp file in the same directory, fsync, rename over the target, fsync the directory:
/// readers see the old content or the new one, never a torn file.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Gives every entry below `root` (and `root`) to `uid:gid` and flushes files to disk,
/// so that a completion marker written afterwards never points at unflushed data.
pub fn chown_and_sync_tree(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(root)?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(root, Some(uid), Some(gid))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(root)? {
            chown_and_sync_tree(&entry?.path(), uid, gid)?;
        }
        sync_dir(root)?;
    } else if meta.is_file() {
        File::open(root)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_to_current_owner_walks_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/f"), b"x").unwrap();
        let meta = fs::metadata(dir.path()).unwrap();
        chown_and_sync_tree(dir.path(), meta.uid(), meta.gid()).unwrap();
        assert_eq!(fs::read(dir.path().join("a/b/f")).unwrap(), b"x");
    }
}
