//! The `protoc-gen-validate` rules in Envoy's protos (`[(validate.rules).string = {min_len: 1}]` and so
//! on), which Envoy checks when it loads a config: required fields and oneofs, number ranges, string
//! and list lengths, defined enum values, duration bounds.
//!
//! Checked: `message.required`, `(validate.required)` oneofs, `(validate.disabled)`/`ignored` messages,
//! `message.skip`, numeric `const`/`lt`/`lte`/`gt`/`gte`/`in`/`not_in` (also through wrappers),
//! `ignore_empty`, string `const`/`len`/`min_len`/`max_len`/`*_bytes`/`prefix`/`suffix`/`contains`/
//! `not_contains`/`in`/`not_in`, bytes lengths, enum `const`/`defined_only`/`in`/`not_in`, duration
//! `required`/`const`/bounds, `any.required`/`in`/`not_in`, repeated `min_items`/`max_items`/`unique`/
//! `items`, map `min_pairs`/`max_pairs`/`keys`/`values`.
//! Not checked: string `pattern` and `well_known` formats (hostname, header name, …), timestamps.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MapKey,
    MessageDescriptor, ReflectMessage, Value,
};

struct Extensions {
    field_rules: ExtensionDescriptor,
    oneof_required: ExtensionDescriptor,
    message_disabled: ExtensionDescriptor,
    message_ignored: ExtensionDescriptor,
}

fn extensions(p: &DescriptorPool) -> Option<Extensions> {
    Some(Extensions {
        field_rules: p.get_extension_by_name("validate.rules")?,
        oneof_required: p.get_extension_by_name("validate.required")?,
        message_disabled: p.get_extension_by_name("validate.disabled")?,
        message_ignored: p.get_extension_by_name("validate.ignored")?,
    })
}

/// The rules of one message type.
pub(crate) struct MessageRules {
    /// `(validate.disabled)` or `(validate.ignored)`: nothing in or under this message is checked.
    pub disabled: bool,
    pub fields: Vec<(FieldDescriptor, DynamicMessage)>,
    /// Oneofs that must have a member set, with their member names.
    pub required_oneofs: Vec<(String, Vec<String>)>,
}

/// The extensions and the rules computed so far, for one descriptor pool; they hold its descriptors,
/// so [`release`] empties them with the pool, and rules for a message of another pool start afresh.
#[derive(Default)]
struct Cache {
    pool: Option<DescriptorPool>,
    extensions: Option<Arc<Option<Extensions>>>,
    rules: HashMap<String, Arc<MessageRules>>,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);

/// The rules of `desc` (computed once per message type).
pub(crate) fn rules(desc: &MessageDescriptor) -> Arc<MessageRules> {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.pool.as_ref() != Some(desc.parent_pool()) {
        *cache = Cache {
            pool: Some(desc.parent_pool().clone()),
            ..Cache::default()
        };
    }
    if let Some(r) = cache.rules.get(desc.full_name()) {
        return r.clone();
    }
    let ext = cache
        .extensions
        .get_or_insert_with(|| Arc::new(extensions(desc.parent_pool())))
        .clone();
    let r = Arc::new(compute(desc, ext.as_ref().as_ref()));
    cache.rules.insert(desc.full_name().to_owned(), r.clone());
    r
}

pub(crate) fn release() {
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = Cache::default();
}

fn flag(options: &DynamicMessage, ext: &ExtensionDescriptor) -> bool {
    options.has_extension(ext) && matches!(options.get_extension(ext).as_ref(), Value::Bool(true))
}

fn compute(desc: &MessageDescriptor, ext: Option<&Extensions>) -> MessageRules {
    let Some(ext) = ext else {
        return MessageRules {
            disabled: true,
            fields: Vec::new(),
            required_oneofs: Vec::new(),
        };
    };
    let options = desc.options();
    let disabled = flag(&options, &ext.message_disabled) || flag(&options, &ext.message_ignored);
    let fields = desc
        .fields()
        .filter_map(|f| {
            let options = f.options();
            if !options.has_extension(&ext.field_rules) {
                return None;
            }
            match options.get_extension(&ext.field_rules).into_owned() {
                Value::Message(rules) => Some((f, rules)),
                _ => None,
            }
        })
        .collect();
    let required_oneofs = desc
        .oneofs()
        .filter(|o| !o.is_synthetic() && flag(&o.options(), &ext.oneof_required))
        .map(|o| {
            (
                o.name().to_owned(),
                o.fields().map(|f| f.name().to_owned()).collect(),
            )
        })
        .collect();
    MessageRules {
        disabled,
        fields,
        required_oneofs,
    }
}

fn get<'a>(m: &'a DynamicMessage, name: &str) -> Option<&'a Value> {
    let field = m.descriptor().get_field_by_name(name)?;
    m.fields().find(|(f, _)| *f == field).map(|(_, v)| v)
}

fn get_bool(m: &DynamicMessage, name: &str) -> bool {
    matches!(get(m, name), Some(Value::Bool(true)))
}

fn get_u64(m: &DynamicMessage, name: &str) -> Option<u64> {
    match get(m, name) {
        Some(Value::U64(v)) => Some(*v),
        _ => None,
    }
}

fn get_msg<'a>(m: &'a DynamicMessage, name: &str) -> Option<&'a DynamicMessage> {
    match get(m, name) {
        Some(Value::Message(v)) => Some(v),
        _ => None,
    }
}

/// The set member of the `type` oneof of FieldRules: (`"uint32"`, its rules).
fn type_rules(rules: &DynamicMessage) -> Option<(String, &DynamicMessage)> {
    rules.fields().find_map(|(f, v)| match v {
        Value::Message(m) if f.name() != "message" => Some((f.name().to_owned(), m)),
        _ => None,
    })
}

/// Whether the field must be present (`message.required`, `duration.required`, …).
pub(crate) fn is_required(rules: &DynamicMessage) -> bool {
    if get_msg(rules, "message").is_some_and(|m| get_bool(m, "required")) {
        return true;
    }
    match type_rules(rules) {
        Some((kind, r)) if matches!(kind.as_str(), "duration" | "any" | "timestamp") => {
            get_bool(r, "required")
        }
        _ => false,
    }
}

/// `message.skip`: the field's message is not validated.
pub(crate) fn skips(rules: &DynamicMessage) -> bool {
    get_msg(rules, "message").is_some_and(|m| get_bool(m, "skip"))
}

/// Rules for the items of a repeated field, the keys and values of a map.
pub(crate) fn nested<'a>(rules: &'a DynamicMessage, which: &str) -> Option<&'a DynamicMessage> {
    let (kind, r) = type_rules(rules)?;
    match (kind.as_str(), which) {
        ("repeated", "items") | ("map", "keys") | ("map", "values") => get_msg(r, which),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
enum Num {
    I(i128),
    F(f64),
}

impl Num {
    fn of(v: &Value) -> Option<Num> {
        Some(match v {
            Value::I32(i) => Num::I((*i).into()),
            Value::I64(i) => Num::I((*i).into()),
            Value::U32(i) => Num::I((*i).into()),
            Value::U64(i) => Num::I((*i).into()),
            Value::EnumNumber(i) => Num::I((*i).into()),
            Value::F32(f) => Num::F((*f).into()),
            Value::F64(f) => Num::F(*f),
            _ => return None,
        })
    }

    fn f(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }

    fn cmp(self, other: Num) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Num::I(a), Num::I(b)) => Some(a.cmp(&b)),
            (a, b) => a.f().partial_cmp(&b.f()),
        }
    }

    fn is_zero(self) -> bool {
        self.f() == 0.0
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::I(i) => write!(f, "{i}"),
            Num::F(x) => write!(f, "{x}"),
        }
    }
}

fn duration_nanos(m: &DynamicMessage) -> Num {
    let seconds = match get(m, "seconds") {
        Some(Value::I64(s)) => i128::from(*s),
        _ => 0,
    };
    let nanos = match get(m, "nanos") {
        Some(Value::I32(n)) => i128::from(*n),
        _ => 0,
    };
    Num::I(seconds * 1_000_000_000 + nanos)
}

fn show_duration(n: Num) -> String {
    match n {
        Num::I(nanos) if nanos % 1_000_000_000 == 0 => format!("{}s", nanos / 1_000_000_000),
        Num::I(nanos) => format!("{}s", nanos as f64 / 1e9),
        Num::F(f) => format!("{f}"),
    }
}

/// Checks numeric bounds: `const`, `lt`, `lte`, `gt`, `gte`, `in`, `not_in`. `conv` reads a bound.
fn check_range(
    v: Num,
    r: &DynamicMessage,
    conv: &dyn Fn(&Value) -> Option<Num>,
    show: &dyn Fn(Num) -> String,
) -> Result<(), String> {
    let bound = |name: &str| get(r, name).and_then(conv);
    if let Some(c) = bound("const")
        && v.cmp(c) != Some(std::cmp::Ordering::Equal)
    {
        return Err(format!("{} must equal {}", show(v), show(c)));
    }
    let upper = bound("lt")
        .map(|b| (b, true))
        .or_else(|| bound("lte").map(|b| (b, false)));
    let lower = bound("gt")
        .map(|b| (b, true))
        .or_else(|| bound("gte").map(|b| (b, false)));
    use std::cmp::Ordering::{Greater, Less};
    let below = |(b, strict): (Num, bool)| match v.cmp(b) {
        Some(Less) => true,
        Some(std::cmp::Ordering::Equal) => !strict,
        _ => false,
    };
    let above = |(b, strict): (Num, bool)| match v.cmp(b) {
        Some(Greater) => true,
        Some(std::cmp::Ordering::Equal) => !strict,
        _ => false,
    };
    let text = |(b, strict): (Num, bool), op: &str| {
        format!("{op}{} {}", if strict { "" } else { "=" }, show(b))
    };
    let ok = match (lower, upper) {
        (Some(lo), Some(hi)) => {
            if hi.0.cmp(lo.0) != Some(Less) {
                above(lo) && below(hi)
            } else {
                // PGV: `lt` below `gt` means "outside the range".
                above(lo) || below(hi)
            }
        }
        (Some(lo), None) => above(lo),
        (None, Some(hi)) => below(hi),
        (None, None) => true,
    };
    if !ok {
        let cond = match (lower, upper) {
            (Some(lo), Some(hi)) if hi.0.cmp(lo.0) != Some(Less) => {
                format!("{} and {}", text(lo, ">"), text(hi, "<"))
            }
            (Some(lo), Some(hi)) => format!("{} or {}", text(lo, ">"), text(hi, "<")),
            (Some(lo), None) => text(lo, ">"),
            (None, Some(hi)) => text(hi, "<"),
            (None, None) => String::new(),
        };
        return Err(format!("{} is out of range: must be {cond}", show(v)));
    }
    if let Some(Value::List(allowed)) = get(r, "in")
        && !allowed.is_empty()
        && !allowed
            .iter()
            .filter_map(conv)
            .any(|a| v.cmp(a) == Some(std::cmp::Ordering::Equal))
    {
        let list: Vec<String> = allowed.iter().filter_map(conv).map(show).collect();
        return Err(format!("{} must be one of {}", show(v), list.join(", ")));
    }
    if let Some(Value::List(denied)) = get(r, "not_in")
        && denied
            .iter()
            .filter_map(conv)
            .any(|a| v.cmp(a) == Some(std::cmp::Ordering::Equal))
    {
        return Err(format!("{} is not allowed", show(v)));
    }
    Ok(())
}

/// Checks one value (a singular field's, or one list item or map value) against `rules`.
pub(crate) fn check(kind: &Kind, value: &Value, rules: &DynamicMessage) -> Result<(), String> {
    let Some((rule_kind, r)) = type_rules(rules) else {
        return Ok(());
    };
    // Wrappers are checked by their inner value.
    let value = match (kind, value) {
        (Kind::Message(m), Value::Message(msg))
            if m.full_name().starts_with("google.protobuf.")
                && m.full_name().ends_with("Value")
                && m.get_field_by_name("value").is_some()
                && m.fields().len() == 1 =>
        {
            match get(msg, "value") {
                Some(v) => v.clone(),
                None => m
                    .get_field_by_name("value")
                    .map(|f| f.default_value())
                    .unwrap_or(Value::Bool(false)),
            }
        }
        _ => value.clone(),
    };
    match rule_kind.as_str() {
        "float" | "double" | "int32" | "int64" | "uint32" | "uint64" | "sint32" | "sint64"
        | "fixed32" | "fixed64" | "sfixed32" | "sfixed64" => {
            let Some(v) = Num::of(&value) else {
                return Ok(());
            };
            if get_bool(r, "ignore_empty") && v.is_zero() {
                return Ok(());
            }
            check_range(v, r, &Num::of, &|n| n.to_string())
        }
        "bool" => match (get(r, "const"), &value) {
            (Some(Value::Bool(c)), Value::Bool(v)) if c != v => Err(format!("must be {c}")),
            _ => Ok(()),
        },
        "string" => {
            let Value::String(s) = &value else {
                return Ok(());
            };
            check_string(s, r)
        }
        "bytes" => {
            let Value::Bytes(b) = &value else {
                return Ok(());
            };
            if get_bool(r, "ignore_empty") && b.is_empty() {
                return Ok(());
            }
            check_len(b.len() as u64, r, "len", "min_len", "max_len", "byte")
        }
        "enum" => {
            let Value::EnumNumber(n) = value else {
                return Ok(());
            };
            if get_bool(r, "defined_only")
                && let Kind::Enum(e) = kind
                && e.get_value(n).is_none()
            {
                return Err(format!(
                    "{n} is not a defined value of enum {}",
                    e.full_name()
                ));
            }
            check_range(Num::I(n.into()), r, &Num::of, &|v| v.to_string())
        }
        "duration" => {
            let Value::Message(m) = &value else {
                return Ok(());
            };
            let conv = |v: &Value| match v {
                Value::Message(b) => Some(duration_nanos(b)),
                _ => None,
            };
            check_range(duration_nanos(m), r, &conv, &show_duration)
        }
        "any" => {
            let Value::Message(m) = &value else {
                return Ok(());
            };
            let url = match get(m, "type_url") {
                Some(Value::String(s)) => s.as_str(),
                _ => "",
            };
            if let Some(Value::List(allowed)) = get(r, "in")
                && !allowed.is_empty()
                && !allowed
                    .iter()
                    .any(|a| matches!(a, Value::String(s) if s == url))
            {
                return Err(format!("type {url:?} is not allowed here"));
            }
            if let Some(Value::List(denied)) = get(r, "not_in")
                && denied
                    .iter()
                    .any(|a| matches!(a, Value::String(s) if s == url))
            {
                return Err(format!("type {url:?} is not allowed here"));
            }
            Ok(())
        }
        "repeated" => {
            let Value::List(items) = &value else {
                return Ok(());
            };
            if get_bool(r, "ignore_empty") && items.is_empty() {
                return Ok(());
            }
            let n = items.len() as u64;
            if let Some(min) = get_u64(r, "min_items")
                && n < min
            {
                return Err(format!(
                    "needs at least {min} item{}, has {n}",
                    if min == 1 { "" } else { "s" }
                ));
            }
            if let Some(max) = get_u64(r, "max_items")
                && n > max
            {
                return Err(format!("allows at most {max} items, has {n}"));
            }
            if get_bool(r, "unique") {
                for (i, a) in items.iter().enumerate() {
                    if items[..i].contains(a) {
                        return Err(format!(
                            "item {i} repeats an earlier item; items must be unique"
                        ));
                    }
                }
            }
            Ok(())
        }
        "map" => {
            let Value::Map(map) = &value else {
                return Ok(());
            };
            if get_bool(r, "ignore_empty") && map.is_empty() {
                return Ok(());
            }
            let n = map.len() as u64;
            if let Some(min) = get_u64(r, "min_pairs")
                && n < min
            {
                return Err(format!("needs at least {min} entries, has {n}"));
            }
            if let Some(max) = get_u64(r, "max_pairs")
                && n > max
            {
                return Err(format!("allows at most {max} entries, has {n}"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A map key as a value, to check `keys` rules.
pub(crate) fn key_value(key: &MapKey) -> Value {
    match key {
        MapKey::Bool(b) => Value::Bool(*b),
        MapKey::I32(i) => Value::I32(*i),
        MapKey::I64(i) => Value::I64(*i),
        MapKey::U32(i) => Value::U32(*i),
        MapKey::U64(i) => Value::U64(*i),
        MapKey::String(s) => Value::String(s.clone()),
    }
}

fn check_len(
    n: u64,
    r: &DynamicMessage,
    exact: &str,
    min: &str,
    max: &str,
    unit: &str,
) -> Result<(), String> {
    let units = |k: u64| {
        if k == 1 {
            unit.to_owned()
        } else {
            format!("{unit}s")
        }
    };
    if let Some(len) = get_u64(r, exact)
        && n != len
    {
        return Err(format!("must be exactly {len} {} long, is {n}", units(len)));
    }
    if let Some(min) = get_u64(r, min)
        && n < min
    {
        return Err(if n == 0 {
            format!("must not be empty (at least {min} {})", units(min))
        } else {
            format!("must be at least {min} {} long, is {n}", units(min))
        });
    }
    if let Some(max) = get_u64(r, max)
        && n > max
    {
        return Err(format!("must be at most {max} {} long, is {n}", units(max)));
    }
    Ok(())
}

fn check_string(s: &str, r: &DynamicMessage) -> Result<(), String> {
    if get_bool(r, "ignore_empty") && s.is_empty() {
        return Ok(());
    }
    let text = |name: &str| match get(r, name) {
        Some(Value::String(v)) => Some(v.as_str()),
        _ => None,
    };
    if let Some(c) = text("const")
        && s != c
    {
        return Err(format!("must be {c:?}"));
    }
    check_len(
        s.chars().count() as u64,
        r,
        "len",
        "min_len",
        "max_len",
        "character",
    )?;
    check_len(
        s.len() as u64,
        r,
        "len_bytes",
        "min_bytes",
        "max_bytes",
        "byte",
    )?;
    if let Some(p) = text("prefix")
        && !s.starts_with(p)
    {
        return Err(format!("must start with {p:?}"));
    }
    if let Some(p) = text("suffix")
        && !s.ends_with(p)
    {
        return Err(format!("must end with {p:?}"));
    }
    if let Some(p) = text("contains")
        && !s.contains(p)
    {
        return Err(format!("must contain {p:?}"));
    }
    if let Some(p) = text("not_contains")
        && s.contains(p)
    {
        return Err(format!("must not contain {p:?}"));
    }
    if let Some(Value::List(allowed)) = get(r, "in")
        && !allowed.is_empty()
        && !allowed
            .iter()
            .any(|a| matches!(a, Value::String(v) if v == s))
    {
        return Err(format!("{s:?} is not one of the allowed values"));
    }
    if let Some(Value::List(denied)) = get(r, "not_in")
        && denied
            .iter()
            .any(|a| matches!(a, Value::String(v) if v == s))
    {
        return Err(format!("{s:?} is not allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_read_from_the_descriptors() {
        let cluster =
            crate::descriptor::message("envoy.config.cluster.v3.Cluster").expect("Cluster");
        let rules = rules(&cluster);
        assert!(!rules.disabled);
        let (_, name_rules) = rules
            .fields
            .iter()
            .find(|(f, _)| f.name() == "name")
            .expect("Cluster.name has rules");
        assert_eq!(
            check(&Kind::String, &Value::String(String::new()), name_rules),
            Err("must not be empty (at least 1 character)".to_owned())
        );
        assert_eq!(
            check(&Kind::String, &Value::String("a".into()), name_rules),
            Ok(())
        );
    }
}
