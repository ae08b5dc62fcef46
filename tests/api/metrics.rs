//! `GET /metrics` on its own listener (`PORTCULLIS_METRICS_BIND`): Prometheus text that
//! parses, whose counters move by exactly the requests made, labelled by route template.

use std::net::SocketAddr;

use prometheus_parse::{Sample, Scrape, Value};
use reqwest::Method;

use crate::helpers::*;

const USERNAME: &str = "metered";
const PASSWORD: &str = "Metric-Pass-7391!";

async fn spawn_metered_app() -> TestApp {
    let app = spawn_app_configured(|settings| {
        settings.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    app.create_user(USERNAME, PASSWORD).await;
    app
}

/// The scrape's text and its parse.
async fn scrape(address: SocketAddr) -> (String, Scrape) {
    let response = reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    let parsed = Scrape::parse(text.lines().map(|line| Ok(shield_braces(line)))).unwrap();
    (text, parsed)
}

/// prometheus-parse 0.2 reads a sample's labels up to the first `}`, so it silently skips a
/// line whose label value holds one (`route="/users/me/items/{id}"`, valid exposition text).
/// Braces inside quoted values become `⟨` `⟩` for it; [`template`] spells routes the same way.
fn shield_braces(line: &str) -> String {
    let mut quoted = false;
    let mut escaped = false;
    line.chars()
        .map(|c| {
            let shielded = match c {
                '{' if quoted => '⟨',
                '}' if quoted => '⟩',
                other => other,
            };
            if quoted && c == '\\' && !escaped {
                escaped = true;
                return shielded;
            }
            if c == '"' && !escaped {
                quoted = !quoted;
            }
            escaped = false;
            shielded
        })
        .collect()
}

/// A route template as the shielded parse holds it.
fn template(route: &str) -> String {
    route.replace('{', "⟨").replace('}', "⟩")
}

fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape.samples.iter().find(|sample| {
        sample.metric == metric
            && labels
                .iter()
                .all(|(name, value)| sample.labels.get(name) == Some(*value))
    })
}

/// A counter's, gauge's or untyped sample's value; 0 when the series does not exist yet.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, metric, labels).map(|sample| &sample.value) {
        None => 0.0,
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(other) => panic!("{metric} is not a number: {other:?}"),
    }
}

/// How far a series moved between two scrapes.
fn moved(before: &Scrape, after: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    value(after, metric, labels) - value(before, metric, labels)
}

#[tokio::test]
async fn the_counters_move_by_exactly_the_requests_made_and_label_routes_by_template() {
    // Arrange
    let app = spawn_metered_app().await;
    let metrics = app.metrics_address.expect("a metrics listener");
    let (_, before) = scrape(metrics).await;

    // Act
    let first = app.login(USERNAME, PASSWORD).await;
    let second = app.login(USERNAME, PASSWORD).await;
    let wrong = app
        .post_login(Login::new(USERNAME, "not-the-password-1"))
        .await;
    assert_eq!(wrong.status, 401);
    for _ in 0..3 {
        assert_eq!(app.get_me(&first.access_token).await.status, 200);
    }
    let item = "0190f5a2-1111-7222-8333-944445555666";
    assert_eq!(app.delete_item(&first.access_token, item).await.status, 404);
    let unknown = send(app.request(Method::GET, "/nowhere/123456789")).await;
    assert_eq!(unknown.status, 404);
    let (text, after) = scrape(metrics).await;

    // Assert: requests by method, route template and status.
    let requests = "portcullis_http_requests_total";
    for (method, route, status, count) in [
        ("POST", "/token", "200", 2.0),
        ("POST", "/token", "401", 1.0),
        ("GET", "/users/me", "200", 3.0),
        ("DELETE", "/users/me/items/{id}", "404", 1.0),
        ("GET", "unmatched", "404", 1.0),
    ] {
        let route = template(route);
        let labels = [
            ("method", method),
            ("route", route.as_str()),
            ("status", status),
        ];
        assert_eq!(
            moved(&before, &after, requests, &labels),
            count,
            "{labels:?}\n{text}"
        );
    }
    // Every line of the counter was parsed (none skipped by the parser).
    assert_eq!(
        after
            .samples
            .iter()
            .filter(|s| s.metric == requests)
            .count(),
        text.lines()
            .filter(|line| line.starts_with(&format!("{requests}{{")))
            .count()
    );
    let http_total: f64 = after
        .samples
        .iter()
        .filter(|s| s.metric == requests)
        .map(|s| match s.value {
            Value::Counter(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum::<f64>()
        - before
            .samples
            .iter()
            .filter(|s| s.metric == requests)
            .map(|s| match s.value {
                Value::Counter(v) | Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum::<f64>();
    assert_eq!(http_total, 8.0, "no other request was counted\n{text}");

    // Every route label is a template or `unmatched`: no raw path, no id.
    for sample in &after.samples {
        if let Some(route) = sample.labels.get("route") {
            assert!(
                route == "unmatched" || !route.chars().any(|c| c.is_ascii_digit()),
                "raw path as a label: {route}"
            );
            assert!(!route.contains("nowhere"), "{route}");
        }
    }

    // The duration histogram has buckets, a count and a sum.
    let duration = "portcullis_http_request_duration_seconds";
    let me = [("method", "GET"), ("route", "/users/me")];
    let buckets = find(&after, duration, &me).expect("a histogram for GET /users/me");
    let Value::Histogram(buckets) = &buckets.value else {
        panic!("not a histogram: {buckets:?}");
    };
    assert!(buckets.len() > 5);
    assert!(
        buckets
            .iter()
            .any(|b| b.less_than.is_infinite() && b.count == 3.0)
    );
    assert_eq!(value(&after, &format!("{duration}_count"), &me), 3.0);
    assert!(value(&after, &format!("{duration}_sum"), &me) > 0.0);

    // Logins by outcome; every outcome is there from the start.
    let logins = "portcullis_logins_total";
    for (outcome, count) in [
        ("success", 2.0),
        ("invalid_credentials", 1.0),
        ("inactive", 0.0),
        ("throttled", 0.0),
        ("busy", 0.0),
    ] {
        let labels = [("outcome", outcome)];
        assert!(
            find(&before, logins, &labels).is_some(),
            "{outcome} at start"
        );
        assert_eq!(moved(&before, &after, logins, &labels), count, "{outcome}");
    }
    for outcome in ["success", "invalid", "reuse_detected", "inactive"] {
        let labels = [("outcome", outcome)];
        assert!(find(&before, "portcullis_refresh_total", &labels).is_some());
        assert_eq!(value(&after, "portcullis_refresh_total", &labels), 0.0);
    }
    for kind in ["unavailable", "query"] {
        let labels = [("kind", kind)];
        assert!(find(&before, "portcullis_database_errors_total", &labels).is_some());
        assert_eq!(
            moved(&before, &after, "portcullis_database_errors_total", &labels),
            0.0
        );
    }

    // Three password checks, and nothing left waiting.
    let hashes = "portcullis_password_hash_duration_seconds";
    assert_eq!(moved(&before, &after, &format!("{hashes}_count"), &[]), 3.0);
    assert!(matches!(
        find(&after, hashes, &[]).map(|s| &s.value),
        Some(Value::Histogram(b)) if !b.is_empty()
    ));
    assert_eq!(value(&after, "portcullis_hash_queue_depth", &[]), 0.0);

    assert_eq!(
        value(
            &after,
            "portcullis_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // No secret in any name, label or value.
    for secret in [
        PASSWORD,
        "not-the-password-1",
        first.access_token.as_str(),
        first.refresh_token.as_str(),
        second.access_token.as_str(),
        second.refresh_token.as_str(),
    ] {
        assert!(!text.contains(secret), "a secret in the scrape");
    }
}

#[tokio::test]
async fn the_api_listener_never_serves_metrics() {
    let app = spawn_metered_app().await;
    let unknown = send(app.request(Method::GET, "/no-such-path")).await;

    let answer = send(app.request(Method::GET, "/metrics")).await;

    assert_eq!(answer.status, 404);
    assert_eq!(answer.body, unknown.body);
    assert!(!answer.text.contains("portcullis_"));
}

#[tokio::test]
async fn without_a_metrics_bind_there_is_no_metrics_listener() {
    let app = spawn_app().await;

    assert_eq!(app.metrics_address, None);
    assert_eq!(send(app.request(Method::GET, "/metrics")).await.status, 404);
}

#[tokio::test]
async fn the_metrics_listener_serves_nothing_but_metrics() {
    let app = spawn_metered_app().await;
    let metrics = app.metrics_address.unwrap();

    let other = reqwest::get(format!("http://{metrics}/users/me"))
        .await
        .unwrap();

    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn every_login_and_refresh_outcome_is_counted() {
    // Arrange: a throttle after 2 failures, a disabled account.
    let app = spawn_app_configured(|settings| {
        settings.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
        settings.throttle.enabled = true;
        settings.throttle.max_failures_per_account = 2;
    })
    .await;
    app.create_user(USERNAME, PASSWORD).await;
    app.create_disabled_user("dormant", PASSWORD).await;
    let metrics = app.metrics_address.unwrap();
    let tokens = app.login(USERNAME, PASSWORD).await;
    let (_, before) = scrape(metrics).await;

    // Act
    assert_eq!(
        app.post_login(Login::new("dormant", PASSWORD)).await.status,
        400
    );
    for _ in 0..2 {
        let wrong = app
            .post_login(Login::new(USERNAME, "wrong-password-9"))
            .await;
        assert_eq!(wrong.status, 401);
    }
    let blocked = app.post_login(Login::new(USERNAME, PASSWORD)).await;
    assert_eq!(blocked.status, 429);
    let refreshed = app.post_refresh(&tokens.refresh_token, None).await;
    assert_eq!(refreshed.status, 200);
    assert_eq!(
        app.post_refresh("not-a-refresh-token", None).await.status,
        400
    );
    // Within the reuse grace (5 s here) a spent token is exchanged again: a success.
    let again = app.post_refresh(&tokens.refresh_token, None).await;
    assert_eq!(again.status, 200);
    let (text, after) = scrape(metrics).await;

    // Assert
    let logins = "portcullis_logins_total";
    for (outcome, count) in [
        ("success", 0.0),
        ("invalid_credentials", 2.0),
        ("inactive", 1.0),
        ("throttled", 1.0),
        ("busy", 0.0),
    ] {
        let labels = [("outcome", outcome)];
        assert_eq!(
            moved(&before, &after, logins, &labels),
            count,
            "{outcome}\n{text}"
        );
    }
    let refreshes = "portcullis_refresh_total";
    for (outcome, count) in [
        ("success", 2.0),
        ("invalid", 1.0),
        ("reuse_detected", 0.0),
        ("inactive", 0.0),
    ] {
        let labels = [("outcome", outcome)];
        assert_eq!(
            moved(&before, &after, refreshes, &labels),
            count,
            "{outcome}\n{text}"
        );
    }
}

#[tokio::test]
async fn a_reused_refresh_token_is_counted_as_reuse() {
    let app = spawn_app_configured(|settings| {
        settings.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
        settings.sessions.reuse_grace = chrono::Duration::zero();
    })
    .await;
    app.create_user(USERNAME, PASSWORD).await;
    let tokens = app.login(USERNAME, PASSWORD).await;
    assert_eq!(
        app.post_refresh(&tokens.refresh_token, None).await.status,
        200
    );

    assert_eq!(
        app.post_refresh(&tokens.refresh_token, None).await.status,
        400
    );

    let (_, after) = scrape(app.metrics_address.unwrap()).await;
    let refreshes = "portcullis_refresh_total";
    assert_eq!(value(&after, refreshes, &[("outcome", "success")]), 1.0);
    assert_eq!(
        value(&after, refreshes, &[("outcome", "reuse_detected")]),
        1.0
    );
    assert_eq!(value(&after, refreshes, &[("outcome", "invalid")]), 0.0);
}

#[tokio::test]
async fn an_unreachable_database_is_counted() {
    let app = spawn_metered_app().await;
    let metrics = app.metrics_address.unwrap();
    let (_, before) = scrape(metrics).await;

    app.store.connection().clone().close().await.unwrap();
    let ready = send(app.request(Method::GET, "/ready")).await;

    assert_eq!(ready.status, 503);
    let (text, after) = scrape(metrics).await;
    let errors = "portcullis_database_errors_total";
    // At least the readiness check's; the housekeeping run at start, when a loaded machine
    // delays it past the close, meets the closed database too and counts as well.
    let unavailable = moved(&before, &after, errors, &[("kind", "unavailable")]);
    assert!((1.0..=3.0).contains(&unavailable), "{unavailable}\n{text}");
    assert_eq!(moved(&before, &after, errors, &[("kind", "query")]), 0.0);
}

#[tokio::test]
async fn requests_with_an_api_key_are_counted_by_route_only_never_by_key() {
    let app = spawn_metered_app().await;
    let metrics = app.metrics_address.unwrap();
    let token = app.login(USERNAME, PASSWORD).await.access_token;
    let (id, key) = app
        .api_key(&token, serde_json::json!({ "name": "metered" }))
        .await;
    let (_, before) = scrape(metrics).await;

    for _ in 0..2 {
        assert_eq!(app.get_me(&key).await.status, 200);
    }
    assert_eq!(app.delete_api_key(&key, &id).await.status, 204);
    assert_eq!(app.get_me(&key).await.status, 401);
    let (text, after) = scrape(metrics).await;

    let requests = "portcullis_http_requests_total";
    for (method, route, status, count) in [
        ("GET", "/users/me", "200", 2.0),
        ("DELETE", "/users/me/api-keys/{id}", "204", 1.0),
        ("GET", "/users/me", "401", 1.0),
    ] {
        let route = template(route);
        let labels = [
            ("method", method),
            ("route", route.as_str()),
            ("status", status),
        ];
        assert_eq!(
            moved(&before, &after, requests, &labels),
            count,
            "{method} {route} {status}"
        );
    }
    let user_id = app.get_me(&token).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for secret in [&key[4..40], &key[40..], id.as_str(), user_id.as_str()] {
        assert!(!text.contains(secret), "the scrape holds {secret:?}");
    }
}
