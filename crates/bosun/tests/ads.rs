//! `bosun proxy` configured over ADS by an in-test control plane, state-of-the-world and delta: it gets
//! ready once the initial configuration is applied, routes, follows a route change with no failed
//! request, NACKs a cluster it cannot run while the old config keeps serving, and answers as Envoy
//! does from the same ADS server and bootstrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/tls.rs"]
mod tls;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use testkit::{Client, Envoy, Process, TempDir, Upstream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use xds_api::any::pack;
use xds_api::bootstrap::message_from_yaml;
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_api::pb::envoy::config::listener::v3::Listener;
use xds_api::pb::envoy::config::route::v3::RouteConfiguration;
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use xds_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use xds_api::pb::google::protobuf::Any;
use xds_api::type_url;

use tls::tls_answer;

const WAIT: Duration = Duration::from_secs(20);

// === the test ADS server ===

/// Resources by type URL, each `(name, packed resource)`.
type Resources = BTreeMap<&'static str, Vec<(String, Any)>>;

#[derive(Clone, Debug)]
struct Snap {
    version: String,
    resources: Resources,
}

struct Inner {
    snapshot: watch::Sender<Snap>,
    /// `(type_url, error_detail.message)` of every NACK received.
    nacks: Mutex<Vec<(String, String)>>,
    /// How many responses of each type URL were ACKed.
    acks: Mutex<BTreeMap<String, usize>>,
}

/// A small ADS server (both variants): answers subscriptions from the current snapshot, pushes each
/// new snapshot to what every stream subscribed to, and records NACKs.
#[derive(Clone)]
struct TestAds(Arc<Inner>);

fn is_wildcard(t: &str) -> bool {
    t == type_url::CLUSTER || t == type_url::LISTENER || t == type_url::VIRTUAL_HOST
}

impl TestAds {
    async fn start(version: &str, resources: Resources) -> (TestAds, SocketAddr) {
        let (snapshot, _) = watch::channel(Snap {
            version: version.into(),
            resources,
        });
        let ads = TestAds(Arc::new(Inner {
            snapshot,
            nacks: Mutex::new(Vec::new()),
            acks: Mutex::new(BTreeMap::new()),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = AggregatedDiscoveryServiceServer::new(ads.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let svc = TowerToHyperService::new(svc.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (ads, addr)
    }

    fn push(&self, version: &str, resources: Resources) {
        self.0.snapshot.send_replace(Snap {
            version: version.into(),
            resources,
        });
    }

    fn nacks(&self) -> Vec<(String, String)> {
        self.0.nacks.lock().unwrap().clone()
    }

    /// How many responses of `type_url` were ACKed so far.
    fn acks(&self, type_url: &str) -> usize {
        self.0
            .acks
            .lock()
            .unwrap()
            .get(type_url)
            .copied()
            .unwrap_or(0)
    }

    /// Records a request answering a response: a NACK with its message, or an ACK.
    fn record_answer(
        &self,
        type_url: &str,
        nonce: &str,
        detail: Option<&xds_api::pb::google::rpc::Status>,
    ) {
        if detail.is_none() && !nonce.is_empty() {
            *self
                .0
                .acks
                .lock()
                .unwrap()
                .entry(type_url.to_owned())
                .or_default() += 1;
        }
        if let Some(d) = detail {
            self.0
                .nacks
                .lock()
                .unwrap()
                .push((type_url.to_owned(), d.message.clone()));
        }
    }
}

fn selected<'a>(
    snap: &'a Snap,
    type_url: &str,
    names: &'a BTreeSet<String>,
) -> impl Iterator<Item = &'a (String, Any)> {
    let wildcard = is_wildcard(type_url);
    snap.resources
        .get(type_url)
        .into_iter()
        .flatten()
        .filter(move |(n, _)| wildcard || names.contains(n))
}

fn version_of(any: &Any) -> String {
    let mut h = DefaultHasher::new();
    any.value.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for TestAds {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut incoming = request.into_inner();
        let ads = self.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut snap_rx = ads.0.snapshot.subscribe();
            let mut subs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut nonce = 0u64;
            let respond = |type_url: &str, names: &BTreeSet<String>, nonce: &mut u64| {
                let snap = ads.0.snapshot.borrow().clone();
                *nonce += 1;
                DiscoveryResponse {
                    version_info: snap.version.clone(),
                    resources: selected(&snap, type_url, names)
                        .map(|(_, a)| a.clone())
                        .collect(),
                    type_url: type_url.to_owned(),
                    nonce: nonce.to_string(),
                    ..Default::default()
                }
            };
            loop {
                let out: Vec<DiscoveryResponse> = tokio::select! {
                    r = snap_rx.changed() => {
                        if r.is_err() { return }
                        subs.iter().map(|(t, n)| respond(t, n, &mut nonce)).collect()
                    }
                    m = incoming.message() => match m {
                        Ok(Some(req)) => {
                            ads.record_answer(&req.type_url, &req.response_nonce, req.error_detail.as_ref());
                            let names: BTreeSet<String> = req.resource_names.iter().cloned().collect();
                            let changed = req.response_nonce.is_empty()
                                || subs.get(&req.type_url) != Some(&names);
                            subs.insert(req.type_url.clone(), names.clone());
                            if changed { vec![respond(&req.type_url, &names, &mut nonce)] } else { vec![] }
                        }
                        _ => return,
                    },
                };
                for r in out {
                    if tx.send(Ok(r)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        #[derive(Default)]
        struct Sub {
            names: BTreeSet<String>,
            /// What the client holds, by our account: name → version.
            known: BTreeMap<String, String>,
        }
        let mut incoming = request.into_inner();
        let ads = self.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut snap_rx = ads.0.snapshot.subscribe();
            let mut subs: BTreeMap<String, Sub> = BTreeMap::new();
            let mut nonce = 0u64;
            let diff = |type_url: &str, sub: &mut Sub, nonce: &mut u64, always: bool| {
                let snap = ads.0.snapshot.borrow().clone();
                let mut resources = Vec::new();
                let mut present = BTreeSet::new();
                for (name, any) in selected(&snap, type_url, &sub.names) {
                    present.insert(name.clone());
                    let v = version_of(any);
                    if sub.known.get(name) != Some(&v) {
                        sub.known.insert(name.clone(), v.clone());
                        resources.push(Resource {
                            name: name.clone(),
                            version: v,
                            resource: Some(any.clone()),
                            ..Default::default()
                        });
                    }
                }
                let removed: Vec<String> = sub
                    .known
                    .keys()
                    .filter(|n| !present.contains(*n))
                    .cloned()
                    .collect();
                for n in &removed {
                    sub.known.remove(n);
                }
                if resources.is_empty() && removed.is_empty() && !always {
                    return None;
                }
                *nonce += 1;
                Some(DeltaDiscoveryResponse {
                    system_version_info: snap.version.clone(),
                    resources,
                    type_url: type_url.to_owned(),
                    removed_resources: removed,
                    nonce: nonce.to_string(),
                    ..Default::default()
                })
            };
            loop {
                let out: Vec<DeltaDiscoveryResponse> = tokio::select! {
                    r = snap_rx.changed() => {
                        if r.is_err() { return }
                        subs.iter_mut().filter_map(|(t, s)| diff(t, s, &mut nonce, false)).collect()
                    }
                    m = incoming.message() => match m {
                        Ok(Some(req)) => {
                            ads.record_answer(&req.type_url, &req.response_nonce, req.error_detail.as_ref());
                            let first = !subs.contains_key(&req.type_url);
                            let sub = subs.entry(req.type_url.clone()).or_default();
                            let changes = !req.resource_names_subscribe.is_empty()
                                || !req.resource_names_unsubscribe.is_empty();
                            sub.names.extend(req.resource_names_subscribe.iter().cloned());
                            for n in &req.resource_names_unsubscribe {
                                sub.names.remove(n);
                                sub.known.remove(n);
                            }
                            for (n, v) in &req.initial_resource_versions {
                                sub.known.insert(n.clone(), v.clone());
                            }
                            if first || changes || req.response_nonce.is_empty() {
                                diff(&req.type_url, sub, &mut nonce, true).into_iter().collect()
                            } else {
                                vec![]
                            }
                        }
                        _ => return,
                    },
                };
                for r in out {
                    if tx.send(Ok(r)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

// === the configuration served ===

/// Which route the route configuration has.
#[derive(Clone, Copy)]
enum Route {
    To(&'static str),
    Teapot,
}

fn eds_cluster(name: &str) -> Cluster {
    eds_cluster_fetching(name, None)
}

/// An EDS cluster, with its endpoints' `initial_fetch_timeout` when given.
fn eds_cluster_fetching(name: &str, fetch_timeout: Option<&str>) -> Cluster {
    let timeout = fetch_timeout.map_or(String::new(), |t| format!(", initial_fetch_timeout: {t}"));
    message_from_yaml(
        &format!(
            "name: {name}\ntype: EDS\nconnect_timeout: 1s\n\
             eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3{timeout}}}}}\n"
        ),
        None,
    )
    .unwrap()
}

fn endpoints(name: &str, upstream: &Upstream) -> ClusterLoadAssignment {
    message_from_yaml(
        &format!(
            "cluster_name: {name}\nendpoints:\n- lb_endpoints:\n  - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
            upstream.port()
        ),
        None,
    )
    .unwrap()
}

fn listener(port: u16) -> Listener {
    listener_logging_to(port, None, None)
}

/// The listener, with a file access log at `path` and its routes' `initial_fetch_timeout` when
/// given.
fn listener_logging_to(port: u16, path: Option<&str>, fetch_timeout: Option<&str>) -> Listener {
    let timeout = fetch_timeout.map_or(String::new(), |t| format!(", initial_fetch_timeout: {t}"));
    let access_log = path.map_or(String::new(), |path| {
        format!(
            r#"      access_log:
      - name: envoy.access_loggers.file
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
          path: {path}
"#
        )
    });
    message_from_yaml(
        &format!(
            r#"
name: http
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: ingress
{access_log}      rds: {{route_config_name: routes, config_source: {{ads: {{}}, resource_api_version: V3{timeout}}}}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
        ),
        None,
    )
    .unwrap()
}

/// A route's action, in YAML.
fn route_action(route: Route) -> String {
    match route {
        Route::To(cluster) => format!("route: {{cluster: {cluster}}}"),
        Route::Teapot => "direct_response: {status: 418, body: {inline_string: teapot}}".into(),
    }
}

fn route_config(route: Route) -> RouteConfiguration {
    let action = route_action(route);
    message_from_yaml(
        &format!(
            "name: routes\nvirtual_hosts:\n- name: all\n  domains: ['*']\n  routes:\n  - match: {{prefix: /}}\n    {action}\n"
        ),
        None,
    )
    .unwrap()
}

/// A cluster proxy-model refuses (Envoy accepts it): a ring hashed with MurmurHash2.
fn refused_cluster(upstream: &Upstream) -> Cluster {
    message_from_yaml(
        &format!(
            "name: bad\ntype: STATIC\nconnect_timeout: 1s\nlb_policy: RING_HASH\n\
             ring_hash_lb_config: {{hash_function: MURMUR_HASH_2}}\n\
             load_assignment:\n  cluster_name: bad\n  endpoints:\n  - lb_endpoints:\n    - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
            upstream.port()
        ),
        None,
    )
    .unwrap()
}

struct World {
    a: Upstream,
    b: Upstream,
}

impl World {
    fn resources(&self, listener_port: u16, route: Route, bad: bool) -> Resources {
        let mut clusters = vec![eds_cluster("svc-a"), eds_cluster("svc-b")];
        if bad {
            clusters.push(refused_cluster(&self.a));
        }
        let mut r = Resources::new();
        r.insert(
            type_url::CLUSTER,
            clusters.iter().map(|c| (c.name.clone(), pack(c))).collect(),
        );
        r.insert(
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            [endpoints("svc-a", &self.a), endpoints("svc-b", &self.b)]
                .iter()
                .map(|e| (e.cluster_name.clone(), pack(e)))
                .collect(),
        );
        r.insert(
            type_url::LISTENER,
            vec![("http".into(), pack(&listener(listener_port)))],
        );
        r.insert(
            type_url::ROUTE_CONFIGURATION,
            vec![("routes".into(), pack(&route_config(route)))],
        );
        r
    }
}

fn bootstrap(api_type: &str, ads: SocketAddr, admin_port: u16) -> String {
    format!(
        r#"
node: {{id: "sidecar~127.0.0.1~test.default~default.svc.cluster.local", cluster: test.default, metadata: {{NAMESPACE: default}}}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}}}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc}}}}]
  lds_config: {{ads: {{}}, resource_api_version: V3}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds-grpc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}
"#,
        ads.port()
    )
}

fn start_bosun(yaml: &str, admin_port: u16) -> Process {
    let mut process = spawn_bosun(yaml);
    process
        .wait_ready(testkit::localhost(admin_port), WAIT)
        .unwrap_or_else(|e| panic!("bosun proxy not ready: {e}\n{}", process.stderr()));
    process
}

/// `bosun proxy` started on the bootstrap `yaml`, not waited for. The process owns the directory
/// the bootstrap is in, so the file outlives its start.
fn spawn_bosun(yaml: &str) -> Process {
    let dir = TempDir::new("bosun-ads").unwrap();
    let config = dir.write("bootstrap.yaml", yaml.as_bytes()).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_bosun"));
    command
        .arg("proxy")
        .arg("-c")
        .arg(&config)
        .args(["--concurrency", "2", "--log-level", "info"]);
    Process::spawn_command("bosun", command, dir).unwrap()
}

/// What one request got: status, the upstream that answered (if any), the body for local replies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: u16,
    upstream: Option<String>,
    body: Option<String>,
}

async fn get(addr: SocketAddr) -> Seen {
    get_as(addr, None).await
}

/// The status and body of `GET path`.
async fn get_path(addr: SocketAddr, path: &str) -> String {
    let r = Client::h1(addr)
        .with_timeout(Duration::from_secs(5))
        .get(path, &[])
        .await
        .expect("a request through the proxy");
    format!("{} {}", r.status(), r.text())
}

/// A request with `host` as its `Host` (the address connected to when `None`).
async fn get_as(addr: SocketAddr, host: Option<&str>) -> Seen {
    let headers: Vec<(&str, &str)> = host.map(|h| ("host", h)).into_iter().collect();
    let r = Client::h1(addr)
        .with_timeout(Duration::from_secs(5))
        .get("/", &headers)
        .await
        .expect("request through the proxy");
    let upstream = r.header(testkit::UPSTREAM_HEADER).map(str::to_owned);
    let body = upstream.is_none().then(|| r.text());
    Seen {
        status: r.status(),
        upstream,
        body,
    }
}

/// Requests until one satisfies `done`, at most `WAIT`.
async fn until(addr: SocketAddr, what: &str, done: impl Fn(&Seen) -> bool) -> Seen {
    until_as(addr, None, what, done).await
}

/// [`until`], with `host` as the `Host` of every request.
async fn until_as(
    addr: SocketAddr,
    host: Option<&str>,
    what: &str,
    done: impl Fn(&Seen) -> bool,
) -> Seen {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = get_as(addr, host).await;
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client loop during an update: requests on new connections and on one kept-alive connection
/// until stopped, with `host` as their `Host` when given; every answer is recorded (a failed request
/// fails the test).
fn client_loop(
    addr: SocketAddr,
    host: Option<&'static str>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Seen>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let client = Client::h1(addr).with_timeout(Duration::from_secs(5));
        let mut conn = client.connect().await.expect("connect");
        let headers: Vec<(&str, &str)> = host.map(|h| ("host", h)).into_iter().collect();
        while !stop.load(Ordering::Relaxed) {
            seen.push(get_as(addr, host).await);
            let r = conn
                .send(testkit::Req::get("/").headers(&headers))
                .await
                .expect("request on a kept-alive connection");
            seen.push(Seen {
                status: r.status(),
                upstream: r.header(testkit::UPSTREAM_HEADER).map(str::to_owned),
                body: None,
            });
        }
        seen
    })
}

fn upstream_is(s: &Seen, name: &str) -> bool {
    s.status == 200 && s.upstream.as_deref() == Some(name)
}

/// The message of the first NACK of `type_url` the proxy sent.
async fn first_nack(ads: &TestAds, type_url: &str, proxy: &Process) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((_, message)) = ads.nacks().into_iter().find(|(t, _)| t == type_url) {
            return message;
        }
        assert!(
            Instant::now() < deadline,
            "no NACK of {type_url}\n{}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ads_scenario(api_type: &str) {
    let world = World {
        a: Upstream::start("a").unwrap(),
        b: Upstream::start("b").unwrap(),
    };
    let port = testkit::free_port();
    let listener_addr = testkit::localhost(port);
    let (ads, ads_addr) =
        TestAds::start("v1", world.resources(port, Route::To("svc-a"), false)).await;
    let admin_port = testkit::free_port();
    let admin = testkit::localhost(admin_port);
    let mut proxy = start_bosun(&bootstrap(api_type, ads_addr, admin_port), admin_port);

    // Ready, and routed by the RDS route to the EDS endpoint.
    let (status, body) = testkit::blocking_get(admin, "/ready", WAIT).unwrap();
    assert_eq!((status, body.trim()), (200, "LIVE"));
    let first = get(listener_addr).await;
    assert!(upstream_is(&first, "a"), "{first:?}\n{}", proxy.stderr());
    let (_, dump) = testkit::blocking_get(admin, "/config_dump", WAIT).unwrap();
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let clusters = &dump["configs"][1];
    assert_eq!(clusters["version_info"], "v1", "{dump}");
    let dynamic: Vec<&str> = clusters["dynamic_active_clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(dynamic, ["svc-a", "svc-b"], "{dump}");
    assert_eq!(
        dump["configs"][2]["dynamic_listeners"][0]["name"], "http",
        "{dump}"
    );

    // A new route version, with clients running: no failed request, and once b answers, only b.
    let stop = Arc::new(AtomicBool::new(false));
    let running = client_loop(listener_addr, None, stop.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    ads.push("v2", world.resources(port, Route::To("svc-b"), false));
    until(listener_addr, "route v2 (to svc-b)", |s| {
        upstream_is(s, "b")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = running.await.unwrap();
    assert!(seen.len() > 4, "{seen:?}");
    for s in &seen {
        assert!(upstream_is(s, "a") || upstream_is(s, "b"), "{s:?}");
    }
    assert!(upstream_is(seen.last().unwrap(), "b"), "{seen:?}");

    // A cluster proxy-model refuses: NACKed with `name: reason`, and the old config keeps serving.
    ads.push("v3", world.resources(port, Route::To("svc-b"), true));
    let nack = first_nack(&ads, type_url::CLUSTER, &proxy).await;
    assert!(
        nack.contains("bad: ring_hash_lb_config.hash_function"),
        "{nack}"
    );
    assert!(upstream_is(&get(listener_addr).await, "b"));
    let (_, dump) = testkit::blocking_get(admin, "/config_dump", WAIT).unwrap();
    assert!(!dump.contains("\"bad\""), "{dump}");
    proxy.check_running().unwrap();

    // A listener whose access log file cannot be opened: NACKed naming the path (Envoy: "unable to
    // open file"), and the old listener keeps serving.
    let mut unwritable = world.resources(port, Route::To("svc-b"), false);
    unwritable.insert(
        type_url::LISTENER,
        vec![(
            "http".into(),
            pack(&listener_logging_to(
                port,
                Some("/nonexistent-dir/access.log"),
                None,
            )),
        )],
    );
    ads.push("v3b", unwritable);
    let nack = first_nack(&ads, type_url::LISTENER, &proxy).await;
    assert!(
        nack.contains("http: cannot open the access log /nonexistent-dir/access.log"),
        "{nack}"
    );
    assert!(upstream_is(&get(listener_addr).await, "b"));

    // Fixed, with a direct response: served.
    ads.push("v4", world.resources(port, Route::Teapot, false));
    let teapot = until(listener_addr, "route v4 (direct response)", |s| {
        s.status == 418
    })
    .await;
    assert_eq!(teapot.body.as_deref(), Some("teapot"));
    assert!(
        proxy.stderr().contains("xDS NACK"),
        "the NACK is logged\n{}",
        proxy.stderr()
    );
    proxy.terminate_and_wait(WAIT).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ads_sotw_configures_routes_and_nacks_what_it_cannot_run() {
    ads_scenario("GRPC").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ads_delta_configures_routes_and_nacks_what_it_cannot_run() {
    ads_scenario("DELTA_GRPC").await;
}

#[test]
fn unsupported_ads_settings_are_refused_by_field_path() {
    let yaml = bootstrap("REST", "127.0.0.1:1".parse().unwrap(), 0).replace(
        "envoy_grpc: {cluster_name: xds-grpc}",
        "google_grpc: {target_uri: x, stat_prefix: x}",
    );
    let dir = TempDir::new("bosun-ads").unwrap();
    let config = dir.write("bootstrap.yaml", yaml.as_bytes()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["proxy", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("dynamic_resources.ads_config.api_type"),
        "{err}"
    );
    let yaml = bootstrap("GRPC", "127.0.0.1:1".parse().unwrap(), 0).replace(
        "envoy_grpc: {cluster_name: xds-grpc}",
        "google_grpc: {target_uri: x, stat_prefix: x}",
    );
    let config = dir.write("bootstrap2.yaml", yaml.as_bytes()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["proxy", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dynamic_resources.ads_config.grpc_services[0].google_grpc"),
        "{err}"
    );
}

/// The differential principle: the same ADS server and bootstrap under Envoy and under `bosun proxy`
/// give the same answers, before and after the route changes.
#[tokio::test(flavor = "multi_thread")]
async fn ads_answers_as_envoy_does() {
    if Envoy::find_or_skip("ads_answers_as_envoy_does").is_none() {
        return;
    }
    let world = World {
        a: Upstream::start("a").unwrap(),
        b: Upstream::start("b").unwrap(),
    };
    let steps = [Route::To("svc-a"), Route::To("svc-b"), Route::Teapot];
    let mut answers: Vec<Vec<Seen>> = Vec::new();
    for envoy in [false, true] {
        let port = testkit::free_port();
        let addr = testkit::localhost(port);
        let (ads, ads_addr) = TestAds::start("v0", world.resources(port, steps[0], false)).await;
        let mut seen = Vec::new();
        let (_running, admin): (Box<dyn std::any::Any>, SocketAddr) = if envoy {
            let yaml = bootstrap("GRPC", ads_addr, 0);
            let envoy = tokio::task::block_in_place(|| Envoy::start(&yaml)).unwrap();
            let admin = envoy.admin_addr();
            (Box::new(envoy), admin)
        } else {
            let admin_port = testkit::free_port();
            let yaml = bootstrap("GRPC", ads_addr, admin_port);
            let bosun = tokio::task::block_in_place(|| start_bosun(&yaml, admin_port));
            (Box::new(bosun), testkit::localhost(admin_port))
        };
        for (i, step) in steps.iter().enumerate() {
            ads.push(&format!("v{i}"), world.resources(port, *step, false));
            let want = |s: &Seen| match step {
                Route::To(c) => upstream_is(s, &c.replace("svc-", "")),
                Route::Teapot => s.status == 418,
            };
            seen.push(until(addr, "step", want).await);
        }
        // Two clusters of one name in one response: both proxies reject the CDS update.
        let mut twice = world.resources(port, Route::Teapot, false);
        let clusters = twice.get_mut(type_url::CLUSTER).unwrap();
        clusters.push(clusters[0].clone());
        ads.push("v9", twice);
        let deadline = Instant::now() + WAIT;
        while !ads.nacks().iter().any(|(t, _)| t == type_url::CLUSTER) {
            assert!(
                Instant::now() < deadline,
                "no NACK of the duplicate cluster"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // What Istio's pilot-agent reads for its readiness probe, and the xDS update counters.
        for query in [
            "/stats?usedonly&filter=^(server%5C.state|listener_manager%5C.workers_started)",
            "/stats?usedonly&filter=^(cluster_manager%5C.cds|listener_manager%5C.lds)%5C.(update_success|update_rejected)$",
        ] {
            let r = Client::h1(admin).get(query, &[]).await.unwrap();
            seen.push(Seen {
                status: r.status(),
                upstream: None,
                body: Some(r.text()),
            });
        }
        let stats: Vec<&str> = seen.iter().filter_map(|s| s.body.as_deref()).collect();
        assert!(
            stats.iter().any(|b| b.contains("server.state: 0\n"))
                && stats
                    .iter()
                    .any(|b| b.contains("cluster_manager.cds.update_rejected: 1\n")),
            "envoy={envoy}: {stats:?}"
        );
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1], "bosun (left) and Envoy (right)");
}

// === the initial fetch: its timeouts, and a first update rejected ===

/// How the initial fetch of one scenario goes.
#[derive(Clone, Copy, Debug)]
enum FirstFetch {
    /// CDS names a cluster twice: the first CDS response is NACKed. (Envoy applies the clusters it
    /// could before it NACKs, Bosun none of them, so this one's route answers itself.)
    ClustersRejected,
    /// The route configuration has a regex that does not compile: the first RDS response is NACKed.
    RoutesRejected,
    /// svc-b's endpoint is not an IP address: the first EDS response is NACKed (its route answers
    /// itself, as Envoy keeps what it could apply).
    EndpointsRejected,
    /// svc-b's endpoints never come, and its `eds_config` gives up after 1 s.
    EndpointsLateGivenUp,
    /// svc-b's endpoints never come, and nothing gives up (`initial_fetch_timeout: 0s`, as Istio).
    EndpointsLateAwaited,
}

/// The world's resources for `scenario`, every config source (and the bootstrap's, see
/// [`bootstrap_fetching`]) waiting for ever unless the scenario says otherwise.
fn first_fetch_resources(world: &World, port: u16, scenario: FirstFetch) -> Resources {
    let eds_timeout = match scenario {
        FirstFetch::EndpointsLateGivenUp => "1s",
        _ => "0s",
    };
    let route = match scenario {
        FirstFetch::ClustersRejected | FirstFetch::EndpointsRejected => Route::Teapot,
        _ => Route::To("svc-a"),
    };
    let mut r = world.resources(port, route, false);
    let mut clusters: Vec<(String, Any)> = ["svc-a", "svc-b"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                pack(&eds_cluster_fetching(n, Some(eds_timeout))),
            )
        })
        .collect();
    if let FirstFetch::ClustersRejected = scenario {
        clusters.push(clusters[0].clone());
    }
    r.insert(type_url::CLUSTER, clusters);
    r.insert(
        type_url::LISTENER,
        vec![(
            "http".into(),
            pack(&listener_logging_to(port, None, Some("0s"))),
        )],
    );
    if let FirstFetch::RoutesRejected = scenario {
        let bad = message_from_yaml::<RouteConfiguration>(
            "name: routes\nvirtual_hosts:\n- name: all\n  domains: ['*']\n  routes:\n  \
             - match: {safe_regex: {regex: '('}}\n    route: {cluster: svc-a}\n",
            None,
        )
        .unwrap();
        r.insert(
            type_url::ROUTE_CONFIGURATION,
            vec![("routes".into(), pack(&bad))],
        );
    }
    let endpoints = r.get_mut(type_url::CLUSTER_LOAD_ASSIGNMENT).unwrap();
    match scenario {
        FirstFetch::EndpointsLateGivenUp | FirstFetch::EndpointsLateAwaited => {
            endpoints.retain(|(name, _)| name != "svc-b");
        }
        FirstFetch::EndpointsRejected => {
            let bad = message_from_yaml::<ClusterLoadAssignment>(
                "cluster_name: svc-b\nendpoints:\n- lb_endpoints:\n  - endpoint: {address: \
                 {socket_address: {address: not-an-ip, port_value: 80}}}\n",
                None,
            )
            .unwrap();
            endpoints.retain(|(name, _)| name != "svc-b");
            endpoints.push(("svc-b".into(), pack(&bad)));
        }
        _ => {}
    }
    r
}

/// [`bootstrap`], with `initial_fetch_timeout: 0s` on `cds_config` and `lds_config` (Istio's).
fn bootstrap_fetching(api_type: &str, ads: SocketAddr, admin_port: u16) -> String {
    bootstrap(api_type, ads, admin_port).replace(
        "resource_api_version: V3}",
        "resource_api_version: V3, initial_fetch_timeout: 0s}",
    )
}

/// Envoy's rule for the initial fetch, side by side: a config source's `initial_fetch_timeout` is
/// how long its first response is waited for (`0s`: for ever, as Istio sets them all), and a first
/// response that is rejected ends the wait for it, so that a bad config cannot keep a proxy from
/// starting with what it has.
#[tokio::test(flavor = "multi_thread")]
async fn initial_fetch_waits_and_gives_up_as_envoy_does() {
    if Envoy::find_or_skip("initial_fetch_waits_and_gives_up_as_envoy_does").is_none() {
        return;
    }
    let world = World {
        a: Upstream::start("a").unwrap(),
        b: Upstream::start("b").unwrap(),
    };
    let scenarios = [
        FirstFetch::ClustersRejected,
        FirstFetch::RoutesRejected,
        FirstFetch::EndpointsRejected,
        FirstFetch::EndpointsLateGivenUp,
        FirstFetch::EndpointsLateAwaited,
    ];
    // Long enough for the 1 s timeout, far below Envoy's 15 s default.
    let ready_within = Duration::from_secs(6);
    let mut answers: Vec<Vec<String>> = Vec::new();
    for envoy in [true, false] {
        let mut seen = Vec::new();
        for (i, scenario) in scenarios.iter().enumerate() {
            let api_type = if i % 2 == 0 { "GRPC" } else { "DELTA_GRPC" };
            let port = testkit::free_port();
            let (ads, ads_addr) =
                TestAds::start("v0", first_fetch_resources(&world, port, *scenario)).await;
            let started = Instant::now();
            let (running, admin): (Option<Box<dyn std::any::Any>>, Option<SocketAddr>) = if envoy {
                let yaml = bootstrap_fetching(api_type, ads_addr, 0);
                let options = testkit::EnvoyOptions {
                    ready_timeout: ready_within,
                    ..Default::default()
                };
                match tokio::task::block_in_place(|| Envoy::start_with(&yaml, &options)) {
                    Ok(e) => {
                        let admin = e.admin_addr();
                        (Some(Box::new(e)), Some(admin))
                    }
                    Err(_) => (None, None),
                }
            } else {
                let admin_port = testkit::free_port();
                let admin = testkit::localhost(admin_port);
                let mut bosun = spawn_bosun(&bootstrap_fetching(api_type, ads_addr, admin_port));
                match tokio::task::block_in_place(|| bosun.wait_ready(admin, ready_within)) {
                    Ok(()) => (Some(Box::new(bosun)), Some(admin)),
                    Err(_) => (None, None),
                }
            };
            let mut line = format!("{scenario:?} over {api_type}: ");
            match admin {
                None => line.push_str("not ready"),
                Some(_) => {
                    // Not before the 1 s timeout that let it start.
                    let waited = started.elapsed() >= Duration::from_secs(1);
                    let r = get(testkit::localhost(port)).await;
                    line.push_str(&format!(
                        "ready (after 1 s: {waited}), then {} from {:?}",
                        r.status, r.upstream
                    ));
                }
            }
            let nacked: BTreeSet<String> = ads.nacks().into_iter().map(|(t, _)| t).collect();
            line.push_str(&format!(", NACKed {nacked:?}"));
            drop(running);
            seen.push(line);
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1], "Envoy (left) and bosun (right)");
}

/// What [`removals_as_envoy_does`] takes away.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Removal {
    Nothing,
    /// svc-a's load assignment.
    Endpoints,
    /// svc-a and its load assignment.
    Cluster,
    /// The route configuration the listener names.
    Routes,
}

/// The world's resources less what `removal` says, with a route `/marker` answering `marker`.
fn removal_step(world: &World, port: u16, removal: Removal, marker: &str) -> Resources {
    let mut r = world.resources(port, Route::To("svc-a"), false);
    if matches!(removal, Removal::Endpoints | Removal::Cluster) {
        r.get_mut(type_url::CLUSTER_LOAD_ASSIGNMENT)
            .unwrap()
            .retain(|(n, _)| n != "svc-a");
    }
    if removal == Removal::Cluster {
        r.get_mut(type_url::CLUSTER)
            .unwrap()
            .retain(|(n, _)| n != "svc-a");
    }
    let routes = message_from_yaml::<RouteConfiguration>(
        &format!(
            "name: routes\nvirtual_hosts:\n- name: all\n  domains: ['*']\n  routes:\n  \
             - match: {{path: /marker}}\n    direct_response: {{status: 200, body: {{inline_string: {marker}}}}}\n  \
             - match: {{prefix: /}}\n    route: {{cluster: svc-a}}\n"
        ),
        None,
    )
    .unwrap();
    let routes = if removal == Removal::Routes {
        Vec::new()
    } else {
        vec![("routes".into(), pack(&routes))]
    };
    r.insert(type_url::ROUTE_CONFIGURATION, routes);
    r
}

/// Resources taken away (delta says so; state of the world leaves them out): a load assignment
/// whose cluster stays keeps serving its endpoints in Envoy, and so in bosun; the cluster itself
/// goes (503) and comes back; a route configuration a listener still names stays. Each step waits
/// until the proxy ACKed the routes of that push, which come after its clusters and endpoints on
/// the stream.
#[tokio::test(flavor = "multi_thread")]
async fn removals_as_envoy_does() {
    if Envoy::find_or_skip("removals_as_envoy_does").is_none() {
        return;
    }
    let steps = [
        Removal::Nothing,
        Removal::Endpoints,
        Removal::Cluster,
        Removal::Nothing,
        Removal::Routes,
    ];
    let world = World {
        a: Upstream::start("a").unwrap(),
        b: Upstream::start("b").unwrap(),
    };
    let mut answers: Vec<Vec<String>> = Vec::new();
    for envoy in [true, false] {
        let mut seen = Vec::new();
        for api_type in ["GRPC", "DELTA_GRPC"] {
            let port = testkit::free_port();
            let addr = testkit::localhost(port);
            let (ads, ads_addr) =
                TestAds::start("v0", removal_step(&world, port, Removal::Nothing, "v0")).await;
            let _running: Box<dyn std::any::Any> = if envoy {
                let yaml = bootstrap(api_type, ads_addr, 0);
                Box::new(tokio::task::block_in_place(|| Envoy::start(&yaml)).unwrap())
            } else {
                let admin_port = testkit::free_port();
                let yaml = bootstrap(api_type, ads_addr, admin_port);
                Box::new(tokio::task::block_in_place(|| {
                    start_bosun(&yaml, admin_port)
                }))
            };
            for (step, removal) in steps.into_iter().enumerate() {
                // The first step is what the proxy started with.
                if step > 0 {
                    let marker = format!("v{step}");
                    let acked = ads.acks(type_url::ROUTE_CONFIGURATION);
                    ads.push(&marker, removal_step(&world, port, removal, &marker));
                    let deadline = Instant::now() + WAIT;
                    while ads.acks(type_url::ROUTE_CONFIGURATION) == acked {
                        assert!(Instant::now() < deadline, "{marker}'s routes never ACKed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                // The cluster back warms until its endpoints come (after the routes, in Envoy).
                let s = if step == 3 {
                    until(addr, "svc-a back", |s| upstream_is(s, "a")).await
                } else {
                    get(addr).await
                };
                let marker = get_path(addr, "/marker").await;
                seen.push(format!(
                    "{api_type} {removal:?} removed: {} from {:?}, marker {marker}",
                    s.status, s.upstream
                ));
            }
            assert!(ads.nacks().is_empty(), "{:?}", ads.nacks());
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1], "Envoy (left) and bosun (right)");
    assert!(
        answers[0]
            .iter()
            .any(|a| a.contains("DELTA_GRPC Endpoints removed: 200")),
        "{answers:?}"
    );
}

// === secrets over ADS (SDS) ===

/// A TLS listener on `port` whose certificate is the ADS secret `secret`; answers `body`.
fn sds_listener(name: &str, port: u16, secret: &str, body: &str) -> Listener {
    message_from_yaml(
        &format!(
            r#"
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        tls_certificate_sds_secret_configs: [{{name: {secret}, sds_config: {{ads: {{}}, resource_api_version: V3}}}}]
  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: {name}
      route_config: {{virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, direct_response: {{status: 200, body: {{inline_string: {body}}}}}}}]}}]}}
      http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
"#
        ),
        None,
    )
    .unwrap()
}

/// A plain HTTP listener on `port` forwarding to the cluster `origin`, which originates TLS to
/// `tls_port` checking the server against the CA of the ADS secret `ca`.
fn sds_origination(port: u16, tls_port: u16) -> (Listener, Cluster) {
    let listener = message_from_yaml(
        &format!(
            r#"
name: originate
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: originate
      route_config: {{virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, route: {{cluster: origin}}}}]}}]}}
      http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
"#
        ),
        None,
    )
    .unwrap();
    let cluster = message_from_yaml(
        &format!(
            r#"
name: origin
type: STATIC
connect_timeout: 1s
# A connection per request: Envoy keeps pooled connections when a secret changes (bosun proxy does
# not), and each request here should show the CA of the moment.
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    common_http_protocol_options: {{max_requests_per_connection: 1}}
    explicit_http_config: {{http_protocol_options: {{}}}}
load_assignment:
  cluster_name: origin
  endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {tls_port}}}}}}}}}]}}]
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    sni: sds.example.com
    common_tls_context:
      validation_context_sds_secret_config: {{name: ca, sds_config: {{ads: {{}}, resource_api_version: V3}}}}
"#
        ),
        None,
    )
    .unwrap();
    (listener, cluster)
}

fn certificate_secret(name: &str, cert: &mesh_tls::WorkloadCert) -> Any {
    let secret: xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret =
        message_from_yaml(
            &format!(
                "name: {name}\ntls_certificate:\n  certificate_chain: {{inline_string: {:?}}}\n  private_key: {{inline_string: {:?}}}\n",
                cert.cert_chain_pem, cert.key_pem
            ),
            None,
        )
        .unwrap();
    pack(&secret)
}

fn ca_secret(name: &str, root_pem: &str) -> Any {
    let secret: xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret =
        message_from_yaml(
            &format!(
                "name: {name}\nvalidation_context:\n  trusted_ca: {{inline_string: {root_pem:?}}}\n"
            ),
            None,
        )
        .unwrap();
    pack(&secret)
}

/// Polls `probe` until `done` holds for what it returns, at most `WAIT`.
async fn until_seen<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    probe: impl Fn() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = probe().await;
        if done(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what}: last {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SDS over ADS, under Envoy and under `bosun proxy` (state of the world and delta), with the same
/// answers: a listener's
/// certificate and a cluster's CA come as secrets; a new certificate is served to new connections; a
/// CA that does not sign the server fails origination (503) while termination goes on; a listener
/// that names a secret not yet sent warms without a NACK and serves once the secret arrives, and
/// keeps it when the secret is taken away.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_over_ads_match_envoy() {
    if Envoy::find_or_skip("secrets_over_ads_match_envoy").is_none() {
        return;
    }
    let ca = mesh_tls::CertificateAuthority::generate("cluster.local").unwrap();
    let stranger = mesh_tls::CertificateAuthority::generate("cluster.local").unwrap();
    let roots = mesh_tls::RootStore::from_pem(ca.root_pem().as_bytes()).unwrap();
    let day = Duration::from_secs(86_400);
    let one = ca.issue_server(&["one.example.com"], day).unwrap();
    let two = ca.issue_server(&["two.example.com"], day).unwrap();
    let late = ca.issue_server(&["late.example.com"], day).unwrap();

    let mut answers = Vec::new();
    // bosun proxy over state-of-the-world and delta ADS, then Envoy over both.
    let runs = [
        ("GRPC", false),
        ("DELTA_GRPC", false),
        ("GRPC", true),
        ("DELTA_GRPC", true),
    ];
    for (api_type, envoy) in runs {
        let (tls_port, plain_port, late_port) = (
            testkit::free_port(),
            testkit::free_port(),
            testkit::free_port(),
        );
        let (tls_addr, plain_addr, late_addr) = (
            testkit::localhost(tls_port),
            testkit::localhost(plain_port),
            testkit::localhost(late_port),
        );
        let (originate, origin) = sds_origination(plain_port, tls_port);
        // `late_step`: 0 leaves the late listener out, 1 sends it without its secret, 2 with.
        let resources = |server: &mesh_tls::WorkloadCert, ca_root: &str, late_step: u8| {
            let mut listeners = vec![
                (
                    "sds".to_owned(),
                    pack(&sds_listener("sds", tls_port, "server", "sds")),
                ),
                ("originate".to_owned(), pack(&originate)),
            ];
            let mut secrets = vec![
                ("ca".to_owned(), ca_secret("ca", ca_root)),
                ("server".to_owned(), certificate_secret("server", server)),
            ];
            if late_step > 0 {
                listeners.push((
                    "late".to_owned(),
                    pack(&sds_listener("late", late_port, "late", "late")),
                ));
            }
            if late_step > 1 {
                secrets.push(("late".to_owned(), certificate_secret("late", &late)));
            }
            Resources::from([
                (type_url::LISTENER, listeners),
                (
                    type_url::CLUSTER,
                    vec![("origin".to_owned(), pack(&origin))],
                ),
                (type_url::SECRET, secrets),
            ])
        };
        let (ads, ads_addr) = TestAds::start("v0", resources(&one, &ca.root_pem(), 0)).await;
        let admin_port = testkit::free_port();
        let _running: Box<dyn std::any::Any> = if envoy {
            let yaml = bootstrap(api_type, ads_addr, 0);
            Box::new(tokio::task::block_in_place(|| Envoy::start(&yaml)).unwrap())
        } else {
            let yaml = bootstrap(api_type, ads_addr, admin_port);
            Box::new(tokio::task::block_in_place(|| {
                start_bosun(&yaml, admin_port)
            }))
        };
        let mut seen = Vec::new();
        let sans = |s: &Option<(Vec<String>, u16, String)>, want: &str| {
            s.as_ref()
                .is_some_and(|(sans, _, _)| sans.iter().any(|n| n.contains(want)))
        };
        seen.push(format!(
            "{:?}",
            until_seen(
                "the first certificate",
                || tls_answer(tls_addr, "sds.example.com", &roots, None),
                |s| sans(s, "one")
            )
            .await
        ));
        let plain = |want: u16| {
            until_seen(
                "origination",
                || async { get(plain_addr).await },
                move |s: &Seen| s.status == want,
            )
        };
        seen.push(format!("{:?}", plain(200).await.body));

        // A new certificate.
        ads.push("v1", resources(&two, &ca.root_pem(), 0));
        seen.push(format!(
            "{:?}",
            until_seen(
                "the new certificate",
                || tls_answer(tls_addr, "sds.example.com", &roots, None),
                |s| sans(s, "two")
            )
            .await
        ));
        // A CA that did not sign the server: origination fails, termination goes on.
        ads.push("v2", resources(&two, &stranger.root_pem(), 0));
        seen.push(format!("{}", plain(503).await.status));
        seen.push(format!(
            "{:?}",
            tls_answer(tls_addr, "sds.example.com", &roots, None).await
        ));
        // A listener whose secret is not there yet: no NACK; it serves once the secret comes.
        ads.push("v3", resources(&two, &ca.root_pem(), 1));
        seen.push(format!("{:?}", plain(200).await.body));
        if !envoy {
            // The config dump says what the listener waits for.
            let waiting = |d: &serde_json::Value| {
                d["configs"][2]["dynamic_listeners"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|l| l["name"] == "late")
                    .map(|l| l["warming_state"]["waiting_for_secrets"].clone())
            };
            let dump = until_seen(
                "the warming listener in /config_dump",
                || config_dump(admin_port),
                |d| waiting(d) == Some(serde_json::json!(["late"])),
            )
            .await;
            let secrets = &dump["configs"][5]["dynamic_active_secrets"];
            let secret = &secrets[1]["secret"];
            assert!(secret["tls_certificate"].is_object(), "{dump}");
            assert_eq!(
                secret["tls_certificate"]["private_key"]["inline_string"], "[redacted]",
                "{dump}"
            );
        }
        ads.push("v4", resources(&two, &ca.root_pem(), 2));
        seen.push(format!(
            "{:?}",
            until_seen(
                "the late listener",
                || tls_answer(late_addr, "sds.example.com", &roots, None),
                |s| sans(s, "late")
            )
            .await
        ));
        // The late secret taken away (delta says so, state of the world leaves it out) while its
        // listener stays: the listener keeps the certificate it has, nothing is NACKed.
        let acked = ads.acks(type_url::SECRET);
        ads.push("v5", resources(&two, &ca.root_pem(), 1));
        let deadline = Instant::now() + WAIT;
        while ads.acks(type_url::SECRET) == acked {
            assert!(Instant::now() < deadline, "the secrets of v5 never ACKed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen.push(format!(
            "{:?}",
            tls_answer(late_addr, "sds.example.com", &roots, None).await
        ));
        assert!(ads.nacks().is_empty(), "NACKs: {:?}", ads.nacks());
        answers.push(seen);
    }
    assert_eq!(
        answers[0], answers[2],
        "bosun over SotW (left) and Envoy (right)"
    );
    assert_eq!(
        answers[1], answers[3],
        "bosun over delta (left) and Envoy (right)"
    );
}

/// `bosun proxy`'s `/config_dump` on `admin_port` (`null` when it does not answer).
async fn config_dump(admin_port: u16) -> serde_json::Value {
    let answer = Client::h1(testkit::localhost(admin_port))
        .with_timeout(Duration::from_secs(5))
        .get("/config_dump", &[])
        .await;
    answer
        .ok()
        .and_then(|r| serde_json::from_str(&r.text()).ok())
        .unwrap_or_default()
}

// === virtual hosts over VHDS (delta ADS) ===

/// The listener's table over RDS, `vhds` from ADS: with no virtual host of its own, or (`own`) one
/// for `own.example` answering 418.
fn vhds_route_config(own: bool) -> RouteConfiguration {
    let virtual_hosts = if own {
        format!(
            "[{{name: own, domains: [own.example], routes: [{{match: {{prefix: /}}, {}}}]}}]",
            route_action(Route::Teapot)
        )
    } else {
        "[]".to_owned()
    };
    message_from_yaml(
        &format!(
            "name: routes\nvhds: {{config_source: {{ads: {{}}, resource_api_version: V3}}}}\nvirtual_hosts: {virtual_hosts}\n"
        ),
        None,
    )
    .unwrap()
}

/// The VHDS virtual host `routes/<host>` for the domain `<host>.example`, taking `route`; or, when
/// `None`, with a path regex that does not compile (both proxies NACK it).
fn vhds_vhost(host: &str, route: Option<Route>) -> (String, Any) {
    let (matcher, action) = match route {
        Some(r) => ("prefix: /".to_owned(), route_action(r)),
        None => (
            "safe_regex: {regex: '/(v1'}".to_owned(),
            route_action(Route::Teapot),
        ),
    };
    let name = format!("routes/{host}");
    let vhost: xds_api::pb::envoy::config::route::v3::VirtualHost = message_from_yaml(
        &format!(
            "name: {name}\ndomains: [{host}.example]\nroutes: [{{match: {{{matcher}}}, {action}}}]\n"
        ),
        None,
    )
    .unwrap();
    (name, pack(&vhost))
}

impl World {
    /// The clusters, endpoints and listener, the VHDS table (see [`vhds_route_config`]) and `vhosts`.
    fn vhds_resources(&self, port: u16, own: bool, vhosts: Vec<(String, Any)>) -> Resources {
        let mut r = self.resources(port, Route::Teapot, false);
        r.insert(
            type_url::ROUTE_CONFIGURATION,
            vec![("routes".into(), pack(&vhds_route_config(own)))],
        );
        r.insert(type_url::VIRTUAL_HOST, vhosts);
        r
    }
}

/// The proxy under test.
enum Running {
    Bosun(Process),
    Envoy(Envoy),
}

impl Running {
    fn process(&mut self) -> &mut Process {
        match self {
            Running::Bosun(p) => p,
            Running::Envoy(e) => e.process(),
        }
    }
}

/// `bosun proxy` (and Envoy, the oracle) over delta ADS, a table whose virtual hosts come over VHDS:
/// routed by a VHDS virtual host; a new version of it shifts traffic with no failed request; a bad one
/// is NACKed while the old one serves; a new RDS version keeps the VHDS virtual hosts; a removed one
/// answers 404. Bosun also stays not ready until VHDS answers for the table.
#[tokio::test(flavor = "multi_thread")]
async fn vhds_routes_as_envoy_does() {
    let with_envoy = Envoy::find_or_skip("vhds_routes_as_envoy_does (Envoy part)").is_some();
    let world = World {
        a: Upstream::start("a").unwrap(),
        b: Upstream::start("b").unwrap(),
    };
    let reviews = |r: Route| vhds_vhost("reviews", Some(r));
    let ratings = || vhds_vhost("ratings", Some(Route::To("svc-a")));
    let mut answers: Vec<Vec<Seen>> = Vec::new();
    for envoy in [false, true].into_iter().filter(|e| !e || with_envoy) {
        let port = testkit::free_port();
        let addr = testkit::localhost(port);
        let first = world.vhds_resources(port, false, vec![reviews(Route::To("svc-a")), ratings()]);
        let (ads, ads_addr) = if envoy {
            TestAds::start("v1", first.clone()).await
        } else {
            // No virtual host yet: bosun takes the table and waits for VHDS, not ready.
            TestAds::start("v0", world.vhds_resources(port, false, Vec::new())).await
        };
        let admin_port = testkit::free_port();
        let yaml = bootstrap("DELTA_GRPC", ads_addr, if envoy { 0 } else { admin_port });
        let mut running = if envoy {
            Running::Envoy(tokio::task::block_in_place(|| Envoy::start(&yaml)).unwrap())
        } else {
            let mut bosun = spawn_bosun(&yaml);
            let has_table = |d: &serde_json::Value| {
                d["configs"][4]["dynamic_route_configs"][0]["route_config"]["name"] == "routes"
            };
            until_seen("the VHDS table", || config_dump(admin_port), has_table).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let ready = testkit::blocking_get(testkit::localhost(admin_port), "/ready", WAIT);
            assert!(
                ready.as_ref().is_ok_and(|(status, _)| *status != 200),
                "ready before VHDS answered: {ready:?}"
            );
            ads.push("v1", first);
            tokio::task::block_in_place(|| bosun.wait_ready(testkit::localhost(admin_port), WAIT))
                .unwrap_or_else(|e| panic!("not ready after VHDS: {e}\n{}", bosun.stderr()));
            let dump = config_dump(admin_port).await;
            let vhosts: Vec<&str> = dump["configs"][4]["dynamic_route_configs"][0]["route_config"]
                ["virtual_hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["name"].as_str().unwrap())
                .collect();
            assert_eq!(vhosts, ["routes/ratings", "routes/reviews"], "{dump}");
            Running::Bosun(bosun)
        };
        let host = Some("reviews.example");
        let mut seen = vec![
            until_as(addr, host, "routed by VHDS", |s| upstream_is(s, "a")).await,
            get_as(addr, Some("other.example")).await,
        ];

        // A new version of the virtual host, with clients running: no failed request.
        let stop = Arc::new(AtomicBool::new(false));
        let running_clients = client_loop(addr, host, stop.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        ads.push(
            "v2",
            world.vhds_resources(port, false, vec![reviews(Route::To("svc-b")), ratings()]),
        );
        seen.push(until_as(addr, host, "VHDS v2 (to svc-b)", |s| upstream_is(s, "b")).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.store(true, Ordering::Relaxed);
        let during = running_clients.await.unwrap();
        for s in &during {
            assert!(
                upstream_is(s, "a") || upstream_is(s, "b"),
                "envoy={envoy}: {s:?}"
            );
        }
        assert!(upstream_is(during.last().unwrap(), "b"), "{during:?}");

        // A virtual host that does not build: NACKed, and the old one keeps serving.
        let bad = vhds_vhost("reviews", None);
        ads.push(
            "v3",
            world.vhds_resources(port, false, vec![bad, ratings()]),
        );
        let nack = first_nack(&ads, type_url::VIRTUAL_HOST, running.process()).await;
        if !envoy {
            assert!(
                nack.contains("routes/reviews: routes[0].match.safe_regex.regex"),
                "{nack}"
            );
        }
        seen.push(get_as(addr, host).await);

        // A new RDS version (a virtual host of its own) keeps the VHDS ones.
        ads.push(
            "v4",
            world.vhds_resources(port, true, vec![reviews(Route::To("svc-b")), ratings()]),
        );
        seen.push(
            until_as(addr, Some("own.example"), "own virtual host", |s| {
                s.status == 418
            })
            .await,
        );
        seen.push(get_as(addr, host).await);
        seen.push(get_as(addr, Some("ratings.example")).await);

        // The virtual host removed: 404.
        ads.push("v5", world.vhds_resources(port, true, vec![ratings()]));
        seen.push(until_as(addr, host, "removed virtual host", |s| s.status == 404).await);
        seen.push(get_as(addr, Some("ratings.example")).await);
        running.process().check_running().unwrap();
        answers.push(seen);
    }
    let bosun = &answers[0];
    assert!(
        upstream_is(&bosun[0], "a") && bosun[1].status == 404,
        "{bosun:?}"
    );
    assert!(
        upstream_is(&bosun[3], "b") && bosun[4].status == 418,
        "{bosun:?}"
    );
    if let [bosun, envoy] = &answers[..] {
        assert_eq!(bosun, envoy, "bosun (left) and Envoy (right)");
    }
}

/// VHDS over state-of-the-world ADS: the RDS update is NACKed with Envoy's reason.
#[tokio::test(flavor = "multi_thread")]
async fn vhds_over_sotw_ads_is_nacked() {
    let world = World {
        a: Upstream::start("a").unwrap(),
        b: Upstream::start("b").unwrap(),
    };
    let port = testkit::free_port();
    let vhosts = vec![vhds_vhost("reviews", Some(Route::To("svc-a")))];
    let (ads, ads_addr) = TestAds::start("v1", world.vhds_resources(port, false, vhosts)).await;
    let mut proxy = spawn_bosun(&bootstrap("GRPC", ads_addr, testkit::free_port()));
    let nack = first_nack(&ads, type_url::ROUTE_CONFIGURATION, &proxy).await;
    assert!(
        nack.contains(
            "routes: vhds.config_source.ads: vhds: ADS must use DELTA_GRPC api_type when used as VHDS config source."
        ),
        "{nack}"
    );
    proxy.terminate_and_wait(WAIT).unwrap();
}
