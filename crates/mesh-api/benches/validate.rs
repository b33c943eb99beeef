//! How long loading and validating 10,000 resources takes (`cargo bench -p mesh-api`).
//! The corpus is generated: VirtualServices, DestinationRules, Gateways and ServiceEntries in equal parts.

use mesh_api::resource::load_str;

fn main() {
    divan::main();
}

/// A multi-document YAML stream of `n` resources.
pub fn corpus(n: usize) -> String {
    let mut out = String::with_capacity(n * 600);
    for i in 0..n {
        out.push_str("---\n");
        match i % 4 {
            0 => out.push_str(&format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: svc-{i}\n  namespace: ns-{ns}\nspec:\n  hosts:\n  - svc-{i}\n  http:\n  - match:\n    - headers:\n        end-user:\n          exact: jason\n      uri:\n        regex: \"/api/v[0-9]+/items\"\n    route:\n    - destination:\n        host: svc-{i}\n        subset: v2\n    retries:\n      attempts: 3\n      perTryTimeout: 500ms\n  - route:\n    - destination:\n        host: svc-{i}\n        subset: v1\n      weight: 90\n    - destination:\n        host: svc-{i}\n        subset: v2\n      weight: 10\n    timeout: 2s\n",
                ns = i % 50
            )),
            1 => out.push_str(&format!(
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: svc-{i}\nspec:\n  host: svc-{i}.default.svc.cluster.local\n  trafficPolicy:\n    connectionPool:\n      tcp:\n        maxConnections: 100\n    outlierDetection:\n      consecutive5xxErrors: 5\n      interval: 10s\n      baseEjectionTime: 30s\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n  - name: v2\n    labels:\n      version: v2\n    trafficPolicy:\n      loadBalancer:\n        simple: ROUND_ROBIN\n"
            )),
            2 => out.push_str(&format!(
                "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw-{i}\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: 80\n      name: http\n      protocol: HTTP\n    hosts:\n    - \"app-{i}.example.com\"\n"
            )),
            _ => out.push_str(&format!(
                "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: ext-{i}\nspec:\n  hosts:\n  - api-{i}.example.com\n  ports:\n  - number: 443\n    name: https\n    protocol: HTTPS\n  resolution: DNS\n  location: MESH_EXTERNAL\n"
            )),
        }
    }
    out
}

#[divan::bench(sample_count = 10)]
fn load_and_validate_10k(bencher: divan::Bencher) {
    let source = corpus(10_000);
    bencher.bench(|| {
        let loaded = load_str(divan::black_box(&source), None);
        assert_eq!(
            loaded.resources.len(),
            10_000,
            "{:?}",
            loaded.findings.first()
        );
        let findings: usize = loaded
            .resources
            .iter()
            .map(|r| mesh_api::validate::validate(r).len())
            .sum();
        divan::black_box(findings)
    });
}

#[divan::bench(sample_count = 10)]
fn analyze_10k(bencher: divan::Bencher) {
    let source = corpus(10_000);
    let loaded = load_str(&source, None);
    bencher.bench(|| divan::black_box(mesh_api::analyze::analyze(&loaded.resources, None).len()));
}
