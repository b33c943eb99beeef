//! `bosun up --capture iptables`: the mesh as Kubernetes runs it, on one machine, as root.
//!
//! One network namespace per workload instance (a "pod", `bosun-PID-K`) and a hub namespace
//! (`bosun-PID-hub`) with a Linux bridge `br0` that joins them (a veth pair each: `vK` in the hub,
//! `eth0` in the pod). Addresses come from 10.124.N.0/24 (N chosen so no route of this machine
//! overlaps): the hub is .1, instances from .2 on (see `plan`); each pod's default route goes via the hub. Pods of
//! instances with a sidecar get Istio's REDIRECT rules (`istio-redirect.iptables`, iptables-restore),
//! gateways and `sidecar: false` instances none. Service names resolve through `/etc/netns/POD/hosts`
//! (which `ip netns exec` mounts over /etc/hosts) to one virtual address per service in
//! 10.125.0.0/16: any address works, the capture hands the connection to the sidecar's listener for
//! the port, which routes by Host.
//!
//! In the host's own namespace nothing is created but those hosts files and the host-side listeners of
//! [`relay`] (the ingress, and the control plane's debug port for `bosun apply`). Deleting the
//! namespaces deletes the bridge, the veth pairs, the routes and the rules with them. [`Pods`] does it
//! on drop (after killing anything still inside); a run killed before that is cleaned up by the next
//! one ([`clean_leftovers`]).
//!
//! Processes enter their pod through `ip netns exec POD [setpriv …]`; `bosun up` itself reaches into a
//! namespace with a short-lived thread that moves into it ([`connect`]): sockets keep the namespace
//! they were made in, so the rest of the process never leaves the host's.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::plan::{Instance, Network, Plan, service_vip};

/// Istio's capture rules, as istio-init installs them (shared with tests/capture.rs).
pub const RULES: &str = include_str!("istio-redirect.iptables");
/// Istio's proxy UID (and GID): the rules never capture its outbound connections.
pub const PROXY_UID: u32 = 1337;
/// The apps' UID: an ordinary user, captured.
pub const APP_UID: u32 = 1000;
/// Every namespace (and /etc/netns directory) a run makes is named `bosun-PID-…`.
const PREFIX: &str = "bosun-";
/// Where `ip netns` keeps its namespaces, and where `ip netns exec` finds files to mount over /etc.
const NETNS_RUN: &str = "/run/netns";
const NETNS_ETC: &str = "/etc/netns";
/// Bound on one `ip`/`iptables-restore` call.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The pod range: 10.124.N.0/24.
const POD_PREFIX: [u8; 2] = [10, 124];

/// The programs the mode needs, found up front.
#[derive(Debug, Clone)]
pub struct Tools {
    pub ip: PathBuf,
    iptables_restore: PathBuf,
    setpriv: PathBuf,
}

/// Root and the tools, or one error naming everything missing.
pub fn prerequisites() -> Result<Tools> {
    check_prerequisites(rustix::process::geteuid().is_root(), find_tool).map_err(|missing| {
        anyhow::anyhow!(
            "--capture iptables needs {} (it creates network namespaces, veth pairs and iptables rules); without it, the default --capture none runs without root, apps reaching their sidecars through HTTP_PROXY",
            missing.join(", ")
        )
    })
}

fn check_prerequisites(
    root: bool,
    find: impl Fn(&str) -> Option<PathBuf>,
) -> Result<Tools, Vec<String>> {
    let mut missing = Vec::new();
    if !root {
        missing.push("root".to_owned());
    }
    let mut get = |tool: &str, package: &str| {
        let found = find(tool);
        if found.is_none() {
            missing.push(format!("`{tool}` (package {package})"));
        }
        found.unwrap_or_default()
    };
    let tools = Tools {
        ip: get("ip", "iproute2"),
        iptables_restore: get("iptables-restore", "iptables"),
        setpriv: get("setpriv", "util-linux"),
    };
    if missing.is_empty() {
        Ok(tools)
    } else {
        Err(missing)
    }
}

/// `tool` in PATH, else in /usr/sbin or /sbin (often missing from a user's PATH).
fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A pod range 10.124.N.0/24 that no route of this machine overlaps (pods must still reach what the
/// host's networks hold through their own sidecars' passthrough, and the user must not be confused by
/// two meanings of one address). Starts from this process's pid so concurrent runs differ.
pub fn choose_network() -> Network {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let taken: Vec<(u32, u32)> = routes.lines().skip(1).filter_map(route_of).collect();
    let start = std::process::id() % 256;
    let third = (0..256u32)
        .map(|i| ((start + i) % 256) as u8)
        .find(|&n| {
            let net = u32::from(Ipv4Addr::new(POD_PREFIX[0], POD_PREFIX[1], n, 0));
            taken
                .iter()
                .all(|&(dest, mask)| (net & mask) != dest && (dest & 0xffff_ff00) != net)
        })
        .unwrap_or(0);
    Network::Pods {
        subnet: [POD_PREFIX[0], POD_PREFIX[1], third],
    }
}

/// Destination and mask (host order) of one /proc/net/route line, the default route left out.
fn route_of(line: &str) -> Option<(u32, u32)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    // The kernel prints the address as a number in host byte order.
    let field = |i: usize| -> Option<u32> {
        let v = u32::from_str_radix(f.get(i)?, 16).ok()?;
        Some(u32::from_be_bytes(v.to_ne_bytes()))
    };
    let (dest, mask) = (field(1)?, field(7)?);
    (mask != 0).then_some((dest, mask))
}

/// The hosts file of a pod in `namespace`: every service under its cluster names, the short name only
/// for services of the pod's own namespace (as the DNS search path of a Kubernetes pod would).
fn hosts_file(services: &[(String, String)], namespace: &str) -> Result<String> {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (k, (name, ns)) in services.iter().enumerate() {
        let vip = service_vip(k)?;
        let short = if ns == namespace {
            format!(" {name}")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{vip}\t{name}.{ns}.svc.cluster.local {name}.{ns}.svc {name}.{ns}{short}\n"
        ));
    }
    Ok(out)
}

/// Runs `program args…` (optionally feeding `input`) within [`COMMAND_TIMEOUT`]; its stdout, or an
/// error with the command line and its stderr.
fn run(program: &Path, args: &[&str], input: Option<&str>) -> Result<String> {
    let line = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {line}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .with_context(|| format!("{line}: cannot write its input"))?;
    }
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{line}: no answer within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if !status.success() {
        bail!("{line}: {status}: {}", err.trim());
    }
    Ok(out)
}

/// The network namespaces of one run; dropping it tears them down. Pods come and go with their
/// instances as mesh.yaml is edited (`&self`: the mesh's start-up and its edits share it).
#[derive(Debug)]
pub struct Pods {
    tools: Tools,
    hub: String,
    hub_ip: Ipv4Addr,
    state: Mutex<PodState>,
}

#[derive(Debug, Default)]
struct PodState {
    /// The pod namespace of each instance that has one, by the instance's namespace and name.
    pods: BTreeMap<(String, String), String>,
    /// The number of the next pod (`bosun-PID-N`, its hub-side veth `vN`): never reused in a run.
    next: usize,
    /// The services the hosts files name, and the namespace each pod's hosts file is written for.
    services: Vec<(String, String)>,
    hosts_namespace: BTreeMap<String, String>,
    /// What exists now, in creation order (torn down in reverse).
    created: Vec<String>,
}

impl Pods {
    /// Creates the hub, one pod per instance of `plan` (whose addresses are pod addresses: `plan` was
    /// made for [`Network::Pods`]), the capture rules and the hosts files. On error what was made is
    /// removed again.
    pub fn create(tools: Tools, plan: &Plan) -> Result<Pods> {
        let Network::Pods { subnet } = plan.network else {
            bail!("internal error: a plan without pod addresses");
        };
        let pods = Pods {
            tools,
            hub: format!("{PREFIX}{}-hub", std::process::id()),
            hub_ip: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1),
            state: Mutex::new(PodState {
                services: plan.services.clone(),
                ..PodState::default()
            }),
        };
        pods.build_hub()?;
        for i in &plan.instances {
            pods.add(i)?;
        }
        Ok(pods)
    }

    fn ip(&self, args: &[&str]) -> Result<String> {
        run(&self.tools.ip, args, None)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PodState> {
        // A panic while holding it cannot leave it half-changed in a way that matters more than
        // cleaning up at the end.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add_namespace(&self, name: &str) -> Result<()> {
        self.ip(&["netns", "add", name])?;
        self.state().created.push(name.to_owned());
        Ok(())
    }

    fn build_hub(&self) -> Result<()> {
        let hub = self.hub.as_str();
        let hub_ip = self.hub_ip.to_string();
        self.add_namespace(hub)?;
        self.ip(&["-n", hub, "link", "set", "lo", "up"])?;
        self.ip(&["-n", hub, "link", "add", "br0", "type", "bridge"])?;
        self.ip(&[
            "-n",
            hub,
            "addr",
            "add",
            &format!("{hub_ip}/24"),
            "dev",
            "br0",
        ])?;
        self.ip(&["-n", hub, "link", "set", "br0", "up"])?;
        Ok(())
    }

    /// Makes instance `i`'s pod: a namespace joined to the hub's bridge, with `i`'s address, the
    /// capture rules (for an instance with a sidecar) and the hosts file. On error it is removed again.
    pub fn add(&self, i: &Instance) -> Result<()> {
        let n = {
            let mut state = self.state();
            state.next += 1;
            state.next - 1
        };
        let pod = format!("{PREFIX}{}-{n}", std::process::id());
        let key = (i.namespace.clone(), i.name.clone());
        self.state().pods.insert(key.clone(), pod.clone());
        let made = self.build_pod(&pod, &format!("v{n}"), i);
        if made.is_err() {
            self.remove(i);
        }
        made.with_context(|| format!("cannot make the network namespace of {}", i.name))
    }

    fn build_pod(&self, pod: &str, veth: &str, i: &Instance) -> Result<()> {
        let hub = self.hub.as_str();
        self.add_namespace(pod)?;
        self.ip(&[
            "-n", hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod,
        ])?;
        self.ip(&["-n", hub, "link", "set", veth, "master", "br0", "up"])?;
        self.ip(&["-n", pod, "link", "set", "lo", "up"])?;
        let address = format!("{}/24", i.address);
        self.ip(&["-n", pod, "addr", "add", &address, "dev", "eth0"])?;
        self.ip(&["-n", pod, "link", "set", "eth0", "up"])?;
        let hub_ip = self.hub_ip.to_string();
        self.ip(&["-n", pod, "route", "add", "default", "via", &hub_ip])?;
        // istio-init's job; gateways and pods without a sidecar are not captured (as in Kubernetes).
        if i.sidecar && i.gateway.is_none() {
            let restore = self.tools.iptables_restore.display().to_string();
            run(
                &self.tools.ip,
                &["netns", "exec", pod, &restore],
                Some(RULES),
            )
            .context("cannot install the capture rules")?;
        }
        let mut state = self.state();
        state
            .hosts_namespace
            .insert(pod.to_owned(), i.namespace.clone());
        write_hosts(pod, &state.services, &i.namespace)
    }

    /// Removes instance `i`'s pod (and what still runs in it), if it has one.
    pub fn remove(&self, i: &Instance) {
        let pod = {
            let mut state = self.state();
            let Some(pod) = state.pods.remove(&(i.namespace.clone(), i.name.clone())) else {
                return;
            };
            state.hosts_namespace.remove(&pod);
            state.created.retain(|c| *c != pod);
            pod
        };
        remove_namespace(&self.tools, &pod);
    }

    /// Rewrites every pod's hosts file when the services changed. A file rewritten in place is what
    /// the processes already running in the pod see (`ip netns exec` bind-mounts it over /etc/hosts).
    pub fn set_services(&self, services: &[(String, String)]) -> Result<()> {
        let mut state = self.state();
        if state.services == services {
            return Ok(());
        }
        state.services = services.to_vec();
        for (pod, namespace) in &state.hosts_namespace {
            write_hosts(pod, services, namespace)?;
        }
        Ok(())
    }

    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// The pod namespace of instance `i`, if it has one.
    pub fn pod(&self, i: &Instance) -> Option<String> {
        self.state()
            .pods
            .get(&(i.namespace.clone(), i.name.clone()))
            .cloned()
    }

    /// What a child is started under to run in namespace `ns`, as `uid` if given: `ip netns exec NS
    /// [setpriv --reuid UID …]`. The one capability kept, CAP_DAC_READ_SEARCH, lets the program be
    /// found where only root may look (a `bosun` built under /root); it changes nothing about the
    /// socket owner the capture rules match.
    pub fn launcher(&self, ns: &str, uid: Option<u32>) -> Vec<String> {
        let mut out = vec![
            self.tools.ip.display().to_string(),
            "netns".to_owned(),
            "exec".to_owned(),
            ns.to_owned(),
        ];
        if let Some(uid) = uid {
            let uid = uid.to_string();
            out.extend(
                [
                    &self.tools.setpriv.display().to_string(),
                    "--reuid",
                    &uid,
                    "--regid",
                    &uid,
                    "--clear-groups",
                    "--inh-caps",
                    "+dac_read_search",
                    "--ambient-caps",
                    "+dac_read_search",
                ]
                .map(str::to_owned),
            );
        }
        out
    }
}

/// Writes the hosts file of `pod` (of an instance in `namespace`).
fn write_hosts(pod: &str, services: &[(String, String)], namespace: &str) -> Result<()> {
    let dir = Path::new(NETNS_ETC).join(pod);
    let hosts = hosts_file(services, namespace)?;
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("hosts"), hosts))
        .with_context(|| format!("cannot write {}/hosts", dir.display()))
}

impl Drop for Pods {
    fn drop(&mut self) {
        for ns in self.state().created.iter().rev() {
            remove_namespace(&self.tools, ns);
        }
    }
}

/// Kills what still runs in `ns`, deletes it and its /etc/netns directory. Best effort, says what
/// fails.
fn remove_namespace(tools: &Tools, ns: &str) {
    if let Ok(pids) = run(&tools.ip, &["netns", "pids", ns], None) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if u32::try_from(pid).ok() == Some(std::process::id()) {
                continue;
            }
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
    if Path::new(NETNS_RUN).join(ns).exists()
        && let Err(e) = run(&tools.ip, &["netns", "del", ns], None)
    {
        say!("bosun up: cannot delete network namespace {ns}: {e:#}");
    }
    let dir = Path::new(NETNS_ETC).join(ns);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        say!("bosun up: cannot remove {}: {e}", dir.display());
    }
}

/// The pid in a name `bosun-PID-…`.
fn run_pid(name: &str) -> Option<u32> {
    let (pid, _) = name.strip_prefix(PREFIX)?.split_once('-')?;
    pid.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| pid.parse().ok())?
}

/// Whether `pid` is a running `bosun`.
fn is_bosun(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "bosun")
}

/// Removes namespaces and /etc/netns directories of earlier runs that did not clean up (killed with
/// SIGKILL): named `bosun-PID-…` where PID is not a running `bosun`. Best effort.
pub fn clean_leftovers(tools: &Tools) {
    let mut names: Vec<String> = Vec::new();
    for dir in [NETNS_RUN, NETNS_ETC] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            names.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned)),
            );
        }
    }
    names.sort();
    names.dedup();
    let mut runs: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for name in names {
        if let Some(pid) = run_pid(&name)
            && pid != std::process::id()
            && !is_bosun(pid)
        {
            runs.entry(pid).or_default().push(name);
        }
    }
    for (pid, names) in runs {
        say!(
            "bosun up: removing what an earlier run (pid {pid}) left: {}",
            names.join(", ")
        );
        for name in names {
            remove_namespace(tools, &name);
        }
    }
}

/// A TCP connection to `addr` made from inside network namespace `netns` (`None`: this one), within
/// `timeout`. A dedicated thread moves itself into the namespace and connects; the socket stays in
/// that namespace wherever it is used. (Not a runtime thread: those are reused.)
pub async fn connect(
    netns: Option<&str>,
    addr: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let timed_out = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connecting to {addr} timed out"),
        )
    };
    let Some(ns) = netns else {
        return tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out())?;
    };
    let path = Path::new(NETNS_RUN).join(ns);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns-connect".to_owned())
        .spawn(move || {
            let connected = (|| -> std::io::Result<std::net::TcpStream> {
                let fd = std::fs::File::open(&path)?;
                rustix::thread::move_into_link_name_space(
                    fd.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                let stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
                stream.set_nonblocking(true)?;
                Ok(stream)
            })();
            let _ = tx.send(connected);
        })?;
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread ended without an answer"))??;
    TcpStream::from_std(stream)
}

/// Connections a relay carries at once; more are refused (closed) until one ends.
const MAX_RELAYED: usize = 256;
/// A relayed connection with no bytes in one direction for this long is closed (that direction).
const RELAY_IDLE: Duration = Duration::from_secs(300);
/// Bound on reaching the relay's target.
const RELAY_CONNECT: Duration = Duration::from_secs(5);

/// Where a relay sends each connection: an address inside a namespace, as it is when the connection
/// comes (the ingress gateway may move to a new pod when a mesh.yaml edit restarts it); `None`: the
/// connection is closed.
pub type RelayTarget = tokio::sync::watch::Receiver<Option<(String, SocketAddr)>>;

/// Forwards every connection accepted on `listener` (in the host's namespace) to `target`, at most
/// [`MAX_RELAYED`] at once. Runs until the runtime stops.
pub async fn relay(listener: TcpListener, target: RelayTarget) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_RELAYED));
    loop {
        let inbound = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            continue; // dropped: closed
        };
        let Some((ns, to)) = target.borrow().clone() else {
            continue;
        };
        tokio::spawn(async move {
            let _permit = permit;
            if let Ok(outbound) = connect(Some(&ns), to, RELAY_CONNECT).await {
                let (ar, aw) = inbound.into_split();
                let (br, bw) = outbound.into_split();
                tokio::join!(pipe(ar, bw), pipe(br, aw));
            }
        });
    }
}

/// Copies one direction until EOF (then half-closes the other side), an error, or [`RELAY_IDLE`].
async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout(RELAY_IDLE, from.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        match tokio::time::timeout(RELAY_IDLE, to.write_all(&buf[..n])).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prerequisites_name_everything_missing() {
        let all = check_prerequisites(true, |t| Some(PathBuf::from(format!("/bin/{t}"))));
        assert_eq!(all.expect("all there").ip, PathBuf::from("/bin/ip"));
        let missing = check_prerequisites(false, |t| {
            (t != "iptables-restore").then(|| PathBuf::from(t))
        })
        .expect_err("missing");
        assert_eq!(missing, ["root", "`iptables-restore` (package iptables)"]);
    }

    #[test]
    fn hosts_files_map_every_name_of_every_service() {
        let services = vec![
            ("reviews".to_owned(), "default".to_owned()),
            ("gw".to_owned(), "istio-system".to_owned()),
        ];
        let hosts = hosts_file(&services, "default").expect("hosts");
        assert!(hosts.contains(
            "10.125.0.1\treviews.default.svc.cluster.local reviews.default.svc reviews.default reviews\n"
        ), "{hosts}");
        // No short name for another namespace's service.
        assert!(hosts.contains(
            "10.125.0.2\tgw.istio-system.svc.cluster.local gw.istio-system.svc gw.istio-system\n"
        ), "{hosts}");
        assert_eq!(service_vip(255).expect("vip"), Ipv4Addr::new(10, 125, 1, 0));
    }

    #[test]
    fn leftover_names_carry_their_pid() {
        assert_eq!(run_pid("bosun-123-hub"), Some(123));
        assert_eq!(run_pid("bosun-123-4"), Some(123));
        assert_eq!(run_pid("bosun-cap123redirect-c"), None);
        assert_eq!(run_pid("other-1-2"), None);
    }

    #[test]
    fn routes_are_read_from_proc() {
        // 10.124.7.0/24 on eth0, little-endian hex as /proc/net/route writes it.
        let line = "eth0\t00077C0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0";
        assert_eq!(
            route_of(line),
            Some((u32::from(Ipv4Addr::new(10, 124, 7, 0)), 0xffff_ff00))
        );
        let default = "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0";
        assert_eq!(route_of(default), None);
    }
}
