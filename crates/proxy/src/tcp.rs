//! The TCP proxy filter: pick a cluster (by weight) and a host, then copy bytes both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Runtime;
use crate::upstream::{LbContext, OriginateTls, Outcome, connect};

/// Proxies one connection. `original_dst` is the destination the `original_dst` listener filter
/// restored, where an ORIGINAL_DST cluster connects (Istio's PassthroughCluster); `hash` the key of
/// a consistent-hash cluster (the tcp_proxy's `hash_policy`).
pub async fn proxy(
    downstream: impl AsyncRead + AsyncWrite + Send + Unpin,
    runtime: Arc<Runtime>,
    clusters: &[(String, u32)],
    idle: Option<Duration>,
    original_dst: Option<SocketAddr>,
    hash: Option<u64>,
) {
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
    let Some(cluster) = name.and_then(|n| runtime.clusters.get(n)) else {
        return; // Unknown cluster: Envoy closes the connection.
    };
    let lb = LbContext {
        original_dst,
        headers: None,
        hash,
    };
    let Some(host) = cluster.pick_for(&lb, &[]) else {
        return; // No host (an ORIGINAL_DST cluster without a destination): Envoy closes too.
    };
    let tls = cluster.config.tls.as_ref().map(|t| OriginateTls {
        config: t.raw.clone(),
        server_name: t.server_name.clone(),
    });
    // Envoy's TCP connection pool counts each connection it hands out as a request too.
    cluster.stats.upstream_cx_total.inc();
    cluster.stats.upstream_rq_total.inc();
    let upstream = match connect(
        &host.address,
        cluster.config.connect_timeout,
        tls.as_ref(),
        cluster.config.source_address,
    )
    .await
    {
        Ok(s) => s,
        Err(_) => {
            cluster.stats.upstream_cx_connect_fail.inc();
            cluster.record_outcome(&host, Outcome::LocalFailure);
            return;
        }
    };
    cluster.record_outcome(&host, Outcome::Success);
    let (dr, dw) = tokio::io::split(downstream);
    let (ur, uw) = tokio::io::split(upstream);
    let last = Activity::new();
    let copy = async { tokio::join!(pipe(dr, uw, &last), pipe(ur, dw, &last)) };
    match idle {
        None => {
            copy.await;
        }
        Some(idle) => {
            tokio::select! {
                _ = copy => {}
                _ = last.idle_for(idle) => {}
            }
        }
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

/// Copies one direction, then half-closes the other side.
async fn pipe(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, last: &Activity) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                last.touch();
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}
