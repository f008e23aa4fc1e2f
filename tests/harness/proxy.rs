//! A TCP proxy that breaks what it carries: it listens inside a network namespace the harness
//! made (the node's, on the bridge's address) and relays each connection to an upstream address,
//! passing the upstream's bytes through, cutting the connection after N of them, or flipping
//! the byte at offset N. Pointing a pod's DNS name at it (`Cluster::point_name`) puts it on the
//! path the agent really takes: name, address, port.

use std::fs::File;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// What the proxy does to the bytes the upstream sends on each new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Pass,
    /// Relays the first N bytes, then closes both sides (the client sees a clean end of stream).
    CutAfter(u64),
    /// Inverts every bit of the byte at offset N.
    FlipAt(u64),
}

pub struct FaultProxy {
    fault: Arc<Mutex<Fault>>,
    /// Connections whose bytes a fault changed.
    faulted: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on `listen` inside network namespace `ns` and relays to `upstream`, passing
    /// everything until `set` says otherwise. Its sockets live in `ns`: they are made on a thread
    /// of its own that entered it.
    pub async fn start(ns: &str, listen: SocketAddrV4, upstream: SocketAddrV4) -> Result<Self> {
        let netns = File::open(format!("/var/run/netns/{ns}"))
            .with_context(|| format!("opening netns {ns}"))?;
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let faulted = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel();
        let (bound, listening) = oneshot::channel();
        let (thread_fault, thread_faulted) = (fault.clone(), faulted.clone());
        let thread = std::thread::spawn(move || {
            let runtime = nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET)
                .context("entering the netns")
                .and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("a runtime for the proxy")
                });
            let runtime = match runtime {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = bound.send(Err(error));
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match TcpListener::bind(listen).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        let _ = bound.send(Err(anyhow::Error::new(error)));
                        return;
                    }
                };
                let _ = bound.send(Ok(()));
                serve(listener, upstream, thread_fault, thread_faulted, stopped).await;
            });
        });
        listening
            .await
            .context("the proxy thread died")?
            .with_context(|| format!("proxy on {listen} in netns {ns}"))?;
        Ok(FaultProxy {
            fault,
            faulted,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The fault applied to connections accepted from now on.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("proxy lock") = fault;
    }

    /// How many connections a fault has changed so far.
    pub fn faulted(&self) -> u64 {
        self.faulted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    /// Stops accepting and drops every relayed connection.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    upstream: SocketAddrV4,
    fault: Arc<Mutex<Fault>>,
    faulted: Arc<AtomicU64>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let fault = *fault.lock().expect("proxy lock");
                let faulted = faulted.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, fault, &faulted).await;
                    }
                });
            }
        }
    }
}

/// Relays both ways until the upstream's side ends (or is cut); the client's side may end first
/// (a half-close) without stopping what comes back.
async fn relay(client: TcpStream, server: TcpStream, fault: Fault, faulted: &AtomicU64) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let upward = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        let _ = to_server.shutdown().await;
    };
    let downward = async {
        downstream(&mut from_server, &mut to_client, fault, faulted).await;
        let _ = to_client.shutdown().await;
    };
    tokio::pin!(downward);
    tokio::select! {
        () = &mut downward => {}
        () = upward => downward.await,
    }
}

/// Copies what the upstream sends to the client, applying `fault`.
async fn downstream(
    from_server: &mut OwnedReadHalf,
    to_client: &mut OwnedWriteHalf,
    fault: Fault,
    faulted: &AtomicU64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let read = match from_server.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let chunk = &mut buf[..read];
        let end = offset + read as u64;
        let keep = match fault {
            Fault::FlipAt(at) if (offset..end).contains(&at) => {
                chunk[(at - offset) as usize] ^= 0xff;
                faulted.fetch_add(1, Ordering::Relaxed);
                read
            }
            Fault::CutAfter(limit) if end >= limit => {
                faulted.fetch_add(1, Ordering::Relaxed);
                (limit - offset) as usize
            }
            Fault::Pass | Fault::FlipAt(_) | Fault::CutAfter(_) => read,
        };
        if to_client.write_all(&chunk[..keep]).await.is_err() {
            return;
        }
        offset += keep as u64;
        if matches!(fault, Fault::CutAfter(limit) if offset >= limit) {
            return;
        }
    }
}
