//! The harness's own servers and clients, without Envoy.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use testkit::{
    Client, Error, Protocol, Req, TcpEcho, Upstream, UpstreamBehaviour, count_header, h2c_get,
    http_get, send_many,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn answers_json_over_http1() {
    let up = Upstream::start("alpha").unwrap();
    let resp = http_get(up.addr(), "/some/path?x=1&y=2", &[("x-custom", "v")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("x-upstream"), Some("alpha"));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let json = resp.json().unwrap();
    assert_eq!(json["upstream"], "alpha");
    assert_eq!(json["method"], "GET");
    assert_eq!(json["path"], "/some/path");
    assert_eq!(json["query"], "x=1&y=2");
    assert_eq!(json["version"], "HTTP/1.1");
    assert_eq!(json["headers"]["x-custom"], "v");
    assert_eq!(json["headers"]["host"], up.addr().to_string());
    assert_eq!(json["body_len"], 0);
    assert_eq!(resp.version, http::Version::HTTP_11);
}

#[tokio::test]
async fn answers_json_over_h2c_on_the_same_port() {
    let up = Upstream::start("beta").unwrap();
    let resp = h2c_get(up.addr(), "/h2", &[("x-custom", "w")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version, http::Version::HTTP_2);
    assert_eq!(resp.header("x-upstream"), Some("beta"));
    let json = resp.json().unwrap();
    assert_eq!(json["version"], "HTTP/2.0");
    assert_eq!(json["path"], "/h2");
    assert!(json["query"].is_null());
    assert_eq!(json["headers"]["x-custom"], "w");
    // Both protocols on one port.
    let h1 = http_get(up.addr(), "/h1", &[]).await.unwrap();
    assert_eq!(h1.json().unwrap()["version"], "HTTP/1.1");
}

#[tokio::test]
async fn host_header_and_body_are_seen() {
    let up = Upstream::start("gamma").unwrap();
    for client in [Client::h1(up.addr()), Client::h2c(up.addr())] {
        let resp = client
            .send(
                Req::new(http::Method::POST, "/post")
                    .header("host", "reviews.default.svc.cluster.local")
                    .body("hello"),
            )
            .await
            .unwrap();
        let json = resp.json().unwrap();
        assert_eq!(json["method"], "POST");
        assert_eq!(json["body_len"], 5);
        assert_eq!(up.last_request().unwrap().body_len, 5);
        let authority = json["authority"].as_str().unwrap();
        assert_eq!(authority, "reviews.default.svc.cluster.local");
    }
}

#[tokio::test]
async fn status_delay_and_body_headers() {
    let up = Upstream::start("ctl").unwrap();
    let resp = http_get(up.addr(), "/", &[("x-testkit-status", "503")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.json().unwrap()["upstream"], "ctl");

    let started = Instant::now();
    let resp = http_get(up.addr(), "/", &[("x-testkit-delay-ms", "200")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    let resp = h2c_get(up.addr(), "/", &[("x-testkit-body-bytes", "100000")])
        .await
        .unwrap();
    assert_eq!(resp.body.len(), 100_000);
    assert_eq!(resp.header("x-upstream"), Some("ctl"));

    let resp = http_get(up.addr(), "/", &[("x-testkit-status", "nope")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn close_header_drops_h1_and_resets_h2() {
    let up = Upstream::start("closer").unwrap();
    let err = http_get(up.addr(), "/", &[("x-testkit-close", "1")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err}");
    let err = h2c_get(up.addr(), "/", &[("x-testkit-close", "1")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err}");
    assert!(err.to_string().contains("internal error"), "{err}");
    // The server is still fine afterwards.
    assert_eq!(http_get(up.addr(), "/", &[]).await.unwrap().status(), 200);
    assert_eq!(up.requests(), 3);
}

#[tokio::test]
async fn client_timeout_is_bounded() {
    let up = Upstream::start("slow").unwrap();
    let client = Client::h1(up.addr()).with_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let err = client
        .get("/", &[("x-testkit-delay-ms", "2000")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn behaviour_fail_first_n_then_status_and_delay() {
    let up = Upstream::start_with(
        "flaky",
        UpstreamBehaviour {
            fail_first_n: 2,
            ..UpstreamBehaviour::default()
        },
    )
    .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(http_get(up.addr(), "/", &[]).await.unwrap().status());
    }
    assert_eq!(statuses, [503, 503, 200, 200]);

    up.set_behaviour(UpstreamBehaviour {
        status: 404,
        delay: Duration::from_millis(50),
        ..UpstreamBehaviour::default()
    });
    let started = Instant::now();
    let resp = http_get(up.addr(), "/", &[]).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(started.elapsed() >= Duration::from_millis(50));
    // A per-request header wins over the server's status.
    let resp = http_get(up.addr(), "/", &[("x-testkit-status", "201")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn counters_count() {
    let up = Upstream::start("count").unwrap();
    let client = Client::h1(up.addr());
    let mut conn = client.connect().await.unwrap();
    for path in ["/a", "/a", "/b?q=1"] {
        conn.send(Req::get(path)).await.unwrap();
    }
    assert_eq!(up.requests(), 3);
    assert_eq!(up.requests_with("/a"), 2);
    assert_eq!(up.requests_with("/b"), 1);
    assert_eq!(up.requests_with("/c"), 0);
    assert_eq!(up.connections(), 1, "one reused connection");
    let recent = up.recent();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[2].path, "/b");
    assert_eq!(recent[2].query.as_deref(), Some("q=1"));
    up.reset_counters();
    assert_eq!(up.requests(), 0);
    assert!(up.recent().is_empty());
}

#[tokio::test]
async fn recent_requests_are_bounded() {
    let up = Upstream::start("bounded").unwrap();
    let responses = send_many(up.addr(), 300, 8, |i| Req::get(&format!("/r{i}")))
        .await
        .unwrap();
    assert_eq!(responses.len(), 300);
    assert_eq!(up.requests(), 300);
    assert_eq!(up.recent().len(), 256);
}

#[tokio::test]
async fn send_many_keeps_order_over_h1_and_h2() {
    let a = Upstream::start("many").unwrap();
    for client in [Client::h1(a.addr()), Client::h2c(a.addr())] {
        a.reset_counters();
        let responses = client
            .send_many(200, 16, |i| Req::get(&format!("/n/{i}")))
            .await
            .unwrap();
        assert_eq!(responses.len(), 200);
        for (i, r) in responses.iter().enumerate() {
            assert_eq!(r.json().unwrap()["path"], format!("/n/{i}"));
        }
        assert_eq!(count_header(&responses, "x-upstream")["many"], 200);
        let expected = match client.protocol() {
            Protocol::Http1 => 16,
            Protocol::H2c => 1,
        };
        assert_eq!(
            a.connections(),
            expected,
            "one connection per h1 worker, one for h2c"
        );
    }
}

#[tokio::test]
async fn drop_stops_the_server() {
    let up = Upstream::start("gone").unwrap();
    let addr = up.addr();
    drop(up);
    let err = Client::h1(addr)
        .with_timeout(Duration::from_secs(2))
        .get("/", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[tokio::test]
async fn tcp_echo_echoes() {
    let echo = TcpEcho::start().unwrap();
    let mut stream = tokio::net::TcpStream::connect(echo.addr()).await.unwrap();
    stream.write_all(b"ping over tcp").await.unwrap();
    let mut buf = [0u8; 13];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping over tcp");
    assert_eq!(echo.connections(), 1);
    assert_eq!(echo.bytes_echoed(), 13);
}

#[test]
fn works_from_sync_tests_too() {
    let up = Upstream::start("sync").unwrap();
    let (status, body) = testkit::blocking_get(up.addr(), "/sync", Duration::from_secs(5)).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"path\":\"/sync\""), "{body}");
}

#[test]
fn template_errors_on_missing_placeholder() {
    let t = "port: {{LISTENER_PORT}}\nadmin: {{ADMIN_PORT}}\n";
    let err = testkit::render(t, &[("LISTENER_PORT", "1")]).unwrap_err();
    assert!(err.to_string().contains("{{ADMIN_PORT}} (line 2)"), "{err}");
    assert_eq!(
        testkit::render(t, &[("LISTENER_PORT", "1"), ("ADMIN_PORT", "2")]).unwrap(),
        "port: 1\nadmin: 2\n"
    );
}
