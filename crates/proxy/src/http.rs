//! The HTTP connection manager at run time: route a request, apply faults, forward it to a cluster
//! with retries and timeouts, and answer locally (with Envoy's status codes, bodies and response
//! flags) when it cannot be forwarded.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{CaptureConnection, capture_connection};
use hyper_util::rt::TokioIo;
use proxy_model::cluster::is_pipe;
use proxy_model::filter::{AbortKind, FaultConfig, HttpFilter};
use proxy_model::listener::{ForwardClientCert, HttpConnectionManager};
use proxy_model::route::hash::{self as route_hash, HashInput};
use proxy_model::route::{
    Action, Forward, HeaderMutations, Redirect, RedirectPath, RequestView, RetryPolicy, Route,
    RouteConfig, Target, VirtualHost,
};
use rand::Rng;

use crate::Runtime;
use crate::access_log;
use crate::http1;
use crate::mirror;
use crate::normalize;
use crate::replay::Replay;
use crate::stats::{Counter, Gauge};
use crate::upstream::{Body, BoxError, ClusterRuntime, Guarded, Host, LbContext, Outcome};

/// How much of a request body is kept to replay it on a retry, and how far a mirror may fall behind
/// the primary (Envoy's default buffer limit).
const RETRY_BUFFER_LIMIT: usize = 1024 * 1024;

/// One request's context: its connection's, and the routes and clusters current when it started (as
/// Envoy's RDS and CDS apply to the next stream). Made per request from two `Arc`s; reads the
/// connection's fields through it.
#[derive(Debug)]
pub struct ConnContext {
    pub runtime: Arc<Runtime>,
    pub conn: Arc<Connection>,
}

impl std::ops::Deref for ConnContext {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// Where a downstream connection comes from and goes to.
#[derive(Debug, Clone)]
pub struct Downstream {
    pub peer: SocketAddr,
    /// Its local address, or the original destination the `original_dst` listener filter restored.
    pub local: SocketAddr,
    /// The original destination, when the listener restored one (for ORIGINAL_DST clusters).
    pub original_dst: Option<SocketAddr>,
    /// The server name (SNI) the client asked for.
    pub server_name: Option<String>,
    /// The connection is TLS: `x-forwarded-proto` is `https`.
    pub tls: bool,
    /// The client presented a certificate (mutual TLS), and what its requests' own
    /// `x-forwarded-client-cert` element says of it.
    pub client_certificate: Option<ClientCertificate>,
}

/// A client's certificate, as `x-forwarded-client-cert` handling needs it.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// This hop's element (`By=…;Hash=…;Subject="…";URI=…`), when the connection manager writes one
    /// (`APPEND_FORWARD`, `SANITIZE_SET`); made once per connection.
    pub element: Option<HeaderValue>,
}

impl ClientCertificate {
    /// The client certificate of a connection `accepted` by a chain whose connection manager is
    /// `hcm`; `None` when the client presented none.
    pub fn of(
        accepted: &crate::tls::Accepted<'_>,
        hcm: &HttpConnectionManager,
    ) -> Option<ClientCertificate> {
        let crate::tls::Io::Tls(stream) = &accepted.io else {
            return None;
        };
        let chain = stream.get_ref().1.peer_certificates()?;
        if chain.is_empty() {
            return None;
        }
        let element = if hcm.forward_client_cert.sets_element() {
            let local_uris = accepted
                .chain
                .tls
                .as_ref()
                .map_or(&[][..], |t| &t.local_uris[..]);
            mesh_tls::PeerCertificate::of(chain)
                .map(|peer| xfcc_element(&peer, local_uris, hcm.client_cert_details))
                .and_then(|e| HeaderValue::from_str(&e).ok())
        } else {
            None
        };
        Some(ClientCertificate { element })
    }
}

/// Envoy's `x-forwarded-client-cert` element: `By` (each URI of this proxy's certificate), `Hash`,
/// then as `details` asks `Cert`, `Chain`, `Subject`, each `URI`, each `DNS`.
fn xfcc_element(
    peer: &mesh_tls::PeerCertificate,
    local_uris: &[String],
    details: proxy_model::listener::ClientCertDetails,
) -> String {
    let mut parts: Vec<String> = local_uris.iter().map(|u| format!("By={u}")).collect();
    parts.push(format!("Hash={}", peer.hash));
    if details.cert {
        parts.push(format!("Cert=\"{}\"", peer.cert));
    }
    if details.chain {
        parts.push(format!("Chain=\"{}\"", peer.chain));
    }
    if details.subject {
        parts.push(format!("Subject=\"{}\"", peer.subject));
    }
    if details.uri {
        parts.extend(peer.uris.iter().map(|u| format!("URI={u}")));
    }
    if details.dns {
        parts.extend(peer.dns.iter().map(|d| format!("DNS={d}")));
    }
    parts.join(";")
}

/// What one connection's requests share.
#[derive(Debug)]
pub struct Connection {
    pub hcm: Arc<HttpConnectionManager>,
    pub downstream: Downstream,
    pub stats: Arc<HcmStats>,
    /// The listener drains gracefully: HTTP/1 responses close their connection, HTTP/2 ones make it
    /// send GOAWAY (through `finish`).
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Asks the connection to finish gracefully once its streams are done.
    pub finish: Arc<tokio::sync::Notify>,
    /// Counted HTTP/1 or HTTP/2 (`downstream_cx_http1_active`, …) from its first request on.
    pub protocol: std::sync::OnceLock<crate::stats::Held>,
    /// When the connection was accepted, and (in nanoseconds since then) when its last request
    /// ended: where a request the client abandons mid-head is taken to have begun.
    pub opened: Instant,
    pub last_request_end: AtomicU64,
    /// Requests being served: at the connection's end, a request that never reached the service
    /// is told from one whose service is still to be dropped (and logs itself).
    pub in_flight: AtomicUsize,
}

impl Connection {
    /// A connection's shared state, as it starts serving.
    pub fn new(
        hcm: Arc<HttpConnectionManager>,
        downstream: Downstream,
        stats: Arc<HcmStats>,
        draining: Arc<std::sync::atomic::AtomicBool>,
        finish: Arc<tokio::sync::Notify>,
    ) -> Connection {
        Connection {
            hcm,
            downstream,
            stats,
            draining,
            finish,
            protocol: std::sync::OnceLock::new(),
            opened: Instant::now(),
            last_request_end: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Writes a request's line to the connection manager's access logs.
    fn log(&self, info: &access_log::RequestInfo, answer: Answer<'_>, exchange: &Exchange) {
        access_log::Line {
            info,
            status: answer.status,
            response: answer.headers,
            bytes_received: info.bytes_received + exchange.tunnel_bytes.map_or(0, |t| t.0),
            bytes_sent: answer.bytes_sent + exchange.tunnel_bytes.map_or(0, |t| t.1),
            exchange,
            duration: answer.duration,
            downstream: &self.downstream,
        }
        .write(&self.hcm.access_log);
    }

    /// Counts a request as it begins (Envoy counts `downstream_rq_total` when a stream starts,
    /// whatever becomes of it), and the connection as HTTP/2 or HTTP/1 on its first request.
    fn count_request(&self, h2: bool) {
        let stats = &self.stats;
        self.protocol.get_or_init(|| {
            let (total, active) = if h2 {
                (
                    &stats.downstream_cx_http2_total,
                    &stats.downstream_cx_http2_active,
                )
            } else {
                (
                    &stats.downstream_cx_http1_total,
                    &stats.downstream_cx_http1_active,
                )
            };
            total.inc();
            crate::stats::Held::new(active)
        });
        stats.downstream_rq_total.inc();
        if h2 {
            stats.downstream_rq_http2_total.inc();
        } else {
            stats.downstream_rq_http1_total.inc();
        }
    }

    /// Counts a response by its status class.
    fn count_response(&self, status: u16) {
        let stats = &self.stats;
        stats.downstream_rq_completed.inc();
        match status {
            200..=299 => stats.downstream_rq_2xx.inc(),
            300..=399 => stats.downstream_rq_3xx.inc(),
            400..=499 => stats.downstream_rq_4xx.inc(),
            _ => stats.downstream_rq_5xx.inc(),
        }
    }

    /// An HTTP/1 request the codec refused before the connection manager saw it (hyper could not
    /// parse it and answered it itself, or HTTP/1.0 without `accept_http_10`): counted as Envoy's
    /// codec counts it (a protocol error, a request answered `status`) and logged as Envoy logs
    /// it, with nothing of the request: `"- - HTTP/1.1" STATUS DPE`.
    pub fn protocol_error(&self, status: StatusCode, details: &'static str, bytes_sent: u64) {
        self.stats.downstream_cx_protocol_error.inc();
        self.count_request(false);
        self.count_response(status.as_u16());
        self.stats.downstream_rq_rx_reset.inc();
        if !self.hcm.access_log.is_empty() {
            let exchange = Exchange {
                flags: Flags {
                    downstream_protocol_error: true,
                    ..Flags::default()
                },
                details: Some(details),
                ..Exchange::default()
            };
            let info = access_log::RequestInfo::unparsed(std::time::SystemTime::now());
            let answer = Answer {
                status: status.as_u16(),
                headers: None,
                bytes_sent,
                duration: Duration::ZERO,
            };
            self.log(&info, answer, &exchange);
        }
    }

    /// The connection ended mid-request: the client closed before its request's head was complete
    /// (one being served logs itself, when hyper drops it). Envoy counts the request and logs it as
    /// `"- - HTTP/1.1" 0 DC`, with its duration from its first byte; hyper does not say when
    /// that came, so the duration runs from the end of the connection's previous request (or its
    /// start), which includes any time the connection idled between the two.
    pub fn abandoned_request(&self) {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return;
        }
        self.count_request(false);
        self.stats.downstream_rq_rx_reset.inc();
        if !self.hcm.access_log.is_empty() {
            let since_open = Duration::from_nanos(self.last_request_end.load(Ordering::Relaxed));
            let began = self.opened + since_open;
            let exchange = Exchange {
                flags: Flags {
                    downstream_termination: true,
                    ..Flags::default()
                },
                details: Some("downstream_remote_disconnect"),
                ..Exchange::default()
            };
            let info =
                access_log::RequestInfo::unparsed(std::time::SystemTime::now() - began.elapsed());
            let answer = Answer {
                status: 0,
                headers: None,
                bytes_sent: 0,
                duration: began.elapsed(),
            };
            self.log(&info, answer, &exchange);
        }
    }

    /// Notes that a request ended (answered, or dropped).
    fn request_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let since_open = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_request_end.store(since_open, Ordering::Relaxed);
    }

    /// Answers an HTTP/1.0 request, which Envoy's codec refuses unless `accept_http_10` is set: a
    /// protocol error, and the connection closes.
    fn refuse_http_10(&self) -> Response<Body> {
        self.refuse(StatusCode::UPGRADE_REQUIRED, "http1.codec_error")
    }

    /// A request refused as Envoy's codec refuses it: `status` with its reason phrase as the body,
    /// then the connection closed.
    fn refuse(&self, status: StatusCode, details: &'static str) -> Response<Body> {
        let body = status.canonical_reason().unwrap_or("");
        let mut reply = local_reply(status, body);
        self.protocol_error(status, details, body.len() as u64);
        reply
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        if let Some(v) = &self.hcm.server_header {
            reply.headers_mut().insert(header::SERVER, v.clone());
        }
        reply
    }
}

/// Joins the `cookie` crumbs an HTTP/2 client may send (RFC 9113 §8.2.3) into one header, as
/// Envoy's HTTP/2 codec does before routing: an HTTP/1.1 upstream must get one `Cookie` (RFC 6265),
/// and routes, hash policies and the upstream see the cookies together.
fn join_cookie_crumbs(headers: &mut HeaderMap) {
    let crumbs = headers.get_all(header::COOKIE);
    if crumbs.iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for crumb in crumbs {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    // Valid values joined by "; " make a valid value; were it not, the crumbs stay as they came.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// A response that closes its connection, made ready for a client of `version`: to an HTTP/1.0
/// client that asked for keep-alive, hyper would add `keep-alive` after our `close` unless the
/// response itself is HTTP/1.0 (its status line is HTTP/1.0 to such a client either way).
fn closing_for(version: Version, mut response: Response<Body>) -> Response<Body> {
    if version == Version::HTTP_10
        && response
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    {
        *response.version_mut() = Version::HTTP_10;
    }
    response
}

/// `http.<stat_prefix>.*` stats.
#[derive(Debug)]
pub struct HcmStats {
    pub downstream_cx_total: Arc<Counter>,
    pub downstream_cx_active: Arc<Gauge>,
    pub downstream_cx_destroy: Arc<Counter>,
    pub downstream_cx_http1_total: Arc<Counter>,
    pub downstream_cx_http1_active: Arc<Gauge>,
    pub downstream_cx_http2_total: Arc<Counter>,
    pub downstream_cx_http2_active: Arc<Gauge>,
    pub downstream_cx_ssl_total: Arc<Counter>,
    pub downstream_cx_ssl_active: Arc<Gauge>,
    pub downstream_cx_rx_bytes_total: Arc<Counter>,
    pub downstream_cx_tx_bytes_total: Arc<Counter>,
    pub downstream_cx_protocol_error: Arc<Counter>,
    pub downstream_rq_total: Arc<Counter>,
    pub downstream_rq_http1_total: Arc<Counter>,
    pub downstream_rq_http2_total: Arc<Counter>,
    /// Requests answered (not those the client abandoned).
    pub downstream_rq_completed: Arc<Counter>,
    /// Requests the client reset or abandoned before they were complete (those the codec refused
    /// included: their connection closes under them).
    pub downstream_rq_rx_reset: Arc<Counter>,
    pub downstream_rq_2xx: Arc<Counter>,
    pub downstream_rq_3xx: Arc<Counter>,
    pub downstream_rq_4xx: Arc<Counter>,
    pub downstream_rq_5xx: Arc<Counter>,
    pub no_route: Arc<Counter>,
    pub no_cluster: Arc<Counter>,
    pub fault_aborts: Arc<Counter>,
    pub fault_delays: Arc<Counter>,
    /// Upgrades (and CONNECTs) refused with 403 because their route does not enable them.
    pub ws_on_non_ws_route: Arc<Counter>,
    pub upgrades_total: Arc<Counter>,
    pub upgrades_active: Arc<Gauge>,
    /// For the stats of filters named by their own `stat_prefix` (the local rate limit's).
    pub registry: Arc<crate::stats::Registry>,
}

impl HcmStats {
    pub fn new(registry: &Arc<crate::stats::Registry>, prefix: &str) -> HcmStats {
        let c = |n: &str| registry.counter(&format!("http.{prefix}.{n}"));
        let g = |n: &str| registry.gauge(&format!("http.{prefix}.{n}"));
        HcmStats {
            downstream_cx_total: c("downstream_cx_total"),
            downstream_cx_active: g("downstream_cx_active"),
            downstream_cx_destroy: c("downstream_cx_destroy"),
            downstream_cx_http1_total: c("downstream_cx_http1_total"),
            downstream_cx_http1_active: g("downstream_cx_http1_active"),
            downstream_cx_http2_total: c("downstream_cx_http2_total"),
            downstream_cx_http2_active: g("downstream_cx_http2_active"),
            downstream_cx_ssl_total: c("downstream_cx_ssl_total"),
            downstream_cx_ssl_active: g("downstream_cx_ssl_active"),
            downstream_cx_rx_bytes_total: c("downstream_cx_rx_bytes_total"),
            downstream_cx_tx_bytes_total: c("downstream_cx_tx_bytes_total"),
            downstream_cx_protocol_error: c("downstream_cx_protocol_error"),
            downstream_rq_total: c("downstream_rq_total"),
            downstream_rq_http1_total: c("downstream_rq_http1_total"),
            downstream_rq_http2_total: c("downstream_rq_http2_total"),
            downstream_rq_completed: c("downstream_rq_completed"),
            downstream_rq_rx_reset: c("downstream_rq_rx_reset"),
            downstream_rq_2xx: c("downstream_rq_2xx"),
            downstream_rq_3xx: c("downstream_rq_3xx"),
            downstream_rq_4xx: c("downstream_rq_4xx"),
            downstream_rq_5xx: c("downstream_rq_5xx"),
            no_route: c("no_route"),
            no_cluster: c("no_cluster"),
            fault_aborts: c("fault.aborts_injected"),
            fault_delays: c("fault.delays_injected"),
            ws_on_non_ws_route: c("downstream_rq_ws_on_non_ws_route"),
            upgrades_total: c("downstream_cx_upgrades_total"),
            upgrades_active: g("downstream_cx_upgrades_active"),
            registry: registry.clone(),
        }
    }
}

/// Envoy's response flags, in its order of precedence for the access log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flags {
    pub no_route: bool,
    pub no_cluster: bool,
    pub no_healthy_upstream: bool,
    pub upstream_connect_failure: bool,
    pub upstream_overflow: bool,
    pub upstream_timeout: bool,
    pub upstream_reset: bool,
    pub retry_limit: bool,
    pub fault_abort: bool,
    pub fault_delay: bool,
    /// Refused by the local rate limit filter (RL).
    pub rate_limited: bool,
    /// A tunnel the downstream ended, or a request it abandoned by closing its connection (DC),
    /// or by resetting its HTTP/2 stream (DR); a tunnel that idled out (SI).
    pub downstream_termination: bool,
    pub downstream_reset: bool,
    pub stream_idle_timeout: bool,
    /// Refused by the codec (DPE): a request that could not be parsed, or HTTP/1.0 not accepted.
    pub downstream_protocol_error: bool,
    /// The upstream's answer could not be read as HTTP (UPE).
    pub upstream_protocol_error: bool,
}

impl Flags {
    /// Appends the flags as the access log writes them: `UF,URX`, or `-` for none.
    pub fn push_to(&self, out: &mut String) {
        let all = [
            (self.no_healthy_upstream, "UH"),
            (self.upstream_connect_failure, "UF"),
            (self.upstream_overflow, "UO"),
            (self.no_route, "NR"),
            (self.upstream_reset, "UC"),
            (self.upstream_timeout, "UT"),
            (self.fault_delay, "DI"),
            (self.fault_abort, "FI"),
            (self.rate_limited, "RL"),
            (self.retry_limit, "URX"),
            (self.no_cluster, "NC"),
            (self.downstream_termination, "DC"),
            (self.downstream_reset, "DR"),
            (self.stream_idle_timeout, "SI"),
            (self.downstream_protocol_error, "DPE"),
            (self.upstream_protocol_error, "UPE"),
        ];
        let mut set = all.iter().filter(|(on, _)| *on).map(|(_, f)| *f);
        match set.next() {
            None => out.push('-'),
            Some(first) => {
                out.push_str(first);
                for flag in set {
                    out.push(',');
                    out.push_str(flag);
                }
            }
        }
    }
}

/// How a request was answered, for its access log line.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// 0 for none.
    pub status: u16,
    pub headers: Option<&'a HeaderMap>,
    pub bytes_sent: u64,
    pub duration: Duration,
}

/// What the access log needs beyond the request and the response.
#[derive(Debug, Default)]
pub struct Exchange {
    pub flags: Flags,
    /// Envoy's `RESPONSE_CODE_DETAILS` where the flags do not tell it (see [`Exchange::details`]).
    pub details: Option<&'static str>,
    /// The matched route's name and the cluster chosen for the request.
    pub route_name: Option<String>,
    pub upstream_cluster: Option<String>,
    /// The local address of the upstream connection the answer came on.
    pub upstream_local: Option<SocketAddr>,
    /// Why the upstream connection failed (`UPSTREAM_TRANSPORT_FAILURE_REASON`).
    pub upstream_failure: Option<String>,
    pub upstream_host: Option<String>,
    pub upstream_service_time: Option<Duration>,
    /// A tunnel opened for this request reports here when it ends (Envoy logs tunnels then).
    pub tunnel: Option<tokio::sync::oneshot::Receiver<crate::tcp::SpliceEnd>>,
    /// A tunnel's bytes from and to the downstream, for the access log.
    pub tunnel_bytes: Option<(u64, u64)>,
}

impl Exchange {
    /// Envoy's `RESPONSE_CODE_DETAILS`: what answered the request, and why when it was not the
    /// upstream.
    pub fn details(&self) -> Option<Cow<'_, str>> {
        if let Some(d) = self.details {
            return Some(Cow::Borrowed(d));
        }
        let f = &self.flags;
        Some(Cow::Borrowed(if f.no_route {
            "route_not_found"
        } else if f.no_cluster {
            "cluster_not_found"
        } else if f.rate_limited {
            "local_rate_limited"
        } else if f.fault_abort {
            "fault_filter_abort"
        } else if f.upstream_overflow {
            "upstream_reset_before_response_started{overflow}"
        } else if f.no_healthy_upstream {
            "no_healthy_upstream"
        } else if f.upstream_timeout {
            "response_timeout"
        } else if self.upstream_service_time.is_some() {
            "via_upstream"
        } else if f.upstream_connect_failure {
            return Some(match &self.upstream_failure {
                Some(reason) => Cow::Owned(format!(
                    "upstream_reset_before_response_started{{remote_connection_failure|{reason}}}"
                )),
                None => Cow::Borrowed(
                    "upstream_reset_before_response_started{remote_connection_failure}",
                ),
            });
        } else if f.upstream_protocol_error {
            "upstream_reset_before_response_started{protocol_error}"
        } else if f.upstream_reset {
            "upstream_reset_before_response_started{connection_termination}"
        } else {
            return None;
        }))
    }
}

/// A request's access log line and what it gathers: written when the request is answered, or,
/// when hyper drops the request unanswered, on drop, as Envoy logs a request the downstream
/// abandoned: status 0, flag DC (an HTTP/1 client closed its connection) or DR (an HTTP/2 client
/// reset its stream or closed the whole connection: Envoy logs both DR).
struct Logged<'c> {
    conn: &'c Connection,
    info: Option<access_log::RequestInfo>,
    exchange: Exchange,
    start: Instant,
    h2: bool,
    answered: bool,
}

impl Logged<'_> {
    fn begin<'c, B>(conn: &'c Connection, req: &Request<B>, start: Instant) -> Logged<'c> {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        Logged {
            conn,
            info: (!conn.hcm.access_log.is_empty())
                .then(|| access_log::RequestInfo::new(req, &conn.hcm.access_log)),
            exchange: Exchange::default(),
            start,
            h2: req.version() == Version::HTTP_2,
            answered: false,
        }
    }
}

impl Drop for Logged<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.conn.stats.downstream_rq_rx_reset.inc();
            if let Some(info) = self.info.take() {
                let exchange = &mut self.exchange;
                if self.h2 {
                    exchange.flags.downstream_reset = true;
                    exchange.details = Some("http2.remote_reset");
                } else {
                    exchange.flags.downstream_termination = true;
                    exchange.details = Some("downstream_remote_disconnect");
                }
                let answer = Answer {
                    status: 0,
                    headers: None,
                    bytes_sent: 0,
                    duration: self.start.elapsed(),
                };
                self.conn.log(&info, answer, exchange);
            }
        }
        self.conn.request_ended();
    }
}

pub async fn serve(
    mut req: Request<Incoming>,
    ctx: ConnContext,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let version = req.version();
    if !ctx.hcm.accept_http_10 && matches!(version, Version::HTTP_10 | Version::HTTP_09) {
        return Ok(closing_for(version, ctx.refuse_http_10()));
    }
    let h2 = version == Version::HTTP_2;
    if !h2 && let Some(refusal) = http1::refusal(&req) {
        return Ok(closing_for(
            version,
            ctx.refuse(refusal.status, refusal.details),
        ));
    }
    ctx.count_request(h2);
    if h2 {
        join_cookie_crumbs(req.headers_mut());
    }
    let closes_after = version == Version::HTTP_10 && !http1::http10_keeps_alive(req.headers());
    http1::give_default_host(&mut req, ctx.hcm.default_host_for_http_10.as_ref());
    // Refused before anything else happens to it (no request id, as in Envoy).
    let refused = if !h2 && http1::missing_host(&req) {
        Some("missing_host_header")
    } else if normalize_path(&mut req, &ctx.hcm).is_err() {
        Some("path_normalization_failed")
    } else {
        None
    };
    // The connection manager's own header changes come first, as in Envoy: routing, the filters
    // and the access log see the request as changed.
    if refused.is_none() {
        mutate_request_headers(req.headers_mut(), &ctx);
    }
    let mut kind = upgrade_type(&req);
    if !h2 && kind.as_deref().is_some_and(http1::is_h2c) {
        http1::drop_h2c_upgrade(req.headers_mut());
        kind = None;
    }
    let mut logged = Logged::begin(&ctx, &req, start);
    let exchange = &mut logged.exchange;
    // HTTP/2 has no `Connection` header: its streams end on their own.
    let h1_upgrade = kind.is_some() && !h2;
    // An HTTP/2 tunnel (CONNECT, or an upgrade by extended CONNECT) opens with a 2xx.
    let tunnel_on_success = req.method() == http::Method::CONNECT;
    let h2_upgrade = extended_connect(req.method(), req.extensions()).is_some();
    let head_request = req.method() == http::Method::HEAD;
    let mut response = if let Some(details) = refused {
        // As Envoy: answered by the connection manager, which then closes the connection.
        exchange.details = Some(details);
        let mut reply = local_reply(StatusCode::BAD_REQUEST, "");
        let headers = reply.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if head_request {
            // Envoy's answer to a HEAD it refuses here says no length at all.
            headers.remove(header::CONTENT_LENGTH);
        }
        reply
    } else {
        handle(req, kind.as_deref(), &ctx, exchange).await
    };
    if h2_upgrade
        && response.headers().get(header::CONTENT_LENGTH) == Some(&HeaderValue::from_static("0"))
    {
        // As Envoy answers an extended CONNECT it refuses: an empty body ends the stream, with no
        // content-length.
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    let tunnelled = response.status() == StatusCode::SWITCHING_PROTOCOLS
        || (tunnel_on_success && response.status().is_success());
    if h1_upgrade && !tunnelled && exchange.upstream_service_time.is_none() {
        // As Envoy: after refusing an HTTP/1 upgrade or CONNECT itself, the proxy closes the
        // connection (what follows the request may be tunnel bytes, not HTTP).
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if ctx.draining.load(Ordering::Relaxed) && !tunnelled {
        // As Envoy's drain: the client opens its next connection elsewhere.
        if h2 {
            ctx.finish.notify_one();
        } else {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    let headers = response.headers_mut();
    if let Some(v) = &ctx.hcm.server_header {
        headers.insert(header::SERVER, v.clone());
    }
    if closes_after {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if head_request && h2 {
        // hyper's HTTP/2 server sends whatever body it is given, to a HEAD too (its HTTP/1 server
        // does not): the head alone, its length kept.
        *response.body_mut() = full(Bytes::new());
    }
    let response = closing_for(version, response);
    ctx.count_response(response.status().as_u16());
    logged.answered = true;
    // HEAD, 204 and 304 answers have no body, whatever their headers say.
    let bodiless = head_request
        || matches!(
            response.status(),
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        );
    if let Some(info) = logged.info.take() {
        let mut exchange = std::mem::take(&mut logged.exchange);
        match exchange.tunnel.take() {
            // As Envoy, a tunnel is logged when it ends: its bytes, its duration, who ended it.
            Some(end) if tunnelled => {
                let status = response.status().as_u16();
                let mut headers = response.headers().clone();
                // A 101 carries no x-envoy-upstream-service-time, which the log shows.
                headers.remove(&X_ENVOY_UPSTREAM_SERVICE_TIME);
                let conn = ctx.conn.clone();
                tokio::spawn(async move {
                    if let Ok(end) = end.await {
                        exchange.tunnel_bytes = Some((end.a_to_b, end.b_to_a));
                        match end.ended_by {
                            crate::tcp::EndedBy::A => exchange.flags.downstream_termination = true,
                            crate::tcp::EndedBy::B => exchange.flags.upstream_reset = true,
                            crate::tcp::EndedBy::Idle => exchange.flags.stream_idle_timeout = true,
                        }
                    }
                    let answer = Answer {
                        status,
                        headers: Some(&headers),
                        bytes_sent: 0,
                        duration: start.elapsed(),
                    };
                    conn.log(&info, answer, &exchange);
                });
            }
            // A body still to come is logged when it ends, as Envoy logs a stream.
            _ if !bodiless && !response.body().is_end_stream() => {
                let (parts, body) = response.into_parts();
                let pending = PendingLog {
                    conn: ctx.conn.clone(),
                    info,
                    exchange,
                    start,
                    status: parts.status.as_u16(),
                    headers: headers_logged(&parts.headers, &ctx.hcm.access_log),
                    h2,
                };
                let body = LoggedBody {
                    inner: body,
                    log: Some(pending),
                    bytes_sent: 0,
                };
                return Ok(Response::from_parts(parts, body.boxed()));
            }
            _ => {
                let answer = Answer {
                    status: response.status().as_u16(),
                    headers: Some(response.headers()),
                    bytes_sent: if bodiless {
                        0
                    } else {
                        content_length(response.headers())
                    },
                    duration: start.elapsed(),
                };
                ctx.log(&info, answer, &exchange);
            }
        }
    }
    Ok(response)
}

/// The response headers the access logs read (`%RESP(...)%`), kept for a line logged later: a copy
/// of those only, not of the whole map.
fn headers_logged(headers: &HeaderMap, logs: &[proxy_model::access_log::AccessLog]) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in logs.iter().flat_map(|log| &log.response_headers) {
        if !kept.contains_key(name) {
            for value in headers.get_all(name) {
                kept.append(name.clone(), value.clone());
            }
        }
    }
    kept
}

/// A request's access log line waiting for the end of its response body.
struct PendingLog {
    conn: Arc<Connection>,
    info: access_log::RequestInfo,
    exchange: Exchange,
    start: Instant,
    status: u16,
    headers: HeaderMap,
    h2: bool,
}

/// How a logged response body ended.
enum BodyEnd {
    Complete,
    /// The upstream's body broke off: cut short (protocol error) or its connection or stream gone.
    UpstreamBroke {
        protocol_error: bool,
    },
    /// Dropped before its end: the client closed its connection or reset its stream.
    ClientGone,
}

/// A response body whose request is logged when it ends, as Envoy logs a stream: with the bytes
/// sent and the whole duration, and with Envoy's flags when the upstream's body broke off
/// (`upstream_reset_after_response_started`) or the client went away before its end.
struct LoggedBody {
    inner: Body,
    log: Option<PendingLog>,
    bytes_sent: u64,
}

impl LoggedBody {
    fn finish(&mut self, end: BodyEnd) {
        let Some(mut log) = self.log.take() else {
            return;
        };
        let exchange = &mut log.exchange;
        match end {
            BodyEnd::Complete => {}
            BodyEnd::UpstreamBroke { protocol_error } => {
                if protocol_error {
                    exchange.flags.upstream_protocol_error = true;
                    exchange.details =
                        Some("upstream_reset_after_response_started{protocol_error}");
                } else {
                    exchange.flags.upstream_reset = true;
                    exchange.details =
                        Some("upstream_reset_after_response_started{connection_termination}");
                }
            }
            BodyEnd::ClientGone if log.h2 => exchange.flags.downstream_reset = true,
            BodyEnd::ClientGone => exchange.flags.downstream_termination = true,
        }
        let answer = Answer {
            status: log.status,
            headers: Some(&log.headers),
            bytes_sent: self.bytes_sent,
            duration: log.start.elapsed(),
        };
        log.conn.log(&log.info, answer, &log.exchange);
    }
}

impl hyper::body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes_sent += data.len() as u64;
                }
                // hyper stops polling a body that says it has ended, and after trailers.
                if frame.is_trailers() || this.inner.is_end_stream() {
                    this.finish(BodyEnd::Complete);
                }
            }
            std::task::Poll::Ready(Some(Err(e))) => {
                let protocol_error = cut_short(e.as_ref());
                this.finish(BodyEnd::UpstreamBroke { protocol_error });
            }
            std::task::Poll::Ready(None) => this.finish(BodyEnd::Complete),
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body's error is the upstream's body cut short (the connection closed before the length
/// or the last chunk), which Envoy calls a protocol error, rather than a reset.
fn cut_short(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_parse())
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
    })
}

/// `e` and the errors that caused it, outermost first.
fn causes<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let end = if self.inner.is_end_stream() {
            BodyEnd::Complete
        } else {
            BodyEnd::ClientGone
        };
        self.finish(end);
    }
}

/// The request's path as the connection manager's `normalize_path` and `merge_slashes` make it,
/// before it is routed and sent on.
fn normalize_path<B>(
    req: &mut Request<B>,
    hcm: &HttpConnectionManager,
) -> Result<(), normalize::Unnormalizable> {
    if !hcm.normalize_path && !hcm.merge_slashes {
        return Ok(());
    }
    let Some(path) = req.uri().path_and_query() else {
        return Ok(());
    };
    let Some(path) = normalize::normalized(path.as_str(), hcm.normalize_path, hcm.merge_slashes)?
    else {
        return Ok(());
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query =
        Some(http::uri::PathAndQuery::try_from(path).map_err(|_| normalize::Unnormalizable)?);
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| normalize::Unnormalizable)?;
    Ok(())
}

/// The upgrade a request asks for: the `:protocol` of an HTTP/2 extended CONNECT (RFC 8441),
/// `CONNECT` for any other CONNECT, else the `Upgrade` header of an HTTP/1.1 request whose
/// `Connection` has the `upgrade` token (Envoy's `isUpgrade`).
fn upgrade_type<B>(req: &Request<B>) -> Option<String> {
    upgrade_type_of(req.method(), req.headers(), req.extensions())
}

/// The `:protocol` of an HTTP/2 extended CONNECT.
fn extended_connect(method: &http::Method, extensions: &http::Extensions) -> Option<String> {
    if method != http::Method::CONNECT {
        return None;
    }
    extensions
        .get::<hyper::ext::Protocol>()
        .map(|p| p.as_str().to_owned())
}

fn upgrade_type_of(
    method: &http::Method,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Option<String> {
    if let Some(protocol) = extended_connect(method, extensions) {
        return Some(protocol);
    }
    if method == http::Method::CONNECT {
        return Some("CONNECT".to_owned());
    }
    if !http1::has_token(headers, header::CONNECTION, "upgrade") {
        return None;
    }
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Whether `upgrade` is allowed on `route`: the route's own setting, else the connection manager's
/// (a type neither lists is refused).
fn upgrade_enabled(hcm: &HttpConnectionManager, route: &Route, upgrade: &str) -> bool {
    let on_route = match &route.action {
        Action::Forward(f) => f.upgrade(upgrade).map(|u| u.enabled),
        _ => None,
    };
    on_route.unwrap_or_else(|| hcm.upgrades.get(upgrade).unwrap_or(false))
}

/// Routes and forwards one request; `upgrade` is its [`upgrade_type`].
async fn handle(
    req: Request<Incoming>,
    upgrade: Option<&str>,
    ctx: &ConnContext,
    exchange: &mut Exchange,
) -> Response<Body> {
    let runtime = &ctx.runtime;
    let Some(routes) = runtime.snapshot.route_config(&ctx.hcm.routes) else {
        ctx.stats.no_route.inc();
        exchange.flags.no_route = true;
        return local_reply(StatusCode::NOT_FOUND, "");
    };
    let authority = authority(&req);
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    // An HTTP/2 extended CONNECT is routed as the upgrade it stands for, a GET (Envoy's codec turns
    // it into an HTTP/1-style upgrade before routing).
    let method = if extended_connect(req.method(), req.extensions()).is_some() {
        "GET"
    } else {
        req.method().as_str()
    };
    let view = RequestView {
        authority: &authority,
        path: &path,
        method,
        headers: req.headers(),
    };
    let Some((vh, route)) = routes.select(&view) else {
        ctx.stats.no_route.inc();
        exchange.flags.no_route = true;
        return local_reply(StatusCode::NOT_FOUND, "");
    };
    if let Some(kind) = upgrade
        && !upgrade_enabled(&ctx.hcm, route, kind)
    {
        // Envoy refuses an upgrade its route does not allow (a request without a route got 404).
        ctx.stats.ws_on_non_ws_route.inc();
        exchange.details = Some("upgrade_failed");
        return local_reply(StatusCode::FORBIDDEN, "");
    }

    let target_cluster = match &route.action {
        Action::Forward(f) => choose_cluster(f, req.headers()),
        _ => None,
    };
    if !ctx.hcm.access_log.is_empty() {
        exchange.route_name = Some(route.name.clone());
        exchange.upstream_cluster = target_cluster.clone();
    }
    // The local rate limit filter runs where the chain puts it relative to the fault filter.
    let position = |is: fn(&HttpFilter) -> bool| ctx.hcm.http_filters.iter().position(is);
    let ratelimit_first = match (
        position(|f| matches!(f, HttpFilter::LocalRateLimit(_))),
        position(|f| matches!(f, HttpFilter::Fault(_))),
    ) {
        (Some(r), Some(f)) => r < f,
        _ => true,
    };
    let mut ratelimit_headers = None;
    if ratelimit_first {
        match local_ratelimit(ctx, vh, route, exchange) {
            Ok(h) => ratelimit_headers = h,
            Err(reply) => return *reply,
        }
    }
    if let Some(reply) = apply_fault(
        ctx,
        route,
        target_cluster.as_deref(),
        req.headers(),
        exchange,
    )
    .await
    {
        return reply;
    }
    if !ratelimit_first {
        match local_ratelimit(ctx, vh, route, exchange) {
            Ok(h) => ratelimit_headers = h,
            Err(reply) => return *reply,
        }
    }
    // Envoy's filter order (Istio's): local rate limit and fault as configured, CORS, router.
    let cors = match crate::cors::on_request(
        &ctx.hcm,
        vh,
        route,
        req.method().as_str(),
        req.headers(),
        chance,
    ) {
        crate::cors::OnRequest::Pass => None,
        crate::cors::OnRequest::Echo(latched) => Some(latched),
        crate::cors::OnRequest::Answer(preflight) => return preflight,
    };
    let mut resp = route_request(
        req,
        ctx,
        exchange,
        &routes,
        vh,
        route,
        target_cluster,
        &authority,
        &path,
    )
    .await;
    if let Some(latched) = &cors {
        crate::cors::on_response(latched, resp.headers_mut());
    }
    if let Some(h) = ratelimit_headers {
        resp.headers_mut().extend(h);
    }
    resp
}

/// The local rate limit filter: the route's own config (and token bucket), else its virtual
/// host's, replaces the listener's. `Err` is the reply to a rate-limited request; `Ok` carries the
/// `x-ratelimit-*` headers for the response, when configured.
fn local_ratelimit(
    ctx: &ConnContext,
    vh: &VirtualHost,
    route: &Route,
    exchange: &mut Exchange,
) -> Result<Option<HeaderMap>, Box<Response<Body>>> {
    let Some(listener) = ctx.hcm.http_filters.iter().find_map(|f| match f {
        HttpFilter::LocalRateLimit(c) => Some(c),
        _ => None,
    }) else {
        return Ok(None);
    };
    let config = route
        .local_ratelimit
        .as_ref()
        .or(vh.local_ratelimit.as_ref())
        .unwrap_or(listener);
    if !chance(config.enabled_per_million) {
        return Ok(None);
    }
    let count = |name: &str| {
        ctx.stats
            .registry
            .counter(&format!(
                "{}.http_local_rate_limit.{name}",
                config.stat_prefix
            ))
            .inc();
    };
    count("enabled");
    let Some(bucket) = &config.bucket else {
        // No token bucket: Envoy passes every request.
        count("ok");
        return Ok(None);
    };
    let take = bucket.take(Instant::now());
    let mut headers = HeaderMap::new();
    if config.x_ratelimit_headers {
        for (name, value) in [
            ("x-ratelimit-limit", u64::from(bucket.max_tokens)),
            ("x-ratelimit-remaining", u64::from(take.remaining)),
            ("x-ratelimit-reset", take.reset_secs),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
    if take.allowed {
        count("ok");
        return Ok(Some(headers));
    }
    count("rate_limited");
    if !chance(config.enforced_per_million) {
        return Ok(Some(headers));
    }
    count("enforced");
    exchange.flags.rate_limited = true;
    let mut resp = local_reply(
        StatusCode::from_u16(config.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS),
        "local_rate_limited",
    );
    resp.headers_mut().extend(headers);
    for add in &config.response_headers_to_add {
        add.apply(resp.headers_mut());
    }
    if config.retry_after
        && resp.status() == StatusCode::TOO_MANY_REQUESTS
        && !resp.headers().contains_key(header::RETRY_AFTER)
    {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(take.reset_secs.max(1)),
        );
    }
    Err(Box::new(resp))
}

/// The router: what the matched route does with the request.
#[allow(clippy::too_many_arguments)]
async fn route_request(
    req: Request<Incoming>,
    ctx: &ConnContext,
    exchange: &mut Exchange,
    routes: &RouteConfig,
    vh: &VirtualHost,
    route: &Route,
    target_cluster: Option<String>,
    authority: &str,
    path: &str,
) -> Response<Body> {
    let runtime = &ctx.runtime;
    match &route.action {
        Action::DirectResponse { status, body } => {
            exchange.details = Some("direct_response");
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            let mut resp = local_reply(status, body.as_deref().unwrap_or(""));
            if body.is_none() {
                resp.headers_mut().remove(header::CONTENT_TYPE);
            }
            finish_response_headers(resp.headers_mut(), routes, vh, route);
            resp
        }
        Action::Redirect(r) => {
            exchange.details = Some("direct_response");
            let mut resp = redirect(r, authority, path, &route.matcher.path);
            finish_response_headers(resp.headers_mut(), routes, vh, route);
            resp
        }
        Action::Forward(f) => {
            let Some(cluster_name) = target_cluster else {
                ctx.stats.no_cluster.inc();
                exchange.flags.no_cluster = true;
                return local_reply(status(f.cluster_not_found_status), "");
            };
            let Some(cluster) = runtime.clusters.get(&cluster_name).cloned() else {
                ctx.stats.no_cluster.inc();
                exchange.flags.no_cluster = true;
                return local_reply(status(f.cluster_not_found_status), "");
            };
            // A plain CONNECT (not an HTTP/2 extended one, which is an upgrade): checked without
            // re-reading the headers on every request.
            if req.method() == http::Method::CONNECT
                && extended_connect(req.method(), req.extensions()).is_none()
                && f.upgrade("CONNECT").is_some_and(|u| u.terminate_connect)
            {
                return terminate_connect(req, ctx, &cluster, exchange).await;
            }
            let mut resp = forward(
                req, ctx, routes, vh, route, f, &cluster, authority, path, exchange,
            )
            .await;
            finish_response_headers(resp.headers_mut(), routes, vh, route);
            resp
        }
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// The request's authority: `:authority` for HTTP/2 and absolute-form requests, else `Host`.
fn authority(req: &Request<Incoming>) -> String {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn choose_cluster(f: &Forward, headers: &HeaderMap) -> Option<String> {
    match &f.target {
        Target::Cluster(c) => Some(c.clone()),
        Target::Header(h) => headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        Target::Weighted { clusters, total } => {
            let mut point = rand::rng().random_range(0..(*total).max(1));
            for (name, weight) in clusters {
                let w = u64::from(*weight);
                if point < w {
                    return Some(name.clone());
                }
                point -= w;
            }
            clusters.last().map(|(n, _)| n.clone())
        }
    }
}

fn chance(per_million: u32) -> bool {
    per_million >= 1_000_000
        || (per_million > 0 && rand::rng().random_range(0..1_000_000) < per_million)
}

/// The fault filter: the route's own fault config replaces the listener's.
async fn apply_fault(
    ctx: &ConnContext,
    route: &Route,
    cluster: Option<&str>,
    headers: &HeaderMap,
    exchange: &mut Exchange,
) -> Option<Response<Body>> {
    let listener_fault = ctx.hcm.http_filters.iter().find_map(|f| match f {
        HttpFilter::Fault(c) => Some(c),
        _ => None,
    })?;
    let fault: &FaultConfig = route.fault.as_ref().unwrap_or(listener_fault);
    if !fault.upstream_cluster.is_empty() && Some(fault.upstream_cluster.as_str()) != cluster {
        return None;
    }
    if !fault
        .headers
        .iter()
        .all(|h| h.matches(proxy_model::route::joined_header(headers, &h.name).as_deref()))
    {
        return None;
    }
    if let Some(delay) = &fault.delay
        && chance(delay.per_million)
    {
        let wait = delay.fixed.or_else(|| {
            headers
                .get("x-envoy-fault-delay-request")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
        });
        if let Some(wait) = wait {
            ctx.stats.fault_delays.inc();
            exchange.flags.fault_delay = true;
            tokio::time::sleep(wait).await;
        }
    }
    if let Some(abort) = &fault.abort
        && chance(abort.per_million)
    {
        let status = match abort.kind {
            AbortKind::Http(s) => Some(s),
            AbortKind::Grpc(_) => Some(200),
            AbortKind::Header => headers
                .get("x-envoy-fault-abort-request")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u16>().ok()),
        }?;
        ctx.stats.fault_aborts.inc();
        exchange.flags.fault_abort = true;
        let body = if abort.body.is_empty() {
            "fault filter abort"
        } else {
            &abort.body
        };
        let mut resp = local_reply(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            body,
        );
        if let AbortKind::Grpc(code) = abort.kind {
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            if let Ok(v) = HeaderValue::from_str(&code.to_string()) {
                resp.headers_mut().insert("grpc-status", v);
            }
        }
        return Some(resp);
    }
    None
}

fn redirect(
    r: &Redirect,
    authority: &str,
    path: &str,
    matched: &proxy_model::route::PathMatch,
) -> Response<Body> {
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let scheme = r.scheme.clone().unwrap_or_else(|| "http".to_owned());
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h.to_owned(), Some(p.to_owned())),
        _ => (authority.to_owned(), None),
    };
    let host = r.host.clone().unwrap_or(host);
    // On a scheme change Envoy drops a default port (80, 443) and keeps any other.
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => Some(p.to_string()),
        (None, Some(_)) => port.filter(|p| p != "80" && p != "443"),
        (None, None) => port,
    };
    let new_path = match &r.path {
        RedirectPath::Keep => path_only.to_owned(),
        RedirectPath::Replace(p) => p.clone(),
        RedirectPath::PrefixRewrite(new) => match matched {
            proxy_model::route::PathMatch::Prefix(old)
            | proxy_model::route::PathMatch::SeparatedPrefix(old) => {
                format!("{new}{}", path_only.get(old.len()..).unwrap_or_default())
            }
            _ => new.clone(),
        },
        RedirectPath::RegexRewrite(re, with) => {
            re.replace_all(path_only, with.as_str()).into_owned()
        }
    };
    let mut location = format!("{scheme}://{host}");
    if let Some(p) = port {
        location.push(':');
        location.push_str(&p);
    }
    location.push_str(&new_path);
    if let (Some(q), false) = (query, r.strip_query)
        && !new_path.contains('?')
    {
        location.push('?');
        location.push_str(q);
    }
    let mut resp = local_reply(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::MOVED_PERMANENTLY),
        "",
    );
    resp.headers_mut().remove(header::CONTENT_TYPE);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A response the proxy makes itself, as Envoy's local replies look.
pub fn local_reply(status: StatusCode, body: &str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::copy_from_slice(body.as_bytes())));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp
}

/// A message's `content-length` (0 when it has none).
fn content_length(headers: &HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|e: Infallible| match e {}).boxed()
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

// Header names the hot path uses, made once (a `&str` name is parsed and validated at each use).
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
static X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
static X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");

/// Removes `names` (lower case) from `headers`, looking each up only when some header has one of
/// these names: most messages have none, and a scan is cheaper than a lookup per name.
fn remove_named(headers: &mut HeaderMap, names: &[&str]) {
    if headers.keys().any(|k| names.contains(&k.as_str())) {
        for n in names {
            headers.remove(*n);
        }
    }
}

/// Removes hop-by-hop headers, and those the `connection` header names; `te: trailers` passes, as in
/// Envoy (gRPC needs it end to end).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && n != "te" && n != "close" && n != "keep-alive")
        .collect();
    let trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    remove_named(headers, &HOP_BY_HOP);
    for n in named {
        headers.remove(n.as_str());
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// A request without a body to an HTTP/1 upstream: `content-length: 0` unless its method
/// usually has none (GET, HEAD, DELETE, TRACE, CONNECT), as Envoy's HTTP/1 codec sends it, so that an
/// upstream that wants a length on a POST gets one.
fn says_it_has_no_body(method: &http::Method, headers: &mut HeaderMap) {
    use http::Method as M;
    let bodiless = [M::GET, M::HEAD, M::DELETE, M::TRACE, M::CONNECT];
    if !bodiless.contains(method)
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
}

/// The effective retry policy: the route's, else its virtual host's.
fn retry_policy<'a>(vh: &'a VirtualHost, f: &'a Forward) -> Option<&'a RetryPolicy> {
    f.retry_policy.as_ref().or(vh.retry_policy.as_ref())
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    req: Request<Incoming>,
    ctx: &ConnContext,
    routes: &RouteConfig,
    vh: &VirtualHost,
    route: &Route,
    f: &Forward,
    cluster: &Arc<ClusterRuntime>,
    authority: &str,
    path: &str,
    exchange: &mut Exchange,
) -> Response<Body> {
    let start = Instant::now();
    let downstream_h2 = req.version() == Version::HTTP_2;
    let (mut parts, body) = req.into_parts();
    let policy = retry_policy(vh, f);

    // An upgrade that got here is allowed (`handle` refused the others): hyper left the means to
    // take over the downstream connection in the request's extensions.
    let upgrade_kind = upgrade_type_of(&parts.method, &parts.headers, &parts.extensions);
    let mut downstream_upgrade = upgrade_kind
        .as_ref()
        .and_then(|_| parts.extensions.get::<hyper::upgrade::OnUpgrade>().cloned());
    // An allowed upgrade goes upstream with its `Connection` and `Upgrade` as sent (Envoy strips
    // them from other requests only).
    let mut upgrade_headers = Vec::new();
    let h2_upgrade = extended_connect(&parts.method, &parts.extensions);
    // To an HTTP/2 upstream that takes them (`allow_connect`), an upgrade goes as an extended
    // CONNECT with the upgrade type as `:protocol`, as Envoy sends it; its 200 opens the tunnel.
    let upstream_protocol = upgrade_kind
        .clone()
        .filter(|kind| kind != "CONNECT" && downstream_upgrade.is_some())
        .filter(|_| cluster.uses_h2(downstream_h2) && cluster.config.h2_extended_connect);
    if upstream_protocol.is_some() {
        parts.method = http::Method::CONNECT;
    } else if let Some(protocol) = &h2_upgrade {
        // An HTTP/2 extended CONNECT goes to an HTTP/1 upstream as the upgrade it stands for, as
        // Envoy sends it: GET with `Upgrade: <protocol>` and `Connection: upgrade`.
        if cluster.uses_h2(downstream_h2) {
            return local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "an upgrade to an HTTP/2 upstream needs the cluster's http2_protocol_options.allow_connect",
            );
        }
        parts.method = http::Method::GET;
        upgrade_headers.push((header::CONNECTION, HeaderValue::from_static("upgrade")));
        if let Ok(v) = HeaderValue::from_str(protocol) {
            upgrade_headers.push((header::UPGRADE, v));
        }
    } else if downstream_upgrade.is_some() {
        for name in [header::CONNECTION, header::UPGRADE] {
            for v in parts.headers.get_all(&name) {
                upgrade_headers.push((name.clone(), v.clone()));
            }
        }
    }
    // A consistent-hash cluster picks by the route's hash policy (which may make a cookie to set),
    // on the headers as received.
    let hashed = cluster.uses_hash().then(|| {
        let input = HashInput {
            headers: &parts.headers,
            path,
            peer: Some(ctx.downstream.peer),
            local: None,
        };
        route_hash::compute(&f.hash_policy, &input)
    });

    // The request to send upstream, without its body: the received headers, taken, not copied.
    let mut headers = std::mem::take(&mut parts.headers);
    strip_hop_by_hop(&mut headers);
    // The proxy answers `Expect: 100-continue` itself (hyper sends the 100 once the body is read),
    // so, as from Envoy, it does not go upstream.
    if headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        headers.remove(header::EXPECT);
    }
    if upgrade_headers.is_empty()
        && !cluster.uses_h2(downstream_h2)
        && hyper::body::Body::is_end_stream(&body)
    {
        says_it_has_no_body(&parts.method, &mut headers);
    }
    for (name, value) in upgrade_headers {
        headers.append(name, value);
    }
    headers.remove(header::HOST);
    let upstream_authority = f
        .host_rewrite
        .clone()
        .unwrap_or_else(|| authority.to_owned());
    if f.host_rewrite.is_some()
        && let Ok(v) = HeaderValue::from_str(authority)
    {
        headers.insert("x-envoy-original-host", v);
    }
    let per_try = policy.and_then(|p| p.per_try_timeout);
    if let Some(t) = per_try.or(f.timeout) {
        let millis = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        headers.insert(&X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, HeaderValue::from(millis));
    }
    HeaderMutations::apply_request([&route.headers, &vh.headers, &routes.headers], &mut headers);
    let upstream_path = rewrite_path(path, f, &route.matcher.path);

    // Mirrors (the runtime fraction drawn per request) get copies of the body as it streams to
    // the primary. With a retry policy a copy is also kept to send it again (as Envoy's retry
    // buffer); otherwise it just streams.
    let mirrors: Vec<Arc<ClusterRuntime>> = f
        .mirrors
        .iter()
        .filter(|m| chance(m.per_million))
        .filter_map(|m| ctx.runtime.clusters.get(&m.cluster).cloned())
        .collect();
    let (body, mirror_bodies): (Body, Vec<Body>) =
        if !mirrors.is_empty() && !hyper::body::Body::is_end_stream(&body) {
            let source = body.map_err(|e| Box::new(e) as BoxError).boxed();
            let (primary, copies) = mirror::tee(source, mirrors.len(), RETRY_BUFFER_LIMIT);
            (
                primary.boxed(),
                copies.into_iter().map(|c| c.boxed()).collect(),
            )
        } else {
            let empty = mirrors.iter().map(|_| full(Bytes::new())).collect();
            (body.map_err(|e| Box::new(e) as BoxError).boxed(), empty)
        };
    let mut streaming = None;
    let mut replay = None;
    if policy.is_some() {
        replay = Some(Replay::new(body, RETRY_BUFFER_LIMIT));
    } else {
        streaming = Some(body);
    }

    for (mirror, body) in mirrors.into_iter().zip(mirror_bodies) {
        let mut h = headers.clone();
        let shadow = shadow_authority(&upstream_authority);
        let method = parts.method.clone();
        let path = upstream_path.clone();
        if let Ok(v) = HeaderValue::from_str(&shadow) {
            h.insert(header::HOST, v);
        }
        // Envoy sends mirrors through its own internal HTTP client, which marks them internal and
        // appends the proxy's address to `x-forwarded-for`.
        append_forwarded_for(&mut h, local_address());
        h.insert("x-envoy-internal", HeaderValue::from_static("true"));
        let lb = LbContext {
            original_dst: ctx.downstream.original_dst,
            headers: Some(&h),
            hash: None,
        };
        let host = mirror.pick_for(&lb, &[]);
        tokio::spawn(async move {
            if let Some(host) = host {
                let head = Outgoing {
                    method: &method,
                    path: &path,
                    protocol: None,
                    capture: None,
                };
                let _ = send(&mirror, &host, head, h, body, false).await;
            }
        });
    }

    let attempts = 1 + policy.map_or(0, |p| p.num_retries);
    let deadline = f.timeout.map(|t| start + t);
    let mut tried: Vec<Arc<Host>> = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let lb = LbContext {
            original_dst: ctx.downstream.original_dst,
            headers: Some(&headers),
            hash: hashed.as_ref().and_then(|h| h.hash),
        };
        if cluster.active_requests.load(Ordering::Relaxed)
            >= cluster.config.circuit_breakers.max_requests
        {
            cluster.stats.upstream_rq_active_overflow.inc();
            exchange.flags.upstream_overflow = true;
            return overflow_reply();
        }
        let Some(mut host) = cluster.pick_for(&lb, &[]) else {
            exchange.flags.no_healthy_upstream = true;
            return local_reply(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream");
        };
        // previous_hosts, as Envoy: a host already tried is rejected and another one selected, up
        // to host_selection_retry_max_attempts selections; the last one is used whatever it is.
        if let Some(p) = policy.filter(|p| p.avoid_previous_hosts) {
            for _ in 1..p.host_selection_max_attempts {
                if !tried.iter().any(|t| Arc::ptr_eq(t, &host)) {
                    break;
                }
                match cluster.pick_for(&lb, &[]) {
                    Some(h) => host = h,
                    None => break,
                }
            }
        }
        tried.push(host.clone());
        exchange.upstream_host = Some(host.address.clone());
        // The last attempt takes the headers; one that may be retried sends a copy.
        let mut h = if attempt < attempts {
            headers.clone()
        } else {
            std::mem::take(&mut headers)
        };
        if let Ok(v) = HeaderValue::from_str(&upstream_authority) {
            h.insert(header::HOST, v);
        }
        if vh.include_request_attempt_count {
            h.insert("x-envoy-attempt-count", HeaderValue::from(attempt));
        }
        let body = match (&replay, streaming.take()) {
            (Some(r), _) => r.attempt().boxed(),
            (None, Some(body)) => body,
            (None, None) => full(Bytes::new()),
        };
        let try_timeout = match (per_try, deadline) {
            (Some(p), Some(d)) => Some(p.min(d.saturating_duration_since(Instant::now()))),
            (Some(p), None) => Some(p),
            (None, Some(d)) => Some(d.saturating_duration_since(Instant::now())),
            (None, None) => None,
        };
        // max_connections (HTTP/1.1): without a free connection the request waits, if the pending
        // queue (max_pending_requests) has room, else it overflows.
        let slot = if cluster.uses_h2(downstream_h2) {
            None
        } else {
            match cluster.connection_slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    cluster.stats.upstream_cx_overflow.inc();
                    if cluster.pending.fetch_add(1, Ordering::Relaxed)
                        >= cluster.config.circuit_breakers.max_pending_requests
                    {
                        cluster.pending.fetch_sub(1, Ordering::Relaxed);
                        cluster.stats.upstream_rq_pending_overflow.inc();
                        exchange.flags.upstream_overflow = true;
                        return overflow_reply();
                    }
                    let wait = deadline.map_or(proxy_model::route::DEFAULT_ROUTE_TIMEOUT, |d| {
                        d.saturating_duration_since(Instant::now())
                    });
                    let acquired = tokio::time::timeout(
                        wait,
                        cluster.connection_slots.clone().acquire_owned(),
                    )
                    .await;
                    cluster.pending.fetch_sub(1, Ordering::Relaxed);
                    match acquired {
                        Ok(Ok(slot)) => Some(slot),
                        _ => {
                            exchange.flags.upstream_timeout = true;
                            cluster.stats.upstream_rq_timeout.inc();
                            return local_reply(
                                StatusCode::GATEWAY_TIMEOUT,
                                "upstream request timeout",
                            );
                        }
                    }
                }
            }
        };
        cluster.active_requests.fetch_add(1, Ordering::Relaxed);
        host.active_requests.fetch_add(1, Ordering::Relaxed);
        cluster.stats.upstream_rq_active.inc();
        let connection = std::sync::OnceLock::new();
        let head = Outgoing {
            method: &parts.method,
            path: &upstream_path,
            protocol: upstream_protocol.as_deref(),
            capture: (!ctx.hcm.access_log.is_empty()).then_some(&connection),
        };
        let sent = send(cluster, &host, head, h, body, downstream_h2);
        let result = match try_timeout {
            Some(t) => tokio::time::timeout(t, sent)
                .await
                .map_err(|_| Failure::Timeout)
                .and_then(|r| r),
            None => sent.await,
        };
        cluster.active_requests.fetch_sub(1, Ordering::Relaxed);
        host.active_requests.fetch_sub(1, Ordering::Relaxed);
        cluster.stats.upstream_rq_active.dec();
        if let Some(local) = connection.get().and_then(upstream_local) {
            exchange.upstream_local = Some(local);
        }
        // Envoy counts a request once it has a connection (none when connecting failed); bosun
        // learns that when the attempt ends.
        if !matches!(result, Err(Failure::Connect(_))) {
            cluster.stats.upstream_rq_total.inc();
            host.requests.fetch_add(1, Ordering::Relaxed);
        }

        let overall_expired = deadline.is_some_and(|d| Instant::now() >= d);
        let can_retry = attempt < attempts
            && !overall_expired
            && replay.as_ref().is_some_and(Replay::replayable);
        match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // Envoy's per-host rq_success / rq_error, by each attempt's answer.
                if status >= 500 {
                    host.rq_error.fetch_add(1, Ordering::Relaxed);
                } else {
                    host.rq_success.fetch_add(1, Ordering::Relaxed);
                }
                cluster.record_outcome(
                    &host,
                    if status >= 500 {
                        Outcome::Status(status)
                    } else {
                        Outcome::Success
                    },
                );
                if can_retry
                    && policy.is_some_and(|p| {
                        retriable_status(p, status)
                            || retriable_grpc(p, resp.headers())
                            || p.retriable_response_headers(resp.headers())
                    })
                    && take_retry(cluster, exchange)
                {
                    drop(resp);
                    backoff(policy, attempt).await;
                    continue;
                }
                // Envoy charges the response code once, for the answer that goes downstream.
                cluster.record_status(status);
                let opened = status == 101 || (upstream_protocol.is_some() && status == 200);
                if opened && let Some(downstream) = downstream_upgrade.take() {
                    exchange.upstream_service_time = Some(start.elapsed());
                    let ends = TunnelEnds {
                        downstream,
                        downstream_is_h2: h2_upgrade.is_some(),
                        upstream_protocol: upstream_protocol.as_deref(),
                    };
                    return switch_protocols(resp, ends, slot, ctx, exchange);
                }
                exchange.upstream_service_time = Some(start.elapsed());
                let mut resp = finish_upstream(resp, start.elapsed(), slot);
                for cookie in hashed.iter().flat_map(|h| &h.set_cookies) {
                    if let Ok(v) = HeaderValue::from_str(cookie) {
                        resp.headers_mut().append(header::SET_COOKIE, v);
                    }
                }
                return resp;
            }
            Err(failure) => {
                cluster.record_outcome(&host, Outcome::LocalFailure);
                host.rq_error.fetch_add(1, Ordering::Relaxed);
                if matches!(failure, Failure::Timeout) {
                    host.rq_timeout.fetch_add(1, Ordering::Relaxed);
                }
                let retriable = policy.is_some_and(|p| match failure {
                    // Nothing was sent: a reset before the request, too.
                    Failure::Connect(_) => [
                        "5xx",
                        "gateway-error",
                        "connect-failure",
                        "reset",
                        "reset-before-request",
                    ]
                    .iter()
                    .any(|c| p.retries_on(c)),
                    Failure::Timeout => ["5xx", "gateway-error", "reset"]
                        .iter()
                        .any(|c| p.retries_on(c)),
                    Failure::Reset | Failure::ProtocolError => ["5xx", "gateway-error", "reset"]
                        .iter()
                        .any(|c| p.retries_on(c)),
                    Failure::RefusedStream => ["5xx", "gateway-error", "reset", "refused-stream"]
                        .iter()
                        .any(|c| p.retries_on(c)),
                });
                if failure == Failure::Timeout {
                    if overall_expired {
                        cluster.stats.upstream_rq_timeout.inc();
                    } else {
                        cluster.stats.upstream_rq_per_try_timeout.inc();
                    }
                }
                if can_retry && retriable && take_retry(cluster, exchange) {
                    backoff(policy, attempt).await;
                    continue;
                }
                if overall_expired
                    || (failure == Failure::Timeout && deadline.is_some() && per_try.is_none())
                {
                    exchange.flags.upstream_timeout = true;
                    cluster.record_status(504);
                    return local_reply(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout");
                }
                return match failure {
                    Failure::Timeout => {
                        exchange.flags.upstream_timeout = true;
                        cluster.record_status(504);
                        local_reply(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout")
                    }
                    Failure::Connect(errno) => {
                        exchange.flags.upstream_connect_failure = true;
                        exchange.upstream_failure = errno.map(connect_failure_reason);
                        cluster.record_status(503);
                        local_reply(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &reset_body(attempt, "remote connection failure"),
                        )
                    }
                    Failure::ProtocolError => {
                        exchange.flags.upstream_protocol_error = true;
                        cluster.record_status(502);
                        local_reply(
                            StatusCode::BAD_GATEWAY,
                            &reset_body(attempt, "protocol error"),
                        )
                    }
                    Failure::Reset | Failure::RefusedStream => {
                        exchange.flags.upstream_reset = true;
                        cluster.record_status(503);
                        if cluster.uses_h2(downstream_h2) {
                            // An HTTP/2 stream reset; a closed HTTP/1 connection is not counted here.
                            cluster.stats.upstream_rq_rx_reset.inc();
                        }
                        let reason = if failure == Failure::RefusedStream {
                            "remote refused stream reset"
                        } else {
                            "connection termination"
                        };
                        local_reply(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &reset_body(attempt, reason),
                        )
                    }
                };
            }
        }
    }
}

/// The `x-envoy-*` request headers Envoy removes from requests it does not trust (every request under
/// its default `internal_address_config`, which counts no address as internal).
const INTERNAL_ONLY_HEADERS: [&str; 16] = [
    "x-envoy-internal",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-is-timeout-retry",
];

/// Headers an edge proxy (`use_remote_address`) does not accept from its clients.
const EDGE_REMOVED_HEADERS: [&str; 4] = [
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-original-path",
];

/// Envoy's request header mutations in the connection manager (`mutateRequestHeaders`), for its default
/// `internal_address_config` (no address is internal, so every request is external): clean the
/// internal-only `x-envoy-*` headers; at the edge (`use_remote_address`) append the peer to
/// `x-forwarded-for` (the machine's own address for a loopback peer, as Envoy), set
/// `x-envoy-external-address`, overwrite `x-forwarded-proto` and drop the client's `x-request-id`;
/// then give the request an `x-request-id` if it has none (`generate_request_id`).
fn mutate_request_headers(headers: &mut HeaderMap, conn: &Connection) {
    let hcm = &conn.hcm;
    // One look at the names for both: most requests carry neither.
    let (mut envoy, mut xfcc) = (false, false);
    for k in headers.keys() {
        let k = k.as_str();
        envoy |= k.starts_with("x-envoy-");
        xfcc |= k == X_FORWARDED_CLIENT_CERT.as_str();
    }
    if xfcc || hcm.forward_client_cert.sets_element() {
        forward_client_cert(
            headers,
            hcm.forward_client_cert,
            conn.downstream.client_certificate.as_ref(),
        );
    }
    let scheme = HeaderValue::from_static(if conn.downstream.tls { "https" } else { "http" });
    if envoy {
        remove_named(headers, &INTERNAL_ONLY_HEADERS);
        if hcm.use_remote_address {
            remove_named(headers, &EDGE_REMOVED_HEADERS);
        }
    }
    if hcm.use_remote_address {
        let peer = conn.downstream.peer;
        let appended = if peer.ip().is_loopback() {
            local_address()
        } else {
            peer.ip()
        };
        append_forwarded_for(headers, appended);
        if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
            headers.insert("x-envoy-external-address", v);
        }
        headers.insert(&X_FORWARDED_PROTO, scheme);
        if !hcm.preserve_external_request_id {
            headers.remove(&X_REQUEST_ID);
        }
    } else if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(&X_FORWARDED_PROTO, scheme);
    }
    if hcm.generate_request_id && !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(&X_REQUEST_ID, request_id());
    }
}

/// `x-forwarded-client-cert` as the connection manager's `forward_client_cert_details` says, for a
/// request from a client that presented `client` (none: not mutual TLS): removed, kept, or with this
/// hop's element appended or alone.
fn forward_client_cert(
    headers: &mut HeaderMap,
    mode: ForwardClientCert,
    client: Option<&ClientCertificate>,
) {
    let keep = match mode {
        ForwardClientCert::AlwaysForwardOnly => true,
        ForwardClientCert::ForwardOnly | ForwardClientCert::AppendForward => client.is_some(),
        ForwardClientCert::Sanitize | ForwardClientCert::SanitizeSet => false,
    };
    let received = if keep {
        proxy_model::route::joined_header(headers, X_FORWARDED_CLIENT_CERT.as_str())
    } else {
        None
    };
    headers.remove(&X_FORWARDED_CLIENT_CERT);
    let element = client
        .and_then(|c| c.element.as_ref())
        .filter(|_| mode.sets_element());
    let value = match (received, element) {
        (Some(old), Some(own)) if !old.is_empty() && mode == ForwardClientCert::AppendForward => {
            HeaderValue::from_str(&format!("{old},{}", own.to_str().unwrap_or_default())).ok()
        }
        (_, Some(own)) => Some(own.clone()),
        (Some(old), None) => HeaderValue::from_str(&old).ok(),
        (None, None) => None,
    };
    if let Some(v) = value {
        headers.insert(&X_FORWARDED_CLIENT_CERT, v);
    }
}

/// Appends `ip` to `x-forwarded-for` (joining repeated headers into one).
fn append_forwarded_for(headers: &mut HeaderMap, ip: std::net::IpAddr) {
    let xff = match proxy_model::route::joined_header(headers, "x-forwarded-for") {
        Some(old) if !old.is_empty() => format!("{old},{ip}"),
        _ => ip.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
}

/// The machine's own (non-loopback) IPv4 address, which Envoy puts in `x-forwarded-for` for loopback
/// peers: the source address the routing table picks (no packet is sent), else loopback.
fn local_address() -> std::net::IpAddr {
    static LOCAL: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();
    *LOCAL.get_or_init(|| {
        std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| {
                s.connect("198.51.100.1:9")?;
                s.local_addr()
            })
            .map(|a| a.ip())
            .ok()
            .filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    })
}

/// Whether the retry budget (`max_retries` concurrent retries) allows one more.
fn take_retry(cluster: &ClusterRuntime, exchange: &mut Exchange) -> bool {
    let active = cluster.active_retries.fetch_add(1, Ordering::Relaxed);
    if active >= cluster.config.circuit_breakers.max_retries {
        cluster.active_retries.fetch_sub(1, Ordering::Relaxed);
        cluster.stats.upstream_rq_retry_overflow.inc();
        exchange.flags.retry_limit = true;
        return false;
    }
    cluster.stats.upstream_rq_retry.inc();
    // The retry is "active" only while it waits; Envoy counts it until the attempt starts.
    cluster.active_retries.fetch_sub(1, Ordering::Relaxed);
    true
}

/// Envoy's fully jittered exponential back-off: a random time in [0, base × 2^(n-1)], capped.
async fn backoff(policy: Option<&RetryPolicy>, attempt: u32) {
    let Some(p) = policy else { return };
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let ceiling = p.base_interval.saturating_mul(factor).min(p.max_interval);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let wait = rand::rng().random_range(0..=millis);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

fn retriable_status(p: &RetryPolicy, status: u16) -> bool {
    (p.retries_on("5xx") && status >= 500)
        || (p.retries_on("gateway-error") && matches!(status, 502..=504))
        || (p.retries_on("retriable-4xx") && status == 409)
        || (p.retries_on("retriable-status-codes") && p.retriable_status_codes.contains(&status))
}

/// gRPC's retry conditions, on the `grpc-status` of the response headers (a trailers-only answer),
/// as Envoy: `cancelled` (1), `deadline-exceeded` (4), `resource-exhausted` (8), `internal` (13),
/// `unavailable` (14).
fn retriable_grpc(p: &RetryPolicy, headers: &HeaderMap) -> bool {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok()?.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let condition = match code {
        1 => "cancelled",
        4 => "deadline-exceeded",
        8 => "resource-exhausted",
        13 => "internal",
        14 => "unavailable",
        _ => return false,
    };
    p.retries_on(condition)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Connecting failed, with the system's error number when there was one.
    Connect(Option<i32>),
    Timeout,
    /// The connection closed or the stream was reset before a response.
    Reset,
    /// An HTTP/2 upstream refused the stream (`REFUSED_STREAM`): only this is `refused-stream`.
    RefusedStream,
    /// The answer was no HTTP the proxy reads: a malformed head, or a body framing Envoy's codec
    /// refuses (both `Content-Length` and `Transfer-Encoding`, or a coding other than `chunked`).
    ProtocolError,
}

/// The local address of the connection a request went out on, once it had one.
fn upstream_local(connection: &CaptureConnection) -> Option<SocketAddr> {
    let connected = connection.connection_metadata();
    let mut extras = http::Extensions::new();
    connected.as_ref()?.get_extras(&mut extras);
    extras.get::<crate::tls::UpstreamLocal>().map(|l| l.0)
}

/// The system error number under `e`, if one of its causes is an I/O error with one.
fn os_error(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cause = err.source();
    }
    None
}

/// Envoy's `UPSTREAM_TRANSPORT_FAILURE_REASON` for a connection that failed with `errno`:
/// `delayed_connect_error:_Connection_refused` (its access log fields have no spaces).
pub fn connect_failure_reason(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    // std appends " (os error N)" to the system's text.
    let text = text.split(" (os error").next().unwrap_or(&text);
    format!("delayed_connect_error:_{}", text.replace(' ', "_"))
}

/// Whether `e` or one of its causes is an HTTP/2 `REFUSED_STREAM` reset.
fn is_refused_stream(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        cause = err.source();
    }
    false
}

/// What an upstream request is besides its headers and body.
struct Outgoing<'a> {
    method: &'a http::Method,
    path: &'a str,
    /// The `:protocol` of an HTTP/2 extended CONNECT.
    protocol: Option<&'a str>,
    /// Where to keep a handle on the connection the request goes out on (for the access log,
    /// which wants its local address even when no answer comes).
    capture: Option<&'a std::sync::OnceLock<CaptureConnection>>,
}

async fn send(
    cluster: &ClusterRuntime,
    host: &Host,
    head: Outgoing<'_>,
    headers: HeaderMap,
    body: Body,
    downstream_h2: bool,
) -> Result<Response<Incoming>, Failure> {
    let Outgoing {
        method,
        path,
        protocol,
        capture,
    } = head;
    let mut req = Request::new(body);
    *req.method_mut() = method.clone();
    *req.headers_mut() = headers;
    if let Some(slot) = capture {
        let _ = slot.set(capture_connection(&mut req));
    }
    if let Some(p) = protocol {
        req.extensions_mut().insert(hyper::ext::Protocol::from(p));
    }
    let h2 = cluster.uses_h2(downstream_h2);
    if h2 {
        // HTTP/2 sends the authority as `:authority`, from the URI; no `host` header.
        let authority = req
            .headers_mut()
            .remove(header::HOST)
            .and_then(|h| h.to_str().ok().map(str::to_owned))
            .unwrap_or_else(|| host.address.clone());
        *req.uri_mut() = format!("http://{authority}{path}")
            .parse()
            .map_err(|_| Failure::Reset)?;
    } else {
        // The Host header stays.
        *req.uri_mut() = upstream_uri(host, path).ok_or(Failure::Reset)?;
    }
    let result = cluster.request(host, h2, req).await;
    match result {
        Ok(resp) if !h2 && !readable_framing(resp.headers()) => Err(Failure::ProtocolError),
        Ok(resp) => Ok(resp),
        Err(e) if e.is_connect() => Err(Failure::Connect(os_error(&e))),
        Err(e) if is_refused_stream(&e) => Err(Failure::RefusedStream),
        Err(e) if is_parse_error(&e) => Err(Failure::ProtocolError),
        Err(_) => Err(Failure::Reset),
    }
}

/// Whether an HTTP/1 response's body framing is one Envoy's codec reads: no `Transfer-Encoding`, or
/// exactly `chunked` without a `Content-Length` (hyper would take the coding and leave the length
/// to be sent on, wrong, downstream).
fn readable_framing(headers: &HeaderMap) -> bool {
    !headers.contains_key(header::TRANSFER_ENCODING)
        || (http1::only_chunked(headers) && !headers.contains_key(header::CONTENT_LENGTH))
}

/// Whether `e` or one of its causes is hyper failing to parse what the upstream sent.
fn is_parse_error(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e)
        .find_map(|e| e.downcast_ref::<hyper::Error>())
        .is_some_and(|h| h.is_parse() || h.is_parse_status() || h.is_parse_too_large())
}

/// `http://ADDRESS/path` (a Unix socket's host: `http://localhost/path`): the URI the HTTP/1.1
/// client is given, which sends the path, and the authority as `Host` if the request has none.
fn upstream_uri(host: &Host, path: &str) -> Option<http::Uri> {
    match &host.authority {
        // The usual case, without formatting and parsing the whole URI again.
        Some(authority) if path.starts_with('/') => {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(http::uri::Scheme::HTTP);
            parts.authority = Some(authority.clone());
            parts.path_and_query = Some(path.parse().ok()?);
            http::Uri::from_parts(parts).ok()
        }
        _ if is_pipe(&host.address) => format!("http://localhost{path}").parse().ok(),
        _ => format!("http://{}{}", host.address, path).parse().ok(),
    }
}

/// Envoy's body for a request that got no response headers; after retries it says so.
fn reset_body(attempt: u32, reason: &str) -> String {
    let retried = if attempt > 1 {
        "retried and the latest reset reason"
    } else {
        "reset reason"
    };
    format!("upstream connect error or disconnect/reset before headers. {retried}: {reason}")
}

/// Envoy's answer when a circuit breaker trips.
fn overflow_reply() -> Response<Body> {
    let mut resp = local_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream connect error or disconnect/reset before headers. reset reason: overflow",
    );
    resp.headers_mut()
        .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
    resp
}

/// The two sides of an upgrade the upstream accepted.
struct TunnelEnds<'a> {
    downstream: hyper::upgrade::OnUpgrade,
    /// The client asked by HTTP/2 extended CONNECT.
    downstream_is_h2: bool,
    /// The upstream was asked by HTTP/2 extended CONNECT, with this `:protocol`.
    upstream_protocol: Option<&'a str>,
}

/// The upstream accepted the upgrade (101, or 200 to an extended CONNECT): answer it downstream and
/// splice the two sides once both have switched, until either closes or nothing moves for the
/// stream idle timeout. The route timeout no longer applies, as in Envoy. An HTTP/1 client gets the
/// upstream's headers with its `Upgrade` and `Connection` (as Envoy), or, from an HTTP/2 upstream, a
/// 101 naming the upgrade; an HTTP/2 client gets a 200 without them, and its stream carries the
/// tunnel.
fn switch_protocols(
    mut resp: Response<Incoming>,
    ends: TunnelEnds<'_>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ctx: &ConnContext,
    exchange: &mut Exchange,
) -> Response<Body> {
    let TunnelEnds {
        downstream,
        downstream_is_h2,
        upstream_protocol,
    } = ends;
    let upstream = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    for h in HOP_BY_HOP {
        if downstream_is_h2 || (h != "connection" && h != "upgrade") {
            parts.headers.remove(h);
        }
    }
    if downstream_is_h2 {
        parts.status = StatusCode::OK;
        parts.version = Version::HTTP_2;
    } else {
        if let Some(protocol) = upstream_protocol {
            parts.status = StatusCode::SWITCHING_PROTOCOLS;
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Ok(v) = HeaderValue::from_str(protocol) {
                parts.headers.insert(header::UPGRADE, v);
            }
        }
        parts.version = Version::HTTP_11;
    }
    spawn_tunnel(ctx, exchange, async move {
        let (down, up) = tokio::join!(downstream, upstream);
        match (down, up) {
            (Ok(down), Ok(up)) => Ok((TokioIo::new(down), TokioIo::new(up), slot)),
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        }
    });
    Response::from_parts(parts, full(Bytes::new()))
}

/// Envoy's CONNECT termination (`connect_config`): open a TCP connection (TLS when the cluster
/// originates it) to a host of the cluster, answer 200 and tunnel the payload both ways; a failed
/// connection is 503 UF with Envoy's body.
async fn terminate_connect(
    mut req: Request<Incoming>,
    ctx: &ConnContext,
    cluster: &Arc<ClusterRuntime>,
    exchange: &mut Exchange,
) -> Response<Body> {
    let downstream = hyper::upgrade::on(&mut req);
    let lb = LbContext {
        original_dst: ctx.downstream.original_dst,
        headers: Some(req.headers()),
        // A tunnel is not hashed (a consistent-hash cluster picks at random), as for mirrors.
        hash: None,
    };
    let Some(host) = cluster.pick_for(&lb, &[]) else {
        exchange.flags.no_healthy_upstream = true;
        return local_reply(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream");
    };
    exchange.upstream_host = Some(host.address.clone());
    let upstream = match cluster.open_stream(&host).await {
        Ok(io) => io,
        Err(e) => {
            tracing::debug!("CONNECT to {}: {e}", host.address);
            exchange.flags.upstream_connect_failure = true;
            exchange.upstream_failure = e.raw_os_error().map(connect_failure_reason);
            return local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &reset_body(1, "remote connection failure"),
            );
        }
    };
    spawn_tunnel(ctx, exchange, async move {
        downstream
            .await
            .map(|down| (TokioIo::new(down), upstream, None))
            .map_err(|e| e.to_string())
    });
    // No content-length: a 2xx answer to CONNECT has no body, the tunnel follows.
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// Runs a tunnel in the background once `ready` yields both ends, counted in the connection
/// manager's upgrade stats; `slot` (a connection slot of the cluster) is held until it ends, and
/// how it ended goes to `exchange.tunnel`.
fn spawn_tunnel<D, U>(
    ctx: &ConnContext,
    exchange: &mut Exchange,
    ready: impl std::future::Future<
        Output = Result<(D, U, Option<tokio::sync::OwnedSemaphorePermit>), String>,
    > + Send
    + 'static,
) where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let idle = ctx.hcm.stream_idle_timeout;
    let stats = ctx.stats.clone();
    let (report, ended) = tokio::sync::oneshot::channel();
    exchange.tunnel = Some(ended);
    tokio::spawn(async move {
        match ready.await {
            Ok((down, up, slot)) => {
                stats.upgrades_total.inc();
                stats.upgrades_active.inc();
                let end = crate::tcp::splice(down, up, idle).await;
                stats.upgrades_active.dec();
                drop(slot);
                let _ = report.send(end);
            }
            Err(e) => tracing::debug!("tunnel not established: {e}"),
        }
    });
}

fn finish_upstream(
    resp: Response<Incoming>,
    service_time: Duration,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // The status goes on with its standard reason phrase, as Envoy writes it, not the upstream's
    // (`Unknown` for a status that has none).
    parts.extensions.remove::<hyper::ext::ReasonPhrase>();
    if parts.status.canonical_reason().is_none() {
        parts
            .extensions
            .insert(hyper::ext::ReasonPhrase::from_static(b"Unknown"));
    }
    let millis = u64::try_from(service_time.as_millis()).unwrap_or(u64::MAX);
    parts
        .headers
        .insert(&X_ENVOY_UPSTREAM_SERVICE_TIME, HeaderValue::from(millis));
    parts.version = Version::HTTP_11;
    let body = body.map_err(|e| Box::new(e) as BoxError).boxed();
    Response::from_parts(parts, Guarded::new(body, slot).boxed())
}

fn finish_response_headers(
    headers: &mut HeaderMap,
    routes: &RouteConfig,
    vh: &VirtualHost,
    route: &Route,
) {
    HeaderMutations::apply_response([&route.headers, &vh.headers, &routes.headers], headers);
}

/// `prefix_rewrite` replaces the matched prefix; `regex_rewrite` substitutes in the path (the query
/// string is kept).
fn rewrite_path(path: &str, f: &Forward, matched: &proxy_model::route::PathMatch) -> String {
    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut new = path_only.to_owned();
    if let Some(prefix) = &f.prefix_rewrite {
        let old_len = match matched {
            proxy_model::route::PathMatch::Prefix(p)
            | proxy_model::route::PathMatch::SeparatedPrefix(p) => p.len(),
            proxy_model::route::PathMatch::Exact(p) => p.len(),
            proxy_model::route::PathMatch::Regex(_) | proxy_model::route::PathMatch::Connect => {
                path_only.len()
            }
        };
        new = format!("{prefix}{}", path_only.get(old_len..).unwrap_or_default());
    } else if let Some((re, with)) = &f.regex_rewrite {
        new = re.replace_all(path_only, with.as_str()).into_owned();
    }
    match query {
        Some(q) => format!("{new}?{q}"),
        None => new,
    }
}

/// Envoy's shadow host: `-shadow` appended to the host part of the authority.
fn shadow_authority(authority: &str) -> String {
    match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => format!("{h}-shadow:{p}"),
        _ => format!("{authority}-shadow"),
    }
}

/// A random UUID (version 4), as Envoy generates `x-request-id`; written digit by digit (it is made
/// for every request).
fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1; // The `-` already there.
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = request_id();
        let id = id.to_str().expect("ASCII");
        assert_eq!(id.len(), 36);
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(request_id(), id);
    }

    #[test]
    fn shadow_authority_keeps_the_port() {
        assert_eq!(shadow_authority("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_authority("reviews"), "reviews-shadow");
    }

    #[test]
    fn flags_render_in_envoy_order() {
        let render = |f: &Flags| {
            let mut out = String::new();
            f.push_to(&mut out);
            out
        };
        let f = Flags {
            upstream_connect_failure: true,
            retry_limit: true,
            ..Flags::default()
        };
        assert_eq!(render(&f), "UF,URX");
        assert_eq!(render(&Flags::default()), "-");
        let f = Flags {
            rate_limited: true,
            ..Flags::default()
        };
        assert_eq!(render(&f), "RL");
    }
}
