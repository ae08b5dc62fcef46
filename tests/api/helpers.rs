use std::{net::SocketAddr, num::NonZeroUsize, sync::Arc, time::Duration};

use portcullis::{
    accounts::{CreateUser, create_user},
    auth::PasswordHasher,
    config::{
        ConnectionSettings, DatabaseSettings, HashingSettings, SessionSettings, Settings,
        SigningAlgorithm, ThrottleSettings, TokenSettings,
    },
    db::{NewSession, Store, User},
    domain::ScopeSet,
    startup::Application,
};
use reqwest::{Response, header::HeaderMap};
use secrecy::{SecretBox, SecretString};
use serde_json::Value;

/// The secret every test server signs with (tests forge tokens with it).
pub const TEST_SECRET: &[u8] = b"an-api-test-secret-of-at-least-32-bytes!";
pub const ISSUER: &str = "portcullis";
pub const AUDIENCE: &str = "portcullis";

pub struct TestApp {
    pub address: SocketAddr,
    pub base_url: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub hasher: PasswordHasher,
    pub settings: Settings,
    /// Kept so that the SQLite file outlives the test.
    _data_dir: Option<TempDir>,
}

/// A directory removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A refresh token of the right shape that this service never issued: its MAC is another
/// secret's.
pub fn unknown_refresh_token() -> String {
    portcullis::auth::RefreshTokens::new(b"another-secret-of-at-least-thirty-two-bytes")
        .issue(uuid::Uuid::now_v7(), 0)
}

pub fn test_settings(database_url: String) -> Settings {
    Settings {
        bind: "127.0.0.1:0".parse().unwrap(),
        database: DatabaseSettings {
            url: database_url,
            max_connections: None,
        },
        tokens: TokenSettings {
            secret: Arc::new(SecretBox::new(TEST_SECRET.to_vec().into_boxed_slice())),
            algorithm: SigningAlgorithm::Hs256,
            ttl: Duration::from_secs(1800),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        },
        hashing: HashingSettings {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            workers: NonZeroUsize::new(2).unwrap(),
            queue: 1024,
            queue_per_client: NonZeroUsize::new(1024).unwrap(),
        },
        // Off: most tests fail logins on purpose; tests/api/throttle.rs turns it on.
        throttle: ThrottleSettings {
            enabled: false,
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            max_failures_per_ipv6_48: 100,
            max_successes_per_account_per_minute: 10,
            base_delay: chrono::Duration::seconds(1),
            max_delay: chrono::Duration::seconds(900),
            window: chrono::Duration::seconds(900),
        },
        sessions: SessionSettings {
            lifetime: chrono::Duration::days(30),
            reuse_grace: chrono::Duration::seconds(5),
        },
        public_url: None,
        client_ip_header: None,
        max_body_bytes: 64 * 1024,
        cors_allowed_origins: Vec::new(),
        max_items_per_user: 1000,
        connections: ConnectionSettings {
            // Other tests send bursts of concurrent requests from 127.0.0.1; the default (64)
            // is pinned by tests/api/connections.rs.
            max_connections_per_address: 1024,
            ..ConnectionSettings::default()
        },
    }
}

/// A fresh, empty database: an SQLite file in a new directory, or a new PostgreSQL database
/// beside the one `TEST_DATABASE_URL` names.
pub async fn fresh_database() -> (String, Option<TempDir>) {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => (crate::common::fresh_postgres_database(&url).await, None),
        _ => {
            let dir =
                std::env::temp_dir().join(format!("portcullis-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
            (url, Some(TempDir(dir)))
        }
    }
}

pub async fn spawn_app() -> TestApp {
    let (url, data_dir) = fresh_database().await;
    spawn_app_with(test_settings(url), data_dir).await
}

pub async fn spawn_app_with(settings: Settings, data_dir: Option<TempDir>) -> TestApp {
    let app = Application::build(&settings)
        .await
        .expect("the application must start");
    let address = app.local_addr();
    let store = app.store().clone();
    let hasher = app.hasher().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        base_url: format!("http://{address}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        store,
        hasher,
        settings,
        _data_dir: data_dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Creates an active user holding `me items`.
    pub async fn create_user(&self, username: &str, password: &str) -> User {
        self.create_user_with(username, password, ScopeSet::default_for_new_users(), false)
            .await
    }

    pub async fn create_user_with(
        &self,
        username: &str,
        password: &str,
        scopes: ScopeSet,
        disabled: bool,
    ) -> User {
        create_user(
            &self.store,
            &self.hasher,
            CreateUser {
                username: username.into(),
                password: SecretString::from(password),
                email: Some(format!("{}@example.com", username.to_lowercase())),
                full_name: Some("Test User".into()),
                scopes,
                disabled,
            },
        )
        .await
        .expect("creating a test user")
    }

    /// `POST /token` with a form body made of `fields`.
    pub async fn post_token(&self, fields: &[(&str, &str)]) -> Response {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.client
            .post(self.url("/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Logs in and returns the access token; panics unless the login succeeds.
    pub async fn login(&self, username: &str, password: &str) -> String {
        self.login_with_scope(username, password, None).await
    }

    pub async fn login_with_scope(
        &self,
        username: &str,
        password: &str,
        scope: Option<&str>,
    ) -> String {
        let mut fields = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ];
        if let Some(scope) = scope {
            fields.push(("scope", scope));
        }
        let response = self.post_token(&fields).await;
        assert_eq!(response.status(), 200, "login of {username} must succeed");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Starts a session for `user_id` directly in the store, as a login would (for forged
    /// tokens, which need a live session).
    pub async fn start_session(&self, user_id: uuid::Uuid) -> Subject {
        let session = self
            .store
            .start_session(NewSession {
                id: uuid::Uuid::now_v7(),
                user_id,
                scopes: ScopeSet::default_for_new_users(),
                user_agent: None,
                client_address: "127.0.0.1".into(),
                lifetime: self.settings.sessions.lifetime,
            })
            .await
            .expect("the session is stored");
        Subject {
            user_id,
            session_id: session.id,
        }
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_me(&self, token: &str) -> Response {
        self.get_with_token("/users/me", token).await
    }

    pub async fn create_item(&self, token: &str, body: Value) -> Response {
        self.client
            .post(self.url("/users/me/items"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// The body of a response as JSON, after checking its content type.
pub async fn json_body(response: Response) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "expected JSON, got content type {content_type:?}"
    );
    response.json().await.unwrap()
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Signs arbitrary claims and header fields with `secret` (to forge tokens in tests).
pub fn sign(header: Value, claims: Value, secret: &[u8]) -> String {
    use base64::Engine as _;
    use hmac_sign::sign_hs256;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(header.to_string());
    let body = b64.encode(claims.to_string());
    let signing_input = format!("{head}.{body}");
    let signature = b64.encode(sign_hs256(secret, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// Whom a forged token names: a user, and a session of theirs.
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    pub user_id: uuid::Uuid,
    pub session_id: uuid::Uuid,
}

/// A user without a session (a made-up one): such a token is refused.
impl From<uuid::Uuid> for Subject {
    fn from(user_id: uuid::Uuid) -> Self {
        Self {
            user_id,
            session_id: uuid::Uuid::new_v4(),
        }
    }
}

/// Standard claims of a valid token for `subject`, to be altered by a test.
pub fn valid_claims(subject: impl Into<Subject>, scope: &str) -> Value {
    let subject = subject.into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject.user_id,
        "sid": subject.session_id,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": uuid::Uuid::new_v4(),
        "scope": scope,
    })
}

mod hmac_sign {
    /// HMAC-SHA256 via jsonwebtoken's own signer, so tests need no extra crypto crate.
    pub fn sign_hs256(secret: &[u8], message: &[u8]) -> Vec<u8> {
        use base64::Engine as _;
        let key = jsonwebtoken::EncodingKey::from_secret(secret);
        let encoded = jsonwebtoken::crypto::sign(message, &key, jsonwebtoken::Algorithm::HS256)
            .expect("HS256 signing");
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .expect("signature is base64url")
    }
}
