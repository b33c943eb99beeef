//! The TCP proxy filter: pick a cluster (by weight) and a host, then copy bytes both ways.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use proxy_model::listener::TcpProxy;

use crate::Runtime;
use crate::access_log;
use crate::http::{Downstream, Exchange};
use crate::stats::{Counter, Registry};
use crate::upstream::LbContext;

/// Proxies one connection through `filter`: to the destination the `original_dst` listener filter
/// restored when the cluster is ORIGINAL_DST (Istio's PassthroughCluster), keyed on the client's
/// IP for a consistent-hash cluster when the filter says so (`hash_policy`). Logged, when the
/// filter has access logs, as Envoy logs a TCP connection when it ends.
pub async fn proxy(
    io: impl AsyncRead + AsyncWrite + Send + Unpin,
    filter: &TcpProxy,
    downstream: &Downstream,
    stats: &TcpStats,
    runtime: Arc<Runtime>,
) {
    let start = (std::time::SystemTime::now(), Instant::now());
    let mut exchange = Exchange::default();
    let carried = connect_and_splice(io, filter, downstream, stats, &runtime, &mut exchange).await;
    if !filter.access_log.is_empty() {
        let info = access_log::RequestInfo::tcp(start.0);
        let (received, sent) = carried.map_or((0, 0), |end| (end.a_to_b, end.b_to_a));
        access_log::Line {
            info: &info,
            status: 0,
            response: None,
            bytes_received: received,
            bytes_sent: sent,
            exchange: &exchange,
            duration: start.1.elapsed(),
            downstream,
        }
        .write(&filter.access_log);
    }
}

/// Picks the cluster and host, connects, and copies bytes until either side ends; what became of
/// it goes into `exchange`.
async fn connect_and_splice(
    io: impl AsyncRead + AsyncWrite + Send + Unpin,
    filter: &TcpProxy,
    downstream: &Downstream,
    stats: &TcpStats,
    runtime: &Runtime,
    exchange: &mut Exchange,
) -> Option<SpliceEnd> {
    let clusters = &filter.clusters;
    let total: u64 = clusters.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut point = rand::rng().random_range(0..total.max(1));
    let name = clusters
        .iter()
        .find(|(_, w)| {
            let w = u64::from(*w);
            if point < w {
                true
            } else {
                point -= w;
                false
            }
        })
        .map(|(n, _)| n.as_str());
    exchange.upstream_cluster = name.map(str::to_owned);
    let Some(cluster) = name.and_then(|n| runtime.clusters.get(n)) else {
        // Unknown cluster: Envoy closes the connection.
        stats.downstream_cx_no_route.inc();
        exchange.flags.no_cluster = true;
        return None;
    };
    let lb = LbContext {
        original_dst: downstream.original_dst,
        headers: None,
        // A consistent-hash cluster keys on the client's IP when the filter says so.
        hash: filter.hash_source_ip.then(|| {
            proxy_model::route::hash::xx_hash64(downstream.peer.ip().to_string().as_bytes())
        }),
    };
    let Some(host) = cluster.pick_for(&lb, &[]) else {
        // No host (an ORIGINAL_DST cluster without a destination): Envoy closes too.
        exchange.flags.no_healthy_upstream = true;
        return None;
    };
    exchange.upstream_host = Some(host.address.clone());
    let upstream = match cluster.open_stream(&host).await {
        Ok(upstream) => upstream,
        Err(e) => {
            exchange.flags.upstream_connect_failure = true;
            exchange.upstream_failure = e.raw_os_error().map(crate::http::connect_failure_reason);
            return None;
        }
    };
    exchange.upstream_local = upstream.get_ref().local_addr();
    let end = splice(io, upstream, filter.idle_timeout).await;
    if end.ended_by == EndedBy::Idle {
        stats.idle_timeout.inc();
    }
    Some(end)
}

/// `tcp.<stat_prefix>.*` stats (those Bosun maintains).
#[derive(Debug)]
pub struct TcpStats {
    pub downstream_cx_total: Arc<Counter>,
    pub downstream_cx_no_route: Arc<Counter>,
    pub downstream_cx_rx_bytes_total: Arc<Counter>,
    pub downstream_cx_tx_bytes_total: Arc<Counter>,
    pub idle_timeout: Arc<Counter>,
}

impl TcpStats {
    pub fn new(registry: &Registry, prefix: &str) -> TcpStats {
        let c = |n: &str| registry.counter(&format!("tcp.{prefix}.{n}"));
        TcpStats {
            downstream_cx_total: c("downstream_cx_total"),
            downstream_cx_no_route: c("downstream_cx_no_route"),
            downstream_cx_rx_bytes_total: c("downstream_cx_rx_bytes_total"),
            downstream_cx_tx_bytes_total: c("downstream_cx_tx_bytes_total"),
            idle_timeout: c("idle_timeout"),
        }
    }
}

/// How a [`splice`] ended, and what it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpliceEnd {
    pub a_to_b: u64,
    pub b_to_a: u64,
    pub ended_by: EndedBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// `a` stopped sending first.
    A,
    B,
    /// Nothing moved for the idle timeout.
    Idle,
}

/// Copies bytes both ways between `a` and `b` (a 16 KiB buffer each way) until both directions end,
/// or nothing has moved for `idle`; each side is half-closed when the other stops sending.
pub(crate) async fn splice(
    a: impl AsyncRead + AsyncWrite + Send + Unpin,
    b: impl AsyncRead + AsyncWrite + Send + Unpin,
    idle: Option<Duration>,
) -> SpliceEnd {
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let last = Activity::new();
    let a_to_b = AtomicU64::new(0);
    let b_to_a = AtomicU64::new(0);
    // Which direction ended first: 0 none yet, 1 a, 2 b.
    let first = AtomicU8::new(0);
    let copy = async {
        tokio::join!(
            async {
                pipe(ar, bw, &last, &a_to_b).await;
                let _ = first.compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
            },
            async {
                pipe(br, aw, &last, &b_to_a).await;
                let _ = first.compare_exchange(0, 2, Ordering::Relaxed, Ordering::Relaxed);
            }
        )
    };
    let idled = match idle {
        None => {
            copy.await;
            false
        }
        Some(idle) => {
            tokio::select! {
                _ = copy => false,
                _ = last.idle_for(idle) => true,
            }
        }
    };
    SpliceEnd {
        a_to_b: a_to_b.load(Ordering::Relaxed),
        b_to_a: b_to_a.load(Ordering::Relaxed),
        ended_by: match (idled, first.load(Ordering::Relaxed)) {
            (true, _) => EndedBy::Idle,
            (false, 2) => EndedBy::B,
            _ => EndedBy::A,
        },
    }
}

/// When bytes last moved either way, for the idle timeout.
struct Activity(std::sync::Mutex<Instant>);

impl Activity {
    fn new() -> Activity {
        Activity(std::sync::Mutex::new(Instant::now()))
    }

    fn touch(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// Completes once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let quiet = last.elapsed();
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

/// Copies one direction (counting the bytes in `moved`), then half-closes the other side.
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    last: &Activity,
    moved: &AtomicU64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                last.touch();
                moved.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    /// A bound on each test, so a splice that never ends fails instead of hanging.
    const BOUND: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn splice_counts_each_way_and_names_who_ended_it() {
        let (a, mut a_peer) = tokio::io::duplex(1024);
        let (b, mut b_peer) = tokio::io::duplex(1024);
        let spliced = tokio::spawn(splice(a, b, Some(BOUND)));
        a_peer.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        b_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        b_peer.write_all(b"bye").await.unwrap();
        let mut got = [0u8; 3];
        a_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"bye");
        // The upstream side stops first: the client's side is half-closed, then the client ends.
        b_peer.shutdown().await.unwrap();
        let mut rest = Vec::new();
        a_peer.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        drop(a_peer);
        let end = tokio::time::timeout(BOUND, spliced).await.unwrap().unwrap();
        assert_eq!(
            end,
            SpliceEnd {
                a_to_b: 5,
                b_to_a: 3,
                ended_by: EndedBy::B
            }
        );
    }

    #[tokio::test]
    async fn an_idle_splice_ends_on_its_idle_timeout() {
        let (a, _a_peer) = tokio::io::duplex(1024);
        let (b, _b_peer) = tokio::io::duplex(1024);
        let end = tokio::time::timeout(BOUND, splice(a, b, Some(Duration::from_millis(20))))
            .await
            .unwrap();
        assert_eq!(end.ended_by, EndedBy::Idle);
        assert_eq!((end.a_to_b, end.b_to_a), (0, 0));
    }
}
