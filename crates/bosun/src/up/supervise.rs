//! Process supervision for `bosun up`: children started through the death-signal trampoline, their
//! output forwarded line by line with a prefix, their exits watched, and stopping them all (SIGTERM to
//! each child's process group, SIGKILL after a grace).
//!
//! Why a trampoline: `bosun up` must not leave children behind even when it is killed with SIGKILL, so
//! each child asks the kernel for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`). Setting that
//! between fork and exec needs `pre_exec`, which is `unsafe` (forbidden in this workspace). Instead each
//! child is started as `bosun __up-child --parent PID -- PROGRAM ARGS…`, which sets the death signal on
//! itself, checks its parent is still the one it expects (closing the race where the parent died
//! first), and `exec`s the real program; the death signal survives `exec`. The signal fires when the
//! *thread* that spawned the child exits, so every child is spawned from the thread that runs the
//! runtime (`bosun up` uses a current-thread runtime), which lives as long as `bosun up`.
//!
//! Each child also gets its own process group: Ctrl-C in a terminal then reaches only `bosun up`, which
//! stops the children in order, and stopping a group also stops what a user's command started.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Write};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Bytes of one forwarded log line; the rest of a longer line is dropped (and marked).
const MAX_LINE: usize = 4096;
/// How long children get to exit after SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);

/// The hidden subcommand children are started through.
pub const TRAMPOLINE: &str = "__up-child";

/// What a child is, for what its death means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Control,
    Proxy,
    App,
}

#[derive(Debug)]
struct Child {
    label: String,
    pid: i32,
    role: Role,
    exited: Option<String>,
    /// Stopped on purpose while the mesh runs (a mesh.yaml edit): its exit is not news, and its
    /// process group is not signalled again (the id may belong to someone else by then).
    retired: bool,
}

/// The children of one `bosun up`.
#[derive(Debug)]
pub struct Children {
    children: Vec<Child>,
    tx: mpsc::UnboundedSender<(usize, String)>,
    rx: mpsc::UnboundedReceiver<(usize, String)>,
    /// Exits seen while waiting for other children, to be reported by the next `next_exit`.
    pending: VecDeque<Exit>,
}

/// A child that exited: its label, role and how.
#[derive(Debug)]
pub struct Exit {
    pub label: String,
    pub pid: i32,
    pub role: Role,
    pub status: String,
}

impl Children {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Children {
            children: Vec::new(),
            tx,
            rx,
            pending: VecDeque::new(),
        }
    }

    /// Starts `program args…` (the current executable when `program` is `None`) with extra `env`,
    /// labelled `label` in logs. Must be called on the runtime's thread (see the module doc).
    ///
    /// A non-empty `launcher` (e.g. `ip netns exec NS setpriv …`) runs first and `exec`s the
    /// trampoline, which therefore sets the death signal last, after any change of user (which would
    /// clear it); every step `exec`s, so the child's parent is still `bosun up`.
    pub fn spawn(
        &mut self,
        label: &str,
        role: Role,
        launcher: &[String],
        program: Option<&OsStr>,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<i32> {
        let exe = std::env::current_exe().context("cannot find the bosun executable")?;
        let program: OsString = program.map_or_else(|| exe.clone().into_os_string(), Into::into);
        let mut cmd = match launcher.split_first() {
            Some((first, rest)) => {
                let mut cmd = tokio::process::Command::new(first);
                cmd.args(rest).arg(&exe);
                cmd
            }
            None => tokio::process::Command::new(&exe),
        };
        cmd.arg(TRAMPOLINE)
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg("--")
            .arg(&program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // Their logs are forwarded through pipes: colour codes only make sense on a terminal (the
        // tracing-based children honour NO_COLOR).
        if !std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            cmd.env("NO_COLOR", "1");
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {label} ({})", program.to_string_lossy()))?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .context("a child without a pid")?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(out, format!("[{label}] "), false));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(err, format!("[{label}] "), true));
        }
        let index = self.children.len();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => describe(s),
                Err(e) => format!("unknown ({e})"),
            };
            let _ = tx.send((index, status));
        });
        self.children.push(Child {
            label: label.to_owned(),
            pid,
            role,
            exited: None,
            retired: false,
        });
        Ok(pid)
    }

    /// Notes an exit; the news to report, unless the child was retired.
    fn record(&mut self, (index, status): (usize, String)) -> Option<Exit> {
        let c = self.children.get_mut(index)?;
        c.exited = Some(status.clone());
        (!c.retired).then(|| Exit {
            label: c.label.clone(),
            pid: c.pid,
            role: c.role,
            status,
        })
    }

    /// An exit that already happened, if any (does not wait).
    pub fn try_exit(&mut self) -> Option<Exit> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        while let Ok(e) = self.rx.try_recv() {
            if let Some(exit) = self.record(e) {
                return Some(exit);
            }
        }
        None
    }

    /// An exit that already happened of one of `pids`, if any; other exits stay for `next_exit`.
    pub fn try_exit_among(&mut self, pids: &[i32]) -> Option<Exit> {
        while let Ok(e) = self.rx.try_recv() {
            if let Some(exit) = self.record(e) {
                self.pending.push_back(exit);
            }
        }
        let at = self.pending.iter().position(|e| pids.contains(&e.pid))?;
        self.pending.remove(at)
    }

    /// Waits for the next exit.
    pub async fn next_exit(&mut self) -> Option<Exit> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        loop {
            let e = self.rx.recv().await?;
            if let Some(exit) = self.record(e) {
                return Some(exit);
            }
        }
    }

    /// Stops every child: apps and proxies first, then the control plane (so proxies do not log a
    /// lost control plane while they drain). Each stage: SIGTERM to each child's group, SIGKILL to
    /// what is left after [`GRACE`], then a bounded wait for them to be reaped.
    pub async fn stop_all(&mut self) {
        self.stop(|c| !c.retired && matches!(c.role, Role::App | Role::Proxy))
            .await;
        self.stop(|c| !c.retired && c.role == Role::Control).await;
    }

    /// Stops the children with these pids (one instance's proxy and app) as [`Children::stop_all`]
    /// does, and retires them: their exits are not reported as unexpected.
    pub async fn stop_pids(&mut self, pids: &[i32]) {
        self.stop(|c| !c.retired && pids.contains(&c.pid)).await;
        for c in &mut self.children {
            if pids.contains(&c.pid) {
                c.retired = true;
            }
        }
    }

    async fn stop(&mut self, which: impl Fn(&Child) -> bool) {
        self.signal(&which, Signal::TERM);
        if !self.wait_all(&which, GRACE).await {
            for c in &self.children {
                if c.exited.is_none() && which(c) {
                    say!(
                        "bosun up: {} (pid {}) did not stop within {GRACE:?}; killing it",
                        c.label,
                        c.pid
                    );
                }
            }
            self.signal(&which, Signal::KILL);
            self.wait_all(&which, Duration::from_secs(2)).await;
        }
    }

    fn signal(&self, which: &impl Fn(&Child) -> bool, signal: Signal) {
        for c in self.children.iter().filter(|c| which(c)) {
            // The whole group, also after the child itself exited: a user's command may have left
            // processes of its own in it. Errors mean there is nothing left to signal.
            if let Some(pid) = Pid::from_raw(c.pid) {
                let _ = kill_process_group(pid, signal);
            }
        }
    }

    /// Waits until every child `which` selects has exited; false if `timeout` passed first. Other
    /// children's exits seen meanwhile are kept for `next_exit`.
    async fn wait_all(&mut self, which: &impl Fn(&Child) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.children.iter().any(|c| c.exited.is_none() && which(c)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(e)) => {
                    let selected = self.children.get(e.0).is_some_and(which);
                    if let Some(exit) = self.record(e)
                        && !selected
                    {
                        self.pending.push_back(exit);
                    }
                }
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }
}

/// `exit status 1`, `signal 9 (SIGKILL)`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => status.to_string(),
    }
}

/// Copies a child's output to ours, one prefixed line at a time; lines longer than [`MAX_LINE`] are
/// cut (a child printing megabytes without a newline must not grow our memory).
async fn forward(mut from: impl AsyncRead + Unpin, prefix: String, to_stderr: bool) {
    let mut line = Vec::with_capacity(256);
    let mut cut = false;
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if !cut {
                    emit(&prefix, &line, false, to_stderr);
                }
                line.clear();
                cut = false;
            } else if cut {
            } else if line.len() < MAX_LINE {
                line.push(b);
            } else {
                emit(&prefix, &line, true, to_stderr);
                line.clear();
                cut = true;
            }
        }
    }
    if !line.is_empty() && !cut {
        emit(&prefix, &line, false, to_stderr);
    }
}

fn emit(prefix: &str, line: &[u8], cut: bool, to_stderr: bool) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    let mark = if cut { " […line cut]" } else { "" };
    let out = format!("{prefix}{text}{mark}\n");
    // A closed stdout (`bosun up | head`) must not stop the mesh: write errors are ignored.
    if to_stderr {
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    } else {
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    }
}

/// The child side of the trampoline: death signal, parent check, exec. Returns only on failure.
pub fn exec_child(parent: u32, program: &OsStr, args: &[OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::KILL)) {
        say!("bosun: cannot set the parent-death signal: {e}");
        return ExitCode::from(126);
    }
    // If `bosun up` died before the line above, no signal will ever come: our parent is then init
    // or a subreaper, not it.
    if rustix::process::getppid().map(Pid::as_raw_pid) != i32::try_from(parent).ok() {
        say!("bosun: the process that started this one ({parent}) is gone; not starting");
        return ExitCode::from(1);
    }
    let err = std::process::Command::new(program).args(args).exec();
    say!("bosun: cannot run {}: {err}", program.to_string_lossy());
    ExitCode::from(127)
}
