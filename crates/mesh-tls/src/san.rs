//! Subject alternative names: reading them from certificates and matching them as Envoy's
//! `match_typed_subject_alt_names` does.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use regex::Regex;
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{Error, SpiffeId};

/// The kind of a SAN entry (Envoy's `SubjectAltNameMatcher.SanType`, without `OTHER_NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SanType {
    Dns,
    Uri,
    Email,
    IpAddress,
}

impl fmt::Display for SanType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SanType::Dns => "DNS",
            SanType::Uri => "URI",
            SanType::Email => "email",
            SanType::IpAddress => "IP",
        })
    }
}

/// One SAN entry of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    Dns(String),
    Uri(String),
    Email(String),
    IpAddress(IpAddr),
}

impl SubjectAltName {
    /// The entry's kind.
    pub fn san_type(&self) -> SanType {
        match self {
            SubjectAltName::Dns(_) => SanType::Dns,
            SubjectAltName::Uri(_) => SanType::Uri,
            SubjectAltName::Email(_) => SanType::Email,
            SubjectAltName::IpAddress(_) => SanType::IpAddress,
        }
    }

    /// The value as Envoy renders it for matching (IP addresses in their textual form).
    pub fn value(&self) -> std::borrow::Cow<'_, str> {
        match self {
            SubjectAltName::Dns(s) | SubjectAltName::Uri(s) | SubjectAltName::Email(s) => {
                std::borrow::Cow::Borrowed(s)
            }
            SubjectAltName::IpAddress(ip) => std::borrow::Cow::Owned(ip.to_string()),
        }
    }
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.san_type(), self.value())
    }
}

/// The SAN entries (DNS, URI, email, IP) of a DER certificate, in order. Other kinds are skipped.
pub fn subject_alt_names(cert: &CertificateDer<'_>) -> Result<Vec<SubjectAltName>, Error> {
    let (_, x509) = X509Certificate::from_der(cert.as_ref()).map_err(|e| bad_cert("peer", e))?;
    sans_of(&x509, "peer")
}

fn bad_cert(origin: &str, reason: impl ToString) -> Error {
    Error::BadCertificate {
        what: "certificate",
        origin: origin.to_owned(),
        reason: reason.to_string(),
    }
}

/// The SAN entries of a parsed certificate.
fn sans_of(x509: &X509Certificate<'_>, origin: &str) -> Result<Vec<SubjectAltName>, Error> {
    let Some(ext) = x509
        .subject_alternative_name()
        .map_err(|e| bad_cert(origin, e))?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(ext.value.general_names.len());
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(s) => out.push(SubjectAltName::Dns((*s).to_owned())),
            GeneralName::URI(s) => out.push(SubjectAltName::Uri((*s).to_owned())),
            GeneralName::RFC822Name(s) => out.push(SubjectAltName::Email((*s).to_owned())),
            GeneralName::IPAddress(bytes) => {
                if let Ok(b) = <[u8; 4]>::try_from(*bytes) {
                    out.push(SubjectAltName::IpAddress(IpAddr::V4(Ipv4Addr::from(b))));
                } else if let Ok(b) = <[u8; 16]>::try_from(*bytes) {
                    out.push(SubjectAltName::IpAddress(IpAddr::V6(Ipv6Addr::from(b))));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// What `bosun proxy-config secrets` shows of a certificate: serial, validity and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// Lowercase hex, as `istioctl proxy-config secret` prints it.
    pub serial: String,
    pub not_before: std::time::SystemTime,
    pub not_after: std::time::SystemTime,
    /// Whether its basic constraints make it a CA.
    pub is_ca: bool,
    pub subject_alt_names: Vec<SubjectAltName>,
}

impl CertificateSummary {
    /// Whether `now` is within its validity.
    pub fn valid_at(&self, now: std::time::SystemTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Reads the serial, validity, CA flag and SANs of the first certificate in `pem` (a chain's leaf).
pub fn summarize_pem(pem: &[u8], origin: &str) -> Result<CertificateSummary, Error> {
    let certs = crate::pem::parse_certs("certificate", origin, pem)?;
    match certs.first() {
        Some(first) => summarize(first, origin),
        None => Err(Error::NotFound {
            what: "certificate",
            origin: origin.to_owned(),
            expected: "-----BEGIN CERTIFICATE-----",
        }),
    }
}

fn summarize(cert: &CertificateDer<'_>, origin: &str) -> Result<CertificateSummary, Error> {
    let (_, x509) = X509Certificate::from_der(cert.as_ref()).map_err(|e| bad_cert(origin, e))?;
    let at = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        let magnitude = std::time::Duration::from_secs(secs.unsigned_abs());
        if secs >= 0 {
            std::time::UNIX_EPOCH + magnitude
        } else {
            std::time::UNIX_EPOCH - magnitude
        }
    };
    let validity = x509.validity();
    Ok(CertificateSummary {
        serial: x509
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        not_before: at(validity.not_before),
        not_after: at(validity.not_after),
        is_ca: x509.is_ca(),
        subject_alt_names: sans_of(&x509, origin)?,
    })
}

/// The SPIFFE identity of a peer: the first URI SAN of the leaf (first certificate) that is an
/// Istio SPIFFE ID. `None` if there is no certificate or no such SAN.
pub fn peer_identity(chain: &[CertificateDer<'_>]) -> Option<SpiffeId> {
    let leaf = chain.first()?;
    subject_alt_names(leaf)
        .ok()?
        .into_iter()
        .find_map(|san| match san {
            SubjectAltName::Uri(uri) => SpiffeId::parse(&uri).ok(),
            _ => None,
        })
}

/// The SPIFFE identity of the peer of a TLS connection (client or server side), once the handshake
/// is complete. Works with `tokio_rustls` streams via `stream.get_ref().1`.
pub fn peer_identity_of(conn: &rustls::CommonState) -> Option<SpiffeId> {
    peer_identity(conn.peer_certificates()?)
}

// === impl StringMatcher ===

/// Envoy's `type.matcher.v3.StringMatcher`: exact, prefix, suffix, contains or (RE2-style, full
/// match) regex, optionally case-insensitive (not for regex, as in Envoy).
#[derive(Debug, Clone)]
pub struct StringMatcher {
    pattern: Pattern,
    ignore_case: bool,
}

#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex { source: String, regex: Regex },
}

impl StringMatcher {
    pub fn exact(s: impl Into<String>) -> Self {
        Self::new(Pattern::Exact(s.into()))
    }

    pub fn prefix(s: impl Into<String>) -> Self {
        Self::new(Pattern::Prefix(s.into()))
    }

    pub fn suffix(s: impl Into<String>) -> Self {
        Self::new(Pattern::Suffix(s.into()))
    }

    pub fn contains(s: impl Into<String>) -> Self {
        Self::new(Pattern::Contains(s.into()))
    }

    /// A regex that must match the whole value (Envoy's `safe_regex`).
    pub fn regex(pattern: &str) -> Result<Self, Error> {
        let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| Error::Regex {
            pattern: pattern.to_owned(),
            source: Box::new(e),
        })?;
        Ok(Self::new(Pattern::Regex {
            source: pattern.to_owned(),
            regex,
        }))
    }

    /// Compare ASCII case-insensitively (ignored for regex, as in Envoy).
    pub fn ignore_case(mut self, ignore_case: bool) -> Self {
        self.ignore_case = ignore_case;
        self
    }

    fn new(pattern: Pattern) -> Self {
        StringMatcher {
            pattern,
            ignore_case: false,
        }
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        let fold = |s: &str| {
            if self.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_owned()
            }
        };
        match &self.pattern {
            Pattern::Exact(p) if self.ignore_case => value.eq_ignore_ascii_case(p),
            Pattern::Exact(p) => value == p,
            Pattern::Prefix(p) => fold(value).starts_with(&fold(p)),
            Pattern::Suffix(p) => fold(value).ends_with(&fold(p)),
            Pattern::Contains(p) => fold(value).contains(&fold(p)),
            Pattern::Regex { regex, .. } => regex.is_match(value),
        }
    }

    fn exact_value(&self) -> Option<&str> {
        match &self.pattern {
            Pattern::Exact(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for StringMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, value) = match &self.pattern {
            Pattern::Exact(p) => ("exact", p),
            Pattern::Prefix(p) => ("prefix", p),
            Pattern::Suffix(p) => ("suffix", p),
            Pattern::Contains(p) => ("contains", p),
            Pattern::Regex { source, .. } => ("regex", source),
        };
        write!(f, "{kind} {value:?}")?;
        if self.ignore_case {
            f.write_str(" (ignore case)")?;
        }
        Ok(())
    }
}

// === impl SanMatcher ===

/// Envoy's `SubjectAltNameMatcher`: a SAN type and a string matcher over the values of that type.
#[derive(Debug, Clone)]
pub struct SanMatcher {
    san_type: SanType,
    matcher: StringMatcher,
}

impl SanMatcher {
    pub fn new(san_type: SanType, matcher: StringMatcher) -> Self {
        SanMatcher { san_type, matcher }
    }

    /// Exactly this SPIFFE identity (a URI SAN), as Istio's mTLS peer checks use.
    pub fn spiffe_id(id: &SpiffeId) -> Self {
        Self::new(SanType::Uri, StringMatcher::exact(id.to_string()))
    }

    /// Any identity in this trust domain (URI prefix `spiffe://<td>/`).
    pub fn trust_domain(trust_domain: &str) -> Self {
        Self::new(
            SanType::Uri,
            StringMatcher::prefix(format!("{}{trust_domain}/", crate::spiffe::SCHEME)),
        )
    }

    /// A DNS name, exactly (a `*.` wildcard in the certificate matches one label, as in Envoy).
    pub fn dns_exact(name: impl Into<String>) -> Self {
        Self::new(SanType::Dns, StringMatcher::exact(name))
    }

    pub fn san_type(&self) -> SanType {
        self.san_type
    }

    pub fn matcher(&self) -> &StringMatcher {
        &self.matcher
    }

    /// Whether this SAN entry matches.
    pub fn matches(&self, san: &SubjectAltName) -> bool {
        if san.san_type() != self.san_type {
            return false;
        }
        let value = san.value();
        if self.matcher.matches(&value) {
            return true;
        }
        match (san, self.matcher.exact_value()) {
            (SubjectAltName::Dns(dns), Some(expected)) => dns_wildcard_match(expected, dns),
            _ => false,
        }
    }
}

impl fmt::Display for SanMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.san_type, self.matcher)
    }
}

/// Whether any SAN matches any matcher (Envoy accepts the peer on the first match).
pub fn any_san_matches(matchers: &[SanMatcher], sans: &[SubjectAltName]) -> bool {
    sans.iter()
        .any(|san| matchers.iter().any(|m| m.matches(san)))
}

/// `*.example.com` in a certificate matches `foo.example.com` (one label, not `example.com`).
fn dns_wildcard_match(expected: &str, pattern: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    if !suffix.starts_with('.') || suffix.len() < 2 {
        return false;
    }
    let Some(label_end) = expected.find('.') else {
        return false;
    };
    label_end > 0 && expected[label_end..].eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn uri(s: &str) -> SubjectAltName {
        SubjectAltName::Uri(s.to_owned())
    }

    #[test]
    fn certificates_are_summarized() {
        use std::time::{Duration, SystemTime};
        let ca = crate::CertificateAuthority::generate("cluster.local").expect("CA");
        let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/reviews").expect("id");
        let before = SystemTime::now() - Duration::from_secs(5 * 60);
        let cert = ca
            .issue_workload(&id, Duration::from_secs(3600))
            .expect("issue");
        let leaf = summarize_pem(cert.cert_chain_pem.as_bytes(), "test").expect("summary");
        assert_eq!(leaf.subject_alt_names, [uri(&id.to_string())]);
        assert!(!leaf.is_ca);
        assert_eq!(leaf.not_after, cert.not_after);
        assert!(
            leaf.not_before >= before - Duration::from_secs(3600),
            "clock skew allowance"
        );
        assert!(leaf.valid_at(SystemTime::now()));
        assert!(!leaf.valid_at(cert.not_after + Duration::from_secs(1)));
        assert!(!leaf.serial.is_empty() && leaf.serial.chars().all(|c| c.is_ascii_hexdigit()));

        let root = summarize_pem(ca.root_pem().as_bytes(), "test").expect("summary");
        assert!(root.is_ca);
        assert_ne!(root.serial, leaf.serial);

        assert!(matches!(
            summarize_pem(b"not pem", "test"),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn string_matchers() {
        let v = "spiffe://cluster.local/ns/default/sa/reviews";
        assert!(StringMatcher::exact(v).matches(v));
        assert!(!StringMatcher::exact("spiffe://cluster.local/ns/default/sa/REVIEWS").matches(v));
        assert!(
            StringMatcher::exact("spiffe://cluster.local/ns/default/sa/REVIEWS")
                .ignore_case(true)
                .matches(v)
        );
        assert!(StringMatcher::prefix("spiffe://cluster.local/").matches(v));
        assert!(StringMatcher::suffix("/sa/reviews").matches(v));
        assert!(StringMatcher::contains("/ns/default/").matches(v));
        assert!(
            StringMatcher::regex(r"spiffe://cluster\.local/ns/[^/]+/sa/reviews")
                .unwrap()
                .matches(v)
        );
        // Full match, not search.
        assert!(!StringMatcher::regex("ns/default").unwrap().matches(v));
        let err = StringMatcher::regex("(").unwrap_err().to_string();
        assert!(err.contains("invalid SAN regex"), "{err}");
    }

    #[test]
    fn san_matcher_checks_type_and_wildcards() {
        let m = SanMatcher::new(SanType::Uri, StringMatcher::exact("spiffe://a/ns/b/sa/c"));
        assert!(m.matches(&uri("spiffe://a/ns/b/sa/c")));
        assert!(!m.matches(&SubjectAltName::Dns("spiffe://a/ns/b/sa/c".into())));
        let d = SanMatcher::dns_exact("api.example.com");
        assert!(d.matches(&SubjectAltName::Dns("*.example.com".into())));
        assert!(
            !SanMatcher::dns_exact("example.com")
                .matches(&SubjectAltName::Dns("*.example.com".into()))
        );
        assert!(
            !SanMatcher::dns_exact("a.b.example.com")
                .matches(&SubjectAltName::Dns("*.example.com".into()))
        );
        let ip = SanMatcher::new(SanType::IpAddress, StringMatcher::exact("127.0.0.1"));
        assert!(ip.matches(&SubjectAltName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))));
        let td = SanMatcher::trust_domain("cluster.local");
        assert!(td.matches(&uri("spiffe://cluster.local/ns/x/sa/y")));
        assert!(!td.matches(&uri("spiffe://cluster.localx/ns/x/sa/y")));
    }
}
