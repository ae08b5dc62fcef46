//! Prometheus metrics, served at `GET /metrics` on a listener of its own
//! (`PORTCULLIS_METRICS_BIND`; the API listener never serves them).
//!
//! Built on `metrics` + `metrics-exporter-prometheus`, with a recorder per [`Metrics`] rather
//! than the process-wide one: two applications in one process (the tests) count apart.
//!
//! Recording takes no lock shared by all requests: every handle is registered once (the
//! outcome counters at start, so that they are scraped at 0; an HTTP route's handles the first
//! time the route and method, or status, is seen) and then used through atomics. Histograms
//! append to lock-free buckets that a scrape (and the upkeep task) drains.
//!
//! Labels are bounded: `route` is the template of a documented path (`/admin/users/{id}`), or
//! `unmatched`; `method` is one of the nine standard methods or `other`; `status` is a
//! three-digit code. Nothing a caller sends becomes a label value.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder as _};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// How often histograms are drained and descriptions committed between scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

const HTTP_REQUESTS: &str = "portcullis_http_requests_total";
const HTTP_DURATION: &str = "portcullis_http_request_duration_seconds";
const LOGINS: &str = "portcullis_logins_total";
const REFRESHES: &str = "portcullis_refresh_total";
const HASH_DURATION: &str = "portcullis_password_hash_duration_seconds";
const HASH_QUEUE: &str = "portcullis_hash_queue_depth";
const DATABASE_ERRORS: &str = "portcullis_database_errors_total";
const BUILD_INFO: &str = "portcullis_build_info";
const AUDIT_DROPPED: &str = "portcullis_audit_events_dropped_total";

/// The label value of a path that is no route of the service.
pub const UNMATCHED: &str = "unmatched";

const HTTP_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const HASH_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
];

const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "other",
];
/// More `/`-separated segments than any route of the service has: such a path is unmatched.
const MAX_SEGMENTS: usize = 16;
/// Status codes 100–599 have a counter each; anything else counts as 599.
const STATUSES: usize = 500;

/// How a password grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Success,
    InvalidCredentials,
    Inactive,
    Throttled,
    Busy,
}

impl LoginOutcome {
    const ALL: [Self; 5] = [
        Self::Success,
        Self::InvalidCredentials,
        Self::Inactive,
        Self::Throttled,
        Self::Busy,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Inactive => "inactive",
            Self::Throttled => "throttled",
            Self::Busy => "busy",
        }
    }
}

/// How a refresh grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    Success,
    Invalid,
    ReuseDetected,
    Inactive,
}

impl RefreshOutcome {
    const ALL: [Self; 4] = [
        Self::Success,
        Self::Invalid,
        Self::ReuseDetected,
        Self::Inactive,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Invalid => "invalid",
            Self::ReuseDetected => "reuse_detected",
            Self::Inactive => "inactive",
        }
    }
}

/// Which database failure (see `db::StoreError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseErrorKind {
    Unavailable,
    Query,
}

/// The grants' counters; no-ops unless taken from a [`Metrics`].
#[derive(Clone)]
pub struct GrantMetrics {
    logins: [Counter; 5],
    refreshes: [Counter; 4],
}

impl Default for GrantMetrics {
    fn default() -> Self {
        Self {
            logins: std::array::from_fn(|_| Counter::noop()),
            refreshes: std::array::from_fn(|_| Counter::noop()),
        }
    }
}

impl GrantMetrics {
    pub fn login(&self, outcome: LoginOutcome) {
        self.logins[outcome as usize].increment(1);
    }

    pub fn refresh(&self, outcome: RefreshOutcome) {
        self.refreshes[outcome as usize].increment(1);
    }
}

/// The hashing pool's metrics; no-ops unless taken from a [`Metrics`].
#[derive(Clone)]
pub struct HashMetrics {
    pub duration: Histogram,
    pub queue_depth: Gauge,
}

impl Default for HashMetrics {
    fn default() -> Self {
        Self {
            duration: Histogram::noop(),
            queue_depth: Gauge::noop(),
        }
    }
}

/// One route and method's handles, registered when first seen.
struct RouteMetrics {
    duration: Histogram,
    statuses: Box<[OnceLock<Counter>]>,
}

/// A documented path, split into segments; `None` is a parameter (`{id}`).
struct Template {
    name: String,
    segments: Vec<Option<String>>,
}

/// Every metric of one application; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    templates: Vec<Template>,
    /// `(route, method)` → its handles; route `templates.len()` is `unmatched`.
    http: Box<[OnceLock<RouteMetrics>]>,
    grants: GrantMetrics,
    hashing: HashMetrics,
    database_errors: [Counter; 2],
    audit_dropped: Counter,
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()))
}

impl Metrics {
    /// A recorder for the service whose routes are `templates` (OpenAPI paths such as
    /// `/admin/users/{id}`, and the few plain routes).
    pub fn new<S: AsRef<str>>(templates: &[S]) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &HTTP_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(HASH_DURATION.into()), &HASH_BUCKETS)
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, text: &'static str| {
            recorder.describe_counter(KeyName::from_const_str(name), None, text.into());
        };
        describe(
            HTTP_REQUESTS,
            "HTTP requests answered, by method, route template and status.",
        );
        recorder.describe_histogram(
            KeyName::from_const_str(HTTP_DURATION),
            Some(metrics::Unit::Seconds),
            "Time to answer an HTTP request, by method and route template.".into(),
        );
        describe(LOGINS, "Password grants, by outcome.");
        describe(REFRESHES, "Refresh grants, by outcome.");
        recorder.describe_histogram(
            KeyName::from_const_str(HASH_DURATION),
            Some(metrics::Unit::Seconds),
            "Time of each Argon2 hash or verification.".into(),
        );
        recorder.describe_gauge(
            KeyName::from_const_str(HASH_QUEUE),
            None,
            "Password hashes waiting for a hashing worker.".into(),
        );
        describe(DATABASE_ERRORS, "Database errors, by kind.");
        describe(
            AUDIT_DROPPED,
            "Login and refresh audit events dropped: the audit log writer's queue was full, or \
             the database refused them twice.",
        );
        recorder.describe_gauge(
            KeyName::from_const_str(BUILD_INFO),
            None,
            "Always 1; the version of the running build.".into(),
        );

        let labelled = |name: &'static str, label: &'static str, value: &'static str| {
            let key = Key::from_parts(name, vec![Label::new(label, value)]);
            let counter = recorder.register_counter(&key, &metadata());
            // Registered at 0, so that the series exists from the first scrape.
            counter.increment(0);
            counter
        };
        let grants = GrantMetrics {
            logins: LoginOutcome::ALL.map(|o| labelled(LOGINS, "outcome", o.label())),
            refreshes: RefreshOutcome::ALL.map(|o| labelled(REFRESHES, "outcome", o.label())),
        };
        let database_errors = [
            labelled(DATABASE_ERRORS, "kind", "unavailable"),
            labelled(DATABASE_ERRORS, "kind", "query"),
        ];
        let hashing = HashMetrics {
            duration: recorder
                .register_histogram(&Key::from_static_name(HASH_DURATION), &metadata()),
            queue_depth: recorder.register_gauge(&Key::from_static_name(HASH_QUEUE), &metadata()),
        };
        hashing.queue_depth.set(0.0);
        let audit_dropped =
            recorder.register_counter(&Key::from_static_name(AUDIT_DROPPED), &metadata());
        audit_dropped.increment(0);
        recorder
            .register_gauge(
                &Key::from_parts(
                    BUILD_INFO,
                    vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
                ),
                &metadata(),
            )
            .set(1.0);

        let templates: Vec<Template> = templates
            .iter()
            .map(|t| Template {
                name: t.as_ref().to_owned(),
                segments: t
                    .as_ref()
                    .split('/')
                    .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_owned()))
                    .collect(),
            })
            .collect();
        assert!(
            templates.iter().all(|t| t.segments.len() <= MAX_SEGMENTS),
            "a route has more than {MAX_SEGMENTS} segments"
        );
        let http = (0..(templates.len() + 1) * METHODS.len())
            .map(|_| OnceLock::new())
            .collect();
        Self {
            inner: Arc::new(Inner {
                recorder,
                handle,
                templates,
                http,
                grants,
                hashing,
                database_errors,
                audit_dropped,
            }),
        }
    }

    pub fn grants(&self) -> GrantMetrics {
        self.inner.grants.clone()
    }

    pub fn hashing(&self) -> HashMetrics {
        self.inner.hashing.clone()
    }

    /// Counts the audit events the background writer drops.
    pub fn audit_dropped(&self) -> Counter {
        self.inner.audit_dropped.clone()
    }

    pub fn database_error(&self, kind: DatabaseErrorKind) {
        self.inner.database_errors[kind as usize].increment(1);
    }

    /// The route template `path` matches (literal segments preferred), or [`UNMATCHED`].
    pub fn route_of(&self, path: &str) -> &str {
        let index = self.route_index(path);
        self.inner
            .templates
            .get(index)
            .map_or(UNMATCHED, |t| t.name.as_str())
    }

    fn route_index(&self, path: &str) -> usize {
        let templates = &self.inner.templates;
        // Split once; paths of more segments than any route are unmatched without a look.
        let mut segments = [""; MAX_SEGMENTS];
        let mut count = 0;
        for segment in path.split('/') {
            if count == MAX_SEGMENTS {
                return templates.len();
            }
            segments[count] = segment;
            count += 1;
        }
        let segments = &segments[..count];
        let mut best: Option<(usize, usize)> = None;
        for (index, template) in templates.iter().enumerate() {
            if template.segments.len() != segments.len() {
                continue;
            }
            let mut literals = 0;
            let matched = template
                .segments
                .iter()
                .zip(segments)
                .all(|(expected, actual)| match expected {
                    Some(literal) if literal == actual => {
                        literals += 1;
                        true
                    }
                    Some(_) => false,
                    None => !actual.is_empty(),
                });
            if matched && best.is_none_or(|(_, most)| literals > most) {
                best = Some((index, literals));
            }
        }
        best.map_or(templates.len(), |(index, _)| index)
    }

    /// Counts one answered request and its duration.
    pub fn record_request(&self, method: &str, path: &str, status: u16, elapsed: Duration) {
        let route = self.route_index(path);
        let method = METHODS[..METHODS.len() - 1]
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len() - 1);
        let slot = &self.inner.http[route * METHODS.len() + method];
        let route_name = || -> String {
            self.inner
                .templates
                .get(route)
                .map_or(UNMATCHED.to_owned(), |t| t.name.clone())
        };
        let handles = slot.get_or_init(|| RouteMetrics {
            duration: self.inner.recorder.register_histogram(
                &Key::from_parts(
                    HTTP_DURATION,
                    vec![
                        Label::new("method", METHODS[method]),
                        Label::new("route", route_name()),
                    ],
                ),
                &metadata(),
            ),
            statuses: (0..STATUSES).map(|_| OnceLock::new()).collect(),
        });
        handles.duration.record(elapsed.as_secs_f64());
        let status = usize::from(status).clamp(100, 100 + STATUSES - 1);
        handles.statuses[status - 100]
            .get_or_init(|| {
                self.inner.recorder.register_counter(
                    &Key::from_parts(
                        HTTP_REQUESTS,
                        vec![
                            Label::new("method", METHODS[method]),
                            Label::new("route", route_name()),
                            Label::new("status", status.to_string()),
                        ],
                    ),
                    &metadata(),
                )
            })
            .increment(1);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.inner.handle.run_upkeep();
        self.inner.handle.render()
    }

    /// Drains histograms between scrapes, so that their buffers stay small.
    pub async fn upkeep(self) {
        let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            self.inner.handle.run_upkeep();
        }
    }

    /// Runs `future` with this application's metrics as the current ones, for code that has
    /// no handle of its own (the database layer's error counts).
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}

tokio::task_local! {
    static CURRENT: Metrics;
}

/// Counts a database error against the current task's metrics, if any.
pub fn database_error(kind: DatabaseErrorKind) {
    let _ = CURRENT.try_with(|metrics| metrics.database_error(kind));
}

/// The metrics listener's endpoint: `GET /metrics`, nothing else.
pub fn endpoint(metrics: Metrics) -> impl poem::Endpoint<Output = poem::Response> {
    use poem::{EndpointExt as _, IntoEndpoint as _};
    poem::Route::new()
        .at(
            "/metrics",
            poem::get(poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("text/plain; version=0.0.4; charset=utf-8")
                    .body(metrics.render())
            })),
        )
        .into_endpoint()
        .map_to_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_their_templates_and_nothing_else_makes_a_label() {
        let metrics = Metrics::new(&[
            "/users/me",
            "/users/me/items/{id}",
            "/admin/users/{id}",
            "/admin/users/{id}/sessions",
            "/",
        ]);
        assert_eq!(metrics.route_of("/users/me"), "/users/me");
        assert_eq!(metrics.route_of("/admin/users/42"), "/admin/users/{id}");
        assert_eq!(
            metrics.route_of("/admin/users/42/sessions"),
            "/admin/users/{id}/sessions"
        );
        assert_eq!(metrics.route_of("/"), "/");
        for path in [
            "/admin/users/",
            "/users/me/",
            "/nope/123",
            "/users/me/items/1/x",
            "",
        ] {
            assert_eq!(metrics.route_of(path), UNMATCHED, "{path}");
        }
    }
}
