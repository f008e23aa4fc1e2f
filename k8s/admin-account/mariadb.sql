-- The agent's admin account on MariaDB 10.11 and later, instead of root (README, "Least
-- privilege"). The image's entrypoint runs this from /docker-entrypoint-initdb.d on the first
-- pod's first start, after it created MARIADB_USER=agent with MARIADB_PASSWORD_FILE; replicas
-- get the account with their clone. Each privilege, and what needs it:
--   REPLICA MONITOR           SHOW SLAVE STATUS; mariadb-backup --slave-info on a replica donor
--   REPLICATION SLAVE ADMIN   STOP/START SLAVE, CHANGE MASTER, SET GLOBAL gtid_slave_pos,
--                             rpl_semi_sync_slave_enabled
--   REPLICATION MASTER ADMIN  rpl_semi_sync_master_*, SET GLOBAL gtid_binlog_state (restore)
--   READ_ONLY ADMIN           SET GLOBAL read_only (restore)
--   RELOAD                    FLUSH SSL, RESET SLAVE ALL, RESET MASTER (restore); mariadb-backup
--   PROCESS                   mariadb-backup
--   BINLOG MONITOR            mariadb-backup (SHOW MASTER STATUS); granted to the replication user
--   SHUTDOWN                  SHUTDOWN before a re-clone
--   CREATE USER, REPLICATION SLAVE, and WITH GRANT OPTION: creating the replication user
GRANT REPLICA MONITOR, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, READ_ONLY ADMIN,
  RELOAD, PROCESS, BINLOG MONITOR, SHUTDOWN, CREATE USER, REPLICATION SLAVE
  ON *.* TO 'agent'@'%' WITH GRANT OPTION;
