//! What every API test shares, in one place.
//!
//! - **A server:** [`spawn_app`] (test settings, a fresh database), [`spawn_app_configured`]
//!   (settings a test changes), [`TestApp::with_user`] and [`TestApp::with_logged_in_user`].
//! - **Users:** `app.create_user(…)` and its variants, `app.disable_user(…)` and the like.
//! - **Requests:** one method per operation, named after its HTTP method and path
//!   (`app.post_token`, `app.get_me`, `app.delete_session`, …). Each returns the [`Answer`]
//!   as it came, whatever its status. A request of a test's own making is built with
//!   `app.request(…)` or `app.bearer(…)` (the one way to send a bearer token) and sent with
//!   [`send`].
//! - **Steps that must succeed:** `app.login(…)`, `app.login_with(Login::new(…).scope(…))`,
//!   `app.refresh(…)`, `app.sessions(…)`, `app.items(…)`, `app.create_item(…)`: each checks
//!   the contract's answer and returns what a test goes on with.
//! - **The contract's answers:** `assert_tokens`, `assert_could_not_validate`,
//!   `assert_incorrect_credentials`, … on an [`Answer`].
//! - **Forged tokens:** [`sign`], [`valid_claims`], `app.start_session(…)`.
//! - **The protected operations,** read from the OpenAPI document: [`protected_operations`].
//!
//! The crate's own types (settings, the store, user creation) are reached for here rather than
//! in each test file wherever a test only needs what they do.

use std::{collections::BTreeSet, net::SocketAddr, num::NonZeroUsize, sync::Arc, time::Duration};

use portcullis::{
    accounts::{AccountError, Accounts, CreateUser, PasswordCheck},
    audit::AuditContext,
    config::{
        AccountSettings, ConnectionSettings, DatabaseSettings, HashingSettings, SessionSettings,
        Settings, SigningAlgorithm, ThrottleSettings, TokenSettings,
    },
    db::{NewSession, Store, User},
    domain::{ScopeSet, Username},
    startup::Application,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header::HeaderMap};
use secrecy::{SecretBox, SecretString};
use serde_json::{Value, json};

use crate::common::Workspace;

/// The secret every test server signs with (tests forge tokens with it).
pub const TEST_SECRET: &[u8] = b"an-api-test-secret-of-at-least-32-bytes!";
pub const ISSUER: &str = "portcullis";
pub const AUDIENCE: &str = "portcullis";
/// What a password login asking for no scope is granted (`admin` is only granted by name).
pub const DEFAULT_SCOPE: &str = "me items";

// --- A server ---------------------------------------------------------------------------------

pub struct TestApp {
    pub address: SocketAddr,
    pub base_url: String,
    pub client: reqwest::Client,
    pub store: Store,
    /// The account rules, as the server applies them.
    pub accounts: Accounts,
    pub settings: Settings,
    /// Where `GET /metrics` is served, when the settings ask for it.
    pub metrics_address: Option<SocketAddr>,
    /// Kept so that the SQLite file outlives the test.
    _data_dir: Option<Workspace>,
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
            max_failures_per_account_from_all_addresses: 100,
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
        metrics_bind: None,
        max_items_per_user: 1000,
        audit_retention_days: 90,
        // The defaults: signup off (tests of it turn it on), ten an hour per address.
        accounts: AccountSettings {
            signup_enabled: false,
            signup_per_address_per_hour: 10,
            password_policy: portcullis::domain::PasswordPolicy::default(),
        },
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
pub async fn fresh_database() -> (String, Option<Workspace>) {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => (crate::common::fresh_postgres_database(&url).await, None),
        _ => {
            let dir = Workspace::new();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
            (url, Some(dir))
        }
    }
}

/// A server with the test settings on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_configured(|_| {}).await
}

/// A server on a fresh database, with the test settings as `configure` changes them.
pub async fn spawn_app_configured(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let (url, data_dir) = fresh_database().await;
    let mut settings = test_settings(url);
    configure(&mut settings);
    spawn_app_with(settings, data_dir).await
}

/// A server with exactly `settings` (several servers may share one database this way).
pub async fn spawn_app_with(settings: Settings, data_dir: Option<Workspace>) -> TestApp {
    let app = Application::build(&settings)
        .await
        .expect("the application must start");
    let address = app.local_addr();
    let metrics_address = app.metrics_addr();
    let store = app.store().clone();
    let accounts = app.accounts().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        base_url: format!("http://{address}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        store,
        accounts,
        settings,
        metrics_address,
        _data_dir: data_dir,
    }
}

impl TestApp {
    /// A server with the test settings and one active user holding `me items`.
    pub async fn with_user(username: &str, password: &str) -> (Self, User) {
        Self::with_user_configured(username, password, |_| {}).await
    }

    /// The same, with the test settings as `configure` changes them.
    pub async fn with_user_configured(
        username: &str,
        password: &str,
        configure: impl FnOnce(&mut Settings),
    ) -> (Self, User) {
        let app = spawn_app_configured(configure).await;
        let user = app.create_user(username, password).await;
        (app, user)
    }

    /// The same, with the user logged in: the server and the access token.
    pub async fn with_logged_in_user(username: &str, password: &str) -> (Self, String) {
        let (app, _) = Self::with_user(username, password).await;
        let token = app.login(username, password).await.access_token;
        (app, token)
    }
}

// --- Users ------------------------------------------------------------------------------------

impl TestApp {
    /// Creates an active user holding `me items`, with an e-mail address and a full name.
    pub async fn create_user(&self, username: &str, password: &str) -> User {
        self.create_user_holding(username, password, DEFAULT_SCOPE)
            .await
    }

    /// Creates an active user holding `scopes` (space-separated).
    pub async fn create_user_holding(&self, username: &str, password: &str, scopes: &str) -> User {
        let scopes = ScopeSet::parse(scopes).expect("known scopes");
        self.create(new_user(username, password, scopes, false))
            .await
    }

    /// Creates a disabled user holding `me items`.
    pub async fn create_disabled_user(&self, username: &str, password: &str) -> User {
        let scopes = ScopeSet::default_for_new_users();
        self.create(new_user(username, password, scopes, true))
            .await
    }

    /// Tries to create an active user holding `me items`, without an e-mail address or a full
    /// name (as the CLI does when given neither).
    pub async fn try_create_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<User, AccountError> {
        // Test passwords are chosen for the test, not for the policy: it is skipped, as the
        // command line's `--allow-weak-password` does.
        self.accounts
            .create(
                &AuditContext::cli(),
                CreateUser {
                    email: None,
                    full_name: None,
                    ..new_user(username, password, ScopeSet::default_for_new_users(), false)
                },
                PasswordCheck::Skip,
            )
            .await
    }

    async fn create(&self, request: CreateUser) -> User {
        self.accounts
            .create(&AuditContext::cli(), request, PasswordCheck::Skip)
            .await
            .expect("creating a test user")
    }

    /// Disables an existing user.
    pub async fn disable_user(&self, username: &str) {
        self.set_disabled(username, true).await;
    }

    /// Enables an existing user again.
    pub async fn enable_user(&self, username: &str) {
        self.set_disabled(username, false).await;
    }

    async fn set_disabled(&self, username: &str, disabled: bool) {
        let found = self
            .store
            .set_user_disabled(&Username::parse(username).unwrap(), disabled)
            .await
            .unwrap();
        assert!(found, "{username} exists");
    }

    /// Deletes an existing user.
    pub async fn delete_user(&self, username: &str) {
        let found = self
            .store
            .delete_user(&Username::parse(username).unwrap())
            .await
            .unwrap();
        assert!(found, "{username} exists");
    }
}

fn new_user(username: &str, password: &str, scopes: ScopeSet, disabled: bool) -> CreateUser {
    CreateUser {
        username: username.into(),
        password: SecretString::from(password),
        email: Some(format!("{}@example.com", username.to_lowercase())),
        full_name: Some("Test User".into()),
        scopes,
        disabled,
    }
}

// --- Requests -----------------------------------------------------------------------------------

/// A response taken apart: status, headers, and the body as JSON (`Value::Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The raw body text, for responses that must have none.
    pub text: String,
    pub body: Value,
}

impl Answer {
    /// Takes `response` apart; a body that is not empty must be JSON.
    pub async fn of(response: Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            let content_type = header(&headers, "content-type").unwrap_or_default();
            assert!(
                content_type.starts_with("application/json"),
                "expected JSON, got content type {content_type:?}: {text}"
            );
            serde_json::from_str(&text).expect("the body is JSON")
        };
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Sends `request` and takes the response apart.
pub async fn send(request: RequestBuilder) -> Answer {
    Answer::of(request.send().await.unwrap()).await
}

/// Sends every request at once (a burst); the answers in the order they came.
pub async fn send_all(requests: impl IntoIterator<Item = RequestBuilder>) -> Vec<Answer> {
    let mut burst = tokio::task::JoinSet::new();
    for request in requests {
        burst.spawn(send(request));
    }
    burst.join_all().await
}

/// A password grant for `POST /token`, and what a test adds to it.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    username: &'a str,
    password: &'a str,
    scope: Option<&'a str>,
    headers: Vec<(&'static str, String)>,
    client: Option<reqwest::Client>,
}

impl<'a> Login<'a> {
    pub fn new(username: &'a str, password: &'a str) -> Self {
        Self {
            username,
            password,
            scope: None,
            headers: Vec::new(),
            client: None,
        }
    }

    /// Asks for `scope` (space-separated names).
    pub fn scope(mut self, scope: &'a str) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Sends the header too (`User-Agent`, `X-Forwarded-For`, `Origin`, …).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sends it with `client` (one bound to another local address, say).
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A request without credentials.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request carrying `token` as its bearer credentials.
    pub fn bearer(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(token)
    }

    /// `POST /token` with a form body made of `fields`.
    pub async fn post_token(&self, fields: &[(&str, &str)]) -> Answer {
        send(form(self.request(Method::POST, "/token"), fields)).await
    }

    /// `POST /token` with the password grant `login`.
    pub async fn post_login(&self, login: Login<'_>) -> Answer {
        let mut fields = vec![
            ("grant_type", "password"),
            ("username", login.username),
            ("password", login.password),
        ];
        if let Some(scope) = login.scope {
            fields.push(("scope", scope));
        }
        let client = login.client.as_ref().unwrap_or(&self.client);
        let mut request = form(client.post(self.url("/token")), &fields);
        for (name, value) in login.headers {
            request = request.header(name, value);
        }
        send(request).await
    }

    /// `POST /token` with `grant_type=refresh_token`, and `scope` when given.
    pub async fn post_refresh(&self, refresh_token: &str, scope: Option<&str>) -> Answer {
        let mut fields = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        if let Some(scope) = scope {
            fields.push(("scope", scope));
        }
        self.post_token(&fields).await
    }

    /// `POST /token/revoke` with a form body made of `fields`.
    pub async fn post_revoke(&self, fields: &[(&str, &str)]) -> Answer {
        send(form(self.request(Method::POST, "/token/revoke"), fields)).await
    }

    /// `POST /logout`, with `?scope=` when given.
    pub async fn post_logout(&self, token: &str, scope: Option<&str>) -> Answer {
        let mut request = self.bearer(Method::POST, "/logout", token);
        if let Some(scope) = scope {
            request = request.query(&[("scope", scope)]);
        }
        send(request).await
    }

    /// `GET /users/me`.
    pub async fn get_me(&self, token: &str) -> Answer {
        send(self.bearer(Method::GET, "/users/me", token)).await
    }

    /// `GET /users/me/sessions`.
    pub async fn get_sessions(&self, token: &str) -> Answer {
        send(self.bearer(Method::GET, "/users/me/sessions", token)).await
    }

    /// `DELETE /users/me/sessions/{id}`.
    pub async fn delete_session(&self, token: &str, id: &str) -> Answer {
        let path = format!("/users/me/sessions/{id}");
        send(self.bearer(Method::DELETE, &path, token)).await
    }

    /// `POST /users/me/api-keys` with the JSON `body`.
    pub async fn post_api_key(&self, token: &str, body: Value) -> Answer {
        send(
            self.bearer(Method::POST, "/users/me/api-keys", token)
                .json(&body),
        )
        .await
    }

    /// `GET /users/me/api-keys`.
    pub async fn get_api_keys(&self, token: &str) -> Answer {
        send(self.bearer(Method::GET, "/users/me/api-keys", token)).await
    }

    /// `DELETE /users/me/api-keys/{id}`.
    pub async fn delete_api_key(&self, token: &str, id: &str) -> Answer {
        let path = format!("/users/me/api-keys/{id}");
        send(self.bearer(Method::DELETE, &path, token)).await
    }

    /// Creates an API key as `body` asks (201 required): its id and its text.
    pub async fn api_key(&self, token: &str, body: Value) -> (String, String) {
        let answer = self.post_api_key(token, body).await;
        assert_eq!(answer.status, 201, "creating an API key: {}", answer.text);
        (
            answer.body["id"].as_str().expect("an id").to_owned(),
            answer.body["key"].as_str().expect("a key").to_owned(),
        )
    }

    /// `GET /users/me/items`.
    pub async fn get_items(&self, token: &str) -> Answer {
        send(self.bearer(Method::GET, "/users/me/items", token)).await
    }

    /// `POST /users/me/items` with `body` as JSON.
    pub async fn post_item(&self, token: &str, body: Value) -> Answer {
        send(
            self.bearer(Method::POST, "/users/me/items", token)
                .json(&body),
        )
        .await
    }

    /// `DELETE /users/me/items/{id}`.
    pub async fn delete_item(&self, token: &str, id: &str) -> Answer {
        let path = format!("/users/me/items/{id}");
        send(self.bearer(Method::DELETE, &path, token)).await
    }

    /// `POST /users/signup` with `body` as JSON.
    pub async fn post_signup(&self, body: Value) -> Answer {
        send(self.request(Method::POST, "/users/signup").json(&body)).await
    }

    /// `POST /users/signup` with `body` as JSON, sent by `client`.
    pub async fn post_signup_with(&self, client: &reqwest::Client, body: Value) -> Answer {
        send(client.post(self.url("/users/signup")).json(&body)).await
    }

    /// `PATCH /users/me` with `body` as JSON.
    pub async fn patch_me(&self, token: &str, body: Value) -> Answer {
        send(self.bearer(Method::PATCH, "/users/me", token).json(&body)).await
    }

    /// `POST /users/me/password` with `current` and `new`.
    pub async fn post_password(&self, token: &str, current: &str, new: &str) -> Answer {
        let body = json!({ "current_password": current, "new_password": new });
        send(
            self.bearer(Method::POST, "/users/me/password", token)
                .json(&body),
        )
        .await
    }

    /// `DELETE /users/me` confirmed by `password`.
    pub async fn delete_me(&self, token: &str, password: &str) -> Answer {
        let body = json!({ "password": password });
        send(self.bearer(Method::DELETE, "/users/me", token).json(&body)).await
    }

    /// `GET /admin/users` with the query `query` (e.g. `?q=jo&limit=2`, or "").
    pub async fn get_admin_users(&self, token: &str, query: &str) -> Answer {
        send(self.bearer(Method::GET, &format!("/admin/users{query}"), token)).await
    }

    /// `POST /admin/users` with `body` as JSON.
    pub async fn post_admin_user(&self, token: &str, body: Value) -> Answer {
        send(self.bearer(Method::POST, "/admin/users", token).json(&body)).await
    }

    /// `GET /admin/users/{id}`.
    pub async fn get_admin_user(&self, token: &str, id: &str) -> Answer {
        let path = format!("/admin/users/{id}");
        send(self.bearer(Method::GET, &path, token)).await
    }

    /// `PATCH /admin/users/{id}` with `body` as JSON.
    pub async fn patch_admin_user(&self, token: &str, id: &str, body: Value) -> Answer {
        let path = format!("/admin/users/{id}");
        send(self.bearer(Method::PATCH, &path, token).json(&body)).await
    }

    /// `PUT /admin/users/{id}/password` setting `password`.
    pub async fn put_admin_password(&self, token: &str, id: &str, password: &str) -> Answer {
        let path = format!("/admin/users/{id}/password");
        let body = json!({ "password": password });
        send(self.bearer(Method::PUT, &path, token).json(&body)).await
    }

    /// `DELETE /admin/users/{id}`.
    pub async fn delete_admin_user(&self, token: &str, id: &str) -> Answer {
        let path = format!("/admin/users/{id}");
        send(self.bearer(Method::DELETE, &path, token)).await
    }

    /// `GET /admin/users/{id}/sessions`.
    pub async fn get_admin_sessions(&self, token: &str, id: &str) -> Answer {
        let path = format!("/admin/users/{id}/sessions");
        send(self.bearer(Method::GET, &path, token)).await
    }

    /// `DELETE /admin/users/{id}/sessions`.
    pub async fn delete_admin_sessions(&self, token: &str, id: &str) -> Answer {
        let path = format!("/admin/users/{id}/sessions");
        send(self.bearer(Method::DELETE, &path, token)).await
    }

    /// `DELETE /admin/users/{id}/throttle`.
    pub async fn get_audit_events(&self, token: &str, query: &str) -> Answer {
        send(self.bearer(Method::GET, &format!("/admin/audit-events{query}"), token)).await
    }

    pub async fn delete_admin_throttle(&self, token: &str, id: &str) -> Answer {
        let path = format!("/admin/users/{id}/throttle");
        send(self.bearer(Method::DELETE, &path, token)).await
    }
}

/// A client whose connections come from `local` (a loopback address such as 127.0.0.2).
pub fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// The admin of [`TestApp::with_admin`].
pub const ADMIN: &str = "root";
/// A password the policy accepts, for accounts created over the API.
pub const STRONG_PASSWORD: &str = "Vx7#qL2!kT9@";

impl TestApp {
    /// A server with an admin, `root` (holding `me items admin`), logged in with every scope:
    /// the server and the admin's access token.
    pub async fn with_admin() -> (Self, String) {
        Self::with_admin_configured(|_| {}).await
    }

    /// The same, with settings a test changes.
    pub async fn with_admin_configured(configure: impl FnOnce(&mut Settings)) -> (Self, String) {
        let app = spawn_app_configured(configure).await;
        app.create_user_holding(ADMIN, STRONG_PASSWORD, "me items admin")
            .await;
        let token = app.admin_token().await;
        (app, token)
    }

    /// A new access token of the admin `root`, with every scope.
    pub async fn admin_token(&self) -> String {
        self.login_with(Login::new(ADMIN, STRONG_PASSWORD).scope("me items admin"))
            .await
            .access_token
    }
}

fn form(request: RequestBuilder, fields: &[(&str, &str)]) -> RequestBuilder {
    request
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(fields).unwrap())
}

// --- Steps that must succeed --------------------------------------------------------------------

/// The tokens of a successful password or refresh grant.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

impl Tokens {
    /// The session the access token belongs to (its `sid` claim).
    pub fn session_id(&self) -> String {
        claims(&self.access_token)["sid"]
            .as_str()
            .expect("sid is a string")
            .to_owned()
    }
}

impl TestApp {
    /// A password login asking for no scope; panics unless the contract's answer grants
    /// `me items`.
    pub async fn login(&self, username: &str, password: &str) -> Tokens {
        self.login_with(Login::new(username, password)).await
    }

    /// A password login; panics unless the contract's answer grants exactly the scope asked
    /// for (`me items` when none is).
    ///
    /// On a server that signs with an asymmetric key (tests/api/keys.rs) the token's signature
    /// is not checked here: that file checks it with an independent implementation.
    pub async fn login_with(&self, login: Login<'_>) -> Tokens {
        let granted = login
            .scope
            .filter(|scope| !scope.is_empty())
            .unwrap_or(DEFAULT_SCOPE)
            .to_owned();
        let answer = self.post_login(login).await;
        match self.settings.tokens.algorithm {
            SigningAlgorithm::Hs256 => assert_tokens(&answer, &granted),
            _ => assert_token_response(&answer, &granted),
        }
    }

    /// A refresh that must succeed with the login's `me items`.
    pub async fn refresh(&self, refresh_token: &str) -> Tokens {
        assert_tokens(&self.post_refresh(refresh_token, None).await, DEFAULT_SCOPE)
    }

    /// The caller's sessions; panics unless the list is served.
    pub async fn sessions(&self, token: &str) -> Vec<Value> {
        listed(self.get_sessions(token).await, "the sessions")
    }

    /// The ids of the caller's sessions, in the order listed.
    pub async fn session_ids(&self, token: &str) -> Vec<String> {
        self.sessions(token)
            .await
            .iter()
            .map(|session| session["id"].as_str().expect("id is a string").to_owned())
            .collect()
    }

    /// The caller's items; panics unless the list is served.
    pub async fn items(&self, token: &str) -> Vec<Value> {
        listed(self.get_items(token).await, "the items")
    }

    /// Creates an item; panics unless it is created. Returns its body.
    pub async fn create_item(&self, token: &str, body: Value) -> Value {
        let answer = self.post_item(token, body.clone()).await;
        assert_eq!(answer.status, 201, "creating {body}: {}", answer.body);
        answer.body
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
}

fn listed(answer: Answer, what: &str) -> Vec<Value> {
    assert_eq!(answer.status, 200, "listing {what}: {}", answer.body);
    match answer.body {
        Value::Array(elements) => elements,
        other => panic!("{what} are not a list: {other}"),
    }
}

// --- The contract's answers ---------------------------------------------------------------------

/// Checks a successful token response against the contract (status, exact members, headers,
/// the scope claim of a token signed with the test key) and returns its tokens.
pub fn assert_tokens(answer: &Answer, scope: &str) -> Tokens {
    let tokens = assert_token_response(answer, scope);
    assert_eq!(
        claims(&tokens.access_token)["scope"],
        scope,
        "the scope claim"
    );
    tokens
}

/// [`assert_tokens`] but for the token's signature and claims.
fn assert_token_response(answer: &Answer, scope: &str) -> Tokens {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("pragma"), Some("no-cache"));
    let object = answer.body.as_object().expect("the body is an object");
    let mut members: Vec<&str> = object.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "access_token",
            "expires_in",
            "refresh_token",
            "scope",
            "token_type"
        ],
        "{}",
        answer.body
    );
    let access_token = answer.body["access_token"]
        .as_str()
        .expect("access_token is a string")
        .to_owned();
    let refresh_token = answer.body["refresh_token"]
        .as_str()
        .expect("refresh_token is a string")
        .to_owned();
    assert_eq!(
        refresh_token.len(),
        75,
        "session id, generation and a 256-bit MAC in unpadded base64url"
    );
    assert_eq!(
        answer.body,
        json!({
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": 1800,
            "scope": scope,
            "refresh_token": refresh_token,
        })
    );
    assert!(answer.body["expires_in"].is_u64());
    Tokens {
        access_token,
        refresh_token,
    }
}

/// The contract's 401 for a failed login: status, whole body and challenge.
pub fn assert_incorrect_credentials(answer: &Answer, case: &str) {
    assert_eq!(answer.status, 401, "{case}: {}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "detail": "Incorrect username or password",
            "error": "invalid_grant",
            "error_description": "Incorrect username or password",
        }),
        "{case}"
    );
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{case}");
}

/// The contract's 422 at `/token`: the validation shape plus `invalid_request`, and nothing
/// else.
pub fn assert_token_validation_shape(answer: &Answer, case: &str) {
    let body = &answer.body;
    assert_eq!(answer.status, 422, "{case}: {body}");
    let object = body.as_object().expect("an error body is an object");
    let mut members: Vec<&str> = object.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(
        members,
        ["detail", "error", "error_description"],
        "{case}: {body}"
    );
    let issues = body["detail"].as_array().expect("`detail` is a list");
    assert!(!issues.is_empty(), "{case}: {body}");
    for issue in issues {
        let loc = issue["loc"].as_array().expect("`loc` is a list");
        assert_eq!(loc.first(), Some(&json!("body")), "{case}: {body}");
        assert!(issue["msg"].is_string(), "{case}: {body}");
        assert!(issue["type"].is_string(), "{case}: {body}");
    }
    assert_eq!(body["error"], "invalid_request", "{case}: {body}");
    assert!(body["error_description"].is_string(), "{case}: {body}");
}

/// The answer to a refresh token that is unknown, spent beyond the grace, or of an ended
/// session.
pub fn assert_invalid_refresh_token(answer: &Answer, case: &str) {
    assert_eq!(answer.status, 400, "{case}: {}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "detail": "Invalid refresh token",
            "error": "invalid_grant",
            "error_description": "Invalid refresh token",
        }),
        "{case}"
    );
    assert_eq!(answer.header("www-authenticate"), None, "{case}");
}

/// The answer of a protected operation to a token it refuses.
pub fn assert_could_not_validate(answer: &Answer, case: &str) {
    assert_eq!(answer.status, 401, "{case}: {}", answer.body);
    assert_eq!(
        answer.body,
        json!({"detail": "Could not validate credentials"}),
        "{case}"
    );
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{case}");
}

/// The access token opens `GET /users/me` of `username`.
pub async fn assert_access_works(app: &TestApp, token: &str, username: &str, case: &str) {
    let answer = app.get_me(token).await;
    assert_eq!(answer.status, 200, "{case}: {}", answer.body);
    assert_eq!(answer.body["username"], username, "{case}");
}

/// The access token is refused, as a protected operation refuses an invalid one.
pub async fn assert_access_refused(app: &TestApp, token: &str, case: &str) {
    assert_could_not_validate(&app.get_me(token).await, case);
}

/// Every token of a session is refused: its access token by protected operations, its refresh
/// token by the refresh grant.
pub async fn assert_session_ended(app: &TestApp, tokens: &Tokens, case: &str) {
    assert_access_refused(app, &tokens.access_token, case).await;
    assert_invalid_refresh_token(&app.post_refresh(&tokens.refresh_token, None).await, case);
}

/// The JSON of one base64url part of a JWT.
pub fn jwt_part(part: &str) -> Value {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("a JWT part is base64url without padding");
    serde_json::from_slice(&bytes).expect("a JWT part is JSON")
}

/// The header and claims of an access token, after checking its signature with the test key.
pub fn decode_token(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS compact serialization: {token}");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(TEST_SECRET),
        &validation,
    )
    .expect("the token is signed with the configured key");
    (jwt_part(parts[0]), jwt_part(parts[1]))
}

/// The claims of an access token, after checking its signature with the test key.
pub fn claims(token: &str) -> Value {
    decode_token(token).1
}

/// A timestamp member of a listed session.
pub fn timestamp(session: &Value, member: &str) -> chrono::DateTime<chrono::Utc> {
    let text = session[member].as_str().expect("a timestamp is a string");
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("{member} {text:?} is not RFC 3339: {err}"))
        .to_utc()
}

/// The body of a response as JSON, after checking its content type.
pub async fn json_body(response: Response) -> Value {
    let answer = Answer::of(response).await;
    assert!(!answer.text.is_empty(), "expected a JSON body, got none");
    answer.body
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

// --- Forged tokens ------------------------------------------------------------------------------

/// A refresh token of the right shape that this service never issued: its MAC is another
/// secret's.
pub fn unknown_refresh_token() -> String {
    portcullis::auth::RefreshTokens::new(b"another-secret-of-at-least-thirty-two-bytes")
        .issue(uuid::Uuid::now_v7(), 0)
}

/// Signs arbitrary claims and header fields with `secret` under HS256 (to forge tokens in
/// tests).
pub fn sign(header: Value, claims: Value, secret: &[u8]) -> String {
    sign_with(jsonwebtoken::Algorithm::HS256, header, claims, secret)
}

/// [`sign`] with any HMAC algorithm. The header is taken as given: its `alg` may lie.
pub fn sign_with(
    algorithm: jsonwebtoken::Algorithm,
    header: Value,
    claims: Value,
    secret: &[u8],
) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    // jsonwebtoken's own signer, so tests need no extra crypto crate.
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, algorithm)
        .expect("HMAC signing");
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
    json!({
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

// --- The protected operations -------------------------------------------------------------------

/// A valid request body for each protected operation that takes one, by `operationId`.
/// [`protected_operations`] fails when an operation of the document has none, or when an entry
/// names no such operation, so the table cannot fall behind the document.
const VALID_BODIES: &[(&str, ValidBody)] = &[
    ("create_item", || json!({ "title": "A title" })),
    ("create_api_key", || json!({ "name": "made by a test" })),
    (
        "update_current_user",
        || json!({ "full_name": "Test User" }),
    ),
    // A wrong current password: answered 400 once authentication passes (see
    // `CONFIRMED_BY_PASSWORD`), and nothing changes.
    (
        "change_password",
        || json!({ "current_password": NOT_THE_PASSWORD, "new_password": "Vx7#qL2!kT9@" }),
    ),
    (
        "delete_current_user",
        || json!({ "password": NOT_THE_PASSWORD }),
    ),
    // A new name each time: the operation may be called once per test request.
    ("create_user", || {
        json!({
            "username": format!("made-{}", uuid::Uuid::new_v4().simple()),
            "password": "Vx7#qL2!kT9@",
        })
    }),
    ("update_user", || json!({ "full_name": "Test User" })),
    (
        "reset_user_password",
        || json!({ "password": "Vx7#qL2!kT9@" }),
    ),
];

/// The operations whose valid request confirms a change with the caller's password: sent
/// with [`NOT_THE_PASSWORD`], they answer 400 `Incorrect password` once authentication has
/// passed, leaving the account as it was.
const CONFIRMED_BY_PASSWORD: [&str; 2] = ["change_password", "delete_current_user"];

/// No test user's password.
pub const NOT_THE_PASSWORD: &str = "not the password of any test user";

type ValidBody = fn() -> Value;

/// The value of every id in a path: nothing has it, so once authentication passes the
/// operation answers 404 — proof it got through, with nothing changed.
pub const MADE_UP_ID: &str = "00000000-0000-4000-8000-000000000000";

/// An operation of the OpenAPI document that needs a bearer token, and a valid request for it.
#[derive(Debug, Clone)]
pub struct ProtectedOperation {
    pub operation_id: String,
    pub method: Method,
    /// The path with its parameters filled in ([`MADE_UP_ID`]).
    pub path: String,
    /// The scopes it declares, in the order the security scheme lists them.
    pub scopes: Vec<String>,
    /// A valid body, when it takes one.
    pub body: Option<Value>,
    /// Its status once the caller is authenticated and allowed: the one 2xx it declares, 404
    /// when the path names a made-up id, or 400 when it is confirmed by a password (it is sent
    /// a wrong one).
    pub success: u16,
}

impl ProtectedOperation {
    /// The valid request, without credentials.
    pub fn request(&self, app: &TestApp) -> RequestBuilder {
        let request = app.request(self.method.clone(), &self.path);
        match &self.body {
            Some(body) => request.json(body),
            None => request,
        }
    }

    /// The challenge of a 401 for a token that lacks one of its scopes.
    pub fn scope_challenge(&self) -> String {
        format!("Bearer scope=\"{}\"", self.scopes.join(" "))
    }
}

impl std::fmt::Display for ProtectedOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.method, self.path, self.operation_id)
    }
}

/// The OpenAPI document the code serves.
pub fn openapi_document() -> Value {
    serde_json::from_str(&portcullis::api::openapi_document()).expect("the document is JSON")
}

/// Every scope the security scheme defines, in its order.
pub fn defined_scopes() -> Vec<String> {
    openapi_document()["components"]["securitySchemes"]["OAuth2"]["flows"]["password"]["scopes"]
        .as_object()
        .expect("the password flow lists its scopes")
        .keys()
        .cloned()
        .collect()
}

/// Every operation of the OpenAPI document whose `security` is not empty, in the document's
/// order, each with a valid request (see [`ProtectedOperation`]).
///
/// Panics, naming the operation, when one cannot be built a request: a path parameter that is
/// not a UUID, a required query parameter, or a body without an entry in `VALID_BODIES`.
pub fn protected_operations() -> Vec<ProtectedOperation> {
    let document = openapi_document();
    let defined = defined_scopes();
    let no_requirement = json!([]);
    let default_security = document.get("security").unwrap_or(&no_requirement);
    let mut operations = Vec::new();
    let mut bodies_used = BTreeSet::new();
    for (template, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {template} has no operationId"));
            let security = operation.get("security").unwrap_or(default_security);
            let requirements = security.as_array().expect("security is a list");
            let Some(requirement) = requirements.first() else {
                continue;
            };
            // Either credential: an access token (OAuth2, naming the scopes) or an API key (the
            // same scopes; OpenAPI 3.0 lets only OAuth2 list them).
            assert_eq!(
                requirements.get(1..),
                Some(&[json!({ "APIKey": [] })][..]),
                "{id}: every protected operation takes an access token or an API key"
            );
            let declared: Vec<&str> = requirement["OAuth2"]
                .as_array()
                .unwrap_or_else(|| panic!("{id}: a requirement other than OAuth2: {requirement}"))
                .iter()
                .map(|scope| scope.as_str().expect("a scope name"))
                .collect();
            let mut path = template.clone();
            let mut made_up_id = false;
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().expect("a parameter name");
                match parameter["in"].as_str() {
                    Some("path") => {
                        assert_eq!(
                            parameter["schema"]["format"], "uuid",
                            "{id}: no made-up value for its path parameter {name:?}; teach \
                             protected_operations one"
                        );
                        path = path.replace(&format!("{{{name}}}"), MADE_UP_ID);
                        made_up_id = true;
                    }
                    _ => assert_ne!(
                        parameter["required"], true,
                        "{id}: no value for its required parameter {name:?}; teach \
                         protected_operations one"
                    ),
                }
            }
            let body = operation.get("requestBody").map(|request_body| {
                assert!(
                    request_body["content"].get("application/json").is_some(),
                    "{id}: only JSON request bodies are sent here: {request_body}"
                );
                let (_, valid) = VALID_BODIES
                    .iter()
                    .find(|(operation_id, _)| *operation_id == id)
                    .unwrap_or_else(|| {
                        panic!(
                            "{id} ({method} {template}) takes a request body, and VALID_BODIES \
                             in tests/api/helpers.rs has none for it: add a valid one"
                        )
                    });
                bodies_used.insert(id.to_owned());
                valid()
            });
            let responses = operation["responses"].as_object().expect("responses");
            let success = if made_up_id {
                assert!(
                    responses.contains_key("404"),
                    "{id}: a made-up id in its path must be answered 404, which it does not \
                     declare"
                );
                404
            } else if CONFIRMED_BY_PASSWORD.contains(&id) {
                400
            } else {
                let successes: Vec<u16> = responses
                    .keys()
                    .filter_map(|status| status.parse().ok())
                    .filter(|status| (200..300).contains(status))
                    .collect();
                assert_eq!(
                    successes.len(),
                    1,
                    "{id}: expected exactly one 2xx response, found {successes:?}"
                );
                successes[0]
            };
            for scope in &declared {
                assert!(
                    defined.iter().any(|name| name == scope),
                    "{id} declares {scope:?}, which the security scheme does not define"
                );
            }
            operations.push(ProtectedOperation {
                operation_id: id.to_owned(),
                method: method.to_uppercase().parse().expect("an HTTP method"),
                path,
                scopes: defined
                    .iter()
                    .filter(|name| declared.contains(&name.as_str()))
                    .cloned()
                    .collect(),
                body,
                success,
            });
        }
    }
    for (id, _) in VALID_BODIES {
        assert!(
            bodies_used.contains(*id),
            "VALID_BODIES in tests/api/helpers.rs has a body for {id:?}, which is not a \
             protected operation taking one: remove it"
        );
    }
    assert!(
        !operations.is_empty(),
        "the document declares no protected operation"
    );
    operations
}

/// The protected operation `operation_id`.
pub fn protected_operation(operation_id: &str) -> ProtectedOperation {
    protected_operations()
        .into_iter()
        .find(|operation| operation.operation_id == operation_id)
        .unwrap_or_else(|| panic!("no protected operation {operation_id:?} in the document"))
}

// --- The audit log ------------------------------------------------------------------------------

impl TestApp {
    /// The audit events `GET /admin/audit-events{query}` lists (newest first), once there are
    /// at least `count` of them: login and refresh events are written by a background task
    /// shortly after their request is answered. Panics when they do not come within 30 s.
    pub async fn audit_events(&self, token: &str, query: &str, count: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self.get_audit_events(token, query).await;
            assert_eq!(answer.status, 200, "listing audit events: {}", answer.body);
            let events = answer.body["events"]
                .as_array()
                .expect("the events are a list")
                .clone();
            if events.len() >= count || std::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Checks that `event` has exactly the audit event's members: a UUID `id`, a recent
/// `occurred_at`, and `expected`'s members (all the others) as given.
pub fn assert_audit_event(event: &Value, expected: Value) {
    let members: BTreeSet<&str> = event
        .as_object()
        .expect("an event is an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut wanted: BTreeSet<&str> = expected
        .as_object()
        .expect("the expected members are an object")
        .keys()
        .map(String::as_str)
        .collect();
    wanted.extend(["id", "occurred_at"]);
    assert_eq!(members, wanted, "{event}");
    assert!(
        uuid::Uuid::parse_str(event["id"].as_str().unwrap_or_default()).is_ok(),
        "{event}"
    );
    let at =
        chrono::DateTime::parse_from_rfc3339(event["occurred_at"].as_str().unwrap_or_default())
            .unwrap_or_else(|_| panic!("occurred_at is RFC 3339: {event}"));
    let age = chrono::Utc::now() - at.with_timezone(&chrono::Utc);
    assert!(
        age < chrono::Duration::minutes(10) && age > -chrono::Duration::minutes(1),
        "{event}"
    );
    for (member, value) in expected.as_object().unwrap() {
        assert_eq!(&event[member], value, "{member} of {event}");
    }
}
