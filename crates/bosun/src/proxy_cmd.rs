//! `bosun proxy`: the data plane, started from an Envoy bootstrap file like `envoy -c`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use xds_api::pb::envoy::config::bootstrap::v3::Bootstrap;

pub struct ProxyArgs<'a> {
    pub config: &'a Path,
    pub concurrency: Option<usize>,
    pub drain_time: Duration,
    pub log_level: &'a str,
    pub access_log_flush_interval: Duration,
}

/// Logs to stderr at `level` (a tracing filter such as `info` or `proxy=debug`), as `--log-level`
/// of `bosun proxy` and `bosun control` says. The filter can be replaced later through the returned
/// handle (the proxy's admin `/logging`).
pub fn init_logging(level: &str) -> Result<LogFilter> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_new(level).with_context(|| {
        format!("invalid --log-level {level:?} (use trace, debug, info, warn, error or off)")
    })?;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    Ok(LogFilter(handle))
}

/// The process's log filter, replaceable while it runs.
#[derive(Debug)]
pub struct LogFilter(
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
);

impl proxy::logging::Reload for LogFilter {
    fn reload(&self, directives: &str) -> Result<(), String> {
        let filter =
            tracing_subscriber::EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
        self.0.reload(filter).map_err(|e| e.to_string())
    }
}

pub fn run(args: &ProxyArgs<'_>) -> Result<ExitCode> {
    let log_filter = init_logging(args.log_level)?;

    let config = match read_config(args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bosun proxy: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let worker_count = args
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // Traffic on worker threads, config (xDS) and admin on this one, as Envoy's workers and main
    // thread. One worker is a single-threaded runtime of its own (an event loop per thread, as an
    // Envoy worker); several share a multi-threaded one.
    let (workers, _worker_thread) = worker_runtime(worker_count)?;
    let main = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the main thread's runtime")?;
    let options = proxy::Options {
        drain_time: args.drain_time,
        workers: Some(workers.handle().clone()),
        loggers: Some(Arc::new(proxy::logging::Loggers::new(
            args.log_level,
            Box::new(log_filter),
        ))),
        command_line: proxy::CommandLine {
            config_path: args.config.display().to_string(),
            concurrency: u32::try_from(worker_count).unwrap_or(u32::MAX),
            log_level: args.log_level.to_owned(),
        },
        access_log_flush_interval: args.access_log_flush_interval,
    };
    let result = main.block_on(proxy::run(config, options, shutdown_signal()));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("bosun proxy: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The proxy's config from the bootstrap at `path`.
///
/// The bootstrap is read on a thread of its own, so that the protobuf descriptors that reading
/// decodes (the files the bootstrap needs, a few MB; released here) and the parsed bootstrap are
/// allocated, and freed, in that thread's malloc arena alone, while the config is made on this
/// thread from the bootstrap the reader still holds. glibc can then give the reader's whole arena
/// back to the system, where in one heap they would stay resident below the config that outlives
/// them. It trims an arena only when a large block is freed into it, and only above its highest
/// block in use; so nothing made by the reader is freed elsewhere (a small block freed by another
/// thread waits in that thread's cache, in use to the arena), and the large block the reader hands
/// back is freed last, once the reader has ended and its own cached blocks are free too.
fn read_config(path: &Path) -> Result<proxy::Config, String> {
    use std::sync::{Barrier, Mutex, PoisonError};
    let held: Mutex<Option<Result<Bootstrap, String>>> = Mutex::new(None);
    let slot = || held.lock().unwrap_or_else(PoisonError::into_inner);
    let (read, converted) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            // Made first, so that what prost-reflect keeps for good (its well-known types) sits
            // at the arena's bottom, below all that is freed.
            drop(xds_api::prost_reflect::DescriptorPool::global());
            // Caught, so that the barriers are always reached.
            let bootstrap = std::panic::catch_unwind(|| xds_api::bootstrap::from_file(path))
                .map_err(|_| "reading the bootstrap panicked".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string()));
            xds_api::descriptor::release();
            *slot() = Some(bootstrap);
            read.wait();
            converted.wait();
            drop(slot().take());
            std::hint::black_box(Vec::<u8>::with_capacity(96 * 1024))
        });
        read.wait();
        let config = match slot().as_ref() {
            Some(Ok(bootstrap)) => {
                proxy::Config::from_bootstrap(bootstrap).map_err(|e| e.to_string())
            }
            Some(Err(e)) => Err(e.clone()),
            None => Err("the bootstrap was not read".to_owned()),
        };
        converted.wait();
        // The reader's last block, freed once it has ended.
        drop(reader.join());
        config
    })
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

/// Keeps a single-threaded worker runtime running on its thread until dropped.
struct WorkerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The runtime that serves traffic with `workers` threads, and the thread driving it when it is
/// single-threaded.
fn worker_runtime(
    workers: usize,
) -> anyhow::Result<(Arc<tokio::runtime::Runtime>, Option<WorkerThread>)> {
    if workers > 1 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("bosun-worker")
            .enable_all()
            .build()
            .context("cannot start the worker threads")?;
        return Ok((Arc::new(runtime), None));
    }
    let runtime = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the worker thread")?,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let driven = runtime.clone();
    let thread = std::thread::Builder::new()
        .name("bosun-worker-0".to_owned())
        .spawn(move || {
            driven.block_on(async {
                let _ = stopped.await;
            });
        })
        .context("cannot start the worker thread")?;
    Ok((
        runtime,
        Some(WorkerThread {
            stop: Some(stop),
            thread: Some(thread),
        }),
    ))
}
