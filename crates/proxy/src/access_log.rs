//! Access log lines: each filter's logs (`proxy_model::access_log`), rendered for a request or a
//! TCP connection and appended whole to their sinks' buffers, which are written out in bulk.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use proxy_model::access_log::{
    AccessLog, Fields, HeaderKey, Operator, Sink, Written, push_decimal,
};
use proxy_model::listener::{Listener, NetworkFilter};

use crate::http::{Downstream, Exchange};

/// What is known of the request when it arrives (the request itself moves on upstream).
#[derive(Debug)]
pub struct RequestInfo {
    start: SystemTime,
    /// The request's head as the connection manager saw it; `None` for a request it never saw
    /// (refused by the codec, abandoned mid-head) and for a TCP connection.
    head: Option<Head>,
    /// `HTTP/1.1`, `HTTP/2`; `None` for a TCP connection.
    protocol: Option<&'static str>,
    pub bytes_received: u64,
}

#[derive(Debug)]
struct Head {
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    /// The request headers the logs' formats read (not the whole map: a line reads a handful).
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl RequestInfo {
    /// What `logs` will need of `req`.
    pub fn new<B>(req: &Request<B>, logs: &[AccessLog]) -> RequestInfo {
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for name in logs.iter().flat_map(|log| &log.request_headers) {
            if let Some(value) = req.headers().get(name)
                && !headers.iter().any(|(n, _)| n == name)
            {
                headers.push((name.clone(), value.clone()));
            }
        }
        RequestInfo {
            start: SystemTime::now(),
            head: Some(Head {
                method: req.method().clone(),
                uri: req.uri().clone(),
                host: req.headers().get(http::header::HOST).cloned(),
                headers,
            }),
            protocol: Some(match req.version() {
                Version::HTTP_2 => "HTTP/2",
                Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            }),
            bytes_received: req
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }

    /// A request the connection manager never saw (refused by the codec, or abandoned mid-head):
    /// Envoy logs it with none of its headers, as HTTP/1.1.
    pub fn unparsed(start: SystemTime) -> RequestInfo {
        RequestInfo {
            start,
            head: None,
            protocol: Some("HTTP/1.1"),
            bytes_received: 0,
        }
    }

    /// A TCP proxy's connection: no request, no protocol.
    pub fn tcp(start: SystemTime) -> RequestInfo {
        RequestInfo {
            start,
            head: None,
            protocol: None,
            bytes_received: 0,
        }
    }

    /// A request header, or the pseudo-headers `:method`, `:path`, `:authority`, `:scheme`.
    fn header(&self, key: &HeaderKey, downstream: &Downstream) -> Option<&str> {
        let head = self.head.as_ref()?;
        if let Some(name) = &key.header {
            let (_, value) = head.headers.iter().find(|(n, _)| n == name)?;
            return value.to_str().ok();
        }
        match key.name.as_str() {
            ":method" => Some(head.method.as_str()),
            // A CONNECT (authority-form) has no path.
            ":path" if head.method == Method::CONNECT => None,
            ":path" => Some(head.uri.path_and_query().map_or("/", |p| p.as_str())),
            ":authority" => match head.uri.authority() {
                Some(a) => Some(a.as_str()),
                None => head.host.as_ref()?.to_str().ok(),
            },
            ":scheme" => Some(match head.uri.scheme_str() {
                Some(s) => s,
                None if downstream.tls => "https",
                None => "http",
            }),
            _ => None,
        }
    }
}

/// One line's worth: the request (or connection), its answer and what became of it.
#[derive(Debug)]
pub struct Line<'a> {
    pub info: &'a RequestInfo,
    /// 0 when there was none (a request abandoned, a TCP connection).
    pub status: u16,
    pub response: Option<&'a HeaderMap>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub exchange: &'a Exchange,
    pub duration: Duration,
    pub downstream: &'a Downstream,
}

impl Line<'_> {
    /// Renders the line in each of `logs`' formats and writes it to their sinks.
    pub fn write(&self, logs: &[AccessLog]) {
        thread_local! {
            // The line being rendered: one buffer per thread, not an allocation per line.
            static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        LINE.with_borrow_mut(|line| {
            for log in logs {
                line.clear();
                log.format.render(self, line);
                write_to(&log.sink, line.as_bytes());
            }
        });
    }
}

impl Fields for Line<'_> {
    fn write(&self, op: &Operator, out: &mut String) -> Written {
        let exchange = self.exchange;
        let downstream = self.downstream;
        let text = |out: &mut String, s: Option<&str>| match s {
            Some(s) => {
                out.push_str(s);
                Written::Text
            }
            None => Written::Missing,
        };
        let number = |out: &mut String, n: u64| {
            push_decimal(out, n);
            Written::Number
        };
        match op {
            Operator::StartTime(None) => {
                push_rfc3339_millis(out, self.info.start);
                Written::Text
            }
            Operator::StartTime(Some(format)) => {
                strftime(format, self.info.start, out);
                Written::Text
            }
            Operator::Request(key, alt) => text(
                out,
                self.info
                    .header(key, downstream)
                    .or_else(|| self.info.header(alt.as_ref()?, downstream)),
            ),
            Operator::Response(key, alt) => {
                let get = |k: &HeaderKey| self.response?.get(k.header.as_ref()?)?.to_str().ok();
                text(out, get(key).or_else(|| get(alt.as_ref()?)))
            }
            Operator::Protocol => text(out, self.info.protocol),
            Operator::ResponseCode => number(out, u64::from(self.status)),
            Operator::ResponseFlags => {
                exchange.flags.push_to(out);
                Written::Text
            }
            Operator::ResponseCodeDetails => text(out, exchange.details().as_deref()),
            // Set by Envoy only when a filter closes the connection for a reason of its own.
            Operator::ConnectionTerminationDetails => Written::Missing,
            Operator::UpstreamTransportFailureReason => {
                text(out, exchange.upstream_failure.as_deref())
            }
            Operator::BytesReceived => number(out, self.bytes_received),
            Operator::BytesSent => number(out, self.bytes_sent),
            Operator::Duration => number(
                out,
                u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            ),
            Operator::UpstreamHost => text(out, exchange.upstream_host.as_deref()),
            Operator::UpstreamCluster | Operator::UpstreamClusterRaw => {
                text(out, exchange.upstream_cluster.as_deref())
            }
            Operator::UpstreamLocalAddress => match exchange.upstream_local {
                Some(address) => {
                    push_address(out, address);
                    Written::Text
                }
                None => Written::Missing,
            },
            Operator::DownstreamLocalAddress => {
                push_address(out, downstream.local);
                Written::Text
            }
            Operator::DownstreamLocalAddressWithoutPort => {
                push_ip(out, downstream.local.ip());
                Written::Text
            }
            Operator::DownstreamRemoteAddress => {
                push_address(out, downstream.peer);
                Written::Text
            }
            Operator::DownstreamRemoteAddressWithoutPort => {
                push_ip(out, downstream.peer.ip());
                Written::Text
            }
            Operator::RequestedServerName => text(out, downstream.server_name.as_deref()),
            Operator::RouteName => text(
                out,
                exchange.route_name.as_deref().filter(|n| !n.is_empty()),
            ),
            Operator::Hostname => text(out, hostname()),
        }
    }
}

/// Appends `ip:port` (`[ip]:port` for IPv6), as `Display` writes it.
fn push_address(out: &mut String, address: SocketAddr) {
    match address {
        SocketAddr::V4(a) => {
            push_ip(out, IpAddr::V4(*a.ip()));
            out.push(':');
            push_decimal(out, u64::from(a.port()));
        }
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// Appends an IPv4 address octet by octet (the formatting machinery costs more than the line's
/// other fields together); IPv6 as `Display` writes it.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// How often buffered access log lines are written out unless the proxy says otherwise
/// (`--file-flush-interval-msec`; Envoy's default is 10 s).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(DEFAULT_FLUSH_INTERVAL_MS);
const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1000;

/// A sink's lines are written out once it holds this much (as Envoy's access log files).
const FLUSH_AT: usize = 64 * 1024;

/// Access log output, buffered per sink as Envoy buffers its access log files: lines go out when
/// a sink holds 64 KiB, at the flush interval (a thread of its own, started with the first line),
/// and when the proxy stops. A line costs an append to memory, not a system call.
#[derive(Default)]
struct Outputs {
    by_sink: Mutex<HashMap<Sink, Arc<Output>>>,
}

#[derive(Default)]
struct Output {
    pending: Mutex<Vec<u8>>,
    /// Held while writing out, so that lines leave in the order they came.
    writing: Mutex<Option<std::fs::File>>,
}

static OUTPUTS: OnceLock<Outputs> = OnceLock::new();

/// Milliseconds between flushes (see [`set_flush_interval`]).
static FLUSH_INTERVAL_MS: AtomicU64 = AtomicU64::new(DEFAULT_FLUSH_INTERVAL_MS);

/// The outputs, made (and the flushing thread started) by the first line logged.
fn outputs() -> &'static Outputs {
    OUTPUTS.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(|| {
                loop {
                    let ms = FLUSH_INTERVAL_MS.load(Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(ms.max(1)));
                    flush();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("no access log flushing thread ({e}); lines go out by 64 KiB");
        }
        Outputs::default()
    })
}

/// How often buffered lines are written out from now on.
pub fn set_flush_interval(interval: Duration) {
    let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    FLUSH_INTERVAL_MS.store(ms, Ordering::Relaxed);
}

/// Writes out every sink's buffered lines (none when nothing was ever logged).
pub fn flush() {
    let Some(outputs) = OUTPUTS.get() else {
        return;
    };
    let all: Vec<(Sink, Arc<Output>)> = outputs
        .by_sink
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(s, o)| (s.clone(), o.clone()))
        .collect();
    for (sink, output) in all {
        output.write_out(&sink);
    }
}

/// An access log file that cannot be opened for appending.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the access log {path}: {source}")]
pub struct OpenError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Opens every access log file of `listener`'s filters, as Envoy opens them when it takes the
/// listener in: a path that cannot be written to refuses the listener (at start, or NACKed over
/// LDS) rather than losing its lines one warning at a time. Files already open stay open.
pub fn open_files(listener: &Listener) -> Result<(), OpenError> {
    let chains = listener
        .filter_chains
        .iter()
        .chain(&listener.default_filter_chain);
    for chain in chains {
        let logs = match &chain.network {
            NetworkFilter::Http(hcm) => &hcm.access_log,
            NetworkFilter::Tcp(tcp) => &tcp.access_log,
        };
        for log in logs {
            if let Sink::File(path) = &log.sink {
                output(&log.sink).open(path)?;
            }
        }
    }
    Ok(())
}

/// The sink's output, made on first use.
fn output(sink: &Sink) -> Arc<Output> {
    let mut by_sink = outputs()
        .by_sink
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match by_sink.get(sink) {
        Some(o) => o.clone(),
        None => by_sink.entry(sink.clone()).or_default().clone(),
    }
}

/// Appends one line to a sink's buffer (whole, so lines from different workers do not interleave),
/// writing the buffer out when it is full.
fn write_to(sink: &Sink, line: &[u8]) {
    let output = output(sink);
    let full = {
        let mut pending = output
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pending.extend_from_slice(line);
        pending.len() >= FLUSH_AT
    };
    if full {
        output.write_out(sink);
    }
}

impl Output {
    /// Opens the file unless it is open.
    fn open(&self, path: &str) -> Result<(), OpenError> {
        open_in(
            &mut self.writing.lock().unwrap_or_else(PoisonError::into_inner),
            path,
        )
        .map(|_| ())
    }

    fn write_out(&self, sink: &Sink) {
        let mut file = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let lines =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if lines.is_empty() {
            return;
        }
        let written = match sink {
            Sink::Stdout => std::io::stdout().lock().write_all(&lines),
            Sink::Stderr => std::io::stderr().lock().write_all(&lines),
            Sink::File(path) => match open_in(&mut file, path) {
                Ok(f) => f.write_all(&lines),
                Err(e) => {
                    tracing::warn!("{e}");
                    return;
                }
            },
        };
        if let Err(e) = written {
            tracing::warn!("cannot write the access log {sink:?}: {e}");
        }
    }
}

/// The file in `slot`, opened for appending unless it is open.
fn open_in<'f>(
    slot: &'f mut Option<std::fs::File>,
    path: &str,
) -> Result<&'f mut std::fs::File, OpenError> {
    Ok(match slot {
        Some(file) => file,
        None => slot.insert(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| OpenError {
                    path: path.to_owned(),
                    source,
                })?,
        ),
    })
}

/// The machine's host name, as `%HOSTNAME%` gives it.
fn hostname() -> Option<&'static str> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
    })
    .as_deref()
}

/// `t` in a `START_TIME(...)` format: the specifiers the config accepted (`%Y %m %d %H %M %S %s
/// %z %Z %%` and fractional seconds `%f`, `%1f`…`%9f`), in UTC.
fn strftime(format: &str, t: SystemTime, out: &mut String) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (year, month, day, h, m, s) = civil(since.as_secs());
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let digits = chars
            .next_if(char::is_ascii_digit)
            .and_then(|d| d.to_digit(10));
        let _ = match chars.next() {
            Some('f') => {
                let nanos = format!("{:09}", since.subsec_nanos());
                out.push_str(&nanos[..digits.unwrap_or(9) as usize]);
                Ok(())
            }
            Some('Y') => write!(out, "{year:04}"),
            Some('m') => write!(out, "{month:02}"),
            Some('d') => write!(out, "{day:02}"),
            Some('H') => write!(out, "{h:02}"),
            Some('M') => write!(out, "{m:02}"),
            Some('S') => write!(out, "{s:02}"),
            Some('s') => write!(out, "{}", since.as_secs()),
            Some('z') => write!(out, "+0000"),
            Some('Z') => write!(out, "UTC"),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
}

/// Appends `2026-11-30T18:36:02.123Z`. The part up to the second is kept per thread and made
/// again only when the second changes, as Envoy caches its formatted time.
fn push_rfc3339_millis(out: &mut String, t: SystemTime) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != since.as_secs() {
            let (year, month, day, h, m, s) = civil(since.as_secs());
            prefix.clear();
            let _ = write!(
                prefix,
                "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}."
            );
            *second = since.as_secs();
        }
        out.push_str(prefix);
    });
    let millis = since.subsec_millis();
    out.extend([millis / 100, millis / 10 % 10, millis % 10].map(|d| char::from(b'0' + d as u8)));
    out.push('Z');
}

/// `2026-11-30T18:36:02Z` (UTC, whole seconds), as Envoy's config dump writes timestamps.
pub fn rfc3339(t: SystemTime) -> String {
    let (year, month, day, h, m, s) =
        civil(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Year, month, day, hour, minute, second (UTC) of `secs` since 1970-01-01.
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let millis = |t| {
            let mut out = String::new();
            push_rfc3339_millis(&mut out, t);
            out
        };
        assert_eq!(millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_150_162_123);
        assert_eq!(millis(t), "2026-12-01T18:36:02.123Z");
        // The same second from the thread's cache, then the next second made anew.
        assert_eq!(
            millis(t + Duration::from_millis(870)),
            "2026-12-01T18:36:02.993Z"
        );
        assert_eq!(
            millis(t + Duration::from_millis(877)),
            "2026-12-01T18:36:03.000Z"
        );
        assert_eq!(
            millis(t + Duration::from_millis(86_400_005)),
            "2026-12-02T18:36:02.128Z"
        );
        assert_eq!(rfc3339(t), "2026-12-01T18:36:02Z");
        let mut out = String::new();
        strftime("%Y/%m/%d %H:%M:%S.%3f %s %z%%", t, &mut out);
        assert_eq!(out, "2026/12/01 18:36:02.123 1796150162 +0000%");
    }
}
