//! `bosun bootstrap`: the Envoy bootstrap that points a proxy (stock Envoy or `bosun proxy`) at
//! `bosun control` over ADS, with the node identity istiod expects.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// How the proxy receives its traffic (Istio's `INTERCEPTION_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Interception {
    /// iptables REDIRECT to 15001/15006 (Kubernetes sidecars).
    Redirect,
    /// iptables TPROXY.
    Tproxy,
    /// No capture: the workload uses the proxy explicitly (several proxies on one machine, no root).
    None,
}

#[derive(Debug)]
pub struct BootstrapArgs<'a> {
    pub node_id: &'a str,
    pub labels: &'a [String],
    pub interception: Interception,
    pub xds: &'a str,
    pub admin_port: u16,
    pub delta: bool,
    /// Take route tables' service hosts over VHDS (implies delta).
    pub vhds: bool,
}

/// The parts of an Istio node id, `TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local`.
#[derive(Debug, PartialEq, Eq)]
pub struct NodeId<'a> {
    pub kind: &'a str,
    pub ip: &'a str,
    pub pod: &'a str,
    pub namespace: &'a str,
}

pub fn parse_node_id(id: &str) -> Result<NodeId<'_>> {
    let parts: Vec<&str> = id.split('~').collect();
    let [kind, ip, pod_ns, domain] = parts[..] else {
        bail!(
            "node id {id:?} must have four parts, TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local (e.g. sidecar~127.0.0.2~reviews-v1.default~default.svc.cluster.local)"
        );
    };
    if kind != "sidecar" && kind != "router" {
        bail!("node id {id:?}: the type must be sidecar or router (gateways), not {kind:?}");
    }
    if ip.parse::<std::net::IpAddr>().is_err() {
        bail!(
            "node id {id:?}: {ip:?} is not an IP address (the proxy's own address, e.g. 127.0.0.2)"
        );
    }
    let Some((pod, namespace)) = pod_ns.split_once('.') else {
        bail!("node id {id:?}: the third part must be POD.NAMESPACE, found {pod_ns:?}");
    };
    if !domain.starts_with(&format!("{namespace}.")) {
        bail!(
            "node id {id:?}: the last part must start with the namespace ({namespace}.svc.cluster.local), found {domain:?}"
        );
    }
    Ok(NodeId {
        kind,
        ip,
        pod,
        namespace,
    })
}

fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in labels
        .iter()
        .flat_map(|l| l.split(','))
        .filter(|l| !l.is_empty())
    {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("label {item:?} must be KEY=VALUE"))?;
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

/// The bootstrap as proto3 JSON (which is also YAML): node, admin, ADS over a static `xds-grpc` cluster.
pub fn bootstrap(args: &BootstrapArgs<'_>) -> Result<Value> {
    let node = parse_node_id(args.node_id)?;
    let labels = parse_labels(args.labels)?;
    let (xds_host, xds_port) = args
        .xds
        .rsplit_once(':')
        .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h, p)))
        .with_context(|| {
            format!(
                "--xds {:?} must be HOST:PORT, e.g. 127.0.0.1:15010",
                args.xds
            )
        })?;
    let cluster_type = if xds_host.parse::<std::net::IpAddr>().is_ok() {
        "STATIC"
    } else {
        "STRICT_DNS"
    };
    let workload = labels
        .get("app")
        .cloned()
        .unwrap_or_else(|| node.pod.to_owned());
    let interception = match args.interception {
        Interception::Redirect => "REDIRECT",
        Interception::Tproxy => "TPROXY",
        Interception::None => "NONE",
    };
    // Without capture several proxies share one machine, each on its own loopback IP (`bosun up`):
    // the admin port must be on that IP too, or the second proxy's 15000 would collide.
    let admin_address = match args.interception {
        Interception::None => node.ip,
        Interception::Redirect | Interception::Tproxy => "127.0.0.1",
    };
    // VHDS is delta-only in Envoy ("ADS must use DELTA_GRPC api_type when used as VHDS config source").
    let api_type = if args.delta || args.vhds {
        "DELTA_GRPC"
    } else {
        "GRPC"
    };
    // As istio-agent's bootstrap: the first clusters and listeners are waited for without a time
    // limit, so that a proxy never reports ready without its configuration.
    let ads = json!({"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"});
    let mut metadata = json!({
        "LABELS": labels,
        "NAMESPACE": node.namespace,
        "INTERCEPTION_MODE": interception,
        "CLUSTER_ID": "Kubernetes",
        "NAME": node.pod,
        "INSTANCE_IPS": node.ip,
    });
    if args.vhds {
        metadata[control::node::VHDS_METADATA] = json!("true");
    }
    Ok(json!({
        "node": {
            "id": args.node_id,
            "cluster": format!("{workload}.{}", node.namespace),
            "metadata": metadata,
        },
        "admin": {"address": {"socket_address": {"address": admin_address, "port_value": args.admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [{
                "name": "xds-grpc",
                "type": cluster_type,
                // A host name for --xds (`localhost`) may resolve to ::1 first while the control
                // plane listens on IPv4 only: IPv4 when the name has one.
                "dns_lookup_family": "V4_PREFERRED",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "xds-grpc",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": xds_host, "port_value": xds_port}}}}]}],
                },
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}},
                    }
                },
            }]
        }
    }))
}

pub fn run(args: &BootstrapArgs<'_>) -> Result<()> {
    let value = bootstrap(args)?;
    let text = serde_json::to_string_pretty(&value)?;
    // What we print must be a bootstrap Envoy (and `bosun proxy`) reads: check it with the same loader.
    xds_api::bootstrap::from_yaml(&text, None)
        .map_err(|e| anyhow::anyhow!("internal error: the bootstrap does not load: {e}"))?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(node_id: &str) -> BootstrapArgs<'_> {
        BootstrapArgs {
            node_id,
            labels: &[],
            interception: Interception::None,
            xds: "127.0.0.1:15010",
            admin_port: 15000,
            delta: false,
            vhds: false,
        }
    }

    #[test]
    fn without_capture_the_admin_listens_on_the_node_ip() {
        let admin = |interception| {
            let value = bootstrap(&BootstrapArgs {
                interception,
                ..args("sidecar~127.0.10.3~reviews-v1.default~default.svc.cluster.local")
            })
            .expect("bootstrap");
            value["admin"]["address"]["socket_address"]["address"]
                .as_str()
                .map(str::to_owned)
        };
        assert_eq!(admin(Interception::None).as_deref(), Some("127.0.10.3"));
        assert_eq!(admin(Interception::Redirect).as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn vhds_asks_for_it_in_the_node_metadata_over_delta_ads() {
        let id = "sidecar~127.0.0.2~reviews-v1.default~default.svc.cluster.local";
        let plain = bootstrap(&args(id)).expect("bootstrap");
        assert_eq!(plain["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
        assert!(plain["node"]["metadata"].get("BOSUN_VHDS").is_none());
        let vhds = bootstrap(&BootstrapArgs {
            vhds: true,
            ..args(id)
        })
        .expect("bootstrap");
        assert_eq!(
            vhds["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        assert_eq!(vhds["node"]["metadata"]["BOSUN_VHDS"], "true");
    }

    #[test]
    fn node_ids_are_checked_with_a_hint() {
        let ok = parse_node_id("sidecar~127.0.0.2~reviews-v1.default~default.svc.cluster.local")
            .expect("valid");
        assert_eq!(
            ok,
            NodeId {
                kind: "sidecar",
                ip: "127.0.0.2",
                pod: "reviews-v1",
                namespace: "default"
            }
        );
        for bad in [
            "sidecar~127.0.0.2~reviews-v1",
            "proxy~127.0.0.2~a.b~b.svc.cluster.local",
            "sidecar~x~a.b~b.svc.cluster.local",
            "sidecar~127.0.0.1~ab~b.svc.cluster.local",
        ] {
            assert!(parse_node_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bootstrap_loads_and_carries_the_node_identity() {
        let labels = vec!["app=reviews,version=v1".to_owned()];
        let a = BootstrapArgs {
            labels: &labels,
            ..args("sidecar~127.0.0.2~reviews-v1.default~default.svc.cluster.local")
        };
        let value = bootstrap(&a).expect("bootstrap");
        let text = serde_json::to_string(&value).expect("json");
        let b = xds_api::bootstrap::from_yaml(&text, None).expect("loads");
        let node = b.node.expect("node");
        assert_eq!(node.cluster, "reviews.default");
        assert!(
            text.contains("\"LABELS\":{\"app\":\"reviews\",\"version\":\"v1\"}"),
            "{text}"
        );
        assert!(text.contains("\"INTERCEPTION_MODE\":\"NONE\""));
        assert!(b.dynamic_resources.is_some());
        assert!(
            bootstrap(&BootstrapArgs {
                xds: "nohost",
                ..args("sidecar~127.0.0.2~a.b~b.svc.cluster.local")
            })
            .is_err()
        );
    }
}
