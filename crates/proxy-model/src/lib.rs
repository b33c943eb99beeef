//! The proxy's configuration model (being written).
