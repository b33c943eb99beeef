//! The local rate limit HTTP filter (`envoy.filters.http.local_ratelimit`): its configuration and
//! the token bucket it spends, one per filter instance (the listener's filter, or a route's or
//! virtual host's own `typed_per_filter_config`), shared by every worker of the proxy.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use xds_api::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use xds_api::pb::envoy::extensions::filters::http::local_ratelimit::v3 as lrl;
use xds_api::pb::google::protobuf::Any;

use crate::error::{At, ModelError};
use crate::route::{HeaderAdd, fraction_per_million, headers_to_add};
use crate::{duration, unpack};

pub const LOCAL_RATELIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";

/// Envoy refuses shorter fill intervals.
const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);

/// `enable_x_ratelimit_headers: DRAFT_VERSION_03`.
const DRAFT_VERSION_03: i32 = 1;

/// One local rate limit filter instance.
#[derive(Debug)]
pub struct LocalRateLimit {
    /// The stats are `<stat_prefix>.http_local_rate_limit.*`.
    pub stat_prefix: String,
    /// The status of a rate-limited request (Envoy's default 429).
    pub status: u16,
    /// `None` (no `token_bucket`): every request passes, counted as `ok`, as in Envoy.
    pub bucket: Option<TokenBucket>,
    /// `filter_enabled` as parts per million (absent: never, as Envoy: the filter does nothing).
    pub enabled_per_million: u32,
    /// `filter_enforced` as parts per million (absent: never; a limited request is only counted).
    pub enforced_per_million: u32,
    /// Added to the responses of rate-limited requests.
    pub response_headers_to_add: Vec<HeaderAdd>,
    /// `x-ratelimit-limit`, `-remaining` and `-reset` on every response of an enabled request.
    pub x_ratelimit_headers: bool,
    /// `enable_retry_after_header`: a `429` it answers says in `retry-after` the seconds until the
    /// next token (at least 1), unless `response_headers_to_add` sets one.
    pub retry_after: bool,
}

impl LocalRateLimit {
    pub fn from_any(any: &Any, at: &At) -> Result<LocalRateLimit, ModelError> {
        let p: lrl::LocalRateLimit = unpack(any, at)?;
        LocalRateLimit::from_proto(&p, at)
    }

    /// A route's or virtual host's own config (`typed_per_filter_config`), which Envoy requires to
    /// have a bucket.
    pub fn per_route(any: &Any, at: &At) -> Result<LocalRateLimit, ModelError> {
        let c = LocalRateLimit::from_any(any, at)?;
        if c.bucket.is_none() {
            return Err(at
                .key("token_bucket")
                .error("the local rate limit token bucket must be set for per-route configs"));
        }
        Ok(c)
    }

    pub fn from_proto(p: &lrl::LocalRateLimit, at: &At) -> Result<LocalRateLimit, ModelError> {
        let refuse = |field: &str| Err(at.key(field).unsupported(field));
        if !p.request_headers_to_add_when_not_enforced.is_empty() {
            return refuse("request_headers_to_add_when_not_enforced");
        }
        if !p.descriptors.is_empty() {
            return refuse("descriptors");
        }
        if p.stage != 0 {
            return refuse("stage");
        }
        if p.local_rate_limit_per_downstream_connection {
            return refuse("local_rate_limit_per_downstream_connection");
        }
        if p.local_cluster_rate_limit.is_some() {
            return refuse("local_cluster_rate_limit");
        }
        if p.enable_x_ratelimit_headers != 0 && p.enable_x_ratelimit_headers != DRAFT_VERSION_03 {
            return refuse("enable_x_ratelimit_headers");
        }
        if p.vh_rate_limits != 0 {
            return refuse("vh_rate_limits");
        }
        if p.rate_limited_as_resource_exhausted {
            return refuse("rate_limited_as_resource_exhausted");
        }
        if !p.rate_limits.is_empty() {
            return refuse("rate_limits");
        }
        if p.max_dynamic_descriptors.is_some() {
            return refuse("max_dynamic_descriptors");
        }
        // `always_consume_default_token_bucket` only matters with descriptors, refused above.
        if p.stat_prefix.is_empty() {
            return Err(at.key("stat_prefix").error("stat_prefix must not be empty"));
        }
        let bucket = p
            .token_bucket
            .as_ref()
            .map(|tb| token_bucket(tb, &at.key("token_bucket")))
            .transpose()?;
        let status = match p.status.as_ref().map_or(0, |s| s.code) {
            0 => 429,
            c => u16::try_from(c)
                .ok()
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| {
                    at.key("status")
                        .key("code")
                        .error(format!("{c} is not an HTTP status in [200, 600)"))
                })?,
        };
        let per_million = |f: &Option<RuntimeFractionalPercent>| {
            f.as_ref()
                .and_then(|f| f.default_value.as_ref())
                .map_or(0, fraction_per_million)
        };
        Ok(LocalRateLimit {
            stat_prefix: p.stat_prefix.clone(),
            status,
            bucket,
            enabled_per_million: per_million(&p.filter_enabled),
            enforced_per_million: per_million(&p.filter_enforced),
            response_headers_to_add: headers_to_add(
                &p.response_headers_to_add,
                &at.key("response_headers_to_add"),
            )?,
            x_ratelimit_headers: p.enable_x_ratelimit_headers == DRAFT_VERSION_03,
            retry_after: p.enable_retry_after_header,
        })
    }
}

fn token_bucket(
    tb: &xds_api::pb::envoy::r#type::v3::TokenBucket,
    at: &At,
) -> Result<TokenBucket, ModelError> {
    if tb.max_tokens == 0 {
        return Err(at
            .key("max_tokens")
            .error("max_tokens must be greater than 0"));
    }
    let tokens_per_fill = tb.tokens_per_fill.as_ref().map_or(1, |v| v.value);
    if tokens_per_fill == 0 {
        return Err(at
            .key("tokens_per_fill")
            .error("tokens_per_fill must be greater than 0"));
    }
    let fill_interval = tb.fill_interval.as_ref().map(duration).unwrap_or_default();
    if fill_interval < MIN_FILL_INTERVAL {
        return Err(at
            .key("fill_interval")
            .error("the fill interval must be at least 50ms"));
    }
    Ok(TokenBucket::new(
        tb.max_tokens,
        tokens_per_fill,
        fill_interval,
        Instant::now(),
    ))
}

/// A token bucket that starts full and refills continuously at `tokens_per_fill` per
/// `fill_interval` (as Envoy's), up to `max_tokens`. Refilled lazily from the clock the caller
/// passes in, when a token is asked for; no timer.
#[derive(Debug)]
pub struct TokenBucket {
    pub max_tokens: u32,
    /// Tokens per second.
    rate: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    at: Instant,
}

/// The answer of [`TokenBucket::take`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Take {
    /// A token was taken: the request passes.
    pub allowed: bool,
    /// Whole tokens left.
    pub remaining: u32,
    /// Seconds until a whole token is available again (0 while one is).
    pub reset_secs: u64,
}

impl TokenBucket {
    pub fn new(
        max_tokens: u32,
        tokens_per_fill: u32,
        fill_interval: Duration,
        now: Instant,
    ) -> TokenBucket {
        TokenBucket {
            max_tokens,
            rate: f64::from(tokens_per_fill) / fill_interval.as_secs_f64().max(f64::MIN_POSITIVE),
            state: Mutex::new(BucketState {
                tokens: f64::from(max_tokens),
                at: now,
            }),
        }
    }

    /// Takes one token if there is one at `now`.
    pub fn take(&self, now: Instant) -> Take {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(s.at).as_secs_f64();
        s.tokens = (s.tokens + elapsed * self.rate).min(f64::from(self.max_tokens));
        if now > s.at {
            s.at = now;
        }
        let allowed = s.tokens >= 1.0;
        if allowed {
            s.tokens -= 1.0;
        }
        let reset_secs = if s.tokens >= 1.0 {
            0
        } else {
            // Rounded to milliseconds first, so that float noise does not add a second.
            let ms = ((1.0 - s.tokens) / self.rate * 1000.0).round();
            (ms / 1000.0).ceil() as u64
        };
        Take {
            allowed,
            remaining: s.tokens.floor() as u32,
            reset_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use xds_api::bootstrap::message_from_yaml;

    use super::*;

    fn parse(yaml: &str) -> Result<LocalRateLimit, ModelError> {
        let p: lrl::LocalRateLimit = message_from_yaml(yaml, None).expect("valid LocalRateLimit");
        LocalRateLimit::from_proto(&p, &At::root("f"))
    }

    #[test]
    fn parses_envoys_fields_and_defaults() {
        let c = parse(
            "stat_prefix: rl
token_bucket: { max_tokens: 5, tokens_per_fill: 2, fill_interval: 10s }
filter_enabled: { default_value: { numerator: 50, denominator: HUNDRED }, runtime_key: a }
filter_enforced: { default_value: { numerator: 25, denominator: TEN_THOUSAND }, runtime_key: b }
status: { code: ServiceUnavailable }
response_headers_to_add: [{ header: { key: x-limited, value: 'yes' } }]
enable_x_ratelimit_headers: DRAFT_VERSION_03
",
        )
        .expect("valid");
        assert_eq!(c.stat_prefix, "rl");
        assert_eq!(c.status, 503);
        assert_eq!(c.bucket.as_ref().map(|b| b.max_tokens), Some(5));
        assert_eq!(c.enabled_per_million, 500_000);
        assert_eq!(c.enforced_per_million, 2_500);
        assert_eq!(c.response_headers_to_add.len(), 1);
        assert_eq!(c.response_headers_to_add[0].name, "x-limited");
        assert!(c.x_ratelimit_headers);
        assert!(!c.retry_after);
        let c = parse("stat_prefix: rl\nenable_retry_after_header: true\n").expect("valid");
        assert!(c.retry_after);

        // Envoy's defaults: 429, one token per fill, and without filter_enabled/enforced the
        // filter neither limits nor counts.
        let c = parse("stat_prefix: rl\ntoken_bucket: { max_tokens: 1, fill_interval: 1s }\n")
            .expect("valid");
        assert_eq!(c.status, 429);
        assert_eq!(c.enabled_per_million, 0);
        assert_eq!(c.enforced_per_million, 0);
        assert!(!c.x_ratelimit_headers);
        assert!(c.response_headers_to_add.is_empty());
        // Without a token bucket Envoy limits nothing.
        let c = parse("stat_prefix: rl\n").expect("valid");
        assert!(c.bucket.is_none());
    }

    #[test]
    fn unsupported_fields_are_refused_by_path() {
        let e = parse(
            "stat_prefix: rl
token_bucket: { max_tokens: 1, fill_interval: 1s }
descriptors: [{ entries: [{ key: a, value: b }], token_bucket: { max_tokens: 1, fill_interval: 1s } }]
",
        )
        .expect_err("refused");
        assert_eq!(
            e.to_string(),
            "f.descriptors: descriptors is not supported by bosun proxy; remove it or run this \
             configuration on Envoy"
        );
        for (yaml, field) in [
            (
                "local_rate_limit_per_downstream_connection: true",
                "f.local_rate_limit_per_downstream_connection",
            ),
            ("local_cluster_rate_limit: {}", "f.local_cluster_rate_limit"),
            (
                "rate_limits: [{ actions: [{ remote_address: {} }] }]",
                "f.rate_limits",
            ),
            ("stage: 1", "f.stage"),
        ] {
            let e = parse(&format!(
                "stat_prefix: rl\ntoken_bucket: {{ max_tokens: 1, fill_interval: 1s }}\n{yaml}\n"
            ))
            .expect_err(yaml);
            assert_eq!(e.field, field);
        }
        let any = Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
                .to_owned(),
            value: prost::Message::encode_to_vec(&lrl::LocalRateLimit {
                stat_prefix: "rl".to_owned(),
                ..Default::default()
            }),
        };
        let e = LocalRateLimit::per_route(&any, &At::root("r")).expect_err("no bucket");
        assert_eq!(
            e.to_string(),
            "r.token_bucket: the local rate limit token bucket must be set for per-route configs"
        );
        let e = parse("stat_prefix: rl\ntoken_bucket: { max_tokens: 1, fill_interval: 0.01s }\n")
            .expect_err("too short");
        assert_eq!(e.field, "f.token_bucket.fill_interval");
    }

    #[test]
    fn bucket_starts_full_and_refills_continuously_up_to_its_size() {
        let t0 = Instant::now();
        // 2 tokens per 8 s: one every 4 s.
        let b = TokenBucket::new(3, 2, Duration::from_secs(8), t0);
        let take = |secs: f64| b.take(t0 + Duration::from_secs_f64(secs));
        assert_eq!(
            take(0.0),
            Take {
                allowed: true,
                remaining: 2,
                reset_secs: 0
            }
        );
        assert_eq!(take(0.0).remaining, 1);
        assert_eq!(
            take(0.0),
            Take {
                allowed: true,
                remaining: 0,
                reset_secs: 4
            }
        );
        assert_eq!(
            take(1.0),
            Take {
                allowed: false,
                remaining: 0,
                reset_secs: 3
            }
        );
        // 4 s after the bucket emptied, one token is back.
        assert!(take(4.0).allowed);
        assert!(!take(4.0).allowed);
        // A long wait refills to max_tokens, no more.
        for _ in 0..3 {
            assert!(take(1000.0).allowed);
        }
        assert!(!take(1000.0).allowed);
        // A clock going backwards (another worker's earlier reading) adds nothing.
        assert!(!take(999.0).allowed);
    }
}
