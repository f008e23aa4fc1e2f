//! Where a fresh replica starts: the GTID position recorded in the backup itself.

use crate::db::gtid::{GtidPosition, GtidPositionError as GtidError};

/// A position file by the names mariadb-backup gives it: 11.x's first, then 10.x's.
pub type InfoNames = [&'static str; 2];
pub const BINLOG_INFO: InfoNames = ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"];
pub const SLAVE_INFO: InfoNames = ["mariadb_backup_slave_info", "xtrabackup_slave_info"];

/// One position file as found in the backup: its name and content.
pub type InfoFile<'a> = (&'static str, &'a str);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PositionError {
    #[error(
        "the backup has no {} (nor {}), so the replica's start position is unknown",
        .0[0],
        .0[1]
    )]
    Missing(InfoNames),
    #[error("{file} does not hold a GTID position: {content:?}")]
    Unreadable { file: &'static str, content: String },
    #[error(transparent)]
    Gtid(#[from] GtidError),
}

/// From the primary, the backup's own binlog position (`file<TAB>pos<TAB>gtid`) is where a
/// replica starts; from a replica donor, the position it had applied (`--slave-info`).
pub fn start_position(
    donor_is_primary: bool,
    binlog_info: Option<InfoFile>,
    slave_info: Option<InfoFile>,
) -> Result<(GtidPosition, &'static str), PositionError> {
    if donor_is_primary {
        let (file, content) = binlog_info.ok_or(PositionError::Missing(BINLOG_INFO))?;
        let mut fields = content.trim_end_matches(['\n', '\r']).split('\t');
        let gtid = match (fields.next(), fields.next(), fields.next()) {
            (Some(_file), Some(_pos), gtid) => gtid.unwrap_or(""),
            _ => {
                return Err(PositionError::Unreadable {
                    file,
                    content: content.to_owned(),
                });
            }
        };
        Ok((GtidPosition::parse(gtid)?, file))
    } else {
        let (file, content) = slave_info.ok_or(PositionError::Missing(SLAVE_INFO))?;
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
                file,
                content: content.to_owned(),
            })?;
        Ok((GtidPosition::parse(gtid)?, file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINLOG_11: &str = BINLOG_INFO[0];
    const BINLOG_10: &str = BINLOG_INFO[1];
    const SLAVE_10: &str = SLAVE_INFO[1];

    #[test]
    fn primary_donor_uses_binlog_info() {
        let (pos, file) = start_position(
            true,
            Some((BINLOG_10, "mysql-bin.000002\t1234\t0-100-42\n")),
            None,
        )
        .unwrap();
        assert_eq!(pos.to_string(), "0-100-42");
        assert_eq!(file, "xtrabackup_binlog_info");
        let (pos, file) =
            start_position(true, Some((BINLOG_11, "mysql-bin.000001\t328\t\n")), None).unwrap();
        assert_eq!(file, "mariadb_backup_binlog_info");
        assert!(
            pos.is_empty(),
            "a primary without transactions starts from nothing"
        );
    }

    #[test]
    fn replica_donor_uses_slave_info() {
        let info = "SET GLOBAL gtid_slave_pos = '0-100-42,1-101-3';\n\
                    CHANGE MASTER TO master_use_gtid = slave_pos\n";
        let (pos, file) = start_position(
            false,
            Some((BINLOG_10, "ignored\t1\t9-9-9")),
            Some((SLAVE_INFO[0], info)),
        )
        .unwrap();
        assert_eq!(pos.to_string(), "0-100-42,1-101-3");
        assert_eq!(file, "mariadb_backup_slave_info");
    }

    #[test]
    fn missing_or_garbled_files_are_errors() {
        assert_eq!(
            start_position(false, Some((BINLOG_10, "f\t1\t0-1-1")), None),
            Err(PositionError::Missing(SLAVE_INFO))
        );
        let missing = start_position(true, None, Some((SLAVE_10, "x"))).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "the backup has no mariadb_backup_binlog_info (nor xtrabackup_binlog_info), so the \
             replica's start position is unknown"
        );
        assert_eq!(
            start_position(true, Some((BINLOG_10, "garbage")), None),
            Err(PositionError::Unreadable {
                file: "xtrabackup_binlog_info",
                content: "garbage".into()
            })
        );
        assert!(matches!(
            start_position(
                false,
                None,
                Some((SLAVE_10, "CHANGE MASTER TO master_use_gtid = slave_pos"))
            ),
            Err(PositionError::Unreadable { .. })
        ));
        assert!(matches!(
            start_position(true, Some((BINLOG_11, "f\t1\tnot-a-gtid")), None),
            Err(PositionError::Gtid(_))
        ));
    }
}
