//! What the data volume holds, and the agent's own files on it.
//!
//! A clone is extracted into a staging directory inside the datadir (same filesystem, so the
//! final move is a rename), prepared there, then moved into place; the completion marker is
//! written last. Anything the agent deletes is first proven to be its own: the staging
//! directory carries an owner file written before any data.
//!
//! A re-clone (see `reclone`) stages the new clone beside the old data, then moves the old data
//! into a set-aside directory (its own owner file first, a `complete` file last), then moves
//! the new clone into place; the set-aside data is removed only once the new marker is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::progress::{PROGRESS_FILE, ProgressRecord};
use super::reclone::{RecloneRequest, SetAsideState};
use crate::fsutil;

pub const STAGING_DIR: &str = ".mysql-sts-agent-clone";
pub const MARKER_FILE: &str = "mysql-sts-agent-clone.json";
pub const RECLONE_FILE: &str = "mysql-sts-agent-reclone.json";
pub const SET_ASIDE_DIR: &str = ".mysql-sts-agent-set-aside";
const OWNER_FILE: &str = "owner";
const OWNER_TEXT: &str = "mysql-sts-agent clone staging: safe to delete while no clone runs\n";
const SET_ASIDE_OWNER_TEXT: &str =
    "mysql-sts-agent: the data a re-clone replaces, removed once the new clone is complete\n";
const SET_ASIDE_COMPLETE: &str = "complete";
const PREPARED_FILE: &str = "prepared.json";
const STAGING_DATA: &str = "data";
/// Created by mkfs on ext filesystems; never ours, never data.
const IGNORED: &[&str] = &["lost+found"];
/// Any of these means a server has initialized this datadir.
const SERVER_FILES: &[&str] = &["mysql", "ibdata1", "aria_log_control", "mysql.ibd"];

/// Written last, when the cloned data is in place: the proof of a complete clone and where
/// replication starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneMarker {
    pub donor: String,
    pub gtid_position: String,
    /// The backup file the position was read from.
    pub position_source: String,
    pub bytes: u64,
    pub completed_unix: u64,
    /// From the donor's acceptance to the clone prepared; markers of earlier versions have none.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    pub agent_version: String,
    /// The first ordinal restored from a peer owes a promotion before it takes writes; markers
    /// of earlier versions have no such field, hence the default.
    #[serde(default)]
    pub promotion: Promotion,
    /// The attempts that failed in the init run that completed this clone, by reason's name
    /// (names, so that a reason a later version adds never makes the marker unreadable);
    /// markers of earlier versions have none.
    #[serde(default)]
    pub failed_attempts: Option<BTreeMap<String, u32>>,
}

/// Where a restored first ordinal stands in becoming the primary. Init writes `Owed`; the
/// sidecar rewrites the marker with `Done` once the promotion's steps succeeded, before the
/// server is made writable, so a crash anywhere in between redoes only idempotent steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Promotion {
    /// A replica's clone: nothing to promote.
    #[default]
    None,
    Owed,
    Done {
        at_unix: u64,
    },
}

impl Promotion {
    /// Writes must wait: the server starts read-only until the sidecar has promoted it.
    pub fn holds_writes(self) -> bool {
        self == Promotion::Owed
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Prepared {
    /// Top-level entries of the prepared data: the only entries the move may have put in place.
    entries: Vec<String>,
    marker: CloneMarker,
}

/// What the staging directory holds, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StagingState {
    /// No owner file: not provably ours.
    Foreign,
    /// Ours, but the clone never reached the prepared state.
    Partial,
    Prepared {
        entries: Vec<String>,
    },
}

/// A datadir as read from disk, without judgement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// Top-level names, other than the marker, the staging directory and ignored ones.
    pub entries: Vec<String>,
    pub has_marker: bool,
    pub staging: Option<StagingState>,
    /// A re-clone the sidecar asked for, not finished yet.
    pub reclone: Option<RecloneRequest>,
    pub set_aside: Option<SetAsideState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDirState {
    Empty,
    CloneComplete,
    /// A clone that stopped before it was prepared; the staging directory is ours to remove.
    InterruptedClone,
    /// A prepared clone whose move into place was interrupted; finish it.
    PreparedClone,
    ServerData,
    Unrecognized {
        entries: Vec<String>,
    },
}

pub fn classify(listing: &Listing) -> DataDirState {
    let others = &listing.entries;
    if listing.has_marker {
        return DataDirState::CloneComplete;
    }
    match &listing.staging {
        Some(StagingState::Foreign) => DataDirState::Unrecognized {
            entries: [STAGING_DIR.to_owned()]
                .into_iter()
                .chain(others.clone())
                .collect(),
        },
        Some(StagingState::Prepared { entries }) => {
            let ours: BTreeSet<&String> = entries.iter().collect();
            let foreign: Vec<String> = others
                .iter()
                .filter(|e| !ours.contains(e))
                .cloned()
                .collect();
            if foreign.is_empty() {
                DataDirState::PreparedClone
            } else {
                DataDirState::Unrecognized { entries: foreign }
            }
        }
        Some(StagingState::Partial) if others.is_empty() => DataDirState::InterruptedClone,
        Some(StagingState::Partial) => DataDirState::Unrecognized {
            entries: others.clone(),
        },
        None if others.is_empty() => DataDirState::Empty,
        None if others.iter().any(|e| SERVER_FILES.contains(&e.as_str())) => {
            DataDirState::ServerData
        }
        None => DataDirState::Unrecognized {
            entries: others.clone(),
        },
    }
}

/// The datadir and the agent's paths in it.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn staging(&self) -> PathBuf {
        self.root.join(STAGING_DIR)
    }

    /// Where the backup is extracted and prepared.
    pub fn staging_data(&self) -> PathBuf {
        self.staging().join(STAGING_DATA)
    }

    /// Where a clone in staging reports its progress.
    pub fn progress_file(&self) -> PathBuf {
        self.staging().join(PROGRESS_FILE)
    }

    /// The progress of a clone in staging: `None` when none runs (or none was cut short).
    pub fn read_progress(&self) -> io::Result<Option<ProgressRecord>> {
        read_json(&self.progress_file())
    }

    pub fn list(&self) -> io::Result<Listing> {
        let mut listing = Listing::default();
        for entry in fs::read_dir(&self.root)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            match name.as_str() {
                MARKER_FILE => listing.has_marker = true,
                STAGING_DIR => listing.staging = Some(self.staging_state()?),
                RECLONE_FILE => listing.reclone = self.read_reclone()?,
                SET_ASIDE_DIR => listing.set_aside = Some(self.set_aside_state()),
                n if IGNORED.contains(&n) => {}
                _ => listing.entries.push(name),
            }
        }
        listing.entries.sort();
        Ok(listing)
    }

    fn staging_state(&self) -> io::Result<StagingState> {
        let staging = self.staging();
        if fs::read_to_string(staging.join(OWNER_FILE)).ok().as_deref() != Some(OWNER_TEXT) {
            return Ok(StagingState::Foreign);
        }
        Ok(match self.read_prepared()? {
            Some(prepared) => StagingState::Prepared {
                entries: prepared.entries,
            },
            None => StagingState::Partial,
        })
    }

    fn set_aside_state(&self) -> SetAsideState {
        let dir = self.root.join(SET_ASIDE_DIR);
        let owner = fs::read_to_string(dir.join(OWNER_FILE)).ok();
        match owner.as_deref() == Some(SET_ASIDE_OWNER_TEXT) {
            false => SetAsideState::Foreign,
            true if dir.join(SET_ASIDE_COMPLETE).exists() => SetAsideState::Complete,
            true => SetAsideState::Partial,
        }
    }

    pub fn read_reclone(&self) -> io::Result<Option<RecloneRequest>> {
        read_json(&self.root.join(RECLONE_FILE))
    }

    /// Records the sidecar's request; whoever starts the server next carries it out.
    pub fn request_reclone(&self, request: &RecloneRequest) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(request).map_err(io::Error::other)?;
        fsutil::write_atomic(&self.root.join(RECLONE_FILE), &json, 0o644)
    }

    /// The request is answered: the set-aside data goes first, then the request.
    pub fn finish_reclone(&self) -> io::Result<()> {
        match fs::remove_dir_all(self.root.join(SET_ASIDE_DIR)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::remove_file(self.root.join(RECLONE_FILE))?;
        fsutil::sync_dir(&self.root)
    }

    /// Moves every top-level entry but the agent's own into the set-aside directory (idempotent:
    /// a run cut short goes on), then marks it complete. Called only while the new clone waits,
    /// prepared, in staging, so nothing of it can be taken for the old data.
    fn set_aside(&self) -> io::Result<()> {
        let dir = self.root.join(SET_ASIDE_DIR);
        let data = dir.join(STAGING_DATA);
        if !dir.exists() {
            fs::create_dir(&dir)?;
            fsutil::write_atomic(
                &dir.join(OWNER_FILE),
                SET_ASIDE_OWNER_TEXT.as_bytes(),
                0o644,
            )?;
        }
        if !data.exists() {
            fs::create_dir(&data)?;
        }
        for entry in fs::read_dir(&self.root)? {
            let name = entry?.file_name();
            let keep = [STAGING_DIR, SET_ASIDE_DIR, RECLONE_FILE]
                .iter()
                .chain(IGNORED)
                .any(|own| name == *own);
            if !keep {
                fs::rename(self.root.join(&name), data.join(&name))?;
            }
        }
        fsutil::sync_dir(&self.root)?;
        fsutil::sync_dir(&data)?;
        fsutil::write_atomic(&dir.join(SET_ASIDE_COMPLETE), b"", 0o644)
    }

    fn read_prepared(&self) -> io::Result<Option<Prepared>> {
        read_json(&self.staging().join(PREPARED_FILE))
    }

    pub fn read_marker(&self) -> io::Result<Option<CloneMarker>> {
        read_json(&self.root.join(MARKER_FILE))
    }

    /// Replaces the marker atomically (the sidecar records a promotion), keeping its owner.
    pub fn rewrite_marker(&self, marker: &CloneMarker) -> io::Result<()> {
        let path = self.root.join(MARKER_FILE);
        let owner = fs::metadata(&path).map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.uid(), m.gid())
        })?;
        let json = serde_json::to_vec_pretty(marker).map_err(io::Error::other)?;
        fsutil::write_atomic(&path, &json, 0o644)?;
        let written = fs::metadata(&path).map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.uid(), m.gid())
        })?;
        if written != owner {
            fsutil::chown_one(&path, owner.0, owner.1)?;
        }
        Ok(())
    }

    /// Creates an empty staging directory, owner file first.
    pub fn create_staging(&self) -> io::Result<()> {
        let staging = self.staging();
        fs::create_dir(&staging)?;
        fsutil::write_atomic(&staging.join(OWNER_FILE), OWNER_TEXT.as_bytes(), 0o644)?;
        fs::create_dir(self.staging_data())
    }

    /// Removes the staging directory; callers have classified it as ours.
    pub fn remove_staging(&self) -> io::Result<()> {
        match fs::remove_dir_all(self.staging()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Records the prepared clone, then moves it into place and writes the marker; with `owner`,
    /// the marker and the datadir itself go to that `uid:gid` (the server writes there).
    pub fn commit_prepared(
        &self,
        marker: CloneMarker,
        owner: Option<(u32, u32)>,
    ) -> io::Result<CloneMarker> {
        let mut entries: Vec<String> = fs::read_dir(self.staging_data())?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()?;
        entries.sort();
        let prepared = Prepared { entries, marker };
        let json = serde_json::to_vec_pretty(&prepared).map_err(io::Error::other)?;
        fsutil::write_atomic(&self.staging().join(PREPARED_FILE), &json, 0o644)?;
        if self.read_reclone()?.is_some() {
            self.set_aside()?;
        }
        self.finish_prepared(owner)
    }

    /// Goes on with a re-clone whose new data was prepared: sets the rest of the old data aside
    /// unless that was done, then moves the new data into place.
    pub fn finish_prepared_reclone(&self, owner: Option<(u32, u32)>) -> io::Result<CloneMarker> {
        if self.set_aside_state() != SetAsideState::Complete {
            self.set_aside()?;
        }
        self.finish_prepared(owner)
    }

    /// Moves what is left in staging into place (idempotent), writes the marker, drops staging.
    pub fn finish_prepared(&self, owner: Option<(u32, u32)>) -> io::Result<CloneMarker> {
        let prepared = self.read_prepared()?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "staging holds no prepared clone")
        })?;
        let staged = self.staging_data();
        if staged.exists() {
            for entry in fs::read_dir(&staged)? {
                let name = entry?.file_name();
                fs::rename(staged.join(&name), self.root.join(&name))?;
            }
        }
        fsutil::sync_dir(&self.root)?;
        let json = serde_json::to_vec_pretty(&prepared.marker).map_err(io::Error::other)?;
        let marker = self.root.join(MARKER_FILE);
        fsutil::write_atomic(&marker, &json, 0o644)?;
        if let Some((uid, gid)) = owner {
            fsutil::chown_one(&marker, uid, gid)?;
            fsutil::chown_one(&self.root, uid, gid)?;
        }
        self.remove_staging()?;
        Ok(prepared.marker)
    }
}

/// `None` when the file does not exist; an unreadable file is an error, never "absent".
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(entries: &[&str], has_marker: bool, staging: Option<StagingState>) -> Listing {
        Listing {
            entries: entries.iter().map(|s| s.to_string()).collect(),
            has_marker,
            staging,
            ..Listing::default()
        }
    }

    #[test]
    fn classifies_every_state() {
        use DataDirState::*;
        assert_eq!(classify(&listing(&[], false, None)), Empty);
        assert_eq!(
            classify(&listing(&["mysql", "ibdata1"], true, None)),
            CloneComplete
        );
        assert_eq!(
            classify(&listing(&[], true, Some(StagingState::Partial))),
            CloneComplete
        );
        assert_eq!(
            classify(&listing(&["mysql", "ib_logfile0"], false, None)),
            ServerData
        );
        assert_eq!(
            classify(&listing(&[], false, Some(StagingState::Partial))),
            InterruptedClone
        );
        let prepared = StagingState::Prepared {
            entries: vec!["ibdata1".into(), "mysql".into()],
        };
        assert_eq!(
            classify(&listing(&["mysql"], false, Some(prepared.clone()))),
            PreparedClone
        );
        assert_eq!(
            classify(&listing(&["mysql", "notes.txt"], false, Some(prepared))),
            Unrecognized {
                entries: vec!["notes.txt".into()]
            }
        );
    }

    #[test]
    fn refuses_what_it_cannot_prove_is_its_own() {
        use DataDirState::Unrecognized;
        assert!(matches!(
            classify(&listing(&["backup.tar"], false, None)),
            Unrecognized { .. }
        ));
        assert!(matches!(
            classify(&listing(&[], false, Some(StagingState::Foreign))),
            Unrecognized { .. }
        ));
        assert!(matches!(
            classify(&listing(&["ibdata1"], false, Some(StagingState::Partial))),
            Unrecognized { .. }
        ));
    }

    fn marker() -> CloneMarker {
        CloneMarker {
            donor: "mysql-0.mysql.default.svc.cluster.local".into(),
            gtid_position: "0-100-5".into(),
            position_source: "xtrabackup_binlog_info".into(),
            bytes: 10,
            completed_unix: 1,
            duration_ms: Some(1200),
            agent_version: "test".into(),
            promotion: Promotion::None,
            failed_attempts: None,
        }
    }

    #[test]
    fn markers_of_earlier_versions_read_and_a_rewrite_records_a_promotion() {
        let old = r#"{"donor":"d","gtid_position":"0-100-5","position_source":"x","bytes":1,"completed_unix":1,"agent_version":"0.1.0"}"#;
        let parsed: CloneMarker = serde_json::from_str(old).unwrap();
        assert_eq!(parsed.promotion, Promotion::None);
        assert_eq!(parsed.duration_ms, None);
        assert_eq!(parsed.failed_attempts, None);
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::new(dir.path());
        datadir.create_staging().unwrap();
        let owed = CloneMarker {
            promotion: Promotion::Owed,
            failed_attempts: Some(BTreeMap::from([("not_a_donor".to_owned(), 3)])),
            ..marker()
        };
        let json = serde_json::to_string(&owed).unwrap();
        assert!(
            json.contains(r#""failed_attempts":{"not_a_donor":3}"#),
            "{json}"
        );
        datadir.commit_prepared(owed.clone(), None).unwrap();
        assert!(
            datadir
                .read_marker()
                .unwrap()
                .unwrap()
                .promotion
                .holds_writes()
        );
        let done = CloneMarker {
            promotion: Promotion::Done { at_unix: 7 },
            ..owed
        };
        datadir.rewrite_marker(&done).unwrap();
        assert_eq!(datadir.read_marker().unwrap(), Some(done));
    }

    #[test]
    fn a_clones_progress_is_read_from_staging_and_a_broken_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::new(dir.path());
        assert_eq!(datadir.read_progress().unwrap(), None, "no staging");
        datadir.create_staging().unwrap();
        assert_eq!(
            datadir.read_progress().unwrap(),
            None,
            "staging without a file"
        );
        fs::write(
            datadir.progress_file(),
            r#"{"phase":"cloning","donor":"mysql-0","bytes":5}"#,
        )
        .unwrap();
        let read = datadir.read_progress().unwrap().unwrap();
        assert_eq!((read.donor.as_str(), read.transfer.bytes), ("mysql-0", 5));
        assert_eq!(
            classify(&datadir.list().unwrap()),
            DataDirState::InterruptedClone
        );
        fs::write(datadir.progress_file(), r#"{"phase":"cloning","#).unwrap();
        let err = datadir.read_progress().unwrap_err();
        assert!(err.to_string().contains("progress.json: "), "{err}");
    }

    #[test]
    fn staging_lifecycle_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::new(dir.path());
        fs::create_dir(dir.path().join("lost+found")).unwrap();
        assert_eq!(classify(&datadir.list().unwrap()), DataDirState::Empty);

        datadir.create_staging().unwrap();
        fs::create_dir(datadir.staging_data().join("mysql")).unwrap();
        fs::write(datadir.staging_data().join("ibdata1"), b"data").unwrap();
        assert_eq!(
            classify(&datadir.list().unwrap()),
            DataDirState::InterruptedClone
        );

        // Simulate a crash halfway through the move: one entry moved, the other still staged.
        let prepared = Prepared {
            entries: vec!["ibdata1".into(), "mysql".into()],
            marker: marker(),
        };
        fs::write(
            datadir.staging().join(PREPARED_FILE),
            serde_json::to_vec(&prepared).unwrap(),
        )
        .unwrap();
        fs::rename(
            datadir.staging_data().join("mysql"),
            dir.path().join("mysql"),
        )
        .unwrap();
        assert_eq!(
            classify(&datadir.list().unwrap()),
            DataDirState::PreparedClone
        );

        assert_eq!(datadir.finish_prepared(None).unwrap(), marker());
        assert_eq!(
            classify(&datadir.list().unwrap()),
            DataDirState::CloneComplete
        );
        assert_eq!(fs::read(dir.path().join("ibdata1")).unwrap(), b"data");
        assert!(!datadir.staging().exists());
        assert_eq!(datadir.read_marker().unwrap(), Some(marker()));
    }

    #[test]
    fn commit_moves_everything_and_marks_last() {
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::new(dir.path());
        datadir.create_staging().unwrap();
        fs::write(datadir.staging_data().join("ibdata1"), b"data").unwrap();
        datadir.commit_prepared(marker(), None).unwrap();
        let listing = datadir.list().unwrap();
        assert_eq!(listing.entries, ["ibdata1"]);
        assert!(listing.has_marker);
        assert_eq!(listing.staging, None);
    }

    fn reclone_request() -> RecloneRequest {
        RecloneRequest {
            reason: "the primary purged binary logs this replica needs".into(),
            requested_unix: 100,
            server_started_unix: 50,
            agent_version: "test".into(),
        }
    }

    /// Old data with its marker and a request, and a new clone prepared in staging.
    fn old_data_and_a_prepared_reclone(datadir: &DataDir) -> CloneMarker {
        fs::write(datadir.path().join("ibdata1"), b"old").unwrap();
        fs::create_dir(datadir.path().join("mysql")).unwrap();
        fsutil::write_atomic(
            &datadir.path().join(MARKER_FILE),
            &serde_json::to_vec(&marker()).unwrap(),
            0o644,
        )
        .unwrap();
        datadir.request_reclone(&reclone_request()).unwrap();
        datadir.create_staging().unwrap();
        fs::write(datadir.staging_data().join("ibdata1"), b"new").unwrap();
        CloneMarker {
            completed_unix: 200,
            ..marker()
        }
    }

    #[test]
    fn a_reclone_sets_the_old_data_aside_before_the_new_goes_in() {
        use crate::clone::reclone::{Step, next_step};
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::new(dir.path());
        let new = old_data_and_a_prepared_reclone(&datadir);
        let listing = datadir.list().unwrap();
        assert_eq!(listing.reclone, Some(reclone_request()));
        assert_eq!(
            listing.entries,
            ["ibdata1", "mysql"],
            "the request is the agent's"
        );

        datadir.commit_prepared(new.clone(), None).unwrap();
        let listing = datadir.list().unwrap();
        assert_eq!(listing.entries, ["ibdata1"]);
        assert_eq!(listing.set_aside, Some(SetAsideState::Complete));
        assert_eq!(fs::read(dir.path().join("ibdata1")).unwrap(), b"new");
        let aside = dir.path().join(SET_ASIDE_DIR).join(STAGING_DATA);
        assert_eq!(fs::read(aside.join("ibdata1")).unwrap(), b"old");
        assert!(aside.join("mysql").is_dir() && aside.join(MARKER_FILE).exists());
        let marker = datadir.read_marker().unwrap();
        assert_eq!(marker.as_ref(), Some(&new));
        assert_eq!(
            next_step(&reclone_request(), marker.as_ref(), None, listing.set_aside),
            Step::Finish
        );

        datadir.finish_reclone().unwrap();
        let listing = datadir.list().unwrap();
        assert_eq!((&listing.reclone, listing.set_aside), (&None, None));
        assert_eq!(classify(&listing), DataDirState::CloneComplete);
    }

    #[test]
    fn a_reclone_cut_short_while_setting_aside_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::new(dir.path());
        let new = old_data_and_a_prepared_reclone(&datadir);
        // Prepared, and cut short after one old entry went aside.
        let prepared = Prepared {
            entries: vec!["ibdata1".into()],
            marker: new.clone(),
        };
        fs::write(
            datadir.staging().join(PREPARED_FILE),
            serde_json::to_vec(&prepared).unwrap(),
        )
        .unwrap();
        let aside = dir.path().join(SET_ASIDE_DIR);
        fs::create_dir_all(aside.join(STAGING_DATA)).unwrap();
        fs::write(aside.join(OWNER_FILE), SET_ASIDE_OWNER_TEXT).unwrap();
        fs::rename(
            dir.path().join("mysql"),
            aside.join(STAGING_DATA).join("mysql"),
        )
        .unwrap();
        assert_eq!(
            datadir.list().unwrap().set_aside,
            Some(SetAsideState::Partial)
        );

        assert_eq!(datadir.finish_prepared_reclone(None).unwrap(), new);
        assert_eq!(fs::read(dir.path().join("ibdata1")).unwrap(), b"new");
        assert_eq!(
            fs::read(aside.join(STAGING_DATA).join("ibdata1")).unwrap(),
            b"old"
        );
        assert_eq!(datadir.list().unwrap().entries, ["ibdata1"]);
    }
}
