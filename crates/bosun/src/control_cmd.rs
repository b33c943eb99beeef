//! `bosun control`: the control plane, serving Istio YAML from a directory over ADS.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use control::generate::InboundAddressing;
use control::{ControlOptions, ControlPlane};
use mesh_api::types::sidecar::OutboundTrafficPolicyMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundPolicy {
    AllowAny,
    RegistryOnly,
}

/// How workloads' traffic reaches their sidecars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Capture {
    /// No capture (one machine, no root): other proxies send to a sidecar's inbound port 15006.
    None,
    /// iptables redirects to 15001/15006 (Kubernetes, or `bosun up --capture iptables`): other
    /// proxies send to the workload's own port.
    Iptables,
}

#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    /// The directory of Istio YAML to serve (searched recursively; watched for changes).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The mesh file (services and workload instances); default: DIR/mesh.yaml if present.
    #[arg(long)]
    registry: Option<PathBuf>,
    /// The address both ports listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// ADS (gRPC, plain text).
    #[arg(long, default_value_t = 15010)]
    xds_port: u16,
    /// Monitoring and debug: /ready, /metrics, /debug/syncz, /debug/config_dump?proxy=ID, POST /apply.
    #[arg(long, default_value_t = 15014)]
    debug_port: u16,
    /// The mesh-wide outbound traffic policy when the mesh file sets none.
    #[arg(long, value_enum, default_value_t = OutboundPolicy::AllowAny)]
    outbound_traffic_policy: OutboundPolicy,
    /// Where every proxy writes its access log when the mesh file's `accessLogFile` does not say
    /// (`/dev/stdout` for its standard output; Istio's `meshConfig.accessLogFile`).
    #[arg(long, value_name = "PATH")]
    access_log_file: Option<String>,
    /// How traffic reaches sidecars, which decides the endpoints sent to the other proxies.
    #[arg(long, value_enum, default_value_t = Capture::None)]
    capture: Capture,
    /// Quiet time a change waits for before it is pushed, in milliseconds.
    #[arg(long, default_value_t = 100)]
    debounce_ms: u64,
    /// Longest a change waits before it is pushed, however busy the input, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    debounce_max_ms: u64,
    /// trace, debug, info, warn, error or off (or a tracing filter such as `control=debug`).
    #[arg(long, short = 'l', default_value = "info")]
    log_level: String,
}

pub fn run(args: &ControlArgs) -> Result<ExitCode> {
    let _log_filter = crate::proxy_cmd::init_logging(&args.log_level)?;
    let options = ControlOptions {
        config_dir: args.config.clone(),
        registry: args.registry.clone(),
        xds_addr: SocketAddr::new(args.address, args.xds_port),
        debug_addr: SocketAddr::new(args.address, args.debug_port),
        debounce_after: Duration::from_millis(args.debounce_ms),
        debounce_max: Duration::from_millis(args.debounce_max_ms.max(args.debounce_ms)),
        outbound_policy: match args.outbound_traffic_policy {
            OutboundPolicy::AllowAny => OutboundTrafficPolicyMode::AllowAny,
            OutboundPolicy::RegistryOnly => OutboundTrafficPolicyMode::RegistryOnly,
        },
        access_log_file: args.access_log_file.clone(),
        addressing: match args.capture {
            Capture::None => InboundAddressing::SidecarPort,
            Capture::Iptables => InboundAddressing::Direct,
        },
        ..ControlOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let plane = match ControlPlane::start(options).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("bosun control: {e}");
                return Ok(ExitCode::from(1));
            }
        };
        crate::proxy_cmd::shutdown_signal().await;
        plane.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}
