//! `bosun proxy`: the data plane, started from an Envoy bootstrap file like `envoy -c`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use xds_api::pb::envoy::config::bootstrap::v3::Bootstrap;

pub struct ProxyArgs<'a> {
    pub config: &'a Path,
    pub concurrency: Option<usize>,
    pub drain_time: Duration,
    pub log_level: &'a str,
}

/// Logs to stderr at `level` (a tracing filter such as `info` or `proxy=debug`), as `--log-level`
/// of `bosun proxy` and `bosun control` says.
pub fn init_logging(level: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).with_context(|| {
        format!("invalid --log-level {level:?} (use trace, debug, info, warn, error or off)")
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

pub fn run(args: &ProxyArgs<'_>) -> Result<ExitCode> {
    init_logging(args.log_level)?;

    // See `read_bootstrap`.
    let (bootstrap, trim) = std::thread::spawn({
        let path = args.config.to_path_buf();
        move || read_bootstrap(&path)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("reading the bootstrap panicked"))?;
    let config = bootstrap
        .and_then(|bootstrap| proxy::Config::from_bootstrap(&bootstrap).map_err(|e| e.to_string()));
    drop(trim);
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bosun proxy: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let workers = args
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the worker threads")?;
    let options = proxy::Options {
        drain_time: args.drain_time,
    };
    let result = runtime.block_on(proxy::run(config, options, shutdown_signal()));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("bosun proxy: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Reads the bootstrap on a thread of its own, so that the protobuf descriptors that reading decodes
/// (the files the bootstrap needs, a few MB; released here) and the bootstrap, freed once converted, are allocated in that
/// thread's malloc arena; the config is made in another. glibc can then give the whole arena back to
/// the system, where in one heap they would stay resident below the config that outlives them. It
/// trims an arena only when a large block is freed into it: the returned block is that one, to drop
/// last, once this thread has ended (its cached small blocks then are free too). Spawning a thread
/// here would leave glibc's record of it in this arena, and keep it from being trimmed.
fn read_bootstrap(path: &Path) -> (Result<Bootstrap, String>, Vec<u8>) {
    // Made first, so that what prost-reflect keeps for good (its well-known types) sits at the
    // arena's bottom, below all that is freed.
    drop(xds_api::prost_reflect::DescriptorPool::global());
    let bootstrap = xds_api::bootstrap::from_file(path).map_err(|e| e.to_string());
    xds_api::descriptor::release();
    (
        bootstrap,
        std::hint::black_box(Vec::with_capacity(96 * 1024)),
    )
}

/// SIGTERM (how Kubernetes and `bosun up` stop a proxy) or Ctrl-C.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
