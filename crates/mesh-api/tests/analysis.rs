//! `istioctl analyze`'s own test inputs (Istio's `pkg/config/analysis/analyzers/testdata`), when
//! `../shared/conformance` is beside the checkout: Bosun must report what Istio's analyzer tests expect
//! of the same files, resource for resource.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mesh_api::analyze::analyze;
use mesh_api::registry::Registry;
use mesh_api::resource::load_str;

fn testdata() -> Option<PathBuf> {
    let dir = std::env::var_os("BOSUN_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        })
        .join("istio/pkg/config/analysis/analyzers/testdata");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("analyzer testdata not found at {}; skipping", dir.display());
        None
    }
}

/// The `namespace/name` of every resource with a finding of `code` whose message contains `text`.
fn flagged(file: &str, code: &str, text: &str) -> Option<BTreeSet<String>> {
    let dir = testdata()?;
    let source = std::fs::read_to_string(dir.join(file)).expect("readable testdata");
    let loaded = load_str(&source, None);
    assert!(loaded.findings.is_empty(), "{file}: {:#?}", loaded.findings);
    let registry: Option<Registry> = (!loaded.kubernetes.services.is_empty()
        || !loaded.kubernetes.workloads.is_empty())
    .then(|| loaded.kubernetes.clone());
    Some(
        analyze(&loaded.resources, registry.as_ref())
            .into_iter()
            .filter(|(_, f)| f.code == code && f.message.contains(text))
            .map(|(i, _)| {
                let r = &loaded.resources[i];
                format!("{}/{}", r.namespace, r.name)
            })
            .collect(),
    )
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn destination_hosts_and_ports() {
    let Some(hosts) = flagged("virtualservice_destinationhosts.yaml", "IST0101", "host") else {
        return;
    };
    let hosts: BTreeSet<String> = hosts;
    let not_subsets = flagged(
        "virtualservice_destinationhosts.yaml",
        "IST0101",
        "host not found",
    )
    .unwrap_or_default()
    .union(
        &flagged(
            "virtualservice_destinationhosts.yaml",
            "IST0101",
            "host:port",
        )
        .unwrap_or_default(),
    )
    .cloned()
    .collect::<BTreeSet<_>>();
    assert!(hosts.is_superset(&not_subsets));
    assert_eq!(
        not_subsets,
        set(&[
            "default/reviews-bogushost",
            "default/reviews-bookinfo-other",
            "default/reviews-mirror-bogushost",
            "default/reviews-bogusport",
            "istio-system/cross-namespace-details",
            "hello/hello-export-to-bogus",
        ])
    );
    assert_eq!(
        flagged(
            "virtualservice_destinationhosts.yaml",
            "IST0112",
            "multiple ports"
        ),
        Some(set(&["default/reviews-2port-missing"]))
    );
}

#[test]
fn destination_rule_subsets() {
    assert_eq!(
        flagged(
            "virtualservice_destinationrules.yaml",
            "IST0101",
            "host+subset"
        )
        .map(|s| s.len()),
        testdata().map(|_| 2),
    );
    if let Some(flagged) = flagged(
        "virtualservice_destinationrules.yaml",
        "IST0101",
        "host+subset",
    ) {
        assert_eq!(
            flagged,
            set(&[
                "default/reviews-bogussubset",
                "default/reviews-mirror-bogussubset"
            ])
        );
    }
}

#[test]
fn gateway_references() {
    if let Some(flagged) = flagged("virtualservice_gateways.yaml", "IST0101", "gateway") {
        assert_eq!(flagged, set(&["default/httpbin-bogus"]));
    }
}

#[test]
fn conflicting_mesh_hosts() {
    if let Some(flagged) = flagged(
        "virtualservice_conflictingmeshgatewayhosts.yaml",
        "IST0109",
        "",
    ) {
        // Istio's expectations, plus team2/ratings, whose `google.com` the file's own comment says
        // conflicts with bar/ratings (both visible in team2).
        assert_eq!(
            flagged,
            set(&[
                "team3/ratings",
                "team4/ratings",
                "foo/ratings",
                "bar/ratings",
                "team2/ratings",
                "foo/productpage",
                "foo/bogus-productpage",
            ])
        );
    }
    if let Some(flagged) = flagged(
        "virtualservice_conflictingmeshgatewayhosts_with_exportto.yaml",
        "IST0109",
        "",
    ) {
        assert_eq!(
            flagged,
            set(&[
                "foo/productpage",
                "bar/productpage",
                "foo/productpage-c",
                "bar/productpage-c",
                "foo/productpage-d",
                "bar/productpage-d",
            ])
        );
    }
}

#[test]
fn host_not_found_in_gateway() {
    if let Some(flagged) = flagged("virtualservice_host_not_found_gateway.yaml", "IST0132", "") {
        assert_eq!(
            flagged,
            set(&[
                "default/testing-service-02-test-01",
                "default/testing-service-02-test-02",
                "default/testing-service-01-test-03",
                "default/testing-service-02-test-03",
                "default/testing-service-03-test-04",
            ])
        );
    }
    if let Some(flagged) = flagged(
        "virtualservice_host_not_found_gateway_with_ns_prefix.yaml",
        "IST0132",
        "",
    ) {
        assert_eq!(flagged, BTreeSet::new());
    }
}

#[test]
fn service_entry_addresses_required() {
    let Some(missing) = flagged(
        "serviceentry-missing-addresses-protocol.yaml",
        "IST0134",
        "",
    ) else {
        return;
    };
    assert_eq!(
        missing,
        set(&[
            "default/service-entry-test-03",
            "default/service-entry-test-04",
            "default/service-entry-test-07",
        ])
    );
    for (file, expected) in [
        (
            "serviceentry-address-required-lowercase.yaml",
            set(&["default/address-missing-lowercase"]),
        ),
        (
            "serviceentry-address-required-uppercase.yaml",
            set(&["default/address-missing-uppercase"]),
        ),
        // Addresses the status says were allocated count.
        ("serviceentry-address-allocated.yaml", BTreeSet::new()),
    ] {
        assert_eq!(
            flagged(file, "IST0134", "").unwrap_or_default(),
            expected,
            "{file}"
        );
    }
}
