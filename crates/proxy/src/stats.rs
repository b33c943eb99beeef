//! Counters and gauges under Envoy's stat names (`cluster.X.upstream_rq_total`, `http.P.downstream_rq_2xx`
//! …), rendered for `/stats` and `/stats/prometheus`. Names are registered when the config is built, so
//! the set is bounded by the config, never by traffic.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge, and whether it was ever changed (Envoy's `usedonly` shows a gauge back at 0 that was).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64, AtomicBool);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
        self.mark_used();
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.mark_used();
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
        self.mark_used();
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    fn mark_used(&self) {
        // A load first: after the first change this never writes the shared cache line again.
        if !self.1.load(Ordering::Relaxed) {
            self.1.store(true, Ordering::Relaxed);
        }
    }
}

/// One open connection, counted on an `*_cx_active` gauge until dropped, and then on its
/// `*_cx_destroy` counter.
#[derive(Debug)]
pub struct Open {
    active: Arc<Gauge>,
    destroyed: Arc<Counter>,
}

impl Open {
    pub fn new(active: &Arc<Gauge>, destroyed: &Arc<Counter>) -> Open {
        active.inc();
        Open {
            active: active.clone(),
            destroyed: destroyed.clone(),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.active.dec();
        self.destroyed.inc();
    }
}

/// Counted on a gauge while held (Envoy's `downstream_cx_http1_active`, which has no `_destroy`).
#[derive(Debug)]
pub struct Held(Arc<Gauge>);

impl Held {
    pub fn new(gauge: &Arc<Gauge>) -> Held {
        gauge.inc();
        Held(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A connection whose bytes are counted as they are read and written (Envoy's
/// `*_cx_rx_bytes_total` and `*_cx_tx_bytes_total`), holding `G` (what counts it open) as long as
/// it lives. Above TLS it counts the plaintext, as Envoy does.
#[derive(Debug)]
pub struct Metered<T, G = ()> {
    io: T,
    rx: Arc<Counter>,
    tx: Arc<Counter>,
    _held: G,
}

impl<T> Metered<T> {
    pub fn new(io: T, rx: &Arc<Counter>, tx: &Arc<Counter>) -> Metered<T> {
        Metered::holding(io, rx, tx, ())
    }
}

impl<T, G> Metered<T, G> {
    pub fn holding(io: T, rx: &Arc<Counter>, tx: &Arc<Counter>, held: G) -> Metered<T, G> {
        Metered {
            io,
            rx: rx.clone(),
            tx: tx.clone(),
            _held: held,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + Unpin, G: Unpin> AsyncRead for Metered<T, G> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.rx.add(n as u64);
        }
        read
    }
}

impl<T: AsyncWrite + Unpin, G: Unpin> AsyncWrite for Metered<T, G> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.tx.add(n as u64);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            self.tx.add(n as u64);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[derive(Debug, Clone)]
enum Stat {
    Counter(Arc<Counter>),
    /// A counter Envoy makes on its first increment (response code classes): not shown until then.
    LazyCounter(Arc<Counter>),
    Gauge(Arc<Gauge>),
}

impl Stat {
    fn value(&self) -> i128 {
        match self {
            Stat::Counter(c) | Stat::LazyCounter(c) => i128::from(c.get()),
            Stat::Gauge(g) => i128::from(g.get()),
        }
    }

    /// Whether it exists yet, as Envoy's pages see it.
    fn exists(&self) -> bool {
        match self {
            Stat::LazyCounter(c) => c.get() > 0,
            _ => true,
        }
    }

    /// Changed since it was registered (a counter only goes up).
    fn used(&self) -> bool {
        match self {
            Stat::Counter(c) | Stat::LazyCounter(c) => c.get() > 0,
            Stat::Gauge(g) => g.1.load(Ordering::Relaxed),
        }
    }
}

/// Which stats a page shows: Envoy's `filter` (a regular expression found anywhere in the name) and
/// `usedonly` (those ever changed).
#[derive(Debug, Default)]
pub struct Selection {
    filter: Option<regex::Regex>,
    used_only: bool,
}

impl Selection {
    pub fn new(filter: Option<&str>, used_only: bool) -> Result<Selection, regex::Error> {
        Ok(Selection {
            filter: filter.map(regex::Regex::new).transpose()?,
            used_only,
        })
    }

    fn keeps(&self, name: &str, stat: &Stat) -> bool {
        stat.exists()
            && (!self.used_only || stat.used())
            && self.filter.as_ref().is_none_or(|f| f.is_match(name))
    }
}

/// All stats of the process by name. Looking a stat up takes a lock; the hot path holds `Arc`s
/// obtained when the config was built.
#[derive(Debug, Default)]
pub struct Registry {
    stats: Mutex<BTreeMap<String, Stat>>,
}

impl Registry {
    pub fn counter(&self, name: &str) -> Arc<Counter> {
        self.counter_shown(name, false)
    }

    /// A counter that pages show only once it counted something, as Envoy's response code
    /// counters (`upstream_rq_5xx`), which it makes on their first use.
    pub fn counter_on_first_use(&self, name: &str) -> Arc<Counter> {
        self.counter_shown(name, true)
    }

    fn counter_shown(&self, name: &str, on_first_use: bool) -> Arc<Counter> {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        match stats.get(name) {
            Some(Stat::Counter(c)) if !on_first_use => c.clone(),
            Some(Stat::LazyCounter(c)) if on_first_use => c.clone(),
            _ => {
                let c = Arc::new(Counter::default());
                let stat = if on_first_use {
                    Stat::LazyCounter(c.clone())
                } else {
                    Stat::Counter(c.clone())
                };
                stats.insert(name.to_owned(), stat);
                c
            }
        }
    }

    pub fn gauge(&self, name: &str) -> Arc<Gauge> {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        match stats.get(name) {
            Some(Stat::Gauge(g)) => g.clone(),
            _ => {
                let g = Arc::new(Gauge::default());
                stats.insert(name.to_owned(), Stat::Gauge(g.clone()));
                g
            }
        }
    }

    /// The selected stats, by name.
    fn selected(&self, selection: &Selection) -> Vec<(String, Stat)> {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        stats
            .iter()
            .filter(|(name, stat)| selection.keeps(name, stat))
            .map(|(name, stat)| (name.clone(), stat.clone()))
            .collect()
    }

    /// Envoy's `/stats` text: `name: value`, sorted.
    pub fn render_text(&self, selection: &Selection) -> String {
        let mut out = String::new();
        for (name, stat) in self.selected(selection) {
            let _ = writeln!(out, "{name}: {}", stat.value());
        }
        out
    }

    /// Envoy's `/stats?format=json`: `{"stats": [{"name": …, "value": …}, …]}`, sorted.
    pub fn render_json(&self, selection: &Selection) -> String {
        let stats: Vec<_> = self
            .selected(selection)
            .into_iter()
            .map(|(name, stat)| serde_json::json!({"name": name, "value": stat.value() as i64}))
            .collect();
        serde_json::json!({ "stats": stats }).to_string()
    }

    /// Prometheus text format with Envoy's naming: `envoy_` prefix, dots to underscores, and the
    /// cluster name as a label (`envoy_cluster_upstream_rq_total{envoy_cluster_name="x"}`).
    pub fn render_prometheus(&self, selection: &Selection) -> String {
        let stats = self.selected(selection);
        let mut families: BTreeMap<String, (&'static str, Vec<String>)> = BTreeMap::new();
        for (name, stat) in &stats {
            let (family, labels) = prometheus_name(name);
            let kind = match stat {
                Stat::Counter(_) | Stat::LazyCounter(_) => "counter",
                Stat::Gauge(_) => "gauge",
            };
            let value = stat.value().to_string();
            families
                .entry(family)
                .or_insert_with(|| (kind, Vec::new()))
                .1
                .push(format!("{labels} {value}"));
        }
        let mut out = String::new();
        for (family, (kind, samples)) in families {
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for s in samples {
                let _ = writeln!(out, "{family}{s}");
            }
        }
        out
    }
}

/// `cluster.reviews.upstream_rq_total` → (`envoy_cluster_upstream_rq_total`, `{envoy_cluster_name="reviews"}`).
fn prometheus_name(name: &str) -> (String, String) {
    let sanitize = |s: &str| {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
    };
    let tagged = [
        ("cluster.", "envoy_cluster_name"),
        ("http.", "envoy_http_conn_manager_prefix"),
        ("listener.", "envoy_listener_address"),
        ("tcp.", "envoy_tcp_prefix"),
    ];
    for (prefix, label) in tagged {
        if let Some(rest) = name.strip_prefix(prefix)
            && let Some((tag, metric)) = rest.rsplit_once('.')
        {
            let family = format!("envoy_{}{}", sanitize(prefix), sanitize(metric));
            return (family, format!("{{{label}=\"{tag}\"}}"));
        }
    }
    (format!("envoy_{}", sanitize(name)), String::new())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn text_and_prometheus_use_envoy_names() {
        let r = Registry::default();
        r.counter("cluster.reviews.upstream_rq_total").add(3);
        r.gauge("cluster.reviews.upstream_rq_active").set(2);
        assert_eq!(
            r.render_text(&Selection::default()),
            "cluster.reviews.upstream_rq_active: 2\ncluster.reviews.upstream_rq_total: 3\n"
        );
        let p = r.render_prometheus(&Selection::default());
        assert!(
            p.contains("# TYPE envoy_cluster_upstream_rq_total counter\n"),
            "{p}"
        );
        assert!(
            p.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"reviews\"} 3\n"),
            "{p}"
        );
        // The TCP proxy's stat prefix is a label too, as Envoy tags it.
        r.counter("tcp.db.downstream_cx_total").inc();
        let p = r.render_prometheus(&Selection::default());
        assert!(
            p.contains("envoy_tcp_downstream_cx_total{envoy_tcp_prefix=\"db\"} 1\n"),
            "{p}"
        );
    }

    #[tokio::test]
    async fn metered_counts_the_bytes_that_moved() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (rx, tx) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
        let (near, mut far) = tokio::io::duplex(64);
        let mut metered = Metered::new(near, &rx, &tx);
        metered.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        far.read_exact(&mut got).await.unwrap();
        far.write_all(b"answer!").await.unwrap();
        drop(far);
        let mut back = Vec::new();
        metered.read_to_end(&mut back).await.unwrap();
        assert_eq!((rx.get(), tx.get()), (7, 5));
        assert_eq!(back, b"answer!");
    }

    #[test]
    fn a_selection_filters_by_name_and_use() {
        let r = Registry::default();
        r.counter("cluster.a.upstream_rq_total").inc();
        r.counter("cluster.a.upstream_rq_timeout");
        let g = r.gauge("cluster.a.upstream_rq_active");
        g.inc();
        g.dec();
        r.gauge("cluster.a.membership_total");
        let used = Selection::new(None, true).unwrap();
        assert_eq!(
            r.render_text(&used),
            "cluster.a.upstream_rq_active: 0\ncluster.a.upstream_rq_total: 1\n"
        );
        let filtered = Selection::new(Some("rq_t"), false).unwrap();
        assert_eq!(
            r.render_json(&filtered),
            r#"{"stats":[{"name":"cluster.a.upstream_rq_timeout","value":0},{"name":"cluster.a.upstream_rq_total","value":1}]}"#
        );
        assert!(Selection::new(Some("(bad"), false).is_err());
    }
}
