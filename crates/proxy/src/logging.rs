//! Envoy's admin `/logging`: log levels changed at runtime by Envoy's logger names (`POST
//! /logging?router=debug`, `?paths=http:debug,upstream:trace`, `?level=warning`), as `istioctl
//! proxy-config log` does. Every logger Envoy 1.40 has is known, so commands written for Envoy work
//! unchanged; each stands for the parts of the proxy that do its job (`router` and `http`: the HTTP
//! connection manager and router; `upstream`, `pool`: clusters and connection pools; `config`: xDS),
//! and a part logs at the most verbose level of the loggers that stand for it. Loggers with no such
//! part are listed and set, and change nothing.

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use http::StatusCode;

/// Applies a `tracing` filter (`EnvFilter` syntax) to the process's logging: given by the binary,
/// which owns the subscriber.
pub trait Reload: Send + Sync + std::fmt::Debug {
    fn reload(&self, directives: &str) -> Result<(), String>;
}

/// Envoy 1.40's loggers, in the order its `/logging` lists them.
const ENVOY_LOGGERS: [&str; 73] = [
    "a2a",
    "admin",
    "ai_protocol_manager",
    "alternate_protocols_cache",
    "aws",
    "assert",
    "backtrace",
    "basic_auth",
    "cache_filter",
    "client",
    "config",
    "connection",
    "conn_handler",
    "compression",
    "credential_injector",
    "decompression",
    "dns",
    "dubbo",
    "envoy_bug",
    "ext_authz",
    "ext_proc",
    "rocketmq",
    "file",
    "filter",
    "forward_proxy",
    "geolocation",
    "grpc",
    "happy_eyeballs",
    "hc",
    "health_checker",
    "http",
    "http2",
    "hystrix",
    "init",
    "io",
    "jwt",
    "json_rpc",
    "kafka",
    "key_value_store",
    "lua",
    "local_rate_limit",
    "main",
    "matcher",
    "mcp",
    "misc",
    "mongo",
    "multi_connection",
    "notification",
    "oauth2",
    "quic",
    "quic_stream",
    "pool",
    "rate_limit_quota",
    "rbac",
    "rds",
    "redis",
    "router",
    "runtime",
    "stats",
    "secret",
    "sse",
    "tap",
    "testing",
    "thrift",
    "tracing",
    "upstream",
    "udp",
    "wasm",
    "websocket",
    "golang",
    "stats_sinks",
    "dynamic_modules",
    "ip_tagging",
];

/// The proxy's `tracing` targets and the Envoy loggers that stand for each. The crate's own target
/// (`proxy`: listeners, draining) comes first: a filter directive for it also covers any module not
/// named here, which the later, more specific directives then override.
const TARGETS: [(&str, &[&str]); 13] = [
    ("proxy", &["main", "connection", "conn_handler", "init"]),
    ("bosun", &["main"]),
    ("proxy::admin", &["admin"]),
    ("proxy::dynamic", &["config", "rds", "init"]),
    ("xds_client", &["config", "grpc"]),
    ("xds_api", &["config"]),
    ("proxy_model", &["config"]),
    (
        "proxy::http",
        &[
            "http",
            "http2",
            "router",
            "filter",
            "websocket",
            "local_rate_limit",
            "forward_proxy",
        ],
    ),
    ("proxy::tcp", &["filter", "connection"]),
    (
        "proxy::upstream",
        &[
            "upstream",
            "pool",
            "client",
            "hc",
            "health_checker",
            "dns",
            "happy_eyeballs",
        ],
    ),
    ("proxy::tls", &["secret", "connection"]),
    ("proxy::stats", &["stats"]),
    ("proxy::access_log", &["file", "misc"]),
];

/// Envoy's level names, least verbose last.
const LEVELS: [&str; 7] = [
    "trace", "debug", "info", "warning", "error", "critical", "off",
];

/// The `tracing` level of Envoy level `LEVELS[i]` (`critical` is `error`: `tracing` has none above).
fn tracing_level(i: usize) -> &'static str {
    ["trace", "debug", "info", "warn", "error", "error", "off"][i]
}

/// The loggers' levels and how to apply them.
#[derive(Debug)]
pub struct Loggers {
    /// `--log-level` as given: the filter in force until a level is changed, and kept in front of
    /// the per-target directives after (for targets not in [`TARGETS`]).
    base: String,
    /// Index into [`LEVELS`] per logger of [`ENVOY_LOGGERS`].
    levels: Mutex<Vec<usize>>,
    reload: Box<dyn Reload>,
}

/// What `/logging` answers.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Loggers {
    /// Every logger starts at `base`'s level when it is one (`info`, `warn`, …), else at `info`.
    pub fn new(base: &str, reload: Box<dyn Reload>) -> Loggers {
        let start = match base.trim() {
            "warn" => Some(3),
            other => LEVELS.iter().position(|l| *l == other),
        }
        .unwrap_or(2);
        Loggers {
            base: base.to_owned(),
            levels: Mutex::new(vec![start; ENVOY_LOGGERS.len()]),
            reload,
        }
    }

    /// `POST /logging` with its query string (Envoy answers `GET` with 405 before this).
    pub fn handle(&self, query: Option<&str>) -> Answer {
        let params = crate::admin::query_params(query);
        let result = match params.as_slice() {
            [] => Ok(()),
            [(key, value)] => self.change(key, value),
            _ => Err("invalid number of parameters"),
        };
        let mut body = String::new();
        let status = match result {
            Ok(()) => StatusCode::OK,
            Err(why) => {
                let _ = write!(
                    body,
                    "error: {why}\n\n\
                     usage: /logging?<name>=<level> (change single level)\n\
                     usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n\
                     usage: /logging?level=<level> (change all levels)\n\
                     usage: /logging?group=<group_name>:<level> (change group of loggers)\n\
                     levels: "
                );
                for l in LEVELS {
                    let _ = write!(body, "{l} ");
                }
                body.push('\n');
                StatusCode::BAD_REQUEST
            }
        };
        body.push_str("active loggers:\n");
        let levels = self.lock();
        for (name, level) in ENVOY_LOGGERS.iter().zip(levels.iter()) {
            let _ = writeln!(body, "  {name}: {}", LEVELS[*level]);
        }
        // Envoy's list ends with an empty line.
        body.push('\n');
        Answer { status, body }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.levels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One query parameter: `level=L`, `paths=a:L,b:L`, `group=…` or `NAME=L`. All or nothing.
    fn change(&self, key: &str, value: &str) -> Result<(), &'static str> {
        let mut levels = self.lock();
        let mut next = levels.clone();
        match key {
            "level" => next.fill(level_index(value)?),
            "paths" => {
                for pair in value.split(',') {
                    let (name, level) = pair.split_once(':').unwrap_or((pair, ""));
                    if name.is_empty() || level.is_empty() {
                        return Err("empty logger name or empty logger level");
                    }
                    next[logger_index(name)?] = level_index(level)?;
                }
            }
            "group" => return Err("group parameter requires fine-grain logging to be enabled"),
            name => {
                let level = level_index(value)?;
                next[logger_index(name)?] = level;
            }
        }
        self.reload
            .reload(&directives(&self.base, &next))
            .map_err(|_| "the new levels could not be applied")?;
        *levels = next;
        Ok(())
    }
}

fn level_index(name: &str) -> Result<usize, &'static str> {
    LEVELS
        .iter()
        .position(|l| *l == name)
        .ok_or("unknown logger level")
}

fn logger_index(name: &str) -> Result<usize, &'static str> {
    ENVOY_LOGGERS
        .iter()
        .position(|l| *l == name)
        .ok_or("unknown logger name")
}

/// The `tracing` filter for these levels: `base`, then each target at the most verbose level of
/// the loggers that stand for it.
fn directives(base: &str, levels: &[usize]) -> String {
    let mut out = base.trim().to_owned();
    for (target, loggers) in TARGETS {
        let most_verbose = loggers
            .iter()
            .filter_map(|l| ENVOY_LOGGERS.iter().position(|e| e == l))
            .map(|i| levels[i])
            .min()
            .unwrap_or(2);
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{target}={}", tracing_level(most_verbose));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;

    /// Records the filters applied.
    #[derive(Debug, Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Reload for Recorder {
        fn reload(&self, directives: &str) -> Result<(), String> {
            self.0.lock().unwrap().push(directives.to_owned());
            Ok(())
        }
    }

    fn loggers(base: &str) -> (Loggers, Recorder) {
        let recorder = Recorder::default();
        (Loggers::new(base, Box::new(recorder.clone())), recorder)
    }

    fn level_of(answer: &Answer, logger: &str) -> String {
        let prefix = format!("  {logger}: ");
        answer
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn one_logger_changes_its_targets_only() {
        let (loggers, applied) = loggers("info");
        let answer = loggers.handle(Some("router=debug"));
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(level_of(&answer, "router"), "debug");
        assert_eq!(level_of(&answer, "upstream"), "info");
        let filter = applied.0.lock().unwrap().last().unwrap().clone();
        assert!(filter.starts_with("info,proxy=info,"), "{filter}");
        assert!(filter.contains(",proxy::http=debug,"), "{filter}");
        assert!(filter.contains(",proxy::upstream=info,"), "{filter}");
    }

    #[test]
    fn paths_and_level_set_several_and_critical_is_error() {
        let (loggers, applied) = loggers("warn");
        assert_eq!(level_of(&loggers.handle(None), "http"), "warning");
        let answer = loggers.handle(Some("paths=upstream%3Atrace,config:critical"));
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(level_of(&answer, "upstream"), "trace");
        let filter = applied.0.lock().unwrap().last().unwrap().clone();
        assert!(filter.contains("proxy::upstream=trace"), "{filter}");
        assert!(filter.contains("xds_api=error"), "{filter}");
        let answer = loggers.handle(Some("level=off"));
        assert!(
            answer
                .body
                .lines()
                .skip(1)
                .filter(|l| !l.is_empty())
                .all(|l| l.ends_with(": off")),
            "{}",
            answer.body
        );
    }

    #[test]
    fn mistakes_are_refused_with_usage_and_change_nothing() {
        let (loggers, applied) = loggers("info");
        for (query, why) in [
            ("nope=debug", "unknown logger name"),
            ("router=loud", "unknown logger level"),
            ("router=debug&http=trace", "invalid number of parameters"),
            ("paths=router:debug,nope:trace", "unknown logger name"),
            ("paths=router", "empty logger name or empty logger level"),
            ("group=x:debug", "fine-grain"),
        ] {
            let answer = loggers.handle(Some(query));
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
            assert!(answer.body.starts_with("error: "), "{query}");
            assert!(answer.body.contains(why), "{query}: {}", answer.body);
            assert!(answer.body.contains("usage: /logging?level=<level>"));
            assert_eq!(level_of(&answer, "router"), "info", "{query}");
        }
        assert!(applied.0.lock().unwrap().is_empty());
    }
}
