//! The ADS server over real gRPC, with Bosun's own ADS client (`xds-client`) as the proxy, in both
//! modes.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio_stream::wrappers::ReceiverStream;
use xds_api::pb::envoy::service::discovery::v3::DiscoveryRequest;
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_client::{
    AdsClient, AdsConfig, AdsStatus, Consumer, Mode, Rejection, ResourceSet, ResourceType,
    Resources,
};
use xds_server::{ProxySyncStatus, RunningServer, Snapshot, SnapshotCache, TypeStatus};

/// A consumer that validates like a proxy (a listener needs an address) and records names.
#[derive(Clone, Default)]
struct Proxy(Arc<Mutex<Applied>>);

/// Every accepted set: its type and names.
type Applied = Vec<(ResourceType, Vec<String>)>;

impl Proxy {
    fn names(&self, ty: ResourceType) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(t, _)| *t == ty)
            .map(|(_, n)| n.clone())
            .unwrap_or_default()
    }
}

impl Consumer for Proxy {
    fn apply(&mut self, set: ResourceSet<'_>) -> Result<(), Vec<Rejection>> {
        let resources = set.to_resources();
        if let Resources::Listeners(ls) = &resources {
            let bad: Vec<Rejection> = ls
                .iter()
                .filter(|l| l.address.is_none())
                .map(|l| Rejection::new(l.name.clone(), "listener has no address"))
                .collect();
            if !bad.is_empty() {
                return Err(bad);
            }
        }
        let names = resources.names().into_iter().map(str::to_owned).collect();
        self.0
            .lock()
            .unwrap()
            .push((resources.resource_type(), names));
        Ok(())
    }
}

async fn start() -> (RunningServer, SnapshotCache) {
    let cache = SnapshotCache::new();
    let server = xds_server::serve("127.0.0.1:0".parse().unwrap(), cache.clone())
        .await
        .unwrap();
    (server, cache)
}

fn client(server: &RunningServer, mode: Mode, proxy: Proxy) -> AdsClient<Proxy> {
    let mut cfg = AdsConfig::new(server.uri(), node(), mode);
    cfg.backoff_initial = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(200);
    cfg.connect_timeout = Duration::from_secs(2);
    AdsClient::start(cfg, proxy).unwrap()
}

async fn until_client<C>(client: &AdsClient<C>, what: &str, pred: impl Fn(&AdsStatus) -> bool) {
    let mut rx = client.watch_status();
    let r = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| pred(s))).await;
    assert!(
        matches!(r, Ok(Ok(_))),
        "timed out waiting for {what}; client status: {:#?}",
        client.status()
    );
}

/// Waits (bounded) until the server's sync status of the one stream of NODE_ID satisfies `pred`.
async fn until_server(
    cache: &SnapshotCache,
    what: &str,
    pred: impl Fn(&ProxySyncStatus) -> bool,
) -> ProxySyncStatus {
    for _ in 0..1000 {
        if let [s] = &cache.sync_status_of(NODE_ID)[..]
            && pred(s)
        {
            return s.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "timed out waiting for {what}; server sync status: {:#?}",
        cache.sync_status_of(NODE_ID)
    );
}

fn ty<'a>(s: &'a ProxySyncStatus, url: &str) -> &'a TypeStatus {
    s.types
        .get(url)
        .unwrap_or_else(|| panic!("no {url} in {s:#?}"))
}

fn acked(s: &ProxySyncStatus, url: &str, version: &str) -> bool {
    s.types
        .get(url)
        .is_some_and(|t| t.acked_version.as_deref() == Some(version))
}

async fn end_to_end(mode: Mode) {
    let (server, cache) = start().await;
    cache.set_snapshot(NODE_ID, mesh("v1", 18080, 9001, 9002));
    let proxy = Proxy::default();
    let client = client(&server, mode, proxy.clone());

    // The whole CDS+EDS+LDS+RDS set reaches the client.
    assert!(client.wait_initial_config(Duration::from_secs(10)).await);
    let status = client.status();
    for t in [
        ResourceType::Cluster,
        ResourceType::Endpoints,
        ResourceType::Listener,
        ResourceType::Route,
    ] {
        assert_eq!(status.acked_versions[&t], "v1", "{t}");
    }
    assert_eq!(proxy.names(ResourceType::Cluster), ["a", "b"]);
    assert_eq!(proxy.names(ResourceType::Endpoints), ["a", "b"]);
    assert_eq!(proxy.names(ResourceType::Listener), ["http"]);
    assert_eq!(proxy.names(ResourceType::Route), ["80"]);

    // The server sees the proxy, its labels, and its ACKs.
    let s = until_server(&cache, "the v1 ACKs", |s| {
        [CDS, EDS, LDS, RDS].iter().all(|u| acked(s, u, "v1"))
    })
    .await;
    assert_eq!(s.proxy.node_id, NODE_ID);
    assert_eq!(s.proxy.labels["app"], "reviews");
    assert_eq!(s.proxy.namespace.as_deref(), Some("default"));
    assert!(s.proxy.address.unwrap().ip().is_loopback());
    assert_eq!(s.snapshot_version.as_deref(), Some("v1"));
    assert!(ty(&s, CDS).in_sync());
    let proxies = cache.proxies();
    assert_eq!(proxies.len(), 1);
    assert_eq!(cache.counters().connected_proxies, 1);

    // An update is pushed and ACKed; only what changed is pushed.
    let before = cache.counters();
    let mut v2 = mesh("v2", 18081, 9001, 9002);
    v2.insert_message("c", &cluster("c"));
    v2.insert_message("c", &cla("c", 9003));
    cache.set_snapshot(NODE_ID, v2);
    until_client(&client, "v2 ACKed", |s| {
        s.acked_versions
            .get(&ResourceType::Listener)
            .map(String::as_str)
            == Some("v2")
            && s.acked_versions
                .get(&ResourceType::Endpoints)
                .map(String::as_str)
                == Some("v2")
    })
    .await;
    assert_eq!(proxy.names(ResourceType::Cluster), ["a", "b", "c"]);
    assert_eq!(proxy.names(ResourceType::Endpoints), ["a", "b", "c"]);
    let s = until_server(&cache, "the v2 ACKs", |s| {
        [CDS, EDS, LDS].iter().all(|u| acked(s, u, "v2"))
    })
    .await;
    assert_eq!(
        ty(&s, RDS).acked_version.as_deref(),
        Some("v1"),
        "the route did not change, so it was not pushed"
    );
    let after = cache.counters();
    assert!(after.pushes > before.pushes);
    assert!(after.acks > before.acks);

    // An invalid listener: the client NACKs, the server records it and keeps the last ACKed version.
    let mut bad = mesh("v3", 18081, 9001, 9002);
    bad.insert_message("c", &cluster("c"));
    bad.insert_message("c", &cla("c", 9003));
    bad.insert_message("broken", &bad_listener("broken"));
    cache.set_snapshot(NODE_ID, bad);
    until_client(&client, "the NACK", |s| s.nacks >= 1).await;
    let s = until_server(&cache, "the NACK", |s| ty(s, LDS).nacks >= 1).await;
    let lds = ty(&s, LDS);
    assert_eq!(lds.acked_version.as_deref(), Some("v2"));
    assert_eq!(lds.nacked_version.as_deref(), Some("v3"));
    let msg = lds.last_nack.as_deref().unwrap();
    assert!(msg.contains("broken: listener has no address"), "{msg}");
    assert!(!lds.in_sync());
    assert_eq!(cache.counters().nacks, 1);
    assert_eq!(
        proxy.names(ResourceType::Listener),
        ["http"],
        "last good set serves"
    );

    // Fixed: pushed, ACKed, in sync again.
    cache.set_snapshot(NODE_ID, mesh("v4", 18082, 9001, 9002));
    let s = until_server(&cache, "the v4 LDS ACK", |s| acked(s, LDS, "v4")).await;
    assert!(ty(&s, LDS).in_sync());
    assert_eq!(ty(&s, LDS).nacked_version.as_deref(), Some("v3"));
    until_client(&client, "clusters back to a, b", |s| {
        s.acked_versions
            .get(&ResourceType::Cluster)
            .map(String::as_str)
            == Some("v4")
    })
    .await;
    assert_eq!(proxy.names(ResourceType::Cluster), ["a", "b"]);

    client.stop().await.unwrap();
    for _ in 0..500 {
        if cache.proxies().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        cache.proxies().is_empty(),
        "the proxy is gone once its stream closes"
    );
    assert_eq!(cache.counters().connected_proxies, 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sotw_end_to_end() {
    end_to_end(Mode::Sotw).await;
}

#[tokio::test]
async fn delta_end_to_end() {
    end_to_end(Mode::Delta).await;
}

async fn snapshot_after_connect(mode: Mode) {
    let (server, cache) = start().await;
    let proxy = Proxy::default();
    let client = client(&server, mode, proxy.clone());
    // The proxy connects before the control plane has its config: it is known, and waits.
    let mut proxies = cache.watch_proxies();
    tokio::time::timeout(
        Duration::from_secs(10),
        proxies.wait_for(|_| !cache.proxies().is_empty()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(cache.proxies()[0].node_id, NODE_ID);
    assert!(!client.status().initial_config_complete);
    cache.set_snapshot(NODE_ID, mesh("v1", 18090, 9001, 9002));
    assert!(client.wait_initial_config(Duration::from_secs(10)).await);
    assert_eq!(proxy.names(ResourceType::Route), ["80"]);

    // Stopping the server ends the stream; the stop is bounded.
    let stopped = tokio::time::timeout(Duration::from_secs(10), server.stop()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
    until_client(&client, "the stream closed", |s| !s.connected).await;
    client.stop().await.unwrap();
}

/// A client given `unix:PATH` reaches a server on that Unix domain socket, as Istio's sidecars reach
/// their agent's, and gets its config in both modes.
#[tokio::test]
async fn clients_reach_a_server_on_a_unix_socket() {
    let dir = testkit::TempDir::new("bosun-ads-unix").unwrap();
    let path = dir.path().join("XDS");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let cache = SnapshotCache::new();
    let service = xds_server::AdsServer::new(cache.clone()).service();
    let server = tokio::spawn(
        tonic::transport::Server::builder().serve_with_incoming_shutdown(
            service,
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            std::future::pending::<()>(),
        ),
    );
    cache.set_snapshot(NODE_ID, mesh("v1", 18070, 9001, 9002));
    for mode in [Mode::Sotw, Mode::Delta] {
        let proxy = Proxy::default();
        let mut cfg = AdsConfig::new(format!("unix:{}", path.display()), node(), mode);
        cfg.connect_timeout = Duration::from_secs(2);
        let client = AdsClient::start(cfg, proxy.clone()).unwrap();
        assert!(
            client.wait_initial_config(Duration::from_secs(10)).await,
            "{mode:?}: {:#?}",
            client.status()
        );
        assert_eq!(proxy.names(ResourceType::Route), ["80"], "{mode:?}");
        client.stop().await.unwrap();
    }
    server.abort();
}

#[tokio::test]
async fn sotw_snapshot_after_connect() {
    snapshot_after_connect(Mode::Sotw).await;
}

#[tokio::test]
async fn delta_snapshot_after_connect() {
    snapshot_after_connect(Mode::Delta).await;
}

#[tokio::test]
async fn a_stream_without_node_is_refused() {
    let (server, cache) = start().await;
    cache.set_snapshot(NODE_ID, Snapshot::new("v1"));
    let mut raw = AggregatedDiscoveryServiceClient::connect(server.uri())
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut stream = raw
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let err = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("node.id"), "{}", err.message());
    assert!(cache.proxies().is_empty());
    server.stop().await.unwrap();
}
