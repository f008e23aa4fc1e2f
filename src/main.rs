#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mysql_sts_agent::cmd;
use mysql_sts_agent::config::{Cli, Validated};
use tokio_util::sync::CancellationToken;

/// EX_USAGE: bad flags, env or hostname.
const EXIT_BAD_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            eprintln!(
                "mysql-sts-agent: {}",
                rendered.lines().next().unwrap_or("bad arguments")
            );
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    mysql_sts_agent::logging::init(cli.common.log_format);
    let config = match cli.validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mysql-sts-agent: error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mysql-sts-agent: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        if let Err(e) = cmd::cancel_on_signals(shutdown.clone()) {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
        match config {
            Validated::Init(cfg) => match cmd::init::run(cfg, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("init failed: {e}");
                    ExitCode::from(e.exit_code())
                }
            },
            Validated::Sidecar(cfg) => match cmd::sidecar::run(cfg, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("sidecar failed: {e:#}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}
