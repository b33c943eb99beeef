//! Ports and bounded, blocking readiness checks (usable from sync and async tests alike).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::lock;

/// How long one readiness probe (connect, or one admin GET) may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest admin response [`blocking_get`] reads.
const MAX_BLOCKING_BODY: usize = 4 << 20;

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Where [`try_free_port`] looks first: below the kernel's ephemeral range, which outgoing
/// connections take their local ports from. A port from that range (what binding `:0` gives) can be
/// taken by any connection a test or proxy opens before the server binds it.
const FIXED_PORTS_FROM: u16 = 20_000;

/// The lowest port the kernel hands to outgoing connections (`ip_local_port_range`).
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A port on 127.0.0.1 that was free a moment ago: below the ephemeral range when there is room
/// (spread by process id, so concurrent test processes rarely try the same ones), else bound to `:0`,
/// read and released.
///
/// Never hands out the same port twice within one test process. Another process can still take it before
/// the test binds it; prefer letting servers bind `:0` themselves (as [`crate::Upstream`] does) where possible.
pub fn try_free_port() -> Result<u16> {
    if let Some(low) = ephemeral_low().filter(|&low| low > FIXED_PORTS_FROM + 1_000) {
        let span = u32::from(low - FIXED_PORTS_FROM);
        let start = std::process::id().wrapping_mul(7_919) % span;
        let mut handed = lock(handed_out());
        for i in 0..span.min(4_096) {
            // Steps of a prime that does not divide the span walk it without repeating soon.
            let offset = (start + i.wrapping_mul(4_099)) % span;
            let Ok(port) = u16::try_from(u32::from(FIXED_PORTS_FROM) + offset) else {
                continue;
            };
            if handed.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            handed.insert(port);
            return Ok(port);
        }
    }
    for _ in 0..64 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Error::io("binding 127.0.0.1:0 to find a free port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("reading the address of a bound socket", e))?
            .port();
        drop(listener);
        if lock(handed_out()).insert(port) {
            return Ok(port);
        }
    }
    Err(Error::io(
        "finding a free port",
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "64 tries returned ports already handed out",
        ),
    ))
}

/// [`try_free_port`], panicking on failure (meant for tests).
///
/// # Panics
/// When no port on 127.0.0.1 can be bound.
pub fn free_port() -> u16 {
    match try_free_port() {
        Ok(port) => port,
        Err(e) => panic!("testkit::free_port: {e}"),
    }
}

/// `127.0.0.1:port`.
pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until a TCP connect to `addr` succeeds, for at most `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("{addr} to accept connections (last error: {last})"),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `GET http://admin_addr/ready` answers 200 (Envoy's and `bosun proxy`'s admin readiness), for at
/// most `timeout`.
pub fn wait_ready(admin_addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe_ready(admin_addr) {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("GET http://{admin_addr}/ready to answer 200 (last: {last})"),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One readiness probe; `Err` describes what was seen instead.
pub(crate) fn probe_ready(admin_addr: SocketAddr) -> Result<(), String> {
    match blocking_get(admin_addr, "/ready", PROBE_TIMEOUT) {
        Ok((200, _)) => Ok(()),
        Ok((status, body)) => Err(format!("status {status}: {}", body.trim())),
        Err(e) => Err(e.to_string()),
    }
}

/// A minimal blocking `GET` over HTTP/1.1 with `Connection: close`, for admin endpoints: returns the status
/// code and the body as text. Everything (connect, write, read) is bounded by `timeout`.
pub fn blocking_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String)> {
    blocking_request(addr, "GET", path, timeout)
}

/// As [`blocking_get`], with `POST` and no body (admin actions such as Envoy's `/drain_listeners`).
pub fn blocking_post(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String)> {
    blocking_request(addr, "POST", path, timeout)
}

fn blocking_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let deadline = Instant::now() + timeout;
    let io = |e| Error::io(format!("{method} http://{addr}{path}"), e);
    let length = if method == "GET" {
        ""
    } else {
        "Content-Length: 0\r\n"
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    let remaining = |now: Instant| {
        deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(1))
    };
    stream
        .set_write_timeout(Some(remaining(Instant::now())))
        .map_err(io)?;
    stream
        .write_all(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{length}Accept: */*\r\n\r\n"
            )
            .as_bytes(),
        )
        .map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                what: format!("the response to {method} http://{addr}{path}"),
                after: timeout,
            });
        }
        stream.set_read_timeout(Some(remaining(now))).map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_BLOCKING_BODY {
                    return Err(Error::BadResponse {
                        addr,
                        reason: format!(
                            "{method} {path}: response larger than {MAX_BLOCKING_BODY} bytes"
                        ),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    parse_response(addr, path, &raw)
}

fn parse_response(addr: SocketAddr, path: &str, raw: &[u8]) -> Result<(u16, String)> {
    let bad = |reason: &str| Error::BadResponse {
        addr,
        reason: format!("{path}: {reason}"),
    };
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| bad("no status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// Decodes a chunked body leniently (admin bodies are text).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        if size == 0 || rest.len() < size {
            out.push_str(rest.get(..size.min(rest.len())).unwrap_or(""));
            break;
        }
        out.push_str(rest.get(..size).unwrap_or(""));
        body = rest.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
    }

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("4\r\nLIVE\r\n1\r\n\n\r\n0\r\n\r\n"), "LIVE\n");
    }
}
