//! [`ClosingUpstream`]: an HTTP/1.1 server that answers with keep-alive and then closes the
//! connection, for the race every pooling proxy meets (an upstream closing an idle connection just
//! as the proxy reuses it), made deterministic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::lock;
use crate::server_thread::{ServerThread, StopSignal};
use crate::upstream::UPSTREAM_HEADER;

/// When a [`ClosingUpstream`] closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhen {
    /// Right after its first response (which says nothing of closing: keep-alive), with a FIN; the
    /// close is counted in [`ClosingUpstream::closes_seen`] once the peer closed its side too, which
    /// tells that the peer saw it.
    AfterFirstResponse,
    /// When a second request arrives on the connection: read whole, never answered, the connection
    /// closed. What a proxy sees when an upstream's idle close crosses its reuse of the connection.
    OnSecondRequest,
    /// As `OnSecondRequest`, but after reading only the second request's head: its body, unread,
    /// makes the close a reset, while the proxy may still be sending it.
    OnSecondRequestHead,
}

/// One request a [`ClosingUpstream`] read: on which connection (from 1), the method and path, and
/// whether it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosingRequest {
    pub connection: u64,
    pub method: String,
    pub path: String,
    /// Bytes of body read (`None`: the body was not read).
    pub body_len: Option<usize>,
    pub answered: bool,
}

/// An HTTP/1.1 server on `127.0.0.1:<ephemeral>` that answers `200` with `x-upstream: <name>` and the
/// body `connection N` (keep-alive, `content-length`), then closes each connection as
/// [`CloseWhen`] says. Stops on drop.
#[derive(Debug)]
pub struct ClosingUpstream {
    connections: Arc<AtomicU64>,
    closes_seen: Arc<AtomicU64>,
    requests: Arc<Mutex<Vec<ClosingRequest>>>,
    server: ServerThread,
}

/// Longest request head (and body) read.
const MAX_REQUEST: usize = 1 << 20;

impl ClosingUpstream {
    /// Starts the server named `name`.
    pub fn start(name: &str, when: CloseWhen) -> Result<ClosingUpstream> {
        let connections = Arc::new(AtomicU64::new(0));
        let closes_seen = Arc::new(AtomicU64::new(0));
        let requests: Arc<Mutex<Vec<ClosingRequest>>> = Arc::default();
        let state = (
            Arc::<str>::from(name),
            Arc::clone(&connections),
            Arc::clone(&closes_seen),
            Arc::clone(&requests),
        );
        let server = ServerThread::spawn("closing-upstream", move |listener, stop| {
            crate::upstream::accept_each(listener, stop, move |stream, stop| {
                let (name, connections, closes_seen, requests) = state.clone();
                let n = connections.fetch_add(1, Ordering::Relaxed) + 1;
                serve(stream, stop, when, name, n, closes_seen, requests)
            })
        })?;
        Ok(ClosingUpstream {
            connections,
            closes_seen,
            requests,
            server,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Connections accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Connections it closed whose peer has closed its side too.
    pub fn closes_seen(&self) -> u64 {
        self.closes_seen.load(Ordering::Relaxed)
    }

    /// Every request read, in order.
    pub fn requests(&self) -> Vec<ClosingRequest> {
        lock(&self.requests).clone()
    }

    /// Forgets the requests read.
    pub fn clear(&self) {
        lock(&self.requests).clear();
    }

    /// Waits (at most `timeout`) until [`closes_seen`](Self::closes_seen) reaches `n`.
    pub fn wait_closes_seen(&self, n: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.closes_seen() < n {
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("the peer to close {n} connection(s) the upstream closed"),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

/// One request read: method, path, and body length if the body was read.
type Read = (String, String, Option<usize>);

/// Reads one request: its head and, if `body`, its `content-length` body; `None` when the peer
/// closed first.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>, body: bool) -> Option<Read> {
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 && buf.len() < MAX_REQUEST => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next()?.to_owned(), words.next()?.to_owned());
    let length = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    if !body {
        return Some((method, path, None));
    }
    while buf.len() < end + length {
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
    buf.drain(..end + length);
    Some((method, path, Some(length)))
}

async fn serve(
    mut stream: TcpStream,
    mut stop: StopSignal,
    when: CloseWhen,
    name: Arc<str>,
    connection: u64,
    closes_seen: Arc<AtomicU64>,
    requests: Arc<Mutex<Vec<ClosingRequest>>>,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let run = async {
        let (method, path, body_len) = read_request(&mut stream, &mut buf, true).await?;
        lock(&requests).push(ClosingRequest {
            connection,
            method,
            path,
            body_len,
            answered: true,
        });
        let body = format!("connection {connection}");
        let response = format!(
            "HTTP/1.1 200 OK\r\n{UPSTREAM_HEADER}: {name}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.ok()?;
        match when {
            CloseWhen::AfterFirstResponse => {
                stream.shutdown().await.ok()?;
                // The peer saw the FIN once it closes too (its read returns 0, or it resets).
                let mut rest = [0u8; 1024];
                loop {
                    match stream.read(&mut rest).await {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
                closes_seen.fetch_add(1, Ordering::Relaxed);
            }
            CloseWhen::OnSecondRequest | CloseWhen::OnSecondRequestHead => {
                let body = when == CloseWhen::OnSecondRequest;
                let (method, path, body_len) = read_request(&mut stream, &mut buf, body).await?;
                lock(&requests).push(ClosingRequest {
                    connection,
                    method,
                    path,
                    body_len,
                    answered: false,
                });
            }
        }
        Some(())
    };
    tokio::select! {
        _ = run => {}
        () = stop.stopped() => {}
    }
}
