//! Istio's own YAML, when `../shared/conformance` is beside the checkout (CI has it; a user's clone may
//! not, and then these tests say so and pass): what Istio accepts must validate clean, and every
//! document of Istio's `*-invalid.yaml` CRD cases must be rejected.

use std::path::{Path, PathBuf};

use mesh_api::diag::{Finding, Severity};
use mesh_api::resource::{Loaded, load_nodes, load_str};
use mesh_api::yaml::{Value, parse_stream};

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("BOSUN_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        });
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "conformance corpus not found at {}; skipping",
            dir.display()
        );
        None
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)
            .expect("readable corpus dir")
            .flatten()
        {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every finding of a loaded source: envelope/type errors plus per-resource validation.
fn findings(loaded: &Loaded) -> Vec<Finding> {
    let mut all = loaded.findings.clone();
    for r in &loaded.resources {
        all.extend(mesh_api::validate::validate(r));
    }
    all
}

fn errors(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect()
}

fn assert_all_valid(files: &[PathBuf]) -> usize {
    let mut failures = Vec::new();
    let mut resources = 0;
    for file in files {
        let source = std::fs::read_to_string(file).expect("readable corpus file");
        let loaded = load_str(&source, None);
        resources += loaded.resources.len();
        for f in errors(&findings(&loaded)) {
            failures.push(format!(
                "{}:{}:{}: {} (at {})",
                file.display(),
                f.pos.line,
                f.pos.column,
                f.message,
                f.field
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "valid Istio YAML rejected:\n{}",
        failures.join("\n")
    );
    resources
}

#[test]
fn istio_samples_and_task_yaml_validate_clean() {
    let Some(dir) = corpus() else { return };
    let mut files = Vec::new();
    for sub in ["istio/samples", "istio-tasks", "microservices-demo"] {
        files.extend(yaml_files(&dir.join(sub)));
    }
    let crds = dir.join("istio/pkg/config/validation/testdata/crds");
    files.extend(
        yaml_files(&crds)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with("-valid.yaml")),
    );
    let resources = assert_all_valid(&files);
    assert!(
        resources > 50,
        "expected the corpus to hold many Istio resources, read {resources}"
    );
}

#[test]
fn istio_test_configs_validate_clean() {
    let Some(dir) = corpus() else { return };
    assert_all_valid(&yaml_files(&dir.join("istio/tests/testdata/config")));
}

#[test]
fn every_invalid_crd_case_is_rejected() {
    let Some(dir) = corpus() else { return };
    let crds = dir.join("istio/pkg/config/validation/testdata/crds");
    let mut missed = Vec::new();
    let mut checked = 0;
    for file in yaml_files(&crds)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-invalid.yaml"))
    {
        let source = std::fs::read_to_string(&file).expect("readable corpus file");
        let (docs, err) = parse_stream(&source);
        assert_eq!(err, None, "{}", file.display());
        for mut doc in docs {
            // `_err` is Istio's expected message, not part of the resource.
            let mut expected = String::new();
            if let Value::Map(entries) = &mut doc.value
                && let Some(i) = entries.iter().position(|e| e.key == "_err")
            {
                expected = entries[i].value.as_str().unwrap_or_default().to_owned();
                entries.remove(i);
            }
            let line = doc.pos.line;
            let loaded = load_nodes(vec![doc], None);
            if loaded.skipped > 0 {
                continue; // kinds Bosun does not validate (EnvoyFilter, Telemetry, WasmPlugin, ProxyConfig)
            }
            checked += 1;
            if errors(&findings(&loaded)).is_empty() {
                missed.push(format!(
                    "{}:{line}: Istio rejects it with {expected:?}",
                    file.display()
                ));
            }
        }
    }
    assert!(
        checked > 30,
        "expected many invalid cases, checked {checked}"
    );
    assert!(
        missed.is_empty(),
        "invalid Istio YAML accepted:\n{}",
        missed.join("\n")
    );
}
