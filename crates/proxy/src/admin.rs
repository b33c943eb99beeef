//! Envoy's admin interface (on `admin.address`, Istio's 15000): `/ready`, `/server_info`, `/stats`,
//! `/stats/prometheus`, `/clusters`, `/listeners`, `/config_dump`, `/logging`.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use proxy_model::listener::NetworkFilter;
use serde_json::json;
use tokio::net::TcpListener;

use crate::Proxy;
use crate::http::full;
use crate::upstream::Body;

pub async fn serve(
    proxy: Arc<Proxy>,
    socket: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(handle(&proxy, &req)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    r
}

fn json_reply(value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(
        serde_json::to_string_pretty(value).unwrap_or_default(),
    )));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn handle(proxy: &Proxy, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    match path {
        "/ready" => {
            if proxy.is_ready() {
                text(StatusCode::OK, "LIVE\n".to_owned())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n".to_owned())
            }
        }
        "/server_info" => json_reply(&json!({
            "version": concat!("bosun/", env!("CARGO_PKG_VERSION")),
            "state": if proxy.is_ready() { "LIVE" } else { "DRAINING" },
            "uptime_current_epoch": format!("{}s", proxy.started.elapsed().as_secs()),
            "node": {"id": proxy.settings.node_id, "cluster": proxy.settings.node_cluster},
        })),
        "/stats" => text(StatusCode::OK, proxy.registry.render_text()),
        "/stats/prometheus" => text(StatusCode::OK, proxy.registry.render_prometheus()),
        "/clusters" => text(StatusCode::OK, clusters(proxy)),
        "/listeners" => {
            let runtime = proxy.runtime.load();
            let mut out = String::new();
            for l in &runtime.snapshot.listeners {
                let _ = writeln!(out, "{}::{}:{}", l.name, l.host, l.port);
            }
            text(StatusCode::OK, out)
        }
        "/config_dump" => json_reply(&config_dump(proxy)),
        "/logging" => text(StatusCode::OK, "active loggers: set with --log-level\n".to_owned()),
        "/" => text(
            StatusCode::OK,
            "admin commands are:\n  /clusters\n  /config_dump\n  /listeners\n  /logging\n  /ready\n  /server_info\n  /stats\n  /stats/prometheus\n"
                .to_owned(),
        ),
        _ => text(StatusCode::NOT_FOUND, format!("invalid path: {path}\n")),
    }
}

/// Envoy's `/clusters` text: `cluster::host:port::stat::value` lines per host.
fn clusters(proxy: &Proxy) -> String {
    let runtime = proxy.runtime.load();
    let mut names: Vec<&String> = runtime.clusters.keys().collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let c = &runtime.clusters[name];
        let cb = &c.config.circuit_breakers;
        let _ = writeln!(
            out,
            "{name}::default_priority::max_connections::{}",
            cb.max_connections
        );
        let _ = writeln!(
            out,
            "{name}::default_priority::max_pending_requests::{}",
            cb.max_pending_requests
        );
        let _ = writeln!(
            out,
            "{name}::default_priority::max_requests::{}",
            cb.max_requests
        );
        let _ = writeln!(
            out,
            "{name}::default_priority::max_retries::{}",
            cb.max_retries
        );
        for h in c.priorities.iter().flatten() {
            let a = &h.address;
            let _ = writeln!(
                out,
                "{name}::{a}::rq_active::{}",
                h.active_requests.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "{name}::{a}::rq_total::{}",
                h.requests.load(Ordering::Relaxed)
            );
            let _ = writeln!(out, "{name}::{a}::weight::{}", h.weight);
            let flags = match (h.healthy, h.is_ejected()) {
                (true, false) => "healthy".to_owned(),
                (false, false) => "/failed_eds_health".to_owned(),
                (true, true) => "/failed_outlier_check".to_owned(),
                (false, true) => "/failed_eds_health/failed_outlier_check".to_owned(),
            };
            let _ = writeln!(out, "{name}::{a}::health_flags::{flags}");
        }
    }
    out
}

/// A summary of the running config in the shape of Envoy's config dump sections.
fn config_dump(proxy: &Proxy) -> serde_json::Value {
    let runtime = proxy.runtime.load();
    let listeners: Vec<_> = runtime
        .snapshot
        .listeners
        .iter()
        .map(|l| {
            let chains: Vec<_> = l
                .filter_chains
                .iter()
                .map(|fc| match &fc.network {
                    NetworkFilter::Http(h) => json!({"name": fc.name, "http_connection_manager": {"stat_prefix": h.stat_prefix}}),
                    NetworkFilter::Tcp(t) => json!({"name": fc.name, "tcp_proxy": {"stat_prefix": t.stat_prefix, "clusters": t.clusters}}),
                })
                .collect();
            json!({"name": l.name, "address": format!("{}:{}", l.host, l.port), "filter_chains": chains})
        })
        .collect();
    let mut clusters: Vec<_> = runtime
        .clusters
        .values()
        .map(|c| {
            json!({
                "name": c.config.name,
                "type": format!("{:?}", c.config.discovery),
                "lb_policy": format!("{:?}", c.config.lb_policy),
                "connect_timeout": format!("{}s", c.config.connect_timeout.as_secs_f64()),
                "endpoints": c.priorities.iter().flatten().map(|h| h.address.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    clusters.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json!({
        "configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "node": {"id": proxy.settings.node_id, "cluster": proxy.settings.node_cluster}},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "static_clusters": clusters},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "static_listeners": listeners},
        ]
    })
}
