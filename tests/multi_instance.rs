//! Scale-out: two server processes sharing one PostgreSQL database behave as one service.
//! Needs PostgreSQL: `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test
//! --test multi_instance -- --include-ignored`.

mod common;

use std::process::Stdio;

use common::{ServerProcess, Workspace, fresh_postgres_database};
use serde_json::Value;

const SHARED_SECRET: &str = "a-secret-shared-by-every-instance-0123456789";

struct Cluster {
    database_url: String,
    workspace: Workspace,
    a: ServerProcess,
    b: ServerProcess,
    client: reqwest::Client,
}

impl Cluster {
    /// Two instances started at the same moment on a fresh database (so their migrations race).
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// As [`Cluster::start`], both instances with the extra environment `env`.
    async fn start_with(env: &[(&str, &str)]) -> Self {
        let base = std::env::var("TEST_DATABASE_URL").expect(
            "set TEST_DATABASE_URL to a PostgreSQL database to run the multi-instance tests",
        );
        let database_url = fresh_postgres_database(&base).await;
        Self::start_on(database_url, Workspace::new(), env)
    }

    /// Two instances on `database_url` (PostgreSQL, or one SQLite file both open).
    fn start_on(database_url: String, workspace: Workspace, env: &[(&str, &str)]) -> Self {
        let spawn = |name: &str| {
            let mut command = workspace.command();
            command
                .args(["serve", "--bind", "127.0.0.1:0"])
                .env("DATABASE_URL", &database_url)
                .env("PORTCULLIS_JWT_SECRET", SHARED_SECRET)
                .env("PORTCULLIS_DATA_DIR", workspace.path().join(name))
                .envs(env.iter().copied());
            command
        };
        let (command_a, command_b) = (spawn("a"), spawn("b"));
        let a = std::thread::spawn(move || ServerProcess::start(command_a));
        let b = std::thread::spawn(move || ServerProcess::start(command_b));
        Self {
            database_url,
            a: a.join().unwrap(),
            b: b.join().unwrap(),
            workspace,
            client: reqwest::Client::new(),
        }
    }

    /// Runs a `portcullis users …` command against the shared database.
    fn users(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        self.cli("users", args, stdin)
    }

    /// Runs `portcullis <command> <args>` against the shared database, with the shared secret.
    fn cli(&self, command: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write as _;
        let mut child = self
            .workspace
            .command()
            .arg(command)
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("PORTCULLIS_JWT_SECRET", SHARED_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn create_user(&self, username: &str, password: &str) {
        let output = self.users(
            &[
                "create",
                username,
                "--password-stdin",
                "--allow-weak-password",
            ],
            Some(password),
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn login(&self, base: &str, username: &str, password: &str) -> reqwest::Response {
        self.client
            .post(format!("{base}/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([("username", username), ("password", password)])
                    .unwrap(),
            )
            .send()
            .await
            .unwrap()
    }

    async fn token(&self, base: &str, username: &str, password: &str) -> String {
        let response = self.login(base, username, password).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn me(&self, base: &str, token: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{base}/users/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_token_issued_by_one_instance_works_on_the_other() {
    let cluster = Cluster::start().await;
    cluster.create_user("johndoe", "secret");
    let token = cluster
        .token(&cluster.a.base_url, "johndoe", "secret")
        .await;
    let (status, body) = cluster.me(&cluster.b.base_url, &token).await;
    assert_eq!(status, 200);
    assert_eq!(body["username"], "johndoe");
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_user_created_once_logs_in_on_both_instances() {
    let cluster = Cluster::start().await;
    cluster.create_user("NewUser", "pw-1");
    for base in [&cluster.a.base_url, &cluster.b.base_url] {
        assert_eq!(cluster.login(base, "newuser", "pw-1").await.status(), 200);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_disabled_user_is_refused_by_both_instances_at_the_next_request() {
    let cluster = Cluster::start().await;
    cluster.create_user("johndoe", "secret");
    let token_a = cluster
        .token(&cluster.a.base_url, "johndoe", "secret")
        .await;
    let token_b = cluster
        .token(&cluster.b.base_url, "johndoe", "secret")
        .await;
    assert_eq!(cluster.me(&cluster.b.base_url, &token_a).await.0, 200);

    let output = cluster.users(&["disable", "johndoe"], None);
    assert!(output.status.success());

    for (base, token) in [
        (&cluster.a.base_url, &token_b),
        (&cluster.b.base_url, &token_a),
    ] {
        let (status, body) = cluster.me(base, token).await;
        assert_eq!(status, 400);
        assert_eq!(body, serde_json::json!({"detail": "Inactive user"}));
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn concurrent_creation_of_one_username_leaves_exactly_one_account() {
    let cluster = Cluster::start().await;
    let names = ["Racer", "racer", "RACER", "rAcEr", "racer", "Racer"];
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                scope.spawn(|| {
                    cluster.users(
                        &["create", name, "--password-stdin", "--allow-weak-password"],
                        Some("pw"),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1, "exactly one creation succeeds");
    for loser in outcomes.iter().filter(|o| !o.status.success()) {
        assert_eq!(loser.status.code(), Some(1));
        let message = String::from_utf8_lossy(&loser.stderr);
        assert!(message.contains("already exists"), "{message}");
    }
    let list = cluster.users(&["list"], None);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.to_lowercase().contains("racer"))
            .count(),
        1,
        "{listed}"
    );
    // And the one account works on both instances.
    for base in [&cluster.a.base_url, &cluster.b.base_url] {
        assert_eq!(cluster.login(base, "RACER", "pw").await.status(), 200);
    }
}

/// The `kid` header of a token.
fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("an EdDSA token names its key")
}

/// Runs `portcullis keys rotate` and returns the new kid.
fn rotate(cluster: &Cluster) -> String {
    created_kid(&cluster.cli("keys", &["rotate"], None), "EdDSA")
}

/// The kid `keys rotate` printed, after checking that it succeeded.
fn created_kid(output: &std::process::Output, algorithm: &str) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines()
        .next()
        .and_then(|line| line.strip_prefix("created signing key "))
        .and_then(|rest| rest.strip_suffix(&format!(" ({algorithm})")))
        .unwrap_or_else(|| panic!("unexpected output {text:?}"))
        .to_owned()
}

impl Cluster {
    /// `portcullis keys <args>` from an operator's shell that lacks `PORTCULLIS_JWT_SECRET`:
    /// the command line falls back to a secret generated in its data directory.
    fn keys_without_the_secret(&self, args: &[&str]) -> std::process::Output {
        self.workspace
            .command()
            .arg("keys")
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .output()
            .unwrap()
    }

    async fn published_kids(&self, base: &str) -> Vec<String> {
        let set: Value = self
            .client
            .get(format!("{base}/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap().to_owned())
            .collect()
    }
}

// --- Sessions and refresh tokens across instances --------------------------------------------
// Ending a session, or spending a refresh token, on one instance holds on the other at once:
// both read the session from the shared database on every request.

/// A login's tokens.
struct SessionTokens {
    access_token: String,
    refresh_token: String,
}

impl Cluster {
    async fn post_form(&self, base: &str, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let response = self
            .client
            .post(format!("{base}{path}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn session(&self, base: &str, username: &str, password: &str) -> SessionTokens {
        let response = self.login(base, username, password).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        SessionTokens {
            access_token: body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn refresh(&self, base: &str, refresh_token: &str) -> (u16, Value) {
        let (status, text) = self
            .post_form(
                base,
                "/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ],
            )
            .await;
        (status, serde_json::from_str(&text).unwrap())
    }

    async fn logout(&self, base: &str, token: &str) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{base}/logout"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

fn could_not_validate() -> Value {
    serde_json::json!({"detail": "Could not validate credentials"})
}

fn invalid_refresh_token() -> Value {
    serde_json::json!({
        "detail": "Invalid refresh token",
        "error": "invalid_grant",
        "error_description": "Invalid refresh token",
    })
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_key_rotated_from_the_command_line_signs_the_next_login_on_both_instances() {
    let cluster = Cluster::start_with(&[("PORTCULLIS_SIGNING_ALGORITHM", "EdDSA")]).await;
    cluster.create_user("johndoe", "secret");
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let before = cluster.token(a, "johndoe", "secret").await;

    let kid = rotate(&cluster);

    let token_a = cluster.token(a, "johndoe", "secret").await;
    let token_b = cluster.token(b, "johndoe", "secret").await;
    assert_eq!(kid_of(&token_a), kid);
    assert_eq!(kid_of(&token_b), kid);
    assert_ne!(kid_of(&before), kid);
    for (base, token) in [(a, &token_b), (b, &token_a), (a, &before), (b, &before)] {
        assert_eq!(cluster.me(base, token).await.0, 200, "{base}");
    }
}

/// The two ways a rotation used to change what a running EdDSA cluster signs with: a key of
/// the other algorithm (published, signs nothing here), and a key sealed under another secret
/// (refused; forced, it is ignored by both instances rather than failing every login, and,
/// not authentic under their secret, not published).
#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn rotations_that_cannot_sign_here_leave_both_instances_signing_with_their_key() {
    let cluster = Cluster::start_with(&[("PORTCULLIS_SIGNING_ALGORITHM", "EdDSA")]).await;
    cluster.create_user("johndoe", "secret");
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let kid = kid_of(&cluster.token(a, "johndoe", "secret").await);

    let es = created_kid(
        &cluster.cli("keys", &["rotate", "--algorithm", "ES256"], None),
        "ES256",
    );
    let refused = cluster.keys_without_the_secret(&["rotate"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.lines().last().unwrap().starts_with(&format!(
            "error: the configured JWT secret does not open the stored signing keys (the newest, \
             {es}, does not decrypt with it): set PORTCULLIS_JWT_SECRET or \
             PORTCULLIS_JWT_SECRET_FILE"
        )),
        "{stderr}"
    );
    let forced = created_kid(
        &cluster.keys_without_the_secret(&["rotate", "--force"]),
        "EdDSA",
    );

    for (signer, verifier) in [(a, b), (b, a)] {
        let token = cluster.token(signer, "johndoe", "secret").await;
        assert_eq!(kid_of(&token), kid, "{signer}");
        assert_eq!(cluster.me(verifier, &token).await.0, 200, "{verifier}");
        // Its tag was made under the other secret: not authentic here, so not published.
        assert_eq!(
            cluster.published_kids(signer).await,
            [es.clone(), kid.clone()],
            "{forced} is not published"
        );
    }
}

/// Both instances have already verified the old token and cached its key: the per-request
/// check (the session query, which also requires the key not to be retired) notices it.
#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_key_retired_from_the_command_line_is_refused_by_both_instances_at_the_next_request() {
    let cluster = Cluster::start_with(&[("PORTCULLIS_SIGNING_ALGORITHM", "EdDSA")]).await;
    cluster.create_user("johndoe", "secret");
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let old = cluster.token(a, "johndoe", "secret").await;
    for base in [a, b] {
        assert_eq!(cluster.me(base, &old).await.0, 200);
    }
    rotate(&cluster);

    let output = cluster.cli("keys", &["retire", &kid_of(&old)], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    for base in [a, b] {
        let (status, body) = cluster.me(base, &old).await;
        assert_eq!(status, 401, "{base}");
        assert_eq!(
            body,
            serde_json::json!({"detail": "Could not validate credentials"})
        );
    }
    let fresh = cluster.token(b, "johndoe", "secret").await;
    assert_eq!(cluster.me(a, &fresh).await.0, 200);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_logout_on_one_instance_is_refused_on_the_other_at_the_next_request() {
    let cluster = Cluster::start().await;
    cluster.create_user("johndoe", "secret");
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let session = cluster.session(a, "johndoe", "secret").await;
    assert_eq!(cluster.me(a, &session.access_token).await.0, 200);

    let (status, body) = cluster.logout(b, &session.access_token).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"sessions_ended": 1}));

    assert_eq!(
        cluster.me(a, &session.access_token).await,
        (401, could_not_validate())
    );
    assert_eq!(
        cluster.refresh(a, &session.refresh_token).await,
        (400, invalid_refresh_token())
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_token_revoked_on_one_instance_is_refused_on_the_other_at_the_next_request() {
    let cluster = Cluster::start().await;
    cluster.create_user("johndoe", "secret");
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let session = cluster.session(a, "johndoe", "secret").await;
    assert_eq!(cluster.me(a, &session.access_token).await.0, 200);

    let (status, body) = cluster
        .post_form(b, "/token/revoke", &[("token", &session.refresh_token)])
        .await;
    assert_eq!((status, body.as_str()), (200, ""));

    assert_eq!(
        cluster.me(a, &session.access_token).await,
        (401, could_not_validate())
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_refresh_token_rotated_on_one_instance_is_spent_on_the_other() {
    // No grace: any second exchange of a spent token is reuse.
    let cluster = Cluster::start_with(&[("PORTCULLIS_REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
    cluster.create_user("johndoe", "secret");
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let login = cluster.session(a, "johndoe", "secret").await;
    let (status, rotated) = cluster.refresh(a, &login.refresh_token).await;
    assert_eq!(status, 200, "{rotated}");
    let newest_access = rotated["access_token"].as_str().unwrap();
    let newest_refresh = rotated["refresh_token"].as_str().unwrap();
    assert_eq!(cluster.me(a, newest_access).await.0, 200);
    // Past the grace (0 s) by at least a clock tick.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    assert_eq!(
        cluster.refresh(b, &login.refresh_token).await,
        (400, invalid_refresh_token()),
        "the token spent on A is reused on B"
    );

    assert_eq!(
        cluster.me(a, newest_access).await,
        (401, could_not_validate()),
        "the reuse on B ended the session on A"
    );
    assert_eq!(
        cluster.me(a, &login.access_token).await,
        (401, could_not_validate())
    );
    assert_eq!(
        cluster.refresh(a, newest_refresh).await,
        (400, invalid_refresh_token())
    );
}

// --- Accounts across instances ----------------------------------------------------------------
// A password change, a reset, a deletion, a disable and a removed scope hold on every instance at
// the affected user's very next request, as a logout does: both read the user and the session
// from the shared database on every request.

/// A policy-compliant password, set through the HTTP API.
const NEW_PASSWORD: &str = "Vx7#qL2!kT9@";

/// A test account's password, set through the command line without the policy.
const PASSWORD: &str = "secret";

/// An HTTP answer: status, JSON body (`null` when empty) and `WWW-Authenticate`.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    www_authenticate: Option<String>,
}

impl Answer {
    async fn of(request: reqwest::RequestBuilder) -> Self {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let www_authenticate = response
            .headers()
            .get("WWW-Authenticate")
            .map(|value| value.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
        };
        Self {
            status,
            body,
            www_authenticate,
        }
    }

    /// Panics unless this is the answer to a token whose session ended or whose user is gone.
    fn assert_could_not_validate(&self, context: &str) {
        assert_eq!(self.status, 401, "{context}: {self:?}");
        assert_eq!(self.body, could_not_validate(), "{context}");
        assert_eq!(
            self.www_authenticate.as_deref(),
            Some("Bearer"),
            "{context}"
        );
    }
}

impl Cluster {
    /// A request to `base` + `path` carrying `token`, with `body` as JSON when given.
    async fn call(
        &self,
        method: reqwest::Method,
        base: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Answer::of(request).await
    }

    async fn get_me(&self, base: &str, token: &str) -> Answer {
        self.call(reqwest::Method::GET, base, "/users/me", token, None)
            .await
    }

    async fn get_items(&self, base: &str, token: &str) -> Answer {
        self.call(reqwest::Method::GET, base, "/users/me/items", token, None)
            .await
    }

    /// Creates an admin (holding `me items admin`) through the command line.
    fn create_admin(&self, username: &str, password: &str) {
        let output = self.users(
            &[
                "create",
                username,
                "--admin",
                "--password-stdin",
                "--allow-weak-password",
            ],
            Some(password),
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A login asking for `me items admin`.
    async fn admin_login(&self, base: &str, username: &str, password: &str) -> (u16, Value) {
        let (status, text) = self
            .post_form(
                base,
                "/token",
                &[
                    ("username", username),
                    ("password", password),
                    ("scope", "me items admin"),
                ],
            )
            .await;
        (status, serde_json::from_str(&text).unwrap())
    }

    /// An access token of the admin `username`, with every scope.
    async fn admin_token(&self, base: &str, username: &str, password: &str) -> String {
        let (status, body) = self.admin_login(base, username, password).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// The id of the user `token` belongs to.
    async fn id_of(&self, base: &str, token: &str) -> String {
        let me = self.get_me(base, token).await;
        assert_eq!(me.status, 200, "{me:?}");
        me.body["id"].as_str().unwrap().to_owned()
    }

    /// `PATCH /admin/users/{id}` with `changes`.
    async fn patch_user(&self, base: &str, admin: &str, id: &str, changes: Value) -> Answer {
        self.call(
            reqwest::Method::PATCH,
            base,
            &format!("/admin/users/{id}"),
            admin,
            Some(changes),
        )
        .await
    }

    /// The active users holding `admin`, as listed to `admin` through `base`.
    async fn active_admins(&self, base: &str, admin: &str) -> Vec<String> {
        let page = self
            .call(
                reqwest::Method::GET,
                base,
                "/admin/users?disabled=false&limit=200",
                admin,
                None,
            )
            .await;
        assert_eq!(page.status, 200, "{page:?}");
        assert_eq!(page.body["next_cursor"], Value::Null);
        page.body["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|user| user["disabled"] == false)
            .filter(|user| {
                user["scopes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|scope| scope == "admin")
            })
            .map(|user| user["username"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_password_change_on_one_instance_ends_the_other_sessions_on_the_other_at_the_next_request()
 {
    let cluster = Cluster::start().await;
    cluster.create_user("johndoe", PASSWORD);
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let caller = cluster.session(a, "johndoe", PASSWORD).await;
    let other = cluster.session(b, "johndoe", PASSWORD).await;
    for base in [a, b] {
        assert_eq!(cluster.get_me(base, &other.access_token).await.status, 200);
        assert_eq!(cluster.get_me(base, &caller.access_token).await.status, 200);
    }

    let changed = cluster
        .call(
            reqwest::Method::POST,
            a,
            "/users/me/password",
            &caller.access_token,
            Some(serde_json::json!({
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
            })),
        )
        .await;
    assert_eq!((changed.status, &changed.body), (204, &Value::Null));

    cluster
        .get_me(b, &other.access_token)
        .await
        .assert_could_not_validate("the other session's access token on B");
    assert_eq!(
        cluster.refresh(b, &other.refresh_token).await,
        (400, invalid_refresh_token()),
        "the other session's refresh token on B"
    );
    // The caller's session stays, on both instances.
    for base in [b, a] {
        let me = cluster.get_me(base, &caller.access_token).await;
        assert_eq!(me.status, 200, "{base}: {me:?}");
    }
    let (status, rotated) = cluster.refresh(b, &caller.refresh_token).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(
        cluster
            .get_me(a, rotated["access_token"].as_str().unwrap())
            .await
            .status,
        200
    );
    // The new password is the one both instances accept.
    assert_eq!(cluster.login(b, "johndoe", PASSWORD).await.status(), 401);
    assert_eq!(
        cluster.login(b, "johndoe", NEW_PASSWORD).await.status(),
        200
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn an_admin_password_reset_on_one_instance_ends_every_session_on_the_other_at_the_next_request()
 {
    let cluster = Cluster::start().await;
    cluster.create_admin("root", PASSWORD);
    cluster.create_user("johndoe", PASSWORD);
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let admin = cluster.admin_token(b, "root", PASSWORD).await;
    let sessions = [
        cluster.session(a, "johndoe", PASSWORD).await,
        cluster.session(b, "johndoe", PASSWORD).await,
    ];
    for session in &sessions {
        assert_eq!(cluster.get_me(a, &session.access_token).await.status, 200);
    }
    let id = cluster.id_of(a, &sessions[0].access_token).await;

    let reset = cluster
        .call(
            reqwest::Method::PUT,
            b,
            &format!("/admin/users/{id}/password"),
            &admin,
            Some(serde_json::json!({ "password": NEW_PASSWORD })),
        )
        .await;
    assert_eq!((reset.status, &reset.body), (204, &Value::Null));

    for (n, session) in sessions.iter().enumerate() {
        cluster
            .get_me(a, &session.access_token)
            .await
            .assert_could_not_validate(&format!("session {n}'s access token on A"));
        assert_eq!(
            cluster.refresh(a, &session.refresh_token).await,
            (400, invalid_refresh_token()),
            "session {n}'s refresh token on A"
        );
    }
    assert_eq!(cluster.login(a, "johndoe", PASSWORD).await.status(), 401);
    let fresh = cluster.session(a, "johndoe", NEW_PASSWORD).await;
    assert_eq!(cluster.get_me(b, &fresh.access_token).await.status, 200);
    // The admin's own session is untouched.
    assert_eq!(cluster.get_me(a, &admin).await.status, 200);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_deletion_on_one_instance_refuses_the_users_tokens_on_the_other_at_the_next_request() {
    let cluster = Cluster::start().await;
    cluster.create_admin("root", PASSWORD);
    cluster.create_user("johndoe", PASSWORD);
    cluster.create_user("janedoe", PASSWORD);
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);

    // Deleting one's own account through A.
    let caller = cluster.session(a, "johndoe", PASSWORD).await;
    let other = cluster.session(b, "johndoe", PASSWORD).await;
    for base in [a, b] {
        assert_eq!(cluster.get_me(base, &other.access_token).await.status, 200);
    }
    let deleted = cluster
        .call(
            reqwest::Method::DELETE,
            a,
            "/users/me",
            &caller.access_token,
            Some(serde_json::json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!((deleted.status, &deleted.body), (204, &Value::Null));

    cluster
        .get_me(b, &other.access_token)
        .await
        .assert_could_not_validate("the other session's access token on B");
    assert_eq!(
        cluster.refresh(b, &other.refresh_token).await,
        (400, invalid_refresh_token()),
        "the other session's refresh token on B"
    );
    cluster
        .get_me(b, &caller.access_token)
        .await
        .assert_could_not_validate("the deleting session's access token on B");
    assert_eq!(cluster.login(b, "johndoe", PASSWORD).await.status(), 401);

    // An admin deleting another account through B.
    let admin = cluster.admin_token(b, "root", PASSWORD).await;
    let jane = cluster.session(a, "janedoe", PASSWORD).await;
    let id = cluster.id_of(b, &jane.access_token).await;
    assert_eq!(cluster.get_me(a, &jane.access_token).await.status, 200);
    let removed = cluster
        .call(
            reqwest::Method::DELETE,
            b,
            &format!("/admin/users/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!((removed.status, &removed.body), (204, &Value::Null));

    cluster
        .get_me(a, &jane.access_token)
        .await
        .assert_could_not_validate("the deleted user's access token on A");
    assert_eq!(
        cluster.refresh(a, &jane.refresh_token).await,
        (400, invalid_refresh_token()),
        "the deleted user's refresh token on A"
    );
    assert_eq!(cluster.login(a, "janedoe", PASSWORD).await.status(), 401);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_disable_through_the_admin_api_on_one_instance_is_refused_on_the_other_at_the_next_request()
 {
    let cluster = Cluster::start().await;
    cluster.create_admin("root", PASSWORD);
    cluster.create_user("johndoe", PASSWORD);
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let admin_a = cluster.admin_token(a, "root", PASSWORD).await;
    let admin_b = cluster.admin_token(b, "root", PASSWORD).await;
    let token = cluster.token(b, "johndoe", PASSWORD).await;
    for base in [a, b] {
        assert_eq!(cluster.get_me(base, &token).await.status, 200);
    }
    let id = cluster.id_of(a, &token).await;

    let disabled = cluster
        .patch_user(a, &admin_a, &id, serde_json::json!({ "disabled": true }))
        .await;
    assert_eq!(disabled.status, 200, "{disabled:?}");
    assert_eq!(disabled.body["disabled"], true);

    let refused = cluster.get_me(b, &token).await;
    assert_eq!(
        (refused.status, &refused.body),
        (400, &serde_json::json!({"detail": "Inactive user"})),
        "on B"
    );
    let refused = cluster.get_me(a, &token).await;
    assert_eq!(refused.status, 400, "on A: {refused:?}");

    let enabled = cluster
        .patch_user(b, &admin_b, &id, serde_json::json!({ "disabled": false }))
        .await;
    assert_eq!(enabled.status, 200, "{enabled:?}");
    assert_eq!(enabled.body["disabled"], false);

    let back = cluster.get_me(a, &token).await;
    assert_eq!(back.status, 200, "the same token on A: {back:?}");
    assert_eq!(back.body["username"], "johndoe");
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn a_scope_removed_on_one_instance_is_refused_in_issued_tokens_on_the_other_at_the_next_request()
 {
    let cluster = Cluster::start().await;
    cluster.create_admin("root", PASSWORD);
    cluster.create_user("johndoe", PASSWORD);
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let admin = cluster.admin_token(a, "root", PASSWORD).await;
    let token = cluster.token(b, "johndoe", PASSWORD).await;
    for base in [a, b] {
        let items = cluster.get_items(base, &token).await;
        assert_eq!(items.status, 200, "{base}: {items:?}");
    }
    let id = cluster.id_of(a, &token).await;

    let changed = cluster
        .patch_user(a, &admin, &id, serde_json::json!({ "scopes": ["me"] }))
        .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(changed.body["scopes"], serde_json::json!(["me"]));

    let refused = cluster.get_items(b, &token).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(
        refused.body,
        serde_json::json!({"detail": "Not enough permissions"})
    );
    assert_eq!(
        refused.www_authenticate.as_deref(),
        Some(r#"Bearer scope="items""#)
    );
    let me = cluster.get_me(b, &token).await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["scopes"], serde_json::json!(["me"]));
    assert_eq!(cluster.get_items(a, &token).await.status, 401);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn two_admins_demoting_each_other_through_both_instances_at_once_leave_one_admin() {
    // Every round logs both admins in again: more than the default ten successful logins a
    // minute to one account when the machine is fast.
    let cluster = Cluster::start_with(&[(
        "PORTCULLIS_LOGIN_MAX_SUCCESSES_PER_ACCOUNT_PER_MINUTE",
        "1000",
    )])
    .await;
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let names = ["alice", "bob"];
    for name in names {
        cluster.create_admin(name, PASSWORD);
    }
    let everything = serde_json::json!({ "scopes": ["me", "items", "admin"], "disabled": false });
    for round in 0..6 {
        let tokens = [
            cluster.admin_token(a, names[0], PASSWORD).await,
            cluster.admin_token(b, names[1], PASSWORD).await,
        ];
        let ids = [
            cluster.id_of(a, &tokens[0]).await,
            cluster.id_of(b, &tokens[1]).await,
        ];
        let demotion = if round % 2 == 0 {
            serde_json::json!({ "scopes": ["me"] })
        } else {
            serde_json::json!({ "disabled": true })
        };

        // alice, through A, demotes bob while bob, through B, demotes alice.
        let (through_a, through_b) = tokio::join!(
            cluster.patch_user(a, &tokens[0], &ids[1], demotion.clone()),
            cluster.patch_user(b, &tokens[1], &ids[0], demotion.clone()),
        );
        let answers = [&through_a, &through_b];
        let won: Vec<_> = answers.iter().filter(|x| x.status == 200).collect();
        assert_eq!(won.len(), 1, "round {round}: {answers:?}");
        let lost = answers.iter().find(|x| x.status != 200).unwrap();
        let refusal = (lost.status, &lost.body);
        assert!(
            refusal
                == (
                    409,
                    &serde_json::json!({"detail": "Cannot remove the last admin"})
                )
                || refusal
                    == (
                        401,
                        &serde_json::json!({"detail": "Not enough permissions"})
                    )
                || refusal == (400, &serde_json::json!({"detail": "Inactive user"})),
            "round {round}: {answers:?}"
        );
        let winner = usize::from(through_a.status != 200);
        let loser = 1 - winner;

        // The winner is the only active admin, seen from both instances; the loser is demoted.
        for base in [a, b] {
            assert_eq!(
                cluster.active_admins(base, &tokens[winner]).await,
                [names[winner]],
                "round {round}, {base}"
            );
        }
        let (status, body) = cluster.admin_login(b, names[loser], PASSWORD).await;
        assert_eq!(status, 400, "round {round}: {body}");
        let listed = cluster.users(&["list"], None);
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        // Columns: id, username, status, then the space-separated scopes, last login, e-mail.
        let active_admins: Vec<_> = listed
            .lines()
            .skip(1)
            .filter(|line| {
                let columns: Vec<_> = line.split_whitespace().collect();
                columns[2] == "active" && columns[3..].contains(&"admin")
            })
            .collect();
        assert_eq!(active_admins.len(), 1, "round {round}: {listed}");
        assert!(
            active_admins[0].contains(names[winner]),
            "round {round}: {listed}"
        );

        // Make the loser an admin again for the next round.
        let restored = cluster
            .patch_user(a, &tokens[winner], &ids[loser], everything.clone())
            .await;
        assert_eq!(restored.status, 200, "round {round}: {restored:?}");
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn creations_of_one_name_through_both_instances_at_once_get_one_201_and_one_409() {
    let cluster = Cluster::start_with(&[("PORTCULLIS_SIGNUP", "true")]).await;
    cluster.create_admin("root", PASSWORD);
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let admin = cluster.admin_token(a, "root", PASSWORD).await;
    // Each side is an admin creation or a signup.
    let rounds = [
        (true, true),
        (true, true),
        (false, false),
        (false, true),
        (true, false),
    ];
    for (round, (admin_on_a, admin_on_b)) in rounds.into_iter().enumerate() {
        let create = |base: &str, by_admin: bool, username: String| {
            let body = serde_json::json!({ "username": username, "password": NEW_PASSWORD });
            let request = if by_admin {
                cluster
                    .client
                    .post(format!("{base}/admin/users"))
                    .bearer_auth(&admin)
            } else {
                cluster.client.post(format!("{base}/users/signup"))
            };
            Answer::of(request.json(&body))
        };
        let (through_a, through_b) = tokio::join!(
            create(a, admin_on_a, format!("Racer{round}")),
            create(b, admin_on_b, format!("rACER{round}")),
        );
        let answers = [&through_a, &through_b];
        let mut statuses: Vec<_> = answers.iter().map(|x| x.status).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: {answers:?}");
        let lost = answers.iter().find(|x| x.status == 409).unwrap();
        assert_eq!(
            lost.body,
            serde_json::json!({"detail": "Username already taken"}),
            "round {round}"
        );
        let won = answers.iter().find(|x| x.status == 201).unwrap();
        let spelling = won.body["username"].as_str().unwrap().to_owned();

        // One account, which logs in on both instances.
        let page = cluster
            .call(
                reqwest::Method::GET,
                b,
                &format!("/admin/users?q=racer{round}"),
                &admin,
                None,
            )
            .await;
        assert_eq!(page.status, 200, "{page:?}");
        let listed: Vec<_> = page.body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|user| user["username"].as_str().unwrap())
            .collect();
        assert_eq!(listed, [spelling.as_str()], "round {round}");
        for base in [a, b] {
            let name = format!("racer{round}");
            assert_eq!(cluster.login(base, &name, NEW_PASSWORD).await.status(), 200);
        }
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn both_instances_write_to_one_audit_log() {
    let cluster = Cluster::start().await;
    cluster.create_user("johndoe", "secret");
    let admin = cluster.users(
        &[
            "create",
            "root",
            "--admin",
            "--password-stdin",
            "--allow-weak-password",
        ],
        Some("root-secret"),
    );
    assert!(admin.status.success());
    let (a, b) = (cluster.a.base_url.clone(), cluster.b.base_url.clone());
    for (base, id) in [(&a, "on-a"), (&b, "on-b")] {
        let response = cluster
            .client
            .post(format!("{base}/token"))
            .header("X-Request-Id", id)
            .form(&[("username", "johndoe"), ("password", "secret")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let admin_token = cluster
        .client
        .post(format!("{a}/token"))
        .form(&[
            ("username", "root"),
            ("password", "root-secret"),
            ("scope", "admin"),
        ])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Each instance reads the other's events: one log.
    for base in [&a, &b] {
        let mut request_ids = Vec::new();
        for _ in 0..600 {
            let page: Value = cluster
                .client
                .get(format!("{base}/admin/audit-events?type=login.succeeded"))
                .bearer_auth(&admin_token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            request_ids = page["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["request_id"].as_str().map(str::to_owned))
                .filter(|id| id.starts_with("on-"))
                .collect();
            if request_ids.len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        request_ids.sort();
        assert_eq!(request_ids, ["on-a", "on-b"], "read on {base}");
    }
    // And the command line reads the same log, with both creations it made.
    let output = cluster.cli("audit", &["--json", "--type", "user.created"], None);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
}

// --- API keys ---------------------------------------------------------------------------------

impl Cluster {
    /// Two instances sharing one SQLite file (migrated first, by the command line).
    fn start_on_sqlite() -> Self {
        let workspace = Workspace::new();
        let database_url = format!(
            "sqlite://{}?mode=rwc",
            workspace.path().join("shared.db").display()
        );
        let migrated = workspace
            .command()
            .arg("migrate")
            .env("DATABASE_URL", &database_url)
            .output()
            .unwrap();
        assert!(
            migrated.status.success(),
            "{}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        Self::start_on(database_url, workspace, &[])
    }

    async fn items(&self, base: &str, credential: &str) -> (u16, Value) {
        let url = format!("{base}/users/me/items");
        self.send(reqwest::Method::GET, url, credential, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        credential: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, url).bearer_auth(credential);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A key created on one instance works on the other, and every change that refuses it — a
/// removed scope, a disabled user, a deletion by the API or by the command line — is refused
/// by both at their next request.
async fn api_keys_are_refused_on_every_instance_at_the_next_request(cluster: Cluster) {
    use reqwest::Method;
    use serde_json::json;
    cluster.create_user("robot", "secret");
    let (a, b) = (&cluster.a.base_url, &cluster.b.base_url);
    let token = cluster.token(a, "robot", "secret").await;
    let new_key = |name: &str| json!({ "name": name });
    let url = format!("{a}/users/me/api-keys");
    let (status, first) = cluster
        .send(Method::POST, url.clone(), &token, Some(new_key("first")))
        .await;
    assert_eq!(status, 201, "{first}");
    let (_, second) = cluster
        .send(Method::POST, url, &token, Some(new_key("second")))
        .await;
    let (first_key, second_key) = (
        first["key"].as_str().unwrap(),
        second["key"].as_str().unwrap(),
    );
    for base in [a, b] {
        assert_eq!(cluster.me(base, first_key).await.0, 200);
        assert_eq!(cluster.items(base, second_key).await.0, 200);
    }

    // Deleted through instance b: refused by a.
    let id = first["id"].as_str().unwrap();
    let (status, _) = cluster
        .send(
            Method::DELETE,
            format!("{b}/users/me/api-keys/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 204);
    for base in [a, b] {
        assert_eq!(
            cluster.me(base, first_key).await,
            (401, could_not_validate())
        );
    }

    // A scope taken from the user at the command line: refused by both.
    let output = cluster.users(&["update", "robot", "--scopes", "me"], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for base in [a, b] {
        assert_eq!(
            cluster.items(base, second_key).await,
            (401, json!({ "detail": "Not enough permissions" }))
        );
        assert_eq!(cluster.me(base, second_key).await.0, 200);
    }

    // Disabled at the command line: refused by both.
    assert!(cluster.users(&["disable", "robot"], None).status.success());
    for base in [a, b] {
        assert_eq!(
            cluster.me(base, second_key).await,
            (400, json!({ "detail": "Inactive user" }))
        );
    }
    assert!(cluster.users(&["enable", "robot"], None).status.success());

    // Deleted at the command line: refused by both.
    let id = second["id"].as_str().unwrap();
    let output = cluster.cli("api-keys", &["delete", id], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for base in [a, b] {
        assert_eq!(
            cluster.me(base, second_key).await,
            (401, could_not_validate())
        );
    }

    // A key made at the command line works on both, until its user is deleted.
    let output = cluster.cli("api-keys", &["create", "robot", "--name", "cli"], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cli_key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    for base in [a, b] {
        assert_eq!(cluster.me(base, &cli_key).await.0, 200);
    }
    assert!(cluster.users(&["delete", "robot"], None).status.success());
    for base in [a, b] {
        assert_eq!(
            cluster.me(base, &cli_key).await,
            (401, could_not_validate())
        );
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL); CI runs it"]
async fn api_keys_are_refused_on_every_instance_on_postgres() {
    api_keys_are_refused_on_every_instance_at_the_next_request(Cluster::start().await).await;
}

#[tokio::test]
async fn api_keys_are_refused_on_every_instance_on_one_sqlite_file() {
    api_keys_are_refused_on_every_instance_at_the_next_request(Cluster::start_on_sqlite()).await;
}
