//! Builds the protobuf descriptor set that `xds-api` uses to read Envoy's JSON/YAML configuration.
//!
//! The descriptors come from the `envoy-types` crate's own sources, found with `cargo metadata` (or, when
//! that cannot run offline, in Cargo's registry cache at the locked version):
//!
//! 1. `src/generated/types.bin`, the `FileDescriptorSet` that envoy-types generated its Rust structs from:
//!    every message envoy-types has (Envoy's whole data-plane API, 500+ files), so any `typed_config` Envoy
//!    knows can be read, and the descriptors match the Rust structs exactly. Source info is stripped
//!    (at the wire level, so the `validate.rules` extension options stay).
//! 2. If a future envoy-types stops shipping that file, the `.proto` files it ships under `proto/` are
//!    compiled with `protox` instead, limited to the roots in [`FALLBACK_ROOTS`] (each root compiled on its
//!    own: protox resolves relative names against every file in one compilation, which breaks on
//!    Envoy's `common.ratelimit.v3.X` style references when unrelated `...filters.common` packages are
//!    loaded).
//!
//! The `TypedStruct` messages (`xds.type.v3` and `udpa.type.v1`) are in neither, so they are compiled
//! here from their two-field definitions.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[path = "build/wire.rs"]
mod wire;

use wire::{entries, fields};

use protox::file::{ChainFileResolver, DescriptorSetFileResolver, File, FileResolver};
use protox::prost::Message;
use protox::prost_reflect::prost_types::{FileDescriptorProto, FileDescriptorSet};

/// The protos Bosun's proxy needs when `types.bin` is not available.
const FALLBACK_ROOTS: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/service/discovery/v3/ads.proto",
    "envoy/service/runtime/v3/rtds.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto",
    "envoy/extensions/filters/http/rbac/v3/rbac.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "google/protobuf/empty.proto",
    "google/protobuf/field_mask.proto",
    "google/protobuf/timestamp.proto",
];

/// Include directories under envoy-types' `proto/`.
const INCLUDES: &[&str] = &[
    "data-plane-api",
    "xds",
    "googleapis",
    "protoc-gen-validate",
    "cel-spec/proto",
    "client_model",
    "opentelemetry-proto",
];

const TYPED_STRUCTS: &[(&str, &str)] = &[
    (
        "xds/type/v3/typed_struct.proto",
        "syntax = \"proto3\";\npackage xds.type.v3;\nimport \"google/protobuf/struct.proto\";\n\
         message TypedStruct {\n  string type_url = 1;\n  google.protobuf.Struct value = 2;\n}\n",
    ),
    (
        "udpa/type/v1/typed_struct.proto",
        "syntax = \"proto3\";\npackage udpa.type.v1;\nimport \"google/protobuf/struct.proto\";\n\
         message TypedStruct {\n  string type_url = 1;\n  google.protobuf.Struct value = 2;\n}\n",
    ),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=XDS_API_COMPILE_PROTOS");
    let dir = envoy_types_dir();
    let bin = dir.join("src/generated/types.bin");
    // XDS_API_COMPILE_PROTOS=1 takes the fallback path on purpose (to check it still works).
    let read = match std::env::var_os("XDS_API_COMPILE_PROTOS") {
        Some(_) => Err(std::io::Error::other("XDS_API_COMPILE_PROTOS is set")),
        None => std::fs::read(&bin),
    };
    // Files are kept as encoded FileDescriptorProtos: decoding them into prost-types structs would drop
    // the extension options (the `validate.rules` that `xds-api` checks).
    let files: Vec<Vec<u8>> = match read {
        Ok(bytes) => entries(&bytes, 1)
            .unwrap_or_else(|| panic!("{} is not a FileDescriptorSet", bin.display()))
            .into_iter()
            .map(|f| strip_field(f, 9).expect("FileDescriptorProto"))
            .collect(),
        Err(e) => {
            println!(
                "cargo:warning=xds-api: {} unreadable ({e}); compiling a subset of envoy-types' protos",
                bin.display()
            );
            compile_fallback(&dir.join("proto"))
        }
    };
    let mut files = files;
    add_typed_structs(&mut files);

    let mut out = Vec::new();
    for file in &files {
        put_len_field(&mut out, 1, file);
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out_dir.join("descriptor_index.rs"), index_source(&out))
        .expect("write descriptor_index.rs");
    std::fs::write(out_dir.join("envoy_descriptors.bin"), out)
        .expect("write envoy_descriptors.bin");
}

/// The descriptor set's index as Rust statics (see `src/descriptor.rs`): each file's byte range in the
/// set and the files it imports, and every top-level message's full name with its file, sorted by
/// name. Made here rather than at run time, so that a process reading a bootstrap touches only the
/// set's files it needs, not all 700 KB. Integers only (names as ranges of one string), so that the
/// statics need no relocations.
fn index_source(set: &[u8]) -> String {
    use std::fmt::Write as _;
    let text = |file: &[u8], n: u64| -> Vec<String> {
        entries(file, n)
            .expect("a FileDescriptorProto")
            .into_iter()
            .map(|b| String::from_utf8(b.to_vec()).expect("UTF-8 names"))
            .collect()
    };
    let mut files = Vec::new(); // (start, end, imports)
    let mut numbers = std::collections::HashMap::new();
    let mut messages = Vec::new(); // (full name, file)
    let mut at = 0;
    for (number, entry, payload) in fields(set).expect("the descriptor set") {
        let start = at;
        at += entry.len();
        let (1, Some(file)) = (number, payload) else {
            continue;
        };
        let name = text(file, 1).pop().unwrap_or_default();
        let package = text(file, 2).pop().unwrap_or_default();
        for message in entries(file, 4).expect("messages") {
            let short = text(message, 1).pop().expect("a message name");
            let full = if package.is_empty() {
                short
            } else {
                format!("{package}.{short}")
            };
            messages.push((full, files.len()));
        }
        numbers.insert(name, files.len());
        files.push((start, at, text(file, 3)));
    }
    messages.sort();
    let mut names = String::new();
    let mut source = String::from("static MESSAGES: &[(u32, u32, u16)] = &[\n");
    for (name, file) in &messages {
        let _ = writeln!(source, "    ({}, {}, {file}),", names.len(), name.len());
        names.push_str(name);
    }
    source.push_str("];\n");
    let _ = writeln!(source, "static MESSAGE_NAMES: &str = {names:?};");
    let mut dependencies = Vec::new();
    source.push_str("static FILES: &[(u32, u32, u32, u32)] = &[\n");
    for (start, end, imports) in &files {
        let first = dependencies.len();
        for import in imports {
            let k = numbers
                .get(import)
                .unwrap_or_else(|| panic!("{import} imported but not in the set"));
            dependencies.push(*k);
        }
        let _ = writeln!(
            source,
            "    ({start}, {end}, {first}, {}),",
            dependencies.len()
        );
    }
    source.push_str("];\n");
    let _ = writeln!(source, "static DEPENDENCIES: &[u16] = &{dependencies:?};");
    source
}

/// The directory of the `envoy-types` package this workspace builds against.
///
/// `cargo metadata` resolves the whole workspace, dev-dependencies included, and offline it fails when
/// some of those are not downloaded yet: on a fresh machine, `cargo run -p bosun` downloads only what
/// `bosun` needs before this script runs. envoy-types is among those (it is a dependency of this
/// crate), so then its version is taken from the lock file (`cargo pkgid`) and its sources from the
/// registry's unpacked copies.
fn envoy_types_dir() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"))
        .join("Cargo.toml");
    let target = std::env::var("TARGET").expect("TARGET");
    let metadata = std::process::Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &target])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    if metadata.status.success() {
        let metadata: serde_json::Value =
            serde_json::from_slice(&metadata.stdout).expect("cargo metadata JSON");
        let manifest_path = metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "envoy-types")
            .and_then(|p| p["manifest_path"].as_str())
            .expect("envoy-types in cargo metadata");
        return Path::new(manifest_path)
            .parent()
            .expect("manifest dir")
            .to_path_buf();
    }
    registry_copy(&cargo, &manifest).unwrap_or_else(|why| {
        panic!(
            "envoy-types not found: cargo metadata failed ({}) and {why}",
            String::from_utf8_lossy(&metadata.stderr).trim()
        )
    })
}

/// envoy-types' unpacked sources in Cargo's registry cache, at the version the lock file names.
fn registry_copy(cargo: &std::ffi::OsStr, manifest: &Path) -> Result<PathBuf, String> {
    let pkgid = std::process::Command::new(cargo)
        .args(["pkgid", "--offline", "envoy-types", "--manifest-path"])
        .arg(manifest)
        .output()
        .map_err(|e| format!("cargo pkgid could not run: {e}"))?;
    let pkgid = String::from_utf8_lossy(&pkgid.stdout);
    // registry+https://github.com/rust-lang/crates.io-index#envoy-types@0.7.7
    let version = pkgid
        .trim()
        .rsplit_once('@')
        .map(|(_, v)| v.to_owned())
        .ok_or_else(|| format!("cargo pkgid envoy-types gave {:?}", pkgid.trim()))?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let sources = cargo_home.join("registry/src");
    let registries = std::fs::read_dir(&sources)
        .map_err(|e| format!("{} unreadable: {e}", sources.display()))?;
    registries
        .flatten()
        .map(|registry| registry.path().join(format!("envoy-types-{version}")))
        .find(|dir| dir.join("Cargo.toml").is_file())
        .ok_or_else(|| format!("no envoy-types-{version} under {}", sources.display()))
}

fn compile_fallback(proto: &Path) -> Vec<Vec<u8>> {
    let includes: Vec<PathBuf> = INCLUDES.iter().map(|d| proto.join(d)).collect();
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for root in FALLBACK_ROOTS {
        let mut compiler = protox::Compiler::new(&includes).expect("protox includes");
        compiler.include_imports(true);
        compiler
            .open_file(root)
            .unwrap_or_else(|e| panic!("compile {root}: {e}"));
        for file in compiler.descriptor_pool().files() {
            if seen.insert(file.name().to_owned()) {
                files.push(file.encode_to_vec());
            }
        }
    }
    files
}

/// Compiles the `TypedStruct` definitions (importing `google/protobuf/struct.proto` from the set) and
/// appends them, unless the set has them already.
fn add_typed_structs(files: &mut Vec<Vec<u8>>) {
    let set = FileDescriptorSet {
        file: files
            .iter()
            .map(|f| FileDescriptorProto::decode(&f[..]).expect("FileDescriptorProto"))
            .collect(),
    };
    let have: HashSet<String> = set.file.iter().map(|f| f.name().to_owned()).collect();
    let missing: Vec<&(&str, &str)> = TYPED_STRUCTS
        .iter()
        .filter(|(name, _)| !have.contains(*name))
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut resolver = ChainFileResolver::new();
    resolver.add(Inline(TYPED_STRUCTS));
    resolver.add(DescriptorSetFileResolver::new(set));
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    for (name, _) in &missing {
        compiler
            .open_file(name)
            .unwrap_or_else(|e| panic!("compile {name}: {e}"));
    }
    let pool = compiler.descriptor_pool();
    for (name, _) in &missing {
        let file = pool.get_file_by_name(name).expect("compiled file");
        files.push(file.encode_to_vec());
    }
}

// === protobuf wire format, just enough to split a set and drop a field (reading: `src/wire.rs`) ===

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len_field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The message without field `number` (for FileDescriptorProto, 9 is `source_code_info`).
fn strip_field(buf: &[u8], number: u64) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(buf.len());
    for (n, whole, _) in fields(buf)? {
        if n != number {
            out.extend_from_slice(whole);
        }
    }
    Some(out)
}

struct Inline(&'static [(&'static str, &'static str)]);

impl FileResolver for Inline {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.iter().find(|(n, _)| *n == name) {
            Some((n, source)) => File::from_source(n, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}
