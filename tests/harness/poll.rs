//! Waiting for observable conditions with a deadline (never a fixed sleep standing in for readiness).

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

/// What one look at a condition found.
pub enum Check<T> {
    Done(T),
    /// Not yet; the text describes what was seen, for the timeout error.
    Pending(String),
}

/// Calls `check` every `every` until it returns `Done`, an error (returned at once), or
/// `timeout` passes (an error naming `what` and the last `Pending` observation).
pub async fn poll_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Check<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await? {
            Check::Done(value) => return Ok(value),
            Check::Pending(seen) => seen,
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(every).await;
    }
}
