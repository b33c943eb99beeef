//! `bosun up` end to end: the port check, the parent-death trampoline, and Bookinfo through the ingress
//! with `bosun control`, `bosun proxy` sidecars and `bosun demo-app` workloads, stopped with nothing left
//! behind.
//!
//! Every test runs its mesh on its own loopback addresses (127.0.N.x, N random) and free control ports,
//! so tests do not collide with each other or with a mesh someone is running.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{Process, TempDir};

#[path = "support/netns.rs"]
mod netns;

const BOSUN: &str = env!("CARGO_BIN_EXE_bosun");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A third octet for this test's loopback addresses: different for every test of this run (tests run
/// in parallel threads of one process), varying between runs, never 10 (the examples' own).
fn random_octet() -> u8 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) >> 16;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    20 + (start.wrapping_add(n) % 200) as u8
}

/// Copies examples/bookinfo into `dir` with its addresses moved to 127.0.N.x (the ingress to
/// 127.0.N.100).
fn bookinfo_copy(dir: &Path, n: u8) -> PathBuf {
    let to = dir.join("bookinfo");
    std::fs::create_dir_all(&to).expect("mkdir");
    for entry in std::fs::read_dir(repo().join("examples/bookinfo")).expect("example") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        let text = std::fs::read_to_string(&path).expect("read");
        let text = text
            .replace("127.0.10.", &format!("127.0.{n}."))
            .replace("address: 127.0.0.1", &format!("address: 127.0.{n}.100"));
        std::fs::write(to.join(name), text).expect("write");
    }
    to
}

/// Starts `bosun up MESH` with free control-plane ports and `env`, and waits (30 s at most) for its
/// `ingress:` line. Returns the process and the debug port.
fn start_up(mesh: &Path, env: &[(&str, &str)]) -> (Process, String) {
    let xds = testkit::free_port().to_string();
    let debug = testkit::free_port().to_string();
    let mut up = Process::spawn(
        BOSUN,
        [
            "up",
            mesh.to_str().expect("utf-8"),
            "--xds-port",
            &xds,
            "--debug-port",
            &debug,
        ],
        env,
    )
    .expect("bosun up starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !up.stdout().contains("ingress: ") {
        up.check_running().expect("bosun up runs");
        assert!(Instant::now() < deadline, "not ready: {}", up.stderr_tail());
        std::thread::sleep(Duration::from_millis(50));
    }
    (up, debug)
}

/// Pids of processes whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(needle) {
                out.push((pid, cmd));
            }
        }
    }
    out
}

/// Children of `parent` (from /proc/PID/stat), with their command lines.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may contain spaces, so parse after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            let cmd = std::fs::read(e.path().join("cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
                .unwrap_or_default();
            out.push((pid, cmd));
        }
    }
    out
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Whether `pid` still runs `cmd` (a pid reused by something else does not count).
fn still_running(pid: u32, cmd: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " ") == cmd)
        .unwrap_or(false)
}

/// Waits (bounded) until none of `pids` runs any more; returns those that still do.
fn wait_gone(pids: &[(u32, String)], timeout: Duration) -> Vec<(u32, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<_> = pids
            .iter()
            .filter(|(p, c)| still_running(*p, c))
            .cloned()
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether this build has the subcommands a full mesh needs (they come from other branches).
fn has_subcommand(name: &str) -> bool {
    Command::new(BOSUN)
        .args([name, "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_taken_port_is_named_with_its_user_and_nothing_starts() {
    let dir = TempDir::new("up-port").expect("tempdir");
    let n = random_octet();
    let mesh = bookinfo_copy(dir.path(), n);
    // Hold reviews-v1's app port, as a stray process would.
    let taken: SocketAddr = format!("127.0.{n}.3:9080").parse().expect("addr");
    let _holder = std::net::TcpListener::bind(taken).expect("bind the port to hold");
    let xds = testkit::free_port().to_string();
    let debug = testkit::free_port().to_string();
    let out = Command::new(BOSUN)
        .args(["up", mesh.to_str().expect("utf-8"), "--xds-port", &xds])
        .args(["--debug-port", &debug])
        .env("TMPDIR", dir.path())
        .output()
        .expect("bosun up runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&taken.to_string()), "{stderr}");
    assert!(stderr.contains("reviews-v1"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "names the process holding it: {stderr}"
    );
    let left = processes_mentioning(&dir.path().display().to_string());
    assert!(left.is_empty(), "nothing may be left running: {left:?}");
    // The state directory was never made (or was removed).
    let state: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("bosun-up-"))
        .collect();
    assert!(state.is_empty(), "{state:?}");
}

#[test]
fn capture_options_are_checked_up_front() {
    let dir = TempDir::new("up-iptables").expect("tempdir");
    let mesh = bookinfo_copy(dir.path(), random_octet());
    let mesh = mesh.to_str().expect("utf-8");
    let out = Command::new(BOSUN)
        .args(["up", mesh, "--ingress-port", "18080"])
        .output()
        .expect("bosun up runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--ingress-port is for --capture iptables"),
        "{stderr}"
    );
    if netns::is_root() {
        return; // It would run: bookinfo_with_iptables_capture does.
    }
    let out = Command::new(BOSUN)
        .args(["up", mesh, "--capture", "iptables"])
        .output()
        .expect("bosun up runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--capture iptables needs root"), "{stderr}");
}

#[test]
fn apply_refuses_an_invalid_file_without_sending_it() {
    // Nothing listens on the control address: an invalid file must fail before any connection.
    let out = Command::new(BOSUN)
        .args(["apply", "-f"])
        .arg(repo().join("examples/mistakes/service-entry-typo.yaml"))
        .args(["--control", "http://127.0.0.1:1"])
        .output()
        .expect("bosun apply runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("service-entry-typo.yaml:9:3"), "{stdout}");
    assert!(stderr.contains("not sent"), "{stderr}");
    // A valid file with nobody listening: exit 2 and a hint.
    let out = Command::new(BOSUN)
        .args(["apply", "-f"])
        .arg(repo().join("examples/bookinfo/gateway.yaml"))
        .args(["--control", "http://127.0.0.1:1"])
        .output()
        .expect("bosun apply runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is the mesh running"), "{stderr}");
}

/// The trampoline children go through: when the thread that started a child ends (as when `bosun up`
/// is SIGKILLed), the kernel kills the child.
#[test]
fn children_die_with_their_parent() {
    let spawner = std::thread::spawn(|| {
        let child = Command::new(BOSUN)
            .args(["__up-child", "--parent", &std::process::id().to_string()])
            .args(["--", "sleep", "30"])
            .spawn()
            .expect("trampoline starts");
        // The death signal is set before exec: once the child runs `sleep`, it is armed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read(format!("/proc/{}/cmdline", child.id()))
            .is_ok_and(|c| c.starts_with(b"sleep"))
        {
            assert!(Instant::now() < deadline, "the trampoline never ran sleep");
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    });
    let mut child = spawner.join().expect("spawner thread");
    // The spawning thread is gone: PR_SET_PDEATHSIG fires (SIGKILL) once the child has set it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the child outlived its parent thread"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}");

    // A wrong parent (already gone) is refused rather than run unwatched.
    let status = Command::new(BOSUN)
        .args(["__up-child", "--parent", "1", "--", "true"])
        .status()
        .expect("runs");
    assert_eq!(status.code(), Some(1));
}

/// The body of a successful `GET /productpage`, retried until it is 200 or `timeout` passes.
fn get_until_ok(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match testkit::blocking_get(addr, path, Duration::from_secs(5)) {
            Ok((200, body)) => return Ok(body),
            Ok((status, body)) => last = format!("{status}: {body}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(last)
}

#[test]
fn bookinfo_serves_through_the_ingress_and_stops_cleanly() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-bookinfo").expect("tempdir");
    let n = random_octet();
    let mesh = bookinfo_copy(dir.path(), n);
    // Without the example's reviews VirtualService (90% v1 / 10% v3, v2 only for jason) the
    // DestinationRule's ROUND_ROBIN over all instances decides, so every version shows; its ratings
    // VirtualService delays 10% of calls by 2 s, which only slows the test.
    std::fs::remove_file(mesh.join("virtual-services.yaml")).expect("rm");
    let ingress: SocketAddr = format!("127.0.{n}.100:8080").parse().expect("addr");
    let xds = testkit::free_port().to_string();
    let debug = testkit::free_port().to_string();
    let tmp = dir.path().display().to_string();

    let start = Instant::now();
    let mut up = Process::spawn(
        BOSUN,
        [
            "up",
            mesh.to_str().expect("utf-8"),
            "--xds-port",
            &xds,
            "--debug-port",
            &debug,
        ],
        // The state directory (bootstraps) goes under the test's directory, so leftovers are findable.
        &[("TMPDIR", tmp.as_str())],
    )
    .expect("bosun up starts");

    let first = get_until_ok(ingress, "/productpage", Duration::from_secs(30));
    let to_first = start.elapsed();
    let body = match first {
        Ok(b) => b,
        Err(last) => panic!(
            "no 200 from http://{ingress}/productpage within 30 s (last: {last})\nstdout:\n{}\nstderr:\n{}",
            up.stdout(),
            up.stderr_tail()
        ),
    };
    eprintln!("bookinfo: first 200 through the ingress {to_first:?} after start");
    for want in ["productpage", "details", "reviews"] {
        assert!(body.contains(want), "{want} missing from {body}");
    }
    // Traffic may flow before `bosun up` has finished its own readiness round and printed the table.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !up.stdout().contains("ingress: ") {
        up.check_running().expect("bosun up still runs");
        assert!(Instant::now() < deadline, "no table: {}", up.stderr_tail());
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = up.stdout();
    assert!(out.contains(&format!("ingress: http://{ingress}")), "{out}");
    assert!(
        out.contains("reviews-v2") && out.contains(&format!("http://127.0.{n}.4:15000")),
        "{out}"
    );

    let children = children_of(up.pid());
    let rss: u64 = children.iter().map(|(p, _)| rss_kib(*p)).sum();
    eprintln!(
        "bookinfo: {} processes, total RSS {:.1} MiB",
        children.len(),
        rss as f64 / 1024.0
    );
    assert!(
        children.len() >= 1 + 7 + 6,
        "control, 7 proxies, 6 apps: {children:?}"
    );

    // Round robin over reviews v1, v2, v3; v2 and v3 call ratings.
    let mut versions = BTreeSet::new();
    for i in 0..60 {
        let body = get_until_ok(ingress, "/productpage", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        for v in ["reviews-v1", "reviews-v2", "reviews-v3"] {
            if body.contains(v) {
                versions.insert(v);
                if v != "reviews-v1" {
                    assert!(body.contains("ratings"), "{v} calls ratings: {body}");
                }
            }
        }
    }
    assert_eq!(
        versions.len(),
        3,
        "all reviews versions answer: {versions:?}"
    );

    let status = up
        .terminate_and_wait(Duration::from_secs(10))
        .expect("bosun up stops");
    assert!(status.success(), "{status:?}\n{}", up.stderr_tail());
    let left = wait_gone(&children, Duration::from_secs(5));
    assert!(left.is_empty(), "children left running: {left:?}");
    assert!(processes_mentioning(&tmp).is_empty());
}

#[test]
fn bookinfo_children_die_when_up_is_killed() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-kill").expect("tempdir");
    let n = random_octet();
    let mesh = bookinfo_copy(dir.path(), n);
    let tmp = dir.path().display().to_string();
    let (mut up, _) = start_up(&mesh, &[("TMPDIR", tmp.as_str())]);
    let children = children_of(up.pid());
    assert!(!children.is_empty());

    // A sidecar that dies is reported by name and status; the rest keeps running.
    let (proxy_pid, _) = children
        .iter()
        .find(|(_, cmd)| cmd.contains("reviews-v1.default.bootstrap"))
        .unwrap_or_else(|| panic!("no reviews-v1 proxy among {children:?}"));
    let _ = Command::new("kill")
        .args(["-KILL", &proxy_pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let reported = format!("reviews-v1/proxy (pid {proxy_pid}) exited unexpectedly with signal 9");
    while !up.stderr().contains(&reported) {
        assert!(
            Instant::now() < deadline,
            "not reported: {}",
            up.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    up.check_running().expect("the rest keeps running");

    up.kill().expect("SIGKILL");
    let left = wait_gone(&children, Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "children outlived a SIGKILLed bosun up: {left:?}"
    );
}

/// One request over a fresh connection, with `request_target` as given (absolute-form through a
/// sidecar's outbound listener, as apps send through `HTTP_PROXY`): status and body.
/// The number of the config version the control plane (debug port `debug`) last sent the proxy
/// whose node id contains `who`, and whether that proxy ACKed all of it.
fn sidecar_version(debug: &str, who: &str) -> Option<(u64, bool)> {
    let addr: SocketAddr = format!("127.0.0.1:{debug}").parse().ok()?;
    let (_, body) = raw_get(addr, "/debug/syncz", &format!("127.0.0.1:{debug}"), &[]);
    let proxies: serde_json::Value = serde_json::from_str(&body).ok()?;
    let proxy = proxies
        .as_array()?
        .iter()
        .find(|p| p["proxy"].as_str().is_some_and(|id| id.contains(who)))?;
    let version = proxy["version"]
        .as_str()?
        .trim_start_matches('v')
        .parse()
        .ok()?;
    Some((version, proxy["in_sync"] == true))
}

fn raw_get(addr: SocketAddr, target: &str, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Which reviews instance served a `/productpage` answer (first found).
fn reviews_version(body: &str) -> Option<&'static str> {
    ["reviews-v1", "reviews-v2", "reviews-v3"]
        .into_iter()
        .find(|v| body.contains(v))
}

/// `bosun apply -f FILE` against the mesh's debug port; panics unless it exits 0.
fn apply(file: &str, debug: &str) {
    let out = Command::new(BOSUN)
        .args(["apply", "-f"])
        .arg(repo().join("examples/bookinfo-scenarios").join(file))
        .args(["--control", &format!("http://127.0.0.1:{debug}")])
        .output()
        .expect("bosun apply runs");
    assert!(
        out.status.success(),
        "apply {file}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The scenario files of examples/bookinfo-scenarios, applied live to one running Bookinfo: a 90/10
/// rollout, then 50/50 with no failed request during the change, routing on `end-user`, routing on
/// `foo: bar1` through a sidecar, and an abort for one user only.
#[test]
fn bookinfo_scenarios_apply_live() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-scenarios").expect("tempdir");
    let n = random_octet();
    let mesh = bookinfo_copy(dir.path(), n);
    std::fs::remove_file(mesh.join("virtual-services.yaml")).expect("rm");
    let ingress: SocketAddr = format!("127.0.{n}.100:8080").parse().expect("addr");
    let tmp = dir.path().display().to_string();
    let (mut up, debug) = start_up(&mesh, &[("TMPDIR", tmp.as_str())]);
    let get = |headers: &[(&str, &str)]| raw_get(ingress, "/productpage", "bookinfo", headers);
    // Samples `count` answers (each must be 200) and returns the share of each reviews version.
    let sample = |count: usize, headers: &[(&str, &str)]| {
        let mut seen = std::collections::BTreeMap::<&str, usize>::new();
        for _ in 0..count {
            let (status, body) = get(headers);
            assert_eq!(status, 200, "{body}");
            *seen
                .entry(reviews_version(&body).unwrap_or("none"))
                .or_default() += 1;
        }
        seen
    };
    // Waits (bounded) until `ok` holds for 10 answers in a row: the change has reached the proxies.
    let settle = |what: &str, headers: &[(&str, &str)], ok: &dyn Fn(u16, &str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut streak = 0;
        while streak < 10 {
            assert!(
                Instant::now() < deadline,
                "{what} not in effect within 10 s"
            );
            let (status, body) = get(headers);
            streak = if ok(status, &body) { streak + 1 } else { 0 };
        }
    };

    apply("rollout-90-10.yaml", &debug);
    settle("90/10", &[], &|s, b| {
        s == 200 && reviews_version(b) != Some("reviews-v3")
    });
    let seen = sample(200, &[]);
    let v2 = seen.get("reviews-v2").copied().unwrap_or(0);
    eprintln!("90/10: {seen:?}");
    assert!((6..=40).contains(&v2), "about 10% v2: {seen:?}");
    assert!(!seen.contains_key("reviews-v3"), "{seen:?}");

    // The live change: every request during and after it succeeds.
    apply("rollout-50-50.yaml", &debug);
    let seen = sample(200, &[]);
    let v2 = seen.get("reviews-v2").copied().unwrap_or(0);
    eprintln!("50/50 (from the moment of the change): {seen:?}");
    assert!((60..=140).contains(&v2), "about half v2: {seen:?}");

    apply("jason-to-v2.yaml", &debug);
    settle("end-user routing", &[("end-user", "jason")], &|s, b| {
        s == 200 && reviews_version(b) == Some("reviews-v2")
    });
    let jason = sample(20, &[("end-user", "jason")]);
    assert_eq!(jason.get("reviews-v2"), Some(&20), "{jason:?}");
    let others = sample(20, &[]);
    assert_eq!(others.get("reviews-v1"), Some(&20), "{others:?}");

    // Through productpage's sidecar, as its app would call reviews.
    apply("header-routing.yaml", &debug);
    let sidecar: SocketAddr = format!("127.0.{n}.1:15001").parse().expect("addr");
    let via_sidecar = |headers: &[(&str, &str)]| {
        raw_get(
            sidecar,
            "http://reviews:9080/reviews/0",
            "reviews:9080",
            headers,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !via_sidecar(&[]).1.contains("reviews-v2") {
        assert!(Instant::now() < deadline, "header routing not in effect");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..10 {
        let (status, body) = via_sidecar(&[("foo", "bar1")]);
        assert_eq!(
            (status, reviews_version(&body)),
            (200, Some("reviews-v1")),
            "{body}"
        );
        let (status, body) = via_sidecar(&[]);
        assert_eq!(
            (status, reviews_version(&body)),
            (200, Some("reviews-v2")),
            "{body}"
        );
    }

    // jason reaches reviews v2 (header routing: everything but foo: bar1), which calls ratings,
    // which aborts for him; a failing callee fails the caller, up to productpage.
    apply("ratings-abort-for-jason.yaml", &debug);
    settle("the abort", &[("end-user", "jason")], &|s, _| s == 500);
    let (status, body) = get(&[]);
    assert_eq!(status, 200, "others pass: {body}");

    let status = up
        .terminate_and_wait(Duration::from_secs(10))
        .expect("stops");
    assert!(status.success(), "{status:?}");
}

/// Istio's destination-rule-all-mtls on a running Bookinfo (`examples/bookinfo-scenarios/mtls.yaml`):
/// once applied, calls from the ingress gateway and between the sidecars go over mutual TLS with the
/// identities the control plane issued, and `/productpage` still answers with every service in it.
#[test]
fn bookinfo_over_mutual_tls() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-mtls").expect("tempdir");
    let n = random_octet();
    let mesh = bookinfo_copy(dir.path(), n);
    std::fs::remove_file(mesh.join("virtual-services.yaml")).expect("rm");
    let ingress: SocketAddr = format!("127.0.{n}.100:8080").parse().expect("addr");
    let tmp = dir.path().display().to_string();
    let (mut up, debug) = start_up(&mesh, &[("TMPDIR", tmp.as_str())]);
    let get = || raw_get(ingress, "/productpage", "bookinfo", &[]);
    let (status, body) = get();
    assert_eq!(status, 200, "before: {body}");

    let before = sidecar_version(&debug, "productpage").map_or(0, |v| v.0);
    apply("mtls.yaml", &debug);
    let deadline = Instant::now() + Duration::from_secs(15);
    while sidecar_version(&debug, "productpage").is_none_or(|(v, in_sync)| !in_sync || v <= before)
    {
        assert!(
            Instant::now() < deadline,
            "productpage's sidecar never ACKed mtls.yaml"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // What productpage's sidecar now holds: mutual TLS to reviews, and its identity.
    let addr: SocketAddr = format!("127.0.0.1:{debug}").parse().expect("addr");
    let id = format!("sidecar~127.0.{n}.1~productpage-v1.default~default.svc.cluster.local");
    let (_, dump) = raw_get(
        addr,
        &format!("/debug/config_dump?proxy={id}"),
        &format!("127.0.0.1:{debug}"),
        &[],
    );
    assert!(
        dump.contains("outbound_.9080_.v1_.reviews.default.svc.cluster.local"),
        "{dump}"
    );
    assert!(dump.contains("spiffe") || dump.contains("ROOTCA"), "{dump}");

    // Every call of the page, over mutual TLS, still answers (each sidecar ACKs in its turn).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut streak = 0;
    while streak < 20 {
        assert!(Instant::now() < deadline, "/productpage over mutual TLS");
        let (status, body) = get();
        streak = if status == 200 && reviews_version(&body).is_some() {
            streak + 1
        } else {
            0
        };
    }

    let status = up
        .terminate_and_wait(Duration::from_secs(10))
        .expect("stops");
    assert!(status.success(), "{status:?}");
}

/// An app that never becomes ready (a `command` that does not listen) stops the start-up within
/// `--ready-timeout`, naming it; the command's whole process group is stopped.
#[test]
fn a_workload_that_never_listens_fails_the_start_and_is_stopped() {
    if !has_subcommand("control") {
        eprintln!("skipped: this build has no `bosun control` yet");
        return;
    }
    let dir = TempDir::new("up-notready").expect("tempdir");
    let n = random_octet();
    let mesh = dir.path().join("mesh");
    std::fs::create_dir_all(&mesh).expect("mkdir");
    // `sh` starts a `sleep` of its own: both must go (the process group is signalled).
    let marker = format!("{}", 400 + u32::from(n));
    std::fs::write(
        mesh.join("mesh.yaml"),
        format!(
            "services:\n- {{name: slow, ports: [{{number: 9080, name: http}}]}}\nworkloads:\n- name: slow-v1\n  service: slow\n  address: 127.0.{n}.1\n  command: [sh, -c, \"sleep {marker}; true\"]\n"
        ),
    )
    .expect("write");
    let xds = testkit::free_port().to_string();
    let debug = testkit::free_port().to_string();
    let started = Instant::now();
    let out = Command::new(BOSUN)
        .args(["up", mesh.to_str().expect("utf-8"), "--xds-port", &xds])
        .args(["--debug-port", &debug, "--ready-timeout", "3"])
        .output()
        .expect("bosun up runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not ready within 3s"), "{stderr}");
    assert!(
        stderr.contains(&format!("slow-v1: nothing accepts on 127.0.{n}.1:9080")),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let left = processes_mentioning(&format!("sleep {marker}"));
    assert!(
        left.is_empty(),
        "the command's processes were left: {left:?}"
    );
}

/// Without the control plane nothing can change: its death stops the mesh (exit 1), nothing left.
#[test]
fn the_control_plane_dying_stops_everything() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-control-dies").expect("tempdir");
    let n = random_octet();
    let mesh = bookinfo_copy(dir.path(), n);
    let (mut up, _) = start_up(&mesh, &[]);
    let children = children_of(up.pid());
    let (control, _) = children
        .iter()
        .find(|(_, cmd)| cmd.contains(" control "))
        .unwrap_or_else(|| panic!("no control among {children:?}"));
    let _ = Command::new("kill")
        .args(["-KILL", &control.to_string()])
        .status();
    let status = up
        .wait_timeout(Duration::from_secs(15))
        .expect("bosun up exits");
    assert_eq!(status.code(), Some(1), "{}", up.stderr_tail());
    assert!(
        up.stderr().contains("stopping everything"),
        "{}",
        up.stderr_tail()
    );
    let left = wait_gone(&children, Duration::from_secs(5));
    assert!(left.is_empty(), "children left running: {left:?}");
}

/// examples/boutique with its chaos scenarios: the catalog aborts with 400 only for the checkout
/// service (sourceLabels) while the frontend still gets answers; then a 2 s delay for about half.
#[test]
fn boutique_chaos_scenarios() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-boutique").expect("tempdir");
    let n = random_octet();
    let mesh = dir.path().join("boutique");
    std::fs::create_dir_all(&mesh).expect("mkdir");
    for f in ["mesh.yaml", "gateway.yaml"] {
        let text = std::fs::read_to_string(repo().join("examples/boutique").join(f)).expect("read");
        std::fs::write(
            mesh.join(f),
            text.replace("127.0.11.", &format!("127.0.{n}.")),
        )
        .expect("write");
    }
    let ingress: SocketAddr = format!("127.0.{n}.100:8080").parse().expect("addr");
    let frontend_sidecar: SocketAddr = format!("127.0.{n}.1:15001").parse().expect("addr");
    let (mut up, debug) = start_up(&mesh, &[]);
    let frontend = || raw_get(ingress, "/", "boutique", &[]);
    let checkout = || {
        raw_get(
            frontend_sidecar,
            "http://checkoutservice:5050/checkout",
            "checkoutservice:5050",
            &[],
        )
    };
    let (status, body) = frontend();
    assert_eq!(status, 200, "{body}");
    for service in [
        "productcatalogservice-v1",
        "currencyservice-v1",
        "cartservice-v1",
        "recommendationservice-v1",
    ] {
        assert!(body.contains(service), "{service} missing: {body}");
    }
    assert_eq!(checkout().0, 200);

    let apply = |file: &str| {
        let out = Command::new(BOSUN)
            .args(["apply", "-f"])
            .arg(repo().join("examples/boutique-scenarios").join(file))
            .args(["--control", &format!("http://127.0.0.1:{debug}")])
            .output()
            .expect("bosun apply runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    apply("chaos-abort-from-checkout.yaml");
    let deadline = Instant::now() + Duration::from_secs(10);
    while checkout().0 != 400 {
        assert!(Instant::now() < deadline, "the abort never applied");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..10 {
        assert_eq!(checkout().0, 400);
        let (status, body) = frontend();
        assert_eq!(status, 200, "the frontend is not aborted: {body}");
    }

    apply("chaos-delay.yaml");
    let deadline = Instant::now() + Duration::from_secs(10);
    while checkout().0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the delay scenario never replaced the abort"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut slow = 0;
    for _ in 0..12 {
        let started = Instant::now();
        let (status, _) = raw_get(
            frontend_sidecar,
            "http://productcatalogservice:3550/products",
            "productcatalogservice:3550",
            &[],
        );
        assert_eq!(status, 200);
        if started.elapsed() >= Duration::from_millis(1500) {
            slow += 1;
        }
    }
    eprintln!("boutique: {slow} of 12 catalog requests delayed");
    assert!(
        (1..=11).contains(&slow),
        "about half delayed, got {slow} of 12"
    );
    let status = up
        .terminate_and_wait(Duration::from_secs(10))
        .expect("stops");
    assert!(status.success(), "{status:?}");
}

/// examples/egress: under REGISTRY_ONLY an unregistered external host fails (502); the ServiceEntry of
/// examples/egress-scenarios opens it (answered by the local stand-in), and only it.
#[test]
fn egress_lockdown_and_a_service_entry_opening_it() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-egress").expect("tempdir");
    let n = random_octet();
    let moved = |path: &str| {
        std::fs::read_to_string(repo().join(path))
            .expect("read")
            .replace("127.0.12.", &format!("127.0.{n}."))
    };
    let mesh = dir.path().join("egress");
    std::fs::create_dir_all(&mesh).expect("mkdir");
    std::fs::write(mesh.join("mesh.yaml"), moved("examples/egress/mesh.yaml")).expect("write");
    let entry = dir.path().join("allow-api-external.yaml");
    std::fs::write(
        &entry,
        moved("examples/egress-scenarios/allow-api-external.yaml"),
    )
    .expect("write");
    let (mut up, debug) = start_up(&mesh, &[]);
    let sidecar: SocketAddr = format!("127.0.{n}.1:15001").parse().expect("addr");
    let external = || {
        raw_get(
            sidecar,
            "http://api.external.test:8080/",
            "api.external.test:8080",
            &[],
        )
    };
    let other = || {
        raw_get(
            sidecar,
            "http://other.external.test:8080/",
            "other.external.test:8080",
            &[],
        )
    };
    assert_eq!(external().0, 502, "locked down");

    let out = Command::new(BOSUN)
        .args(["apply", "-f"])
        .arg(&entry)
        .args(["--control", &format!("http://127.0.0.1:{debug}")])
        .output()
        .expect("bosun apply runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = external();
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the ServiceEntry never opened it: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("\"instance\":\"api-external\""), "{body}");
    assert_eq!(other().0, 502, "only the named host is opened");
    let status = up
        .terminate_and_wait(Duration::from_secs(10))
        .expect("stops");
    assert!(status.success(), "{status:?}");
}

/// Load balancing and circuit breaking on Bookinfo's reviews (examples/bookinfo-scenarios), with a
/// fourth reviews instance that always fails: ROUND_ROBIN answers in turn, RANDOM repeats, outlier
/// detection ejects the failing instance, and the connection pool's overflow is answered 503 at once.
#[test]
fn bookinfo_load_balancing_and_circuit_breaking() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-lb").expect("tempdir");
    let n = random_octet();
    let mesh = bookinfo_copy(dir.path(), n);
    std::fs::remove_file(mesh.join("virtual-services.yaml")).expect("rm");
    let mut file = std::fs::read_to_string(mesh.join("mesh.yaml")).expect("read");
    file.push_str(&format!(
        "- {{name: reviews-v1-faulty, service: reviews, labels: {{app: reviews, version: v1}}, address: 127.0.{n}.7, failRate: 1}}\n"
    ));
    std::fs::write(mesh.join("mesh.yaml"), file).expect("write");
    let (mut up, debug) = start_up(&mesh, &[]);
    // As productpage's app calls reviews: through its sidecar.
    let sidecar: SocketAddr = format!("127.0.{n}.1:15001").parse().expect("addr");
    let reviews = |path: &str| {
        let (status, body) = raw_get(
            sidecar,
            &format!("http://reviews:9080{path}"),
            "reviews:9080",
            &[],
        );
        let instance = [
            "reviews-v1-faulty",
            "reviews-v1",
            "reviews-v2",
            "reviews-v3",
        ]
        .into_iter()
        .find(|i| body.contains(&format!("\"instance\":\"{i}\"")))
        .unwrap_or("none");
        (status, instance)
    };
    // Applies a scenario and waits until productpage's sidecar has ACKed the config it made, so
    // that what follows is measured under it (on a loaded machine a push can take a while).
    let apply = |file: &str| {
        let before = sidecar_version(&debug, "productpage");
        let out = Command::new(BOSUN)
            .args(["apply", "-f"])
            .arg(repo().join("examples/bookinfo-scenarios").join(file))
            .args(["--control", &format!("http://127.0.0.1:{debug}")])
            .output()
            .expect("bosun apply runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while sidecar_version(&debug, "productpage")
            .is_none_or(|(v, in_sync)| !in_sync || v <= before.map_or(0, |b| b.0))
        {
            assert!(
                Instant::now() < deadline,
                "{file}: productpage's sidecar never ACKed it"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // The example's ROUND_ROBIN: every instance in turn, the faulty one answering 500.
    let seq: Vec<(u16, &str)> = (0..16).map(|_| reviews("/r")).collect();
    eprintln!("round robin: {seq:?}");
    assert!(seq.windows(2).all(|w| w[0].1 != w[1].1), "in turn: {seq:?}");
    assert!(
        seq.iter()
            .all(|(s, i)| (*s == 500) == (*i == "reviews-v1-faulty")),
        "{seq:?}"
    );
    assert_eq!(
        seq.iter().map(|(_, i)| *i).collect::<BTreeSet<_>>().len(),
        4,
        "{seq:?}"
    );

    // RANDOM: sooner or later the same instance twice in a row (never under round robin).
    apply("lb-random.yaml");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = reviews("/r").1;
    loop {
        assert!(
            Instant::now() < deadline,
            "no repeat within 10 s: still round robin?"
        );
        let now = reviews("/r").1;
        if now == last {
            break;
        }
        last = now;
    }

    // Outlier detection: after its first 500 the faulty instance is ejected (30 s).
    apply("circuit-breaking.yaml");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut streak = 0;
    while streak < 20 {
        assert!(
            Instant::now() < deadline,
            "the failing instance was never ejected"
        );
        streak = if reviews("/r").0 == 200 {
            streak + 1
        } else {
            0
        };
    }

    // The connection pool: one connection, one pending request; the rest is refused by the
    // sidecar itself (a 503 no instance answered), not queued behind the slow requests. Told apart
    // by who answered, not by how long it took, which a loaded machine stretches.
    let started = Instant::now();
    let answers: Vec<(u16, &str)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10).map(|_| s.spawn(|| reviews("/delay/500"))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    eprintln!("overflow: {answers:?} in {:?}", started.elapsed());
    let refused = answers
        .iter()
        .filter(|(s, i)| *s == 503 && *i == "none")
        .count();
    assert!(
        refused >= 5,
        "most of the overflow is refused by the sidecar: {answers:?}"
    );
    assert!(answers.iter().any(|(s, _)| *s == 200), "{answers:?}");
    let status = up
        .terminate_and_wait(Duration::from_secs(10))
        .expect("stops");
    assert!(status.success(), "{status:?}");
}

/// examples/egress-tls: the workload speaks plain HTTP to api.tls.test; its sidecar sends it to the egress
/// gateway, which originates TLS (SNI, certificate checked against the test CA) to the local stand-in.
#[test]
fn egress_gateway_originates_tls() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-egress-tls").expect("tempdir");
    let n = random_octet();
    for sub in ["egress-tls", "egress-tls-server"] {
        let to = dir.path().join(sub);
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(repo().join("examples").join(sub)).expect("example") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path)
                .expect("read")
                .replace("127.0.13.", &format!("127.0.{n}."))
                .replace(
                    "caCertificates: examples/egress-tls-server/ca.pem",
                    &format!(
                        "caCertificates: {}",
                        dir.path().join("egress-tls-server/ca.pem").display()
                    ),
                );
            std::fs::write(to.join(path.file_name().expect("name")), text).expect("write");
        }
    }
    let mesh = dir.path().join("egress-tls");
    let (mut up, _) = start_up(&mesh, &[]);
    let sidecar: SocketAddr = format!("127.0.{n}.1:15001").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = raw_get(sidecar, "http://api.tls.test/hello", "api.tls.test", &[]);
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "{status} {body}\n{}",
            up.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(body, "hello from api.tls.test, over TLS\n");
    // It went through the gateway, encrypted: the gateway's cluster to port 8443 carried it.
    let gateway_admin: SocketAddr = format!("127.0.{n}.200:15000").parse().expect("addr");
    let (_, stats) =
        testkit::blocking_get(gateway_admin, "/stats", Duration::from_secs(5)).expect("stats");
    let sent = stats
        .lines()
        .find(|l| l.starts_with("cluster.outbound|8443||api.tls.test.upstream_rq_total:"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        sent >= 1,
        "the egress gateway's TLS cluster sent nothing:\n{stats}"
    );
    let status = up
        .terminate_and_wait(Duration::from_secs(10))
        .expect("stops");
    assert!(status.success(), "{status:?}");
}

/// Through the explicit proxy at `proxy`: `CONNECT authority`, then TLS to `server_name` (the
/// certificate checked against the CA in `ca_pem`, with the server name), then `GET path`. The
/// CONNECT's status when the tunnel was refused, else the answer's status and body.
fn https_get_through(
    proxy: SocketAddr,
    authority: &str,
    server_name: &str,
    ca_pem: &Path,
    path: &str,
) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Empty};
    let roots = mesh_tls::RootStore::from_pem(&std::fs::read(ca_pem).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let config =
        mesh_tls::client_config(&mesh_tls::ClientOptions::new(mesh_tls::Verify::Full(roots)))
            .map_err(|e| e.to_string())?;
    let name = mesh_tls::rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let tunnel = testkit::connect_tunnel(proxy, authority)
            .await
            .map_err(|e| e.to_string())?;
        if tunnel.status != 200 {
            return Ok((tunnel.status, String::new()));
        }
        let exchange = async {
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tunnel.stream)
                .await
                .map_err(|e| format!("TLS through the tunnel: {e}"))?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = hyper::Request::builder()
                .uri(path)
                .header("host", server_name)
                .body(Empty::<bytes::Bytes>::new())
                .map_err(|e| e.to_string())?;
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| "no answer through the tunnel within 10 s".to_owned())?
    })
}

/// examples/egress-https: an app's HTTPS through its sidecar (`HTTPS_PROXY`): `CONNECT` to the
/// ServiceEntry host's port is tunnelled to its endpoint, with TLS end to end (the client checks the
/// server's certificate against the test CA); under REGISTRY_ONLY an unregistered host or port is
/// refused (404).
#[test]
fn https_through_the_sidecar_with_connect() {
    if !has_subcommand("control") {
        eprintln!("skipped: this build has no `bosun control` yet");
        return;
    }
    let dir = TempDir::new("up-egress-https").expect("tempdir");
    let n = random_octet();
    for sub in ["egress-https", "egress-tls-server"] {
        let to = dir.path().join(sub);
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(repo().join("examples").join(sub)).expect("example") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path)
                .expect("read")
                .replace("127.0.13.", &format!("127.0.{n}."));
            std::fs::write(to.join(path.file_name().expect("name")), text).expect("write");
        }
    }
    let ca = dir.path().join("egress-tls-server/ca.pem");
    let (mut up, _) = start_up(&dir.path().join("egress-https"), &[]);
    let sidecar: SocketAddr = format!("127.0.{n}.1:15001").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match https_get_through(sidecar, "api.tls.test:8443", "api.tls.test", &ca, "/hello") {
            Ok((200, body)) => break body,
            other => assert!(Instant::now() < deadline, "{other:?}\n{}", up.stderr_tail()),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(body, "hello from api.tls.test, over TLS\n");
    // The client really checks the certificate: another name fails the handshake.
    let wrong = https_get_through(
        sidecar,
        "api.tls.test:8443",
        "other.tls.test",
        &ca,
        "/hello",
    );
    assert!(
        wrong.as_ref().is_err_and(|e| e.contains("TLS")),
        "{wrong:?}"
    );
    for unregistered in ["other.tls.test:8443", "api.tls.test:9443"] {
        assert_eq!(
            https_get_through(sidecar, unregistered, "api.tls.test", &ca, "/hello"),
            Ok((404, String::new())),
            "CONNECT {unregistered}"
        );
    }
    // It went through the sidecar's tunnel to the ServiceEntry's cluster.
    let admin: SocketAddr = format!("127.0.{n}.1:15000").parse().expect("addr");
    let (_, stats) = testkit::blocking_get(admin, "/stats", Duration::from_secs(5)).expect("stats");
    let tunnels = stats
        .lines()
        .find(|l| l.starts_with("cluster.outbound|8443||api.tls.test.upstream_cx_total:"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        tunnels >= 2,
        "the tunnels did not use the cluster:\n{stats}"
    );
    let status = up
        .terminate_and_wait(Duration::from_secs(10))
        .expect("stops");
    assert!(status.success(), "{status:?}");
}

/// Edits of mesh.yaml while the mesh runs: what only the control plane needs is passed on (the
/// effective registry is rewritten); a typo keeps the previous version; a change to what runs asks for a
/// restart.
#[test]
fn mesh_file_edits_are_passed_on_or_refused_with_the_reason() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-edit").expect("tempdir");
    let n = random_octet();
    let mesh = dir.path().join("egress");
    std::fs::create_dir_all(&mesh).expect("mkdir");
    let original = std::fs::read_to_string(repo().join("examples/egress/mesh.yaml"))
        .expect("read")
        .replace("127.0.12.", &format!("127.0.{n}."));
    std::fs::write(mesh.join("mesh.yaml"), &original).expect("write");
    let xds = testkit::free_port().to_string();
    let debug = testkit::free_port().to_string();
    let tmp = dir.path().display().to_string();
    let mut up = Process::spawn(
        BOSUN,
        [
            "up",
            mesh.to_str().expect("utf-8"),
            "--xds-port",
            &xds,
            "--debug-port",
            &debug,
        ],
        &[("TMPDIR", tmp.as_str())],
    )
    .expect("bosun up starts");
    let wait_for = |up: &mut Process, text: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(up.stdout().contains(text) || up.stderr().contains(text)) {
            up.check_running().expect("bosun up runs");
            assert!(
                Instant::now() < deadline,
                "no {text:?}: {}",
                up.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&mut up, "ingress: ");
    let state = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("bosun-up-"))
        .expect("the state directory")
        .path();
    let registry = || std::fs::read_to_string(state.join("registry.json")).expect("registry");
    assert!(registry().contains("REGISTRY_ONLY"));

    std::fs::write(
        mesh.join("mesh.yaml"),
        original.replace("REGISTRY_ONLY", "ALLOW_ANY"),
    )
    .expect("write");
    wait_for(&mut up, "changed; passed on to the control plane");
    assert!(registry().contains("ALLOW_ANY"), "{}", registry());

    std::fs::write(
        mesh.join("mesh.yaml"),
        original.replace("services:", "servics:"),
    )
    .expect("write");
    wait_for(&mut up, "changed but has errors");
    assert!(
        up.stderr().contains("did you mean \"services\""),
        "{}",
        up.stderr_tail()
    );
    assert!(
        registry().contains("ALLOW_ANY"),
        "the previous version stays"
    );

    // A changed instance is restarted with its new definition; the other keeps its process.
    let old_sleep = instance_processes(up.pid(), "sleep-v1");
    let external = instance_processes(up.pid(), "api-external");
    assert_eq!(
        (old_sleep.len(), external.len()),
        (2, 1),
        "sidecar and app; app"
    );
    std::fs::write(
        mesh.join("mesh.yaml"),
        original.replace("version: v1", "version: v2"),
    )
    .expect("write");
    wait_for(&mut up, "mesh.yaml: restarted sleep-v1");
    assert!(registry().contains("\"v2\""), "{}", registry());
    let left = wait_gone(&old_sleep, Duration::from_secs(10));
    assert!(left.is_empty(), "the old sleep-v1 runs on: {left:?}");
    assert_eq!(instance_processes(up.pid(), "sleep-v1").len(), 2);
    assert!(external.iter().all(|(p, c)| still_running(*p, c)));
    let status = up
        .terminate_and_wait(Duration::from_secs(10))
        .expect("stops");
    assert!(status.success(), "{status:?}");
    assert!(!state.exists(), "the state directory is removed");
}

/// Network namespaces (`ip netns list`) whose names start with `prefix`.
fn namespaces_with(prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.retain(|n| n.starts_with(prefix));
    out
}

/// `bosun up --capture iptables`: Bookinfo with a network namespace per instance, Istio's REDIRECT
/// rules and names resolved through the pods' hosts files (the apps have no `HTTP_PROXY`: only the
/// capture brings their calls to `details` and `reviews` to their sidecars), reached through the
/// ingress relay on this machine's loopback; mesh.yaml edits add and remove pods live and move the
/// relay with the gateway; a leftover namespace of a dead run is removed at start, and after SIGTERM
/// no namespace, hosts file or process of the run is left.
#[test]
fn bookinfo_with_iptables_capture() {
    let test = "bookinfo_with_iptables_capture";
    if !netns::can_run(test, netns::missing_prerequisite()) {
        return;
    }
    // A leftover of a run that was SIGKILLed: a pid that no longer runs.
    let mut gone = Command::new("true").spawn().expect("true");
    gone.wait().expect("true exits");
    let leftover = format!("bosun-{}-0", gone.id());
    let made = Command::new("ip")
        .args(["netns", "add", &leftover])
        .status()
        .expect("ip runs");
    assert!(made.success(), "cannot make {leftover}");
    std::fs::create_dir_all(format!("/etc/netns/{leftover}")).expect("mkdir /etc/netns/…");

    let dir = TempDir::new("up-capture").expect("tempdir");
    let n = random_octet();
    let mesh = bookinfo_copy(dir.path(), n);
    std::fs::remove_file(mesh.join("virtual-services.yaml")).expect("rm");
    let port = testkit::free_port();
    let ingress: SocketAddr = format!("127.0.{n}.100:{port}").parse().expect("addr");
    let debug = testkit::free_port();
    let tmp = dir.path().display().to_string();
    let start = Instant::now();
    let mut up = Process::spawn(
        BOSUN,
        [
            "up",
            mesh.to_str().expect("utf-8"),
            "--capture",
            "iptables",
            "--ingress-port",
            &port.to_string(),
            "--debug-port",
            &debug.to_string(),
        ],
        &[("TMPDIR", tmp.as_str())],
    )
    .expect("bosun up starts");
    let prefix = format!("bosun-{}-", up.pid());

    let body = get_until_ok(ingress, "/productpage", Duration::from_secs(40)).unwrap_or_else(|last| {
        panic!(
            "no 200 from http://{ingress}/productpage within 40 s (last: {last})\nstdout:\n{}\nstderr:\n{}",
            up.stdout(),
            up.stderr_tail()
        )
    });
    eprintln!(
        "{test}: first 200 through the ingress {:?} after start",
        start.elapsed()
    );
    for want in ["productpage", "details", "reviews"] {
        assert!(body.contains(want), "{want} missing from {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !up.stdout().contains("ingress: ") {
        up.check_running().expect("bosun up still runs");
        assert!(Instant::now() < deadline, "no table: {}", up.stderr_tail());
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = up.stdout();
    assert!(out.contains(&format!("ingress: http://{ingress}")), "{out}");
    assert!(out.contains(&format!("(netns {prefix}hub)")), "{out}");
    assert!(
        !namespaces_with(&leftover).iter().any(|n| n == &leftover),
        "the leftover {leftover} is still there"
    );
    assert!(!Path::new(&format!("/etc/netns/{leftover}")).exists());
    // Eight namespaces: the hub, six apps, the ingress gateway.
    assert_eq!(
        namespaces_with(&prefix).len(),
        8,
        "{:?}",
        namespaces_with(&prefix)
    );
    // `bosun apply` reaches the control plane (in the hub) through the debug relay.
    let ready = testkit::blocking_get(
        format!("127.0.0.1:{debug}").parse().expect("addr"),
        "/ready",
        Duration::from_secs(5),
    );
    assert!(matches!(ready, Ok((200, _))), "{ready:?}");

    let mut versions = BTreeSet::new();
    for i in 0..60 {
        let body = get_until_ok(ingress, "/productpage", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        for v in ["reviews-v1", "reviews-v2", "reviews-v3"] {
            if body.contains(v) {
                versions.insert(v);
                if v != "reviews-v1" {
                    assert!(body.contains("ratings"), "{v} calls ratings: {body}");
                }
            }
        }
    }
    assert_eq!(
        versions.len(),
        3,
        "all reviews versions answer: {versions:?}"
    );

    // mesh.yaml edits: a new instance gets a pod (its app reached only through the capture), a
    // removed one loses its pod, the others keep their processes.
    let before = children_of(up.pid());
    let mesh_file = mesh.join("mesh.yaml");
    let original = std::fs::read_to_string(&mesh_file).expect("read");
    let with_v4 = format!(
        "{original}- {{name: reviews-v4, service: reviews, labels: {{app: reviews, version: v4}}, calls: [ratings:9080/ratings/0]}}\n"
    );
    std::fs::write(&mesh_file, &with_v4).expect("write");
    wait_output(
        &mut up,
        "mesh.yaml: started reviews-v4",
        Duration::from_secs(30),
    );
    assert_eq!(
        namespaces_with(&prefix).len(),
        9,
        "{:?}",
        namespaces_with(&prefix)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = get_until_ok(ingress, "/productpage", Duration::from_secs(10)).expect("200");
        if body.contains("reviews-v4") {
            assert!(body.contains("ratings"), "reviews-v4 calls ratings: {body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reviews-v4 never answered: {body}"
        );
    }
    let v3 = instance_processes(up.pid(), "reviews-v3");
    assert_eq!(v3.len(), 2, "reviews-v3's sidecar and app");
    let without_v3 = with_v4.replacen(
        &format!(
            "- name: reviews-v3\n  service: reviews\n  labels: {{app: reviews, version: v3}}\n  address: 127.0.{n}.5\n  calls: [ratings:9080/ratings/0]\n"
        ),
        "",
        1,
    );
    assert_ne!(without_v3, with_v4, "reviews-v3 is in the file");
    std::fs::write(&mesh_file, &without_v3).expect("write");
    wait_output(
        &mut up,
        "mesh.yaml: stopped reviews-v3",
        Duration::from_secs(30),
    );
    assert!(
        wait_gone(&v3, Duration::from_secs(10)).is_empty(),
        "reviews-v3 runs on"
    );
    assert_eq!(
        namespaces_with(&prefix).len(),
        8,
        "{:?}",
        namespaces_with(&prefix)
    );
    for i in 0..30 {
        let body = get_until_ok(ingress, "/productpage", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert!(!body.contains("reviews-v3"), "reviews-v3 answered: {body}");
    }
    let restarted: Vec<_> = before
        .iter()
        .filter(|(p, c)| !v3.iter().any(|(q, _)| q == p) && !still_running(*p, c))
        .collect();
    assert!(
        restarted.is_empty(),
        "unchanged instances restarted: {restarted:?}"
    );
    // The ingress gateway restarted (new labels) is in a new pod: the relay follows it.
    std::fs::write(
        &mesh_file,
        without_v3.replace(
            "labels: {istio: ingressgateway}",
            "labels: {istio: ingressgateway, revision: b}",
        ),
    )
    .expect("write");
    wait_output(
        &mut up,
        "mesh.yaml: restarted istio-ingressgateway",
        Duration::from_secs(30),
    );
    get_until_ok(ingress, "/productpage", Duration::from_secs(20)).unwrap_or_else(|e| {
        panic!(
            "no answer through the moved ingress: {e}\n{}",
            up.stderr_tail()
        )
    });
    assert_eq!(
        namespaces_with(&prefix).len(),
        8,
        "{:?}",
        namespaces_with(&prefix)
    );

    let children = children_of(up.pid());
    assert!(
        children.len() >= 1 + 7 + 6,
        "control, 7 proxies, 6 apps: {children:?}"
    );
    let status = up
        .terminate_and_wait(Duration::from_secs(15))
        .expect("bosun up stops");
    assert!(status.success(), "{status:?}\n{}", up.stderr_tail());
    let left = wait_gone(&children, Duration::from_secs(5));
    assert!(left.is_empty(), "children left running: {left:?}");
    assert!(processes_mentioning(&tmp).is_empty());
    assert!(
        namespaces_with(&prefix).is_empty(),
        "{:?}",
        namespaces_with(&prefix)
    );
    let hosts = std::fs::read_dir("/etc/netns").map_or(0, |d| {
        d.flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .count()
    });
    assert_eq!(hosts, 0, "hosts files of the run are left in /etc/netns");
}

/// examples/bookinfo-scenarios/lb-least-request.yaml: with LEAST_REQUEST, a reviews instance that is slow
/// to answer gets less of the traffic (round robin would give it a third).
#[test]
fn bookinfo_least_request_avoids_a_slow_instance() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-least-request").expect("tempdir");
    let n = random_octet();
    let mesh = bookinfo_copy(dir.path(), n);
    std::fs::remove_file(mesh.join("virtual-services.yaml")).expect("rm");
    std::fs::copy(
        repo().join("examples/bookinfo-scenarios/lb-least-request.yaml"),
        mesh.join("lb-least-request.yaml"),
    )
    .expect("copy");
    let file = std::fs::read_to_string(mesh.join("mesh.yaml")).expect("read");
    let slow_v3 = file.replace(
        &format!("  address: 127.0.{n}.5\n"),
        &format!("  address: 127.0.{n}.5\n  latencyMs: 300\n"),
    );
    assert_ne!(file, slow_v3, "reviews-v3 found in the mesh file");
    std::fs::write(mesh.join("mesh.yaml"), slow_v3).expect("write");
    let (mut up, _) = start_up(&mesh, &[]);
    // As productpage's app calls reviews: through its sidecar, six at a time.
    let sidecar: SocketAddr = format!("127.0.{n}.1:15001").parse().expect("addr");
    let served: Vec<Option<&'static str>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    (0..20)
                        .map(|_| {
                            let (status, body) =
                                raw_get(sidecar, "http://reviews:9080/r", "reviews:9080", &[]);
                            assert_eq!(status, 200, "{body}");
                            ["reviews-v1", "reviews-v2", "reviews-v3"]
                                .into_iter()
                                .find(|i| body.contains(&format!("\"instance\":\"{i}\"")))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    let count = |i: &str| served.iter().filter(|s| **s == Some(i)).count();
    let (v1, v2, v3) = (
        count("reviews-v1"),
        count("reviews-v2"),
        count("reviews-v3"),
    );
    eprintln!("LEAST_REQUEST with a slow reviews-v3: v1 {v1}, v2 {v2}, v3 {v3}");
    assert!(
        v3 * 4 < served.len(),
        "v3 is slow and should get well under a third"
    );
    assert!(v1 > 30 && v2 > 30, "v1 {v1}, v2 {v2}");
    let status = up
        .terminate_and_wait(Duration::from_secs(10))
        .expect("stops");
    assert!(status.success(), "{status:?}");
}

/// Waits (at most `timeout`) until `text` is in `up`'s stdout or stderr.
fn wait_output(up: &mut Process, text: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !(up.stdout().contains(text) || up.stderr().contains(text)) {
        up.check_running().expect("bosun up runs");
        assert!(
            Instant::now() < deadline,
            "no {text:?} within {timeout:?}: {}",
            up.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The processes of `bosun up` (pid `up`) that belong to instance `name` (namespace default): its
/// sidecar (by its bootstrap file) and its app (by `BOSUN_INSTANCE`).
fn instance_processes(up: u32, name: &str) -> Vec<(u32, String)> {
    let env = format!("BOSUN_INSTANCE={name}\0");
    children_of(up)
        .into_iter()
        .filter(|(pid, cmd)| {
            cmd.contains(&format!("/{name}.default.bootstrap.json"))
                || std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|e| String::from_utf8_lossy(&e).contains(&env))
        })
        .collect()
}

/// Whether `text` has `mesh.yaml:LINE:COL:` in it.
fn has_mesh_position(text: &str) -> bool {
    text.match_indices("mesh.yaml:").any(|(at, m)| {
        let mut parts = text[at + m.len()..].splitn(3, ':');
        let digits = |s: Option<&str>| {
            s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        };
        digits(parts.next()) && digits(parts.next())
    })
}

/// mesh.yaml edited while Bookinfo runs: a new reviews version is started and gets traffic, a removed
/// one is stopped and gets none, the other instances keep their processes and no request fails
/// meanwhile; a broken edit is refused with its position and the mesh keeps serving; a new instance
/// whose port is taken is refused naming the port and its user, and started once the port is free and
/// the file saved again; the ingress gateway moved to another address is announced there; nothing is
/// left after SIGTERM.
#[test]
fn mesh_file_edits_start_and_stop_instances_live() {
    if !has_subcommand("control") || !has_subcommand("demo-app") {
        eprintln!("skipped: this build has no `bosun control` or `bosun demo-app` yet");
        return;
    }
    let dir = TempDir::new("up-live").expect("tempdir");
    let n = random_octet();
    let mesh = bookinfo_copy(dir.path(), n);
    // Round robin over every reviews instance, whatever its version (as in the test above).
    std::fs::remove_file(mesh.join("virtual-services.yaml")).expect("rm");
    let ingress: SocketAddr = format!("127.0.{n}.100:8080").parse().expect("addr");
    let tmp = dir.path().display().to_string();
    let (mut up, _debug) = start_up(&mesh, &[("TMPDIR", tmp.as_str())]);
    let mesh_file = mesh.join("mesh.yaml");
    let original = std::fs::read_to_string(&mesh_file).expect("read");
    let before = children_of(up.pid());
    let v3 = instance_processes(up.pid(), "reviews-v3");
    assert_eq!(v3.len(), 2, "reviews-v3's sidecar and app: {before:?}");

    // Traffic all along the two edits: every answer must be a 200.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match testkit::blocking_get(ingress, "/productpage", Duration::from_secs(10)) {
                    Ok((200, _)) => ok += 1,
                    Ok((status, body)) => failed.push(format!("{status}: {body}")),
                    Err(e) => failed.push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (ok, failed)
        })
    };

    let v4 = format!(
        "- {{name: reviews-v4, service: reviews, labels: {{app: reviews, version: v4}}, address: 127.0.{n}.7}}\n"
    );
    let with_v4 = format!("{original}{v4}");
    let edited = Instant::now();
    std::fs::write(&mesh_file, &with_v4).expect("write");
    wait_output(
        &mut up,
        "mesh.yaml: started reviews-v4",
        Duration::from_secs(30),
    );
    eprintln!("started reviews-v4 {:?} after the edit", edited.elapsed());
    // Its row in the table follows the announcement (on stdout, the announcement on stderr).
    wait_output(&mut up, "reviews-v4.default", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = get_until_ok(ingress, "/productpage", Duration::from_secs(10)).expect("200");
        if body.contains("reviews-v4") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reviews-v4 never answered: {body}"
        );
    }
    let restarted: Vec<_> = before
        .iter()
        .filter(|(p, c)| !still_running(*p, c))
        .collect();
    assert!(
        restarted.is_empty(),
        "unchanged instances restarted: {restarted:?}"
    );

    // reviews-v3 removed.
    let without_v3 = with_v4.replacen(
        &format!(
            "- name: reviews-v3\n  service: reviews\n  labels: {{app: reviews, version: v3}}\n  address: 127.0.{n}.5\n  calls: [ratings:9080/ratings/0]\n"
        ),
        "",
        1,
    );
    assert_ne!(without_v3, with_v4, "reviews-v3 is in the file");
    let edited = Instant::now();
    std::fs::write(&mesh_file, &without_v3).expect("write");
    wait_output(
        &mut up,
        "mesh.yaml: stopped reviews-v3",
        Duration::from_secs(30),
    );
    eprintln!("stopped reviews-v3 {:?} after the edit", edited.elapsed());
    let left = wait_gone(&v3, Duration::from_secs(10));
    assert!(left.is_empty(), "reviews-v3 still runs: {left:?}");
    for i in 0..30 {
        let body = get_until_ok(ingress, "/productpage", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert!(!body.contains("reviews-v3"), "reviews-v3 answered: {body}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = traffic.join().expect("traffic thread");
    eprintln!(
        "during the edits: {ok} answers of 200, {} failed",
        failed.len()
    );
    assert!(
        ok > 0 && failed.is_empty(),
        "failed during the edits: {failed:?}"
    );
    let others: Vec<_> = before
        .iter()
        .filter(|(p, _)| !v3.iter().any(|(q, _)| q == p))
        .collect();
    assert!(
        others.iter().all(|(p, c)| still_running(*p, c)),
        "the others keep running"
    );

    // A broken edit: refused with its position, the mesh as it was.
    std::fs::write(&mesh_file, without_v3.replace("services:", "servics:")).expect("write");
    wait_output(&mut up, "changed but has errors", Duration::from_secs(20));
    assert!(
        has_mesh_position(&up.stderr()),
        "no mesh.yaml:LINE:COL: {}",
        up.stderr_tail()
    );
    get_until_ok(ingress, "/productpage", Duration::from_secs(10)).expect("still serving");
    assert_eq!(
        instance_processes(up.pid(), "reviews-v4").len(),
        2,
        "reviews-v4 runs on"
    );

    // A new instance whose port is taken: named, the rest runs on; saved again once free, it starts.
    let taken: SocketAddr = format!("127.0.{n}.8:9080").parse().expect("addr");
    let holder = std::net::TcpListener::bind(taken).expect("bind");
    let with_v5 = format!(
        "{without_v3}- {{name: reviews-v5, service: reviews, labels: {{app: reviews, version: v5}}, address: 127.0.{n}.8}}\n"
    );
    std::fs::write(&mesh_file, &with_v5).expect("write");
    wait_output(&mut up, "cannot start reviews-v5", Duration::from_secs(20));
    let err = up.stderr();
    assert!(
        err.contains(&format!("{taken} (reviews-v5 app)"))
            && err.contains(&format!("pid {}", std::process::id())),
        "{}",
        up.stderr_tail()
    );
    get_until_ok(ingress, "/productpage", Duration::from_secs(10)).expect("still serving");
    drop(holder);
    std::fs::write(&mesh_file, &with_v5).expect("write");
    wait_output(
        &mut up,
        "mesh.yaml: started reviews-v5",
        Duration::from_secs(30),
    );

    // The ingress gateway moved to another address: the new URL is printed and answers.
    let moved: SocketAddr = format!("127.0.{n}.101:8080").parse().expect("addr");
    std::fs::write(
        &mesh_file,
        with_v5.replace(
            &format!("address: 127.0.{n}.100"),
            &format!("address: {}", moved.ip()),
        ),
    )
    .expect("write");
    wait_output(
        &mut up,
        &format!("ingress: http://{moved}"),
        Duration::from_secs(30),
    );
    get_until_ok(moved, "/productpage", Duration::from_secs(10))
        .expect("the moved ingress answers");

    // Ctrl-C stops everything, what the edits started included.
    assert_eq!(instance_processes(up.pid(), "reviews-v5").len(), 2);
    let all = children_of(up.pid());
    let _ = Command::new("kill")
        .args(["-INT", &up.pid().to_string()])
        .status();
    let status = up
        .wait_timeout(Duration::from_secs(15))
        .expect("bosun up stops");
    assert!(status.success(), "{status:?}\n{}", up.stderr_tail());
    let left = wait_gone(&all, Duration::from_secs(5));
    assert!(left.is_empty(), "children left running: {left:?}");
    assert!(processes_mentioning(&tmp).is_empty());
}
