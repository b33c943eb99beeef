//! Field paths (`spec.http[0].route[1].weight`) built on the stack while walking a resource, rendered
//! to text and resolved to a source position only when a finding is reported.

use std::fmt;

use crate::yaml::{Node, Pos, Value};

/// One step of a field path.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

/// A field path as a linked list of borrowed segments: building a child costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct FieldPath<'a> {
    parent: Option<&'a FieldPath<'a>>,
    seg: Seg<'a>,
}

impl FieldPath<'static> {
    /// The path of the whole document.
    pub const ROOT: FieldPath<'static> = FieldPath {
        parent: None,
        seg: Seg::Root,
    };
}

impl<'a> FieldPath<'a> {
    pub fn key<'b>(&'b self, key: &'b str) -> FieldPath<'b> {
        FieldPath {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    pub fn index(&self, index: usize) -> FieldPath<'_> {
        FieldPath {
            parent: Some(self),
            seg: Seg::Index(index),
        }
    }

    /// The segments from the root down, root excluded.
    pub fn segments(&self) -> Vec<Seg<'a>> {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            if !matches!(p.seg, Seg::Root) {
                segs.push(p.seg);
            }
            cur = p.parent;
        }
        segs.reverse();
        segs
    }

    /// Where in the document this path points: the value for a scalar, the key for a mapping or list
    /// (a block mapping's own position is its first child's line), and for a path that does not exist
    /// (a missing required field) the key of its deepest existing ancestor.
    pub fn locate(&self, root: &Node) -> Pos {
        let mut node = root;
        let mut at = root.pos;
        for seg in self.segments() {
            let next = match (seg, &node.value) {
                (Seg::Key(k), Value::Map(entries)) => entries
                    .iter()
                    .find(|e| e.key == k)
                    .map(|e| (e.key_pos, &e.value)),
                (Seg::Index(i), Value::Seq(items)) => items.get(i).map(|n| (n.pos, n)),
                _ => None,
            };
            match next {
                Some((pos, child)) => {
                    at = pos;
                    node = child;
                }
                None => return at,
            }
        }
        match node.value {
            Value::Map(_) | Value::Seq(_) => at,
            _ => node.pos,
        }
    }
}

/// Renders `spec.http[0].headers["x-user"]`: plain names after a dot, other keys quoted.
impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in self.segments() {
            match seg {
                Seg::Root => {}
                Seg::Index(i) => write!(f, "[{i}]")?,
                Seg::Key(k) if is_plain_name(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(k) => write!(f, "[{k:?}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

fn is_plain_name(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_stream;

    #[test]
    fn renders_and_locates() {
        let (docs, _) = parse_stream(
            "spec:\n  http:\n  - match:\n    - headers:\n        end-user:\n          exact: jason\n        a.b: {}\n",
        );
        let root = &docs[0];
        let spec = FieldPath::ROOT.key("spec");
        let http = spec.key("http");
        let h0 = http.index(0);
        let m = h0.key("match");
        let m0 = m.index(0);
        let headers = m0.key("headers");
        let user = headers.key("end-user");
        let exact = user.key("exact");
        assert_eq!(
            exact.to_string(),
            "spec.http[0].match[0].headers.end-user.exact"
        );
        assert_eq!(
            exact.locate(root),
            Pos {
                line: 6,
                column: 18
            }
        );
        let dotted = headers.key("a.b");
        assert_eq!(dotted.to_string(), "spec.http[0].match[0].headers[\"a.b\"]");
        assert_eq!(dotted.locate(root), Pos { line: 7, column: 9 });
        // A missing field points at its deepest existing ancestor's key.
        let missing = user.key("prefix");
        assert_eq!(missing.locate(root), Pos { line: 5, column: 9 });
    }
}
