//! `bosun up DIR`: a whole mesh on one machine (control plane, a sidecar per instance, gateways, apps),
//! and `bosun apply -f FILE`: a live change sent to the running control plane.
//!
//! The order: plan (`plan.rs`), check every port (`ports.rs`), write the effective registry and the
//! bootstraps into a temporary state dir, start `bosun control` and wait for its `/ready`, start the
//! proxies and apps, wait (bounded) until every proxy's admin `/ready` answers 200, every app port
//! accepts and the ingress answers, print the table, then supervise (`supervise.rs`) until Ctrl-C or
//! SIGTERM, applying edits of `DIR/mesh.yaml` meanwhile (`live.rs`).
//!
//! With `--capture iptables` (`netns.rs`) every instance runs in a network namespace of its own with
//! Istio's capture rules, the control plane in a hub namespace, and `bosun up` relays the ingress and
//! the control plane's debug port from this machine's loopback into them.
//!
//! A child that dies after start-up is reported (which, pid, status) and the rest keeps running, so a
//! crashing app can be read about and fixed while the mesh stays up — except the control plane: without
//! it nothing can change, so its death stops everything (exit 1). During start-up any death is fatal.

/// `eprintln!` that ignores write errors: a closed stderr must not panic `bosun up` and leave its
/// children and state directory behind.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub(crate) mod http;
mod live;
mod netns;
mod plan;
mod ports;
mod supervise;

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::bootstrap_cmd::{self, BootstrapArgs, Interception};
pub use plan::{Instance, Network, Plan, PlanError};
use supervise::{Children, Role};
pub use supervise::{TRAMPOLINE, exec_child};

/// How workloads' traffic reaches their sidecars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Capture {
    /// Apps use their sidecar as an explicit HTTP proxy (`HTTP_PROXY`); no root needed.
    None,
    /// A network namespace per instance with Istio's iptables rules, as in Kubernetes (needs root).
    Iptables,
}

#[derive(Debug)]
pub struct UpArgs {
    pub dir: PathBuf,
    pub xds_port: u16,
    pub debug_port: u16,
    pub capture: Capture,
    /// With capture: the host port the ingress is relayed from (default: the gateway's).
    pub ingress_port: Option<u16>,
    pub ready_timeout: Duration,
}

/// Where the control plane listens (the same address the bootstraps point at).
const CONTROL_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Bound on each readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Between readiness rounds.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

pub fn run(args: &UpArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let (tools, network) = match args.capture {
        Capture::None => {
            if args.ingress_port.is_some() {
                bail!(
                    "--ingress-port is for --capture iptables; without capture the ingress listens where mesh.yaml puts the gateway"
                );
            }
            (None, Network::Loopback)
        }
        Capture::Iptables => (Some(netns::prerequisites()?), netns::choose_network()),
    };
    let plan = match plan::load(&args.dir, network, &[]) {
        Ok(p) => p,
        Err(PlanError::Findings(lines)) => {
            for l in lines {
                say!("{l}");
            }
            say!(
                "bosun up: fix the errors above (`bosun analyze {}` checks them)",
                args.dir.display()
            );
            return Ok(ExitCode::from(1));
        }
        Err(PlanError::Other(e)) => return Err(e),
    };
    let control_ip = match network {
        Network::Loopback => CONTROL_IP,
        Network::Pods { subnet } => Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1),
    };
    let xds = SocketAddr::new(IpAddr::V4(control_ip), args.xds_port);
    let debug = SocketAddr::new(IpAddr::V4(control_ip), args.debug_port);
    // What this machine's loopback serves: the control plane's debug port (`bosun apply`) and the
    // ingress; with pods, relays to them.
    let host_debug = SocketAddr::new(IpAddr::V4(CONTROL_IP), args.debug_port);
    let host_ingress = plan
        .ingress
        .map(|a| SocketAddr::new(a.ip(), args.ingress_port.unwrap_or(a.port())));

    let mut binds = Vec::new();
    match network {
        Network::Loopback => {
            binds.push((xds, "control plane xDS, --xds-port".to_owned()));
            binds.push((debug, "control plane debug, --debug-port".to_owned()));
            binds.extend(plan.instances.iter().flat_map(Instance::binds));
        }
        // Everything else binds inside namespaces made for this run.
        Network::Pods { .. } => {
            binds.push((
                host_debug,
                "control plane debug relay, --debug-port".to_owned(),
            ));
            if let Some(a) = host_ingress {
                binds.push((a, "ingress relay, --ingress-port".to_owned()));
            }
        }
    }
    if let Some(clash) = first_duplicate(&binds) {
        bail!("{clash}");
    }
    let taken = ports::check(&binds);
    if !taken.is_empty() {
        for t in &taken {
            say!("bosun up: {t}");
        }
        say!(
            "bosun up: {} port(s) taken; stop what uses them, or change the addresses in mesh.yaml (or --xds-port/--debug-port{})",
            taken.len(),
            if tools.is_some() {
                "/--ingress-port"
            } else {
                ""
            }
        );
        return Ok(ExitCode::from(2));
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    // Signals are taken over before anything is made or started, so an early Ctrl-C (while the
    // namespaces are being made, say) leaves nothing behind: it is seen once supervision starts.
    let signals = {
        let _in_runtime = runtime.enter();
        Signals::take_over()?
    };
    let pods = match tools {
        Some(tools) => {
            netns::clean_leftovers(&tools);
            Some(netns::Pods::create(tools, &plan)?)
        }
        None => None,
    };
    let interception = match network {
        Network::Loopback => Interception::None,
        Network::Pods { .. } => Interception::Redirect,
    };
    let state = StateDir::create()?;
    let registry_path = state.path.join("registry.json");
    write_registry(&registry_path, &plan.effective_registry)?;
    let bootstraps = plan
        .instances
        .iter()
        .map(|i| write_bootstrap(&state.path, i, interception, xds))
        .collect::<Result<Vec<_>>>()?;

    let launch = Launch {
        plan: &plan,
        xds,
        debug,
        host_debug,
        host_ingress,
        pods: pods.as_ref(),
        state: &state.path,
        interception,
        registry: &registry_path,
        bootstraps: &bootstraps,
        ingress_relay: tokio::sync::watch::channel(None).0,
        ready_timeout: args.ready_timeout,
        started,
    };
    let code = runtime.block_on(supervise_mesh(&launch, signals));
    // Relays and their connections end with the runtime, before their namespaces go.
    drop(runtime);
    drop(state);
    drop(pods);
    code
}

/// Writes instance `i`'s proxy bootstrap into the state directory; its path.
fn write_bootstrap(
    state: &Path,
    i: &Instance,
    interception: Interception,
    xds: SocketAddr,
) -> Result<PathBuf> {
    let path = state.join(format!("{}.{}.bootstrap.json", i.name, i.namespace));
    let labels = i.label_args();
    let value = bootstrap_cmd::bootstrap(&BootstrapArgs {
        node_id: &i.node_id(),
        labels: &labels,
        interception,
        xds: &xds.to_string(),
        admin_port: plan::ADMIN_PORT,
        delta: false,
        vhds: false,
    })?;
    std::fs::write(&path, serde_json::to_vec_pretty(&value)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Writes the effective registry the control plane reads: whole, then renamed, so the control plane
/// never reads half a file.
fn write_registry(path: &Path, registry: &serde_json::Value) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    serde_json::to_vec_pretty(registry)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Two things that would bind the same address (e.g. a gateway port equal to a sidecar port).
fn first_duplicate(binds: &[(SocketAddr, String)]) -> Option<String> {
    let mut seen = std::collections::BTreeMap::new();
    for (addr, what) in binds {
        if let Some(other) = seen.insert(*addr, what) {
            return Some(format!(
                "{addr} would be bound twice: by the {other} and by the {what}"
            ));
        }
    }
    None
}

/// The temporary files of one run (registry, bootstraps), removed on drop.
#[derive(Debug)]
struct StateDir {
    path: PathBuf,
}

impl StateDir {
    fn create() -> Result<StateDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("bosun-up-{}-{nanos:08x}", std::process::id()));
        std::fs::create_dir(&path)
            .with_context(|| format!("cannot create the state directory {}", path.display()))?;
        Ok(StateDir { path })
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[derive(Debug)]
struct Launch<'a> {
    plan: &'a Plan,
    xds: SocketAddr,
    debug: SocketAddr,
    /// Where the debug port and the ingress are reached from this machine (with pods: relays).
    host_debug: SocketAddr,
    host_ingress: Option<SocketAddr>,
    /// With `--capture iptables`: the namespaces.
    pods: Option<&'a netns::Pods>,
    /// With `--capture iptables`: where the ingress relay sends connections (the gateway's pod).
    ingress_relay: tokio::sync::watch::Sender<Option<(String, SocketAddr)>>,
    /// The state directory (bootstraps, registry).
    state: &'a Path,
    interception: Interception,
    registry: &'a Path,
    bootstraps: &'a [PathBuf],
    ready_timeout: Duration,
    started: Instant,
}

/// SIGINT, SIGTERM and SIGHUP, which stop the mesh.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// From now on these signals no longer end the process; must run inside the runtime.
    fn take_over() -> Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    /// The next of them (also one that came before this call).
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

/// Starts everything, supervises, stops everything; the exit code of `bosun up`.
async fn supervise_mesh(launch: &Launch<'_>, mut signals: Signals) -> Result<ExitCode> {
    let mut children = Children::new();

    let start = tokio::select! {
        r = start(launch, &mut children) => Some(r),
        () = signals.recv() => None,
    };
    let pids = match start {
        None => {
            say!("bosun up: stopping (signal during start-up)");
            children.stop_all().await;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Err(e)) => {
            say!("bosun up: {e:#}");
            say!("bosun up: stopping everything");
            children.stop_all().await;
            return Ok(ExitCode::from(1));
        }
        Some(Ok(pids)) => pids,
    };

    let mut watch = live::MeshWatch::new(launch, pids);
    let mut tick = tokio::time::interval(live::MESH_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let code = loop {
        tokio::select! {
            _ = tick.tick() => {
                // An edit may take seconds (instances stopped, started, waited for): Ctrl-C
                // still stops everything meanwhile.
                tokio::select! {
                    () = watch.check(launch, &mut children) => {}
                    () = signals.recv() => break ExitCode::SUCCESS,
                }
            }
            () = signals.recv() => break ExitCode::SUCCESS,
            exit = children.next_exit() => {
                let Some(exit) = exit else { break ExitCode::from(1) };
                say!("bosun up: {} (pid {}) exited unexpectedly with {}", exit.label, exit.pid, exit.status);
                if exit.role == Role::Control {
                    say!("bosun up: without the control plane the mesh cannot change; stopping everything");
                    break ExitCode::from(1);
                }
                say!("bosun up: the rest keeps running (Ctrl-C stops everything)");
            }
        }
    };
    say!("bosun up: stopping");
    children.stop_all().await;
    Ok(code)
}

/// Starts the control plane, proxies and apps, and waits until they are ready; prints the table.
/// Returns the pids of each instance's processes (in plan order).
async fn start(launch: &Launch<'_>, children: &mut Children) -> Result<Vec<Vec<i32>>> {
    let plan = launch.plan;
    let pods = launch.pods;
    let deadline = Instant::now() + launch.ready_timeout;
    let hub = pods.map(|p| p.hub().to_owned());

    let mut control_args = vec![
        "control".to_owned(),
        "--config".to_owned(),
        plan.dir.display().to_string(),
        "--registry".to_owned(),
        launch.registry.display().to_string(),
        "--xds-port".to_owned(),
        launch.xds.port().to_string(),
        "--debug-port".to_owned(),
        launch.debug.port().to_string(),
    ];
    if pods.is_some() {
        control_args.extend(
            [
                "--address",
                &launch.xds.ip().to_string(),
                "--capture",
                "iptables",
            ]
            .map(str::to_owned),
        );
    }
    let control_launcher = launch.launcher(hub.as_deref(), None);
    children.spawn(
        "control",
        Role::Control,
        &control_launcher,
        None,
        &control_args,
        &[],
    )?;
    let control = vec![Probe {
        who: "control".to_owned(),
        netns: hub.clone(),
        addr: launch.debug,
        kind: ProbeKind::Ready,
    }];
    wait_ready(children, control, deadline, launch.ready_timeout, None).await?;

    if let Some(hub) = &hub {
        // From this machine's loopback into the namespaces: `bosun apply` and the ingress.
        let debug = tokio::sync::watch::channel(Some((hub.clone(), launch.debug))).1;
        start_relay(launch.host_debug, debug).await?;
        if let Some(host) = launch.host_ingress {
            launch
                .ingress_relay
                .send_replace(launch.ingress_target(plan));
            start_relay(host, launch.ingress_relay.subscribe()).await?;
        }
    }

    let mut probes = Vec::new();
    let mut pids = vec![Vec::new(); plan.instances.len()];
    // Every proxy first, then the apps, which call out through them.
    for (k, (i, bootstrap)) in plan.instances.iter().zip(launch.bootstraps).enumerate() {
        if let Some((pid, probe)) = spawn_proxy(launch, i, bootstrap, children)? {
            pids[k].push(pid);
            probes.push(probe);
        }
    }
    for (k, i) in plan.instances.iter().enumerate() {
        if let Some((pid, app_probes)) = spawn_app(launch, i, children)? {
            pids[k].push(pid);
            probes.extend(app_probes);
        }
    }
    if let Some(ingress) = launch.host_ingress {
        probes.push(Probe {
            who: "ingress".to_owned(),
            netns: None,
            addr: ingress,
            kind: ProbeKind::Answers,
        });
    }
    wait_ready(children, probes, deadline, launch.ready_timeout, None).await?;

    print_table(launch);
    Ok(pids)
}

impl Launch<'_> {
    /// What a child is started under to run in namespace `ns` as `uid` (empty without capture).
    fn launcher(&self, ns: Option<&str>, uid: Option<u32>) -> Vec<String> {
        self.pods
            .map_or_else(Vec::new, |p| p.launcher(ns.unwrap_or(""), uid))
    }

    /// Instance `i`'s namespace, with capture.
    fn pod(&self, i: &Instance) -> Option<String> {
        self.pods.and_then(|p| p.pod(i))
    }

    /// With capture, where the ingress relay sends connections: `plan`'s ingress gateway, in its pod.
    fn ingress_target(&self, plan: &Plan) -> Option<(String, SocketAddr)> {
        let gw = plan.ingress_instance()?;
        let to = SocketAddr::new(IpAddr::V4(gw.address), *gw.gateway_ports.first()?);
        Some((self.pod(gw)?, to))
    }
}

/// Starts instance `k`'s proxy (its sidecar, or the gateway) from `bootstrap`, unless it has none
/// (`sidecar: false`); its pid and readiness probe.
fn spawn_proxy(
    launch: &Launch<'_>,
    i: &Instance,
    bootstrap: &Path,
    children: &mut Children,
) -> Result<Option<(i32, Probe)>> {
    if !i.sidecar {
        return Ok(None);
    }
    let label = if i.gateway.is_some() {
        i.name.clone()
    } else {
        format!("{}/proxy", i.name)
    };
    let args = [
        "proxy",
        "-c",
        &bootstrap.display().to_string(),
        // One worker each: a mesh on one machine has many proxies and little traffic.
        "--concurrency",
        "1",
        // Within the stop grace, so a clean stop is not a SIGKILL.
        "--drain-time-s",
        "1",
    ]
    .map(str::to_owned);
    let ns = launch.pod(i);
    let as_proxy = launch.launcher(ns.as_deref(), Some(netns::PROXY_UID));
    let pid = children.spawn(&label, Role::Proxy, &as_proxy, None, &args, &[])?;
    let probe = Probe {
        who: label,
        addr: admin_addr(i, ns.is_some()),
        netns: ns,
        kind: ProbeKind::Ready,
    };
    Ok(Some((pid, probe)))
}

/// Starts instance `k`'s app, unless it has none (gateways); its pid and a probe per port.
fn spawn_app(
    launch: &Launch<'_>,
    i: &Instance,
    children: &mut Children,
) -> Result<Option<(i32, Vec<Probe>)>> {
    let Some(app) = &i.app else { return Ok(None) };
    let ns = launch.pod(i);
    let as_app = launch.launcher(ns.as_deref(), Some(netns::APP_UID));
    let pid = children.spawn(
        &i.name,
        Role::App,
        &as_app,
        app.program.as_deref().map(OsStr::new),
        &app.args,
        &app.env,
    )?;
    let probes = i
        .app_ports
        .iter()
        .map(|&p| Probe {
            who: i.name.clone(),
            netns: ns.clone(),
            addr: SocketAddr::new(IpAddr::V4(i.address), p),
            kind: ProbeKind::Accepts,
        })
        .collect();
    Ok(Some((pid, probes)))
}

/// A sidecar's admin address: its own address without capture, the pod's loopback with.
fn admin_addr(i: &Instance, in_pod: bool) -> SocketAddr {
    if in_pod {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), plan::ADMIN_PORT)
    } else {
        i.admin()
    }
}

/// Listens on `host` (this machine's loopback) and relays each connection to `target`.
async fn start_relay(host: SocketAddr, target: netns::RelayTarget) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(host)
        .await
        .with_context(|| format!("cannot listen on {host} (a relay into the mesh's namespaces)"))?;
    tokio::spawn(netns::relay(listener, target));
    Ok(())
}

/// One readiness condition, checked from inside network namespace `netns` (`None`: this one).
#[derive(Debug)]
struct Probe {
    who: String,
    netns: Option<String>,
    addr: SocketAddr,
    kind: ProbeKind,
}

#[derive(Debug, Clone, Copy)]
enum ProbeKind {
    /// `GET /ready` answers 200.
    Ready,
    /// A TCP connect succeeds.
    Accepts,
    /// `GET /` gets any HTTP answer (a 404 from a gateway with no route for `/` counts).
    Answers,
}

impl Probe {
    /// `Ok` when ready; `Err` says what was seen.
    async fn check(&self) -> Result<(), String> {
        let (addr, ns) = (self.addr, self.netns.as_deref());
        let request = |path| http::request_in(ns, addr, "GET", path, &[], b"", PROBE_TIMEOUT);
        match self.kind {
            ProbeKind::Ready => match request("/ready").await {
                Ok(a) if a.status == 200 => Ok(()),
                Ok(a) => Err(format!(
                    "GET http://{addr}/ready: {} {}",
                    a.status,
                    a.body.trim()
                )),
                Err(e) => Err(format!("{e:#}")),
            },
            ProbeKind::Accepts => match netns::connect(ns, addr, PROBE_TIMEOUT).await {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("nothing accepts on {addr}: {e}")),
            },
            ProbeKind::Answers => request("/").await.map(|_| ()).map_err(|e| format!("{e:#}")),
        }
    }

    fn who(&self) -> &str {
        &self.who
    }
}

/// Polls `probes` until all pass; fails when a child exits (one of `among`, if given) or `deadline`
/// passes, saying what was not ready and why.
async fn wait_ready(
    children: &mut Children,
    mut probes: Vec<Probe>,
    deadline: Instant,
    timeout: Duration,
    among: Option<&[i32]>,
) -> Result<()> {
    let mut last = Vec::new();
    loop {
        let exit = match among {
            Some(pids) => children.try_exit_among(pids),
            None => children.try_exit(),
        };
        if let Some(exit) = exit {
            bail!(
                "{} (pid {}) exited during start-up with {} (its log lines above say why)",
                exit.label,
                exit.pid,
                exit.status
            );
        }
        last.clear();
        let mut pending = Vec::new();
        for p in probes {
            if let Err(why) = p.check().await {
                last.push(format!("{}: {why}", p.who()));
                pending.push(p);
            }
        }
        probes = pending;
        if probes.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "not ready within {timeout:?} (--ready-timeout):\n  {}",
                last.join("\n  ")
            );
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

fn print_table(launch: &Launch<'_>) {
    let mut out = instance_table(launch.plan.instances.iter(), launch.pods);
    let hub = launch
        .pods
        .map(|p| format!(" (netns {})", p.hub()))
        .unwrap_or_default();
    out.push_str(&format!(
        "control: xds {}{hub} · debug http://{} (`bosun apply -f FILE --control http://{}` changes the mesh live)\n",
        launch.xds, launch.host_debug, launch.host_debug
    ));
    match launch.host_ingress {
        Some(addr) => out.push_str(&format!("ingress: http://{addr}\n")),
        None => out.push_str(
            "ingress: none (no Gateway selects a workload labelled istio: ingressgateway)\n",
        ),
    }
    out.push_str(&format!(
        "bosun up: ready in {} ms; Ctrl-C stops everything\n",
        launch.started.elapsed().as_millis()
    ));
    print_out(&out);
}

/// Not `print!`: it panics when stdout is closed (`bosun up | head`), and the mesh should run on.
fn print_out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, text.as_bytes());
    let _ = std::io::Write::flush(&mut stdout);
}

/// What runs where: a row per instance.
fn instance_table<'i>(
    instances: impl Iterator<Item = &'i Instance>,
    pods: Option<&netns::Pods>,
) -> String {
    let mut rows = vec![[
        "SERVICE".to_owned(),
        "VERSION".to_owned(),
        "INSTANCE".to_owned(),
        "ADDRESS".to_owned(),
        "SIDECAR ADMIN".to_owned(),
    ]];
    for i in instances {
        let address = if i.gateway.is_some() {
            let ports: Vec<String> = i.gateway_ports.iter().map(u16::to_string).collect();
            format!("{} (gateway :{})", i.address, ports.join(","))
        } else {
            let ports: Vec<String> = i.app_ports.iter().map(u16::to_string).collect();
            if ports.is_empty() {
                i.address.to_string()
            } else {
                format!("{}:{}", i.address, ports.join(","))
            }
        };
        rows.push([
            i.service().to_owned(),
            i.version().to_owned(),
            format!("{}.{}", i.name, i.namespace),
            address,
            match (i.sidecar, pods) {
                (true, None) => format!("http://{}", i.admin()),
                (true, Some(pods)) => {
                    format!(
                        "http://{} (netns {})",
                        admin_addr(i, true),
                        pods.pod(i).unwrap_or_default()
                    )
                }
                (false, _) => "- (sidecar: false)".to_owned(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `bosun apply -f FILE --control URL`: validate locally, then POST to the control plane's `/apply`.
pub fn apply(file: &Path, control: &str) -> Result<ExitCode> {
    // The same checks as `bosun validate`, so a broken file never reaches the running mesh.
    let code = crate::check::run(
        &[file.to_path_buf()],
        None,
        false,
        crate::OutputFormat::Text,
    )?;
    if code != ExitCode::SUCCESS {
        say!("bosun apply: not sent to the control plane");
        return Ok(code);
    }
    let addr = control_addr(control)?;
    let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let source = file.display().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let answer = runtime
        .block_on(http::request(
            addr,
            "POST",
            "/apply",
            &[
                ("x-bosun-source", &source),
                ("content-type", "application/yaml"),
            ],
            &body,
            Duration::from_secs(10),
        ))
        .with_context(|| {
            format!("is the mesh running (`bosun up`) with its debug port at {control}?")
        })?;
    let text = answer.body.trim_end();
    if answer.status == 200 {
        if !text.is_empty() {
            println!("{text}");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        if !text.is_empty() {
            println!("{text}");
        }
        say!(
            "bosun apply: the control plane refused it (HTTP {})",
            answer.status
        );
        Ok(ExitCode::from(1))
    }
}

/// `http://HOST:PORT` (or `HOST:PORT`) to a socket address; HOST must be an IP or `localhost`.
fn control_addr(control: &str) -> Result<SocketAddr> {
    http_addr(control, "control", "http://127.0.0.1:15014")
}

/// The address of an HTTP endpoint given as `http://IP:PORT[/]` or `IP:PORT` (`localhost` taken as
/// 127.0.0.1) on the command line, in flag `--flag`; the error shows `example`.
pub(crate) fn http_addr(text: &str, flag: &str, example: &str) -> Result<SocketAddr> {
    let rest = text.strip_prefix("http://").unwrap_or(text);
    let hostport = rest.split('/').next().unwrap_or("");
    let hostport = hostport.replacen("localhost", "127.0.0.1", 1);
    hostport
        .parse()
        .with_context(|| format!("--{flag} {text:?} must be http://IP:PORT, e.g. {example}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_urls_are_read() {
        for (url, want) in [
            ("http://127.0.0.1:15014", "127.0.0.1:15014"),
            ("127.0.0.2:9", "127.0.0.2:9"),
            ("http://localhost:15014/", "127.0.0.1:15014"),
        ] {
            assert_eq!(control_addr(url).expect(url).to_string(), want);
        }
        assert!(control_addr("https://x").is_err());
        assert!(control_addr("http://127.0.0.1").is_err());
    }

    #[test]
    fn double_binds_are_named() {
        let a: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let msg = first_duplicate(&[(a, "x".to_owned()), (a, "y".to_owned())]).expect("dup");
        assert!(msg.contains("127.0.0.1:8080") && msg.contains("x") && msg.contains("y"));
        assert!(first_duplicate(&[(a, "x".to_owned())]).is_none());
    }
}
