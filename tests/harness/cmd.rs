//! Short helper commands (ip, tc, getent, umount...) run to completion, and log tails.

use std::fs;
use std::path::Path;
use std::process::{Output, Stdio};

use anyhow::{Context, Result, bail};

/// Runs `program args` and returns its stdout; a non-zero exit is an error carrying stderr.
pub async fn run(program: &str, args: &[&str]) -> Result<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    output_text(cmd).await
}

/// Runs `cmd` to completion and returns its stdout; a non-zero exit is an error carrying stderr.
pub async fn output_text(mut cmd: tokio::process::Command) -> Result<String> {
    let description = describe(cmd.as_std());
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running `{description}`"))?;
    checked(&description, output)
}

/// Blocking `run`, for Drop and the stale sweep.
pub fn run_blocking(program: &str, args: &[&str]) -> Result<String> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    let description = describe(&cmd);
    let output = cmd
        .output()
        .with_context(|| format!("running `{description}`"))?;
    checked(&description, output)
}

pub async fn ip(args: &[&str]) -> Result<String> {
    run("ip", args).await
}

fn checked(description: &str, output: Output) -> Result<String> {
    if !output.status.success() {
        bail!(
            "`{description}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn describe(cmd: &std::process::Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `lines` lines of `text`, for error messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A log file's text ("" if missing); lossy, since a crashing process may cut a character in half.
pub fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

pub fn file_tail(path: &Path, lines: usize) -> String {
    tail(&read_lossy(path), lines)
}
