//! `bosun validate` and `bosun analyze`: read files, report findings in the documented formats.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use mesh_api::diag::{Finding, Severity};
use mesh_api::registry::{Registry, RegistryError, load_registry_file};
use mesh_api::resource::{Loaded, Resource, load_str};
use serde_json::json;

use crate::OutputFormat;

/// A finding with the file it is in.
struct Located {
    path: String,
    finding: Finding,
}

pub fn run(
    paths: &[PathBuf],
    registry_path: Option<&Path>,
    analyze: bool,
    output: OutputFormat,
) -> Result<ExitCode> {
    let mut unreadable = false;
    let mut located: Vec<Located> = Vec::new();
    let mut resources: Vec<Resource> = Vec::new();
    let mut skipped = 0;
    // Kubernetes Services and workloads found among the inputs.
    let mut kubernetes = Registry::default();
    let mut files_read = 0;

    let mut mesh_files = Vec::new();
    let files = expand(paths, &mut mesh_files, &mut unreadable);
    // Without --registry, a mesh file beside the resources serves as the registry.
    let registry_path = registry_path.or_else(|| mesh_files.first().map(PathBuf::as_path));
    let registry = match registry_path.filter(|_| analyze) {
        None => None,
        Some(p) => match load_registry_file(p) {
            Ok(r) => Some(r),
            Err(RegistryError::Invalid { path, findings }) => {
                located.extend(findings.into_iter().map(|finding| Located {
                    path: path.clone(),
                    finding,
                }));
                None
            }
            Err(e @ RegistryError::Read { .. }) => {
                eprintln!("bosun: {e}");
                unreadable = true;
                None
            }
        },
    };

    for file in files {
        let (display, loaded) = match read(&file) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("bosun: {e:#}");
                unreadable = true;
                continue;
            }
        };
        files_read += 1;
        skipped += loaded.skipped;
        kubernetes.extend(loaded.kubernetes);
        located.extend(loaded.findings.into_iter().map(|finding| Located {
            path: display.clone(),
            finding,
        }));
        for resource in loaded.resources {
            located.extend(
                mesh_api::validate::validate(&resource)
                    .into_iter()
                    .map(|finding| Located {
                        path: display.clone(),
                        finding,
                    }),
            );
            resources.push(resource);
        }
    }

    if analyze {
        let registry = match registry {
            Some(mut r) => {
                r.extend(kubernetes);
                Some(r)
            }
            None if !kubernetes.services.is_empty() || !kubernetes.workloads.is_empty() => {
                Some(kubernetes)
            }
            None => None,
        };
        for (index, finding) in mesh_api::analyze::analyze(&resources, registry.as_ref()) {
            let path = resources[index]
                .file
                .as_ref()
                .map_or_else(|| "-".to_owned(), |p| p.display().to_string());
            located.push(Located { path, finding });
        }
    }

    located.sort_by(|a, b| {
        (&a.path, a.finding.pos, a.finding.severity).cmp(&(
            &b.path,
            b.finding.pos,
            b.finding.severity,
        ))
    });
    print(&located, output)?;

    let errors = count(&located, Severity::Error);
    let warnings = count(&located, Severity::Warning);
    eprintln!(
        "bosun: {} resources in {files_read} files: {errors} {}, {warnings} {}{}",
        resources.len(),
        plural(errors, "error", "errors"),
        plural(warnings, "warning", "warnings"),
        if skipped > 0 {
            format!(" ({skipped} documents of other kinds skipped)")
        } else {
            String::new()
        }
    );
    Ok(if unreadable {
        ExitCode::from(2)
    } else if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn count(located: &[Located], severity: Severity) -> usize {
    located
        .iter()
        .filter(|l| l.finding.severity == severity)
        .count()
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

fn print(located: &[Located], output: OutputFormat) -> Result<()> {
    match output {
        OutputFormat::Text => {
            for l in located {
                let f = &l.finding;
                let field = if f.field.is_empty() {
                    String::new()
                } else {
                    format!(" (at {})", f.field)
                };
                println!(
                    "{}:{}:{}: {}[{}]: {}{field}",
                    l.path, f.pos.line, f.pos.column, f.severity, f.code, f.message
                );
            }
        }
        OutputFormat::Json => {
            let items: Vec<_> = located
                .iter()
                .map(|l| {
                    json!({
                        "path": l.path,
                        "line": l.finding.pos.line,
                        "column": l.finding.pos.column,
                        "severity": l.finding.severity,
                        "code": l.finding.code,
                        "message": l.finding.message,
                        "field": l.finding.field,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
    }
    Ok(())
}

/// The name of a mesh file inside a directory of resources (as in `examples/bookinfo/`): it is read
/// as the registry, not as resources.
const MESH_FILE_NAMES: [&str; 2] = ["mesh.yaml", "mesh.yml"];

/// Files named on the command line, and the YAML/JSON files under directories, in a stable order;
/// mesh files found in directories are moved to `mesh_files`.
fn expand(paths: &[PathBuf], mesh_files: &mut Vec<PathBuf>, unreadable: &mut bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" || p.is_file() {
            files.push(p.clone());
        } else if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found, unreadable);
            found.sort();
            let (mesh, resources): (Vec<_>, Vec<_>) = found.into_iter().partition(|f| {
                f.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| MESH_FILE_NAMES.contains(&n))
            });
            mesh_files.extend(mesh);
            files.extend(resources);
        } else {
            eprintln!(
                "bosun: cannot read {}: no such file or directory",
                p.display()
            );
            *unreadable = true;
        }
    }
    files
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>, unreadable: &mut bool) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bosun: cannot read {}: {e}", dir.display());
            *unreadable = true;
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, found, unreadable);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            found.push(path);
        }
    }
}

fn read(file: &Path) -> Result<(String, Loaded)> {
    if file.as_os_str() == "-" {
        let mut source = String::new();
        std::io::stdin()
            .read_to_string(&mut source)
            .context("cannot read standard input")?;
        return Ok(("-".to_owned(), load_str(&source, None)));
    }
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok((
        file.display().to_string(),
        load_str(&source, Some(Arc::from(file))),
    ))
}
