//! `Process`: a child process under test, its output captured to files, killed on drop.

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::error::{Error, Result};
use crate::net;
use crate::tempdir::TempDir;

/// Bytes of stdout and of stderr kept per process; the rest is read and discarded.
pub const MAX_LOG_BYTES: u64 = 16 << 20;
/// How long dropping a process waits after SIGTERM before SIGKILL.
pub const DROP_GRACE: Duration = Duration::from_secs(3);
/// Bytes of stderr quoted in error messages.
const TAIL_BYTES: u64 = 4096;

/// A child process (e.g. `bosun proxy` under test): stdin closed, stdout and stderr captured to files (at most
/// [`MAX_LOG_BYTES`] each), SIGTERM then SIGKILL on drop. The log files are removed on drop unless the test
/// is panicking, when their directory is kept and printed.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
    log_threads: Vec<std::thread::JoinHandle<()>>,
    // Declared last: dropped after the child is stopped.
    dir: TempDir,
}

impl Process {
    /// Runs `cmd args…` with extra environment `env`.
    pub fn spawn<I, S>(cmd: impl AsRef<OsStr>, args: I, env: &[(&str, &str)]) -> Result<Process>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(cmd.as_ref());
        command.args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        let name = Path::new(cmd.as_ref())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "process".to_string());
        Process::spawn_command(&name, command, TempDir::new(&name)?)
    }

    /// Runs a prepared `command` named `name` in messages, its logs in `dir` (which it then owns; files
    /// `stdout.log` and `stderr.log`). Stdin, stdout and stderr are overridden.
    pub fn spawn_command(name: &str, mut command: Command, dir: TempDir) -> Result<Process> {
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| Error::io(format!("starting {name} ({:?})", command.get_program()), e))?;
        let mut log_threads = Vec::new();
        if let Some(out) = child.stdout.take() {
            log_threads.push(capture(name, out, &stdout)?);
        }
        if let Some(err) = child.stderr.take() {
            log_threads.push(capture(name, err, &stderr)?);
        }
        Ok(Process {
            name: name.to_string(),
            child,
            status: None,
            stdout,
            stderr,
            log_threads,
            dir,
        })
    }

    /// Its name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory holding its logs (and, for [`crate::Envoy`], its config).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout, None)
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr, None)
    }

    /// The last few KiB of its stderr.
    pub fn stderr_tail(&self) -> String {
        read_lossy(&self.stderr, Some(TAIL_BYTES))
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| Error::io(format!("checking on {}", self.name), e))?;
            if self.status.is_some() {
                self.settle_logs();
            }
        }
        Ok(self.status)
    }

    /// Waits (at most `timeout`) for it to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{} (pid {}) to exit", self.name, self.pid()),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// After exit: lets the log threads write what the pipes still held (bounded: a grandchild may keep a
    /// pipe open).
    fn settle_logs(&self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline && self.log_threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends it `signal` (no-op once it has exited).
    fn signal(&mut self, signal: Signal) -> Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| {
                Error::io(
                    format!("signalling {}", self.name),
                    std::io::Error::other("bad pid"),
                )
            })?;
        kill_process(pid, signal)
            .map_err(|e| Error::io(format!("signalling {} (pid {pid:?})", self.name), e.into()))
    }

    /// Sends SIGTERM and returns at once (see [`wait_timeout`](Self::wait_timeout)).
    pub fn terminate(&mut self) -> Result<()> {
        self.signal(Signal::TERM)
    }

    /// SIGTERM, wait at most `timeout`, then SIGKILL; returns how it exited.
    pub fn terminate_and_wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(Signal::TERM)?;
        match self.wait_timeout(timeout) {
            Ok(status) => Ok(status),
            Err(Error::Timeout { .. }) => self.kill(),
            Err(e) => Err(e),
        }
    }

    /// SIGKILL and reap it.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        let _ = self.child.kill();
        self.wait_timeout(Duration::from_secs(5))
    }

    /// Fails with its exit status and stderr if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.try_wait()? {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                what: format!("{} (pid {})", self.name, self.pid()),
                status,
                stderr_tail: self.stderr_tail(),
            }),
        }
    }

    /// Waits (at most `timeout`) until `addr` accepts TCP connections; fails early if the process exits.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        self.wait_until(timeout, &format!("{addr} to accept connections"), |_| {
            net::wait_for_port(addr, Duration::ZERO).map_err(|e| e.to_string())
        })
    }

    /// Waits (at most `timeout`) until `GET http://admin_addr/ready` answers 200; fails early if the process
    /// exits.
    pub fn wait_ready(&mut self, admin_addr: SocketAddr, timeout: Duration) -> Result<()> {
        self.wait_until(
            timeout,
            &format!("GET http://{admin_addr}/ready == 200"),
            |_| net::probe_ready(admin_addr),
        )
    }

    /// Polls `probe` until it succeeds, the process exits, or `timeout` passes.
    pub(crate) fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut(&Process) -> Result<(), String>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let last = match probe(self) {
                Ok(()) => return Ok(()),
                Err(last) => last,
            };
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    what: format!("{} (pid {}): {what}", self.name, self.pid()),
                    after: timeout,
                    last,
                    stderr_tail: self.stderr_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.try_wait(), Ok(Some(_))) {
            return;
        }
        if self.terminate_and_wait(DROP_GRACE).is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "testkit: {} stderr ends with:\n{}",
                self.name,
                self.stderr_tail()
            );
        }
    }
}

/// Copies `from` into the file `to` on a thread, keeping the first [`MAX_LOG_BYTES`].
fn capture(
    name: &str,
    mut from: impl Read + Send + 'static,
    to: &Path,
) -> Result<std::thread::JoinHandle<()>> {
    let mut file = std::fs::File::create(to)
        .map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    std::thread::Builder::new()
        .name(format!("testkit-log-{name}"))
        .spawn(move || {
            let mut buf = [0u8; 8192];
            let mut written = 0u64;
            loop {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if written < MAX_LOG_BYTES {
                            let keep = n.min(usize::try_from(MAX_LOG_BYTES - written).unwrap_or(n));
                            if file.write_all(&buf[..keep]).is_err() {
                                break;
                            }
                            written += keep as u64;
                            if written >= MAX_LOG_BYTES {
                                let _ = file.write_all(b"\n[testkit: log truncated]\n");
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        })
        .map_err(|e| Error::io(format!("spawning the log thread of {name}"), e))
}

fn read_lossy(path: &Path, tail: Option<u64>) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    if let Some(tail) = tail
        && let Ok(len) = file.metadata().map(|m| m.len())
        && len > tail
    {
        let _ = file.seek(SeekFrom::Start(len - tail));
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
