//! Counters and gauges under Envoy's stat names (`cluster.X.upstream_rq_total`, `http.P.downstream_rq_2xx`
//! …), rendered for `/stats` and `/stats/prometheus`. Names are registered when the config is built, so
//! the set is bounded by the config, never by traffic.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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

#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
enum Stat {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
}

/// All stats of the process by name. Looking a stat up takes a lock; the hot path holds `Arc`s
/// obtained when the config was built.
#[derive(Debug, Default)]
pub struct Registry {
    stats: Mutex<BTreeMap<String, Stat>>,
}

impl Registry {
    pub fn counter(&self, name: &str) -> Arc<Counter> {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        match stats.get(name) {
            Some(Stat::Counter(c)) => c.clone(),
            _ => {
                let c = Arc::new(Counter::default());
                stats.insert(name.to_owned(), Stat::Counter(c.clone()));
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

    /// Envoy's `/stats` text: `name: value`, sorted.
    pub fn render_text(&self) -> String {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for (name, stat) in stats.iter() {
            let value = match stat {
                Stat::Counter(c) => c.get().to_string(),
                Stat::Gauge(g) => g.get().to_string(),
            };
            let _ = writeln!(out, "{name}: {value}");
        }
        out
    }

    /// Prometheus text format with Envoy's naming: `envoy_` prefix, dots to underscores, and the
    /// cluster name as a label (`envoy_cluster_upstream_rq_total{envoy_cluster_name="x"}`).
    pub fn render_prometheus(&self) -> String {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let mut families: BTreeMap<String, (&'static str, Vec<String>)> = BTreeMap::new();
        for (name, stat) in stats.iter() {
            let (family, labels) = prometheus_name(name);
            let (kind, value) = match stat {
                Stat::Counter(c) => ("counter", c.get().to_string()),
                Stat::Gauge(g) => ("gauge", g.get().to_string()),
            };
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
    use super::*;

    #[test]
    fn text_and_prometheus_use_envoy_names() {
        let r = Registry::default();
        r.counter("cluster.reviews.upstream_rq_total").add(3);
        r.gauge("cluster.reviews.upstream_rq_active").set(2);
        assert_eq!(
            r.render_text(),
            "cluster.reviews.upstream_rq_active: 2\ncluster.reviews.upstream_rq_total: 3\n"
        );
        let p = r.render_prometheus();
        assert!(
            p.contains("# TYPE envoy_cluster_upstream_rq_total counter\n"),
            "{p}"
        );
        assert!(
            p.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"reviews\"} 3\n"),
            "{p}"
        );
    }
}
