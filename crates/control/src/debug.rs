//! The control plane's monitoring port (Istio's 15014): `/ready`, `/metrics` (Prometheus),
//! `/debug/syncz`, `/debug/config_dump?proxy=ID`, `/debug/config_errors`, and `POST /apply` (what
//! `bosun apply` sends).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::error::ControlError;
use crate::server::Shared;
use crate::store::parse_config;

/// The largest body `/apply` takes.
const MAX_APPLY_BYTES: usize = 8 * 1024 * 1024;
/// How long a client may take to send a request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

fn json_response(value: &Value) -> Response<Body> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    respond(StatusCode::OK, "application/json", text + "\n")
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Binds `addr` and serves the debug API in the background.
pub async fn serve(
    shared: Arc<Shared>,
    addr: SocketAddr,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ControlError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ControlError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ControlError::Bind { addr, source })?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(Duration::from_secs(300), conn).await;
            });
        }
    });
    Ok((local, task))
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    match (req.method(), path.as_str()) {
        (&Method::GET, "/ready") => {
            if shared.ready.load(Ordering::Acquire) {
                respond(StatusCode::OK, "text/plain", "ready\n")
            } else {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n")
            }
        }
        (&Method::GET, "/metrics") => {
            respond(StatusCode::OK, "text/plain; version=0.0.4", metrics(shared))
        }
        (&Method::GET, "/debug/syncz") => json_response(&syncz(shared)),
        (&Method::GET, "/debug/config_errors") => {
            let errors: Vec<Value> = shared
                .store()
                .errors()
                .into_iter()
                .map(|e| json!({"source": e.source, "errors": e.errors}))
                .collect();
            json_response(&Value::Array(errors))
        }
        (&Method::GET, "/debug/config_dump") => {
            let Some(id) = query_param(query.as_deref(), "proxy") else {
                return respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "add ?proxy=NODE_ID (see /debug/syncz for the connected ones)\n",
                );
            };
            match shared.cache.snapshot(&id) {
                Some(snapshot) => json_response(&config_dump(&snapshot)),
                None => respond(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!(
                        "no config for proxy {id:?} (see /debug/syncz for the connected ones)\n"
                    ),
                ),
            }
        }
        (&Method::POST, "/apply") => apply(shared, req).await,
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /ready, /metrics, /debug/syncz, /debug/config_dump?proxy=ID, /debug/config_errors, POST /apply\n",
        ),
    }
}

async fn apply(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let source = req
        .headers()
        .get("x-bosun-source")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("apply")
        .to_owned();
    let body = match tokio::time::timeout(
        REQUEST_TIMEOUT,
        Limited::new(req.into_body(), MAX_APPLY_BYTES).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                format!("cannot read the body (at most {MAX_APPLY_BYTES} bytes): {e}\n"),
            );
        }
        Err(_) => return respond(StatusCode::REQUEST_TIMEOUT, "text/plain", "timed out\n"),
    };
    let text = String::from_utf8_lossy(&body);
    match parse_config(&source, &text) {
        Ok(parsed) => {
            let resources = parsed.resources.iter().map(|r| r.key());
            let secrets = parsed
                .secrets
                .iter()
                .map(|s| format!("Secret {}/{}", s.namespace, s.name));
            let names: Vec<String> = resources.chain(secrets).collect();
            let mut store = shared.store();
            store.apply(parsed);
            store.set_apply_errors(Vec::new());
            drop(store);
            shared.notify_changed();
            info!(source, "applied {}", names.join(", "));
            let mut out = String::new();
            for n in &names {
                out.push_str(&format!("{n} applied\n"));
            }
            respond(StatusCode::OK, "text/plain", out)
        }
        Err(errors) => {
            shared
                .metrics
                .config_rejections
                .fetch_add(1, Ordering::Relaxed);
            for e in &errors {
                warn!("apply refused: {e}");
            }
            shared.store().set_apply_errors(errors.clone());
            respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                errors.join("\n") + "\n",
            )
        }
    }
}

fn syncz(shared: &Shared) -> Value {
    let statuses = shared.cache.sync_status();
    Value::Array(
        statuses
            .into_iter()
            .map(|s| {
                let types: serde_json::Map<String, Value> = s
                    .types
                    .iter()
                    .map(|(url, t)| {
                        (
                            xds_server::short_name(url).to_owned(),
                            json!({
                                "sent": t.sent_version,
                                "acked": t.acked_version,
                                "nacked": t.nacked_version,
                                "last_nack": t.last_nack,
                                "in_sync": t.in_sync(),
                            }),
                        )
                    })
                    .collect();
                let in_sync = !s.types.is_empty() && s.types.values().all(|t| t.in_sync());
                json!({
                    "proxy": s.proxy.node_id,
                    "connection": s.proxy.connection_id,
                    "address": s.proxy.address.map(|a| a.to_string()),
                    "mode": s.proxy.mode.as_str(),
                    "version": s.snapshot_version,
                    "in_sync": in_sync,
                    "types": types,
                })
            })
            .collect(),
    )
}

fn config_dump(snapshot: &xds_server::Snapshot) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("version".into(), json!(snapshot.version()));
    for url in snapshot.type_urls() {
        let resources: Vec<Value> = snapshot
            .resources(url)
            .into_iter()
            .flat_map(|m| m.iter().map(|(_, r)| r))
            .map(|r| {
                let mut v = xds_api::json::encoded_to_json(xds_api::any::type_name(url), r.value())
                    .unwrap_or_else(|e| json!({"error": e.to_string()}));
                // Secrets' private keys stay out of the dump, as Envoy's own.
                xds_api::json::redact(&mut v);
                v
            })
            .collect();
        out.insert(
            xds_server::short_name(url).to_owned(),
            Value::Array(resources),
        );
    }
    Value::Object(out)
}

fn metrics(shared: &Shared) -> String {
    let m = &shared.metrics;
    let c = shared.cache.counters();
    let pushes = m.pushes.load(Ordering::Relaxed);
    let micros = m.push_micros_total.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "bosun_control_pushes_total",
        "counter",
        "Config changes pushed (each regenerates every connected proxy).",
        pushes.to_string(),
    );
    metric(
        "bosun_control_proxy_pushes_total",
        "counter",
        "Proxy configs that changed and were pushed.",
        m.proxy_pushes.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "bosun_control_push_seconds_sum",
        "counter",
        "Time spent building the index and generating configs.",
        format!("{:.6}", micros as f64 / 1e6),
    );
    metric(
        "bosun_control_push_seconds_count",
        "counter",
        "Pushes timed.",
        pushes.to_string(),
    );
    metric(
        "bosun_control_last_push_seconds",
        "gauge",
        "Time the last push took to generate.",
        format!(
            "{:.6}",
            m.last_push_micros.load(Ordering::Relaxed) as f64 / 1e6
        ),
    );
    metric(
        "bosun_control_convergence_seconds_sum",
        "counter",
        "From a change being noticed to every connected proxy having ACKed the push it caused.",
        format!(
            "{:.6}",
            m.convergence_micros_total.load(Ordering::Relaxed) as f64 / 1e6
        ),
    );
    metric(
        "bosun_control_convergence_seconds_count",
        "counter",
        "Pushes that converged.",
        m.convergences.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "bosun_control_last_convergence_seconds",
        "gauge",
        "Convergence time of the last push that converged.",
        format!(
            "{:.6}",
            m.last_convergence_micros.load(Ordering::Relaxed) as f64 / 1e6
        ),
    );
    metric(
        "bosun_control_convergence_timeouts_total",
        "counter",
        "Pushes not ACKed by every proxy within 30 s (a NACK, or a proxy that does not answer).",
        m.convergence_timeouts.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "bosun_control_xds_responses_total",
        "counter",
        "xDS responses sent.",
        c.responses.to_string(),
    );
    metric(
        "bosun_control_xds_acks_total",
        "counter",
        "xDS ACKs received.",
        c.acks.to_string(),
    );
    metric(
        "bosun_control_xds_nacks_total",
        "counter",
        "xDS NACKs received (see /debug/syncz for which proxy and why).",
        c.nacks.to_string(),
    );
    metric(
        "bosun_control_connected_proxies",
        "gauge",
        "ADS streams open.",
        c.connected_proxies.to_string(),
    );
    metric(
        "bosun_control_config_rejections_total",
        "counter",
        "Applied configs refused by validation.",
        m.config_rejections.load(Ordering::Relaxed).to_string(),
    );
    out
}
