//! Asking a donor's agent over HTTP: the MariaDB clone stream, and whether a pod is a healthy
//! donor (`/donor`), which a MySQL joiner asks before its CLONE plugin talks to the server.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::clone::datadir::Promotion;
use crate::clone::{Attempt, AttemptFailure, error_chain};
use crate::config::PeerChannel;
use crate::secret::Secret;
use crate::tls::{self, TlsError};

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

/// How this pod reaches other pods' agents: the port, and over HTTPS the client config (the CA
/// as the only root, the pod's certificate for mutual TLS), read once at start.
#[derive(Debug, Clone)]
pub struct PeerClient {
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl PeerClient {
    /// Plain HTTP to `port`: the local agent's `/status` is never behind TLS.
    pub fn plain(port: u16) -> PeerClient {
        PeerClient { port, tls: None }
    }

    pub fn new(channel: &PeerChannel) -> Result<PeerClient, TlsError> {
        Ok(PeerClient {
            port: channel.port(),
            tls: match channel {
                PeerChannel::Http { .. } => None,
                PeerChannel::Https { files, .. } => Some(tls::client_config(files)?),
            },
        })
    }
}

/// No answer from the donor's agent.
fn no_answer(reason: String) -> Attempt {
    Attempt::Retry(AttemptFailure::DonorUnreachable, reason)
}

fn retry(what: &str, e: &dyn std::error::Error) -> Attempt {
    no_answer(format!("{what}: {}", error_chain(e)))
}

/// GET `path` from the agent of `donor` (its stable name: the Host header, and over HTTPS the
/// name its certificate must hold) at `ip`. Any HTTP answer is the caller's to judge; no answer
/// is worth a retry. `accept_encoding`: the content codings the caller can decode, if any.
pub(crate) async fn get(
    donor: &str,
    ip: IpAddr,
    peer: &PeerClient,
    path: &str,
    bearer: Option<&Secret>,
    accept_encoding: Option<&'static str>,
    answer_within: Duration,
) -> Result<Response<Incoming>, Attempt> {
    let port = peer.port;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((ip, port)))
        .await
        .map_err(|_| no_answer(format!("connecting to {ip}:{port}: timed out")))?
        .map_err(|e| retry(&format!("connecting to {ip}:{port}"), &e))?;
    let mut request = Request::get(path).header(header::HOST, format!("{donor}:{port}"));
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    if let Some(codings) = accept_encoding {
        request = request.header(header::ACCEPT_ENCODING, codings);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .expect("static request is valid");
    let Some(config) = &peer.tls else {
        return send(TokioIo::new(stream), request, answer_within).await;
    };
    let name = rustls_pki_types::ServerName::try_from(donor.to_owned())
        .map_err(|e| retry(&format!("the donor's name {donor}"), &e))?;
    let connecting = tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| no_answer(format!("TLS handshake with {ip}:{port}: timed out")))?
        .map_err(|e| retry(&format!("TLS handshake with {donor} at {ip}:{port}"), &e))?;
    send(TokioIo::new(stream), request, answer_within).await
}

async fn send<IO>(
    io: IO,
    request: Request<Empty<Bytes>>,
    answer_within: Duration,
) -> Result<Response<Incoming>, Attempt>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let path = request.uri().to_string();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| retry("HTTP handshake", &e))?;
    tokio::spawn(connection);
    tokio::time::timeout(answer_within, sender.send_request(request))
        .await
        .map_err(|_| no_answer(format!("no answer to GET {path}")))?
        .map_err(|e| retry(&format!("GET {path}"), &e))
}

/// Whether `donor`'s agent says it may be cloned from now (`GET /donor`): a donor's server would
/// serve a clone whatever its state, its agent knows whether it is in sync and not fenced.
pub(crate) async fn ask_donor(
    donor: &str,
    ip: IpAddr,
    peer: &PeerClient,
    promotion: Promotion,
) -> Result<(), Attempt> {
    let path = donor_path("/donor", promotion);
    let response = get(donor, ip, peer, &path, None, None, CONNECT_TIMEOUT).await?;
    match response.status() {
        StatusCode::OK => Ok(()),
        _ => Err(Attempt::Retry(
            AttemptFailure::NotADonor,
            format!(
                "the donor's agent answers /donor with {}",
                answer(response).await
            ),
        )),
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
