//! `bosun demo-app`: the built-in test workload (Istio's httpbin/echo samples in one). It answers every
//! request with a JSON echo of what it received and who it is, can call other services first (Bookinfo's
//! productpage → details/reviews → ratings), forwarding the trace headers as Bookinfo does, and can be told
//! to fail or to be slow. `bosun up` runs one per workload instance; tests run it too.
//!
//! Outgoing calls go through the sidecar named by `HTTP_PROXY` (absolute-form requests), as apps do when
//! `bosun up` runs a mesh on one machine without traffic capture.

use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;

/// Largest callee response body read; a larger one fails the call.
const MAX_CALL_BODY: usize = 1 << 20;
/// Longest `/delay/MS`.
const MAX_DELAY_MS: u64 = 30_000;
/// After SIGTERM, how long in-flight requests get before the process exits anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections served at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// A client must send its request headers within this (slow clients cannot pin connections).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Incoming headers copied onto outgoing calls: tracing (Bookinfo's list) and the user, so that
/// `end-user: jason` routes hold along the whole call chain.
const FORWARDED_HEADERS: [&str; 15] = [
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "end-user",
    "user-agent",
    "cookie",
];

/// `bosun demo-app` flags. Each may also come from its environment variable; a flag wins.
#[derive(Debug, clap::Args)]
pub struct DemoAppArgs {
    /// Address to serve on, IP:PORT; repeat or separate with commas to serve on several.
    #[arg(
        long,
        env = "BOSUN_LISTEN",
        value_delimiter = ',',
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:9080"
    )]
    listen: Vec<SocketAddr>,
    /// The service this instance belongs to (answered in `service` and `x-demo-service`).
    #[arg(long, env = "BOSUN_SERVICE", default_value = "demo-app")]
    service: String,
    /// Its version (answered in `version` and `x-demo-version`).
    #[arg(long, env = "BOSUN_VERSION", default_value = "v1")]
    version: String,
    /// Its instance id (answered in `instance` and `x-demo-instance`); default SERVICE-VERSION.
    #[arg(long, env = "BOSUN_INSTANCE")]
    instance: Option<String>,
    /// SERVICE[:PORT]/PATH to call, in order, before answering an ordinary path (repeatable;
    /// BOSUN_CALLS is comma-separated), e.g. `details:9080/details/0`.
    #[arg(
        long = "call",
        env = "BOSUN_CALLS",
        value_delimiter = ',',
        value_name = "TARGET"
    )]
    calls: Vec<String>,
    /// Fraction of requests (0 to 1) answered with --fail-status instead.
    #[arg(long, env = "BOSUN_FAIL_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    fail_rate: f64,
    /// The status of injected failures.
    #[arg(long, env = "BOSUN_FAIL_STATUS", default_value_t = 500,
          value_parser = clap::value_parser!(u16).range(200..=599))]
    fail_status: u16,
    /// Milliseconds added to every answer (except /healthz).
    #[arg(long, env = "BOSUN_LATENCY_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=MAX_DELAY_MS))]
    latency_ms: u64,
    /// Bound on each outgoing call (connect, request and the whole response).
    #[arg(long, env = "BOSUN_CALL_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    call_timeout_ms: u64,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        Ok(_) => Err("must be between 0 and 1".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs the demo app until SIGTERM or Ctrl-C. Errors (bad flags or environment) exit 2 via `main`; a
/// listen address that cannot be bound exits 1.
pub fn run(args: DemoAppArgs) -> Result<ExitCode> {
    let listen = args.listen.clone();
    let app = Arc::new(App::new(args, &EnvVars)?);
    // One thread is plenty for a test workload, and many run on one machine under `bosun up`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(app, &listen))
}

// === impl App ===

/// Where the process environment comes from (a trait so that unit tests need not set variables).
trait Env {
    fn get(&self, name: &str) -> Option<String>;

    /// The first of `names` that is set and not empty.
    fn first(&self, names: &[&str]) -> Option<(String, String)> {
        names.iter().find_map(|n| {
            self.get(n)
                .filter(|v| !v.trim().is_empty())
                .map(|v| ((*n).to_string(), v))
        })
    }
}

#[derive(Debug)]
struct EnvVars;

impl Env for EnvVars {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// The validated configuration, shared by all requests.
#[derive(Debug)]
struct App {
    service: String,
    version: String,
    instance: String,
    /// `x-demo-service`, `x-demo-version`, `x-demo-instance`, checked once.
    identity_headers: [(HeaderName, HeaderValue); 3],
    calls: Vec<Target>,
    fail_rate: f64,
    fail_status: StatusCode,
    latency: Duration,
    call_timeout: Duration,
    proxy: Option<HttpProxy>,
    no_proxy: NoProxy,
    forwarded: Vec<HeaderName>,
}

impl App {
    fn new(args: DemoAppArgs, env: &dyn Env) -> Result<App> {
        let instance = args
            .instance
            .filter(|i| !i.trim().is_empty())
            .unwrap_or_else(|| format!("{}-{}", args.service, args.version));
        let header = |name: &'static str, flag: &str, value: &str| {
            HeaderValue::from_str(value)
                .map(|v| (HeaderName::from_static(name), v))
                .map_err(|_| {
                    anyhow!("{flag} {value:?}: must be printable ASCII (it is sent as a header)")
                })
        };
        let identity_headers = [
            header("x-demo-service", "--service", &args.service)?,
            header("x-demo-version", "--version", &args.version)?,
            header("x-demo-instance", "--instance", &instance)?,
        ];
        let calls = args
            .calls
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .map(|c| Target::parse(c).map_err(|e| anyhow!("--call {c:?}: {e}")))
            .collect::<Result<Vec<_>>>()?;
        let fail_status = StatusCode::from_u16(args.fail_status)
            .with_context(|| format!("--fail-status {}", args.fail_status))?;
        let proxy = match env.first(&["HTTP_PROXY", "http_proxy"]) {
            Some((name, value)) => {
                Some(HttpProxy::parse(&value).map_err(|e| anyhow!("{name}={value:?}: {e}"))?)
            }
            None => None,
        };
        let no_proxy = env
            .first(&["NO_PROXY", "no_proxy"])
            .map_or_else(NoProxy::default, |(_, v)| NoProxy::parse(&v));
        Ok(App {
            service: args.service,
            version: args.version,
            instance,
            identity_headers,
            calls,
            fail_rate: args.fail_rate,
            fail_status,
            latency: Duration::from_millis(args.latency_ms),
            call_timeout: Duration::from_millis(args.call_timeout_ms),
            proxy,
            no_proxy,
            forwarded: FORWARDED_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
        })
    }
}

// === serving ===

async fn serve(app: Arc<App>, listen: &[SocketAddr]) -> Result<ExitCode> {
    // Registered before binding so that a SIGTERM right after start is a clean stop, not a kill.
    let mut term = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch for SIGINT")?;
    let mut listeners = Vec::with_capacity(listen.len());
    for addr in listen {
        match TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("bosun demo-app: cannot listen on {addr}: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut next = 0usize;
    loop {
        let permit = tokio::select! {
            biased;
            _ = term.recv() => break,
            _ = int.recv() => break,
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = term.recv() => break,
            _ = int.recv() => break,
            r = poll_fn(|cx| poll_accept_any(&listeners, &mut next, cx)) => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                eprintln!("bosun demo-app: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let svc = service_fn(move |req| handle(Arc::clone(&app), req));
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listeners);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    Ok(ExitCode::SUCCESS)
}

/// Accepts from whichever listener is ready, starting after the last one served (fairness).
fn poll_accept_any(
    listeners: &[TcpListener],
    next: &mut usize,
    cx: &mut TaskContext<'_>,
) -> Poll<std::io::Result<(TcpStream, SocketAddr)>> {
    let n = listeners.len();
    for i in 0..n {
        let idx = (*next + i) % n;
        if let Some(l) = listeners.get(idx)
            && let Poll::Ready(r) = l.poll_accept(cx)
        {
            *next = idx + 1;
            return Poll::Ready(r);
        }
    }
    Poll::Pending
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let start = Instant::now();
    let resp = answer(&app, &req).await;
    // One access-log line per request; a closed stdout must not take the app down.
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let line = format!(
        "{} {} {} {}ms\n",
        req.method(),
        path,
        resp.status().as_u16(),
        start.elapsed().as_millis()
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
    Ok(resp)
}

/// What the request asked for, from its path.
#[derive(Debug, PartialEq)]
enum Action {
    Health,
    /// The `--call` targets, then echo.
    Echo,
    Status(StatusCode),
    Delay(Duration),
    /// One ad hoc call: `/call/SERVICE[:PORT]/PATH`.
    Call(Target),
    /// A special path with a bad argument: 400 saying why.
    Bad(String),
}

impl Action {
    fn of(uri: &Uri) -> Action {
        let path = uri.path();
        if path == "/healthz" {
            return Action::Health;
        }
        if let Some(code) = path.strip_prefix("/status/") {
            return match code.parse::<u16>() {
                Ok(c @ 100..=199) => Action::Bad(format!(
                    "/status/{c}: a 1xx status is informational and cannot be the final answer"
                )),
                Ok(c @ 200..=599) => match StatusCode::from_u16(c) {
                    Ok(s) => Action::Status(s),
                    Err(e) => Action::Bad(format!("/status/{c}: {e}")),
                },
                _ => Action::Bad(format!(
                    "/status/{code}: the status must be a number from 100 to 599"
                )),
            };
        }
        if let Some(ms) = path.strip_prefix("/delay/") {
            return match ms.parse::<u64>() {
                Ok(ms) if ms <= MAX_DELAY_MS => Action::Delay(Duration::from_millis(ms)),
                _ => Action::Bad(format!(
                    "/delay/{ms}: the delay must be a number of milliseconds from 0 to {MAX_DELAY_MS}"
                )),
            };
        }
        if let Some(rest) = path.strip_prefix("/call/") {
            let target = match uri.query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_string(),
            };
            return match Target::parse(&target) {
                Ok(t) => Action::Call(t),
                Err(e) => Action::Bad(format!("/call/{rest}: {e}")),
            };
        }
        Action::Echo
    }
}

async fn answer(app: &App, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let action = Action::of(req.uri());
    if action == Action::Health {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        add_identity(app, &mut resp);
        return resp;
    }
    if !app.latency.is_zero() {
        tokio::time::sleep(app.latency).await;
    }
    // Injected failures happen before any call, as a crashing app would not call on.
    if app.fail_rate > 0.0 && rand::random::<f64>() < app.fail_rate {
        let body = echo(app, req, Vec::new(), Some("injected failure (--fail-rate)"));
        return json_response(app, req, app.fail_status, &body);
    }
    let (status, calls, error) = match action {
        Action::Health | Action::Echo => {
            let mut outcomes = Vec::with_capacity(app.calls.len());
            for target in &app.calls {
                outcomes.push(call(app, target, req.headers()).await);
            }
            (status_of(&outcomes), outcomes, None)
        }
        Action::Status(s) => (s, Vec::new(), None),
        Action::Delay(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, Vec::new(), None)
        }
        Action::Call(target) => {
            let outcomes = vec![call(app, &target, req.headers()).await];
            (status_of(&outcomes), outcomes, None)
        }
        Action::Bad(why) => (StatusCode::BAD_REQUEST, Vec::new(), Some(why)),
    };
    let calls = calls.into_iter().map(CallOutcome::into_json).collect();
    let body = echo(app, req, calls, error.as_deref());
    json_response(app, req, status, &body)
}

/// 200 when every call succeeded; else the first failed call's status, or 502 when it got no answer, so
/// that a failure deep in a call chain shows at the top.
fn status_of(outcomes: &[CallOutcome]) -> StatusCode {
    outcomes
        .iter()
        .find(|o| o.error.is_some())
        .map_or(StatusCode::OK, |o| match o.status {
            Some(s) if !s.is_success() => s,
            _ => StatusCode::BAD_GATEWAY,
        })
}

fn echo(app: &App, req: &Request<Incoming>, calls: Vec<Value>, error: Option<&str>) -> Value {
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        match headers.get_mut(name.as_str()) {
            Some(Value::String(s)) => {
                s.push_str(", ");
                s.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_string(), Value::String(value.into_owned()));
            }
        }
    }
    // h2 and absolute-form requests carry the authority in the URI, HTTP/1.1 in `Host`.
    let host = req.uri().authority().map_or_else(
        || {
            req.headers()
                .get(HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
                .unwrap_or_default()
        },
        |a| a.as_str().to_string(),
    );
    let mut body = json!({
        "service": app.service,
        "version": app.version,
        "instance": app.instance,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query().unwrap_or(""),
        "host": host,
        "headers": headers,
        "calls": calls,
    });
    if let (Some(error), Some(obj)) = (error, body.as_object_mut()) {
        obj.insert("error".to_string(), Value::String(error.to_string()));
    }
    body
}

fn json_response(
    app: &App,
    req: &Request<Incoming>,
    status: StatusCode,
    body: &Value,
) -> Response<Full<Bytes>> {
    let no_body = req.method() == Method::HEAD
        || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let bytes = if no_body {
        Bytes::new()
    } else {
        let mut v = serde_json::to_vec(body).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    };
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    add_identity(app, &mut resp);
    resp
}

fn add_identity(app: &App, resp: &mut Response<Full<Bytes>>) {
    for (name, value) in &app.identity_headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
}

// === outgoing calls ===

/// A call target, `SERVICE[:PORT]/PATH[?QUERY]`, requested as `http://SERVICE[:PORT]/PATH[?QUERY]`.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    /// As given (without a leading `http://`).
    spec: String,
    /// The host to resolve (IPv6 without brackets).
    host: String,
    port: u16,
    /// `SERVICE[:PORT]` as written: the `Host` header.
    authority: String,
    /// The origin-form request target, `/PATH[?QUERY]`.
    path: String,
}

impl Target {
    fn parse(s: &str) -> Result<Target, String> {
        let spec = s.trim();
        let spec = spec.strip_prefix("http://").unwrap_or(spec);
        if spec.contains("://") {
            return Err("only http:// targets are supported".to_string());
        }
        let (authority, path) = match spec.find(['/', '?']) {
            Some(i) => spec.split_at(i),
            None => (spec, ""),
        };
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let (host, port) = split_host_port(authority)?;
        let port = port.unwrap_or(80);
        // The URI parser is the final judge of what may go on the request line.
        let path_uri: Uri = path
            .parse()
            .map_err(|e| format!("bad path {path:?}: {e}"))?;
        if path_uri.authority().is_some() || path_uri.scheme().is_some() {
            return Err(format!("bad path {path:?}"));
        }
        format!("http://{authority}{path}")
            .parse::<Uri>()
            .map_err(|e| format!("not a valid URL: {e}"))?;
        Ok(Target {
            spec: spec.to_string(),
            host,
            port,
            authority: authority.to_string(),
            path,
        })
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

/// `HOST[:PORT]` or `[IPV6][:PORT]` → host (lowercase, without brackets) and port.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let bad_port = |p: &str| format!("bad port {p:?} (expected a number from 1 to 65535)");
    let parse_port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad_port(p)),
        Ok(n) => Ok(n),
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in {authority:?}"))?;
        let port = match after {
            "" => None,
            p => Some(parse_port(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after ']'"))?,
            )?),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(parse_port(p)?)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("missing the service (host) name".to_string());
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
    if !host.chars().all(ok) {
        return Err(format!("bad host name {host:?}"));
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// The HTTP proxy (the sidecar) from `HTTP_PROXY`: `[http://]HOST[:PORT][/]`.
#[derive(Debug, Clone, PartialEq)]
struct HttpProxy {
    host: String,
    port: u16,
}

impl HttpProxy {
    fn parse(s: &str) -> Result<HttpProxy, String> {
        let s = s.trim();
        let rest = s.strip_prefix("http://").unwrap_or(s);
        if rest.contains("://") {
            return Err("only http:// proxies are supported".to_string());
        }
        let authority = rest.split('/').next().unwrap_or(rest);
        if authority.contains('@') {
            return Err("proxy credentials are not supported".to_string());
        }
        let (host, port) = split_host_port(authority)?;
        Ok(HttpProxy {
            host,
            port: port.unwrap_or(80),
        })
    }
}

/// `NO_PROXY`: hosts reached directly. Comma-separated; `*` is every host; `example.com`, `.example.com`
/// and `*.example.com` match it and its subdomains; `HOST:PORT` only that port.
#[derive(Debug, Clone, Default, PartialEq)]
struct NoProxy {
    all: bool,
    entries: Vec<(String, Option<u16>)>,
}

impl NoProxy {
    fn parse(s: &str) -> NoProxy {
        let mut no = NoProxy::default();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                no.all = true;
                continue;
            }
            let entry = entry.trim_start_matches("*.").trim_start_matches('.');
            // Unparseable entries are skipped: a typo must not send traffic around the sidecar.
            if let Ok((host, port)) = split_host_port(entry) {
                no.entries.push((host, port));
            } else if let Ok((host, None)) = split_host_port(&format!("[{entry}]")) {
                no.entries.push((host, None)); // a bare IPv6 address
            }
        }
        no
    }

    fn bypasses(&self, host: &str, port: u16) -> bool {
        self.all
            || self.entries.iter().any(|(h, p)| {
                p.is_none_or(|p| p == port)
                    && (host == h
                        || host
                            .strip_suffix(h.as_str())
                            .is_some_and(|prefix| prefix.ends_with('.')))
            })
    }
}

/// What became of one call, for the `calls` array.
#[derive(Debug)]
struct CallOutcome {
    target: String,
    url: String,
    status: Option<StatusCode>,
    body: Value,
    error: Option<String>,
}

impl CallOutcome {
    fn into_json(self) -> Value {
        let mut v = json!({
            "target": self.target,
            "url": self.url,
            "status": self.status.map(|s| s.as_u16()),
            "body": self.body,
        });
        if let (Some(e), Some(obj)) = (self.error, v.as_object_mut()) {
            obj.insert("error".to_string(), Value::String(e));
        }
        v
    }
}

async fn call(app: &App, target: &Target, incoming: &HeaderMap) -> CallOutcome {
    let proxy = app
        .proxy
        .as_ref()
        .filter(|_| !app.no_proxy.bypasses(&target.host, target.port));
    let url = target.url();
    let mut outcome = CallOutcome {
        target: target.spec.clone(),
        url: url.clone(),
        status: None,
        body: Value::Null,
        error: None,
    };
    let via = proxy.map_or_else(String::new, |p| {
        format!(" through the proxy {}:{}", p.host, p.port)
    });
    let result =
        tokio::time::timeout(app.call_timeout, fetch(app, target, proxy, &url, incoming)).await;
    match result {
        Err(_) => {
            outcome.error = Some(format!(
                "{url}{via}: no answer within {} ms",
                app.call_timeout.as_millis()
            ));
        }
        Ok(Err(e)) => outcome.error = Some(format!("{url}{via}: {e:#}")),
        Ok(Ok((status, body))) => {
            outcome.status = Some(status);
            outcome.body = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
            if !status.is_success() {
                outcome.error = Some(format!("{url}{via}: answered {status}"));
            }
        }
    }
    outcome
}

/// One GET over a new HTTP/1.1 connection: absolute-form to the proxy, origin-form directly. The caller
/// bounds it in time; the body is bounded here.
async fn fetch(
    app: &App,
    target: &Target,
    proxy: Option<&HttpProxy>,
    url: &str,
    incoming: &HeaderMap,
) -> Result<(StatusCode, Bytes)> {
    let (host, port, request_target) = match proxy {
        Some(p) => (p.host.as_str(), p.port, url),
        None => (target.host.as_str(), target.port, target.path.as_str()),
    };
    let stream = connect(host, port).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    // The connection task dies with this call, whether it ends or times out.
    let conn = AbortOnDrop(tokio::spawn(conn));
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = request_target
        .parse()
        .with_context(|| format!("bad request target {request_target:?}"))?;
    let headers = req.headers_mut();
    headers.insert(
        HOST,
        HeaderValue::from_str(&target.authority).context("bad Host header")?,
    );
    for name in &app.forwarded {
        for value in incoming.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let resp = sender
        .send_request(req)
        .await
        .context("sending the request")?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_CALL_BODY)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the response body (at most {MAX_CALL_BODY} bytes): {e}"))?
        .to_bytes();
    drop(conn);
    Ok((status, body))
}

/// Resolves `host` and connects to its addresses in turn (e.g. `localhost` is ::1 and 127.0.0.1).
async fn connect(host: &str, port: u16) -> Result<TcpStream> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(anyhow!("connect to {addr}: {e}")),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("{host} resolved to no address")))
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::fmt::Debug for AbortOnDrop<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AbortOnDrop")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("details:9080/details/0").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            ("details", 9080, "details:9080", "/details/0")
        );
        assert_eq!(t.url(), "http://details:9080/details/0");
        let t = Target::parse("http://ratings?x=1").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/?x=1"));
        assert_eq!(t.url(), "http://ratings/?x=1");
        let t = Target::parse("[::1]:8080/a").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        for bad in [
            "",
            ":80/x",
            "a:0/x",
            "a:99999/x",
            "a:b/x",
            "a b/x",
            "https://a/x",
            "[::1/x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn proxies_parse() {
        assert_eq!(
            HttpProxy::parse("http://127.0.0.1:15001/").unwrap(),
            HttpProxy {
                host: "127.0.0.1".into(),
                port: 15001
            }
        );
        assert_eq!(HttpProxy::parse("sidecar").unwrap().port, 80);
        assert!(HttpProxy::parse("https://x:1").is_err());
        assert!(HttpProxy::parse("http://u:p@x:1").is_err());
    }

    #[test]
    fn no_proxy_matches_hosts_suffixes_ports_and_star() {
        let no = NoProxy::parse("localhost, .svc.local,*.corp, 10.0.0.1:8080, ::1");
        assert!(no.bypasses("localhost", 80));
        assert!(no.bypasses("a.svc.local", 80));
        assert!(no.bypasses("svc.local", 80));
        assert!(!no.bypasses("xsvc.local", 80));
        assert!(no.bypasses("b.corp", 1));
        assert!(no.bypasses("10.0.0.1", 8080));
        assert!(!no.bypasses("10.0.0.1", 80));
        assert!(no.bypasses("::1", 80));
        assert!(!no.bypasses("details", 9080));
        assert!(NoProxy::parse("a, *").bypasses("details", 9080));
        assert!(!NoProxy::parse("").bypasses("details", 9080));
    }

    #[test]
    fn special_paths() {
        let of = |s: &str| Action::of(&s.parse().unwrap());
        assert_eq!(of("/healthz"), Action::Health);
        assert_eq!(of("/productpage"), Action::Echo);
        assert_eq!(of("/status/418"), Action::Status(StatusCode::IM_A_TEAPOT));
        assert!(matches!(of("/status/600"), Action::Bad(_)));
        assert!(matches!(of("/status/101"), Action::Bad(_)));
        assert!(matches!(of("/status/x"), Action::Bad(_)));
        assert_eq!(of("/delay/20"), Action::Delay(Duration::from_millis(20)));
        assert!(matches!(of("/delay/30001"), Action::Bad(_)));
        let Action::Call(t) = of("/call/ratings:9080/ratings/0?u=1") else {
            panic!("a call");
        };
        assert_eq!(t.url(), "http://ratings:9080/ratings/0?u=1");
        assert!(matches!(of("/call/:80/x"), Action::Bad(_)));
    }

    #[test]
    fn first_failed_call_sets_the_status() {
        let o = |status: Option<u16>, failed: bool| CallOutcome {
            target: String::new(),
            url: String::new(),
            status: status.map(|s| StatusCode::from_u16(s).unwrap()),
            body: Value::Null,
            error: failed.then(String::new),
        };
        assert_eq!(status_of(&[]), StatusCode::OK);
        assert_eq!(
            status_of(&[o(Some(200), false), o(Some(503), true), o(None, true)]),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(&[o(None, true), o(Some(404), true)]),
            StatusCode::BAD_GATEWAY
        );
    }

    struct FakeEnv(&'static [(&'static str, &'static str)]);

    impl Env for FakeEnv {
        fn get(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_string())
        }
    }

    #[test]
    fn environment_proxy_settings() {
        use clap::Parser;
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: DemoAppArgs,
        }
        let args = || Cli::parse_from(["x", "--service", "a", "--call", "b:1/x,,c:2/y"]).args;
        let app = App::new(
            args(),
            &FakeEnv(&[("HTTP_PROXY", ""), ("http_proxy", "127.0.0.1:15001")]),
        )
        .unwrap();
        assert_eq!(app.instance, "a-v1");
        assert_eq!(app.calls.len(), 2);
        assert_eq!(app.proxy.as_ref().map(|p| p.port), Some(15001));
        let err = App::new(args(), &FakeEnv(&[("HTTP_PROXY", "https://x")])).unwrap_err();
        assert!(err.to_string().contains("HTTP_PROXY"), "{err}");
    }
}
