//! `bosun proxy`: the data plane, started from an Envoy bootstrap file like `envoy -c`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

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

    let bootstrap = match xds_api::bootstrap::from_file(args.config) {
        Ok(b) => b,
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
    let result = runtime.block_on(proxy::run(&bootstrap, options, shutdown_signal()));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("bosun proxy: {e}");
            Ok(ExitCode::from(1))
        }
    }
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
