//! Real Envoy through the harness: the template for differential tests. Skipped (with a message) when
//! Envoy is not installed, unless BOSUN_REQUIRE_ENVOY is set.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use testkit::{Client, Envoy, Req, Template, Upstream, count_header, free_port, localhost};

fn fixture(name: &str) -> Template {
    Template::load(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

#[tokio::test]
async fn envoy_routes_to_a_static_cluster() {
    if Envoy::find_or_skip("envoy_routes_to_a_static_cluster").is_none() {
        return;
    }
    let a = Upstream::start("a").unwrap();
    let listener = free_port();
    let yaml = fixture("envoy_basic.yaml")
        .set("LISTENER_PORT", listener)
        .set("ADMIN_PORT", 0)
        .set_addr("UPSTREAM_A", a.addr())
        .render()
        .unwrap();
    let envoy = Envoy::start(&yaml).unwrap();
    let (status, body) = envoy.admin_get("/ready").unwrap();
    assert_eq!((status, body.trim()), (200, "LIVE"));

    for client in [
        Client::h1(localhost(listener)),
        Client::h2c(localhost(listener)),
    ] {
        let resp = client
            .get("/hello?x=1", &[("x-probe", "yes")])
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}\n{}", resp.text(), envoy.logs());
        assert_eq!(resp.header("x-upstream"), Some("a"));
        assert_eq!(resp.header("server"), Some("envoy"));
        let json = resp.json().unwrap();
        assert_eq!(json["upstream"], "a");
        assert_eq!(json["path"], "/hello");
        assert_eq!(json["query"], "x=1");
        assert_eq!(json["headers"]["x-probe"], "yes");
        // Envoy keeps the client's host (h2 `:authority` becomes h1 `host` upstream).
        assert_eq!(json["authority"], localhost(listener).to_string());
        // Envoy's own request headers reached the upstream.
        assert_eq!(json["headers"]["x-forwarded-proto"], "http");
        assert!(json["headers"]["x-request-id"].is_string(), "{json}");
    }
    // Behaviour headers pass through Envoy.
    let resp = Client::h1(localhost(listener))
        .get("/", &[("x-testkit-status", "503")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(a.requests(), 3);
}

#[tokio::test]
async fn envoy_weighted_clusters_split_80_20() {
    if Envoy::find_or_skip("envoy_weighted_clusters_split_80_20").is_none() {
        return;
    }
    let a = Upstream::start("a").unwrap();
    let b = Upstream::start("b").unwrap();
    let listener = free_port();
    let yaml = fixture("envoy_weighted.yaml")
        .set("LISTENER_PORT", listener)
        .set("ADMIN_PORT", 0)
        .set_addr("UPSTREAM_A", a.addr())
        .set_addr("UPSTREAM_B", b.addr())
        .render()
        .unwrap();
    let _envoy = Envoy::start(&yaml).unwrap();

    const N: usize = 1000;
    let responses = Client::h1(localhost(listener))
        .send_many(N, 8, |i| Req::get(&format!("/w/{i}")))
        .await
        .unwrap();
    assert!(responses.iter().all(|r| r.status() == 200));
    let counts = count_header(&responses, "x-upstream");
    let share_a = counts.get("a").copied().unwrap_or(0) as f64 / N as f64;
    let share_b = counts.get("b").copied().unwrap_or(0) as f64 / N as f64;
    assert!((share_a - 0.80).abs() <= 0.05, "{counts:?}");
    assert!((share_b - 0.20).abs() <= 0.05, "{counts:?}");
    assert_eq!(a.requests() + b.requests(), N as u64);
}

#[test]
fn envoy_failure_is_reported_with_its_stderr() {
    if Envoy::find_or_skip("envoy_failure_is_reported_with_its_stderr").is_none() {
        return;
    }
    let bad = "admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 0 }\nstatic_resources:\n  clusters:\n  - name: x\n    type: NOPE\n";
    let err = Envoy::validate(bad).unwrap_err();
    assert!(err.contains("NOPE"), "{err}");
    let err = Envoy::start(bad).unwrap_err();
    assert!(matches!(err, testkit::Error::Exited { .. }), "{err}");
    assert!(err.to_string().contains("NOPE"), "{err}");

    let good = "admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 0 }\n";
    Envoy::validate(good).unwrap();
}

#[test]
fn several_envoys_run_at_once_and_stop_on_drop() {
    if Envoy::find_or_skip("several_envoys_run_at_once_and_stop_on_drop").is_none() {
        return;
    }
    let yaml = "admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 0 }\n";
    let mut one = Envoy::start(yaml).unwrap();
    let two = Envoy::start(yaml).unwrap();
    assert_ne!(one.admin_addr(), two.admin_addr());
    let admin = two.admin_addr();
    drop(two);
    assert!(testkit::wait_ready(admin, Duration::from_millis(200)).is_err());
    let status = one
        .process()
        .terminate_and_wait(Duration::from_secs(5))
        .unwrap();
    assert!(status.success() || status.code().is_none(), "{status}");
}
