//! String, header and query matchers with Envoy's semantics, compiled once when the config is built.

use regex::Regex;
use xds_api::pb::envoy::config::route::v3 as route;
use xds_api::pb::envoy::r#type::matcher::v3 as m;

use crate::error::{At, ModelError};

/// Envoy's `StringMatcher`.
#[derive(Debug, Clone)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// Matches the whole value (RE2 full match).
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct StringMatcher {
    pub pattern: StringMatch,
    /// Compare ASCII case-insensitively (not for regexes, as in Envoy).
    pub ignore_case: bool,
}

impl StringMatcher {
    pub fn matches(&self, value: &str) -> bool {
        let fold = self.ignore_case;
        match &self.pattern {
            StringMatch::Exact(s) => {
                if fold {
                    value.eq_ignore_ascii_case(s)
                } else {
                    value == s
                }
            }
            StringMatch::Prefix(s) => {
                value.len() >= s.len()
                    && value.is_char_boundary(s.len())
                    && eq(&value[..s.len()], s, fold)
            }
            StringMatch::Suffix(s) => {
                value.len() >= s.len()
                    && value.is_char_boundary(value.len() - s.len())
                    && eq(&value[value.len() - s.len()..], s, fold)
            }
            StringMatch::Contains(s) => {
                if fold {
                    value.to_ascii_lowercase().contains(&s.to_ascii_lowercase())
                } else {
                    value.contains(s.as_str())
                }
            }
            StringMatch::Regex(r) => r.is_match(value),
        }
    }

    pub fn from_proto(p: &m::StringMatcher, at: &At) -> Result<StringMatcher, ModelError> {
        use m::string_matcher::MatchPattern;
        let pattern =
            match &p.match_pattern {
                Some(MatchPattern::Exact(s)) => StringMatch::Exact(s.clone()),
                Some(MatchPattern::Prefix(s)) => StringMatch::Prefix(s.clone()),
                Some(MatchPattern::Suffix(s)) => StringMatch::Suffix(s.clone()),
                Some(MatchPattern::Contains(s)) => StringMatch::Contains(s.clone()),
                Some(MatchPattern::SafeRegex(r)) => {
                    StringMatch::Regex(full_match_regex(r, &at.key("safe_regex"))?)
                }
                Some(MatchPattern::Custom(_)) => {
                    return Err(at.key("custom").unsupported("a custom string matcher"));
                }
                None => return Err(at.error(
                    "a string matcher needs one of exact, prefix, suffix, contains or safe_regex",
                )),
            };
        Ok(StringMatcher {
            pattern,
            ignore_case: p.ignore_case,
        })
    }
}

fn eq(a: &str, b: &str, fold: bool) -> bool {
    if fold {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Compiles an Envoy `RegexMatcher` (RE2) as a whole-value match.
pub fn full_match_regex(r: &m::RegexMatcher, at: &At) -> Result<Regex, ModelError> {
    // Bounded, as RE2's program size limit bounds Envoy's.
    regex::RegexBuilder::new(&format!("^(?:{})$", r.regex))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            at.key("regex")
                .error(format!("invalid regex {:?}: {e}", r.regex))
        })
}

/// What a header matcher checks.
#[derive(Debug, Clone)]
pub enum HeaderCheck {
    Present(bool),
    Value(StringMatcher),
    /// `range_match`: the value parses as an integer in `[start, end)`.
    Range {
        start: i64,
        end: i64,
    },
}

/// Envoy's `HeaderMatcher` on request headers (several values of one header are joined with `,`).
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// Lower case.
    pub name: String,
    pub check: HeaderCheck,
    pub invert: bool,
    pub treat_missing_as_empty: bool,
}

impl HeaderMatcher {
    pub fn from_proto(p: &route::HeaderMatcher, at: &At) -> Result<HeaderMatcher, ModelError> {
        use route::header_matcher::HeaderMatchSpecifier as S;
        let text = |pattern: StringMatch| {
            HeaderCheck::Value(StringMatcher {
                pattern,
                ignore_case: false,
            })
        };
        let check = match &p.header_match_specifier {
            Some(S::ExactMatch(s)) => text(StringMatch::Exact(s.clone())),
            Some(S::PrefixMatch(s)) => text(StringMatch::Prefix(s.clone())),
            Some(S::SuffixMatch(s)) => text(StringMatch::Suffix(s.clone())),
            Some(S::ContainsMatch(s)) => text(StringMatch::Contains(s.clone())),
            Some(S::SafeRegexMatch(r)) => text(StringMatch::Regex(full_match_regex(
                r,
                &at.key("safe_regex_match"),
            )?)),
            Some(S::StringMatch(s)) => {
                HeaderCheck::Value(StringMatcher::from_proto(s, &at.key("string_match"))?)
            }
            Some(S::PresentMatch(b)) => HeaderCheck::Present(*b),
            Some(S::RangeMatch(r)) => HeaderCheck::Range {
                start: r.start,
                end: r.end,
            },
            // No specifier: the header must be present.
            None => HeaderCheck::Present(true),
        };
        if p.name.is_empty() {
            return Err(at.key("name").error("a header matcher needs a name"));
        }
        Ok(HeaderMatcher {
            name: p.name.to_ascii_lowercase(),
            check,
            invert: p.invert_match,
            treat_missing_as_empty: p.treat_missing_header_as_empty,
        })
    }

    /// `value`: the header's values joined with `,`, or `None` when absent.
    pub fn matches(&self, value: Option<&str>) -> bool {
        self.check(value)
            .is_some_and(|result| result != self.invert)
    }

    /// Route matching on every value of a header, as Envoy: the (uninverted) check passes when any one
    /// value passes, so `a` and `b` sent as two headers match `exact: b`, not `exact: "a,b"`.
    pub fn matches_values(&self, values: &[&str]) -> bool {
        if values.len() <= 1 {
            return self.matches(values.first().copied());
        }
        let any = values.iter().any(|v| self.check(Some(v)).unwrap_or(false));
        any != self.invert
    }

    /// The uninverted result; `None` when the header is missing and that fails even an inverted matcher.
    fn check(&self, value: Option<&str>) -> Option<bool> {
        let value = match (value, self.treat_missing_as_empty) {
            (None, true) => Some(""),
            (v, _) => v,
        };
        match (&self.check, value) {
            (HeaderCheck::Present(want), v) => Some(v.is_some() == *want),
            (_, None) => None, // Envoy: a missing header never matches, even inverted.
            (HeaderCheck::Value(m), Some(v)) => Some(m.matches(v)),
            (HeaderCheck::Range { start, end }, Some(v)) => {
                Some(v.parse::<i64>().is_ok_and(|n| n >= *start && n < *end))
            }
        }
    }
}

/// Envoy's `QueryParameterMatcher`.
#[derive(Debug, Clone)]
pub struct QueryMatcher {
    pub name: String,
    /// `None`: the parameter must be present.
    pub value: Option<StringMatcher>,
    pub present: bool,
}

impl QueryMatcher {
    pub fn from_proto(
        p: &route::QueryParameterMatcher,
        at: &At,
    ) -> Result<QueryMatcher, ModelError> {
        use route::query_parameter_matcher::QueryParameterMatchSpecifier as S;
        let (value, present) = match &p.query_parameter_match_specifier {
            Some(S::StringMatch(s)) => (
                Some(StringMatcher::from_proto(s, &at.key("string_match"))?),
                true,
            ),
            Some(S::PresentMatch(b)) => (None, *b),
            None => (None, true),
        };
        Ok(QueryMatcher {
            name: p.name.clone(),
            value,
            present,
        })
    }

    /// `query`: the raw query string (without `?`).
    pub fn matches(&self, query: Option<&str>) -> bool {
        let found = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| *k == self.name)
            .map(|(_, v)| v);
        match (&self.value, found) {
            (None, f) => f.is_some() == self.present,
            (Some(_), None) => false,
            (Some(m), Some(v)) => m.matches(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(pattern: StringMatch, ignore_case: bool) -> StringMatcher {
        StringMatcher {
            pattern,
            ignore_case,
        }
    }

    #[test]
    fn string_matchers() {
        assert!(sm(StringMatch::Prefix("/api".into()), false).matches("/api/v1"));
        assert!(!sm(StringMatch::Prefix("/API".into()), false).matches("/api/v1"));
        assert!(sm(StringMatch::Prefix("/API".into()), true).matches("/api/v1"));
        assert!(sm(StringMatch::Suffix(".png".into()), false).matches("a.png"));
        assert!(sm(StringMatch::Contains("mid".into()), false).matches("amidb"));
        assert!(sm(StringMatch::Exact("x".into()), true).matches("X"));
        let re = full_match_regex(
            &m::RegexMatcher {
                regex: "/v[0-9]+".into(),
                engine_type: None,
            },
            &At::root("r"),
        )
        .expect("regex");
        // Full match, as RE2's FullMatch in Envoy.
        assert!(sm(StringMatch::Regex(re.clone()), false).matches("/v12"));
        assert!(!sm(StringMatch::Regex(re), false).matches("/v12/x"));
    }

    #[test]
    fn header_matchers_follow_envoy_on_missing_and_invert() {
        let h = HeaderMatcher {
            name: "end-user".into(),
            check: HeaderCheck::Value(sm(StringMatch::Exact("jason".into()), false)),
            invert: true,
            treat_missing_as_empty: false,
        };
        assert!(h.matches(Some("bob")));
        assert!(!h.matches(Some("jason")));
        assert!(
            !h.matches(None),
            "a missing header fails even an inverted matcher"
        );
        let present = HeaderMatcher {
            name: "x".into(),
            check: HeaderCheck::Present(false),
            invert: false,
            treat_missing_as_empty: false,
        };
        assert!(present.matches(None));
        let range = HeaderMatcher {
            name: "x".into(),
            check: HeaderCheck::Range { start: 1, end: 10 },
            invert: false,
            treat_missing_as_empty: false,
        };
        assert!(
            range.matches(Some("9")) && !range.matches(Some("10")) && !range.matches(Some("a"))
        );
    }

    #[test]
    fn header_matchers_check_each_value_of_a_repeated_header() {
        let exact = |v: &str, invert| HeaderMatcher {
            name: "x".into(),
            check: HeaderCheck::Value(sm(StringMatch::Exact(v.into()), false)),
            invert,
            treat_missing_as_empty: false,
        };
        assert!(exact("b", false).matches_values(&["a", "b"]));
        assert!(!exact("a,b", false).matches_values(&["a", "b"]));
        assert!(exact("a,b", false).matches_values(&["a,b"]));
        assert!(!exact("x", true).matches_values(&["x", "y"]));
        assert!(exact("x", true).matches_values(&["y", "z"]));
        assert!(!exact("x", true).matches_values(&[]));
    }

    #[test]
    fn query_matchers() {
        let q = QueryMatcher {
            name: "debug".into(),
            value: Some(sm(StringMatch::Exact("1".into()), false)),
            present: true,
        };
        assert!(q.matches(Some("a=b&debug=1")));
        assert!(!q.matches(Some("debug=2")));
        assert!(!q.matches(None));
        let p = QueryMatcher {
            name: "flag".into(),
            value: None,
            present: true,
        };
        assert!(p.matches(Some("flag")) && !p.matches(Some("other=1")));
    }
}
