//! MariaDB clones: the donor's agent streams `mariadb-backup --stream=xbstream` in frames that
//! end with a byte count and checksum; the joiner extracts and prepares it.

pub mod donor;
pub mod frame;
pub mod joiner;
pub mod position;
