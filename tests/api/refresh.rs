//! `POST /token` with `grant_type=refresh_token` (RFC 6749 §6): rotation, reuse detection with
//! its grace period (RFC 9700 §4.14.2), the session's absolute lifetime, scopes, and every
//! refusal with its exact body.

use std::time::Duration;

use portcullis::config::Settings;
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

const USERNAME: &str = "johndoe";
const PASSWORD: &str = "correct horse battery staple";

/// Sessions of `lifetime` whose spent refresh tokens are taken for `reuse_grace` (the test
/// defaults: 30 days, 5 s).
fn sessions(
    lifetime: chrono::Duration,
    reuse_grace: chrono::Duration,
) -> impl FnOnce(&mut Settings) {
    move |settings| {
        settings.sessions.lifetime = lifetime;
        settings.sessions.reuse_grace = reuse_grace;
    }
}

// --- Rotation -------------------------------------------------------------------------------

#[tokio::test]
async fn a_refresh_token_is_exchanged_for_new_tokens_of_the_same_session() {
    // Arrange
    let (app, user) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = app.post_refresh(&login.refresh_token, None).await;

    // Assert
    let refreshed = assert_tokens(&answer, "me items");
    assert_ne!(refreshed.access_token, login.access_token);
    assert_ne!(refreshed.refresh_token, login.refresh_token);
    let (before, after) = (claims(&login.access_token), claims(&refreshed.access_token));
    assert_eq!(after["sub"], user.id.to_string(), "sub is the user's id");
    assert_eq!(after["sid"], before["sid"], "the same session");
    assert_ne!(after["jti"], before["jti"]);
    assert_access_works(&app, &refreshed.access_token, USERNAME, "new access token").await;
    assert_eq!(
        app.session_ids(&refreshed.access_token).await,
        [login.session_id()],
        "a refresh starts no session"
    );
}

#[tokio::test]
async fn each_new_refresh_token_can_be_exchanged_in_turn() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let mut tokens = app.login(USERNAME, PASSWORD).await;
    let session = tokens.session_id();

    // Act
    for _ in 0..3 {
        tokens = app.refresh(&tokens.refresh_token).await;
    }

    // Assert
    assert_eq!(tokens.session_id(), session);
    assert_access_works(&app, &tokens.access_token, USERNAME, "third refresh").await;
}

#[tokio::test]
async fn rotation_leaves_the_sessions_earlier_access_tokens_valid_until_they_expire() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    app.refresh(&login.refresh_token).await;

    // Assert
    assert_access_works(
        &app,
        &login.access_token,
        USERNAME,
        "the login's access token",
    )
    .await;
}

#[tokio::test]
async fn a_spent_refresh_token_is_refused_once_the_grace_period_is_over() {
    // Arrange: no grace at all, so any second use is late.
    let (app, _) = TestApp::with_user_configured(
        USERNAME,
        PASSWORD,
        sessions(chrono::Duration::days(30), chrono::Duration::zero()),
    )
    .await;
    let login = app.login(USERNAME, PASSWORD).await;
    app.refresh(&login.refresh_token).await;

    // Act
    let answer = app.post_refresh(&login.refresh_token, None).await;

    // Assert
    assert_invalid_refresh_token(&answer, "the spent refresh token");
}

// --- Reuse detection ------------------------------------------------------------------------

#[tokio::test]
async fn reuse_after_the_grace_period_ends_the_session_and_every_token_of_it() {
    // Arrange: no grace, so the second use of a token is reuse.
    let (app, _) = TestApp::with_user_configured(
        USERNAME,
        PASSWORD,
        sessions(chrono::Duration::days(30), chrono::Duration::zero()),
    )
    .await;
    let stolen = app.login(USERNAME, PASSWORD).await;
    let first = app.refresh(&stolen.refresh_token).await;
    let newest = app.refresh(&first.refresh_token).await;
    let other_session = app.login(USERNAME, PASSWORD).await;

    // Act: the thief (or the victim) presents the first refresh token again.
    let answer = app.post_refresh(&stolen.refresh_token, None).await;

    // Assert
    assert_invalid_refresh_token(&answer, "the reused refresh token");
    for (case, access_token) in [
        ("the login's access token", &stolen.access_token),
        ("the first refresh's access token", &first.access_token),
        ("the newest access token", &newest.access_token),
    ] {
        assert_access_refused(&app, access_token, case).await;
    }
    assert_invalid_refresh_token(
        &app.post_refresh(&newest.refresh_token, None).await,
        "the newest refresh token, never used",
    );
    assert_invalid_refresh_token(
        &app.post_refresh(&first.refresh_token, None).await,
        "the first refresh token",
    );
    // The user's other session is not touched.
    assert_access_works(&app, &other_session.access_token, USERNAME, "other session").await;
    assert_eq!(
        app.session_ids(&other_session.access_token).await,
        [other_session.session_id()]
    );
    app.refresh(&other_session.refresh_token).await;
}

#[tokio::test]
async fn a_late_reuse_beyond_a_one_second_grace_ends_the_session() {
    // Arrange
    let (app, _) = TestApp::with_user_configured(
        USERNAME,
        PASSWORD,
        sessions(chrono::Duration::days(30), chrono::Duration::seconds(1)),
    )
    .await;
    let login = app.login(USERNAME, PASSWORD).await;
    let newest = app.refresh(&login.refresh_token).await;
    // Well past the grace, even on a busy machine.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Act
    let answer = app.post_refresh(&login.refresh_token, None).await;

    // Assert
    assert_invalid_refresh_token(&answer, "the late reuse");
    assert_session_ended(&app, &newest, "after the late reuse").await;
    assert_access_refused(&app, &login.access_token, "the login's access token").await;
}

#[tokio::test]
async fn reusing_a_token_within_the_grace_period_gets_new_tokens_and_the_session_lives() {
    // Arrange: a generous grace, so that the test does not depend on the machine's speed.
    let (app, _) = TestApp::with_user_configured(
        USERNAME,
        PASSWORD,
        sessions(chrono::Duration::days(30), chrono::Duration::seconds(30)),
    )
    .await;
    let login = app.login(USERNAME, PASSWORD).await;
    let first = app.refresh(&login.refresh_token).await;

    // Act: the same refresh token again, as a second tab would.
    let second = app.refresh(&login.refresh_token).await;

    // Assert: the same successor as the first exchange gave, so there is one chain, not two.
    assert_eq!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.session_id(), login.session_id());
    for (case, tokens) in [("first", &first), ("second", &second)] {
        assert_access_works(&app, &tokens.access_token, USERNAME, case).await;
        let next = app.refresh(&tokens.refresh_token).await;
        assert_access_works(&app, &next.access_token, USERNAME, case).await;
    }
    assert_eq!(
        app.session_ids(&login.access_token).await,
        [login.session_id()]
    );
}

// Two worker threads: the server handles both requests truly at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_refreshing_at_once_with_one_token_both_succeed_and_the_session_lives() {
    // Arrange
    let (app, _) = TestApp::with_user_configured(
        USERNAME,
        PASSWORD,
        sessions(chrono::Duration::days(30), chrono::Duration::seconds(30)),
    )
    .await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let (tab_one, tab_two) = tokio::join!(
        app.post_refresh(&login.refresh_token, None),
        app.post_refresh(&login.refresh_token, None),
    );

    // Assert
    let tab_one = assert_tokens(&tab_one, "me items");
    let tab_two = assert_tokens(&tab_two, "me items");
    assert_eq!(
        tab_one.refresh_token, tab_two.refresh_token,
        "both tabs get the one successor"
    );
    for (case, tokens) in [("tab one", &tab_one), ("tab two", &tab_two)] {
        assert_eq!(tokens.session_id(), login.session_id(), "{case}");
        let next = app.refresh(&tokens.refresh_token).await;
        assert_access_works(&app, &next.access_token, USERNAME, case).await;
        assert_access_works(&app, &tokens.access_token, USERNAME, case).await;
    }
    assert_eq!(
        app.session_ids(&login.access_token).await,
        [login.session_id()],
        "one live session"
    );
}

// --- Refusals -------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_refresh_token_is_an_invalid_grant() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    let unknown = unknown_refresh_token();
    let unknown_legacy = "u".repeat(43);

    for (case, token) in [
        ("a well-formed token under another secret", unknown.as_str()),
        ("a legacy-shaped unknown token", unknown_legacy.as_str()),
        ("garbage", "not a refresh token"),
        ("an access token", login.access_token.as_str()),
        (
            "the SHA-256 of a real one",
            &portcullis::auth::refresh::hash(&login.refresh_token),
        ),
    ] {
        // Act
        let answer = app.post_refresh(token, None).await;

        // Assert
        assert_invalid_refresh_token(&answer, case);
    }
    // Nothing of that touched the real session.
    app.refresh(&login.refresh_token).await;
}

#[tokio::test]
async fn a_missing_or_empty_refresh_token_is_a_validation_error_naming_it() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    for (case, fields) in [
        ("missing", vec![("grant_type", "refresh_token")]),
        (
            "empty",
            vec![("grant_type", "refresh_token"), ("refresh_token", "")],
        ),
    ] {
        // Act
        let answer = app.post_token(&fields).await;

        // Assert
        assert_eq!(answer.status, 422, "{case}: {}", answer.body);
        assert_eq!(
            answer.body,
            json!({
                "detail": [{"loc": ["body", "refresh_token"], "msg": "Field required", "type": "missing"}],
                "error": "invalid_request",
                "error_description": "refresh_token: Field required",
            }),
            "{case}"
        );
    }
}

#[tokio::test]
async fn the_refresh_token_of_a_logged_out_session_is_refused() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    assert_eq!(
        app.post_logout(&login.access_token, None).await.body,
        json!({"sessions_ended": 1})
    );

    // Act
    let answer = app.post_refresh(&login.refresh_token, None).await;

    // Assert
    assert_invalid_refresh_token(&answer, "after logout");
}

#[tokio::test]
async fn a_disabled_user_cannot_refresh() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    app.disable_user(USERNAME).await;

    // Act
    let answer = app.post_refresh(&login.refresh_token, None).await;

    // Assert
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "detail": "Inactive user",
            "error": "invalid_grant",
            "error_description": "Inactive user",
        })
    );
    assert_eq!(answer.header("www-authenticate"), None);
}

#[tokio::test]
async fn a_refresh_token_is_not_a_password() {
    // Arrange: the refresh token sent as a password grant's password.
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = app
        .post_token(&[
            ("grant_type", "password"),
            ("username", USERNAME),
            ("password", &login.refresh_token),
        ])
        .await;

    // Assert
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "detail": "Incorrect username or password",
            "error": "invalid_grant",
            "error_description": "Incorrect username or password",
        })
    );
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
}

// --- Lifetime -------------------------------------------------------------------------------

#[tokio::test]
async fn a_session_lasts_its_lifetime_from_the_login_and_refreshing_does_not_extend_it() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    let before = app.sessions(&login.access_token).await;

    // Act
    let refreshed = app.refresh(&login.refresh_token).await;

    // Assert
    let after = app.sessions(&refreshed.access_token).await;
    let (before, after) = (&before[0], &after[0]);
    assert_eq!(
        timestamp(before, "expires_at") - timestamp(before, "created_at"),
        chrono::Duration::days(30),
        "the lifetime is counted from the login"
    );
    assert_eq!(after["expires_at"], before["expires_at"], "not extended");
    assert_eq!(after["created_at"], before["created_at"]);
}

#[tokio::test]
async fn an_expired_session_refuses_its_refresh_and_access_tokens() {
    // Arrange: a session of a few seconds, refreshed while it lives.
    let (app, _) = TestApp::with_user_configured(
        USERNAME,
        PASSWORD,
        sessions(chrono::Duration::seconds(6), chrono::Duration::seconds(5)),
    )
    .await;
    let login = app.login(USERNAME, PASSWORD).await;
    let expires_at = timestamp(&app.sessions(&login.access_token).await[0], "expires_at");
    let latest = app.refresh(&login.refresh_token).await;

    // Act: wait until well after the end of the session.
    let remaining = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(remaining + Duration::from_millis(1500)).await;

    // Assert: the access tokens are valid JWTs for 30 minutes, but their session is over.
    assert_invalid_refresh_token(
        &app.post_refresh(&latest.refresh_token, None).await,
        "the latest refresh token",
    );
    assert_access_refused(&app, &latest.access_token, "the latest access token").await;
    assert_access_refused(&app, &login.access_token, "the login's access token").await;
    // A new login starts a new session.
    let again = app.login(USERNAME, PASSWORD).await;
    assert_eq!(
        app.session_ids(&again.access_token).await,
        [again.session_id()]
    );
}

// --- Scopes ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_refresh_may_narrow_the_scope() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = app.post_refresh(&login.refresh_token, Some("me")).await;

    // Assert
    let narrowed = assert_tokens(&answer, "me");
    let items = app.get_items(&narrowed.access_token).await;
    assert_eq!(items.status, 401);
    assert_eq!(items.body, json!({"detail": "Not enough permissions"}));
    assert_eq!(
        items.header("www-authenticate"),
        Some(r#"Bearer scope="items""#)
    );
}

#[tokio::test]
async fn without_a_scope_a_refresh_grants_the_logins_scopes_not_the_previous_refreshs() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    let narrowed = assert_tokens(
        &app.post_refresh(&login.refresh_token, Some("me")).await,
        "me",
    );

    // Act
    let answer = app.post_refresh(&narrowed.refresh_token, None).await;

    // Assert
    assert_tokens(&answer, "me items");
}

#[tokio::test]
async fn an_empty_scope_at_refresh_counts_as_absent() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;
    let narrowed = assert_tokens(
        &app.post_refresh(&login.refresh_token, Some("me")).await,
        "me",
    );

    // Act
    let answer = app.post_refresh(&narrowed.refresh_token, Some("")).await;

    // Assert
    assert_tokens(&answer, "me items");
}

#[tokio::test]
async fn a_refresh_may_not_widen_the_scope_beyond_the_logins() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app
        .login_with(Login::new(USERNAME, PASSWORD).scope("me"))
        .await;

    // Act
    let answer = app
        .post_refresh(&login.refresh_token, Some("me items"))
        .await;

    // Assert
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "detail": "Scope not granted to this session: items",
            "error": "invalid_scope",
            "error_description": "Scope not granted to this session: items",
        })
    );
    // Without a scope, the login's `me` stays all there is.
    assert_tokens(&app.post_refresh(&login.refresh_token, None).await, "me");
}

#[tokio::test]
async fn admin_held_but_not_asked_for_at_login_cannot_be_added_by_a_refresh() {
    // Arrange
    let app = spawn_app().await;
    app.create_user_holding(USERNAME, PASSWORD, "me items admin")
        .await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = app.post_refresh(&login.refresh_token, Some("admin")).await;

    // Assert
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "detail": "Scope not granted to this session: admin",
            "error": "invalid_scope",
            "error_description": "Scope not granted to this session: admin",
        })
    );
}

#[tokio::test]
async fn an_unknown_scope_at_refresh_is_refused_by_name() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = app.post_refresh(&login.refresh_token, Some("me x")).await;

    // Assert
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "detail": "Unknown scope: x",
            "error": "invalid_scope",
            "error_description": "Unknown scope: x",
        })
    );
}

// --- Other clients --------------------------------------------------------------------------

#[tokio::test]
async fn the_same_fields_as_json_refresh_too() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let login = app.login(USERNAME, PASSWORD).await;

    // Act
    let answer = send(app.request(Method::POST, "/token").json(&json!({
        "grant_type": "refresh_token",
        "refresh_token": login.refresh_token,
        "scope": "me",
        "client_id": "",
    })))
    .await;

    // Assert
    let by_json = assert_tokens(&answer, "me");
    assert_eq!(by_json.session_id(), login.session_id());
    let next = app.refresh(&by_json.refresh_token).await;
    assert_access_works(&app, &next.access_token, USERNAME, "after a JSON refresh").await;
}

#[tokio::test]
async fn another_users_refresh_token_gives_that_users_tokens_only() {
    // Arrange
    let app = spawn_app().await;
    let owner = app.create_user("alice", PASSWORD).await;
    let thief = app.create_user("mallory", PASSWORD).await;
    let alice = app
        .login_with(Login::new("alice", PASSWORD).header("User-Agent", "alice's browser"))
        .await;
    let mallory = app
        .login_with(Login::new("mallory", PASSWORD).header("User-Agent", "mallory's browser"))
        .await;

    // Act: mallory presents alice's refresh token.
    let stolen = app.refresh(&alice.refresh_token).await;

    // Assert: the tokens are alice's, in alice's session — never mallory's.
    let claims = claims(&stolen.access_token);
    assert_eq!(claims["sub"], owner.id.to_string());
    assert_ne!(claims["sub"], thief.id.to_string());
    assert_eq!(stolen.session_id(), alice.session_id());
    assert_access_works(&app, &stolen.access_token, "alice", "the refreshed token").await;
    // They cannot end mallory's session, nor mallory's token alice's.
    let answer = app
        .delete_session(&stolen.access_token, &mallory.session_id())
        .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.body, json!({"detail": "Session not found"}));
    let answer = app
        .delete_session(&mallory.access_token, &alice.session_id())
        .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.body, json!({"detail": "Session not found"}));
    assert_access_works(&app, &mallory.access_token, "mallory", "mallory's session").await;
    assert_access_works(&app, &stolen.access_token, "alice", "alice's session").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tabs_refreshing_at_once_with_one_token_all_succeed_with_one_successor() {
    // Arrange
    let (app, _) = TestApp::with_user_configured(
        USERNAME,
        PASSWORD,
        sessions(chrono::Duration::days(30), chrono::Duration::seconds(30)),
    )
    .await;
    let login = app.login(USERNAME, PASSWORD).await;
    let body = serde_urlencoded::to_string([
        ("grant_type", "refresh_token"),
        ("refresh_token", login.refresh_token.as_str()),
    ])
    .unwrap();

    // Act: eight requests in flight together, each on a task of its own.
    let tabs: Vec<_> = (0..8)
        .map(|_| {
            let request = app
                .request(Method::POST, "/token")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body.clone());
            tokio::spawn(send(request))
        })
        .collect();
    let mut answers = Vec::new();
    for tab in tabs {
        answers.push(tab.await.unwrap());
    }

    // Assert
    let mut refresh_tokens = std::collections::HashSet::new();
    for answer in &answers {
        let tokens = assert_tokens(answer, "me items");
        assert_eq!(tokens.session_id(), login.session_id());
        refresh_tokens.insert(tokens.refresh_token);
    }
    assert_eq!(
        refresh_tokens.len(),
        1,
        "every tab has the same successor: one chain, however many tabs"
    );
    for refresh_token in &refresh_tokens {
        app.refresh(refresh_token).await;
    }
    assert_eq!(
        app.session_ids(&login.access_token).await,
        [login.session_id()]
    );
}

#[tokio::test]
async fn a_token_replayed_within_the_grace_gets_the_users_successor_so_no_second_chain() {
    // Arrange: the user refreshes; a thief replays the spent login token within the grace.
    let (app, _) = TestApp::with_user_configured(
        USERNAME,
        PASSWORD,
        sessions(chrono::Duration::days(30), chrono::Duration::seconds(3)),
    )
    .await;
    let login = app.login(USERNAME, PASSWORD).await;
    let users = app.refresh(&login.refresh_token).await;
    let thiefs = app.refresh(&login.refresh_token).await;
    assert_eq!(thiefs.refresh_token, users.refresh_token, "one chain");
    // The thief exchanges the shared token first; then the grace of that exchange passes.
    let thiefs_next = app.refresh(&thiefs.refresh_token).await;
    tokio::time::sleep(Duration::from_millis(4000)).await;

    // Act: the user's token was spent by the thief's exchange; using it now is reuse.
    let answer = app.post_refresh(&users.refresh_token, None).await;

    // Assert: the whole session ends, the thief's tokens with it.
    assert_invalid_refresh_token(&answer, "the user's token, spent by the thief");
    assert_session_ended(&app, &thiefs_next, "the thief's newest tokens").await;
    assert_access_refused(&app, &users.access_token, "the user's access token").await;
}

#[tokio::test]
async fn an_exchange_for_a_session_ended_meanwhile_records_nothing() {
    // Arrange: a session, ended after its refresh token was read (as by a racing logout).
    let (app, user) = TestApp::with_user(USERNAME, PASSWORD).await;
    let subject = app.start_session(user.id).await;
    let login = app.login(USERNAME, PASSWORD).await;
    let session = uuid::Uuid::parse_str(&login.session_id()).unwrap();
    assert!(app.store.revoke_session(session, Vec::new).await.unwrap());

    // Act
    let exchange = app
        .store
        .exchange_refresh_token(session, 0, chrono::Duration::seconds(5))
        .await
        .unwrap();

    // Assert
    assert_eq!(exchange, portcullis::db::Exchange::SessionEnded);
    let stored = app.store.find_session(session).await.unwrap().unwrap();
    assert_eq!(
        stored.refresh_generation, 0,
        "the presented token is not spent"
    );
    assert_eq!(stored.refresh_rotated_at, None);
    // Another session of the user is untouched.
    let sessions = app.store.live_sessions(user.id).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id, subject.session_id);
}

// --- What a session accumulates ------------------------------------------------------------

/// Rows in `refresh_tokens`, read on a connection of the test's own.
async fn stored_refresh_token_rows(app: &TestApp) -> u64 {
    use sea_orm::{EntityTrait as _, PaginatorTrait as _};
    let db = sea_orm::Database::connect(app.settings.database.url.as_str())
        .await
        .unwrap();
    portcullis::db::entities::refresh_token::Entity::find()
        .count(&db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_session_refreshed_in_a_loop_stores_nothing_per_refresh_and_still_detects_reuse() {
    // Arrange: no grace, so every spent token is reuse at once.
    let (app, _) = TestApp::with_user_configured(
        USERNAME,
        PASSWORD,
        sessions(chrono::Duration::days(30), chrono::Duration::zero()),
    )
    .await;
    let login = app.login(USERNAME, PASSWORD).await;
    let mut spent = Vec::new();
    let mut current = login.clone();

    // Act: 60 refreshes in a row.
    for _ in 0..60 {
        let next = app.refresh(&current.refresh_token).await;
        spent.push(std::mem::replace(&mut current, next));
    }

    // Assert: no row per spent token; the newest works, and the very first spent one, presented
    // again, is still recognised as reuse and ends the session.
    assert_eq!(stored_refresh_token_rows(&app).await, 0);
    assert_access_works(&app, &current.access_token, USERNAME, "the newest").await;
    let answer = app.post_refresh(&spent[0].refresh_token, None).await;
    assert_invalid_refresh_token(&answer, "the login's token, 60 exchanges ago");
    assert_session_ended(&app, &current, "after the reuse").await;
}

#[tokio::test]
async fn a_refresh_token_issued_before_generations_is_exchanged_once_and_its_reuse_detected() {
    // Arrange: a session whose live refresh token was issued, and stored as a hash, by the
    // version before refresh-token generations.
    use sea_orm::{ActiveValue::Set, EntityTrait as _};
    let (app, user) = TestApp::with_user_configured(
        USERNAME,
        PASSWORD,
        sessions(chrono::Duration::days(30), chrono::Duration::zero()),
    )
    .await;
    let subject = app.start_session(user.id).await;
    let legacy = "L".repeat(22) + "egacyRefreshTokenOf43";
    assert_eq!(legacy.len(), 43);
    let db = sea_orm::Database::connect(app.settings.database.url.as_str())
        .await
        .unwrap();
    portcullis::db::entities::refresh_token::Entity::insert(
        portcullis::db::entities::refresh_token::ActiveModel {
            token_hash: Set(portcullis::auth::refresh::hash(&legacy)),
            session_id: Set(subject.session_id),
            created_at: Set(chrono::Utc::now()),
            rotated_at: Set(None),
        },
    )
    .exec(&db)
    .await
    .unwrap();

    // Act
    let exchanged = app.refresh(&legacy).await;
    let replayed = app.post_refresh(&legacy, None).await;

    // Assert: the exchange continued the session; the legacy token, spent, is reuse.
    assert_eq!(exchanged.session_id(), subject.session_id.to_string());
    assert_invalid_refresh_token(&replayed, "the spent legacy token");
    assert_session_ended(&app, &exchanged, "after the legacy token's reuse").await;
}
