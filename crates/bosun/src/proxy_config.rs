//! `bosun proxy-config KIND --admin ADDR`: what a running proxy holds, read from its admin interface
//! (`bosun proxy` or Envoy: the same pages), one line per cluster, listener filter chain, route,
//! endpoint or secret, as `istioctl proxy-config` lists them; `-o json` prints the section itself.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::Value;

use crate::up::http;

/// What to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Clusters,
    Listeners,
    Routes,
    Endpoints,
    /// Certificates and trust roots (`istioctl proxy-config secret`): whether each is valid now,
    /// until when, and for which identity.
    #[value(alias = "secret")]
    Secrets,
}

/// How to show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table, one line per item.
    Short,
    /// The admin interface's JSON for it.
    Json,
}

/// A config dump or an admin page is a few MB for a big mesh; reading one is quick.
const TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(kind: Kind, admin: &str, format: Format) -> Result<ExitCode> {
    let addr = crate::up::http_addr(admin, "admin", "127.0.0.1:15000")?;
    let path = match kind {
        Kind::Endpoints => "/clusters?format=json",
        _ => "/config_dump",
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let answer = runtime
        .block_on(http::request(addr, "GET", path, &[], &[], TIMEOUT))
        .with_context(|| format!("is a proxy's admin interface listening at {addr}?"))?;
    if answer.status != 200 {
        bail!(
            "GET http://{addr}{path} answered {}: {}",
            answer.status,
            answer.body.trim()
        );
    }
    let page: Value = serde_json::from_str(&answer.body)
        .with_context(|| format!("GET http://{addr}{path} did not answer JSON"))?;
    let section = match kind {
        Kind::Clusters => dump_section(&page, "ClustersConfigDump"),
        Kind::Listeners => dump_section(&page, "ListenersConfigDump"),
        Kind::Routes => dump_section(&page, "RoutesConfigDump"),
        Kind::Secrets => dump_section(&page, "SecretsConfigDump"),
        Kind::Endpoints => page,
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&section)?),
        Format::Short => print!("{}", table(kind, &section)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The config dump's section of type `envoy.admin.v3.NAME` (`null` when it has none).
fn dump_section(dump: &Value, name: &str) -> Value {
    let wanted = format!("type.googleapis.com/envoy.admin.v3.{name}");
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["@type"] == wanted.as_str())
        .cloned()
        .unwrap_or(Value::Null)
}

/// The lines of `kind` in `section`, with a header, in columns.
pub fn table(kind: Kind, section: &Value) -> String {
    let (header, mut rows): (&[&str], Vec<Vec<String>>) = match kind {
        Kind::Clusters => (
            &[
                "SERVICE FQDN",
                "PORT",
                "SUBSET",
                "DIRECTION",
                "TYPE",
                "TLS",
                "DESTINATION RULE",
            ],
            clusters(section),
        ),
        Kind::Listeners => (
            &["ADDRESS", "PORT", "MATCH", "DESTINATION"],
            listeners(section),
        ),
        Kind::Routes => (
            &[
                "NAME",
                "VHOST NAME",
                "DOMAINS",
                "MATCH",
                "DESTINATION",
                "VIRTUAL SERVICE",
            ],
            routes(section),
        ),
        Kind::Endpoints => (
            &["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"],
            endpoints(section),
        ),
        Kind::Secrets => (
            &[
                "RESOURCE NAME",
                "TYPE",
                "STATUS",
                "VALID CERT",
                "SERIAL NUMBER",
                "NOT AFTER",
                "NOT BEFORE",
                "IDENTITY",
            ],
            secrets(section, SystemTime::now()),
        ),
    };
    rows.sort();
    columns(header, &rows)
}

/// The resources of `section`'s static and dynamic lists, each at `inner` in its entry.
fn resources<'a>(section: &'a Value, lists: &[&str], inner: &[&str]) -> Vec<&'a Value> {
    lists
        .iter()
        .flat_map(|l| section[*l].as_array().into_iter().flatten())
        .filter_map(|entry| {
            let r = inner.iter().fold(entry, |v, key| &v[*key]);
            (!r.is_null()).then_some(r)
        })
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

fn clusters(section: &Value) -> Vec<Vec<String>> {
    resources(
        section,
        &["static_clusters", "dynamic_active_clusters"],
        &["cluster"],
    )
    .into_iter()
    .map(|c| {
        let name = text(&c["name"]);
        // Istio's names: `outbound|9080|v1|reviews.default.svc.cluster.local`.
        let (fqdn, port, subset, direction) = match name.split('|').collect::<Vec<_>>()[..] {
            [direction, port, subset, fqdn] => (
                or_dash(fqdn.to_owned()),
                port.to_owned(),
                or_dash(subset.to_owned()),
                direction.to_owned(),
            ),
            _ => (name.clone(), "-".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        // Proto3 JSON leaves the default type (STATIC) out.
        let kind = c["type"].as_str().unwrap_or("STATIC").to_owned();
        let tls = if c["transport_socket_matches"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
        {
            "per endpoint"
        } else if text(&c["transport_socket"]["name"]).ends_with(".tls") {
            "tls"
        } else {
            "-"
        };
        vec![
            fqdn,
            port,
            subset,
            direction,
            kind,
            tls.to_owned(),
            istio_config(c, "destination-rule"),
        ]
    })
    .collect()
}

fn listeners(section: &Value) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let all = resources(section, &["static_listeners"], &["listener"])
        .into_iter()
        .chain(resources(
            section,
            &["dynamic_listeners"],
            &["active_state", "listener"],
        ));
    for l in all {
        let socket = &l["address"]["socket_address"];
        let address = or_dash(text(&socket["address"]));
        let port = or_dash(text(&socket["port_value"]));
        let chains = l["filter_chains"].as_array().into_iter().flatten();
        for chain in chains {
            rows.push(vec![
                address.clone(),
                port.clone(),
                chain_match(&chain["filter_chain_match"]),
                destination(chain),
            ]);
        }
        if !l["default_filter_chain"].is_null() {
            rows.push(vec![
                address.clone(),
                port.clone(),
                "(default)".to_owned(),
                destination(&l["default_filter_chain"]),
            ]);
        }
    }
    rows
}

/// A filter chain match in a few words; `ALL` when it matches everything.
fn chain_match(m: &Value) -> String {
    let list = |key: &str| -> String {
        m[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut parts = Vec::new();
    if !m["destination_port"].is_null() {
        parts.push(format!("port {}", text(&m["destination_port"])));
    }
    for (key, label) in [("server_names", "SNI"), ("application_protocols", "App")] {
        let v = list(key);
        if !v.is_empty() {
            parts.push(format!("{label}: {v}"));
        }
    }
    let transport = text(&m["transport_protocol"]);
    if !transport.is_empty() {
        parts.push(format!("Trans: {transport}"));
    }
    if parts.is_empty() {
        "ALL".to_owned()
    } else {
        parts.join("; ")
    }
}

/// Where a filter chain sends what it takes: a route table, clusters, or its filter's name.
fn destination(chain: &Value) -> String {
    let filters = chain["filters"].as_array().into_iter().flatten();
    for f in filters {
        let config = &f["typed_config"];
        let ty = text(&config["@type"]);
        if ty.ends_with(".HttpConnectionManager") {
            let rds = text(&config["rds"]["route_config_name"]);
            return if rds.is_empty() {
                format!(
                    "Inline Route: {}",
                    or_dash(text(&config["route_config"]["name"]))
                )
            } else {
                format!("Route: {rds}")
            };
        }
        if ty.ends_with(".TcpProxy") {
            let weighted: Vec<String> = config["weighted_clusters"]["clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| text(&c["name"]))
                .collect();
            return if weighted.is_empty() {
                format!("Cluster: {}", text(&config["cluster"]))
            } else {
                format!("Clusters: {}", weighted.join(","))
            };
        }
    }
    chain["filters"][0]["name"]
        .as_str()
        .map_or_else(|| "-".to_owned(), str::to_owned)
}

fn routes(section: &Value) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let all = resources(
        section,
        &["static_route_configs", "dynamic_route_configs"],
        &["route_config"],
    );
    for rc in all {
        let name = or_dash(text(&rc["name"]));
        for vh in rc["virtual_hosts"].as_array().into_iter().flatten() {
            let domains: Vec<String> = vh["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let domains = match domains.as_slice() {
                [] => "-".to_owned(),
                [one] => one.clone(),
                [first, rest @ ..] => format!("{first} +{} more", rest.len()),
            };
            for r in vh["routes"].as_array().into_iter().flatten() {
                rows.push(vec![
                    name.clone(),
                    text(&vh["name"]),
                    domains.clone(),
                    route_match(&r["match"]),
                    route_destination(r),
                    istio_config(r, "virtual-service"),
                ]);
            }
        }
    }
    rows
}

/// The Istio resource istiod (or `bosun control`) notes a cluster or route comes from
/// (`metadata.filter_metadata.istio.config`, `/apis/…/namespaces/NS/KIND/NAME`), as `NAME.NS`.
fn istio_config(resource: &Value, kind: &str) -> String {
    let path = text(&resource["metadata"]["filter_metadata"]["istio"]["config"]);
    let parts: Vec<&str> = path.rsplit('/').take(4).collect();
    match parts[..] {
        [name, k, namespace, "namespaces"] if k == kind => format!("{name}.{namespace}"),
        _ => "-".to_owned(),
    }
}

fn route_match(m: &Value) -> String {
    if let Some(p) = m["prefix"].as_str() {
        format!("{p}*")
    } else if let Some(p) = m["path"].as_str() {
        p.to_owned()
    } else if let Some(p) = m["path_separated_prefix"].as_str() {
        format!("{p}/*")
    } else if let Some(re) = m["safe_regex"]["regex"].as_str() {
        format!("regex {re}")
    } else if m["connect_matcher"].is_object() {
        "CONNECT".to_owned()
    } else {
        "-".to_owned()
    }
}

fn route_destination(r: &Value) -> String {
    let action = &r["route"];
    if let Some(c) = action["cluster"].as_str() {
        return c.to_owned();
    }
    let weighted: Vec<String> = action["weighted_clusters"]["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} ({})", text(&c["name"]), text(&c["weight"])))
        .collect();
    if !weighted.is_empty() {
        return weighted.join(", ");
    }
    if r["redirect"].is_object() {
        return "redirect".to_owned();
    }
    if r["direct_response"].is_object() {
        return format!("direct response {}", text(&r["direct_response"]["status"]));
    }
    "-".to_owned()
}

fn endpoints(page: &Value) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for c in page["cluster_statuses"].as_array().into_iter().flatten() {
        for h in c["host_statuses"].as_array().into_iter().flatten() {
            let socket = &h["address"]["socket_address"];
            let endpoint = if socket.is_null() {
                or_dash(text(&h["address"]["pipe"]["path"]))
            } else {
                format!(
                    "{}:{}",
                    text(&socket["address"]),
                    text(&socket["port_value"])
                )
            };
            let health = &h["health_status"];
            let status = health["eds_health_status"]
                .as_str()
                .unwrap_or("HEALTHY")
                .to_owned();
            let outlier = if health["failed_outlier_check"] == true {
                "FAILED"
            } else {
                "OK"
            };
            rows.push(vec![endpoint, status, outlier.to_owned(), text(&c["name"])]);
        }
    }
    rows
}

/// A line per secret: its first certificate's validity at `now`, serial, dates and SANs. A
/// certificate given by file is read from this machine's file system, if it can be.
fn secrets(section: &Value, now: SystemTime) -> Vec<Vec<String>> {
    let lists = [
        ("static_secrets", "ACTIVE"),
        ("dynamic_active_secrets", "ACTIVE"),
        ("dynamic_warming_secrets", "WARMING"),
    ];
    let mut rows = Vec::new();
    for (list, status) in lists {
        for entry in section[list].as_array().into_iter().flatten() {
            let secret = &entry["secret"];
            let name = match text(&entry["name"]) {
                n if n.is_empty() => or_dash(text(&secret["name"])),
                n => n,
            };
            let (kind, source) = if secret["tls_certificate"].is_object() {
                (
                    "Cert Chain",
                    &secret["tls_certificate"]["certificate_chain"],
                )
            } else if secret["validation_context"].is_object() {
                ("CA", &secret["validation_context"]["trusted_ca"])
            } else {
                ("Other", &Value::Null)
            };
            let mut row = vec![name, kind.to_owned(), status.to_owned()];
            match data_source(source).map(|pem| mesh_tls::summarize_pem(&pem, "the secret")) {
                Some(Ok(cert)) => {
                    let identity = cert
                        .subject_alt_names
                        .iter()
                        .map(|san| san.value().into_owned())
                        .collect::<Vec<_>>()
                        .join(",");
                    row.extend([
                        cert.valid_at(now).to_string(),
                        cert.serial,
                        proxy::access_log::rfc3339(cert.not_after),
                        proxy::access_log::rfc3339(cert.not_before),
                        or_dash(identity),
                    ]);
                }
                Some(Err(_)) => {
                    row.extend(["false", "unreadable", "-", "-", "-"].map(str::to_owned))
                }
                None => row.extend(["-", "-", "-", "-", "-"].map(str::to_owned)),
            }
            rows.push(row);
        }
    }
    rows
}

/// The bytes of an Envoy `DataSource` in proto3 JSON: `inline_bytes` (base64), `inline_string`, or
/// a `filename` read here. `None` when it has none or the file cannot be read.
fn data_source(source: &Value) -> Option<Vec<u8>> {
    use base64::Engine as _;
    if let Some(b64) = source["inline_bytes"].as_str() {
        return base64::engine::general_purpose::STANDARD.decode(b64).ok();
    }
    if let Some(s) = source["inline_string"].as_str() {
        return Some(s.as_bytes().to_vec());
    }
    std::fs::read(source["filename"].as_str()?).ok()
}

/// `rows` under `header`, left-aligned in columns two spaces apart.
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let mut l = padded.join("  ").trim_end().to_owned();
        l.push('\n');
        l
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn istio_cluster_names_are_read_into_columns() {
        let section = json!({
            "static_clusters": [{"cluster": {"name": "BlackHoleCluster"}}],
            "dynamic_active_clusters": [
                {"cluster": {"name": "outbound|9080|v1|reviews.default.svc.cluster.local", "type": "EDS",
                             "transport_socket_matches": [{"name": "tlsMode-istio"}],
                             "metadata": {"filter_metadata": {"istio": {"config":
                                 "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews"}}}}},
                {"cluster": {"name": "outbound|9080||ratings.default.svc.cluster.local", "type": "EDS",
                             "transport_socket": {"name": "envoy.transport_sockets.tls"}}}
            ]
        });
        assert_eq!(
            table(Kind::Clusters, &section),
            "SERVICE FQDN                       PORT  SUBSET  DIRECTION  TYPE    TLS           DESTINATION RULE\n\
             BlackHoleCluster                   -     -       -          STATIC  -             -\n\
             ratings.default.svc.cluster.local  9080  -       outbound   EDS     tls           -\n\
             reviews.default.svc.cluster.local  9080  v1      outbound   EDS     per endpoint  reviews.default\n"
        );
    }

    #[test]
    fn secrets_show_validity_serial_and_identity() {
        use base64::Engine as _;
        let ca = mesh_tls::CertificateAuthority::generate("cluster.local").expect("CA");
        let id =
            mesh_tls::SpiffeId::parse("spiffe://cluster.local/ns/default/sa/reviews").expect("id");
        let cert = ca
            .issue_workload(&id, Duration::from_secs(3600))
            .expect("issue");
        let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
        let section = json!({
            "dynamic_active_secrets": [
                {"name": "default", "secret": {"name": "default", "tls_certificate": {
                    "certificate_chain": {"inline_bytes": b64(&cert.cert_chain_pem)},
                    "private_key": {"inline_bytes": b64("[redacted]")}}}},
                {"name": "ROOTCA", "secret": {"name": "ROOTCA", "validation_context": {
                    "trusted_ca": {"inline_bytes": b64(&ca.root_pem())}}}}
            ],
            "static_secrets": [
                {"name": "broken", "secret": {"name": "broken", "validation_context": {
                    "trusted_ca": {"inline_string": "not a certificate"}}}}
            ]
        });
        let now = SystemTime::now();
        let rows = secrets(&section, now);
        let leaf = mesh_tls::summarize_pem(cert.cert_chain_pem.as_bytes(), "t").expect("leaf");
        assert_eq!(
            rows[1],
            [
                "default",
                "Cert Chain",
                "ACTIVE",
                "true",
                leaf.serial.as_str(),
                proxy::access_log::rfc3339(cert.not_after).as_str(),
                proxy::access_log::rfc3339(leaf.not_before).as_str(),
                "spiffe://cluster.local/ns/default/sa/reviews",
            ]
        );
        assert_eq!(rows[2][..4], ["ROOTCA", "CA", "ACTIVE", "true"]);
        assert_eq!(rows[2][7], "-", "a root without SANs");
        assert_eq!(
            rows[0],
            [
                "broken",
                "CA",
                "ACTIVE",
                "false",
                "unreadable",
                "-",
                "-",
                "-"
            ]
        );
        // After it expires, the leaf is no longer valid.
        let later = secrets(&section, cert.not_after + Duration::from_secs(1));
        assert_eq!(later[1][3], "false");
        assert!(table(Kind::Secrets, &section).starts_with("RESOURCE NAME  TYPE"));
    }

    #[test]
    fn listeners_routes_and_endpoints_get_a_line_each() {
        let listeners = json!({"dynamic_listeners": [{"active_state": {"listener": {
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 7000}},
        "filter_chains": [
            {"filter_chain_match": {"application_protocols": ["http/1.1", "h2c"]},
             "filters": [{"typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                           "rds": {"route_config_name": "7000"}}}]},
            {"filters": [{"typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                           "cluster": "outbound|7000||store"}}]}
        ]}}}]});
        assert_eq!(
            table(Kind::Listeners, &listeners),
            "ADDRESS  PORT  MATCH              DESTINATION\n\
             0.0.0.0  7000  ALL                Cluster: outbound|7000||store\n\
             0.0.0.0  7000  App: http/1.1,h2c  Route: 7000\n"
        );
        let routes = json!({"dynamic_route_configs": [{"route_config": {"name": "9080", "virtual_hosts": [
            {"name": "reviews:9080", "domains": ["reviews", "reviews:9080"], "routes": [
                {"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
                    {"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}]}},
                 "metadata": {"filter_metadata": {"istio": {"config":
                     "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"}}}}]}]}}]});
        assert_eq!(
            table(Kind::Routes, &routes).lines().nth(1),
            Some("9080  reviews:9080  reviews +1 more  /*     v1 (90), v2 (10)  reviews.default")
        );
        let page = json!({"cluster_statuses": [{"name": "c", "host_statuses": [
            {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}},
             "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": true}}]}]});
        assert_eq!(
            table(Kind::Endpoints, &page).lines().nth(1),
            Some("10.0.0.1:80  HEALTHY  FAILED         c")
        );
    }
}
