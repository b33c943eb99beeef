//! Access logs of connection managers and TCP proxies: where each line goes and what it says, in
//! Envoy's format strings (`%COMMAND(arg):LENGTH%` operators in text, or a JSON dictionary of them).
//! Parsed here, once, with the config; rendered by the proxy from a [`Fields`] lookup.

use std::collections::BTreeMap;

use xds_api::pb::envoy::config::accesslog::v3::{AccessLog as AccessLogProto, access_log};
use xds_api::pb::envoy::config::core::v3::{
    SubstitutionFormatString, data_source, substitution_format_string,
};
use xds_api::pb::envoy::extensions::access_loggers::file::v3::{FileAccessLog, file_access_log};
use xds_api::pb::envoy::extensions::access_loggers::stream::v3::{
    StderrAccessLog, StdoutAccessLog, stderr_access_log, stdout_access_log,
};
use xds_api::pb::google::protobuf::{Struct, Value, value};
use xds_api::type_url;

use crate::error::{At, ModelError};
use crate::unpack;

/// Envoy's default format, used when a log names none.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% \
%PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% \
%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \
\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// One access log of a filter.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    pub sink: Sink,
    pub format: LogFormat,
    /// The request headers the format reads (`%REQ(...)%`, pseudo-headers aside), found once with
    /// the config so that a request keeps only these for its line.
    pub request_headers: Vec<http::HeaderName>,
    /// The response headers it reads (`%RESP(...)%`): a line logged when its body ends keeps only
    /// these.
    pub response_headers: Vec<http::HeaderName>,
}

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sink {
    Stdout,
    Stderr,
    /// A file, appended to (`/dev/stdout` and `/dev/stderr` are the streams, as for Envoy).
    File(String),
}

/// A line's format.
#[derive(Debug, Clone, PartialEq)]
pub enum LogFormat {
    /// Text with operators; the line ends where the format puts its newline.
    Text(Vec<Piece>),
    /// A JSON object, one per line, its keys sorted (as Envoy writes them).
    Json(BTreeMap<String, JsonField>),
}

/// A value of a JSON format.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonField {
    /// A string with operators. One operator alone gives its typed value: a number for the
    /// numeric ones, `null` for a value that is not there.
    Pieces(Vec<Piece>),
    /// A number, boolean or null written as given.
    Literal(String),
    Object(BTreeMap<String, JsonField>),
}

/// A run of literal text, or an operator with its optional maximum length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Op(Operator, Option<usize>),
}

/// A header an operator reads: its lower-cased name and, unless it is a pseudo-header (`:path`),
/// the name parsed once, so that a line looks it up without parsing it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderKey {
    pub name: String,
    pub header: Option<http::HeaderName>,
}

impl HeaderKey {
    fn new(name: String) -> HeaderKey {
        let header = http::HeaderName::from_bytes(name.as_bytes()).ok();
        HeaderKey { name, header }
    }
}

/// The command operators Bosun renders (Envoy's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// `START_TIME`, optionally with a `strftime`-style format.
    StartTime(Option<String>),
    /// `REQ(name?alternative)`: a request header, or a pseudo-header (`:method`, `:path`, `:authority`,
    /// `:scheme`); names lower-cased.
    Request(HeaderKey, Option<HeaderKey>),
    Response(HeaderKey, Option<HeaderKey>),
    Protocol,
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    ConnectionTerminationDetails,
    UpstreamTransportFailureReason,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamClusterRaw,
    UpstreamLocalAddress,
    DownstreamLocalAddress,
    DownstreamLocalAddressWithoutPort,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    RequestedServerName,
    RouteName,
    Hostname,
}

impl Operator {
    /// Whether its JSON value is a number.
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            Operator::ResponseCode
                | Operator::BytesReceived
                | Operator::BytesSent
                | Operator::Duration
        )
    }

    fn parse(name: &str, arg: Option<&str>) -> Result<Operator, String> {
        let no_arg = |op: Operator| match arg {
            None => Ok(op),
            Some(_) => Err(format!("{name} takes no argument")),
        };
        let header = |arg: Option<&str>| -> Result<(HeaderKey, Option<HeaderKey>), String> {
            let arg = arg
                .filter(|a| !a.is_empty())
                .ok_or(format!("{name} needs a header name: {name}(x-header)"))?;
            let (main, alt) = match arg.split_once('?') {
                Some((m, a)) => (m, Some(HeaderKey::new(a.to_ascii_lowercase()))),
                None => (arg, None),
            };
            Ok((HeaderKey::new(main.to_ascii_lowercase()), alt))
        };
        Ok(match name {
            "START_TIME" => {
                if let Some(format) = arg {
                    check_time_format(format)?;
                }
                Operator::StartTime(arg.map(str::to_owned))
            }
            "REQ" => {
                let (h, alt) = header(arg)?;
                Operator::Request(h, alt)
            }
            "RESP" => {
                let (h, alt) = header(arg)?;
                Operator::Response(h, alt)
            }
            "PROTOCOL" => no_arg(Operator::Protocol)?,
            "RESPONSE_CODE" => no_arg(Operator::ResponseCode)?,
            "RESPONSE_FLAGS" => no_arg(Operator::ResponseFlags)?,
            "RESPONSE_CODE_DETAILS" => no_arg(Operator::ResponseCodeDetails)?,
            "CONNECTION_TERMINATION_DETAILS" => no_arg(Operator::ConnectionTerminationDetails)?,
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => {
                no_arg(Operator::UpstreamTransportFailureReason)?
            }
            "BYTES_RECEIVED" => no_arg(Operator::BytesReceived)?,
            "BYTES_SENT" => no_arg(Operator::BytesSent)?,
            "DURATION" => no_arg(Operator::Duration)?,
            "UPSTREAM_HOST" => no_arg(Operator::UpstreamHost)?,
            "UPSTREAM_CLUSTER" => no_arg(Operator::UpstreamCluster)?,
            "UPSTREAM_CLUSTER_RAW" => no_arg(Operator::UpstreamClusterRaw)?,
            "UPSTREAM_LOCAL_ADDRESS" => no_arg(Operator::UpstreamLocalAddress)?,
            "DOWNSTREAM_LOCAL_ADDRESS" => no_arg(Operator::DownstreamLocalAddress)?,
            "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
                no_arg(Operator::DownstreamLocalAddressWithoutPort)?
            }
            // No PROXY protocol here: the direct peer is the remote.
            "DOWNSTREAM_REMOTE_ADDRESS" | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => {
                no_arg(Operator::DownstreamRemoteAddress)?
            }
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
            | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
                no_arg(Operator::DownstreamRemoteAddressWithoutPort)?
            }
            "REQUESTED_SERVER_NAME" => no_arg(Operator::RequestedServerName)?,
            "ROUTE_NAME" => no_arg(Operator::RouteName)?,
            "HOSTNAME" => no_arg(Operator::Hostname)?,
            _ => {
                return Err(format!(
                    "the command operator %{name}% is not supported by bosun proxy"
                ));
            }
        })
    }
}

/// Accepts the `START_TIME(...)` specifiers the proxy renders: `%Y %m %d %H %M %S %s %z %Z %%`
/// and fractional seconds `%f`, `%1f`…`%9f` (UTC).
fn check_time_format(format: &str) -> Result<(), String> {
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        let mut spec = chars.next();
        if spec.is_some_and(|d| ('1'..='9').contains(&d)) {
            spec = chars.next().filter(|f| *f == 'f').or(Some('?'));
        }
        match spec {
            Some('Y' | 'm' | 'd' | 'H' | 'M' | 'S' | 's' | 'z' | 'Z' | 'f' | '%') => {}
            other => {
                return Err(format!(
                    "START_TIME: the time specifier %{} is not supported by bosun proxy (it \
                     renders %Y %m %d %H %M %S %s %z %Z %f %1f-%9f and %%)",
                    other.map_or(String::new(), String::from)
                ));
            }
        }
    }
    Ok(())
}

/// Parses a text format string: literal text, `%%` for `%`, and `%COMMAND%`, `%COMMAND(arg)%`,
/// `%COMMAND(arg):LENGTH%` operators.
pub fn parse_text(format: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(at) = rest.find('%') {
        text.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('%') {
            text.push('%');
            rest = after;
            continue;
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if name.is_empty() {
            return Err(format!(
                "a `%` that starts no command operator at {:?} (write `%%` for a literal `%`)",
                excerpt(rest)
            ));
        }
        rest = &rest[name_len..];
        let mut arg = None;
        if let Some(after) = rest.strip_prefix('(') {
            let close = after
                .find(')')
                .ok_or_else(|| format!("%{name}(: the argument has no closing `)`"))?;
            arg = Some(&after[..close]);
            rest = &after[close + 1..];
        }
        let mut max_len = None;
        if let Some(after) = rest.strip_prefix(':') {
            let digits = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            let n = after[..digits]
                .parse()
                .map_err(|_| format!("%{name}: the length after `:` must be a number"))?;
            max_len = Some(n);
            rest = &after[digits..];
        }
        rest = rest
            .strip_prefix('%')
            .ok_or_else(|| format!("%{name}: the command operator has no closing `%`"))?;
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Op(Operator::parse(name, arg)?, max_len));
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn excerpt(s: &str) -> &str {
    let end = s.char_indices().nth(20).map_or(s.len(), |(i, _)| i);
    &s[..end]
}

/// A connection manager's or TCP proxy's `access_log` list.
pub fn access_logs(logs: &[AccessLogProto], at: &At) -> Result<Vec<AccessLog>, ModelError> {
    logs.iter()
        .enumerate()
        .map(|(i, l)| access_log(l, &at.index(i)))
        .collect()
}

fn access_log(log: &AccessLogProto, at: &At) -> Result<AccessLog, ModelError> {
    if log.filter.is_some() {
        return Err(at.key("filter").unsupported("an access log filter"));
    }
    let Some(access_log::ConfigType::TypedConfig(any)) = &log.config_type else {
        return Err(at
            .key("typed_config")
            .error("an access log needs a typed_config"));
    };
    let at = at.key("typed_config");
    let (sink, format) = if any.type_url == type_url::STDOUT_ACCESS_LOG {
        let l: StdoutAccessLog = unpack(any, &at)?;
        let format = l.access_log_format.map(|f| match f {
            stdout_access_log::AccessLogFormat::LogFormat(s) => s,
        });
        (
            Sink::Stdout,
            substitution(format.as_ref(), &at.key("log_format"))?,
        )
    } else if any.type_url == type_url::STDERR_ACCESS_LOG {
        let l: StderrAccessLog = unpack(any, &at)?;
        let format = l.access_log_format.map(|f| match f {
            stderr_access_log::AccessLogFormat::LogFormat(s) => s,
        });
        (
            Sink::Stderr,
            substitution(format.as_ref(), &at.key("log_format"))?,
        )
    } else if any.type_url == type_url::FILE_ACCESS_LOG {
        let l: FileAccessLog = unpack(any, &at)?;
        let sink = match l.path.as_str() {
            "" => return Err(at.key("path").error("a file access log needs a path")),
            "/dev/stdout" => Sink::Stdout,
            "/dev/stderr" => Sink::Stderr,
            path => Sink::File(path.to_owned()),
        };
        use file_access_log::AccessLogFormat as F;
        let format = match &l.access_log_format {
            None => text(DEFAULT_FORMAT, &at)?,
            Some(F::Format(f)) => text(f, &at.key("format"))?,
            Some(F::JsonFormat(s)) | Some(F::TypedJsonFormat(s)) => {
                json(s, &at.key("json_format"))?
            }
            Some(F::LogFormat(s)) => substitution(Some(s), &at.key("log_format"))?,
        };
        (sink, format)
    } else {
        return Err(at.unsupported(format!("the access logger {}", any.type_url)));
    };
    let (request_headers, response_headers) = headers_read(&format);
    Ok(AccessLog {
        sink,
        format,
        request_headers,
        response_headers,
    })
}

/// The request and the response headers `format` reads (`%REQ(...)%`, `%RESP(...)%`), each once.
fn headers_read(format: &LogFormat) -> (Vec<http::HeaderName>, Vec<http::HeaderName>) {
    let (mut request, mut response) = (Vec::new(), Vec::new());
    format.for_each_operator(&mut |op| {
        let (names, key, alt): (&mut Vec<http::HeaderName>, _, _) = match op {
            Operator::Request(key, alt) => (&mut request, key, alt),
            Operator::Response(key, alt) => (&mut response, key, alt),
            _ => return,
        };
        for name in std::iter::once(key)
            .chain(alt)
            .filter_map(|k| k.header.as_ref())
        {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    });
    (request, response)
}

fn text(format: &str, at: &At) -> Result<LogFormat, ModelError> {
    parse_text(format)
        .map(LogFormat::Text)
        .map_err(|e| at.error(e))
}

fn substitution(s: Option<&SubstitutionFormatString>, at: &At) -> Result<LogFormat, ModelError> {
    let Some(s) = s else {
        return text(DEFAULT_FORMAT, at);
    };
    at.refuse_set(&[
        (
            "omit_empty_values",
            s.omit_empty_values,
            "omit_empty_values",
        ),
        (
            "formatters",
            !s.formatters.is_empty(),
            "formatter extensions",
        ),
    ])?;
    use substitution_format_string::Format as F;
    match &s.format {
        None => text(DEFAULT_FORMAT, at),
        Some(F::TextFormat(f)) => text(f, &at.key("text_format")),
        Some(F::JsonFormat(j)) => json(j, &at.key("json_format")),
        Some(F::TextFormatSource(source)) => {
            let at = at.key("text_format_source");
            match &source.specifier {
                Some(data_source::Specifier::InlineString(f)) => text(f, &at.key("inline_string")),
                Some(data_source::Specifier::InlineBytes(b)) => {
                    let f = std::str::from_utf8(b)
                        .map_err(|_| at.key("inline_bytes").error("the format is not UTF-8"))?;
                    text(f, &at.key("inline_bytes"))
                }
                _ => Err(at.unsupported("a format read from a file or the environment")),
            }
        }
    }
}

fn json(s: &Struct, at: &At) -> Result<LogFormat, ModelError> {
    json_object(s, at).map(LogFormat::Json)
}

fn json_object(s: &Struct, at: &At) -> Result<BTreeMap<String, JsonField>, ModelError> {
    s.fields
        .iter()
        .map(|(k, v)| Ok((k.clone(), json_field(v, &at.key(k))?)))
        .collect()
}

fn json_field(v: &Value, at: &At) -> Result<JsonField, ModelError> {
    Ok(match &v.kind {
        Some(value::Kind::StringValue(s)) => {
            JsonField::Pieces(parse_text(s).map_err(|e| at.error(e))?)
        }
        Some(value::Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 1e15 => {
            JsonField::Literal(format!("{}", *n as i64))
        }
        Some(value::Kind::NumberValue(n)) => JsonField::Literal(n.to_string()),
        Some(value::Kind::BoolValue(b)) => JsonField::Literal(b.to_string()),
        Some(value::Kind::StructValue(s)) => JsonField::Object(json_object(s, at)?),
        Some(value::Kind::NullValue(_)) | None => JsonField::Literal("null".to_owned()),
        Some(value::Kind::ListValue(_)) => {
            return Err(at.error("a list is not a valid value of a JSON log format"));
        }
    })
}

impl LogFormat {
    /// Calls `f` with each operator of the format, in order (a JSON format's in key order).
    fn for_each_operator(&self, f: &mut impl FnMut(&Operator)) {
        fn pieces(pieces: &[Piece], f: &mut impl FnMut(&Operator)) {
            for piece in pieces {
                if let Piece::Op(op, _) = piece {
                    f(op);
                }
            }
        }
        fn object(fields: &BTreeMap<String, JsonField>, f: &mut impl FnMut(&Operator)) {
            for field in fields.values() {
                match field {
                    JsonField::Pieces(p) => pieces(p, f),
                    JsonField::Object(o) => object(o, f),
                    JsonField::Literal(_) => {}
                }
            }
        }
        match self {
            LogFormat::Text(p) => pieces(p, f),
            LogFormat::Json(o) => object(o, f),
        }
    }
}

/// What [`Fields::write`] appended for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Nothing: the value is not there (`-` in text, `null` in JSON).
    Missing,
    Text,
    /// Decimal digits, a JSON number when the operator stands alone.
    Number,
}

/// What a line is made from: each operator's value for the request or connection logged, appended
/// straight to the line (a line is rendered per request, so no value is built on its own).
pub trait Fields {
    fn write(&self, op: &Operator, out: &mut String) -> Written;
}

/// Appends `n` in decimal (a line has a dozen numbers, counting address octets and ports).
pub fn push_decimal(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

impl LogFormat {
    /// Appends the line for `fields` to `out`, newline-terminated for JSON (a text format ends as
    /// it says).
    pub fn render(&self, fields: &dyn Fields, out: &mut String) {
        match self {
            LogFormat::Text(pieces) => render_text(pieces, fields, out),
            LogFormat::Json(object) => {
                render_object(object, fields, out, &mut String::new());
                out.push('\n');
            }
        }
    }
}

fn render_text(pieces: &[Piece], fields: &dyn Fields, out: &mut String) {
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Op(op, max_len) => {
                let start = out.len();
                if fields.write(op, out) == Written::Missing {
                    out.push('-');
                }
                if let Some(n) = max_len {
                    truncate_chars(out, start, *n);
                }
            }
        }
    }
}

/// Keeps at most `n` characters of `out` after byte `start`.
fn truncate_chars(out: &mut String, start: usize, n: usize) {
    if let Some((cut, _)) = out[start..].char_indices().nth(n) {
        out.truncate(start + cut);
    }
}

/// `scratch` holds each value before it is escaped (one buffer for the whole line).
fn render_object(
    object: &BTreeMap<String, JsonField>,
    fields: &dyn Fields,
    out: &mut String,
    scratch: &mut String,
) {
    out.push('{');
    for (i, (key, field)) in object.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(key, out);
        out.push(':');
        match field {
            JsonField::Literal(l) => out.push_str(l),
            JsonField::Object(o) => render_object(o, fields, out, scratch),
            JsonField::Pieces(pieces) => {
                scratch.clear();
                match pieces.as_slice() {
                    [Piece::Op(op, max_len)] => match fields.write(op, scratch) {
                        Written::Missing => out.push_str("null"),
                        Written::Number if max_len.is_none() => out.push_str(scratch),
                        Written::Number | Written::Text => {
                            if let Some(n) = max_len {
                                truncate_chars(scratch, 0, *n);
                            }
                            json_string(scratch, out);
                        }
                    },
                    _ => {
                        render_text(pieces, fields, scratch);
                        json_string(scratch, out);
                    }
                }
            }
        }
    }
    out.push('}');
}

/// `s` as a JSON string.
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Sample;

    impl Fields for Sample {
        fn write(&self, op: &Operator, out: &mut String) -> Written {
            let text = match op {
                Operator::Request(h, alt) => {
                    match (h.name.as_str(), alt.as_ref().map(|a| a.name.as_str())) {
                        (":method", _) => "GET",
                        ("x-envoy-original-path", Some(":path")) => "/a?b",
                        ("user-agent", _) => "curl/8 \"q\"",
                        _ => return Written::Missing,
                    }
                }
                Operator::ResponseCode => {
                    push_decimal(out, 200);
                    return Written::Number;
                }
                Operator::Duration => {
                    push_decimal(out, 7);
                    return Written::Number;
                }
                Operator::UpstreamClusterRaw => "outbound|80||a.b",
                _ => return Written::Missing,
            };
            out.push_str(text);
            Written::Text
        }
    }

    fn rendered(format: &LogFormat) -> String {
        let mut line = String::new();
        format.render(&Sample, &mut line);
        line
    }

    #[test]
    fn text_formats_render_operators_lengths_and_percent_signs() {
        let pieces = parse_text(
            "%REQ(:METHOD):2% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% 100%% \
             %RESPONSE_CODE% %UPSTREAM_CLUSTER_RAW% %REQ(X-NONE)% %DURATION%ms\n",
        )
        .unwrap();
        let line = rendered(&LogFormat::Text(pieces));
        assert_eq!(line, "GE /a?b 100% 200 outbound|80||a.b - 7ms\n");
    }

    #[test]
    fn the_headers_a_format_reads_are_found_once() {
        let format = LogFormat::Text(
            parse_text(
                "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %REQ(USER-AGENT)% %REQ(user-agent)% \
                 %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% %RESP(A?B)% %RESPONSE_CODE%\n",
            )
            .unwrap(),
        );
        let (request, response) = headers_read(&format);
        let names = |v: Vec<http::HeaderName>| -> Vec<String> {
            v.iter().map(|n| n.as_str().to_owned()).collect()
        };
        // Pseudo-headers (`:path`) are not headers a request keeps.
        assert_eq!(names(request), ["x-envoy-original-path", "user-agent"]);
        assert_eq!(names(response), ["x-envoy-upstream-service-time", "a", "b"]);
    }

    #[test]
    fn json_formats_type_single_operators_and_sort_keys() {
        let mut s = Struct::default();
        let string = |v: &str| Value {
            kind: Some(value::Kind::StringValue(v.to_owned())),
        };
        s.fields.insert("zeta".into(), string("%RESPONSE_CODE%"));
        s.fields.insert("alpha".into(), string("%REQ(:METHOD)%"));
        s.fields
            .insert("mixed".into(), string("code %RESPONSE_CODE%"));
        s.fields.insert("missing".into(), string("%REQ(X-NONE)%"));
        s.fields.insert("agent".into(), string("%REQ(USER-AGENT)%"));
        // Cut to a length, a number is a string, as in Envoy.
        s.fields.insert("code".into(), string("%RESPONSE_CODE:1%"));
        s.fields.insert(
            "n".into(),
            Value {
                kind: Some(value::Kind::NumberValue(5.0)),
            },
        );
        let format = json(&s, &At::root("f")).unwrap();
        assert_eq!(
            rendered(&format),
            "{\"agent\":\"curl/8 \\\"q\\\"\",\"alpha\":\"GET\",\"code\":\"2\",\"missing\":null,\"mixed\":\"code 200\",\
             \"n\":5,\"zeta\":200}\n"
        );
    }

    #[test]
    fn decimals_and_cut_values_keep_whole_characters() {
        let mut out = String::new();
        for n in [0, 7, 10, 65_535, u64::MAX] {
            push_decimal(&mut out, n);
            out.push(' ');
        }
        assert_eq!(out, "0 7 10 65535 18446744073709551615 ");
        let mut s = "ab→cd".to_owned();
        truncate_chars(&mut s, 1, 2);
        assert_eq!(s, "ab→");
        truncate_chars(&mut s, 0, 9);
        assert_eq!(s, "ab→");
    }

    #[test]
    fn bad_format_strings_are_refused_with_the_reason() {
        assert_eq!(
            parse_text("%NOPE%").unwrap_err(),
            "the command operator %NOPE% is not supported by bosun proxy"
        );
        assert_eq!(
            parse_text("%REQ(:PATH%").unwrap_err(),
            "%REQ(: the argument has no closing `)`"
        );
        assert_eq!(
            parse_text("%DURATION").unwrap_err(),
            "%DURATION: the command operator has no closing `%`"
        );
        assert_eq!(
            parse_text("50% off").unwrap_err(),
            "a `%` that starts no command operator at \" off\" (write `%%` for a literal `%`)"
        );
        assert_eq!(
            parse_text("%REQ%").unwrap_err(),
            "REQ needs a header name: REQ(x-header)"
        );
        assert_eq!(
            parse_text("%DURATION(x)%").unwrap_err(),
            "DURATION takes no argument"
        );
    }

    #[test]
    fn the_default_format_parses() {
        let pieces = parse_text(DEFAULT_FORMAT).unwrap();
        assert_eq!(
            pieces.iter().filter(|p| matches!(p, Piece::Op(..))).count(),
            15
        );
    }
}
