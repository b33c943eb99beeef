//! The state-of-the-world protocol core, without gRPC.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use xds_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use xds_api::pb::google::protobuf::Any;
use xds_client::Session;
use xds_client::{Event, INVALID_ARGUMENT, ResourceType, SotwClient, Warming};

fn response(
    ty: ResourceType,
    version: &str,
    nonce: &str,
    resources: Vec<Any>,
) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.into(),
        resources,
        type_url: ty.type_url().into(),
        nonce: nonce.into(),
        ..Default::default()
    }
}

fn names(r: &DiscoveryRequest) -> Vec<&str> {
    r.resource_names.iter().map(String::as_str).collect()
}

fn assert_ack(r: &DiscoveryRequest, ty: ResourceType, version: &str, nonce: &str) {
    assert_eq!(r.type_url, ty.type_url());
    assert_eq!(r.version_info, version);
    assert_eq!(r.response_nonce, nonce);
    assert!(r.error_detail.is_none(), "{:?}", r.error_detail);
}

/// Drives a client through CDS → EDS → LDS → RDS; returns it warm.
fn warm(rec: &mut Recorder) -> SotwClient {
    let mut c = SotwClient::new(node());
    let first = c.start_stream();
    assert_eq!(first.len(), 1);
    c.on_response(
        response(
            ResourceType::Cluster,
            "c1",
            "n1",
            vec![any_of(&cluster("a")), any_of(&cluster("b"))],
        ),
        rec,
    );
    c.on_response(
        response(
            ResourceType::Endpoints,
            "e1",
            "n2",
            vec![any_of(&cla("a", 1)), any_of(&cla("b", 2))],
        ),
        rec,
    );
    c.on_response(
        response(
            ResourceType::Listener,
            "l1",
            "n3",
            vec![any_of(&listener("http", 8080, "80"))],
        ),
        rec,
    );
    let out = c.on_response(
        response(ResourceType::Route, "r1", "n4", vec![any_of(&route("80"))]),
        rec,
    );
    assert!(out.initial_config_complete);
    c
}

#[test]
fn first_request_is_wildcard_cds_with_the_node() {
    let mut c = SotwClient::new(node());
    let reqs = c.start_stream();
    assert_eq!(reqs.len(), 1, "only CDS until clusters are warm");
    let r = &reqs[0];
    assert_eq!(r.type_url, ResourceType::Cluster.type_url());
    assert_eq!(r.node.as_ref().unwrap().id, NODE_ID);
    assert!(r.resource_names.is_empty());
    assert!(r.version_info.is_empty() && r.response_nonce.is_empty());
    assert_eq!(c.warming(), Warming::Clusters);
}

#[test]
fn warms_in_envoy_order_and_signals_once() {
    let mut rec = Recorder::default();
    let mut c = SotwClient::new(node());
    c.start_stream();

    // CDS: ACK, then subscribe EDS for the EDS clusters; the node is not repeated.
    let out = c.on_response(
        response(
            ResourceType::Cluster,
            "c1",
            "n1",
            vec![any_of(&cluster("a")), any_of(&cluster("b"))],
        ),
        &mut rec,
    );
    assert_eq!(out.requests.len(), 2);
    assert_ack(&out.requests[0], ResourceType::Cluster, "c1", "n1");
    assert!(out.requests.iter().all(|r| r.node.is_none()));
    assert_eq!(out.requests[1].type_url, ResourceType::Endpoints.type_url());
    assert_eq!(names(&out.requests[1]), ["a", "b"]);
    assert_eq!(c.warming(), Warming::ClusterEndpoints);

    // EDS for one cluster only: still warming, no LDS yet.
    let out = c.on_response(
        response(
            ResourceType::Endpoints,
            "e1",
            "n2",
            vec![any_of(&cla("a", 1))],
        ),
        &mut rec,
    );
    assert_eq!(out.requests.len(), 1);
    assert_ack(&out.requests[0], ResourceType::Endpoints, "e1", "n2");
    assert_eq!(c.warming(), Warming::ClusterEndpoints);

    // EDS for the other: clusters are warm, LDS goes out.
    let out = c.on_response(
        response(
            ResourceType::Endpoints,
            "e2",
            "n3",
            vec![any_of(&cla("b", 2))],
        ),
        &mut rec,
    );
    assert_eq!(out.requests.len(), 2);
    assert_ack(&out.requests[0], ResourceType::Endpoints, "e2", "n3");
    assert_eq!(out.requests[1].type_url, ResourceType::Listener.type_url());
    assert!(out.requests[1].resource_names.is_empty(), "LDS is wildcard");
    // SotW EDS merges: both clusters' endpoints are held.
    assert_eq!(rec.names(ResourceType::Endpoints), ["a", "b"]);

    // LDS: ACK, then RDS for the route names.
    let out = c.on_response(
        response(
            ResourceType::Listener,
            "l1",
            "n4",
            vec![any_of(&listener("http", 8080, "80"))],
        ),
        &mut rec,
    );
    assert_ack(&out.requests[0], ResourceType::Listener, "l1", "n4");
    assert_eq!(out.requests[1].type_url, ResourceType::Route.type_url());
    assert_eq!(names(&out.requests[1]), ["80"]);
    assert!(!out.initial_config_complete);
    assert_eq!(rec.complete(), 0);

    // RDS completes the initial config, once.
    let out = c.on_response(
        response(ResourceType::Route, "r1", "n5", vec![any_of(&route("80"))]),
        &mut rec,
    );
    assert_ack(&out.requests[0], ResourceType::Route, "r1", "n5");
    assert!(out.initial_config_complete);
    assert_eq!(c.warming(), Warming::Done);
    let out = c.on_response(
        response(ResourceType::Route, "r2", "n6", vec![any_of(&route("80"))]),
        &mut rec,
    );
    assert!(!out.initial_config_complete);
    assert_eq!(rec.complete(), 1);
    assert_eq!(
        rec.order(),
        [
            ResourceType::Cluster,
            ResourceType::Endpoints,
            ResourceType::Endpoints,
            ResourceType::Listener,
            ResourceType::Route,
            ResourceType::Route
        ]
    );
}

#[test]
fn rejected_listener_is_nacked_with_name_reason_and_previous_version() {
    let mut rec = Recorder::default();
    let mut c = warm(&mut rec);
    let out = c.on_response(
        response(
            ResourceType::Listener,
            "l2",
            "n9",
            vec![
                any_of(&listener("http", 8080, "80")),
                any_of(&bad_listener("broken")),
            ],
        ),
        &mut rec,
    );
    assert_eq!(out.requests.len(), 1);
    let nack = &out.requests[0];
    assert_eq!(nack.type_url, ResourceType::Listener.type_url());
    assert_eq!(
        nack.version_info, "l1",
        "a NACK carries the last ACKed version"
    );
    assert_eq!(nack.response_nonce, "n9");
    let status = nack.error_detail.as_ref().unwrap();
    assert_eq!(status.code, INVALID_ARGUMENT);
    assert!(
        status.message.contains("broken: listener has no address"),
        "{}",
        status.message
    );
    assert!(matches!(out.event, Event::Rejected { .. }));
    // The last good set keeps serving.
    assert_eq!(rec.names(ResourceType::Listener), ["http"]);
    assert_eq!(c.acked_versions()[&ResourceType::Listener], "l1");

    // A good update afterwards is ACKed with its own version.
    let out = c.on_response(
        response(
            ResourceType::Listener,
            "l3",
            "n10",
            vec![any_of(&listener("http", 8081, "80"))],
        ),
        &mut rec,
    );
    assert_ack(&out.requests[0], ResourceType::Listener, "l3", "n10");
}

#[test]
fn undecodable_duplicate_and_unknown_resources_are_nacked_before_the_consumer() {
    let mut rec = Recorder::default();
    let mut c = warm(&mut rec);
    let calls = rec.calls();

    let garbage = Any {
        type_url: ResourceType::Cluster.type_url().into(),
        value: vec![0xff, 0xff, 0xff],
    };
    let out = c.on_response(
        response(ResourceType::Cluster, "c2", "x1", vec![garbage]),
        &mut rec,
    );
    let msg = &out.requests[0].error_detail.as_ref().unwrap().message;
    assert!(msg.contains("resources[0]: "), "{msg}");
    assert_eq!(out.requests[0].version_info, "c1");

    let wrong_type = any_of(&route("80"));
    let out = c.on_response(
        response(ResourceType::Cluster, "c2", "x2", vec![wrong_type]),
        &mut rec,
    );
    let msg = &out.requests[0].error_detail.as_ref().unwrap().message;
    assert!(
        msg.contains("expected an Any holding envoy.config.cluster.v3.Cluster"),
        "{msg}"
    );

    let out = c.on_response(
        response(
            ResourceType::Cluster,
            "c2",
            "x3",
            vec![any_of(&cluster("a")), any_of(&cluster("a"))],
        ),
        &mut rec,
    );
    let msg = &out.requests[0].error_detail.as_ref().unwrap().message;
    assert!(msg.contains("a: duplicate name"), "{msg}");

    let out = c.on_response(
        DiscoveryResponse {
            type_url: "type.googleapis.com/envoy.service.runtime.v3.Runtime".into(),
            nonce: "x4".into(),
            ..Default::default()
        },
        &mut rec,
    );
    let nack = &out.requests[0];
    assert_eq!(
        nack.type_url,
        "type.googleapis.com/envoy.service.runtime.v3.Runtime"
    );
    assert_eq!(nack.response_nonce, "x4");
    assert_eq!(nack.error_detail.as_ref().unwrap().code, INVALID_ARGUMENT);

    assert_eq!(rec.calls(), calls, "the consumer never saw these");
    assert_eq!(c.acked_versions()[&ResourceType::Cluster], "c1");
}

#[test]
fn eds_subscription_follows_cds() {
    let mut rec = Recorder::default();
    let mut c = warm(&mut rec);
    // Cluster b goes, c comes: EDS is re-requested with exactly a and c.
    let out = c.on_response(
        response(
            ResourceType::Cluster,
            "c2",
            "n20",
            vec![any_of(&cluster("a")), any_of(&cluster("c"))],
        ),
        &mut rec,
    );
    assert_eq!(out.requests.len(), 2);
    assert_eq!(out.requests[1].type_url, ResourceType::Endpoints.type_url());
    assert_eq!(names(&out.requests[1]), ["a", "c"]);
    assert_eq!(out.requests[1].version_info, "e1");
    assert_eq!(out.requests[1].response_nonce, "n2");
    assert_eq!(rec.names(ResourceType::Cluster), ["a", "c"]);

    // The next EDS set no longer holds b, and ignores names not asked for.
    c.on_response(
        response(
            ResourceType::Endpoints,
            "e2",
            "n21",
            vec![any_of(&cla("c", 3)), any_of(&cla("zzz", 4))],
        ),
        &mut rec,
    );
    assert_eq!(rec.names(ResourceType::Endpoints), ["a", "c"]);

    // Same clusters again: no EDS request.
    let out = c.on_response(
        response(
            ResourceType::Cluster,
            "c3",
            "n22",
            vec![any_of(&cluster("a")), any_of(&cluster("c"))],
        ),
        &mut rec,
    );
    assert_eq!(out.requests.len(), 1);
}

#[test]
fn reconnect_resubscribes_everything_with_versions_and_node_first() {
    let mut rec = Recorder::default();
    let mut c = warm(&mut rec);
    let reqs = c.start_stream();
    let types: Vec<&str> = reqs.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(
        types,
        [
            ResourceType::Cluster.type_url(),
            ResourceType::Endpoints.type_url(),
            ResourceType::Listener.type_url(),
            ResourceType::Route.type_url()
        ]
    );
    assert!(reqs[0].node.is_some());
    assert!(reqs[1..].iter().all(|r| r.node.is_none()));
    assert!(reqs.iter().all(|r| r.response_nonce.is_empty()));
    let versions: Vec<&str> = reqs.iter().map(|r| r.version_info.as_str()).collect();
    assert_eq!(versions, ["c1", "e1", "l1", "r1"]);
    assert_eq!(names(&reqs[1]), ["a", "b"]);
    assert_eq!(names(&reqs[3]), ["80"]);
}

#[test]
fn initial_fetch_timeout_moves_warming_on() {
    let mut rec = Recorder::default();
    let mut c = SotwClient::new(node());
    c.start_stream();
    // No CDS answer: go on to LDS once Envoy's default has passed, not before.
    assert_eq!(c.initial_fetch_deadline(), Some(Duration::from_secs(15)));
    let out = c.on_initial_fetch_timeout(Duration::from_secs(14), &mut rec);
    assert!(out.requests.is_empty());
    assert_eq!(c.warming(), Warming::Clusters);
    let out = c.on_initial_fetch_timeout(Duration::from_secs(15), &mut rec);
    assert_eq!(out.requests.len(), 1);
    assert_eq!(out.requests[0].type_url, ResourceType::Listener.type_url());
    assert_eq!(c.warming(), Warming::Listeners);
    let out = c.on_initial_fetch_timeout(Duration::from_secs(15), &mut rec);
    assert!(out.requests.is_empty());
    assert!(out.initial_config_complete);
    assert_eq!(rec.complete(), 1);
}

#[test]
fn a_zero_initial_fetch_timeout_waits_for_ever() {
    let mut rec = Recorder::default();
    let mut c = SotwClient::new(node());
    c.set_initial_fetch_timeouts(None, Some(Duration::from_secs(2)));
    c.start_stream();
    assert_eq!(c.initial_fetch_deadline(), None);
    let out = c.on_initial_fetch_timeout(Duration::from_secs(3600), &mut rec);
    assert!(out.requests.is_empty());
    assert_eq!(c.warming(), Warming::Clusters);
}

/// A client whose first CDS response holds EDS clusters waiting `(name, seconds)` for their endpoints.
fn with_clusters_fetching(clusters: &[(&str, i64)], rec: &mut Recorder) -> SotwClient {
    let mut c = SotwClient::new(node());
    c.start_stream();
    let resources = clusters
        .iter()
        .map(|(name, seconds)| any_of(&cluster_fetching(name, *seconds)))
        .collect();
    c.on_response(response(ResourceType::Cluster, "c1", "n1", resources), rec);
    c
}

/// Each EDS name is waited for as long as its cluster's `eds_config` says: the 1 s one is given up
/// at 1 s, the one that waits for ever still holds the listeners back.
#[test]
fn endpoints_are_waited_for_as_their_clusters_say() {
    let mut rec = Recorder::default();
    let mut c = with_clusters_fetching(&[("a", 0), ("b", 1), ("c", 3)], &mut rec);
    assert_eq!(c.warming(), Warming::ClusterEndpoints);
    assert_eq!(c.initial_fetch_deadline(), Some(Duration::from_secs(1)));
    let out = c.on_initial_fetch_timeout(Duration::from_secs(1), &mut rec);
    assert!(out.requests.is_empty());
    assert_eq!(c.initial_fetch_deadline(), Some(Duration::from_secs(3)));
    c.on_initial_fetch_timeout(Duration::from_secs(3), &mut rec);
    assert_eq!(c.warming(), Warming::ClusterEndpoints, "a waits for ever");
    assert_eq!(c.initial_fetch_deadline(), None);
    let out = c.on_response(
        response(
            ResourceType::Endpoints,
            "e1",
            "n2",
            vec![any_of(&cla("a", 1))],
        ),
        &mut rec,
    );
    assert_eq!(c.warming(), Warming::Listeners);
    assert_eq!(
        out.requests.last().unwrap().type_url,
        ResourceType::Listener.type_url()
    );
}

/// A first CDS response that is rejected ends the wait for clusters, as in Envoy: LDS is asked for
/// at once, with the NACK.
#[test]
fn a_rejected_first_cds_goes_on_to_listeners() {
    let mut rec = Recorder::default();
    let mut c = SotwClient::new(node());
    c.set_initial_fetch_timeouts(None, None);
    c.start_stream();
    let out = c.on_response(
        response(
            ResourceType::Cluster,
            "c1",
            "n1",
            vec![any_of(&cluster("a")), any_of(&cluster("a"))],
        ),
        &mut rec,
    );
    assert!(matches!(out.event, Event::Rejected { .. }));
    let types: Vec<&str> = out.requests.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(
        types,
        [
            ResourceType::Cluster.type_url(),
            ResourceType::Listener.type_url()
        ]
    );
    assert!(out.requests[0].error_detail.is_some());
    assert_eq!(c.warming(), Warming::Listeners);
    // A rejected first LDS: nothing left to wait for.
    let out = c.on_response(
        response(
            ResourceType::Listener,
            "l1",
            "n2",
            vec![any_of(&bad_listener("broken"))],
        ),
        &mut rec,
    );
    assert!(out.initial_config_complete);
    assert_eq!(c.warming(), Warming::Done);
}

/// A rejected EDS response ends the wait for every endpoint name, answered or not (Envoy tells
/// every watch of the type that the update failed).
#[test]
fn a_rejected_first_eds_ends_the_wait_for_endpoints() {
    let mut rec = Recorder::default();
    let mut c = with_clusters_fetching(&[("a", 0), ("b", 0)], &mut rec);
    let out = c.on_response(
        response(
            ResourceType::Endpoints,
            "e1",
            "n2",
            vec![any_of(&cla("a", 1)), any_of(&cla("a", 2))],
        ),
        &mut rec,
    );
    assert!(matches!(out.event, Event::Rejected { .. }));
    assert_eq!(c.warming(), Warming::Listeners);
}

#[test]
fn explicit_subscription_for_secrets() {
    let mut c = SotwClient::new(node());
    c.start_stream();
    let reqs = c.subscribe(ResourceType::Secret, BTreeSet::from(["default".into()]));
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].type_url, ResourceType::Secret.type_url());
    assert_eq!(names(&reqs[0]), ["default"]);
    // Unsubscribing everything sends an empty list (not a wildcard: the type had names).
    let reqs = c.subscribe(ResourceType::Secret, BTreeSet::new());
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].resource_names.is_empty());
    // Nothing changes: nothing to send.
    assert!(
        c.subscribe(ResourceType::Secret, BTreeSet::new())
            .is_empty()
    );
    // A type never named sends nothing for an empty set.
    assert!(c.subscribe(ResourceType::Route, BTreeSet::new()).is_empty());
}

/// The secrets (SDS over ADS) a cluster's TLS context names are subscribed once CDS names them, and
/// warming waits for them with the endpoints before LDS starts, as Envoy's clusters warm.
#[test]
fn secrets_named_by_clusters_are_subscribed_and_warmed_for() {
    let mut rec = Recorder::default();
    let mut c = SotwClient::new(node());
    c.start_stream();
    let tls_cluster: xds_api::pb::envoy::config::cluster::v3::Cluster =
        xds_api::bootstrap::message_from_yaml(
            r#"
name: a
type: EDS
eds_cluster_config: {eds_config: {ads: {}}, service_name: a}
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    common_tls_context:
      tls_certificate_sds_secret_configs: [{name: default, sds_config: {ads: {}}}]
      validation_context_sds_secret_config: {name: ROOTCA}
"#,
            None,
        )
        .unwrap();
    let out = c.on_response(
        response(
            ResourceType::Cluster,
            "c1",
            "n1",
            vec![any_of(&tls_cluster)],
        ),
        &mut rec,
    );
    let sds: Vec<&DiscoveryRequest> = out
        .requests
        .iter()
        .filter(|r| r.type_url == ResourceType::Secret.type_url())
        .collect();
    // Only the secret that comes over ADS; ROOTCA names a static one.
    assert_eq!(sds.len(), 1);
    assert_eq!(names(sds[0]), ["default"]);
    let out = c.on_response(
        response(
            ResourceType::Endpoints,
            "e1",
            "n2",
            vec![any_of(&cla("a", 1))],
        ),
        &mut rec,
    );
    assert_eq!(
        c.warming(),
        Warming::ClusterEndpoints,
        "the secret is missing"
    );
    assert!(
        !out.requests
            .iter()
            .any(|r| r.type_url == ResourceType::Listener.type_url()),
        "no LDS before the secret"
    );
    let secret = xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret {
        name: "default".into(),
        ..Default::default()
    };
    let out = c.on_response(
        response(ResourceType::Secret, "s1", "n3", vec![any_of(&secret)]),
        &mut rec,
    );
    assert!(
        out.requests
            .iter()
            .any(|r| r.type_url == ResourceType::Listener.type_url()),
        "LDS once the secret is there: {:?}",
        out.requests
    );
}
