//! Findings: what validation and analysis report, with the source position and field path.

use std::fmt;

use serde::Serialize;

use crate::path::FieldPath;
use crate::yaml::{Node, Pos};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// Istio's message codes (`istioctl analyze`), so findings read the same as Istio's.
pub mod code {
    /// A resource names another that does not exist (host, subset, gateway, selector).
    pub const REFERENCED_RESOURCE_NOT_FOUND: &str = "IST0101";
    /// The resource breaks a schema or admission-validation rule.
    pub const SCHEMA_VALIDATION_ERROR: &str = "IST0106";
    /// Several mesh VirtualServices claim the same host.
    pub const CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS: &str = "IST0109";
    /// A destination on a multi-port service without a port.
    pub const VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED: &str = "IST0112";
    /// A rule that can never match because an earlier rule catches everything it would.
    pub const VIRTUAL_SERVICE_UNREACHABLE_RULE: &str = "IST0130";
    /// A match in a rule that an earlier match already covers.
    pub const VIRTUAL_SERVICE_INEFFECTIVE_MATCH: &str = "IST0131";
    /// A VirtualService host that its gateways do not serve.
    pub const VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY: &str = "IST0132";
    /// A DestinationRule whose host nothing defines.
    pub const DESTINATION_RULE_HOST_NOT_FOUND: &str = "IST0101";
    /// A ServiceEntry TCP port (or one without a protocol) and no addresses.
    pub const SERVICE_ENTRY_ADDRESSES_REQUIRED: &str = "IST0134";
}

/// One finding in one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    /// The field path, `spec.http[0].route` (empty for the whole document).
    pub field: String,
    #[serde(flatten)]
    pub pos: Pos,
}

/// Collects findings for one document, resolving field paths to positions against its YAML tree.
#[derive(Debug)]
pub struct Report<'n> {
    root: &'n Node,
    pub findings: Vec<Finding>,
}

impl<'n> Report<'n> {
    pub fn new(root: &'n Node) -> Self {
        Report {
            root,
            findings: Vec::new(),
        }
    }

    pub fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        at: &FieldPath<'_>,
        message: impl Into<String>,
    ) {
        self.findings.push(Finding {
            severity,
            code,
            message: message.into(),
            field: at.to_string(),
            pos: at.locate(self.root),
        });
    }

    /// An admission-validation error (Istio's webhook would reject the resource).
    pub fn error(&mut self, at: &FieldPath<'_>, message: impl Into<String>) {
        self.push(Severity::Error, code::SCHEMA_VALIDATION_ERROR, at, message);
    }

    /// An admission-validation warning (accepted, but probably not what was meant).
    pub fn warn(&mut self, at: &FieldPath<'_>, message: impl Into<String>) {
        self.push(
            Severity::Warning,
            code::SCHEMA_VALIDATION_ERROR,
            at,
            message,
        );
    }

    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// The closest of `candidates` to a misspelt `word`, if any is close enough to be a likely typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let normalized = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let word_n = normalized(word);
    let mut best: Option<(&str, f64)> = None;
    for cand in candidates {
        if normalized(cand) == word_n {
            // Same name in another case or with underscores (`per_try_timeout` for `perTryTimeout`).
            return Some(cand);
        }
        let score = strsim::jaro_winkler(&word_n, &normalized(cand));
        let distance = strsim::levenshtein(&word_n, &normalized(cand));
        let close = score >= 0.85 || (distance <= 2 && word_n.len() > 3);
        if close && best.is_none_or(|(_, s)| score > s) {
            best = Some((cand, score));
        }
    }
    best.map(|(c, _)| c)
}

/// ` (did you mean "x"?)` or nothing.
pub fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    suggest(word, candidates)
        .map(|s| format!(" (did you mean \"{s}\"?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_and_case() {
        let fields = ["hosts", "addresses", "ports", "location", "resolution"];
        assert_eq!(suggest("prots", fields), Some("ports"));
        assert_eq!(suggest("Hosts", fields), Some("hosts"));
        assert_eq!(suggest("resolutoin", fields), Some("resolution"));
        assert_eq!(suggest("banana", fields), None);
        assert_eq!(
            suggest("per_try_timeout", ["perTryTimeout", "attempts"]),
            Some("perTryTimeout")
        );
    }
}
