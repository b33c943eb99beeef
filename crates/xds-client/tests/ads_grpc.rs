//! The ADS client over real gRPC against an in-test ADS server, state-of-the-world and delta.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use xds_api::any::pack;
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use xds_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use xds_api::pb::google::protobuf::Any;
use xds_client::{AdsClient, AdsConfig, AdsStatus, Mode, ResourceType, XdsError};

// === the test ADS server ===

type Resources = BTreeMap<&'static str, Vec<(String, Any)>>;

#[derive(Clone, Debug)]
struct Snap {
    version: String,
    resources: Resources,
}

struct Inner {
    snapshot: watch::Sender<Snap>,
    kill: watch::Sender<u64>,
    streams: AtomicUsize,
    sotw: Mutex<Vec<(usize, DiscoveryRequest)>>,
    delta: Mutex<Vec<(usize, DeltaDiscoveryRequest)>>,
}

/// A small ADS server: answers new subscriptions with the current snapshot, pushes every new snapshot
/// to what each stream subscribed to, records every request, and drops all streams on `kill`.
#[derive(Clone)]
struct TestAds(Arc<Inner>);

impl TestAds {
    async fn start(resources: Resources) -> (TestAds, SocketAddr) {
        let (snapshot, _) = watch::channel(Snap {
            version: "v1".into(),
            resources,
        });
        let (kill, _) = watch::channel(0);
        let ads = TestAds(Arc::new(Inner {
            snapshot,
            kill,
            streams: AtomicUsize::new(0),
            sotw: Mutex::new(Vec::new()),
            delta: Mutex::new(Vec::new()),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = AggregatedDiscoveryServiceServer::new(ads.clone());
        // tonic's router needs axum; one service over hyper's HTTP/2 needs nothing more.
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

    fn kill_streams(&self) {
        self.0.kill.send_modify(|k| *k += 1);
    }

    fn sotw_requests(&self) -> Vec<(usize, DiscoveryRequest)> {
        self.0.sotw.lock().unwrap().clone()
    }

    fn delta_requests(&self) -> Vec<(usize, DeltaDiscoveryRequest)> {
        self.0.delta.lock().unwrap().clone()
    }
}

fn selected<'a>(
    snap: &'a Snap,
    type_url: &str,
    wildcard: bool,
    names: &'a BTreeSet<String>,
) -> impl Iterator<Item = &'a (String, Any)> {
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
        let inner = self.0.clone();
        let id = inner.streams.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut snap_rx = inner.snapshot.subscribe();
            let mut kill_rx = inner.kill.subscribe();
            let mut subs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut nonce = 0;
            let send = |type_url: &str, names: &BTreeSet<String>, nonce: &mut u64| {
                let snap = inner.snapshot.borrow().clone();
                *nonce += 1;
                let wildcard =
                    ResourceType::from_type_url(type_url).is_some_and(ResourceType::is_wildcard);
                DiscoveryResponse {
                    version_info: snap.version.clone(),
                    resources: selected(&snap, type_url, wildcard, names)
                        .map(|(_, a)| a.clone())
                        .collect(),
                    type_url: type_url.to_owned(),
                    nonce: format!("{id}-{nonce}"),
                    ..Default::default()
                }
            };
            loop {
                let out: Vec<DiscoveryResponse> = tokio::select! {
                    _ = kill_rx.changed() => return,
                    r = snap_rx.changed() => {
                        if r.is_err() { return }
                        subs.iter().map(|(t, n)| send(t, n, &mut nonce)).collect()
                    }
                    m = incoming.message() => match m {
                        Ok(Some(req)) => {
                            inner.sotw.lock().unwrap().push((id, req.clone()));
                            let names: BTreeSet<String> = req.resource_names.iter().cloned().collect();
                            let changed = req.response_nonce.is_empty()
                                || subs.get(&req.type_url) != Some(&names);
                            subs.insert(req.type_url.clone(), names.clone());
                            if changed { vec![send(&req.type_url, &names, &mut nonce)] } else { vec![] }
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
        struct Sub {
            wildcard: bool,
            names: BTreeSet<String>,
            /// What the client holds, by our account.
            known: BTreeMap<String, String>,
        }
        let mut incoming = request.into_inner();
        let inner = self.0.clone();
        let id = inner.streams.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut snap_rx = inner.snapshot.subscribe();
            let mut kill_rx = inner.kill.subscribe();
            let mut subs: BTreeMap<String, Sub> = BTreeMap::new();
            let mut nonce = 0;
            let diff = |type_url: &str, sub: &mut Sub, nonce: &mut u64| {
                let snap = inner.snapshot.borrow().clone();
                let mut resources = Vec::new();
                let mut present = BTreeSet::new();
                for (name, any) in selected(&snap, type_url, sub.wildcard, &sub.names) {
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
                if resources.is_empty() && removed.is_empty() {
                    return None;
                }
                *nonce += 1;
                Some(DeltaDiscoveryResponse {
                    system_version_info: snap.version.clone(),
                    resources,
                    type_url: type_url.to_owned(),
                    removed_resources: removed,
                    nonce: format!("{id}-{nonce}"),
                    ..Default::default()
                })
            };
            loop {
                let out: Vec<DeltaDiscoveryResponse> = tokio::select! {
                    _ = kill_rx.changed() => return,
                    r = snap_rx.changed() => {
                        if r.is_err() { return }
                        subs.iter_mut().filter_map(|(t, s)| diff(t, s, &mut nonce)).collect()
                    }
                    m = incoming.message() => match m {
                        Ok(Some(req)) => {
                            inner.delta.lock().unwrap().push((id, req.clone()));
                            let first = !subs.contains_key(&req.type_url);
                            let sub = subs.entry(req.type_url.clone()).or_insert_with(|| Sub {
                                wildcard: req.resource_names_subscribe.is_empty(),
                                names: BTreeSet::new(),
                                known: req.initial_resource_versions.clone().into_iter().collect(),
                            });
                            sub.names.extend(req.resource_names_subscribe.iter().cloned());
                            for n in &req.resource_names_unsubscribe {
                                sub.names.remove(n);
                                sub.known.remove(n);
                            }
                            if first || !req.resource_names_subscribe.is_empty() {
                                diff(&req.type_url, sub, &mut nonce).into_iter().collect()
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

// === helpers ===

fn config(addr: SocketAddr, mode: Mode) -> AdsConfig {
    let mut cfg = AdsConfig::new(format!("http://{addr}"), node(), mode);
    cfg.backoff_initial = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(200);
    cfg.connect_timeout = Duration::from_secs(2);
    cfg
}

async fn until<C>(client: &AdsClient<C>, what: &str, pred: impl Fn(&AdsStatus) -> bool) {
    let mut rx = client.watch_status();
    let r = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| pred(s))).await;
    assert!(
        matches!(r, Ok(Ok(_))),
        "timed out waiting for {what}; status: {:#?}",
        client.status()
    );
}

async fn eventually(what: &str, pred: impl Fn() -> bool) {
    for _ in 0..500 {
        if pred() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn with_listeners(listeners: Vec<(String, Any)>) -> Resources {
    let mut m = mesh();
    m.insert(ResourceType::Listener.type_url(), listeners);
    m
}

fn without_cluster_b() -> Resources {
    let mut m = mesh();
    m.insert(
        ResourceType::Cluster.type_url(),
        vec![("a".to_owned(), pack(&cluster("a")))],
    );
    m.insert(
        ResourceType::Listener.type_url(),
        vec![("http".to_owned(), pack(&listener("http", 8081, "80")))],
    );
    m
}

fn bad_set() -> Resources {
    with_listeners(vec![
        ("http".to_owned(), pack(&listener("http", 8080, "80"))),
        ("broken".to_owned(), pack(&bad_listener("broken"))),
    ])
}

// === tests ===

#[tokio::test]
async fn sotw_end_to_end() {
    let (ads, addr) = TestAds::start(mesh()).await;
    let rec = Recorder::default();
    let client = AdsClient::start(config(addr, Mode::Sotw), rec.clone()).unwrap();

    assert!(client.wait_initial_config(Duration::from_secs(10)).await);
    let status = client.status();
    assert!(status.connected);
    assert_eq!(status.streams, 1);
    for ty in ResourceType::ALL.into_iter().take(4) {
        assert_eq!(status.acked_versions[&ty], "v1", "{ty}");
    }
    // Warming order as Envoy: clusters, endpoints, listeners, routes.
    assert_eq!(
        &rec.order()[..4],
        [
            ResourceType::Cluster,
            ResourceType::Endpoints,
            ResourceType::Listener,
            ResourceType::Route
        ]
    );
    assert_eq!(rec.names(ResourceType::Endpoints), ["a", "b"]);
    assert_eq!(rec.names(ResourceType::Route), ["80"]);

    let reqs = ads.sotw_requests();
    // The node arrives on the first request of the stream only.
    assert_eq!(reqs[0].1.node.as_ref().unwrap().id, NODE_ID);
    assert!(reqs[1..].iter().all(|(_, r)| r.node.is_none()));
    // ACKs carry version and nonce.
    let cds_ack = reqs
        .iter()
        .find(|(_, r)| {
            r.type_url == ResourceType::Cluster.type_url() && !r.response_nonce.is_empty()
        })
        .unwrap();
    assert_eq!(cds_ack.1.version_info, "v1");
    assert!(cds_ack.1.error_detail.is_none());
    // EDS and RDS subscriptions follow CDS and LDS.
    let eds = reqs
        .iter()
        .find(|(_, r)| r.type_url == ResourceType::Endpoints.type_url())
        .unwrap();
    assert_eq!(eds.1.resource_names, ["a", "b"]);
    let rds = reqs
        .iter()
        .find(|(_, r)| r.type_url == ResourceType::Route.type_url())
        .unwrap();
    assert_eq!(rds.1.resource_names, ["80"]);
    // LDS was requested only after EDS was ACKed.
    let pos = |pred: &dyn Fn(&DiscoveryRequest) -> bool| reqs.iter().position(|(_, r)| pred(r));
    let eds_ack =
        pos(&|r| r.type_url == ResourceType::Endpoints.type_url() && !r.response_nonce.is_empty());
    let lds_req = pos(&|r| r.type_url == ResourceType::Listener.type_url());
    assert!(eds_ack < lds_req, "{eds_ack:?} < {lds_req:?}");

    // An invalid listener: NACK with name: reason and the previous version; the last good set stays.
    ads.push("v2", bad_set());
    until(&client, "a NACK", |s| s.nacks >= 1).await;
    eventually("the NACK at the server", || {
        ads.sotw_requests()
            .iter()
            .any(|(_, r)| r.error_detail.is_some())
    })
    .await;
    let nack = ads
        .sotw_requests()
        .into_iter()
        .find(|(_, r)| r.error_detail.is_some())
        .unwrap()
        .1;
    assert_eq!(nack.type_url, ResourceType::Listener.type_url());
    assert_eq!(nack.version_info, "v1");
    assert!(nack.response_nonce.starts_with("0-"));
    let detail = nack.error_detail.unwrap();
    assert_eq!(detail.code, 3);
    assert!(
        detail.message.contains("broken: listener has no address"),
        "{}",
        detail.message
    );
    assert_eq!(rec.names(ResourceType::Listener), ["http"]);
    assert_eq!(
        client.status().acked_versions[&ResourceType::Listener],
        "v1"
    );

    // Cluster b goes: EDS is re-requested for a only.
    ads.push("v3", without_cluster_b());
    until(&client, "LDS v3 ACKed", |s| {
        s.acked_versions
            .get(&ResourceType::Listener)
            .map(String::as_str)
            == Some("v3")
    })
    .await;
    eventually("EDS for a only", || {
        ads.sotw_requests().iter().any(|(_, r)| {
            r.type_url == ResourceType::Endpoints.type_url() && r.resource_names == ["a"]
        })
    })
    .await;
    assert_eq!(rec.names(ResourceType::Cluster), ["a"]);

    // The server drops the stream: the client reconnects and re-subscribes everything.
    ads.kill_streams();
    until(&client, "a second stream", |s| {
        s.streams >= 2 && s.connected
    })
    .await;
    eventually("re-subscription to RDS", || {
        ads.sotw_requests()
            .iter()
            .any(|(id, r)| *id == 1 && r.type_url == ResourceType::Route.type_url())
    })
    .await;
    let second: Vec<DiscoveryRequest> = ads
        .sotw_requests()
        .into_iter()
        .filter(|(id, _)| *id == 1)
        .map(|(_, r)| r)
        .collect();
    assert!(second[0].node.is_some(), "node again on the new stream");
    assert_eq!(second[0].type_url, ResourceType::Cluster.type_url());
    assert_eq!(second[0].version_info, "v3");
    assert!(second[0].response_nonce.is_empty());
    let eds = second
        .iter()
        .find(|r| r.type_url == ResourceType::Endpoints.type_url())
        .unwrap();
    assert_eq!(eds.resource_names, ["a"]);
    assert!(
        second
            .iter()
            .any(|r| r.type_url == ResourceType::Listener.type_url())
    );
    assert!(
        client
            .status()
            .last_error
            .unwrap()
            .contains(&addr.to_string())
    );

    // The initial-config signal fired once, through all of it.
    assert_eq!(rec.complete(), 1);
    let _consumer = client.stop().await.unwrap();
}

#[tokio::test]
async fn delta_end_to_end() {
    let (ads, addr) = TestAds::start(mesh()).await;
    let rec = Recorder::default();
    let client = AdsClient::start(config(addr, Mode::Delta), rec.clone()).unwrap();

    assert!(client.wait_initial_config(Duration::from_secs(10)).await);
    assert_eq!(
        &rec.order()[..4],
        [
            ResourceType::Cluster,
            ResourceType::Endpoints,
            ResourceType::Listener,
            ResourceType::Route
        ]
    );
    assert_eq!(rec.names(ResourceType::Cluster), ["a", "b"]);
    assert_eq!(rec.names(ResourceType::Endpoints), ["a", "b"]);
    assert_eq!(rec.names(ResourceType::Route), ["80"]);

    let reqs = ads.delta_requests();
    assert_eq!(reqs[0].1.node.as_ref().unwrap().id, NODE_ID);
    assert!(reqs[1..].iter().all(|(_, r)| r.node.is_none()));
    let cds_ack = reqs
        .iter()
        .find(|(_, r)| {
            r.type_url == ResourceType::Cluster.type_url() && !r.response_nonce.is_empty()
        })
        .unwrap();
    assert!(cds_ack.1.error_detail.is_none());
    let eds = reqs
        .iter()
        .find(|(_, r)| r.type_url == ResourceType::Endpoints.type_url())
        .unwrap();
    assert_eq!(eds.1.resource_names_subscribe, ["a", "b"]);
    let rds = reqs
        .iter()
        .find(|(_, r)| r.type_url == ResourceType::Route.type_url())
        .unwrap();
    assert_eq!(rds.1.resource_names_subscribe, ["80"]);

    // An invalid listener is NACKed by nonce with name: reason; the last good set stays.
    ads.push("v2", bad_set());
    until(&client, "a NACK", |s| s.nacks >= 1).await;
    eventually("the NACK at the server", || {
        ads.delta_requests()
            .iter()
            .any(|(_, r)| r.error_detail.is_some())
    })
    .await;
    let nack = ads
        .delta_requests()
        .into_iter()
        .find(|(_, r)| r.error_detail.is_some())
        .unwrap()
        .1;
    assert_eq!(nack.type_url, ResourceType::Listener.type_url());
    assert!(!nack.response_nonce.is_empty());
    let detail = nack.error_detail.unwrap();
    assert_eq!(detail.code, 3);
    assert!(detail.message.contains("broken: listener has no address"));
    assert_eq!(rec.names(ResourceType::Listener), ["http"]);
    assert_eq!(
        client.status().acked_versions[&ResourceType::Listener],
        "v1"
    );

    // Cluster b is removed: the consumer's set shrinks, EDS unsubscribes b.
    ads.push("v3", without_cluster_b());
    until(&client, "LDS v3 accepted", |s| {
        s.acked_versions
            .get(&ResourceType::Listener)
            .map(String::as_str)
            == Some("v3")
    })
    .await;
    eventually("EDS unsubscribe b", || {
        ads.delta_requests().iter().any(|(_, r)| {
            r.type_url == ResourceType::Endpoints.type_url()
                && r.resource_names_unsubscribe == ["b"]
        })
    })
    .await;
    assert_eq!(rec.names(ResourceType::Cluster), ["a"]);

    // Reconnect: re-subscribe with the versions held, and the server sends nothing it need not.
    let calls_before = rec.calls();
    ads.kill_streams();
    until(&client, "a second stream", |s| {
        s.streams >= 2 && s.connected
    })
    .await;
    eventually("re-subscription to RDS", || {
        ads.delta_requests()
            .iter()
            .any(|(id, r)| *id == 1 && r.type_url == ResourceType::Route.type_url())
    })
    .await;
    let second: HashMap<String, DeltaDiscoveryRequest> = ads
        .delta_requests()
        .into_iter()
        .filter(|(id, _)| *id == 1)
        .map(|(_, r)| (r.type_url.clone(), r))
        .collect();
    let cds = &second[ResourceType::Cluster.type_url()];
    assert!(cds.node.is_some());
    assert_eq!(
        cds.initial_resource_versions,
        HashMap::from([("a".to_owned(), version_of(&pack(&cluster("a"))))])
    );
    let eds = &second[ResourceType::Endpoints.type_url()];
    assert_eq!(eds.resource_names_subscribe, ["a"]);
    assert_eq!(eds.initial_resource_versions.len(), 1);
    let lds = &second[ResourceType::Listener.type_url()];
    assert_eq!(lds.initial_resource_versions.len(), 1);
    let rds = &second[ResourceType::Route.type_url()];
    assert_eq!(rds.initial_resource_versions.len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rec.calls(),
        calls_before,
        "nothing changed: nothing re-sent"
    );

    assert_eq!(rec.complete(), 1);
    client.stop().await.unwrap();
}

#[tokio::test]
async fn unreachable_server_error_names_the_address_and_what_to_check() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = AdsClient::start(config(addr, Mode::Sotw), Recorder::default()).unwrap();
    until(&client, "a connect error", |s| s.last_error.is_some()).await;
    let err = client.status().last_error.unwrap();
    assert!(err.contains(&format!("http://127.0.0.1:{port}")), "{err}");
    assert!(err.contains("bosun control"), "{err}");
    assert!(!client.status().connected);
    // Stopping is prompt, even while backing off.
    tokio::time::timeout(Duration::from_secs(2), client.stop())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn invalid_endpoint_is_refused_up_front() {
    let err = AdsClient::connect("127.0.0.1:15010", node(), Mode::Delta, Recorder::default())
        .unwrap_err();
    assert!(matches!(err, XdsError::InvalidEndpoint { .. }));
    assert!(err.to_string().contains("http://127.0.0.1:15010"), "{err}");
}

#[tokio::test]
async fn initial_fetch_timeout_goes_on_without_missing_endpoints() {
    // The server never has endpoints for b: warming waits for them as long as b's `eds_config`
    // says, then goes on.
    let mut m = mesh();
    m.insert(
        ResourceType::Endpoints.type_url(),
        vec![("a".to_owned(), pack(&cla("a", 9001)))],
    );
    m.insert(
        ResourceType::Cluster.type_url(),
        vec![
            ("a".to_owned(), pack(&cluster("a"))),
            ("b".to_owned(), pack(&cluster_fetching("b", 1))),
        ],
    );
    let (_ads, addr) = TestAds::start(m).await;
    let rec = Recorder::default();
    let client = AdsClient::start(config(addr, Mode::Sotw), rec.clone()).unwrap();
    until(&client, "EDS for a", |s| {
        s.acked_versions.contains_key(&ResourceType::Endpoints)
    })
    .await;
    assert!(!client.status().initial_config_complete);
    assert!(
        rec.names(ResourceType::Listener).is_empty(),
        "no LDS while clusters warm"
    );
    assert!(client.wait_initial_config(Duration::from_secs(5)).await);
    assert_eq!(rec.names(ResourceType::Listener), ["http"]);
    assert_eq!(rec.complete(), 1);
    client.stop().await.unwrap();
}

#[tokio::test]
async fn secrets_are_subscribed_on_request() {
    use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
    let mut m = mesh();
    let secret = |name: &str| Secret {
        name: name.into(),
        ..Default::default()
    };
    m.insert(
        ResourceType::Secret.type_url(),
        vec![
            ("default".to_owned(), pack(&secret("default"))),
            ("ROOTCA".to_owned(), pack(&secret("ROOTCA"))),
        ],
    );
    for mode in [Mode::Sotw, Mode::Delta] {
        let (_ads, addr) = TestAds::start(m.clone()).await;
        let rec = Recorder::default();
        let client = AdsClient::start(config(addr, mode), rec.clone()).unwrap();
        assert!(client.wait_initial_config(Duration::from_secs(10)).await);
        client
            .subscribe(ResourceType::Secret, BTreeSet::from(["default".to_owned()]))
            .unwrap();
        until(&client, "SDS accepted", |s| {
            s.acked_versions.contains_key(&ResourceType::Secret)
        })
        .await;
        assert_eq!(rec.names(ResourceType::Secret), ["default"], "{mode:?}");
        client.stop().await.unwrap();
    }
}
