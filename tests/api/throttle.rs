//! Login throttling and the bounded hashing queue, as clients see them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const THROTTLED: &str = "Too many login attempts, retry later";

/// A server that throttles after 3 failures per account and address, 6 per address, and
/// trusts `X-Forwarded-For` for the client address (so tests can play several clients).
async fn throttled_app() -> TestApp {
    let (url, dir) = fresh_database().await;
    let mut settings = test_settings(url);
    settings.throttle.enabled = true;
    settings.throttle.max_failures_per_account = 3;
    settings.throttle.max_failures_per_address = 6;
    settings.client_ip_header = Some("x-forwarded-for".parse().unwrap());
    spawn_app_with(settings, dir).await
}

async fn login_from(
    app: &TestApp,
    client: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let body =
        serde_urlencoded::to_string([("username", username), ("password", password)]).unwrap();
    app.client
        .post(app.url("/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Forwarded-For", format!("203.0.113.250, {client}"))
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn assert_throttled(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = header(response.headers(), "retry-after")
        .expect("a 429 says when to retry")
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = json_body(response).await;
    assert_eq!(
        body,
        json!({"detail": THROTTLED, "error": "invalid_request", "error_description": THROTTLED})
    );
    retry_after
}

#[tokio::test]
async fn repeated_failures_for_an_account_block_even_the_right_password() {
    let app = throttled_app().await;
    app.create_user("johndoe", "secret").await;
    for _ in 0..3 {
        assert_eq!(
            login_from(&app, "198.51.100.1", "johndoe", "wrong")
                .await
                .status(),
            401
        );
    }

    assert_throttled(login_from(&app, "198.51.100.1", "johndoe", "secret").await).await;
    assert_throttled(login_from(&app, "198.51.100.1", "JohnDoe", "wrong").await).await;
}

#[tokio::test]
async fn an_attacker_elsewhere_cannot_lock_the_real_user_out() {
    let app = throttled_app().await;
    app.create_user("johndoe", "secret").await;
    for _ in 0..5 {
        let _ = login_from(&app, "198.51.100.66", "johndoe", "guess").await;
    }
    assert_throttled(login_from(&app, "198.51.100.66", "johndoe", "secret").await).await;

    let response = login_from(&app, "192.0.2.10", "johndoe", "secret").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_address_failing_on_many_accounts_is_blocked_for_all() {
    let app = throttled_app().await;
    app.create_user("victim", "secret").await;
    for n in 0..6 {
        let response = login_from(&app, "198.51.100.9", &format!("user{n}"), "guess").await;
        assert_eq!(response.status(), 401);
    }

    assert_throttled(login_from(&app, "198.51.100.9", "victim", "secret").await).await;
    assert_eq!(
        login_from(&app, "192.0.2.10", "victim", "secret")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_successful_login_forgets_earlier_failures() {
    let app = throttled_app().await;
    app.create_user("johndoe", "secret").await;
    for _ in 0..2 {
        assert_eq!(
            login_from(&app, "198.51.100.1", "johndoe", "wrong")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        login_from(&app, "198.51.100.1", "johndoe", "secret")
            .await
            .status(),
        200
    );
    for _ in 0..2 {
        assert_eq!(
            login_from(&app, "198.51.100.1", "johndoe", "wrong")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        login_from(&app, "198.51.100.1", "johndoe", "secret")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_block_grows_with_each_failure_after_it_ends() {
    let app = throttled_app().await;
    app.create_user("johndoe", "secret").await;
    for _ in 0..3 {
        let _ = login_from(&app, "198.51.100.1", "johndoe", "wrong").await;
    }
    let first = assert_throttled(login_from(&app, "198.51.100.1", "johndoe", "wrong").await).await;
    assert_eq!(first, 1, "the first block lasts the base delay");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        login_from(&app, "198.51.100.1", "johndoe", "wrong")
            .await
            .status(),
        401
    );
    let second = assert_throttled(login_from(&app, "198.51.100.1", "johndoe", "wrong").await).await;
    assert_eq!(second, 2, "each further failure doubles the block");
}

#[tokio::test]
async fn throttling_is_off_when_configured_off() {
    let app = spawn_app().await;
    app.create_user("johndoe", "secret").await;
    for _ in 0..30 {
        assert_eq!(
            app.post_token(&[("username", "johndoe"), ("password", "x")])
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        app.post_token(&[("username", "johndoe"), ("password", "secret")])
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hashing_queue_is_answered_at_once_with_503() {
    let (url, dir) = fresh_database().await;
    let mut settings = test_settings(url);
    // One slow hash at a time, one waiting: a burst of logins must overflow.
    settings.hashing.workers = std::num::NonZeroUsize::MIN;
    settings.hashing.queue = 1;
    settings.hashing.memory_kib = 65_536;
    settings.hashing.iterations = 4;
    let app = spawn_app_with(settings, dir).await;
    app.create_user("johndoe", "secret").await;

    let attempts = (0..16).map(|_| {
        let client = app.client.clone();
        let url = app.url("/token");
        tokio::spawn(async move {
            client
                .post(url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("username=johndoe&password=secret")
                .send()
                .await
                .unwrap()
        })
    });
    let mut busy = Vec::new();
    let mut ok = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        let response = attempt.await.unwrap();
        match response.status().as_u16() {
            200 => ok += 1,
            503 => busy.push(response),
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 1, "the first logins are served");
    let response = busy.pop().expect("a burst beyond the queue gets 503");
    assert_eq!(header(response.headers(), "retry-after"), Some("1"));
    let body: Value = json_body(response).await;
    assert_eq!(
        body,
        json!({
            "detail": "Service busy, retry later",
            "error": "temporarily_unavailable",
            "error_description": "Service busy, retry later",
        })
    );
}

#[test]
fn the_document_declares_the_429_and_503_of_the_token_endpoint() {
    let doc: Value = serde_json::from_str(&portcullis::api::openapi_document()).unwrap();
    let responses = &doc["paths"]["/token"]["post"]["responses"];
    for status in ["429", "503"] {
        assert_eq!(
            responses[status]["content"]["application/json; charset=utf-8"]["schema"]["$ref"],
            "#/components/schemas/TokenErrorBody",
            "{status}"
        );
        assert!(
            responses[status]["headers"]["Retry-After"].is_object(),
            "{status}"
        );
    }
}
