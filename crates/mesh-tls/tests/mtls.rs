//! mTLS handshakes between tokio-rustls servers and clients built from this crate's configs.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{handshake, rustls_error, san_mismatch};
use mesh_tls::rustls::{AlertDescription, CertificateError, Error as RustlsError};
use mesh_tls::{
    CertificateAuthority, ClientAuth, ClientOptions, Identity, PeerValidation, RootStore,
    SanMatcher, SanType, ServerOptions, SpiffeId, StringMatcher, TlsVersion, TlsVersions, Verify,
    client_config, server_config, server_config_choosing,
};

const DAY: Duration = Duration::from_secs(24 * 3600);
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn alpn() -> Vec<Vec<u8>> {
    ALPN.iter().map(|p| p.to_vec()).collect()
}

struct Mesh {
    ca: CertificateAuthority,
    roots: RootStore,
    frontend: SpiffeId,
    backend: SpiffeId,
    frontend_identity: Identity,
    backend_identity: Identity,
}

fn mesh() -> Mesh {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let roots = RootStore::from_pem(ca.root_pem().as_bytes()).unwrap();
    let frontend = SpiffeId::for_workload("cluster.local", "default", "frontend").unwrap();
    let backend = SpiffeId::for_workload("cluster.local", "shop", "backend").unwrap();
    let frontend_identity = ca
        .issue_workload(&frontend, DAY)
        .unwrap()
        .identity()
        .unwrap();
    let backend_identity = ca
        .issue_workload(&backend, DAY)
        .unwrap()
        .identity()
        .unwrap();
    Mesh {
        ca,
        roots,
        frontend,
        backend,
        frontend_identity,
        backend_identity,
    }
}

fn strict_server(m: &Mesh, allowed: &SpiffeId) -> ServerOptions {
    ServerOptions {
        client_auth: ClientAuth::Required(
            PeerValidation::new(m.roots.clone())
                .with_san_matchers(vec![SanMatcher::spiffe_id(allowed)]),
        ),
        alpn: alpn(),
        ..ServerOptions::default()
    }
}

fn sidecar_client(m: &Mesh, expect: &SpiffeId) -> ClientOptions {
    ClientOptions {
        identity: Some(m.frontend_identity.clone()),
        alpn: alpn(),
        ..ClientOptions::new(Verify::SanMatch(
            PeerValidation::new(m.roots.clone())
                .with_san_matchers(vec![SanMatcher::spiffe_id(expect)]),
        ))
    }
}

#[tokio::test]
async fn mtls_handshake_with_spiffe_ids_and_alpn() {
    let m = mesh();
    let server = server_config(&m.backend_identity, &strict_server(&m, &m.frontend)).unwrap();
    let client = client_config(&sidecar_client(&m, &m.backend)).unwrap();
    // The SNI is Istio's outbound cluster name; the server is checked by SAN, not by this name.
    let h = handshake(
        server,
        client,
        "outbound_.8080_._.backend.shop.svc.cluster.local",
    )
    .await;
    let server = h.server.expect("server side of the handshake");
    let client = h.client.expect("client side of the handshake");
    assert_eq!(server.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(client.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(server.peer.as_ref(), Some(&m.frontend));
    assert_eq!(client.peer.as_ref(), Some(&m.backend));
}

#[tokio::test]
async fn alpn_falls_back_to_http11() {
    let m = mesh();
    let server = server_config(&m.backend_identity, &strict_server(&m, &m.frontend)).unwrap();
    let mut opts = sidecar_client(&m, &m.backend);
    opts.alpn = vec![b"http/1.1".to_vec()];
    let h = handshake(server, client_config(&opts).unwrap(), "backend").await;
    assert_eq!(h.client.unwrap().alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(h.server.unwrap().alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn client_rejects_server_with_other_spiffe_id() {
    let m = mesh();
    let server = server_config(&m.backend_identity, &strict_server(&m, &m.frontend)).unwrap();
    let expected = SpiffeId::for_workload("cluster.local", "shop", "payments").unwrap();
    let client = client_config(&sidecar_client(&m, &expected)).unwrap();
    let h = handshake(server, client, "backend").await;
    let err = h
        .client
        .expect_err("client must refuse the backend's identity");
    let mismatch = san_mismatch(&err).unwrap_or_else(|| panic!("not a SAN mismatch: {err}"));
    let msg = mismatch.to_string();
    assert!(
        msg.contains("URI:spiffe://cluster.local/ns/shop/sa/backend")
            && msg.contains(r#"URI exact "spiffe://cluster.local/ns/shop/sa/payments""#),
        "{msg}"
    );
    // The server hears about it as a certificate_unknown alert.
    let server_err = h.server.expect_err("server sees the alert");
    assert!(
        matches!(
            rustls_error(&server_err),
            Some(RustlsError::AlertReceived(
                AlertDescription::CertificateUnknown
            ))
        ),
        "{server_err}"
    );
}

#[tokio::test]
async fn server_rejects_client_with_other_spiffe_id() {
    let m = mesh();
    let only_payments = SpiffeId::for_workload("cluster.local", "shop", "payments").unwrap();
    let server = server_config(&m.backend_identity, &strict_server(&m, &only_payments)).unwrap();
    let client = client_config(&sidecar_client(&m, &m.backend)).unwrap();
    let h = handshake(server, client, "backend").await;
    let err = h.server.expect_err("server must refuse the frontend");
    let mismatch = san_mismatch(&err).unwrap_or_else(|| panic!("not a SAN mismatch: {err}"));
    assert!(
        mismatch
            .to_string()
            .contains("spiffe://cluster.local/ns/default/sa/frontend"),
        "{mismatch}"
    );
    assert!(h.client.is_err(), "client must not get a pong");
}

#[tokio::test]
async fn san_matchers_accept_prefix_regex_and_trust_domain() {
    let m = mesh();
    let matcher_sets = [
        vec![SanMatcher::trust_domain("cluster.local")],
        vec![SanMatcher::new(
            SanType::Uri,
            StringMatcher::regex(r"spiffe://cluster\.local/ns/shop/sa/[a-z]+").unwrap(),
        )],
        vec![
            SanMatcher::dns_exact("backend.shop.svc"),
            SanMatcher::new(
                SanType::Uri,
                StringMatcher::suffix("/sa/BACKEND").ignore_case(true),
            ),
        ],
    ];
    for matchers in matcher_sets {
        let server = server_config(&m.backend_identity, &strict_server(&m, &m.frontend)).unwrap();
        let mut opts = sidecar_client(&m, &m.backend);
        opts.verify = Verify::SanMatch(
            PeerValidation::new(m.roots.clone()).with_san_matchers(matchers.clone()),
        );
        let h = handshake(server, client_config(&opts).unwrap(), "backend").await;
        assert!(h.client.is_ok(), "{matchers:?}: {:?}", h.client.err());
    }
}

#[tokio::test]
async fn untrusted_ca_is_rejected_both_ways() {
    let m = mesh();
    // Same trust domain, so the same issuer name as the real root: webpki finds the name but the
    // signature does not verify. A root with another name is an unknown issuer.
    let rogue = CertificateAuthority::generate("cluster.local").unwrap();
    let rogue_backend = rogue
        .issue_workload(&m.backend, DAY)
        .unwrap()
        .identity()
        .unwrap();

    // A server with a certificate from another CA, even with the expected SPIFFE ID.
    let server = server_config(&rogue_backend, &strict_server(&m, &m.frontend)).unwrap();
    let client = client_config(&sidecar_client(&m, &m.backend)).unwrap();
    let h = handshake(server, client, "backend").await;
    let err = h
        .client
        .expect_err("client must refuse an untrusted issuer");
    assert!(
        matches!(
            rustls_error(&err),
            Some(RustlsError::InvalidCertificate(
                CertificateError::BadSignature
            ))
        ),
        "{err}"
    );

    // A client with a certificate from a CA of another trust domain.
    let other = CertificateAuthority::generate("other.local").unwrap();
    let server = server_config(&m.backend_identity, &strict_server(&m, &m.frontend)).unwrap();
    let mut opts = sidecar_client(&m, &m.backend);
    opts.identity = Some(
        other
            .issue_workload(&m.frontend, DAY)
            .unwrap()
            .identity()
            .unwrap(),
    );
    let h = handshake(server, client_config(&opts).unwrap(), "backend").await;
    let err = h.server.expect_err("server must refuse an unknown issuer");
    assert!(
        matches!(
            rustls_error(&err),
            Some(RustlsError::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn required_client_auth_refuses_clients_without_certificate() {
    let m = mesh();
    let server = server_config(&m.backend_identity, &strict_server(&m, &m.frontend)).unwrap();
    let mut opts = sidecar_client(&m, &m.backend);
    opts.identity = None;
    let h = handshake(server, client_config(&opts).unwrap(), "backend").await;
    let err = h
        .server
        .expect_err("STRICT mTLS needs a client certificate");
    assert!(
        matches!(
            rustls_error(&err),
            Some(RustlsError::NoCertificatesPresented)
        ),
        "{err}"
    );
}

#[tokio::test]
async fn optional_client_auth_lets_plain_tls_clients_in() {
    let m = mesh();
    let opts = ServerOptions {
        client_auth: ClientAuth::Optional(PeerValidation::new(m.roots.clone())),
        ..ServerOptions::default()
    };
    let server = server_config(&m.backend_identity, &opts).unwrap();
    let mut copts = sidecar_client(&m, &m.backend);
    copts.identity = None;
    let h = handshake(server.clone(), client_config(&copts).unwrap(), "backend").await;
    assert!(h.server.unwrap().peer.is_none());
    // With a certificate, the identity is seen.
    let h = handshake(
        server,
        client_config(&sidecar_client(&m, &m.backend)).unwrap(),
        "b",
    )
    .await;
    assert_eq!(h.server.unwrap().peer, Some(m.frontend.clone()));
}

/// Several certificates in one server config: the one whose name matches the client's server name
/// (exactly, else by a wildcard) is served, else the first; a client checking names fully accepts
/// the first two and refuses the last.
#[tokio::test]
async fn the_certificate_matching_the_server_name_is_served() {
    let m = mesh();
    let issue = |names: &[&str]| m.ca.issue_server(names, DAY).unwrap().identity().unwrap();
    let identities = [
        issue(&["default.example.com"]),
        issue(&["one.example.com"]),
        issue(&["*.wild.example.com"]),
    ];
    let server = server_config_choosing(&identities, &ServerOptions::default()).unwrap();
    let client = client_config(&ClientOptions::new(Verify::Full(m.roots.clone()))).unwrap();
    for sni in [
        "one.example.com",
        "x.wild.example.com",
        "default.example.com",
    ] {
        let h = handshake(server.clone(), client.clone(), sni).await;
        assert!(h.client.is_ok(), "{sni}: {:?}", h.client.err());
    }
    let h = handshake(server, client, "y.x.wild.example.com").await;
    assert!(
        h.client.is_err(),
        "the first certificate, not valid for the name"
    );
    assert!(server_config_choosing(&[], &ServerOptions::default()).is_err());
}

#[tokio::test]
async fn full_verification_checks_the_server_name() {
    let m = mesh();
    let gateway =
        m.ca.issue_server(&["gateway.example.com", "127.0.0.1"], DAY)
            .unwrap()
            .identity()
            .unwrap();
    let server = server_config(&gateway, &ServerOptions::default()).unwrap();
    let client = client_config(&ClientOptions::new(Verify::Full(m.roots.clone()))).unwrap();
    let h = handshake(server.clone(), client.clone(), "gateway.example.com").await;
    assert!(h.client.is_ok(), "{:?}", h.client.err());
    let h = handshake(server.clone(), client.clone(), "127.0.0.1").await;
    assert!(h.client.is_ok(), "{:?}", h.client.err());
    let h = handshake(server, client, "other.example.com").await;
    let err = h.client.expect_err("wrong name");
    assert!(
        matches!(
            rustls_error(&err),
            Some(RustlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{err}"
    );
}

#[tokio::test]
async fn chain_only_and_insecure_skip_verify() {
    let m = mesh();
    // SanMatch without matchers: chain only, any name (Envoy's trusted_ca without SAN matchers).
    let server = server_config(&m.backend_identity, &ServerOptions::default()).unwrap();
    let opts = ClientOptions::new(Verify::SanMatch(PeerValidation::new(m.roots.clone())));
    let h = handshake(server, client_config(&opts).unwrap(), "anything").await;
    assert_eq!(h.client.unwrap().peer, Some(m.backend.clone()));

    // Insecure: even an unknown issuer is accepted.
    let rogue = CertificateAuthority::generate("evil.local").unwrap();
    let id = SpiffeId::for_workload("evil.local", "x", "y").unwrap();
    let rogue_server = rogue.issue_workload(&id, DAY).unwrap().identity().unwrap();
    let server = server_config(&rogue_server, &ServerOptions::default()).unwrap();
    let client = client_config(&ClientOptions::new(Verify::InsecureSkipVerify)).unwrap();
    let h = handshake(server, client, "anything").await;
    assert_eq!(h.client.unwrap().peer, Some(id));
}

#[tokio::test]
async fn tls_version_bounds_are_enforced() {
    let m = mesh();
    let tls13 = TlsVersions {
        min: TlsVersion::Tls13,
        max: TlsVersion::Tls13,
    };
    let tls12 = TlsVersions {
        min: TlsVersion::Tls12,
        max: TlsVersion::Tls12,
    };
    let server = server_config(
        &m.backend_identity,
        &ServerOptions {
            versions: tls13,
            ..strict_server(&m, &m.frontend)
        },
    )
    .unwrap();
    let mut opts = sidecar_client(&m, &m.backend);
    opts.versions = tls12;
    let h = handshake(server.clone(), client_config(&opts).unwrap(), "backend").await;
    assert!(h.client.is_err() && h.server.is_err());

    // TLS 1.2 mTLS works too.
    let server12 = server_config(
        &m.backend_identity,
        &ServerOptions {
            versions: tls12,
            ..strict_server(&m, &m.frontend)
        },
    )
    .unwrap();
    let h = handshake(server12, client_config(&opts).unwrap(), "backend").await;
    assert_eq!(h.server.unwrap().peer, Some(m.frontend.clone()));

    let bad = TlsVersions {
        min: TlsVersion::Tls13,
        max: TlsVersion::Tls12,
    };
    let err = client_config(&ClientOptions {
        versions: bad,
        ..ClientOptions::new(Verify::InsecureSkipVerify)
    })
    .unwrap_err();
    assert!(err.to_string().contains("version range is empty"), "{err}");
}
