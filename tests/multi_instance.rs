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
        let workspace = Workspace::new();
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
        let output = self.users(&["create", username, "--password-stdin"], Some(password));
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
                scope.spawn(|| cluster.users(&["create", name, "--password-stdin"], Some("pw")))
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
