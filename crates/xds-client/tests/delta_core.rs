//! The delta protocol core, without gRPC.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

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
    let mut c = warm_until_routes(rec);
    let rds = vec![res("80", "r1", any_of(&route("80")))];
    let out = c.on_response(response(ResourceType::Route, "s1", "n4", rds, &[]), rec);
    assert!(out.initial_config_complete);
    assert_eq!(c.warming(), Warming::Done);
    c
}

/// A client through CDS, EDS and LDS, subscribed to the route configuration "80".
fn warm_until_routes(rec: &mut Recorder) -> DeltaClient {
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
    assert_eq!(c.warming(), Warming::ListenerRoutes);
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
fn a_rejected_update_leaves_the_held_set_as_it_was() {
    let mut rec = Recorder::default();
    let mut c = warm(&mut rec);
    let lds = |version: &str, nonce: &str, resources: Vec<Resource>, removed: &[&str]| {
        response(ResourceType::Listener, version, nonce, resources, removed)
    };
    c.on_response(
        lds(
            "s2",
            "n11",
            vec![res("x", "l2", any_of(&listener("x", 81, "80")))],
            &[],
        ),
        &mut rec,
    );
    // Replaces one held listener, removes another and adds a broken one: all or nothing.
    let out = c.on_response(
        lds(
            "s3",
            "n12",
            vec![
                res("http", "l3", any_of(&listener("http", 82, "80"))),
                res("broken", "l3", any_of(&bad_listener("broken"))),
            ],
            &["x"],
        ),
        &mut rec,
    );
    assert!(out.requests[0].error_detail.is_some(), "{:?}", out.requests);
    let held = BTreeMap::from([("http".into(), "l1".into()), ("x".into(), "l2".into())]);
    assert_eq!(c.resource_versions(ResourceType::Listener), held);
    // The next update builds on the set held before the rejected one.
    c.on_response(
        lds(
            "s4",
            "n13",
            vec![res("y", "l4", any_of(&listener("y", 83, "80")))],
            &[],
        ),
        &mut rec,
    );
    assert_eq!(rec.names(ResourceType::Listener), ["http", "x", "y"]);
    assert_eq!(c.acked_versions()[&ResourceType::Listener], "s4");
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

// === VHDS: virtual hosts for the route configurations with `vhds` ===

fn vhds_response(nonce: &str, vhosts: &[(&str, &str)], removed: &[&str]) -> DeltaDiscoveryResponse {
    let resources = vhosts
        .iter()
        .map(|(name, domain)| res(name, "vh1", any_of(&vhost(name, domain))))
        .collect();
    response(ResourceType::VirtualHost, "s1", nonce, resources, removed)
}

/// The VHDS virtual hosts the consumer was last handed, by name.
fn vhds_held(rec: &Recorder) -> Vec<String> {
    rec.names(ResourceType::VirtualHost)
}

/// A client through RDS, holding "80" with `vhds`: the route ACK comes with one wildcard VHDS
/// subscription, and warming waits for VHDS.
fn warm_until_vhds(rec: &mut Recorder) -> DeltaClient {
    let mut c = warm_until_routes(rec);
    let rds = vec![res("80", "r1", any_of(&route_with_vhds("80")))];
    let out = c.on_response(response(ResourceType::Route, "s1", "n4", rds, &[]), rec);
    assert_ack(&out.requests[0], ResourceType::Route, "n4");
    assert_eq!(out.requests.len(), 2, "{:?}", out.requests);
    let sub = &out.requests[1];
    assert_eq!(sub.type_url, xds_api::type_url::VIRTUAL_HOST);
    assert!(
        sub.resource_names_subscribe.is_empty() && sub.resource_names_unsubscribe.is_empty(),
        "wildcard VHDS: {sub:?}"
    );
    assert!(!out.initial_config_complete);
    assert_eq!(c.warming(), Warming::ListenerRoutes);
    c
}

#[test]
fn route_config_without_vhds_subscribes_no_virtual_hosts() {
    let mut rec = Recorder::default();
    let mut c = warm(&mut rec);
    assert!(
        c.start_stream()
            .iter()
            .all(|r| r.type_url != xds_api::type_url::VIRTUAL_HOST)
    );
    // Virtual hosts nobody asked for: ignored, no answer.
    let out = c.on_response(vhds_response("n5", &[("80/a", "a.example")], &[]), &mut rec);
    assert!(out.requests.is_empty());
    assert!(
        matches!(out.event, xds_client::Event::Ignored { .. }),
        "{:?}",
        out.event
    );
}

#[test]
fn vhds_warms_until_a_virtual_host_of_its_route_config_arrives() {
    let mut rec = Recorder::default();
    let mut c = warm_until_vhds(&mut rec);
    // A virtual host of another route configuration is ACKed and held, but does not warm "80";
    // neither does a removal in its namespace.
    let out = c.on_response(
        vhds_response("n5", &[("9090/b", "b.example")], &["80/gone"]),
        &mut rec,
    );
    assert_ack(&out.requests[0], ResourceType::VirtualHost, "n5");
    assert!(!out.initial_config_complete);
    assert_eq!(vhds_held(&rec), ["9090/b"]);
    let out = c.on_response(vhds_response("n6", &[("80/a", "a.example")], &[]), &mut rec);
    assert_ack(&out.requests[0], ResourceType::VirtualHost, "n6");
    assert!(out.initial_config_complete);
    assert_eq!(c.warming(), Warming::Done);
    assert_eq!(vhds_held(&rec), ["80/a", "9090/b"]);
}

/// A rejected first VHDS response ends the wait for it (Envoy readies a VHDS subscription whose
/// update failed): the proxy starts with the table's own virtual hosts.
#[test]
fn a_rejected_first_vhds_completes_warming() {
    let mut rec = Recorder::default();
    let mut c = warm_until_vhds(&mut rec);
    let out = c.on_response(
        vhds_response("n5", &[("80/a", "a.example"), ("80/a", "a.example")], &[]),
        &mut rec,
    );
    assert!(out.requests[0].error_detail.is_some(), "{:?}", out.requests);
    assert!(out.initial_config_complete);
    assert_eq!(c.warming(), Warming::Done);
    assert!(vhds_held(&rec).is_empty());
}

#[test]
fn vhds_initial_fetch_timeout_completes_warming() {
    let mut rec = Recorder::default();
    let mut c = warm_until_vhds(&mut rec);
    let out = c.on_initial_fetch_timeout(Duration::from_secs(15), &mut rec);
    assert!(out.initial_config_complete);
    assert_eq!(rec.complete(), 1);
}

#[test]
fn one_vhds_subscription_serves_every_route_config_and_survives_reconnects() {
    let mut rec = Recorder::default();
    let mut c = warm_until_vhds(&mut rec);
    c.on_response(vhds_response("n5", &[("80/a", "a.example")], &[]), &mut rec);
    // A second table with vhds: no second subscription.
    c.subscribe(ResourceType::Route, ["80".into(), "90".into()].into());
    let rds = vec![res("90", "r1", any_of(&route_with_vhds("90")))];
    let out = c.on_response(
        response(ResourceType::Route, "s2", "n6", rds, &[]),
        &mut rec,
    );
    assert_eq!(out.requests.len(), 1, "{:?}", out.requests);
    // A new stream re-subscribes wildcard, with the versions held.
    let reqs = c.start_stream();
    let vhds = reqs
        .iter()
        .find(|r| r.type_url == xds_api::type_url::VIRTUAL_HOST)
        .expect("VHDS re-subscribed");
    assert!(vhds.resource_names_subscribe.is_empty());
    assert_eq!(
        vhds.initial_resource_versions,
        HashMap::from([("80/a".to_owned(), "vh1".to_owned())])
    );
}

#[test]
fn vhosts_are_delivered_by_namespace_and_removed_by_name() {
    let mut rec = Recorder::default();
    let mut c = warm_until_vhds(&mut rec);
    c.on_response(
        vhds_response(
            "n5",
            &[
                ("80/b", "b.example"),
                ("80/a", "a.example"),
                ("9090/a", "c.example"),
                ("8/0/x", "x"),
            ],
            &[],
        ),
        &mut rec,
    );
    let delivered = |rec: &Recorder, route_config: &str| -> Vec<String> {
        let seen = rec.0.lock().unwrap();
        let Some(xds_client::Resources::VirtualHosts(v)) = seen.accepted.last() else {
            panic!("no VHDS set: {:?}", seen.accepted.last());
        };
        xds_client::resources::vhds_for(v, route_config)
            .map(|v| v.name.clone())
            .collect()
    };
    assert_eq!(delivered(&rec, "80"), ["80/a", "80/b"]);
    assert_eq!(delivered(&rec, "8/0"), ["8/0/x"]);
    assert_eq!(delivered(&rec, "8"), Vec::<String>::new());
    let out = c.on_response(vhds_response("n6", &[], &["80/a", "unknown/z"]), &mut rec);
    assert_ack(&out.requests[0], ResourceType::VirtualHost, "n6");
    assert_eq!(delivered(&rec, "80"), ["80/b"]);
    assert_eq!(vhds_held(&rec), ["8/0/x", "80/b", "9090/a"]);
}
