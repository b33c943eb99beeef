//! From YAML documents to typed Istio resources: the Kubernetes envelope (`apiVersion`, `kind`,
//! `metadata`), `List` unwrapping, and the spec of each kind.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::de::{DeError, from_node, unknown_field_message};
use crate::diag::{Finding, Severity, code, did_you_mean};
use crate::path::FieldPath;
use crate::registry::Registry;
use crate::types::{
    destination_rule::DestinationRuleSpec, gateway::GatewaySpec, security::AuthorizationPolicySpec,
    security::PeerAuthenticationSpec, security::RequestAuthenticationSpec,
    service_entry::ServiceEntrySpec, sidecar::SidecarSpec, virtual_service::VirtualServiceSpec,
    workload_entry::WorkloadEntrySpec, workload_group::WorkloadGroupSpec,
};
use crate::yaml::{Node, Pos, Value, parse_stream};

pub const NETWORKING_GROUP: &str = "networking.istio.io";
pub const SECURITY_GROUP: &str = "security.istio.io";
const NETWORKING_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SECURITY_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// Istio kinds that Bosun reads but does not validate (they are skipped, never reported as errors).
const OTHER_ISTIO_KINDS: &[&str] = &[
    "EnvoyFilter",
    "ProxyConfig",
    "Telemetry",
    "WasmPlugin",
    "TrafficExtension",
];

/// The kinds Bosun understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    VirtualService,
    DestinationRule,
    Gateway,
    ServiceEntry,
    Sidecar,
    WorkloadEntry,
    WorkloadGroup,
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::Gateway,
        Kind::ServiceEntry,
        Kind::Sidecar,
        Kind::WorkloadEntry,
        Kind::WorkloadGroup,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Gateway => "Gateway",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::Sidecar => "Sidecar",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::WorkloadGroup => "WorkloadGroup",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Kind::PeerAuthentication | Kind::AuthorizationPolicy | Kind::RequestAuthentication => {
                SECURITY_GROUP
            }
            _ => NETWORKING_GROUP,
        }
    }

    pub fn versions(self) -> &'static [&'static str] {
        if self.group() == SECURITY_GROUP {
            SECURITY_VERSIONS
        } else {
            NETWORKING_VERSIONS
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the CRD marks `spec` as required.
    fn spec_required(self) -> bool {
        matches!(
            self,
            Kind::ServiceEntry | Kind::WorkloadEntry | Kind::WorkloadGroup
        )
    }

    /// Spec fields that identify a kind, to suggest the `kind:` a document forgot.
    fn telltale_fields(self) -> &'static [&'static str] {
        match self {
            Kind::VirtualService => &["http", "tcp", "tls", "gateways"],
            Kind::DestinationRule => &["host", "subsets", "trafficPolicy"],
            Kind::Gateway => &["servers", "selector"],
            Kind::ServiceEntry => &["resolution", "location", "ports", "addresses", "endpoints"],
            Kind::Sidecar => &["egress", "ingress", "outboundTrafficPolicy"],
            Kind::WorkloadEntry => &["address", "network", "locality", "serviceAccount"],
            Kind::WorkloadGroup => &["template", "probe"],
            Kind::PeerAuthentication => &["mtls", "portLevelMtls"],
            Kind::AuthorizationPolicy => &["rules", "action", "provider"],
            Kind::RequestAuthentication => &["jwtRules"],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Kubernetes object metadata. Fields the API server sets are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    generate_name: Option<IgnoredAny>,
    uid: Option<IgnoredAny>,
    resource_version: Option<IgnoredAny>,
    generation: Option<IgnoredAny>,
    creation_timestamp: Option<IgnoredAny>,
    deletion_timestamp: Option<IgnoredAny>,
    deletion_grace_period_seconds: Option<IgnoredAny>,
    owner_references: Option<IgnoredAny>,
    finalizers: Option<IgnoredAny>,
    managed_fields: Option<IgnoredAny>,
    self_link: Option<IgnoredAny>,
}

/// The spec of a resource, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    VirtualService(VirtualServiceSpec),
    /// Behind a pointer, as WorkloadGroup: its traffic policies make it many times larger than the
    /// others. Shared: the control plane's index of every push holds the same spec, not a copy.
    DestinationRule(std::sync::Arc<DestinationRuleSpec>),
    Gateway(GatewaySpec),
    ServiceEntry(ServiceEntrySpec),
    Sidecar(SidecarSpec),
    WorkloadEntry(WorkloadEntrySpec),
    WorkloadGroup(Box<WorkloadGroupSpec>),
    PeerAuthentication(PeerAuthenticationSpec),
    AuthorizationPolicy(AuthorizationPolicySpec),
    RequestAuthentication(RequestAuthenticationSpec),
}

/// One Istio resource with the YAML it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub kind: Kind,
    pub api_version: String,
    pub name: String,
    /// `metadata.namespace`, or `default`.
    pub namespace: String,
    pub meta: ObjectMeta,
    pub spec: Spec,
    /// The document (or `List` item) as parsed: validation resolves field paths against it.
    pub node: Node,
    /// The file it was read from, if any.
    pub file: Option<Arc<Path>>,
}

impl Resource {
    /// `Kind ns/name`, how findings and logs name a resource.
    pub fn key(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What reading one source produced.
#[derive(Debug, Default)]
pub struct Loaded {
    pub resources: Vec<Resource>,
    /// Errors found while reading: YAML syntax, the envelope, unknown fields, wrong types.
    pub findings: Vec<Finding>,
    /// Documents that are not Istio networking/security kinds (Deployments, Services, EnvoyFilters…).
    pub skipped: usize,
    /// What the Kubernetes Services and workloads among those documents tell about the mesh.
    pub kubernetes: Registry,
    /// The TLS credentials among those documents (`v1` `Secret`s), for Gateways' `credentialName`.
    pub secrets: Vec<crate::secret::CredentialSecret>,
}

/// Reads every document of a YAML or JSON stream.
pub fn load_str(source: &str, file: Option<Arc<Path>>) -> Loaded {
    let (docs, yaml_error) = parse_stream(source);
    let mut loaded = load_nodes(docs, file);
    if let Some(err) = yaml_error {
        loaded.findings.push(Finding {
            severity: Severity::Error,
            code: code::SCHEMA_VALIDATION_ERROR,
            message: err.message,
            field: String::new(),
            pos: err.pos,
        });
    }
    loaded
}

/// Reads already-parsed documents.
pub fn load_nodes(docs: Vec<Node>, file: Option<Arc<Path>>) -> Loaded {
    let mut loaded = Loaded::default();
    for doc in docs {
        load_document(doc, file.as_ref(), &mut loaded);
    }
    loaded
}

/// Why a file could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

pub fn load_file(path: &Path) -> Result<Loaded, ReadError> {
    let source = std::fs::read_to_string(path).map_err(|source| ReadError {
        path: path.to_owned(),
        source,
    })?;
    Ok(load_str(&source, Some(Arc::from(path))))
}

fn error_at(loaded: &mut Loaded, doc: &Node, path: &FieldPath<'_>, message: String) {
    loaded.findings.push(Finding {
        severity: Severity::Error,
        code: code::SCHEMA_VALIDATION_ERROR,
        message,
        field: path.to_string(),
        pos: path.locate(doc),
    });
}

fn load_document(doc: Node, file: Option<&Arc<Path>>, loaded: &mut Loaded) {
    let root = FieldPath::ROOT;
    if !matches!(doc.value, Value::Map(_)) {
        let message = format!(
            "a Kubernetes object must be a mapping with apiVersion, kind and metadata, found {}",
            doc.value.type_name()
        );
        error_at(loaded, &doc, &root, message);
        return;
    }
    let api_version = doc
        .get("apiVersion")
        .and_then(Node::as_str)
        .map(str::to_owned);
    let kind_name = doc.get("kind").and_then(Node::as_str).map(str::to_owned);

    if kind_name.as_deref() == Some("List") {
        if let Some(Value::Seq(items)) = doc.get("items").map(|n| n.value.clone()) {
            for item in items {
                load_document(item, file, loaded);
            }
        }
        return;
    }

    let Some(kind_name) = kind_name else {
        let message = missing_kind_message(&doc);
        error_at(loaded, &doc, &root.key("kind"), message);
        return;
    };
    let group = api_version
        .as_deref()
        .and_then(|v| v.split_once('/'))
        .map(|(g, _)| g);
    let is_istio_group = group.is_some_and(|g| g.ends_with(".istio.io"));
    let Some(kind) = Kind::from_name(&kind_name) else {
        if is_istio_group && !OTHER_ISTIO_KINDS.contains(&kind_name.as_str()) {
            let names = Kind::ALL.map(Kind::name);
            let message = format!(
                "unknown kind \"{kind_name}\" in {}{}",
                api_version.as_deref().unwrap_or_default(),
                did_you_mean(&kind_name, names)
            );
            error_at(loaded, &doc, &root.key("kind"), message);
        } else if kind_name == "Secret" && api_version.as_deref() == Some("v1") {
            match crate::secret::from_document(&doc) {
                Ok(secret) => loaded.secrets.push(secret),
                Err(finding) => loaded.findings.push(finding),
            }
            loaded.skipped += 1;
        } else {
            if !is_istio_group {
                loaded.kubernetes.learn_kubernetes_object(&kind_name, &doc);
            }
            loaded.skipped += 1;
        }
        return;
    };
    if group.is_some_and(|g| !g.ends_with(".istio.io")) {
        // Another API's kind of the same name (e.g. the Gateway API's `Gateway`).
        loaded.skipped += 1;
        return;
    }
    let Some(api_version) = api_version else {
        let message = format!(
            "missing apiVersion (add \"apiVersion: {}/{}\")",
            kind.group(),
            kind.versions()[0]
        );
        error_at(loaded, &doc, &root.key("apiVersion"), message);
        return;
    };
    let supported = kind.versions().iter().any(|v| {
        api_version
            .strip_prefix(kind.group())
            .and_then(|rest| rest.strip_prefix('/'))
            == Some(v)
    });
    if !supported {
        let message = format!(
            "no kind \"{kind}\" in version \"{api_version}\"; use one of: {}",
            kind.versions()
                .iter()
                .map(|v| format!("{}/{v}", kind.group()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        error_at(loaded, &doc, &root.key("apiVersion"), message);
        return;
    }

    let findings = RefCell::new(Vec::new());
    let mut errors = Vec::new();
    check_top_level_fields(&doc, &findings);

    let meta_path = root.key("metadata");
    let meta_pos = doc.entry("metadata").map_or(doc.pos, |e| e.key_pos);
    let meta = match doc.get("metadata") {
        Some(node) => from_node::<ObjectMeta>(node, &meta_path, meta_pos, &findings)
            .map_err(|e| errors.push(e))
            .unwrap_or_default(),
        None => ObjectMeta::default(),
    };
    let name = meta.name.clone().unwrap_or_default();
    if name.is_empty() {
        errors.push(DeError {
            message: "missing metadata.name: every resource needs a name".to_owned(),
            field: Some("metadata.name".to_owned()),
            pos: Some(meta_path.key("name").locate(&doc)),
        });
    }

    let spec_path = root.key("spec");
    let spec = match doc.entry("spec") {
        Some(entry) => read_spec(kind, &entry.value, &spec_path, entry.key_pos, &findings),
        None if kind.spec_required() => Err(DeError {
            message: format!("missing spec: a {kind} needs one"),
            field: Some("spec".to_owned()),
            pos: Some(doc.pos),
        }),
        None => read_spec(
            kind,
            &Node {
                value: Value::Null,
                pos: doc.pos,
            },
            &spec_path,
            doc.pos,
            &findings,
        ),
    };

    let mut findings = findings.into_inner();
    let spec = spec.map_err(|e| errors.push(e)).ok();
    findings.extend(errors.into_iter().map(|e| Finding {
        severity: Severity::Error,
        code: code::SCHEMA_VALIDATION_ERROR,
        message: e.message,
        field: e.field.unwrap_or_default(),
        pos: e.pos.unwrap_or(doc.pos),
    }));
    let failed = !findings.is_empty();
    loaded.findings.extend(findings);
    // A resource with structural errors is not handed on: validation would only repeat them.
    if let (Some(spec), false) = (spec, failed) {
        loaded.resources.push(Resource {
            kind,
            api_version,
            name,
            namespace: meta
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_owned()),
            meta,
            spec,
            node: doc,
            file: file.cloned(),
        });
    }
}

const TOP_LEVEL_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

fn check_top_level_fields(doc: &Node, findings: &RefCell<Vec<Finding>>) {
    if let Value::Map(entries) = &doc.value {
        for e in entries {
            if !TOP_LEVEL_FIELDS.contains(&e.key.as_str()) {
                findings.borrow_mut().push(Finding {
                    severity: Severity::Error,
                    code: code::SCHEMA_VALIDATION_ERROR,
                    message: unknown_field_message(&e.key, TOP_LEVEL_FIELDS),
                    field: FieldPath::ROOT.key(&e.key).to_string(),
                    pos: e.key_pos,
                });
            }
        }
    }
}

fn read_spec(
    kind: Kind,
    node: &Node,
    path: &FieldPath<'_>,
    key_pos: Pos,
    findings: &RefCell<Vec<Finding>>,
) -> Result<Spec, DeError> {
    Ok(match kind {
        Kind::VirtualService => Spec::VirtualService(from_node(node, path, key_pos, findings)?),
        Kind::DestinationRule => Spec::DestinationRule(std::sync::Arc::new(from_node(
            node, path, key_pos, findings,
        )?)),
        Kind::Gateway => Spec::Gateway(from_node(node, path, key_pos, findings)?),
        Kind::ServiceEntry => Spec::ServiceEntry(from_node(node, path, key_pos, findings)?),
        Kind::Sidecar => Spec::Sidecar(from_node(node, path, key_pos, findings)?),
        Kind::WorkloadEntry => Spec::WorkloadEntry(from_node(node, path, key_pos, findings)?),
        Kind::WorkloadGroup => {
            Spec::WorkloadGroup(Box::new(from_node(node, path, key_pos, findings)?))
        }
        Kind::PeerAuthentication => {
            Spec::PeerAuthentication(from_node(node, path, key_pos, findings)?)
        }
        Kind::AuthorizationPolicy => {
            Spec::AuthorizationPolicy(from_node(node, path, key_pos, findings)?)
        }
        Kind::RequestAuthentication => {
            Spec::RequestAuthentication(from_node(node, path, key_pos, findings)?)
        }
    })
}

/// `missing "kind"`, with the kind the spec's fields suggest.
fn missing_kind_message(doc: &Node) -> String {
    let spec_keys: Vec<&str> = match doc.get("spec").map(|n| &n.value) {
        Some(Value::Map(entries)) => entries.iter().map(|e| e.key.as_str()).collect(),
        _ => Vec::new(),
    };
    let mut scored: Vec<(usize, Kind)> = Kind::ALL
        .into_iter()
        .map(|k| {
            let score = spec_keys
                .iter()
                .filter(|key| k.telltale_fields().contains(key))
                .count();
            (score, k)
        })
        .filter(|(score, _)| *score > 0)
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    match scored.as_slice() {
        [(best, kind), rest @ ..] if rest.first().is_none_or(|(s, _)| s < best) => format!(
            "missing \"kind\": this looks like a {kind} (add \"kind: {kind}\" and \"apiVersion: {}/{}\")",
            kind.group(),
            kind.versions()[0]
        ),
        _ => "missing \"kind\": every document needs apiVersion and kind".to_owned(),
    }
}
