//! A replica that cannot catch up (the primary purged binlogs it still needs) is cloned again.
//! Init containers run only when a pod is created, so the sidecar records a request in the
//! datadir and shuts the server down; the database container's command (`mysql-sts-agent exec
//! -- <entrypoint>`, or init when the pod is recreated) carries it out before the server starts:
//! the new clone is staged beside the old data, the old data is set aside, the new clone moved
//! into place, and only then is the old data removed. Each step is recorded on disk, so a run
//! cut short at any point goes on from there.

use serde::{Deserialize, Serialize};

use super::datadir::{CloneMarker, StagingState};

/// Written by the sidecar; removed once the re-clone is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecloneRequest {
    pub reason: String,
    pub requested_unix: u64,
    /// When the server the sidecar shut down had started: a server started later on the same
    /// data was started without the `exec` wrapper.
    pub server_started_unix: u64,
    pub agent_version: String,
}

/// A server started within this long of the one a request names is that server.
const SAME_SERVER_SLACK_SECS: u64 = 5;

impl RecloneRequest {
    /// Whether the server that started at `started_unix` is the one the request was made of
    /// (so it was never shut down), rather than one started since on the same data.
    pub fn names_server_started_at(&self, started_unix: u64) -> bool {
        started_unix.abs_diff(self.server_started_unix) <= SAME_SERVER_SLACK_SECS
    }
}

/// The directory the old data is moved into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetAsideState {
    /// No owner file: not provably ours.
    Foreign,
    /// Being filled.
    Partial,
    /// Holds all the old data.
    Complete,
}

/// What a pending re-clone needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Clone into staging (after removing the staging of an attempt cut short).
    Clone { remove_partial_staging: bool },
    /// The new clone is prepared: set the old data aside (what is left of it) and move the new
    /// data into place.
    Install,
    /// The marker in place is newer than the request: remove the set-aside data and the request.
    Finish,
    /// A state no step of the agent's leaves: touch nothing.
    Refuse(String),
}

/// Decides the next step of a pending re-clone from what the datadir holds.
pub fn next_step(
    request: &RecloneRequest,
    marker: Option<&CloneMarker>,
    staging: Option<&StagingState>,
    set_aside: Option<SetAsideState>,
) -> Step {
    if staging == Some(&StagingState::Foreign) || set_aside == Some(SetAsideState::Foreign) {
        return Step::Refuse(
            "the staging or set-aside directory lacks the agent's owner file".to_owned(),
        );
    }
    let answered = marker.is_some_and(|m| m.completed_unix >= request.requested_unix);
    match (answered, staging, set_aside) {
        (true, None, _) => Step::Finish,
        (false, Some(StagingState::Prepared { .. }), _) => Step::Install,
        (false, None | Some(StagingState::Partial), None) if marker.is_some() => Step::Clone {
            remove_partial_staging: staging.is_some(),
        },
        (false, None | Some(StagingState::Partial), None) => Step::Refuse(
            "the datadir holds no clone marker: its data is not provably a clone the agent may \
             replace"
                .to_owned(),
        ),
        (answered, staging, set_aside) => Step::Refuse(format!(
            "unexpected state (marker newer than the request: {answered}, staging: {staging:?}, \
             set-aside: {set_aside:?})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clone::datadir::Promotion;

    fn request() -> RecloneRequest {
        RecloneRequest {
            reason: "the primary purged binary logs this replica needs".into(),
            requested_unix: 100,
            server_started_unix: 50,
            agent_version: "test".into(),
        }
    }

    fn marker(completed_unix: u64) -> CloneMarker {
        CloneMarker {
            donor: "mysql-0".into(),
            gtid_position: "0-1-5".into(),
            position_source: "xtrabackup_binlog_info".into(),
            bytes: 1,
            completed_unix,
            duration_ms: None,
            agent_version: "test".into(),
            promotion: Promotion::None,
            failed_attempts: None,
        }
    }

    fn prepared() -> StagingState {
        StagingState::Prepared {
            entries: vec!["ibdata1".into()],
        }
    }

    #[test]
    fn a_fresh_request_clones_then_installs_then_finishes() {
        let (old, new) = (marker(10), marker(200));
        assert_eq!(
            next_step(&request(), Some(&old), None, None),
            Step::Clone {
                remove_partial_staging: false
            }
        );
        // Prepared: the old data (and its marker) go aside, then the new data goes in.
        assert_eq!(
            next_step(&request(), Some(&old), Some(&prepared()), None),
            Step::Install
        );
        assert_eq!(
            next_step(
                &request(),
                None,
                Some(&prepared()),
                Some(SetAsideState::Complete)
            ),
            Step::Install
        );
        assert_eq!(
            next_step(&request(), Some(&new), None, Some(SetAsideState::Complete)),
            Step::Finish
        );
        // The set-aside data was removed, the request not yet.
        assert_eq!(next_step(&request(), Some(&new), None, None), Step::Finish);
    }

    #[test]
    fn a_run_cut_short_goes_on_where_it_stopped() {
        let old = marker(10);
        assert_eq!(
            next_step(&request(), Some(&old), Some(&StagingState::Partial), None),
            Step::Clone {
                remove_partial_staging: true
            },
            "a clone cut short starts over"
        );
        assert_eq!(
            next_step(
                &request(),
                Some(&old),
                Some(&prepared()),
                Some(SetAsideState::Partial)
            ),
            Step::Install,
            "setting aside cut short goes on"
        );
        assert_eq!(
            next_step(
                &request(),
                None,
                Some(&prepared()),
                Some(SetAsideState::Partial)
            ),
            Step::Install,
            "the old marker may already be aside"
        );
    }

    #[test]
    fn a_request_names_the_server_it_was_made_of() {
        let request = request();
        assert!(request.names_server_started_at(50));
        assert!(
            request.names_server_started_at(53),
            "uptime is read to the second"
        );
        assert!(
            !request.names_server_started_at(120),
            "started again since, without the exec wrapper"
        );
    }

    #[test]
    fn nothing_unproven_is_touched() {
        assert!(matches!(
            next_step(&request(), None, None, None),
            Step::Refuse(reason) if reason.contains("no clone marker")
        ));
        let old = marker(10);
        assert!(matches!(
            next_step(&request(), Some(&old), Some(&StagingState::Foreign), None),
            Step::Refuse(_)
        ));
        assert!(matches!(
            next_step(&request(), Some(&old), None, Some(SetAsideState::Foreign)),
            Step::Refuse(_)
        ));
        // Old data partly aside but nothing prepared to replace it: no step of ours does that.
        assert!(matches!(
            next_step(&request(), None, None, Some(SetAsideState::Partial)),
            Step::Refuse(_)
        ));
    }
}
