//! What goes wrong turning xDS into the model: always the field path and what to do about it.

use std::fmt;

/// A configuration the proxy will not run: a field it cannot honour, or a value that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ModelError {
    /// Envoy's field path, `static_resources.clusters[0].lb_policy`.
    pub field: String,
    pub message: String,
}

/// A field path under construction, shared by the builders.
#[derive(Debug, Clone)]
pub struct At(String);

impl At {
    pub fn root(name: impl Into<String>) -> At {
        At(name.into())
    }

    pub fn key(&self, key: &str) -> At {
        if self.0.is_empty() {
            At(key.to_owned())
        } else {
            At(format!("{}.{key}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> At {
        At(format!("{}[{i}]", self.0))
    }

    pub fn error(&self, message: impl Into<String>) -> ModelError {
        ModelError {
            field: self.0.clone(),
            message: message.into(),
        }
    }

    /// The fields of `fields` (`(name, is set, what it does)`, names under this path) that are set,
    /// each refused as [`At::unsupported`], in order.
    pub fn refused<'f>(
        &'f self,
        fields: &'f [(&str, bool, &str)],
    ) -> impl Iterator<Item = ModelError> + 'f {
        fields
            .iter()
            .filter(|(_, set, _)| *set)
            .map(|(field, _, what)| self.key(field).unsupported(what))
    }

    /// The first of `fields` that is set, refused (see [`At::refused`]).
    pub fn refuse_set(&self, fields: &[(&str, bool, &str)]) -> Result<(), ModelError> {
        self.refused(fields).next().map_or(Ok(()), Err)
    }

    /// A field that would change behaviour and that Bosun does not implement.
    pub fn unsupported(&self, what: impl fmt::Display) -> ModelError {
        self.error(format!(
            "{what} is not supported by bosun proxy; remove it or run this configuration on Envoy"
        ))
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Collects the errors of one build, so a config with several problems reports them all.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<ModelError>);

impl Errors {
    pub fn push(&mut self, e: ModelError) {
        self.0.push(e);
    }

    /// Keeps the value of a fallible step, recording its error.
    pub fn take<T>(&mut self, r: Result<T, ModelError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    pub fn into_result<T>(self, value: T) -> Result<T, Vec<ModelError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}
