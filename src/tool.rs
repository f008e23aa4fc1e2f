//! Running the database's own tools (mariadb-backup, mbstream): their stderr goes to debug
//! logs, and its last lines into the error when they fail.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use nix::fcntl::{FcntlArg, fcntl};
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

/// What a pipe to or from a tool holds, rather than the kernel's 64 KiB: a clone streams
/// hundreds of MB/s through it, and each read or write of at most 64 KiB wakes both sides up.
/// 1 MiB is the most an unprivileged process may ask for (`/proc/sys/fs/pipe-max-size`).
const PIPE_BYTES: i32 = 1 << 20;

/// Enlarges the pipe to or from `tool`; where the kernel refuses, its default stays.
pub fn enlarge_pipe(pipe: impl AsFd, tool: &str) {
    if let Err(e) = fcntl(pipe, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES)) {
        tracing::debug!("the pipe to or from {tool} keeps the kernel's default size: {e}");
    }
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

/// Reads a tool's output to the end, logging it at debug level; yields its last lines. Bytes
/// that are not UTF-8 are shown replaced: stopping at them would close the pipe and kill the
/// tool with SIGPIPE.
fn tail(output: impl AsyncRead + Unpin + Send + 'static, tool: String) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut output = BufReader::new(output);
        let mut last = VecDeque::with_capacity(TAIL_LINES);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match output.read_until(b'\n', &mut raw).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(tool = %tool, "reading its output: {e}");
                    break;
                }
            }
            let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
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
    /// Called once; the tool stays here, already reaped, so that `stop` after it is harmless.
    pub async fn finish(&mut self) -> Result<(), ToolError> {
        let status = self.child.wait().await.map_err(|source| ToolError::Wait {
            tool: self.name.clone(),
            source,
        })?;
        let tail = (&mut self.stderr).await.unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(ToolError::Failed {
                tool: self.name.clone(),
                status,
                tail,
            })
        }
    }

    /// Kills the tool and waits until it is gone. Dropping it only sends SIGKILL: a tool still
    /// dying could write into a directory its caller is already removing.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = command(Path::new("/bin/sh"));
        cmd.args(["-c", script]);
        cmd
    }

    #[tokio::test]
    async fn output_that_is_not_utf8_neither_stops_the_reader_nor_kills_the_tool() {
        // 200 kB after the bad byte: more than a pipe holds, so an early reader exit is SIGPIPE.
        let noisy = sh("printf 'ok\\n\\377\\376 bad\\n' >&2; \
                        head -c 200000 /dev/zero | tr '\\0' x >&2; echo >&2; echo last >&2");
        spawn(noisy, Path::new("noisy"))
            .unwrap()
            .finish()
            .await
            .unwrap();
        let failing = sh("printf '\\377 broken\\nthe end\\n' >&2; exit 3");
        let mut failing = spawn(failing, Path::new("failing")).unwrap();
        let Err(ToolError::Failed { tail, .. }) = failing.finish().await else {
            panic!("exit 3 is a failure")
        };
        assert_eq!(tail, "\u{fffd} broken | the end");
    }

    #[tokio::test]
    async fn a_pipe_to_a_tool_is_enlarged_to_a_mebibyte() {
        let mut cat = sh("cat >/dev/null");
        cat.stdin(Stdio::piped());
        let mut cat = spawn(cat, Path::new("cat")).unwrap();
        let stdin = cat.child.stdin.take().unwrap();
        enlarge_pipe(&stdin, "cat");
        assert_eq!(fcntl(&stdin, FcntlArg::F_GETPIPE_SZ).unwrap(), PIPE_BYTES);
        drop(stdin);
        cat.finish().await.unwrap();
    }

    #[tokio::test]
    async fn a_stopped_tool_is_gone_when_stop_returns() {
        let mut sleep = command(Path::new("sleep"));
        sleep.arg("600");
        let running = spawn(sleep, Path::new("sleep")).unwrap();
        let pid = running.child.id().expect("running");
        running.stop().await;
        // Reaped, not a zombie: its /proc entry is gone.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
