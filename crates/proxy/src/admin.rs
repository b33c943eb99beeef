//! Envoy's admin interface (on `admin.address`, Istio's 15000): `/ready`, `/server_info`, `/stats`,
//! `/stats/prometheus`, `/clusters`, `/listeners`, `/config_dump`, `/logging`.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prost::Message as _;
use serde_json::json;
use tokio::net::TcpListener;
use xds_api::pb::envoy::config::bootstrap::v3::{Bootstrap, bootstrap::StaticResources};
use xds_client::ResourceType;

use crate::Proxy;
use crate::dump_query::{self, DumpQuery};
use crate::http::full;
use crate::stats::Selection;
use crate::upstream::{Body, ClusterRuntime, Host};
use proxy_model::cluster::{Endpoint, Health, Locality, LocalityEndpoints, Thresholds};

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
    json_text(serde_json::to_string_pretty(value).unwrap_or_default())
}

/// A 200 answer of JSON already rendered.
fn json_text(body: String) -> Response<Body> {
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A request's query parameters, parsed once.
struct Query(Vec<(String, String)>);

impl Query {
    fn of(req: &Request<Incoming>) -> Query {
        Query(query_params(req.uri().query()))
    }

    /// The value of `name` (`""` for a bare flag such as `?usedonly`).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// A query string's `name=value` pairs (`name` alone: an empty value), `%XX` and `+` decoded.
pub(crate) fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `%XX` escapes decoded (query values such as `paths=router%3Adebug`); anything malformed is kept.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(((hex(h).unwrap_or(0) << 4) | hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/stats` (text; `?format=json`, `?format=prometheus`) and `/stats/prometheus`, with Envoy's
/// `filter=REGEX` and `usedonly`.
fn stats(proxy: &Proxy, query: &Query, prometheus: bool) -> Response<Body> {
    let selection = match Selection::new(query.get("filter"), query.has("usedonly")) {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Invalid regex: {e}\n")),
    };
    match (prometheus, query.get("format")) {
        (true, _) | (false, Some("prometheus")) => {
            text(StatusCode::OK, proxy.registry.render_prometheus(&selection))
        }
        (false, Some("json")) => json_text(proxy.registry.render_json(&selection)),
        _ => text(StatusCode::OK, proxy.registry.render_text(&selection)),
    }
}

fn handle(proxy: &Proxy, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let query = Query::of(req);
    let json = query.get("format") == Some("json");
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
        "/server_info" => json_text(rendered_apart("the server info", || server_info(proxy))),
        "/stats" => stats(proxy, &query, false),
        "/stats/prometheus" => stats(proxy, &query, true),
        "/clusters" if json => json_reply(&clusters_json(proxy)),
        "/clusters" => text(StatusCode::OK, clusters(proxy)),
        "/listeners" if json => json_reply(&listeners_json(proxy)),
        "/listeners" => {
            let runtime = proxy.runtime.load();
            let mut out = String::new();
            for l in &runtime.snapshot.listeners {
                let _ = writeln!(out, "{}::{}:{}", l.name, l.host, l.port);
            }
            text(StatusCode::OK, out)
        }
        "/config_dump" => {
            let asked = DumpQuery {
                resource: query.get("resource"),
                mask: query.get("mask"),
                name_regex: query.get("name_regex"),
            };
            match config_dump(proxy, query.has("include_eds"), asked) {
                Ok(body) => json_text(body),
                Err(refusal) => text(refusal.status(), refusal.to_string()),
            }
        }
        // As Envoy, what changes state takes POST only; a GET changes nothing.
        "/logging" | "/drain_listeners" | "/quitquitquit" if req.method() != http::Method::POST => {
            text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Method {} not allowed, POST required.", req.method()),
            )
        }
        "/logging" => logging(proxy, req),
        "/drain_listeners" => {
            // Envoy's flags: `graceful`, `inboundonly` (`skip_exit`: bosun never exits on it).
            // As Envoy, the server stays LIVE (`/ready`): only its listeners drain.
            proxy
                .listeners
                .drain(query.has("inboundonly"), query.has("graceful"));
            text(StatusCode::OK, "OK\n".to_owned())
        }
        "/quitquitquit" => {
            proxy.quit.notify_one();
            text(StatusCode::OK, "OK\n".to_owned())
        }
        "/" => text(
            StatusCode::OK,
            "admin commands are:\n  /clusters\n  /config_dump\n  /drain_listeners\n  /listeners\n  /logging\n  /quitquitquit\n  /ready\n  /server_info\n  /stats\n  /stats/prometheus\n"
                .to_owned(),
        ),
        _ => text(StatusCode::NOT_FOUND, format!("invalid path: {path}\n")),
    }
}

/// `POST /logging[?…]`: see [`crate::logging`].
fn logging(proxy: &Proxy, req: &Request<Incoming>) -> Response<Body> {
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

/// Where a configured host sits in its cluster's load assignment.
struct Placement<'a> {
    priority: usize,
    locality: &'a Locality,
    health: Health,
}

/// A cluster's hosts as the admin pages show them: each configured endpoint in the order of the
/// load assignment (with its priority, locality and EDS health), then the destinations an
/// ORIGINAL_DST cluster saw lately.
fn hosts_of(c: &ClusterRuntime) -> Vec<(Arc<Host>, Option<Placement<'_>>)> {
    let mut hosts: Vec<_> = assigned_groups(c)
        .into_iter()
        .flat_map(|(priority, group, endpoints)| {
            endpoints.into_iter().filter_map(move |(endpoint, host)| {
                let placement = Placement {
                    priority,
                    locality: &group.locality,
                    health: endpoint.health,
                };
                Some((host?.clone(), Some(placement)))
            })
        })
        .collect();
    hosts.extend(c.original_dst_hosts().into_iter().map(|h| (h, None)));
    hosts
}

/// A locality group of the load assignment with its priority, and its endpoints each with the
/// running host made of it.
type AssignedGroup<'a> = (
    usize,
    &'a LocalityEndpoints,
    Vec<(&'a Endpoint, Option<&'a Arc<Host>>)>,
);

/// The load assignment's locality groups in its order, each endpoint with the running host made of
/// it (the runtime keeps the hosts in the same order; `None` past its last host).
fn assigned_groups(c: &ClusterRuntime) -> Vec<AssignedGroup<'_>> {
    let mut running = c.priorities.iter().flatten();
    let mut groups = Vec::new();
    for (priority, localities) in c.config.priorities.iter().enumerate() {
        for group in localities {
            let endpoints = group
                .endpoints
                .iter()
                .map(|e| (e, running.next()))
                .collect();
            groups.push((priority, group, endpoints));
        }
    }
    groups
}

/// The clusters by name.
fn sorted_clusters(runtime: &crate::Runtime) -> Vec<(&String, &Arc<ClusterRuntime>)> {
    let mut clusters: Vec<_> = runtime.clusters.iter().collect();
    clusters.sort_by(|a, b| a.0.cmp(b.0));
    clusters
}

/// Envoy's `/clusters` text: `cluster::host:port::stat::value` lines per host.
fn clusters(proxy: &Proxy) -> String {
    let runtime = proxy.runtime.load();
    let mut out = String::new();
    for (name, c) in sorted_clusters(&runtime) {
        let _ = writeln!(out, "{name}::observability_name::{name}");
        for (priority, cb) in [
            ("default_priority", &c.config.circuit_breakers),
            ("high_priority", &c.config.circuit_breakers_high),
        ] {
            let _ = writeln!(
                out,
                "{name}::{priority}::max_connections::{}",
                cb.max_connections
            );
            let _ = writeln!(
                out,
                "{name}::{priority}::max_pending_requests::{}",
                cb.max_pending_requests
            );
            let _ = writeln!(out, "{name}::{priority}::max_requests::{}", cb.max_requests);
            let _ = writeln!(out, "{name}::{priority}::max_retries::{}", cb.max_retries);
        }
        let dynamic = runtime.dynamic.clusters.contains_key(name.as_str());
        let _ = writeln!(out, "{name}::added_via_api::{dynamic}");
        for (h, placement) in hosts_of(c) {
            let a = &h.address;
            if let Some(p) = &placement {
                let _ = writeln!(out, "{name}::{a}::region::{}", p.locality.region);
                let _ = writeln!(out, "{name}::{a}::zone::{}", p.locality.zone);
                let _ = writeln!(out, "{name}::{a}::sub_zone::{}", p.locality.sub_zone);
                let _ = writeln!(out, "{name}::{a}::priority::{}", p.priority);
            }
            let (cx, load) = (&h.connections, |v: &AtomicU64| v.load(Ordering::Relaxed));
            for (stat, value) in [
                ("cx_active", load(&cx.active)),
                ("cx_connect_fail", load(&cx.connect_fail)),
                ("cx_total", load(&cx.total)),
                (
                    "rq_active",
                    u64::from(h.active_requests.load(Ordering::Relaxed)),
                ),
                ("rq_error", load(&h.rq_error)),
                ("rq_success", load(&h.rq_success)),
                ("rq_timeout", load(&h.rq_timeout)),
                ("rq_total", load(&h.requests)),
            ] {
                let _ = writeln!(out, "{name}::{a}::{stat}::{value}");
            }
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

/// Envoy's `/clusters?format=json` (`envoy.admin.v3.Clusters`, proto3 JSON: zero values left out),
/// which `istioctl proxy-config endpoint` reads. Of each host's stats, those bosun keeps per host:
/// connections (in total, active, failed to connect) and requests (in total, active, succeeded,
/// failed, timed out).
fn clusters_json(proxy: &Proxy) -> serde_json::Value {
    let runtime = proxy.runtime.load();
    let statuses: Vec<_> = sorted_clusters(&runtime)
        .into_iter()
        .map(|(name, c)| {
            let thresholds = |cb: &Thresholds, high: bool| {
                let mut t = json!({
                    "max_connections": cb.max_connections,
                    "max_pending_requests": cb.max_pending_requests,
                    "max_requests": cb.max_requests,
                    "max_retries": cb.max_retries,
                });
                if high {
                    t["priority"] = json!("HIGH");
                }
                t
            };
            let hosts: Vec<_> = hosts_of(c)
                .into_iter()
                .map(|(h, placement)| host_json(&h, placement.as_ref()))
                .collect();
            let mut status = json!({
                "name": name,
                "observability_name": name,
                "circuit_breakers": {"thresholds": [
                    thresholds(&c.config.circuit_breakers, false),
                    thresholds(&c.config.circuit_breakers_high, true),
                ]},
            });
            if !hosts.is_empty() {
                status["host_statuses"] = json!(hosts);
            }
            if runtime.dynamic.clusters.contains_key(name.as_str()) {
                status["added_via_api"] = json!(true);
            }
            status
        })
        .collect();
    json!({ "cluster_statuses": statuses })
}

fn host_json(h: &Host, placement: Option<&Placement<'_>>) -> serde_json::Value {
    let stat = |name: &str, value: u64, gauge: bool| {
        let mut s = json!({ "name": name });
        if value > 0 {
            s["value"] = json!(value.to_string());
        }
        if gauge {
            s["type"] = json!("GAUGE");
        }
        s
    };
    let mut health = json!({
        "eds_health_status": match placement.map(|p| p.health) {
            Some(Health::Unhealthy) => "UNHEALTHY",
            Some(Health::Degraded) => "DEGRADED",
            Some(Health::Draining) => "DRAINING",
            Some(Health::Healthy) | None => "HEALTHY",
        }
    });
    if h.is_ejected() {
        health["failed_outlier_check"] = json!(true);
    }
    let mut host = json!({
        "address": address_json(&h.address),
        "stats": [
            stat("cx_connect_fail", h.connections.connect_fail.load(Ordering::Relaxed), false),
            stat("cx_total", h.connections.total.load(Ordering::Relaxed), false),
            stat("rq_error", h.rq_error.load(Ordering::Relaxed), false),
            stat("rq_success", h.rq_success.load(Ordering::Relaxed), false),
            stat("rq_timeout", h.rq_timeout.load(Ordering::Relaxed), false),
            stat("rq_total", h.requests.load(Ordering::Relaxed), false),
            stat("cx_active", h.connections.active.load(Ordering::Relaxed), true),
            stat("rq_active", u64::from(h.active_requests.load(Ordering::Relaxed)), true),
        ],
        "health_status": health,
        "weight": h.weight,
        "locality": {},
    });
    if let Some(p) = placement {
        host["locality"] = locality_json(p.locality);
        if p.priority > 0 {
            host["priority"] = json!(p.priority);
        }
    }
    host
}

/// An `envoy.config.core.v3.Address` in proto3 JSON: `host:port`, or a Unix socket's path.
fn address_json(address: &str) -> serde_json::Value {
    match address.rsplit_once(':') {
        Some((host, port)) if !address.starts_with('/') && !address.starts_with('@') => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            json!({"socket_address": {"address": host, "port_value": port.parse::<u16>().unwrap_or(0)}})
        }
        _ => json!({"pipe": {"path": address}}),
    }
}

/// Envoy's `/listeners?format=json` (`envoy.admin.v3.Listeners`).
fn listeners_json(proxy: &Proxy) -> serde_json::Value {
    let runtime = proxy.runtime.load();
    let statuses: Vec<_> = runtime
        .snapshot
        .listeners
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "local_address": address_json(&format!("{}:{}", l.host, l.port)),
            })
        })
        .collect();
    json!({ "listener_statuses": statuses })
}

/// Envoy's `/config_dump`: the bootstrap, then the static and dynamic clusters, listeners, route
/// configurations and secrets, each as proto3 JSON in the shape of Envoy's `envoy.admin.v3.*ConfigDump`
/// messages (what `istioctl proxy-config` reads), with secrets redacted as Envoy does. Static ones
/// come from the bootstrap, dynamic ones as xDS gave them; a dynamic resource's `version_info` is the
/// version of its type the proxy last ACKed (the xDS client does not hand per-resource versions
/// over). Two additions of bosun's own: what a warming resource waits for (`waiting_for_secrets`), and
/// the ADS client's state (`ads`, in the bootstrap's entry).
///
/// Rendered on a thread of its own, so that what rendering allocates (the descriptors, ~10 MB, and
/// the JSON tree, several times the text's size) lives in that thread's malloc arena, which glibc
/// gives back to the system once the text, allocated there last, is freed after it was sent; on the
/// main thread's heap, a dump of a 1,000-service config left RSS 50 MB higher for good.
fn config_dump(
    proxy: &Proxy,
    include_eds: bool,
    asked: DumpQuery<'_>,
) -> Result<String, dump_query::Refusal> {
    let mut refused = None;
    let body = rendered_apart("the config dump", || {
        let dump = build_config_dump(proxy, include_eds);
        if asked.is_empty() {
            return dump;
        }
        dump_query::apply(dump, &asked, &xds_api::descriptor::pool()).unwrap_or_else(|e| {
            refused = Some(e);
            serde_json::Value::Null
        })
    });
    refused.map_or(Ok(body), Err)
}

/// Builds a JSON answer that needs protobuf descriptors on a thread of its own and renders it
/// pretty: see [`config_dump`] for why.
fn rendered_apart(what: &str, build: impl FnOnce() -> serde_json::Value + Send) -> String {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let value = build();
                xds_api::descriptor::release();
                let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                drop(value);
                // Copied last, into a block of its own at the top of the arena.
                text.as_str().to_owned()
            })
            .join()
            .unwrap_or_else(|_| json!({"error": format!("rendering {what} failed")}).to_string())
    })
}

/// Envoy's `/server_info` (`envoy.admin.v3.ServerInfo`, every scalar field shown): version, state,
/// uptime, the command-line options bosun has, and the node as sent to the control plane.
fn server_info(proxy: &Proxy) -> serde_json::Value {
    use xds_api::pb::envoy::admin::v3::command_line_options::{DrainStrategy, Mode};
    use xds_api::pb::envoy::admin::v3::{CommandLineOptions, ServerInfo, server_info::State};
    use xds_api::pb::google::protobuf::Duration as ProtoDuration;

    let seconds = |d: std::time::Duration| ProtoDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    };
    let state = match proxy.state() {
        "LIVE" => State::Live,
        "DRAINING" => State::Draining,
        _ => State::PreInitializing,
    };
    let uptime = seconds(proxy.started.elapsed());
    let command_line = &proxy.command_line;
    let info = ServerInfo {
        // Envoy's shape: `COMMIT/VERSION/STATUS/BUILD_TYPE/TLS_LIBRARY`.
        version: concat!("bosun/", env!("CARGO_PKG_VERSION"), "/Clean/RELEASE/rustls").to_owned(),
        state: state as i32,
        uptime_current_epoch: Some(uptime),
        uptime_all_epochs: Some(uptime),
        // bosun has no hot restart: Envoy's answer when it is disabled.
        hot_restart_version: "disabled".to_owned(),
        command_line_options: Some(CommandLineOptions {
            concurrency: command_line.concurrency,
            config_path: command_line.config_path.clone(),
            log_level: command_line.log_level.clone(),
            drain_time: Some(seconds(proxy.drain_time)),
            mode: Mode::Serve as i32,
            // Every response of a draining listener closes its connection at once.
            drain_strategy: DrainStrategy::Immediate as i32,
            disable_hot_restart: true,
            ..CommandLineOptions::default()
        }),
        node: Some(crate::xds_node(&proxy.settings.node)),
        hot_restart_initializing: false,
    };
    xds_api::json::to_json_with_defaults(&info).unwrap_or_else(|e| json!({"error": e.to_string()}))
}

fn build_config_dump(proxy: &Proxy, include_eds: bool) -> serde_json::Value {
    let runtime = proxy.runtime.load();
    let ads = proxy.ads_status();
    let version = |ty: ResourceType| {
        ads.as_ref()
            .and_then(|s| s.acked_versions.get(&ty).cloned())
            .unwrap_or_default()
    };
    let dynamic = &runtime.dynamic;
    let loaded = crate::access_log::rfc3339(proxy.bootstrap_loaded);
    let bootstrap = Bootstrap::decode(proxy.bootstrap.as_slice()).unwrap_or_default();
    let no_statics = StaticResources::default();
    let statics = bootstrap.static_resources.as_ref().unwrap_or(&no_statics);

    let static_clusters: Vec<_> = statics
        .clusters
        .iter()
        .map(|c| json!({"cluster": message_json(c), "last_updated": loaded}))
        .collect();
    let dynamic_clusters: Vec<_> = dynamic
        .clusters
        .values()
        .map(|c| {
            json!({
                "version_info": version(ResourceType::Cluster),
                "cluster": message_json(&*c.proto),
                "last_updated": crate::access_log::rfc3339(c.updated),
            })
        })
        .collect();
    let warming_clusters: Vec<_> = dynamic
        .warming_clusters
        .values()
        .map(|(c, waiting)| {
            json!({
                "version_info": version(ResourceType::Cluster),
                "cluster": message_json(&**c),
                "waiting_for_secrets": waiting,
            })
        })
        .collect();

    let static_listeners: Vec<_> = statics
        .listeners
        .iter()
        .map(|l| json!({"listener": message_json(l), "last_updated": loaded}))
        .collect();
    let mut dynamic_listeners: Vec<_> = dynamic
        .listeners
        .iter()
        .map(|(name, l)| {
            json!({
                "name": name,
                "active_state": {
                    "version_info": version(ResourceType::Listener),
                    "listener": message_json(&*l.proto),
                    "last_updated": crate::access_log::rfc3339(l.updated),
                },
            })
        })
        .collect();
    // As Envoy: a listener waiting for its secrets has a warming state, beside the running one of
    // that name if there is one.
    for (name, (l, waiting)) in &dynamic.warming_listeners {
        let warming = json!({
            "version_info": version(ResourceType::Listener),
            "listener": message_json(&**l),
            "waiting_for_secrets": waiting,
        });
        match dynamic_listeners.iter_mut().find(|l| l["name"] == **name) {
            Some(running) => running["warming_state"] = warming,
            None => dynamic_listeners.push(json!({"name": name, "warming_state": warming})),
        }
    }

    // Route configurations given inline in HTTP connection managers are Envoy's static ones.
    let mut static_routes = Vec::new();
    for l in &static_listeners {
        inline_route_configs(&l["listener"], &loaded, &mut static_routes);
    }
    for l in &dynamic_listeners {
        let updated = l["active_state"]["last_updated"]
            .as_str()
            .unwrap_or_default();
        inline_route_configs(&l["active_state"]["listener"], updated, &mut static_routes);
    }
    let dynamic_routes: Vec<_> = dynamic
        .route_configs
        .values()
        .map(|r| {
            json!({
                "version_info": version(ResourceType::Route),
                "route_config": message_json(&*r.merged()),
                "last_updated": crate::access_log::rfc3339(r.table.updated),
            })
        })
        .collect();

    let static_secrets: Vec<_> = statics
        .secrets
        .iter()
        .map(|s| json!({"name": s.name, "secret": message_json(s)}))
        .collect();
    let dynamic_secrets: Vec<_> = dynamic
        .secrets
        .iter()
        .map(|(name, s)| {
            json!({
                "name": name,
                "version_info": version(ResourceType::Secret),
                "last_updated": crate::access_log::rfc3339(s.updated),
                "secret": message_json(&*s.proto),
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
    // `?include_eds`: each cluster's endpoints as it runs them, in Envoy's rendering of its host sets.
    let mut static_endpoints = Vec::new();
    let mut dynamic_endpoints = Vec::new();
    if include_eds {
        for (name, c) in sorted_clusters(&runtime) {
            let config = endpoints_json(c);
            match dynamic.clusters.get(name.as_str()) {
                Some(received) => dynamic_endpoints.push(json!({
                    "version_info": version(ResourceType::Endpoints),
                    "endpoint_config": config,
                    "last_updated": crate::access_log::rfc3339(received.updated),
                })),
                None => static_endpoints.push(json!({ "endpoint_config": config })),
            }
        }
    }
    let mut bootstrap_json = xds_api::json::to_json(&bootstrap);
    xds_api::json::redact(&mut bootstrap_json);
    let mut configs = vec![json!({
        "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
        "bootstrap": bootstrap_json,
        "last_updated": loaded,
        "ads": ads_json,
    })];
    let sections = [
        (
            "ClustersConfigDump",
            vec![
                ("static_clusters", static_clusters),
                ("dynamic_active_clusters", dynamic_clusters),
                ("dynamic_warming_clusters", warming_clusters),
            ],
            ResourceType::Cluster,
        ),
        (
            "EndpointsConfigDump",
            vec![
                ("static_endpoint_configs", static_endpoints),
                ("dynamic_endpoint_configs", dynamic_endpoints),
            ],
            ResourceType::Endpoints,
        ),
        (
            "ListenersConfigDump",
            vec![
                ("static_listeners", static_listeners),
                ("dynamic_listeners", dynamic_listeners),
            ],
            ResourceType::Listener,
        ),
        (
            "RoutesConfigDump",
            vec![
                ("static_route_configs", static_routes),
                ("dynamic_route_configs", dynamic_routes),
            ],
            ResourceType::Route,
        ),
        (
            "SecretsConfigDump",
            vec![
                ("static_secrets", static_secrets),
                ("dynamic_active_secrets", dynamic_secrets),
            ],
            ResourceType::Secret,
        ),
    ];
    for (kind, lists, ty) in sections {
        if kind == "EndpointsConfigDump" && !include_eds {
            continue;
        }
        let mut section = json!({"@type": format!("type.googleapis.com/envoy.admin.v3.{kind}")});
        // Proto3 JSON: empty lists and strings are left out.
        let acked = version(ty);
        if !acked.is_empty() && matches!(ty, ResourceType::Cluster | ResourceType::Listener) {
            section["version_info"] = json!(acked);
        }
        for (key, list) in lists {
            if !list.is_empty() {
                section[key] = json!(list);
            }
        }
        configs.push(section);
        if kind == "ListenersConfigDump" {
            configs.push(
                json!({"@type": "type.googleapis.com/envoy.admin.v3.ScopedRoutesConfigDump"}),
            );
        }
    }
    json!({ "configs": configs })
}

/// A cluster's endpoints as Envoy's config dump renders its host sets: by priority and locality, each
/// host with its health (EDS and outlier detection) and weight, each locality with its weight (0 when none), and the
/// overprovisioning factor.
fn endpoints_json(c: &ClusterRuntime) -> serde_json::Value {
    let mut groups = Vec::new();
    for (priority, group, endpoints) in assigned_groups(c) {
        let hosts: Vec<_> = endpoints
            .into_iter()
            .map(|(e, host)| {
                // Envoy's coarse health: failing EDS or outlier detection is unhealthy.
                let health = match e.health {
                    _ if host.is_some_and(|h| h.is_ejected()) => "UNHEALTHY",
                    Health::Healthy => "HEALTHY",
                    Health::Degraded => "DEGRADED",
                    Health::Unhealthy | Health::Draining => "UNHEALTHY",
                };
                json!({
                    "endpoint": {
                        "address": address_json(&e.address()),
                        "health_check_config": {},
                    },
                    "health_status": health,
                    "load_balancing_weight": e.weight,
                })
            })
            .collect();
        let mut entry = json!({
            "locality": locality_json(&group.locality),
            "lb_endpoints": hosts,
            "load_balancing_weight": group.weight.unwrap_or(0),
        });
        if priority > 0 {
            entry["priority"] = json!(priority);
        }
        groups.push(entry);
    }
    let mut assignment = json!({
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": c.config.name,
        "policy": {"overprovisioning_factor": c.config.overprovisioning_factor},
    });
    // Proto3 JSON leaves an empty list out.
    if !groups.is_empty() {
        assignment["endpoints"] = json!(groups);
    }
    assignment
}

/// A `core.v3.Locality` in proto3 JSON (empty fields left out).
fn locality_json(l: &Locality) -> serde_json::Value {
    let mut fields = serde_json::Map::new();
    for (key, value) in [
        ("region", &l.region),
        ("zone", &l.zone),
        ("sub_zone", &l.sub_zone),
    ] {
        if !value.is_empty() {
            fields.insert(key.to_owned(), json!(value));
        }
    }
    serde_json::Value::Object(fields)
}

/// A message as an `Any` in proto3 JSON (`"@type"` and its fields), secrets redacted.
fn message_json<M: prost::Message + prost::Name>(m: &M) -> serde_json::Value {
    let mut v = xds_api::json::to_json(m);
    if let Some(object) = v.as_object_mut() {
        object.insert("@type".to_owned(), json!(M::type_url()));
    }
    xds_api::json::redact(&mut v);
    v
}

/// The `route_config`s given inline in `listener`'s HTTP connection managers, as static route
/// configuration dump entries.
fn inline_route_configs(
    listener: &serde_json::Value,
    updated: &str,
    out: &mut Vec<serde_json::Value>,
) {
    let chains = listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(listener.get("default_filter_chain"));
    for chain in chains {
        for filter in chain["filters"].as_array().into_iter().flatten() {
            let config = &filter["typed_config"];
            let is_hcm = config["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(".HttpConnectionManager"));
            if let (true, Some(rc)) = (is_hcm, config.get("route_config")) {
                let mut rc = rc.clone();
                if let Some(object) = rc.as_object_mut() {
                    object.insert(
                        "@type".to_owned(),
                        json!("type.googleapis.com/envoy.config.route.v3.RouteConfiguration"),
                    );
                }
                out.push(json!({"route_config": rc, "last_updated": updated}));
            }
        }
    }
}
