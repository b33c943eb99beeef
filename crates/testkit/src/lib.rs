//! Bosun's test harness, used by every integration, differential and benchmark test.
//!
//! - [`Upstream`]: an in-process HTTP/1.1 + h2c server answering a JSON echo, steerable per request through
//!   `x-testkit-*` headers (which pass through proxies) and per server through [`UpstreamBehaviour`];
//!   [`TcpEcho`] for TCP proxying, [`UpgradeEcho`] for HTTP upgrades (101, then an echo).
//! - [`ClosingUpstream`]: HTTP/1.1 with keep-alive that closes connections at chosen moments (the
//!   upstream-closes-a-pooled-connection race, deterministic).
//! - [`H2Tap`]: a relay that sees the HTTP/2 frames a server sends (GOAWAY); [`RefusingH2`], an h2c
//!   server refusing every stream.
//! - [`GrpcEcho`] / [`GrpcStream`]: gRPC streaming (client, server, bidirectional) over h2c, one
//!   message at a time, with trailers.
//! - [`open_tunnel`] / [`connect_tunnel`]: an upgrade request or a CONNECT through a proxy, then bytes
//!   through the [`Tunnel`].
//! - [`Envoy`]: real Envoy, the oracle, started from a bootstrap YAML and waited on until ready.
//! - [`Process`]: any child process under test (`bosun proxy`), logs captured, killed on drop.
//! - [`Client`], [`http_get`], [`h2c_get`], [`send_many`]: requests with timeouts.
//! - [`render`] / [`Template`]: `{{PLACEHOLDER}}`s in config fixtures; [`free_port`].
//!
//! Every wait is bounded and everything started is stopped on drop.
//!
//! A differential test renders one bootstrap fixture (`{{LISTENER_PORT}}`, `{{ADMIN_PORT}}` — 0 is fine,
//! Envoy's bound admin address is read back — and `Template::set_addr("UPSTREAM_A", a.addr())` for
//! `{{UPSTREAM_A}}`, `{{UPSTREAM_A_HOST}}`, `{{UPSTREAM_A_PORT}}`), runs it under [`Envoy`] and under the
//! proxy, sends the same requests to both and compares what the [`Upstream`]s saw and answered; see
//! `crates/testkit/tests/envoy.rs`. Envoy tests call [`Envoy::find_or_skip`] first: they skip with a
//! message when Envoy is missing, unless `BOSUN_REQUIRE_ENVOY` is set (CI), when they fail.
//!
//! ```no_run
//! # async fn demo() -> testkit::Result<()> {
//! let a = testkit::Upstream::start("a")?;
//! let resp = testkit::http_get(a.addr(), "/hello", &[("x-testkit-status", "503")]).await?;
//! assert_eq!(resp.status(), 503);
//! assert_eq!(resp.header("x-upstream"), Some("a"));
//! # Ok(()) }
//! ```

mod client;
mod closing;
mod envoy;
mod error;
mod grpc;
mod h2tap;
mod h2upgrade;
mod net;
mod process;
mod server_thread;
mod tempdir;
mod template;
mod upstream;

pub use client::{
    Client, Connection, DEFAULT_TIMEOUT, Protocol, Req, Response, Tunnel, connect_tunnel,
    count_header, h2c_get, http_get, open_tunnel, send_many,
};
pub use closing::{CloseWhen, ClosingRequest, ClosingUpstream};
pub use envoy::{DEFAULT_READY_TIMEOUT, Envoy, EnvoyOptions};
pub use error::{Error, Result};
pub use grpc::{
    BIDI, CLIENT_STREAM, FAIL, GRPC_MESSAGE_HEADER, GRPC_STATUS_HEADER, GrpcEcho, GrpcStream,
    SERVER_STREAM, grpc_frame,
};
pub use h2tap::{GoAway, H2Tap, RefusingH2};
pub use h2upgrade::H2UpgradeEcho;
pub use net::{
    blocking_get, blocking_post, free_port, localhost, try_free_port, wait_for_port, wait_ready,
};
pub use process::Process;
pub use tempdir::TempDir;
pub use template::{Template, TemplateError, render};
pub use upstream::{
    BODY_BYTES_HEADER, CLOSE_HEADER, DELAY_HEADER, HOLD_HEADER, RESPONSE_HEADER, RecordedRequest,
    STATUS_HEADER, TcpEcho, UPSTREAM_HEADER, UpgradeEcho, Upstream, UpstreamBehaviour,
    spawn_unix_echo,
};

/// Locks a mutex, recovering the data if a panicking test poisoned it.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
