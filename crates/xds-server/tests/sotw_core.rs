//! The state-of-the-world protocol state machine, without gRPC.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use xds_api::any::unpack;
use xds_api::pb::envoy::config::cluster::v3::Cluster;
use xds_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use xds_api::pb::google::rpc::Status;
use xds_server::{AdsStream, Event, ProtocolError, Snapshot, SotwStream};

fn req(type_url: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn first(type_url: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(node()),
        ..req(type_url, names, "", "")
    }
}

fn ack(r: &DiscoveryResponse, names: &[&str]) -> DiscoveryRequest {
    req(&r.type_url, names, &r.version_info, &r.nonce)
}

fn nack(r: &DiscoveryResponse, names: &[&str], previous: &str, msg: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        error_detail: Some(Status {
            code: 3,
            message: msg.into(),
            details: vec![],
        }),
        ..req(&r.type_url, names, previous, &r.nonce)
    }
}

fn names_of(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|a| match a.type_url.as_str() {
            CDS => unpack::<Cluster>(a).unwrap().name,
            EDS => {
                unpack::<xds_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment>(a)
                    .unwrap()
                    .cluster_name
            }
            LDS => {
                unpack::<xds_api::pb::envoy::config::listener::v3::Listener>(a)
                    .unwrap()
                    .name
            }
            RDS => {
                unpack::<xds_api::pb::envoy::config::route::v3::RouteConfiguration>(a)
                    .unwrap()
                    .name
            }
            other => panic!("{other}"),
        })
        .collect()
}

/// A stream that has subscribed to CDS, EDS a+b, LDS and RDS "80", each answered and ACKed at v1.
fn warmed() -> (SotwStream, Snapshot) {
    let snap = mesh("v1", 8080, 9001, 9002);
    let mut s = SotwStream::new(7);
    let out = s.on_request(first(CDS, &[]), Some(&snap)).unwrap();
    let cds = &out.responses[0];
    assert!(
        s.on_request(ack(cds, &[]), Some(&snap))
            .unwrap()
            .responses
            .is_empty()
    );
    for (ty, names) in [(EDS, &["a", "b"][..]), (LDS, &[][..]), (RDS, &["80"][..])] {
        let out = s.on_request(req(ty, names, "", ""), Some(&snap)).unwrap();
        assert_eq!(out.responses.len(), 1, "{ty}");
        let r = out.responses[0].clone();
        let out = s.on_request(ack(&r, names), Some(&snap)).unwrap();
        assert!(out.responses.is_empty());
    }
    (s, snap)
}

#[test]
fn first_request_needs_a_node() {
    let mut s = SotwStream::new(1);
    let err = s
        .on_request(req(CDS, &[], "", ""), Some(&Snapshot::new("v1")))
        .unwrap_err();
    assert_eq!(err, ProtocolError::MissingNode);
    assert!(err.to_string().contains("node.id"));
    // Later requests need not repeat it.
    s.on_request(first(CDS, &[]), None).unwrap();
    s.on_request(req(LDS, &[], "", ""), None).unwrap();
    assert_eq!(s.node().unwrap().id, NODE_ID);
}

#[test]
fn wildcard_cds_gets_everything_and_ack_is_recorded() {
    let snap = mesh("v1", 8080, 9001, 9002);
    let mut s = SotwStream::new(7);
    let out = s.on_request(first(CDS, &[]), Some(&snap)).unwrap();
    assert_eq!(
        out.events,
        [Event::Subscribed {
            type_url: CDS.into()
        }]
    );
    let r = &out.responses[0];
    assert_eq!(r.type_url, CDS);
    assert_eq!(r.version_info, "v1");
    assert_eq!(r.nonce, "7-1");
    assert_eq!(names_of(r), ["a", "b"]);
    let st = &s.status()[CDS];
    assert_eq!(st.sent_version.as_deref(), Some("v1"));
    assert_eq!(st.acked_version, None);
    assert!(!st.in_sync());

    let out = s.on_request(ack(r, &[]), Some(&snap)).unwrap();
    assert!(out.responses.is_empty(), "an ACK is not answered");
    assert_eq!(
        out.events,
        [Event::Ack {
            type_url: CDS.into(),
            version: "v1".into(),
            nonce: "7-1".into()
        }]
    );
    let st = &s.status()[CDS];
    assert_eq!(st.acked_version.as_deref(), Some("v1"));
    assert!(st.in_sync());
}

#[test]
fn named_types_get_only_their_names() {
    let snap = mesh("v1", 8080, 9001, 9002);
    let mut s = SotwStream::new(1);
    let out = s
        .on_request(first(EDS, &["b", "missing"]), Some(&snap))
        .unwrap();
    assert_eq!(names_of(&out.responses[0]), ["b"]);
    // An empty EDS request is no wildcard; "*" is.
    let mut s = SotwStream::new(1);
    let out = s.on_request(first(EDS, &[]), Some(&snap)).unwrap();
    assert!(out.responses[0].resources.is_empty());
    let mut s = SotwStream::new(1);
    let out = s.on_request(first(EDS, &["*"]), Some(&snap)).unwrap();
    assert_eq!(names_of(&out.responses[0]), ["a", "b"]);
}

#[test]
fn nack_is_recorded_and_the_same_content_not_resent() {
    let (mut s, _) = warmed();
    let mut bad = mesh("v2", 8080, 9001, 9002);
    bad.insert_message("broken", &bad_listener("broken"));
    let pushed = s.on_snapshot(&bad);
    assert_eq!(pushed.len(), 1, "only LDS changed");
    let lds = &pushed[0];
    assert_eq!(lds.type_url, LDS);
    assert_eq!(names_of(lds), ["broken", "http"]);

    let out = s
        .on_request(
            nack(
                lds,
                &[],
                "v1",
                "LDS update rejected: broken: listener has no address",
            ),
            Some(&bad),
        )
        .unwrap();
    assert!(
        out.responses.is_empty(),
        "a NACK is not answered with the same config"
    );
    assert!(
        matches!(&out.events[0], Event::Nack { version, message, .. }
        if version == "v2" && message.contains("broken: listener has no address"))
    );
    let st = &s.status()[LDS];
    assert_eq!(st.acked_version.as_deref(), Some("v1"));
    assert_eq!(st.nacked_version.as_deref(), Some("v2"));
    assert_eq!(st.nacks, 1);
    assert!(st.last_nack.as_deref().unwrap().contains("broken"));

    // A new snapshot with the same (bad) listeners and one more cluster: only CDS is pushed.
    let mut same = bad.clone();
    same.set_version("v3");
    same.insert_message("x", &cluster("x"));
    let pushed = s.on_snapshot(&same);
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        pushed[0].type_url, CDS,
        "only CDS changed, LDS (still bad) not resent"
    );

    // The control plane fixes it: pushed, ACKed.
    let good = mesh("v4", 8081, 9001, 9002);
    let pushed = s.on_snapshot(&good);
    let lds = pushed.iter().find(|r| r.type_url == LDS).unwrap();
    s.on_request(ack(lds, &[]), Some(&good)).unwrap();
    let st = &s.status()[LDS];
    assert_eq!(st.acked_version.as_deref(), Some("v4"));
    assert_eq!(st.nacked_version.as_deref(), Some("v2"));
}

#[test]
fn stale_nonces_are_ignored() {
    let (mut s, _) = warmed();
    let v2 = mesh("v2", 8081, 9001, 9002);
    let first_push = s.on_snapshot(&v2);
    let v3 = mesh("v3", 8082, 9001, 9002);
    let second_push = s.on_snapshot(&v3);
    let old = first_push.iter().find(|r| r.type_url == LDS).unwrap();
    let new = second_push.iter().find(|r| r.type_url == LDS).unwrap();
    assert_ne!(old.nonce, new.nonce);

    // The ACK of the older response, even with a NACK or a subscription change, is ignored.
    let out = s
        .on_request(nack(old, &["ignored"], "v1", "whatever"), Some(&v3))
        .unwrap();
    assert!(out.responses.is_empty());
    assert_eq!(
        out.events,
        [Event::StaleNonce {
            type_url: LDS.into(),
            nonce: old.nonce.clone()
        }]
    );
    assert_eq!(s.status()[LDS].nacks, 0);
    assert_eq!(s.status()[LDS].acked_version.as_deref(), Some("v1"));
    assert!(s.subscription(LDS).unwrap().0);

    s.on_request(ack(new, &[]), Some(&v3)).unwrap();
    assert_eq!(s.status()[LDS].acked_version.as_deref(), Some("v3"));
}

#[test]
fn subscription_changes_are_answered_only_when_names_change() {
    let (mut s, snap) = warmed();
    let eds = s.status()[EDS].sent_nonce.clone().unwrap();
    // Same names with the latest nonce: an ACK repeated, nothing sent.
    let out = s
        .on_request(req(EDS, &["a", "b"], "v1", &eds), Some(&snap))
        .unwrap();
    assert!(out.responses.is_empty());
    // Drop b: answered with a only.
    let out = s
        .on_request(req(EDS, &["a"], "v1", &eds), Some(&snap))
        .unwrap();
    assert_eq!(out.responses.len(), 1);
    assert_eq!(names_of(&out.responses[0]), ["a"]);
    assert!(out.events.iter().any(|e| matches!(e,
        Event::SubscriptionChanged { removed, .. } if removed.contains("b"))));
    let r = out.responses[0].clone();
    // Add b back with the new nonce.
    let out = s
        .on_request(req(EDS, &["a", "b"], "v1", &r.nonce), Some(&snap))
        .unwrap();
    assert_eq!(names_of(&out.responses[0]), ["a", "b"]);
}

#[test]
fn pushes_only_changed_types_in_make_before_break_order() {
    let (mut s, snap) = warmed();
    // Same content, new version: nothing to push.
    let mut same = Snapshot::new("v2");
    for url in snap.type_urls() {
        for (n, r) in snap.resources(url).unwrap() {
            same.insert(n.clone(), r.any());
        }
    }
    assert!(s.on_snapshot(&same).is_empty());

    // Everything changes: CDS, EDS, LDS, RDS in that order.
    let mut all = Snapshot::new("v3")
        .with("a", &cluster("a"))
        .with("c", &cluster("c"))
        .with("a", &cla("a", 9100))
        .with("b", &cla("b", 9200))
        .with("http", &listener("http", 8090, "80"))
        .with("80", &route("80", "c"));
    all.ensure_type(type_url_secret());
    let pushed = s.on_snapshot(&all);
    let order: Vec<&str> = pushed.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(order, [CDS, EDS, LDS, RDS]);
    assert!(pushed.iter().all(|r| r.version_info == "v3"));

    // Only the route changes: only RDS.
    let only_rds = Snapshot::new("v4")
        .with("a", &cluster("a"))
        .with("c", &cluster("c"))
        .with("a", &cla("a", 9100))
        .with("b", &cla("b", 9200))
        .with("http", &listener("http", 8090, "80"))
        .with("80", &route("80", "a"));
    let pushed = s.on_snapshot(&only_rds);
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].type_url, RDS);
}

#[test]
fn named_types_push_only_changed_resources_wildcard_types_everything() {
    let (mut s, snap) = warmed();
    // One endpoint assignment and one cluster change: EDS carries only "b", CDS every cluster.
    let mut next = snap.clone();
    next.set_version("v2");
    next.insert_message("b", &cla("b", 9300));
    next.insert_message("z", &cluster("z"));
    let pushed = s.on_snapshot(&next);
    let got: Vec<(&str, Vec<String>)> = pushed
        .iter()
        .map(|r| (r.type_url.as_str(), names_of(r)))
        .collect();
    let mut all_clusters = names_of_type(&snap, CDS);
    all_clusters.push("z".into());
    assert_eq!(got, [(CDS, all_clusters), (EDS, vec!["b".to_string()])]);

    // A subscribed name that appears later is sent alone; one not subscribed is not sent.
    let mut s = SotwStream::new(1);
    let out = s
        .on_request(first(EDS, &["a", "later"]), Some(&snap))
        .unwrap();
    assert_eq!(names_of(&out.responses[0]), ["a"]);
    let mut later = snap.clone();
    later.insert_message("later", &cla("later", 9400));
    later.insert_message("other", &cla("other", 9500));
    let pushed = s.on_snapshot(&later);
    assert_eq!(pushed.len(), 1);
    assert_eq!(names_of(&pushed[0]), ["later"]);
    // The same snapshot again, or one sharing its maps: nothing.
    assert!(s.on_snapshot(&later).is_empty());
    let mut shared = Snapshot::new("v9");
    for url in later.type_urls() {
        shared.set_resources(url, later.resources(url).unwrap().clone());
    }
    assert!(s.on_snapshot(&shared).is_empty());
}

fn names_of_type(snap: &Snapshot, type_url: &str) -> Vec<String> {
    snap.resources(type_url).unwrap().keys().cloned().collect()
}

fn type_url_secret() -> &'static str {
    xds_api::type_url::SECRET
}

#[test]
fn requests_before_a_snapshot_are_answered_when_it_arrives() {
    let mut s = SotwStream::new(3);
    let out = s.on_request(first(CDS, &[]), None).unwrap();
    assert!(out.responses.is_empty());
    let out = s.on_request(req(EDS, &["a"], "", ""), None).unwrap();
    assert!(out.responses.is_empty());
    // A snapshot without EDS: CDS gets its clusters, EDS an empty answer (the type is subscribed).
    let snap = Snapshot::new("v1").with("a", &cluster("a"));
    let pushed = s.on_snapshot(&snap);
    let order: Vec<&str> = pushed.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(order, [CDS, EDS]);
    assert!(pushed[1].resources.is_empty());
    // The same snapshot again: nothing.
    assert!(s.on_snapshot(&snap).is_empty());
}

#[test]
fn reconnect_request_with_version_is_answered() {
    // A client that held v1 on an earlier stream asks again with version_info and no nonce.
    let snap = mesh("v1", 8080, 9001, 9002);
    let mut s = SotwStream::new(9);
    let mut r = first(CDS, &[]);
    r.version_info = "v1".into();
    let out = s.on_request(r, Some(&snap)).unwrap();
    assert_eq!(out.responses.len(), 1);
    assert_eq!(out.responses[0].nonce, "9-1");
}

/// Envoy watches a cluster's or listener's secrets anew when that cluster or listener changes, and
/// waits for them though their names are unchanged (its request looks like an ACK): a push that
/// sends clusters or listeners sends the subscribed secrets again; one that does not, does not.
#[test]
fn secrets_go_out_again_with_changed_clusters() {
    use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
    let secret = Secret {
        name: "default".into(),
        ..Default::default()
    };
    let (mut s, snap) = warmed();
    let mut with_secret = snap.clone();
    with_secret.set_version("v2");
    with_secret.insert_message("default", &secret);
    let out = s
        .on_request(
            req(type_url_secret(), &["default"], "", ""),
            Some(&with_secret),
        )
        .unwrap();
    assert_eq!(out.responses.len(), 1);
    let r = out.responses[0].clone();
    assert!(
        s.on_request(ack(&r, &["default"]), Some(&with_secret))
            .unwrap()
            .responses
            .is_empty()
    );

    // A route changes: RDS only.
    let mut route_only = with_secret.clone();
    route_only.set_version("v3");
    route_only.insert_message("80", &route("80", "b"));
    let order: Vec<String> = s
        .on_snapshot(&route_only)
        .iter()
        .map(|r| r.type_url.clone())
        .collect();
    assert_eq!(order, [RDS]);

    // A cluster changes: CDS, then the unchanged secret again.
    let mut cluster_changed = route_only.clone();
    cluster_changed.set_version("v4");
    cluster_changed.insert_message("z", &cluster("z"));
    let pushed = s.on_snapshot(&cluster_changed);
    let order: Vec<&str> = pushed.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(order, [CDS, type_url_secret()]);
    assert_eq!(pushed[1].resources.len(), 1);
}

/// Envoy warms a changed EDS cluster by watching its endpoints anew, and waits for them though
/// they did not change: a push that changes a cluster sends that cluster's endpoint assignment
/// again (and only that one), as istiod's pushes do.
#[test]
fn a_changed_cluster_gets_its_endpoints_again() {
    let (mut s, snap) = warmed();
    let mut next = snap.clone();
    next.set_version("v2");
    let mut changed = cluster("a");
    changed.connect_timeout = Some(xds_api::pb::google::protobuf::Duration {
        seconds: 7,
        nanos: 0,
    });
    next.insert_message("a", &changed);
    let pushed = s.on_snapshot(&next);
    let got: Vec<(&str, Vec<String>)> = pushed
        .iter()
        .map(|r| (r.type_url.as_str(), names_of(r)))
        .collect();
    assert_eq!(
        got,
        [
            (CDS, names_of_type(&snap, CDS)),
            (EDS, vec!["a".to_string()])
        ]
    );
}
