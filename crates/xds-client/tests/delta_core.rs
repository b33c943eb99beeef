//! The delta protocol core, without gRPC.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use xds_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use xds_api::pb::google::protobuf::Any;
use xds_client::Session;
use xds_client::{DeltaClient, INVALID_ARGUMENT, ResourceType, Warming};

fn res(name: &str, version: &str, any: Any) -> Resource {
    Resource {
        name: name.into(),
        version: version.into(),
        resource: Some(any),
        ..Default::default()
    }
}

fn response(
    ty: ResourceType,
    version: &str,
    nonce: &str,
    resources: Vec<Resource>,
    removed: &[&str],
) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        system_version_info: version.into(),
        resources,
        type_url: ty.type_url().into(),
        removed_resources: removed.iter().map(|s| s.to_string()).collect(),
        nonce: nonce.into(),
        ..Default::default()
    }
}

fn assert_ack(r: &DeltaDiscoveryRequest, ty: ResourceType, nonce: &str) {
    assert_eq!(r.type_url, ty.type_url());
    assert_eq!(r.response_nonce, nonce);
    assert!(r.error_detail.is_none(), "{:?}", r.error_detail);
    assert!(r.resource_names_subscribe.is_empty() && r.resource_names_unsubscribe.is_empty());
}

fn warm(rec: &mut Recorder) -> DeltaClient {
    let mut c = DeltaClient::new(node());
    c.start_stream();
    let cds = vec![
        res("a", "ca1", any_of(&cluster("a"))),
        res("b", "cb1", any_of(&cluster("b"))),
    ];
    let out = c.on_response(response(ResourceType::Cluster, "s1", "n1", cds, &[]), rec);
    assert_ack(&out.requests[0], ResourceType::Cluster, "n1");
    assert_eq!(out.requests[1].type_url, ResourceType::Endpoints.type_url());
    assert_eq!(out.requests[1].resource_names_subscribe, ["a", "b"]);

    let eds = vec![
        res("a", "ea1", any_of(&cla("a", 1))),
        res("b", "eb1", any_of(&cla("b", 2))),
    ];
    let out = c.on_response(response(ResourceType::Endpoints, "s1", "n2", eds, &[]), rec);
    assert_ack(&out.requests[0], ResourceType::Endpoints, "n2");
    let lds_sub = &out.requests[1];
    assert_eq!(lds_sub.type_url, ResourceType::Listener.type_url());
    assert!(
        lds_sub.resource_names_subscribe.is_empty(),
        "wildcard LDS: first request names nothing"
    );

    let lds = vec![res("http", "l1", any_of(&listener("http", 8080, "80")))];
    let out = c.on_response(response(ResourceType::Listener, "s1", "n3", lds, &[]), rec);
    assert_eq!(out.requests[1].resource_names_subscribe, ["80"]);

    let rds = vec![res("80", "r1", any_of(&route("80")))];
    let out = c.on_response(response(ResourceType::Route, "s1", "n4", rds, &[]), rec);
    assert!(out.initial_config_complete);
    assert_eq!(c.warming(), Warming::Done);
    c
}

#[test]
fn first_request_is_wildcard_cds_with_the_node() {
    let mut c = DeltaClient::new(node());
    let reqs = c.start_stream();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].type_url, ResourceType::Cluster.type_url());
    assert_eq!(reqs[0].node.as_ref().unwrap().id, NODE_ID);
    assert!(reqs[0].resource_names_subscribe.is_empty());
    assert!(reqs[0].initial_resource_versions.is_empty());
}

#[test]
fn warms_and_signals_once() {
    let mut rec = Recorder::default();
    let mut c = warm(&mut rec);
    assert_eq!(rec.complete(), 1);
    let rds = vec![res("80", "r2", any_of(&route("80")))];
    let out = c.on_response(
        response(ResourceType::Route, "s2", "n5", rds, &[]),
        &mut rec,
    );
    assert!(!out.initial_config_complete);
    assert_eq!(rec.complete(), 1);
}

#[test]
fn deltas_merge_into_the_complete_set_and_removals_unsubscribe_eds() {
    let mut rec = Recorder::default();
    let mut c = warm(&mut rec);
    // Add c, remove b: the consumer sees {a, c}; EDS subscribes c and unsubscribes b.
    let out = c.on_response(
        response(
            ResourceType::Cluster,
            "s2",
            "n10",
            vec![res("c", "cc1", any_of(&cluster("c")))],
            &["b"],
        ),
        &mut rec,
    );
    assert_ack(&out.requests[0], ResourceType::Cluster, "n10");
    assert_eq!(rec.names(ResourceType::Cluster), ["a", "c"]);
    let sub = &out.requests[1];
    assert_eq!(sub.type_url, ResourceType::Endpoints.type_url());
    assert_eq!(sub.resource_names_subscribe, ["c"]);
    assert_eq!(sub.resource_names_unsubscribe, ["b"]);
    assert_eq!(
        c.resource_versions(ResourceType::Cluster),
        BTreeMap::from([("a".into(), "ca1".into()), ("c".into(), "cc1".into())])
    );
    // b's endpoints are dropped with the subscription.
    assert_eq!(
        c.resource_versions(ResourceType::Endpoints),
        BTreeMap::from([("a".into(), "ea1".into())])
    );
}

#[test]
fn rejected_listener_is_nacked_with_nonce_and_name_reason() {
    let mut rec = Recorder::default();
    let mut c = warm(&mut rec);
    let out = c.on_response(
        response(
            ResourceType::Listener,
            "s2",
            "n11",
            vec![res("broken", "l9", any_of(&bad_listener("broken")))],
            &[],
        ),
        &mut rec,
    );
    assert_eq!(out.requests.len(), 1);
    let nack = &out.requests[0];
    assert_eq!(nack.response_nonce, "n11");
    let status = nack.error_detail.as_ref().unwrap();
    assert_eq!(status.code, INVALID_ARGUMENT);
    assert!(
        status.message.contains("broken: listener has no address"),
        "{}",
        status.message
    );
    assert_eq!(rec.names(ResourceType::Listener), ["http"]);
    assert_eq!(
        c.resource_versions(ResourceType::Listener),
        BTreeMap::from([("http".into(), "l1".into())])
    );
    assert_eq!(c.acked_versions()[&ResourceType::Listener], "s1");
}

#[test]
fn name_mismatch_and_missing_body_are_nacked() {
    let mut rec = Recorder::default();
    let mut c = warm(&mut rec);
    let calls = rec.calls();
    let out = c.on_response(
        response(
            ResourceType::Cluster,
            "s2",
            "n12",
            vec![
                res("x", "v", any_of(&cluster("y"))),
                Resource {
                    name: "z".into(),
                    ..Default::default()
                },
            ],
            &[],
        ),
        &mut rec,
    );
    let msg = &out.requests[0].error_detail.as_ref().unwrap().message;
    assert!(
        msg.contains("x: the resource inside is named \"y\""),
        "{msg}"
    );
    assert!(msg.contains("z: resource has no body"), "{msg}");
    assert_eq!(rec.calls(), calls);
}

#[test]
fn reconnect_sends_initial_resource_versions() {
    let mut rec = Recorder::default();
    let mut c = warm(&mut rec);
    let reqs = c.start_stream();
    assert_eq!(reqs.len(), 4);
    assert!(reqs[0].node.is_some() && reqs[1..].iter().all(|r| r.node.is_none()));
    let by_type: HashMap<&str, &DeltaDiscoveryRequest> =
        reqs.iter().map(|r| (r.type_url.as_str(), r)).collect();
    let cds = by_type[ResourceType::Cluster.type_url()];
    assert!(cds.resource_names_subscribe.is_empty());
    assert_eq!(
        cds.initial_resource_versions,
        HashMap::from([("a".into(), "ca1".into()), ("b".into(), "cb1".into())])
    );
    let eds = by_type[ResourceType::Endpoints.type_url()];
    assert_eq!(eds.resource_names_subscribe, ["a", "b"]);
    assert_eq!(eds.initial_resource_versions.len(), 2);
    let rds = by_type[ResourceType::Route.type_url()];
    assert_eq!(rds.resource_names_subscribe, ["80"]);
    assert_eq!(rds.initial_resource_versions["80"], "r1");
    assert!(reqs.iter().all(|r| r.response_nonce.is_empty()));
}

#[test]
fn removed_named_resource_counts_as_answered_for_warming() {
    let mut rec = Recorder::default();
    let mut c = DeltaClient::new(node());
    c.start_stream();
    c.on_response(
        response(
            ResourceType::Cluster,
            "s1",
            "n1",
            vec![res("a", "1", any_of(&cluster("a")))],
            &[],
        ),
        &mut rec,
    );
    assert_eq!(c.warming(), Warming::ClusterEndpoints);
    // The server says "a" does not exist: clusters are warm all the same.
    let out = c.on_response(
        response(ResourceType::Endpoints, "s1", "n2", vec![], &["a"]),
        &mut rec,
    );
    assert_eq!(c.warming(), Warming::Listeners);
    assert_eq!(out.requests[1].type_url, ResourceType::Listener.type_url());
}
