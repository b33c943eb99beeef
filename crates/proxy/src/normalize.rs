//! A request path normalized as Envoy's `normalize_path` and `merge_slashes` do it (its
//! canonicalizer comes from Chromium's URL library), before the request is routed and sent on.
//!
//! Only the path is touched, never the query. Normalizing: a backslash becomes a slash; a percent
//! escape of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded, other escapes stay as
//! written (`%2f` too, in its case), an escaped NUL or a raw byte beyond ASCII fails the request,
//! and a `%` that starts no escape stays; the characters a path may not carry raw (`" < > ^ ` { | }`) are escaped; then the
//! dot segments go (RFC 3986 §5.2.4: `/a/./b` → `/a/b`, `/a/../b` → `/b`, never above the root, a
//! last `.` or `..` leaving its slash). Merging slashes then makes each run of slashes one.

/// Why a path could not be normalized (Envoy answers 400, `path_normalization_failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unnormalizable;

/// `path_and_query` normalized and/or with its slashes merged; `None` when it is already so (the
/// usual case, found without allocating).
pub fn normalized(
    path_and_query: &str,
    normalize: bool,
    merge_slashes: bool,
) -> Result<Option<String>, Unnormalizable> {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    let needs_normalizing = normalize
        && path.bytes().any(|b| {
            !b.is_ascii()
                || matches!(
                    b,
                    b'\\' | b'%' | b'.' | b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}'
                )
        });
    let needs_merging = merge_slashes && path.contains("//");
    if !needs_normalizing && !needs_merging {
        return Ok(None);
    }
    let mut out = if needs_normalizing {
        without_dot_segments(&canonical_characters(path)?)
    } else {
        path.to_owned()
    };
    if merge_slashes {
        out = merged(&out);
    }
    out.push_str(query);
    Ok((out != path_and_query).then_some(out))
}

/// Backslashes as slashes, unreserved characters unescaped, the characters a path may not carry raw
/// escaped.
fn canonical_characters(path: &str) -> Result<String, Unnormalizable> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => out.push('/'),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    let decoded = high << 4 | low;
                    if decoded == 0 {
                        return Err(Unnormalizable);
                    }
                    if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
                        out.push(char::from(decoded));
                    } else {
                        out.push_str(&path[i..i + 3]);
                    }
                    i += 3;
                    continue;
                }
                _ => out.push('%'),
            },
            b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}' => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0xf)]));
            }
            // Raw bytes beyond ASCII (Envoy refuses them; escaped, they pass).
            _ if !b.is_ascii() => return Err(Unnormalizable),
            _ => out.push(char::from(b)),
        }
        i += 1;
    }
    Ok(out)
}

fn hex(b: Option<&u8>) -> Option<u8> {
    char::from(*b?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 3986 §5.2.4 on an absolute path: `.` segments go, `..` takes the segment before it (none
/// above the root), and a last `.` or `..` leaves the path ending in a slash.
fn without_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut rest = path.strip_prefix('/').unwrap_or(path).split('/').peekable();
    let mut trailing_slash = false;
    while let Some(segment) = rest.next() {
        let last = rest.peek().is_none();
        match segment {
            "." => trailing_slash = last,
            ".." => {
                segments.pop();
                trailing_slash = last;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

/// Each run of slashes as one.
fn merged(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut previous_slash = false;
    for c in path.chars() {
        if c == '/' && previous_slash {
            continue;
        }
        previous_slash = c == '/';
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths and what Envoy 1.40 sends upstream with `normalize_path: true` (probed side by side).
    #[test]
    fn paths_are_normalized_as_envoy_normalizes_them() {
        let cases = [
            ("/a/b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../a", "/a"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a//b", "/a//b"),
            ("/a/b/", "/a/b/"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb", "/a%2fb"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E/b", "/a/b"),
            ("/a/%2e./b", "/b"),
            ("/a\\b", "/a/b"),
            ("/a/b?x=/../y", "/a/b?x=/../y"),
            ("/a/b/..?x", "/a/?x"),
            ("/%7Ea", "/~a"),
            ("/%41", "/A"),
            ("/a%20b", "/a%20b"),
            ("/a\"b", "/a%22b"),
            ("/a<b>", "/a%3Cb%3E"),
            ("/a{b}", "/a%7Bb%7D"),
            ("/a`b", "/a%60b"),
            ("/a|b^c", "/a%7Cb%5Ec"),
            ("/a%zzb", "/a%zzb"),
            ("/a%", "/a%"),
            ("/a%2", "/a%2"),
            ("/a;b/../c", "/c"),
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/c", "/a/..b/c"),
            ("/..", "/"),
            ("/.", "/"),
            ("/%2e%2e", "/"),
            ("/a/b/../../../c", "/c"),
            ("/a%5Cb", "/a%5Cb"),
            ("/a/%2e%2e%2f/b", "/a/..%2f/b"),
            ("/a%2e%2e", "/a.."),
            ("/a%2Db%5Fc%30", "/a-b_c0"),
            ("/a%c3%a9%01%7F", "/a%c3%a9%01%7F"),
            ("/a!$&'()*+,;=:@b", "/a!$&'()*+,;=:@b"),
        ];
        for (path, envoy) in cases {
            let got = normalized(path, true, false).expect(path);
            assert_eq!(got.as_deref().unwrap_or(path), envoy, "{path}");
        }
        assert_eq!(normalized("/a%00b", true, false), Err(Unnormalizable));
        assert_eq!(normalized("/caf\u{e9}", true, false), Err(Unnormalizable));
        assert_eq!(normalized("/plain/path?q=1", true, true), Ok(None));
    }

    #[test]
    fn slashes_are_merged_after_normalizing() {
        assert_eq!(normalized("/a//b", true, true), Ok(Some("/a/b".into())));
        assert_eq!(normalized("//a", true, true), Ok(Some("/a".into())));
        assert_eq!(
            normalized("/a//b?x=//y", false, true),
            Ok(Some("/a/b?x=//y".into()))
        );
        assert_eq!(normalized("/a//./b", true, true), Ok(Some("/a/b".into())));
        assert_eq!(normalized("/a//b", false, false), Ok(None));
    }
}
