//! Who a connected proxy is, from what it tells the control plane as Envoy tells istiod: the node id
//! `sidecar~IP~POD.NS~NS.svc.cluster.local` (`router~…` for gateways) and node metadata (`LABELS`,
//! `NAMESPACE`, `INTERCEPTION_MODE`).

use std::collections::BTreeMap;

use xds_api::pb::google::protobuf::value::Kind;
use xds_server::{Mode, ProxyInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProxyType {
    Sidecar,
    /// A gateway (ingress or egress).
    Router,
}

/// How traffic reaches the proxy (Istio's `INTERCEPTION_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Interception {
    /// iptables REDIRECT (or TPROXY) to 15001/15006: the proxy sees original destinations.
    Redirect,
    /// No capture: the application uses the proxy at `IP:15001` as an explicit HTTP proxy, and inbound
    /// traffic is sent to `IP:15006`; listeners bind the proxy's own IP.
    None,
}

/// The node metadata key by which a proxy asks for its virtual hosts over VHDS.
pub const VHDS_METADATA: &str = "BOSUN_VHDS";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Proxy {
    pub id: String,
    pub kind: ProxyType,
    pub ip: String,
    /// The pod (or instance) name, the third field of the id before the namespace.
    pub pod: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub interception: Interception,
    /// Whether the proxy takes its route tables' service hosts over VHDS (node metadata
    /// `BOSUN_VHDS: "true"`, as `bosun bootstrap --vhds` writes it; it needs delta ADS).
    pub vhds: bool,
    /// The proxy asked for VHDS over state-of-the-world ADS, where neither Envoy nor `bosun proxy`
    /// takes it: it gets its tables whole, and the log says why.
    pub vhds_over_sotw: bool,
}

/// The warning for a proxy that asks for VHDS over state-of-the-world ADS.
pub const VHDS_OVER_SOTW: &str = "asks for its virtual hosts over VHDS (BOSUN_VHDS) on a state-of-the-world ADS stream, where proxies take VHDS only over delta xDS (DELTA_GRPC): its route tables are sent whole";

/// Why a node id was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node id {id:?} is not TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local (TYPE sidecar or router): {reason}"
)]
pub struct NodeIdError {
    pub id: String,
    pub reason: &'static str,
}

impl Proxy {
    /// Parses the node id; labels, namespace and interception mode come from the metadata when the
    /// proxy sent them.
    pub fn from_info(info: &ProxyInfo) -> Result<Proxy, NodeIdError> {
        let mut proxy = Proxy::parse_id(&info.node_id)?;
        proxy.labels = info.labels.clone();
        if let Some(ns) = &info.namespace {
            proxy.namespace = ns.clone();
        }
        let metadata = |key: &str| {
            info.metadata
                .as_ref()
                .and_then(|m| m.fields.get(key))
                .and_then(|v| match &v.kind {
                    Some(Kind::StringValue(s)) => Some(s.as_str()),
                    _ => None,
                })
        };
        proxy.interception = match metadata("INTERCEPTION_MODE") {
            Some("NONE") => Interception::None,
            _ => Interception::Redirect,
        };
        let asks_vhds = metadata(VHDS_METADATA) == Some("true");
        proxy.vhds = asks_vhds && info.mode == Mode::Delta;
        proxy.vhds_over_sotw = asks_vhds && info.mode == Mode::Sotw;
        Ok(proxy)
    }

    pub fn parse_id(id: &str) -> Result<Proxy, NodeIdError> {
        let err = |reason| NodeIdError {
            id: id.to_owned(),
            reason,
        };
        let parts: Vec<&str> = id.split('~').collect();
        let [kind, ip, pod_ns, _domain] = parts[..] else {
            return Err(err("it must have four parts separated by ~"));
        };
        let kind = match kind {
            "sidecar" => ProxyType::Sidecar,
            "router" => ProxyType::Router,
            _ => return Err(err("the type must be sidecar or router")),
        };
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(err("the second part must be the proxy's IP address"));
        }
        let (pod, namespace) = pod_ns.split_once('.').unwrap_or((pod_ns, "default"));
        Ok(Proxy {
            id: id.to_owned(),
            kind,
            ip: ip.to_owned(),
            pod: pod.to_owned(),
            namespace: namespace.to_owned(),
            labels: BTreeMap::new(),
            interception: Interception::Redirect,
            vhds: false,
            vhds_over_sotw: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_node_ids() {
        let p = Proxy::parse_id("sidecar~10.1.1.1~reviews-v1-abc.prod~prod.svc.cluster.local")
            .expect("valid");
        assert_eq!(p.kind, ProxyType::Sidecar);
        assert_eq!(p.ip, "10.1.1.1");
        assert_eq!(p.pod, "reviews-v1-abc");
        assert_eq!(p.namespace, "prod");
        let g = Proxy::parse_id("router~127.0.0.1~gw.istio-system~istio-system.svc.cluster.local")
            .expect("valid");
        assert_eq!(g.kind, ProxyType::Router);
        for bad in [
            "reviews",
            "ztunnel~1.1.1.1~a.b~b.svc",
            "sidecar~host~a.b~b.svc",
        ] {
            assert!(Proxy::parse_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vhds_is_taken_only_over_delta() {
        use xds_api::pb::google::protobuf::{Struct, Value};
        let info = |mode, asks: bool| ProxyInfo {
            connection_id: 1,
            node_id: "sidecar~10.1.1.1~a.prod~prod.svc.cluster.local".into(),
            cluster: String::new(),
            metadata: asks.then(|| Struct {
                fields: [(
                    VHDS_METADATA.to_owned(),
                    Value {
                        kind: Some(Kind::StringValue("true".into())),
                    },
                )]
                .into(),
            }),
            labels: BTreeMap::new(),
            namespace: None,
            address: None,
            mode,
            connected_at: std::time::SystemTime::UNIX_EPOCH,
        };
        let of = |mode, asks| {
            let p = Proxy::from_info(&info(mode, asks)).expect("valid");
            (p.vhds, p.vhds_over_sotw)
        };
        assert_eq!(of(Mode::Delta, true), (true, false));
        assert_eq!(of(Mode::Sotw, true), (false, true));
        assert_eq!(of(Mode::Delta, false), (false, false));
        assert_eq!(of(Mode::Sotw, false), (false, false));
    }
}
