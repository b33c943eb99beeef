//! The running control plane: watches the config directory and the mesh file, debounces changes,
//! builds one immutable [`Index`] per push, generates each connected proxy's resources and hands them
//! to the ADS server's snapshot cache (which pushes only what changed, in make-before-break order).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mesh_api::registry::Registry;
use mesh_api::resource::{Resource, Spec};
use mesh_api::types::sidecar::OutboundTrafficPolicyMode;
use tokio::sync::mpsc;
use tracing::{info, warn};
use xds_server::{AdsServer, RunningServer, SnapshotCache};

use crate::error::ControlError;
use crate::generate::{GenerationCache, Generator, InboundAddressing};
use crate::identity::MeshIdentity;
use crate::index::{AccessLogSettings, Index, MeshSettings};
use crate::model::ServiceRegistry;
use crate::node::Proxy;
use crate::store::ConfigStore;

/// How the control plane runs.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    pub config_dir: Option<PathBuf>,
    pub registry: Option<PathBuf>,
    pub xds_addr: SocketAddr,
    pub debug_addr: SocketAddr,
    /// A push waits for this much quiet after a change…
    pub debounce_after: Duration,
    /// …but never longer than this after the first change.
    pub debounce_max: Duration,
    /// How often the config directory and the mesh file are checked for changes.
    pub poll_interval: Duration,
    /// The mesh-wide outbound traffic policy when the mesh file does not set one.
    pub outbound_policy: OutboundTrafficPolicyMode,
    /// The mesh-wide access log file when the mesh file does not set one (`accessLogFile`).
    pub access_log_file: Option<String>,
    pub addressing: InboundAddressing,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            config_dir: None,
            registry: None,
            xds_addr: SocketAddr::from(([127, 0, 0, 1], 15010)),
            debug_addr: SocketAddr::from(([127, 0, 0, 1], 15014)),
            debounce_after: Duration::from_millis(100),
            debounce_max: Duration::from_secs(10),
            poll_interval: Duration::from_millis(200),
            outbound_policy: OutboundTrafficPolicyMode::AllowAny,
            access_log_file: None,
            addressing: InboundAddressing::SidecarPort,
        }
    }
}

/// How long a push's convergence is watched before it counts as not converged.
pub const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters and timings for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Index rebuilds (each a push to every proxy whose config changed).
    pub pushes: AtomicU64,
    /// Proxy snapshots that changed and were handed to the ADS server.
    pub proxy_pushes: AtomicU64,
    /// Total and last time to build the index and generate every proxy's config, in microseconds.
    pub push_micros_total: AtomicU64,
    pub last_push_micros: AtomicU64,
    pub config_rejections: AtomicU64,
    /// From a change being noticed to every connected proxy having ACKed the push it caused (total,
    /// count and last, in microseconds); a push that does not converge within
    /// [`CONVERGENCE_TIMEOUT`] counts in `convergence_timeouts`.
    pub convergence_micros_total: AtomicU64,
    pub convergences: AtomicU64,
    pub last_convergence_micros: AtomicU64,
    pub convergence_timeouts: AtomicU64,
}

/// What the debug API and the push loop share.
#[derive(Debug)]
pub struct Shared {
    pub options: ControlOptions,
    pub cache: SnapshotCache,
    store: Mutex<ConfigStore>,
    index: Mutex<Arc<Index>>,
    /// What the last push generated, reused by the next where nothing changed.
    generated: Mutex<GenerationCache>,
    /// The warnings logged for each proxy, so an unchanged one is not logged on every push.
    warned: Mutex<BTreeMap<String, Vec<String>>>,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    version: AtomicU64,
    changed: mpsc::Sender<()>,
    /// The mesh CA, for `ISTIO_MUTUAL` (made at start; its root lives as long as this process).
    identity: Arc<MeshIdentity>,
    /// What the current index's services were built from.
    services_built_from: Mutex<ServiceInputs>,
}

/// The inputs of a [`ServiceRegistry`]: the mesh file's version and the ServiceEntries and
/// WorkloadEntries in force, in order.
#[derive(Debug, Default)]
struct ServiceInputs {
    registry_version: u64,
    entries: Vec<(String, String, Spec)>,
}

impl ServiceInputs {
    fn entries<'a>(resources: &'a [&'a Resource]) -> impl Iterator<Item = &'a Resource> + 'a {
        resources
            .iter()
            .copied()
            .filter(|r| matches!(r.spec, Spec::ServiceEntry(_) | Spec::WorkloadEntry(_)))
    }

    fn same(&self, registry_version: u64, resources: &[&Resource]) -> bool {
        let mut now = ServiceInputs::entries(resources);
        self.registry_version == registry_version
            && self.entries.iter().all(|(name, namespace, spec)| {
                now.next().is_some_and(|r| {
                    r.name == *name && r.namespace == *namespace && r.spec == *spec
                })
            })
            && now.next().is_none()
    }

    /// `current` if it was built from these inputs, else the services built anew from them (and
    /// remembered as built so).
    fn reuse_or_build(
        &mut self,
        current: &Arc<ServiceRegistry>,
        registry_version: u64,
        registry: &Registry,
        resources: &[&Resource],
    ) -> Arc<ServiceRegistry> {
        if self.same(registry_version, resources) {
            return current.clone();
        }
        *self = ServiceInputs {
            registry_version,
            entries: ServiceInputs::entries(resources)
                .map(|r| (r.name.clone(), r.namespace.clone(), r.spec.clone()))
                .collect(),
        };
        Arc::new(ServiceRegistry::build(registry, resources))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn index(&self) -> Arc<Index> {
        lock(&self.index).clone()
    }

    pub fn store(&self) -> MutexGuard<'_, ConfigStore> {
        lock(&self.store)
    }

    /// Asks for a push (coalesced with any already pending).
    pub fn notify_changed(&self) {
        let _ = self.changed.try_send(());
    }

    fn rebuild_index(&self) -> Arc<Index> {
        let store = self.store();
        let registry = store.registry();
        let access_log_file = registry
            .access_log_file
            .as_ref()
            .or(self.options.access_log_file.as_ref())
            .filter(|f| !f.is_empty());
        let mesh = MeshSettings {
            outbound_policy: registry
                .outbound_traffic_policy
                .as_ref()
                .and_then(|p| p.mode)
                .unwrap_or(self.options.outbound_policy),
            access_log: access_log_file.map(|file| AccessLogSettings {
                file: file.clone(),
                encoding: registry.access_log_encoding.unwrap_or_default(),
                format: registry.access_log_format.clone().filter(|f| !f.is_empty()),
            }),
        };
        let resources = store.resources();
        // A change of routing rules alone (the usual edit) keeps the services as they were.
        let current = lock(&self.index).services.clone();
        let services = lock(&self.services_built_from).reuse_or_build(
            &current,
            store.registry_version(),
            registry,
            &resources,
        );
        let mut index = Index::with_services(services, &resources, mesh);
        index.secrets = store.secrets();
        index.identity = Some(self.identity.clone());
        drop(store);
        let index = Arc::new(index);
        for w in &index.warnings {
            warn!("{w}");
        }
        *lock(&self.index) = index.clone();
        index
    }

    /// Generates the config of each proxy in `node_ids` (all connected ones when `None`) and sets
    /// those that changed.
    fn push(&self, index: &Arc<Index>, node_ids: Option<&BTreeSet<String>>) -> usize {
        let version = format!("v{}", self.version.fetch_add(1, Ordering::Relaxed) + 1);
        let mut seen = BTreeSet::new();
        let mut pushed = 0;
        let previous = std::mem::take(&mut *lock(&self.generated));
        let generator = Generator::after(index, self.options.addressing, previous);
        if node_ids.is_none() {
            info!(routes = %generator.route_change(), "generating");
        }
        let proxies = self.cache.proxies();
        for info in &proxies {
            if !seen.insert(info.node_id.clone()) {
                continue;
            }
            if node_ids.is_some_and(|ids| !ids.contains(&info.node_id)) {
                continue;
            }
            let proxy = match Proxy::from_info(info) {
                Ok(p) => p,
                Err(e) => {
                    warn!("{e}; it gets no config");
                    continue;
                }
            };
            let (snapshot, warnings) = generator.snapshot(&proxy, &version);
            self.log_warnings(&proxy.id, &warnings);
            if self
                .cache
                .snapshot(&proxy.id)
                .is_some_and(|old| old.same_resources(&snapshot))
            {
                // Unchanged config: push nothing.
                continue;
            }
            self.cache.set_snapshot(proxy.id.clone(), snapshot);
            pushed += 1;
        }
        *lock(&self.generated) = generator.into_cache(node_ids.is_none());
        self.metrics
            .proxy_pushes
            .fetch_add(pushed as u64, Ordering::Relaxed);
        pushed
    }

    fn log_warnings(&self, id: &str, warnings: &[String]) {
        let mut warned = lock(&self.warned);
        if warned.get(id).map(Vec::as_slice) != Some(warnings) {
            for w in warnings {
                warn!(proxy = %id, "{w}");
            }
            warned.insert(id.to_owned(), warnings.to_vec());
        }
    }
}

/// Pushes when workload certificates are due for renewal (half their life gone), so that proxies
/// get new ones though nothing else changes.
async fn renew_identities(shared: Arc<Shared>) {
    const CHECK_EVERY: Duration = Duration::from_secs(60);
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if shared.identity.renewal_due() {
            info!("workload certificates are due for renewal; pushing");
            shared.notify_changed();
        }
    }
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    pub shared: Arc<Shared>,
    xds: RunningServer,
    debug_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    /// Reads the config, binds the ADS and debug ports and starts watching and pushing.
    pub async fn start(options: ControlOptions) -> Result<ControlPlane, ControlError> {
        let cache = SnapshotCache::new();
        let (changed, changes) = mpsc::channel(1);
        let mut store = ConfigStore::new(options.config_dir.clone(), options.registry.clone());
        if let Some(dir) = &options.config_dir
            && !dir.is_dir()
        {
            return Err(ControlError::ConfigDir(dir.clone()));
        }
        // Watching starts before the first read, so no change falls between the two.
        let (file_events_tx, file_events) = mpsc::channel(1);
        let (dir, registry) = store.watched();
        let watcher = watch_paths(dir, registry, file_events_tx);
        store.refresh();
        let shared = Arc::new(Shared {
            options: options.clone(),
            cache: cache.clone(),
            store: Mutex::new(store),
            index: Mutex::new(Arc::new(Index::default())),
            warned: Mutex::new(BTreeMap::new()),
            generated: Mutex::new(GenerationCache::default()),
            metrics: Metrics::default(),
            ready: AtomicBool::new(false),
            version: AtomicU64::new(0),
            changed,
            identity: Arc::new(MeshIdentity::generate()?),
            services_built_from: Mutex::new(ServiceInputs::default()),
        });
        let index = shared.rebuild_index();
        info!(summary = ?index.summary(), "config loaded");
        let xds = AdsServer::new(cache)
            .start(options.xds_addr)
            .await
            .map_err(ControlError::Xds)?;
        let (debug_addr, debug_task) =
            crate::debug::serve(shared.clone(), options.debug_addr).await?;
        shared.ready.store(true, Ordering::Release);
        let tasks = vec![
            tokio::spawn(watch_files(shared.clone(), file_events, watcher)),
            tokio::spawn(push_loop(shared.clone(), changes)),
            tokio::spawn(renew_identities(shared.clone())),
            debug_task,
        ];
        info!(xds = %xds.local_addr(), debug = %debug_addr, "control plane ready");
        Ok(ControlPlane {
            shared,
            xds,
            debug_addr,
            tasks,
        })
    }

    pub fn xds_addr(&self) -> SocketAddr {
        self.xds.local_addr()
    }

    pub fn debug_addr(&self) -> SocketAddr {
        self.debug_addr
    }

    /// Stops serving: ends every ADS stream and the background tasks.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Err(e) = self.xds.stop().await {
            warn!("stopping the ADS server: {e}");
        }
    }
}

/// Re-reads the config directory and the mesh file when the kernel says something in them changed
/// (inotify), and every poll interval in any case (file systems without change events, events
/// lost to a full queue).
async fn watch_files(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<()>,
    _watcher: Option<notify::RecommendedWatcher>,
) {
    let mut tick = tokio::time::interval(shared.options.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now: the start read everything already.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(()) = events.recv() => {}
        }
        let s = shared.clone();
        let changed = tokio::task::spawn_blocking(move || s.store().refresh())
            .await
            .unwrap_or(false);
        if changed {
            shared.notify_changed();
        }
    }
}

/// Change events for the config directory (recursively) and the mesh file's directory; `None`
/// (and a warning) where the platform has none, and polling alone serves.
fn watch_paths(
    dir: Option<&Path>,
    registry: Option<&Path>,
    events: mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    use notify::{RecursiveMode, Watcher};

    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // A file counts once written and closed, created, removed or renamed: not at every write
        // of an editor's save, which would read it half written.
        let complete = event.is_ok_and(|e| {
            matches!(
                e.kind,
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                    | EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Name(_))
            )
        });
        if complete {
            // Full: a refresh is pending already, and it reads everything.
            let _ = events.try_send(());
        }
    })
    .map_err(|e| warn!("no file change events ({e}); polling alone"))
    .ok()?;
    let mut watch = |path: &Path, mode| {
        if let Err(e) = watcher.watch(path, mode) {
            warn!("no change events for {} ({e}); polling it", path.display());
        }
    };
    if let Some(dir) = dir {
        watch(dir, RecursiveMode::Recursive);
    }
    // The mesh file's directory, not the file: an editor or `mv` replaces the file itself.
    if let Some(parent) = registry.and_then(Path::parent)
        && dir.is_none_or(|d| !parent.starts_with(d))
    {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        watch(parent, RecursiveMode::NonRecursive);
    }
    Some(watcher)
}

/// Records when every connected proxy has ACKed what push number `push` sent them (the change was
/// noticed at `noticed`). Gives up when a newer push starts or after [`CONVERGENCE_TIMEOUT`].
async fn watch_convergence(shared: Arc<Shared>, push: u64, noticed: Instant) {
    let m = &shared.metrics;
    loop {
        if m.pushes.load(Ordering::Relaxed) != push {
            return; // Superseded: the newer push's watcher measures from its own change.
        }
        if shared.cache.all_in_sync() {
            let micros = u64::try_from(noticed.elapsed().as_micros()).unwrap_or(u64::MAX);
            m.convergence_micros_total
                .fetch_add(micros, Ordering::Relaxed);
            m.convergences.fetch_add(1, Ordering::Relaxed);
            m.last_convergence_micros.store(micros, Ordering::Relaxed);
            return;
        }
        if noticed.elapsed() > CONVERGENCE_TIMEOUT {
            m.convergence_timeouts.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Debounces changes into pushes, and gives proxies that connect their config.
async fn push_loop(shared: Arc<Shared>, mut changes: mpsc::Receiver<()>) {
    let mut proxies = shared.cache.watch_proxies();
    // Proxies may have connected between the ADS server's start and this subscription: look once.
    proxies.mark_changed();
    let mut known: BTreeSet<u64> = BTreeSet::new();
    loop {
        tokio::select! {
            change = changes.recv() => {
                if change.is_none() {
                    return;
                }
                let first = Instant::now();
                // Wait for quiet (or the maximum), so a burst of edits is one push.
                loop {
                    let left = shared.options.debounce_max.saturating_sub(first.elapsed());
                    let wait = shared.options.debounce_after.min(left);
                    match tokio::time::timeout(wait, changes.recv()).await {
                        Ok(Some(())) if !left.is_zero() => continue,
                        _ => break,
                    }
                }
                let s = shared.clone();
                let started = Instant::now();
                let pushed = tokio::task::spawn_blocking(move || {
                    let index = s.rebuild_index();
                    s.push(&index, None)
                })
                .await
                .unwrap_or(0);
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                shared.metrics.pushes.fetch_add(1, Ordering::Relaxed);
                shared.metrics.push_micros_total.fetch_add(micros, Ordering::Relaxed);
                shared.metrics.last_push_micros.store(micros, Ordering::Relaxed);
                info!(proxies = pushed, took_ms = micros / 1000, "push");
                let push = shared.metrics.pushes.load(Ordering::Relaxed);
                tokio::spawn(watch_convergence(shared.clone(), push, first));
            }
            changed = proxies.changed() => {
                if changed.is_err() {
                    return;
                }
                // New streams get their config now; a reconnecting proxy gets it regenerated.
                let now: BTreeMap<u64, String> = shared
                    .cache
                    .proxies()
                    .into_iter()
                    .map(|p| (p.connection_id, p.node_id))
                    .collect();
                let fresh: BTreeSet<String> = now
                    .iter()
                    .filter(|(id, _)| !known.contains(id))
                    .map(|(_, node)| node.clone())
                    .collect();
                known = now.keys().copied().collect();
                if fresh.is_empty() {
                    continue;
                }
                let s = shared.clone();
                let index = shared.index();
                let _ = tokio::task::spawn_blocking(move || s.push(&index, Some(&fresh))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change of routing rules keeps the services (the same `Arc`, so comparing them is free); a
    /// new mesh file version, or a changed, added or removed ServiceEntry or WorkloadEntry, builds
    /// them again.
    #[test]
    fn services_are_rebuilt_only_when_their_inputs_change() {
        let registry = mesh_api::registry::load_registry_str(
            "services:\n- name: reviews\n  ports: [{number: 9080, name: http}]\n",
        )
        .expect("mesh file");
        let parse = |yaml: &str| crate::store::parse_resources("t.yaml", yaml).expect("valid");
        let entry = |port: u32| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: db}}\n\
                 spec:\n  hosts: [db.internal]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  \
                 ports: [{{number: {port}, name: tcp, protocol: TCP}}]\n  \
                 endpoints: [{{address: 10.0.0.9}}]\n"
            )
        };
        let route = |subset: &str| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews}}\n\
                 spec:\n  hosts: [reviews]\n  http:\n  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]\n"
            )
        };
        let with = |vs: &str, se: &str| {
            let mut all = parse(vs);
            all.extend(parse(se));
            all
        };
        let mut inputs = ServiceInputs::default();
        let build = |inputs: &mut ServiceInputs, current, version, resources: &[Resource]| {
            let refs: Vec<&Resource> = resources.iter().collect();
            inputs.reuse_or_build(current, version, &registry, &refs)
        };
        let empty = Arc::new(ServiceRegistry::default());
        let first = build(&mut inputs, &empty, 1, &with(&route("v1"), &entry(5432)));
        assert!(!Arc::ptr_eq(&first, &empty));
        assert_eq!(first.services.len(), 2);

        let routes_changed = build(&mut inputs, &first, 1, &with(&route("v2"), &entry(5432)));
        assert!(Arc::ptr_eq(&routes_changed, &first));

        let entry_changed = build(&mut inputs, &first, 1, &with(&route("v2"), &entry(5433)));
        assert!(!Arc::ptr_eq(&entry_changed, &first));
        assert!(
            entry_changed
                .get("db.internal")
                .expect("db")
                .port(5433)
                .is_some()
        );
        let again = build(
            &mut inputs,
            &entry_changed,
            1,
            &with(&route("v2"), &entry(5433)),
        );
        assert!(Arc::ptr_eq(&again, &entry_changed));

        let entry_removed = build(&mut inputs, &again, 1, &parse(&route("v2")));
        assert_eq!(entry_removed.services.len(), 1);

        let mesh_file_reread = build(&mut inputs, &entry_removed, 2, &parse(&route("v2")));
        assert!(!Arc::ptr_eq(&mesh_file_reread, &entry_removed));
    }

    /// With polling all but off, a file written into the config directory and a mesh file
    /// replaced in its own directory are still read: the change events alone bring them in.
    #[tokio::test]
    async fn file_changes_are_read_without_waiting_for_the_poll() {
        let config = testkit::TempDir::new("control-events").expect("temp dir");
        let elsewhere = testkit::TempDir::new("control-events-mesh").expect("temp dir");
        let mesh = elsewhere
            .write("mesh.yaml", b"services: []\n")
            .expect("write");
        let plane = ControlPlane::start(ControlOptions {
            config_dir: Some(config.path().to_owned()),
            registry: Some(mesh.clone()),
            xds_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            debug_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            poll_interval: Duration::from_secs(3600),
            ..ControlOptions::default()
        })
        .await
        .expect("control plane starts");
        config
            .write(
                "vs.yaml",
                b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n\
                  spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n",
            )
            .expect("write");
        let replacement = elsewhere
            .write(
                "mesh.yaml.new",
                b"services:\n- name: reviews\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n",
            )
            .expect("write");
        std::fs::rename(&replacement, &mesh).expect("replace the mesh file");
        let read = async {
            loop {
                let (resources, services) = {
                    let store = plane.shared.store();
                    (store.resources().len(), store.registry().services.len())
                };
                if resources == 1 && services == 1 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let result = tokio::time::timeout(Duration::from_secs(20), read).await;
        plane.stop().await;
        assert!(result.is_ok(), "the changes were not read");
    }
}
