//! HTTP/1.1 and h2c (prior knowledge) client helpers with timeouts, for driving upstreams and proxies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::lock;

/// Default bound on one request (connect, send, and read the whole response).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read.
pub const MAX_RESPONSE_BODY: usize = 64 << 20;

/// Which HTTP the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

/// A request to send: method, path (with query), headers and body. `Host` (h1) / `:authority` (h2) default to
/// the address connected to; set a `host` header to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Req {
    /// The method.
    pub method: Method,
    /// The path and query, e.g. `/productpage?u=normal`.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Req {
    /// `GET path`.
    pub fn get(path: &str) -> Req {
        Req::new(Method::GET, path)
    }

    /// `method path`.
    pub fn new(method: Method, path: &str) -> Req {
        Req {
            method,
            path: path.to_string(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl ToString) -> Req {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds several headers.
    pub fn headers(mut self, headers: &[(&str, &str)]) -> Req {
        self.headers
            .extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Req {
        self.body = body.into();
        self
    }

    fn into_http(self, addr: SocketAddr, protocol: Protocol) -> Result<http::Request<Full<Bytes>>> {
        let invalid = |e: &dyn std::fmt::Display| {
            Error::InvalidRequest(format!("{} {}: {e}", self.method, self.path))
        };
        let mut authority = addr.to_string();
        let mut builder = http::Request::builder().method(self.method.clone());
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("host") {
                authority.clone_from(v);
            } else {
                builder = builder.header(k.as_str(), v.as_str());
            }
        }
        let uri: Uri = match protocol {
            Protocol::Http1 => {
                builder = builder.header(http::header::HOST, authority.as_str());
                self.path.parse().map_err(|e| invalid(&e))?
            }
            Protocol::H2c => format!("http://{authority}{}", self.path)
                .parse()
                .map_err(|e| invalid(&e))?,
        };
        let version = match protocol {
            Protocol::Http1 => Version::HTTP_11,
            Protocol::H2c => Version::HTTP_2,
        };
        builder
            .uri(uri)
            .version(version)
            .body(Full::new(self.body.clone()))
            .map_err(|e| invalid(&e))
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The HTTP version it came over.
    pub version: Version,
}

impl Response {
    /// The status as a number.
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// The first value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (an [`crate::Upstream`]'s echo).
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Counts the values of header `name` over `responses` (absent counts as `""`): e.g. which upstream answered.
pub fn count_header(responses: &[Response], name: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in responses {
        *counts
            .entry(r.header(name).unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    counts
}

/// A client for one address and protocol. Each [`Client::send`] opens a new connection; use
/// [`Client::connect`] to reuse one.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    addr: SocketAddr,
    protocol: Protocol,
    timeout: Duration,
}

impl Client {
    /// A client of `addr` speaking `protocol`.
    pub fn new(addr: SocketAddr, protocol: Protocol) -> Client {
        Client {
            addr,
            protocol,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// HTTP/1.1 to `addr`.
    pub fn h1(addr: SocketAddr) -> Client {
        Client::new(addr, Protocol::Http1)
    }

    /// h2c (prior knowledge) to `addr`.
    pub fn h2c(addr: SocketAddr) -> Client {
        Client::new(addr, Protocol::H2c)
    }

    /// Bounds each request (connect included) by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET path` with `headers` on a new connection.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
        self.send(Req::get(path).headers(headers)).await
    }

    /// Sends `req` on a new connection.
    pub async fn send(&self, req: Req) -> Result<Response> {
        let what = format!("{} {} from {}", req.method, req.path, self.addr);
        bounded(self.timeout, what, async {
            let mut conn = self.open().await?;
            conn.send_unbounded(req).await
        })
        .await
    }

    /// Opens a connection to reuse for several requests.
    pub async fn connect(&self) -> Result<Connection> {
        bounded(
            self.timeout,
            format!("connecting to {}", self.addr),
            self.open(),
        )
        .await
    }

    async fn open(&self) -> Result<Connection> {
        let addr = self.addr;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Error::io(format!("connecting to {addr}"), e))?;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let http = |source| Error::http(addr, source);
        let (sender, task) = match self.protocol {
            Protocol::Http1 => {
                let (sender, conn) = http1::handshake(io).await.map_err(http)?;
                (
                    Sender::H1(sender),
                    tokio::spawn(async move {
                        let _ = conn.await;
                    }),
                )
            }
            Protocol::H2c => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(http)?;
                (
                    Sender::H2(sender),
                    tokio::spawn(async move {
                        let _ = conn.await;
                    }),
                )
            }
        };
        Ok(Connection {
            client: *self,
            sender,
            task: Some(task),
        })
    }

    /// Sends `n` requests built by `make_request(i)`, at most `concurrency` at a time, and returns the
    /// responses in request order. HTTP/1.1 uses one connection per concurrent worker, h2c one connection
    /// with `concurrency` streams. Fails on the first transport error or timeout.
    pub async fn send_many<F>(
        &self,
        n: usize,
        concurrency: usize,
        make_request: F,
    ) -> Result<Vec<Response>>
    where
        F: Fn(usize) -> Req + Send + Sync + 'static,
    {
        let make_request = Arc::new(make_request);
        let next = Arc::new(AtomicUsize::new(0));
        let results: Arc<Mutex<Vec<Option<Response>>>> = Arc::new(Mutex::new(vec![None; n]));
        let workers = concurrency.clamp(1, n.max(1));
        // h2: one connection, every worker sends its streams on it. h1: one connection per worker.
        let base = match self.protocol {
            Protocol::H2c => Some(self.connect().await?),
            Protocol::Http1 => None,
        };
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let client = *self;
            let (make_request, next, results) = (
                Arc::clone(&make_request),
                Arc::clone(&next),
                Arc::clone(&results),
            );
            let mut conn = base.as_ref().and_then(Connection::share);
            set.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok(());
                    }
                    let req = make_request(i);
                    let conn = match conn.as_mut() {
                        Some(conn) => conn,
                        None => conn.insert(client.connect().await?),
                    };
                    let resp = conn.send(req).await?;
                    if let Some(slot) = lock(&results).get_mut(i) {
                        *slot = Some(resp);
                    }
                }
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(Error::io("a send_many worker", std::io::Error::other(e))),
            }
        }
        let responses = std::mem::take(&mut *lock(&results));
        Ok(responses.into_iter().flatten().collect())
    }
}

#[derive(Debug)]
enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// An open client connection. HTTP/1.1 reconnects when the server closed it between requests. Dropping it
/// closes it.
#[derive(Debug)]
pub struct Connection {
    client: Client,
    sender: Sender,
    task: Option<JoinHandle<()>>,
}

impl Connection {
    /// Sends `req` on this connection, bounded by the client's timeout.
    pub async fn send(&mut self, req: Req) -> Result<Response> {
        let what = format!("{} {} from {}", req.method, req.path, self.client.addr);
        bounded(self.client.timeout, what, self.send_unbounded(req)).await
    }

    /// Another handle on the same connection (h2 only: h1 handles would queue behind each other). The
    /// connection lives while its first handle does.
    fn share(&self) -> Option<Connection> {
        match &self.sender {
            Sender::H2(sender) => Some(Connection {
                client: self.client,
                sender: Sender::H2(sender.clone()),
                task: None,
            }),
            Sender::H1(_) => None,
        }
    }

    async fn send_unbounded(&mut self, req: Req) -> Result<Response> {
        let addr = self.client.addr;
        let http = |source| Error::http(addr, source);
        let req = req.into_http(addr, self.client.protocol)?;
        let needs_reconnect = match &mut self.sender {
            Sender::H1(s) => s.is_closed() || s.ready().await.is_err(),
            Sender::H2(s) => s.is_closed(),
        };
        if needs_reconnect {
            *self = self.client.open().await?;
        }
        let resp = match &mut self.sender {
            Sender::H1(s) => s.send_request(req).await.map_err(http)?,
            Sender::H2(s) => {
                s.ready().await.map_err(http)?;
                s.send_request(req).await.map_err(http)?
            }
        };
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| Error::BadResponse {
                addr,
                reason: format!("reading the body: {e}"),
            })?
            .to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub(crate) async fn bounded<T>(
    timeout: Duration,
    what: String,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout {
            what,
            after: timeout,
        }),
    }
}

/// `GET path` with `headers` over HTTP/1.1 on a new connection, bounded by [`DEFAULT_TIMEOUT`].
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
    Client::h1(addr).get(path, headers).await
}

/// `GET path` with `headers` over h2c (prior knowledge) on a new connection, bounded by [`DEFAULT_TIMEOUT`].
pub async fn h2c_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
    Client::h2c(addr).get(path, headers).await
}

/// [`Client::send_many`] over HTTP/1.1.
pub async fn send_many<F>(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    make_request: F,
) -> Result<Vec<Response>>
where
    F: Fn(usize) -> Req + Send + Sync + 'static,
{
    Client::h1(addr)
        .send_many(n, concurrency, make_request)
        .await
}

// === Tunnels: CONNECT and HTTP/1.1 upgrades ===

/// Largest response head [`open_tunnel`] reads.
const MAX_TUNNEL_HEAD: usize = 64 << 10;

/// A request that asked for a tunnel (CONNECT or an `Upgrade`) and the answer to it: the status,
/// the response headers (names lowercased, repeated values joined with `,`), whatever followed the
/// head in the same read (the start of a body), and the connection, ready for tunnel bytes when
/// the tunnel opened.
#[derive(Debug)]
pub struct Tunnel {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub leftover: Vec<u8>,
    pub stream: TcpStream,
    addr: SocketAddr,
}

/// Opens a connection to `addr`, writes `head` (a whole HTTP/1.1 request head, blank line included)
/// and reads the response head, all within [`DEFAULT_TIMEOUT`].
pub async fn open_tunnel(addr: SocketAddr, head: &str) -> Result<Tunnel> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = |context: &str| {
        let context = format!("{context} {addr}");
        move |source| Error::Io { context, source }
    };
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(io("connecting to"))?;
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(io("writing a request to"))?;
        let mut read = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if read.len() > MAX_TUNNEL_HEAD {
                return Err(Error::BadResponse {
                    addr,
                    reason: format!("response head longer than {MAX_TUNNEL_HEAD} bytes"),
                });
            }
            let n = stream
                .read(&mut buf)
                .await
                .map_err(io("reading a response from"))?;
            if n == 0 {
                return Err(Error::BadResponse {
                    addr,
                    reason: format!(
                        "closed before a whole response head: {:?}",
                        String::from_utf8_lossy(&read)
                    ),
                });
            }
            read.extend_from_slice(&buf[..n]);
        };
        let text = String::from_utf8_lossy(&read[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::BadResponse {
                addr,
                reason: format!("no status line in {text:?}"),
            })?;
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                headers
                    .entry(name.trim().to_ascii_lowercase())
                    .and_modify(|v| {
                        v.push(',');
                        v.push_str(value.trim());
                    })
                    .or_insert_with(|| value.trim().to_owned());
            }
        }
        Ok(Tunnel {
            status,
            headers,
            leftover: read[end + 4..].to_vec(),
            stream,
            addr,
        })
    };
    tokio::time::timeout(DEFAULT_TIMEOUT, exchange)
        .await
        .map_err(|_| Error::Timeout {
            what: format!("an answer to a tunnel request from {addr}"),
            after: DEFAULT_TIMEOUT,
        })?
}

/// `CONNECT authority` through the HTTP proxy at `proxy` (see [`open_tunnel`]).
pub async fn connect_tunnel(proxy: SocketAddr, authority: &str) -> Result<Tunnel> {
    open_tunnel(
        proxy,
        &format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
    )
    .await
}

impl Tunnel {
    /// Writes `bytes` and reads as many back (an echo through the tunnel), within [`DEFAULT_TIMEOUT`].
    pub async fn echo(&mut self, bytes: &[u8]) -> Result<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.addr;
        let io = |context: &'static str| {
            move |source| Error::Io {
                context: format!("{context} the tunnel through {addr}"),
                source,
            }
        };
        let exchange = async {
            self.stream
                .write_all(bytes)
                .await
                .map_err(io("writing to"))?;
            let mut back = vec![0u8; bytes.len()];
            self.stream
                .read_exact(&mut back)
                .await
                .map_err(io("reading from"))?;
            Ok(back)
        };
        tokio::time::timeout(DEFAULT_TIMEOUT, exchange)
            .await
            .map_err(|_| Error::Timeout {
                what: format!("an echo through the tunnel through {addr}"),
                after: DEFAULT_TIMEOUT,
            })?
    }

    /// Reads until the peer closes (at most [`MAX_TUNNEL_HEAD`] bytes, within [`DEFAULT_TIMEOUT`]):
    /// the rest of a refusal's body, after [`leftover`](Self::leftover).
    pub async fn read_to_close(&mut self) -> Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let addr = self.addr;
        let mut out = std::mem::take(&mut self.leftover);
        let read = async {
            let mut limited = (&mut self.stream).take(MAX_TUNNEL_HEAD as u64);
            limited
                .read_to_end(&mut out)
                .await
                .map_err(|source| Error::Io {
                    context: format!("reading from {addr}"),
                    source,
                })
        };
        tokio::time::timeout(DEFAULT_TIMEOUT, read)
            .await
            .map_err(|_| Error::Timeout {
                what: format!("{addr} to close the connection"),
                after: DEFAULT_TIMEOUT,
            })??;
        Ok(out)
    }
}
