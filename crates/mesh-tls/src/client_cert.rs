//! What a peer's certificate says in Envoy's `x-forwarded-client-cert` (XFCC) element: its hash, its
//! subject (RFC 2253, as BoringSSL prints it), its URI and DNS names, and the certificate and chain
//! as URL-encoded PEM.

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use crate::{SubjectAltName, subject_alt_names};

/// A peer certificate's details, read once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Lowercase hex SHA-256 of the leaf's DER.
    pub hash: String,
    /// The leaf's subject, RFC 2253 (`CN=client,O=Acme\, Inc.,C=US`).
    pub subject: String,
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    /// The leaf as PEM, URL-encoded.
    pub cert: String,
    /// The chain as the peer sent it, as PEM, URL-encoded.
    pub chain: String,
}

impl PeerCertificate {
    /// The details of `chain` (leaf first); `None` for an empty chain or a leaf that does not parse.
    pub fn of(chain: &[CertificateDer<'_>]) -> Option<PeerCertificate> {
        let leaf = chain.first()?;
        let (_, x509) = X509Certificate::from_der(leaf.as_ref()).ok()?;
        let (mut uris, mut dns) = (Vec::new(), Vec::new());
        for san in subject_alt_names(leaf).ok()? {
            match san {
                SubjectAltName::Uri(u) => uris.push(u),
                SubjectAltName::Dns(d) => dns.push(d),
                _ => {}
            }
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, leaf.as_ref());
        let hash = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Some(PeerCertificate {
            hash,
            subject: rfc2253(x509.subject()),
            uris,
            dns,
            cert: url_encoded(&pem(leaf)),
            chain: url_encoded(&chain.iter().map(pem).collect::<String>()),
        })
    }
}

/// The URI names of a certificate (the `By` of an XFCC element, for the proxy's own).
pub fn uri_names(cert: &CertificateDer<'_>) -> Vec<String> {
    subject_alt_names(cert)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|san| match san {
            SubjectAltName::Uri(u) => Some(u),
            _ => None,
        })
        .collect()
}

/// A DER certificate as PEM: base64 in lines of 64, as OpenSSL writes it.
fn pem(der: &CertificateDer<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) percent-encoded.
fn url_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A name as RFC 2253 writes it (OpenSSL's `XN_FLAG_RFC2253`): the last RDN first, RDNs joined by
/// `,`, the attributes of one by `+`, short type names, special characters escaped.
fn rfc2253(name: &X509Name<'_>) -> String {
    // OpenSSL reverses the name's whole list of attributes, so those of a multi-valued RDN too.
    let mut rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            let mut attributes: Vec<String> = rdn.iter().map(attribute).collect();
            attributes.reverse();
            attributes.join("+")
        })
        .collect();
    rdns.reverse();
    rdns.join(",")
}

fn attribute(a: &AttributeTypeAndValue<'_>) -> String {
    let oid = a.attr_type().to_id_string();
    let short = match oid.as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "serialNumber",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.4" => "SN",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => oid.as_str(),
    };
    let value = a.as_str().unwrap_or_default();
    format!("{short}={}", escaped(value))
}

/// RFC 2253 escapes: `, + " \ < > ;` always, a leading `#` or space and a trailing space, and
/// control or non-ASCII bytes as `\XX`.
fn escaped(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    for (i, &b) in bytes.iter().enumerate() {
        let edge = (i == 0 && (b == b'#' || b == b' ')) || (i + 1 == bytes.len() && b == b' ');
        if b",+\"\\<>;".contains(&b) || edge {
            out.push('\\');
            out.push(char::from(b));
        } else if !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("\\{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_rfc_2253s() {
        assert_eq!(escaped("Acme, Inc."), "Acme\\, Inc.");
        assert_eq!(escaped("#x "), "\\#x\\ ");
        assert_eq!(escaped("a+b;c\"d"), "a\\+b\\;c\\\"d");
        assert_eq!(
            url_encoded("-----BEGIN X-----\nab/+=\n"),
            "-----BEGIN%20X-----%0Aab%2F%2B%3D%0A"
        );
    }

    #[test]
    fn a_workload_certificate_has_its_spiffe_id_an_empty_subject_and_its_hash() {
        let ca = crate::CertificateAuthority::generate("cluster.local").expect("CA");
        let id = crate::SpiffeId::for_workload("cluster.local", "default", "sleep").expect("id");
        let cert = ca
            .issue_workload(&id, std::time::Duration::from_secs(3600))
            .expect("cert")
            .identity()
            .expect("identity");
        let details = PeerCertificate::of(cert.cert_chain()).expect("details");
        assert_eq!(details.uris, ["spiffe://cluster.local/ns/default/sa/sleep"]);
        assert_eq!(details.subject, "");
        assert_eq!(details.hash.len(), 64);
        assert!(details.cert.starts_with("-----BEGIN%20CERTIFICATE-----%0A"));
        assert_eq!(uri_names(&cert.cert_chain()[0]), details.uris);
    }
}
