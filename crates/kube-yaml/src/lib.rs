//! A YAML tree that remembers where every key and value came from.
//!
//! Scalars are typed the way `kubectl` types them (go-yaml's YAML 1.1 rules: `yes`/`on` are booleans,
//! `0x1F` is an integer, `1.2.3.4` and `001:db8::` are strings), so that Bosun accepts what `kubectl apply`
//! accepts. Every node carries its line and column so validation can point at the offending text.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

/// A position in a source file: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One YAML value with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// A mapping entry: the key keeps its own position, so "unknown field" can point at the key.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

impl Value {
    /// The YAML/JSON type name, as Kubernetes names it in its errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::String(_) => "string",
            Value::Seq(_) => "array",
            Value::Map(_) => "object",
        }
    }
}

impl Node {
    /// The entry for `key` when this node is a mapping.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Converts to JSON (for `--output json` round trips and tests).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::String(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Why a YAML stream could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub message: String,
    pub pos: Pos,
}

impl YamlError {
    fn new(pos: Pos, message: impl Into<String>) -> Self {
        YamlError {
            message: message.into(),
            pos,
        }
    }

    fn scan(err: &ScanError) -> Self {
        YamlError::new(
            Pos {
                line: err.marker().line(),
                column: err.marker().col() + 1,
            },
            format!("invalid YAML: {}", err.info()),
        )
    }
}

/// Bounds that keep hostile input (alias bombs, absurd nesting) from exhausting memory or the stack.
const MAX_NODES: usize = 2_000_000;
const MAX_DEPTH: usize = 256;

/// Parses a multi-document YAML (or JSON) stream. Each document is returned with the position of its
/// first line. An error ends the stream: documents read before it are still returned.
pub fn parse_stream(source: &str) -> (Vec<Node>, Option<YamlError>) {
    let mut builder = Builder {
        source,
        parser: Parser::new_from_str(source),
        anchors: HashMap::new(),
        nodes: 0,
    };
    let mut docs = Vec::new();
    loop {
        match builder.next() {
            Ok(None) => return (docs, None),
            Ok(Some((Event::DocumentStart(_), _))) => match builder.document() {
                Ok(Some(doc)) => docs.push(doc),
                Ok(None) => {}
                Err(e) => return (docs, Some(e)),
            },
            Ok(Some(_)) => {}
            Err(e) => return (docs, Some(e)),
        }
    }
}

struct Builder<'a> {
    source: &'a str,
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<Option<(Event<'a>, Span)>, YamlError> {
        match self.parser.next_event() {
            None => Ok(None),
            Some(Ok(ev)) => Ok(Some(ev)),
            Some(Err(e)) => Err(YamlError::scan(&e)),
        }
    }

    fn expect_next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        self.next()?
            .ok_or_else(|| YamlError::new(Pos::default(), "unexpected end of YAML stream"))
    }

    /// Reads one document after its DocumentStart; `None` for an empty document.
    fn document(&mut self) -> Result<Option<Node>, YamlError> {
        let (ev, span) = self.expect_next()?;
        if matches!(ev, Event::DocumentEnd) {
            return Ok(None);
        }
        let node = self.node(ev, span, 0)?;
        let (end, span) = self.expect_next()?;
        if !matches!(end, Event::DocumentEnd) {
            return Err(YamlError::new(
                Pos::from_span(&span),
                "expected the end of the document",
            ));
        }
        // `null` documents (`---` followed by nothing or a comment) are empty, as kubectl treats them.
        Ok((node.value != Value::Null).then_some(node))
    }

    fn count(&mut self, pos: Pos, n: usize) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(YamlError::new(
                pos,
                format!(
                    "document too large: more than {MAX_NODES} YAML nodes (check for alias expansion)"
                ),
            ));
        }
        Ok(())
    }

    fn node(&mut self, ev: Event<'a>, span: Span, depth: usize) -> Result<Node, YamlError> {
        let pos = Pos::from_span(&span);
        if depth > MAX_DEPTH {
            return Err(YamlError::new(
                pos,
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.count(pos, 1)?;
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| t.suffix.clone());
                let value = resolve_scalar(&text, style, tag.as_deref())
                    .map_err(|message| YamlError::new(pos, message))?;
                (Node { value, pos }, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.expect_next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span, depth + 1)?);
                }
                (
                    Node {
                        value: Value::Seq(items),
                        pos,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => (self.mapping(pos, depth)?, anchor),
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| YamlError::new(pos, "alias to an unknown anchor"))?;
                let size = node_count(&node);
                self.count(pos, size)?;
                return Ok(Node {
                    value: node.value,
                    pos,
                });
            }
            other => {
                return Err(YamlError::new(
                    pos,
                    format!("unexpected YAML event {other:?}"),
                ));
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn mapping(&mut self, pos: Pos, depth: usize) -> Result<Node, YamlError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut merges = Vec::new();
        let mut colon_scalar = None;
        loop {
            let (ev, span) = self.expect_next()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            // Keys keep their text: a field named `on` or `y` stays a name, not a boolean.
            let key_pos = Pos::from_span(&span);
            let key_end = span.end.index();
            let key = match ev {
                Event::Scalar(text, ..) => {
                    self.count(key_pos, 1)?;
                    text.into_owned()
                }
                Event::Alias(_) => match self.node(ev, span, depth + 1)?.value {
                    Value::String(s) => s,
                    _ => return Err(YamlError::new(key_pos, "a mapping key must be a scalar")),
                },
                _ => return Err(YamlError::new(key_pos, "a mapping key must be a scalar")),
            };
            let (ev, span) = self.expect_next()?;
            let empty_value =
                matches!(&ev, Event::Scalar(text, ScalarStyle::Plain, ..) if text.is_empty());
            let value = self.node(ev, span, depth + 1)?;
            if empty_value && self.colon_then_flow_end(key_end) {
                // go-yaml reads `[1.2.3.4, 001:db8::]` as two strings: a `:` right before `,` or `]`
                // belongs to the scalar. YAML 1.2 makes it a key; undo that here.
                colon_scalar = Some(format!("{key}:"));
            }
            if key == "<<" {
                merges.push(value);
                continue;
            }
            if let Some(first) = entries.iter().find(|e| e.key == key) {
                return Err(YamlError::new(
                    key_pos,
                    format!(
                        "mapping key \"{key}\" already defined at line {}",
                        first.key_pos.line
                    ),
                ));
            }
            entries.push(Entry {
                key,
                key_pos,
                value,
            });
        }
        if let (Some(text), 1) = (colon_scalar, entries.len()) {
            return Ok(Node {
                value: Value::String(text),
                pos,
            });
        }
        // Merged keys come last so that explicit keys win.
        for merge in merges {
            merge_into(&mut entries, merge);
        }
        let pos = entries.first().map_or(pos, |e| e.key_pos.min(pos));
        Ok(Node {
            value: Value::Map(entries),
            pos,
        })
    }
}

impl Builder<'_> {
    /// Whether the text at char index `at` is `:` followed by `,` or `]` (a flow-sequence item end).
    fn colon_then_flow_end(&self, at: usize) -> bool {
        let mut rest = self.source.chars().skip(at);
        rest.next() == Some(':') && matches!(rest.next(), Some(',' | ']'))
    }
}

/// Applies a `<<: *base` merge: keys already present win.
fn merge_into(entries: &mut Vec<Entry>, value: Node) {
    let sources = match value.value {
        Value::Map(m) => vec![m],
        Value::Seq(items) => items
            .into_iter()
            .filter_map(|n| match n.value {
                Value::Map(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for source in sources {
        for e in source {
            if !entries.iter().any(|x| x.key == e.key) {
                entries.push(e);
            }
        }
    }
}

fn node_count(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|e| 1 + node_count(&e.value))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// Types a scalar as go-yaml (the parser behind `kubectl`) does.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Result<Value, String> {
    if let Some(tag) = tag {
        return match tag {
            "str" | "binary" | "timestamp" => Ok(Value::String(text.to_owned())),
            "null" => Ok(Value::Null),
            "bool" => plain_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| format!("cannot decode {text:?} as !!bool")),
            "int" => plain_int(text)
                .map(Value::Int)
                .ok_or_else(|| format!("cannot decode {text:?} as !!int")),
            "float" => plain_float(text)
                .or_else(|| plain_int(text).map(|i| i as f64))
                .map(Value::Float)
                .ok_or_else(|| format!("cannot decode {text:?} as !!float")),
            _ => Ok(resolve_plain_or_quoted(text, style)),
        };
    }
    Ok(resolve_plain_or_quoted(text, style))
}

fn resolve_plain_or_quoted(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String(text.to_owned());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        _ => {}
    }
    if let Some(b) = plain_bool(text) {
        return Value::Bool(b);
    }
    if let Some(i) = plain_int(text) {
        return Value::Int(i);
    }
    if let Some(f) = plain_float(text) {
        return Value::Float(f);
    }
    Value::String(text.to_owned())
}

fn plain_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" | "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            Some(true)
        }
        "false" | "False" | "FALSE" | "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

fn plain_int(text: &str) -> Option<i64> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let (neg, digits) = match cleaned.as_bytes().first()? {
        b'-' => (true, &cleaned[1..]),
        b'+' => (false, &cleaned[1..]),
        _ => (false, &cleaned[..]),
    };
    if digits.is_empty() {
        return None;
    }
    let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(bin) = digits.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        // YAML 1.1: a leading zero means octal.
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -magnitude } else { magnitude })
}

fn plain_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let body = cleaned.trim_start_matches(['+', '-']);
    // Only decimal notation counts as a float: "1e3", "1.5", ".5"; never words like "inf" or "NaN".
    let looks_numeric = !body.is_empty()
        && body
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && body.chars().any(|c| c.is_ascii_digit());
    if !looks_numeric {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Node {
        let (docs, err) = parse_stream(src);
        assert_eq!(err, None);
        assert_eq!(docs.len(), 1);
        docs.into_iter().next().expect("one document")
    }

    #[test]
    fn scalars_are_typed_like_kubectl() {
        let doc = one("a: yes\nb: 0x1F\nc: 1.2.3.4\nd: '80'\ne: 1.5\nf: ~\ng: 010\nh: on\n");
        let v = |k: &str| doc.get(k).map(|n| n.value.clone());
        assert_eq!(v("a"), Some(Value::Bool(true)));
        assert_eq!(v("b"), Some(Value::Int(31)));
        assert_eq!(v("c"), Some(Value::String("1.2.3.4".into())));
        assert_eq!(v("d"), Some(Value::String("80".into())));
        assert_eq!(v("e"), Some(Value::Float(1.5)));
        assert_eq!(v("f"), Some(Value::Null));
        assert_eq!(v("g"), Some(Value::Int(8)));
        assert_eq!(v("h"), Some(Value::Bool(true)));
    }

    #[test]
    fn ipv6_in_flow_sequence_is_a_string() {
        let doc = one("addresses: [1.2.3.4, 001:db8::]\n");
        let items = match &doc.get("addresses").map(|n| &n.value) {
            Some(Value::Seq(items)) => items.clone(),
            other => panic!("not a sequence: {other:?}"),
        };
        assert_eq!(items[0].value, Value::String("1.2.3.4".into()));
        assert_eq!(items[1].value, Value::String("001:db8::".into()));
    }

    #[test]
    fn positions_point_at_keys_and_values() {
        let doc = one("kind: X\nspec:\n  hosts:\n  - foo\n");
        let spec = doc.entry("spec").expect("spec");
        assert_eq!(spec.key_pos, Pos { line: 2, column: 1 });
        let hosts = spec.value.entry("hosts").expect("hosts");
        assert_eq!(hosts.key_pos, Pos { line: 3, column: 3 });
        match &hosts.value.value {
            Value::Seq(items) => assert_eq!(items[0].pos, Pos { line: 4, column: 5 }),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn multiple_documents_and_empty_ones() {
        let (docs, err) = parse_stream("a: 1\n---\n---\n# only a comment\n---\nb: 2\n");
        assert_eq!(err, None);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].pos.line, 6);
    }

    #[test]
    fn duplicate_keys_are_rejected_with_both_lines() {
        let (_, err) = parse_stream("a: 1\nb: 2\na: 3\n");
        let err = err.expect("error");
        assert_eq!(err.pos, Pos { line: 3, column: 1 });
        assert!(err.message.contains("already defined at line 1"), "{err}");
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (_, err) = parse_stream(&src);
        assert!(err.expect("error").message.contains("too large"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (_, err) = parse_stream("a: [1, 2\nb: 3\n");
        let err = err.expect("error");
        assert!(err.pos.line >= 1);
        assert!(err.message.starts_with("invalid YAML"));
    }

    #[test]
    fn json_is_accepted() {
        let doc = one(r#"{"kind": "Gateway", "spec": {"servers": [{"port": {"number": 80}}]}}"#);
        assert_eq!(doc.get("kind").and_then(Node::as_str), Some("Gateway"));
    }

    #[test]
    fn merge_keys_apply() {
        let doc = one("base: &b {x: 1, z: 2}\nderived:\n  <<: *b\n  z: 3\n  y: 4\n");
        let derived = doc.get("derived").expect("derived");
        assert_eq!(derived.get("x").map(|n| &n.value), Some(&Value::Int(1)));
        assert_eq!(derived.get("z").map(|n| &n.value), Some(&Value::Int(3)));
        // Keys keep their text even where go-yaml would read a boolean.
        assert_eq!(derived.get("y").map(|n| &n.value), Some(&Value::Int(4)));
    }
}
