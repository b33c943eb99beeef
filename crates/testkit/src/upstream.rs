//! `Upstream`, an in-process HTTP/1.1 + h2c test server, and `TcpEcho`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::Result;
use crate::lock;
use crate::server_thread::{ServerThread, StopSignal};

/// Request header: answer with this status code.
pub const STATUS_HEADER: &str = "x-testkit-status";
/// Request header: wait this many milliseconds before answering.
pub const DELAY_HEADER: &str = "x-testkit-delay-ms";
/// Request header: answer with a body of exactly this many bytes (instead of the JSON echo).
pub const BODY_BYTES_HEADER: &str = "x-testkit-body-bytes";
/// Request header: `1` closes the connection without answering (HTTP/1.1) or resets the stream (h2).
pub const CLOSE_HEADER: &str = "x-testkit-close";
/// Request header: `1` holds the answer until [`Upstream::release_held`] (at most [`MAX_DELAY`]).
pub const HOLD_HEADER: &str = "x-testkit-hold";
/// Request header: `name: value` (repeatable) adds that header to the answer.
pub const RESPONSE_HEADER: &str = "x-testkit-response-header";
/// Response header naming the upstream that answered.
pub const UPSTREAM_HEADER: &str = "x-upstream";

/// Largest request body an upstream reads (larger ones get 413).
pub const MAX_REQUEST_BODY: usize = 16 << 20;
/// Largest body `x-testkit-body-bytes` may ask for.
pub const MAX_RESPONSE_BODY: usize = 64 << 20;
/// Longest `x-testkit-delay-ms` honoured.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// How many requests [`Upstream::recent`] keeps by default.
pub const DEFAULT_RECENT: usize = 256;
/// How many distinct paths [`Upstream::requests_with`] counts; later new paths are not counted.
pub const MAX_PATHS: usize = 4096;
/// How long dropping an upstream lets in-flight requests finish.
const GRACE: Duration = Duration::from_secs(2);

/// How an [`Upstream`] answers, for every request; changeable at runtime with
/// [`Upstream::set_behaviour`]. Per-request headers (`x-testkit-*`) take precedence, except that while
/// failures remain (`fail_first_n`) every request fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBehaviour {
    /// The first `fail_first_n` requests after this behaviour is set answer `fail_status`.
    pub fail_first_n: usize,
    /// The status of those failures (default 503).
    pub fail_status: u16,
    /// The status of every other answer (default 200).
    pub status: u16,
    /// Wait this long before answering (default none).
    pub delay: Duration,
}

impl Default for UpstreamBehaviour {
    fn default() -> Self {
        UpstreamBehaviour {
            fail_first_n: 0,
            fail_status: 503,
            status: 200,
            delay: Duration::ZERO,
        }
    }
}

/// One request as an upstream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The query, without `?`.
    pub query: Option<String>,
    /// `HTTP/1.1`, `HTTP/2.0`, …
    pub version: String,
    /// Headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Bytes of request body.
    pub body_len: usize,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct State {
    name: String,
    behaviour: Mutex<(UpstreamBehaviour, usize)>,
    requests: AtomicU64,
    connections: AtomicU64,
    in_flight: AtomicUsize,
    by_path: Mutex<HashMap<String, u64>>,
    recent: Mutex<VecDeque<RecordedRequest>>,
    recent_cap: usize,
    /// Permits for held requests (`x-testkit-hold`).
    held: tokio::sync::Semaphore,
}

/// An in-process HTTP test server on `127.0.0.1:<ephemeral>`, speaking HTTP/1.1 and h2c (prior knowledge)
/// on the same port.
///
/// By default it answers `200` with header `x-upstream: <name>` and a JSON body
/// `{"upstream", "authority", "method", "path", "query", "version", "headers": {name: value}, "body_len"}`
/// (`authority` is h2's `:authority` or h1's `host`; repeated headers are joined with `,`). Per request, headers `x-testkit-status`, `x-testkit-delay-ms`,
/// `x-testkit-hold`, `x-testkit-body-bytes` and `x-testkit-close` change the answer (they pass through proxies); per server,
/// [`UpstreamBehaviour`]. Dropping it stops it (in-flight requests get a bounded grace period).
#[derive(Debug)]
pub struct Upstream {
    state: Arc<State>,
    server: ServerThread,
}

impl Upstream {
    /// Starts an upstream named `name` with the default behaviour.
    pub fn start(name: &str) -> Result<Upstream> {
        Upstream::start_with(name, UpstreamBehaviour::default())
    }

    /// Starts an upstream named `name` with `behaviour`.
    pub fn start_with(name: &str, behaviour: UpstreamBehaviour) -> Result<Upstream> {
        Upstream::start_at(name, SocketAddr::from(([127, 0, 0, 1], 0)), behaviour)
    }

    /// Starts an upstream named `name` listening on `addr` (a workload's own address in a mesh test).
    pub fn start_at(
        name: &str,
        addr: SocketAddr,
        behaviour: UpstreamBehaviour,
    ) -> Result<Upstream> {
        let failures = behaviour.fail_first_n;
        let state = Arc::new(State {
            name: name.to_string(),
            behaviour: Mutex::new((behaviour, failures)),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            by_path: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::new()),
            recent_cap: DEFAULT_RECENT,
            held: tokio::sync::Semaphore::new(0),
        });
        let served = Arc::clone(&state);
        let server =
            ServerThread::spawn_at(&format!("upstream-{name}"), addr, move |listener, stop| {
                serve_http(listener, stop, served)
            })?;
        Ok(Upstream { state, server })
    }

    /// The name it answers with in `x-upstream`.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// `127.0.0.1:port`, for `{{UPSTREAM_…}}` placeholders.
    pub fn host_port(&self) -> String {
        self.addr().to_string()
    }

    /// Replaces the behaviour; `fail_first_n` counts from now.
    pub fn set_behaviour(&self, behaviour: UpstreamBehaviour) {
        let failures = behaviour.fail_first_n;
        *lock(&self.state.behaviour) = (behaviour, failures);
    }

    /// The current behaviour.
    pub fn behaviour(&self) -> UpstreamBehaviour {
        lock(&self.state.behaviour).0.clone()
    }

    /// Requests received (counted on arrival, whatever the answer).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests received for `path` (without query).
    pub fn requests_with(&self, path: &str) -> u64 {
        lock(&self.state.by_path).get(path).copied().unwrap_or(0)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// The last requests received (at most [`DEFAULT_RECENT`]), oldest first.
    pub fn recent(&self) -> Vec<RecordedRequest> {
        lock(&self.state.recent).iter().cloned().collect()
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.state.recent).back().cloned()
    }

    /// Lets `n` held requests (`x-testkit-hold: 1`), current or future, answer.
    pub fn release_held(&self, n: usize) {
        self.state.held.add_permits(n);
    }

    /// Zeroes the counters and forgets recorded requests.
    pub fn reset_counters(&self) {
        self.state.requests.store(0, Ordering::Relaxed);
        self.state.connections.store(0, Ordering::Relaxed);
        lock(&self.state.by_path).clear();
        lock(&self.state.recent).clear();
    }
}

async fn serve_http(listener: TcpListener, mut stop: StopSignal, state: Arc<State>) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.stopped() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or similar: back off rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        state.connections.fetch_add(1, Ordering::Relaxed);
        let state = Arc::clone(&state);
        let service = service_fn(move |req| handle(Arc::clone(&state), req));
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    // Let in-flight requests finish, bounded. Idle connections are not waited for: an h2 client whose
    // runtime is blocked (a test thread dropping this upstream) cannot answer the PING of h2's graceful
    // GOAWAY, so waiting for every connection would always take the whole grace period.
    let idle = async {
        while state.in_flight.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Time for the last responses to be written.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = tokio::time::timeout(GRACE, async {
        tokio::select! {
            () = graceful.shutdown() => {}
            () = idle => {}
        }
    })
    .await;
}

/// Returned by the service to make hyper drop the connection (h1) or reset the stream (h2).
#[derive(Debug, thiserror::Error)]
#[error("x-testkit-close asked to close the connection")]
struct CloseConnection;

/// Counts a request in flight until dropped (also when hyper cancels it).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn plain(status: StatusCode, name: &str, text: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(name) {
        resp.headers_mut().insert(UPSTREAM_HEADER, v);
    }
    resp
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, CloseConnection> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight::enter(&state.in_flight);
    let name = state.name.as_str();
    let path = req.uri().path().to_string();
    {
        let mut by_path = lock(&state.by_path);
        if let Some(n) = by_path.get_mut(&path) {
            *n += 1;
        } else if by_path.len() < MAX_PATHS {
            by_path.insert(path.clone(), 1);
        }
    }
    let close = header(&req, CLOSE_HEADER).is_some_and(|v| v.trim() == "1");
    let hold = header(&req, HOLD_HEADER).is_some_and(|v| v.trim() == "1");
    let status_header = header(&req, STATUS_HEADER).map(str::to_string);
    let delay_header = header(&req, DELAY_HEADER).map(str::to_string);
    let body_bytes_header = header(&req, BODY_BYTES_HEADER).map(str::to_string);
    let response_headers: Vec<(String, String)> = req
        .headers()
        .get_all(RESPONSE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();

    let mut headers_json = serde_json::Map::new();
    let mut headers = Vec::with_capacity(req.headers().len());
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers_json
            .entry(k.as_str())
            .and_modify(|old| {
                if let serde_json::Value::String(s) = old {
                    s.push(',');
                    s.push_str(&v);
                }
            })
            .or_insert_with(|| serde_json::Value::String(v.clone()));
        headers.push((k.as_str().to_string(), v));
    }
    // h2 carries the host in `:authority` (the URI), h1 in `host`.
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| header(&req, "host").map(str::to_string));
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_string);
    let version = format!("{:?}", req.version());

    let body_len = match Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes().len(),
        Err(e) => {
            return Ok(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                name,
                format!("testkit upstream {name}: reading the request body: {e}\n"),
            ));
        }
    };
    {
        let mut recent = lock(&state.recent);
        if recent.len() >= state.recent_cap {
            recent.pop_front();
        }
        recent.push_back(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            version: version.clone(),
            headers,
            body_len,
        });
    }

    let (behaviour, failing) = {
        let mut guard = lock(&state.behaviour);
        let failing = guard.1 > 0;
        if failing {
            guard.1 -= 1;
        }
        (guard.0.clone(), failing)
    };

    let delay = match delay_header {
        Some(ms) => match ms.trim().parse::<u64>() {
            Ok(ms) => Duration::from_millis(ms).min(MAX_DELAY),
            Err(_) => {
                return Ok(plain(
                    StatusCode::BAD_REQUEST,
                    name,
                    format!("testkit upstream {name}: bad {DELAY_HEADER}: {ms:?}\n"),
                ));
            }
        },
        None => behaviour.delay,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if hold && let Ok(Ok(permit)) = tokio::time::timeout(MAX_DELAY, state.held.acquire()).await {
        permit.forget();
    }
    if close {
        return Err(CloseConnection);
    }

    let status = if failing {
        behaviour.fail_status
    } else if let Some(s) = &status_header {
        match s.trim().parse::<u16>() {
            Ok(code) => code,
            Err(_) => {
                return Ok(plain(
                    StatusCode::BAD_REQUEST,
                    name,
                    format!("testkit upstream {name}: bad {STATUS_HEADER}: {s:?}\n"),
                ));
            }
        }
    } else {
        behaviour.status
    };
    let Ok(status) = StatusCode::from_u16(status) else {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            name,
            format!("testkit upstream {name}: status {status} is not a valid HTTP status\n"),
        ));
    };

    let (body, content_type) = match body_bytes_header {
        Some(n) => match n.trim().parse::<usize>() {
            Ok(n) if n <= MAX_RESPONSE_BODY => {
                (Bytes::from(vec![b'x'; n]), "application/octet-stream")
            }
            _ => {
                return Ok(plain(
                    StatusCode::BAD_REQUEST,
                    name,
                    format!(
                        "testkit upstream {name}: bad {BODY_BYTES_HEADER}: {n:?} (at most {MAX_RESPONSE_BODY})\n"
                    ),
                ));
            }
        },
        None => {
            let json = serde_json::json!({
                "upstream": name,
                "authority": authority,
                "method": method,
                "path": path,
                "query": query,
                "version": version,
                "headers": headers_json,
                "body_len": body_len,
            });
            (Bytes::from(json.to_string()), "application/json")
        }
    };
    let mut resp = plain(status, name, String::new());
    *resp.body_mut() = Full::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    for (n, v) in response_headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    Ok(resp)
}

// === impl TcpEcho ===

/// A TCP server on `127.0.0.1:<ephemeral>` that echoes every byte back, for TCP proxy tests. Stops on drop.
#[derive(Debug)]
pub struct TcpEcho {
    connections: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    server: ServerThread,
}

impl TcpEcho {
    /// Starts an echo server.
    pub fn start() -> Result<TcpEcho> {
        let connections = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (c, b) = (Arc::clone(&connections), Arc::clone(&bytes));
        let server = ServerThread::spawn("tcp-echo", move |listener, stop| {
            serve_echo(listener, stop, c, b)
        })?;
        Ok(TcpEcho {
            connections,
            bytes,
            server,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// Connections accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Bytes echoed.
    pub fn bytes_echoed(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// An echo server on a Unix domain socket at `path`, as a task of the caller's runtime (abort it, or
/// end the runtime, to stop it): for upstreams that proxies reach by `pipe` address.
pub fn spawn_unix_echo(path: &std::path::Path) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| crate::error::Error::io(format!("binding {}", path.display()), e))?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    }))
}

async fn serve_echo(
    listener: TcpListener,
    stop: StopSignal,
    connections: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
) {
    accept_each(listener, stop, move |mut stream, stop| {
        connections.fetch_add(1, Ordering::Relaxed);
        let bytes = Arc::clone(&bytes);
        async move {
            echo(&mut stream, &mut vec![0u8; 16 << 10], stop, Some(&bytes)).await;
            let _ = stream.shutdown().await;
        }
    })
    .await;
}

/// Accepts connections until `stop`, each handled by a task from `handle` (aborted at the stop).
pub(crate) async fn accept_each<F, Fut>(listener: TcpListener, mut stop: StopSignal, mut handle: F)
where
    F: FnMut(TcpStream, StopSignal) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.stopped() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors or similar: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tasks.spawn(handle(stream, stop.clone()));
    }
    tasks.abort_all();
}

/// Writes back every byte read until the peer closes, an error, or `stop`; `count` (if any) counts
/// them before they are written, so a client that got its echo sees the count.
async fn echo(
    stream: &mut TcpStream,
    buf: &mut [u8],
    mut stop: StopSignal,
    count: Option<&AtomicU64>,
) {
    loop {
        let n = tokio::select! {
            n = stream.read(buf) => n,
            () = stop.stopped() => break,
        };
        match n {
            Ok(n) if n > 0 => {
                if let Some(count) = count {
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
                if stream.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
}

// === impl UpgradeEcho ===

/// An HTTP/1.1 server for upgrade tests (WebSocket-style, without WebSocket framing): a request with
/// `Upgrade: X` gets `101 Switching Protocols` with `Upgrade: X`, then every byte is echoed; any other
/// request gets `200` with the body `no upgrade` and the connection closes. It records the head of
/// every request (see [`last_headers`](Self::last_headers)). Stops on drop.
#[derive(Debug)]
pub struct UpgradeEcho {
    heads: Arc<Mutex<VecDeque<String>>>,
    server: ServerThread,
}

impl UpgradeEcho {
    /// Starts the server on `127.0.0.1:<ephemeral>`.
    pub fn start() -> Result<UpgradeEcho> {
        let heads: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let recorded = Arc::clone(&heads);
        let server = ServerThread::spawn("upgrade-echo", move |listener, stop| {
            serve_upgrade_echo(listener, stop, recorded)
        })?;
        Ok(UpgradeEcho { heads, server })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The last request's request line (as `:request`) and headers (names lowercased, repeated
    /// values joined with `,`).
    pub fn last_headers(&self) -> Option<std::collections::BTreeMap<String, String>> {
        let head = lock(&self.heads).back().cloned()?;
        let mut lines = head.split("\r\n");
        let mut out = std::collections::BTreeMap::new();
        out.insert(":request".to_owned(), lines.next()?.to_owned());
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                out.entry(name.trim().to_ascii_lowercase())
                    .and_modify(|v: &mut String| {
                        v.push(',');
                        v.push_str(value.trim());
                    })
                    .or_insert_with(|| value.trim().to_owned());
            }
        }
        Some(out)
    }
}

/// Most request heads kept, and the longest one read.
const UPGRADE_ECHO_HEADS: usize = 64;
const UPGRADE_ECHO_MAX_HEAD: usize = 64 << 10;

async fn serve_upgrade_echo(
    listener: TcpListener,
    stop: StopSignal,
    heads: Arc<Mutex<VecDeque<String>>>,
) {
    accept_each(listener, stop, move |mut stream, mut stop| {
        let heads = Arc::clone(&heads);
        async move {
            let mut read = Vec::new();
            let mut buf = vec![0u8; 16 << 10];
            let end = loop {
                if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
                let n = tokio::select! {
                    n = stream.read(&mut buf) => n,
                    () = stop.stopped() => return,
                };
                match n {
                    Ok(n) if n > 0 && read.len() < UPGRADE_ECHO_MAX_HEAD => {
                        read.extend_from_slice(&buf[..n]);
                    }
                    _ => return,
                }
            };
            let head = String::from_utf8_lossy(&read[..end]).into_owned();
            let upgrade = head
                .split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("upgrade"))
                .map(|(_, v)| v.trim().to_owned());
            {
                let mut heads = lock(&heads);
                if heads.len() == UPGRADE_ECHO_HEADS {
                    heads.pop_front();
                }
                heads.push_back(head);
            }
            let Some(upgrade) = upgrade else {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nno upgrade",
                    )
                    .await;
                return;
            };
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: {upgrade}\r\nconnection: Upgrade\r\n\r\n"
            );
            if stream.write_all(answer.as_bytes()).await.is_err()
                || stream.write_all(&read[end + 4..]).await.is_err()
            {
                return;
            }
            echo(&mut stream, &mut buf, stop, None).await;
            let _ = stream.shutdown().await;
        }
    })
    .await;
}
