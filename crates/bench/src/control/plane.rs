//! The control plane under test: `bosun control` as a child process (killed when dropped), its CPU and
//! memory from `/proc`, and its debug port (`/metrics`, `POST /apply`) over plain HTTP/1.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::procfs;

/// Bound on one debug-port request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest debug-port answer read.
const MAX_ANSWER: usize = 4 << 20;

/// How to start the control plane.
#[derive(Debug, Clone)]
pub struct PlaneConfig {
    pub binary: PathBuf,
    pub config_dir: PathBuf,
    pub log: PathBuf,
    pub debounce_ms: Option<u64>,
    pub cpu: Option<usize>,
}

/// A running `bosun control`.
#[derive(Debug)]
pub struct Plane {
    child: Child,
    pid: u32,
    pub xds: SocketAddr,
    pub debug: SocketAddr,
    cpu: Option<usize>,
}

/// What `/proc/PID/status` says about memory, in bytes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

impl Plane {
    pub fn start(config: &PlaneConfig) -> Result<Plane> {
        let xds = testkit::localhost(testkit::try_free_port()?);
        let debug = testkit::localhost(testkit::try_free_port()?);
        let log = std::fs::File::create(&config.log)
            .with_context(|| format!("creating {}", config.log.display()))?;
        let mut cmd = Command::new(&config.binary);
        cmd.arg("control")
            .arg("--config")
            .arg(&config.config_dir)
            .arg("--xds-port")
            .arg(xds.port().to_string())
            .arg("--debug-port")
            .arg(debug.port().to_string());
        if let Some(ms) = config.debounce_ms {
            cmd.arg("--debounce-ms").arg(ms.to_string());
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", config.binary.display()))?;
        let pid = child.id().context("the control plane exited at once")?;
        let plane = Plane {
            child,
            pid,
            xds,
            debug,
            cpu: config.cpu,
        };
        plane.pin();
        Ok(plane)
    }

    /// Pins every thread the control plane has now to its CPU; threads it starts later inherit it.
    pub fn pin(&self) {
        if let Some(cpu) = self.cpu {
            procfs::pin_process(self.pid, cpu);
        }
    }

    /// Fails if the process has exited, with its status and the log to read.
    pub fn check_running(&mut self, log: &Path) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(5)..].join("\n  ");
            bail!(
                "the control plane exited ({status}); the end of its log ({}):\n  {tail}",
                log.display()
            );
        }
        Ok(())
    }

    /// CPU seconds (user + system, all threads) so far.
    pub fn cpu_seconds(&self) -> f64 {
        procfs::cpu_seconds(self.pid).unwrap_or(f64::NAN)
    }

    pub fn memory(&self) -> Memory {
        let text =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        Memory {
            rss: procfs::parse_status_kb(&text, "VmRSS").unwrap_or(0),
            hwm: procfs::parse_status_kb(&text, "VmHWM").unwrap_or(0),
        }
    }

    /// Waits until `/ready` answers 200 (the config is loaded and both ports are bound).
    pub async fn wait_ready(&mut self, log: &Path, deadline: std::time::Instant) -> Result<()> {
        loop {
            self.check_running(log)?;
            if let Ok((200, _)) = http(self.debug, "GET", "/ready", None).await {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "the control plane was not ready in time; its log: {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `/metrics`, as name → value (labels are not used by `bosun control`).
    pub async fn metrics(&self) -> Result<Vec<(String, f64)>> {
        let (status, body) = http(self.debug, "GET", "/metrics", None).await?;
        if status != 200 {
            bail!("GET /metrics answered {status}");
        }
        Ok(body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect())
    }

    pub async fn metric(&self, name: &str) -> Option<f64> {
        let all = self.metrics().await.ok()?;
        all.into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// `POST /apply` with Istio YAML.
    pub async fn apply(&self, yaml: &str) -> Result<()> {
        let (status, body) = http(self.debug, "POST", "/apply", Some(yaml)).await?;
        if status != 200 {
            bail!("POST /apply answered {status}: {}", body.trim());
        }
        Ok(())
    }

    /// Kills the process and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// One HTTP/1.1 request with `Connection: close`; the status and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let body = body.unwrap_or("");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/yaml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_ANSWER as u64)
            .read_to_end(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{method} http://{addr}{path} timed out"))?
        .with_context(|| format!("{method} http://{addr}{path}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{method} http://{addr}{path}: no HTTP status in the answer"))?;
    // Hyper may answer a body of unknown length in chunks; only /metrics is parsed and its lines are
    // unaffected apart from the chunk sizes, which never parse as `name value`.
    Ok((status, body.to_owned()))
}
