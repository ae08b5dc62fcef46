//! Every response names its request in `X-Request-Id`: the caller's own id when it is 1–128
//! visible ASCII characters, else a new one.

use reqwest::{Method, header::HeaderValue};

use crate::helpers::*;

/// A request id the service made itself (a UUID).
fn assert_generated(answer: &Answer) -> String {
    let id = answer
        .header("x-request-id")
        .expect("every response carries X-Request-Id");
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "not a generated id: {id}"
    );
    id.to_owned()
}

/// `GET /health` sending `X-Request-Id: value`.
async fn health_with_id(app: &TestApp, value: HeaderValue) -> Answer {
    send(
        app.request(Method::GET, "/health")
            .header("X-Request-Id", value),
    )
    .await
}

#[tokio::test]
async fn a_request_without_an_id_gets_a_new_one_each_time() {
    let app = spawn_app().await;

    let first = send(app.request(Method::GET, "/health")).await;
    let second = send(app.request(Method::GET, "/health")).await;

    assert_eq!(first.status, 200);
    assert_ne!(assert_generated(&first), assert_generated(&second));
}

#[tokio::test]
async fn the_callers_valid_id_is_echoed_exactly() {
    let app = spawn_app().await;
    let longest = "a".repeat(127) + "~";
    for id in [
        "abc-123",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "x",
        longest.as_str(),
    ] {
        let answer = health_with_id(&app, HeaderValue::from_str(id).unwrap()).await;
        assert_eq!(answer.header("x-request-id"), Some(id));
    }
}

#[tokio::test]
async fn an_invalid_id_is_replaced_never_echoed() {
    let app = spawn_app().await;
    let invalid = [
        HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        HeaderValue::from_static("has space"),
        HeaderValue::from_static("tab\tinside"),
        HeaderValue::from_bytes("café".as_bytes()).unwrap(),
        HeaderValue::from_bytes(b"obs\xfftext").unwrap(),
        HeaderValue::from_static(""),
    ];
    for value in invalid {
        let answer = health_with_id(&app, value.clone()).await;
        let id = assert_generated(&answer);
        assert_ne!(id.as_bytes(), value.as_bytes());
    }
}

#[tokio::test]
async fn two_ids_in_one_request_are_replaced() {
    let app = spawn_app().await;
    let answer = send(
        app.request(Method::GET, "/health")
            .header("X-Request-Id", "one")
            .header("X-Request-Id", "two"),
    )
    .await;
    assert_generated(&answer);
}

#[tokio::test]
async fn errors_raised_before_a_handler_carry_the_id() {
    let app = spawn_app().await;

    let unauthenticated = send(
        app.request(Method::GET, "/users/me")
            .header("X-Request-Id", "req-401"),
    )
    .await;
    let not_found = send(
        app.request(Method::GET, "/no/such/route")
            .header("X-Request-Id", "req-404"),
    )
    .await;
    let not_allowed = send(
        app.request(Method::PUT, "/health")
            .header("X-Request-Id", "req-405"),
    )
    .await;
    let invalid = send(
        app.request(Method::POST, "/token")
            .header("X-Request-Id", "req-422")
            .form(&[("username", "johndoe")]),
    )
    .await;

    assert_eq!(unauthenticated.status, 401);
    assert_eq!(unauthenticated.header("x-request-id"), Some("req-401"));
    assert_eq!(not_found.status, 404);
    assert_eq!(not_found.header("x-request-id"), Some("req-404"));
    assert_eq!(not_allowed.status, 405);
    assert_eq!(not_allowed.header("x-request-id"), Some("req-405"));
    let too_large = send(
        app.request(Method::POST, "/token")
            .header("X-Request-Id", "req-413")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("a".repeat(70 * 1024)),
    )
    .await;
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.header("x-request-id"), Some("req-413"));
    assert_eq!(invalid.status, 422);
    assert_eq!(invalid.header("x-request-id"), Some("req-422"));
    assert_generated(&send(app.request(Method::GET, "/no/such/route")).await);
}

#[tokio::test]
async fn a_successful_login_and_a_protected_operation_carry_the_id() {
    let (app, _) = TestApp::with_user("johndoe", "secret").await;

    let login = app
        .post_login(Login::new("johndoe", "secret").header("X-Request-Id", "login-1"))
        .await;
    assert_eq!(login.status, 200);
    assert_eq!(login.header("x-request-id"), Some("login-1"));
    let token = login.body["access_token"].as_str().unwrap();

    let me = app.get_me(token).await;
    assert_eq!(me.status, 200);
    assert_generated(&me);
}

#[tokio::test]
async fn the_docs_and_the_document_carry_the_id() {
    let app = spawn_app().await;
    for path in ["/docs", "/openapi.json"] {
        let response = app
            .request(Method::GET, path)
            .header("X-Request-Id", "docs-1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response
                .headers()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap()),
            Some("docs-1"),
            "{path}"
        );
        let generated = app.request(Method::GET, path).send().await.unwrap();
        let id = generated.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{path}: {id}");
    }
}
