//! Shared helpers: one TLS handshake over 127.0.0.1 with tokio-rustls, both sides reported.
#![allow(dead_code, clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io;
use std::sync::Arc;
use std::time::Duration;

use mesh_tls::rustls::pki_types::ServerName;
use mesh_tls::rustls::{ClientConfig, ServerConfig};
use mesh_tls::{SpiffeId, peer_identity_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What one side saw once the handshake and a ping/pong exchange completed.
#[derive(Debug)]
pub struct Outcome {
    pub alpn: Option<Vec<u8>>,
    pub peer: Option<SpiffeId>,
}

pub struct Handshake {
    pub server: io::Result<Outcome>,
    pub client: io::Result<Outcome>,
}

/// Runs a server and a client once: TLS handshake, then the client sends "ping" and the server
/// answers "pong" (so TLS 1.3 client-certificate rejections, which the client only sees when it
/// reads, surface on the client too).
pub async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    sni: &str,
) -> Handshake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let (_, conn) = tls.get_ref();
        let outcome = Outcome {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            peer: peer_identity_of(conn),
        };
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await?;
        tls.shutdown().await?;
        Ok::<_, io::Error>(outcome)
    });
    let connector = TlsConnector::from(client);
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let client_fut = async move {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = connector.connect(name, tcp).await?;
        let (_, conn) = tls.get_ref();
        let outcome = Outcome {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            peer: peer_identity_of(conn),
        };
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        Ok::<_, io::Error>(outcome)
    };
    let limit = Duration::from_secs(10);
    let client = tokio::time::timeout(limit, client_fut)
        .await
        .expect("client timed out");
    let server = tokio::time::timeout(limit, server_task)
        .await
        .expect("server timed out")
        .expect("server task panicked");
    Handshake { server, client }
}

/// The rustls error inside an I/O error from tokio-rustls, if any.
pub fn rustls_error(e: &io::Error) -> Option<&mesh_tls::rustls::Error> {
    e.get_ref()?.downcast_ref::<mesh_tls::rustls::Error>()
}

/// The SAN mismatch inside a rustls certificate error, if any.
pub fn san_mismatch(e: &io::Error) -> Option<&mesh_tls::SanMismatch> {
    match rustls_error(e)? {
        mesh_tls::rustls::Error::InvalidCertificate(mesh_tls::rustls::CertificateError::Other(
            other,
        )) => other.0.downcast_ref::<mesh_tls::SanMismatch>(),
        _ => None,
    }
}
