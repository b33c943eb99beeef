//! SPIFFE identities in Istio's form: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.

use std::fmt;
use std::str::FromStr;

/// The URI scheme of every SPIFFE ID.
pub const SCHEME: &str = "spiffe://";

/// Longest trust domain the SPIFFE spec allows, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Longest SPIFFE ID the SPIFFE spec allows, in bytes (URI SAN limit).
pub const MAX_ID_LEN: usize = 2048;

/// A workload identity as Istio issues it: `spiffe://cluster.local/ns/default/sa/reviews`.
///
/// Parsing follows the SPIFFE ID spec for the trust domain (lowercase letters, digits, `.`, `-`, `_`)
/// and for path segments (letters, digits, `.`, `-`, `_`; not `.` or `..`), and Istio's path shape
/// `/ns/<namespace>/sa/<service-account>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

/// Why a string is not an Istio SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("SPIFFE ID {id:?} does not start with \"spiffe://\"")]
    MissingScheme { id: String },
    #[error("SPIFFE ID {id:?} is {len} bytes long; the limit is {MAX_ID_LEN}")]
    TooLong { id: String, len: usize },
    #[error(
        "SPIFFE ID {id:?} has an empty trust domain (expected spiffe://<trust-domain>/ns/<ns>/sa/<sa>)"
    )]
    EmptyTrustDomain { id: String },
    #[error(
        "trust domain {trust_domain:?} has invalid character {ch:?} at byte {pos}: only lowercase letters, digits, '.', '-' and '_' are allowed"
    )]
    InvalidTrustDomainChar {
        trust_domain: String,
        ch: char,
        pos: usize,
    },
    #[error(
        "trust domain {trust_domain:?} is {len} bytes long; the limit is {MAX_TRUST_DOMAIN_LEN}"
    )]
    TrustDomainTooLong { trust_domain: String, len: usize },
    #[error(
        "SPIFFE ID {id:?} has path {path:?}, but Istio identities have the form /ns/<namespace>/sa/<service-account>"
    )]
    NotIstioPath { id: String, path: String },
    #[error("{what} {value:?} is not a valid SPIFFE path segment: {reason}")]
    InvalidSegment {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("SPIFFE ID {id:?} must not have a query or fragment")]
    QueryOrFragment { id: String },
}

impl SpiffeId {
    /// The identity Istio gives a workload running as service account `sa` in namespace `ns`.
    pub fn for_workload(trust_domain: &str, ns: &str, sa: &str) -> Result<Self, SpiffeIdError> {
        validate_trust_domain(trust_domain)?;
        validate_segment("namespace", ns)?;
        validate_segment("service account", sa)?;
        let id = SpiffeId {
            trust_domain: trust_domain.to_owned(),
            namespace: ns.to_owned(),
            service_account: sa.to_owned(),
        };
        let len = id.to_string().len();
        if len > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong {
                id: id.to_string(),
                len,
            });
        }
        Ok(id)
    }

    /// Parses `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong {
                id: s.to_owned(),
                len: s.len(),
            });
        }
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| SpiffeIdError::MissingScheme { id: s.to_owned() })?;
        if rest.contains(['?', '#']) {
            return Err(SpiffeIdError::QueryOrFragment { id: s.to_owned() });
        }
        let (trust_domain, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if trust_domain.is_empty() {
            return Err(SpiffeIdError::EmptyTrustDomain { id: s.to_owned() });
        }
        validate_trust_domain(trust_domain)?;
        let not_istio = || SpiffeIdError::NotIstioPath {
            id: s.to_owned(),
            path: path.to_owned(),
        };
        let mut parts = path.split('/');
        // The path starts with '/', so the first part is empty.
        let (Some(""), Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(not_istio());
        };
        validate_segment("namespace", ns)?;
        validate_segment("service account", sa)?;
        Ok(SpiffeId {
            trust_domain: trust_domain.to_owned(),
            namespace: ns.to_owned(),
            service_account: sa.to_owned(),
        })
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The Kubernetes namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Kubernetes service account.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Checks a SPIFFE trust domain name (as it appears after `spiffe://`).
pub fn validate_trust_domain(trust_domain: &str) -> Result<(), SpiffeIdError> {
    if trust_domain.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain {
            id: format!("{SCHEME}{trust_domain}"),
        });
    }
    if trust_domain.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong {
            trust_domain: trust_domain.to_owned(),
            len: trust_domain.len(),
        });
    }
    if let Some((pos, ch)) = trust_domain
        .char_indices()
        .find(|&(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        return Err(SpiffeIdError::InvalidTrustDomainChar {
            trust_domain: trust_domain.to_owned(),
            ch,
            pos,
        });
    }
    Ok(())
}

fn validate_segment(what: &'static str, value: &str) -> Result<(), SpiffeIdError> {
    let err = |reason| SpiffeIdError::InvalidSegment {
        what,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(err("it is empty"));
    }
    if value == "." || value == ".." {
        return Err(err("'.' and '..' are not allowed"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(err("only letters, digits, '.', '-' and '_' are allowed"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/bookinfo-reviews").unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "bookinfo-reviews");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
        );
        assert_eq!(
            SpiffeId::for_workload("cluster.local", "default", "bookinfo-reviews").unwrap(),
            id
        );
    }
}
