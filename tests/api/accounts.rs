//! The accounts section of the contract, for a user's own account: signup, the password
//! policy, `PATCH /users/me`, `POST /users/me/password` and `DELETE /users/me`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const USERNAME: &str = "johndoe";
/// A test user's password, set without the policy (as the CLI's `--allow-weak-password`).
const PASSWORD: &str = "correct horse battery staple";

/// A server that lets anyone sign up, `limit` signups an hour per address.
async fn app_with_signup(limit: u32) -> TestApp {
    spawn_app_configured(|settings| {
        settings.accounts.signup_enabled = true;
        settings.accounts.signup_per_address_per_hour = limit;
    })
    .await
}

/// A random-looking password of the longest length accepted (128 code points).
const LONGEST: &str = "3f9a1c7e2b5d4a8f9c0e1d2b3a4f5e6c\
    7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a\
    b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8\
    f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4";

fn signup(username: &str, password: &str) -> Value {
    json!({ "username": username, "password": password })
}

/// The one issue of a 422, checked whole but for its `msg`, which is returned.
fn single_issue(answer: &Answer, loc: Value, kind: &str) -> String {
    assert_eq!(answer.status, 422, "{}", answer.text);
    let issues = answer.body["detail"].as_array().expect("a list of issues");
    assert_eq!(issues.len(), 1, "{}", answer.text);
    assert_eq!(issues[0]["loc"], loc, "{}", answer.text);
    assert_eq!(issues[0]["type"], kind, "{}", answer.text);
    issues[0]["msg"].as_str().expect("a message").to_owned()
}

fn assert_detail(answer: &Answer, status: u16, detail: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.body, json!({ "detail": detail }));
}

// --- Signup -------------------------------------------------------------------------------------

#[tokio::test]
async fn signup_is_disabled_unless_configured() {
    let app = spawn_app().await;

    let answer = app.post_signup(signup("newcomer", STRONG_PASSWORD)).await;
    let malformed = app.post_signup(json!({ "username": 5 })).await;

    assert_detail(&answer, 403, "Signup is disabled");
    assert_detail(&malformed, 403, "Signup is disabled");
    assert!(app.try_create_user("newcomer", PASSWORD).await.is_ok());
}

#[tokio::test]
async fn a_signup_creates_an_active_account_with_the_default_scopes_and_no_token() {
    let app = app_with_signup(10).await;

    let answer = app
        .post_signup(json!({
            "username": "NewComer",
            "password": STRONG_PASSWORD,
            "email": "new@example.com",
            "full_name": "New Comer",
        }))
        .await;

    assert_eq!(answer.status, 201, "{}", answer.text);
    let body = answer.body.as_object().unwrap();
    let members: Vec<&str> = body.keys().map(String::as_str).collect();
    assert_eq!(
        members,
        [
            "id",
            "username",
            "email",
            "full_name",
            "disabled",
            "scopes",
            "created_at"
        ]
    );
    assert_eq!(body["username"], "NewComer");
    assert_eq!(body["email"], "new@example.com");
    assert_eq!(body["full_name"], "New Comer");
    assert_eq!(body["disabled"], false);
    assert_eq!(body["scopes"], json!(["me", "items"]));
    uuid::Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();
    // Logging in is the next step, with any spelling of the name.
    let token = app.login("newcomer", STRONG_PASSWORD).await.access_token;
    let me = app.get_me(&token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body, answer.body);
}

#[tokio::test]
async fn a_signup_without_optional_members_leaves_them_null() {
    let app = app_with_signup(10).await;

    let answer = app
        .post_signup(json!({
            "username": "plain",
            "password": STRONG_PASSWORD,
            "email": null,
        }))
        .await;

    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.body["email"], Value::Null);
    assert_eq!(answer.body["full_name"], Value::Null);
}

#[tokio::test]
async fn a_taken_name_in_any_spelling_is_refused_with_409() {
    let app = app_with_signup(100).await;
    app.create_user(USERNAME, PASSWORD).await;

    for taken in ["johndoe", "JohnDoe", "ＪＯＨＮＤＯＥ", "јohndoe"] {
        let answer = app.post_signup(signup(taken, STRONG_PASSWORD)).await;
        assert_detail(&answer, 409, "Username already taken");
    }
}

#[tokio::test]
async fn invalid_signup_fields_are_refused_with_422_naming_them() {
    let app = app_with_signup(100).await;

    let missing = app.post_signup(json!({})).await;
    let bad_email = app
        .post_signup(json!({ "username": "someone", "password": STRONG_PASSWORD, "email": "nope" }))
        .await;
    let bad_name = app.post_signup(signup("two words", STRONG_PASSWORD)).await;
    let not_a_string = app
        .post_signup(json!({ "username": "someone", "password": 12345678 }))
        .await;

    assert_eq!(missing.status, 422);
    assert_eq!(
        missing.body,
        json!({ "detail": [
            { "loc": ["body", "username"], "msg": "Field required", "type": "missing" },
            { "loc": ["body", "password"], "msg": "Field required", "type": "missing" },
        ]})
    );
    single_issue(&bad_email, json!(["body", "email"]), "value_error");
    single_issue(&bad_name, json!(["body", "username"]), "value_error");
    assert_eq!(
        single_issue(&not_a_string, json!(["body", "password"]), "string_type"),
        "Input should be a valid string"
    );
}

#[tokio::test]
async fn the_password_policy_refuses_short_long_common_and_similar_passwords() {
    let app = app_with_signup(1000).await;
    let refused = |password: String, kind: &'static str| (password, kind);
    let cases = [
        refused("Vx7#qL2".into(), "password_too_short"),
        // Seven code points, 25 bytes: length counts characters.
        refused("漢🦀Ωж字🦀é".into(), "password_too_short"),
        refused(format!("{LONGEST}z"), "password_too_long"),
        refused("password".into(), "password_too_common"),
        refused("12345678".into(), "password_too_common"),
        refused("qwertyuiop".into(), "password_too_common"),
        refused("iloveyou1".into(), "password_too_common"),
        refused("Xk9#quidditch-JohnDoe".into(), "password_too_similar"),
    ];

    for (password, kind) in cases {
        let answer = app.post_signup(signup("johndoe", &password)).await;
        let msg = single_issue(&answer, json!(["body", "password"]), kind);
        match kind {
            "password_too_short" => assert_eq!(msg, "Password should have at least 8 characters"),
            "password_too_long" => assert_eq!(msg, "Password should have at most 128 characters"),
            "password_too_similar" => assert_eq!(msg, "Password must not contain the username"),
            _ => assert!(
                msg.starts_with("Password is too easy to guess: "),
                "{password}: {msg}"
            ),
        }
    }
}

#[tokio::test]
async fn the_password_policy_accepts_the_boundary_lengths_and_any_character() {
    let app = app_with_signup(1000).await;
    let accepted = [
        ("eight", "Vx7#qL2!".to_owned()),
        ("longest", LONGEST.to_owned()),
        // Eight code points, nothing trimmed, any character.
        ("unicode", "漢🦀Ωж字🦀é9".to_owned()),
        ("spaced", " Vx7#qL2! ".to_owned()),
    ];

    for (username, password) in accepted {
        let answer = app.post_signup(signup(username, &password)).await;
        assert_eq!(answer.status, 201, "{password:?}: {}", answer.text);
        // Nothing was trimmed: the password logs in exactly as given.
        app.login(username, &password).await;
    }
    assert_eq!(
        app.post_login(Login::new("spaced", "Vx7#qL2!"))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_higher_configured_minimum_is_applied() {
    let app = spawn_app_configured(|settings| {
        settings.accounts.signup_enabled = true;
        settings.accounts.password_policy =
            portcullis::domain::PasswordPolicy::new(12).expect("a valid minimum");
    })
    .await;

    let short = app.post_signup(signup("someone", "Vx7#qL2!kT9")).await;
    let long_enough = app.post_signup(signup("someone", "Vx7#qL2!kT9@")).await;

    assert_eq!(
        single_issue(&short, json!(["body", "password"]), "password_too_short"),
        "Password should have at least 12 characters"
    );
    assert_eq!(long_enough.status, 201, "{}", long_enough.text);
}

#[tokio::test]
async fn logging_in_never_applies_the_policy() {
    let app = spawn_app().await;
    app.create_user("weak", "secret").await;

    app.login("weak", "secret").await;
}

#[tokio::test]
async fn signups_from_one_address_are_limited_per_hour_even_in_a_burst() {
    let app = app_with_signup(3).await;
    let client = client_from("127.0.0.2");

    let answers = send_all((0..8).map(|n| {
        client
            .post(app.url("/users/signup"))
            .json(&signup(&format!("burst{n}"), STRONG_PASSWORD))
    }))
    .await;

    let created = answers.iter().filter(|a| a.status == 201).count();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(created, 3, "{answers:?}");
    assert_eq!(refused.len(), 5, "{answers:?}");
    for answer in refused {
        assert_eq!(
            answer.body,
            json!({ "detail": "Too many requests, retry later" })
        );
        let retry_after: u64 = answer.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=3600).contains(&retry_after), "{retry_after}");
    }
    // Another address still signs up.
    let other = app
        .post_signup_with(
            &client_from("127.0.0.3"),
            signup("elsewhere", STRONG_PASSWORD),
        )
        .await;
    assert_eq!(other.status, 201, "{}", other.text);
}

#[tokio::test]
async fn a_refused_field_costs_no_signup_but_a_taken_name_does() {
    let app = app_with_signup(2).await;
    app.create_user(USERNAME, PASSWORD).await;
    let client = client_from("127.0.0.4");

    for _ in 0..5 {
        let weak = app
            .post_signup_with(&client, signup("someone", "password"))
            .await;
        assert_eq!(weak.status, 422);
    }
    let taken = app
        .post_signup_with(&client, signup(USERNAME, STRONG_PASSWORD))
        .await;
    let created = app
        .post_signup_with(&client, signup("someone", STRONG_PASSWORD))
        .await;
    let limited = app
        .post_signup_with(&client, signup("another", STRONG_PASSWORD))
        .await;

    assert_eq!(taken.status, 409);
    assert_eq!(created.status, 201, "{}", created.text);
    assert_detail(&limited, 429, "Too many requests, retry later");
}

// --- PATCH /users/me ----------------------------------------------------------------------------

#[tokio::test]
async fn a_profile_update_changes_what_is_sent_and_leaves_the_rest() {
    let (app, token) = TestApp::with_logged_in_user(USERNAME, PASSWORD).await;
    let before = app.get_me(&token).await.body;

    let renamed = app
        .patch_me(
            &token,
            json!({ "full_name": "John Q. Doe", "shoe_size": 44 }),
        )
        .await;
    let cleared = app.patch_me(&token, json!({ "email": null })).await;
    let unchanged = app.patch_me(&token, json!({})).await;

    assert_eq!(renamed.status, 200, "{}", renamed.text);
    let mut expected = before.clone();
    expected["full_name"] = json!("John Q. Doe");
    assert_eq!(renamed.body, expected);
    expected["email"] = Value::Null;
    assert_eq!(cleared.body, expected);
    assert_eq!(unchanged.body, expected);
    assert_eq!(app.get_me(&token).await.body, expected);
}

#[tokio::test]
async fn a_profile_update_with_a_bad_email_is_refused_and_changes_nothing() {
    let (app, token) = TestApp::with_logged_in_user(USERNAME, PASSWORD).await;
    let before = app.get_me(&token).await.body;

    let answer = app
        .patch_me(
            &token,
            json!({ "email": "not an address", "full_name": "X" }),
        )
        .await;
    let not_a_string = app.patch_me(&token, json!({ "full_name": 7 })).await;

    single_issue(&answer, json!(["body", "email"]), "value_error");
    single_issue(&not_a_string, json!(["body", "full_name"]), "string_type");
    assert_eq!(app.get_me(&token).await.body, before);
}

// --- POST /users/me/password --------------------------------------------------------------------

#[tokio::test]
async fn a_password_change_ends_every_other_session_and_keeps_the_callers() {
    let app = spawn_app().await;
    app.create_user(USERNAME, PASSWORD).await;
    let caller = app.login(USERNAME, PASSWORD).await;
    let other = app.login(USERNAME, PASSWORD).await;

    let answer = app
        .post_password(&caller.access_token, PASSWORD, STRONG_PASSWORD)
        .await;

    assert_eq!(answer.status, 204, "{}", answer.text);
    assert_eq!(answer.text, "");
    // The other session: both of its tokens are refused.
    assert_could_not_validate(&app.get_me(&other.access_token).await, "other session");
    assert_invalid_refresh_token(
        &app.post_refresh(&other.refresh_token, None).await,
        "other session's refresh token",
    );
    // The caller's session goes on, refresh included.
    assert_access_works(&app, &caller.access_token, USERNAME, "caller").await;
    let refreshed = app.refresh(&caller.refresh_token).await;
    assert_access_works(&app, &refreshed.access_token, USERNAME, "caller, refreshed").await;
    assert_eq!(app.session_ids(&refreshed.access_token).await.len(), 1);
    // Only the new password logs in.
    assert_incorrect_credentials(
        &app.post_login(Login::new(USERNAME, PASSWORD)).await,
        "old password",
    );
    app.login(USERNAME, STRONG_PASSWORD).await;
}

#[tokio::test]
async fn a_wrong_current_password_is_refused_and_changes_nothing() {
    let (app, token) = TestApp::with_logged_in_user(USERNAME, PASSWORD).await;

    let answer = app.post_password(&token, "not it", STRONG_PASSWORD).await;

    assert_detail(&answer, 400, "Incorrect password");
    assert_access_works(&app, &token, USERNAME, "after a refused change").await;
    app.login(USERNAME, PASSWORD).await;
}

#[tokio::test]
async fn a_new_password_is_held_to_the_policy() {
    let (app, token) = TestApp::with_logged_in_user(USERNAME, PASSWORD).await;

    let common = app.post_password(&token, PASSWORD, "password1").await;
    let similar = app.post_password(&token, PASSWORD, "JohnDoe-x7#Q").await;
    let missing = send(
        app.bearer(Method::POST, "/users/me/password", &token)
            .json(&json!({ "current_password": PASSWORD })),
    )
    .await;

    single_issue(
        &common,
        json!(["body", "new_password"]),
        "password_too_common",
    );
    single_issue(
        &similar,
        json!(["body", "new_password"]),
        "password_too_similar",
    );
    assert_eq!(
        single_issue(&missing, json!(["body", "new_password"]), "missing"),
        "Field required"
    );
    app.login(USERNAME, PASSWORD).await;
}

#[tokio::test]
async fn wrong_current_passwords_count_as_failed_logins() {
    let app = spawn_app_configured(|settings| {
        settings.throttle.enabled = true;
        settings.throttle.max_failures_per_account = 3;
    })
    .await;
    app.create_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;

    for _ in 0..3 {
        let answer = app.post_password(&token, "guess", STRONG_PASSWORD).await;
        assert_detail(&answer, 400, "Incorrect password");
    }
    let blocked = app.post_password(&token, PASSWORD, STRONG_PASSWORD).await;
    let login = app.post_login(Login::new(USERNAME, PASSWORD)).await;

    assert_eq!(blocked.status, 429, "{}", blocked.text);
    assert_eq!(
        blocked.body,
        json!({ "detail": "Too many login attempts, retry later" })
    );
    assert!(blocked.header("retry-after").is_some());
    assert_eq!(
        login.status, 429,
        "the same count as logins: {}",
        login.text
    );
    // Nothing changed.
    assert_access_works(&app, &token, USERNAME, "after the guesses").await;
}

#[tokio::test]
async fn concurrent_wrong_guesses_get_no_more_checks_than_the_limit() {
    let app = spawn_app_configured(|settings| {
        settings.throttle.enabled = true;
        settings.throttle.max_failures_per_account = 3;
        settings.throttle.max_failures_per_address = 1000;
    })
    .await;
    app.create_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;

    let answers = send_all((0..12).map(|n| {
        app.bearer(Method::POST, "/users/me/password", &token).json(
            &json!({ "current_password": format!("guess{n}"), "new_password": STRONG_PASSWORD }),
        )
    }))
    .await;

    let incorrect = answers.iter().filter(|a| a.status == 400).count();
    let throttled = answers.iter().filter(|a| a.status == 429).count();
    assert_eq!(incorrect, 3, "{answers:?}");
    assert_eq!(throttled, 9, "{answers:?}");
}

#[tokio::test]
async fn a_password_change_racing_a_refresh_of_another_session_ends_that_session() {
    let app = spawn_app().await;
    app.create_user(USERNAME, PASSWORD).await;
    for round in 0..5 {
        let (current, new) = if round % 2 == 0 {
            (PASSWORD, STRONG_PASSWORD)
        } else {
            (STRONG_PASSWORD, PASSWORD)
        };
        let caller = app.login(USERNAME, current).await;
        let other = app.login(USERNAME, current).await;

        let (changed, refreshed) = tokio::join!(
            app.post_password(&caller.access_token, current, new),
            app.post_refresh(&other.refresh_token, None),
        );

        assert_eq!(changed.status, 204, "{}", changed.text);
        // Whichever committed first, the other session is over: the refresh was refused, or
        // the tokens it issued are.
        if refreshed.status == 200 {
            let tokens = assert_tokens(&refreshed, DEFAULT_SCOPE);
            assert_could_not_validate(&app.get_me(&tokens.access_token).await, "refreshed");
            assert_invalid_refresh_token(
                &app.post_refresh(&tokens.refresh_token, None).await,
                "refreshed refresh token",
            );
        } else {
            assert_invalid_refresh_token(&refreshed, "refresh racing the change");
        }
        assert_could_not_validate(&app.get_me(&other.access_token).await, "other session");
    }
}

// --- DELETE /users/me ---------------------------------------------------------------------------

#[tokio::test]
async fn deleting_your_account_removes_it_its_items_and_sessions_and_frees_the_name() {
    let app = spawn_app().await;
    app.create_user(USERNAME, PASSWORD).await;
    let tokens = app.login(USERNAME, PASSWORD).await;
    let other = app.login(USERNAME, PASSWORD).await;
    app.create_item(&tokens.access_token, json!({ "title": "mine" }))
        .await;

    let answer = app.delete_me(&tokens.access_token, PASSWORD).await;

    assert_eq!(answer.status, 204, "{}", answer.text);
    assert_eq!(answer.text, "");
    assert_could_not_validate(&app.get_me(&tokens.access_token).await, "deleted");
    assert_could_not_validate(&app.get_me(&other.access_token).await, "deleted, other");
    assert_invalid_refresh_token(
        &app.post_refresh(&other.refresh_token, None).await,
        "deleted",
    );
    assert_incorrect_credentials(
        &app.post_login(Login::new(USERNAME, PASSWORD)).await,
        "deleted",
    );
    // The name is free again, and the new account starts with nothing.
    app.create_user(USERNAME, STRONG_PASSWORD).await;
    let fresh = app.login(USERNAME, STRONG_PASSWORD).await.access_token;
    assert!(app.items(&fresh).await.is_empty());
}

#[tokio::test]
async fn deleting_your_account_needs_your_password() {
    let (app, token) = TestApp::with_logged_in_user(USERNAME, PASSWORD).await;

    let wrong = app.delete_me(&token, "not it").await;
    let missing = send(
        app.bearer(Method::DELETE, "/users/me", &token)
            .json(&json!({})),
    )
    .await;

    assert_detail(&wrong, 400, "Incorrect password");
    single_issue(&missing, json!(["body", "password"]), "missing");
    assert_access_works(&app, &token, USERNAME, "still there").await;
}

#[tokio::test]
async fn the_last_admin_cannot_delete_their_own_account() {
    let (app, token) = TestApp::with_admin().await;

    let answer = app.delete_me(&token, STRONG_PASSWORD).await;

    assert_detail(&answer, 409, "Cannot remove the last admin");
    assert_access_works(&app, &token, ADMIN, "the last admin").await;
    // With another active admin, they can.
    app.create_user_holding("second", PASSWORD, "me items admin")
        .await;
    assert_eq!(app.delete_me(&token, STRONG_PASSWORD).await.status, 204);
}
