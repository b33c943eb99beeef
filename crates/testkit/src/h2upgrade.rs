//! An HTTP/2 upstream that takes upgrades by extended CONNECT (RFC 8441, what a proxy sends for
//! WebSocket to an HTTP/2 upstream): it answers 200 and echoes the stream's bytes, and records each
//! request head. Other requests get `200 no upgrade`.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::Result;
use crate::lock;
use crate::server_thread::{ServerThread, StopSignal};

/// Request heads kept (the oldest dropped first).
const HEADS: usize = 64;

/// See the module documentation.
#[derive(Debug)]
pub struct H2UpgradeEcho {
    heads: Arc<Mutex<VecDeque<BTreeMap<String, String>>>>,
    server: ServerThread,
}

impl H2UpgradeEcho {
    /// Starts the server on `127.0.0.1:<ephemeral>`.
    pub fn start() -> Result<H2UpgradeEcho> {
        let heads: Arc<Mutex<VecDeque<_>>> = Arc::default();
        let recorded = Arc::clone(&heads);
        let server = ServerThread::spawn("h2-upgrade-echo", move |listener, stop| {
            serve(listener, stop, recorded)
        })?;
        Ok(H2UpgradeEcho { heads, server })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The last request's pseudo-headers (`:method`, `:path`, `:protocol`) and headers.
    pub fn last_headers(&self) -> Option<BTreeMap<String, String>> {
        lock(&self.heads).back().cloned()
    }
}

fn head(req: &Request<Incoming>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(":method".to_owned(), req.method().to_string());
    out.insert(":path".to_owned(), req.uri().path().to_owned());
    if let Some(p) = req.extensions().get::<hyper::ext::Protocol>() {
        out.insert(":protocol".to_owned(), p.as_str().to_owned());
    }
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|v: &mut String| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

async fn serve(
    listener: tokio::net::TcpListener,
    stop: StopSignal,
    heads: Arc<Mutex<VecDeque<BTreeMap<String, String>>>>,
) {
    crate::upstream::accept_each(listener, stop, move |stream, _| {
        let heads = Arc::clone(&heads);
        async move {
            let service = service_fn(move |mut req: Request<Incoming>| {
                let heads = Arc::clone(&heads);
                async move {
                    {
                        let mut heads = lock(&heads);
                        if heads.len() == HEADS {
                            heads.pop_front();
                        }
                        heads.push_back(head(&req));
                    }
                    let extended = req.method() == http::Method::CONNECT
                        && req.extensions().get::<hyper::ext::Protocol>().is_some();
                    if !extended {
                        return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"no upgrade",
                        ))));
                    }
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let Ok(upgraded) = upgrade.await else { return };
                        let mut io = TokioIo::new(upgraded);
                        let mut buf = vec![0u8; 16 << 10];
                        while let Ok(n) = io.read(&mut buf).await {
                            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = io.shutdown().await;
                    });
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = StatusCode::OK;
                    Ok(resp)
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .enable_connect_protocol()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}
