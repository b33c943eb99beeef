//! Envoy's admin interface (on `admin.address`, Istio's 15000): `/ready`, `/server_info`, `/stats`,
//! `/stats/prometheus`, `/clusters`, `/listeners`, `/config_dump`, `/logging`.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use proxy_model::listener::{NetworkFilter, RouteSource};
use serde_json::json;
use tokio::net::TcpListener;
use xds_client::ResourceType;

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
            // LIVE once the initial configuration is applied (at once for a static bootstrap).
            let status = if proxy.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, format!("{}\n", proxy.state()))
        }
        "/server_info" => json_reply(&json!({
            "version": concat!("bosun/", env!("CARGO_PKG_VERSION")),
            "state": proxy.state(),
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
        "/logging" => logging(proxy, req),
        "/" => text(
            StatusCode::OK,
            "admin commands are:\n  /clusters\n  /config_dump\n  /listeners\n  /logging\n  /ready\n  /server_info\n  /stats\n  /stats/prometheus\n"
                .to_owned(),
        ),
        _ => text(StatusCode::NOT_FOUND, format!("invalid path: {path}\n")),
    }
}

/// `POST /logging[?…]`: see [`crate::logging`]. As Envoy, a `GET` changes nothing and gets 405.
fn logging(proxy: &Proxy, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != http::Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {} not allowed, POST required.", req.method()),
        );
    }
    match &proxy.loggers {
        Some(loggers) => {
            let answer = loggers.handle(req.uri().query());
            text(answer.status, answer.body)
        }
        None => text(
            StatusCode::NOT_FOUND,
            "log levels are fixed in this process (--log-level)\n".to_owned(),
        ),
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
        // Each configured host's priority and locality, in the order of `c.priorities`.
        let placed: Vec<(usize, &proxy_model::cluster::Locality)> = c
            .config
            .priorities
            .iter()
            .enumerate()
            .flat_map(|(p, localities)| {
                localities
                    .iter()
                    .flat_map(move |l| l.endpoints.iter().map(move |_| (p, &l.locality)))
            })
            .collect();
        // An ORIGINAL_DST cluster's hosts are the destinations it saw lately.
        let dynamic = c.original_dst_hosts();
        for (i, h) in c.priorities.iter().flatten().chain(&dynamic).enumerate() {
            let a = &h.address;
            if let Some((priority, locality)) = placed.get(i) {
                let _ = writeln!(out, "{name}::{a}::region::{}", locality.region);
                let _ = writeln!(out, "{name}::{a}::zone::{}", locality.zone);
                let _ = writeln!(out, "{name}::{a}::sub_zone::{}", locality.sub_zone);
                let _ = writeln!(out, "{name}::{a}::priority::{priority}");
            }
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

/// A summary of the running config in the shape of Envoy's config dump sections: static and dynamic
/// listeners, clusters, route configurations and secrets (warming ones with what they wait for). A dynamic resource's `version_info` is the version
/// of its type the proxy last ACKed (the xDS client does not hand per-resource versions over);
/// `last_updated` is when the resource itself last changed.
fn config_dump(proxy: &Proxy) -> serde_json::Value {
    let runtime = proxy.runtime.load();
    let ads = proxy.ads_status();
    let version = |ty: ResourceType| {
        ads.as_ref()
            .and_then(|s| s.acked_versions.get(&ty).cloned())
            .unwrap_or_default()
    };
    let dynamic = &runtime.dynamic;
    let mut static_listeners = Vec::new();
    let mut dynamic_listeners = Vec::new();
    for l in &runtime.snapshot.listeners {
        let chains: Vec<_> = l
            .filter_chains
            .iter()
            .map(|fc| match &fc.network {
                NetworkFilter::Http(h) => {
                    let routes = match &h.routes {
                        RouteSource::Inline(rc) => json!({"route_config": rc.name}),
                        RouteSource::Rds(name) => json!({"rds": {"route_config_name": name}}),
                    };
                    json!({"name": fc.name, "http_connection_manager": {"stat_prefix": h.stat_prefix, "routes": routes}})
                }
                NetworkFilter::Tcp(t) => json!({"name": fc.name, "tcp_proxy": {"stat_prefix": t.stat_prefix, "clusters": t.clusters}}),
            })
            .collect();
        let listener = json!({"name": l.name, "address": format!("{}:{}", l.host, l.port), "filter_chains": chains});
        match dynamic.listeners.get(&l.name) {
            Some(updated) => dynamic_listeners.push(json!({
                "name": l.name,
                "active_state": {
                    "version_info": version(ResourceType::Listener),
                    "listener": listener,
                    "last_updated": timestamp(*updated),
                },
            })),
            None => static_listeners.push(json!({"listener": listener})),
        }
    }
    // As Envoy: a listener waiting for its secrets has a warming state and no active one (yet).
    for (name, waiting) in &dynamic.warming_listeners {
        let warming = json!({"version_info": version(ResourceType::Listener), "waiting_for_secrets": waiting});
        match dynamic_listeners.iter_mut().find(|l| l["name"] == **name) {
            // A running listener of that name serves until the new one is ready.
            Some(running) => running["warming_state"] = warming,
            None => dynamic_listeners.push(json!({"name": name, "warming_state": warming})),
        }
    }
    let warming_clusters: Vec<_> = dynamic
        .warming_clusters
        .iter()
        .map(|(name, waiting)| {
            json!({"version_info": version(ResourceType::Cluster), "cluster": {"name": name}, "waiting_for_secrets": waiting})
        })
        .collect();
    // Names and kinds only: a secret's keys stay out of the admin interface (Envoy redacts them).
    let mut static_secrets: Vec<_> = proxy
        .settings
        .secrets
        .statics
        .keys()
        .map(|name| json!({"name": name}))
        .collect();
    static_secrets.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let dynamic_secrets: Vec<_> = dynamic
        .secrets
        .iter()
        .map(|(name, (updated, kind))| {
            json!({"name": name, "version_info": version(ResourceType::Secret), "last_updated": timestamp(*updated), "secret": {"name": name, "type": kind}})
        })
        .collect();
    let mut names: Vec<&String> = runtime.clusters.keys().collect();
    names.sort();
    let mut static_clusters = Vec::new();
    let mut dynamic_clusters = Vec::new();
    for name in names {
        let c = &runtime.clusters[name];
        let cluster = json!({
            "name": c.config.name,
            "type": format!("{:?}", c.config.discovery),
            "lb_policy": format!("{:?}", c.config.lb_policy),
            "connect_timeout": format!("{}s", c.config.connect_timeout.as_secs_f64()),
            "endpoints": c.priorities.iter().flatten().map(|h| h.address.clone()).collect::<Vec<_>>(),
        });
        match dynamic.clusters.get(name) {
            Some(updated) => dynamic_clusters.push(json!({
                "version_info": version(ResourceType::Cluster),
                "cluster": cluster,
                "last_updated": timestamp(*updated),
            })),
            None => static_clusters.push(json!({"cluster": cluster})),
        }
    }
    let mut route_names: Vec<&String> = runtime.snapshot.route_configs.keys().collect();
    route_names.sort();
    let dynamic_routes: Vec<_> = route_names
        .into_iter()
        .map(|name| {
            let rc = &runtime.snapshot.route_configs[name];
            json!({
                "version_info": version(ResourceType::Route),
                "route_config": {
                    "name": name,
                    "virtual_hosts": rc.virtual_hosts.iter().map(|vh| json!({"name": vh.name})).collect::<Vec<_>>(),
                },
                "last_updated": dynamic.route_configs.get(name).map(|t| timestamp(*t)),
            })
        })
        .collect();
    let ads_json = ads.as_ref().map(|s| {
        json!({
            "endpoint": s.endpoint,
            "mode": format!("{:?}", s.mode),
            "connected": s.connected,
            "acks": s.acks,
            "nacks": s.nacks,
            "last_nack": s.last_nack,
            "warming": format!("{:?}", s.warming),
            "initial_config_complete": s.initial_config_complete,
        })
    });
    json!({
        "configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "node": {"id": proxy.settings.node_id, "cluster": proxy.settings.node_cluster}, "ads": ads_json},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "version_info": version(ResourceType::Cluster), "static_clusters": static_clusters, "dynamic_active_clusters": dynamic_clusters, "dynamic_warming_clusters": warming_clusters},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "version_info": version(ResourceType::Listener), "static_listeners": static_listeners, "dynamic_listeners": dynamic_listeners},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": dynamic_routes},
            {"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump", "static_secrets": static_secrets, "dynamic_active_secrets": dynamic_secrets},
        ]
    })
}

/// RFC 3339 (UTC, seconds), as Envoy's config dump writes timestamps.
fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}
