//! `{{NAME}}` placeholders in config fixtures (bootstrap YAML), filled in by the test.

use std::collections::BTreeMap;
use std::path::Path;

/// Why a template did not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Placeholders were left without a value.
    #[error("template placeholders left unfilled: {}", describe(.0))]
    Unfilled(Vec<(String, usize)>),
    /// A `{{` without its `}}`.
    #[error("template line {line}: `{{{{` is not closed by `}}}}`")]
    Unterminated {
        /// 1-based line of the `{{`.
        line: usize,
    },
    /// The template file could not be read.
    #[error("reading template {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error, as text.
        reason: String,
    },
}

fn describe(missing: &[(String, usize)]) -> String {
    missing
        .iter()
        .map(|(name, line)| format!("{{{{{name}}}}} (line {line})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replaces every `{{NAME}}` (spaces inside the braces are allowed) in `template` with its value from
/// `vars`; errors listing every placeholder left unfilled, with its line.
///
/// ```
/// let yaml = testkit::render("port_value: {{LISTENER_PORT}}", &[("LISTENER_PORT", "10000")]).unwrap();
/// assert_eq!(yaml, "port_value: 10000");
/// assert!(testkit::render("{{ADMIN_PORT}}", &[]).is_err());
/// ```
pub fn render(template: &str, vars: &[(&str, &str)]) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut missing = Vec::new();
    let mut rest = template;
    let mut line = 1;
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        line += before.matches('\n').count();
        let after = &after[2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError::Unterminated { line });
        };
        let name = after[..end].trim();
        match vars.iter().rev().find(|(k, _)| *k == name) {
            Some((_, value)) => out.push_str(value),
            None => missing.push((name.to_string(), line)),
        }
        line += after[..end].matches('\n').count();
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(TemplateError::Unfilled(missing))
    }
}

/// A template with its values, filled in one at a time.
///
/// ```
/// let yaml = testkit::Template::new("{{HOST}}:{{PORT}}").set("HOST", "127.0.0.1").set("PORT", 80).render().unwrap();
/// assert_eq!(yaml, "127.0.0.1:80");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Template {
    text: String,
    vars: BTreeMap<String, String>,
}

impl Template {
    /// A template from text.
    pub fn new(text: impl Into<String>) -> Template {
        Template {
            text: text.into(),
            vars: BTreeMap::new(),
        }
    }

    /// A template from a fixture file.
    pub fn load(path: impl AsRef<Path>) -> Result<Template, TemplateError> {
        let path = path.as_ref();
        std::fs::read_to_string(path)
            .map(Template::new)
            .map_err(|e| TemplateError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// Sets `{{name}}` to `value`.
    pub fn set(mut self, name: &str, value: impl ToString) -> Template {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    /// Sets `{{NAME}}` to `host:port`, `{{NAME_HOST}}` and `{{NAME_PORT}}` from `addr` (an upstream's,
    /// e.g. `.set_addr("UPSTREAM_A", a.addr())`).
    pub fn set_addr(self, name: &str, addr: std::net::SocketAddr) -> Template {
        self.set(name, addr)
            .set(&format!("{name}_HOST"), addr.ip())
            .set(&format!("{name}_PORT"), addr.port())
    }

    /// The text with every placeholder filled; errors on any left unfilled.
    pub fn render(&self) -> Result<String, TemplateError> {
        let vars: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        render(&self.text, &vars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_reports_missing_with_lines() {
        let t = "a: {{ A }}\nb: {{B}}\nc: {{C}}\n";
        assert_eq!(
            render(t, &[("A", "1"), ("B", "2"), ("C", "3")]),
            Ok("a: 1\nb: 2\nc: 3\n".to_string())
        );
        assert_eq!(
            render(t, &[("A", "1")]),
            Err(TemplateError::Unfilled(vec![
                ("B".to_string(), 2),
                ("C".to_string(), 3)
            ]))
        );
        assert_eq!(
            render("x\n{{A", &[("A", "1")]),
            Err(TemplateError::Unterminated { line: 2 })
        );
    }
}
