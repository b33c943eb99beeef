//! `/config_dump`'s query parameters, as Envoy reads them, applied to the rendered dump:
//! - `resource=FIELD`: the entries of that repeated field of the dump's configs (`static_clusters`,
//!   `dynamic_listeners`, …), each with the `@type` of its own message;
//! - `name_regex=RE`: only the entries whose name matches RE as a whole;
//! - `mask=PATH,PATH`: a FieldMask, applied to each entry (with `resource`) or to each config
//!   (without, keeping the configs it fits); it may go into an `Any`, not through a list.
//!
//! The answers Envoy gives when they do not fit are kept: a field that is in no config is 404, one
//! that is not repeated is 400, as is a mask that fits no config or a bad regex; no entry is `{}`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use xds_api::prost_reflect::{DescriptorPool, Kind, MessageDescriptor};

const TYPE_URL_PREFIX: &str = "type.googleapis.com/";
const ANY: &str = "google.protobuf.Any";

/// What the query asks for.
#[derive(Debug, Default, Clone, Copy)]
pub struct DumpQuery<'a> {
    pub resource: Option<&'a str>,
    pub mask: Option<&'a str>,
    pub name_regex: Option<&'a str>,
}

impl DumpQuery<'_> {
    pub fn is_empty(&self) -> bool {
        self.resource.is_none() && self.mask.is_none() && self.name_regex.is_none()
    }
}

/// Why the query gets no dump, as Envoy answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} not found in config dump")]
    NotFound(String),
    #[error("{0} is not a repeated field. Use ?mask={0} to get only this field")]
    NotRepeated(String),
    #[error("Error while parsing name_regex from {regex}: {reason}")]
    BadRegex { regex: String, reason: String },
    #[error("FieldMask paths: {0:?} could not be successfully used.")]
    BadMask(String),
    #[error("FieldMask {0} could not be successfully applied to any configs.")]
    MaskFitsNothing(String),
}

impl Refusal {
    /// The HTTP status Envoy answers it with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Refusal::NotFound(_) => http::StatusCode::NOT_FOUND,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// The dump (`{"configs": [...]}`) as `query` asks for it.
pub fn apply(dump: Value, query: &DumpQuery, pool: &DescriptorPool) -> Result<Value, Refusal> {
    let names = query
        .name_regex
        .map(|re| {
            regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| Refusal::BadRegex {
                regex: re.to_owned(),
                reason: e.to_string(),
            })
        })
        .transpose()?;
    let mask = query.mask.map(Mask::parse);
    let configs = match dump {
        Value::Object(mut top) => match top.remove("configs") {
            Some(Value::Array(configs)) => configs,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let named = |entry: &Value| {
        names
            .as_ref()
            .is_none_or(|re| entry_name(entry).is_none_or(|n| re.is_match(n)))
    };
    let out = match query.resource {
        Some(field) => entries(configs, field, pool, &named, mask.as_ref())?,
        None => {
            let mut kept = Vec::new();
            for mut config in configs {
                let Some(desc) = type_of(&config, pool) else {
                    continue;
                };
                if names.is_some() {
                    keep_named(&mut config, &desc, &named);
                }
                match &mask {
                    None => kept.push(config),
                    Some(m) => {
                        if let Ok(trimmed) = m.trim(&config, &desc, pool) {
                            kept.push(trimmed);
                        }
                    }
                }
            }
            if kept.is_empty()
                && let Some(m) = query.mask
            {
                return Err(Refusal::MaskFitsNothing(m.to_owned()));
            }
            kept
        }
    };
    Ok(if out.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::json!({ "configs": out })
    })
}

/// The entries of repeated field `field` across `configs`, each typed, named and masked.
fn entries(
    configs: Vec<Value>,
    field: &str,
    pool: &DescriptorPool,
    named: &dyn Fn(&Value) -> bool,
    mask: Option<&Mask>,
) -> Result<Vec<Value>, Refusal> {
    let mut found = false;
    let mut out = Vec::new();
    for mut config in configs {
        let Some(desc) = type_of(&config, pool) else {
            continue;
        };
        let Some(f) = desc.get_field_by_name(field) else {
            continue;
        };
        if !f.is_list() {
            return Err(Refusal::NotRepeated(field.to_owned()));
        }
        found = true;
        let Kind::Message(entry_desc) = f.kind() else {
            continue;
        };
        let Some(Value::Array(items)) = config.get_mut(field).map(Value::take) else {
            continue;
        };
        for item in items.into_iter().filter(|i| named(i)) {
            let mut typed = Map::new();
            typed.insert(
                "@type".to_owned(),
                Value::String(format!("{TYPE_URL_PREFIX}{}", entry_desc.full_name())),
            );
            if let Value::Object(fields) = item {
                typed.extend(fields);
            }
            let typed = Value::Object(typed);
            out.push(match mask {
                None => typed,
                Some(m) => m
                    .trim(&typed, &entry_desc, pool)
                    .map_err(|()| Refusal::BadMask(m.text.clone()))?,
            });
        }
    }
    if !found {
        return Err(Refusal::NotFound(field.to_owned()));
    }
    Ok(out)
}

/// Keeps, in every repeated message field of `config`, the entries `named` accepts.
fn keep_named(config: &mut Value, desc: &MessageDescriptor, named: &dyn Fn(&Value) -> bool) {
    for f in desc.fields().filter(|f| f.is_list()) {
        if let Some(Value::Array(items)) = config.get_mut(f.name()) {
            items.retain(|i| named(i));
        }
    }
}

/// The name Envoy filters an entry by: its resource's name (a cluster's, a listener's, a route
/// table's, a secret's) or an endpoint assignment's cluster name. `None`: nothing named.
fn entry_name(entry: &Value) -> Option<&str> {
    const PATHS: &[&[&str]] = &[
        &["name"],
        &["cluster", "name"],
        &["listener", "name"],
        &["route_config", "name"],
        &["endpoint_config", "cluster_name"],
        &["secret", "name"],
    ];
    PATHS.iter().find_map(|path| {
        path.iter()
            .try_fold(entry, |v, key| v.get(key))
            .and_then(Value::as_str)
    })
}

/// The message an object of the dump is, by its `@type`.
fn type_of(v: &Value, pool: &DescriptorPool) -> Option<MessageDescriptor> {
    let url = v.get("@type")?.as_str()?;
    pool.get_message_by_name(url.strip_prefix(TYPE_URL_PREFIX).unwrap_or(url))
}

/// A FieldMask's paths as a tree: a leaf keeps the whole field.
#[derive(Debug, Default)]
struct Mask {
    text: String,
    tree: BTreeMap<String, Mask>,
}

impl Mask {
    fn parse(text: &str) -> Mask {
        let mut root = Mask {
            text: text.to_owned(),
            tree: BTreeMap::new(),
        };
        for path in text.split(',').filter(|p| !p.is_empty()) {
            let mut node = &mut root;
            for part in path.split('.') {
                node = node.tree.entry(part.to_owned()).or_default();
            }
        }
        root
    }

    /// `value` (a message `desc`) with only the fields the mask names (and its `@type`); `Err`
    /// when a path names no field, or goes through a list, a map or a scalar.
    fn trim(
        &self,
        value: &Value,
        desc: &MessageDescriptor,
        pool: &DescriptorPool,
    ) -> Result<Value, ()> {
        let mut out = Map::new();
        if let Some(t) = value.get("@type") {
            out.insert("@type".to_owned(), t.clone());
        }
        for (name, sub) in &self.tree {
            let field = desc.get_field_by_name(name).ok_or(())?;
            let present = value.get(name.as_str());
            if sub.tree.is_empty() {
                if let Some(v) = present {
                    out.insert(name.clone(), v.clone());
                }
                continue;
            }
            let Kind::Message(inner) = field.kind() else {
                return Err(());
            };
            if field.is_list() || field.is_map() {
                return Err(());
            }
            // An `Any` is looked into as the message it holds.
            let inner = if inner.full_name() == ANY {
                match present.and_then(|v| type_of(v, pool)) {
                    Some(held) => held,
                    None => continue,
                }
            } else {
                inner
            };
            match present {
                Some(v) => {
                    out.insert(name.clone(), sub.trim(v, &inner, pool)?);
                }
                // Not set: nothing to keep, but the path must still name fields.
                None => {
                    sub.trim(&Value::Object(Map::new()), &inner, pool)?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dump() -> Value {
        json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
             "bootstrap": {"node": {"id": "n"}}},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
             "static_clusters": [
                {"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                             "name": "echo", "type": "STATIC", "connect_timeout": "1s"},
                 "last_updated": "2026-12-02T08:52:17.799Z"},
                {"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                             "name": "other", "type": "STATIC"}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
             "static_listeners": [
                {"listener": {"@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                              "name": "sniffing", "filter_chains": [{"name": "a"}]}}]}
        ]})
    }

    fn run(
        resource: Option<&str>,
        mask: Option<&str>,
        name_regex: Option<&str>,
    ) -> Result<Value, Refusal> {
        let q = DumpQuery {
            resource,
            mask,
            name_regex,
        };
        apply(dump(), &q, &xds_api::descriptor::pool())
    }

    #[test]
    fn a_resource_is_its_entries_each_typed() {
        let out = run(Some("static_clusters"), None, None).unwrap();
        let configs = out["configs"].as_array().unwrap();
        assert_eq!(configs.len(), 2);
        assert_eq!(
            configs[0]["@type"],
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster"
        );
        assert_eq!(configs[0]["cluster"]["name"], "echo");
        // Named as a whole, not in part.
        let out = run(Some("static_clusters"), None, Some("ech.*")).unwrap();
        assert_eq!(out["configs"].as_array().unwrap().len(), 1);
        assert_eq!(
            run(Some("static_clusters"), None, Some("cho")).unwrap(),
            json!({})
        );
        // A field of the dump with no entries.
        assert_eq!(
            run(Some("dynamic_active_clusters"), None, None).unwrap(),
            json!({})
        );
    }

    #[test]
    fn a_mask_keeps_what_it_names_and_looks_into_any() {
        let out = run(
            Some("static_clusters"),
            Some("cluster.name,cluster.type"),
            None,
        )
        .unwrap();
        assert_eq!(
            out["configs"][0],
            json!({"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster",
                   "cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                               "name": "echo", "type": "STATIC"}})
        );
        // Without a resource: the configs it fits, the others left out.
        let out = run(None, Some("static_listeners"), None).unwrap();
        let configs = out["configs"].as_array().unwrap();
        assert_eq!(configs.len(), 1);
        assert_eq!(
            configs[0]["static_listeners"][0]["listener"]["name"],
            "sniffing"
        );
    }

    #[test]
    fn what_does_not_fit_is_refused_as_envoy_refuses_it() {
        assert_eq!(
            run(Some("nope"), None, None).unwrap_err(),
            Refusal::NotFound("nope".to_owned())
        );
        let e = run(Some("version_info"), None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "version_info is not a repeated field. Use ?mask=version_info to get only this field"
        );
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        assert!(matches!(
            run(Some("static_clusters"), None, Some("(")),
            Err(Refusal::BadRegex { .. })
        ));
        // Through a list, or a field that is not there.
        for mask in ["listener.filter_chains.name", "listener.nope"] {
            assert_eq!(
                run(Some("static_listeners"), Some(mask), None).unwrap_err(),
                Refusal::BadMask(mask.to_owned())
            );
        }
        // The words answered, as Envoy's.
        assert_eq!(
            Refusal::NotFound("nope".to_owned()).to_string(),
            "nope not found in config dump"
        );
        assert_eq!(
            Refusal::BadMask("listener.nope".to_owned()).to_string(),
            "FieldMask paths: \"listener.nope\" could not be successfully used."
        );
        assert_eq!(
            Refusal::MaskFitsNothing("a,b".to_owned()).to_string(),
            "FieldMask a,b could not be successfully applied to any configs."
        );
        // A mask no config has every path of.
        assert_eq!(
            run(None, Some("static_clusters,static_listeners"), None).unwrap_err(),
            Refusal::MaskFitsNothing("static_clusters,static_listeners".to_owned())
        );
    }
}
