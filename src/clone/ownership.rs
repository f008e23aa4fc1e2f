//! Who the files of a clone belong to. The server must own and write them; a volume's root is
//! often root's (provisioners hand them out so, and fsGroup only adds a group), so its owner says
//! nothing about the server's user.
//!
//! An agent that runs as a non-root user runs as the server's user (the pod's runAsUser): its
//! files are already right and it could not give them away anyway. An agent that runs as root
//! (a template without a securityContext) gives them to the server's user: the setting, else the
//! datadir's owner when that is not root, else the `mysql` user of the image's /etc/passwd.

use std::fmt;
use std::str::FromStr;

/// `--server-user`: a user name, or `UID[:GID]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerUser {
    Name(String),
    Id { uid: u32, gid: Option<u32> },
}

impl FromStr for ServerUser {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| part.parse::<u32>().ok();
        if let Some((uid, gid)) = text.split_once(':') {
            return match (number(uid), number(gid)) {
                (Some(uid), Some(gid)) => Ok(ServerUser::Id {
                    uid,
                    gid: Some(gid),
                }),
                _ => Err(format!("{text:?} is neither a user name nor UID[:GID]")),
            };
        }
        if let Some(uid) = number(text) {
            return Ok(ServerUser::Id { uid, gid: None });
        }
        let name_ok = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if name_ok {
            Ok(ServerUser::Name(text.to_owned()))
        } else {
            Err(format!("{text:?} is neither a user name nor UID[:GID]"))
        }
    }
}

/// A user as the system knows it: ids, and the name mysqld's `--user` takes when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub name: Option<String>,
}

impl Account {
    /// What `mysqld --user=` takes: the name, else the uid.
    pub fn user_arg(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.uid.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerSource {
    Setting,
    DataDirOwner,
    PasswdMysql,
}

impl fmt::Display for OwnerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OwnerSource::Setting => "the --server-user setting",
            OwnerSource::DataDirOwner => "the datadir's owner",
            OwnerSource::PasswdMysql => "the mysql user of /etc/passwd",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// The agent is not root: the files it writes are the server's user's already.
    Keep { uid: u32 },
    /// The agent is root: every file of the clone (and the datadir itself) goes to `account`.
    GiveTo {
        account: Account,
        source: OwnerSource,
    },
}

impl Ownership {
    pub fn chown_to(&self) -> Option<(u32, u32)> {
        match self {
            Ownership::Keep { .. } => None,
            Ownership::GiveTo { account, .. } => Some((account.uid, account.gid)),
        }
    }

    /// The user a temporary server must switch to: only root needs to say.
    pub fn server_user_arg(&self) -> Option<String> {
        match self {
            Ownership::Keep { .. } => None,
            Ownership::GiveTo { account, .. } => Some(account.user_arg()),
        }
    }
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ownership::Keep { uid } => write!(
                f,
                "the agent runs as uid {uid}, the server's user: the clone's files stay as written"
            ),
            Ownership::GiveTo { account, source } => write!(
                f,
                "the agent runs as root: the clone's files go to {}:{}{} ({source})",
                account.uid,
                account.gid,
                account
                    .name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OwnershipError {
    #[error("--server-user {0}: no such user in /etc/passwd")]
    UnknownUser(String),
    #[error(
        "the agent runs as root and cannot tell which user the server runs as: the datadir \
         belongs to root and /etc/passwd has no mysql user; set --server-user \
         (MYSQL_STS_SERVER_USER), or run the pod as the server's user (securityContext.runAsUser)"
    )]
    NoServerUser,
}

/// What the system says, gathered by `observe` (or given by tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub agent_uid: u32,
    /// The setting, resolved against /etc/passwd.
    pub configured: Option<Result<Account, String>>,
    /// uid, gid of the datadir itself.
    pub datadir_owner: (u32, u32),
    pub passwd_mysql: Option<Account>,
}

pub fn decide(facts: Facts) -> Result<Ownership, OwnershipError> {
    if facts.agent_uid != 0 {
        return Ok(Ownership::Keep {
            uid: facts.agent_uid,
        });
    }
    let give = |account, source| Ownership::GiveTo { account, source };
    match facts.configured {
        Some(Ok(account)) => return Ok(give(account, OwnerSource::Setting)),
        Some(Err(name)) => return Err(OwnershipError::UnknownUser(name)),
        None => {}
    }
    let (uid, gid) = facts.datadir_owner;
    if uid != 0 {
        let account = Account {
            uid,
            gid,
            name: None,
        };
        return Ok(give(account, OwnerSource::DataDirOwner));
    }
    facts
        .passwd_mysql
        .map(|account| give(account, OwnerSource::PasswdMysql))
        .ok_or(OwnershipError::NoServerUser)
}

/// Reads the facts `decide` needs from this process, the datadir and /etc/passwd.
pub fn observe(
    datadir: &std::path::Path,
    configured: Option<&ServerUser>,
) -> std::io::Result<Facts> {
    use nix::unistd::{Uid, User};
    use std::os::unix::fs::MetadataExt;
    let account = |user: User| Account {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        name: Some(user.name),
    };
    let lookup = |result: nix::Result<Option<User>>| result.map_err(std::io::Error::from);
    let configured = match configured {
        None => None,
        Some(ServerUser::Name(name)) => Some(
            lookup(User::from_name(name))?
                .map(account)
                .ok_or_else(|| name.clone()),
        ),
        Some(ServerUser::Id { uid, gid }) => {
            let known = lookup(User::from_uid(Uid::from_raw(*uid)))?;
            let gid = gid
                .or(known.as_ref().map(|user| user.gid.as_raw()))
                .unwrap_or(*uid);
            Some(Ok(Account {
                uid: *uid,
                gid,
                name: known.map(|user| user.name),
            }))
        }
    };
    let meta = std::fs::metadata(datadir)?;
    Ok(Facts {
        agent_uid: Uid::effective().as_raw(),
        configured,
        datadir_owner: (meta.uid(), meta.gid()),
        passwd_mysql: lookup(User::from_name("mysql"))?.map(account),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mysql() -> Account {
        Account {
            uid: 999,
            gid: 999,
            name: Some("mysql".into()),
        }
    }

    fn facts(agent_uid: u32, datadir_owner: (u32, u32)) -> Facts {
        Facts {
            agent_uid,
            configured: None,
            datadir_owner,
            passwd_mysql: Some(mysql()),
        }
    }

    #[test]
    fn a_non_root_agent_keeps_its_files_whoever_owns_the_volume() {
        // A provisioner's volume: root-owned, group fsGroup, 2775.
        assert_eq!(
            decide(facts(999, (0, 999))),
            Ok(Ownership::Keep { uid: 999 })
        );
        let mut with_setting = facts(1000, (0, 0));
        with_setting.configured = Some(Ok(mysql()));
        assert_eq!(decide(with_setting), Ok(Ownership::Keep { uid: 1000 }));
    }

    #[test]
    fn a_root_agent_never_hands_the_files_to_root_by_default() {
        assert_eq!(
            decide(facts(0, (0, 0))),
            Ok(Ownership::GiveTo {
                account: mysql(),
                source: OwnerSource::PasswdMysql
            })
        );
        let mut no_mysql = facts(0, (0, 999));
        no_mysql.passwd_mysql = None;
        assert_eq!(decide(no_mysql), Err(OwnershipError::NoServerUser));
    }

    #[test]
    fn a_root_agent_follows_the_setting_then_the_datadirs_owner() {
        let owned = facts(0, (27, 27));
        let Ok(Ownership::GiveTo { account, source }) = decide(owned.clone()) else {
            panic!("root gives the files away")
        };
        assert_eq!(
            (account.uid, account.gid, source),
            (27, 27, OwnerSource::DataDirOwner)
        );
        assert_eq!(account.user_arg(), "27");
        let mut configured = owned.clone();
        configured.configured = Some(Ok(mysql()));
        assert_eq!(
            decide(configured).unwrap().chown_to(),
            Some((999, 999)),
            "the setting wins"
        );
        let mut unknown = owned;
        unknown.configured = Some(Err("maria".into()));
        assert_eq!(
            decide(unknown),
            Err(OwnershipError::UnknownUser("maria".into()))
        );
    }

    #[test]
    fn server_user_setting_forms() {
        assert_eq!("mysql".parse(), Ok(ServerUser::Name("mysql".into())));
        assert_eq!(
            "999".parse(),
            Ok(ServerUser::Id {
                uid: 999,
                gid: None
            })
        );
        assert_eq!(
            "999:1000".parse(),
            Ok(ServerUser::Id {
                uid: 999,
                gid: Some(1000)
            })
        );
        for bad in ["", "999:", ":1", "my sql", "a\nb", "x:y"] {
            assert!(bad.parse::<ServerUser>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_decision_reads_as_a_log_line() {
        let given = Ownership::GiveTo {
            account: mysql(),
            source: OwnerSource::PasswdMysql,
        };
        assert_eq!(
            given.to_string(),
            "the agent runs as root: the clone's files go to 999:999 (mysql) (the mysql user of /etc/passwd)"
        );
        assert_eq!(given.server_user_arg().as_deref(), Some("mysql"));
        assert_eq!(Ownership::Keep { uid: 999 }.server_user_arg(), None);
    }
}
