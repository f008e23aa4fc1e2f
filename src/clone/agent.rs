//! Asking a donor's agent over HTTP: the MariaDB clone stream, and whether a pod is a healthy
//! donor (`/donor`), which a MySQL joiner asks before its CLONE plugin talks to the server.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::clone::datadir::Promotion;
use crate::clone::{Attempt, error_chain};
use crate::secret::Secret;

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `path` as a joiner asks it: a first ordinal restoring its lost volume says so, since the
/// donor cannot be in sync with the primary that is gone.
pub(crate) fn donor_path(path: &str, promotion: Promotion) -> String {
    if promotion.holds_writes() {
        format!("{path}?for=restore")
    } else {
        path.to_owned()
    }
}

/// GET `path` from the agent of `donor` (its stable name, for the Host header) at `ip:port`.
/// Any HTTP answer is the caller's to judge; no answer is worth a retry.
pub(crate) async fn get(
    donor: &str,
    ip: IpAddr,
    port: u16,
    path: &str,
    bearer: Option<&Secret>,
    answer_within: Duration,
) -> Result<Response<Incoming>, Attempt> {
    let retry = |what: &str, e: &dyn std::error::Error| {
        Attempt::Retry(format!("{what}: {}", error_chain(e)))
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((ip, port)))
        .await
        .map_err(|_| Attempt::Retry(format!("connecting to {ip}:{port}: timed out")))?
        .map_err(|e| retry(&format!("connecting to {ip}:{port}"), &e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| retry("HTTP handshake", &e))?;
    tokio::spawn(connection);
    let mut request = Request::get(path).header(header::HOST, format!("{donor}:{port}"));
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .expect("static request is valid");
    tokio::time::timeout(answer_within, sender.send_request(request))
        .await
        .map_err(|_| Attempt::Retry(format!("no answer to GET {path}")))?
        .map_err(|e| retry(&format!("GET {path}"), &e))
}

/// Whether `donor`'s agent says it may be cloned from now (`GET /donor`): a donor's server would
/// serve a clone whatever its state, its agent knows whether it is in sync and not fenced.
pub(crate) async fn ask_donor(
    donor: &str,
    ip: IpAddr,
    port: u16,
    promotion: Promotion,
) -> Result<(), Attempt> {
    let path = donor_path("/donor", promotion);
    let response = get(donor, ip, port, &path, None, CONNECT_TIMEOUT).await?;
    match response.status() {
        StatusCode::OK => Ok(()),
        _ => Err(Attempt::Retry(format!(
            "the donor's agent answers /donor with {}",
            answer(response).await
        ))),
    }
}

/// The status and the first line of the body, e.g. "503 not healthy enough to donate: ...";
/// the agent's own bodies already start with their status, which is not repeated.
pub(crate) async fn answer(response: Response<Incoming>) -> String {
    let status = response.status().as_u16();
    let collected = tokio::time::timeout(CONNECT_TIMEOUT, response.into_body().collect()).await;
    let bytes = match collected {
        Ok(Ok(body)) => body.to_bytes(),
        _ => Bytes::new(),
    };
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
    with_status(status, text.lines().next().unwrap_or_default())
}

fn with_status(status: u16, line: &str) -> String {
    let code = status.to_string();
    match line.strip_prefix(code.as_str()) {
        Some(rest) if rest.is_empty() || rest.starts_with(' ') => line.to_owned(),
        _ if line.is_empty() => code,
        _ => format!("{code} {line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_names_its_status_once() {
        assert_eq!(with_status(503, "503 not healthy"), "503 not healthy");
        assert_eq!(with_status(503, "busy"), "503 busy");
        assert_eq!(with_status(404, ""), "404");
        assert_eq!(with_status(500, "5000 rows"), "500 5000 rows");
    }

    #[test]
    fn a_restoring_first_ordinal_says_so_to_its_donor() {
        assert_eq!(donor_path("/clone", Promotion::None), "/clone");
        assert_eq!(donor_path("/donor", Promotion::Owed), "/donor?for=restore");
        assert_eq!(
            donor_path("/clone", Promotion::Done { at_unix: 1 }),
            "/clone"
        );
    }
}
