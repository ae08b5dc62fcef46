//! Failures that are the database's, not the request's, seen from HTTP: 503 with `Retry-After`,
//! never 500, and service as soon as the database can serve again. (The server stopped or killed
//! under load: tests/faults.rs.)

use reqwest::Method;
use sea_orm::ConnectionTrait as _;
use serde_json::json;

use crate::{common::Workspace, helpers::*};

const USERNAME: &str = "johndoe";
const PASSWORD: &str = STRONG_PASSWORD;

/// SQLite whatever `TEST_DATABASE_URL` says: its page limit stands in for a full disk.
#[tokio::test]
async fn a_full_sqlite_disk_answers_503_to_writes_while_reads_go_on() {
    let dir = Workspace::new();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("full.db").display());
    let mut settings = test_settings(url);
    // One connection: the page limit below is a setting of the connection.
    settings.database.max_connections = std::num::NonZeroU32::new(1);
    let app = spawn_app_with(settings, Some(dir)).await;
    app.create_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;

    // No page beyond those the file has (SQLite keeps the limit at the current size).
    app.store
        .connection()
        .execute_unprepared("PRAGMA max_page_count = 1")
        .await
        .unwrap();
    let long = "x".repeat(10_000);
    let full = app
        .post_item(&token, json!({"title": "heavy", "description": long}))
        .await;
    assert_eq!(full.status, 503, "{}", full.text);
    assert_eq!(full.body, json!({"detail": "Service unavailable"}));
    assert_eq!(full.header("retry-after"), Some("1"));

    // Reads are served meanwhile: nothing is refused in advance on SQLite.
    let me = app.get_me(&token).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["username"], USERNAME);
    let ready = send(app.request(Method::GET, "/ready")).await;
    assert_eq!(ready.status, 200);

    // Space again: the same write succeeds at once.
    app.store
        .connection()
        .execute_unprepared("PRAGMA max_page_count = 1073741823")
        .await
        .unwrap();
    let created = app
        .post_item(&token, json!({"title": "heavy", "description": long}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_connection_ended_by_an_administrator_is_503_and_the_next_request_is_served() {
    let app = spawn_app().await;
    app.create_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;

    // What a server shutting down sends every connection (SQLSTATE 57P01), here to one only.
    let ended = app
        .store
        .connection()
        .execute_unprepared("SELECT pg_terminate_backend(pg_backend_pid())")
        .await
        .unwrap_err();
    assert!(
        ended
            .to_string()
            .contains("terminating connection due to administrator command"),
        "{ended}"
    );
    assert!(matches!(
        portcullis::db::StoreError::from(ended),
        portcullis::db::StoreError::Unavailable(_)
    ));

    // The server still runs: one lost connection does not make the instance refuse requests.
    for _ in 0..20 {
        let me = app.get_me(&token).await;
        assert_eq!(me.status, 200, "{}", me.text);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ready = send(app.request(Method::GET, "/ready")).await;
    assert_eq!(ready.status, 200);
}
