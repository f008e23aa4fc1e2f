-- The agent's admin account on MySQL 8.0.17 and later, instead of root (README, "Least
-- privilege"). The image's entrypoint runs this from /docker-entrypoint-initdb.d on the first
-- pod's first start, after it created MYSQL_USER=agent with MYSQL_PASSWORD_FILE; replicas get
-- the account with their clone. Each privilege, and what needs it:
--   REPLICATION CLIENT       SHOW REPLICA STATUS
--   REPLICATION_SLAVE_ADMIN  STOP/START REPLICA, CHANGE REPLICATION SOURCE
--   SYSTEM_VARIABLES_ADMIN   SET GLOBAL read_only, super_read_only (restore), rpl_semi_sync_*
--   RELOAD                   RESET REPLICA ALL (restore)
--   CONNECTION_ADMIN         ALTER INSTANCE RELOAD TLS
--   SHUTDOWN                 SHUTDOWN before a re-clone
--   CREATE USER, REPLICATION SLAVE, BACKUP_ADMIN, and WITH GRANT OPTION: creating the
--                            replication and clone users
GRANT REPLICATION CLIENT, REPLICATION_SLAVE_ADMIN, SYSTEM_VARIABLES_ADMIN, RELOAD,
  CONNECTION_ADMIN, SHUTDOWN, CREATE USER, REPLICATION SLAVE, BACKUP_ADMIN
  ON *.* TO 'agent'@'%' WITH GRANT OPTION;
