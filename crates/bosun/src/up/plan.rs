//! The mesh plan: from `DIR/mesh.yaml` and the Istio YAML beside it, what `bosun up` runs where.
//!
//! Pure (no processes, no sockets) so the addressing contract shared with `bosun control` is unit-tested:
//! every instance W gets an address A in 127.0.0.0/8, a sidecar (admin A:15000, outbound A:15001,
//! inbound A:15006) and an app listening on A:P for each port P of its services; gateways get no app and
//! listen on A:PORT for every Gateway server port that selects them.
//!
//! With [`Network::Pods`] (`--capture iptables`) the addresses are pod addresses instead (from
//! `10.124.N.2` in file order), apps get no `HTTP_PROXY`, and mesh.yaml's loopback address of the
//! ingress gateway only says where the ingress is relayed from on this machine. Automatic and pod
//! addresses stay with their instance across mesh.yaml edits.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mesh_api::diag::{Finding, Severity};
use mesh_api::registry::{Registry, RegistryWorkload, load_registry_str};
use mesh_api::resource::{Resource, Spec};
use serde_json::Value;

/// Admin, outbound and inbound ports of every sidecar, on the instance's own address.
pub const ADMIN_PORT: u16 = 15000;
pub const OUTBOUND_PORT: u16 = 15001;
pub const INBOUND_PORT: u16 = 15006;

/// Where instances without an address go: 127.0.10.1, 127.0.10.2, … in file order.
const AUTO_PREFIX: [u8; 3] = [127, 0, 10];

/// Names the mesh file may have inside DIR (as `bosun analyze` looks for it).
pub const MESH_FILE_NAMES: [&str; 2] = ["mesh.yaml", "mesh.yml"];

/// Where instances live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// On this machine's loopback addresses (mesh.yaml's, or 127.0.10.x), reaching their sidecars
    /// through `HTTP_PROXY`.
    Loopback,
    /// Each in its own network namespace (`--capture iptables`), from `subnet.2` on
    /// (`subnet.1` is the hub); mesh.yaml's loopback addresses only name the host side of the ingress.
    Pods { subnet: [u8; 3] },
}

/// What kind of gateway an instance is, from its `istio` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayKind {
    Ingress,
    Egress,
}

/// How an instance's app is started.
#[derive(Debug, Clone, PartialEq)]
pub struct AppCommand {
    /// `None`: the current executable (`bosun demo-app`).
    pub program: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// One workload instance and what runs for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub name: String,
    pub namespace: String,
    pub address: Ipv4Addr,
    pub labels: BTreeMap<String, String>,
    /// The services it serves (their names, in its namespace).
    pub services: Vec<String>,
    pub gateway: Option<GatewayKind>,
    /// Whether it has a sidecar (mesh file `sidecar`, default true; gateways always have their proxy).
    pub sidecar: bool,
    /// Where its app listens (empty for gateways).
    pub app_ports: Vec<u16>,
    /// Gateway listener ports from the Gateways that select it (empty for sidecars).
    pub gateway_ports: Vec<u16>,
    /// `None` for gateways.
    pub app: Option<AppCommand>,
}

impl Instance {
    /// Istio's node id: `sidecar~A~W.NS~NS.svc.cluster.local`, `router~…` for gateways.
    pub fn node_id(&self) -> String {
        let kind = if self.gateway.is_some() {
            "router"
        } else {
            "sidecar"
        };
        format!(
            "{kind}~{}~{}.{ns}~{ns}.svc.cluster.local",
            self.address,
            self.name,
            ns = self.namespace
        )
    }

    /// Labels as `bosun bootstrap --labels` takes them.
    pub fn label_args(&self) -> Vec<String> {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    pub fn admin(&self) -> SocketAddr {
        sock(self.address, ADMIN_PORT)
    }

    /// Every address its processes bind, with what binds it (for the start-up port check).
    pub fn binds(&self) -> Vec<(SocketAddr, String)> {
        let mut out = Vec::new();
        let proxy = [
            (self.admin(), format!("{} sidecar admin", self.name)),
            (
                sock(self.address, OUTBOUND_PORT),
                format!("{} sidecar outbound", self.name),
            ),
            (
                sock(self.address, INBOUND_PORT),
                format!("{} sidecar inbound", self.name),
            ),
        ];
        if self.sidecar {
            out.extend(proxy);
        }
        for &p in &self.gateway_ports {
            out.push((
                sock(self.address, p),
                format!("{} gateway listener", self.name),
            ));
        }
        for &p in &self.app_ports {
            out.push((sock(self.address, p), format!("{} app", self.name)));
        }
        out
    }

    /// The `version` label, or `-`.
    pub fn version(&self) -> &str {
        self.labels.get("version").map_or("-", String::as_str)
    }

    /// The first service, or the instance name.
    pub fn service(&self) -> &str {
        self.services.first().unwrap_or(&self.name)
    }
}

/// The whole mesh as `bosun up` will run it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dir: PathBuf,
    pub instances: Vec<Instance>,
    /// The registry with every instance's address filled in: what `bosun control --registry` reads.
    pub effective_registry: Value,
    /// The ingress URL's host and port: the first ingress gateway's first Gateway server port, on
    /// its mesh.yaml (loopback) address, also with pods (where `bosun up` relays it to the gateway).
    pub ingress: Option<SocketAddr>,
    /// Every service of mesh.yaml, as (name, namespace).
    pub services: Vec<(String, String)>,
    pub network: Network,
}

impl Plan {
    /// The instance behind [`Plan::ingress`].
    pub fn ingress_instance(&self) -> Option<&Instance> {
        ingress_instance(&self.instances)
    }

    /// The effective registry with only the workloads whose instances `keep` selects (those running),
    /// so the control plane never sends traffic to an instance that is not there.
    pub fn registry_with(&self, keep: impl Fn(&Instance) -> bool) -> Value {
        let mut value = self.effective_registry.clone();
        // Workloads are in instance order (`plan` makes one instance per workload).
        if let Some(map) = value.as_object_mut()
            && let Some(workloads) = map.get_mut("workloads").and_then(Value::as_array_mut)
        {
            let mut kept = self.instances.iter().map(&keep);
            workloads.retain(|_| kept.next().unwrap_or(false));
            if workloads.is_empty() {
                map.remove("workloads");
            }
        }
        value
    }
}

fn ingress_instance(instances: &[Instance]) -> Option<&Instance> {
    instances
        .iter()
        .find(|i| i.gateway == Some(GatewayKind::Ingress) && !i.gateway_ports.is_empty())
}

/// A plan that could not be made: findings with positions (exit 1), or another problem.
#[derive(Debug)]
pub enum PlanError {
    /// `PATH:LINE:COL: …` lines, ready to print.
    Findings(Vec<String>),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for PlanError {
    fn from(e: anyhow::Error) -> Self {
        PlanError::Other(e)
    }
}

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

fn format_finding(path: &str, f: &Finding) -> String {
    let field = if f.field.is_empty() {
        String::new()
    } else {
        format!(" (at {})", f.field)
    };
    format!(
        "{path}:{}:{}: {}[{}]: {}{field}",
        f.pos.line, f.pos.column, f.severity, f.code, f.message
    )
}

/// `DIR/mesh.yaml` (or `mesh.yml`), if there is one.
pub fn mesh_file(dir: &Path) -> Option<PathBuf> {
    MESH_FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Reads `DIR/mesh.yaml` and the Istio YAML under DIR (refusing files with errors, as `bosun validate`
/// would), and plans the mesh on `network` (`keep`: as [`plan`] takes it).
pub fn load(dir: &Path, network: Network, keep: &[Instance]) -> Result<Plan, PlanError> {
    let mesh_path = mesh_file(dir).ok_or_else(|| {
            PlanError::Other(anyhow::anyhow!(
                "{} has no mesh.yaml: `bosun up` needs one listing the services and workloads (see README, \"The mesh file\")",
                dir.display()
            ))
        })?;
    let source = std::fs::read_to_string(&mesh_path)
        .with_context(|| format!("cannot read {}", mesh_path.display()))?;
    let registry = load_registry_str(&source).map_err(|findings| {
        PlanError::Findings(
            findings
                .iter()
                .map(|f| format_finding(&mesh_path.display().to_string(), f))
                .collect(),
        )
    })?;

    let mut files = Vec::new();
    walk(dir, &mut files).with_context(|| format!("cannot read {}", dir.display()))?;
    files.sort();
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let loaded = mesh_api::resource::load_file(&file).map_err(anyhow::Error::from)?;
        let display = file.display().to_string();
        let mut findings = loaded.findings;
        for r in &loaded.resources {
            findings.extend(mesh_api::validate::validate(r));
        }
        errors.extend(
            findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .map(|f| format_finding(&display, f)),
        );
        resources.extend(loaded.resources);
    }
    if !errors.is_empty() {
        return Err(PlanError::Findings(errors));
    }
    Ok(plan(dir, &registry, &resources, network, keep)?)
}

/// Istio YAML files under `dir`, the mesh file excluded.
fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            walk(&path, found)?;
        } else if !MESH_FILE_NAMES.contains(&name)
            && matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        {
            found.push(path);
        }
    }
    Ok(())
}

/// Kubernetes' DNS-1123 label: what pod names and namespaces may be (Istio's node ids rely on it).
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn gateway_kind(labels: &BTreeMap<String, String>) -> Option<GatewayKind> {
    match labels.get("istio").map(String::as_str) {
        Some("ingressgateway") => Some(GatewayKind::Ingress),
        Some("egressgateway") => Some(GatewayKind::Egress),
        _ => None,
    }
}

fn parse_address(w: &RegistryWorkload, text: &str) -> Result<Ipv4Addr> {
    let ip: Ipv4Addr = text.parse().with_context(|| {
        format!(
            "workload {}: address {text:?} is not an IPv4 address (use one in 127.0.0.0/8, e.g. 127.0.10.1)",
            w.name
        )
    })?;
    if !ip.is_loopback() {
        bail!(
            "workload {}: address {ip} is not in 127.0.0.0/8: `bosun up` runs every instance on this machine, each on its own loopback address",
            w.name
        );
    }
    Ok(ip)
}

/// The plan from a registry and the loaded resources. `keep`: what runs, when mesh.yaml is planned
/// again; an instance of the same name and namespace without an address in the file keeps the one it
/// has (and with pods, its pod address), so an edit elsewhere does not move, and restart, it.
pub fn plan(
    dir: &Path,
    registry: &Registry,
    resources: &[Resource],
    network: Network,
    keep: &[Instance],
) -> Result<Plan> {
    // Explicit addresses first, so automatic ones never collide with them.
    let mut used = BTreeSet::new();
    let mut addresses = Vec::with_capacity(registry.workloads.len());
    for w in &registry.workloads {
        let ip = match &w.address {
            Some(a) => {
                let ip = parse_address(w, a)?;
                if !used.insert(ip) {
                    bail!(
                        "workload {}: address {ip} is already another workload's; each instance needs its own",
                        w.name
                    );
                }
                Some(ip)
            }
            None => None,
        };
        addresses.push(ip);
    }
    // What ran with an automatic address keeps it (an edit elsewhere in the file must not move it).
    let kept = |w: &RegistryWorkload| {
        keep.iter()
            .find(|i| i.name == w.name && i.namespace == w.namespace())
            .map(|i| i.address)
    };
    for (w, ip) in registry.workloads.iter().zip(&mut addresses) {
        if ip.is_none()
            && let Some(a) = kept(w).filter(|a| a.octets()[..3] == AUTO_PREFIX)
            && used.insert(a)
        {
            *ip = Some(a);
        }
    }
    let mut next = 1u8;
    for ip in &mut addresses {
        if ip.is_none() {
            loop {
                let candidate = Ipv4Addr::new(AUTO_PREFIX[0], AUTO_PREFIX[1], AUTO_PREFIX[2], next);
                next = next.checked_add(1).context(
                    "more than 254 workloads without an address: give them addresses in mesh.yaml",
                )?;
                if used.insert(candidate) {
                    *ip = Some(candidate);
                    break;
                }
            }
        }
    }

    // `{dir}` in commands: absolute, as children may resolve it from anywhere.
    let abs_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let gateways: Vec<_> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Gateway(g) => Some(g),
            _ => None,
        })
        .collect();

    let mut instances = Vec::new();
    let mut names = BTreeSet::new();
    for (w, ip) in registry.workloads.iter().zip(addresses) {
        let address = ip.context("internal error: an instance without an address")?;
        let namespace = w.namespace().to_owned();
        if w.name.is_empty() {
            bail!("a workload in mesh.yaml has no name");
        }
        // Names go into node ids (`~` and `.` are separators there) and file names.
        for (what, value) in [("name", &w.name), ("namespace", &namespace)] {
            if !is_dns_label(value) {
                bail!(
                    "workload {:?}: {what} {value:?} must be a DNS label (lowercase letters, digits and '-', at most 63), as in Kubernetes",
                    w.name
                );
            }
        }
        if !names.insert((namespace.clone(), w.name.clone())) {
            bail!("workload {}.{namespace} is listed twice", w.name);
        }
        let services: Vec<String> = w.service.iter().chain(&w.services).cloned().collect();
        let mut app_ports = Vec::new();
        for s in &services {
            let svc = registry
                .services
                .iter()
                .find(|x| &x.name == s && x.namespace() == namespace)
                .with_context(|| {
                    format!(
                        "workload {}: service {s:?} is not among the services of namespace {namespace} in mesh.yaml",
                        w.name
                    )
                })?;
            for p in &svc.ports {
                let n = p
                    .target_port
                    .or(p.number)
                    .with_context(|| format!("service {s}: a port has no number"))?;
                let n = u16::try_from(n)
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("service {s}: port {n} is not a TCP port"))?;
                if !app_ports.contains(&n) {
                    app_ports.push(n);
                }
            }
        }
        let gateway = gateway_kind(&w.labels);
        let mut gateway_ports = Vec::new();
        if gateway.is_some() {
            if !w.command.is_empty() || !w.calls.is_empty() {
                bail!(
                    "workload {}: a gateway (label istio: {}) runs only its proxy; remove `command`/`calls`",
                    w.name,
                    w.labels.get("istio").map_or("", String::as_str)
                );
            }
            for g in &gateways {
                if !g.selector.is_empty()
                    && g.selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
                {
                    for s in &g.servers {
                        if let Some(n) = s
                            .port
                            .as_ref()
                            .and_then(|p| p.number)
                            .and_then(|n| u16::try_from(n).ok())
                            && !gateway_ports.contains(&n)
                        {
                            gateway_ports.push(n);
                        }
                    }
                }
            }
            app_ports.clear();
        }
        instances.push(Instance {
            name: w.name.clone(),
            namespace,
            address,
            labels: w.labels.clone(),
            services,
            gateway,
            sidecar: gateway.is_some() || w.sidecar != Some(false),
            app_ports,
            gateway_ports,
            app: None,
        });
    }

    // The host side of the ingress: mesh.yaml's address, whatever the network.
    let ingress = ingress_instance(&instances).map(|i| sock(i.address, i.gateway_ports[0]));
    if let Network::Pods { subnet } = network {
        assign_pod_addresses(&mut instances, subnet, keep)?;
    }
    let captured = network != Network::Loopback;
    for (w, i) in registry.workloads.iter().zip(&mut instances) {
        if i.gateway.is_none() {
            i.app = Some(app_command(w, i, &abs_dir, captured));
        }
    }

    Ok(Plan {
        dir: dir.to_owned(),
        effective_registry: effective_registry(registry, &instances, network)?,
        instances,
        ingress,
        services: registry
            .services
            .iter()
            .map(|s| (s.name.clone(), s.namespace().to_owned()))
            .collect(),
        network,
    })
}

/// Pod addresses `subnet.2` to `subnet.254`: what runs keeps its own, the rest take the lowest free in
/// file order.
fn assign_pod_addresses(
    instances: &mut [Instance],
    subnet: [u8; 3],
    keep: &[Instance],
) -> Result<()> {
    let in_subnet = |a: Ipv4Addr| a.octets()[..3] == subnet;
    let mut used = BTreeSet::new();
    let mut fresh = Vec::new();
    for i in instances.iter_mut() {
        match keep
            .iter()
            .find(|k| k.name == i.name && k.namespace == i.namespace)
            .map(|k| k.address)
            .filter(|&a| in_subnet(a) && used.insert(a.octets()[3]))
        {
            Some(a) => i.address = a,
            None => fresh.push(i),
        }
    }
    let mut free = (2..255u8).filter(|h| !used.contains(h));
    for i in fresh {
        let host = free
            .next()
            .context("more than 253 workload instances do not fit one pod network (/24)")?;
        i.address = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host);
    }
    Ok(())
}

/// The environment and command line of an instance's app; `captured`: in its own pod, where the
/// capture does the sidecar's part (and an inherited `HTTP_PROXY` must not).
fn app_command(w: &RegistryWorkload, i: &Instance, dir: &Path, captured: bool) -> AppCommand {
    let a = i.address;
    let listen: Vec<String> = i.app_ports.iter().map(|p| format!("{a}:{p}")).collect();
    let mut env = Vec::new();
    if captured {
        env.extend(
            [
                "HTTP_PROXY",
                "http_proxy",
                "HTTPS_PROXY",
                "https_proxy",
                "NO_PROXY",
                "no_proxy",
            ]
            .map(|k| (k.to_owned(), String::new())),
        );
    } else if i.sidecar {
        // The sidecar is the app's explicit proxy for plain HTTP (absolute-form requests) and for
        // HTTPS (CONNECT host:port, TLS end to end through the tunnel).
        let proxy = format!("http://{a}:{OUTBOUND_PORT}");
        env.extend([
            ("HTTP_PROXY".to_owned(), proxy.clone()),
            ("http_proxy".to_owned(), proxy.clone()),
            ("HTTPS_PROXY".to_owned(), proxy.clone()),
            ("https_proxy".to_owned(), proxy),
            // An inherited NO_PROXY (often `localhost,127.0.0.1`) would let calls bypass the sidecar.
            ("NO_PROXY".to_owned(), String::new()),
            ("no_proxy".to_owned(), String::new()),
        ]);
    }
    env.extend([
        ("BOSUN_SERVICE".to_owned(), i.service().to_owned()),
        ("BOSUN_INSTANCE".to_owned(), i.name.clone()),
        ("BOSUN_ADDRESS".to_owned(), a.to_string()),
    ]);
    if !listen.is_empty() {
        env.push(("BOSUN_LISTEN".to_owned(), listen.join(",")));
    }
    if let Some(p) = i.app_ports.first() {
        env.push(("PORT".to_owned(), p.to_string()));
    }
    if let Some(v) = i.labels.get("version") {
        env.push(("BOSUN_VERSION".to_owned(), v.clone()));
    }
    if !w.calls.is_empty() {
        env.push(("BOSUN_CALLS".to_owned(), w.calls.join(",")));
    }
    if let Some(r) = w.fail_rate {
        env.push(("BOSUN_FAIL_RATE".to_owned(), r.to_string()));
    }
    if let Some(ms) = w.latency_ms {
        env.push(("BOSUN_LATENCY_MS".to_owned(), ms.to_string()));
    }
    let port = i.app_ports.first().map(u16::to_string).unwrap_or_default();
    let substitute = |s: &String| {
        s.replace("{address}", &a.to_string())
            .replace("{port}", &port)
            .replace("{dir}", &dir.display().to_string())
    };
    match w.command.split_first() {
        Some((program, args)) => AppCommand {
            // `{bosun}`: this very executable (e.g. the demo app with flags of its own), wherever it is.
            program: (program != "{bosun}").then(|| substitute(program)),
            args: args.iter().map(substitute).collect(),
            env,
        },
        None => AppCommand {
            program: None,
            args: vec!["demo-app".to_owned()],
            env,
        },
    }
}

/// The virtual service addresses with traffic capture: 10.125.0.0/16.
const VIP_PREFIX: [u8; 2] = [10, 125];

/// The virtual address of the `k`th service with traffic capture: what its names resolve to in the
/// pods' hosts files, and its address in the effective registry.
pub fn service_vip(k: usize) -> Result<Ipv4Addr> {
    let k = u16::try_from(k + 1)
        .ok()
        .filter(|&k| k < u16::MAX)
        .context("more than 65534 services")?;
    let [hi, lo] = k.to_be_bytes();
    Ok(Ipv4Addr::new(VIP_PREFIX[0], VIP_PREFIX[1], hi, lo))
}

/// The registry as JSON (which `bosun control` reads as YAML), every workload with its address and
/// without empty fields; with pods, every service with its virtual address (in place of any the
/// mesh file gives: the one its names resolve to is the one clients dial).
fn effective_registry(
    registry: &Registry,
    instances: &[Instance],
    network: Network,
) -> Result<Value> {
    let mut r = registry.clone();
    for (w, i) in r.workloads.iter_mut().zip(instances) {
        w.address = Some(i.address.to_string());
    }
    if matches!(network, Network::Pods { .. }) {
        for (k, s) in r.services.iter_mut().enumerate() {
            s.addresses = vec![service_vip(k)?.to_string()];
        }
    }
    let mut value = serde_json::to_value(&r).context("internal error: the registry as JSON")?;
    strip_empty(&mut value);
    Ok(value)
}

/// Removes nulls and empty lists/maps from objects, so the file reads like one a person wrote.
fn strip_empty(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| {
                !(x.is_null()
                    || x.as_array().is_some_and(Vec::is_empty)
                    || x.as_object().is_some_and(serde_json::Map::is_empty))
            });
            map.values_mut().for_each(strip_empty);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_empty),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(mesh: &str, yaml: &str) -> Result<Plan> {
        let registry = load_registry_str(mesh).expect("mesh file");
        let loaded = mesh_api::resource::load_str(yaml, None);
        assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
        plan(
            Path::new("."),
            &registry,
            &loaded.resources,
            Network::Loopback,
            &[],
        )
    }

    const MESH: &str = "services:
- name: reviews
  ports: [{number: 9080, name: http}, {number: 9090, name: grpc, targetPort: 7070}]
- {name: gw, namespace: istio-system, ports: [{number: 8080}]}
workloads:
- {name: reviews-v1, service: reviews, labels: {app: reviews, version: v1}, calls: [ratings:9080/r]}
- {name: reviews-v2, service: reviews, labels: {app: reviews, version: v2}, address: 127.0.10.1}
- name: tool
  command: [prog, --bind, \"{address}:{port}\"]
- {name: ingress, namespace: istio-system, service: gw, labels: {istio: ingressgateway}, address: 127.0.0.1}
";
    const GATEWAY: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: g}
spec:
  selector: {istio: ingressgateway}
  servers:
  - {port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}
  - {port: {number: 8443, name: http2, protocol: HTTP}, hosts: ['*']}
";

    #[test]
    fn addresses_are_assigned_in_order_around_explicit_ones() {
        let p = plan_of(MESH, GATEWAY).expect("plan");
        let addrs: Vec<String> = p.instances.iter().map(|i| i.address.to_string()).collect();
        assert_eq!(
            addrs,
            ["127.0.10.2", "127.0.10.1", "127.0.10.3", "127.0.0.1"]
        );
        // The control plane is told the same addresses.
        let reg = &p.effective_registry["workloads"];
        assert_eq!(reg[0]["address"], "127.0.10.2");
        assert_eq!(reg[2]["address"], "127.0.10.3");
        assert!(reg[0].get("namespace").is_none(), "no nulls: {reg}");
    }

    #[test]
    fn automatic_and_pod_addresses_stay_with_their_instance_across_edits() {
        let registry = |mesh: &str| load_registry_str(mesh).expect("mesh file");
        let gateway = mesh_api::resource::load_str(GATEWAY, None).resources;
        let addresses = |p: &Plan| -> Vec<(String, String)> {
            p.instances
                .iter()
                .map(|i| (i.name.clone(), i.address.to_string()))
                .collect()
        };
        let pods = Network::Pods {
            subnet: [10, 124, 7],
        };
        // A workload inserted first would otherwise take the first addresses and move the others.
        let edited = MESH.replace(
            "workloads:\n",
            "workloads:\n- {name: first, service: reviews, labels: {app: reviews}}\n",
        );
        for (network, want) in [
            (
                Network::Loopback,
                [
                    ("first", "127.0.10.4"),
                    ("reviews-v1", "127.0.10.2"),
                    ("reviews-v2", "127.0.10.1"),
                    ("tool", "127.0.10.3"),
                    ("ingress", "127.0.0.1"),
                ],
            ),
            (
                pods,
                [
                    ("first", "10.124.7.6"),
                    ("reviews-v1", "10.124.7.2"),
                    ("reviews-v2", "10.124.7.3"),
                    ("tool", "10.124.7.4"),
                    ("ingress", "10.124.7.5"),
                ],
            ),
        ] {
            let before =
                plan(Path::new("."), &registry(MESH), &gateway, network, &[]).expect("plan");
            let after = plan(
                Path::new("."),
                &registry(&edited),
                &gateway,
                network,
                &before.instances,
            )
            .expect("plan");
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(n, a)| ((*n).to_owned(), (*a).to_owned()))
                .collect();
            assert_eq!(addresses(&after), want, "{network:?}");
            // Unchanged instances plan the same, so an edit leaves them running.
            assert_eq!(before.instances[..], after.instances[1..]);
            // Without what ran, file order.
            let fresh =
                plan(Path::new("."), &registry(&edited), &gateway, network, &[]).expect("plan");
            assert_ne!(addresses(&fresh), want, "{network:?}");
        }
    }

    #[test]
    fn the_registry_can_leave_instances_out() {
        let p = plan_of(MESH, GATEWAY).expect("plan");
        let all = p.registry_with(|_| true);
        assert_eq!(all, p.effective_registry);
        let some = p.registry_with(|i| i.name != "reviews-v2");
        let names: Vec<&str> = some["workloads"]
            .as_array()
            .expect("workloads")
            .iter()
            .filter_map(|w| w["name"].as_str())
            .collect();
        assert_eq!(names, ["reviews-v1", "tool", "ingress"]);
        assert_eq!(some["services"], p.effective_registry["services"]);
        assert!(p.registry_with(|_| false).get("workloads").is_none());
    }

    #[test]
    fn sidecars_get_node_ids_ports_and_env() {
        let p = plan_of(MESH, GATEWAY).expect("plan");
        let r1 = &p.instances[0];
        assert_eq!(
            r1.node_id(),
            "sidecar~127.0.10.2~reviews-v1.default~default.svc.cluster.local"
        );
        assert_eq!(r1.app_ports, [9080, 7070]);
        let app = r1.app.as_ref().expect("app");
        assert_eq!(app.program, None);
        assert_eq!(app.args, ["demo-app"]);
        let env: BTreeMap<_, _> = app.env.iter().cloned().collect();
        assert_eq!(env["HTTP_PROXY"], "http://127.0.10.2:15001");
        assert_eq!(env["http_proxy"], "http://127.0.10.2:15001");
        assert_eq!(env["HTTPS_PROXY"], "http://127.0.10.2:15001");
        assert_eq!(env["https_proxy"], "http://127.0.10.2:15001");
        assert_eq!(env["NO_PROXY"], "");
        assert_eq!(env["BOSUN_LISTEN"], "127.0.10.2:9080,127.0.10.2:7070");
        assert_eq!(env["BOSUN_SERVICE"], "reviews");
        assert_eq!(env["BOSUN_VERSION"], "v1");
        assert_eq!(env["BOSUN_INSTANCE"], "reviews-v1");
        assert_eq!(env["BOSUN_ADDRESS"], "127.0.10.2");
        assert_eq!(env["BOSUN_CALLS"], "ratings:9080/r");
        assert_eq!(env["PORT"], "9080");
        let binds: Vec<String> = r1.binds().iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(
            binds,
            [
                "127.0.10.2:15000",
                "127.0.10.2:15001",
                "127.0.10.2:15006",
                "127.0.10.2:9080",
                "127.0.10.2:7070"
            ]
        );
    }

    #[test]
    fn without_a_sidecar_only_the_app_runs() {
        let p = plan_of(
            "services:\n- {name: db, ports: [{number: 5432}]}\nworkloads:\n- {name: db-0, service: db, sidecar: false}\n",
            "",
        )
        .expect("plan");
        let db = &p.instances[0];
        assert!(!db.sidecar);
        let binds: Vec<String> = db.binds().iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(binds, ["127.0.10.1:5432"]);
        let app = db.app.as_ref().expect("app");
        assert!(
            app.env.iter().all(|(k, _)| k != "HTTP_PROXY"),
            "{:?}",
            app.env
        );
    }

    #[test]
    fn commands_get_address_and_port_substituted() {
        let p = plan_of(MESH, GATEWAY).expect("plan");
        let tool = &p.instances[2];
        let app = tool.app.as_ref().expect("app");
        assert_eq!(app.program.as_deref(), Some("prog"));
        // No service, so no port: `{port}` becomes empty rather than staying a placeholder.
        assert_eq!(app.args, ["--bind", "127.0.10.3:"]);
        let p = plan_of(
            "workloads:\n- {name: ext, command: [\"{bosun}\", demo-app, --listen, \"{address}:8080\"]}\n",
            "",
        )
        .expect("plan");
        let app = p.instances[0].app.as_ref().expect("app");
        assert_eq!(app.program, None, "the current executable");
        assert_eq!(app.args, ["demo-app", "--listen", "127.0.10.1:8080"]);
        let p =
            plan_of("workloads:\n- {name: x, command: [run, \"{dir}/f\"]}\n", "").expect("plan");
        let arg = &p.instances[0].app.as_ref().expect("app").args[0];
        assert!(arg.ends_with("/f") && Path::new(arg).is_absolute(), "{arg}");
    }

    #[test]
    fn gateways_run_no_app_and_listen_on_their_gateway_ports() {
        let p = plan_of(MESH, GATEWAY).expect("plan");
        let gw = &p.instances[3];
        assert_eq!(gw.gateway, Some(GatewayKind::Ingress));
        assert_eq!(
            gw.node_id(),
            "router~127.0.0.1~ingress.istio-system~istio-system.svc.cluster.local"
        );
        assert!(gw.app.is_none());
        assert!(gw.app_ports.is_empty());
        assert_eq!(gw.gateway_ports, [8080, 8443]);
        assert_eq!(p.ingress, Some("127.0.0.1:8080".parse().expect("addr")));
    }

    #[test]
    fn pods_get_addresses_of_their_own_and_no_http_proxy() {
        let registry = load_registry_str(MESH).expect("mesh file");
        let loaded = mesh_api::resource::load_str(GATEWAY, None);
        let network = Network::Pods {
            subnet: [10, 124, 7],
        };
        let p = plan(Path::new("."), &registry, &loaded.resources, network, &[]).expect("plan");
        let addrs: Vec<String> = p.instances.iter().map(|i| i.address.to_string()).collect();
        assert_eq!(
            addrs,
            ["10.124.7.2", "10.124.7.3", "10.124.7.4", "10.124.7.5"]
        );
        assert_eq!(
            p.effective_registry["workloads"][1]["address"],
            "10.124.7.3"
        );
        // Each service's virtual address, as the pods' hosts files name it.
        let services = p.effective_registry["services"]
            .as_array()
            .expect("services");
        for (k, s) in services.iter().enumerate() {
            assert_eq!(
                s["addresses"],
                serde_json::json!([service_vip(k).expect("vip").to_string()])
            );
        }
        assert_eq!(services[0]["addresses"][0], "10.125.0.1");
        // The host side of the ingress stays where mesh.yaml puts it; the gateway is in its pod.
        assert_eq!(p.ingress, Some("127.0.0.1:8080".parse().expect("addr")));
        assert_eq!(
            p.ingress_instance().map(Instance::node_id).as_deref(),
            Some("router~10.124.7.5~ingress.istio-system~istio-system.svc.cluster.local")
        );
        let env: BTreeMap<_, _> = p.instances[0]
            .app
            .as_ref()
            .expect("app")
            .env
            .iter()
            .cloned()
            .collect();
        assert_eq!(env["HTTP_PROXY"], "");
        assert_eq!(env["HTTPS_PROXY"], "");
        assert_eq!(env["BOSUN_LISTEN"], "10.124.7.2:9080,10.124.7.2:7070");
        assert_eq!(
            p.services,
            [
                ("reviews".to_owned(), "default".to_owned()),
                ("gw".to_owned(), "istio-system".to_owned())
            ]
        );
    }

    #[test]
    fn bad_meshes_are_refused_with_the_reason() {
        let e = plan_of("workloads:\n- {name: a, address: 10.0.0.1}\n", "").expect_err("remote");
        assert!(e.to_string().contains("not in 127.0.0.0/8"), "{e}");
        let e = plan_of(
            "workloads:\n- {name: a, address: 127.0.0.2}\n- {name: b, address: 127.0.0.2}\n",
            "",
        )
        .expect_err("dup");
        assert!(e.to_string().contains("already another workload's"), "{e}");
        let e = plan_of("workloads:\n- {name: a, service: nope}\n", "").expect_err("svc");
        assert!(e.to_string().contains("service \"nope\""), "{e}");
        let e = plan_of(
            "workloads:\n- {name: g, labels: {istio: egressgateway}, command: [x]}\n",
            "",
        )
        .expect_err("gateway command");
        assert!(e.to_string().contains("runs only its proxy"), "{e}");
        for bad in ["../x", "a.b", "A", ""] {
            let e = plan_of(
                &format!("workloads:\n- {{name: ok, namespace: {bad:?}}}\n"),
                "",
            )
            .expect_err(bad);
            assert!(e.to_string().contains("DNS label"), "{e}");
        }
    }

    #[test]
    fn the_bookinfo_example_plans() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bookinfo");
        let p = match load(&dir, Network::Loopback, &[]) {
            Ok(p) => p,
            Err(PlanError::Findings(f)) => panic!("{f:?}"),
            Err(PlanError::Other(e)) => panic!("{e:#}"),
        };
        assert_eq!(p.ingress, Some("127.0.0.1:8080".parse().expect("addr")));
        let pp = p
            .instances
            .iter()
            .find(|i| i.name == "productpage-v1")
            .expect("productpage");
        let env: BTreeMap<_, _> = pp.app.as_ref().expect("app").env.iter().cloned().collect();
        assert_eq!(
            env["BOSUN_CALLS"],
            "details:9080/details/0,reviews:9080/reviews/0"
        );
    }
}
