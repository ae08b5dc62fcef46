//! Logging: `tracing` to standard error, as text or JSON, and one line per request.
//!
//! Never logged: passwords, tokens, hashes, request bodies, query strings, or the
//! `Authorization` header.

use std::time::Instant;

use poem::{Endpoint, IntoResponse as _, Request, Response};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

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
        .finish(std::io::stderr());
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry.with(fmt::layer().with_writer(writer)).try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(writer))
            .try_init(),
    };
    result.map_err(|err| anyhow::anyhow!("cannot install the logger: {err}"))?;
    Ok(guard)
}

/// Logs method, path, status and latency of every request, in one line.
pub async fn log_request<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let response = match next.call(req).await {
        Ok(response) => response.into_response(),
        Err(err) => err.into_response(),
    };
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(target: "portcullis::http", %method, path, status, latency_ms = format_args!("{latency_ms:.2}"), "request");
    Ok(response)
}
