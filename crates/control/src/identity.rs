//! Workload identities for `ISTIO_MUTUAL`: a CA of the control plane's own issues each proxy a
//! certificate for its SPIFFE identity (`spiffe://cluster.local/ns/NS/sa/SA`), which it is sent with
//! the CA's root over SDS under the names Istio's agent serves them by: `default` (certificate and
//! key) and `ROOTCA` (the root to verify peers with).
//!
//! Unlike istiod, whose agent makes the key beside the proxy and sends only a signing request, the
//! control plane makes the key and sends it over the xDS connection: fit for one machine (loopback),
//! not for an xDS connection across a network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use mesh_tls::{CertificateAuthority, SpiffeId, WorkloadCert};
use xds_api::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use xds_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};

/// SDS name of a proxy's own certificate and key.
pub const WORKLOAD_SECRET: &str = "default";
/// SDS name of the root that verifies peers.
pub const ROOT_SECRET: &str = "ROOTCA";
/// Istio's trust domain.
pub const TRUST_DOMAIN: &str = "cluster.local";
/// How long an issued certificate is good for; it is issued anew when half of that has passed.
const VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// Why identities cannot be issued.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot make the mesh CA: {0}")]
    Ca(#[source] mesh_tls::Error),
    #[error("cannot issue a certificate for {id}: {source}")]
    Issue {
        id: String,
        #[source]
        source: mesh_tls::Error,
    },
    #[error("not a SPIFFE identity: {0}")]
    Id(#[from] mesh_tls::SpiffeIdError),
}

/// The mesh CA and the certificates it issued, by identity (kept, so that every push sends a proxy
/// the same certificate until it is due for renewal).
#[derive(Debug)]
pub struct MeshIdentity {
    ca: CertificateAuthority,
    issued: Mutex<HashMap<SpiffeId, (SystemTime, Arc<WorkloadCert>)>>,
}

impl MeshIdentity {
    /// A new CA for the trust domain `cluster.local`.
    pub fn generate() -> Result<MeshIdentity, IdentityError> {
        Ok(MeshIdentity {
            ca: CertificateAuthority::generate(TRUST_DOMAIN).map_err(IdentityError::Ca)?,
            issued: Mutex::default(),
        })
    }

    /// The root certificate (PEM) peers are verified with.
    pub fn root_pem(&self) -> String {
        self.ca.root_pem()
    }

    /// The `default` and `ROOTCA` secrets of the workload `service_account` in `namespace`.
    pub fn secrets(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<[Secret; 2], IdentityError> {
        self.secrets_at(namespace, service_account, SystemTime::now())
    }

    /// Whether a certificate issued has lived half its life: the next push renews it (the control
    /// plane checks this on a timer, so that proxies are renewed without a config change).
    pub fn renewal_due(&self) -> bool {
        self.renewal_due_at(SystemTime::now())
    }

    fn renewal_due_at(&self, now: SystemTime) -> bool {
        let issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued
            .values()
            .any(|(at, _)| now.duration_since(*at).unwrap_or_default() >= VALIDITY / 2)
    }

    fn secrets_at(
        &self,
        namespace: &str,
        service_account: &str,
        now: SystemTime,
    ) -> Result<[Secret; 2], IdentityError> {
        let id = SpiffeId::for_workload(TRUST_DOMAIN, namespace, service_account)?;
        let cert = self.certificate(&id, now)?;
        let inline = |pem: &str| DataSource {
            specifier: Some(Specifier::InlineBytes(pem.as_bytes().to_vec())),
            ..Default::default()
        };
        Ok([
            Secret {
                name: WORKLOAD_SECRET.to_owned(),
                r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                    certificate_chain: Some(inline(&cert.cert_chain_pem)),
                    private_key: Some(inline(&cert.key_pem)),
                    ..Default::default()
                })),
            },
            Secret {
                name: ROOT_SECRET.to_owned(),
                r#type: Some(secret::Type::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: Some(inline(&self.ca.root_pem())),
                        ..Default::default()
                    },
                )),
            },
        ])
    }

    /// The certificate of `id`: the one issued before, unless half its life is gone at `now`.
    fn certificate(
        &self,
        id: &SpiffeId,
        now: SystemTime,
    ) -> Result<Arc<WorkloadCert>, IdentityError> {
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, cert)) = issued.get(id)
            && now.duration_since(*at).unwrap_or_default() < VALIDITY / 2
        {
            return Ok(cert.clone());
        }
        let cert = Arc::new(self.ca.issue_workload(id, VALIDITY).map_err(|source| {
            IdentityError::Issue {
                id: id.to_string(),
                source,
            }
        })?);
        issued.insert(id.clone(), (now, cert.clone()));
        Ok(cert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_keeps_its_certificate_between_pushes() {
        let mesh = MeshIdentity::generate().expect("CA");
        let [a, root] = mesh.secrets("default", "reviews").expect("secrets");
        let [again, _] = mesh.secrets("default", "reviews").expect("secrets");
        assert_eq!(a, again, "the same certificate and key");
        let [other, _] = mesh.secrets("default", "ratings").expect("secrets");
        assert_ne!(a, other);
        assert_eq!((a.name.as_str(), root.name.as_str()), ("default", "ROOTCA"));
        let Some(secret::Type::TlsCertificate(c)) = &a.r#type else {
            panic!("a certificate");
        };
        let pem = |d: &Option<DataSource>| match d.as_ref().and_then(|d| d.specifier.as_ref()) {
            Some(Specifier::InlineBytes(b)) => b.clone(),
            other => panic!("inline: {other:?}"),
        };
        let (chain, key) = (pem(&c.certificate_chain), pem(&c.private_key));
        mesh_tls::Identity::from_pem(&chain, &key).expect("a certificate and its key");
        // The SAN is the workload's SPIFFE identity (an IA5String: its bytes as they are).
        use base64::Engine as _;
        let body: String = String::from_utf8_lossy(&chain)
            .lines()
            .take_while(|l| !l.starts_with("-----END"))
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64");
        let id = b"spiffe://cluster.local/ns/default/sa/reviews";
        assert!(der.windows(id.len()).any(|w| w == id));
    }

    #[test]
    fn a_certificate_is_renewed_when_half_its_life_is_gone() {
        let mesh = MeshIdentity::generate().expect("CA");
        let now = SystemTime::now();
        let [first, _] = mesh.secrets_at("default", "reviews", now).expect("secrets");
        assert!(!mesh.renewal_due_at(now + VALIDITY / 4));
        let [kept, _] = mesh
            .secrets_at("default", "reviews", now + VALIDITY / 4)
            .expect("secrets");
        assert_eq!(first, kept);
        let later = now + VALIDITY / 2;
        assert!(mesh.renewal_due_at(later));
        let [renewed, _] = mesh
            .secrets_at("default", "reviews", later)
            .expect("secrets");
        assert_ne!(first, renewed, "a new certificate");
        assert!(!mesh.renewal_due_at(later), "renewed: nothing due");
    }

    #[test]
    fn names_that_are_no_spiffe_path_are_refused() {
        let mesh = MeshIdentity::generate().expect("CA");
        assert!(matches!(
            mesh.secrets("default", "a/b"),
            Err(IdentityError::Id(_))
        ));
    }
}
