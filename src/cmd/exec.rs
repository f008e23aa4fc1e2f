//! `mysql-sts-agent exec -- <entrypoint>`: the database container's command. Init containers
//! run only when a pod is created; this runs at every start of the database container, so a
//! re-clone the sidecar requested is carried out before the server starts on the data.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use tokio_util::sync::CancellationToken;

use super::init::{self, InitError};
use crate::config::InitConfig;

pub async fn run(cfg: InitConfig, shutdown: CancellationToken) -> Result<(), InitError> {
    super::log_identity(&cfg.common);
    if !init::reclone_if_requested(&cfg, shutdown).await? {
        tracing::info!(
            "no re-clone pending: starting the server's entrypoint on the data as it is"
        );
    }
    Ok(())
}

/// Replaces this process with `entrypoint` (same PID, so the kubelet's signals reach it);
/// returns only the error if that fails.
pub fn replace_process(entrypoint: &[OsString]) -> std::io::Error {
    let Some((program, args)) = entrypoint.split_first() else {
        return std::io::Error::other("no entrypoint given after --");
    };
    Command::new(program).args(args).exec()
}
