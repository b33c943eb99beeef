//! Kubernetes `Secret`s holding TLS credentials, as a Gateway's `credentialName` names them.
//!
//! istiod serves such a secret to the gateway over SDS; the keys it reads are those of a
//! `kubernetes.io/tls` secret (`tls.crt`, `tls.key`, `ca.crt`) or of Istio's generic form (`cert`,
//! `key`, `cacert`), from `data` (base64) or `stringData` (plain text, as `kubectl` would merge it).

use base64::Engine as _;

use crate::diag::{Finding, Severity, code};
use crate::yaml::{Node, Pos, Value};

/// A secret's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSecret {
    pub name: String,
    /// `default` when the secret does not say.
    pub namespace: String,
    /// The certificate chain (PEM), if the secret has one.
    pub cert_chain: Option<Vec<u8>>,
    /// The private key (PEM), if the secret has one.
    pub private_key: Option<Vec<u8>>,
    /// CA certificates (PEM) to verify clients with, if the secret has them.
    pub ca_cert: Option<Vec<u8>>,
}

/// The keys each item may come under, Kubernetes' first.
const CERT_KEYS: [&str; 2] = ["tls.crt", "cert"];
const KEY_KEYS: [&str; 2] = ["tls.key", "key"];
const CA_KEYS: [&str; 2] = ["ca.crt", "cacert"];

/// Reads a `v1` `Secret` document. `Err` says what is wrong with it, and where.
pub fn from_document(doc: &Node) -> Result<CredentialSecret, Finding> {
    let error = |field: String, pos: Pos, message: String| Finding {
        severity: Severity::Error,
        code: code::SCHEMA_VALIDATION_ERROR,
        message,
        field,
        pos,
    };
    let metadata = doc.get("metadata");
    let text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Node::as_str);
    let Some(name) = text("name").filter(|n| !n.is_empty()) else {
        let message = "a Secret needs metadata.name (what credentialName names)".to_owned();
        return Err(error("metadata.name".to_owned(), doc.pos, message));
    };
    let mut items: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(data) = doc.get("data") {
        for (key, value) in string_entries(data) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap_or_default().split_whitespace().collect::<String>())
                .map_err(|e| {
                    let message = format!(
                        "data.{key} of Secret {name} is not base64 ({e}); put plain text under stringData instead"
                    );
                    error(format!("data.{key}"), value.pos, message)
                })?;
            items.push((key.to_owned(), decoded));
        }
    }
    // As the API server does: `stringData` wins over `data` for the same key.
    if let Some(data) = doc.get("stringData") {
        for (key, value) in string_entries(data) {
            let value = value.as_str().unwrap_or_default();
            items.retain(|(k, _)| k != key);
            items.push((key.to_owned(), value.as_bytes().to_vec()));
        }
    }
    let find = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| items.iter().find(|(key, _)| key == k))
            .map(|(_, v)| v.clone())
    };
    Ok(CredentialSecret {
        name: name.to_owned(),
        namespace: text("namespace").unwrap_or("default").to_owned(),
        cert_chain: find(&CERT_KEYS),
        private_key: find(&KEY_KEYS),
        ca_cert: find(&CA_KEYS),
    })
}

/// A mapping's entries with string values (others are not secret data Istio reads).
fn string_entries(node: &Node) -> impl Iterator<Item = (&str, &Node)> {
    let entries = match &node.value {
        Value::Map(entries) => entries.as_slice(),
        _ => &[],
    };
    entries
        .iter()
        .filter(|e| e.value.as_str().is_some())
        .map(|e| (e.key.as_str(), &e.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::load_str;

    #[test]
    fn a_tls_secret_is_read_from_data_and_string_data() {
        let loaded = load_str(
            "apiVersion: v1
kind: Secret
metadata: {name: web-credential, namespace: istio-system}
type: kubernetes.io/tls
data:
  tls.crt: Q0VSVA==
  tls.key: |
    S0V
    Z
stringData:
  ca.crt: the CA
",
            None,
        );
        assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
        assert_eq!(
            loaded.secrets,
            [CredentialSecret {
                name: "web-credential".into(),
                namespace: "istio-system".into(),
                cert_chain: Some(b"CERT".to_vec()),
                private_key: Some(b"KEY".to_vec()),
                ca_cert: Some(b"the CA".to_vec()),
            }]
        );
    }

    #[test]
    fn istios_generic_keys_and_the_default_namespace() {
        let loaded = load_str(
            "apiVersion: v1
kind: Secret
metadata: {name: generic}
stringData: {cert: C, key: K, cacert: A}
",
            None,
        );
        let s = &loaded.secrets[0];
        assert_eq!(s.namespace, "default");
        assert_eq!(
            (&s.cert_chain, &s.private_key, &s.ca_cert),
            (
                &Some(b"C".to_vec()),
                &Some(b"K".to_vec()),
                &Some(b"A".to_vec())
            )
        );
    }

    #[test]
    fn data_that_is_not_base64_is_an_error_at_the_secret() {
        let loaded = load_str(
            "apiVersion: v1
kind: Secret
metadata: {name: broken}
data: {tls.crt: 'not base64!'}
",
            None,
        );
        assert!(loaded.secrets.is_empty());
        let f = &loaded.findings[0];
        assert_eq!(
            f.message,
            "data.tls.crt of Secret broken is not base64 (Invalid symbol 33, offset 9.); put plain text under stringData instead"
        );
        assert_eq!(f.field, "data.tls.crt");
        assert_eq!((f.pos.line, f.pos.column), (4, 17));
    }
}
