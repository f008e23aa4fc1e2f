//! Which server the agent talks to, and which SQL words that server speaks.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
pub enum Flavor {
    #[value(name = "mariadb")]
    #[serde(rename = "mariadb")]
    MariaDb,
    #[value(name = "mysql")]
    #[serde(rename = "mysql")]
    MySql,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::MariaDb => "MariaDB",
            Flavor::MySql => "MySQL",
        })
    }
}

/// A server as it describes itself (`VERSION()`, `@@version_comment`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerVersion {
    pub flavor: Flavor,
    /// major, minor, patch
    #[serde(skip)]
    pub number: (u32, u32, u32),
    /// `VERSION()` as the server gave it.
    pub text: String,
}

/// The SQL words a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MariaDB: CHANGE MASTER ... MASTER_USE_GTID, SHOW SLAVE STATUS, gtid_slave_pos.
    MariaDb,
    /// MySQL 8.0.17 to 8.0.22: CHANGE MASTER ... MASTER_AUTO_POSITION, SHOW SLAVE STATUS.
    MySqlMaster,
    /// MySQL 8.0.23 and later: CHANGE REPLICATION SOURCE, SHOW REPLICA STATUS.
    MySqlSource,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("cannot read a version number from VERSION() = {0:?}")]
    Unreadable(String),
    #[error("{0} is not supported: the agent needs MySQL 8.0.17 or later (the CLONE plugin)")]
    TooOldMySql(String),
}

impl ServerVersion {
    pub fn detect(version: &str, comment: &str) -> Result<Self, VersionError> {
        let is_mariadb = [version, comment]
            .iter()
            .any(|t| t.to_ascii_lowercase().contains("mariadb"));
        let mut numbers = version
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().ok());
        let mut next = || numbers.next().flatten();
        let (Some(major), Some(minor), Some(patch)) = (next(), next(), next()) else {
            return Err(VersionError::Unreadable(version.to_owned()));
        };
        Ok(ServerVersion {
            flavor: if is_mariadb {
                Flavor::MariaDb
            } else {
                Flavor::MySql
            },
            number: (major, minor, patch),
            text: version.to_owned(),
        })
    }

    pub fn dialect(&self) -> Result<Dialect, VersionError> {
        match self.flavor {
            Flavor::MariaDb => Ok(Dialect::MariaDb),
            Flavor::MySql if self.number < (8, 0, 17) => {
                Err(VersionError::TooOldMySql(self.to_string()))
            }
            Flavor::MySql if self.number < (8, 0, 23) => Ok(Dialect::MySqlMaster),
            Flavor::MySql => Ok(Dialect::MySqlSource),
        }
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.flavor, self.text)
    }
}

impl Dialect {
    pub fn flavor(self) -> Flavor {
        match self {
            Dialect::MariaDb => Flavor::MariaDb,
            Dialect::MySqlMaster | Dialect::MySqlSource => Flavor::MySql,
        }
    }

    /// How the logs name the dialect.
    pub fn describe(self) -> &'static str {
        match self {
            Dialect::MariaDb => "MariaDB: CHANGE MASTER with MASTER_USE_GTID=slave_pos",
            Dialect::MySqlMaster => {
                "MySQL 8.0.17-8.0.22: CHANGE MASTER with MASTER_AUTO_POSITION=1"
            }
            Dialect::MySqlSource => {
                "MySQL 8.0.23+: CHANGE REPLICATION SOURCE with SOURCE_AUTO_POSITION=1"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect(version: &str, comment: &str) -> Result<Dialect, VersionError> {
        ServerVersion::detect(version, comment)?.dialect()
    }

    #[test]
    fn detects_flavor_and_version_band() {
        let mariadb = ServerVersion::detect("10.11.14-MariaDB-0+deb12u2", "Debian 12").unwrap();
        assert_eq!(
            (mariadb.flavor, mariadb.number),
            (Flavor::MariaDb, (10, 11, 14))
        );
        assert_eq!(dialect("11.4.2-MariaDB", ""), Ok(Dialect::MariaDb));
        assert_eq!(
            dialect("9.7.4-2", "(Debian)"),
            Ok(Dialect::MySqlSource),
            "Debian's MySQL names no flavor in its version"
        );
        assert_eq!(
            dialect("8.4.3", "MySQL Community Server - GPL"),
            Ok(Dialect::MySqlSource)
        );
        assert_eq!(dialect("8.0.23", ""), Ok(Dialect::MySqlSource));
        assert_eq!(dialect("8.0.22", ""), Ok(Dialect::MySqlMaster));
        assert_eq!(dialect("8.0.17-log", ""), Ok(Dialect::MySqlMaster));
        assert!(matches!(
            dialect("8.0.16", ""),
            Err(VersionError::TooOldMySql(_))
        ));
        assert!(matches!(
            dialect("5.7.44", ""),
            Err(VersionError::TooOldMySql(_))
        ));
        assert!(matches!(
            ServerVersion::detect("unknown", ""),
            Err(VersionError::Unreadable(_))
        ));
    }
}
