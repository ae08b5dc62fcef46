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
    assert_eq!(full.header("connection"), Some("close"));

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

/// A TCP relay to PostgreSQL that the test can cut and restore, for an outage of one instance's
/// database without stopping the cluster other tests use.
struct Relay {
    port: u16,
    upstream: std::net::SocketAddr,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let mut relay = Self {
            port: 0,
            upstream,
            running: None,
        };
        relay.resume().await;
        relay
    }

    /// Listens again (on the same port after a cut).
    async fn resume(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.port = listener.local_addr().unwrap().port();
        let upstream = self.upstream;
        self.running = Some(tokio::spawn(async move {
            // Dropped with this task: every relayed connection ends with it.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Refuses new connections and resets the open ones, as a server that went away.
    async fn cut(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
            let _ = running.await;
        }
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn an_unreachable_postgresql_server_is_503_within_a_second_even_for_a_lone_request() {
    let base = std::env::var("TEST_DATABASE_URL").unwrap();
    let url = crate::common::fresh_postgres_database(&base).await;
    let upstream: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    assert!(url.contains("@127.0.0.1:5432/"), "{url}");
    let mut relay = Relay::start(upstream).await;
    let relayed = url.replace("@127.0.0.1:5432/", &format!("@127.0.0.1:{}/", relay.port));
    let app = spawn_app_with(test_settings(relayed), None).await;
    app.create_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;
    assert_eq!(app.get_me(&token).await.status, 200);

    relay.cut().await;
    // The pool would retry the refused connection for its 5 s; the instance answers sooner.
    let asked = std::time::Instant::now();
    let me = app.get_me(&token).await;
    let first = asked.elapsed();
    assert_eq!(me.status, 503, "{}", me.text);
    assert_eq!(me.body, json!({"detail": "Service unavailable"}));
    assert_eq!(me.header("retry-after"), Some("1"));
    assert!(first < std::time::Duration::from_secs(1), "{first:?}");
    // Then at once, without touching the pool.
    let asked = std::time::Instant::now();
    let ready = send(app.request(Method::GET, "/ready")).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body, json!({"detail": "Service unavailable"}));
    assert_eq!(ready.header("retry-after"), Some("1"));
    let refused = asked.elapsed();
    assert!(
        refused < std::time::Duration::from_millis(200),
        "{refused:?}"
    );

    relay.resume().await;
    let back = std::time::Instant::now();
    loop {
        let me = app.get_me(&token).await;
        if me.status == 200 {
            break;
        }
        assert_eq!(me.status, 503, "{}", me.text);
        assert!(
            back.elapsed() < std::time::Duration::from_secs(1),
            "not served again within a second"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    println!(
        "first refusal in {first:?}, then in {refused:?}; served again {:?} after the server's return",
        back.elapsed()
    );
    assert_eq!(send(app.request(Method::GET, "/ready")).await.status, 200);
}
