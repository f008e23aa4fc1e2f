//! `mysql-sts-agent status`: the pod's state for a person. It asks the sidecar beside it
//! (`/status` on 127.0.0.1); while none answers (an init container clones before the sidecar
//! starts), it reads the clone's progress file. The text is `summary`'s; this is the I/O.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::StatusCode;

use crate::clone::agent;
use crate::clone::datadir::DataDir;
use crate::clone::now_unix;
use crate::config::StatusConfig;
use crate::summary::{self, StatusReport};

const LOCAL_AGENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// `/status` is a few kilobytes; more is not the agent answering.
const MAX_STATUS: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot tell this pod's state: no agent answers on {address} ({agent}), and {progress}; an \
     init container waiting for its donor says why in its log"
)]
pub struct Unknown {
    address: String,
    agent: String,
    progress: String,
}

/// What to print: the summary, or with `--json` what was read.
pub async fn run(cfg: &StatusConfig) -> Result<String, Unknown> {
    let agent = match ask_agent(cfg.agent_port).await {
        Ok((body, _)) if cfg.json => return Ok(body),
        Ok((_, report)) => return Ok(summary::render(&report, now_unix())),
        Err(reason) => reason,
    };
    let datadir = DataDir::new(&cfg.datadir);
    let unknown = |progress: String| Unknown {
        address: format!("{LOCAL_AGENT}:{}", cfg.agent_port),
        agent: agent.clone(),
        progress,
    };
    match datadir.read_progress() {
        Ok(Some(progress)) if cfg.json => {
            let wrapped = serde_json::json!({ "clone_progress": progress });
            Ok(serde_json::to_string_pretty(&wrapped).unwrap_or_default())
        }
        Ok(Some(progress)) => Ok(summary::render_progress(&progress, now_unix())),
        Ok(None) => Err(unknown(format!(
            "no clone is in progress in {} (no {})",
            cfg.datadir.display(),
            datadir.progress_file().display()
        ))),
        Err(e) => Err(unknown(format!(
            "the clone's progress file is unreadable: {e}"
        ))),
    }
}

/// The local agent's `/status`, as it came and as read; or why there is none.
async fn ask_agent(port: u16) -> Result<(String, StatusReport), String> {
    let host = LOCAL_AGENT.to_string();
    let agent_port = agent::PeerClient::plain(port);
    let response = agent::get(
        &host,
        LOCAL_AGENT,
        &agent_port,
        "/status",
        None,
        None,
        ASK_TIMEOUT,
    )
    .await
    .map_err(|attempt| attempt.reason())?;
    if response.status() != StatusCode::OK {
        return Err(agent::answer(response).await);
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_STATUS)
        .collect()
        .await
        .map_err(|e| format!("reading /status: {e}"))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    let report = serde_json::from_str(&body).map_err(|e| format!("/status is not JSON: {e}"))?;
    Ok((body, report))
}
