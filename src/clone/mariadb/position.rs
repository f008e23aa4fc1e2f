//! Where a fresh replica starts: the GTID position recorded in the backup itself.

use crate::db::gtid::{GtidPosition, GtidPositionError as GtidError};

pub const BINLOG_INFO: &str = "xtrabackup_binlog_info";
pub const SLAVE_INFO: &str = "xtrabackup_slave_info";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PositionError {
    #[error("the backup has no {0}, so the replica's start position is unknown")]
    Missing(&'static str),
    #[error("{file} does not hold a GTID position: {content:?}")]
    Unreadable { file: &'static str, content: String },
    #[error(transparent)]
    Gtid(#[from] GtidError),
}

/// From the primary, the backup's own binlog position (`file<TAB>pos<TAB>gtid`) is where a
/// replica starts; from a replica donor, the position it had applied (`--slave-info`).
pub fn start_position(
    donor_is_primary: bool,
    binlog_info: Option<&str>,
    slave_info: Option<&str>,
) -> Result<(GtidPosition, &'static str), PositionError> {
    if donor_is_primary {
        let content = binlog_info.ok_or(PositionError::Missing(BINLOG_INFO))?;
        let mut fields = content.trim_end_matches(['\n', '\r']).split('\t');
        let gtid = match (fields.next(), fields.next(), fields.next()) {
            (Some(_file), Some(_pos), gtid) => gtid.unwrap_or(""),
            _ => {
                return Err(PositionError::Unreadable {
                    file: BINLOG_INFO,
                    content: content.to_owned(),
                });
            }
        };
        Ok((GtidPosition::parse(gtid)?, BINLOG_INFO))
    } else {
        let content = slave_info.ok_or(PositionError::Missing(SLAVE_INFO))?;
        let gtid = content
            .lines()
            .find_map(|line| {
                let rest = line.trim().strip_prefix("SET GLOBAL gtid_slave_pos")?;
                let value = rest.trim_start().strip_prefix('=')?.trim();
                value
                    .trim_end_matches(';')
                    .trim()
                    .strip_prefix('\'')?
                    .strip_suffix('\'')
            })
            .ok_or_else(|| PositionError::Unreadable {
                file: SLAVE_INFO,
                content: content.to_owned(),
            })?;
        Ok((GtidPosition::parse(gtid)?, SLAVE_INFO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_donor_uses_binlog_info() {
        let (pos, file) =
            start_position(true, Some("mysql-bin.000002\t1234\t0-100-42\n"), None).unwrap();
        assert_eq!(pos.to_string(), "0-100-42");
        assert_eq!(file, BINLOG_INFO);
        let (pos, _) = start_position(true, Some("mysql-bin.000001\t328\t\n"), None).unwrap();
        assert!(
            pos.is_empty(),
            "a primary without transactions starts from nothing"
        );
    }

    #[test]
    fn replica_donor_uses_slave_info() {
        let info = "SET GLOBAL gtid_slave_pos = '0-100-42,1-101-3';\n\
                    CHANGE MASTER TO master_use_gtid = slave_pos\n";
        let (pos, file) = start_position(false, Some("ignored\t1\t9-9-9"), Some(info)).unwrap();
        assert_eq!(pos.to_string(), "0-100-42,1-101-3");
        assert_eq!(file, SLAVE_INFO);
    }

    #[test]
    fn missing_or_garbled_files_are_errors() {
        assert_eq!(
            start_position(false, Some("f\t1\t0-1-1"), None),
            Err(PositionError::Missing(SLAVE_INFO))
        );
        assert_eq!(
            start_position(true, None, Some("x")),
            Err(PositionError::Missing(BINLOG_INFO))
        );
        assert!(matches!(
            start_position(true, Some("garbage"), None),
            Err(PositionError::Unreadable { .. })
        ));
        assert!(matches!(
            start_position(
                false,
                None,
                Some("CHANGE MASTER TO master_use_gtid = slave_pos")
            ),
            Err(PositionError::Unreadable { .. })
        ));
        assert!(matches!(
            start_position(true, Some("f\t1\tnot-a-gtid"), None),
            Err(PositionError::Gtid(_))
        ));
    }
}
