//! Access log lines in Envoy's default format, to standard output.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Request, Response, Version};

use crate::http::Exchange;

/// What is known of the request when it arrives (the request itself moves on upstream).
#[derive(Debug)]
pub struct RequestInfo {
    start: SystemTime,
    method: String,
    path: String,
    protocol: &'static str,
    forwarded_for: String,
    user_agent: String,
    request_id: String,
    authority: String,
    bytes_received: u64,
}

impl RequestInfo {
    pub fn new<B>(req: &Request<B>) -> RequestInfo {
        let h = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        RequestInfo {
            start: SystemTime::now(),
            method: req.method().to_string(),
            // Envoy logs a CONNECT (authority-form, no path) with `-`.
            path: if req.method() == http::Method::CONNECT {
                "-".to_owned()
            } else {
                req.uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned()
            },
            protocol: match req.version() {
                Version::HTTP_2 => "HTTP/2",
                Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
            forwarded_for: h("x-forwarded-for"),
            user_agent: h("user-agent"),
            request_id: h("x-request-id"),
            authority: req
                .uri()
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_else(|| h("host")),
            bytes_received: req
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }
}

impl RequestInfo {
    /// A request the connection manager never saw (refused by the codec, or abandoned mid-head):
    /// Envoy logs it with none of its headers, as HTTP/1.1.
    pub fn unparsed(start: SystemTime) -> RequestInfo {
        let none = || "-".to_owned();
        RequestInfo {
            start,
            method: none(),
            path: none(),
            protocol: "HTTP/1.1",
            forwarded_for: none(),
            user_agent: none(),
            request_id: none(),
            authority: none(),
            bytes_received: 0,
        }
    }
}

/// `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
/// %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%
/// "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"`
pub fn write<B>(info: &RequestInfo, resp: &Response<B>, exchange: &Exchange, duration: Duration) {
    let bytes_sent = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    write_line(info, resp.status().as_u16(), bytes_sent, exchange, duration);
}

/// [`write`](fn@write) from the status and the body's size; a tunnel's bytes (`exchange.tunnel_bytes`) count
/// as received and sent, as Envoy counts them.
pub fn write_line(
    info: &RequestInfo,
    status: u16,
    bytes_sent: u64,
    exchange: &Exchange,
    duration: Duration,
) {
    let (bytes_received, bytes_sent) = match exchange.tunnel_bytes {
        Some((received, sent)) => (info.bytes_received + received, bytes_sent + sent),
        None => (info.bytes_received, bytes_sent),
    };
    let service_time = exchange
        .upstream_service_time
        .map_or_else(|| "-".to_owned(), |t| t.as_millis().to_string());
    let line = format!(
        "[{}] \"{} {} {}\" {} {} {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\"\n",
        rfc3339_millis(info.start),
        info.method,
        info.path,
        info.protocol,
        status,
        exchange.flags.render(),
        bytes_received,
        bytes_sent,
        duration.as_millis(),
        service_time,
        info.forwarded_for,
        info.user_agent,
        info.request_id,
        info.authority,
        exchange.upstream_host.as_deref().unwrap_or("-"),
    );
    // One write per line, so lines from different workers do not interleave.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
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
    }
}
