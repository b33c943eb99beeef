//! [`H2Tap`]: a TCP relay in front of an HTTP/2 server that reads the frames the server sends, to
//! see what an HTTP client library keeps to itself (a GOAWAY, say).

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

/// Takes the whole frames off `bytes`, recording GOAWAYs.
fn parse(bytes: &mut Vec<u8>, goaways: &Mutex<Vec<GoAway>>) {
    let mut at = 0;
    while bytes.len() - at >= 9 {
        let head = &bytes[at..at + 9];
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        if bytes.len() - at - 9 < len {
            break;
        }
        let payload = &bytes[at + 9..at + 9 + len];
        if head[3] == GOAWAY && len >= 8 {
            let word = |i: usize| {
                u32::from_be_bytes([payload[i], payload[i + 1], payload[i + 2], payload[i + 3]])
            };
            lock(goaways).push(GoAway {
                last_stream_id: word(0) & 0x7fff_ffff,
                error_code: word(4),
            });
        }
        at += 9 + len;
    }
    bytes.drain(..at);
}
