-- The agent's admin account instead of root (README, "Least privilege"). The image's entrypoint
-- runs this file from /docker-entrypoint-initdb.d on the first pod's first start, after creating
-- MYSQL_USER=agent with the password in MYSQL_PASSWORD_FILE; replicas get the account with
-- their clone. It grants what the agent runs and no more, in the server's own words. What needs
-- each privilege:
--   MariaDB 10.11+                MySQL 8.0.17+
--   REPLICA MONITOR               REPLICATION CLIENT       SHOW SLAVE/REPLICA STATUS; MariaDB:
--                                                          mariadb-backup --slave-info
--   REPLICATION SLAVE ADMIN       REPLICATION_SLAVE_ADMIN  STOP/START, CHANGE MASTER/SOURCE,
--                                                          MariaDB: SET GLOBAL gtid_slave_pos
--   REPLICATION MASTER ADMIN      SYSTEM_VARIABLES_ADMIN   SET GLOBAL rpl_semi_sync_*; MariaDB:
--                                                          gtid_binlog_state (a restore)
--   READ_ONLY ADMIN               SYSTEM_VARIABLES_ADMIN   SET GLOBAL read_only (a restore)
--   RELOAD                        RELOAD                   RESET SLAVE/REPLICA ALL, MariaDB:
--                                                          RESET MASTER (a restore), FLUSH SSL,
--                                                          mariadb-backup
--   -                             CONNECTION_ADMIN         ALTER INSTANCE RELOAD TLS
--   PROCESS, BINLOG MONITOR       -                        mariadb-backup
--   SHUTDOWN                      SHUTDOWN                 SHUTDOWN before a re-clone
--   CREATE USER, WITH GRANT OPTION and what the agent grants (REPLICATION SLAVE; MariaDB
--   BINLOG MONITOR, MySQL BACKUP_ADMIN): creating the replication and clone users.
SET @agent_grants = IF(VERSION() LIKE '%MariaDB%',
  'GRANT REPLICA MONITOR, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, READ_ONLY ADMIN,
     RELOAD, PROCESS, BINLOG MONITOR, SHUTDOWN, CREATE USER, REPLICATION SLAVE
     ON *.* TO ''agent''@''%'' WITH GRANT OPTION',
  'GRANT REPLICATION CLIENT, REPLICATION_SLAVE_ADMIN, SYSTEM_VARIABLES_ADMIN, RELOAD,
     CONNECTION_ADMIN, SHUTDOWN, CREATE USER, REPLICATION SLAVE, BACKUP_ADMIN
     ON *.* TO ''agent''@''%'' WITH GRANT OPTION');
PREPARE agent_grants FROM @agent_grants;
EXECUTE agent_grants;
DEALLOCATE PREPARE agent_grants;
