//! `mysql-sts-agent init`: the config fragment, then the data the server will start on.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::clone::CloneError;
use crate::clone::datadir::{DataDir, DataDirState, classify};
use crate::clone::mariadb::joiner::{self, JoinerSettings};
use crate::clone::mysql::{self, PluginSettings};
use crate::clone::ownership::{self, Ownership, OwnershipError};
use crate::config::{CloneChannel, InitConfig};
use crate::dns::{DnsError, Resolver};
use crate::mycnf;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("writing the config fragment into {dir}: {source}")]
    Config {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("reading the datadir {dir}: {source} (is the data volume mounted?)")]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing to touch the datadir {dir}: it holds {entries} but neither a completed clone nor \
         server data; nothing was deleted: move these files away to let the pod clone"
    )]
    Unrecognized { dir: PathBuf, entries: String },
    #[error("finishing the interrupted clone in {dir}: {source}")]
    Finish {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error("deciding who owns the clone's files: {0}")]
    Ownership(#[from] OwnershipError),
    #[error(
        "deciding who owns the clone's files: reading the owner of {dir} or /etc/passwd: {source}"
    )]
    OwnershipFacts {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("clone failed: {0}")]
    Clone(#[from] CloneError),
}

impl InitError {
    /// Data the agent will not touch is bad input, not a crash: EX_DATAERR.
    pub fn exit_code(&self) -> u8 {
        match self {
            InitError::Unrecognized { .. } => 65,
            _ => 1,
        }
    }
}

pub async fn run(cfg: InitConfig, shutdown: CancellationToken) -> Result<(), InitError> {
    let identity = &cfg.common.identity;
    super::log_identity(&cfg.common);

    let flavor = cfg.common.flavor;
    let fragment =
        mycnf::write(&cfg.conf_dir, identity, flavor).map_err(|source| InitError::Config {
            dir: cfg.conf_dir.clone(),
            source,
        })?;
    tracing::info!(path = %fragment.display(), server_id = identity.server_id, flavor = %flavor, "config fragment written");

    let datadir = DataDir::new(&cfg.common.datadir);
    let dir = || datadir.path().to_owned();
    let listing = datadir
        .list()
        .map_err(|source| InitError::DataDir { dir: dir(), source })?;
    match classify(&listing) {
        DataDirState::CloneComplete => {
            let marker = datadir
                .read_marker()
                .map_err(|source| InitError::DataDir { dir: dir(), source })?;
            if listing.staging.is_some() {
                datadir
                    .remove_staging()
                    .map_err(|source| InitError::DataDir { dir: dir(), source })?;
            }
            let (donor, gtid) = marker
                .map(|m| (m.donor, m.gtid_position))
                .unwrap_or_default();
            tracing::info!(donor = %donor, gtid = %gtid, "datadir holds a completed clone: leaving it as it is");
            Ok(())
        }
        DataDirState::ServerData => {
            tracing::info!(datadir = %dir().display(), "datadir holds the server's own data (no clone marker): leaving it as it is");
            Ok(())
        }
        DataDirState::PreparedClone => {
            tracing::info!(
                "datadir holds a prepared clone whose move was interrupted: finishing it"
            );
            let owner = ownership(&cfg, &datadir)?.chown_to();
            let marker = datadir
                .finish_prepared(owner)
                .map_err(|source| InitError::Finish { dir: dir(), source })?;
            tracing::info!(donor = %marker.donor, gtid = %marker.gtid_position, "clone complete");
            Ok(())
        }
        DataDirState::Unrecognized { entries } => Err(InitError::Unrecognized {
            dir: dir(),
            entries: summarize(&entries),
        }),
        DataDirState::InterruptedClone => {
            tracing::info!(
                staging = %datadir.staging().display(),
                "removing the staging directory of an interrupted clone (it carries the agent's owner file)"
            );
            datadir
                .remove_staging()
                .map_err(|source| InitError::DataDir { dir: dir(), source })?;
            empty_datadir(&cfg, &datadir, shutdown).await
        }
        DataDirState::Empty => empty_datadir(&cfg, &datadir, shutdown).await,
    }
}

async fn empty_datadir(
    cfg: &InitConfig,
    datadir: &DataDir,
    shutdown: CancellationToken,
) -> Result<(), InitError> {
    let identity = &cfg.common.identity;
    let Some(donor) = identity.donor_fqdn.clone() else {
        tracing::info!(
            ordinal = identity.ordinal,
            "datadir is empty on the first ordinal (the primary): nothing to clone, the server initializes it on first start"
        );
        return Ok(());
    };
    // Decided before any byte moves: a clone that cannot be installed must not be streamed.
    let ownership = ownership(cfg, datadir)?;
    let method = match &cfg.common.clone {
        CloneChannel::BackupStream { .. } => "a mariadb-backup stream from its agent",
        CloneChannel::ClonePlugin { .. } => "the CLONE plugin into a temporary server",
    };
    tracing::info!(donor = %donor, "datadir is empty: cloning from ordinal {} (ordinal-1) with {method}", identity.ordinal - 1);
    let resolver = Resolver::from_system()?;
    let marker = match &cfg.common.clone {
        CloneChannel::BackupStream {
            token,
            mariadb_backup,
            mbstream,
        } => {
            let settings = JoinerSettings {
                donor_is_primary: identity.ordinal == identity.first_ordinal + 1,
                donor,
                port: cfg.common.agent_port,
                token: token.clone(),
                mbstream: mbstream.clone(),
                mariadb_backup: mariadb_backup.clone(),
                deadline: cfg.clone_deadline,
                stall_timeout: cfg.clone_stall_timeout,
                ownership,
            };
            joiner::clone(datadir, &settings, &resolver, &shutdown).await?
        }
        CloneChannel::ClonePlugin { user } => {
            let settings = PluginSettings {
                donor,
                port: cfg.common.mysql_port,
                agent_port: cfg.common.agent_port,
                user: user.clone(),
                mysqld: cfg.mysqld.clone(),
                deadline: cfg.clone_deadline,
                stall_timeout: cfg.clone_stall_timeout,
                ownership,
            };
            mysql::clone(datadir, &settings, &resolver, &shutdown).await?
        }
    };
    tracing::info!(
        donor = %marker.donor, gtid = %marker.gtid_position, position_from = %marker.position_source,
        "clone complete: replication will start at this GTID position"
    );
    Ok(())
}

/// Who the clone's files go to, logged once with its reason.
fn ownership(cfg: &InitConfig, datadir: &DataDir) -> Result<Ownership, InitError> {
    let facts = ownership::observe(datadir.path(), cfg.server_user.as_ref()).map_err(|source| {
        InitError::OwnershipFacts {
            dir: datadir.path().to_owned(),
            source,
        }
    })?;
    let decided = ownership::decide(facts)?;
    tracing::info!("{decided}");
    Ok(decided)
}

fn summarize(entries: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = entries
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if entries.len() > SHOWN {
        text.push_str(&format!(" and {} more", entries.len() - SHOWN));
    }
    text
}
