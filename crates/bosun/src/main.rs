//! `bosun`: the one binary of the Bosun service mesh.

mod bootstrap_cmd;
mod check;
mod control_cmd;
mod demo_app;
mod proxy_cmd;
mod proxy_config;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "bosun",
    version,
    about = "A service mesh that speaks Istio's API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One line per finding: `PATH:LINE:COL: error[CODE]: MESSAGE (at FIELD)`.
    Text,
    /// A JSON array of findings with keys path, line, column, severity, code, message, field.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check Istio YAML resource by resource, with Istio's admission rules.
    ///
    /// Exit status: 0 no errors (warnings allowed), 1 errors found, 2 a path could not be read.
    Validate {
        /// Files or directories (searched for *.yaml, *.yml, *.json); `-` reads standard input.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Validate, then check resources against each other like `istioctl analyze`.
    ///
    /// Exit status: 0 no errors (warnings allowed), 1 errors found, 2 a path could not be read.
    Analyze {
        /// Files or directories (searched for *.yaml, *.yml, *.json); `-` reads standard input.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// A mesh file listing services and workloads (see README): hosts and gateway workloads it
        /// defines count as existing.
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Print an Envoy bootstrap that points a proxy (Envoy or `bosun proxy`) at `bosun control` over ADS.
    ///
    /// The output is JSON, which Envoy and `bosun proxy` read as YAML.
    Bootstrap {
        /// Istio's node id, `sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local` (`router~…` for gateways).
        #[arg(long)]
        node_id: String,
        /// Workload labels, `app=reviews,version=v1` (repeatable).
        #[arg(long)]
        labels: Vec<String>,
        /// How traffic reaches the proxy (Istio's INTERCEPTION_MODE).
        #[arg(long, value_enum, default_value_t = bootstrap_cmd::Interception::Redirect)]
        interception: bootstrap_cmd::Interception,
        /// The control plane's ADS address.
        #[arg(long, default_value = "127.0.0.1:15010")]
        xds: String,
        /// The proxy's admin port.
        #[arg(long, default_value_t = 15000)]
        admin_port: u16,
        /// Use incremental (delta) xDS instead of state-of-the-world.
        #[arg(long)]
        delta: bool,
        /// Take the route tables' service hosts over VHDS, each sent on its own, so that a change to
        /// one service's routes sends that host instead of the whole table (implies --delta).
        #[arg(long)]
        vhds: bool,
    },
    /// Run the control plane: serve a directory of Istio YAML and a mesh file to proxies over ADS.
    ///
    /// Exit status: 0 after SIGTERM or Ctrl-C, 1 when it cannot start (a port taken, no such directory).
    Control(control_cmd::ControlArgs),
    /// Run the data plane from an Envoy bootstrap file (YAML or JSON), as `envoy -c FILE`.
    ///
    /// Exit status: 0 after a clean drain (SIGTERM or Ctrl-C), 1 when the config cannot be run.
    Proxy {
        /// The Envoy v3 bootstrap: node, admin, static_resources (listeners, clusters).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Worker threads (default: one per core).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Seconds in-flight requests get to finish after SIGTERM.
        #[arg(long, default_value_t = 5)]
        drain_time_s: u64,
        /// trace, debug, info, warn, error or off (or a tracing filter such as `proxy=debug`).
        #[arg(long, short = 'l', default_value = "info")]
        log_level: String,
        /// How often buffered access log lines are written out, in milliseconds (Envoy's flag; a
        /// sink also writes out whenever it holds 64 KiB, and on exit).
        #[arg(long, default_value_t = 1000)]
        file_flush_interval_msec: u64,
    },
    /// Show what a running proxy holds (bosun proxy or Envoy), from its admin interface, as
    /// `istioctl proxy-config` does: clusters, listeners, routes or endpoints, a line each.
    ///
    /// Exit status: 0 shown, 2 the admin interface did not answer.
    ProxyConfig {
        #[arg(value_enum)]
        kind: proxy_config::Kind,
        /// The proxy's admin address (`bosun up` prints each sidecar's).
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin: String,
        #[arg(long, short, value_enum, default_value_t = proxy_config::Format::Short)]
        output: proxy_config::Format,
    },
    /// Run the built-in test workload: a JSON echo that can call other services, fail and be slow.
    ///
    /// Exit status: 0 after SIGTERM or Ctrl-C, 1 when an address cannot be bound, 2 for bad flags.
    DemoApp(demo_app::DemoAppArgs),
    /// Run a whole mesh on this machine: control plane, a sidecar per workload, gateways and apps.
    ///
    /// Reads DIR/mesh.yaml (services, workloads and how to run them) and the Istio YAML in DIR.
    /// Prints what runs where and the ingress URL, forwards every process's log prefixed with its
    /// name, and on Ctrl-C or SIGTERM stops everything it started. Exit status: 0 after a stop,
    /// 1 when the files have errors or the mesh did not start, 2 when a port it needs is taken.
    Up {
        /// The directory with mesh.yaml and the Istio YAML.
        dir: PathBuf,
        /// The control plane's xDS port (on 127.0.0.1).
        #[arg(long, default_value_t = 15010)]
        xds_port: u16,
        /// The control plane's debug port (on 127.0.0.1): /ready, /debug/syncz, POST /apply.
        #[arg(long, default_value_t = 15014)]
        debug_port: u16,
        /// How apps' traffic reaches their sidecars: `iptables` runs each instance in a network
        /// namespace of its own with Istio's capture rules (root).
        #[arg(long, value_enum, default_value_t = up::Capture::None)]
        capture: up::Capture,
        /// With `--capture iptables`: the port on this machine's loopback the ingress is relayed
        /// from (default: the gateway's port).
        #[arg(long)]
        ingress_port: Option<u16>,
        /// Seconds to wait for every proxy, app and the ingress to be ready.
        #[arg(long, default_value_t = 20)]
        ready_timeout: u64,
    },
    /// Change a running mesh: validate FILE (as `bosun validate`), then send it to the control plane.
    ///
    /// Exit status: 0 applied, 1 refused (by validation or by the control plane), 2 not sent.
    Apply {
        /// Istio YAML (several documents allowed).
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// The control plane's debug address (`bosun up --debug-port`).
        #[arg(long, default_value = "http://127.0.0.1:15014")]
        control: String,
    },
    /// Internal: how `bosun up` starts its children, so they die with it (see src/up/supervise.rs).
    #[command(name = up::TRAMPOLINE, hide = true)]
    UpChild {
        #[arg(long)]
        parent: u32,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { paths, output } => check::run(&paths, None, false, output),
        Command::Analyze {
            paths,
            registry,
            output,
        } => check::run(&paths, registry.as_deref(), true, output),
        Command::Bootstrap {
            node_id,
            labels,
            interception,
            xds,
            admin_port,
            delta,
            vhds,
        } => bootstrap_cmd::run(&bootstrap_cmd::BootstrapArgs {
            node_id: &node_id,
            labels: &labels,
            interception,
            xds: &xds,
            admin_port,
            delta,
            vhds,
        })
        .map(|()| ExitCode::SUCCESS),
        Command::Control(args) => control_cmd::run(&args),
        Command::Proxy {
            config,
            concurrency,
            drain_time_s,
            log_level,
            file_flush_interval_msec,
        } => proxy_cmd::run(&proxy_cmd::ProxyArgs {
            config: &config,
            concurrency,
            drain_time: std::time::Duration::from_secs(drain_time_s),
            log_level: &log_level,
            access_log_flush_interval: std::time::Duration::from_millis(file_flush_interval_msec),
        }),
        Command::ProxyConfig {
            kind,
            admin,
            output,
        } => proxy_config::run(kind, &admin, output),
        Command::DemoApp(args) => demo_app::run(args),
        Command::Up {
            dir,
            xds_port,
            debug_port,
            capture,
            ingress_port,
            ready_timeout,
        } => up::run(&up::UpArgs {
            dir,
            xds_port,
            debug_port,
            capture,
            ingress_port,
            ready_timeout: std::time::Duration::from_secs(ready_timeout),
        }),
        Command::Apply { file, control } => up::apply(&file, &control),
        Command::UpChild { parent, command } => match command.split_first() {
            Some((program, args)) => Ok(up::exec_child(parent, program, args)),
            None => Ok(ExitCode::from(2)),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bosun: {e:#}");
            ExitCode::from(2)
        }
    }
}
