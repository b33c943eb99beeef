//! The config the control plane serves: Istio YAML files in a directory (re-read when they change),
//! plus resources applied over the debug API (`bosun apply`), which win over files, like the newest
//! `kubectl apply`. A file that does not validate is refused whole and the last good version of that
//! file stays in force; its errors are kept for the log and `/debug/config_errors`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use mesh_api::diag::{Finding, Severity};
use mesh_api::registry::{Registry, load_registry_str};
use mesh_api::resource::{Resource, load_str};
use mesh_api::secret::CredentialSecret;

/// Files named like this in the config directory are the registry (the mesh file), not resources.
pub const MESH_FILE_NAMES: [&str; 2] = ["mesh.yaml", "mesh.yml"];
/// Files larger than this are refused rather than read (a stray binary or log in the directory).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Directories deeper than this are not searched.
const MAX_DEPTH: usize = 8;

/// A file's identity for change detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

#[derive(Debug, Clone)]
struct FileState {
    stamp: Stamp,
    /// The resources and secrets of its last version that validated.
    good: Parsed,
    /// Why its current version is refused, as `file:line:col: message (at field)` lines.
    errors: Vec<String>,
}

/// One refused source and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source: String,
    pub errors: Vec<String>,
}

#[derive(Debug, Default)]
pub struct ConfigStore {
    dir: Option<PathBuf>,
    registry_file: Option<PathBuf>,
    files: BTreeMap<PathBuf, FileState>,
    registry: Registry,
    /// Counts the mesh file's accepted versions: whether the registry changed, without comparing it.
    registry_version: u64,
    registry_stamp: Option<Stamp>,
    registry_errors: Vec<String>,
    applied: BTreeMap<String, Resource>,
    applied_secrets: BTreeMap<(String, String), CredentialSecret>,
    apply_errors: Vec<String>,
}

/// What a file or an apply holds that the control plane uses: Istio resources, and the TLS
/// credentials (`v1` `Secret`s) that Gateways' `credentialName` names.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub resources: Vec<Resource>,
    pub secrets: Vec<CredentialSecret>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// `file:line:col: message (at field)` for each finding that is an error.
pub fn error_lines(source: &str, findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| {
            let field = if f.field.is_empty() {
                String::new()
            } else {
                format!(" (at {})", f.field)
            };
            format!(
                "{source}:{}:{}: {}{field}",
                f.pos.line, f.pos.column, f.message
            )
        })
        .collect()
}

/// Reads and validates Istio YAML (and the `Secret`s beside it): what it holds, or the error lines
/// that refuse it.
pub fn parse_config(source_name: &str, text: &str) -> Result<Parsed, Vec<String>> {
    let file: Arc<Path> = Arc::from(Path::new(source_name));
    let loaded = load_str(text, Some(file));
    let mut findings = loaded.findings;
    for r in &loaded.resources {
        findings.extend(mesh_api::validate::validate(r));
    }
    let errors = error_lines(source_name, &findings);
    if errors.is_empty() {
        Ok(Parsed {
            resources: loaded.resources,
            secrets: loaded.secrets,
        })
    } else {
        Err(errors)
    }
}

/// [`parse_config`]'s resources only (tests, tools that have no use for secrets).
pub fn parse_resources(source_name: &str, text: &str) -> Result<Vec<Resource>, Vec<String>> {
    parse_config(source_name, text).map(|p| p.resources)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Editors' swap and backup files, hidden files.
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        if path.is_dir() {
            walk(&path, depth + 1, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) && !MESH_FILE_NAMES.contains(&name.as_ref())
        {
            out.push(path);
        }
    }
}

impl ConfigStore {
    /// A store over `dir` (may be absent) and a mesh file: `registry_file`, or `DIR/mesh.yaml` when
    /// there is one.
    pub fn new(dir: Option<PathBuf>, registry_file: Option<PathBuf>) -> ConfigStore {
        let registry_file = registry_file.or_else(|| {
            let dir = dir.as_ref()?;
            MESH_FILE_NAMES
                .iter()
                .map(|n| dir.join(n))
                .find(|p| p.is_file())
        });
        ConfigStore {
            dir,
            registry_file,
            ..ConfigStore::default()
        }
    }

    /// Re-reads what changed on disk. Returns whether anything did.
    pub fn refresh(&mut self) -> bool {
        let mut changed = self.refresh_registry();
        let mut paths = Vec::new();
        if let Some(dir) = &self.dir {
            walk(dir, 0, &mut paths);
        }
        paths.sort();
        let before = self.files.len();
        // Polled every 200 ms over every file: a search, not a scan of all paths per file.
        self.files.retain(|p, _| paths.binary_search(p).is_ok());
        changed |= self.files.len() != before;
        for path in paths {
            let Some(now) = stamp(&path) else { continue };
            if self.files.get(&path).is_some_and(|f| f.stamp == now) {
                continue;
            }
            changed = true;
            let shown = path.display().to_string();
            let parsed = if now.len > MAX_FILE_BYTES {
                Err(vec![format!(
                    "{shown}: {} bytes is more than the {MAX_FILE_BYTES} a config file may have",
                    now.len
                )])
            } else {
                match std::fs::read_to_string(&path) {
                    Ok(text) => parse_config(&shown, &text),
                    Err(e) => Err(vec![format!("{shown}: cannot read: {e}")]),
                }
            };
            let previous = self.files.remove(&path);
            let state = match parsed {
                Ok(good) => FileState {
                    stamp: now,
                    good,
                    errors: Vec::new(),
                },
                Err(errors) => {
                    for e in &errors {
                        tracing::warn!("refused, the last good version stays in force: {e}");
                    }
                    FileState {
                        stamp: now,
                        good: previous.map(|p| p.good).unwrap_or_default(),
                        errors,
                    }
                }
            };
            self.files.insert(path, state);
        }
        changed
    }

    fn refresh_registry(&mut self) -> bool {
        let Some(path) = &self.registry_file else {
            return false;
        };
        let now = stamp(path);
        if now == self.registry_stamp {
            return false;
        }
        self.registry_stamp = now;
        let shown = path.display().to_string();
        let result = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("{shown}: cannot read: {e}")])
            .and_then(|text| {
                load_registry_str(&text).map_err(|findings| error_lines(&shown, &findings))
            });
        match result {
            Ok(registry) => {
                self.registry = registry;
                self.registry_version += 1;
                self.registry_errors.clear();
            }
            Err(errors) => {
                for e in &errors {
                    tracing::warn!("mesh file refused, the last good version stays in force: {e}");
                }
                self.registry_errors = errors;
            }
        }
        true
    }

    /// Applies resources and secrets (validated by the caller with [`parse_config`]): each replaces
    /// any of the same kind, namespace and name.
    pub fn apply(&mut self, parsed: Parsed) {
        for r in parsed.resources {
            self.applied.insert(r.key(), r);
        }
        for s in parsed.secrets {
            self.applied_secrets
                .insert((s.namespace.clone(), s.name.clone()), s);
        }
    }

    /// Every secret in force, by namespace and name: from files (a later file's copy replaces an
    /// earlier one's), then applied ones over them.
    pub fn secrets(&self) -> BTreeMap<(String, String), Arc<CredentialSecret>> {
        let files = self.files.values().flat_map(|f| f.good.secrets.iter());
        files
            .chain(self.applied_secrets.values())
            .map(|s| ((s.namespace.clone(), s.name.clone()), Arc::new(s.clone())))
            .collect()
    }

    /// Every resource in force: from files (a later file's copy of a resource replaces an earlier
    /// one's), then applied ones over them. Borrowed: a push reads them without copying them all.
    pub fn resources(&self) -> Vec<&Resource> {
        let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
        let mut out: Vec<&Resource> = Vec::new();
        let all = self
            .files
            .values()
            .flat_map(|f| f.good.resources.iter())
            .chain(self.applied.values());
        for r in all {
            match by_key.get(&r.key()) {
                Some(&i) => out[i] = r,
                None => {
                    by_key.insert(r.key(), out.len());
                    out.push(r);
                }
            }
        }
        out
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Changes whenever [`registry`](Self::registry) does.
    pub fn registry_version(&self) -> u64 {
        self.registry_version
    }

    /// Sources currently refused, with their errors.
    pub fn errors(&self) -> Vec<ConfigError> {
        let mut out: Vec<ConfigError> = self
            .files
            .iter()
            .filter(|(_, f)| !f.errors.is_empty())
            .map(|(p, f)| ConfigError {
                source: p.display().to_string(),
                errors: f.errors.clone(),
            })
            .collect();
        if !self.registry_errors.is_empty()
            && let Some(p) = &self.registry_file
        {
            out.push(ConfigError {
                source: p.display().to_string(),
                errors: self.registry_errors.clone(),
            });
        }
        if !self.apply_errors.is_empty() {
            out.push(ConfigError {
                source: "apply".to_owned(),
                errors: self.apply_errors.clone(),
            });
        }
        out
    }

    /// Remembers the errors of the last refused apply (cleared by a good one).
    pub fn set_apply_errors(&mut self, errors: Vec<String>) {
        self.apply_errors = errors;
    }

    /// The files and mesh file watched.
    pub fn watched(&self) -> (Option<&Path>, Option<&Path>) {
        (self.dir.as_deref(), self.registry_file.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n";

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bosun-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_bad_file_keeps_its_last_good_version() {
        let dir = temp_dir("lastgood");
        let file = dir.join("vs.yaml");
        std::fs::write(&file, VS).expect("write");
        let mut store = ConfigStore::new(Some(dir.clone()), None);
        assert!(store.refresh());
        assert_eq!(store.resources().len(), 1);
        assert!(store.errors().is_empty());

        // `prots` is not a field: the file is refused with its position, the old VS stays.
        std::fs::write(&file, format!("{VS}  prots: 1\n")).expect("write");
        assert!(store.refresh());
        assert_eq!(store.resources().len(), 1);
        let errors = store.errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].errors,
            [format!(
                "{}:9:3: unknown field \"prots\"; known fields here: exportTo, gateways, hosts, http, tcp, tls (at spec.prots)",
                file.display()
            )]
        );

        std::fs::remove_file(&file).expect("rm");
        assert!(store.refresh());
        assert!(store.resources().is_empty());
        assert!(!store.refresh(), "nothing changed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn applied_resources_replace_file_ones() {
        let dir = temp_dir("apply");
        std::fs::write(dir.join("vs.yaml"), VS).expect("write");
        std::fs::write(
            dir.join("mesh.yaml"),
            "services:\n- name: reviews\n  ports: [{number: 9080, name: http}]\n",
        )
        .expect("write");
        let mut store = ConfigStore::new(Some(dir.clone()), None);
        store.refresh();
        assert_eq!(
            store.registry().services.len(),
            1,
            "mesh.yaml is the registry"
        );
        assert_eq!(
            store.resources().len(),
            1,
            "mesh.yaml is not a resource file"
        );
        let applied =
            parse_config("new.yaml", &VS.replace("reviews]", "reviews, ratings]")).expect("valid");
        store.apply(applied);
        let all = store.resources();
        assert_eq!(all.len(), 1);
        let mesh_api::resource::Spec::VirtualService(vs) = &all[0].spec else {
            panic!("a VirtualService");
        };
        assert_eq!(vs.hosts, ["reviews", "ratings"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
