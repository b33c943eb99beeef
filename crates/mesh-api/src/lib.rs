//! Istio's networking and security API as Rust types, loaded from YAML with positions, validated with
//! Istio's admission rules and analysed across resources like `istioctl analyze`.

pub mod types;
pub mod yaml;
