//! Small filesystem steps that must be crash-safe.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Temp file in the same directory, fsync, rename over the target, fsync the directory:
/// readers see the old content or the new one, never a torn file.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    replace(path, content, mode, true)
}

/// Like `write_atomic` without the fsyncs: readers never see a torn file, but a crash may lose
/// it. For files rewritten every few seconds that only report (a clone's progress), where an
/// fsync would also flush the clone's own data on the way.
pub fn write_replacing(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    replace(path, content, mode, false)
}

fn replace(path: &Path, content: &[u8], mode: u32, durable: bool) -> io::Result<()> {
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
        if durable {
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Flushes every file below `root` (and `root`) to disk, so that a completion marker written
/// afterwards never points at unflushed data; with `owner`, also gives each entry to `uid:gid`.
pub fn sync_tree(root: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    let meta = fs::symlink_metadata(root)?;
    if let Some((uid, gid)) = owner {
        give_to(root, &meta, uid, gid)?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(root)? {
            sync_tree(&entry?.path(), owner)?;
        }
        sync_dir(root)?;
    } else if meta.is_file() {
        File::open(root)?.sync_all()?;
    }
    Ok(())
}

/// `lchown` unless `path` (with metadata `meta`) already belongs to `uid:gid`.
fn give_to(path: &Path, meta: &fs::Metadata, uid: u32, gid: u32) -> io::Result<()> {
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Gives `path` itself (not what it holds) to `uid:gid`.
pub fn chown_one(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    give_to(path, &fs::symlink_metadata(path)?, uid, gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_tree_walks_the_tree_and_chowns_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/f"), b"x").unwrap();
        let meta = fs::metadata(dir.path()).unwrap();
        sync_tree(dir.path(), None).unwrap();
        sync_tree(dir.path(), Some((meta.uid(), meta.gid()))).unwrap();
        assert_eq!(fs::read(dir.path().join("a/b/f")).unwrap(), b"x");
    }
}
