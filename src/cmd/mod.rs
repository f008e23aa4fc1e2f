//! The subcommands, each composing the lifecycle steps for one container.

pub mod exec;
pub mod init;
pub mod sidecar;
pub mod status;

use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` on SIGTERM (the kubelet) or SIGINT (a terminal).
pub fn cancel_on_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received: shutting down");
        shutdown.cancel();
    });
    Ok(())
}

/// Logs the pod's identity: every later decision follows from it.
pub fn log_identity(common: &crate::config::Common) {
    let identity = &common.identity;
    tracing::info!(
        hostname = %identity.hostname, ordinal = identity.ordinal,
        first_ordinal = identity.first_ordinal, server_id = identity.server_id,
        role = %identity.role, fqdn = %identity.fqdn,
        donor = identity.donor_fqdn.as_deref().unwrap_or("none"), primary = %identity.primary_fqdn,
        "identity from the hostname; cluster domain from {}", common.domain_source
    );
    if let crate::config::CloneChannel::BackupStream { token: None, .. } = &common.clone {
        tracing::warn!(
            peer_channel = %common.peer,
            "--clone-insecure-no-token: clones are served and asked for without a token; anything that reaches the peer port can copy the whole database (restrict it with the NetworkPolicy, or with --clone-tls-client-auth)"
        );
    }
}

pub fn log_installed(installed: &crate::install::Installed) {
    use crate::install::Installed;
    match installed {
        Installed::Copied { path, bytes } => {
            tracing::info!(path = %path.display(), bytes, "agent binary installed")
        }
        Installed::AlreadyThere { path } => {
            tracing::info!(path = %path.display(), "the same agent binary is already installed: left as it is")
        }
    }
}
