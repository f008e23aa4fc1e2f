//! Finding the first ordinal's peers through their stable names and asking their agents.

use std::time::{Duration, Instant};

use backon::Retryable;
use http_body_util::BodyExt;
use hyper::StatusCode;

use super::{DataReport, PeerAnswer};
use crate::clone::agent::PeerClient;
use crate::clone::{agent, peer_backoff};
use crate::db::flavor::Flavor;
use crate::db::gtid::Gtids;
use crate::dns::Resolver;
use crate::duration::{millis, seconds};
use crate::identity::Identity;

/// The peer answers from its next snapshot, within 5 s.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// A report is a few hundred bytes; more is not an agent answering.
const MAX_REPORT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[error(
    "peer {peer} exists (its name resolves) but could not be asked whether it holds data within \
     {deadline}: {last}; the first ordinal does not start on an empty datadir while a peer may \
     hold the data (the kubelet retries; --allow-empty-start overrides)"
)]
pub struct Unanswered {
    pub peer: String,
    pub deadline: String,
    pub last: String,
}

/// Every peer whose name resolves (ordinals first+1 upward, until one does not exist), asked
/// within `deadline` in all.
pub async fn survey(
    identity: &Identity,
    flavor: Flavor,
    peer_client: &PeerClient,
    deadline: Duration,
    resolver: &Resolver,
) -> Result<Vec<PeerAnswer>, Unanswered> {
    let until = Instant::now() + deadline;
    let mut answers = Vec::new();
    for ordinal in identity.first_ordinal + 1.. {
        let name = identity.peer_fqdn(ordinal);
        let peer = Peer {
            name: &name,
            flavor,
            client: peer_client,
            resolver,
        };
        let unanswered = |last: String| Unanswered {
            peer: name.clone(),
            deadline: seconds(deadline),
            last,
        };
        let Some(gtids) = until_answered(&peer, until).await.map_err(unanswered)? else {
            tracing::info!(peer = %name, "peer does not exist (NXDOMAIN): no more peers");
            break;
        };
        tracing::info!(peer = %name, gtids = %gtids, "peer answered");
        answers.push(PeerAnswer {
            ordinal,
            name,
            gtids,
        });
    }
    Ok(answers)
}

struct Peer<'a> {
    name: &'a str,
    flavor: Flavor,
    client: &'a PeerClient,
    resolver: &'a Resolver,
}

/// Retries until the peer answered, turned out not to exist (`None`), or `until` passed (the
/// last reason); each retry is logged with its number and the delay before the next.
async fn until_answered(peer: &Peer<'_>, until: Instant) -> Result<Option<Gtids>, String> {
    let mut last = String::from("no attempt finished");
    let mut failed = 0u32;
    let attempts = (|| ask(peer))
        .retry(peer_backoff())
        .notify(|reason: &String, delay| {
            failed += 1;
            tracing::info!(
                peer = %peer.name, attempt = failed, next_delay_ms = millis(delay),
                "peer not answering yet: {reason}"
            );
            last.clone_from(reason);
        });
    let remaining = until.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining, attempts).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(last),
    }
}

/// One attempt: resolve (a fresh lookup each time: a restarted pod has a new address), then
/// `GET /data`.
async fn ask(peer: &Peer<'_>) -> Result<Option<Gtids>, String> {
    let Some(ip) = peer
        .resolver
        .resolve_existing(peer.name)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let at = format!("GET /data on {ip}");
    let response = agent::get(peer.name, ip, peer.client, "/data", None, None, ASK_TIMEOUT)
        .await
        .map_err(|attempt| attempt.reason())?;
    if response.status() != StatusCode::OK {
        return Err(format!("{at}: {}", agent::answer(response).await));
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_REPORT)
        .collect()
        .await
        .map_err(|e| format!("{at}: {e}"))?
        .to_bytes();
    let report: DataReport = serde_json::from_slice(&body)
        .map_err(|e| format!("GET /data on {ip}: not a data report: {e}"))?;
    let parse = |text: &str| {
        Gtids::parse(peer.flavor, text)
            .map_err(|e| format!("its GTID set is not {}'s: {e}", peer.flavor))
    };
    Ok(Some(parse(&report.gtids)?.union(&parse(&report.received)?)))
}
