//! Why the control plane could not start.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("--config {0}: not a directory (give the directory of Istio YAML to serve)")]
    ConfigDir(PathBuf),
    #[error(
        "cannot listen on {addr}: {source} (is another control plane or istiod running? choose another port)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Xds(xds_server::XdsServerError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
}
