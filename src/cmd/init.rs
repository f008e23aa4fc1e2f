//! `mysql-sts-agent init`: the config fragment, then the data the server will start on.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clone::datadir::{CloneMarker, DataDir, DataDirState, Promotion, classify};
use crate::clone::fallback::{DonorPod, clone_with_fallback};
use crate::clone::mariadb::joiner::{self, JoinerSettings};
use crate::clone::mysql::{self, PluginSettings};
use crate::clone::ownership::{self, Ownership, OwnershipError};
use crate::clone::progress::ProgressLabel;
use crate::clone::reclone::{self, Step};
use crate::clone::{CloneError, FailedAttempts};
use crate::config::{CloneChannel, InitConfig};
use crate::dns::{DnsError, Resolver};
use crate::guard::survey::{Unanswered, survey};
use crate::guard::{Decision, decide};
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
    #[error(transparent)]
    PeerUnanswered(#[from] Unanswered),
    #[error("refusing to start the first ordinal on an empty datadir: {0}")]
    Diverged(String),
    #[error("refusing to carry out the re-clone requested in {dir}: {reason}; nothing was deleted")]
    Reclone { dir: PathBuf, reason: String },
}

impl InitError {
    /// Data the agent will not touch is bad input, not a crash: EX_DATAERR.
    pub fn exit_code(&self) -> u8 {
        match self {
            InitError::Unrecognized { .. } | InitError::Diverged(_) | InitError::Reclone { .. } => {
                65
            }
            _ => 1,
        }
    }
}

pub async fn run(cfg: InitConfig, shutdown: CancellationToken) -> Result<(), InitError> {
    super::log_identity(&cfg.common);

    let datadir = DataDir::new(&cfg.common.datadir);
    let dir = || datadir.path().to_owned();
    let listing = datadir
        .list()
        .map_err(|source| InitError::DataDir { dir: dir(), source })?;
    let promotion = match listing.has_marker {
        true => datadir
            .read_marker()
            .map_err(|source| InitError::DataDir { dir: dir(), source })?
            .map(|m| m.promotion)
            .unwrap_or_default(),
        false => Promotion::None,
    };
    write_fragment(&cfg, promotion)?;
    data(&cfg, &datadir, &listing, shutdown).await
}

/// The server's config fragment; a restored first ordinal that still owes its promotion
/// starts read-only.
fn write_fragment(cfg: &InitConfig, promotion: Promotion) -> Result<(), InitError> {
    let (identity, flavor) = (&cfg.common.identity, cfg.common.flavor);
    let hold_writes = promotion.holds_writes();
    let fragment = mycnf::write(
        &cfg.conf_dir,
        identity,
        flavor,
        hold_writes,
        cfg.common.semi_sync,
        cfg.common.tls.as_ref(),
    )
    .map_err(|source| InitError::Config {
        dir: cfg.conf_dir.clone(),
        source,
    })?;
    tracing::info!(path = %fragment.display(), server_id = identity.server_id, flavor = %flavor, read_only_until_promoted = hold_writes, semi_sync = cfg.common.semi_sync, server_tls = cfg.common.tls.is_some(), "config fragment written");
    Ok(())
}

/// What the datadir holds decides what happens to it.
async fn data(
    cfg: &InitConfig,
    datadir: &DataDir,
    listing: &crate::clone::datadir::Listing,
    shutdown: CancellationToken,
) -> Result<(), InitError> {
    let dir = || datadir.path().to_owned();
    if listing.reclone.is_some() {
        return reclone_if_requested(cfg, shutdown).await.map(|_| ());
    }
    match classify(listing) {
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
            let owner = ownership(cfg, datadir)?.chown_to();
            let marker = datadir
                .finish_prepared(owner)
                .map_err(|source| InitError::Finish { dir: dir(), source })?;
            tracing::info!(donor = %marker.donor, gtid = %marker.gtid_position, "clone complete");
            write_fragment(cfg, marker.promotion)
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
            clone_into(cfg, datadir, "datadir is empty", shutdown).await
        }
        DataDirState::Empty => clone_into(cfg, datadir, "datadir is empty", shutdown).await,
    }
}

/// Carries out a re-clone the sidecar requested, step by step as the datadir says (so a run cut
/// short goes on); returns whether one was pending.
pub async fn reclone_if_requested(
    cfg: &InitConfig,
    shutdown: CancellationToken,
) -> Result<bool, InitError> {
    let datadir = DataDir::new(&cfg.common.datadir);
    let dir = || datadir.path().to_owned();
    let read = |source| InitError::DataDir { dir: dir(), source };
    loop {
        let listing = datadir.list().map_err(read)?;
        let Some(request) = &listing.reclone else {
            return Ok(false);
        };
        let marker = match listing.has_marker {
            true => datadir.read_marker().map_err(read)?,
            false => None,
        };
        let step = match cfg.common.identity.donor_fqdn {
            None => Step::Refuse("the first ordinal is never re-cloned".to_owned()),
            Some(_) => reclone::next_step(
                request,
                marker.as_ref(),
                listing.staging.as_ref(),
                listing.set_aside,
            ),
        };
        match step {
            Step::Clone {
                remove_partial_staging,
            } => {
                if remove_partial_staging {
                    tracing::info!(staging = %datadir.staging().display(), "removing the staging directory of an interrupted re-clone");
                    datadir.remove_staging().map_err(read)?;
                }
                tracing::warn!(
                    requested_unix = request.requested_unix,
                    "re-clone requested by the sidecar ({}): cloning again beside the old data, \
                     which is set aside once the new clone is prepared and removed once it is in \
                     place",
                    request.reason
                );
                clone_into(cfg, &datadir, "re-clone", shutdown.clone()).await?;
            }
            Step::Install => {
                tracing::info!(
                    "the re-clone is prepared: setting the old data aside and moving the new clone into place"
                );
                let owner = ownership(cfg, &datadir)?.chown_to();
                datadir
                    .finish_prepared_reclone(owner)
                    .map_err(|source| InitError::Finish { dir: dir(), source })?;
            }
            Step::Finish => {
                datadir.finish_reclone().map_err(read)?;
                let (donor, gtid) = marker
                    .map(|m| (m.donor, m.gtid_position))
                    .unwrap_or_default();
                tracing::info!(donor = %donor, gtid = %gtid, "re-clone complete: the old data set aside was removed; replication starts at the new clone's position");
                return Ok(true);
            }
            Step::Refuse(reason) => return Err(InitError::Reclone { dir: dir(), reason }),
        }
    }
}

/// Clones into the staging directory and installs the clone; `why` starts the log line that
/// says from whom (the datadir is empty, or a re-clone replaces it).
async fn clone_into(
    cfg: &InitConfig,
    datadir: &DataDir,
    why: &str,
    shutdown: CancellationToken,
) -> Result<(), InitError> {
    let identity = &cfg.common.identity;
    let resolver = Resolver::from_system()?;
    let method = match &cfg.common.clone {
        CloneChannel::BackupStream { .. } => "a mariadb-backup stream from its agent",
        CloneChannel::ClonePlugin { .. } => "the CLONE plugin into a temporary server",
    };
    let restore_from = match &identity.donor_fqdn {
        Some(donor) => {
            let fallback = cfg.donor_fallback_after.plan(cfg.clone_deadline);
            tracing::info!(donor = %donor, "{why}: cloning from ordinal {} (ordinal-1) with {method}; {fallback}", identity.ordinal - 1);
            None
        }
        None => match first_ordinal_guard(cfg, &resolver).await? {
            Some(peer) => {
                tracing::info!(donor = %peer.name, "restoring the first ordinal's lost volume from that peer with {method}; the server starts read-only until the sidecar promoted it");
                Some(peer)
            }
            None => return Ok(()),
        },
    };
    let cloning = Cloning {
        cfg,
        datadir,
        // Decided before any byte moves: a clone that cannot be installed must not be streamed.
        ownership: ownership(cfg, datadir)?,
        promotion: match restore_from {
            Some(_) => Promotion::Owed,
            None => Promotion::None,
        },
        resolver: &resolver,
        shutdown: &shutdown,
        donors_asked: Cell::new(0),
        failed_attempts: FailedAttempts::default(),
    };
    let marker = match restore_from {
        Some(peer) => cloning.from(peer, cfg.clone_deadline).await?,
        None => {
            clone_with_fallback(
                identity,
                cfg.donor_fallback_after,
                cfg.clone_deadline,
                &cfg.peer_client,
                &resolver,
                &shutdown,
                |donor, wait| cloning.from(donor, wait),
            )
            .await?
        }
    };
    tracing::info!(
        donor = %marker.donor, gtid = %marker.gtid_position, position_from = %marker.position_source,
        "clone complete: replication will start at this GTID position"
    );
    if cloning.promotion.holds_writes() {
        write_fragment(cfg, cloning.promotion)?;
    }
    Ok(())
}

/// What every clone of this init shares, whichever pod donates.
struct Cloning<'a> {
    cfg: &'a InitConfig,
    datadir: &'a DataDir,
    ownership: Ownership,
    promotion: Promotion,
    resolver: &'a Resolver,
    shutdown: &'a CancellationToken,
    /// Clone attempts so far, for the progress record: the first is ordinal-1's, the next ones
    /// each with the donor a fallback search chose.
    donors_asked: Cell<u32>,
    failed_attempts: FailedAttempts,
}

impl Cloning<'_> {
    /// Clones `donor` with the flavor's channel, waiting `wait` for it to serve.
    async fn from(&self, donor: DonorPod, wait: Duration) -> Result<CloneMarker, CloneError> {
        let common = &self.cfg.common;
        self.donors_asked.set(self.donors_asked.get() + 1);
        let label = ProgressLabel {
            hostname: common.identity.hostname.clone(),
            donor_attempt: self.donors_asked.get(),
        };
        match &common.clone {
            CloneChannel::BackupStream {
                token,
                mariadb_backup,
                mbstream,
            } => {
                let settings = JoinerSettings {
                    // The primary's backup holds its binlog position; a replica's, in slave_info.
                    donor_is_primary: donor.is_primary,
                    donor: donor.name,
                    peer: self.cfg.peer_client.clone(),
                    token: token.clone(),
                    mbstream: mbstream.clone(),
                    mariadb_backup: mariadb_backup.clone(),
                    deadline: wait,
                    stall_timeout: self.cfg.clone_stall_timeout,
                    compression: self.cfg.clone_compression,
                    ownership: self.ownership.clone(),
                    promotion: self.promotion,
                    label,
                    failed_attempts: self.failed_attempts.clone(),
                };
                joiner::clone(self.datadir, &settings, self.resolver, self.shutdown).await
            }
            CloneChannel::ClonePlugin { user } => {
                let settings = PluginSettings {
                    donor: donor.name,
                    port: common.mysql_port,
                    peer: self.cfg.peer_client.clone(),
                    tls: common.peer.tls_files().cloned(),
                    user: user.clone(),
                    mysqld: self.cfg.mysqld.clone(),
                    deadline: wait,
                    stall_timeout: self.cfg.clone_stall_timeout,
                    ownership: self.ownership.clone(),
                    promotion: self.promotion,
                    label,
                    failed_attempts: self.failed_attempts.clone(),
                };
                mysql::clone(self.datadir, &settings, self.resolver, self.shutdown).await
            }
        }
    }
}

/// The first ordinal on an empty datadir: the peer to restore from, or `None` to let the server
/// initialize an empty database. Each outcome is logged once with its reason.
async fn first_ordinal_guard(
    cfg: &InitConfig,
    resolver: &Resolver,
) -> Result<Option<DonorPod>, InitError> {
    let identity = &cfg.common.identity;
    if cfg.allow_empty_start {
        tracing::warn!(
            ordinal = identity.ordinal,
            "datadir is empty on the first ordinal and --allow-empty-start is set: starting empty without asking the peers; the server initializes it on first start"
        );
        return Ok(None);
    }
    tracing::info!(
        ordinal = identity.ordinal, deadline = %crate::duration::seconds(cfg.peer_deadline),
        "datadir is empty on the first ordinal: asking the peers whether any holds data before the server may initialize it"
    );
    let peers = survey(
        identity,
        cfg.common.flavor,
        &cfg.peer_client,
        cfg.peer_deadline,
        resolver,
    )
    .await?;
    match decide(&peers) {
        Decision::StartEmpty { reason } => {
            tracing::info!(
                "datadir is empty on the first ordinal (the primary) and {reason}: nothing to clone, the server initializes it on first start"
            );
            Ok(None)
        }
        Decision::Restore { peer, reason } => {
            tracing::warn!(peer = %peer.name, gtids = %peer.gtids, "the first ordinal lost its volume while peers hold data: restoring from the most advanced peer, since {reason}");
            Ok(Some(DonorPod::of(identity, peer.ordinal)))
        }
        Decision::Refuse { reason } => Err(InitError::Diverged(reason)),
    }
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
