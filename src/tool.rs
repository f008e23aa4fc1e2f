//! Running the database's own tools (mariadb-backup, mbstream): their stderr goes to debug
//! logs, and its last lines into the error when they fail.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
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

fn name(program: &Path) -> String {
    program.file_name().map_or_else(
        || program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Reads a tool's output to the end, logging it at debug level; yields its last lines.
fn tail(output: impl AsyncRead + Unpin + Send + 'static, tool: String) -> JoinHandle<String> {
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

/// A started tool whose stderr is being read; its other pipes are the caller's.
pub struct Running {
    pub child: Child,
    name: String,
    stderr: JoinHandle<String>,
}

pub fn spawn(mut cmd: Command, program: &Path) -> Result<Running, ToolError> {
    let name = name(program);
    let mut child = cmd.spawn().map_err(|source| ToolError::Spawn {
        tool: name.clone(),
        source,
    })?;
    let stderr = tail(child.stderr.take().expect("stderr is piped"), name.clone());
    Ok(Running {
        child,
        name,
        stderr,
    })
}

impl Running {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the tool to exit and turns failure into an error carrying its last words.
    pub async fn finish(mut self) -> Result<(), ToolError> {
        let status = self.child.wait().await.map_err(|source| ToolError::Wait {
            tool: self.name.clone(),
            source,
        })?;
        let tail = self.stderr.await.unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(ToolError::Failed {
                tool: self.name,
                status,
                tail,
            })
        }
    }
}

/// Runs a tool to completion.
pub async fn run(cmd: Command, program: &Path) -> Result<(), ToolError> {
    spawn(cmd, program)?.finish().await
}
