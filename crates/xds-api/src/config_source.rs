//! What a `ConfigSource` says beyond where its resources come from.

use std::time::Duration;

use crate::pb::envoy::config::core::v3::ConfigSource;

/// How long the first answer for a name is waited for during the initial fetch, from the
/// `initial_fetch_timeout` of the config source that names it: Envoy's 15 s when it is not set,
/// `None` (for ever) when it is zero, as Istio sets it everywhere.
pub type FetchTimeout = Option<Duration>;

/// Envoy's `initial_fetch_timeout` when a config source does not set one.
pub const DEFAULT_INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// The initial fetch timeout a config source sets (`None` source: Envoy's default).
pub fn initial_fetch_timeout(source: Option<&ConfigSource>) -> FetchTimeout {
    match source.and_then(|s| s.initial_fetch_timeout.as_ref()) {
        None => Some(DEFAULT_INITIAL_FETCH_TIMEOUT),
        Some(d) if d.seconds > 0 || (d.seconds == 0 && d.nanos > 0) => Some(
            Duration::from_secs(d.seconds.unsigned_abs())
                + Duration::from_nanos(u64::try_from(d.nanos).unwrap_or(0)),
        ),
        // Zero (or a negative duration, which Envoy does not check either) waits for ever.
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::google::protobuf::Duration as ProtoDuration;

    fn fetching(seconds: i64, nanos: i32) -> ConfigSource {
        ConfigSource {
            initial_fetch_timeout: Some(ProtoDuration { seconds, nanos }),
            ..Default::default()
        }
    }

    #[test]
    fn initial_fetch_timeout_is_envoys_default_when_unset_and_for_ever_when_zero() {
        assert_eq!(initial_fetch_timeout(None), Some(Duration::from_secs(15)));
        assert_eq!(
            initial_fetch_timeout(Some(&ConfigSource::default())),
            Some(Duration::from_secs(15))
        );
        assert_eq!(initial_fetch_timeout(Some(&fetching(0, 0))), None);
        assert_eq!(initial_fetch_timeout(Some(&fetching(-1, 0))), None);
        assert_eq!(
            initial_fetch_timeout(Some(&fetching(2, 0))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            initial_fetch_timeout(Some(&fetching(0, 500_000_000))),
            Some(Duration::from_millis(500))
        );
    }
}
