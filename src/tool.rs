//! Running the database's own tools (mariadb-backup, mbstream): their stderr goes to debug
//! logs, and its last lines into the error when they fail.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::task::JoinHandle;

const TAIL_LINES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {tool}: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("{tool} failed ({status}): {tail}")]
    Failed {
        tool: String,
        status: ExitStatus,
        tail: String,
    },
    #[error("waiting for {tool}: {source}")]
    Wait {
        tool: String,
        source: std::io::Error,
    },
}

/// A command for a tool, with stdin closed and output captured; it dies with its handle.
pub fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

pub fn name(program: &Path) -> String {
    program.file_name().map_or_else(
        || program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Reads a tool's output to the end, logging it at debug level; yields its last lines.
pub fn tail(output: impl AsyncRead + Unpin + Send + 'static, tool: String) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        let mut last = VecDeque::with_capacity(TAIL_LINES);
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(tool = %tool, "{line}");
            if last.len() == TAIL_LINES {
                last.pop_front();
            }
            last.push_back(line);
        }
        Vec::from(last).join(" | ")
    })
}

/// Waits for a child whose stderr is being read by `tail`, and turns failure into an error.
pub async fn finish(
    child: &mut tokio::process::Child,
    tail: JoinHandle<String>,
    tool: &str,
) -> Result<(), ToolError> {
    let status = child.wait().await.map_err(|source| ToolError::Wait {
        tool: tool.to_owned(),
        source,
    })?;
    let tail = tail.await.unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(ToolError::Failed {
            tool: tool.to_owned(),
            status,
            tail,
        })
    }
}

/// Runs a tool to completion.
pub async fn run(mut cmd: Command, program: &Path) -> Result<(), ToolError> {
    let tool = name(program);
    let mut child = cmd.spawn().map_err(|source| ToolError::Spawn {
        tool: tool.clone(),
        source,
    })?;
    let stderr = tail(child.stderr.take().expect("stderr is piped"), tool.clone());
    finish(&mut child, stderr, &tool).await
}
