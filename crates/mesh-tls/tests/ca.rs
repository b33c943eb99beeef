//! The mesh CA: generated and loaded roots, issued certificates' contents and validity bounds,
//! PEM from files, SPIFFE ID parsing.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::handshake;
use mesh_tls::{
    CertificateAuthority, ClientAuth, ClientOptions, Error, Identity, PeerValidation, RootStore,
    SanMatcher, ServerOptions, SpiffeId, SpiffeIdError, SubjectAltName, Verify, client_config,
    peer_identity, server_config, subject_alt_names,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use x509_parser::prelude::{FromDer, X509Certificate};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn first_cert_der(pem: &str) -> Vec<u8> {
    use mesh_tls::rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn secs_between(a: SystemTime, b: SystemTime) -> u64 {
    a.duration_since(b)
        .unwrap_or_else(|e| e.duration())
        .as_secs()
}

#[test]
fn workload_cert_is_shaped_like_istiods() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let id = SpiffeId::for_workload("cluster.local", "default", "reviews").unwrap();
    let cert = ca.issue_workload(&id, DAY).unwrap();
    let ident = cert.identity().unwrap();
    assert_eq!(
        ident.cert_chain().len(),
        1,
        "generated root: chain is the leaf only"
    );
    let leaf = &ident.cert_chain()[0];
    assert_eq!(
        subject_alt_names(leaf).unwrap(),
        vec![SubjectAltName::Uri(id.to_string())]
    );
    assert_eq!(peer_identity(ident.cert_chain()), Some(id));

    let (_, x509) = X509Certificate::from_der(leaf).unwrap();
    assert!(x509.subject().iter_common_name().next().is_none(), "no CN");
    let san = x509.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical, "SAN is critical when the subject is empty");
    let bc = x509.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca);
    let eku = x509.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let ku = x509.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());

    let root_der = first_cert_der(&ca.root_pem());
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    assert!(root.basic_constraints().unwrap().unwrap().value.ca);
    assert!(root.key_usage().unwrap().unwrap().value.key_cert_sign());
    assert_eq!(x509.issuer(), root.subject());
    assert_eq!(
        root.subject()
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "cluster.local"
    );
}

#[test]
fn validity_is_bounded() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let id = SpiffeId::for_workload("cluster.local", "default", "reviews").unwrap();
    let now = SystemTime::now();
    let cert = ca.issue_workload(&id, DAY).unwrap();
    assert!(
        secs_between(cert.not_after, now + DAY) <= 2,
        "{:?}",
        cert.not_after
    );
    let leaf_der = first_cert_der(&cert.cert_chain_pem);
    let (_, x509) = X509Certificate::from_der(&leaf_der).unwrap();
    let nb = x509.validity().not_before.timestamp();
    let na = x509.validity().not_after.timestamp();
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        nb <= now_s && nb >= now_s - 120,
        "not_before backdated by about a minute"
    );
    assert_eq!(
        na as u64,
        cert.not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );

    for bad in [
        Duration::ZERO,
        mesh_tls::MAX_WORKLOAD_VALIDITY + Duration::from_secs(1),
    ] {
        let err = ca.issue_workload(&id, bad).unwrap_err();
        assert!(matches!(err, Error::Validity { .. }), "{err}");
        assert!(err.to_string().contains("at most"), "{err}");
    }

    // A certificate never outlives its CA.
    let short_ca = CertificateAuthority::generate_with_validity("cluster.local", HOUR).unwrap();
    let cert = short_ca.issue_workload(&id, DAY).unwrap();
    assert_eq!(cert.not_after, short_ca.not_after());
    assert!(secs_between(cert.not_after, now + HOUR) <= 2);

    let err = CertificateAuthority::generate_with_validity(
        "cluster.local",
        mesh_tls::MAX_CA_VALIDITY * 2,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Validity { .. }), "{err}");
}

#[test]
fn server_certs_have_dns_and_ip_sans() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let cert = ca
        .issue_server(
            &["istio-ingressgateway.istio-system.svc", "127.0.0.1", "::1"],
            DAY,
        )
        .unwrap();
    let sans = subject_alt_names(&cert.identity().unwrap().cert_chain()[0]).unwrap();
    assert_eq!(
        sans.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "DNS:istio-ingressgateway.istio-system.svc",
            "IP:127.0.0.1",
            "IP:::1"
        ]
    );
    assert!(matches!(ca.issue_server(&[], DAY), Err(Error::NoDnsNames)));
    assert!(matches!(
        ca.issue_server(&["bad name"], DAY),
        Err(Error::BadDnsName { .. })
    ));
}

#[tokio::test]
async fn ca_and_certs_load_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    std::fs::write(path("ca-cert.pem"), ca.cert_pem()).unwrap();
    std::fs::write(path("ca-key.pem"), ca.key_pem()).unwrap();
    std::fs::write(path("root-cert.pem"), ca.root_pem()).unwrap();

    // The control plane restarts with the CA it persisted.
    let ca = CertificateAuthority::load_files(path("ca-cert.pem"), path("ca-key.pem")).unwrap();
    let client_id = SpiffeId::for_workload("cluster.local", "a", "client").unwrap();
    let server_id = SpiffeId::for_workload("cluster.local", "b", "server").unwrap();
    for (name, id) in [("client", &client_id), ("server", &server_id)] {
        let cert = ca.issue_workload(id, DAY).unwrap();
        std::fs::write(path(&format!("{name}-chain.pem")), &cert.cert_chain_pem).unwrap();
        std::fs::write(path(&format!("{name}-key.pem")), &cert.key_pem).unwrap();
    }

    // The proxy reads Envoy's `filename` data sources.
    let roots = RootStore::from_file(path("root-cert.pem")).unwrap();
    assert_eq!(roots.len(), 1);
    let server_ident =
        Identity::from_files(path("server-chain.pem"), path("server-key.pem")).unwrap();
    let client_ident =
        Identity::from_files(path("client-chain.pem"), path("client-key.pem")).unwrap();
    let server = server_config(
        &server_ident,
        &ServerOptions {
            client_auth: ClientAuth::Required(PeerValidation::new(roots.clone())),
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let client = client_config(&ClientOptions {
        identity: Some(client_ident),
        ..ClientOptions::new(Verify::SanMatch(
            PeerValidation::new(roots).with_san_matchers(vec![SanMatcher::spiffe_id(&server_id)]),
        ))
    })
    .unwrap();
    let h = handshake(server, client, "server.b.svc").await;
    assert_eq!(h.server.unwrap().peer, Some(client_id));
    assert_eq!(h.client.unwrap().peer, Some(server_id));

    // Errors name the file and what is wrong with it.
    let missing = path("nope.pem");
    let err = Identity::from_files(&missing, path("client-key.pem")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("nope.pem"), "{err}");
    std::fs::write(path("empty.pem"), "not pem at all\n").unwrap();
    let err = RootStore::from_file(path("empty.pem")).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("empty.pem") && err.to_string().contains("BEGIN CERTIFICATE"),
        "{err}"
    );
    let err = Identity::from_files(path("client-chain.pem"), path("client-chain.pem")).unwrap_err();
    assert!(err.to_string().contains("no private key"), "{err}");
    // A key that does not go with the chain is refused when building the config.
    let mismatched =
        Identity::from_files(path("client-chain.pem"), path("server-key.pem")).unwrap();
    let err = server_config(&mismatched, &ServerOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Rustls(_)), "{err}");
}

#[test]
fn load_checks_the_ca() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let other = CertificateAuthority::generate("cluster.local").unwrap();
    let err = CertificateAuthority::load(ca.cert_pem().as_bytes(), other.key_pem().as_bytes())
        .unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");

    let leaf = ca
        .issue_workload(
            &SpiffeId::for_workload("cluster.local", "a", "b").unwrap(),
            DAY,
        )
        .unwrap();
    let err = CertificateAuthority::load(leaf.cert_chain_pem.as_bytes(), leaf.key_pem.as_bytes())
        .unwrap_err();
    assert!(matches!(err, Error::NotACa { .. }), "{err}");
    assert!(err.to_string().contains("not a CA"), "{err}");

    let err = CertificateAuthority::load(b"", ca.key_pem().as_bytes()).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

/// Istio's plug-in CA: an intermediate signing certificate, followed by the root.
#[tokio::test]
async fn intermediate_ca_chains_to_its_root() {
    let root_key = KeyPair::generate().unwrap();
    let mut root_params = CertificateParams::default();
    root_params
        .distinguished_name
        .push(DnType::OrganizationName, "Root CA");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root_params.self_signed(&root_key).unwrap();
    let root_issuer = rcgen::Issuer::new(root_params, root_key);

    let int_key = KeyPair::generate().unwrap();
    let mut int_params = CertificateParams::default();
    int_params
        .distinguished_name
        .push(DnType::OrganizationName, "cluster.local");
    int_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    int_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    int_params.use_authority_key_identifier_extension = true;
    let int_cert = int_params.signed_by(&int_key, &root_issuer).unwrap();

    let chain_pem = format!("{}{}", int_cert.pem(), root_cert.pem());
    let ca = CertificateAuthority::load(chain_pem.as_bytes(), int_key.serialize_pem().as_bytes())
        .unwrap();
    assert_eq!(first_cert_der(&ca.root_pem()), root_cert.der().to_vec());

    let id_a = SpiffeId::for_workload("cluster.local", "ns", "a").unwrap();
    let id_b = SpiffeId::for_workload("cluster.local", "ns", "b").unwrap();
    let a = ca.issue_workload(&id_a, DAY).unwrap().identity().unwrap();
    let b = ca.issue_workload(&id_b, DAY).unwrap().identity().unwrap();
    assert_eq!(a.cert_chain().len(), 2, "leaf + intermediate");
    assert_eq!(a.cert_chain()[1].to_vec(), int_cert.der().to_vec());

    let roots = RootStore::from_pem(ca.root_pem().as_bytes()).unwrap();
    let server = server_config(
        &b,
        &ServerOptions {
            client_auth: ClientAuth::Required(
                PeerValidation::new(roots.clone())
                    .with_san_matchers(vec![SanMatcher::spiffe_id(&id_a)]),
            ),
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let client = client_config(&ClientOptions {
        identity: Some(a),
        ..ClientOptions::new(Verify::SanMatch(
            PeerValidation::new(roots).with_san_matchers(vec![SanMatcher::spiffe_id(&id_b)]),
        ))
    })
    .unwrap();
    let h = handshake(server, client, "b").await;
    assert_eq!(h.server.unwrap().peer, Some(id_a));
    assert_eq!(h.client.unwrap().peer, Some(id_b));
}

#[test]
fn spiffe_id_round_trip_and_bad_inputs() {
    for s in [
        "spiffe://cluster.local/ns/default/sa/default",
        "spiffe://td_1.example-2/ns/istio-system/sa/istio-ingressgateway-service-account",
        "spiffe://cluster.local/ns/My.NS/sa/a_b",
    ] {
        let id: SpiffeId = s.parse().unwrap();
        assert_eq!(id.to_string(), s);
        let again = SpiffeId::for_workload(id.trust_domain(), id.namespace(), id.service_account());
        assert_eq!(again.unwrap(), id);
    }
    let cases: &[(&str, &str)] = &[
        (
            "http://cluster.local/ns/a/sa/b",
            "does not start with \"spiffe://\"",
        ),
        ("cluster.local/ns/a/sa/b", "does not start with"),
        ("spiffe:///ns/a/sa/b", "empty trust domain"),
        (
            "spiffe://Cluster.local/ns/a/sa/b",
            "invalid character 'C' at byte 0",
        ),
        ("spiffe://cluster local/ns/a/sa/b", "invalid character ' '"),
        (
            "spiffe://cluster.local",
            "Istio identities have the form /ns/<namespace>/sa/<service-account>",
        ),
        ("spiffe://cluster.local/", "Istio identities have the form"),
        (
            "spiffe://cluster.local/ns/a",
            "Istio identities have the form",
        ),
        (
            "spiffe://cluster.local/ns/a/sa/b/c",
            "Istio identities have the form",
        ),
        (
            "spiffe://cluster.local/sa/a/ns/b",
            "Istio identities have the form",
        ),
        (
            "spiffe://cluster.local/ns//sa/b",
            "namespace \"\" is not a valid SPIFFE path segment: it is empty",
        ),
        (
            "spiffe://cluster.local/ns/a/sa/",
            "service account \"\" is not a valid",
        ),
        (
            "spiffe://cluster.local/ns/../sa/b",
            "'.' and '..' are not allowed",
        ),
        (
            "spiffe://cluster.local/ns/a/sa/b%20c",
            "only letters, digits",
        ),
        ("spiffe://cluster.local/ns/a/sa/b?x=1", "query or fragment"),
        ("spiffe://cluster.local/ns/a/sa/b#frag", "query or fragment"),
    ];
    for (input, want) in cases {
        let err = SpiffeId::parse(input).unwrap_err().to_string();
        assert!(err.contains(want), "{input}: got {err:?}, want {want:?}");
    }
    let long = format!("spiffe://cluster.local/ns/a/sa/{}", "b".repeat(2100));
    assert!(matches!(
        SpiffeId::parse(&long),
        Err(SpiffeIdError::TooLong { .. })
    ));
    let err = SpiffeId::for_workload("cluster.local", "a/b", "c").unwrap_err();
    assert!(err.to_string().contains("namespace \"a/b\""), "{err}");
}

fn openssl() -> Option<&'static str> {
    Command::new("openssl")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "openssl")
}

fn run_openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Cross-checks an issued certificate with OpenSSL (skipped when `openssl` is absent).
#[test]
fn openssl_agrees() {
    let Some(_) = openssl() else {
        eprintln!("openssl not found: skipping");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let id = SpiffeId::for_workload("cluster.local", "default", "reviews").unwrap();
    let cert = ca.issue_workload(&id, DAY).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), &cert.cert_chain_pem).unwrap();
    std::fs::write(dir.path().join("root.pem"), ca.root_pem()).unwrap();
    let text = run_openssl(&["x509", "-in", "leaf.pem", "-noout", "-text"], dir.path());
    for want in [
        "URI:spiffe://cluster.local/ns/default/sa/reviews",
        "X509v3 Subject Alternative Name: critical",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "Digital Signature, Key Encipherment",
        "CA:FALSE",
        "ecdsa-with-SHA256",
        "Issuer: O = cluster.local",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let verify = run_openssl(
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-purpose",
            "sslclient",
            "leaf.pem",
        ],
        dir.path(),
    );
    assert!(verify.contains("leaf.pem: OK"), "{verify}");
    run_openssl(
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-purpose",
            "sslserver",
            "leaf.pem",
        ],
        dir.path(),
    );
}

/// A CA made by OpenSSL with keys in the formats Istio's `cacerts` often uses: PKCS#1 RSA and SEC1
/// EC ("BEGIN RSA PRIVATE KEY" / "BEGIN EC PRIVATE KEY"), which rcgen's ring backend cannot read.
#[test]
fn openssl_made_cas_load_and_sign() {
    let Some(_) = openssl() else {
        eprintln!("openssl not found: skipping");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ext = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n";
    std::fs::write(d.join("ca.ext"), ext).unwrap();
    let gen_keys: [&[&str]; 2] = [
        &["genrsa", "-traditional", "-out", "key.pem", "2048"],
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "key.pem",
        ],
    ];
    for gen_key in gen_keys {
        run_openssl(gen_key, d);
        run_openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "key.pem",
                "-subj",
                "/O=Istio/CN=Root CA",
                "-days",
                "30",
                "-out",
                "ca.pem",
                "-extensions",
                "v3_ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
            ],
            d,
        );
        let key_pem = std::fs::read_to_string(d.join("key.pem")).unwrap();
        assert!(
            key_pem.contains("BEGIN RSA PRIVATE KEY") || key_pem.contains("BEGIN EC PRIVATE KEY"),
            "{key_pem}"
        );
        let ca = CertificateAuthority::load_files(d.join("ca.pem"), d.join("key.pem"))
            .unwrap_or_else(|e| panic!("{gen_key:?}: {e}"));
        let id = SpiffeId::for_workload("cluster.local", "default", "x").unwrap();
        let cert = ca.issue_workload(&id, DAY).unwrap();
        std::fs::write(d.join("leaf.pem"), &cert.cert_chain_pem).unwrap();
        let out = run_openssl(&["verify", "-CAfile", "ca.pem", "leaf.pem"], d);
        assert!(out.contains("OK"), "{out}");
        // And rustls accepts the chain too.
        let roots = RootStore::from_file(d.join("ca.pem")).unwrap();
        let ident = cert.identity().unwrap();
        let verifier = mesh_tls::rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.rustls(),
            mesh_tls::crypto_provider(),
        )
        .build()
        .unwrap();
        verifier
            .verify_client_cert(
                &ident.cert_chain()[0],
                &[],
                mesh_tls::rustls::pki_types::UnixTime::now(),
            )
            .unwrap();
    }
}
