//! Real Envoy (1.40) as the ADS client, state of the world and delta: it gets a listener, a route and
//! clusters from the server, serves requests through them, follows an update, and its ACKs (and a
//! NACK) show in the server's sync status. Skipped when Envoy is not installed, unless
//! BOSUN_REQUIRE_ENVOY is set.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use testkit::{Envoy, Template, Upstream, free_port, localhost};
use xds_server::{ProxySyncStatus, RunningServer, Snapshot, SnapshotCache};

const BOOTSTRAP: &str = r#"
node:
  id: "{{NODE_ID}}"
  cluster: reviews.default
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 0 }
dynamic_resources:
  ads_config:
    api_type: {{API_TYPE}}
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
      - envoy_grpc: { cluster_name: xds }
  cds_config: { ads: {}, resource_api_version: V3 }
  lds_config: { ads: {}, resource_api_version: V3 }
static_resources:
  clusters:
    - name: xds
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options: {}
      load_assignment:
        cluster_name: xds
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: { address: 127.0.0.1, port_value: {{XDS_PORT}} }
"#;

async fn until_server(
    cache: &SnapshotCache,
    what: &str,
    pred: impl Fn(&ProxySyncStatus) -> bool,
) -> ProxySyncStatus {
    for _ in 0..1500 {
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

fn acked(s: &ProxySyncStatus, url: &str, version: &str) -> bool {
    s.types
        .get(url)
        .is_some_and(|t| t.acked_version.as_deref() == Some(version))
}

/// GETs `/` through Envoy until an upstream named `want` answers (bounded).
async fn until_routed_to(port: u16, want: &str, envoy: &Envoy) {
    let mut last = String::new();
    for _ in 0..100 {
        match testkit::http_get(localhost(port), "/", &[]).await {
            Ok(r) if r.status() == 200 && r.header("x-upstream") == Some(want) => return,
            Ok(r) => last = format!("{} {:?}", r.status(), r.header("x-upstream")),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "Envoy never routed to {want}; last: {last}\n{}",
        envoy.logs()
    );
}

fn snapshot(version: &str, listen: u16, a: &Upstream, b: &Upstream, route_to: &str) -> Snapshot {
    Snapshot::new(version)
        .with("a", &cluster("a"))
        .with("b", &cluster("b"))
        .with("a", &cla("a", a.port().into()))
        .with("b", &cla("b", b.port().into()))
        .with("http", &listener("http", listen.into(), "80"))
        .with("80", &route("80", route_to))
}

async fn envoy_over_ads(api_type: &str) {
    let test = format!("envoy_over_ads_{api_type}");
    if Envoy::find_or_skip(&test).is_none() {
        return;
    }
    let a = Upstream::start("a").unwrap();
    let b = Upstream::start("b").unwrap();
    let listen = free_port();
    let cache = SnapshotCache::new();
    let server: RunningServer = xds_server::serve("127.0.0.1:0".parse().unwrap(), cache.clone())
        .await
        .unwrap();
    cache.set_snapshot(NODE_ID, snapshot("v1", listen, &a, &b, "a"));

    let yaml = Template::new(BOOTSTRAP)
        .set("NODE_ID", NODE_ID)
        .set("API_TYPE", api_type)
        .set("XDS_PORT", server.local_addr().port())
        .render()
        .unwrap();
    // Envoy reports ready once its ADS-fed listeners and clusters are initialized.
    let envoy = tokio::task::spawn_blocking(move || Envoy::start(&yaml))
        .await
        .unwrap()
        .unwrap();

    until_routed_to(listen, "a", &envoy).await;
    let s = until_server(&cache, "Envoy's v1 ACKs", |s| {
        [CDS, EDS, LDS, RDS].iter().all(|u| acked(s, u, "v1"))
    })
    .await;
    assert_eq!(s.proxy.cluster, "reviews.default");
    assert_eq!(
        s.proxy.mode.as_str(),
        if api_type == "GRPC" { "sotw" } else { "delta" }
    );

    // An update: the route now goes to b. Only RDS changed.
    cache.set_snapshot(NODE_ID, snapshot("v2", listen, &a, &b, "b"));
    until_routed_to(listen, "b", &envoy).await;
    let s = until_server(&cache, "Envoy's v2 RDS ACK", |s| acked(s, RDS, "v2")).await;
    assert!(acked(&s, CDS, "v1") && acked(&s, LDS, "v1"), "{s:#?}");

    // A listener Envoy rejects (no address): NACKed, recorded; the last good config keeps serving.
    let mut bad = snapshot("v3", listen, &a, &b, "b");
    bad.insert_message("broken", &bad_listener("broken"));
    cache.set_snapshot(NODE_ID, bad);
    let s = until_server(&cache, "Envoy's LDS NACK", |s| {
        s.types.get(LDS).is_some_and(|t| t.nacks >= 1)
    })
    .await;
    let lds = &s.types[LDS];
    assert_eq!(lds.nacked_version.as_deref(), Some("v3"));
    assert_eq!(lds.acked_version.as_deref(), Some("v1"));
    assert!(
        lds.last_nack
            .as_deref()
            .unwrap_or_default()
            .contains("broken"),
        "{lds:#?}"
    );
    until_routed_to(listen, "b", &envoy).await;

    drop(envoy);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sotw() {
    envoy_over_ads("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_delta() {
    envoy_over_ads("DELTA_GRPC").await;
}
