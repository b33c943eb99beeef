//! gRPC streaming without generated code: [`GrpcEcho`], an h2c server with client-streaming,
//! server-streaming and bidirectional methods, and [`GrpcStream`], a client call that sends and
//! receives one message at a time, so a test can interleave them and see every message as it
//! arrives, then the trailers. Messages are opaque bytes in gRPC's length-prefixed framing (a
//! proxy never decodes them); status and trailers are gRPC's (`grpc-status`, `grpc-message`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::DEFAULT_TIMEOUT;
use crate::error::{Error, Result};
use crate::server_thread::{ServerThread, StopSignal};
use crate::upstream::UPSTREAM_HEADER;

/// Bidirectional: every request message is answered at once with `echo:` and the message.
pub const BIDI: &str = "/testkit.Echo/Bidi";
/// Server streaming: the first request message, a number `n` (text), is answered at once with `n`
/// messages `1`, `2`, … `n`; the call ends (trailers) when the request stream does.
pub const SERVER_STREAM: &str = "/testkit.Echo/ServerStream";
/// Client streaming: every request message is read, then one answer: the messages joined by `,`.
pub const CLIENT_STREAM: &str = "/testkit.Echo/ClientStream";
/// Unary failure: answered at once, trailers-only, with the request's [`GRPC_STATUS_HEADER`]
/// (default `14`, `UNAVAILABLE`) and [`GRPC_MESSAGE_HEADER`].
pub const FAIL: &str = "/testkit.Echo/Fail";
/// Request metadata: the `grpc-status` to end the call with (default `0`).
pub const GRPC_STATUS_HEADER: &str = "x-testkit-grpc-status";
/// Request metadata: the `grpc-message` to end the call with (sent as given, already
/// percent-encoded).
pub const GRPC_MESSAGE_HEADER: &str = "x-testkit-grpc-message";

/// Largest gRPC message either side accepts.
const MAX_MESSAGE: usize = 4 << 20;
/// Most messages a server-streaming call may ask for.
const MAX_STREAMED: usize = 10_000;

/// `msg` in gRPC's framing: an uncompressed flag, the length (big-endian u32), the bytes.
pub fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + msg.len());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(msg);
    out.freeze()
}

/// Splits a byte stream into gRPC messages, whatever the DATA frame boundaries.
#[derive(Debug, Default)]
struct Deframer {
    buf: BytesMut,
}

impl Deframer {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, `Err` for a compressed or oversized one.
    fn next(&mut self) -> std::result::Result<Option<Bytes>, String> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(format!("compressed flag {} not supported", self.buf[0]));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_MESSAGE {
            return Err(format!("message of {len} bytes (at most {MAX_MESSAGE})"));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// A body fed frame by frame through a channel; it ends when the sender is dropped.
#[derive(Debug)]
struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

fn channel_body() -> (mpsc::Sender<Frame<Bytes>>, ChannelBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ChannelBody(rx))
}

// === the server ===

/// An h2c gRPC server on `127.0.0.1:<ephemeral>` with the methods [`BIDI`], [`SERVER_STREAM`],
/// [`CLIENT_STREAM`] and [`FAIL`]; any other path gets a trailers-only `UNIMPLEMENTED` (12). Every response
/// carries `x-upstream: <name>`; the call ends with trailers `grpc-status` and `grpc-message`
/// from the request's [`GRPC_STATUS_HEADER`] and [`GRPC_MESSAGE_HEADER`] (default `0`, none).
/// Stops on drop.
#[derive(Debug)]
pub struct GrpcEcho {
    calls: Arc<AtomicU64>,
    server: ServerThread,
}

impl GrpcEcho {
    /// Starts the server named `name`.
    pub fn start(name: &str) -> Result<GrpcEcho> {
        let calls = Arc::new(AtomicU64::new(0));
        let (counted, name) = (Arc::clone(&calls), Arc::<str>::from(name));
        let server = ServerThread::spawn("grpc-echo", move |listener, stop| {
            serve_grpc(listener, stop, name, counted)
        })?;
        Ok(GrpcEcho { calls, server })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Calls received.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

async fn serve_grpc(
    listener: tokio::net::TcpListener,
    stop: StopSignal,
    name: Arc<str>,
    calls: Arc<AtomicU64>,
) {
    crate::upstream::accept_each(listener, stop, move |stream, _| {
        let (name, calls) = (Arc::clone(&name), Arc::clone(&calls));
        async move {
            let _ = stream.set_nodelay(true);
            let service = service_fn(move |req| {
                calls.fetch_add(1, Ordering::Relaxed);
                call(Arc::clone(&name), req)
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}

fn metadata(req: &Request<Incoming>, name: &str) -> Option<HeaderValue> {
    req.headers().get(name).cloned()
}

async fn call(
    name: Arc<str>,
    req: Request<Incoming>,
) -> std::result::Result<Response<ChannelBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let status = metadata(&req, GRPC_STATUS_HEADER).unwrap_or(HeaderValue::from_static("0"));
    let message = metadata(&req, GRPC_MESSAGE_HEADER);
    let (tx, body) = channel_body();
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        headers.insert(UPSTREAM_HEADER, v);
    }
    if path == FAIL {
        // Trailers-only: the status in the headers, no body.
        let status = metadata(&req, GRPC_STATUS_HEADER).unwrap_or(HeaderValue::from_static("14"));
        headers.insert("grpc-status", status);
        if let Some(m) = message {
            headers.insert("grpc-message", m);
        }
        return Ok(resp);
    }
    if ![BIDI, SERVER_STREAM, CLIENT_STREAM].contains(&path.as_str()) {
        headers.insert("grpc-status", HeaderValue::from_static("12"));
        if let Ok(v) = HeaderValue::from_str(&format!("unknown method {path}")) {
            headers.insert("grpc-message", v);
        }
        return Ok(resp);
    }
    *resp.status_mut() = StatusCode::OK;
    tokio::spawn(async move {
        let mut body = req.into_body();
        let mut deframer = Deframer::default();
        let mut received: Vec<Bytes> = Vec::new();
        let mut ok = true;
        'read: while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return; // the request stream was reset
            };
            let Ok(data) = frame.into_data() else {
                continue; // request trailers
            };
            deframer.push(&data);
            loop {
                match deframer.next() {
                    Ok(Some(msg)) => {
                        let replies: Vec<Bytes> = match path.as_str() {
                            BIDI => vec![Bytes::from([b"echo:".as_slice(), &msg].concat())],
                            SERVER_STREAM if received.is_empty() => {
                                let n = std::str::from_utf8(&msg)
                                    .ok()
                                    .and_then(|n| n.trim().parse::<usize>().ok())
                                    .unwrap_or(0)
                                    .min(MAX_STREAMED);
                                (1..=n).map(|i| Bytes::from(i.to_string())).collect()
                            }
                            _ => Vec::new(),
                        };
                        for reply in replies {
                            if tx.send(Frame::data(grpc_frame(&reply))).await.is_err() {
                                return; // the client went away
                            }
                        }
                        received.push(msg);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        ok = false;
                        break 'read;
                    }
                }
            }
        }
        if !deframer.is_empty() {
            ok = false;
        }
        if ok && path == CLIENT_STREAM {
            let joined: Vec<&[u8]> = received.iter().map(|m| m.as_ref()).collect();
            let reply = grpc_frame(&joined.join(b",".as_slice()));
            if tx.send(Frame::data(reply)).await.is_err() {
                return;
            }
        }
        let mut trailers = HeaderMap::new();
        if ok {
            trailers.insert("grpc-status", status);
            if let Some(m) = message {
                trailers.insert("grpc-message", m);
            }
        } else {
            trailers.insert("grpc-status", HeaderValue::from_static("13"));
            trailers.insert(
                "grpc-message",
                HeaderValue::from_static("malformed request framing"),
            );
        }
        let _ = tx.send(Frame::trailers(trailers)).await;
    });
    Ok(resp)
}

// === the client ===

/// One gRPC call in progress over its own HTTP/2 connection: messages are sent and received one at
/// a time (each bounded by [`DEFAULT_TIMEOUT`]), then the trailers. Dropping it closes the
/// connection.
#[derive(Debug)]
pub struct GrpcStream {
    /// The response head (status, headers: `content-type`, `x-upstream`, or a trailers-only status).
    pub head: http::response::Parts,
    requests: Option<mpsc::Sender<Frame<Bytes>>>,
    body: Incoming,
    deframer: Deframer,
    pending: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    connection: JoinHandle<()>,
    addr: SocketAddr,
    what: String,
}

impl GrpcStream {
    /// Starts a call of `path` over h2c to `addr` with extra `metadata`, and waits for the
    /// response headers.
    pub async fn start(
        addr: SocketAddr,
        path: &str,
        metadata: &[(&str, &str)],
    ) -> Result<GrpcStream> {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| Error::io(format!("connecting to {addr}"), e))?;
            let _ = tcp.set_nodelay(true);
            Ok(tcp)
        };
        let tcp = bounded(format!("connecting to {addr}"), connect).await?;
        GrpcStream::start_on(tcp, addr, &addr.to_string(), path, metadata).await
    }

    /// As [`start`](Self::start) over an established connection `io` to `addr` (TLS with ALPN
    /// `h2`, say), with `authority` as `:authority`.
    pub async fn start_on<T>(
        io: T,
        addr: SocketAddr,
        authority: &str,
        path: &str,
        metadata: &[(&str, &str)],
    ) -> Result<GrpcStream>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let what = format!("gRPC {path} through {addr}");
        let http = |source| Error::http(addr, source);
        let (tx, body) = channel_body();
        let mut builder = Request::post(format!("http://{authority}{path}"))
            .version(http::Version::HTTP_2)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers");
        for (k, v) in metadata {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(body)
            .map_err(|e| Error::InvalidRequest(format!("{what}: {e}")))?;
        let started = async {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                    .await
                    .map_err(http)?;
            let connection = tokio::spawn(async move {
                let _ = conn.await;
            });
            let resp = sender.send_request(req).await.map_err(http);
            Ok((resp, connection))
        };
        let (resp, connection) = bounded(format!("{what}: response headers"), started).await?;
        let resp = match resp {
            Ok(resp) => resp,
            Err(e) => {
                connection.abort();
                return Err(e);
            }
        };
        let (head, body) = resp.into_parts();
        Ok(GrpcStream {
            head,
            requests: Some(tx),
            body,
            deframer: Deframer::default(),
            pending: VecDeque::new(),
            trailers: None,
            connection,
            addr,
            what,
        })
    }

    /// The response header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        let Some(tx) = &self.requests else {
            return Err(Error::InvalidRequest(format!(
                "{}: sending after close_send",
                self.what
            )));
        };
        let what = format!("{}: sending a message", self.what);
        let gone = Error::InvalidRequest(format!("{what}: the request stream is gone"));
        let sent = async {
            tx.send(Frame::data(grpc_frame(msg)))
                .await
                .map_err(|_| gone)
        };
        bounded(what, sent).await
    }

    /// Ends the request stream (half-close).
    pub fn close_send(&mut self) {
        self.requests = None;
    }

    /// The next response message, or `None` once the response ended (see
    /// [`trailers`](Self::trailers)).
    pub async fn recv(&mut self) -> Result<Option<Bytes>> {
        let what = format!("{}: the next message", self.what);
        bounded(what, self.recv_unbounded()).await
    }

    async fn recv_unbounded(&mut self) -> Result<Option<Bytes>> {
        loop {
            if let Some(msg) = self.pending.pop_front() {
                return Ok(Some(msg));
            }
            let addr = self.addr;
            let bad = |reason: String| Error::BadResponse { addr, reason };
            let Some(frame) = self.body.frame().await else {
                if !self.deframer.is_empty() {
                    return Err(bad(format!("{}: ended inside a message", self.what)));
                }
                return Ok(None);
            };
            let frame = frame.map_err(|e| bad(format!("{}: reading: {e}", self.what)))?;
            match frame.into_data() {
                Ok(data) => {
                    self.deframer.push(&data);
                    while let Some(msg) = self.deframer.next().map_err(bad)? {
                        self.pending.push_back(msg);
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        self.trailers = Some(t);
                    }
                }
            }
        }
    }

    /// Reads every remaining message until the response ends.
    pub async fn recv_all(&mut self) -> Result<Vec<Bytes>> {
        let mut out = Vec::new();
        while let Some(msg) = self.recv().await? {
            out.push(msg);
        }
        Ok(out)
    }

    /// The trailers, once [`recv`](Self::recv) returned `None` (`None` for a trailers-only
    /// response, whose status is in [`head`](Self::head)).
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// `grpc-status` and `grpc-message` of the ended call: from the trailers, else from the
    /// headers (trailers-only).
    pub fn status(&self) -> (Option<String>, Option<String>) {
        let map = self.trailers.as_ref().unwrap_or(&self.head.headers);
        let get = |name: &str| {
            map.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (get("grpc-status"), get("grpc-message"))
    }
}

impl Drop for GrpcStream {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

async fn bounded<T>(what: String, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    crate::client::bounded(DEFAULT_TIMEOUT, what, fut).await
}
