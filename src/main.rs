#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use mysql_sts_agent::cmd;
use mysql_sts_agent::config::{self, Cli, Validated};
use mysql_sts_agent::install;
use tokio_util::sync::CancellationToken;

/// EX_USAGE: bad flags, env or hostname.
const EXIT_BAD_CONFIG: u8 = 64;
/// As shells say when a command cannot be run.
const EXIT_CANNOT_EXEC: u8 = 126;

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let cli = match parsed {
        Ok((cli, matches)) => {
            if let Err(e) = config::refuse_secrets_in_argv(&matches) {
                eprintln!("mysql-sts-agent: error: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            cli
        }
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
    let (check_only, log_format) = (cli.check, cli.common.log_format);
    let config = match cli.validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mysql-sts-agent: error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    // Every JSON line names the pod: known once the configuration is.
    mysql_sts_agent::logging::init(log_format, config.identity());
    if check_only {
        println!(
            "mysql-sts-agent: configuration is valid: {}",
            config.describe()
        );
        return ExitCode::SUCCESS;
    }
    match config {
        Validated::Install { dir } => match install::install(&dir) {
            Ok(installed) => {
                cmd::log_installed(&installed);
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("install failed: {e}");
                ExitCode::FAILURE
            }
        },
        Validated::Init(cfg) => {
            with_runtime(async |shutdown| match cmd::init::run(cfg, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("init failed: {e}");
                    ExitCode::from(e.exit_code())
                }
            })
        }
        Validated::Exec(cfg, entrypoint) => {
            let prepared =
                with_runtime(async |shutdown| match cmd::exec::run(cfg, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("exec: the data is not ready for the server: {e}");
                        ExitCode::from(e.exit_code())
                    }
                });
            if prepared != ExitCode::SUCCESS {
                return prepared;
            }
            let error = cmd::exec::replace_process(&entrypoint);
            tracing::error!("exec: cannot run {:?}: {error}", entrypoint.first());
            ExitCode::from(EXIT_CANNOT_EXEC)
        }
        Validated::Status(cfg) => with_runtime(async |_| match cmd::status::run(&cfg).await {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mysql-sts-agent: {e}");
                ExitCode::FAILURE
            }
        }),
        Validated::Sidecar(cfg) => {
            with_runtime(
                async |shutdown| match cmd::sidecar::run(cfg, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("sidecar failed: {e:#}");
                        ExitCode::FAILURE
                    }
                },
            )
        }
    }
}

/// Runs a subcommand on a tokio runtime, with SIGTERM and SIGINT cancelling `shutdown`.
fn with_runtime(subcommand: impl AsyncFnOnce(CancellationToken) -> ExitCode) -> ExitCode {
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
        subcommand(shutdown).await
    })
}
