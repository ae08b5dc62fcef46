//! The contract's `POST /token` table: every row, with the exact status, body and headers, and
//! the access token itself (its JWT header and claims).

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis::{
    accounts::AccountError,
    db::NewUser,
    domain::{HashedPassword, ScopeSet, Username},
};
use reqwest::{Method, header::HeaderMap};
use serde_json::{Value, json};

use crate::helpers::*;

const USERNAME: &str = "johndoe";
const PASSWORD: &str = "secret";
/// What a FastAPI application (passlib/argon2-cffi defaults) stores for the password `secret`.
const FASTAPI_HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$qpT4PnhNW9H7Sb19quyJ2g$XWj2pn4eKJFoNontTs32xTrgWWJIi10vtZy+t9DBpMo";
/// The prefix of a PHC string made with the configured (OWASP minimum) parameters.
const CURRENT_PARAMETERS: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

/// Checks a token-endpoint error body against the contract: `detail`, `error` and
/// `error_description`, the description equal to `detail`, and nothing else.
fn assert_token_error_shape(body: &Value, error: &str) {
    let object = body.as_object().expect("an error body is an object");
    let mut members: Vec<&str> = object.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["detail", "error", "error_description"], "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    assert_eq!(body["detail"], body["error_description"], "{body}");
}

fn scope_claim(token: &str) -> Value {
    decode_token(token).1["scope"].clone()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn valid_credentials_get_a_bearer_token_that_must_not_be_cached() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app.post_login(Login::new(USERNAME, PASSWORD)).await;

    // Assert
    assert_tokens(&answer, "me items");
}

#[tokio::test]
async fn the_access_token_is_an_at_jwt_naming_the_user_by_id() {
    // Arrange
    let (app, user) = TestApp::with_user(USERNAME, PASSWORD).await;
    let before = now();

    // Act
    let answer = app.post_login(Login::new(USERNAME, PASSWORD)).await;

    // Assert
    let after = now();
    let token = assert_tokens(&answer, "me items").access_token;
    let (header, claims) = decode_token(&token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "HS256", "{header}");
    let mut members: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "aud", "exp", "iat", "iss", "jti", "nbf", "scope", "sid", "sub"
        ],
        "{claims}"
    );
    let sid = claims["sid"].as_str().expect("sid is a string");
    let sessions = app.store.live_sessions(user.id).await.unwrap();
    assert_eq!(sessions.len(), 1, "the login started one session");
    assert_eq!(sid, sessions[0].id.to_string(), "sid names the session");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(
        claims["sub"],
        user.id.to_string(),
        "sub is the id, not the name"
    );
    assert_eq!(claims["scope"], "me items");
    let iat = claims["iat"].as_u64().expect("iat is a number of seconds");
    let nbf = claims["nbf"].as_u64().expect("nbf is a number of seconds");
    let exp = claims["exp"].as_u64().expect("exp is a number of seconds");
    assert!(
        (before..=after).contains(&iat),
        "iat {iat} is the time of issue"
    );
    assert_eq!(nbf, iat);
    let lifetime = app.settings.tokens.ttl.as_secs();
    assert_eq!(lifetime, 1800, "the tests configure the default lifetime");
    assert_eq!(
        exp,
        iat + lifetime,
        "the configured lifetime, as expires_in says"
    );
    let jti = claims["jti"].as_str().expect("jti is a string");
    uuid::Uuid::parse_str(jti).expect("jti is a UUID");
}

#[tokio::test]
async fn every_token_has_its_own_id() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let first = app.login(USERNAME, PASSWORD).await.access_token;
    let second = app.login(USERNAME, PASSWORD).await.access_token;

    // Assert
    assert_ne!(
        decode_token(&first).1["jti"],
        decode_token(&second).1["jti"]
    );
}

#[tokio::test]
async fn the_access_token_opens_the_users_own_account() {
    // Arrange
    let (app, user) = TestApp::with_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;

    // Act
    let answer = app.get_me(&token).await;

    // Assert
    assert_eq!(answer.status, 200);
    let body = answer.body;
    assert_eq!(body["id"], user.id.to_string());
    assert_eq!(body["username"], USERNAME);
    assert_eq!(body["disabled"], false);
    assert_eq!(body["scopes"], json!(["me", "items"]));
}

#[tokio::test]
async fn swagger_uis_login_form_with_empty_basic_credentials_is_accepted() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act: byte for byte what Swagger UI's Authorize dialog sends.
    let answer = send(
        app.request(Method::POST, "/token")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Authorization", "Basic Og==")
            .body(
                "grant_type=password&username=johndoe&password=secret&scope=&client_id=&client_secret=",
            ),
    )
    .await;

    // Assert
    let token = assert_tokens(&answer, "me items").access_token;
    assert_eq!(app.get_me(&token).await.status, 200);
}

#[tokio::test]
async fn client_id_and_client_secret_are_accepted_and_ignored() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app
        .post_token(&[
            ("grant_type", "password"),
            ("username", USERNAME),
            ("password", PASSWORD),
            ("client_id", "some-client"),
            ("client_secret", "some-secret"),
        ])
        .await;

    // Assert
    assert_tokens(&answer, "me items");
}

#[tokio::test]
async fn a_request_without_grant_type_is_a_password_grant() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app
        .post_token(&[("username", USERNAME), ("password", PASSWORD)])
        .await;

    // Assert
    assert_tokens(&answer, "me items");
}

#[tokio::test]
async fn an_empty_grant_type_counts_as_absent() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app
        .post_token(&[
            ("grant_type", ""),
            ("username", USERNAME),
            ("password", PASSWORD),
        ])
        .await;

    // Assert
    assert_tokens(&answer, "me items");
}

#[tokio::test]
async fn a_grant_type_other_than_password_is_unsupported() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app
        .post_token(&[
            ("grant_type", "client_credentials"),
            ("username", USERNAME),
            ("password", PASSWORD),
        ])
        .await;

    // Assert
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_token_error_shape(&answer.body, "unsupported_grant_type");
    assert_eq!(
        answer.body,
        json!({
            "detail": "Unsupported grant type; this server supports password and refresh_token",
            "error": "unsupported_grant_type",
            "error_description": "Unsupported grant type; this server supports password and refresh_token",
        })
    );
}

#[tokio::test]
async fn an_unknown_user_and_a_wrong_password_get_the_same_answer() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let unknown = app.post_login(Login::new("janedoe", PASSWORD)).await;
    let wrong = app.post_login(Login::new(USERNAME, "not-the-secret")).await;

    // Assert
    assert_incorrect_credentials(&unknown, "unknown user");
    assert_incorrect_credentials(&wrong, "wrong password");
    assert_eq!(unknown.body, wrong.body);
    let without_date = |headers: &HeaderMap| {
        let mut pairs: Vec<(String, String)> = headers
            .iter()
            // Both differ per response, whatever the account: the time and the request's id.
            .filter(|(name, _)| *name != "date" && *name != "x-request-id")
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect();
        pairs.sort();
        pairs
    };
    assert_eq!(without_date(&unknown.headers), without_date(&wrong.headers));
}

#[tokio::test]
async fn a_username_that_could_not_exist_is_answered_like_an_unknown_one() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let too_long = "a".repeat(65);
    let cases = [too_long.as_str(), "john doe", "'; DROP TABLE users; --"];

    for username in cases {
        // Act
        let answer = app.post_login(Login::new(username, PASSWORD)).await;

        // Assert
        assert_incorrect_credentials(&answer, username);
    }
    assert_eq!(app.store.list_users().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_disabled_user_with_the_right_password_is_told_it_is_inactive() {
    // Arrange
    let app = spawn_app().await;
    app.create_disabled_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app.post_login(Login::new(USERNAME, PASSWORD)).await;

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
async fn a_disabled_user_with_a_wrong_password_gets_the_usual_401() {
    // Arrange
    let app = spawn_app().await;
    app.create_disabled_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app.post_login(Login::new(USERNAME, "not-the-secret")).await;

    // Assert: no hint that the account exists.
    assert_incorrect_credentials(&answer, "disabled user, wrong password");
}

#[tokio::test]
async fn a_scope_the_user_does_not_hold_is_refused_by_name() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app
        .post_login(Login::new(USERNAME, PASSWORD).scope("me admin"))
        .await;

    // Assert
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_token_error_shape(&answer.body, "invalid_scope");
    let description = answer.body["error_description"].as_str().unwrap();
    assert!(
        description.contains("admin"),
        "names the scope: {description}"
    );
    assert_eq!(
        answer.body,
        json!({
            "detail": "Scope not granted to this user: admin",
            "error": "invalid_scope",
            "error_description": "Scope not granted to this user: admin",
        })
    );
}

#[tokio::test]
async fn an_unknown_scope_is_refused_by_name() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app
        .post_login(Login::new(USERNAME, PASSWORD).scope("me superuser"))
        .await;

    // Assert
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_token_error_shape(&answer.body, "invalid_scope");
    let description = answer.body["error_description"].as_str().unwrap();
    assert!(
        description.contains("superuser"),
        "names the scope: {description}"
    );
    assert_eq!(
        answer.body,
        json!({
            "detail": "Unknown scope: superuser",
            "error": "invalid_scope",
            "error_description": "Unknown scope: superuser",
        })
    );
}

#[tokio::test]
async fn asking_for_me_grants_me_only() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app
        .post_login(Login::new(USERNAME, PASSWORD).scope("me"))
        .await;

    // Assert
    let token = assert_tokens(&answer, "me").access_token;
    assert_eq!(scope_claim(&token), "me");
}

#[tokio::test]
async fn an_empty_scope_counts_as_absent() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app
        .post_login(Login::new(USERNAME, PASSWORD).scope(""))
        .await;

    // Assert
    let token = assert_tokens(&answer, "me items").access_token;
    assert_eq!(scope_claim(&token), "me items");
}

#[tokio::test]
async fn an_admin_asking_for_nothing_gets_every_scope_but_admin() {
    // Arrange
    let app = spawn_app().await;
    app.create_user_holding("root", PASSWORD, "me items admin")
        .await;

    // Act
    let answer = app.post_login(Login::new("root", PASSWORD)).await;

    // Assert
    let token = assert_tokens(&answer, "me items").access_token;
    assert_eq!(scope_claim(&token), "me items");
}

#[tokio::test]
async fn an_admin_asking_for_admin_gets_it() {
    // Arrange
    let app = spawn_app().await;
    app.create_user_holding("root", PASSWORD, "me items admin")
        .await;

    // Act
    let answer = app
        .post_login(Login::new("root", PASSWORD).scope("admin"))
        .await;

    // Assert
    let token = assert_tokens(&answer, "admin").access_token;
    assert_eq!(scope_claim(&token), "admin");
}

#[tokio::test]
async fn a_missing_or_empty_username_is_a_validation_error_naming_it() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let cases: [&[(&str, &str)]; 2] = [
        &[("grant_type", "password"), ("password", PASSWORD)],
        &[
            ("grant_type", "password"),
            ("username", ""),
            ("password", PASSWORD),
        ],
    ];

    for fields in cases {
        // Act
        let answer = app.post_token(fields).await;

        // Assert
        assert_eq!(answer.status, 422, "{fields:?}: {}", answer.body);
        assert_token_validation_shape(&answer, &format!("{fields:?}"));
        assert_eq!(
            answer.body,
            json!({
                "detail": [{"loc": ["body", "username"], "msg": "Field required", "type": "missing"}],
                "error": "invalid_request",
                "error_description": "username: Field required",
            }),
            "{fields:?}"
        );
    }
}

#[tokio::test]
async fn a_missing_or_empty_password_is_a_validation_error_naming_it() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let cases: [&[(&str, &str)]; 2] = [
        &[("grant_type", "password"), ("username", USERNAME)],
        &[
            ("grant_type", "password"),
            ("username", USERNAME),
            ("password", ""),
        ],
    ];

    for fields in cases {
        // Act
        let answer = app.post_token(fields).await;

        // Assert
        assert_eq!(answer.status, 422, "{fields:?}: {}", answer.body);
        assert_token_validation_shape(&answer, &format!("{fields:?}"));
        assert_eq!(
            answer.body,
            json!({
                "detail": [{"loc": ["body", "password"], "msg": "Field required", "type": "missing"}],
                "error": "invalid_request",
                "error_description": "password: Field required",
            }),
            "{fields:?}"
        );
    }
}

#[tokio::test]
async fn a_missing_username_and_password_are_both_named() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = app.post_token(&[("grant_type", "password")]).await;

    // Assert
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_token_validation_shape(&answer, "no username and no password");
    assert_eq!(
        answer.body,
        json!({
            "detail": [
                {"loc": ["body", "username"], "msg": "Field required", "type": "missing"},
                {"loc": ["body", "password"], "msg": "Field required", "type": "missing"},
            ],
            "error": "invalid_request",
            "error_description": "username: Field required; password: Field required",
        })
    );
}

#[tokio::test]
async fn the_same_fields_as_json_are_accepted() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = send(app.request(Method::POST, "/token").json(&json!({
        "grant_type": "password",
        "username": USERNAME,
        "password": PASSWORD,
        "scope": "items",
    })))
    .await;

    // Assert
    let token = assert_tokens(&answer, "items").access_token;
    assert_eq!(scope_claim(&token), "items");
}

#[tokio::test]
async fn usernames_match_without_regard_to_case_and_keep_their_spelling() {
    // Arrange
    let app = spawn_app().await;
    let user = app.create_user("JohnDoe", PASSWORD).await;

    for spelling in ["johndoe", "JOHNDOE", "JohnDoe", "jOhNdOe"] {
        // Act
        let answer = app.post_login(Login::new(spelling, PASSWORD)).await;

        // Assert
        let token = assert_tokens(&answer, "me items").access_token;
        assert_eq!(decode_token(&token).1["sub"], user.id.to_string());
        let me = app.get_me(&token).await.body;
        assert_eq!(me["username"], "JohnDoe", "logged in as {spelling}");
    }
}

#[tokio::test]
async fn a_name_taken_in_another_spelling_cannot_be_created() {
    // Arrange
    let app = spawn_app().await;
    app.create_user("JohnDoe", PASSWORD).await;

    // Act
    let result = app.try_create_user("johndoe", "another password").await;

    // Assert
    assert!(
        matches!(result, Err(AccountError::UsernameTaken(_))),
        "{result:?}"
    );
    let users = app.store.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].username, "JohnDoe");
    app.login("johndoe", PASSWORD).await;
}

#[tokio::test]
async fn a_fastapi_argon2_hash_verifies_and_is_upgraded_on_login() {
    // Arrange
    let app = spawn_app().await;
    let username = Username::parse("legacy").unwrap();
    app.store
        .create_user(
            NewUser {
                username: username.clone(),
                email: None,
                full_name: None,
                hashed_password: HashedPassword::from_phc(FASTAPI_HASH),
                disabled: false,
                scopes: ScopeSet::default_for_new_users(),
            },
            |_| Vec::new(),
        )
        .await
        .unwrap();

    // Act
    let first = app.post_login(Login::new("legacy", "secret")).await;

    // Assert
    assert_tokens(&first, "me items");
    let stored = app
        .store
        .find_user_by_username(&username)
        .await
        .unwrap()
        .unwrap()
        .hashed_password
        .expose()
        .to_owned();
    assert!(
        stored.starts_with(CURRENT_PARAMETERS),
        "re-hashed with the current parameters: {stored}"
    );
    assert_ne!(stored, FASTAPI_HASH);
    assert_tokens(
        &app.post_login(Login::new("legacy", "secret")).await,
        "me items",
    );
    assert_incorrect_credentials(
        &app.post_login(Login::new("legacy", "Secret")).await,
        "wrong password after the upgrade",
    );
}

#[tokio::test]
async fn a_wrong_password_leaves_a_fastapi_hash_alone() {
    // Arrange
    let app = spawn_app().await;
    let username = Username::parse("legacy").unwrap();
    app.store
        .create_user(
            NewUser {
                username: username.clone(),
                email: None,
                full_name: None,
                hashed_password: HashedPassword::from_phc(FASTAPI_HASH),
                disabled: false,
                scopes: ScopeSet::default_for_new_users(),
            },
            |_| Vec::new(),
        )
        .await
        .unwrap();

    // Act
    let answer = app.post_login(Login::new("legacy", "not-the-secret")).await;

    // Assert
    assert_incorrect_credentials(&answer, "wrong password on a FastAPI hash");
    let stored = app
        .store
        .find_user_by_username(&username)
        .await
        .unwrap()
        .unwrap()
        .hashed_password
        .expose()
        .to_owned();
    assert_eq!(stored, FASTAPI_HASH);
}

#[tokio::test]
async fn basic_client_credentials_are_tolerated() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    // Act
    let answer = send(
        app.request(Method::POST, "/token")
            .basic_auth("some-client", Some("some-secret"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=password&username=johndoe&password=secret"),
    )
    .await;

    // Assert
    assert_tokens(&answer, "me items");
}

#[tokio::test]
async fn empty_and_null_json_members_count_as_absent() {
    // Arrange
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let post_json = |body: Value| send(app.request(Method::POST, "/token").json(&body));

    // Act
    let accepted = post_json(json!({
        "grant_type": "",
        "username": USERNAME,
        "password": PASSWORD,
        "scope": null,
        "client_id": "",
        "client_secret": null,
    }))
    .await;
    let refused = post_json(json!({"username": null, "password": ""})).await;

    // Assert
    assert_tokens(&accepted, "me items");
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_token_validation_shape(&refused, "empty and null members");
    assert_eq!(
        refused.body,
        json!({
            "detail": [
                {"loc": ["body", "username"], "msg": "Field required", "type": "missing"},
                {"loc": ["body", "password"], "msg": "Field required", "type": "missing"},
            ],
            "error": "invalid_request",
            "error_description": "username: Field required; password: Field required",
        })
    );
}
