//! mysql-sts-agent: the init container and sidecar of a replicated MariaDB or MySQL
//! StatefulSet.
//!
//! The modules follow a pod's lifecycle: `identity` -> `clone` -> `mycnf` -> `replication`
//! -> `health` and `http`; `cmd` composes them for each container.
#![forbid(unsafe_code)]

pub mod clone;
pub mod cmd;
pub mod config;
pub mod control;
pub mod db;
pub mod dns;
pub mod duration;
pub mod fsutil;
pub mod guard;
pub mod health;
pub mod http;
pub mod identity;
pub mod install;
pub mod logging;
pub mod metrics;
pub mod mycnf;
pub mod names;
pub mod replication;
pub mod secret;
pub mod semisync;
pub mod summary;
pub mod tls;
pub mod tool;
