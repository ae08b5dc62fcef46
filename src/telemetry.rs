//! Logging: `tracing` to standard error, as text or JSON, and one line per request.
//!
//! Never logged: passwords, tokens, hashes, request bodies, query strings, or the
//! `Authorization` header.
//!
//! Every request is served inside a `request` span carrying `request_id` (the caller's
//! `X-Request-Id` when it is acceptable, else a new UUIDv7; every response carries it back),
//! `trace_id` (from a valid W3C `traceparent`), and `user_id` and `session_id`, recorded once
//! the access check or a login knows them (see [`record_caller`]). Every line logged while
//! serving the request carries them: in text after the span's name; in JSON as top-level
//! members of the line (`"request_id": …`), as well as in the `span` (and `spans`) member.

use std::time::Instant;

use poem::{
    Endpoint, IntoResponse as _, Request, Response,
    http::{HeaderMap, HeaderName, HeaderValue},
};
use tracing::{Instrument as _, field::Empty};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::{config::LogFormat, metrics::Metrics};

/// Lines waiting for the writer thread, at most. The queue is a ring of this many 32-byte slots,
/// each written when the queue is made, so all of it is resident from the start:
/// tracing-appender's default (128,000) was 4 MiB of the RSS at ready. The writer keeps up with
/// far more lines a second than the server can answer requests (one line each); the queue only
/// absorbs a stall of standard error, and when it is full, logging waits rather than drops.
const BUFFERED_LINES: usize = 8_192;

/// Installs the global subscriber. `filter` uses `tracing`'s syntax (e.g. `info,sqlx=warn`).
///
/// Lines are written by a background thread, so that a request never waits for a write to
/// standard error; the writer blocks rather than drops when it falls behind (no line is
/// lost), and the returned guard flushes what is left when it is dropped: keep it until exit.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<WorkerGuard> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|err| anyhow::anyhow!("PORTCULLIS_LOG is not a valid filter: {err}"))?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(BUFFERED_LINES)
        .finish(std::io::stderr());
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry.with(fmt::layer().with_writer(writer)).try_init(),
        // The request's ids are fields of its span: `span` is the innermost span's, `spans`
        // every open one's, outermost first (tests/cli.rs reads them from `span`).
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .map_event_format(|json| FlatRequestFields { json })
                    .with_writer(writer),
            )
            .try_init(),
    };
    result.map_err(|err| anyhow::anyhow!("cannot install the logger: {err}"))?;
    Ok(guard)
}

/// The fields of the request span a JSON line also carries at its top level, so that a log
/// pipeline can index them without reaching into `span`.
const REQUEST_FIELDS: [&str; 4] = ["request_id", "trace_id", "user_id", "session_id"];

/// tracing-subscriber's JSON lines, with the request span's ids copied to the top level of
/// each line (tracing-subscriber only nests span fields under `span` and `spans`).
struct FlatRequestFields<F> {
    json: F,
}

impl<S, N, F> fmt::FormatEvent<S, N> for FlatRequestFields<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> fmt::FormatFields<'a> + 'static,
    F: fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &fmt::FmtContext<'_, S, N>,
        mut writer: fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.json
            .format_event(ctx, fmt::format::Writer::new(&mut line), event)?;
        let Ok(serde_json::Value::Object(mut members)) = serde_json::from_str(line.trim_end())
        else {
            // Not an object (cannot happen with the JSON format): written as it came.
            return writer.write_str(&line);
        };
        // Outermost first: an inner span's value of a field wins over an outer one's.
        let spans = members
            .get("spans")
            .and_then(|spans| spans.as_array())
            .cloned();
        for span in spans.iter().flatten() {
            for name in REQUEST_FIELDS {
                if let Some(value) = span.get(name) {
                    members.insert(name.to_owned(), value.clone());
                }
            }
        }
        let flat = serde_json::Value::Object(members).to_string();
        writer.write_str(&flat)?;
        writer.write_char('\n')
    }
}

/// The header naming a request, in requests and in every response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest caller-chosen request id that is echoed.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The request's id: the caller's `X-Request-Id` when there is exactly one and it is 1–128
/// visible ASCII characters, else a new UUIDv7. Anything else is replaced, never echoed: it
/// would go into log lines and other systems' headers.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(X_REQUEST_ID).iter();
    if let (Some(value), None) = (values.next(), values.next()) {
        let bytes = value.as_bytes();
        if (1..=MAX_REQUEST_ID_LEN).contains(&bytes.len())
            && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
        {
            return value.clone();
        }
    }
    HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).expect("a UUID is header-safe")
}

/// The trace id of a valid W3C `traceparent` (version `00`:
/// `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`, lowercase, ids not all zeros).
pub fn trace_id(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all("traceparent").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let value = value.to_str().ok()?;
    let mut parts = value.split('-');
    let (Some("00"), Some(trace), Some(parent), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let lower_hex = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let all_zeros = |part: &str| part.bytes().all(|b| b == b'0');
    (lower_hex(trace, 32)
        && lower_hex(parent, 16)
        && lower_hex(flags, 2)
        && !all_zeros(trace)
        && !all_zeros(parent))
    .then_some(trace)
}

/// The request's id (as answered in `X-Request-Id`), in the request's extensions for the
/// handlers (the audit log records it).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Records who is calling into the current request's span: ids only, never names or tokens.
pub fn record_caller(user_id: uuid::Uuid, session_id: Option<uuid::Uuid>) {
    let span = tracing::Span::current();
    span.record("user_id", tracing::field::display(user_id));
    if let Some(session_id) = session_id {
        span.record("session_id", tracing::field::display(session_id));
    }
}

/// Serves every request in its `request` span, gives every response its `X-Request-Id`, and
/// logs method, path, status and latency of every request, in one line.
///
/// It also counts the request in `metrics` (by route template, never by raw path), and makes
/// `metrics` the current ones while the request is served (see [`crate::metrics::scope`]).
pub async fn log_request<E: Endpoint>(
    next: E,
    mut req: Request,
    metrics: Metrics,
) -> poem::Result<Response> {
    let id = request_id(req.headers());
    req.extensions_mut()
        .insert(RequestId(id.to_str().unwrap_or_default().to_owned()));
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        user_id = Empty,
        session_id = Empty,
        trace_id = Empty,
    );
    if let Some(trace_id) = trace_id(req.headers()) {
        span.record("trace_id", trace_id);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let current = metrics.clone();
    let serving = async move {
        let started = Instant::now();
        let mut response = match next.call(req).await {
            Ok(response) => response.into_response(),
            Err(err) => err.into_response(),
        };
        response.headers_mut().insert(X_REQUEST_ID, id);
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        metrics.record_request(method.as_str(), &path, status, elapsed);
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        tracing::info!(target: "portcullis::http", %method, path, status, latency_ms = format_args!("{latency_ms:.2}"), "request");
        Ok(response)
    }
    .instrument(span);
    current.scope(serving).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn acceptable_request_ids_are_kept_and_others_replaced() {
        let long = "x".repeat(128);
        for id in ["a", "abc-123_XYZ!~", long.as_str()] {
            assert_eq!(request_id(&headers(&[("x-request-id", id.as_bytes())])), id);
        }
        let too_long = "x".repeat(129);
        for id in [
            b"".as_slice(),
            b"a b",
            too_long.as_bytes(),
            b"caf\xc3\xa9",
            b"a\tb",
        ] {
            let replaced = request_id(&headers(&[("x-request-id", id)]));
            assert_ne!(replaced.as_bytes(), id);
            assert!(uuid::Uuid::parse_str(replaced.to_str().unwrap()).is_ok());
        }
        let twice = headers(&[("x-request-id", b"a"), ("x-request-id", b"b")]);
        assert!(uuid::Uuid::parse_str(request_id(&twice).to_str().unwrap()).is_ok());
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn only_a_valid_traceparent_gives_a_trace_id() {
        let valid = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(&headers(&[("traceparent", valid)])),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for invalid in [
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".as_slice(),
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            b"",
        ] {
            assert_eq!(trace_id(&headers(&[("traceparent", invalid)])), None);
        }
    }
}
