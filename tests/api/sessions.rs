//! Ending sessions and seeing them: `POST /token/revoke` (RFC 7009), `POST /logout`,
//! `GET /users/me/sessions`, `DELETE /users/me/sessions/{id}` — and that protected operations
//! refuse the tokens of an ended session at once. Plus what the OpenAPI document says of them.

use serde_json::{Value, json};

use reqwest::Method;

use crate::helpers::*;

const USERNAME: &str = "johndoe";
const PASSWORD: &str = "correct horse battery staple";

/// Three sessions of `USERNAME` (three devices), and one of another user.
async fn app_with_three_sessions() -> (TestApp, [Tokens; 3], Tokens) {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    app.create_user("janedoe", PASSWORD).await;
    let sessions = [
        app.login_with(Login::new(USERNAME, PASSWORD).header("User-Agent", "device one"))
            .await,
        app.login_with(Login::new(USERNAME, PASSWORD).header("User-Agent", "device two"))
            .await,
        app.login_with(Login::new(USERNAME, PASSWORD).header("User-Agent", "device three"))
            .await,
    ];
    let other_user = app
        .login_with(Login::new("janedoe", PASSWORD).header("User-Agent", "jane's device"))
        .await;
    (app, sessions, other_user)
}

/// The answer of `POST /token/revoke` when it did its job: 200, no body, not to be cached.
fn assert_revoked(answer: &Answer, case: &str) {
    assert_eq!(answer.status, 200, "{case}: {}", answer.text);
    assert_eq!(answer.text, "", "{case}: no body");
    assert_eq!(answer.header("cache-control"), Some("no-store"), "{case}");
}

/// The session's tokens still work: its access token opens `/users/me`, its refresh token is
/// not refused (checked with a refresh, which the session survives).
async fn assert_session_lives(app: &TestApp, tokens: &Tokens, username: &str, case: &str) {
    assert_access_works(app, &tokens.access_token, username, case).await;
    let answer = app.post_refresh(&tokens.refresh_token, None).await;
    assert_eq!(answer.status, 200, "{case}: {}", answer.body);
}

/// The exact members of a listed session: never a token or a hash.
const SESSION_MEMBERS: [&str; 7] = [
    "client_address",
    "created_at",
    "current",
    "expires_at",
    "id",
    "last_used_at",
    "user_agent",
];

fn members(object: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = object
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

// --- POST /token/revoke ---------------------------------------------------------------------

#[tokio::test]
async fn revoking_an_access_token_ends_its_session_whatever_the_hint() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    for hint in [
        None,
        Some("access_token"),
        Some("refresh_token"),
        Some("id_token"),
    ] {
        // Arrange
        let case = format!("hint {hint:?}");
        let session = app.login(USERNAME, PASSWORD).await;
        let mut fields = vec![("token", session.access_token.as_str())];
        if let Some(hint) = hint {
            fields.push(("token_type_hint", hint));
        }

        // Act
        let answer = app.post_revoke(&fields).await;

        // Assert
        assert_revoked(&answer, &case);
        assert_session_ended(&app, &session, &case).await;
    }
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_session_whatever_the_hint() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    for hint in [None, Some("refresh_token"), Some("access_token"), Some("")] {
        // Arrange
        let case = format!("hint {hint:?}");
        let session = app.login(USERNAME, PASSWORD).await;
        let mut fields = vec![("token", session.refresh_token.as_str())];
        if let Some(hint) = hint {
            fields.push(("token_type_hint", hint));
        }

        // Act
        let answer = app.post_revoke(&fields).await;

        // Assert
        assert_revoked(&answer, &case);
        assert_session_ended(&app, &session, &case).await;
    }
}

#[tokio::test]
async fn revoking_a_spent_refresh_token_ends_its_session_too() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    let newest = app.refresh(&login.refresh_token).await;

    // Act
    let answer = app.post_revoke(&[("token", &login.refresh_token)]).await;

    // Assert
    assert_revoked(&answer, "a spent refresh token");
    assert_session_ended(&app, &newest, "the newest tokens").await;
}

#[tokio::test]
async fn revoking_one_session_leaves_the_users_others_alone() {
    // Arrange
    let (app, [one, two, three], jane) = app_with_three_sessions().await;

    // Act
    let answer = app
        .post_revoke(&[
            ("token", &two.refresh_token),
            ("client_id", "swagger"),
            ("client_secret", ""),
        ])
        .await;

    // Assert
    assert_revoked(&answer, "with client credentials");
    assert_session_ended(&app, &two, "the revoked session").await;
    assert_session_lives(&app, &one, USERNAME, "device one").await;
    assert_session_lives(&app, &three, USERNAME, "device three").await;
    assert_session_lives(&app, &jane, "janedoe", "another user").await;
}

#[tokio::test]
async fn revoking_an_unknown_token_is_ok_and_ends_nothing() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let live = app.login(USERNAME, PASSWORD).await;
    let unknown_refresh = unknown_refresh_token();
    let forged = sign(
        json!({"alg": "HS256", "typ": "at+jwt"}),
        valid_claims(uuid::Uuid::new_v4(), "me"),
        b"another-secret-of-at-least-thirty-two-bytes",
    );
    for (case, token) in [
        ("an unknown refresh token", unknown_refresh.as_str()),
        ("garbage", "garbage"),
        ("three dots", "a.b.c"),
        ("a JWT signed with another key", forged.as_str()),
    ] {
        // Act
        let answer = app.post_revoke(&[("token", token)]).await;

        // Assert
        assert_revoked(&answer, case);
    }
    assert_session_lives(&app, &live, USERNAME, "the live session").await;
}

#[tokio::test]
async fn revoking_an_already_ended_session_again_is_ok() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    assert_revoked(
        &app.post_revoke(&[("token", &login.access_token)]).await,
        "first",
    );

    // Act
    let by_access = app.post_revoke(&[("token", &login.access_token)]).await;
    let by_refresh = app.post_revoke(&[("token", &login.refresh_token)]).await;

    // Assert
    assert_revoked(&by_access, "the access token again");
    assert_revoked(&by_refresh, "its refresh token");
    assert_session_ended(&app, &login, "still ended").await;
}

#[tokio::test]
async fn a_revocation_without_a_token_is_a_validation_error_naming_it() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    for (case, fields) in [
        ("missing", vec![("token_type_hint", "access_token")]),
        ("empty", vec![("token", "")]),
    ] {
        // Act
        let answer = app.post_revoke(&fields).await;

        // Assert
        assert_eq!(answer.status, 422, "{case}: {}", answer.body);
        assert_eq!(
            answer.body,
            json!({
                "detail": [{"loc": ["body", "token"], "msg": "Field required", "type": "missing"}],
                "error": "invalid_request",
                "error_description": "token: Field required",
            }),
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_revocation_body_over_the_limit_is_refused_as_too_large() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    let huge = "x".repeat(70 * 1024);

    // Act
    let answer = app
        .post_revoke(&[("token", &login.refresh_token), ("client_id", &huge)])
        .await;

    // Assert
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "detail": "Request body too large",
            "error": "invalid_request",
            "error_description": "Request body too large",
        })
    );
    assert_session_lives(&app, &login, USERNAME, "not revoked").await;
}

#[tokio::test]
async fn a_revocation_as_json_is_accepted_too() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = send(
        app.request(Method::POST, "/token/revoke")
            .json(&json!({"token": login.access_token, "token_type_hint": "access_token"})),
    )
    .await;

    // Assert
    assert_revoked(&answer, "JSON");
    assert_session_ended(&app, &login, "revoked by JSON").await;
}

// --- Protected operations and ended sessions -------------------------------------------------

#[tokio::test]
async fn every_protected_operation_refuses_a_token_of_an_ended_session_at_once() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    let session_path = format!("/users/me/sessions/{}", login.session_id());
    // Each operation accepts the token while the session lives.
    assert_access_works(&app, &login.access_token, USERNAME, "before").await;
    assert_eq!(
        app.session_ids(&login.access_token).await,
        [login.session_id()]
    );
    assert_revoked(
        &app.post_revoke(&[("token", &login.refresh_token)]).await,
        "revoke",
    );

    // Act and Assert: every protected operation (read from the OpenAPI document), and ending
    // this very session or all of the user's.
    for operation in protected_operations() {
        let answer = send(operation.request(&app).bearer_auth(&login.access_token)).await;

        assert_could_not_validate(&answer, &operation.to_string());
    }
    for (method, path) in [
        (Method::DELETE, session_path.as_str()),
        (Method::POST, "/logout?scope=global"),
    ] {
        let answer = send(app.bearer(method.clone(), path, &login.access_token)).await;

        assert_could_not_validate(&answer, &format!("{method} {path}"));
    }
}

// --- POST /logout ---------------------------------------------------------------------------

#[tokio::test]
async fn logging_out_ends_the_callers_session_only() {
    for scope in [None, Some("local")] {
        // Arrange
        let case = format!("scope {scope:?}");
        let (app, [one, two, three], jane) = app_with_three_sessions().await;

        // Act
        let answer = app.post_logout(&two.access_token, scope).await;

        // Assert
        assert_eq!(answer.status, 200, "{case}: {}", answer.body);
        assert_eq!(answer.body, json!({"sessions_ended": 1}), "{case}");
        assert_session_ended(&app, &two, &case).await;
        assert_session_lives(&app, &one, USERNAME, &case).await;
        assert_session_lives(&app, &three, USERNAME, &case).await;
        assert_session_lives(&app, &jane, "janedoe", &case).await;
    }
}

#[tokio::test]
async fn logging_out_others_ends_every_other_session_of_the_user() {
    // Arrange
    let (app, [one, two, three], jane) = app_with_three_sessions().await;

    // Act
    let answer = app.post_logout(&two.access_token, Some("others")).await;

    // Assert
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, json!({"sessions_ended": 2}));
    assert_session_ended(&app, &one, "device one").await;
    assert_session_ended(&app, &three, "device three").await;
    assert_eq!(app.session_ids(&two.access_token).await, [two.session_id()]);
    assert_session_lives(&app, &two, USERNAME, "the caller's session").await;
    assert_session_lives(&app, &jane, "janedoe", "another user").await;
}

#[tokio::test]
async fn logging_out_others_when_there_are_none_ends_nothing() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = app.post_logout(&login.access_token, Some("others")).await;

    // Assert
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, json!({"sessions_ended": 0}));
    assert_session_lives(&app, &login, USERNAME, "the caller's session").await;
}

#[tokio::test]
async fn logging_out_globally_ends_every_session_of_the_user() {
    // Arrange
    let (app, [one, two, three], jane) = app_with_three_sessions().await;

    // Act
    let answer = app.post_logout(&two.access_token, Some("global")).await;

    // Assert
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, json!({"sessions_ended": 3}));
    for (case, session) in [("one", &one), ("two", &two), ("three", &three)] {
        assert_session_ended(&app, session, case).await;
    }
    assert_session_lives(&app, &jane, "janedoe", "another user").await;
}

#[tokio::test]
async fn already_ended_sessions_are_not_counted_again() {
    // Arrange
    let (app, [one, two, three], _) = app_with_three_sessions().await;
    assert_eq!(
        app.post_logout(&one.access_token, None).await.body,
        json!({"sessions_ended": 1})
    );

    // Act
    let answer = app.post_logout(&three.access_token, Some("global")).await;

    // Assert
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, json!({"sessions_ended": 2}));
    assert_session_ended(&app, &two, "device two").await;
}

#[tokio::test]
async fn any_token_may_log_out_whatever_its_scope() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app
        .login_with(Login::new(USERNAME, PASSWORD).scope("items"))
        .await;

    // Act
    let answer = app.post_logout(&login.access_token, None).await;

    // Assert
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, json!({"sessions_ended": 1}));
    assert_session_ended(&app, &login, "logged out").await;
}

#[tokio::test]
async fn logging_out_twice_with_one_token_is_refused_the_second_time() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    assert_eq!(app.post_logout(&login.access_token, None).await.status, 200);

    // Act
    let answer = app.post_logout(&login.access_token, None).await;

    // Assert
    assert_could_not_validate(&answer, "the second logout");
}

#[tokio::test]
async fn an_unknown_logout_scope_is_a_validation_error_and_ends_nothing() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    for scope in ["everything", "LOCAL"] {
        // Act
        let answer = app.post_logout(&login.access_token, Some(scope)).await;

        // Assert
        assert_eq!(answer.status, 422, "{scope:?}: {}", answer.body);
        assert_eq!(
            answer.body,
            json!({"detail": [{
                "loc": ["query", "scope"],
                "msg": "Input should be 'local', 'others', 'global'",
                "type": "enum",
            }]}),
            "{scope:?}"
        );
    }
    assert_session_lives(&app, &login, USERNAME, "after the refused logouts").await;
}

#[tokio::test]
async fn logging_out_without_a_valid_token_is_unauthorized_even_with_a_bad_scope() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    for scope in [None, Some("local"), Some("everything")] {
        // Act
        let mut without = app.request(Method::POST, "/logout");
        if let Some(scope) = scope {
            without = without.query(&[("scope", scope)]);
        }
        let without = send(without).await;
        let forged = app.post_logout("not.a.jwt", scope).await;

        // Assert
        assert_eq!(without.status, 401, "{scope:?}: {}", without.body);
        assert_eq!(without.body, json!({"detail": "Not authenticated"}));
        assert_eq!(without.header("www-authenticate"), Some("Bearer"));
        assert_could_not_validate(&forged, &format!("{scope:?}"));
    }
}

#[tokio::test]
async fn ending_other_sessions_at_logout_needs_the_me_scope() {
    // Arrange: an `items`-only token, and two other sessions of the same user.
    let (app, [one, two, _], _) = app_with_three_sessions().await;
    let items_only = app
        .login_with(Login::new(USERNAME, PASSWORD).scope("items"))
        .await;

    for scope in ["others", "global"] {
        // Act
        let answer = app.post_logout(&items_only.access_token, Some(scope)).await;

        // Assert
        assert_eq!(answer.status, 401, "{scope}: {}", answer.body);
        assert_eq!(answer.body, json!({"detail": "Not enough permissions"}));
        assert_eq!(
            answer.header("www-authenticate"),
            Some(r#"Bearer scope="me""#),
            "{scope}"
        );
    }
    for (session, case) in [(&one, "device one"), (&two, "device two")] {
        assert_session_lives(&app, session, USERNAME, case).await;
    }

    // Its own session it may still end, whatever its scope.
    let answer = app
        .post_logout(&items_only.access_token, Some("local"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, json!({"sessions_ended": 1}));
    assert_session_lives(&app, &one, USERNAME, "device one, after the local logout").await;

    // With `me`, the others end.
    let answer = app.post_logout(&one.access_token, Some("others")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, json!({"sessions_ended": 2}));
}

#[tokio::test]
async fn a_disabled_user_is_told_it_is_inactive_at_logout() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    app.disable_user(USERNAME).await;

    // Act
    let answer = app.post_logout(&login.access_token, None).await;

    // Assert
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body, json!({"detail": "Inactive user"}));
}

// --- GET /users/me/sessions -----------------------------------------------------------------

#[tokio::test]
async fn the_sessions_list_shows_each_live_session_most_recently_used_first() {
    // Arrange
    let (app, [one, two, three], jane) = app_with_three_sessions().await;

    // Act
    let listed = app.sessions(&two.access_token).await;

    // Assert
    let ids: Vec<&str> = listed.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [three.session_id(), two.session_id(), one.session_id()],
        "newest first"
    );
    assert!(!ids.contains(&jane.session_id().as_str()));
    for (session, (agent, current)) in listed.iter().zip([
        ("device three", false),
        ("device two", true),
        ("device one", false),
    ]) {
        assert_eq!(members(session), SESSION_MEMBERS, "{session}");
        assert_eq!(session["current"], current, "{session}");
        assert_eq!(session["user_agent"], agent, "{session}");
        assert_eq!(session["client_address"], "127.0.0.1", "{session}");
        let created = timestamp(session, "created_at");
        assert_eq!(
            session["last_used_at"], session["created_at"],
            "unused since the login: {session}"
        );
        assert_eq!(
            timestamp(session, "expires_at") - created,
            chrono::Duration::days(30),
            "{session}"
        );
        let age = chrono::Utc::now() - created;
        assert!(
            age >= chrono::Duration::zero() && age < chrono::Duration::minutes(10),
            "created at login: {session}"
        );
    }
}

#[tokio::test]
async fn a_refreshed_session_moves_to_the_top_of_the_list() {
    // Arrange
    let (app, [one, two, three], _) = app_with_three_sessions().await;

    // Act
    let one = app.refresh(&one.refresh_token).await;

    // Assert
    let listed = app.sessions(&three.access_token).await;
    let ids: Vec<&str> = listed.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [one.session_id(), three.session_id(), two.session_id()]
    );
    assert!(
        timestamp(&listed[0], "last_used_at") > timestamp(&listed[0], "created_at"),
        "the refresh is recorded: {}",
        listed[0]
    );
    assert_eq!(listed[1]["current"], true);
}

#[tokio::test]
async fn the_sessions_list_never_shows_a_token_or_a_hash() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = app.get_sessions(&login.access_token).await;

    // Assert
    assert_eq!(answer.status, 200, "{}", answer.body);
    let hash = portcullis::auth::refresh::hash(&login.refresh_token);
    for secret in [&login.refresh_token, &hash, &login.access_token] {
        assert!(!answer.text.contains(secret.as_str()), "{}", answer.text);
    }
    assert_eq!(members(&answer.body[0]), SESSION_MEMBERS);
}

#[tokio::test]
async fn a_login_without_a_user_agent_lists_a_null_user_agent() {
    // Arrange: reqwest sends no User-Agent unless told to.
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let access_token = app.login(USERNAME, PASSWORD).await.access_token;

    // Act
    let listed = app.sessions(&access_token).await;

    // Assert
    assert_eq!(listed.len(), 1);
    assert_eq!(members(&listed[0]), SESSION_MEMBERS);
    assert_eq!(listed[0]["user_agent"], Value::Null);
}

#[tokio::test]
async fn a_long_user_agent_is_kept_to_256_characters() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let agent = format!("Mozilla/5.0 {}", "x".repeat(400));
    let login = app
        .login_with(Login::new(USERNAME, PASSWORD).header("User-Agent", &agent))
        .await;

    // Act
    let listed = app.sessions(&login.access_token).await;

    // Assert
    let kept: String = agent.chars().take(256).collect();
    assert_eq!(listed[0]["user_agent"], kept.as_str());
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_address_is_the_proxys_last_entry() {
    // Arrange
    let (app, _) = TestApp::with_user_configured(USERNAME, PASSWORD, |settings| {
        settings.client_ip_header = Some("x-forwarded-for".parse().unwrap());
    })
    .await;
    let login = app
        .login_with(
            Login::new(USERNAME, PASSWORD).header("X-Forwarded-For", "203.0.113.7, 198.51.100.23"),
        )
        .await;

    // Act
    let listed = app.sessions(&login.access_token).await;

    // Assert
    assert_eq!(listed[0]["client_address"], "198.51.100.23");
}

#[tokio::test]
async fn ended_sessions_are_not_listed() {
    // Arrange
    let (app, [one, two, three], _) = app_with_three_sessions().await;
    app.post_logout(&one.access_token, None).await;

    // Act
    let ids = app.session_ids(&two.access_token).await;

    // Assert
    assert_eq!(ids, [three.session_id(), two.session_id()]);
}

#[tokio::test]
async fn listing_sessions_needs_the_me_scope() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app
        .login_with(Login::new(USERNAME, PASSWORD).scope("items"))
        .await;

    // Act
    let answer = app.get_sessions(&login.access_token).await;

    // Assert
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.body, json!({"detail": "Not enough permissions"}));
    assert_eq!(
        answer.header("www-authenticate"),
        Some(r#"Bearer scope="me""#)
    );
}

// --- DELETE /users/me/sessions/{id} ---------------------------------------------------------

#[tokio::test]
async fn ending_one_of_your_sessions_refuses_its_tokens_and_unlists_it() {
    // Arrange
    let (app, [one, two, three], _) = app_with_three_sessions().await;

    // Act
    let answer = app
        .delete_session(&two.access_token, &one.session_id())
        .await;

    // Assert
    assert_eq!(answer.status, 204, "{}", answer.text);
    assert_eq!(answer.text, "");
    assert_session_ended(&app, &one, "the ended session").await;
    assert_eq!(
        app.session_ids(&two.access_token).await,
        [three.session_id(), two.session_id()]
    );
    assert_session_lives(&app, &three, USERNAME, "device three").await;
}

#[tokio::test]
async fn ending_the_current_session_refuses_its_own_token() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = app
        .delete_session(&login.access_token, &login.session_id())
        .await;

    // Assert
    assert_eq!(answer.status, 204, "{}", answer.text);
    assert_session_ended(&app, &login, "the current session").await;
}

#[tokio::test]
async fn another_users_session_is_not_found_and_keeps_working() {
    // Arrange
    let (app, [one, ..], jane) = app_with_three_sessions().await;

    // Act
    let answer = app
        .delete_session(&one.access_token, &jane.session_id())
        .await;

    // Assert
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.body, json!({"detail": "Session not found"}));
    assert_session_lives(&app, &jane, "janedoe", "jane's session").await;
}

#[tokio::test]
async fn an_unknown_or_already_ended_session_is_not_found() {
    // Arrange
    let (app, [one, two, _], _) = app_with_three_sessions().await;
    assert_eq!(
        app.delete_session(&one.access_token, &two.session_id())
            .await
            .status,
        204
    );

    for (case, id) in [
        ("unknown", uuid::Uuid::new_v4().to_string()),
        ("already ended", two.session_id()),
    ] {
        // Act
        let answer = app.delete_session(&one.access_token, &id).await;

        // Assert
        assert_eq!(answer.status, 404, "{case}: {}", answer.body);
        assert_eq!(
            answer.body,
            json!({"detail": "Session not found"}),
            "{case}"
        );
    }
}

#[tokio::test]
async fn an_expired_session_is_not_found() {
    // Arrange: one session that expires while another, started later, still lives.
    let (app, _) = TestApp::with_user_configured(USERNAME, PASSWORD, |settings| {
        settings.sessions.lifetime = chrono::Duration::seconds(6);
        settings.sessions.reuse_grace = chrono::Duration::seconds(5);
    })
    .await;
    let expiring = app.login(USERNAME, PASSWORD).await;
    let expires_at = timestamp(&app.sessions(&expiring.access_token).await[0], "expires_at");
    let remaining = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(remaining + std::time::Duration::from_millis(1500)).await;
    let live = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = app
        .delete_session(&live.access_token, &expiring.session_id())
        .await;

    // Assert
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.body, json!({"detail": "Session not found"}));
    assert_eq!(
        app.session_ids(&live.access_token).await,
        [live.session_id()]
    );
}

#[tokio::test]
async fn a_session_id_that_is_not_a_uuid_is_a_validation_error_after_authentication() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let authenticated = app.delete_session(&login.access_token, "not-a-uuid").await;
    let unauthenticated = app.delete_session("not.a.jwt", "not-a-uuid").await;

    // Assert
    assert_eq!(authenticated.status, 422, "{}", authenticated.body);
    assert_eq!(
        authenticated.body,
        json!({"detail": [{
            "loc": ["path", "id"],
            "msg": "Input should be a valid UUID: invalid character: found `n` at 0",
            "type": "uuid_parsing",
        }]})
    );
    assert_could_not_validate(&unauthenticated, "a bad token and a bad id");
    assert_session_lives(&app, &login, USERNAME, "untouched").await;
}

#[tokio::test]
async fn ending_a_session_needs_the_me_scope() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app
        .login_with(Login::new(USERNAME, PASSWORD).scope("items"))
        .await;

    // Act
    let answer = app
        .delete_session(&login.access_token, &login.session_id())
        .await;

    // Assert
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.body, json!({"detail": "Not enough permissions"}));
    assert_eq!(
        answer.header("www-authenticate"),
        Some(r#"Bearer scope="me""#)
    );
    let items = app.get_items(&login.access_token).await;
    assert_eq!(items.status, 200, "the session was not ended");
}

// --- The OpenAPI document -------------------------------------------------------------------

async fn served_document() -> Value {
    let app = spawn_app().await;
    let answer = send(app.request(Method::GET, "/openapi.json")).await;
    assert_eq!(answer.status, 200);
    answer.body
}

fn statuses(operation: &Value) -> Vec<&str> {
    let mut statuses: Vec<&str> = operation["responses"]
        .as_object()
        .expect("the operation has responses")
        .keys()
        .map(String::as_str)
        .collect();
    statuses.sort_unstable();
    statuses
}

fn schema_of<'a>(operation: &'a Value, status: &str) -> &'a Value {
    &operation["responses"][status]["content"]["application/json; charset=utf-8"]["schema"]
}

#[tokio::test]
async fn the_password_flow_declares_token_as_its_refresh_url() {
    let document = served_document().await;

    let password = &document["components"]["securitySchemes"]["OAuth2"]["flows"]["password"];

    assert_eq!(password["tokenUrl"], "/token");
    assert_eq!(password["refreshUrl"], "/token");
}

#[tokio::test]
async fn the_token_request_documents_the_refresh_grant() {
    let document = served_document().await;

    let request = &document["components"]["schemas"]["TokenRequest"]["properties"];

    assert_eq!(request["refresh_token"]["type"], "string");
    assert_eq!(request["grant_type"]["type"], "string");
    let token = &document["paths"]["/token"]["post"];
    assert_eq!(
        statuses(token),
        [
            "200", "400", "401", "403", "413", "422", "429", "500", "503"
        ]
    );
}

#[tokio::test]
async fn token_revocation_is_declared_with_its_statuses() {
    let document = served_document().await;

    let revoke = &document["paths"]["/token/revoke"]["post"];

    assert_eq!(revoke["operationId"], "revoke_token");
    assert_eq!(revoke["security"], json!([]), "no credentials needed");
    assert_eq!(statuses(revoke), ["200", "403", "413", "422", "500", "503"]);
    assert_eq!(revoke["responses"]["200"].get("content"), None, "no body");
    assert!(revoke["responses"]["200"]["headers"]["Cache-Control"].is_object());
    for status in ["413", "422", "500", "503"] {
        assert_eq!(
            schema_of(revoke, status),
            &json!({"$ref": "#/components/schemas/TokenErrorBody"}),
            "{status}"
        );
    }
    let body = &revoke["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
    assert_eq!(
        body,
        &json!({"$ref": "#/components/schemas/RevocationRequest"})
    );
    let request = &document["components"]["schemas"]["RevocationRequest"];
    assert_eq!(request["required"], json!(["token"]));
}

#[tokio::test]
async fn logout_is_declared_with_its_statuses_and_scope_parameter() {
    let document = served_document().await;

    let logout = &document["paths"]["/logout"]["post"];

    assert_eq!(logout["operationId"], "logout");
    assert_eq!(
        logout["security"],
        json!([{"OAuth2": []}, {"APIKey": []}]),
        "no scope needed"
    );
    assert_eq!(
        statuses(logout),
        ["200", "400", "401", "403", "413", "422", "500", "503"]
    );
    assert_eq!(
        schema_of(logout, "200"),
        &json!({"$ref": "#/components/schemas/LogoutResult"})
    );
    assert!(logout["responses"]["401"]["headers"]["WWW-Authenticate"].is_object());
    let parameters = logout["parameters"].as_array().expect("parameters");
    assert_eq!(parameters.len(), 1);
    assert_eq!(parameters[0]["name"], "scope");
    assert_eq!(parameters[0]["in"], "query");
    assert_eq!(parameters[0]["required"], false);
    assert_eq!(
        document["components"]["schemas"]["LogoutScope"]["enum"],
        json!(["local", "others", "global"])
    );
    assert_eq!(
        document["components"]["schemas"]["LogoutResult"]["required"],
        json!(["sessions_ended"])
    );
}

#[tokio::test]
async fn the_sessions_operations_are_declared_with_their_statuses() {
    let document = served_document().await;

    let list = &document["paths"]["/users/me/sessions"]["get"];
    let end = &document["paths"]["/users/me/sessions/{id}"]["delete"];

    assert_eq!(list["operationId"], "list_sessions");
    assert_eq!(
        list["security"],
        json!([{"OAuth2": ["me"]}, {"APIKey": []}])
    );
    assert_eq!(
        statuses(list),
        ["200", "400", "401", "413", "422", "500", "503"]
    );
    assert_eq!(
        schema_of(list, "200"),
        &json!({"type": "array", "items": {"$ref": "#/components/schemas/Session"}})
    );
    assert_eq!(end["operationId"], "end_session");
    assert_eq!(end["security"], json!([{"OAuth2": ["me"]}, {"APIKey": []}]));
    assert_eq!(
        statuses(end),
        [
            "204", "400", "401", "403", "404", "413", "422", "500", "503"
        ]
    );
    assert_eq!(end["responses"]["204"].get("content"), None, "no body");
    assert_eq!(
        schema_of(end, "404"),
        &json!({"$ref": "#/components/schemas/Error"})
    );
    let id = &end["parameters"][0];
    assert_eq!(id["name"], "id");
    assert_eq!(id["in"], "path");
    assert_eq!(id["schema"], json!({"type": "string", "format": "uuid"}));
}

#[tokio::test]
async fn the_session_schema_has_exactly_the_listed_members() {
    let document = served_document().await;

    let session = &document["components"]["schemas"]["Session"];

    let mut properties: Vec<&str> = session["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .map(String::as_str)
        .collect();
    properties.sort_unstable();
    assert_eq!(properties, SESSION_MEMBERS);
}

/// Every member of a listed session is always present (`user_agent` as `null` when the login
/// sent none), so the document must say it is required and nullable, as it does for `User`'s
/// `email`: a generated client otherwise expects a string or nothing, and fails on `null`.
#[tokio::test]
async fn the_session_schema_says_user_agent_is_always_present_and_may_be_null() {
    let document = served_document().await;

    let session = &document["components"]["schemas"]["Session"];

    let mut required: Vec<&str> = session["required"]
        .as_array()
        .expect("required members")
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, SESSION_MEMBERS, "every member is always sent");
    assert_eq!(session["properties"]["user_agent"]["nullable"], true);
}

#[tokio::test]
async fn an_empty_logout_scope_counts_as_absent() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = app.post_logout(&login.access_token, Some("")).await;

    // Assert: the default, `local`.
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, json!({"sessions_ended": 1}));
    let me = app.get_me(&login.access_token).await;
    assert_eq!(me.status, 401);
}
