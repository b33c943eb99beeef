//! `control-bench`: how fast `bosun control` gets config to many proxies, and what it costs.
//!
//! It generates a mesh (services in namespaces, workload instances with `version` labels, a
//! DestinationRule with subsets per service, 90/10 VirtualServices for some), starts the release
//! `bosun control` on it as a child process, and connects simulated proxies to it: real ADS clients
//! (xds-client's protocol cores over tonic, one HTTP/2 connection each) that decode and ACK everything.
//! Each run measures:
//!
//! 1. startup: control plane start → each proxy's first complete config (CDS, EDS, LDS, RDS) ACKed;
//! 2. a VirtualService change (weights 90/10 ↔ 50/50, by rewriting its file or `POST /apply`) → each
//!    proxy ACKed the RDS carrying the new weights;
//! 3. an endpoint change (one workload instance added to / removed from `mesh.yaml`) → each proxy
//!    ACKed the EDS carrying the new endpoint count;
//! 4. control plane CPU seconds (`/proc/PID/stat`) during the changes and at idle, and memory (`VmRSS`,
//!    `VmHWM`) after startup and at the end.
//!
//! Latencies are reported as p50/p99 over proxies × runs, and "last": the time until the last proxy had
//! it. On two or more CPUs the control plane is pinned to one CPU and this process (the clients) to
//! another, so the clients' decoding does not take the control plane's CPU.
//!
//! ```sh
//! cargo build --release -p bosun -p bench
//! target/release/control-bench [--quick] [--json out.json]
//! ```

mod client;
mod mesh;
mod plane;
#[path = "../procfs.rs"]
#[allow(dead_code)]
mod procfs;
#[path = "../stats.rs"]
#[allow(dead_code)]
mod stats;

/// The clients stand in for proxies, which run with mimalloc (`bosun proxy`) or tcmalloc (Envoy):
/// with glibc's malloc most of their CPU went to `free` and to faulting in pages trimmed away.
/// mimalloc too gives freed pages back after 10 ms, and a third of the clients' CPU then went to
/// zeroing them again for the next route table: [`main`] runs the benchmark with purging off
/// (`MIMALLOC_PURGE_DELAY=-1`, read when the process starts), as tcmalloc keeps what it freed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;
use xds_client::{DeltaClient, SotwClient};

use crate::client::{Board, Identity, Probe, Slot};
use crate::mesh::{MeshSpec, PORT, WEIGHTS_CHANGED, WEIGHTS_START};
use crate::plane::{Memory, Plane, PlaneConfig};
use crate::stats::{median, percentile};

const PUSHES: &str = "bosun_control_pushes_total";

/// How long after `/ready` the clients connect (see [`Bench::run`]).
const READY_GRACE: Duration = Duration::from_millis(20);

/// Measure `bosun control` with many connected ADS clients.
#[derive(Debug, Parser)]
#[command(name = "control-bench", version)]
struct Args {
    /// A smoke run: 100 services, 20 proxies, 3 runs (unless given explicitly).
    #[arg(long)]
    quick: bool,
    /// Services (one HTTP port each), spread over --namespaces [default: 1000; 100 with --quick].
    #[arg(long)]
    services: Option<usize>,
    /// Workload instances per service (versions v1, v2, v1, …).
    #[arg(long, default_value_t = 5)]
    endpoints_per_service: usize,
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Services with a 90/10 VirtualService [default: a tenth of the services].
    #[arg(long)]
    virtual_services: Option<usize>,
    /// Connected proxies [default: 200; 20 with --quick].
    #[arg(long)]
    proxies: Option<usize>,
    /// Runs, each with a fresh control plane and clients [default: 10; 3 with --quick].
    #[arg(long)]
    repeat: Option<usize>,
    /// Give each namespace a Sidecar limiting its proxies to their own namespace's services (egress
    /// `./*`), as Istio recommends for large meshes: a proxy then holds a tenth of the mesh (with the
    /// default 10 namespaces), and the changes concern only the proxies of the changed service's
    /// namespace. Only those are waited for; the others must not see the service at all.
    #[arg(long)]
    sidecar_scope: bool,
    /// Use delta xDS instead of state of the world.
    #[arg(long)]
    delta: bool,
    /// Take the route tables' service hosts over VHDS, as `bosun bootstrap --vhds` (implies --delta).
    #[arg(long)]
    vhds: bool,
    /// How the VirtualService change reaches the control plane: rewrite its file in the config
    /// directory (picked up by the control plane's file watch), or POST it to the debug port's /apply.
    #[arg(long, value_enum, default_value_t = Via::File)]
    via: Via,
    /// Pass --debounce-ms to the control plane (its default is 100).
    #[arg(long)]
    debounce_ms: Option<u64>,
    /// Seconds of idle measured after startup.
    #[arg(long, default_value_t = 3.0)]
    idle_secs: f64,
    /// Longest any phase may take before the run fails, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// The `bosun` binary [default: `bosun` beside this executable].
    #[arg(long)]
    bosun: Option<PathBuf>,
    /// Do not pin the control plane and the clients to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Args {
    /// How the clients take their config: `sotw`, `delta`, or `vhds` (delta, hosts over VHDS).
    fn mode(&self) -> &'static str {
        match (self.delta, self.vhds) {
            (_, true) => "vhds",
            (true, false) => "delta",
            (false, false) => "sotw",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Via {
    File,
    Apply,
}

/// One measured phase over all runs.
#[derive(Debug, Default, Serialize)]
struct Phase {
    /// Per-proxy latencies, milliseconds, all runs.
    #[serde(skip)]
    samples: Vec<f64>,
    /// Per run: the first and the last proxy to have it, milliseconds.
    first_ms: Vec<f64>,
    last_ms: Vec<f64>,
    /// Per run: control plane and bench (client) CPU seconds from the change to the last ACK.
    control_cpu_s: Vec<f64>,
    clients_cpu_s: Vec<f64>,
    /// Per run: time the clients spent decoding and applying responses (summed over proxies).
    clients_busy_s: Vec<f64>,
    /// Per run: `bosun_control_last_push_seconds` after the change (index build + generation).
    last_push_s: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct PhaseSummary {
    samples: usize,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    last_p50_ms: Option<f64>,
    last_max_ms: Option<f64>,
    first_p50_ms: Option<f64>,
    control_cpu_s_p50: Option<f64>,
    clients_cpu_s_p50: Option<f64>,
    clients_busy_s_p50: Option<f64>,
    last_push_s_p50: Option<f64>,
    #[serde(flatten)]
    runs: Phase,
}

impl Phase {
    fn summary(self) -> PhaseSummary {
        let mut sorted: Vec<u64> = self.samples.iter().map(|ms| (ms * 1000.0) as u64).collect();
        sorted.sort_unstable();
        let q = |q| percentile(&sorted, q).map(|us| us as f64 / 1000.0);
        let max = |v: &[f64]| v.iter().copied().reduce(f64::max);
        PhaseSummary {
            samples: sorted.len(),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            max_ms: q(1.0),
            last_p50_ms: median(&self.last_ms),
            last_max_ms: max(&self.last_ms),
            first_p50_ms: median(&self.first_ms),
            control_cpu_s_p50: median(&self.control_cpu_s),
            clients_cpu_s_p50: median(&self.clients_cpu_s),
            clients_busy_s_p50: median(&self.clients_busy_s),
            last_push_s_p50: median(&self.last_push_s),
            runs: self,
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Resources {
    /// Per run, after startup and at the end of the run.
    after_startup: Vec<Memory>,
    at_end: Vec<Memory>,
    /// Per run: control plane CPU seconds per second while nothing changes.
    idle_cpu_per_s: Vec<f64>,
    /// Per run: control plane CPU seconds from start until every proxy was ready.
    startup_cpu_s: Vec<f64>,
}

/// What each proxy holds after startup (first run), to show the size of the config.
#[derive(Debug, Default, Serialize)]
struct ConfigSize {
    clusters: usize,
    endpoints: usize,
    listeners: usize,
    routes: usize,
    virtual_hosts: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    services: usize,
    endpoints: usize,
    virtual_services: usize,
    proxies: usize,
    runs_planned: usize,
    runs_done: usize,
    mode: &'static str,
    sidecar_scope: bool,
    /// Proxies that see the changed service (all of them without --sidecar-scope).
    affected_proxies: usize,
    via: Via,
    debounce_ms: Option<u64>,
    cpus: usize,
    pinning: String,
    config_size: ConfigSize,
    startup: PhaseSummary,
    vs_change: PhaseSummary,
    endpoint_change: PhaseSummary,
    resources: Resources,
    failure: Option<String>,
}

/// What the runs collect.
#[derive(Debug, Default)]
struct Collected {
    startup: Phase,
    vs: Phase,
    eps: Phase,
    resources: Resources,
    size: ConfigSize,
    runs: usize,
}

/// Where the mesh stands between runs (the changes alternate).
#[derive(Debug)]
struct State {
    v1_weight: u32,
    extra_endpoint: bool,
}

struct Bench {
    args: Args,
    spec: MeshSpec,
    proxies: usize,
    plane: PlaneConfig,
    /// Kept for the lifetime of the runs (removed on drop).
    _dir: testkit::TempDir,
    timeout: Duration,
    idle: Duration,
}

/// mimalloc's option for how long freed memory is kept before it is given back.
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

fn main() -> ExitCode {
    if std::env::var_os(PURGE_DELAY).is_none() {
        // Options are read as the allocator starts: run again with the option set.
        let rerun = std::env::current_exe().and_then(|exe| {
            std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env(PURGE_DELAY, "-1")
                .status()
        });
        return match rerun {
            Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(2)).unwrap_or(2)),
            Err(e) => {
                eprintln!("control-bench: running with {PURGE_DELAY}=-1: {e}");
                ExitCode::from(2)
            }
        };
    }
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("control-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let args = Args::parse();
    let services = args.services.unwrap_or(if args.quick { 100 } else { 1000 });
    let spec = MeshSpec {
        services,
        endpoints_per_service: args.endpoints_per_service,
        namespaces: args.namespaces.clamp(1, services.max(1)),
        virtual_services: args.virtual_services.unwrap_or(services / 10).max(1),
        sidecar_scope: args.sidecar_scope,
    };
    spec.check()?;
    let proxies = args.proxies.unwrap_or(if args.quick { 20 } else { 200 });
    if proxies == 0 || proxies > 250 * 250 {
        bail!("--proxies must be between 1 and 62,500");
    }
    let repeat = args.repeat.unwrap_or(if args.quick { 3 } else { 10 });
    if repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let binary = match &args.bosun {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the executable's directory")?
            .join("bosun"),
    };
    if !binary.is_file() {
        bail!(
            "no bosun binary at {} (build it with `cargo build --release -p bosun`, or pass --bosun)",
            binary.display()
        );
    }

    // The control plane on one CPU, this process (the clients) on another: children inherit the
    // affinity of the thread that starts them, and the runtime's threads that of this one.
    let allowed = procfs::allowed_cpus();
    let (plane_cpu, pinning) = if !args.no_pin && allowed.len() >= 2 {
        procfs::pin_current_thread(allowed[0]).context("pinning the clients")?;
        (
            Some(allowed[1]),
            format!(
                "control plane pinned to CPU {}, clients to CPU {}",
                allowed[1], allowed[0]
            ),
        )
    } else {
        (None, format!("not pinned ({} CPUs allowed)", allowed.len()))
    };
    let workers = if plane_cpu.is_some() {
        1
    } else {
        allowed.len().max(1)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the runtime")?;

    let dir = testkit::TempDir::new("control-bench")?;
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir)?;
    spec.write(&config_dir)?;
    let bench = Bench {
        plane: PlaneConfig {
            binary,
            config_dir,
            log: dir.path().join("control.log"),
            debounce_ms: args.debounce_ms,
            cpu: plane_cpu,
        },
        spec,
        proxies,
        _dir: dir,
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
        idle: Duration::from_secs_f64(args.idle_secs.clamp(0.0, 600.0)),
        args,
    };
    eprintln!(
        "control-bench: {} services × {} endpoints, {} VirtualServices, {} proxies{} ({}), {} runs, change via {:?}, debounce {}; {pinning}",
        spec.services,
        spec.endpoints_per_service,
        spec.vs_services().len(),
        proxies,
        if spec.sidecar_scope {
            ", scoped to their namespace by a Sidecar"
        } else {
            ""
        },
        bench.args.mode(),
        repeat,
        bench.args.via,
        bench
            .args
            .debounce_ms
            .map_or("default (100 ms)".to_owned(), |ms| format!("{ms} ms")),
    );

    let mut collected = Collected::default();
    let mut state = State {
        v1_weight: WEIGHTS_START,
        extra_endpoint: false,
    };
    let failure = runtime.block_on(async {
        for run in 0..repeat {
            let result = tokio::select! {
                r = bench.run(run, &mut state, &mut collected) => r,
                _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            };
            if let Err(e) = result {
                return Some(format!("run {}: {e:#}", run + 1));
            }
            collected.runs += 1;
        }
        None
    });
    // Ends the clients' tasks (and their connections) before the temp dir goes.
    runtime.shutdown_timeout(Duration::from_secs(2));

    let report = Report {
        services: spec.services,
        endpoints: spec.services * spec.endpoints_per_service,
        virtual_services: spec.vs_services().len(),
        proxies,
        runs_planned: repeat,
        runs_done: collected.runs,
        mode: bench.args.mode(),
        sidecar_scope: spec.sidecar_scope,
        affected_proxies: bench.identities().iter().filter(|i| i.affected).count(),
        via: bench.args.via,
        debounce_ms: bench.args.debounce_ms,
        cpus: allowed.len(),
        pinning,
        config_size: collected.size,
        startup: collected.startup.summary(),
        vs_change: collected.vs.summary(),
        endpoint_change: collected.eps.summary(),
        resources: collected.resources,
        failure,
    };
    print!("{}", table(&report));
    if let Some(path) = &bench.args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(f) = &report.failure {
        eprintln!("control-bench: FAILED: {f}");
        if std::env::var_os("BOSUN_KEEP_TMP").is_none() {
            eprintln!(
                "control-bench: set BOSUN_KEEP_TMP=1 to keep the config and the control plane's log"
            );
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// A simulated proxy, and whether the benchmark's changes concern it.
struct Client {
    identity: Identity,
    affected: bool,
}

impl Bench {
    /// The simulated proxies, spread evenly over the namespaces.
    fn identities(&self) -> Vec<Client> {
        let spec = &self.spec;
        (0..self.proxies)
            .map(|p| {
                let namespace = spec.namespace_of(p * spec.services / self.proxies);
                Client {
                    affected: spec.sees(&namespace, 0),
                    identity: Identity::new(p, namespace),
                }
            })
            .collect()
    }

    /// One run: a fresh control plane and clients; startup, idle, a VirtualService change and an
    /// endpoint change.
    async fn run(&self, run: usize, state: &mut State, out: &mut Collected) -> Result<()> {
        let spec = &self.spec;
        let vhost = format!("{}:{PORT}", spec.hostname(0));
        let probe = Probe {
            // The one table of a sidecar without capture: its explicit proxy's.
            vhds_name: format!("{}/{vhost}", control::generate::listener::OUTBOUND_ROUTE),
            vhost,
            cluster: format!("outbound|{PORT}||{}", spec.hostname(0)),
        };
        let identities: Vec<Identity> = self.identities().into_iter().map(|c| c.identity).collect();
        let board = Board::new(identities.iter().map(|i| i.node_id.clone()).collect());

        // 1. Startup.
        let clients_cpu = procfs::own_cpu_seconds().unwrap_or(f64::NAN);
        let started = Instant::now();
        let mut plane = Plane::start(&self.plane)?;
        // Proxies that connect before the control plane's push loop has started watching for new
        // connections get no config (see the README): connect once it is ready, plus a moment.
        plane
            .wait_ready(&self.plane.log, started + self.timeout)
            .await?;
        tokio::time::sleep(READY_GRACE).await;
        let endpoint = format!("http://{}", plane.xds);
        let connect_by = started + self.timeout;
        let tasks: Vec<_> = identities
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let (endpoint, node, probe, board) = (
                    endpoint.clone(),
                    id.node(self.args.vhds),
                    probe.clone(),
                    board.clone(),
                );
                if self.args.delta || self.args.vhds {
                    tokio::spawn(client::run::<DeltaClient>(
                        i, endpoint, node, probe, board, connect_by,
                    ))
                } else {
                    tokio::spawn(client::run::<SotwClient>(
                        i, endpoint, node, probe, board, connect_by,
                    ))
                }
            })
            .collect();
        // Aborts the clients however this run ends.
        let _guard = AbortOnDrop(tasks);
        let result = self
            .measure(run, &mut plane, &board, (started, clients_cpu), state, out)
            .await;
        let end = plane.memory();
        plane.stop().await;
        if self.args.via == Via::Apply {
            // Applied config lives in the control plane's memory: the next run's one reads the file.
            let vs = self.spec.virtual_service(0, state.v1_weight);
            mesh::write_atomic(&MeshSpec::vs_file(&self.plane.config_dir, 0), &vs)?;
        }
        result?;
        out.resources.at_end.push(end);
        Ok(())
    }

    async fn measure(
        &self,
        run: usize,
        plane: &mut Plane,
        board: &Arc<Board>,
        (started, clients_cpu): (Instant, f64),
        state: &mut State,
        out: &mut Collected,
    ) -> Result<()> {
        let expected_weight = state.v1_weight;
        let expected_eps = self.spec.probe_endpoints(state.extra_endpoint);
        let affected: &[bool] = &self
            .identities()
            .iter()
            .map(|c| c.affected)
            .collect::<Vec<_>>();
        let everyone = vec![true; affected.len()];
        let ready = wait_all(
            board,
            plane,
            &self.plane.log,
            started + self.timeout,
            "startup: the first complete config (CDS, EDS, LDS, RDS) ACKed",
            &everyone,
            |i, s| {
                // Also check the probes, so a proxy missing the service (or, scoped away from it,
                // holding it) is noticed now.
                let ok = if affected[i] {
                    s.route_probe.map(|p| p.0) == Some(expected_weight)
                        && s.endpoints_probe.map(|p| p.0) == Some(expected_eps)
                } else {
                    s.route_probe.is_none() && s.endpoints_probe.is_none()
                };
                s.ready_at.filter(|_| ok)
            },
        )
        .await?;
        let startup_cpu = plane.cpu_seconds();
        plane.pin();
        record(&mut out.startup, &ready, started);
        out.startup
            .clients_cpu_s
            .push(procfs::own_cpu_seconds().unwrap_or(f64::NAN) - clients_cpu);
        out.resources.startup_cpu_s.push(startup_cpu);
        out.resources.after_startup.push(plane.memory());
        if run == 0 {
            let s = board.slot(0);
            let held = |t| s.held.get(&t).copied().unwrap_or(0);
            out.size = ConfigSize {
                clusters: held(xds_client::ResourceType::Cluster),
                endpoints: held(xds_client::ResourceType::Endpoints),
                listeners: held(xds_client::ResourceType::Listener),
                routes: held(xds_client::ResourceType::Route),
                virtual_hosts: held(xds_client::ResourceType::VirtualHost),
            };
        }
        eprintln!(
            "run {}: startup: last proxy ready after {:.0} ms, control plane {:.2} CPU s, RSS {:.0} MB",
            run + 1,
            out.startup.last_ms.last().copied().unwrap_or(f64::NAN),
            startup_cpu,
            mb(plane.memory().rss)
        );

        // 2. Idle.
        let cpu0 = plane.cpu_seconds();
        let t0 = Instant::now();
        tokio::time::sleep(self.idle).await;
        let secs = t0.elapsed().as_secs_f64();
        if secs > 0.0 {
            out.resources
                .idle_cpu_per_s
                .push((plane.cpu_seconds() - cpu0) / secs);
        }

        // 3. VirtualService change.
        let weight = if state.v1_weight == WEIGHTS_START {
            WEIGHTS_CHANGED
        } else {
            WEIGHTS_START
        };
        let yaml = self.spec.virtual_service(0, weight);
        let vs_file = MeshSpec::vs_file(&self.plane.config_dir, 0);
        let change = Change::begin(plane, board).await;
        match self.args.via {
            Via::File => mesh::write_atomic(&vs_file, &yaml)?,
            Via::Apply => plane.apply(&yaml).await?,
        }
        state.v1_weight = weight;
        let got = wait_all(
            board,
            plane,
            &self.plane.log,
            change.at + self.timeout,
            &format!("VirtualService change: the RDS with v1 weight {weight} ACKed"),
            affected,
            |_, s| s.route_probe.filter(|p| p.0 == weight).map(|p| p.1),
        )
        .await?;
        change.end(plane, board, &got, &mut out.vs).await;
        eprintln!(
            "run {}: VirtualService change: last proxy after {:.0} ms",
            run + 1,
            out.vs.last_ms.last().copied().unwrap_or(f64::NAN)
        );

        // 4. Endpoint change: one instance of the probe service added or removed.
        let extra = !state.extra_endpoint;
        let want = self.spec.probe_endpoints(extra);
        let text = self.spec.mesh_yaml(extra);
        let change = Change::begin(plane, board).await;
        mesh::write_atomic(&self.plane.config_dir.join("mesh.yaml"), &text)?;
        state.extra_endpoint = extra;
        let got = wait_all(
            board,
            plane,
            &self.plane.log,
            change.at + self.timeout,
            &format!("endpoint change: the EDS with {want} endpoints in the probe cluster ACKed"),
            affected,
            |_, s| s.endpoints_probe.filter(|p| p.0 == want).map(|p| p.1),
        )
        .await?;
        change.end(plane, board, &got, &mut out.eps).await;
        eprintln!(
            "run {}: endpoint change: last proxy after {:.0} ms",
            run + 1,
            out.eps.last_ms.last().copied().unwrap_or(f64::NAN)
        );
        Ok(())
    }
}

/// The CPU counters at the moment of a change.
struct Change {
    at: Instant,
    /// `bosun_control_pushes_total` before the change.
    pushes: f64,
    control_cpu: f64,
    clients_cpu: f64,
    clients_busy: Duration,
}

impl Change {
    async fn begin(plane: &Plane, board: &Board) -> Change {
        Change {
            pushes: plane.metric(PUSHES).await.unwrap_or(f64::NAN),
            control_cpu: plane.cpu_seconds(),
            clients_cpu: procfs::own_cpu_seconds().unwrap_or(f64::NAN),
            clients_busy: busy(board),
            at: Instant::now(),
        }
    }

    async fn end(self, plane: &Plane, board: &Board, got: &[Instant], phase: &mut Phase) {
        phase
            .control_cpu_s
            .push(plane.cpu_seconds() - self.control_cpu);
        phase
            .clients_cpu_s
            .push(procfs::own_cpu_seconds().unwrap_or(f64::NAN) - self.clients_cpu);
        phase
            .clients_busy_s
            .push((busy(board).saturating_sub(self.clients_busy)).as_secs_f64());
        record(phase, got, self.at);
        // The push loop counts a push only after every proxy's snapshot is set, so proxies may have
        // ACKed before: wait (briefly) for the count to move before reading its duration.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && plane
                .metric(PUSHES)
                .await
                .is_none_or(|n| n.partial_cmp(&self.pushes) != Some(std::cmp::Ordering::Greater))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        phase.last_push_s.push(
            plane
                .metric("bosun_control_last_push_seconds")
                .await
                .unwrap_or(f64::NAN),
        );
    }
}

fn busy(board: &Board) -> Duration {
    (0..board.slots.len()).map(|i| board.slot(i).busy).sum()
}

fn record(phase: &mut Phase, times: &[Instant], since: Instant) {
    let ms: Vec<f64> = times
        .iter()
        .map(|t| t.saturating_duration_since(since).as_secs_f64() * 1000.0)
        .collect();
    phase
        .first_ms
        .push(ms.iter().copied().fold(f64::INFINITY, f64::min));
    phase.last_ms.push(ms.iter().copied().fold(0.0, f64::max));
    phase.samples.extend(ms);
}

/// Waits until `done` gives a time for every proxy `waited` marks, or `deadline`; then fails saying
/// which proxies are missing and where they stand. A proxy whose stream ended, or a control plane
/// that exited, fails at once. The times are those of the waited-for proxies.
async fn wait_all(
    board: &Board,
    plane: &mut Plane,
    log: &std::path::Path,
    deadline: Instant,
    what: &str,
    waited: &[bool],
    done: impl Fn(usize, &Slot) -> Option<Instant>,
) -> Result<Vec<Instant>> {
    loop {
        plane.check_running(log)?;
        let slots = board.snapshot();
        if let Some(s) = slots.iter().find(|s| s.error.is_some()) {
            bail!(
                "{what}: proxy {} lost its stream: {}",
                s.node_id,
                s.error.as_deref().unwrap_or("")
            );
        }
        let times: Vec<Option<Instant>> = slots
            .iter()
            .enumerate()
            .filter(|(i, _)| waited[*i])
            .map(|(i, s)| done(i, s))
            .collect();
        if times.iter().all(Option::is_some) {
            return Ok(times.into_iter().flatten().collect());
        }
        let now = Instant::now();
        if now >= deadline {
            let missing: Vec<&Slot> = slots
                .iter()
                .enumerate()
                .filter(|(i, _)| waited[*i])
                .map(|(_, s)| s)
                .zip(&times)
                .filter(|(_, t)| t.is_none())
                .map(|(s, _)| s)
                .collect();
            let mut msg = format!(
                "{what}: {} of {} proxies still missing it at the deadline (--timeout-secs)",
                missing.len(),
                times.len(),
            );
            for s in missing.iter().take(3) {
                let _ = write!(
                    msg,
                    "; {} has route weight {:?}, probe endpoints {:?}, ready {}, acked {:?}, {} NACKs{}",
                    s.node_id,
                    s.route_probe.map(|p| p.0),
                    s.endpoints_probe.map(|p| p.0),
                    s.ready_at.is_some(),
                    s.acked,
                    s.nacks,
                    s.last_nack
                        .as_deref()
                        .map(|m| format!(" (last: {m})"))
                        .unwrap_or_default()
                );
            }
            let _ = write!(msg, "; control plane log: {}", log.display());
            bail!(msg);
        }
        // Woken by any client update; the cap re-checks the control plane now and then.
        let wait = (deadline - now).min(Duration::from_millis(500));
        let _ = tokio::time::timeout(wait, board.notify.notified()).await;
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            if v >= 100.0 {
                format!("{v:.0} ms")
            } else {
                format!("{v:.1} ms")
            }
        }
        _ => "—".to_owned(),
    }
}

fn secs(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.3} s"),
        _ => "—".to_owned(),
    }
}

/// The Markdown table, and the setup above it.
fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## control-bench: {} services, {} endpoints, {} VirtualServices, {} proxies ({}), {} of {} runs",
        r.services,
        r.endpoints,
        r.virtual_services,
        r.proxies,
        match r.mode {
            "delta" => "delta xDS",
            "vhds" => "delta xDS, service hosts over VHDS",
            _ => "SotW xDS",
        },
        r.runs_done,
        r.runs_planned
    );
    let _ = writeln!(
        out,
        "\nVirtualService change via {}; control plane flags: {}; {} CPUs, {}.",
        match r.via {
            Via::File => "rewriting its file (read on the file change event)",
            Via::Apply => "POST /apply",
        },
        r.debounce_ms.map_or(
            "defaults (--debounce-ms 100, --debounce-max-ms 10000)".to_owned(),
            |d| format!("--debounce-ms {d}")
        ),
        r.cpus,
        r.pinning
    );
    let _ = writeln!(
        out,
        "{}",
        if r.sidecar_scope {
            format!(
                "A Sidecar in each namespace scopes its proxies to that namespace (`--sidecar-scope`): the changes concern the {} proxies of the changed service's namespace, and the rows below are theirs.",
                r.affected_proxies
            )
        } else {
            "No Sidecar: every proxy sees every service, so every change concerns all proxies."
                .to_owned()
        }
    );
    let _ = writeln!(
        out,
        "Each proxy holds {} clusters, {} endpoint assignments, {} listeners, {} route configs, {} virtual hosts over VHDS.\n",
        r.config_size.clusters,
        r.config_size.endpoints,
        r.config_size.listeners,
        r.config_size.routes,
        r.config_size.virtual_hosts
    );
    let _ = writeln!(
        out,
        "| per proxy, over proxies × runs | p50 | p99 | max | first proxy (median) | last proxy (median / max) | generate (last_push, median) | control CPU s | clients CPU s |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (label, p) in [
        ("startup → full config ACKed", &r.startup),
        ("VirtualService change → RDS (or VHDS) ACKed", &r.vs_change),
        ("endpoint change → EDS ACKed", &r.endpoint_change),
    ] {
        let startup = std::ptr::eq(p, &r.startup);
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} / {} | {} | {} | {} |",
            ms(p.p50_ms),
            ms(p.p99_ms),
            ms(p.max_ms),
            ms(p.first_p50_ms),
            ms(p.last_p50_ms),
            ms(p.last_max_ms),
            if startup {
                "—".to_owned()
            } else {
                ms(p.last_push_s_p50.map(|s| s * 1000.0))
            },
            if startup {
                secs(median(&r.resources.startup_cpu_s))
            } else {
                secs(p.control_cpu_s_p50)
            },
            secs(p.clients_cpu_s_p50),
        );
    }
    let mem = |v: &[Memory], f: fn(&Memory) -> u64| {
        let xs: Vec<f64> = v.iter().map(|m| mb(f(m))).collect();
        let max = xs.iter().copied().reduce(f64::max);
        match (median(&xs), max) {
            (Some(m), Some(x)) => format!("{m:.0} MB (max {x:.0})"),
            _ => "—".to_owned(),
        }
    };
    let res = &r.resources;
    let _ = writeln!(out, "\n| control plane | median over runs |\n|---|---:|");
    let _ = writeln!(
        out,
        "| VmRSS after startup | {} |",
        mem(&res.after_startup, |m| m.rss)
    );
    let _ = writeln!(
        out,
        "| VmHWM (peak) after startup | {} |",
        mem(&res.after_startup, |m| m.hwm)
    );
    let _ = writeln!(out, "| VmRSS at end | {} |", mem(&res.at_end, |m| m.rss));
    let _ = writeln!(
        out,
        "| VmHWM (peak) at end | {} |",
        mem(&res.at_end, |m| m.hwm)
    );
    let _ = writeln!(
        out,
        "| CPU at idle | {} |",
        median(&res.idle_cpu_per_s).map_or("—".to_owned(), |v| format!(
            "{:.1} % of a core",
            v * 100.0
        ))
    );
    let _ = writeln!(
        out,
        "| clients' decode + apply time per VirtualService / endpoint change (summed over proxies) | {} / {} |",
        secs(r.vs_change.clients_busy_s_p50),
        secs(r.endpoint_change.clients_busy_s_p50)
    );
    if let Some(f) = &r.failure {
        let _ = writeln!(out, "\nFAILED: {f}");
    }
    out
}
