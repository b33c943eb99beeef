//! TLS transport sockets: choosing a listener's filter chain from the ClientHello (Envoy's
//! `tls_inspector`), terminating TLS with the chain's config, and originating TLS to clusters.
//!
//! Accepting a connection: with the tls_inspector the ClientHello is peeked (not read), so a chain
//! without a transport socket still gets the TLS bytes as they came (SNI-routed passthrough); with
//! the http_inspector a plaintext connection's first bytes tell HTTP/1.x or HTTP/2 (prior knowledge)
//! from anything else, also peeked; the chain is chosen by server name, transport protocol and
//! application protocol (ALPN, or what the http_inspector found); a chain with a
//! `DownstreamTlsContext` then does the handshake with its own certificate. Every wait is bounded:
//! the inspection by `listener_filters_timeout`, the handshake by the chain's
//! `transport_socket_connect_timeout`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use mesh_tls::rustls;
use mesh_tls::rustls::pki_types::ServerName;
use proxy_model::listener::{ConnectionInfo, FilterChain, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

/// The most of a ClientHello the inspector looks at (one full TLS record and its header); also the
/// most the http_inspector reads for a request line.
const MAX_CLIENT_HELLO: usize = 16 * 1024 + 5;
/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long to wait before peeking again when the ClientHello is still incomplete.
const PEEK_RETRY: Duration = Duration::from_millis(5);

/// Why an accepted connection is closed before it reaches a network filter.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(
        "no filter chain matches the connection (server name {server_name:?}, transport protocol {transport_protocol}, ALPN {alpn:?})"
    )]
    NoFilterChain {
        server_name: Option<String>,
        transport_protocol: &'static str,
        alpn: Vec<String>,
    },
    #[error("the listener filters saw too little within their timeout ({0:?})")]
    InspectTimeout(Duration),
    #[error("the ClientHello is larger than {MAX_CLIENT_HELLO} bytes")]
    ClientHelloTooLarge,
    #[error("the client closed the connection before it said anything")]
    Closed,
    #[error("reading the ClientHello: {0}")]
    Inspect(#[source] io::Error),
    #[error("TLS handshake with filter chain {chain:?} failed: {source}")]
    Handshake {
        chain: String,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with filter chain {chain:?} did not finish within {timeout:?}")]
    HandshakeTimeout { chain: String, timeout: Duration },
}

/// A connection ready for its network filter.
#[derive(Debug)]
pub struct Accepted<'l> {
    pub io: Io,
    pub chain: &'l FilterChain,
    /// The ALPN protocol negotiated when the chain terminated TLS.
    pub alpn: Option<Vec<u8>>,
    /// The server name (SNI) the client asked for.
    pub server_name: Option<String>,
}

/// What the inspector learned from the first bytes.
#[derive(Debug, Default)]
struct Inspected {
    tls: bool,
    server_name: Option<String>,
    alpn: Vec<String>,
}

/// A connection whose filter chain is chosen, its TLS (if the chain terminates it) not yet done:
/// Envoy's network filters see the connection from here on, a failed handshake included.
#[derive(Debug)]
pub struct Chosen<'l> {
    stream: TcpStream,
    pub chain: &'l FilterChain,
    /// The server name the TLS inspector found.
    server_name: Option<String>,
}

/// Chooses the connection's filter chain (by `destination`: the local address, or the original
/// destination the original_dst filter restored), after the listener's inspectors looked at its
/// first bytes.
pub async fn choose_chain(
    stream: TcpStream,
    listener: &Listener,
    destination: SocketAddr,
) -> Result<Chosen<'_>, AcceptError> {
    let inspected = if listener.tls_inspector || listener.http_inspector {
        let inspect = inspect(&stream, listener.tls_inspector, listener.http_inspector);
        match listener.listener_filters_timeout {
            None => inspect.await?,
            Some(t) => match tokio::time::timeout(t, inspect).await {
                Ok(r) => r?,
                Err(_) if listener.continue_on_listener_filters_timeout => Inspected::default(),
                Err(_) => return Err(AcceptError::InspectTimeout(t)),
            },
        }
    } else {
        Inspected::default()
    };
    let transport_protocol = if inspected.tls { "tls" } else { "raw_buffer" };
    let selected = listener.select(&ConnectionInfo {
        destination_port: destination.port(),
        destination_ip: Some(destination.ip()),
        server_name: inspected.server_name.as_deref(),
        transport_protocol,
        application_protocols: &inspected.alpn,
        source: stream.peer_addr().ok(),
    });
    let Some(chain) = selected else {
        return Err(AcceptError::NoFilterChain {
            server_name: inspected.server_name,
            transport_protocol,
            alpn: inspected.alpn,
        });
    };
    Ok(Chosen {
        stream,
        chain,
        server_name: inspected.server_name,
    })
}

impl<'l> Chosen<'l> {
    /// Whether the chain terminates TLS.
    pub fn terminates_tls(&self) -> bool {
        self.chain.tls.is_some()
    }

    /// Terminates TLS when the chain has a TLS context (within its handshake timeout).
    pub async fn terminate(self) -> Result<Accepted<'l>, AcceptError> {
        let Chosen {
            stream,
            chain,
            server_name,
        } = self;
        let Some(tls) = &chain.tls else {
            return Ok(Accepted {
                io: Io::Plain(stream),
                chain,
                alpn: None,
                server_name,
            });
        };
        let handshake = async {
            let start =
                LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
            let offered: Vec<Vec<u8>> = start
                .client_hello()
                .alpn()
                .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
                .unwrap_or_default();
            start.into_stream(tls.config_for(&offered)).await
        };
        let stream = match tokio::time::timeout(chain.handshake_timeout, handshake).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(AcceptError::Handshake {
                    chain: chain.name.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(AcceptError::HandshakeTimeout {
                    chain: chain.name.clone(),
                    timeout: chain.handshake_timeout,
                });
            }
        };
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let server_name =
            server_name.or_else(|| stream.get_ref().1.server_name().map(str::to_owned));
        Ok(Accepted {
            io: Io::Tls(Box::new(tokio_rustls::TlsStream::Server(stream))),
            chain,
            alpn,
            server_name,
        })
    }
}

/// Envoy's tls_inspector (with `tls`) and http_inspector (with `http`), in that order: peeks until
/// the first bytes are a whole ClientHello (TLS, with its SNI and ALPN) or clearly not one
/// (plaintext), then, on plaintext, until they are an HTTP/1.x request line or the HTTP/2 preface,
/// or clearly neither.
async fn inspect(stream: &TcpStream, tls: bool, http: bool) -> Result<Inspected, AcceptError> {
    let mut buf = vec![0u8; MAX_CLIENT_HELLO];
    let mut seen = 0;
    // Decided by the tls_inspector (or plaintext without one).
    let mut transport: Option<Inspected> = (!tls).then(Inspected::default);
    loop {
        let n = stream.peek(&mut buf).await.map_err(AcceptError::Inspect)?;
        if n == 0 {
            return Err(AcceptError::Closed);
        }
        if n > seen {
            seen = n;
            if transport.is_none() {
                transport = parse_client_hello(&buf[..n]);
            }
            match transport.take() {
                Some(found) if found.tls || !http => return Ok(found),
                Some(mut plain) => match http_protocol(&buf[..n]) {
                    Some(protocol) => {
                        plain.alpn = protocol.into_iter().map(str::to_owned).collect();
                        return Ok(plain);
                    }
                    // A request line longer than the buffer: not HTTP as far as it can tell.
                    None if n == buf.len() => return Ok(plain),
                    None => transport = Some(plain),
                },
                None if n == buf.len() => return Err(AcceptError::ClientHelloTooLarge),
                None => {}
            }
        }
        // Peeked data stays readable: wait a little for the rest instead of spinning.
        tokio::time::sleep(PEEK_RETRY).await;
    }
}

/// The http_inspector's verdict on a plaintext connection's first `bytes` (never empty): `h2c` for
/// the HTTP/2 preface, `http/1.1` or `http/1.0` for a request line (method, target, `HTTP/x.y`, one
/// space apart), `Some(None)` for anything else; `None` while it cannot tell yet.
fn http_protocol(bytes: &[u8]) -> Option<Option<&'static str>> {
    let shared = bytes.len().min(H2_PREFACE.len());
    if bytes[..shared] == H2_PREFACE[..shared] {
        return (bytes.len() >= H2_PREFACE.len()).then_some(Some("h2c"));
    }
    let end = bytes.iter().position(|b| matches!(b, b'\r' | b'\n'))?;
    let mut fields = bytes[..end].split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Some(None);
    };
    if method.is_empty() || !method.iter().all(|b| is_token_char(*b)) || target.is_empty() {
        return Some(None);
    }
    // As Envoy's: any `HTTP/major.minor` is HTTP; 1.1 is `http/1.1`, every other `http/1.0` (the
    // connection manager then refuses what it does not speak).
    let number = |n: &[u8]| !n.is_empty() && n.iter().all(u8::is_ascii_digit);
    let parsed = version
        .strip_prefix(b"HTTP/")
        .and_then(|v| v.iter().position(|b| *b == b'.').map(|dot| v.split_at(dot)))
        .filter(|(major, minor)| number(major) && number(&minor[1..]));
    Some(match parsed {
        Some((b"1", b".1")) => Some("http/1.1"),
        Some(_) => Some("http/1.0"),
        None => None,
    })
}

/// RFC 9110's `tchar`: what a method name is made of.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `Some` when `bytes` hold a complete ClientHello or are not TLS; `None` when more are needed.
fn parse_client_hello(bytes: &[u8]) -> Option<Inspected> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rd = bytes;
    while !rd.is_empty() {
        match acceptor.read_tls(&mut rd) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Some(Inspected::default()),
        }
    }
    match acceptor.accept() {
        Ok(None) => None,
        Ok(Some(accepted)) => {
            let hello = accepted.client_hello();
            Some(Inspected {
                tls: true,
                server_name: hello.server_name().map(str::to_owned),
                alpn: hello
                    .alpn()
                    .map(|protocols| {
                        protocols
                            .map(|p| String::from_utf8_lossy(p).into_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        }
        Err(_) => Some(Inspected::default()),
    }
}

/// Originates TLS on an upstream connection: `server_name` is the SNI, or `None` to send none.
pub async fn connect(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    server_name: Option<&ServerName<'static>>,
) -> io::Result<Io> {
    let name = match server_name {
        Some(n) => n.clone(),
        // An IP address as the server name: rustls sends no SNI, as Envoy without `sni`.
        None => ServerName::IpAddress(tcp.peer_addr()?.ip().into()),
    };
    let stream = TlsConnector::from(config).connect(name, tcp).await?;
    Ok(Io::Tls(Box::new(tokio_rustls::TlsStream::Client(stream))))
}

// === impl Io ===

/// A connection, plaintext or TLS (either side).
#[derive(Debug)]
pub enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
    /// An upstream Unix domain socket (an endpoint's `pipe` address).
    Unix(tokio::net::UnixStream),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Io::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
            Io::Unix(s) => s.is_write_vectored(),
        }
    }
}

impl Io {
    /// The local address of the socket under it (none for a Unix domain socket).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Io::Plain(s) => s.local_addr().ok(),
            Io::Tls(s) => s.get_ref().0.local_addr().ok(),
            Io::Unix(_) => None,
        }
    }
}

/// The local address of an upstream connection (in its `Connected` extras, for the access log's
/// `UPSTREAM_LOCAL_ADDRESS`).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamLocal(pub std::net::SocketAddr);

impl Connection for Io {
    fn connected(&self) -> Connected {
        let connected = match self.local_addr() {
            Some(local) => Connected::new().extra(UpstreamLocal(local)),
            None => Connected::new(),
        };
        match self {
            Io::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2") => connected.negotiated_h2(),
            _ => connected,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_is_not_tls() {
        let found = parse_client_hello(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        assert!(!found.tls);
    }

    #[test]
    fn the_http_inspector_tells_http_from_the_first_bytes() {
        let found = |b: &[u8]| http_protocol(b);
        assert_eq!(
            found(b"GET /x HTTP/1.1\r\nhost: a\r\n"),
            Some(Some("http/1.1"))
        );
        assert_eq!(found(b"POST / HTTP/1.0\n"), Some(Some("http/1.0")));
        assert_eq!(found(b"M-SEARCH * HTTP/1.1\r\n"), Some(Some("http/1.1")));
        assert_eq!(found(H2_PREFACE), Some(Some("h2c")));
        // Not yet decided: part of the preface, a request line without its end.
        assert_eq!(found(b"PRI * HTTP/2"), None);
        assert_eq!(found(b"GET / HTTP/1.1"), None);
        // Any other version is `http/1.0`, as Envoy has it.
        assert_eq!(found(b"GET / HTTP/2.0\r\n"), Some(Some("http/1.0")));
        assert_eq!(found(b"GET / HTTP/0.9\r\n"), Some(Some("http/1.0")));
        // Not HTTP: no version, a line of the wrong shape, an empty line, binary.
        assert_eq!(found(b"GET / HTTP/1\r\n"), Some(None));
        assert_eq!(found(b"GET / HTTP/1.x\r\n"), Some(None));
        assert_eq!(found(b"GET / FTP/1.1\r\n"), Some(None));
        assert_eq!(found(b"GET / x HTTP/1.1\r\n"), Some(None));
        assert_eq!(found(b"GET  HTTP/1.1\r\n"), Some(None));
        assert_eq!(found(b"\r\nGET / HTTP/1.1\r\n"), Some(None));
        assert_eq!(found(b"G(T / HTTP/1.1\r\n"), Some(None));
        assert_eq!(found(b"hello\n"), Some(None));
        assert_eq!(found(b"PRX * HTTP/2.0\r\n"), Some(Some("http/1.0")));
    }

    proptest::proptest! {
        /// Whatever a client sends first, the http_inspector does not panic, and it decides as
        /// soon as a line has ended (only the HTTP/2 preface's own prefix may wait longer).
        #[test]
        fn the_http_inspector_takes_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64)) {
            let verdict = http_protocol(&bytes);
            let ended = bytes.iter().any(|b| matches!(b, b'\r' | b'\n'));
            let preface = H2_PREFACE.starts_with(&bytes[..bytes.len().min(H2_PREFACE.len())]);
            if ended && !preface {
                proptest::prop_assert!(verdict.is_some(), "{bytes:?}");
            }
        }
    }

    #[test]
    fn a_partial_record_needs_more() {
        assert!(parse_client_hello(&[0x16, 0x03, 0x01]).is_none());
    }

    #[test]
    fn reads_sni_and_alpn_from_a_client_hello() {
        let ca = mesh_tls::CertificateAuthority::generate("cluster.local").unwrap();
        let roots = mesh_tls::RootStore::from_pem(ca.root_pem().as_bytes()).unwrap();
        let config = mesh_tls::client_config(&mesh_tls::ClientOptions {
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ..mesh_tls::ClientOptions::new(mesh_tls::Verify::Full(roots))
        })
        .unwrap();
        let mut conn =
            rustls::ClientConnection::new(config, ServerName::try_from("a.example.com").unwrap())
                .unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let found = parse_client_hello(&hello).unwrap();
        assert!(found.tls);
        assert_eq!(found.server_name.as_deref(), Some("a.example.com"));
        assert_eq!(found.alpn, ["h2", "http/1.1"]);
        assert!(parse_client_hello(&hello[..hello.len() - 1]).is_none());
    }
}
