//! Edits of `DIR/mesh.yaml` while the mesh runs.
//!
//! The new file is planned as at start-up (a file with errors is reported and the running mesh kept)
//! and compared with what runs, instance by instance: an instance whose plan is unchanged is left
//! alone; one that is gone, or whose plan changed (command, address, labels, ports, `sidecar`, …), is
//! first taken out of the control plane's registry, and once the proxies have that push, stopped as
//! Ctrl-C stops it; a new or changed one is started with the start-up code and put into the registry
//! once it is ready (and reported once the proxies have that push), so no proxy sends traffic to an
//! instance that is not there. An instance that
//! cannot start (a port taken, not ready in time) is reported and left out; the rest keeps running,
//! and saving mesh.yaml again retries it.
//!
//! With `--capture iptables` an instance's pod goes with it: made before it starts, deleted once it
//! has stopped; the pods' hosts files follow the services, and the ingress relay follows the ingress
//! gateway.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::plan::{self, Instance, Network, PlanError};
use super::supervise::Children;
use super::{
    Launch, PROBE_INTERVAL, PROBE_TIMEOUT, Probe, first_duplicate, http, instance_table, ports,
    print_out, spawn_app, spawn_proxy, wait_ready, write_bootstrap, write_registry,
};

/// How often mesh.yaml is checked for edits.
pub const MESH_POLL: Duration = Duration::from_secs(1);
/// A change is read again after this and used only if it is still the same: a file an editor is
/// halfway through writing is not the new mesh.
const SETTLE: Duration = Duration::from_millis(200);
/// At most this long for the control plane to push a registry change before instances are stopped.
const PUSH_WAIT: Duration = Duration::from_secs(5);

/// An instance that runs, and the pids of its processes.
#[derive(Debug)]
struct Running {
    instance: Instance,
    pids: Vec<i32>,
}

/// What runs, and mesh.yaml as last read.
#[derive(Debug)]
pub struct MeshWatch {
    dir: PathBuf,
    path: Option<PathBuf>,
    last: Option<String>,
    last_modified: Option<SystemTime>,
    running: Vec<Running>,
    /// Some instance of the last good mesh.yaml could not start: saving the file again (even
    /// unchanged) retries it.
    failed: bool,
    registry: PathBuf,
    /// What the control plane was last given.
    registry_written: Value,
    network: Network,
    /// The ingress as last announced (the host side of its relay, with capture).
    ingress: Option<SocketAddr>,
}

impl MeshWatch {
    /// `pids`: each instance's processes, in plan order, as `start` returned them.
    pub fn new(launch: &Launch<'_>, pids: Vec<Vec<i32>>) -> Self {
        let path = plan::mesh_file(&launch.plan.dir);
        let (last, last_modified) = path.as_deref().and_then(read).unzip();
        MeshWatch {
            last,
            last_modified: last_modified.flatten(),
            path,
            dir: launch.plan.dir.clone(),
            running: launch
                .plan
                .instances
                .iter()
                .cloned()
                .zip(pids)
                .map(|(instance, pids)| Running { instance, pids })
                .collect(),
            failed: false,
            registry: launch.registry.to_owned(),
            registry_written: launch.plan.effective_registry.clone(),
            network: launch.plan.network,
            ingress: launch.host_ingress,
        }
    }

    /// Applies an edit of mesh.yaml, if there is one. Bounded: the stops by the stop grace, the
    /// starts by `--ready-timeout`, the wait for the control plane by [`PUSH_WAIT`].
    pub async fn check(&mut self, launch: &Launch<'_>, children: &mut Children) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let Some((text, modified)) = read(&path) else {
            return;
        };
        let retry = self.failed && modified != self.last_modified;
        if self.last.as_deref() == Some(text.as_str()) && !retry {
            return;
        }
        tokio::time::sleep(SETTLE).await;
        if read(&path).map(|(t, _)| t).as_deref() != Some(text.as_str()) {
            return; // Still being written: the next round looks again.
        }
        self.last = Some(text);
        self.last_modified = modified;
        let shown = path.display();
        let running: Vec<Instance> = self.running.iter().map(|r| r.instance.clone()).collect();
        let plan = match plan::load(&self.dir, self.network, &running) {
            Ok(p) => p,
            Err(PlanError::Findings(lines)) => {
                for l in lines {
                    say!("{l}");
                }
                say!(
                    "bosun up: {shown} changed but has errors; the mesh keeps its previous version"
                );
                return;
            }
            Err(PlanError::Other(e)) => {
                say!(
                    "bosun up: {shown} changed but cannot be used: {e:#}; the mesh keeps its previous version"
                );
                return;
            }
        };
        let running_now = |i: &Instance| self.running.iter().any(|r| r.instance == *i);
        let Diff {
            start: to_start,
            stop: to_stop,
        } = diff(&self.running, &plan.instances);
        if let Some(pods) = launch.pods
            && let Err(e) = pods.set_services(&plan.services)
        {
            say!("bosun up: {e:#}");
        }
        if to_start.is_empty() && to_stop.is_empty() {
            self.failed = false;
            if self.pass_on(&plan.effective_registry) {
                say!("bosun up: {shown} changed; passed on to the control plane");
            }
            return;
        }
        // It would stop everything, and an emptied file is more often one being written.
        if plan.instances.is_empty() {
            say!(
                "bosun up: {shown} changed but lists no workloads; the mesh keeps running (Ctrl-C stops it)"
            );
            return;
        }
        // On loopback everything shares one network (with pods each instance has its own).
        let mut binds = vec![
            (launch.xds, "control plane xDS, --xds-port".to_owned()),
            (launch.debug, "control plane debug, --debug-port".to_owned()),
        ];
        binds.extend(plan.instances.iter().flat_map(Instance::binds));
        if launch.pods.is_none()
            && let Some(clash) = first_duplicate(&binds)
        {
            say!(
                "bosun up: {shown} changed but cannot be used: {clash}; the mesh keeps its previous version"
            );
            return;
        }

        let name = path
            .file_name()
            .map_or_else(|| shown.to_string(), |n| n.to_string_lossy().into_owned());

        if !to_stop.is_empty() {
            // Out of the registry first, so proxies stop sending to them before they go.
            let keep = plan.registry_with(|i| running_now(i));
            let leaving: Vec<String> = to_stop
                .iter()
                .map(|&(r, _)| self.running[r].instance.node_id())
                .collect();
            self.pass_on_and_wait(launch.debug, &keep, &leaving).await;
            let pids: Vec<i32> = to_stop
                .iter()
                .flat_map(|&(r, _)| self.running[r].pids.iter().copied())
                .collect();
            children.stop_pids(&pids).await;
            for &(r, changed) in &to_stop {
                let i = &self.running[r].instance;
                if let Some(pods) = launch.pods {
                    pods.remove(i);
                }
                let how = if changed {
                    " to restart it with its new definition"
                } else {
                    ""
                };
                say!("bosun up: {name}: stopped {} ({}){how}", i.name, i.address);
            }
            for &(r, _) in to_stop.iter().rev() {
                self.running.remove(r);
            }
        }

        self.failed = false;
        let deadline = Instant::now() + launch.ready_timeout;
        let mut starting = Vec::new();
        for &(k, restart) in &to_start {
            let i = &plan.instances[k];
            match spawn_instance(launch, i, children).await {
                Ok(s) => starting.push((k, i, restart, s)),
                Err(why) => {
                    say!("bosun up: {name}: cannot start {}: {why}", i.name);
                    self.failed = true;
                }
            }
        }
        let mut started = Vec::new();
        for (k, i, restart, (pids, probes)) in starting {
            let ready = wait_ready(
                children,
                probes,
                deadline,
                launch.ready_timeout,
                Some(&pids),
            )
            .await;
            match ready {
                Ok(()) => {
                    started.push((k, i, restart));
                    self.running.push(Running {
                        instance: i.clone(),
                        pids,
                    });
                }
                Err(e) => {
                    say!("bosun up: {name}: {} did not start: {e:#}", i.name);
                    children.stop_pids(&pids).await;
                    if let Some(pods) = launch.pods {
                        pods.remove(i);
                    }
                    self.failed = true;
                }
            }
        }
        // In once ready, and announced once the proxies route to it; what did not start stays out.
        let keep = plan.registry_with(|i| self.running.iter().any(|r| r.instance == *i));
        self.pass_on_and_wait(launch.debug, &keep, &[]).await;
        for &(_, i, restart) in &started {
            let verb = if restart { "restarted" } else { "started" };
            say!("bosun up: {name}: {verb} {} ({})", i.name, i.address);
        }
        if !started.is_empty() {
            print_out(&instance_table(
                started.into_iter().map(|(_, i, _)| i),
                launch.pods,
            ));
        }
        self.follow_ingress(launch, &plan);
        if self.failed {
            say!("bosun up: the rest keeps running; fix {name} and save it again to retry");
        }
    }

    /// Points the ingress relay (with capture) at the gateway of `plan` as it runs now, and says where
    /// the ingress is if that moved (without capture the gateway itself listens there).
    fn follow_ingress(&mut self, launch: &Launch<'_>, plan: &plan::Plan) {
        let gateway = plan
            .ingress_instance()
            .filter(|g| self.running.iter().any(|r| r.instance == **g));
        if launch.pods.is_some() {
            let target = gateway.and_then(|_| launch.ingress_target(plan));
            if launch.host_ingress.is_some() && *launch.ingress_relay.borrow() != target {
                match &target {
                    Some((ns, to)) => {
                        say!("bosun up: the ingress relay now forwards to {to} (netns {ns})")
                    }
                    None => say!(
                        "bosun up: no ingress gateway runs: the ingress relay closes what it accepts"
                    ),
                }
                launch.ingress_relay.send_replace(target);
            }
            return;
        }
        let now = gateway.and(plan.ingress);
        if now != self.ingress {
            self.ingress = now;
            match now {
                Some(addr) => print_out(&format!("ingress: http://{addr}\n")),
                None => {
                    print_out("ingress: none (no running gateway labelled istio: ingressgateway)\n")
                }
            }
        }
    }

    /// Gives the control plane `registry` if it differs from what it has; whether it did.
    fn pass_on(&mut self, registry: &Value) -> bool {
        if *registry == self.registry_written {
            return false;
        }
        match write_registry(&self.registry, registry) {
            Ok(()) => {
                self.registry_written = registry.clone();
                true
            }
            Err(e) => {
                say!("bosun up: {e:#}");
                false
            }
        }
    }

    /// [`MeshWatch::pass_on`], then waits (bounded) until the control plane has pushed it to every
    /// proxy but those of node ids `leaving`.
    async fn pass_on_and_wait(&mut self, debug: SocketAddr, registry: &Value, leaving: &[String]) {
        let before = pushes(debug).await;
        if self.pass_on(registry)
            && let Some(before) = before
        {
            wait_pushed(debug, before, leaving).await;
        }
    }
}

/// What an edit changes, compared by whole instance plans.
#[derive(Debug, PartialEq)]
struct Diff {
    /// Indexes into the new plan of the instances to start (new, changed, or not running because
    /// their start failed), each with whether one of its name runs now (a restart).
    start: Vec<(usize, bool)>,
    /// Indexes into what runs of the instances to stop (gone or changed), each with whether one of
    /// its name is in the new plan (a restart).
    stop: Vec<(usize, bool)>,
}

fn diff(running: &[Running], new: &[Instance]) -> Diff {
    let same_name = |a: &Instance, b: &Instance| a.name == b.name && a.namespace == b.namespace;
    Diff {
        start: new
            .iter()
            .enumerate()
            .filter(|(_, i)| !running.iter().any(|r| r.instance == **i))
            .map(|(k, i)| (k, running.iter().any(|r| same_name(&r.instance, i))))
            .collect(),
        stop: running
            .iter()
            .enumerate()
            .filter(|(_, r)| !new.contains(&r.instance))
            .map(|(k, r)| (k, new.iter().any(|i| same_name(i, &r.instance))))
            .collect(),
    }
}

/// Checks instance `i`'s ports, writes its bootstrap and starts its proxy and app, as start-up does;
/// their pids and readiness probes. On an error nothing of it is left running.
async fn spawn_instance(
    launch: &Launch<'_>,
    i: &Instance,
    children: &mut Children,
) -> Result<(Vec<i32>, Vec<Probe>), String> {
    match launch.pods {
        // Its own namespace: nothing else can hold its ports.
        Some(pods) => pods.add(i).map_err(|e| format!("{e:#}"))?,
        None => {
            let taken = ports::check(&i.binds());
            if !taken.is_empty() {
                let what: Vec<String> = taken.iter().map(ToString::to_string).collect();
                return Err(what.join("; "));
            }
        }
    }
    let mut pids = Vec::new();
    let mut probes = Vec::new();
    match spawn_processes(launch, i, children, &mut pids, &mut probes) {
        Ok(()) => Ok((pids, probes)),
        Err(e) => {
            // E.g. its proxy started but its app could not be.
            children.stop_pids(&pids).await;
            if let Some(pods) = launch.pods {
                pods.remove(i);
            }
            Err(format!("{e:#}"))
        }
    }
}

fn spawn_processes(
    launch: &Launch<'_>,
    i: &Instance,
    children: &mut Children,
    pids: &mut Vec<i32>,
    probes: &mut Vec<Probe>,
) -> anyhow::Result<()> {
    let bootstrap = write_bootstrap(launch.state, i, launch.interception, launch.xds)?;
    if let Some((pid, probe)) = spawn_proxy(launch, i, &bootstrap, children)? {
        pids.push(pid);
        probes.push(probe);
    }
    if let Some((pid, app)) = spawn_app(launch, i, children)? {
        pids.push(pid);
        probes.extend(app);
    }
    Ok(())
}

/// mesh.yaml's text and modification time; `None` when it cannot be read (e.g. mid-rename).
fn read(path: &Path) -> Option<(String, Option<SystemTime>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Some((text, modified))
}

/// The control plane's push count (`bosun_control_pushes_total` on its debug port).
async fn pushes(debug: SocketAddr) -> Option<u64> {
    let answer = http::request(debug, "GET", "/metrics", &[], b"", PROBE_TIMEOUT)
        .await
        .ok()?;
    answer.body.lines().find_map(|l| {
        l.strip_prefix("bosun_control_pushes_total ")
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Whether every connected proxy but those of node ids `leaving` has acknowledged what it was sent
/// (`/debug/syncz`). The leaving ones do not count: they are about to stop, and one whose own
/// workload left the registry may refuse its shrunken config.
async fn in_sync(debug: SocketAddr, leaving: &[String]) -> bool {
    let Ok(answer) = http::request(debug, "GET", "/debug/syncz", &[], b"", PROBE_TIMEOUT).await
    else {
        return false;
    };
    serde_json::from_str::<Value>(&answer.body)
        .ok()
        .and_then(|v| {
            v.as_array().map(|ps| {
                ps.iter().all(|p| {
                    p["in_sync"] == Value::Bool(true)
                        || p["proxy"]
                            .as_str()
                            .is_some_and(|id| leaving.iter().any(|l| l == id))
                })
            })
        })
        .unwrap_or(false)
}

/// Waits, at most [`PUSH_WAIT`], until the control plane has pushed again after `before` pushes and
/// every proxy has acknowledged it. Past the bound the edit goes on: a proxy that is slow to
/// acknowledge must not hold the mesh's changes up.
async fn wait_pushed(debug: SocketAddr, before: u64, leaving: &[String]) {
    let deadline = Instant::now() + PUSH_WAIT;
    while Instant::now() < deadline {
        if pushes(debug).await.is_some_and(|n| n > before) && in_sync(debug, leaving).await {
            return;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    say!(
        "bosun up: the control plane did not push the change to every proxy within {PUSH_WAIT:?}; going on"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(mesh: &str) -> Vec<Instance> {
        let registry = mesh_api::registry::load_registry_str(mesh).expect("mesh file");
        plan::plan(Path::new("."), &registry, &[], Network::Loopback, &[])
            .expect("plan")
            .instances
    }

    const MESH: &str = "services:
- {name: reviews, ports: [{number: 9080}]}
workloads:
- {name: r1, service: reviews, labels: {version: v1}, address: 127.0.10.1}
- {name: r2, service: reviews, labels: {version: v2}, address: 127.0.10.2}
- {name: r3, service: reviews, labels: {version: v3}, address: 127.0.10.3}
";

    #[test]
    fn only_what_changed_is_started_or_stopped() {
        let running: Vec<Running> = instances(MESH)
            .into_iter()
            .map(|instance| Running {
                instance,
                pids: Vec::new(),
            })
            .collect();
        let same = diff(&running, &instances(MESH));
        assert_eq!(
            same,
            Diff {
                start: vec![],
                stop: vec![]
            }
        );
        // r1 gone, r2's labels changed, r4 new; r3 untouched (also when it moves in the file).
        let edited = "services:
- {name: reviews, ports: [{number: 9080}]}
workloads:
- {name: r4, service: reviews, labels: {version: v4}, address: 127.0.10.4}
- {name: r3, service: reviews, labels: {version: v3}, address: 127.0.10.3}
- {name: r2, service: reviews, labels: {version: v2b}, address: 127.0.10.2}
";
        assert_eq!(
            diff(&running, &instances(edited)),
            Diff {
                start: vec![(0, false), (2, true)],
                stop: vec![(0, false), (1, true)],
            }
        );
        // A service's ports are part of its instances' plans: all of them restart.
        let ports = MESH.replace("9080", "9090");
        let d = diff(&running, &instances(&ports));
        assert_eq!(d.start, [(0, true), (1, true), (2, true)]);
        assert_eq!(d.stop, [(0, true), (1, true), (2, true)]);
    }
}
