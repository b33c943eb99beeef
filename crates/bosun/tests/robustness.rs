//! Bad input never crashes the proxy: mutated bootstraps are refused with an error (never a panic), and
//! garbage from a client gets a 4xx or a closed connection while the proxy keeps serving others.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../xds-api/tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// Parsing and building a config from any text: a result, never a panic.
fn load(source: &str) {
    if let Ok(bootstrap) = xds_api::bootstrap::from_yaml(source, None) {
        let _ = proxy_model::Snapshot::from_bootstrap(&bootstrap);
    }
}

#[test]
fn mutated_bootstraps_never_panic() {
    let seeds = [
        fixture("static_http.yaml"),
        fixture("tcp_proxy.yaml"),
        fixture("ads.json"),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 600,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0..seeds.len(),
        any::<prop::sample::Index>(),
        0usize..60,
        "[a-z0-9:_\\-\\[\\]{}\"\\n .@/*]{0,10}",
    );
    runner
        .run(&strategy, |(seed, at, cut, insert)| {
            let s = &seeds[seed];
            let mut i = at.index(s.len().max(1));
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            let mut end = (i + cut).min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let mutated = format!("{}{insert}{}", &s[..i], &s[end..]);
            load(&mutated);
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_seed_fixtures_build() {
    for name in ["static_http.yaml", "tcp_proxy.yaml"] {
        let b = xds_api::bootstrap::from_yaml(&fixture(name), None).unwrap();
        // TLS and the like may be refused (by field path); the point is that building returns.
        let _ = proxy_model::Snapshot::from_bootstrap(&b);
    }
}

fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `bosun proxy` running the README's example bootstrap (`/healthz` answered by the proxy, the rest
/// to a backend that is not there), and where it listens.
fn example_proxy() -> (testkit::Process, testkit::TempDir, std::net::SocketAddr) {
    let listener = testkit::free_port();
    let admin = testkit::free_port();
    let yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/proxy/bootstrap.yaml"),
    )
    .unwrap()
    .replace("port_value: 10000", &format!("port_value: {listener}"))
    .replace("port_value: 9901", &format!("port_value: {admin}"));
    let dir = testkit::TempDir::new("bosun-robustness").unwrap();
    let config = dir.write("bootstrap.yaml", yaml.as_bytes()).unwrap();
    let mut proxy = testkit::Process::spawn(
        env!("CARGO_BIN_EXE_bosun"),
        [
            "proxy",
            "-c",
            config.to_str().unwrap(),
            "--concurrency",
            "1",
            "--log-level",
            "error",
        ],
        &[],
    )
    .unwrap();
    proxy
        .wait_ready(testkit::localhost(admin), Duration::from_secs(10))
        .unwrap();
    (proxy, dir, testkit::localhost(listener))
}

/// The proxy still answers, and still runs.
fn still_serving(proxy: &mut testkit::Process, addr: std::net::SocketAddr) {
    let (status, body) = testkit::blocking_get(addr, "/healthz", Duration::from_secs(5)).unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    proxy.check_running().unwrap();
}

#[test]
fn garbage_from_clients_gets_an_error_and_the_proxy_keeps_serving() {
    let (mut proxy, _dir, addr) = example_proxy();

    let answers = [
        raw(
            addr,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello",
        ),
        raw(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        ),
        raw(addr, b"GET /\x00\x01 HTTP/1.1\r\n\r\n"),
        raw(addr, b"NOT-HTTP AT ALL\r\n\r\n"),
        raw(addr, &[0xff; 4096]),
        raw(
            addr,
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(200_000)
            )
            .as_bytes(),
        ),
    ];
    for (i, a) in answers.iter().enumerate() {
        // Either a 4xx or a closed connection; never a 2xx or 5xx for garbage.
        assert!(
            a.is_empty() || a.starts_with("HTTP/1.1 4"),
            "unexpected answer to garbage #{i}: {a:?}"
        );
    }
    // A client that connects and never sends does not hold the proxy up.
    let _idle = TcpStream::connect(addr).unwrap();
    still_serving(&mut proxy, addr);
}

/// Sends `bytes` and reads what comes back until the proxy closes or is quiet for a moment (it may
/// rightly wait for the rest of a request that was cut short).
fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The HTTP entry point fuzzed: valid HTTP/1.1 requests (heads, chunked and sized bodies, pipelined
/// requests, upgrades) and an HTTP/2 connection preface with frames, cut, spliced with random bytes
/// and given random tails. Every answer is nothing or well-formed HTTP (a status line, or for
/// HTTP/2 a frame header), and the proxy serves on and never dies.
#[test]
fn mutated_http_never_breaks_the_proxy() {
    let (mut proxy, _dir, addr) = example_proxy();
    let h2_preface_and_settings: Vec<u8> = [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        // SETTINGS, empty.
        &[0, 0, 0, 4, 0, 0, 0, 0, 0],
        // HEADERS on stream 1, END_STREAM | END_HEADERS: :method GET, :path /, :scheme http
        // (static table), :authority x (literal, indexed name 1).
        &[
            0, 0, 6, 1, 5, 0, 0, 0, 1, 0x82, 0x84, 0x86, 0x41, 0x01, b'x',
        ],
        // PING.
        &[0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
    ]
    .concat();
    let seeds: Vec<Vec<u8>> = vec![
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            .to_vec(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: y\r\n\r\n"
            .to_vec(),
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            .to_vec(),
        b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n".to_vec(),
        b"GET http://x/healthz HTTP/1.0\r\n\r\n".to_vec(),
        h2_preface_and_settings,
    ];
    let well_formed = |answer: &[u8]| {
        // An HTTP/2 answer starts with the server's SETTINGS frame (type 4 at byte 3).
        answer.starts_with(b"HTTP/1.") || (answer.len() >= 9 && answer[3] == 4)
    };
    for seed in &seeds {
        let answer = exchange(addr, seed);
        assert!(
            well_formed(&answer),
            "{:?} got {:?}",
            String::from_utf8_lossy(seed),
            String::from_utf8_lossy(&answer)
        );
    }
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0..seeds.len(),
        any::<prop::sample::Index>(),
        0usize..24,
        prop::collection::vec(any::<u8>(), 0..24),
        prop::collection::vec(any::<u8>(), 0..64),
    );
    runner
        .run(&strategy, |(seed, at, cut, insert, tail)| {
            let s = &seeds[seed];
            let i = at.index(s.len());
            let end = (i + cut).min(s.len());
            let mutated = [&s[..i], &insert[..], &s[end..], &tail[..]].concat();
            let answer = exchange(addr, &mutated);
            prop_assert!(
                answer.is_empty() || well_formed(&answer),
                "{:?} got {:?}",
                String::from_utf8_lossy(&mutated),
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            );
            Ok(())
        })
        .unwrap();
    still_serving(&mut proxy, addr);
}
