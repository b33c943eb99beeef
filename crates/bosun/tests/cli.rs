//! The command line contract: output format, JSON keys, exit status, reading stdin and directories.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bosun(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bosun runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("bosun exits")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bundled_bookinfo_is_clean_with_its_mesh_file() {
    let o = bosun(&["analyze", "examples/bookinfo"], None);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stdout(&o), "");
}

#[test]
fn mistakes_get_positioned_errors_with_suggestions() {
    let o = bosun(&["validate", "examples/mistakes"], None);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("examples/mistakes/service-entry-typo.yaml:9:3: error[IST0106]: unknown field \"prots\" (did you mean \"ports\"?) (at spec.prots)"),
        "{out}"
    );
    assert!(
        out.contains("examples/mistakes/destination-rule-no-kind.yaml:2:1: error[IST0106]: missing \"kind\": this looks like a DestinationRule"),
        "{out}"
    );
}

#[test]
fn json_output_has_the_documented_keys() {
    let o = bosun(
        &[
            "validate",
            "--output",
            "json",
            "examples/mistakes/service-entry-typo.yaml",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let items: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON array");
    let first = &items.as_array().expect("array")[0];
    let mut keys: Vec<&str> = first
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "code", "column", "field", "line", "message", "path", "severity"
        ]
    );
    assert_eq!(first["line"], 9);
    assert_eq!(first["column"], 3);
    assert_eq!(first["severity"], "error");
    assert_eq!(first["code"], "IST0106");
    assert_eq!(first["field"], "spec.prots");
}

#[test]
fn warnings_alone_exit_zero_and_unreadable_paths_exit_two() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route: [{destination: {host: r}}]
  - match: [{uri: {prefix: /x}}]
    route: [{destination: {host: r}}]
";
    let o = bosun(&["analyze", "-"], Some(yaml));
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("-:8:5: warning[IST0130]"),
        "{}",
        stdout(&o)
    );

    let o = bosun(&["validate", "no/such/file.yaml"], None);
    assert_eq!(o.status.code(), Some(2));
    let o = bosun(&["validate"], None);
    assert_eq!(o.status.code(), Some(2), "missing arguments");
}

#[test]
fn proxy_serves_the_example_bootstrap_and_drains_on_sigterm() {
    use std::time::Duration;
    // The example binds fixed ports (10000, 9901); skip quietly if another process holds them.
    if std::net::TcpListener::bind("127.0.0.1:10000").is_err()
        || std::net::TcpListener::bind("127.0.0.1:9901").is_err()
    {
        eprintln!("ports 10000/9901 are taken; skipping");
        return;
    }
    let config = repo().join("examples/proxy/bootstrap.yaml");
    let mut proxy = testkit::Process::spawn(
        env!("CARGO_BIN_EXE_bosun"),
        [
            "proxy",
            "-c",
            config.to_str().expect("utf-8"),
            "--concurrency",
            "1",
            "--drain-time-s",
            "1",
        ],
        &[],
    )
    .expect("bosun proxy starts");
    proxy
        .wait_ready(testkit::localhost(9901), Duration::from_secs(10))
        .expect("ready");
    let (status, body) = testkit::blocking_get(
        testkit::localhost(10000),
        "/healthz",
        Duration::from_secs(5),
    )
    .expect("served");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // Nothing listens on 8081 in the test: a connect failure, retried, then Envoy's 503.
    let (status, _) =
        testkit::blocking_get(testkit::localhost(10000), "/x", Duration::from_secs(10))
            .expect("served");
    assert!(
        status == 503 || status == 200,
        "503 unless something runs on 8081, got {status}"
    );
    let exit = proxy
        .terminate_and_wait(Duration::from_secs(10))
        .expect("exits");
    assert!(
        exit.success(),
        "exit status after SIGTERM: {exit:?}\n{}",
        proxy.stderr_tail()
    );
    // The access log went to stdout in Envoy's format.
    assert!(
        proxy.stdout().contains("\"GET /healthz HTTP/1.1\" 200 -"),
        "{}",
        proxy.stdout()
    );
}

#[test]
fn proxy_refuses_a_bad_bootstrap_with_its_position() {
    let yaml = "static_resources:\n  clusters:\n  - name: a\n    conect_timeout: 1s\n";
    let dir = testkit::TempDir::new("bosun-cli").expect("tempdir");
    let path = dir.write("bad.yaml", yaml.as_bytes()).expect("write");
    let o = bosun(&["proxy", "-c", path.to_str().expect("utf-8")], None);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml:4:5"), "{err}");
    assert!(err.contains("connect_timeout"), "a suggestion: {err}");
}

/// An access log file that cannot be opened stops the start, naming the listener and the path, as
/// Envoy's "unable to open file" does: not a warning per line while the requests go unlogged.
#[test]
fn proxy_refuses_an_access_log_it_cannot_open() {
    let yaml = r#"
static_resources:
  listeners:
  - name: logged
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: nowhere
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /nonexistent-dir/access.log
  clusters:
  - name: nowhere
    load_assignment:
      cluster_name: nowhere
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}}]}]
"#;
    let dir = testkit::TempDir::new("bosun-cli").expect("tempdir");
    let path = dir.write("log.yaml", yaml.as_bytes()).expect("write");
    let o = bosun(&["proxy", "-c", path.to_str().expect("utf-8")], None);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "listener \"logged\": cannot open the access log /nonexistent-dir/access.log: No such file or directory"
        ),
        "{err}"
    );
}

#[test]
fn the_example_bootstrap_is_valid_for_envoy_too() {
    if testkit::Envoy::find_or_skip("the_example_bootstrap_is_valid_for_envoy_too").is_none() {
        return;
    }
    let yaml =
        std::fs::read_to_string(repo().join("examples/proxy/bootstrap.yaml")).expect("example");
    testkit::Envoy::validate(&yaml).expect("envoy --mode validate accepts the example");
}

#[test]
fn bootstrap_output_is_accepted_by_envoy() {
    let o = bosun(
        &[
            "bootstrap",
            "--node-id",
            "sidecar~127.0.0.2~reviews-v1.default~default.svc.cluster.local",
            "--labels",
            "app=reviews,version=v1",
            "--interception",
            "none",
        ],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let yaml = stdout(&o);
    assert!(yaml.contains("\"INTERCEPTION_MODE\": \"NONE\""), "{yaml}");
    if testkit::Envoy::find_or_skip("bootstrap_output_is_accepted_by_envoy").is_some() {
        testkit::Envoy::validate(&yaml).expect("envoy --mode validate accepts it");
    }
    // A host name for the control plane: a DNS cluster that prefers IPv4, which Envoy accepts too.
    let o = bosun(
        &[
            "bootstrap",
            "--node-id",
            "sidecar~127.0.0.2~reviews-v1.default~default.svc.cluster.local",
            "--xds",
            "localhost:15010",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    let yaml = stdout(&o);
    assert!(
        yaml.contains("\"STRICT_DNS\"") && yaml.contains("\"V4_PREFERRED\""),
        "{yaml}"
    );
    if testkit::Envoy::find_or_skip("bootstrap_output_is_accepted_by_envoy").is_some() {
        testkit::Envoy::validate(&yaml).expect("envoy --mode validate accepts it");
    }
    let o = bosun(&["bootstrap", "--node-id", "reviews"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("four parts"));
}

#[test]
fn control_refuses_a_config_path_that_is_not_a_directory() {
    let out = bosun(
        &[
            "control",
            "--config",
            "/nonexistent/bosun-config",
            "--xds-port",
            "0",
            "--debug-port",
            "0",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "bosun control: --config /nonexistent/bosun-config: not a directory (give the directory of Istio YAML to serve)\n"
    );
}
