//! The delta protocol state machine, without gRPC.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use xds_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use xds_api::pb::google::rpc::Status;
use xds_server::{AdsStream, DeltaStream, Event, ProtocolError, Snapshot};

fn sub(type_url: &str, subscribe: &[&str], unsubscribe: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.into(),
        resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsubscribe.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn first(type_url: &str, subscribe: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(node()),
        ..sub(type_url, subscribe, &[])
    }
}

fn ack(r: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: r.type_url.clone(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    }
}

fn nack(r: &DeltaDiscoveryResponse, msg: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        error_detail: Some(Status {
            code: 3,
            message: msg.into(),
            details: vec![],
        }),
        ..ack(r)
    }
}

fn sent(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn first_request_needs_a_node() {
    let mut s = DeltaStream::new(1);
    assert_eq!(
        s.on_request(sub(CDS, &[], &[]), None).unwrap_err(),
        ProtocolError::MissingNode
    );
}

#[test]
fn wildcard_on_empty_first_subscription_then_only_changes() {
    let snap = mesh("v1", 8080, 9001, 9002);
    let mut s = DeltaStream::new(4);
    let out = s.on_request(first(CDS, &[]), Some(&snap)).unwrap();
    assert!(s.subscription(CDS).unwrap().0);
    let r = &out.responses[0];
    assert_eq!(sent(r), ["a", "b"]);
    assert_eq!(r.system_version_info, "v1");
    assert_eq!(r.nonce, "4-1");
    assert!(r.resources.iter().all(|x| !x.version.is_empty()));
    let out = s.on_request(ack(r), Some(&snap)).unwrap();
    assert!(out.responses.is_empty());
    assert!(matches!(&out.events[0], Event::Ack { version, .. } if version == "v1"));
    assert!(s.status()[CDS].in_sync());

    // b changes, c appears, a stays: only b and c are sent.
    let v2 = Snapshot::new("v2")
        .with("a", &cluster("a"))
        .with("b", &cla_cluster("b"))
        .with("c", &cluster("c"));
    let pushed = s.on_snapshot(&v2);
    assert_eq!(pushed.len(), 1);
    assert_eq!(sent(&pushed[0]), ["b", "c"]);
    assert!(pushed[0].removed_resources.is_empty());

    // a disappears: only its removal.
    let v3 = Snapshot::new("v3")
        .with("b", &cla_cluster("b"))
        .with("c", &cluster("c"));
    let pushed = s.on_snapshot(&v3);
    assert!(pushed[0].resources.is_empty());
    assert_eq!(pushed[0].removed_resources, ["a"]);
    // Nothing changed: nothing pushed.
    let mut v4 = v3.clone();
    v4.set_version("v4");
    assert!(s.on_snapshot(&v4).is_empty());
}

/// Cluster `name` with a different connect timeout (so a different resource version).
fn cla_cluster(name: &str) -> xds_api::pb::envoy::config::cluster::v3::Cluster {
    let mut c = cluster(name);
    c.connect_timeout = Some(xds_api::pb::google::protobuf::Duration {
        seconds: 5,
        nanos: 0,
    });
    c
}

#[test]
fn initial_resource_versions_spare_what_the_client_has() {
    let snap = mesh("v1", 8080, 9001, 9002);
    let a_version = snap.get(CDS, "a").unwrap().version.clone();
    let mut s = DeltaStream::new(2);
    let mut req = first(CDS, &[]);
    req.initial_resource_versions = [
        ("a".to_owned(), a_version),
        ("b".to_owned(), "old".to_owned()),
        ("gone".to_owned(), "x".to_owned()),
    ]
    .into_iter()
    .collect();
    let out = s.on_request(req, Some(&snap)).unwrap();
    let r = &out.responses[0];
    assert_eq!(sent(r), ["b"]);
    assert_eq!(r.removed_resources, ["gone"]);
    assert_eq!(s.known(CDS).unwrap().len(), 2);
}

#[test]
fn named_subscribe_and_unsubscribe() {
    let snap = mesh("v1", 8080, 9001, 9002);
    let mut s = DeltaStream::new(1);
    let out = s
        .on_request(first(EDS, &["a", "nope"]), Some(&snap))
        .unwrap();
    let r = &out.responses[0];
    assert_eq!(sent(r), ["a"]);
    // A name that does not exist is reported removed, so the client stops waiting for it.
    assert_eq!(r.removed_resources, ["nope"]);
    assert!(!s.subscription(EDS).unwrap().0);
    s.on_request(ack(r), Some(&snap)).unwrap();

    // Subscribing b sends only b.
    let out = s.on_request(sub(EDS, &["b"], &[]), Some(&snap)).unwrap();
    assert_eq!(sent(&out.responses[0]), ["b"]);
    assert!(
        out.responses[0].removed_resources.is_empty(),
        "nope is reported once"
    );
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::SubscriptionChanged { .. }))
    );

    // Unsubscribing a: no answer needed, and a later change of a is not pushed.
    let out = s.on_request(sub(EDS, &[], &["a"]), Some(&snap)).unwrap();
    assert!(out.responses.is_empty());
    let v2 = Snapshot::new("v2")
        .with("a", &cla("a", 9999))
        .with("b", &cla("b", 9002));
    assert!(s.on_snapshot(&v2).is_empty());
    // nope appears: sent.
    let v3 = v2.clone().with("nope", &cla("nope", 9003));
    let pushed = s.on_snapshot(&v3);
    assert_eq!(sent(&pushed[0]), ["nope"]);
    // b removed from the snapshot: reported.
    let v4 = Snapshot::new("v4").with("nope", &cla("nope", 9003));
    assert_eq!(s.on_snapshot(&v4)[0].removed_resources, ["b"]);
}

#[test]
fn nack_is_recorded_and_not_resent() {
    let snap = mesh("v1", 8080, 9001, 9002);
    let mut s = DeltaStream::new(1);
    let r = s
        .on_request(first(LDS, &[]), Some(&snap))
        .unwrap()
        .responses[0]
        .clone();
    s.on_request(ack(&r), Some(&snap)).unwrap();

    let mut bad = snap.clone();
    bad.set_version("v2");
    bad.insert_message("broken", &bad_listener("broken"));
    let pushed = s.on_snapshot(&bad);
    assert_eq!(sent(&pushed[0]), ["broken"]);
    let out = s
        .on_request(
            nack(&pushed[0], "broken: listener has no address"),
            Some(&bad),
        )
        .unwrap();
    assert!(out.responses.is_empty());
    assert!(matches!(&out.events[0], Event::Nack { version, .. } if version == "v2"));
    let st = &s.status()[LDS];
    assert_eq!(st.acked_version.as_deref(), Some("v1"));
    assert_eq!(st.nacked_version.as_deref(), Some("v2"));
    assert_eq!(
        st.last_nack.as_deref(),
        Some("broken: listener has no address")
    );
    // The same bad listener in the next snapshot is not offered again.
    let mut again = bad.clone();
    again.set_version("v3");
    assert!(s.on_snapshot(&again).is_empty());
    // Removing it is.
    let pushed = s.on_snapshot(&snap);
    assert_eq!(pushed[0].removed_resources, ["broken"]);
}

#[test]
fn stale_nonce_is_not_an_ack_but_subscriptions_apply() {
    let snap = mesh("v1", 8080, 9001, 9002);
    let mut s = DeltaStream::new(1);
    let r1 = s
        .on_request(first(EDS, &["a"]), Some(&snap))
        .unwrap()
        .responses[0]
        .clone();
    let r2 = s
        .on_request(sub(EDS, &["b"], &[]), Some(&snap))
        .unwrap()
        .responses[0]
        .clone();
    // The ACK of r1 arrives after r2 was sent, together with a subscription change.
    let mut late = ack(&r1);
    late.resource_names_unsubscribe = vec!["a".into()];
    let out = s.on_request(late, Some(&snap)).unwrap();
    assert!(out.events.contains(&Event::StaleNonce {
        type_url: EDS.into(),
        nonce: r1.nonce.clone()
    }));
    assert_eq!(s.status()[EDS].acks, 0);
    assert_eq!(
        s.subscription(EDS)
            .unwrap()
            .1
            .iter()
            .map(|n| &**n)
            .collect::<Vec<&str>>(),
        ["b"]
    );
    s.on_request(ack(&r2), Some(&snap)).unwrap();
    assert_eq!(s.status()[EDS].acks, 1);
}

#[test]
fn push_order_and_first_answer_when_the_snapshot_arrives() {
    let mut s = DeltaStream::new(1);
    for (ty, names) in [
        (RDS, &["80"][..]),
        (LDS, &[][..]),
        (EDS, &["a", "b"][..]),
        (CDS, &[][..]),
    ] {
        let mut r = sub(ty, names, &[]);
        if ty == RDS {
            r.node = Some(node());
        }
        assert!(s.on_request(r, None).unwrap().responses.is_empty());
    }
    let snap = mesh("v1", 8080, 9001, 9002);
    let pushed = s.on_snapshot(&snap);
    let order: Vec<&str> = pushed.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(order, [CDS, EDS, LDS, RDS]);

    // A wildcard type with nothing in the snapshot is still answered once (an empty set).
    let mut s = DeltaStream::new(1);
    let out = s
        .on_request(first(LDS, &[]), Some(&Snapshot::new("v0")))
        .unwrap();
    assert_eq!(out.responses.len(), 1);
    assert!(out.responses[0].resources.is_empty());
    assert!(s.known(LDS).is_some_and(|k| k.is_empty()));
}

#[test]
fn explicit_wildcard_can_be_added_and_dropped() {
    let snap = mesh("v1", 8080, 9001, 9002);
    let mut s = DeltaStream::new(1);
    let r = s
        .on_request(first(EDS, &["a"]), Some(&snap))
        .unwrap()
        .responses[0]
        .clone();
    assert_eq!(sent(&r), ["a"]);
    let out = s.on_request(sub(EDS, &["*"], &[]), Some(&snap)).unwrap();
    assert!(s.subscription(EDS).unwrap().0);
    assert_eq!(sent(&out.responses[0]), ["b"]);
    s.on_request(sub(EDS, &[], &["*"]), Some(&snap)).unwrap();
    assert!(!s.subscription(EDS).unwrap().0);
    assert_eq!(
        s.known(EDS)
            .unwrap()
            .keys()
            .map(|n| &**n)
            .collect::<Vec<&str>>(),
        ["a"]
    );
}

/// As over state of the world: a push that changes a cluster sends that cluster's endpoints again,
/// and the subscribed secrets, though neither changed (Envoy watches them anew for the changed
/// cluster and waits for them); a push that changes neither clusters nor listeners does not.
#[test]
fn a_changed_cluster_gets_its_endpoints_and_secrets_again() {
    use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
    let secret = Secret {
        name: "default".into(),
        ..Default::default()
    };
    let snap = mesh("v1", 8080, 9001, 9002).with("default", &secret);
    let mut s = DeltaStream::new(5);
    for (ty, names) in [
        (CDS, &[][..]),
        (EDS, &["a", "b"][..]),
        (xds_api::type_url::SECRET, &["default"][..]),
    ] {
        let request = if ty == CDS {
            first(ty, names)
        } else {
            sub(ty, names, &[])
        };
        let out = s.on_request(request, Some(&snap)).unwrap();
        assert_eq!(out.responses.len(), 1, "{ty}");
        let r = out.responses[0].clone();
        assert!(
            s.on_request(ack(&r), Some(&snap))
                .unwrap()
                .responses
                .is_empty()
        );
    }
    let mut changed = cluster("a");
    changed.connect_timeout = Some(xds_api::pb::google::protobuf::Duration {
        seconds: 7,
        nanos: 0,
    });
    let mut next = snap.clone();
    next.set_version("v2");
    next.insert_message("a", &changed);
    let pushed = s.on_snapshot(&next);
    let got: Vec<(&str, Vec<&str>)> = pushed
        .iter()
        .map(|r| (r.type_url.as_str(), sent(r)))
        .collect();
    assert_eq!(
        got,
        [
            (CDS, vec!["a"]),
            (EDS, vec!["a"]),
            (xds_api::type_url::SECRET, vec!["default"])
        ]
    );
    // Nothing changes: nothing is sent.
    let mut same = next.clone();
    same.set_version("v3");
    assert!(s.on_snapshot(&same).is_empty());
}
