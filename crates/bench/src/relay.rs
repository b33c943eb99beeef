//! The bare relay: the cheapest hop there is, as a reference for what any proxy's hop costs on this
//! machine before the proxy does anything. Each accepted connection gets a connection of its own to the
//! upstream, and bytes are copied both ways (no parsing, no pooling) on one thread with a
//! single-threaded tokio runtime, in a process of its own pinned where the proxies are.
//!
//! On a virtual machine most of a hop's latency at low rates is waking an idle vCPU (twice per request:
//! the request in, the answer back), which no proxy can avoid; the relay's latency measures that floor,
//! so that a proxy's own share is its latency less the relay's.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Relays every connection accepted on `listen` to `upstream` until the process is killed.
pub fn serve(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(relay(client, upstream));
        }
    })
}

async fn relay(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(Ok(mut server)) =
        tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    else {
        return;
    };
    // Small requests and answers go out at once, as from the proxies (both set TCP_NODELAY).
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Ends when either side closes or fails; tokio's copy buffers are bounded (8 KiB each way).
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn bytes_go_through_both_ways() {
        let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = upstream.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf.map(|b| b.to_ascii_uppercase())).unwrap();
        });
        let listen = testkit::localhost(testkit::try_free_port().unwrap());
        std::thread::spawn(move || serve(listen, upstream_addr));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut client = loop {
            match std::net::TcpStream::connect(listen) {
                Ok(c) => break c,
                Err(e) if std::time::Instant::now() > deadline => panic!("relay not up: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.write_all(b"hello").unwrap();
        let mut answer = [0u8; 5];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HELLO");
        echo.join().unwrap();
    }
}
