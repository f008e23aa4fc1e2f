//! Cloning ordinal-1's data into an empty datadir: the donor streams a backup, the joiner
//! checks, extracts, prepares and installs it.

pub mod datadir;
pub mod donor;
pub mod frame;
pub mod joiner;
pub mod position;

/// MiB/s for log lines.
pub fn rate_mib_s(bytes: u64, elapsed: std::time::Duration) -> f64 {
    let secs = elapsed.as_secs_f64().max(1e-3);
    (bytes as f64 / (1024.0 * 1024.0) / secs * 10.0).round() / 10.0
}

pub fn mib(bytes: u64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}
