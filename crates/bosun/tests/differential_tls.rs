//! Differential conformance for TLS: the same bootstrap (`differential/tls_suite.yaml`) run by real
//! Envoy and by `bosun proxy`, with certificates from a test CA; every TLS client gets the same answer
//! (or the same refusal) from both: SNI-selected chains and certificates, mTLS required and SAN-checked,
//! SNI-routed passthrough to a TLS backend, and TLS origination (mTLS, SAN mismatch, TCP).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use mesh_tls::rustls::pki_types::ServerName;
use mesh_tls::{
    CertificateAuthority, ClientAuth, ClientOptions, Identity, PeerValidation, RootStore,
    ServerOptions, SpiffeId, Verify,
};
use testkit::{
    BIDI, Envoy, GRPC_MESSAGE_HEADER, GRPC_STATUS_HEADER, GrpcEcho, GrpcStream, Process, TempDir,
    Template, free_port, localhost,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const DAY: Duration = Duration::from_secs(24 * 3600);
const TIMEOUT: Duration = Duration::from_secs(5);

/// The test CA and the certificates the fixture names, written to a temp dir.
struct Certs {
    ca: CertificateAuthority,
    roots: RootStore,
    dir: TempDir,
}

impl Certs {
    fn new() -> Certs {
        let ca = CertificateAuthority::generate("cluster.local").unwrap();
        let roots = RootStore::from_pem(ca.root_pem().as_bytes()).unwrap();
        let dir = TempDir::new("bosun-tls-certs").unwrap();
        dir.write("root.pem", ca.root_pem().as_bytes()).unwrap();
        for (name, dns) in [
            ("a", vec!["a.example.com"]),
            ("wild", vec!["*.wild.example.com"]),
            ("mtls", vec!["mtls.example.com"]),
            ("san", vec!["san.example.com"]),
            ("default", vec!["default.example.com"]),
            ("ciphers", vec!["ciphers.example.com"]),
            ("multi", vec!["multi.example.com"]),
            ("two", vec!["two.example.com"]),
        ] {
            let cert = ca.issue_server(&dns, DAY).unwrap();
            dir.write(&format!("{name}.pem"), cert.cert_chain_pem.as_bytes())
                .unwrap();
            dir.write(&format!("{name}.key"), cert.key_pem.as_bytes())
                .unwrap();
        }
        // An RSA certificate beside the CA's ECDSA ones (ring makes no RSA keys): a self-signed,
        // test-only key pair, `openssl req -x509 -newkey rsa:2048 … -addext
        // subjectAltName=DNS:multi.example.com`.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential");
        for file in ["rsa-multi.pem", "rsa-multi.key"] {
            let bytes = std::fs::read(fixtures.join(file)).unwrap();
            dir.write(file, &bytes).unwrap();
        }
        let proxy = ca.issue_workload(&workload("proxy"), DAY).unwrap();
        dir.write("proxy.pem", proxy.cert_chain_pem.as_bytes())
            .unwrap();
        dir.write("proxy.key", proxy.key_pem.as_bytes()).unwrap();
        Certs { ca, roots, dir }
    }

    fn workload_identity(&self, sa: &str) -> Identity {
        self.ca
            .issue_workload(&workload(sa), DAY)
            .unwrap()
            .identity()
            .unwrap()
    }
}

fn workload(sa: &str) -> SpiffeId {
    SpiffeId::for_workload("cluster.local", "default", sa).unwrap()
}

/// A TLS backend (tokio-rustls + hyper): certificate for `backend.example.com` and
/// `pass.example.com`, client certificates optional; answers what it saw of the connection.
fn start_backend(certs: &Certs) -> SocketAddr {
    let identity = certs
        .ca
        .issue_server(&["backend.example.com", "pass.example.com"], DAY)
        .unwrap()
        .identity()
        .unwrap();
    let config = mesh_tls::server_config(
        &identity,
        &ServerOptions {
            client_auth: ClientAuth::Optional(PeerValidation::new(certs.roots.clone())),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            tx.send(()).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (_, conn) = tls.get_ref();
                    let seen = format!(
                        "sni={} alpn={} client={}",
                        conn.server_name().unwrap_or("-"),
                        conn.alpn_protocol()
                            .map_or("-".into(), |p| String::from_utf8_lossy(p).into_owned()),
                        mesh_tls::peer_identity_of(conn)
                            .map_or("-".to_owned(), |id| id.to_string()),
                    );
                    let service = hyper::service::service_fn(move |_req| {
                        let body = seen.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
                });
            }
        });
    });
    rx.recv_timeout(TIMEOUT).unwrap();
    addr
}

/// One proxy under test and its listeners.
struct Running {
    name: &'static str,
    terminate: SocketAddr,
    passthrough: SocketAddr,
    originate: SocketAddr,
    originate_tcp: SocketAddr,
    /// An HTTP proxy terminating CONNECT to the TLS backend.
    connect: SocketAddr,
    admin: SocketAddr,
    _envoy: Option<Envoy>,
    _bosun: Option<(Process, TempDir)>,
}

/// The plain-text upstreams the fixture names: an HTTP echo and a gRPC server.
struct Plain {
    echo: testkit::Upstream,
    grpc: GrpcEcho,
}

impl Plain {
    fn start() -> Plain {
        Plain {
            echo: testkit::Upstream::start("echo").unwrap(),
            grpc: GrpcEcho::start("grpc").unwrap(),
        }
    }
}

fn render(certs: &Certs, backend: SocketAddr, plain: &Plain) -> (String, [SocketAddr; 5], u16) {
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let admin = free_port();
    let yaml = Template::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential/tls_suite.yaml"),
    )
    .unwrap()
    .set("LISTENER_PORT", ports[0])
    .set("LISTENER2_PORT", ports[1])
    .set("LISTENER3_PORT", ports[2])
    .set("LISTENER4_PORT", ports[3])
    .set("LISTENER5_PORT", ports[4])
    .set("ADMIN_PORT", admin)
    .set("BACKEND_PORT", backend.port())
    .set("ECHO_PORT", plain.echo.port())
    .set("GRPC_PORT", plain.grpc.addr().port())
    .set("CERTS", certs.dir.path().display())
    .render()
    .unwrap();
    (yaml, ports.map(localhost), admin)
}

fn start_both(certs: &Certs, backend: SocketAddr, plain: &Plain) -> Option<[Running; 2]> {
    Envoy::find_or_skip("differential_tls")?;
    let (yaml, l, _) = render(certs, backend, plain);
    let envoy = Envoy::start(&yaml).unwrap();
    let envoy = Running {
        admin: envoy.admin_addr(),
        name: "envoy",
        terminate: l[0],
        passthrough: l[1],
        originate: l[2],
        originate_tcp: l[3],
        connect: l[4],
        _envoy: Some(envoy),
        _bosun: None,
    };
    let (yaml, l, admin) = render(certs, backend, plain);
    let dir = TempDir::new("bosun-differential-tls").unwrap();
    let config = dir.write("bootstrap.yaml", yaml.as_bytes()).unwrap();
    let mut process = Process::spawn(
        env!("CARGO_BIN_EXE_bosun"),
        [
            "proxy",
            "-c",
            config.to_str().unwrap(),
            "--concurrency",
            "1",
            "--log-level",
            "warn",
        ],
        &[],
    )
    .unwrap();
    process
        .wait_ready(localhost(admin), Duration::from_secs(10))
        .unwrap();
    let bosun = Running {
        name: "bosun",
        terminate: l[0],
        passthrough: l[1],
        originate: l[2],
        originate_tcp: l[3],
        connect: l[4],
        admin: localhost(admin),
        _envoy: None,
        _bosun: Some((process, dir)),
    };
    Some([envoy, bosun])
}

/// A TLS client's view of one request: the server certificate's SANs, the ALPN, the HTTP version,
/// status and body; or why it failed (`refused`, without the library's wording).
#[derive(Debug, PartialEq)]
enum Seen {
    Answer {
        server_sans: Vec<String>,
        alpn: Option<String>,
        version: String,
        status: u16,
        body: String,
    },
    Refused,
}

struct TlsClient<'a> {
    sni: &'a str,
    alpn: &'a [&'a str],
    identity: Option<Identity>,
}

async fn tls_get(addr: SocketAddr, c: &TlsClient<'_>, roots: &RootStore) -> Seen {
    tls_get_path(addr, c, roots, "/").await
}

async fn tls_get_path(addr: SocketAddr, c: &TlsClient<'_>, roots: &RootStore, path: &str) -> Seen {
    let config = client_config(c, roots);
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        tls_get_over(tcp, c, &config, path).await
    };
    match tokio::time::timeout(TIMEOUT, attempt).await {
        Ok(Ok(seen)) => seen,
        _ => Seen::Refused,
    }
}

/// The client config [`tls_get_path`] uses for `c`.
fn client_config(
    c: &TlsClient<'_>,
    roots: &RootStore,
) -> std::sync::Arc<mesh_tls::rustls::ClientConfig> {
    mesh_tls::client_config(&ClientOptions {
        identity: c.identity.clone(),
        alpn: c.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
        // Chain only: the SANs are compared, so a wrong certificate shows as a difference.
        ..ClientOptions::new(Verify::SanMatch(PeerValidation::new(roots.clone())))
    })
    .unwrap()
}

/// TLS as `c` on a connection already made (to a listener, or through a tunnel), then `GET path`.
async fn tls_get_over(
    tcp: TcpStream,
    c: &TlsClient<'_>,
    config: &std::sync::Arc<mesh_tls::rustls::ClientConfig>,
    path: &str,
) -> Result<Seen, Box<dyn std::error::Error + Send + Sync>> {
    let config = config.clone();
    {
        let name = ServerName::try_from(c.sni.to_owned()).unwrap();
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        let (_, conn) = tls.get_ref();
        let server_sans = mesh_tls::subject_alt_names(&conn.peer_certificates().unwrap()[0])
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        let alpn = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let req = hyper::Request::builder()
            .uri(path)
            .header("host", c.sni)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = if alpn.as_deref() == Some("h2") {
            let (mut send, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(tls),
            )
            .await?;
            tokio::spawn(conn);
            let mut req = req;
            *req.uri_mut() = format!("https://{}{path}", c.sni).parse().unwrap();
            send.send_request(req).await?
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            send.send_request(req).await?
        };
        let version = format!("{:?}", resp.version());
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Seen::Answer {
            server_sans,
            alpn,
            version,
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// The TLS 1.2 cipher suite a handshake offering only `offer` (OpenSSL names) settles on, or
/// `None` when the server refuses it.
async fn tls12_suite(
    addr: SocketAddr,
    sni: &str,
    offer: &[&str],
    roots: &RootStore,
) -> Option<String> {
    let options = ClientOptions {
        versions: mesh_tls::TlsVersions {
            min: mesh_tls::TlsVersion::Tls12,
            max: mesh_tls::TlsVersion::Tls12,
        },
        tls12_ciphers: mesh_tls::Tls12Ciphers::from_names(offer).unwrap(),
        ..ClientOptions::new(Verify::SanMatch(PeerValidation::new(roots.clone())))
    };
    let tls = handshake(addr, sni, &options).await?;
    let suite = tls.get_ref().1.negotiated_cipher_suite()?;
    Some(format!("{:?}", suite.suite()))
}

/// The key exchange group a handshake (TLS 1.3, or 1.2 when `tls12`) offering only the groups
/// `offer` settles on, or `None` when the server refuses it.
async fn key_exchange(
    addr: SocketAddr,
    sni: &str,
    offer: &[&str],
    tls12: bool,
    roots: &RootStore,
) -> Option<String> {
    let version = if tls12 {
        mesh_tls::TlsVersion::Tls12
    } else {
        mesh_tls::TlsVersion::Tls13
    };
    let options = ClientOptions {
        versions: mesh_tls::TlsVersions {
            min: version,
            max: version,
        },
        ecdh_curves: mesh_tls::EcdhCurves::from_names(offer).unwrap(),
        ..ClientOptions::new(Verify::SanMatch(PeerValidation::new(roots.clone())))
    };
    let tls = handshake(addr, sni, &options).await?;
    let group = tls.get_ref().1.negotiated_key_exchange_group()?;
    Some(format!("{:?}", group.name()))
}

/// A TLS handshake with `options` to `addr` for `sni`; `None` when it fails or takes too long.
async fn handshake(
    addr: SocketAddr,
    sni: &str,
    options: &ClientOptions,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = mesh_tls::client_config(options).unwrap();
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let name = ServerName::try_from(sni.to_owned()).ok()?;
        TlsConnector::from(config).connect(name, tcp).await.ok()
    };
    tokio::time::timeout(TIMEOUT, attempt).await.ok().flatten()
}

/// Plain HTTP/1.1 GET of `path`: status and body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let resp = testkit::http_get(addr, path, &[]).await.unwrap();
    (resp.status(), resp.text())
}

async fn same_tls(both: &[Running; 2], c: &TlsClient<'_>, roots: &RootStore) -> Seen {
    let envoy = tls_get(both[0].terminate, c, roots).await;
    let bosun = tls_get(both[1].terminate, c, roots).await;
    assert_eq!(
        bosun, envoy,
        "bosun (left) and envoy (right) differ for SNI {}",
        c.sni
    );
    bosun
}

fn answer_body(seen: &Seen) -> Option<&str> {
    match seen {
        Seen::Answer { body, .. } => Some(body),
        Seen::Refused => None,
    }
}

#[tokio::test]
async fn tls_matches_envoy() {
    let certs = Certs::new();
    let backend = start_backend(&certs);
    let upstreams = Plain::start();
    let Some(both) = start_both(&certs, backend, &upstreams) else {
        return;
    };
    let roots = &certs.roots;
    let plain = |sni| TlsClient {
        sni,
        alpn: &[],
        identity: None,
    };

    // Termination: the chain (and certificate) chosen by SNI; exact, wildcard, default.
    let a = same_tls(&both, &plain("a.example.com"), roots).await;
    assert_eq!(answer_body(&a), Some("chain-a"));
    let wild = same_tls(&both, &plain("x.wild.example.com"), roots).await;
    assert_eq!(answer_body(&wild), Some("chain-wild"));
    let deeper = same_tls(&both, &plain("x.y.wild.example.com"), roots).await;
    assert_eq!(answer_body(&deeper), Some("chain-wild"));
    let other = same_tls(&both, &plain("other.example.com"), roots).await;
    assert_eq!(answer_body(&other), Some("chain-default"));

    // tls_params.cipher_suites (TLS 1.2): a client offering only suites outside the list is refused;
    // one offering several gets one from the list.
    for offer in [
        &["ECDHE-ECDSA-AES256-GCM-SHA384"][..],
        &["ECDHE-ECDSA-AES128-GCM-SHA256"],
        &[
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ],
    ] {
        let mut suites = Vec::new();
        for p in &both {
            suites.push(tls12_suite(p.terminate, "ciphers.example.com", offer, roots).await);
        }
        assert_eq!(
            suites[1], suites[0],
            "offer {offer:?}: bosun (left), envoy (right)"
        );
        assert_eq!(
            suites[1].is_some(),
            offer.len() > 1 || offer[0].contains("AES128"),
            "{offer:?}"
        );
    }

    // tls_params.ecdh_curves: a client offering only other groups is refused; one offering one of
    // the list gets it; TLS 1.3 and 1.2 alike. Without a list, the defaults take X25519 and P-256.
    // Where the client offers several groups of the list, Envoy picks by the list's order and bosun
    // (rustls) by the client's: only whether the handshake succeeds is compared there.
    for (sni, offer, tls12, accepted, same_group) in [
        ("curves.example.com", &["X25519"][..], false, false, true),
        ("curves.example.com", &["P-256"], false, true, true),
        (
            "curves.example.com",
            &["X25519", "P-384"],
            false,
            true,
            true,
        ),
        ("curves.example.com", &["X25519"], true, false, true),
        ("curves.example.com", &["P-384", "P-256"], true, true, false),
        ("a.example.com", &["X25519"], false, true, true),
        ("a.example.com", &["P-256"], false, true, true),
        ("a.example.com", &["P-384"], false, false, true),
    ] {
        let mut groups = Vec::new();
        for p in &both {
            groups.push(key_exchange(p.terminate, sni, offer, tls12, roots).await);
        }
        let what = format!("{sni} offer {offer:?} (TLS 1.2: {tls12}): bosun (left), envoy (right)");
        if same_group {
            assert_eq!(groups[1], groups[0], "{what}");
        } else {
            assert_eq!(groups[1].is_some(), groups[0].is_some(), "{what}");
        }
        assert_eq!(groups[1].is_some(), accepted, "{what}");
    }

    // Behind TLS termination the upstream is told the client used https.
    for p in &both {
        let seen = tls_get_path(p.terminate, &plain("a.example.com"), roots, "/echo").await;
        let body: serde_json::Value = serde_json::from_str(answer_body(&seen).unwrap()).unwrap();
        assert_eq!(
            body["headers"]["x-forwarded-proto"], "https",
            "{}: {body}",
            p.name
        );
    }

    // ALPN: h2 negotiated means HTTP/2 over TLS; an offer the chain does not share is no ALPN.
    for alpn in [&["h2", "http/1.1"][..], &["http/1.1"], &["h2"], &["spdy/3"]] {
        let c = TlsClient {
            sni: "a.example.com",
            alpn,
            identity: None,
        };
        let seen = same_tls(&both, &c, roots).await;
        assert_eq!(answer_body(&seen), Some("chain-a"), "ALPN {alpn:?}");
    }
    let seen = same_tls(
        &both,
        &TlsClient {
            sni: "x.wild.example.com",
            alpn: &["h2"],
            identity: None,
        },
        roots,
    )
    .await;
    assert_eq!(answer_body(&seen), Some("chain-wild"));

    // mTLS required: no certificate is refused, one from the CA is let in.
    let refused = same_tls(&both, &plain("mtls.example.com"), roots).await;
    assert_eq!(refused, Seen::Refused);
    let with_cert = TlsClient {
        sni: "mtls.example.com",
        alpn: &[],
        identity: Some(certs.workload_identity("anyone")),
    };
    let seen = same_tls(&both, &with_cert, roots).await;
    assert_eq!(answer_body(&seen), Some("chain-mtls"));
    // A certificate from another CA is refused.
    let stranger = CertificateAuthority::generate("cluster.local").unwrap();
    let foreign = TlsClient {
        sni: "mtls.example.com",
        alpn: &[],
        identity: Some(
            stranger
                .issue_workload(&workload("anyone"), DAY)
                .unwrap()
                .identity()
                .unwrap(),
        ),
    };
    assert_eq!(same_tls(&both, &foreign, roots).await, Seen::Refused);

    // SAN matcher: only spiffe://cluster.local/ns/default/sa/allowed.
    for (sa, ok) in [("allowed", true), ("denied", false)] {
        let c = TlsClient {
            sni: "san.example.com",
            alpn: &[],
            identity: Some(certs.workload_identity(sa)),
        };
        let seen = same_tls(&both, &c, roots).await;
        assert_eq!(answer_body(&seen).is_some(), ok, "{sa}: {seen:?}");
    }

    // Passthrough by SNI: the backend's own certificate and handshake, through a TCP proxy chain.
    for p in &both {
        let seen = tls_get(p.passthrough, &plain("pass.example.com"), roots).await;
        assert_eq!(
            answer_body(&seen),
            Some("sni=pass.example.com alpn=- client=-"),
            "{}",
            p.name
        );
        // Plaintext on the same listener takes the raw_buffer chain.
        assert_eq!(
            http_get(p.passthrough, "/").await,
            (200, "plaintext".to_owned()),
            "{}",
            p.name
        );
    }
    // An unknown SNI matches no chain: both close the connection.
    for p in &both {
        let seen = tls_get(p.passthrough, &plain("nope.example.com"), roots).await;
        assert_eq!(seen, Seen::Refused, "{}", p.name);
    }

    // Origination: mTLS with the proxy's SPIFFE identity, SNI, SAN-checked; the same for both.
    let mut answers = Vec::new();
    for p in &both {
        answers.push((
            http_get(p.originate, "/").await,
            http_get(p.originate, "/nocert").await.0,
            http_get(p.originate, "/badsan").await.0,
        ));
    }
    assert_eq!(
        answers[1], answers[0],
        "bosun (left) and envoy (right) differ"
    );
    let ((status, body), nocert, badsan) = &answers[1];
    assert_eq!(*status, 200, "{body}");
    assert!(
        body.starts_with("sni=backend.example.com ")
            && body.ends_with(" client=spiffe://cluster.local/ns/default/sa/proxy"),
        "{body}"
    );
    assert_eq!(*nocert, 200);
    assert_eq!(*badsan, 503);

    // transport_socket_matches: each endpoint connects as its metadata (or its locality's) says.
    let mut matched = Vec::new();
    for p in &both {
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (status, body) = http_get(p.originate, "/matched").await;
            let tls = body.starts_with("sni=backend.example.com ");
            seen.push(format!("{status} {}", if tls { "tls" } else { "plain" }));
        }
        // Round robin over the two hosts, wherever it starts.
        seen.sort();
        let (status, body) = http_get(p.originate, "/by-locality").await;
        matched.push((seen, status, body.starts_with("sni=backend.example.com ")));
    }
    assert_eq!(
        matched[1], matched[0],
        "bosun (left) and envoy (right) differ"
    );
    assert_eq!(
        matched[1],
        (
            vec![
                "200 plain".to_owned(),
                "200 plain".to_owned(),
                "200 tls".to_owned(),
                "200 tls".to_owned()
            ],
            200,
            true
        )
    );

    // TCP proxy originating TLS: bytes in, TLS to the backend, an HTTP/1.1 answer back.
    let mut tcp_answers = Vec::new();
    for p in &both {
        let mut s = TcpStream::connect(p.originate_tcp).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        tokio::time::timeout(TIMEOUT, s.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        tcp_answers.push(out.rsplit("\r\n\r\n").next().unwrap_or_default().to_owned());
    }
    assert_eq!(
        tcp_answers[1], tcp_answers[0],
        "bosun (left) and envoy (right) differ"
    );
    assert!(
        tcp_answers[1].starts_with("sni=backend.example.com alpn=-"),
        "{}",
        tcp_answers[1]
    );

    // The connections each connection manager saw over TLS, and the plaintext bytes the mTLS
    // cluster carried: the same counts.
    let mut counted = Vec::new();
    for p in &both {
        let stats = testkit::blocking_get(p.admin, "/stats", TIMEOUT).unwrap().1;
        let stat = |name: &str| {
            stats
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
                .map(str::to_owned)
        };
        counted.push(
            [
                "http.chain_a.downstream_cx_ssl_total",
                "http.chain_default.downstream_cx_ssl_total",
                "http.plaintext.downstream_cx_ssl_total",
                "http.originate.downstream_cx_ssl_total",
                "cluster.backend_mtls.upstream_cx_tx_bytes_total",
                "cluster.backend_mtls.upstream_cx_rx_bytes_total",
            ]
            .map(stat),
        );
    }
    assert_eq!(
        counted[1], counted[0],
        "bosun (left) and envoy (right) differ"
    );
}

/// CONNECT terminated by the proxy: TLS from the client to the backend through the tunnel (the client
/// checks the backend's certificate), and a tunnel whose cluster originates mTLS itself.
/// `GET /echo` over TLS for `sni` with `identity` as the client certificate and `xfcc` as the
/// request's `x-forwarded-client-cert`: the `x-forwarded-client-cert` the echo upstream then got
/// (`refused` when the request did not reach it).
async fn xfcc_upstream_got(
    addr: SocketAddr,
    sni: &str,
    identity: Option<Identity>,
    xfcc: Option<&str>,
    echo: &testkit::Upstream,
) -> String {
    let options = ClientOptions {
        identity,
        ..ClientOptions::new(Verify::InsecureSkipVerify)
    };
    let before = echo.requests();
    let Some(tls) = handshake(addr, sni, &options).await else {
        return "refused".to_owned();
    };
    let Ok((mut send, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await
    else {
        return "refused".to_owned();
    };
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().uri("/echo").header("host", sni);
    if let Some(x) = xfcc {
        req = req.header("x-forwarded-client-cert", x);
    }
    let answered = tokio::time::timeout(
        TIMEOUT,
        send.send_request(req.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await;
    if !matches!(answered, Ok(Ok(_))) || echo.requests() == before {
        return "refused".to_owned();
    }
    let seen = echo.last_request().unwrap();
    format!("{:?}", seen.header("x-forwarded-client-cert"))
}

/// `x-forwarded-client-cert` as istiod's sidecars use it (`APPEND_FORWARD` with every detail): a
/// client with a certificate has this hop's element appended (`By` the proxy's SPIFFE ID, `Hash`,
/// the certificate and chain as URL-encoded PEM, `Subject`, `URI`, `DNS`), byte for byte as Envoy
/// writes it; a client without one gets the header removed; and under the default (`SANITIZE`) a
/// header a client sends is always removed, so that no client can claim an identity.
#[tokio::test]
async fn client_certificates_reach_the_upstream_as_envoy_forwards_them() {
    let certs = Certs::new();
    let backend = start_backend(&certs);
    let upstreams = Plain::start();
    let Some(both) = start_both(&certs, backend, &upstreams) else {
        return;
    };
    let claimed = "By=spiffe://cluster.local/ns/default/sa/forged;Hash=00";
    // One client certificate for every request, so that both proxies describe the same one.
    let sleep = certs.workload_identity("sleep");
    let mut seen: [Vec<String>; 2] = Default::default();
    for (i, p) in both.iter().enumerate() {
        for (sni, with_identity, xfcc) in [
            ("xfcc.example.com", true, None),
            ("xfcc.example.com", true, Some(claimed)),
            ("xfcc.example.com", false, Some(claimed)),
            ("a.example.com", false, Some(claimed)),
        ] {
            let identity = with_identity.then(|| sleep.clone());
            let got = xfcc_upstream_got(p.terminate, sni, identity, xfcc, &upstreams.echo).await;
            seen[i].push(format!(
                "{sni} identity={with_identity} sent={xfcc:?}: {got}"
            ));
        }
    }
    assert_eq!(seen[1], seen[0], "bosun (left) and envoy (right)");
    let own = &seen[0][0];
    assert!(
        own.contains("By=spiffe://cluster.local/ns/default/sa/proxy;Hash=")
            && own.contains(";Cert=\\\"-----BEGIN%20CERTIFICATE-----%0A")
            && own.contains(";Subject=\\\"\\\";URI=spiffe://cluster.local/ns/default/sa/sleep"),
        "{own}"
    );
    assert!(seen[0][1].contains(&format!("{claimed},By=")), "{seen:?}");
    assert!(seen[0][2].ends_with(": None"), "{seen:?}");
    assert!(seen[0][3].ends_with(": None"), "{seen:?}");
}

/// Which of the chain-multi certificates a handshake with `options` for `sni` got (by the leaf's
/// bytes), or `refused`.
async fn served_certificate(
    addr: SocketAddr,
    sni: &str,
    options: &ClientOptions,
    certs: &Certs,
) -> String {
    let Some(tls) = handshake(addr, sni, options).await else {
        return "refused".to_owned();
    };
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    for name in ["rsa-multi", "multi", "two"] {
        let pem = std::fs::read(certs.dir.path().join(format!("{name}.pem"))).unwrap();
        let chain = mesh_tls::Identity::from_pem(
            &pem,
            &std::fs::read(certs.dir.path().join(format!("{name}.key"))).unwrap(),
        )
        .unwrap();
        if chain.cert_chain()[0] == leaf {
            return name.to_owned();
        }
    }
    "another certificate".to_owned()
}

/// Several certificates in one server context (Istio's `credentialNames`: RSA and ECDSA), chosen per
/// handshake as Envoy chooses: among those whose names match the server name, the client's
/// preferred key type (ECDSA when it takes it, else RSA); no match of a type it takes, or no name
/// matching, the first certificate, which may fail a client (an ECDSA-only client sent to an
/// RSA certificate). TLS 1.2 clients take a key type by their cipher suites.
#[tokio::test]
async fn certificates_are_chosen_per_client_as_envoy_chooses() {
    let certs = Certs::new();
    let backend = start_backend(&certs);
    let upstreams = Plain::start();
    let Some(both) = start_both(&certs, backend, &upstreams) else {
        return;
    };
    let tls12 = |suites: &[&str]| ClientOptions {
        versions: mesh_tls::TlsVersions {
            min: mesh_tls::TlsVersion::Tls12,
            max: mesh_tls::TlsVersion::Tls12,
        },
        tls12_ciphers: mesh_tls::Tls12Ciphers::from_names(suites).unwrap(),
        ..ClientOptions::new(Verify::InsecureSkipVerify)
    };
    let clients = [
        ("TLS 1.2 RSA only", tls12(&["ECDHE-RSA-AES128-GCM-SHA256"])),
        (
            "TLS 1.2 ECDSA only",
            tls12(&["ECDHE-ECDSA-AES128-GCM-SHA256"]),
        ),
        (
            "TLS 1.2 both",
            tls12(&[
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
            ]),
        ),
        ("TLS 1.3", ClientOptions::new(Verify::InsecureSkipVerify)),
    ];
    let mut seen: [Vec<String>; 2] = Default::default();
    for sni in [
        "multi.example.com",
        "two.example.com",
        "nomatch.example.com",
    ] {
        for (what, options) in &clients {
            for (i, running) in both.iter().enumerate() {
                let got = served_certificate(running.terminate, sni, options, &certs).await;
                seen[i].push(format!("{sni}, {what}: {got}"));
            }
        }
    }
    // One difference, on purpose: a client that sends the supported_versions extension (rustls
    // always does) but offers only TLS 1.2 and RSA suites is taken by Envoy as ECDSA-capable from
    // its signature algorithms, sent the ECDSA certificate, and fails; bosun reads the suites and
    // sends the RSA one. (An OpenSSL client offering only TLS 1.2 sends no such extension, and
    // Envoy then reads its suites too.)
    let envoy_rsa_only_refused = [
        "multi.example.com, TLS 1.2 RSA only: refused",
        "two.example.com, TLS 1.2 RSA only: refused",
    ];
    let envoy: Vec<String> = seen[0]
        .iter()
        .map(|s| {
            if envoy_rsa_only_refused.contains(&s.as_str()) {
                s.replace("refused", "rsa-multi")
            } else {
                s.clone()
            }
        })
        .collect();
    assert_eq!(seen[1], envoy, "bosun (left) and Envoy (right), {seen:?}");
    for expected in [
        "multi.example.com, TLS 1.2 RSA only: rsa-multi",
        "multi.example.com, TLS 1.2 ECDSA only: multi",
        "multi.example.com, TLS 1.3: multi",
        "two.example.com, TLS 1.2 both: two",
        "two.example.com, TLS 1.2 RSA only: rsa-multi",
        "nomatch.example.com, TLS 1.2 ECDSA only: refused",
        "nomatch.example.com, TLS 1.3: rsa-multi",
    ] {
        assert!(
            seen[1].iter().any(|s| s == expected),
            "{expected}: {seen:?}"
        );
    }
}

#[tokio::test]
async fn connect_tunnels_tls_like_envoy() {
    let certs = Certs::new();
    let backend = start_backend(&certs);
    let upstreams = Plain::start();
    let Some(both) = start_both(&certs, backend, &upstreams) else {
        return;
    };
    let client = TlsClient {
        sni: "backend.example.com",
        alpn: &["http/1.1"],
        identity: None,
    };
    let config = client_config(&client, &certs.roots);
    let mut end_to_end = Vec::new();
    let mut originated = Vec::new();
    for p in &both {
        let tunnel = testkit::connect_tunnel(p.connect, "backend.example.com:443")
            .await
            .unwrap();
        assert_eq!(tunnel.status, 200, "{}: {tunnel:?}", p.name);
        let seen =
            tokio::time::timeout(TIMEOUT, tls_get_over(tunnel.stream, &client, &config, "/"))
                .await
                .unwrap()
                .unwrap();
        end_to_end.push(seen);

        let tunnel = testkit::connect_tunnel(p.connect, "originate.example.com:443")
            .await
            .unwrap();
        assert_eq!(tunnel.status, 200, "{}: {tunnel:?}", p.name);
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tunnel.stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .uri("/")
            .header("host", "backend.example.com")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(TIMEOUT, send.send_request(req))
            .await
            .unwrap()
            .unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        originated.push(String::from_utf8_lossy(&body).into_owned());
    }
    assert_eq!(
        end_to_end[1], end_to_end[0],
        "bosun (left) and envoy (right) differ"
    );
    assert_eq!(
        answer_body(&end_to_end[1]),
        Some("sni=backend.example.com alpn=http/1.1 client=-")
    );
    assert_eq!(
        originated[1], originated[0],
        "bosun (left) and envoy (right) differ"
    );
    assert_eq!(
        originated[1],
        format!(
            "sni=backend.example.com alpn=- client={}",
            workload("proxy")
        )
    );
}

#[tokio::test]
async fn grpc_over_tls_with_alpn_matches_envoy() {
    let certs = Certs::new();
    let backend = start_backend(&certs);
    let upstreams = Plain::start();
    let Some(both) = start_both(&certs, backend, &upstreams) else {
        return;
    };
    let client = TlsClient {
        sni: "a.example.com",
        alpn: &["h2", "http/1.1"],
        identity: None,
    };
    let config = client_config(&client, &certs.roots);
    let mut seen = Vec::new();
    for p in &both {
        let tls = tokio::time::timeout(TIMEOUT, async {
            let tcp = TcpStream::connect(p.terminate).await.unwrap();
            let name = ServerName::try_from(client.sni).unwrap();
            TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .unwrap()
        })
        .await
        .unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "{}: ALPN", p.name);
        let mut call = GrpcStream::start_on(
            tls,
            p.terminate,
            client.sni,
            BIDI,
            &[
                (GRPC_STATUS_HEADER, "7"),
                (GRPC_MESSAGE_HEADER, "permission%20denied"),
            ],
        )
        .await
        .unwrap();
        // One message each way at a time: every answer comes back before the next is sent.
        let mut answers = Vec::new();
        for i in 0..3 {
            call.send(format!("tls{i}").as_bytes()).await.unwrap();
            let answer = call.recv().await.unwrap().unwrap();
            answers.push(String::from_utf8_lossy(&answer).into_owned());
        }
        call.close_send();
        assert_eq!(call.recv().await.unwrap(), None, "{}: the end", p.name);
        seen.push((
            call.head.status.as_u16(),
            call.header("x-upstream").map(str::to_owned),
            answers,
            call.status(),
        ));
    }
    assert_eq!(seen[0], seen[1], "envoy (left) and bosun (right) differ");
    assert_eq!(
        seen[1],
        (
            200,
            Some("grpc".to_owned()),
            vec![
                "echo:tls0".to_owned(),
                "echo:tls1".to_owned(),
                "echo:tls2".to_owned()
            ],
            (Some("7".to_owned()), Some("permission%20denied".to_owned())),
        )
    );
}
