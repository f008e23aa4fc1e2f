//! MariaDB clones: the donor's agent streams `mariadb-backup --stream=xbstream` in frames that
//! end with a byte count and checksum; the joiner extracts and prepares it.

pub mod compression;
pub mod donor;
pub mod frame;
pub mod joiner;
pub mod position;

/// The donor's estimate of the bytes it streams, as a response header of `/clone`: out of band,
/// so the frames are unchanged, and a joiner of a donor without it only has no ETA.
pub const ESTIMATED_BYTES_HEADER: &str = "x-mysql-sts-agent-estimated-bytes";
