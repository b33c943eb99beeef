//! Bosun's mesh TLS: SPIFFE identities, the mesh CA, and rustls configs and verifiers.
//!
//! - [`SpiffeId`]: Istio's `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` identities.
//! - [`CertificateAuthority`]: generates or loads the mesh CA and issues workload certificates the
//!   way istiod does (SPIFFE ID as URI SAN, client + server auth).
//! - [`server_config`] / [`client_config`]: rustls configs for Envoy's `DownstreamTlsContext` /
//!   `UpstreamTlsContext`, from PEM files or memory ([`Identity`], [`RootStore`]), with peers checked
//!   by SAN matchers ([`SanMatcher`], Envoy's `match_typed_subject_alt_names`) instead of hostnames.
//! - [`peer_identity`] / [`peer_identity_of`]: the SPIFFE ID of the peer of a connection.
//!
//! All configs use rustls' ring provider ([`crypto_provider`]).
//!
//! ```
//! use std::time::Duration;
//! use mesh_tls::*;
//!
//! # fn main() -> Result<(), Error> {
//! let ca = CertificateAuthority::generate("cluster.local")?;
//! let roots = RootStore::from_pem(ca.root_pem().as_bytes())?;
//! let reviews = SpiffeId::for_workload("cluster.local", "default", "reviews")?;
//! let productpage: SpiffeId = "spiffe://cluster.local/ns/default/sa/productpage".parse()?;
//! let day = Duration::from_secs(24 * 3600);
//!
//! // The reviews sidecar's inbound listener: STRICT mTLS, only productpage may call.
//! let server = server_config(
//!     &ca.issue_workload(&reviews, day)?.identity()?,
//!     &ServerOptions {
//!         client_auth: ClientAuth::Required(
//!             PeerValidation::new(roots.clone())
//!                 .with_san_matchers(vec![SanMatcher::spiffe_id(&productpage)]),
//!         ),
//!         alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
//!         ..ServerOptions::default()
//!     },
//! )?;
//!
//! // The productpage sidecar's outbound cluster to reviews.
//! let client = client_config(&ClientOptions {
//!     identity: Some(ca.issue_workload(&productpage, day)?.identity()?),
//!     alpn: vec![b"h2".to_vec()],
//!     ..ClientOptions::new(Verify::SanMatch(
//!         PeerValidation::new(roots).with_san_matchers(vec![SanMatcher::spiffe_id(&reviews)]),
//!     ))
//! })?;
//! # let _ = (server, client);
//! # Ok(())
//! # }
//! ```

mod ca;
mod client_cert;
mod config;
mod error;
mod pem;
mod san;
mod select;
mod spiffe;
mod verify;

pub use ca::{
    CLOCK_SKEW_ALLOWANCE, CertificateAuthority, DEFAULT_CA_VALIDITY, DEFAULT_WORKLOAD_VALIDITY,
    MAX_CA_VALIDITY, MAX_WORKLOAD_VALIDITY, WorkloadCert,
};
pub use client_cert::{PeerCertificate, uri_names};
pub use config::{
    ClientAuth, ClientOptions, EcdhCurves, PeerValidation, ServerOptions, Tls12Ciphers, TlsVersion,
    TlsVersions, Verify, client_config, crypto_provider, server_config, server_config_choosing,
};
pub use error::Error;
pub use pem::{Identity, RootStore};
pub use san::{
    CertificateSummary, SanMatcher, SanType, StringMatcher, SubjectAltName, any_san_matches,
    peer_identity, peer_identity_of, subject_alt_names, summarize_pem,
};
pub use spiffe::{SpiffeId, SpiffeIdError};
pub use verify::SanMismatch;

/// The rustls this crate builds on, so dependents name the same types.
pub use rustls;
