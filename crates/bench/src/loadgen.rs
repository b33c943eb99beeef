//! The load generator: HTTP/1.1 keep-alive over N connections (hyper's client connection, one request in
//! flight per connection), run on the caller's thread in a single-threaded runtime.
//!
//! - [`closed_loop`]: each connection sends its next request as soon as the last answer arrived; the rate
//!   achieved is the maximum the target sustains at that concurrency (what `wrk -c N` measures).
//! - [`open_loop`]: requests are due on a fixed schedule (`rate` per second) regardless of how fast answers
//!   come; a free connection takes the next due request, and latency is measured from when it was *due*,
//!   not when it was sent, so a stalled target cannot hide its queue (no coordinated omission, like wrk2).
//!   The schedule is kept by a pacing thread sleeping on the high-resolution timer (tokio's timer wheel has
//!   1 ms granularity, too coarse for 200 µs intervals); how late the generator itself sent is reported as
//!   `send_lag`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::sync::{Mutex, mpsc};

use crate::stats::{MAX_SAMPLES, Samples};

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the in-flight requests of an open-loop run may take to drain after the schedule ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to send and what.
#[derive(Debug, Clone)]
pub struct Target {
    /// The listener (proxy or upstream).
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The path.
    pub path: String,
}

/// What one run measured.
#[derive(Debug)]
pub struct RunResult {
    /// 2xx answers inside the measuring window.
    pub ok: u64,
    /// 2xx answers in the whole run, warm-up included (for CPU per request).
    pub ok_total: u64,
    /// Non-2xx answers, I/O errors and timeouts in the whole run.
    pub errors: u64,
    /// Length of the measuring window.
    pub window: Duration,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Latencies of the answers inside the window.
    pub latencies: Samples,
    /// Open loop: how late the generator sent each request after it was due (its own error).
    pub send_lag: Samples,
    /// The first few error messages.
    pub error_examples: Vec<String>,
}

impl RunResult {
    /// Requests per second inside the window.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }
}

#[derive(Debug, Default)]
struct TaskResult {
    ok: u64,
    ok_total: u64,
    errors: u64,
    latencies: Samples,
    send_lag: Samples,
    error_examples: Vec<String>,
}

impl TaskResult {
    fn new(cap: usize) -> TaskResult {
        TaskResult {
            latencies: Samples::with_cap(cap),
            send_lag: Samples::with_cap(cap),
            ..TaskResult::default()
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.error_examples.len() < 3 {
            self.error_examples.push(e);
        }
    }
}

struct Conn {
    sender: SendRequest<Empty<Bytes>>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, String> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    /// One request; `Ok` only for a 2xx answer whose body was read whole.
    async fn request(&mut self, target: &Target) -> Result<(), String> {
        let req = hyper::Request::get(target.path.as_str())
            .header(hyper::header::HOST, target.host.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            self.sender.ready().await.map_err(|e| e.to_string())?;
            let resp = self
                .sender
                .send_request(req)
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            resp.into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
        }
    }
}

/// A connection, reopened after any error (with a short pause, so a dead target is not spun on).
async fn ensure_conn(
    conn: &mut Option<Conn>,
    target: &Target,
    result: &mut TaskResult,
) -> Option<()> {
    if conn.is_none() {
        match Conn::open(target.addr).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                result.error(e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                return None;
            }
        }
    }
    Some(())
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Closed loop: `connections` connections each sending back to back for `warmup + window`; answers that
/// complete inside the window count.
pub fn closed_loop(
    target: &Target,
    connections: usize,
    warmup: Duration,
    window: Duration,
) -> std::io::Result<RunResult> {
    let rt = runtime()?;
    let begin = Instant::now();
    let measure_from = begin + warmup;
    let end = measure_from + window;
    let cap = MAX_SAMPLES / connections.max(1);
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let target = target.clone();
            tasks.push(tokio::spawn(async move {
                let mut result = TaskResult::new(cap);
                let mut conn = None;
                while Instant::now() < end {
                    if ensure_conn(&mut conn, &target, &mut result).await.is_none() {
                        continue;
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    let sent = Instant::now();
                    match c.request(&target).await {
                        Ok(()) => {
                            let done = Instant::now();
                            result.ok_total += 1;
                            if sent >= measure_from && done <= end {
                                result.ok += 1;
                                result.latencies.record(done - sent);
                            }
                        }
                        Err(e) => {
                            result.error(e);
                            conn = None;
                        }
                    }
                }
                result
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            if let Ok(r) = t.await {
                all.push(r);
            }
        }
        all
    });
    Ok(merge(results, window, begin.elapsed()))
}

/// Open loop: `rate` requests per second due on a fixed schedule for `warmup + window`, spread over
/// `connections` connections; latency from when each request was due. Requests due inside the window count.
pub fn open_loop(
    target: &Target,
    connections: usize,
    rate: f64,
    warmup: Duration,
    window: Duration,
) -> std::io::Result<RunResult> {
    let rt = runtime()?;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let total = ((warmup + window).as_secs_f64() * rate).ceil() as u64;
    let cap = MAX_SAMPLES / connections.max(1);
    let (due_tx, due_rx) = mpsc::unbounded_channel::<Instant>();
    let due_rx = Arc::new(Mutex::new(due_rx));
    // The schedule starts a little after the connections are opened.
    let begin = Instant::now() + Duration::from_millis(50);
    let measure_from = begin + warmup;
    let pacer = std::thread::Builder::new()
        .name("bench-pacer".to_string())
        .spawn(move || {
            // Sleep as precisely as the kernel allows (default slack is 50 µs).
            let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1_000));
            for i in 0..total {
                let due = begin + interval.mul_f64(i as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if due_tx.send(due).is_err() {
                    return;
                }
            }
        })?;
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let target = target.clone();
            let due_rx = Arc::clone(&due_rx);
            tasks.push(tokio::spawn(async move {
                let mut result = TaskResult::new(cap);
                let mut conn = None;
                // Open the connection before the schedule starts.
                let _ = ensure_conn(&mut conn, &target, &mut result).await;
                loop {
                    let due = {
                        let mut rx = due_rx.lock().await;
                        match rx.recv().await {
                            Some(due) => due,
                            None => break,
                        }
                    };
                    // A request whose connection cannot be (re)opened fails.
                    let mut tries = 0;
                    while conn.is_none() && tries < 3 {
                        let _ = ensure_conn(&mut conn, &target, &mut result).await;
                        tries += 1;
                    }
                    let Some(c) = conn.as_mut() else {
                        result.error("no connection".to_string());
                        continue;
                    };
                    let sent = Instant::now();
                    match c.request(&target).await {
                        Ok(()) => {
                            let done = Instant::now();
                            result.ok_total += 1;
                            if due >= measure_from {
                                result.ok += 1;
                                result.latencies.record(done - due);
                                result.send_lag.record(sent.saturating_duration_since(due));
                            }
                        }
                        Err(e) => {
                            result.error(e);
                            conn = None;
                        }
                    }
                }
                result
            }));
        }
        let mut all = Vec::new();
        let drain_deadline = begin + warmup + window + DRAIN_TIMEOUT;
        for t in tasks {
            let abort = t.abort_handle();
            match tokio::time::timeout_at(drain_deadline.into(), t).await {
                Ok(Ok(r)) => all.push(r),
                Ok(Err(_)) => {}
                Err(_) => {
                    abort.abort();
                    let mut r = TaskResult::default();
                    r.error("connection still busy when the run ended".to_string());
                    all.push(r);
                }
            }
        }
        all
    });
    let _ = pacer.join();
    Ok(merge(results, window, begin.elapsed()))
}

fn merge(results: Vec<TaskResult>, window: Duration, wall: Duration) -> RunResult {
    let mut out = RunResult {
        ok: 0,
        ok_total: 0,
        errors: 0,
        window,
        wall,
        latencies: Samples::with_cap(MAX_SAMPLES),
        send_lag: Samples::with_cap(MAX_SAMPLES),
        error_examples: Vec::new(),
    };
    for r in results {
        out.ok += r.ok;
        out.ok_total += r.ok_total;
        out.errors += r.errors;
        out.latencies.merge(r.latencies);
        out.send_lag.merge(r.send_lag);
        for e in r.error_examples {
            if out.error_examples.len() < 5 && !out.error_examples.contains(&e) {
                out.error_examples.push(e);
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::upstream::LeanUpstream;

    fn target(up: &LeanUpstream) -> Target {
        Target {
            addr: up.addr(),
            host: "bench".to_string(),
            path: "/".to_string(),
        }
    }

    #[test]
    fn closed_loop_against_the_lean_upstream() {
        let up = LeanUpstream::start().unwrap();
        let r = closed_loop(
            &target(&up),
            4,
            Duration::from_millis(50),
            Duration::from_millis(200),
        )
        .unwrap();
        assert_eq!(r.errors, 0, "{:?}", r.error_examples);
        assert!(r.ok > 10, "{}", r.ok);
        assert_eq!(r.latencies.len() as u64, r.ok);
    }

    #[test]
    fn open_loop_keeps_the_schedule() {
        let up = LeanUpstream::start().unwrap();
        let r = open_loop(
            &target(&up),
            4,
            1000.0,
            Duration::from_millis(100),
            Duration::from_millis(400),
        )
        .unwrap();
        assert_eq!(r.errors, 0, "{:?}", r.error_examples);
        // 400 requests due inside the window, all answered.
        assert!((395..=405).contains(&r.ok), "{}", r.ok);
    }

    #[test]
    fn errors_are_counted_not_hidden() {
        // Nothing listens on a freshly released port.
        let port = testkit::free_port();
        let t = Target {
            addr: testkit::localhost(port),
            host: "bench".to_string(),
            path: "/".to_string(),
        };
        let r = open_loop(&t, 2, 200.0, Duration::ZERO, Duration::from_millis(100)).unwrap();
        assert_eq!(r.ok, 0);
        assert!(r.errors >= 20, "{}", r.errors);
    }
}
