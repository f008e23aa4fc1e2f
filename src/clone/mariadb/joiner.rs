//! The joiner side of a clone, run by `init` on an empty datadir.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Response, StatusCode, header};
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::compression::{self, Compression, Inflater};
use super::frame::{Decoder, Event, FrameError};
use super::{ESTIMATED_BYTES_HEADER, position};
use crate::clone::agent::PeerClient;
use crate::clone::datadir::{CloneMarker, DataDir, Promotion};
use crate::clone::ownership::Ownership;
use crate::clone::progress::{ClonePhase, Progress, ProgressLabel, estimate_note};
use crate::clone::{
    Attempt, AttemptFailure, CloneError, FailedAttempts, agent, error_chain, in_staging, io_error,
    mib, now_unix, until_donor_answers,
};
use crate::dns::Resolver;
use crate::duration::seconds;
use crate::secret::Secret;
use crate::tool::{self, Running};

/// The donor answers headers at once; its backup tool may take a while to send the first bytes.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct JoinerSettings {
    pub donor: String,
    pub donor_is_primary: bool,
    pub peer: PeerClient,
    pub token: Option<Secret>,
    pub mbstream: PathBuf,
    pub mariadb_backup: PathBuf,
    pub deadline: Duration,
    /// A stream that sends nothing this long is dead, even if its TCP connection is not.
    pub stall_timeout: Duration,
    /// Asked of the donor; it may send the stream plain all the same.
    pub compression: Compression,
    pub ownership: Ownership,
    /// `Owed` when the first ordinal restores its lost volume from a peer.
    pub promotion: Promotion,
    pub label: ProgressLabel,
    pub failed_attempts: FailedAttempts,
}

/// Clones the donor into `datadir` (which the caller has found empty). On any failure the
/// staging directory is removed, so a retry starts clean and nothing partial looks like data.
pub async fn clone(
    datadir: &DataDir,
    settings: &JoinerSettings,
    resolver: &Resolver,
    shutdown: &CancellationToken,
) -> Result<CloneMarker, CloneError> {
    let (label, donor) = (&settings.label, &settings.donor);
    in_staging(datadir, &settings.ownership, label, donor, async |progress| {
        // The running tool lives out here so that it is dead before staging is removed, however
        // the clone ends.
        let mut running = None;
        let result = tokio::select! {
            result = fetch_and_prepare(datadir, settings, resolver, progress, &mut running) => result,
            () = shutdown.cancelled() => Err(CloneError::Cancelled),
        };
        if let Some(tool) = running {
            tool.stop().await;
        }
        result
    })
    .await
}

/// Receives and prepares the backup in staging; returns the marker it is to be installed with.
async fn fetch_and_prepare(
    datadir: &DataDir,
    settings: &JoinerSettings,
    resolver: &Resolver,
    progress: &mut Progress,
    running: &mut Option<Running>,
) -> Result<CloneMarker, CloneError> {
    let (response, compression) = start_clone(settings, resolver, progress).await?;
    let estimated = estimated_bytes(&response);
    progress.cloning(estimated);
    tracing::info!(
        phase = %ClonePhase::Cloning, donor = %settings.donor, estimated_total_bytes = estimated,
        compression = %compression,
        "donor accepted: receiving the clone stream{}; compression {}",
        estimate_note(estimated), compression::decision(settings.compression, compression)
    );
    let received = receive(response, compression, datadir, settings, progress, running).await?;
    let (bytes, streamed) = (received.bytes, progress.transfer());
    let compressed_bytes = (compression == Compression::Zstd).then_some(received.wire_bytes);
    tracing::info!(
        phase = %ClonePhase::Cloning, donor = %settings.donor, bytes, mib = mib(bytes),
        secs = streamed.elapsed.as_secs_f64(), mib_per_s = streamed.view().mib_per_s,
        estimated_total_bytes = estimated, compression = %compression, compressed_bytes,
        ratio = compressed_bytes.map(|wire| compression::ratio(bytes, wire)),
        "clone stream complete: the donor's end-of-stream signal arrived and the checksum matches"
    );

    progress.phase(ClonePhase::Preparing);
    let staged = datadir.staging_data();
    let mut prepare = tool::command(&settings.mariadb_backup);
    prepare
        .arg(format!(
            "--defaults-file={}",
            staged.join("backup-my.cnf").display()
        ))
        .arg("--prepare")
        .arg(format!("--target-dir={}", staged.display()));
    let prepare_started = Instant::now();
    running
        .insert(tool::spawn(prepare, &settings.mariadb_backup)?)
        .finish()
        .await?;
    tracing::info!(
        phase = %ClonePhase::Preparing, secs = prepare_started.elapsed().as_secs_f64(),
        "backup prepared"
    );

    // The first of a file's names that the backup holds.
    let read_info = |names: position::InfoNames| -> Result<_, CloneError> {
        for name in names {
            match std::fs::read_to_string(staged.join(name)) {
                Ok(text) => return Ok(Some((name, text))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(format!("reading {name}"))(e)),
            }
        }
        Ok(None)
    };
    let binlog_info = read_info(position::BINLOG_INFO)?;
    let slave_info = read_info(position::SLAVE_INFO)?;
    let (gtid, source_file) = position::start_position(
        settings.donor_is_primary,
        as_info_file(&binlog_info),
        as_info_file(&slave_info),
    )?;
    if settings.promotion.holds_writes() {
        // mariadb-backup copies no binlogs: without this the restored primary would start with
        // an empty gtid_binlog_state, and replicas asking for their position would get error
        // 1236. The server reads `<log_bin>.state` when it starts without binlogs.
        let state = staged.join(format!("{}.state", crate::mycnf::BINLOG_BASE));
        let lines: String = gtid
            .to_string()
            .split(',')
            .map(|g| format!("{g}\n"))
            .collect();
        crate::fsutil::write_atomic(&state, lines.as_bytes(), 0o640)
            .map_err(io_error(format!("writing {}", state.display())))?;
        tracing::info!(gtid = %gtid, file = %state.display(), "restored primary: its binlog GTID state starts at the clone's position");
    }
    let marker = CloneMarker {
        donor: settings.donor.clone(),
        gtid_position: gtid.to_string(),
        position_source: source_file.to_owned(),
        bytes,
        completed_unix: now_unix(),
        duration_ms: Some(progress.clone_ms()),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        promotion: settings.promotion,
        failed_attempts: Some(settings.failed_attempts.counts()),
    };
    Ok(marker)
}

fn as_info_file<'a>(info: &'a Option<(&'static str, String)>) -> Option<position::InfoFile<'a>> {
    info.as_ref().map(|(name, text)| (*name, text.as_str()))
}

/// Resolves the donor and asks it for a clone until it accepts, within the deadline; returns
/// its response and how its body is compressed.
async fn start_clone(
    settings: &JoinerSettings,
    resolver: &Resolver,
    progress: &mut Progress,
) -> Result<(Response<Incoming>, Compression), CloneError> {
    until_donor_answers(
        &settings.donor,
        settings.deadline,
        progress,
        &settings.failed_attempts,
        || request_clone(settings, resolver),
    )
    .await
}

/// What the donor expects to stream, if it said (`ESTIMATED_BYTES_HEADER`).
fn estimated_bytes(response: &Response<Incoming>) -> Option<u64> {
    let value = response.headers().get(ESTIMATED_BYTES_HEADER)?;
    value.to_str().ok()?.parse().ok()
}

async fn request_clone(
    settings: &JoinerSettings,
    resolver: &Resolver,
) -> Result<(Response<Incoming>, Compression), Attempt> {
    let ip = resolver.resolve(&settings.donor).await?;
    let accept_encoding = match settings.compression {
        Compression::None => None,
        Compression::Zstd => Some(compression::ZSTD),
    };
    let response = agent::get(
        &settings.donor,
        ip,
        &settings.peer,
        &agent::donor_path("/clone", settings.promotion),
        settings.token.as_ref(),
        accept_encoding,
        RESPONSE_TIMEOUT,
    )
    .await?;
    let status = response.status();
    if status == StatusCode::OK {
        let encoding = response.headers().get(header::CONTENT_ENCODING);
        return match compression::received(encoding.and_then(|v| v.to_str().ok())) {
            Ok(compression) => Ok((response, compression)),
            Err(answer) => Err(Attempt::Fatal(CloneError::Refused {
                donor: settings.donor.clone(),
                answer,
            })),
        };
    }
    let answer = agent::answer(response).await;
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Attempt::Fatal(
            CloneError::Unauthorized(settings.donor.clone()),
        )),
        StatusCode::TOO_MANY_REQUESTS => Err(Attempt::Retry(AttemptFailure::Busy, answer)),
        s if s.is_server_error() => Err(Attempt::Retry(AttemptFailure::NotADonor, answer)),
        _ => Err(Attempt::Fatal(CloneError::Refused {
            donor: settings.donor.clone(),
            answer,
        })),
    }
}

/// What a clone stream brought: the backup's bytes, and the body's on the wire.
#[derive(Debug, Clone, Copy)]
struct Received {
    bytes: u64,
    wire_bytes: u64,
}

/// Feeds the framed body into `mbstream -x`; returns what it brought once the end frame arrived
/// and the extractor succeeded. Reading the body and writing to the extractor overlap, so that
/// neither the network nor the extractor waits for the other.
async fn receive(
    response: Response<Incoming>,
    compression: Compression,
    datadir: &DataDir,
    settings: &JoinerSettings,
    progress: &mut Progress,
    running: &mut Option<Running>,
) -> Result<Received, CloneError> {
    let program = &settings.mbstream;
    let staged = datadir.staging_data();
    let mut cmd = tool::command(program);
    cmd.arg("-x")
        .arg("-C")
        .arg(&staged)
        .stdin(std::process::Stdio::piped());
    let extractor = running.insert(tool::spawn(cmd, program)?);
    let stdin = extractor.child.stdin.take().expect("stdin is piped");
    tool::enlarge_pipe(&stdin, extractor.name());
    let (data, to_extract) = mpsc::channel(EXTRACT_QUEUE);
    let (read, written) = tokio::join!(
        read_frames(response, compression, settings, progress, data),
        feed(stdin, to_extract)
    );
    let received = read?;
    // A writer that failed met a dead extractor, whose own words say why.
    extractor.finish().await?;
    let context = format!("writing to {}", extractor.name());
    written.map_err(io_error(context.clone()))?;
    received.ok_or_else(|| io_error(context)(std::io::ErrorKind::BrokenPipe.into()))
}

/// Frames decoded and not yet written to the extractor: a few MiB in flight, at most.
const EXTRACT_QUEUE: usize = 16;

/// Decodes the body's frames (decompressing it first if it came compressed) and hands their
/// data to the extractor's writer, until the end frame arrives intact: then what arrived;
/// `None` if the writer stopped taking data.
async fn read_frames(
    response: Response<Incoming>,
    compression: Compression,
    settings: &JoinerSettings,
    progress: &mut Progress,
    data: mpsc::Sender<Bytes>,
) -> Result<Option<Received>, CloneError> {
    let broken = |bytes: u64, reason: String| CloneError::Broken {
        donor: settings.donor.clone(),
        bytes,
        reason,
    };
    let mut inflater = match compression {
        Compression::None => None,
        Compression::Zstd => Some(Inflater::new().map_err(io_error("starting zstd"))?),
    };
    let mut body = response.into_body();
    let mut decoder = Decoder::default();
    let mut wire_bytes = 0u64;
    let mut ended = false;
    // A compressed stream is read on to the end of its zstd frame, which follows the end frame.
    while !ended || inflater.as_ref().is_some_and(|i| !i.is_complete()) {
        let frame = match tokio::time::timeout(settings.stall_timeout, body.frame()).await {
            Err(_) => {
                return Err(broken(
                    decoder.received(),
                    format!("no data for {}", seconds(settings.stall_timeout)),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(broken(decoder.received(), error_chain(&e))),
            Ok(Some(Ok(frame))) => frame,
        };
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        wire_bytes += chunk.len() as u64;
        let handed = match &mut inflater {
            None => {
                decoder.push(chunk);
                hand_over(&mut decoder, &data, &settings.donor).await?
            }
            Some(inflater) => {
                let mut handed = Handed::More;
                let mut consumed = 0;
                while handed != Handed::WriterGone {
                    let piece = inflater.next_piece(chunk, &mut consumed).map_err(|e| {
                        broken(decoder.received(), format!("corrupt zstd compression: {e}"))
                    })?;
                    if piece.is_empty() {
                        break;
                    }
                    decoder.push(piece);
                    handed = hand_over(&mut decoder, &data, &settings.donor).await?;
                    ended |= handed == Handed::Ended;
                }
                handed
            }
        };
        match handed {
            Handed::WriterGone => return Ok(None),
            Handed::Ended => ended = true,
            Handed::More => {}
        }
        progress.moved(decoder.received(), None, None);
    }
    decoder.finish().map_err(|source| match source {
        FrameError::Truncated { received } => broken(received, source.to_string()),
        source => CloneError::Frame {
            donor: settings.donor.clone(),
            source,
        },
    })?;
    if let Some(inflater) = &inflater {
        (inflater.finish()).map_err(|reason| broken(decoder.received(), reason))?;
    }
    Ok(Some(Received {
        bytes: decoder.received(),
        wire_bytes,
    }))
}

/// Where the stream is once the decoder's complete frames went to the extractor's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handed {
    More,
    /// The end frame came, intact.
    Ended,
    /// The writer stopped taking data (the extractor failed).
    WriterGone,
}

/// Hands the data of the frames `decoder` holds complete to the extractor's writer.
async fn hand_over(
    decoder: &mut Decoder,
    data: &mpsc::Sender<Bytes>,
    donor: &str,
) -> Result<Handed, CloneError> {
    let mut handed = Handed::More;
    loop {
        let event = decoder.next_event().map_err(|source| CloneError::Frame {
            donor: donor.to_owned(),
            source,
        })?;
        match event {
            None => return Ok(handed),
            Some(Event::Data(bytes)) => {
                if data.send(bytes).await.is_err() {
                    return Ok(Handed::WriterGone);
                }
            }
            Some(Event::End { .. }) => handed = Handed::Ended,
            Some(Event::Failed(reason)) => return Err(CloneError::DonorFailed(reason)),
        }
    }
}

/// Writes what `data` brings to the extractor, then closes its input: its end of stream. Data
/// that ends early (the stream failed) closes the input too; the extractor is stopped then.
async fn feed(mut stdin: ChildStdin, mut data: mpsc::Receiver<Bytes>) -> std::io::Result<()> {
    while let Some(bytes) = data.recv().await {
        stdin.write_all(&bytes).await?;
    }
    stdin.shutdown().await
}
