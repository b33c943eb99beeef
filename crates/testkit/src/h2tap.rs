//! HTTP/2 at the frame level: [`H2Tap`], a TCP relay in front of an HTTP/2 server that reads the
//! frames the server sends, to see what an HTTP client library keeps to itself (a GOAWAY, say); and
//! [`RefusingH2`], a server that refuses every stream (`REFUSED_STREAM`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::lock;
use crate::server_thread::ServerThread;

/// HTTP/2's GOAWAY frame type.
const GOAWAY: u8 = 0x7;
/// Frames larger than this end the parsing (the relay goes on).
const MAX_FRAME: usize = 16 << 20;

/// A GOAWAY the server sent: the last stream it may process and the error code (0: `NO_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoAway {
    pub last_stream_id: u32,
    pub error_code: u32,
}

/// A relay on `127.0.0.1:<ephemeral>` to `target`, recording every GOAWAY the server sends on any
/// connection. Stops on drop.
#[derive(Debug)]
pub struct H2Tap {
    goaways: Arc<Mutex<Vec<GoAway>>>,
    server: ServerThread,
}

impl H2Tap {
    /// Starts relaying to `target`.
    pub fn start(target: SocketAddr) -> Result<H2Tap> {
        let goaways: Arc<Mutex<Vec<GoAway>>> = Arc::default();
        let seen = Arc::clone(&goaways);
        let server = ServerThread::spawn("h2-tap", move |listener, stop| {
            crate::upstream::accept_each(listener, stop, move |client, _| {
                relay(client, target, Arc::clone(&seen))
            })
        })?;
        Ok(H2Tap { goaways, server })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The GOAWAY frames seen so far, in order.
    pub fn goaways(&self) -> Vec<GoAway> {
        lock(&self.goaways).clone()
    }

    /// Waits (at most `timeout`) for a GOAWAY; returns those seen.
    pub async fn wait_goaway(&self, timeout: Duration) -> Result<Vec<GoAway>> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.goaways();
            if !seen.is_empty() {
                return Ok(seen);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "a GOAWAY from the server".to_owned(),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn relay(client: TcpStream, target: SocketAddr, goaways: Arc<Mutex<Vec<GoAway>>>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let downstream = async {
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            if frames.len() < MAX_FRAME {
                frames.extend_from_slice(&buf[..n]);
                parse(&mut frames, &goaways);
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

/// One frame: type, flags, stream id, payload.
type RawFrame = (u8, u8, u32, Vec<u8>);

/// Takes the next whole frame off `bytes`, if there is one.
fn next_frame(bytes: &mut Vec<u8>) -> Option<RawFrame> {
    if bytes.len() < 9 {
        return None;
    }
    let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
    if bytes.len() - 9 < len {
        return None;
    }
    let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
    let (kind, flags) = (bytes[3], bytes[4]);
    let payload = bytes[9..9 + len].to_vec();
    bytes.drain(..9 + len);
    Some((kind, flags, stream, payload))
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Takes the whole frames off `bytes`, recording GOAWAYs.
fn parse(bytes: &mut Vec<u8>, goaways: &Mutex<Vec<GoAway>>) {
    while let Some((kind, _, _, payload)) = next_frame(bytes) {
        if kind == GOAWAY && payload.len() >= 8 {
            lock(goaways).push(GoAway {
                last_stream_id: word(&payload, 0) & 0x7fff_ffff,
                error_code: word(&payload, 4),
            });
        }
    }
}

// === RefusingH2 ===

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An h2c server on `127.0.0.1:<ephemeral>` that answers every request with
/// `RST_STREAM(REFUSED_STREAM)`: the stream was not processed, so any client may retry it. Stops on
/// drop.
#[derive(Debug)]
pub struct RefusingH2 {
    refused: Arc<std::sync::atomic::AtomicU64>,
    server: ServerThread,
}

impl RefusingH2 {
    /// Starts the server.
    pub fn start() -> Result<RefusingH2> {
        let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&refused);
        let server = ServerThread::spawn("refusing-h2", move |listener, stop| {
            crate::upstream::accept_each(listener, stop, move |stream, _| {
                refuse_all(stream, Arc::clone(&counted))
            })
        })?;
        Ok(RefusingH2 { refused, server })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Streams refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

async fn refuse_all(mut stream: TcpStream, refused: Arc<std::sync::atomic::AtomicU64>) {
    let _ = stream.set_nodelay(true);
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    // The server's preface: its (empty) SETTINGS.
    if stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.is_err() {
        return;
    }
    let mut preface_read = false;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) if n > 0 && bytes.len() < MAX_FRAME => n,
            _ => return,
        };
        bytes.extend_from_slice(&buf[..n]);
        if !preface_read {
            if bytes.len() < PREFACE.len() {
                continue;
            }
            if !bytes.starts_with(PREFACE) {
                return;
            }
            bytes.drain(..PREFACE.len());
            preface_read = true;
        }
        let mut out = Vec::new();
        while let Some((kind, flags, id, payload)) = next_frame(&mut bytes) {
            match kind {
                SETTINGS if flags & ACK == 0 => out.extend(frame(SETTINGS, ACK, 0, &[])),
                PING if flags & ACK == 0 => out.extend(frame(PING, ACK, 0, &payload)),
                HEADERS => {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    out.extend(frame(RST_STREAM, 0, id, &REFUSED_STREAM.to_be_bytes()));
                }
                _ => {}
            }
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
    }
}
