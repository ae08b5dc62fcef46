//! The command line, run as a user would: exit codes and messages of every failure, and the
//! README's serve command end to end.

mod common;

use std::{
    io::Write as _,
    process::{Output, Stdio},
};

use common::{ServerProcess, Workspace};

trait RunExt {
    fn run(&self, args: &[&str]) -> Output;
    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output;
}

impl RunExt for Workspace {
    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_weak_configured_secret_stops_the_service_at_start() {
    let ws = Workspace::new();
    let output = ws
        .command()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("PORTCULLIS_JWT_SECRET", "too-short-a-secret")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("PORTCULLIS_JWT_SECRET is too weak: it has 18 bytes, at least 32 (256 bits) are required"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_user_is_created_listed_disabled_enabled_and_deleted() {
    let ws = Workspace::new();
    let created = ws.run_with_stdin(
        &[
            "users",
            "create",
            "JaneRoe",
            "--email",
            "jane@example.com",
            "--full-name",
            "Jane Roe",
            "--password-stdin",
        ],
        "correct horse\n",
    );
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(stdout(&created).starts_with("created user JaneRoe ("));

    let listed = ws.run(&["users", "list"]);
    assert!(listed.status.success());
    let line = stdout(&listed)
        .lines()
        .find(|l| l.contains("JaneRoe"))
        .map(str::to_owned);
    let line = line.expect("the new user is listed");
    assert!(
        line.contains("active") && line.contains("me items") && line.contains("jane@example.com"),
        "{line}"
    );

    let disabled = ws.run(&["users", "disable", "janeroe"]);
    assert!(disabled.status.success(), "{}", stderr(&disabled));
    assert!(stdout(&ws.run(&["users", "list"])).contains("disabled"));
    assert!(ws.run(&["users", "enable", "JANEROE"]).status.success());
    let deleted = ws.run(&["users", "delete", "JaneRoe"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(!stdout(&ws.run(&["users", "list"])).contains("JaneRoe"));
}

#[test]
fn serve_refuses_a_metrics_bind_that_is_no_socket_address() {
    let ws = Workspace::new();
    let output = ws
        .command()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("PORTCULLIS_METRICS_BIND", "localhost:9100")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(
            "PORTCULLIS_METRICS_BIND must be a socket address such as 127.0.0.1:9100 or \
             [::1]:9100, not \"localhost:9100\""
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_duplicate_username_in_any_case_is_refused() {
    let ws = Workspace::new();
    assert!(
        ws.run_with_stdin(
            &[
                "users",
                "create",
                "johndoe",
                "--password-stdin",
                "--allow-weak-password"
            ],
            "pw",
        )
        .status
        .success()
    );
    let output = ws.run_with_stdin(
        &[
            "users",
            "create",
            "JohnDoe",
            "--password-stdin",
            "--allow-weak-password",
        ],
        "pw",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim(),
        r#"error: a user named "JohnDoe" already exists (usernames are compared without regard to case)"#
    );
}

#[test]
fn a_lookalike_of_an_existing_username_is_refused_as_taken() {
    let ws = Workspace::new();
    assert!(
        ws.run_with_stdin(
            &[
                "users",
                "create",
                "johndoe",
                "--password-stdin",
                "--allow-weak-password"
            ],
            "pw",
        )
        .status
        .success()
    );
    // Cyrillic ј, full width, and upper case: each is johndoe to a reader.
    for lookalike in ["јohndoe", "ｊｏｈｎｄｏｅ", "JOHNDOE"] {
        let output = ws.run_with_stdin(
            &[
                "users",
                "create",
                lookalike,
                "--password-stdin",
                "--allow-weak-password",
            ],
            "pw",
        );
        assert_eq!(output.status.code(), Some(1), "{lookalike}");
        assert_eq!(
            stderr(&output).trim(),
            format!(
                "error: a user named {lookalike:?} already exists (usernames are compared \
                 without regard to case)"
            ),
        );
    }
    let listed = stdout(&ws.run(&["users", "list"]));
    assert_eq!(listed.matches("johndoe").count(), 1, "{listed}");
}

#[test]
fn unknown_users_are_reported_by_name() {
    let ws = Workspace::new();
    for action in ["disable", "enable", "logout", "delete"] {
        let output = ws.run(&["users", action, "nobody"]);
        assert_eq!(output.status.code(), Some(1), "{action}");
        assert_eq!(
            stderr(&output).trim(),
            r#"error: no user named "nobody""#,
            "{action}"
        );
    }
}

#[test]
fn a_password_is_never_taken_from_the_command_line() {
    let ws = Workspace::new();
    let output = ws.run(&["users", "create", "someone"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--password-stdin"));
    let empty = ws.run_with_stdin(&["users", "create", "someone", "--password-stdin"], "");
    assert_eq!(empty.status.code(), Some(1));
    assert!(stderr(&empty).contains("no password on standard input"));
}

#[test]
fn invalid_usernames_and_scopes_are_refused() {
    let ws = Workspace::new();
    let name = ws.run_with_stdin(&["users", "create", "john doe", "--password-stdin"], "pw");
    assert_eq!(name.status.code(), Some(1));
    assert!(
        stderr(&name).contains("invalid username"),
        "{}",
        stderr(&name)
    );
    let scope = ws.run_with_stdin(
        &[
            "users",
            "create",
            "john",
            "--scopes",
            "me,root",
            "--password-stdin",
        ],
        "pw",
    );
    assert_eq!(scope.status.code(), Some(1));
    assert!(
        stderr(&scope).contains(r#"unknown scope "root""#),
        "{}",
        stderr(&scope)
    );
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let ws = Workspace::new();
    let output = ws
        .command()
        .args(["users", "list"])
        .env(
            "DATABASE_URL",
            "postgres://portcullis:hunter2@127.0.0.1:1/nowhere",
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.starts_with(
            "error: cannot connect to the database at postgres://portcullis:***@127.0.0.1:1/nowhere"
        ),
        "{message}"
    );
    assert!(
        !message.contains("hunter2"),
        "the password must not be printed"
    );
}

#[test]
fn the_openapi_command_prints_the_served_document() {
    let ws = Workspace::new();
    let output = ws.run(&["openapi"]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), portcullis::api::openapi_document());
}

#[test]
fn serve_demo_prints_its_addresses_serves_the_demo_user_and_stops_on_sigterm() {
    let ws = Workspace::new();
    let mut command = ws.command();
    command.args(["serve", "--demo", "--bind", "127.0.0.1:0"]);
    let server = ServerProcess::start(command);
    let base = server.base_url.clone();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!(
        server.banner,
        [
            "demo users: johndoe / secret (active), alice / secret2 (disabled), admin / secret3 (admin)"
                .to_owned(),
            "signup: on (POST /users/signup)".to_owned(),
            format!("Swagger UI: {base}/docs"),
        ]
    );
    assert!(
        ws.path().join("data/portcullis.db").exists(),
        "the SQLite file is created"
    );
    assert!(
        ws.path().join("data/jwt-secret").exists(),
        "the secret is generated"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let login = |body: &'static str| {
            client
                .post(format!("{base}/token"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
        };
        assert_eq!(
            login("username=johndoe&password=secret")
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            login("username=alice&password=secret2")
                .await
                .unwrap()
                .status(),
            400,
            "alice is disabled"
        );
    });

    assert!(server.terminate(), "a SIGTERM is a clean shutdown");
}

#[test]
fn a_key_id_beginning_with_a_hyphen_is_taken_as_the_key_id() {
    // Key ids are base64url: one in 64 begins with `-`, and must not be read as an option.
    let ws = Workspace::new();
    let output = ws.run(&["keys", "retire", "-bNoSuchKey"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("unexpected argument"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("-bNoSuchKey"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn serve_demo_leaves_signup_off_when_it_is_set_off() {
    let ws = Workspace::new();
    let mut command = ws.command();
    command
        .args(["serve", "--demo", "--bind", "127.0.0.1:0"])
        .env("PORTCULLIS_SIGNUP", "false");
    let server = ServerProcess::start(command);
    let base = server.base_url.clone();
    assert_eq!(server.banner[1], "signup: off (PORTCULLIS_SIGNUP=false)");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, body) = runtime.block_on(async {
        let answer = reqwest::Client::new()
            .post(format!("{base}/users/signup"))
            .json(&serde_json::json!({ "username": "newcomer", "password": "Vx7#qL2!kT9@" }))
            .send()
            .await
            .unwrap();
        (answer.status(), answer.text().await.unwrap())
    });
    assert_eq!(status, 403);
    assert_eq!(body, r#"{"detail":"Signup is disabled"}"#);
    assert!(server.terminate());
}

/// The kid printed by `keys rotate` (`created signing key <kid> (<algorithm>)`).
fn rotated_kid(output: &Output, algorithm: &str) -> String {
    assert!(output.status.success(), "{}", stderr(output));
    let text = stdout(output);
    let mut lines = text.lines();
    let kid = lines
        .next()
        .and_then(|line| line.strip_prefix("created signing key "))
        .and_then(|rest| rest.strip_suffix(&format!(" ({algorithm})")))
        .unwrap_or_else(|| panic!("unexpected output {text:?}"))
        .to_owned();
    assert_eq!(
        lines.collect::<Vec<_>>(),
        [format!(
            "instances whose PORTCULLIS_SIGNING_ALGORITHM is {algorithm} sign new tokens with it \
             from now on (the others only publish it); tokens signed with older keys stay valid \
             until those keys are retired"
        )]
    );
    // A SHA-256 thumbprint in base64url.
    assert_eq!(kid.len(), 43, "{kid}");
    assert!(
        kid.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{kid}"
    );
    kid
}

/// `keys list` as rows of (kid, algorithm, status), after checking the header and dates.
fn listed_keys(ws: &Workspace) -> Vec<(String, String, String)> {
    let output = ws.run(&["keys", "list"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["kid", "algorithm", "created", "status"]);
    lines
        .map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let [kid, algorithm, created, ref status @ ..] = columns[..] else {
                panic!("unexpected row {line:?}");
            };
            let status = status.join(" ");
            assert!(
                created.len() == 20 && created.ends_with('Z') && created.contains('T'),
                "{created}"
            );
            (kid.to_owned(), algorithm.to_owned(), status)
        })
        .collect()
}

#[test]
fn signing_keys_are_rotated_listed_and_retired() {
    let ws = Workspace::new();
    assert_eq!(listed_keys(&ws), []);

    let ed = rotated_kid(&ws.run(&["keys", "rotate"]), "EdDSA");
    let es = rotated_kid(
        &ws.run(&["keys", "rotate", "--algorithm", "ES256"]),
        "ES256",
    );
    let ed2 = rotated_kid(
        &ws.run(&["keys", "rotate", "--algorithm", "EdDSA"]),
        "EdDSA",
    );
    // The newest key of each algorithm is current: it signs where that algorithm is configured.
    assert_eq!(
        listed_keys(&ws),
        [
            (ed2.clone(), "EdDSA".to_owned(), "current".to_owned()),
            (es.clone(), "ES256".to_owned(), "current".to_owned()),
            (ed.clone(), "EdDSA".to_owned(), "active".to_owned()),
        ]
    );

    let retired = ws.run(&["keys", "retire", &ed]);
    assert!(retired.status.success(), "{}", stderr(&retired));
    assert_eq!(
        stdout(&retired),
        format!("retired signing key {ed}: the tokens it signed are refused from now on\n")
    );
    let again = ws.run(&["keys", "retire", &ed]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stdout(&again),
        format!("signing key {ed} was already retired\n")
    );
    let listed = listed_keys(&ws);
    assert_eq!(
        listed[..2],
        [
            (ed2.clone(), "EdDSA".into(), "current".into()),
            (es.clone(), "ES256".into(), "current".into())
        ]
    );
    assert_eq!(
        (&listed[2].0, listed[2].2.split_once(' ').unwrap().0),
        (&ed, "retired")
    );

    // The last key of an algorithm: its instances will create one.
    let last = ws.run(&["keys", "retire", &es]);
    assert!(last.status.success(), "{}", stderr(&last));
    assert_eq!(
        stdout(&last),
        format!(
            "retired signing key {es}: the tokens it signed are refused from now on\n\
             no ES256 signing key is active now: instances whose PORTCULLIS_SIGNING_ALGORITHM is \
             ES256 create a new one at their next login\n"
        )
    );
}

#[test]
fn retiring_an_unknown_key_is_an_error() {
    let ws = Workspace::new();
    let output = ws.run(&["keys", "retire", "no-such-kid"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim(),
        r#"error: no signing key with kid "no-such-kid""#
    );
    assert_eq!(stdout(&output), "");
}

#[test]
fn a_rotated_key_has_the_configured_asymmetric_algorithm_and_never_hs256() {
    let ws = Workspace::new();
    let output = ws
        .command()
        .args(["keys", "rotate"])
        .env("PORTCULLIS_SIGNING_ALGORITHM", "ES256")
        .output()
        .unwrap();
    rotated_kid(&output, "ES256");

    let refused = ws.run(&["keys", "rotate", "--algorithm", "HS256"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("invalid value 'HS256' for '--algorithm <ALGORITHM>'"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn a_server_signs_with_the_rotated_key_and_refuses_to_start_under_another_secret() {
    const SECRET: &str = "the-secret-the-key-was-created-under-0123456789";
    let ws = Workspace::new();
    let rotate = ws
        .command()
        .args(["keys", "rotate"])
        .env("PORTCULLIS_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    let kid = rotated_kid(&rotate, "EdDSA");
    let created = ws.run_with_stdin(
        &[
            "users",
            "create",
            "johndoe",
            "--password-stdin",
            "--allow-weak-password",
        ],
        "secret",
    );
    assert!(created.status.success(), "{}", stderr(&created));

    let refused = ws
        .command()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("PORTCULLIS_SIGNING_ALGORITHM", "EdDSA")
        .env(
            "PORTCULLIS_JWT_SECRET",
            "another-secret-of-at-least-thirty-two-bytes",
        )
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        stderr(&refused).trim(),
        format!(
            "error: cannot sign with the current signing key {kid}: it is not authentic under \
             the configured JWT secret. Every instance needs the JWT secret \
             (PORTCULLIS_JWT_SECRET or PORTCULLIS_JWT_SECRET_FILE) the key was created under; \
             restore it, or run `portcullis keys rotate --force` to create a key under the \
             configured one"
        )
    );

    let mut command = ws.command();
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("PORTCULLIS_SIGNING_ALGORITHM", "EdDSA")
        .env("PORTCULLIS_JWT_SECRET", SECRET);
    let server = ServerProcess::start(command);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let token: serde_json::Value = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/token", server.base_url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("username=johndoe&password=secret")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let header = jsonwebtoken::decode_header(token["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid, Some(kid));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert!(server.terminate());
}

const SERVERS_SECRET: &str = "the-secret-every-server-is-configured-with-0123";

/// `keys rotate` with `PORTCULLIS_JWT_SECRET` set to `secret`, or without it (the data
/// directory's generated secret, as in an operator's shell that lacks it).
fn rotate_under(ws: &Workspace, secret: Option<&str>, extra: &[&str]) -> Output {
    let mut command = ws.command();
    command.args(["keys", "rotate"]).args(extra);
    if let Some(secret) = secret {
        command.env("PORTCULLIS_JWT_SECRET", secret);
    }
    command.output().unwrap()
}

#[test]
fn keys_rotate_under_another_secret_is_refused_unless_forced() {
    let ws = Workspace::new();
    let kid = rotated_kid(&rotate_under(&ws, Some(SERVERS_SECRET), &[]), "EdDSA");

    // Without the servers' secret: refused, whichever algorithm, and nothing is created.
    for extra in [
        &[][..],
        &["--algorithm", "ES256"],
        &["--algorithm", "EdDSA"],
    ] {
        let refused = rotate_under(&ws, None, extra);
        assert_eq!(refused.status.code(), Some(1), "{extra:?}");
        assert_eq!(stdout(&refused), "", "{extra:?}");
        assert_eq!(
            stderr(&refused),
            format!(
                "error: the configured JWT secret does not open the stored signing keys (the \
                 newest, {kid}, does not decrypt with it): set PORTCULLIS_JWT_SECRET or \
                 PORTCULLIS_JWT_SECRET_FILE to the secret the servers use, or pass --force if the \
                 secret was changed on purpose\n"
            ),
            "{extra:?}"
        );
    }
    assert_eq!(listed_keys(&ws).len(), 1);

    // With it, or forced under another: created.
    rotated_kid(&rotate_under(&ws, Some(SERVERS_SECRET), &[]), "EdDSA");
    let forced = rotated_kid(&rotate_under(&ws, None, &["--force"]), "EdDSA");
    assert_eq!(listed_keys(&ws)[0].0, forced);
    // The forced key is the newest: now the servers' secret is the one refused.
    assert_eq!(
        rotate_under(&ws, Some(SERVERS_SECRET), &[]).status.code(),
        Some(1)
    );
}

#[test]
fn a_running_server_skips_a_newer_key_it_cannot_decrypt() {
    let ws = Workspace::new();
    let created = ws.run_with_stdin(
        &[
            "users",
            "create",
            "johndoe",
            "--password-stdin",
            "--allow-weak-password",
        ],
        "secret",
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let mut command = ws.command();
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("PORTCULLIS_SIGNING_ALGORITHM", "EdDSA")
        .env("PORTCULLIS_JWT_SECRET", SERVERS_SECRET);
    let server = ServerProcess::start(command);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let login = || {
        runtime.block_on(async {
            let response = reqwest::Client::new()
                .post(format!("{}/token", server.base_url))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("username=johndoe&password=secret")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body: serde_json::Value = response.json().await.unwrap();
            let token = body["access_token"].as_str().unwrap().to_owned();
            jsonwebtoken::decode_header(&token).unwrap().kid.unwrap()
        })
    };
    let kid = login();

    // An operator's shell without PORTCULLIS_JWT_SECRET: refused, then forced.
    assert_eq!(rotate_under(&ws, None, &[]).status.code(), Some(1));
    let unreadable = rotated_kid(&rotate_under(&ws, None, &["--force"]), "EdDSA");

    // The server goes on signing with the newest key it can decrypt, not 500.
    assert_ne!(unreadable, kid);
    for _ in 0..3 {
        assert_eq!(login(), kid);
    }
    assert!(server.terminate());
}

/// Logs johndoe in; the access and refresh tokens.
async fn demo_login(client: &reqwest::Client, base: &str) -> (String, String) {
    let response = client
        .post(format!("{base}/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("username=johndoe&password=secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn status_of_me(client: &reqwest::Client, base: &str, token: &str) -> u16 {
    let response = client
        .get(format!("{base}/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

async fn status_of_refresh(client: &reqwest::Client, base: &str, refresh_token: &str) -> u16 {
    let response = client
        .post(format!("{base}/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={refresh_token}"
        ))
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[test]
fn users_logout_ends_every_session_of_the_user_at_once() {
    let ws = Workspace::new();
    let mut command = ws.command();
    command.args(["serve", "--demo", "--bind", "127.0.0.1:0"]);
    let server = ServerProcess::start(command);
    let base = server.base_url.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let sessions = runtime.block_on(async {
        let first = demo_login(&client, &base).await;
        let second = demo_login(&client, &base).await;
        assert_eq!(status_of_me(&client, &base, &first.0).await, 200);
        [first, second]
    });

    let output = ws.run(&["users", "logout", "JohnDoe"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "ended 2 session(s) of user JohnDoe\n");

    runtime.block_on(async {
        for (access, refresh) in &sessions {
            assert_eq!(status_of_me(&client, &base, access).await, 401);
            assert_eq!(status_of_refresh(&client, &base, refresh).await, 400);
        }
    });
    let again = ws.run(&["users", "logout", "johndoe"]);
    assert_eq!(stdout(&again), "ended 0 session(s) of user johndoe\n");
    assert!(server.terminate());
}

#[test]
fn an_access_token_lifetime_beyond_its_bound_stops_serve_at_start() {
    let ws = Workspace::new();
    let output = ws
        .command()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("PORTCULLIS_ACCESS_TOKEN_TTL", "18446744073709551615")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim(),
        "error: PORTCULLIS_ACCESS_TOKEN_TTL must be between 1 and 86400 seconds, not 18446744073709551615"
    );
}

#[test]
fn an_origin_allow_list_that_browsers_could_never_match_stops_serve_at_start() {
    let ws = Workspace::new();
    let output = ws
        .command()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env(
            "PORTCULLIS_CORS_ALLOWED_ORIGINS",
            "https://app.example.com,https://admin.example.com/",
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(
            r#"error: PORTCULLIS_CORS_ALLOWED_ORIGINS: "https://admin.example.com/" is not an origin"#
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_never_prints_the_secrets_set_in_the_environment() {
    let ws = Workspace::new();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["users", "list", "--help"],
    ] {
        let output = ws
            .command()
            .args(args)
            .env("DATABASE_URL", "postgres://app:hunter2@db/auth")
            .env(
                "PORTCULLIS_JWT_SECRET",
                "a-jwt-secret-of-at-least-32-bytes-long",
            )
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        let help = stdout(&output);
        assert!(help.contains("[env: DATABASE_URL]"), "{args:?}: {help}");
        assert!(!help.contains("hunter2"), "{args:?}: {help}");
        assert!(!help.contains("a-jwt-secret"), "{args:?}: {help}");
    }
}

#[cfg(unix)]
#[test]
fn serve_creates_its_data_directory_database_and_secret_for_its_user_only() {
    use std::os::unix::fs::PermissionsExt as _;

    let ws = Workspace::new();
    let mut command = ws.command();
    command.args(["serve", "--demo", "--bind", "127.0.0.1:0"]);
    let server = ServerProcess::start(command);
    let mode = |name: &str| {
        std::fs::metadata(ws.path().join(name))
            .unwrap_or_else(|err| panic!("{name}: {err}"))
            .permissions()
            .mode()
            & 0o777
    };
    // While the server runs, the write-ahead log and its index exist beside the database.
    assert_eq!(mode("data"), 0o700, "data");
    for name in [
        "data/portcullis.db",
        "data/portcullis.db-wal",
        "data/portcullis.db-shm",
        "data/jwt-secret",
    ] {
        assert_eq!(mode(name), 0o600, "{name}");
    }
    drop(server);
}

/// Logs `username` in with `password`; the status, and the access and refresh tokens on success.
async fn login(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> (u16, Option<(String, String)>) {
    let response = client
        .post(format!("{base}/token"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    let body: serde_json::Value = response.json().await.unwrap();
    let tokens = (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    );
    (status, Some(tokens))
}

/// `GET /users/me` with `token`: the status and the body.
async fn me(client: &reqwest::Client, base: &str, token: &str) -> (u16, serde_json::Value) {
    let response = client
        .get(format!("{base}/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The id printed by `users create` (`created user <name> (<id>)`).
fn created_id(output: &Output) -> String {
    assert!(output.status.success(), "{}", stderr(output));
    let text = stdout(output);
    text.trim_end()
        .rsplit_once(" (")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected output {text:?}"))
        .to_owned()
}

const POLICY_HINT: &str =
    "(for a demo or test account only, pass --allow-weak-password to skip the policy)";

#[test]
fn users_set_password_applies_the_policy_unless_allowed_and_ends_every_session() {
    let ws = Workspace::new();
    let mut command = ws.command();
    command.args(["serve", "--demo", "--bind", "127.0.0.1:0"]);
    let server = ServerProcess::start(command);
    let base = server.base_url.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let sessions = runtime.block_on(async {
        let first = demo_login(&client, &base).await;
        let second = demo_login(&client, &base).await;
        [first, second]
    });

    // The policy refuses, says how to skip it, and changes nothing.
    let short = ws.run_with_stdin(
        &["users", "set-password", "johndoe", "--password-stdin"],
        "short\n",
    );
    assert_eq!(short.status.code(), Some(1));
    assert_eq!(
        stderr(&short),
        format!(
            "error: password refused: Password should have at least 8 characters {POLICY_HINT}\n"
        )
    );
    assert_eq!(stdout(&short), "");
    let common = ws.run_with_stdin(
        &["users", "set-password", "johndoe", "--password-stdin"],
        "password",
    );
    assert_eq!(common.status.code(), Some(1));
    let message = stderr(&common);
    assert!(
        message.starts_with("error: password refused: Password is too easy to guess: ")
            && message.ends_with(&format!(" {POLICY_HINT}\n"))
            && message.lines().count() == 1,
        "{message}"
    );
    runtime.block_on(async {
        for (access, _) in &sessions {
            assert_eq!(me(&client, &base, access).await.0, 200);
        }
    });

    // Skipping the policy: set, and every session ends.
    let weak = ws.run_with_stdin(
        &[
            "users",
            "set-password",
            "JohnDoe",
            "--password-stdin",
            "--allow-weak-password",
        ],
        "tiny\n",
    );
    assert!(weak.status.success(), "{}", stderr(&weak));
    assert_eq!(
        stdout(&weak),
        "password set for user johndoe; ended 2 session(s)\n"
    );
    let after = runtime.block_on(async {
        for (access, refresh) in &sessions {
            let (status, body) = me(&client, &base, access).await;
            assert_eq!(status, 401);
            assert_eq!(
                body,
                serde_json::json!({"detail": "Could not validate credentials"})
            );
            assert_eq!(status_of_refresh(&client, &base, refresh).await, 400);
        }
        assert_eq!(login(&client, &base, "johndoe", "secret").await.0, 401);
        let (status, tokens) = login(&client, &base, "johndoe", "tiny").await;
        assert_eq!(status, 200);
        tokens.unwrap()
    });

    // A password the policy accepts needs no flag; the new session ends too.
    let strong = ws.run_with_stdin(
        &["users", "set-password", "johndoe", "--password-stdin"],
        "Vx7#qL2!",
    );
    assert!(strong.status.success(), "{}", stderr(&strong));
    assert_eq!(
        stdout(&strong),
        "password set for user johndoe; ended 1 session(s)\n"
    );
    runtime.block_on(async {
        assert_eq!(me(&client, &base, &after.0).await.0, 401);
        assert_eq!(login(&client, &base, "johndoe", "tiny").await.0, 401);
        assert_eq!(login(&client, &base, "johndoe", "Vx7#qL2!").await.0, 200);
    });
    assert!(server.terminate());
}

#[test]
fn users_set_password_reads_the_password_from_standard_input_only() {
    let ws = Workspace::new();
    let created = ws.run_with_stdin(
        &[
            "users",
            "create",
            "johndoe",
            "--password-stdin",
            "--allow-weak-password",
        ],
        "secret",
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let missing = ws.run(&["users", "set-password", "johndoe"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("--password-stdin"),
        "{}",
        stderr(&missing)
    );
    let on_the_line = ws.run(&["users", "set-password", "johndoe", "hunter2"]);
    assert_eq!(on_the_line.status.code(), Some(2));
    let empty = ws.run_with_stdin(
        &["users", "set-password", "johndoe", "--password-stdin"],
        "",
    );
    assert_eq!(empty.status.code(), Some(1));
    assert_eq!(
        stderr(&empty),
        "error: no password on standard input (pipe it in, e.g. `printf '%s' \"$PASSWORD\" | \
         portcullis users set-password …`)\n"
    );
}

#[test]
fn users_update_changes_and_clears_each_field() {
    let ws = Workspace::new();
    let id = created_id(&ws.run_with_stdin(
        &[
            "users",
            "create",
            "JaneRoe",
            "--email",
            "jane@example.com",
            "--full-name",
            "Jane Roe",
            "--password-stdin",
        ],
        "correct horse",
    ));
    let update = |args: &[&str]| {
        let output = ws.run(&[&["users", "update", "janeroe"][..], args].concat());
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        stdout(&output)
    };
    assert_eq!(
        update(&["--email", "jane.roe@example.org"]),
        format!(
            "updated user JaneRoe ({id}): email jane.roe@example.org, full name \"Jane Roe\", \
             scopes \"me items\", active\n"
        )
    );
    assert_eq!(
        update(&["--full-name", "Jane Q. Roe"]),
        format!(
            "updated user JaneRoe ({id}): email jane.roe@example.org, full name \"Jane Q. Roe\", \
             scopes \"me items\", active\n"
        )
    );
    assert_eq!(
        update(&["--scopes", "items"]),
        format!(
            "updated user JaneRoe ({id}): email jane.roe@example.org, full name \"Jane Q. Roe\", \
             scopes \"items\", active\n"
        )
    );
    assert_eq!(
        update(&["--email", ""]),
        format!(
            "updated user JaneRoe ({id}): email -, full name \"Jane Q. Roe\", scopes \
             \"items\", active\n"
        )
    );
    // Several at once; what is not given stays.
    assert_eq!(
        update(&[
            "--full-name",
            "",
            "--scopes",
            "me,items,admin",
            "--email",
            "j@example.com"
        ]),
        format!(
            "updated user JaneRoe ({id}): email j@example.com, full name -, scopes \
             \"me items admin\", active\n"
        )
    );
    let listed = stdout(&ws.run(&["users", "list"]));
    let line = listed.lines().find(|l| l.contains("JaneRoe")).unwrap();
    assert!(
        line.contains("j@example.com") && line.contains(" me items admin "),
        "{line}"
    );
}

#[test]
fn users_update_refuses_unknown_scopes_users_invalid_values_and_no_change() {
    let ws = Workspace::new();
    let created = ws.run_with_stdin(
        &[
            "users",
            "create",
            "johndoe",
            "--email",
            "john@example.com",
            "--password-stdin",
            "--allow-weak-password",
        ],
        "secret",
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let refused = |args: &[&str], code: i32| {
        let output = ws.run(&[&["users", "update"][..], args].concat());
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stdout(&output), "", "{args:?}");
        stderr(&output)
    };
    assert_eq!(
        refused(&["johndoe", "--scopes", "me,root"], 1),
        "error: unknown scope \"root\" (known: me, items, admin)\n"
    );
    assert_eq!(
        refused(&["nobody", "--email", "n@example.com"], 1),
        "error: no user named \"nobody\"\n"
    );
    assert!(
        refused(&["johndoe", "--email", "not-an-address"], 1)
            .starts_with("error: invalid e-mail address: ")
    );
    let nothing = refused(&["johndoe"], 2);
    assert!(
        nothing.starts_with("error: the following required arguments were not provided:")
            && nothing.contains("--email <EMAIL>|--full-name <FULL_NAME>|--scopes <SCOPES>"),
        "{nothing}"
    );
    // Nothing changed.
    let listed = stdout(&ws.run(&["users", "list"]));
    let line = listed.lines().find(|l| l.contains("johndoe")).unwrap();
    assert!(
        line.contains("me items") && line.ends_with("john@example.com"),
        "{line}"
    );
}

#[test]
fn users_update_never_takes_admin_from_the_last_active_admin() {
    let ws = Workspace::new();
    let created = ws.run_with_stdin(
        &[
            "users",
            "create",
            "root",
            "--admin",
            "--password-stdin",
            "--allow-weak-password",
        ],
        "secret",
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let last = ws.run(&["users", "update", "root", "--scopes", "me,items"]);
    assert_eq!(last.status.code(), Some(1));
    assert_eq!(
        stderr(&last),
        "error: cannot remove the last admin (enable or create another admin first)\n"
    );
    // Nor can `users disable` or `users delete` remove the last admin.
    for command in ["disable", "delete"] {
        let refused = ws.run(&["users", command, "root"]);
        assert_eq!(refused.status.code(), Some(1), "{command}");
        assert_eq!(
            stderr(&refused),
            "error: cannot remove the last admin (enable or create another admin first)\n",
            "{command}"
        );
    }
    let listed = stdout(&ws.run(&["users", "list"]));
    assert!(listed.contains("me items admin"), "{listed}");

    let other = ws.run_with_stdin(
        &[
            "users",
            "create",
            "second",
            "--admin",
            "--password-stdin",
            "--allow-weak-password",
        ],
        "secret",
    );
    assert!(other.status.success(), "{}", stderr(&other));
    let now = ws.run(&["users", "update", "root", "--scopes", "me,items"]);
    assert!(now.status.success(), "{}", stderr(&now));
    assert!(
        stdout(&now).contains("scopes \"me items\""),
        "{}",
        stdout(&now)
    );
}

#[test]
fn users_unlock_lets_a_blocked_account_log_in_at_once() {
    let ws = Workspace::new();
    let mut command = ws.command();
    // Blocks long enough that only the unlock can end them, however slow the machine.
    command
        .args(["serve", "--demo", "--bind", "127.0.0.1:0"])
        .env("PORTCULLIS_LOGIN_THROTTLE", "true")
        .env("PORTCULLIS_LOGIN_MAX_FAILURES", "5")
        .env("PORTCULLIS_LOGIN_BLOCK_SECONDS", "600")
        .env("PORTCULLIS_LOGIN_MAX_BLOCK_SECONDS", "900");
    let server = ServerProcess::start(command);
    let base = server.base_url.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    runtime.block_on(async {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(login(&client, &base, "johndoe", "wrong").await.0);
        }
        assert_eq!(statuses, [401; 5]);
        // Blocked now, even with the right password.
        assert_eq!(login(&client, &base, "johndoe", "wrong").await.0, 429);
        assert_eq!(login(&client, &base, "johndoe", "secret").await.0, 429);
    });

    let output = ws.run(&["users", "unlock", "JOHNDOE"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "unlocked user johndoe\n");
    runtime.block_on(async {
        assert_eq!(login(&client, &base, "johndoe", "secret").await.0, 200);
    });
    // Nothing to clear is no error.
    let again = ws.run(&["users", "unlock", "johndoe"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), "unlocked user johndoe\n");
    assert!(server.terminate());
}

#[test]
fn the_new_user_commands_report_unknown_users_by_name() {
    let ws = Workspace::new();
    for args in [
        &["users", "unlock", "nobody"][..],
        &["users", "update", "nobody", "--full-name", "No One"],
        &["users", "set-password", "nobody", "--password-stdin"],
    ] {
        let output = ws.run_with_stdin(args, "Vx7#qL2!");
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&output),
            "error: no user named \"nobody\"\n",
            "{args:?}"
        );
        assert_eq!(stdout(&output), "", "{args:?}");
    }
}

/// The `last login` column of `users list` for `username`.
fn listed_last_login(ws: &Workspace, username: &str) -> String {
    let output = ws.run(&["users", "list"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let columns: Vec<&str> = header.split("  ").filter(|c| !c.is_empty()).collect();
    assert_eq!(
        columns.iter().map(|c| c.trim()).collect::<Vec<_>>(),
        ["id", "username", "status", "scopes", "last login", "email"]
    );
    let start = header.find("last login").unwrap();
    let end = header.find("email").unwrap();
    let line = lines
        .find(|line| line.split_whitespace().nth(1) == Some(username))
        .unwrap_or_else(|| panic!("{username} is not listed: {text}"));
    line[start..end].trim().to_owned()
}

#[test]
fn users_list_shows_the_last_login() {
    let ws = Workspace::new();
    let mut command = ws.command();
    command.args(["serve", "--demo", "--bind", "127.0.0.1:0"]);
    let server = ServerProcess::start(command);
    let base = server.base_url.clone();
    assert_eq!(listed_last_login(&ws, "johndoe"), "never");
    assert_eq!(listed_last_login(&ws, "admin"), "never");

    let before = chrono::Utc::now();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(demo_login(&reqwest::Client::new(), &base));
    let after = chrono::Utc::now();

    let shown = listed_last_login(&ws, "johndoe");
    assert!(
        shown.len() == 20 && shown.ends_with('Z') && shown.contains('T'),
        "{shown}"
    );
    let at = chrono::DateTime::parse_from_rfc3339(&shown)
        .unwrap()
        .with_timezone(&chrono::Utc);
    // Shown to the second.
    assert!(
        at >= before - chrono::TimeDelta::seconds(1) && at <= after,
        "{at} not within {before}..{after}"
    );
    assert_eq!(listed_last_login(&ws, "admin"), "never");
    assert!(server.terminate());
}

#[test]
fn users_create_says_how_to_skip_the_password_policy() {
    let ws = Workspace::new();
    let output = ws.run_with_stdin(
        &["users", "create", "johndoe", "--password-stdin"],
        "johndoe123",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!("error: password refused: Password must not contain the username {POLICY_HINT}\n")
    );
    assert!(!stdout(&ws.run(&["users", "list"])).contains("johndoe"));
}

#[test]
fn json_log_lines_of_a_request_carry_its_ids_and_never_secrets() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PASSWORD: &str = "Zq8!mW3#pL9$-log-test";
    let ws = Workspace::new();
    let log_path = ws.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = ws.command();
    command
        .env("PORTCULLIS_LOG", "info")
        .env("PORTCULLIS_LOG_FORMAT", "json")
        .args(["serve", "--demo", "--bind", "127.0.0.1:0"]);
    let server = ServerProcess::start_with_stderr(command, Stdio::from(log));
    let base = server.base_url.clone();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let token = runtime.block_on(async {
        let client = reqwest::Client::new();
        let signup = client
            .post(format!("{base}/users/signup"))
            .json(&serde_json::json!({"username": "logtester", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(signup.status(), 201);
        let login = client
            .post(format!("{base}/token"))
            .header("X-Request-Id", "log-test-login")
            .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
            .form(&[("username", "logtester"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200);
        let token = login.json::<serde_json::Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let me = client
            .get(format!("{base}/users/me"))
            .bearer_auth(&token)
            .header("X-Request-Id", "log-test-me")
            .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
        let me: serde_json::Value = me.json().await.unwrap();
        (token, me["id"].as_str().unwrap().to_owned())
    });
    let (token, user_id) = token;
    assert!(server.terminate(), "a SIGTERM is a clean shutdown");

    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains(PASSWORD), "the password is never logged");
    assert!(!text.contains(&token), "the access token is never logged");
    let token_signature = token.rsplit('.').next().unwrap();
    assert!(
        !text.contains(token_signature),
        "no part of the token is logged"
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let of_request = |id: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|line| line["span"]["request_id"] == id)
            .collect()
    };

    let login_lines = of_request("log-test-login");
    assert!(
        login_lines
            .iter()
            .any(|line| line["fields"]["message"] == "logged in: session started"),
        "{login_lines:?}"
    );
    let me_lines = of_request("log-test-me");
    assert!(
        me_lines
            .iter()
            .any(|line| line["fields"]["path"] == "/users/me" && line["fields"]["status"] == 200),
        "{me_lines:?}"
    );
    let session_id = login_lines
        .iter()
        .find_map(|line| line["span"]["session_id"].as_str())
        .expect("the login's session is recorded in its span");
    for line in login_lines.iter().chain(&me_lines) {
        assert_eq!(line["span"]["trace_id"], TRACE_ID, "{line}");
    }
    for line in &me_lines {
        assert_eq!(line["span"]["user_id"], user_id.as_str(), "{line}");
        assert_eq!(line["span"]["session_id"], session_id, "{line}");
    }
    // The same ids as members of each line, for log pipelines that index top-level members.
    for line in login_lines.iter().chain(&me_lines) {
        assert_eq!(line["request_id"], line["span"]["request_id"], "{line}");
        assert_eq!(line["trace_id"], TRACE_ID, "{line}");
    }
    for line in &me_lines {
        assert_eq!(line["request_id"], "log-test-me", "{line}");
        assert_eq!(line["user_id"], user_id.as_str(), "{line}");
        assert_eq!(line["session_id"], session_id, "{line}");
    }
    let login_with_session = login_lines
        .iter()
        .find(|line| line["fields"]["message"] == "logged in: session started")
        .unwrap();
    assert_eq!(login_with_session["session_id"], session_id);
    // Lines outside any request carry none.
    let outside: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line.get("span").is_none())
        .collect();
    assert!(!outside.is_empty());
    for line in outside {
        for member in ["request_id", "trace_id", "user_id", "session_id"] {
            assert!(line.get(member).is_none(), "{line}");
        }
    }
}

/// `portcullis audit --json` with `args`: one event per line, newest first.
fn audit_json(ws: &Workspace, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let output = ws.run(&all);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

#[test]
fn the_command_lines_changes_are_audited_with_actor_cli() {
    let ws = Workspace::new();
    let created = ws.run_with_stdin(
        &[
            "users",
            "create",
            "JaneRoe",
            "--password-stdin",
            "--allow-weak-password",
        ],
        "pw-one",
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let user_id = stdout(&created)
        .trim_end()
        .rsplit_once('(')
        .and_then(|(_, id)| id.strip_suffix(')'))
        .unwrap()
        .to_owned();
    let steps: [&[&str]; 6] = [
        &["users", "update", "janeroe", "--email", "jane@example.com"],
        &["users", "disable", "janeroe"],
        &["users", "enable", "janeroe"],
        &["users", "unlock", "janeroe"],
        // No session to end: nothing changes, nothing is recorded.
        &["users", "logout", "janeroe"],
        &["users", "update", "janeroe", "--email", "jane@example.com"],
    ];
    for step in steps {
        let output = ws.run(step);
        assert!(output.status.success(), "{step:?}: {}", stderr(&output));
    }
    let reset = ws.run_with_stdin(
        &[
            "users",
            "set-password",
            "janeroe",
            "--password-stdin",
            "--allow-weak-password",
        ],
        "pw-two",
    );
    assert!(reset.status.success(), "{}", stderr(&reset));
    let of_jane = audit_json(&ws, &["--user", "JANEROE"]);
    let deleted = ws.run(&["users", "delete", "janeroe"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let kid = rotated_kid(&ws.run(&["keys", "rotate"]), "EdDSA");
    assert!(ws.run(&["keys", "retire", &kid]).status.success());

    let events = audit_json(&ws, &[]);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "key.retired",
            "key.rotated",
            "user.deleted",
            "password.reset",
            "user.unlocked",
            "user.enabled",
            "user.disabled",
            "user.updated",
            "user.created",
        ]
    );
    assert_eq!(of_jane.len(), 6, "{of_jane:#?}");
    for event in &events {
        let members: Vec<&String> = event.as_object().unwrap().keys().collect();
        assert_eq!(
            members,
            [
                "id",
                "occurred_at",
                "type",
                "user_id",
                "actor",
                "client_address",
                "user_agent",
                "session_id",
                "request_id",
                "detail"
            ],
            "{event}"
        );
        assert_eq!(event["actor"], "cli", "{event}");
        for member in ["client_address", "user_agent", "session_id", "request_id"] {
            assert_eq!(event[member], serde_json::Value::Null, "{event}");
        }
        let about_jane = !event["type"].as_str().unwrap().starts_with("key.");
        let expected_user = if about_jane {
            serde_json::json!(user_id)
        } else {
            serde_json::Value::Null
        };
        assert_eq!(event["user_id"], expected_user, "{event}");
    }
    let detail = |kind: &str| &events.iter().find(|e| e["type"] == kind).unwrap()["detail"];
    assert_eq!(
        detail("user.created"),
        &serde_json::json!({"username": "JaneRoe", "scopes": ["me", "items"], "disabled": false})
    );
    assert_eq!(
        detail("user.updated"),
        &serde_json::json!({"fields": ["email"]})
    );
    assert_eq!(
        detail("password.reset"),
        &serde_json::json!({"sessions_ended": 0})
    );
    assert_eq!(
        detail("user.unlocked"),
        &serde_json::json!({"counts_cleared": 0})
    );
    assert_eq!(
        detail("user.deleted"),
        &serde_json::json!({"username": "JaneRoe"})
    );
    assert_eq!(
        detail("key.rotated"),
        &serde_json::json!({"kid": kid, "algorithm": "EdDSA"})
    );
    assert_eq!(detail("key.retired"), detail("key.rotated"));

    // The filters.
    let disabled = audit_json(&ws, &["--type", "user.disabled"]);
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0], events[6]);
    assert_eq!(audit_json(&ws, &["--limit", "2"]), events[..2]);
    let at = events[3]["occurred_at"].as_str().unwrap();
    assert_eq!(audit_json(&ws, &["--since", at]), events[..4]);
    assert!(audit_json(&ws, &["--since", "2999-01-01T00:00:00Z"]).is_empty());

    // As a table: a header, then one line per event.
    let table = ws.run(&["audit", "--limit", "3"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("occurred"), "{text}");
    assert!(
        lines[1].contains("key.retired") && lines[1].contains("cli"),
        "{text}"
    );
    assert!(
        lines[3].contains("user.deleted") && lines[3].contains(&user_id),
        "{text}"
    );
}

#[test]
fn bad_audit_options_are_refused_with_a_clear_message() {
    let ws = Workspace::new();
    for (args, message) in [
        (
            &["audit", "--type", "login.guessed"][..],
            "error: unknown event type \"login.guessed\" (known: login.succeeded, login.failed, \
             login.throttled, token.refreshed, token.reuse_detected, token.revoked, \
             session.ended, password.changed, password.reset, user.signed_up, user.created, \
             user.updated, user.disabled, user.enabled, user.deleted, user.unlocked, \
             key.rotated, key.retired, api_key.created, api_key.deleted)\n",
        ),
        (
            &["audit", "--since", "yesterday"][..],
            "error: --since must be an RFC 3339 time such as 2026-12-01T00:00:00Z, not \"yesterday\"\n",
        ),
        (
            &["audit", "--user", "nobody"][..],
            "error: no user named \"nobody\"\n",
        ),
    ] {
        let output = ws.run(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&output), message, "{args:?}");
    }
    let output = ws.run(&["audit", "--limit", "0"]);
    assert_eq!(output.status.code(), Some(2), "clap refuses it");
}

#[test]
fn a_login_just_before_a_shutdown_is_written_to_the_audit_log() {
    let ws = Workspace::new();
    let mut command = ws.command();
    command.args(["serve", "--demo", "--bind", "127.0.0.1:0"]);
    let server = ServerProcess::start(command);
    let base = server.base_url.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let login = client
            .post(format!("{base}/token"))
            .header("X-Request-Id", "just-before-shutdown")
            .form(&[("username", "johndoe"), ("password", "secret")])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200);
    });

    // At once: the event may still be in the writer's queue.
    assert!(server.terminate(), "a SIGTERM is a clean shutdown");

    let logins = audit_json(&ws, &["--type", "login.succeeded"]);
    assert_eq!(logins.len(), 1, "{logins:#?}");
    assert_eq!(logins[0]["request_id"], "just-before-shutdown");
}

#[test]
fn a_password_never_appears_in_an_audit_event_a_log_line_or_a_metric() {
    const PASSWORD: &str = "Qz7!vK2#uN5$-never-shown";
    const GHOST: &str = "ghost-name-typed-here";
    let ws = Workspace::new();
    let log_path = ws.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = ws.command();
    command
        .env("PORTCULLIS_LOG", "debug")
        .env("PORTCULLIS_LOG_FORMAT", "json")
        .env(
            "PORTCULLIS_METRICS_BIND",
            format!("127.0.0.1:{metrics_port}"),
        )
        .args(["serve", "--demo", "--bind", "127.0.0.1:0"]);
    let server = ServerProcess::start_with_stderr(command, Stdio::from(log));
    let base = server.base_url.clone();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (events, scrape) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let token = |username: &'static str, password: &'static str| {
            client
                .post(format!("{base}/token"))
                .form(&[("username", username), ("password", password)])
                .send()
        };
        let signup = client
            .post(format!("{base}/users/signup"))
            .json(&serde_json::json!({"username": "careful", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(signup.status(), 201);
        // The password typed for the wrong account, for no account, and for its own.
        assert_eq!(token("johndoe", PASSWORD).await.unwrap().status(), 401);
        assert_eq!(token(GHOST, PASSWORD).await.unwrap().status(), 401);
        let login = token("careful", PASSWORD).await.unwrap();
        assert_eq!(login.status(), 200);
        let admin = client
            .post(format!("{base}/token"))
            .form(&[
                ("username", "admin"),
                ("password", "secret3"),
                ("scope", "admin"),
            ])
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        // Login events are written just after their answer.
        let mut events = String::new();
        for _ in 0..600 {
            events = client
                .get(format!("{base}/admin/audit-events?limit=200"))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if events.matches("login.").count() >= 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let scrape = client
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (events, scrape)
    });
    assert!(server.terminate());
    let logs = std::fs::read_to_string(&log_path).unwrap();

    let parsed: serde_json::Value = serde_json::from_str(&events).unwrap();
    let types: Vec<&str> = parsed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "login.failed").count(),
        2,
        "{types:?}"
    );
    assert!(types.contains(&"user.signed_up") && types.contains(&"login.succeeded"));
    assert!(scrape.contains("portcullis_logins_total"), "a real scrape");
    assert!(logs.lines().count() > 10, "a real log");
    for (what, text) in [
        ("audit event", &events),
        ("log line", &logs),
        ("metric", &scrape),
    ] {
        assert!(!text.contains(PASSWORD), "the password is in a {what}");
        assert!(
            !text.contains(GHOST),
            "a name no account has is in a {what}"
        );
    }
    let cli_events = stdout(&ws.run(&["audit", "--json", "--limit", "200"]));
    assert!(!cli_events.contains(PASSWORD) && !cli_events.contains(GHOST));
}

#[test]
fn api_keys_are_created_listed_and_deleted_at_the_command_line_and_never_logged() {
    let ws = Workspace::new();
    let created = ws.run_with_stdin(
        &[
            "users",
            "create",
            "robot",
            "--password-stdin",
            "--allow-weak-password",
        ],
        "robot password\n",
    );
    assert!(created.status.success(), "{}", stderr(&created));

    let refused = ws.run(&[
        "api-keys", "create", "robot", "--name", "x", "--scopes", "me,admin",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("cannot grant a scope you do not hold: admin"),
        "{}",
        stderr(&refused)
    );
    let unknown = ws.run(&["api-keys", "list", "nobody"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no user named \"nobody\""),
        "{}",
        stderr(&unknown)
    );

    let key_output = ws.run(&[
        "api-keys",
        "create",
        "robot",
        "--name",
        "deploy",
        "--scopes",
        "items",
        "--expires-in-days",
        "90",
    ]);
    assert!(key_output.status.success(), "{}", stderr(&key_output));
    // Standard output is the key alone, for `KEY=$(portcullis api-keys create …)`.
    let key = stdout(&key_output).trim().to_owned();
    assert!(key.starts_with("pcl_") && key.len() == 75, "{key}");
    assert!(
        stderr(&key_output).contains("scopes \"items\", expires "),
        "{}",
        stderr(&key_output)
    );

    let listed = ws.run(&["api-keys", "list", "ROBOT"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed = stdout(&listed);
    let line = listed
        .lines()
        .find(|line| line.ends_with("deploy"))
        .expect("listed");
    assert!(line.contains("items") && line.contains("never"), "{line}");
    assert!(!listed.contains(&key[4..40]), "the list shows no key");
    let id = line.split_whitespace().next().unwrap().to_owned();

    let log_path = ws.path().join("server.log");
    let mut command = ws.command();
    command
        .env("PORTCULLIS_LOG", "debug")
        .env("PORTCULLIS_LOG_FORMAT", "json")
        .args(["serve", "--bind", "127.0.0.1:0"]);
    let server = ServerProcess::start_with_stderr(
        command,
        Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    let base = server.base_url.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let items = |key: String| {
        let base = base.clone();
        runtime.block_on(async move {
            reqwest::Client::new()
                .get(format!("{base}/users/me/items"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    assert_eq!(items(key.clone()), 200);
    let mut typo = key.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    assert_eq!(items(String::from_utf8(typo).unwrap()), 401);

    // Deleted by another process while the server runs: refused at its next request.
    let deleted = ws.run(&["api-keys", "delete", &id]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(
        stdout(&deleted).contains("deleted API key"),
        "{}",
        stdout(&deleted)
    );
    assert_eq!(items(key.clone()), 401);
    let again = ws.run(&["api-keys", "delete", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("API key not found"),
        "{}",
        stderr(&again)
    );

    assert!(server.terminate());
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("/users/me/items"), "the requests were logged");
    assert!(!logs.contains(&key[4..40]), "a log line holds the key");
    let audit = ws.run(&["audit", "--type", "api_key.deleted", "--json"]);
    let audit = stdout(&audit);
    assert!(audit.contains("\"actor\":\"cli\""), "{audit}");
    assert!(!audit.contains(&key[4..40]));
}
