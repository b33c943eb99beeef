//! `bosun demo-app`, the built-in test workload, run as a process on loopback: its JSON echo and headers,
//! the special paths, injected failures, `--call` fan-out directly, through an HTTP proxy (an in-test one
//! that records what it receives, and `bosun proxy` as the sidecar) and around it (`NO_PROXY`), failure
//! propagation, flags from the environment, bad flags and SIGTERM.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{Client, Process, Req, TempDir, free_port, http_get, localhost, send_many};

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Variables the test runner may have set that would change what the app does.
const SCRUBBED_ENV: [&str; 14] = [
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "BOSUN_LISTEN",
    "BOSUN_SERVICE",
    "BOSUN_VERSION",
    "BOSUN_INSTANCE",
    "BOSUN_CALLS",
    "BOSUN_FAIL_RATE",
    "BOSUN_FAIL_STATUS",
    "BOSUN_LATENCY_MS",
    "BOSUN_CALL_TIMEOUT_MS",
    "ALL_PROXY",
];

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bosun"));
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.args(args).envs(env.iter().copied());
    cmd
}

/// `bosun demo-app --listen 127.0.0.1:PORT --service NAME ARGS…`, waited on until it accepts connections.
fn demo_app(service: &str, args: &[&str], env: &[(&str, &str)]) -> (Process, SocketAddr) {
    let addr = localhost(free_port());
    let listen = addr.to_string();
    let mut all = vec!["demo-app", "--listen", &listen, "--service", service];
    all.extend_from_slice(args);
    let name = format!("demo-app-{service}");
    let mut p =
        Process::spawn_command(&name, command(&all, env), TempDir::new(&name).unwrap()).unwrap();
    p.wait_for_port(addr, START_TIMEOUT).unwrap();
    (p, addr)
}

async fn get_json(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let resp = http_get(addr, path, headers).await.unwrap();
    let json = resp
        .json()
        .unwrap_or_else(|e| panic!("GET {path}: {e}: {}", resp.text()));
    (resp.status(), json)
}

/// Waits (bounded) until the process's stdout contains `needle`.
/// The output once `needle` is in it `times` times (the app's log lines come when it writes them,
/// after the answers), or after 5 s.
fn wait_stdout_count(p: &Process, needle: &str, times: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = p.stdout();
        if out.matches(needle).count() >= times || Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn answers_a_json_echo_with_its_identity_over_h1_and_h2c() {
    let (app, addr) = demo_app(
        "reviews",
        &["--version", "v2", "--instance", "reviews-v2-abc"],
        &[],
    );
    for client in [Client::h1(addr), Client::h2c(addr)] {
        let resp = client
            .send(
                Req::get("/reviews/0?u=normal")
                    .headers(&[("X-Custom", "yes"), ("end-user", "jason")]),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text());
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.header("x-demo-service"), Some("reviews"));
        assert_eq!(resp.header("x-demo-version"), Some("v2"));
        assert_eq!(resp.header("x-demo-instance"), Some("reviews-v2-abc"));
        let body = resp.json().unwrap();
        assert_eq!(body["service"], "reviews");
        assert_eq!(body["version"], "v2");
        assert_eq!(body["instance"], "reviews-v2-abc");
        assert_eq!(body["method"], "GET");
        assert_eq!(body["path"], "/reviews/0");
        assert_eq!(body["query"], "u=normal");
        assert_eq!(body["host"], addr.to_string(), "{:?}", client.protocol());
        assert_eq!(body["headers"]["x-custom"], "yes");
        assert_eq!(body["headers"]["end-user"], "jason");
        assert_eq!(body["calls"], Value::Array(Vec::new()));
        assert!(body.get("error").is_none(), "{body}");
    }
    let out = wait_stdout_count(&app, "GET /reviews/0?u=normal 200 ", 2);
    assert_eq!(
        out.matches("GET /reviews/0?u=normal 200 ").count(),
        2,
        "one log line per request: {out}"
    );
    assert!(out.lines().all(|l| l.ends_with("ms")), "{out}");
}

#[tokio::test]
async fn special_paths_healthz_status_and_delay() {
    let (_app, addr) = demo_app("httpbin", &[], &[]);

    let resp = http_get(addr, "/healthz", &[]).await.unwrap();
    assert_eq!((resp.status(), resp.text().as_str()), (200, "ok"));

    for code in [200u16, 302, 404, 418, 503, 599] {
        let (status, body) = get_json(addr, &format!("/status/{code}"), &[]).await;
        assert_eq!(status, code);
        assert_eq!(body["path"], format!("/status/{code}"));
    }
    let resp = http_get(addr, "/status/204", &[]).await.unwrap();
    assert_eq!(resp.status(), 204);
    for bad in [
        "/status/600",
        "/status/99",
        "/status/abc",
        "/status/101",
        "/delay/30001",
        "/delay/x",
    ] {
        let (status, body) = get_json(addr, bad, &[]).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].as_str().unwrap().starts_with(bad), "{body}");
    }

    let start = Instant::now();
    let (status, body) = get_json(addr, "/delay/200", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["path"], "/delay/200");
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn latency_is_added_to_answers_but_not_to_health_checks() {
    let (_app, addr) = demo_app("slow", &["--latency-ms", "1500"], &[]);
    let start = Instant::now();
    assert_eq!(http_get(addr, "/x", &[]).await.unwrap().status(), 200);
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    assert_eq!(http_get(addr, "/healthz", &[]).await.unwrap().status(), 200);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn fail_rate_fails_that_fraction_of_requests() {
    let (_app, addr) = demo_app(
        "flaky",
        &["--fail-rate", "0.5", "--fail-status", "503"],
        &[],
    );
    let responses = send_many(addr, 400, 8, |i| Req::get(&format!("/r/{i}")))
        .await
        .unwrap();
    let failed = responses.iter().filter(|r| r.status() == 503).count();
    let ok = responses.iter().filter(|r| r.status() == 200).count();
    assert_eq!(failed + ok, 400);
    // Binomial(400, 0.5): 35%–65% is six standard deviations either side.
    assert!((140..=260).contains(&failed), "{failed} of 400 failed");
    let failure = responses.iter().find(|r| r.status() == 503).unwrap();
    assert_eq!(failure.header("x-demo-service"), Some("flaky"));
    assert_eq!(
        failure.json().unwrap()["error"],
        "injected failure (--fail-rate)"
    );
    // Health checks are never failed on purpose.
    for _ in 0..20 {
        assert_eq!(http_get(addr, "/healthz", &[]).await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn calls_fan_out_in_order_and_forward_trace_headers() {
    let (_b, b) = demo_app("details", &["--version", "v1"], &[]);
    let (_c, c) = demo_app("reviews", &["--version", "v3"], &[]);
    let calls = format!(
        "127.0.0.1:{}/details/0,localhost:{}/reviews/0?u=1",
        b.port(),
        c.port()
    );
    let (_a, a) = demo_app("productpage", &[], &[("BOSUN_CALLS", &calls)]);

    let headers = [
        ("x-request-id", "req-42"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("end-user", "jason"),
        ("cookie", "session=1"),
        ("x-not-forwarded", "no"),
    ];
    let (status, body) = get_json(a, "/productpage", &headers).await;
    assert_eq!(status, 200, "{body}");
    let calls = body["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{body}");
    assert_eq!(
        calls[0]["target"],
        format!("127.0.0.1:{}/details/0", b.port())
    );
    assert_eq!(
        calls[0]["url"],
        format!("http://127.0.0.1:{}/details/0", b.port())
    );
    assert_eq!(calls[0]["status"], 200);
    assert_eq!(calls[0]["body"]["service"], "details");
    assert_eq!(calls[0]["body"]["path"], "/details/0");
    assert_eq!(
        calls[1]["url"],
        format!("http://localhost:{}/reviews/0?u=1", c.port())
    );
    assert_eq!(calls[1]["body"]["version"], "v3");
    assert_eq!(calls[1]["body"]["query"], "u=1");
    assert_eq!(calls[1]["body"]["host"], format!("localhost:{}", c.port()));
    for call in calls {
        assert!(call.get("error").is_none(), "{call}");
        let seen = &call["body"]["headers"];
        for (name, value) in &headers[..5] {
            assert_eq!(seen[name], *value, "{name} forwarded: {seen}");
        }
        assert!(seen.get("x-not-forwarded").is_none(), "{seen}");
    }

    // Special paths do not make the --call calls.
    let (status, body) = get_json(a, "/status/201", &[]).await;
    assert_eq!((status, body["calls"].as_array().unwrap().len()), (201, 0));

    // /call/SERVICE:PORT/PATH makes one call, ad hoc, with the query string.
    let (status, body) = get_json(
        a,
        &format!("/call/127.0.0.1:{}/details/9?x=y", b.port()),
        &[("end-user", "jason")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let calls = body["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["body"]["path"], "/details/9");
    assert_eq!(calls[0]["body"]["query"], "x=y");
    assert_eq!(calls[0]["body"]["headers"]["end-user"], "jason");
}

#[tokio::test]
async fn a_failing_callee_fails_the_caller_with_its_status() {
    let (_b, b) = demo_app(
        "ratings",
        &["--fail-rate", "1", "--fail-status", "503"],
        &[],
    );
    let (_ok, ok) = demo_app("details", &[], &[]);
    let (_slow, slow) = demo_app("slow", &["--latency-ms", "10000"], &[]);
    let closed = free_port();
    let calls = [
        format!("127.0.0.1:{}/details/0", ok.port()),
        format!("127.0.0.1:{}/ratings/0", b.port()),
        format!("127.0.0.1:{closed}/nothing"),
    ];
    let (_a, a) = demo_app(
        "reviews",
        &[
            "--call", &calls[0], "--call", &calls[1], "--call", &calls[2],
        ],
        &[],
    );
    let (status, body) = get_json(a, "/reviews/0", &[]).await;
    assert_eq!(status, 503, "the first failed call's status: {body}");
    let got = body["calls"].as_array().unwrap();
    assert_eq!(got.len(), 3, "every call is made: {body}");
    assert_eq!(got[0]["status"], 200);
    assert!(got[0].get("error").is_none());
    assert_eq!(got[1]["status"], 503);
    assert_eq!(got[1]["body"]["error"], "injected failure (--fail-rate)");
    assert!(
        got[1]["error"].as_str().unwrap().contains("503"),
        "{}",
        got[1]
    );
    assert_eq!(got[2]["status"], Value::Null);
    assert_eq!(got[2]["body"], Value::Null);
    assert!(
        got[2]["error"].as_str().unwrap().contains("refused"),
        "{}",
        got[2]
    );

    // A transport failure first: 502.
    let (status, body) = get_json(a, &format!("/call/127.0.0.1:{closed}/x"), &[]).await;
    assert_eq!(status, 502, "{body}");

    // A callee slower than --call-timeout-ms: 502, long before the callee (10 s) would have answered.
    let (_a2, a2) = demo_app(
        "timeouts",
        &[
            "--call-timeout-ms",
            "300",
            "--call",
            &format!("127.0.0.1:{}/x", slow.port()),
        ],
        &[],
    );
    let start = Instant::now();
    let (status, body) = get_json(a2, "/", &[]).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["calls"][0]["error"]
            .as_str()
            .unwrap()
            .contains("within 300 ms"),
        "{body}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(5000),
        "{:?}",
        start.elapsed()
    );

    // Failures propagate up a chain: top → reviews → ratings (503).
    let (_top, top) = demo_app(
        "productpage",
        &["--call", &format!("127.0.0.1:{}/reviews/0", a.port())],
        &[],
    );
    let (status, body) = get_json(top, "/productpage", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["calls"][0]["body"]["calls"][1]["status"], 503);
}

/// An HTTP proxy that records the request head it receives, then forwards the request to `upstream` and
/// the answer back (one request per connection). Stops on drop.
struct RecordingProxy {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl RecordingProxy {
    fn start(upstream: SocketAddr) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (Arc::clone(&heads), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = Self::forward(conn, upstream, &h);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RecordingProxy { addr, heads, stop }
    }

    fn forward(
        mut client: TcpStream,
        upstream: SocketAddr,
        heads: &Mutex<Vec<String>>,
    ) -> std::io::Result<()> {
        let timeout = Some(Duration::from_secs(5));
        client.set_nonblocking(false)?;
        client.set_read_timeout(timeout)?;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.ends_with(b"\r\n\r\n") {
            let n = client.read(&mut buf[..1])?; // byte by byte: GETs have no body to over-read
            if n == 0 || head.len() > 64 << 10 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        heads.lock().unwrap().push(text.clone());
        let mut up = TcpStream::connect_timeout(&upstream, Duration::from_secs(2))?;
        up.set_read_timeout(timeout)?;
        // Ask for close so the answer ends at EOF.
        let head = format!(
            "{}\r\nconnection: close\r\n\r\n",
            text.trim_end_matches("\r\n")
        );
        up.write_all(head.as_bytes())?;
        let mut answer = Vec::new();
        up.take(4 << 20).read_to_end(&mut answer)?;
        client.write_all(&answer)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn calls_go_through_http_proxy_in_absolute_form() {
    let (_b, b) = demo_app("b-service", &[], &[]);
    let proxy = RecordingProxy::start(b);
    let target = format!("b-service:{}/hello?x=1", b.port());
    let proxy_url = format!("http://{}", proxy.addr);
    // b-service does not resolve: only the proxy can deliver it.
    let (_a, a) = demo_app(
        "a-service",
        &["--call", &target],
        &[("HTTP_PROXY", &proxy_url)],
    );

    let (status, body) =
        get_json(a, "/", &[("x-request-id", "rid-7"), ("end-user", "jason")]).await;
    assert_eq!(status, 200, "{body}");
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = heads[0].to_ascii_lowercase();
    assert!(
        heads[0].starts_with(&format!(
            "GET http://b-service:{}/hello?x=1 HTTP/1.1\r\n",
            b.port()
        )),
        "absolute-form request line: {heads:?}"
    );
    assert!(
        head.contains(&format!("\r\nhost: b-service:{}\r\n", b.port())),
        "{heads:?}"
    );
    assert!(head.contains("\r\nx-request-id: rid-7\r\n"), "{heads:?}");
    let seen = &body["calls"][0]["body"];
    assert_eq!(seen["service"], "b-service");
    assert_eq!(seen["path"], "/hello");
    assert_eq!(seen["headers"]["x-request-id"], "rid-7");
    assert_eq!(seen["headers"]["end-user"], "jason");

    // lowercase http_proxy works too.
    let (_a2, a2) = demo_app("a2", &["--call", &target], &[("http_proxy", &proxy_url)]);
    assert_eq!(get_json(a2, "/", &[]).await.0, 200);
    assert_eq!(proxy.heads().len(), 2);
}

#[tokio::test]
async fn no_proxy_hosts_are_called_directly() {
    let (_b, b) = demo_app("b-service", &[], &[]);
    let proxy = RecordingProxy::start(b);
    let proxy_url = format!("http://{}", proxy.addr);
    let direct = format!("127.0.0.1:{}/direct", b.port());
    let proxied = format!("b-service:{}/proxied", b.port());
    let (_a, a) = demo_app(
        "a-service",
        &["--call", &direct, "--call", &proxied],
        &[
            ("HTTP_PROXY", &proxy_url),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    let (status, body) = get_json(a, "/", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["calls"][0]["body"]["path"], "/direct");
    assert_eq!(body["calls"][1]["body"]["path"], "/proxied");
    let heads = proxy.heads();
    assert_eq!(
        heads.len(),
        1,
        "only b-service went through the proxy: {heads:?}"
    );
    assert!(
        heads[0].starts_with(&format!("GET http://b-service:{}/proxied ", b.port())),
        "{heads:?}"
    );

    // `*` bypasses the proxy for everything: b-service then does not resolve.
    let (_a2, a2) = demo_app(
        "a2",
        &["--call", &proxied, "--call-timeout-ms", "2000"],
        &[("HTTP_PROXY", &proxy_url), ("no_proxy", "*")],
    );
    let (status, body) = get_json(a2, "/", &[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(proxy.heads().len(), 1);
}

const SIDECAR_BOOTSTRAP: &str = r#"
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{ADMIN_PORT}} } }
static_resources:
  listeners:
  - name: outbound
    address: { socket_address: { address: 127.0.0.1, port_value: {{LISTENER_PORT}} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: outbound
          route_config:
            name: "9080"
            virtual_hosts:
            - name: b-service
              domains: ["b-service:{{B_PORT}}"]
              routes:
              - match: { prefix: / }
                route: { cluster: b }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: b
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: b
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{B_PORT}} } } }
"#;

#[tokio::test]
async fn calls_through_a_bosun_proxy_sidecar_keep_the_trace_headers() {
    let (_b, b) = demo_app("b-service", &["--version", "v2"], &[]);
    let (listener, admin) = (free_port(), free_port());
    let yaml = testkit::render(
        SIDECAR_BOOTSTRAP,
        &[
            ("ADMIN_PORT", &admin.to_string()),
            ("LISTENER_PORT", &listener.to_string()),
            ("B_PORT", &b.port().to_string()),
        ],
    )
    .unwrap();
    let dir = TempDir::new("demo-sidecar").unwrap();
    let config = dir.write("bootstrap.yaml", yaml.as_bytes()).unwrap();
    let mut cmd = command(
        &[
            "proxy",
            "-c",
            config.to_str().unwrap(),
            "--concurrency",
            "1",
        ],
        &[],
    );
    cmd.current_dir(dir.path());
    let mut sidecar =
        Process::spawn_command("bosun-proxy", cmd, TempDir::new("bosun-proxy").unwrap()).unwrap();
    sidecar.wait_ready(localhost(admin), START_TIMEOUT).unwrap();

    let proxy_url = format!("http://127.0.0.1:{listener}");
    let (_a, a) = demo_app("a-service", &[], &[("HTTP_PROXY", &proxy_url)]);
    let path = format!("/call/b-service:{}/ratings/0?u=jason", b.port());
    let headers = [
        ("x-request-id", "5c7d3a1e-trace"),
        ("end-user", "jason"),
        ("x-b3-traceid", "463ac35c9f6413ad"),
    ];
    let (status, body) = get_json(a, &path, &headers).await;
    assert_eq!(status, 200, "{body}\n{}", sidecar.stderr_tail());
    let call = &body["calls"][0];
    assert_eq!(
        call["url"],
        format!("http://b-service:{}/ratings/0?u=jason", b.port())
    );
    let seen = &call["body"];
    assert_eq!(seen["service"], "b-service");
    assert_eq!(seen["version"], "v2");
    assert_eq!(seen["path"], "/ratings/0");
    assert_eq!(seen["query"], "u=jason");
    // The virtual host matched on the authority the app sent.
    assert_eq!(seen["host"], format!("b-service:{}", b.port()));
    for (name, value) in headers {
        assert_eq!(seen["headers"][name], value, "{name}: {seen}");
    }
    // It went through the proxy: the router's headers are there.
    assert!(seen["headers"].get("x-forwarded-proto").is_some(), "{seen}");

    // A host the sidecar has no route for: its 404 becomes the caller's status.
    let (status, body) = get_json(a, "/call/unknown-service:9080/x", &[]).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["calls"][0]["status"], 404);
}

#[test]
fn flags_come_from_the_environment_and_flags_win() {
    let (one, two) = (localhost(free_port()), localhost(free_port()));
    let listen = format!("{one},{two}");
    let env = [
        ("BOSUN_LISTEN", listen.as_str()),
        ("BOSUN_SERVICE", "ratings"),
        ("BOSUN_VERSION", "v1"),
    ];
    let mut p = Process::spawn_command(
        "demo-app-env",
        command(&["demo-app", "--version", "v3"], &env),
        TempDir::new("demo-app-env").unwrap(),
    )
    .unwrap();
    p.wait_for_port(one, START_TIMEOUT).unwrap();
    p.wait_for_port(two, START_TIMEOUT).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for addr in [one, two] {
        let (status, body) = rt.block_on(get_json(addr, "/", &[]));
        assert_eq!(status, 200);
        assert_eq!(body["service"], "ratings");
        assert_eq!(body["version"], "v3", "the flag wins over BOSUN_VERSION");
        assert_eq!(body["instance"], "ratings-v3");
    }
}

/// Flags, environment, and what the error message must mention.
type BadCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_flags_exit_2_with_a_message() {
    let cases: [BadCase<'_>; 7] = [
        (&["--fail-rate", "2"], &[], "--fail-rate"),
        (&["--fail-status", "99"], &[], "--fail-status"),
        (&["--call", ":9080/x"], &[], "--call"),
        (&["--listen", "nowhere"], &[], "--listen"),
        (&["--bogus"], &[], "--bogus"),
        (&[], &[("BOSUN_FAIL_RATE", "often")], "--fail-rate"),
        (
            &[],
            &[("HTTP_PROXY", "https://sidecar:15001")],
            "HTTP_PROXY",
        ),
    ];
    for (args, env, mention) in cases {
        // Port 0: were a bad flag accepted, the app would still start (and the test fail, not hang).
        let mut all = vec!["demo-app"];
        if !args.contains(&"--listen") {
            all.extend(["--listen", "127.0.0.1:0"]);
        }
        all.extend_from_slice(args);
        let mut p = Process::spawn_command(
            "demo-app-bad",
            command(&all, env),
            TempDir::new("demo-app-bad").unwrap(),
        )
        .unwrap();
        let status = p.wait_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}: {}", p.stderr());
        assert!(p.stderr().contains(mention), "{args:?}: {}", p.stderr());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_0() {
    let (mut app, addr) = demo_app("term", &[], &[]);
    let in_flight = tokio::spawn(http_get(addr, "/delay/300", &[]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = app.terminate_and_wait(Duration::from_secs(5)).unwrap();
        (status, app)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "the in-flight request was finished");
    // And it no longer listens.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}
