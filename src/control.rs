//! The sidecar's control loop as explicit stages. The session with the local server (a
//! connection and what the server is) exists only in the stages that have one, so no step can
//! run against a server the loop is not connected to. Each stage's action yields an event;
//! `advance` decides the next stage and how long to pause, and is all the loop's logic;
//! `Cadence` decides how long a poll's pause is.

use std::time::{Duration, Instant};

/// The poll interval while settling: a pod that is ready is seen ready within this much, so the
/// kubelet's next readiness probe finds it ready and the StatefulSet moves on.
pub const SETTLING_POLL: Duration = Duration::from_millis(100);
/// Settling ends after this long even if the pod never became ready (e.g. a replica far behind
/// catching up): then it polls at the poll interval, as a running pod does.
pub const SETTLING_AT_MOST: Duration = Duration::from_secs(60);

/// Where the loop is; `S` is the session with the local server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage<S> {
    /// No session. `set_up`: replication (or the primary's users) was set up by an earlier
    /// session, so a new one goes straight to running: threads a person stopped stay stopped.
    Disconnected { set_up: bool },
    /// Connected; setting up replication (a replica) or the users (the primary).
    SettingUp(S),
    /// Setting up found a reason not to go on (e.g. data without a clone marker); re-checked
    /// every poll.
    Blocked(S),
    /// Set up: sampling the server (and the primary) every poll.
    Running(S),
}

impl<S> Stage<S> {
    /// The stage without its session, to decide on.
    pub fn kind(&self) -> Stage<()> {
        match self {
            Stage::Disconnected { set_up } => Stage::Disconnected { set_up: *set_up },
            Stage::SettingUp(_) => Stage::SettingUp(()),
            Stage::Blocked(_) => Stage::Blocked(()),
            Stage::Running(_) => Stage::Running(()),
        }
    }
}

/// What a stage's action came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<S> {
    Connected(S),
    /// The server answers, but is one the agent must not manage (another flavor, too old).
    Refused,
    Unreachable,
    SetUp(S),
    SetupBlocked(S),
    SetupFailed,
    Polled(S),
    PollFailed,
    /// The replica cannot catch up: a re-clone was requested and the server shut down for it.
    RecloneRequested,
}

/// How long the loop waits before the next action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Go on at once: the next stage's action belongs to the same poll.
    None,
    /// Until the next poll; the reconnect backoff starts over.
    Tick,
    /// A poll interval, then the next poll: something needs a person, check again.
    Recheck,
    /// The reconnect backoff's next delay.
    Backoff,
}

pub fn advance<S>(from: Stage<()>, event: Event<S>) -> (Stage<S>, Pause) {
    use Event::*;
    match (from, event) {
        (Stage::Disconnected { set_up: true }, Connected(s)) => (Stage::Running(s), Pause::None),
        (Stage::Disconnected { set_up: false }, Connected(s)) => (Stage::SettingUp(s), Pause::None),
        (Stage::Disconnected { set_up }, Refused) => {
            (Stage::Disconnected { set_up }, Pause::Recheck)
        }
        (Stage::Disconnected { set_up }, Unreachable) => {
            (Stage::Disconnected { set_up }, Pause::Backoff)
        }
        (Stage::SettingUp(()) | Stage::Blocked(()), SetUp(s)) => (Stage::Running(s), Pause::None),
        (Stage::SettingUp(()) | Stage::Blocked(()), SetupBlocked(s)) => {
            (Stage::Blocked(s), Pause::Recheck)
        }
        (Stage::SettingUp(()) | Stage::Blocked(()), SetupFailed) => {
            (Stage::Disconnected { set_up: false }, Pause::Backoff)
        }
        (Stage::Running(()), Polled(s)) => (Stage::Running(s), Pause::Tick),
        (Stage::Running(()), PollFailed) => (Stage::Disconnected { set_up: true }, Pause::Backoff),
        // The server comes back on new data: set up again, from the new clone's position.
        (Stage::SettingUp(()) | Stage::Blocked(()) | Stage::Running(()), RecloneRequested) => {
            (Stage::Disconnected { set_up: false }, Pause::Backoff)
        }
        // Each stage's action yields only its own events; anything else starts over.
        (from, _) => {
            let set_up = matches!(
                from,
                Stage::Running(()) | Stage::Disconnected { set_up: true }
            );
            (Stage::Disconnected { set_up }, Pause::Backoff)
        }
    }
}

/// How often the loop polls: quickly from the moment a session starts running (the sidecar's
/// start, a set-up, a reconnect) until the pod's first ready verdict, at most
/// `SETTLING_AT_MOST`; at the poll interval otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    settling_since: Option<Instant>,
}

impl Cadence {
    /// Settling from `now`, as the sidecar starts.
    pub fn settling(now: Instant) -> Self {
        Cadence {
            settling_since: Some(now),
        }
    }

    /// After a stage's action: `from` is the stage it ran in, `to` the next one, and `ready`
    /// judges the snapshot it published (only while settling: it is no work otherwise).
    pub fn observe<S>(
        &mut self,
        from: &Stage<()>,
        to: &Stage<S>,
        ready: impl FnOnce() -> bool,
        now: Instant,
    ) {
        let starts_running = matches!(to, Stage::Running(_)) && !matches!(from, Stage::Running(()));
        if starts_running {
            self.settling_since = Some(now);
        } else if let Some(since) = self.settling_since
            && (now.saturating_duration_since(since) >= SETTLING_AT_MOST || ready())
        {
            self.settling_since = None;
        }
    }

    /// The pause before the next poll, if it is not the poll interval's ticker.
    pub fn poll_pause(&self, interval: Duration) -> Option<Duration> {
        self.settling_since
            .is_some()
            .then_some(SETTLING_POLL.min(interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: Stage<()> = Stage::Disconnected { set_up: false };

    fn fresh() -> Stage<&'static str> {
        Stage::Disconnected { set_up: false }
    }

    #[test]
    fn a_first_connection_sets_up_then_runs_within_one_poll() {
        assert_eq!(
            advance(FRESH, Event::Connected("s")),
            (Stage::SettingUp("s"), Pause::None)
        );
        assert_eq!(
            advance(Stage::SettingUp(()), Event::SetUp("s")),
            (Stage::Running("s"), Pause::None)
        );
        assert_eq!(
            advance(Stage::Running(()), Event::Polled("s")),
            (Stage::Running("s"), Pause::Tick)
        );
    }

    #[test]
    fn a_lost_session_reconnects_without_setting_up_again() {
        let (stage, pause) = advance::<&str>(Stage::Running(()), Event::PollFailed);
        assert_eq!(
            (stage, pause),
            (Stage::Disconnected { set_up: true }, Pause::Backoff)
        );
        assert_eq!(
            advance(Stage::Disconnected { set_up: true }, Event::Connected("s")),
            (Stage::Running("s"), Pause::None),
            "replication set up once is not set up again: a stopped thread stays stopped"
        );
    }

    #[test]
    fn a_failed_set_up_is_retried_on_a_new_session() {
        assert_eq!(
            advance::<&str>(Stage::SettingUp(()), Event::SetupFailed),
            (fresh(), Pause::Backoff)
        );
        assert_eq!(
            advance(FRESH, Event::Connected("s")),
            (Stage::SettingUp("s"), Pause::None)
        );
    }

    #[test]
    fn blocked_and_refused_are_rechecked_each_poll() {
        assert_eq!(
            advance(Stage::SettingUp(()), Event::SetupBlocked("s")),
            (Stage::Blocked("s"), Pause::Recheck)
        );
        assert_eq!(
            advance(Stage::Blocked(()), Event::SetupBlocked("s")),
            (Stage::Blocked("s"), Pause::Recheck)
        );
        assert_eq!(
            advance(Stage::Blocked(()), Event::SetUp("s")),
            (Stage::Running("s"), Pause::None)
        );
        assert_eq!(
            advance::<&str>(FRESH, Event::Refused),
            (fresh(), Pause::Recheck)
        );
        assert_eq!(
            advance::<&str>(FRESH, Event::Unreachable),
            (fresh(), Pause::Backoff)
        );
    }

    #[test]
    fn a_requested_reclone_sets_up_again_on_the_new_data() {
        for from in [Stage::SettingUp(()), Stage::Blocked(()), Stage::Running(())] {
            assert_eq!(
                advance::<&str>(from, Event::RecloneRequested),
                (fresh(), Pause::Backoff)
            );
        }
        assert_eq!(
            advance(FRESH, Event::Connected("s")),
            (Stage::SettingUp("s"), Pause::None)
        );
    }

    #[test]
    fn an_event_of_another_stage_starts_over() {
        assert_eq!(
            advance(FRESH, Event::Polled("s")),
            (fresh(), Pause::Backoff)
        );
        assert_eq!(
            advance(Stage::Running(()), Event::Connected("s")),
            (Stage::Disconnected { set_up: true }, Pause::Backoff)
        );
    }

    #[test]
    fn polls_quickly_from_a_start_until_the_first_ready_verdict() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(1);
        let mut cadence = Cadence::settling(t0);
        assert_eq!(cadence.poll_pause(interval), Some(SETTLING_POLL));
        cadence.observe(&FRESH, &Stage::SettingUp("s"), || false, t0);
        cadence.observe(&Stage::SettingUp(()), &Stage::Running("s"), || false, t0);
        cadence.observe(&Stage::Running(()), &Stage::Running("s"), || false, t0);
        assert_eq!(cadence.poll_pause(interval), Some(SETTLING_POLL));
        cadence.observe(&Stage::Running(()), &Stage::Running("s"), || true, t0);
        assert_eq!(
            cadence.poll_pause(interval),
            None,
            "ready: the poll interval"
        );
        cadence.observe(&Stage::Running(()), &Stage::Running("s"), || false, t0);
        assert_eq!(
            cadence.poll_pause(interval),
            None,
            "a running pod that turns unready polls at the interval"
        );
    }

    #[test]
    fn a_new_session_settles_again_but_not_forever() {
        let t0 = Instant::now();
        let mut cadence = Cadence::settling(t0);
        cadence.observe(&Stage::Running(()), &Stage::Running("s"), || true, t0);
        cadence.observe::<&str>(
            &Stage::Running(()),
            &Stage::Disconnected { set_up: true },
            || false,
            t0,
        );
        assert_eq!(cadence.poll_pause(Duration::from_secs(1)), None);
        let t1 = t0 + Duration::from_secs(5);
        cadence.observe(
            &Stage::Disconnected { set_up: true },
            &Stage::Running("s"),
            || false,
            t1,
        );
        assert_eq!(
            cadence.poll_pause(Duration::from_secs(1)),
            Some(SETTLING_POLL)
        );
        cadence.observe(
            &Stage::Running(()),
            &Stage::Running("s"),
            || false,
            t1 + SETTLING_AT_MOST,
        );
        assert_eq!(
            cadence.poll_pause(Duration::from_secs(1)),
            None,
            "never ready within SETTLING_AT_MOST: the poll interval"
        );
    }

    #[test]
    fn settling_never_polls_slower_than_the_interval() {
        let cadence = Cadence::settling(Instant::now());
        let fast = Duration::from_millis(50);
        assert_eq!(cadence.poll_pause(fast), Some(fast));
    }
}
