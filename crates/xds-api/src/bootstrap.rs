//! Reading an Envoy bootstrap, as `envoy -c FILE` does.
//!
//! The file is YAML or JSON in protobuf's JSON mapping of `envoy.config.bootstrap.v3.Bootstrap`: field
//! names in snake_case or lowerCamelCase, `google.protobuf.Any` as an object with `"@type"`, durations
//! as `"0.25s"`, wrappers as bare values, enums by name. Like Envoy, an unknown field is an error. YAML
//! scalars are typed as `kubectl` types them (see `kube_yaml`). Errors carry the file, line and
//! column of the offending key or value and the field path to it:
//!
//! ```text
//! bootstrap.yaml:23:21: unknown field `clustr` in envoy.config.route.v3.RouteAction; did you mean `cluster`? (at static_resources.listeners[0]....route.clustr)
//! ```
//!
//! The protoc-gen-validate rules in Envoy's protos are checked too, everywhere including inside `Any`
//! (required fields and oneofs, number ranges, string and list lengths, enum values, duration bounds);
//! not their string `pattern`/`well_known` formats. Not checked (Envoy does, when it builds its runtime
//! config): which extension types fit which extension point, and cross-references (a route's cluster
//! exists, certificate files exist).
//!
//! Stricter than Envoy on purpose: a YAML key repeated in one mapping, a field given under both its
//! names (`connect_timeout` and `connectTimeout`), and a second YAML document are errors (Envoy keeps
//! the last value, or the first document).

use std::fmt;
use std::path::{Path, PathBuf};

use kube_yaml::parse_stream;
use prost::Message;

pub use crate::pb::envoy::config::bootstrap::v3::Bootstrap;
use crate::{decode, descriptor};

/// Why a bootstrap could not be read. `line` and `column` are 1-based; both are 0 when the error has
/// no position (the file could not be read). `field` is the path of the offending field, such as
/// `static_resources.clusters[0].connect_timeout`, empty when the error is not about one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapError {
    pub file: Option<PathBuf>,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for BootstrapError {
    /// `FILE:LINE:COL: MESSAGE (at FIELD.PATH)`; the file, position and field parts are left out when
    /// unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}:", file.display())?;
        }
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.column)?;
        }
        if self.file.is_some() || self.line > 0 {
            f.write_str(" ")?;
        }
        f.write_str(&self.message)?;
        if !self.field.is_empty() {
            write!(f, " (at {})", self.field)?;
        }
        Ok(())
    }
}

impl std::error::Error for BootstrapError {}

impl BootstrapError {
    fn new(file: Option<&Path>, line: usize, column: usize, message: impl Into<String>) -> Self {
        BootstrapError {
            file: file.map(Path::to_path_buf),
            line,
            column,
            field: String::new(),
            message: message.into(),
        }
    }
}

/// Reads a bootstrap from YAML or JSON text. `file` only names the source in errors.
pub fn from_yaml(source: &str, file: Option<&Path>) -> Result<Bootstrap, BootstrapError> {
    message_from_yaml(source, file)
}

/// Reads a bootstrap file: `.pb` is binary protobuf, anything else YAML or JSON (`.pb_text`, protobuf
/// text format, is not supported).
pub fn from_file(path: &Path) -> Result<Bootstrap, BootstrapError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "pb" => {
            let bytes = std::fs::read(path)
                .map_err(|e| BootstrapError::new(Some(path), 0, 0, format!("cannot read: {e}")))?;
            Bootstrap::decode(&bytes[..]).map_err(|e| {
                BootstrapError::new(Some(path), 0, 0, format!("invalid binary Bootstrap: {e}"))
            })
        }
        "pb_text" => Err(BootstrapError::new(
            Some(path),
            0,
            0,
            "protobuf text format (.pb_text) is not supported; use YAML or JSON",
        )),
        _ => {
            let source = std::fs::read_to_string(path)
                .map_err(|e| BootstrapError::new(Some(path), 0, 0, format!("cannot read: {e}")))?;
            from_yaml(&source, Some(path))
        }
    }
}

/// Reads any Envoy API message from YAML or JSON text (a Listener, a Cluster, …) with the same rules
/// and errors as a bootstrap.
pub fn message_from_yaml<M>(source: &str, file: Option<&Path>) -> Result<M, BootstrapError>
where
    M: Message + prost::Name + Default,
{
    let (docs, err) = parse_stream(source);
    if let Some(err) = err {
        return Err(BootstrapError::new(
            file,
            err.pos.line,
            err.pos.column,
            err.message,
        ));
    }
    let mut docs = docs.into_iter();
    let Some(doc) = docs.next() else {
        return Err(BootstrapError::new(
            file,
            1,
            1,
            "empty configuration: no YAML or JSON document",
        ));
    };
    if let Some(extra) = docs.next() {
        return Err(BootstrapError::new(
            file,
            extra.pos.line,
            extra.pos.column,
            format!(
                "a second YAML document; the configuration must be one {} document",
                M::full_name()
            ),
        ));
    }
    let name = M::full_name();
    let decode_with = |pool: &prost_reflect::DescriptorPool| {
        let desc = pool.get_message_by_name(&name).ok_or_else(|| {
            BootstrapError::new(file, 0, 0, format!("no descriptor for message {name}"))
        })?;
        decode::message(&desc, &doc).map_err(|e| BootstrapError {
            file: file.map(Path::to_path_buf),
            line: e.pos.line,
            column: e.pos.column,
            field: e.path,
            message: e.message,
        })
    };
    // Only the files the message and the `@type`s in the text need, when that is enough: decoding
    // Envoy's whole API is most of a proxy's start-up. Anything that fails is decoded again with the
    // whole API, so errors (and their suggestions) are those of the whole API.
    let mut wanted = vec![name.clone()];
    wanted.extend(any_type_names(source));
    let message = match descriptor::pool_for(&wanted) {
        Some(subset) => decode_with(&subset).or_else(|_| decode_with(&descriptor::pool()))?,
        None => decode_with(&descriptor::pool())?,
    };
    M::decode(&message.encode_to_vec()[..]).map_err(|e| {
        BootstrapError::new(
            file,
            doc.pos.line,
            doc.pos.column,
            format!("internal error: the decoded {name} does not convert to envoy-types: {e}"),
        )
    })
}

/// The message names of the `type.googleapis.com/…` type URLs in a configuration's text.
fn any_type_names(source: &str) -> Vec<String> {
    const PREFIX: &str = "type.googleapis.com/";
    let mut names: Vec<String> = source
        .match_indices(PREFIX)
        .map(|(at, _)| {
            source[at + PREFIX.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}
