//! Which pod a replica clones from: ordinal-1 by default; when it is not a healthy donor within
//! `--donor-fallback-after`, the first other pod whose agent says it is one (replicas before the
//! primary, which takes the writes). `fallback_order` is the pure order; `clone_with_fallback`
//! asks the pods and clones.
//!
//! The first ordinal restoring its lost volume does not come here: it clones the most advanced
//! peer (`guard`).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;

use super::agent::PeerClient;
use super::datadir::{CloneMarker, Promotion};
use super::{CloneError, agent, peer_backoff};
use crate::dns::Resolver;
use crate::duration::{DurationError, millis, parse_duration, seconds};
use crate::identity::Identity;

/// How long a joiner waits for ordinal-1 to be a healthy donor before it asks the other pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DonorFallback {
    After(Duration),
    /// Wait for ordinal-1 only, until the clone deadline.
    Never,
}

impl DonorFallback {
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        if text.trim() == "never" {
            return Ok(DonorFallback::Never);
        }
        parse_duration(text).map(DonorFallback::After)
    }

    /// How long ordinal-1 gets before the joiner asks other pods, if it ever does: not when
    /// fallback is forbidden, nor when the clone deadline comes first.
    fn falls_back_after(self, deadline: Duration) -> Option<Duration> {
        match self {
            DonorFallback::After(after) if after < deadline => Some(after),
            _ => None,
        }
    }

    /// What the joiner does while ordinal-1 is not a healthy donor, for the log.
    pub fn plan(self, deadline: Duration) -> String {
        match (self, self.falls_back_after(deadline)) {
            (_, Some(after)) => format!(
                "if it is not a healthy donor within {}, another healthy replica, then the primary",
                seconds(after)
            ),
            (DonorFallback::Never, None) => format!(
                "donor fallback is forbidden (--donor-fallback-after never): if it is not a healthy \
                 donor, the joiner keeps waiting for it until the clone deadline ({})",
                seconds(deadline)
            ),
            (DonorFallback::After(after), None) => format!(
                "if it is not a healthy donor, the joiner waits for it until the clone deadline \
                 ({}), which comes before --donor-fallback-after ({})",
                seconds(deadline),
                seconds(after)
            ),
        }
    }
}

impl fmt::Display for DonorFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DonorFallback::After(after) => f.write_str(&seconds(*after)),
            DonorFallback::Never => f.write_str("never"),
        }
    }
}

/// A pod that may donate a clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DonorPod {
    pub ordinal: u32,
    /// Its stable name.
    pub name: String,
    /// The primary's backup holds its own binlog position; a replica's, its primary's.
    pub is_primary: bool,
}

impl DonorPod {
    pub fn of(identity: &Identity, ordinal: u32) -> Self {
        DonorPod {
            ordinal,
            name: identity.peer_fqdn(ordinal),
            is_primary: ordinal == identity.first_ordinal,
        }
    }

    fn role(&self) -> &'static str {
        if self.is_primary {
            "the primary"
        } else {
            "a healthy replica"
        }
    }
}

/// The ordinals a replica asks for a clone, in order, given that ordinals from `past_last` on do
/// not exist: ordinal-1; the replicas below it, nearest first (under the default OrderedReady
/// policy they were all Ready before this pod was created); those above this pod, which exist
/// only under Parallel management or when this pod is recreated; the primary last, since it
/// takes the writes.
pub fn fallback_order(first_ordinal: u32, own: u32, past_last: u32) -> Vec<u32> {
    debug_assert!(own > first_ordinal, "only replicas clone through fallback");
    let ordinal_minus_one = own - 1;
    let below = (first_ordinal + 1..ordinal_minus_one).rev();
    let above = own + 1..past_last;
    let primary = (ordinal_minus_one != first_ordinal).then_some(first_ordinal);
    std::iter::once(ordinal_minus_one)
        .chain(below)
        .chain(above)
        .chain(primary)
        .collect()
}

/// Clones into the datadir from ordinal-1, or from another healthy pod when ordinal-1 does not
/// serve within the fallback time; `clone_from` clones from the pod it is given, waiting as long
/// as it is given for the pod to serve. Waiting for donors ends at `deadline`.
pub(crate) async fn clone_with_fallback<F>(
    identity: &Identity,
    fallback: DonorFallback,
    deadline: Duration,
    peer: &PeerClient,
    resolver: &Resolver,
    shutdown: &CancellationToken,
    mut clone_from: impl FnMut(DonorPod, Duration) -> F,
) -> Result<CloneMarker, CloneError>
where
    F: Future<Output = Result<CloneMarker, CloneError>>,
{
    let started = Instant::now();
    let ordinal_minus_one = DonorPod::of(identity, identity.ordinal - 1);
    let Some(after) = fallback.falls_back_after(deadline) else {
        return clone_from(ordinal_minus_one, deadline).await;
    };
    let last = match clone_from(ordinal_minus_one.clone(), after).await {
        Err(CloneError::Deadline { last, .. }) => last,
        done => return done,
    };
    let mut search = Search {
        identity,
        peer,
        resolver,
        reasons: BTreeMap::from([(ordinal_minus_one.ordinal, last)]),
    };
    let until = started + deadline;
    let mut pauses = peer_backoff().build();
    let mut round = 0u32;
    loop {
        let Some(order) = within(until, shutdown, search.order()).await? else {
            return Err(search.exhausted(deadline));
        };
        for ordinal in order {
            let candidate = DonorPod::of(identity, ordinal);
            let Some(healthy) = within(until, shutdown, search.ask(&candidate)).await? else {
                return Err(search.exhausted(deadline));
            };
            if let Err(reason) = healthy {
                search.skip(&candidate, reason);
                continue;
            }
            if ordinal == ordinal_minus_one.ordinal {
                tracing::info!(donor = %candidate.name, "ordinal-1 is a healthy donor now: cloning from it");
            } else {
                tracing::warn!(
                    donor = %candidate.name,
                    "ordinal-1 {} is not healthy or not answering after {}: {}; falling back to {} ({})",
                    ordinal_minus_one.name, seconds(started.elapsed()),
                    search.reasons.get(&ordinal_minus_one.ordinal).map_or("", String::as_str),
                    candidate.name, candidate.role()
                );
            }
            let name = candidate.name.clone();
            let wait = after.min(until.saturating_duration_since(Instant::now()));
            match clone_from(candidate, wait).await {
                // Its health changed between the two questions, or it is busy with another clone.
                Err(CloneError::Deadline { last, deadline, .. }) => {
                    let reason = format!(
                        "said it is a healthy donor, then did not serve the clone within {deadline}: {last}"
                    );
                    tracing::warn!(donor = %name, "{reason}; trying the next donor");
                    search.reasons.insert(ordinal, reason);
                }
                done => return done,
            }
        }
        let pause = pauses.next().unwrap_or(Duration::from_secs(5));
        round += 1;
        tracing::info!(
            attempt = round,
            next_delay_ms = millis(pause),
            "no pod is a healthy donor now: asking them all again"
        );
        if within(until, shutdown, tokio::time::sleep(pause))
            .await?
            .is_none()
        {
            return Err(search.exhausted(deadline));
        }
    }
}

/// `work`'s outcome, or `None` when `until` passes first; shutdown cancels it.
async fn within<T>(
    until: Instant,
    shutdown: &CancellationToken,
    work: impl Future<Output = T>,
) -> Result<Option<T>, CloneError> {
    tokio::select! {
        done = tokio::time::timeout_at(until.into(), work) => Ok(done.ok()),
        () = shutdown.cancelled() => Err(CloneError::Cancelled),
    }
}

/// The pods asked so far and why each did not donate.
struct Search<'a> {
    identity: &'a Identity,
    peer: &'a PeerClient,
    resolver: &'a Resolver,
    reasons: BTreeMap<u32, String>,
}

impl Search<'_> {
    /// This round's candidates: the ordinals above this pod exist up to the first name that does
    /// not resolve (NXDOMAIN). A name that cannot be looked up ends the walk too, but is asked,
    /// so that the reason is logged.
    async fn order(&self) -> Vec<u32> {
        let identity = self.identity;
        let mut past_last = identity.ordinal + 1;
        loop {
            match self
                .resolver
                .resolve_existing(&identity.peer_fqdn(past_last))
                .await
            {
                Ok(Some(_)) => past_last += 1,
                Ok(None) => break,
                Err(_) => {
                    past_last += 1;
                    break;
                }
            }
        }
        fallback_order(identity.first_ordinal, identity.ordinal, past_last)
    }

    /// Whether the pod's agent says it is a healthy donor (`GET /donor`), or why not.
    async fn ask(&self, pod: &DonorPod) -> Result<(), String> {
        let ip = match self.resolver.resolve_existing(&pod.name).await {
            Ok(Some(ip)) => ip,
            Ok(None) => return Err("the pod does not exist (NXDOMAIN)".to_owned()),
            Err(e) => return Err(e.to_string()),
        };
        agent::ask_donor(&pod.name, ip, self.peer, Promotion::None)
            .await
            .map_err(|attempt| attempt.reason())
    }

    /// Logs a pod passed over, once for each new reason.
    fn skip(&mut self, pod: &DonorPod, reason: String) {
        if self.reasons.get(&pod.ordinal) != Some(&reason) {
            tracing::info!(donor = %pod.name, "not a donor now: {reason}");
            self.reasons.insert(pod.ordinal, reason);
        }
    }

    fn exhausted(&self, deadline: Duration) -> CloneError {
        let reasons = self
            .reasons
            .iter()
            .map(|(ordinal, reason)| format!("{}: {reason}", self.identity.peer_fqdn(*ordinal)))
            .collect::<Vec<_>>()
            .join("; ");
        CloneError::NoDonor {
            deadline: seconds(deadline),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinal_minus_one_first_then_the_replicas_below_nearest_first_then_the_primary() {
        assert_eq!(fallback_order(0, 4, 5), [3, 2, 1, 0]);
        assert_eq!(fallback_order(10, 13, 14), [12, 11, 10]);
    }

    #[test]
    fn replicas_above_come_after_those_below_and_before_the_primary() {
        assert_eq!(fallback_order(0, 2, 5), [1, 3, 4, 0]);
        assert_eq!(fallback_order(0, 3, 3), [2, 1, 0], "nothing above");
    }

    #[test]
    fn the_second_ordinal_has_the_primary_as_ordinal_minus_one_once() {
        assert_eq!(fallback_order(0, 1, 2), [0]);
        assert_eq!(fallback_order(0, 1, 4), [0, 2, 3]);
    }

    #[test]
    fn fallback_is_a_duration_or_never() {
        assert_eq!(
            DonorFallback::parse("30s"),
            Ok(DonorFallback::After(Duration::from_secs(30)))
        );
        assert_eq!(DonorFallback::parse("never"), Ok(DonorFallback::Never));
        assert!(DonorFallback::parse("forever").is_err());
        assert_eq!(DonorFallback::Never.to_string(), "never");
        let deadline = Duration::from_secs(8);
        assert_eq!(
            DonorFallback::After(Duration::from_secs(3)).plan(deadline),
            "if it is not a healthy donor within 3.0s, another healthy replica, then the primary"
        );
        assert!(
            DonorFallback::After(Duration::from_secs(30))
                .plan(deadline)
                .ends_with("until the clone deadline (8.0s), which comes before --donor-fallback-after (30.0s)")
        );
        assert!(
            DonorFallback::Never
                .plan(deadline)
                .starts_with("donor fallback is forbidden (--donor-fallback-after never)")
        );
        assert_eq!(
            DonorFallback::After(Duration::from_millis(2500)).to_string(),
            "2.5s"
        );
    }
}
