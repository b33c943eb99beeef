//! The Markdown table: one column per setup (medians over runs) and Bosun/Envoy ratio columns.

use std::fmt::Write as _;

use crate::stats::median;
use crate::{Phase, Report, Setup, SetupRun, median_of};

#[derive(Debug, Clone, Copy)]
enum Fmt {
    /// Thousands separators, no decimals.
    Count,
    /// Microseconds.
    Micros,
    /// Three decimals.
    Fine,
    /// One decimal.
    One,
    /// Percent of a core.
    Percent,
}

fn format(v: Option<f64>, fmt: Fmt) -> String {
    let Some(v) = v.filter(|v| v.is_finite()) else {
        return "—".to_string();
    };
    match fmt {
        Fmt::Count | Fmt::Micros if v < -0.5 => format!("−{}", thousands((-v).round() as u64)),
        Fmt::Count => thousands(v.round() as u64),
        Fmt::Micros => thousands(v.round() as u64),
        Fmt::Fine => format!("{v:.3}"),
        Fmt::One => format!("{v:.1}"),
        Fmt::Percent => format!("{:.0} %", v * 100.0),
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct Row {
    label: String,
    fmt: Fmt,
    value: Box<dyn Fn(Setup) -> Option<f64>>,
    /// Whether the bosun/Envoy ratio column shows this row.
    ratio: bool,
}

fn phase<'a>(r: &'a SetupRun, mode: &str) -> Option<&'a Phase> {
    r.phases.iter().find(|p| p.mode == mode)
}

/// A fixed-rate phase counts for the latency rows only if the load generator sent on time: the
/// p99 of its own lag (how late it sent, against the schedule) at most this. A generator that was
/// itself held up (by other work on its CPU) measured its own stall, not the proxy.
const SEND_LAG_LIMIT_US: f64 = 1_000.0;

fn on_time(p: &Phase) -> bool {
    p.send_lag_p99_us.is_none_or(|lag| lag <= SEND_LAG_LIMIT_US)
}

/// The table and a few lines around it.
pub fn markdown(report: &Report, setups: &[Setup], services: usize) -> String {
    let runs = report.setups.clone();
    let services_runs = report.services.clone();
    let mut rows: Vec<Row> = Vec::new();
    let per_phase = |mode: String, f: fn(&Phase) -> Option<f64>| {
        let runs = runs.clone();
        Box::new(move |s: Setup| median_of(&runs, s, |r| phase(r, &mode).and_then(f)))
            as Box<dyn Fn(Setup) -> Option<f64>>
    };
    let per_run = |f: fn(&SetupRun) -> Option<f64>| {
        let runs = runs.clone();
        Box::new(move |s: Setup| median_of(&runs, s, f)) as Box<dyn Fn(Setup) -> Option<f64>>
    };

    rows.push(Row {
        label: format!(
            "max req/s ({} connections, closed loop)",
            report.connections
        ),
        fmt: Fmt::Count,
        value: per_phase("max".to_string(), |p| Some(p.rps)),
        ratio: true,
    });
    rows.push(Row {
        label: "requests per proxy CPU-second at max (capacity of one whole core)".to_string(),
        fmt: Fmt::Count,
        value: per_phase("max".to_string(), |p| {
            p.cpu_s_per_10k.filter(|c| *c > 0.0).map(|c| 10_000.0 / c)
        }),
        ratio: true,
    });
    // Latency: medians over the phases in which the generator was on time (see `on_time`).
    let timely = |mode: String, f: fn(&Phase) -> Option<f64>| {
        let runs = runs.clone();
        move |s: Setup| {
            median_of(&runs, s, |r| {
                phase(r, &mode).filter(|p| on_time(p)).and_then(f)
            })
        }
    };
    for &rate in &report.rates {
        let mode = format!("{rate:.0}/s");
        for (name, f) in [
            ("p50", (|p: &Phase| p.p50_us) as fn(&Phase) -> Option<f64>),
            ("p90", |p: &Phase| p.p90_us),
            ("p99", |p: &Phase| p.p99_us),
        ] {
            rows.push(Row {
                label: format!("latency {name} at {} req/s (µs)", thousands(rate as u64)),
                fmt: Fmt::Micros,
                value: Box::new(timely(mode.clone(), f)),
                ratio: true,
            });
        }
        // What a proxy adds to the tail: its p99 less the direct path's.
        let p99 = timely(mode.clone(), |p| p.p99_us);
        rows.push(Row {
            label: format!(
                "added latency p99 at {} req/s (p99 − direct's, µs)",
                thousands(rate as u64)
            ),
            fmt: Fmt::Micros,
            value: Box::new(move |s| match s {
                Setup::Direct => None,
                _ => Some(p99(s)? - p99(Setup::Direct)?),
            }),
            ratio: true,
        });
        // What a proxy adds by its own work: its latency less that of the bare relay's hop (one hop).
        if setups.contains(&Setup::Relay) {
            for (name, f) in [
                ("p50", (|p: &Phase| p.p50_us) as fn(&Phase) -> Option<f64>),
                ("p99", |p: &Phase| p.p99_us),
            ] {
                let latency = timely(mode.clone(), f);
                rows.push(Row {
                    label: format!(
                        "latency {name} beyond a bare relay's hop at {} req/s ({name} − relay's, µs)",
                        thousands(rate as u64)
                    ),
                    fmt: Fmt::Micros,
                    value: Box::new(move |s| match s {
                        Setup::Envoy | Setup::Bosun => {
                            Some(latency(s)? - latency(Setup::Relay)?)
                        }
                        _ => None,
                    }),
                    ratio: true,
                });
            }
        }
    }
    rows.push(Row {
        label: "proxy CPU s per 10k req, at max".to_string(),
        fmt: Fmt::Fine,
        value: per_phase("max".to_string(), |p| p.cpu_s_per_10k),
        ratio: true,
    });
    for &rate in &report.rates {
        rows.push(Row {
            label: format!(
                "proxy CPU s per 10k req, at {} req/s",
                thousands(rate as u64)
            ),
            fmt: Fmt::Fine,
            value: per_phase(format!("{rate:.0}/s"), |p| p.cpu_s_per_10k),
            ratio: true,
        });
    }
    rows.push(Row {
        label: "proxy CPU use at max (of one core)".to_string(),
        fmt: Fmt::Percent,
        value: per_phase("max".to_string(), |p| p.proxy_core_share),
        ratio: false,
    });
    rows.push(Row {
        label: "load generator + upstream CPU use at max".to_string(),
        fmt: Fmt::Percent,
        value: per_phase("max".to_string(), |p| p.generator_core_share),
        ratio: false,
    });
    rows.push(Row {
        label: "other processes' CPU during max (cores; noise)".to_string(),
        fmt: Fmt::Fine,
        value: per_phase("max".to_string(), |p| p.other_cores),
        ratio: false,
    });
    rows.push(Row {
        label: "RSS idle (MB)".to_string(),
        fmt: Fmt::One,
        value: per_run(|r| r.rss_idle_mb),
        ratio: true,
    });
    rows.push(Row {
        label: "RSS under load, peak (MB)".to_string(),
        fmt: Fmt::One,
        value: per_run(|r| r.rss_load_mb),
        ratio: true,
    });
    rows.push(Row {
        label: "RSS after load (MB)".to_string(),
        fmt: Fmt::One,
        value: per_run(|r| r.rss_after_mb),
        ratio: true,
    });
    if services > 0 {
        let svc = |f: fn(&crate::ServicesRun) -> Option<f64>| {
            let runs = services_runs.clone();
            Box::new(move |s: Setup| {
                let name = match s {
                    Setup::Envoy => "envoy",
                    Setup::Bosun => "bosun",
                    _ => return None,
                };
                let v: Vec<f64> = runs
                    .iter()
                    .filter(|r| r.proxy == name)
                    .filter_map(f)
                    .collect();
                median(&v)
            }) as Box<dyn Fn(Setup) -> Option<f64>>
        };
        rows.push(Row {
            label: format!(
                "RSS with {} clusters + {} routes (MB)",
                thousands(services as u64),
                thousands(services as u64)
            ),
            fmt: Fmt::One,
            value: svc(|r| r.rss_idle_mb),
            ratio: true,
        });
        rows.push(Row {
            label: "start → first request served (ms)".to_string(),
            fmt: Fmt::Count,
            value: per_run(|r| r.startup_ms),
            ratio: true,
        });
        rows.push(Row {
            label: format!(
                "start → first request, {} services (ms)",
                thousands(services as u64)
            ),
            fmt: Fmt::Count,
            value: svc(|r| Some(r.startup_ms)),
            ratio: true,
        });
    } else {
        rows.push(Row {
            label: "start → first request served (ms)".to_string(),
            fmt: Fmt::Count,
            value: per_run(|r| r.startup_ms),
            ratio: true,
        });
    }
    rows.push(Row {
        label: "upstream connections opened per run (3 load phases)".to_string(),
        fmt: Fmt::Count,
        value: per_run(|r| Some(r.upstream_connections as f64)),
        ratio: false,
    });
    let errors = {
        let runs = runs.clone();
        Box::new(move |s: Setup| {
            let n: u64 = runs
                .iter()
                .filter(|r| r.setup == s)
                .flat_map(|r| r.phases.iter().map(|p| p.errors))
                .sum();
            Some(n as f64)
        }) as Box<dyn Fn(Setup) -> Option<f64>>
    };
    rows.push(Row {
        label: "errors (all runs)".to_string(),
        fmt: Fmt::Count,
        value: errors,
        ratio: false,
    });

    // Columns: each setup; a ratio column after bosun (bosun / Envoy) and after bosun ×2.
    enum Col {
        Setup(Setup),
        Ratio(Setup, Setup),
    }
    let mut cols = Vec::new();
    for &s in setups {
        cols.push(Col::Setup(s));
        if s == Setup::Bosun && setups.contains(&Setup::Envoy) {
            cols.push(Col::Ratio(Setup::Bosun, Setup::Envoy));
        }
        if s == Setup::Bosun2 && setups.contains(&Setup::Envoy2) {
            cols.push(Col::Ratio(Setup::Bosun2, Setup::Envoy2));
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Envoy {}, bosun proxy, one worker each; {}; medians of {} run(s), {} s per load phase.\n",
        report.envoy_version, report.cpus, report.runs, report.seconds
    );
    out.push_str("| |");
    for c in &cols {
        match c {
            Col::Setup(s) => {
                let _ = write!(out, " {} |", s.title());
            }
            Col::Ratio(a, b) => {
                let _ = write!(out, " {}/{} |", a.title(), b.title());
            }
        }
    }
    out.push_str("\n|---|");
    for _ in &cols {
        out.push_str("---:|");
    }
    out.push('\n');
    for row in &rows {
        let _ = write!(out, "| {} |", row.label);
        for c in &cols {
            let cell = match c {
                Col::Setup(s) => format((row.value)(*s), row.fmt),
                Col::Ratio(a, b) if row.ratio => match ((row.value)(*a), (row.value)(*b)) {
                    // A difference of medians can come out below zero (noise): no ratio of it.
                    (Some(x), _) if x < 0.0 => "—".to_string(),
                    (Some(x), Some(y)) if y > 0.0 && x / y < 0.1 => format!("{:.3}×", x / y),
                    (Some(x), Some(y)) if y > 0.0 => format!("{:.2}×", x / y),
                    _ => "—".to_string(),
                },
                Col::Ratio(..) => String::new(),
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    let died: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            r.died
                .as_ref()
                .map(|d| format!("{} run {}: {d}", r.setup.title(), r.run + 1))
        })
        .collect();
    for d in died {
        let _ = writeln!(out, "\n**died:** {d}");
    }
    // Noise: while a proxy is saturated (max), any CPU others took on its core was taken from it.
    let taken: Vec<f64> = runs
        .iter()
        .filter_map(|r| phase(r, "max").and_then(|p| p.proxy_cpu_taken_by_others))
        .collect();
    let worst = taken.iter().copied().fold(0.0, f64::max);
    let noise: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.phases.iter().filter_map(|p| p.other_cores))
        .collect();
    if worst > 0.05 || median(&noise).unwrap_or(0.0) > 0.25 {
        let _ = writeln!(
            out,
            "\n**Noisy machine:** other processes used {:.2} cores (median over load phases) and up to \
             {:.0} % of the proxies' CPU while saturated; tail latencies at fixed rates suffer most \
             (see `send_lag` in the JSON: how late the generator itself sent). Rerun on a quiet machine, \
             or with `--nice -10` as root.",
            median(&noise).unwrap_or(0.0),
            worst * 100.0
        );
    }
    let fixed_rate: Vec<&Phase> = runs
        .iter()
        .flat_map(|r| r.phases.iter().filter(|p| p.mode != "max"))
        .collect();
    let late = fixed_rate.iter().filter(|p| !on_time(p)).count();
    if late > 0 {
        let _ = writeln!(
            out,
            "\nLatency rows leave out {late} of {} fixed-rate phases in which the load generator itself \
             sent late (its own lag p99 over {} µs): what it measured there was its own stall.",
            fixed_rate.len(),
            thousands(SEND_LAG_LIMIT_US as u64)
        );
    }
    let _ = writeln!(out, "\n(whole benchmark: {:.0} s)", report.wall_s);
    out
}

/// One line per run on stderr while the benchmark goes on.
pub fn progress_line(r: &SetupRun) -> String {
    let mut line = format!("{} run {}:", r.setup.title(), r.run + 1);
    for p in &r.phases {
        if p.mode == "max" {
            let _ = write!(line, " max {} req/s", thousands(p.rps.round() as u64));
        } else {
            let _ = write!(
                line,
                ", {} p50/p99 {}/{} µs",
                p.mode,
                format(p.p50_us, Fmt::Micros),
                format(p.p99_us, Fmt::Micros)
            );
        }
        if p.errors > 0 {
            let _ = write!(line, " ({} errors: {:?})", p.errors, p.error_examples);
        }
    }
    if let Some(ms) = r.startup_ms {
        let _ = write!(line, ", first request after {ms:.0} ms");
    }
    if let (Some(idle), Some(load)) = (r.rss_idle_mb, r.rss_load_mb) {
        let _ = write!(line, ", RSS {idle:.1} → {load:.1} MB");
    }
    if let Some(d) = &r.died {
        let _ = write!(line, " DIED: {d}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(setup: Setup, p50: f64, p99: f64) -> SetupRun {
        let phase = Phase {
            mode: "1000/s".to_string(),
            rps: 1000.0,
            ok: 3000,
            errors: 0,
            p50_us: Some(p50),
            p90_us: Some(p99),
            p99_us: Some(p99),
            p999_us: Some(p99),
            max_us: Some(p99),
            samples: 3000,
            samples_dropped: 0,
            send_lag_p50_us: Some(10.0),
            send_lag_p99_us: Some(20.0),
            proxy_cpu_s: None,
            proxy_cpu_s_each: Vec::new(),
            cpu_s_per_10k: None,
            proxy_core_share: None,
            generator_core_share: None,
            other_cores: None,
            proxy_cpu_taken_by_others: None,
            generator_cpu_taken_by_others: None,
            error_examples: Vec::new(),
        };
        SetupRun {
            setup,
            run: 0,
            processes: Vec::new(),
            startup_ms: None,
            rss_idle_mb: None,
            rss_load_mb: None,
            rss_after_mb: None,
            phases: vec![phase],
            upstream_connections: 0,
            died: None,
        }
    }

    #[test]
    fn a_proxys_own_latency_is_taken_beyond_the_relays_hop() {
        let setups = [Setup::Direct, Setup::Relay, Setup::Envoy, Setup::Bosun];
        let report = Report {
            envoy_version: "1.40.0".to_string(),
            bosun: "bosun".to_string(),
            cpus: "pinned".to_string(),
            connections: 32,
            runs: 1,
            seconds: 3.0,
            rates: vec![1000.0],
            setups: vec![
                run(Setup::Direct, 90.0, 300.0),
                run(Setup::Relay, 310.0, 740.0),
                run(Setup::Envoy, 390.0, 1100.0),
                run(Setup::Bosun, 330.0, 920.0),
            ],
            services: Vec::new(),
            wall_s: 1.0,
        };
        let table = markdown(&report, &setups, 0);
        let row = |label: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("| {label}")))
                .unwrap_or_else(|| panic!("no row {label:?} in\n{table}"))
                .to_string()
        };
        // Columns: direct, bare relay, Envoy, bosun, bosun/Envoy.
        assert_eq!(
            row("added latency p99 at 1,000"),
            "| added latency p99 at 1,000 req/s (p99 − direct's, µs) | — | 440 | 800 | 620 | 0.78× |"
        );
        assert_eq!(
            row("latency p50 beyond a bare relay's hop"),
            "| latency p50 beyond a bare relay's hop at 1,000 req/s (p50 − relay's, µs) | — | — | 80 | 20 | 0.25× |"
        );
        assert_eq!(
            row("latency p99 beyond a bare relay's hop"),
            "| latency p99 beyond a bare relay's hop at 1,000 req/s (p99 − relay's, µs) | — | — | 360 | 180 | 0.50× |"
        );
        // Without the relay there is no such row.
        let without = markdown(&report, &[Setup::Direct, Setup::Envoy, Setup::Bosun], 0);
        assert!(!without.contains("beyond a bare relay"), "{without}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(15_512), "15,512");
        assert_eq!(thousands(1_234_567), "1,234,567");
        // A difference of medians may be below zero: shown so, not as 0.
        assert_eq!(format(Some(-119.4), Fmt::Micros), "−119");
        assert_eq!(format(Some(-1_234.0), Fmt::Count), "−1,234");
        assert_eq!(format(Some(-0.2), Fmt::Micros), "0");
    }
}
