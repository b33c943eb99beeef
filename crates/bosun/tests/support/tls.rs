//! A TLS client for tests: one HTTP/1.1 request over TLS, and what the server showed of itself.

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;

/// Over TLS to `addr` with SNI `server_name` (the server's chain checked against `roots`, its
/// names not; `identity` as the client certificate, if any): the server certificate's SANs and
/// the answer's status and body to `GET /` with that Host. `None` when the handshake or the
/// request fails, or takes more than 5 s.
pub async fn tls_answer(
    addr: SocketAddr,
    server_name: &str,
    roots: &mesh_tls::RootStore,
    identity: Option<mesh_tls::Identity>,
) -> Option<(Vec<String>, u16, String)> {
    use http_body_util::BodyExt;
    let mut options = mesh_tls::ClientOptions::new(mesh_tls::Verify::SanMatch(
        mesh_tls::PeerValidation::new(roots.clone()),
    ));
    options.identity = identity;
    let config = mesh_tls::client_config(&options).ok()?;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let name =
            mesh_tls::rustls::pki_types::ServerName::try_from(server_name.to_owned()).ok()?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .ok()?;
        let sans = mesh_tls::subject_alt_names(&tls.get_ref().1.peer_certificates()?[0])
            .ok()?
            .iter()
            .map(ToString::to_string)
            .collect();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .uri("/")
            .header("host", server_name)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        let resp = send.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((sans, status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}
