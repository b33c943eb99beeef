//! Errors of the ADS server transport. Each names the address and what to check.

use std::net::SocketAddr;
use std::time::Duration;

/// What went wrong running the ADS server.
#[derive(Debug, thiserror::Error)]
pub enum XdsServerError {
    #[error(
        "cannot listen for ADS on {addr}: {source}; is another control plane (or istiod) already \
         using that port, or is the address not one of this host's?"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("the ADS server on {addr} failed: {reason}")]
    Serve { addr: SocketAddr, reason: String },

    #[error("the ADS server did not stop within {grace:?}; its remaining connections were dropped")]
    StopTimeout { grace: Duration },

    #[error("the ADS server task failed: {0}")]
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
