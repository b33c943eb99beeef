//! What Envoy's HTTP/1 codec refuses, or changes, before its connection manager sees a request, for
//! the requests hyper's parser lets through: a transfer coding other than a single `chunked`, a
//! method outside the codec's list, a request target that is no path, a `Host` with characters an
//! authority may not have; and an `h2c` upgrade, which Envoy drops to answer over HTTP/1.1.
//!
//! What hyper itself refuses it answers itself (400, 431). Two request-smuggling shapes hyper takes
//! safely where Envoy refuses them (400): both `Content-Length` and `Transfer-Encoding` (hyper reads
//! the body by its transfer coding, drops the length and closes the connection after, as RFC 9112
//! §6.1 allows), and a `Content-Length` repeated with the same value (hyper keeps one).

use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};

/// Why a request is refused, as Envoy's codec refuses it: the status (its reason phrase is the
/// body) and the response code details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub details: &'static str,
}

const fn refused(status: StatusCode, details: &'static str) -> Option<Refusal> {
    Some(Refusal { status, details })
}

/// The methods Envoy's HTTP/1 parser takes (a custom one needs `allow_custom_methods`, which Bosun
/// does not implement).
const METHODS: [&str; 33] = [
    "DELETE",
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "COPY",
    "LOCK",
    "MKCOL",
    "MOVE",
    "PROPFIND",
    "PROPPATCH",
    "SEARCH",
    "UNLOCK",
    "BIND",
    "REBIND",
    "UNBIND",
    "ACL",
    "REPORT",
    "MKACTIVITY",
    "CHECKOUT",
    "MERGE",
    "NOTIFY",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "PATCH",
    "PURGE",
    "MKCALENDAR",
    "LINK",
    "UNLINK",
    "SOURCE",
];

/// Why Envoy's codec would refuse this HTTP/1 request, if it would.
pub fn refusal<B>(req: &Request<B>) -> Option<Refusal> {
    let headers = req.headers();
    // The usual methods without comparing strings; the rest against the codec's list.
    let known = matches!(
        *req.method(),
        Method::GET | Method::POST | Method::PUT | Method::DELETE | Method::HEAD | Method::PATCH
    ) || METHODS.contains(&req.method().as_str());
    if !known {
        return refused(StatusCode::BAD_REQUEST, "http1.codec_error");
    }
    // One pass over the few headers a request has, cheaper than a lookup for each name.
    let (mut transfer_encoding, mut bad_host) = (false, false);
    for (name, value) in headers {
        if name == header::HOST {
            bad_host |= !valid_authority(value.as_bytes());
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoding = true;
        }
    }
    if transfer_encoding && !only_chunked(headers) {
        return refused(
            StatusCode::NOT_IMPLEMENTED,
            "http1.invalid_transfer_encoding",
        );
    }
    // A target in authority form (`GET example.com`) is CONNECT's alone.
    let uri = req.uri();
    if req.method() != Method::CONNECT && uri.scheme().is_none() && uri.authority().is_some() {
        return refused(StatusCode::BAD_REQUEST, "http1.codec_error");
    }
    if bad_host {
        return refused(StatusCode::BAD_REQUEST, "http.invalid_authority");
    }
    None
}

/// `Transfer-Encoding` is exactly `chunked` (in any case): one coding, once.
pub fn only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = tokens(headers, header::TRANSFER_ENCODING);
    matches!(
        (codings.next(), codings.next()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked")
    )
}

/// The comma-separated tokens of every `name` header, trimmed (empty ones included).
pub fn tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

/// Whether a `name` header lists `token` (case-insensitive), as `Connection: keep-alive`.
pub fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Characters an authority may have (RFC 3986: unreserved, sub-delims, `:`, `@`, `[`, `]`, and
/// `%` for escapes), as Envoy checks `Host`.
fn valid_authority(host: &[u8]) -> bool {
    host.iter().all(|&b| AUTHORITY_BYTES[usize::from(b)])
}

/// The bytes [`valid_authority`] takes, as a table (it runs on every request).
static AUTHORITY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=:@[]%";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// An HTTP/1 request with no `Host` and no authority in its target (Envoy answers 400,
/// `missing_host_header`; HTTP/1.0 too, unless given a default host).
pub fn missing_host<B>(req: &Request<B>) -> bool {
    matches!(
        req.version(),
        http::Version::HTTP_11 | http::Version::HTTP_10
    ) && req.uri().authority().is_none()
        && !req.headers().contains_key(header::HOST)
}

/// Gives an HTTP/1.0 request with no `Host` and no authority in its target the connection
/// manager's `default_host_for_http_10`, as Envoy's codec does before routing.
pub fn give_default_host<B>(req: &mut Request<B>, default: Option<&HeaderValue>) {
    if let Some(host) = default
        && req.version() == http::Version::HTTP_10
        && req.uri().authority().is_none()
        && !req.headers().contains_key(header::HOST)
    {
        req.headers_mut().insert(header::HOST, host.clone());
    }
}

/// Whether an HTTP/1.0 request asks to keep its connection (`Connection: keep-alive`); without
/// that its connection closes after the answer, which then says `connection: close` as Envoy's.
pub fn http10_keeps_alive(headers: &HeaderMap) -> bool {
    has_token(headers, header::CONNECTION, "keep-alive")
}

/// Whether an upgrade type is `h2c`, which [`drop_h2c_upgrade`] drops.
pub fn is_h2c(upgrade: &str) -> bool {
    upgrade.trim().eq_ignore_ascii_case("h2c")
}

/// Drops an `h2c` upgrade (`Upgrade: h2c`, `HTTP2-Settings` and their `Connection` tokens): Envoy
/// does not switch a connection to HTTP/2 and answers such a request over HTTP/1.1, as `curl
/// --http2` expects of a server that does not. The caller found the upgrade to be `h2c`.
pub fn drop_h2c_upgrade(headers: &mut HeaderMap) {
    headers.remove(header::UPGRADE);
    headers.remove("http2-settings");
    let kept: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case("upgrade")
                && !t.eq_ignore_ascii_case("http2-settings")
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::CONNECTION);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join(", "))
    {
        headers.insert(header::CONNECTION, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("a request")
    }

    fn details(method: &str, target: &str, headers: &[(&str, &str)]) -> Option<&'static str> {
        refusal(&request(method, target, headers)).map(|r| r.details)
    }

    #[test]
    fn transfer_codings_other_than_one_chunked_are_refused() {
        let host = ("host", "a");
        assert_eq!(details("POST", "/", &[host, ("content-length", "5")]), None);
        for ok in ["chunked", "Chunked", " chunked "] {
            assert_eq!(
                details("POST", "/", &[host, ("transfer-encoding", ok)]),
                None,
                "{ok}"
            );
        }
        for bad in ["chunked, chunked", "gzip, chunked", "identity"] {
            let r = refusal(&request("POST", "/", &[host, ("transfer-encoding", bad)]));
            assert_eq!(
                r,
                Some(Refusal {
                    status: StatusCode::NOT_IMPLEMENTED,
                    details: "http1.invalid_transfer_encoding"
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn methods_targets_and_hosts_are_envoys() {
        let host = ("host", "a");
        for ok in ["GET", "PURGE", "PROPFIND", "SOURCE"] {
            assert_eq!(details(ok, "/", &[host]), None, "{ok}");
        }
        for bad in ["FOO", "QUERY", "M-SEARCH"] {
            assert_eq!(
                details(bad, "/", &[host]),
                Some("http1.codec_error"),
                "{bad}"
            );
        }
        assert_eq!(
            details("GET", "example.com", &[host]),
            Some("http1.codec_error")
        );
        assert_eq!(details("CONNECT", "example.com:443", &[host]), None);
        assert_eq!(details("GET", "http://b/x", &[host]), None);
        assert_eq!(details("OPTIONS", "*", &[host]), None);
        assert_eq!(
            details("GET", "/", &[("host", "a b")]),
            Some("http.invalid_authority")
        );
        assert_eq!(details("GET", "/", &[("host", "[::1]:80")]), None);
        assert!(missing_host(&request("GET", "/", &[])));
        assert!(!missing_host(&request("GET", "http://b/x", &[])));
        assert!(!missing_host(&request("GET", "/", &[host])));
    }

    #[test]
    fn an_h2c_upgrade_is_dropped_and_other_connection_tokens_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAAP__"),
        );
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, HTTP2-Settings, keep-alive"),
        );
        drop_h2c_upgrade(&mut headers);
        assert!(!headers.contains_key(header::UPGRADE));
        assert!(!headers.contains_key("http2-settings"));
        assert_eq!(headers[header::CONNECTION], "keep-alive");
        assert!(is_h2c("h2c") && is_h2c(" H2C "));
        assert!(!is_h2c("websocket"));
    }
}
