//! Access log lines: each filter's logs (`proxy_model::access_log`), rendered for a request or a
//! TCP connection and written to their sinks, one write per line.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, Request, Uri, Version};
use proxy_model::access_log::{AccessLog, FieldValue, Fields, Operator, Sink};

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
    headers: HeaderMap,
}

impl RequestInfo {
    pub fn new<B>(req: &Request<B>) -> RequestInfo {
        RequestInfo {
            start: SystemTime::now(),
            head: Some(Head {
                method: req.method().clone(),
                uri: req.uri().clone(),
                headers: req.headers().clone(),
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
    fn header(&self, name: &str, downstream: &Downstream) -> Option<Cow<'_, str>> {
        let head = self.head.as_ref()?;
        let text = |v: &str| Some(Cow::Owned(v.to_owned()));
        match name {
            ":method" => Some(Cow::Borrowed(head.method.as_str())),
            // A CONNECT (authority-form) has no path.
            ":path" if head.method == Method::CONNECT => None,
            ":path" => Some(Cow::Borrowed(
                head.uri.path_and_query().map_or("/", |p| p.as_str()),
            )),
            ":authority" => match head.uri.authority() {
                Some(a) => Some(Cow::Borrowed(a.as_str())),
                None => head
                    .headers
                    .get(http::header::HOST)?
                    .to_str()
                    .ok()
                    .and_then(text),
            },
            ":scheme" => Some(Cow::Borrowed(match head.uri.scheme_str() {
                Some(s) => s,
                None if downstream.tls => "https",
                None => "http",
            })),
            _ => head.headers.get(name)?.to_str().ok().map(Cow::Borrowed),
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
        for log in logs {
            let line = log.format.render(self);
            write_to(&log.sink, line.as_bytes());
        }
    }
}

impl Fields for Line<'_> {
    fn value(&self, op: &Operator) -> FieldValue<'_> {
        use FieldValue::{Missing, Number, Text};
        fn text(s: Option<Cow<'_, str>>) -> FieldValue<'_> {
            s.map_or(FieldValue::Missing, FieldValue::Text)
        }
        fn owned(s: Option<String>) -> FieldValue<'static> {
            s.map_or(FieldValue::Missing, |s| FieldValue::Text(Cow::Owned(s)))
        }
        fn borrowed(s: Option<&str>) -> FieldValue<'_> {
            s.map_or(FieldValue::Missing, |s| FieldValue::Text(Cow::Borrowed(s)))
        }
        let exchange = self.exchange;
        let downstream = self.downstream;
        match op {
            Operator::StartTime(None) => Text(Cow::Owned(rfc3339_millis(self.info.start))),
            Operator::StartTime(Some(format)) => {
                Text(Cow::Owned(strftime(format, self.info.start)))
            }
            Operator::Request(name, alt) => text(
                self.info
                    .header(name, downstream)
                    .or_else(|| self.info.header(alt.as_deref()?, downstream)),
            ),
            Operator::Response(name, alt) => {
                let get = |n: &str| self.response?.get(n)?.to_str().ok();
                borrowed(get(name).or_else(|| get(alt.as_deref()?)))
            }
            Operator::Protocol => borrowed(self.info.protocol),
            Operator::ResponseCode => Number(u64::from(self.status)),
            Operator::ResponseFlags => Text(Cow::Owned(exchange.flags.render())),
            Operator::ResponseCodeDetails => text(exchange.details()),
            // Set by Envoy only when a filter closes the connection for a reason of its own.
            Operator::ConnectionTerminationDetails => Missing,
            Operator::UpstreamTransportFailureReason => {
                borrowed(exchange.upstream_failure.as_deref())
            }
            Operator::BytesReceived => Number(self.bytes_received),
            Operator::BytesSent => Number(self.bytes_sent),
            Operator::Duration => {
                Number(u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX))
            }
            Operator::UpstreamHost => borrowed(exchange.upstream_host.as_deref()),
            Operator::UpstreamCluster | Operator::UpstreamClusterRaw => {
                borrowed(exchange.upstream_cluster.as_deref())
            }
            Operator::UpstreamLocalAddress => owned(exchange.upstream_local.map(|a| a.to_string())),
            Operator::DownstreamLocalAddress => Text(Cow::Owned(downstream.local.to_string())),
            Operator::DownstreamLocalAddressWithoutPort => {
                Text(Cow::Owned(downstream.local.ip().to_string()))
            }
            Operator::DownstreamRemoteAddress => Text(Cow::Owned(downstream.peer.to_string())),
            Operator::DownstreamRemoteAddressWithoutPort => {
                Text(Cow::Owned(downstream.peer.ip().to_string()))
            }
            Operator::RequestedServerName => borrowed(downstream.server_name.as_deref()),
            Operator::RouteName => {
                borrowed(exchange.route_name.as_deref().filter(|n| !n.is_empty()))
            }
            Operator::Hostname => owned(hostname()),
        }
    }
}

/// How often buffered access log lines are written out unless the proxy says otherwise
/// (`--file-flush-interval-msec`; Envoy's default is 10 s).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// A sink's lines are written out once it holds this much (as Envoy's access log files).
const FLUSH_AT: usize = 64 * 1024;

/// Access log output, buffered per sink as Envoy buffers its access log files: lines go out when
/// a sink holds 64 KiB, at the flush interval (a thread of its own), and when the proxy stops. A
/// line costs an append to memory, not a system call.
struct Outputs {
    by_sink: Mutex<HashMap<Sink, Arc<Output>>>,
    interval_ms: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Output {
    pending: Mutex<Vec<u8>>,
    /// Held while writing out, so that lines leave in the order they came.
    writing: Mutex<Option<std::fs::File>>,
}

fn outputs() -> &'static Outputs {
    static OUTPUTS: OnceLock<Outputs> = OnceLock::new();
    OUTPUTS.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(|| {
                loop {
                    let ms = outputs()
                        .interval_ms
                        .load(std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(ms.max(1)));
                    flush();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("no access log flushing thread ({e}); lines go out by 64 KiB");
        }
        Outputs {
            by_sink: Mutex::default(),
            interval_ms: std::sync::atomic::AtomicU64::new(
                u64::try_from(DEFAULT_FLUSH_INTERVAL.as_millis()).unwrap_or(1000),
            ),
        }
    })
}

/// How often buffered lines are written out from now on.
pub fn set_flush_interval(interval: Duration) {
    let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    outputs()
        .interval_ms
        .store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Writes out every sink's buffered lines.
pub fn flush() {
    let all: Vec<(Sink, Arc<Output>)> = outputs()
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

/// Appends one line to a sink's buffer (whole, so lines from different workers do not interleave),
/// writing the buffer out when it is full.
fn write_to(sink: &Sink, line: &[u8]) {
    let output = {
        let mut by_sink = outputs()
            .by_sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match by_sink.get(sink) {
            Some(o) => o.clone(),
            None => by_sink.entry(sink.clone()).or_default().clone(),
        }
    };
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
            Sink::File(path) => {
                if file.is_none() {
                    match std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                    {
                        Ok(f) => *file = Some(f),
                        Err(e) => {
                            tracing::warn!("cannot open the access log {path}: {e}");
                            return;
                        }
                    }
                }
                file.as_mut().map_or(Ok(()), |f| f.write_all(&lines))
            }
        };
        if let Err(e) = written {
            tracing::warn!("cannot write the access log {sink:?}: {e}");
        }
    }
}

/// The machine's host name, as `%HOSTNAME%` gives it.
fn hostname() -> Option<String> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
    })
    .clone()
}

/// `t` in a `START_TIME(...)` format: the specifiers the config accepted (`%Y %m %d %H %M %S %s
/// %z %Z %%` and fractional seconds `%f`, `%1f`…`%9f`), in UTC.
fn strftime(format: &str, t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (year, month, day, h, m, s) = civil(since.as_secs());
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let digits = chars
            .next_if(char::is_ascii_digit)
            .and_then(|d| d.to_digit(10));
        match chars.next() {
            Some('f') => {
                let nanos = format!("{:09}", since.subsec_nanos());
                out.push_str(&nanos[..digits.unwrap_or(9) as usize]);
            }
            Some('Y') => out.push_str(&format!("{year:04}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('M') => out.push_str(&format!("{m:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('s') => out.push_str(&since.as_secs().to_string()),
            Some('z') => out.push_str("+0000"),
            Some('Z') => out.push_str("UTC"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// `2026-11-30T18:36:02.123Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (year, month, day, h, m, s) = civil(since.as_secs());
    format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        since.subsec_millis()
    )
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
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_150_162_123);
        assert_eq!(rfc3339_millis(t), "2026-12-01T18:36:02.123Z");
        assert_eq!(rfc3339(t), "2026-12-01T18:36:02Z");
        assert_eq!(
            strftime("%Y/%m/%d %H:%M:%S.%3f %s %z%%", t),
            "2026/12/01 18:36:02.123 1796150162 +0000%"
        );
    }
}
