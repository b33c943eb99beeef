//! A route's `hash_policy`: the key a consistent-hash cluster (RING_HASH, MAGLEV) picks its host
//! with. Envoy's semantics: every policy that yields a value is combined into the hash (the hash so
//! far rotated left by one bit, then xor-ed with the new value, so two equal policies do not cancel
//! out); a `terminal` policy that leaves a hash stops the walk. No value at all: the balancer picks
//! at random. A cookie policy with a `ttl` and no cookie in the request makes one, which the proxy
//! sets in the response so the client's next requests stick.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderMap;
use regex::Regex;
use xds_api::pb::envoy::config::route::v3::route_action::{
    self as action, hash_policy::PolicySpecifier,
};

use crate::duration;
use crate::error::{At, ModelError};

/// xxHash64 with seed 0, Envoy's `HashUtil::xxHash64`: a key hashes the same in every process and
/// after every restart.
pub fn xx_hash64(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, 0)
}

/// xxHash64 with a seed (the ring and Maglev table builders derive several hashes from one key).
pub fn xx_hash64_seeded(bytes: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, seed)
}

#[derive(Debug)]
pub struct HashPolicy {
    pub source: HashSource,
    /// Stop at this policy when it (or one before it) produced a hash.
    pub terminal: bool,
}

#[derive(Debug)]
pub enum HashSource {
    /// The values of a request header (lower-case name), optionally rewritten by a regex first.
    Header {
        name: http::HeaderName,
        rewrite: Option<(Regex, String)>,
    },
    /// A cookie's value. With `ttl`, a request without the cookie gets one generated (and set in
    /// the response with `path` and `attributes`); a zero ttl makes a session cookie.
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: String,
        attributes: Vec<(String, String)>,
    },
    /// The downstream connection's source IP address.
    SourceIp,
    /// The first value of a query parameter (exact name, not decoded, as Envoy).
    QueryParameter(String),
}

/// What the hash policies look at.
#[derive(Debug, Clone, Copy)]
pub struct HashInput<'a> {
    pub headers: &'a HeaderMap,
    /// The request's path with its query string.
    pub path: &'a str,
    /// The downstream connection's peer and local addresses.
    pub peer: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
}

/// The request's hash, and the `set-cookie` values a cookie policy generated.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HashOutcome {
    pub hash: Option<u64>,
    pub set_cookies: Vec<String>,
}

impl HashPolicy {
    /// The policy, or `None` for one that can never yield a hash (`connection_properties` without
    /// `source_ip`), which Envoy leaves out too.
    pub fn from_proto(p: &action::HashPolicy, at: &At) -> Result<Option<HashPolicy>, ModelError> {
        let source = match &p.policy_specifier {
            Some(PolicySpecifier::Header(h)) => {
                let hat = at.key("header");
                let name =
                    http::HeaderName::from_bytes(h.header_name.as_bytes()).map_err(|_| {
                        hat.key("header_name")
                            .error(format!("{:?} is not a valid header name", h.header_name))
                    })?;
                let rewrite = h
                    .regex_rewrite
                    .as_ref()
                    .map(|r| {
                        let rat = hat.key("regex_rewrite");
                        let pattern = r.pattern.as_ref().ok_or_else(|| {
                            rat.key("pattern").error("regex_rewrite needs a pattern")
                        })?;
                        let re = Regex::new(&pattern.regex).map_err(|e| {
                            rat.key("pattern")
                                .key("regex")
                                .error(format!("invalid regex: {e}"))
                        })?;
                        Ok::<_, ModelError>((re, super::go_to_rust_substitution(&r.substitution)))
                    })
                    .transpose()?;
                HashSource::Header { name, rewrite }
            }
            Some(PolicySpecifier::Cookie(c)) => {
                if c.name.is_empty() {
                    return Err(at.key("cookie").key("name").error("a cookie needs a name"));
                }
                HashSource::Cookie {
                    name: c.name.clone(),
                    ttl: c.ttl.as_ref().map(duration),
                    path: c.path.clone(),
                    attributes: c
                        .attributes
                        .iter()
                        .map(|a| (a.name.clone(), a.value.clone()))
                        .collect(),
                }
            }
            Some(PolicySpecifier::ConnectionProperties(c)) => {
                if !c.source_ip {
                    return Ok(None);
                }
                HashSource::SourceIp
            }
            Some(PolicySpecifier::QueryParameter(q)) => {
                if q.name.is_empty() {
                    return Err(at
                        .key("query_parameter")
                        .key("name")
                        .error("a query parameter needs a name"));
                }
                HashSource::QueryParameter(q.name.clone())
            }
            Some(PolicySpecifier::FilterState(_)) => {
                return Err(at
                    .key("filter_state")
                    .unsupported("hashing on filter state"));
            }
            None => {
                return Err(at.error(
                    "a hash policy needs header, cookie, connection_properties or query_parameter",
                ));
            }
        };
        Ok(Some(HashPolicy {
            source,
            terminal: p.terminal,
        }))
    }

    /// This policy's hash of the request, or `None` when it has nothing to hash; a generated cookie
    /// is pushed to `set_cookies`.
    fn evaluate(&self, input: &HashInput<'_>, set_cookies: &mut Vec<String>) -> Option<u64> {
        match &self.source {
            HashSource::Header { name, rewrite } => {
                let mut values: Vec<String> = input
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .map(|v| match rewrite {
                        Some((re, with)) => re.replace_all(&v, with.as_str()).into_owned(),
                        None => v,
                    })
                    .collect();
                if values.is_empty() {
                    return None;
                }
                // The same hash whatever order the values came in.
                values.sort();
                Some(
                    values
                        .iter()
                        .fold(0, |seed, v| xx_hash64_seeded(v.as_bytes(), seed)),
                )
            }
            HashSource::Cookie {
                name,
                ttl,
                path,
                attributes,
            } => {
                if let Some(value) = cookie_value(input.headers, name) {
                    return Some(xx_hash64(value.as_bytes()));
                }
                let ttl = (*ttl)?;
                // The same connection gets the same cookie, so racing requests agree on it.
                let connection = format!(
                    "{}{}",
                    input.peer.map(|a| a.to_string()).unwrap_or_default(),
                    input.local.map(|a| a.to_string()).unwrap_or_default()
                );
                let value = format!("{:016x}", xx_hash64(connection.as_bytes()));
                set_cookies.push(set_cookie_value(name, &value, path, ttl, attributes));
                Some(xx_hash64(value.as_bytes()))
            }
            HashSource::SourceIp => input.peer.map(|a| xx_hash64(a.ip().to_string().as_bytes())),
            HashSource::QueryParameter(name) => {
                query_value(input.path, name).map(|v| xx_hash64(v.as_bytes()))
            }
        }
    }
}

/// Envoy's combination of a route's hash policies (see the module docs).
pub fn compute(policies: &[HashPolicy], input: &HashInput<'_>) -> HashOutcome {
    let mut outcome = HashOutcome::default();
    for policy in policies {
        if let Some(new) = policy.evaluate(input, &mut outcome.set_cookies) {
            outcome.hash = Some(outcome.hash.map_or(0, |old| old.rotate_left(1)) ^ new);
        }
        if policy.terminal && outcome.hash.is_some() {
            break;
        }
    }
    outcome
}

/// The value of cookie `name` in the request's `cookie` headers, without surrounding quotes.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
                .to_owned()
        })
        .filter(|v| !v.is_empty())
}

/// The first value of query parameter `name` in `path` (`?a` alone has the value "").
fn query_value<'p>(path: &'p str, name: &str) -> Option<&'p str> {
    let query = path.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `set-cookie` value as Envoy writes it: quoted value, `Max-Age` (none for a session cookie),
/// `Path`, the attributes, `HttpOnly`.
fn set_cookie_value(
    name: &str,
    value: &str,
    path: &str,
    ttl: Duration,
    attributes: &[(String, String)],
) -> String {
    let mut cookie = format!("{name}=\"{value}\"");
    if ttl.as_secs() > 0 {
        cookie.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if !path.is_empty() {
        cookie.push_str(&format!("; Path={path}"));
    }
    for (k, v) in attributes {
        if v.is_empty() {
            cookie.push_str(&format!("; {k}"));
        } else {
            cookie.push_str(&format!("; {k}={v}"));
        }
    }
    cookie.push_str("; HttpOnly");
    cookie
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use xds_api::bootstrap::message_from_yaml;

    use super::*;

    fn policies(yaml: &str) -> Vec<HashPolicy> {
        let action: xds_api::pb::envoy::config::route::v3::RouteAction =
            message_from_yaml(yaml, None).expect("valid RouteAction");
        action
            .hash_policy
            .iter()
            .filter_map(|p| HashPolicy::from_proto(p, &At::root("hash_policy")).unwrap())
            .collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn input<'a>(headers: &'a HeaderMap, path: &'a str) -> HashInput<'a> {
        HashInput {
            headers,
            path,
            peer: Some("10.0.0.7:40000".parse().unwrap()),
            local: Some("10.0.0.1:80".parse().unwrap()),
        }
    }

    #[test]
    fn a_header_hashes_its_value_and_is_absent_without_it() {
        let p = policies("{cluster: c, hash_policy: [{header: {header_name: x-user}}]}");
        let a = headers(&[("x-user", "alice")]);
        let hash = compute(&p, &input(&a, "/")).hash;
        assert_eq!(hash, Some(xx_hash64(b"alice")));
        let none = headers(&[]);
        assert_eq!(compute(&p, &input(&none, "/")), HashOutcome::default());
        // Several values hash the same in any order.
        let ab = headers(&[("x-user", "a"), ("x-user", "b")]);
        let ba = headers(&[("x-user", "b"), ("x-user", "a")]);
        assert_eq!(
            compute(&p, &input(&ab, "/")).hash,
            compute(&p, &input(&ba, "/")).hash
        );
    }

    #[test]
    fn policies_combine_and_terminal_stops() {
        let both = policies(
            "{cluster: c, hash_policy: [{header: {header_name: x-a}}, {header: {header_name: x-b}}]}",
        );
        let h = headers(&[("x-a", "1"), ("x-b", "2")]);
        let (a, b) = (xx_hash64(b"1"), xx_hash64(b"2"));
        assert_eq!(
            compute(&both, &input(&h, "/")).hash,
            Some(a.rotate_left(1) ^ b)
        );
        // Equal policies do not cancel out.
        let same = policies(
            "{cluster: c, hash_policy: [{header: {header_name: x-a}}, {header: {header_name: x-a}}]}",
        );
        assert_ne!(compute(&same, &input(&h, "/")).hash, Some(0));
        let terminal = policies(
            "{cluster: c, hash_policy: [{header: {header_name: x-a}, terminal: true}, {header: {header_name: x-b}}]}",
        );
        assert_eq!(compute(&terminal, &input(&h, "/")).hash, Some(a));
        // A terminal policy without a value does not stop the walk.
        let only_b = headers(&[("x-b", "2")]);
        assert_eq!(compute(&terminal, &input(&only_b, "/")).hash, Some(b));
    }

    #[test]
    fn a_cookie_with_ttl_is_generated_once_and_then_read() {
        let p = policies(
            "{cluster: c, hash_policy: [{cookie: {name: sticky, ttl: 3600s, path: /, attributes: [{name: SameSite, value: Lax}]}}]}",
        );
        let none = headers(&[]);
        let out = compute(&p, &input(&none, "/"));
        assert_eq!(out.set_cookies.len(), 1);
        let set = &out.set_cookies[0];
        assert!(
            set.starts_with("sticky=\"")
                && set.ends_with("\"; Max-Age=3600; Path=/; SameSite=Lax; HttpOnly"),
            "{set}"
        );
        // Sending it back gives the same hash and no new cookie.
        let value = set.split(';').next().unwrap();
        let back = headers(&[("cookie", &format!("other=1; {value}"))]);
        let again = compute(&p, &input(&back, "/"));
        assert_eq!(again.hash, out.hash);
        assert!(again.set_cookies.is_empty());
        // Without a ttl nothing is generated.
        let no_ttl = policies("{cluster: c, hash_policy: [{cookie: {name: sticky}}]}");
        assert_eq!(compute(&no_ttl, &input(&none, "/")), HashOutcome::default());
    }

    #[test]
    fn source_ip_and_query_parameter() {
        let p = policies("{cluster: c, hash_policy: [{connection_properties: {source_ip: true}}]}");
        let h = headers(&[]);
        assert_eq!(
            compute(&p, &input(&h, "/")).hash,
            Some(xx_hash64(b"10.0.0.7"))
        );
        let q = policies("{cluster: c, hash_policy: [{query_parameter: {name: user}}]}");
        assert_eq!(
            compute(&q, &input(&h, "/p?x=1&user=bob&user=eve")).hash,
            Some(xx_hash64(b"bob"))
        );
        assert_eq!(compute(&q, &input(&h, "/p?users=bob")).hash, None);
        assert_eq!(compute(&q, &input(&h, "/p")).hash, None);
        // source_ip: false hashes nothing, and is left out (as Envoy does).
        assert!(policies("{cluster: c, hash_policy: [{connection_properties: {}}]}").is_empty());
    }

    #[test]
    fn bad_policies_are_refused_by_path() {
        let action: xds_api::pb::envoy::config::route::v3::RouteAction = message_from_yaml(
            "{cluster: c, hash_policy: [{filter_state: {key: k}}, {header: {header_name: \"bad name\"}}]}",
            None,
        )
        .unwrap();
        let at = At::root("hash_policy");
        let e = HashPolicy::from_proto(&action.hash_policy[0], &at.index(0)).unwrap_err();
        assert!(e.to_string().contains("hash_policy[0].filter_state"), "{e}");
        let e = HashPolicy::from_proto(&action.hash_policy[1], &at.index(1)).unwrap_err();
        assert!(
            e.to_string().contains("hash_policy[1].header.header_name"),
            "{e}"
        );
    }
}
