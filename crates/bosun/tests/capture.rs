//! Transparent capture end to end, as Istio's sidecars do it: two pods (network namespaces) with
//! Istio's iptables REDIRECT rules. In the client pod, every outgoing TCP connection goes to :15001
//! except those of UID 1337 (the proxy), loopback and 127.0.0.1; its sidecar runs as UID 1337 with
//! Istio's `virtualOutbound` listener (`use_original_dst` and the `original_dst` listener filter), a
//! `0.0.0.0_8080` listener that is never bound, and the catch-all chain to `PassthroughCluster`
//! (ORIGINAL_DST). In the server pod, every incoming connection goes to :15006, whose sidecar passes
//! it to the app through `InboundPassthroughCluster` from 127.0.0.6: by REDIRECT, or in Istio's TPROXY
//! mode to a transparent listener. The same bootstraps run under Envoy and under `bosun proxy`, with
//! the same namespaces, and every outcome must be the same.
//!
//! Needs root, `ip`, `iptables-restore` and `setpriv` (and curl, or python3 for the requests); without
//! them it says why and passes, unless `BOSUN_REQUIRE_NETNS` is set (CI), when it fails. Without Envoy
//! only `bosun proxy` runs, unless `BOSUN_REQUIRE_ENVOY` is set. Nothing is created outside the two
//! namespaces it makes (names with the test's pid); a guard removes them, and kills what runs in
//! them, whatever happens.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{Envoy, Process, TempDir};

#[path = "support/netns.rs"]
mod netns;
use netns::{can_run, which};

const CLIENT_IP: &str = "10.123.31.10";
const SERVER_IP: &str = "10.123.31.20";
/// A port with its own (unbound) listener on the proxy: HTTP, routed.
const ROUTED_PORT: u16 = 8080;
/// A port without a listener: the catch-all chain passes it through as TCP.
const PASSTHROUGH_PORT: u16 = 9090;
/// Istio's proxy UID and an ordinary app's.
const PROXY_UID: &str = "1337";
const APP_UID: &str = "1000";
/// Bound on every wait for a process or a port.
const STARTUP: Duration = Duration::from_secs(30);
/// Bound on one command (a client request, an `ip` call).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// Istio's capture as istio-init installs it in every pod (REDIRECT to 15001/15006, UID 1337
/// excluded): the rule set `bosun up --capture iptables` installs, shared with it.
const RULES: &str = include_str!("../src/up/istio-redirect.iptables");

/// Istio's TPROXY inbound mode (istio-iptables `-m TPROXY`; outbound stays REDIRECT): incoming TCP is
/// marked 1337 and delivered, destination unchanged, to the transparent listener on 15006 (policy
/// routing sends marked packets to the local table); the proxy's own loopback connections are marked
/// 1338 and 127.0.0.6's are left alone, so the inbound passthrough does not loop.
const TPROXY_RULES: &str = "*mangle
:ISTIO_DIVERT - [0:0]
:ISTIO_TPROXY - [0:0]
:ISTIO_INBOUND - [0:0]
-A ISTIO_DIVERT -j MARK --set-mark 1337
-A ISTIO_DIVERT -j ACCEPT
-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --tproxy-mark 1337/0xffffffff --on-port 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp -m mark --mark 1337 -j RETURN
-A ISTIO_INBOUND -p tcp -s 127.0.0.6/32 -i lo -j RETURN
-A ISTIO_INBOUND -p tcp -i lo -m mark ! --mark 1338 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT
-A ISTIO_INBOUND -p tcp -j ISTIO_TPROXY
-A PREROUTING -p tcp -m mark --mark 1337 -j CONNMARK --save-mark
-A OUTPUT -p tcp -o lo -m mark --mark 1337 -j RETURN
-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --uid-owner 1337 -j MARK --set-mark 1338
-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --gid-owner 1337 -j MARK --set-mark 1338
-A OUTPUT -p tcp -m connmark --mark 1337 -j CONNMARK --restore-mark
COMMIT
*nat
:ISTIO_REDIRECT - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
";

/// How the server pod captures inbound traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inbound {
    /// NAT to 15006; the proxy reads the destination with `SO_ORIGINAL_DST`.
    Redirect,
    /// TPROXY to a transparent listener on 15006, whose accepted sockets keep the destination.
    Tproxy,
}

/// The client pod's sidecar, outbound, in the shape istiod gives it (static here). `SERVER_IP` is
/// replaced.
const OUTBOUND: &str = r#"
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 15000}}
static_resources:
  listeners:
  - name: virtualOutbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15001}}
    use_original_dst: true
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}
    filter_chains:
    - name: virtualOutbound-blackhole
      filter_chain_match: {destination_port: 15001}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: BlackHoleCluster, cluster: BlackHoleCluster}
    - name: virtualOutbound-catchall-tcp
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: PassthroughCluster, cluster: PassthroughCluster}
  - name: 0.0.0.0_8080
    address: {socket_address: {address: 0.0.0.0, port_value: 8080}}
    bind_to_port: false
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: outbound_0.0.0.0_8080
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            name: "8080"
            response_headers_to_add: [{header: {key: x-routed-by, value: outbound_0.0.0.0_8080}}]
            virtual_hosts:
            - name: allow_any
              domains: ["*"]
              routes:
              - match: {prefix: /static}
                route: {cluster: "outbound|8080||server"}
              - match: {prefix: /}
                route: {cluster: PassthroughCluster}
  clusters:
  - name: PassthroughCluster
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 5s
    original_dst_lb_config: {use_http_header: true}
  - name: BlackHoleCluster
    type: STATIC
    connect_timeout: 5s
  - name: "outbound|8080||server"
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: "outbound|8080||server"
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: SERVER_IP, port_value: 8080}}}
"#;

/// The server pod's sidecar, inbound: Istio's `virtualInbound` (no `use_original_dst`) passing every
/// connection to the app through `InboundPassthroughCluster`, from 127.0.0.6 so that the capture rules
/// let it through instead of sending it back to 15006.
const INBOUND: &str = r#"
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 15000}}
static_resources:
  listeners:
  - name: virtualInbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15006}}
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}
    filter_chains:
    - name: virtualInbound-blackhole
      filter_chain_match: {destination_port: 15006}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: BlackHoleCluster, cluster: BlackHoleCluster}
    - name: virtualInbound-catchall-tcp
      filter_chain_match: {prefix_ranges: [{address_prefix: 0.0.0.0, prefix_len: 0}]}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: InboundPassthroughCluster, cluster: InboundPassthroughCluster}
  clusters:
  - name: InboundPassthroughCluster
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 5s
    upstream_bind_config: {source_address: {address: 127.0.0.6, port_value: 0}}
  - name: BlackHoleCluster
    type: STATIC
    connect_timeout: 5s
"#;

/// The inbound bootstrap for `mode`: TPROXY needs a transparent listener.
fn inbound_bootstrap(mode: Inbound) -> String {
    match mode {
        Inbound::Redirect => INBOUND.to_owned(),
        Inbound::Tproxy => {
            let yaml = INBOUND.replacen(
                "port_value: 15006}}\n",
                "port_value: 15006}}\n    transparent: true\n",
                1,
            );
            assert_ne!(yaml, INBOUND, "the virtualInbound address line moved");
            yaml
        }
    }
}

/// Why the test cannot run here, if it cannot: the namespaces' needs, and a client for its requests.
fn missing_prerequisite() -> Option<String> {
    netns::missing_prerequisite().or_else(|| {
        (which("curl").is_none() && !Path::new("/usr/bin/python3").is_file())
            .then(|| "neither curl nor /usr/bin/python3 is installed".to_owned())
    })
}

/// Runs a command to completion within [`COMMAND_TIMEOUT`]; its stdout, or why it failed.
fn run(args: &[&str]) -> Result<String, String> {
    let child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    let pid = child.id().to_string();
    // The output is read while waiting (a full pipe would stall the child), on a thread so that
    // the wait can be bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(out) => out.map_err(|e| e.to_string())?,
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            return Err(format!(
                "{}: no answer within {COMMAND_TIMEOUT:?}",
                args.join(" ")
            ));
        }
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

// === the two namespaces ===

/// Two network namespaces joined by a veth pair: the client pod (capture rules, proxy, app) and the
/// server pod (the upstream apps). Dropping it kills whatever still runs in them and deletes them,
/// which removes the veth pair and the rules with them.
struct Testbed {
    client: String,
    server: String,
    created: Vec<String>,
    /// Capabilities the proxies keep (see [`Testbed::command`]).
    proxy_caps: &'static str,
}

impl Testbed {
    fn new(mode: Inbound) -> Result<Testbed, String> {
        // Tests run in parallel threads of one process: each test bed gets its own names.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (pid, tag) = (
            std::process::id(),
            format!("{}{n}", format!("{mode:?}").to_ascii_lowercase()),
        );
        let mut bed = Testbed {
            client: format!("bosun-cap{pid}{tag}-c"),
            server: format!("bosun-cap{pid}{tag}-s"),
            created: Vec::new(),
            // A transparent listener (IP_TRANSPARENT) needs CAP_NET_ADMIN, as Istio's TPROXY mode.
            proxy_caps: match mode {
                Inbound::Redirect => "+dac_read_search",
                Inbound::Tproxy => "+dac_read_search,+net_admin",
            },
        };
        for ns in [bed.client.clone(), bed.server.clone()] {
            let _ = run(&["ip", "netns", "del", &ns]); // A leftover of a killed run with this pid.
            run(&["ip", "netns", "add", &ns])?;
            bed.created.push(ns);
        }
        let (c, s) = (bed.client.as_str(), bed.server.as_str());
        run(&[
            "ip", "-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
            s,
        ])?;
        for (ns, ip) in [(c, CLIENT_IP), (s, SERVER_IP)] {
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            run(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
        }
        // istio-init's job: the capture rules, in both pods; the server pod's per `mode`.
        let rules = TempDir::new("capture-rules").map_err(|e| e.to_string())?;
        let redirect = rules
            .write("redirect", RULES.as_bytes())
            .map_err(|e| e.to_string())?;
        let tproxy = rules
            .write("tproxy", TPROXY_RULES.as_bytes())
            .map_err(|e| e.to_string())?;
        let server_rules = match mode {
            Inbound::Redirect => &redirect,
            Inbound::Tproxy => &tproxy,
        };
        for (ns, file) in [(c, &redirect), (s, server_rules)] {
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "iptables-restore",
                &file.to_string_lossy(),
            ])?;
        }
        if mode == Inbound::Tproxy {
            // Marked packets are delivered locally (istio's tproxy route setup).
            run(&[
                "ip", "-n", s, "rule", "add", "fwmark", "1337", "lookup", "133",
            ])?;
            run(&[
                "ip", "-n", s, "route", "add", "local", "default", "dev", "lo", "table", "133",
            ])?;
        }
        Ok(bed)
    }

    /// `ip netns exec NS [setpriv as UID] ARGS…` as a command.
    fn command(&self, ns: &str, uid: Option<&str>, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]);
        if let Some(uid) = uid {
            c.args([
                "setpriv",
                "--reuid",
                uid,
                "--regid",
                uid,
                "--clear-groups",
                // The binaries may live under /root (rustup's target dir, pip's site-packages),
                // which UID 1337 cannot enter: keep only the right to read and search. It changes
                // nothing about the socket owner the capture rules match.
                "--inh-caps",
                self.proxy_caps,
                "--ambient-caps",
                self.proxy_caps,
            ]);
        }
        c.args(args);
        c
    }

    /// An HTTP GET from the client pod as `uid`: the status and the response headers (lower-case
    /// names), or why there was no answer.
    fn get(&self, uid: &str, url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        self.get_in(&self.client, uid, url, headers)
    }

    /// An HTTP GET from pod `ns` as `uid`.
    fn get_in(
        &self,
        ns: &str,
        uid: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, String> {
        let mut args: Vec<String> = ["ip", "netns", "exec", ns]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(
            ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups"].map(String::from),
        );
        if which("curl").is_some() {
            args.extend(["curl", "-s", "-m", "5", "-o", "/dev/null", "-D", "-"].map(String::from));
            for (k, v) in headers {
                args.push("-H".into());
                args.push(format!("{k}: {v}"));
            }
            args.push(url.to_owned());
        } else {
            let script = "import sys,urllib.request as u\n\
                 r=u.Request(sys.argv[1])\n\
                 for h in sys.argv[2:]: k,v=h.split(':',1); r.add_header(k,v.strip())\n\
                 try: x=u.urlopen(r,timeout=5)\n\
                 except u.HTTPError as e: x=e\n\
                 print('HTTP/1.1',x.status); print(x.headers)";
            args.extend(["/usr/bin/python3", "-c", script, url].map(String::from));
            args.extend(headers.iter().map(|(k, v)| format!("{k}: {v}")));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args)?;
        Response::parse(&out).ok_or_else(|| format!("GET {url}: no response ({out:?})"))
    }

    /// A sidecar's `/stats` (admin on its pod's loopback) as name → value.
    fn stats(&self, ns: &str) -> Result<BTreeMap<String, u64>, String> {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            ns,
            "curl",
            "-s",
            "-m",
            "5",
            "http://127.0.0.1:15000/stats",
        ])
        .or_else(|_| {
            run(&[
                "ip", "netns", "exec", ns, "/usr/bin/python3", "-c",
                "import urllib.request as u;print(u.urlopen('http://127.0.0.1:15000/stats',timeout=5).read().decode())",
            ])
        })?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect())
    }

    /// Waits until `url` answers from pod `ns` as root (loopback and the pod's own address are not
    /// captured for it).
    fn wait_for(&self, ns: &str, url: &str, process: &mut Process) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Err(e) = process.check_running() {
                return Err(format!("{e}\n{}", process.stderr_tail()));
            }
            match self.get_in(ns, "0", url, &[]) {
                Ok(r) if r.status == 200 => return Ok(()),
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                other => return Err(format!("{url} not ready within {STARTUP:?}: {other:?}")),
            }
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for ns in &self.created {
            // Processes the test started are stopped by their own guards first; anything left is a bug
            // worth a line, and must not outlive the namespace.
            if let Ok(pids) = run(&["ip", "netns", "pids", ns]) {
                for pid in pids.split_whitespace() {
                    eprintln!("capture: killing stray pid {pid} in {ns}");
                    let _ = run(&["kill", "-9", pid]);
                }
            }
            if let Err(e) = run(&["ip", "netns", "del", ns]) {
                eprintln!("capture: could not delete network namespace {ns}: {e}");
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
}

impl Response {
    fn parse(out: &str) -> Option<Response> {
        // The last header block (curl prints one per response; there is no redirect here).
        let block = out.rsplit("HTTP/").next()?;
        let mut lines = block.lines();
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Response { status, headers })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

// === the test ===

/// What a client saw for one request: status, who answered (the demo app's service name), and whether
/// the proxy's HTTP route handled it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    what: &'static str,
    status: Option<u16>,
    served_by: Option<String>,
    routed_by: Option<String>,
}

/// Stats of the two sidecars after the scenario.
struct Stats {
    client: BTreeMap<String, u64>,
    server: BTreeMap<String, u64>,
}

/// Runs the scenario against one kind of proxy (already started as both pods' sidecars), returning
/// what every request saw and the stats that tell which way each went.
fn scenario(bed: &Testbed) -> (Vec<Seen>, Stats) {
    let routed = format!("http://{SERVER_IP}:{ROUTED_PORT}");
    let passthrough = format!("http://{SERVER_IP}:{PASSTHROUGH_PORT}");
    let to_passthrough_port = format!("{SERVER_IP}:{PASSTHROUGH_PORT}");
    // (what, as which UID, URL, request headers)
    type Case<'a> = (&'static str, &'a str, String, Vec<(&'a str, &'a str)>);
    let requests: Vec<Case<'_>> = vec![
        // Handed to 0.0.0.0_8080, routed to PassthroughCluster (HTTP to the original destination).
        (
            "app -> :8080 (HTTP, original destination)",
            APP_UID,
            format!("{routed}/"),
            vec![],
        ),
        // Handed to 0.0.0.0_8080, routed to the STATIC cluster.
        (
            "app -> :8080/static (HTTP, static cluster)",
            APP_UID,
            format!("{routed}/static"),
            vec![],
        ),
        // The header overrides the original destination (use_http_header).
        (
            "app -> :8080 with x-envoy-original-dst-host :9090",
            APP_UID,
            format!("{routed}/"),
            vec![("x-envoy-original-dst-host", to_passthrough_port.as_str())],
        ),
        // No listener for 9090: virtualOutbound's catch-all chain, TCP to PassthroughCluster.
        (
            "app -> :9090 (TCP passthrough)",
            APP_UID,
            format!("{passthrough}/"),
            vec![],
        ),
        // The proxy's own UID is not captured on the way out (the server's sidecar still takes it in).
        (
            "uid 1337 -> :9090 (not captured)",
            PROXY_UID,
            format!("{passthrough}/"),
            vec![],
        ),
        // Straight at the capture port: the blackhole chain closes it (no loop).
        (
            "app -> client:15001 (blackhole)",
            APP_UID,
            format!("http://{CLIENT_IP}:15001/"),
            vec![],
        ),
    ];
    let mut seen = Vec::new();
    for (what, uid, url, headers) in &requests {
        let r = bed.get(uid, url, headers).ok();
        seen.push(Seen {
            what,
            status: r.as_ref().map(|r| r.status),
            served_by: r
                .as_ref()
                .and_then(|r| r.header("x-demo-service").map(str::to_owned)),
            routed_by: r
                .as_ref()
                .and_then(|r| r.header("x-routed-by").map(str::to_owned)),
        });
    }
    let stats = Stats {
        client: bed.stats(&bed.client).unwrap(),
        server: bed.stats(&bed.server).unwrap(),
    };
    (seen, stats)
}

fn expected() -> Vec<Seen> {
    let s = |what, status: Option<u16>, served: Option<&str>, routed: bool| Seen {
        what,
        status,
        served_by: served.map(str::to_owned),
        routed_by: routed.then(|| "outbound_0.0.0.0_8080".to_owned()),
    };
    vec![
        s(
            "app -> :8080 (HTTP, original destination)",
            Some(200),
            Some("server-8080"),
            true,
        ),
        s(
            "app -> :8080/static (HTTP, static cluster)",
            Some(200),
            Some("server-8080"),
            true,
        ),
        s(
            "app -> :8080 with x-envoy-original-dst-host :9090",
            Some(200),
            Some("server-9090"),
            true,
        ),
        s(
            "app -> :9090 (TCP passthrough)",
            Some(200),
            Some("server-9090"),
            false,
        ),
        s(
            "uid 1337 -> :9090 (not captured)",
            Some(200),
            Some("server-9090"),
            false,
        ),
        s("app -> client:15001 (blackhole)", None, None, false),
    ]
}

/// The counters that show where connections went. Client sidecar: only the blackhole and the
/// passthrough connection stay on virtualOutbound (the handed-off ones count on 0.0.0.0_8080, as Envoy
/// counts them), and the uncaptured request is on neither. Server sidecar: every connection that
/// reached the pod came in through 15006 and went on to the app from 127.0.0.6 (else the rules would
/// have sent it back to 15006, and it would never have arrived).
fn check_stats(proxy: &str, stats: &Stats) {
    let (client, server) = (&stats.client, &stats.server);
    let expect = [
        ("listener.0.0.0.0_15001.downstream_cx_total", client, 2),
        ("listener.0.0.0.0_8080.downstream_cx_total", client, 3),
        ("http.outbound_0.0.0.0_8080.downstream_rq_total", client, 3),
        ("cluster.outbound|8080||server.upstream_rq_total", client, 1),
        // Two HTTP destinations (:8080 and, by the header, :9090) and the TCP passthrough.
        ("cluster.PassthroughCluster.upstream_cx_total", client, 3),
        // Those three, the static cluster's connection and the uncaptured one.
        ("listener.0.0.0.0_15006.downstream_cx_total", server, 5),
        (
            "cluster.InboundPassthroughCluster.upstream_cx_total",
            server,
            5,
        ),
    ];
    for (name, stat, value) in expect {
        assert_eq!(
            stat.get(name).copied().unwrap_or(0),
            value,
            "{proxy}: {name}\nclient sidecar: {:#?}\nserver sidecar: {:#?}",
            stats.client,
            stats.server
        );
    }
}

/// The two sidecars of one kind of proxy.
struct Sidecars {
    client: Process,
    server: Process,
}

impl Sidecars {
    /// Starts the server pod's and the client pod's sidecars as UID 1337 and waits for their
    /// `/ready`.
    fn start(bed: &Testbed, mode: Inbound, name: &str, program: &Path, args: &[&str]) -> Sidecars {
        let server = start_proxy(
            bed,
            &bed.server,
            &format!("{name}-inbound"),
            program,
            args,
            &inbound_bootstrap(mode),
        );
        let client = start_proxy(
            bed,
            &bed.client,
            &format!("{name}-outbound"),
            program,
            args,
            OUTBOUND,
        );
        Sidecars { client, server }
    }

    fn stop(mut self) {
        for p in [&mut self.client, &mut self.server] {
            p.terminate_and_wait(Duration::from_secs(10)).unwrap();
        }
    }
}

/// Starts a proxy in pod `ns` as UID 1337 with `bootstrap` and waits for its admin `/ready`.
fn start_proxy(
    bed: &Testbed,
    ns: &str,
    name: &str,
    program: &Path,
    args: &[&str],
    bootstrap: &str,
) -> Process {
    let dir = TempDir::new(&format!("capture-{name}")).unwrap();
    let config = dir
        .write(
            "bootstrap.yaml",
            bootstrap.replace("SERVER_IP", SERVER_IP).as_bytes(),
        )
        .unwrap();
    let mut all: Vec<&str> = vec![program.to_str().unwrap()];
    all.extend(args);
    let config = config.to_string_lossy().into_owned();
    all.extend(["-c", &config]);
    let command = bed.command(ns, Some(PROXY_UID), &all);
    let mut process = Process::spawn_command(name, command, dir).unwrap();
    bed.wait_for(ns, "http://127.0.0.1:15000/ready", &mut process)
        .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
    process
}

/// The sidecars each control-plane test runs, Envoy (when there is one) then `bosun proxy`: a name,
/// the program and its arguments before `-c BOOTSTRAP`.
fn sidecar_programs(test: &str) -> Vec<(&'static str, PathBuf, Vec<&'static str>)> {
    let mut proxies = Vec::new();
    if let Some(envoy) = Envoy::find_or_skip(test) {
        proxies.push((
            "envoy",
            envoy,
            vec![
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "-l",
                "warning",
            ],
        ));
    }
    proxies.push((
        "bosun",
        PathBuf::from(env!("CARGO_BIN_EXE_bosun")),
        vec!["proxy", "--concurrency", "1"],
    ));
    proxies
}

/// `bosun demo-app` serving `reviews` `version` at `listen` in the server pod, once it answers.
fn start_reviews_app(bed: &Testbed, listen: &str, version: &str) -> Process {
    let command = bed.command(
        &bed.server,
        None,
        &[
            env!("CARGO_BIN_EXE_bosun"),
            "demo-app",
            "--listen",
            listen,
            "--service",
            "reviews",
            "--version",
            version,
        ],
    );
    let dir = TempDir::new(&format!("capture-reviews-{version}")).unwrap();
    let mut app = Process::spawn_command(&format!("reviews-{version}"), command, dir).unwrap();
    bed.wait_for(&bed.server, &format!("http://{listen}/healthz"), &mut app)
        .unwrap();
    app
}

/// `bosun control --config DIR --capture iptables` (with `extra` flags) in pod `ns`, once ready.
fn start_control(bed: &Testbed, ns: &str, dir: &str, extra: &[&str]) -> Process {
    let mut args = vec![
        env!("CARGO_BIN_EXE_bosun"),
        "control",
        "--config",
        dir,
        "--capture",
        "iptables",
    ];
    args.extend(extra);
    let command = bed.command(ns, None, &args);
    let mut control = Process::spawn_command(
        "control",
        command,
        TempDir::new("capture-control-run").unwrap(),
    )
    .unwrap();
    bed.wait_for(ns, "http://127.0.0.1:15014/ready", &mut control)
        .unwrap();
    control
}

/// `bosun bootstrap` for a sidecar with traffic capture (`--interception redirect`).
fn captured_bootstrap(node: &str, labels: &str, xds: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args([
            "bootstrap",
            "--node-id",
            node,
            "--labels",
            labels,
            "--interception",
            "redirect",
            "--xds",
            xds,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn sidecar_capture_matches_envoy() {
    capture_matches_envoy("sidecar_capture_matches_envoy", Inbound::Redirect);
}

#[test]
fn sidecar_capture_tproxy_inbound_matches_envoy() {
    capture_matches_envoy(
        "sidecar_capture_tproxy_inbound_matches_envoy",
        Inbound::Tproxy,
    );
}

/// Both sidecars of Envoy, then of Bosun, on the same pods; the same requests; the same outcomes.
fn capture_matches_envoy(test: &str, mode: Inbound) {
    if !can_run(test, missing_prerequisite()) {
        return;
    }
    let bed = match Testbed::new(mode) {
        Ok(bed) => bed,
        Err(e) => {
            can_run(
                test,
                Some(format!("cannot set up the network namespaces: {e}")),
            );
            return;
        }
    };
    let bosun = Path::new(env!("CARGO_BIN_EXE_bosun"));
    // The upstream apps, in the server pod: which one answered is in `x-demo-service`.
    let mut apps = Vec::new();
    for port in [ROUTED_PORT, PASSTHROUGH_PORT] {
        let listen = format!("{SERVER_IP}:{port}");
        let service = format!("server-{port}");
        let command = bed.command(
            &bed.server,
            None,
            &[
                bosun.to_str().unwrap(),
                "demo-app",
                "--listen",
                &listen,
                "--service",
                &service,
            ],
        );
        let dir = TempDir::new(&format!("capture-app-{port}")).unwrap();
        let mut app = Process::spawn_command(&service, command, dir).unwrap();
        bed.wait_for(&bed.server, &format!("http://{listen}/healthz"), &mut app)
            .unwrap();
        apps.push(app);
    }

    let mut results = Vec::new();
    if let Some(envoy) = Envoy::find_or_skip(test) {
        let args = [
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "-l",
            "warning",
        ];
        let sidecars = Sidecars::start(&bed, mode, "envoy", &envoy, &args);
        let (seen, stats) = scenario(&bed);
        sidecars.stop();
        results.push(("envoy", seen, stats));
    }
    let sidecars = Sidecars::start(&bed, mode, "bosun", bosun, &["proxy", "--concurrency", "1"]);
    let (seen, stats) = scenario(&bed);
    sidecars.stop();
    results.push(("bosun", seen, stats));

    for (name, seen, stats) in &results {
        assert_eq!(seen, &expected(), "{name}");
        check_stats(name, stats);
        eprintln!(
            "{test} {name}: all {} requests and the sidecars' stats as expected",
            seen.len()
        );
    }
    drop(apps);
    drop(bed);
}

// === the control plane serving captured sidecars ===

/// `bosun control --capture iptables` in the client pod serves the client's sidecar istiod's captured
/// listeners (`virtualOutbound`, per-port `0.0.0.0_9080` with route table `"9080"`): the app calls a
/// service by name at any address on the service port and is routed by Host to the subset its
/// VirtualService picks; a port the mesh does not know passes through (ALLOW_ANY). The server pod keeps
/// its static inbound sidecar. Envoy and `bosun proxy` must see the same.
#[test]
fn control_plane_serves_captured_sidecars() {
    let test = "control_plane_serves_captured_sidecars";
    if !can_run(test, missing_prerequisite()) {
        return;
    }
    let bed = match Testbed::new(Inbound::Redirect) {
        Ok(bed) => bed,
        Err(e) => {
            can_run(
                test,
                Some(format!("cannot set up the network namespaces: {e}")),
            );
            return;
        }
    };
    let mut apps = Vec::new();
    for (port, version) in [(8080, "v1"), (8081, "v2")] {
        apps.push(start_reviews_app(
            &bed,
            &format!("{SERVER_IP}:{port}"),
            version,
        ));
    }
    let config = TempDir::new("capture-control").unwrap();
    config
        .write(
            "mesh.yaml",
            b"services: []\nworkloads:\n- {name: productpage-v1, labels: {app: productpage}, address: 10.123.31.10}\n",
        )
        .unwrap();
    // Services told apart by their addresses alone: TCP ones on 7000, undeclared ones on 7100.
    let addressed: String = [
        ("queue-a", "10.123.31.91", 7000, "tcp", 8080),
        ("queue-b", "10.123.31.92", 7000, "tcp", 8081),
        ("store-a", "10.123.31.93", 7100, "store", 8080),
        ("store-b", "10.123.31.94", 7100, "store", 8081),
    ]
    .iter()
    .map(|(name, address, port, port_name, target)| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}.internal]
  addresses: [{address}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: {port_name}}}]
  endpoints: [{{address: {SERVER_IP}, ports: {{{port_name}: {target}}}}}]
"
        )
    })
    .collect();
    let reviews = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: {SERVER_IP}, ports: {{http: 8080}}, labels: {{version: v1}}}}
  - {{address: {SERVER_IP}, ports: {{http: 8081}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
  - route: [{{destination: {{host: reviews, subset: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db}}
spec:
  hosts: [db.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
  endpoints:
  - {{address: {SERVER_IP}, ports: {{tcp: 8080}}, labels: {{version: v1}}}}
  - {{address: {SERVER_IP}, ports: {{tcp: 8081}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db}}
spec:
  host: db.internal
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db}}
spec:
  hosts: [db.internal]
  tcp:
  - match: [{{destinationSubnets: [10.123.31.98/32]}}]
    route: [{{destination: {{host: db.internal, subset: v2}}}}]
  - route: [{{destination: {{host: db.internal, subset: v1}}}}]
{addressed}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: cache}}
spec:
  hosts: [cache.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 6380, name: cache}}]
  endpoints:
  - {{address: {SERVER_IP}, ports: {{cache: 8080}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: cache}}
spec:
  hosts: [cache.internal]
  http:
  - route: [{{destination: {{host: reviews, subset: v2, port: {{number: 9080}}}}}}]
"
    );
    config.write("reviews.yaml", reviews.as_bytes()).unwrap();
    let dir = config.path().to_str().unwrap().to_owned();
    let mut control = start_control(&bed, &bed.client, &dir, &[]);
    let bootstrap = captured_bootstrap(
        &format!("sidecar~{CLIENT_IP}~productpage-v1.default~default.svc.cluster.local"),
        "app=productpage",
        "127.0.0.1:15010",
    );

    // Any address works for a service: the capture hands the connection to the port's listener,
    // which routes by Host.
    let service_url = "http://10.123.31.99:9080/reviews/0";
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
    let cases: [Case<'_>; 10] = [
        (
            "reviews: default route",
            service_url.to_owned(),
            vec![("host", "reviews:9080")],
        ),
        (
            "reviews: end-user jason",
            service_url.to_owned(),
            vec![
                ("host", "reviews.default.svc.cluster.local"),
                ("end-user", "jason"),
            ],
        ),
        (
            "unknown port: passthrough",
            format!("http://{SERVER_IP}:8081/"),
            vec![],
        ),
        // A TCP port: the VirtualService's tcp routes choose by the address the app dialled.
        (
            "db: tcp route by destination subnet",
            "http://10.123.31.98:5432/".to_owned(),
            vec![],
        ),
        (
            "db: tcp route for other addresses",
            "http://10.123.31.99:5432/".to_owned(),
            vec![],
        ),
        // Two TCP services on one port, each with its own address: the listener of the address
        // the app dialled (v1 behind queue-a, v2 behind queue-b).
        (
            "queue-a: tcp by its address",
            "http://10.123.31.91:7000/".to_owned(),
            vec![],
        ),
        (
            "queue-b: tcp by its address",
            "http://10.123.31.92:7000/".to_owned(),
            vec![],
        ),
        // The same with undeclared protocols: each address's listener sniffs HTTP, which its
        // route table sends by the Host, here the address.
        (
            "store-a: sniffed on its address",
            "http://10.123.31.93:7100/".to_owned(),
            vec![],
        ),
        (
            "store-b: sniffed on its address",
            "http://10.123.31.94:7100/".to_owned(),
            vec![],
        ),
        // A port whose protocol is not declared: the http_inspector finds HTTP, routed by the
        // VirtualService (to v2; the service's own endpoint is v1).
        (
            "cache: sniffed as HTTP, routed",
            "http://10.123.31.97:6380/".to_owned(),
            vec![("host", "cache.internal")],
        ),
    ];
    // Every case answered 200 by the version named.
    let expected: Vec<_> = [
        ("reviews: default route", "v1"),
        ("reviews: end-user jason", "v2"),
        ("unknown port: passthrough", "v2"),
        ("db: tcp route by destination subnet", "v2"),
        ("db: tcp route for other addresses", "v1"),
        ("queue-a: tcp by its address", "v1"),
        ("queue-b: tcp by its address", "v2"),
        ("store-a: sniffed on its address", "v1"),
        ("store-b: sniffed on its address", "v2"),
        ("cache: sniffed as HTTP, routed", "v2"),
    ]
    .into_iter()
    .map(|(what, version)| (what, Some(200), Some(version.to_owned())))
    .collect();
    let proxies = sidecar_programs(test);
    for (name, program, args) in proxies {
        let mut server = start_proxy(
            &bed,
            &bed.server,
            &format!("{name}-inbound"),
            &program,
            &args,
            INBOUND,
        );
        let mut client = start_proxy(
            &bed,
            &bed.client,
            &format!("{name}-sidecar"),
            &program,
            &args,
            &bootstrap,
        );
        let seen: Vec<_> = cases
            .iter()
            .map(|(what, url, headers)| {
                let r = bed.get(APP_UID, url, headers).ok();
                (
                    *what,
                    r.as_ref().map(|r| r.status),
                    r.as_ref()
                        .and_then(|r| r.header("x-demo-version"))
                        .map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(
            seen,
            expected,
            "{name}\nsidecar:\n{}\ncontrol:\n{}",
            client.stderr_tail(),
            control.stderr_tail()
        );
        for p in [&mut client, &mut server] {
            p.terminate_and_wait(Duration::from_secs(10)).unwrap();
        }
        eprintln!("{test} {name}: routed by the control plane's config as expected");
    }
    control.terminate_and_wait(Duration::from_secs(10)).unwrap();
    drop(apps);
    drop(bed);
}

/// A Sidecar `ingress` on a captured workload, served by the control plane to both sidecars: the
/// server pod's app listens on 127.0.0.1:8082 only, and the Sidecar maps port 9080 to it. A request
/// to the service (routed by the client's sidecar) and one to the pod's address and port (passed
/// through) are both captured into the server's `virtualInbound`, whose chain for 9080 sends them
/// to the loopback from 127.0.0.6.
#[test]
fn control_plane_serves_sidecar_ingress_to_captured_workloads() {
    let test = "control_plane_serves_sidecar_ingress_to_captured_workloads";
    if !can_run(test, missing_prerequisite()) {
        return;
    }
    let bed = match Testbed::new(Inbound::Redirect) {
        Ok(bed) => bed,
        Err(e) => {
            can_run(
                test,
                Some(format!("cannot set up the network namespaces: {e}")),
            );
            return;
        }
    };
    let listen = "127.0.0.1:8082";
    let app = start_reviews_app(&bed, listen, "loopback");
    let config = TempDir::new("capture-ingress-control").unwrap();
    let mesh = format!(
        "services:
- name: reviews
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
workloads:
- {{name: productpage-v1, labels: {{app: productpage}}, address: {CLIENT_IP}}}
- {{name: reviews-1, service: reviews, labels: {{app: reviews}}, address: {SERVER_IP}}}
"
    );
    config.write("mesh.yaml", mesh.as_bytes()).unwrap();
    config
        .write(
            "sidecar.yaml",
            b"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8082
",
        )
        .unwrap();
    let dir = config.path().to_str().unwrap().to_owned();
    // One control plane in each pod, serving the same config: the capture would take a
    // connection from one pod to the other's 15010 into its sidecar.
    let mut controls = Vec::new();
    for ns in [&bed.client, &bed.server] {
        controls.push(start_control(&bed, ns, &dir, &[]));
    }
    let client_bootstrap = captured_bootstrap(
        &format!("sidecar~{CLIENT_IP}~productpage-v1.default~default.svc.cluster.local"),
        "app=productpage",
        "127.0.0.1:15010",
    );
    let server_bootstrap = captured_bootstrap(
        &format!("sidecar~{SERVER_IP}~reviews-1.default~default.svc.cluster.local"),
        "app=reviews",
        "127.0.0.1:15010",
    );
    let cases = [
        (
            "the service, routed by the client's sidecar",
            "http://10.123.31.99:9080/reviews/0",
            vec![("host", "reviews:9080")],
        ),
        (
            "the pod's address and port, passed through",
            "http://10.123.31.20:9080/reviews/0",
            vec![("host", "somewhere.example")],
        ),
    ];
    let proxies = sidecar_programs(test);
    for (name, program, args) in proxies {
        let mut server = start_proxy(
            &bed,
            &bed.server,
            &format!("{name}-server"),
            &program,
            &args,
            &server_bootstrap,
        );
        let mut client = start_proxy(
            &bed,
            &bed.client,
            &format!("{name}-client"),
            &program,
            &args,
            &client_bootstrap,
        );
        for (what, url, headers) in &cases {
            let r = bed.get(APP_UID, url, headers);
            let version = r
                .as_ref()
                .ok()
                .and_then(|r| r.header("x-demo-version"))
                .map(str::to_owned);
            assert_eq!(
                (r.as_ref().ok().map(|r| r.status), version.as_deref()),
                (Some(200), Some("loopback")),
                "{name}: {what}: {r:?}\nserver sidecar:\n{}\nclient sidecar:\n{}",
                server.stderr_tail(),
                client.stderr_tail(),
            );
        }
        for p in [&mut client, &mut server] {
            p.terminate_and_wait(Duration::from_secs(10)).unwrap();
        }
        eprintln!("{test} {name}: the ingress listener reached the app on the loopback");
    }
    for mut control in controls {
        control.terminate_and_wait(Duration::from_secs(10)).unwrap();
    }
    drop(app);
    drop(bed);
}

/// PeerAuthentication STRICT on a captured workload, served by the control plane to both sidecars
/// (one control plane, in the client pod, listening on its pod address; the server sidecar's ADS
/// connection is captured into the client's sidecar and passed through, PERMISSIVE there): the
/// client's sidecar reaches the service over mutual TLS on its own (auto mTLS), while plain text
/// straight to the pod's port (sent as the proxy's UID, so the client's capture lets it by) finds no
/// chain in the server's `virtualInbound` and is refused. Before, that connection fell to the
/// plain-text passthrough and reached the app.
#[test]
fn strict_mutual_tls_holds_under_capture() {
    let test = "strict_mutual_tls_holds_under_capture";
    if !can_run(test, missing_prerequisite()) {
        return;
    }
    let bed = match Testbed::new(Inbound::Redirect) {
        Ok(bed) => bed,
        Err(e) => {
            can_run(
                test,
                Some(format!("cannot set up the network namespaces: {e}")),
            );
            return;
        }
    };
    let listen = format!("{SERVER_IP}:9080");
    let app = start_reviews_app(&bed, &listen, "v1");
    let config = TempDir::new("capture-strict-control").unwrap();
    let mesh = format!(
        "services:
- name: reviews
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
workloads:
- {{name: productpage-v1, labels: {{app: productpage}}, address: {CLIENT_IP}}}
- {{name: reviews-1, service: reviews, labels: {{app: reviews}}, address: {SERVER_IP}}}
"
    );
    config.write("mesh.yaml", mesh.as_bytes()).unwrap();
    config
        .write(
            "strict.yaml",
            b"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
",
        )
        .unwrap();
    let dir = config.path().to_str().unwrap().to_owned();
    let mut control = start_control(&bed, &bed.client, &dir, &["--address", "0.0.0.0"]);
    let client_bootstrap = captured_bootstrap(
        &format!("sidecar~{CLIENT_IP}~productpage-v1.default~default.svc.cluster.local"),
        "app=productpage",
        "127.0.0.1:15010",
    );
    let server_bootstrap = captured_bootstrap(
        &format!("sidecar~{SERVER_IP}~reviews-1.default~default.svc.cluster.local"),
        "app=reviews",
        &format!("{CLIENT_IP}:15010"),
    );
    let proxies = sidecar_programs(test);
    for (name, program, args) in proxies {
        // The client's sidecar first: the server's reaches the control plane through it.
        let mut client = start_proxy(
            &bed,
            &bed.client,
            &format!("{name}-client"),
            &program,
            &args,
            &client_bootstrap,
        );
        let mut server = start_proxy(
            &bed,
            &bed.server,
            &format!("{name}-server"),
            &program,
            &args,
            &server_bootstrap,
        );
        let tail = |client: &mut Process, server: &mut Process| {
            format!(
                "server sidecar:\n{}\nclient sidecar:\n{}",
                server.stderr_tail(),
                client.stderr_tail()
            )
        };
        let through_sidecars = bed.get(
            APP_UID,
            "http://10.123.31.99:9080/reviews/0",
            &[("host", "reviews:9080")],
        );
        let version = through_sidecars
            .as_ref()
            .ok()
            .and_then(|r| r.header("x-demo-version"))
            .map(str::to_owned);
        assert_eq!(
            (
                through_sidecars.as_ref().ok().map(|r| r.status),
                version.as_deref()
            ),
            (Some(200), Some("v1")),
            "{name}: over mutual TLS: {through_sidecars:?}\n{}",
            tail(&mut client, &mut server)
        );
        let plain = bed.get(
            PROXY_UID,
            &format!("http://{SERVER_IP}:9080/reviews/0"),
            &[],
        );
        assert!(
            plain.is_err(),
            "{name}: plain text to a STRICT workload: {plain:?}\n{}",
            tail(&mut client, &mut server)
        );
        for p in [&mut client, &mut server] {
            p.terminate_and_wait(Duration::from_secs(10)).unwrap();
        }
        eprintln!("{test} {name}: mutual TLS through the sidecars, plain text refused");
    }
    control.terminate_and_wait(Duration::from_secs(10)).unwrap();
    drop(app);
    drop(bed);
}
