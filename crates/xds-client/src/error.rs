//! Errors of the ADS transport. Each names the address tried and what to check.

use std::time::Duration;

/// What went wrong talking to the control plane.
#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    #[error(
        "invalid xDS server address {endpoint:?}: {reason}; expected a URI such as http://127.0.0.1:15010"
    )]
    InvalidEndpoint { endpoint: String, reason: String },

    #[error("the ADS client must be started inside a tokio runtime")]
    NoRuntime,

    #[error(
        "cannot connect to the xDS server at {endpoint}: {reason}; is `bosun control` (or istiod) \
         running and serving ADS on that address? Check the ADS address the proxy was given \
         (its bootstrap's ADS cluster)"
    )]
    Connect { endpoint: String, reason: String },

    #[error(
        "no answer from the xDS server at {endpoint} within {timeout:?} ({what}); is the address \
         reachable, and is it a gRPC (HTTP/2) ADS port such as 15010?"
    )]
    Timeout {
        endpoint: String,
        what: &'static str,
        timeout: Duration,
    },

    #[error(
        "the xDS server at {endpoint} does not implement {mode} ADS ({message}); \
         run the client in the other mode, or check the port is the control plane's ADS port"
    )]
    Unimplemented {
        endpoint: String,
        mode: &'static str,
        message: String,
    },

    #[error("the ADS stream to {endpoint} failed: {code:?}: {message}; the client reconnects")]
    Stream {
        endpoint: String,
        code: tonic::Code,
        message: String,
    },

    #[error("the xDS server at {endpoint} closed the ADS stream; the client reconnects")]
    StreamClosed { endpoint: String },

    #[error("the ADS client's command queue is full (capacity {capacity}); retry later")]
    Busy { capacity: usize },

    #[error("the ADS client has stopped")]
    Stopped,

    #[error("the ADS client task failed: {0}")]
    Task(String),
}

/// `err` and its sources, joined with ": " (tonic's transport errors say little on their own).
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
