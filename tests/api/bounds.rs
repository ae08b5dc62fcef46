//! What a request may cost and what its answer may echo: a cap on form fields and JSON
//! members, 422s that name each problem once and echo nothing unbounded, and text fields
//! refused when they hold control characters (a NUL was a 500 on PostgreSQL).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery staple";

async fn post(app: &TestApp, path: &str, content_type: &str, body: String) -> Answer {
    send(
        app.request(Method::POST, path)
            .header("Content-Type", content_type)
            .body(body),
    )
    .await
}

async fn post_form(app: &TestApp, body: String) -> Answer {
    post(app, "/token", "application/x-www-form-urlencoded", body).await
}

/// The 422 of `POST /token`: the validation shape plus the RFC 6749 members.
fn token_422(issues: Value, description: &str) -> Value {
    json!({
        "detail": issues,
        "error": "invalid_request",
        "error_description": description,
    })
}

fn too_many_fields() -> Value {
    json!([{
        "loc": ["body"],
        "msg": "Too many fields: at most 64 are accepted",
        "type": "too_many_fields",
    }])
}

#[tokio::test]
async fn a_form_of_thousands_of_repeated_fields_is_refused_as_too_many_fields() {
    // Arrange: the reproduction of issue 9, 64 KB of one repeated field name.
    let app = spawn_app().await;

    // Act
    let answer = post_form(&app, "a=&".repeat(21_800)).await;

    // Assert
    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.body,
        token_422(
            too_many_fields(),
            "body: Too many fields: at most 64 are accepted"
        )
    );
}

#[tokio::test]
async fn a_form_of_65_fields_is_refused_and_one_of_64_is_read() {
    let app = spawn_app().await;
    app.create_user("JohnDoe", PASSWORD).await;
    let mut fields: Vec<String> = (0..62).map(|i| format!("x{i}=1")).collect();
    fields.push("username=JohnDoe".into());
    fields.push("password=wrong".into());

    // Act: 64 fields are read (a wrong password is a 401); one more is refused unread.
    let read = post_form(&app, fields.join("&")).await;
    fields.push("x62=1".into());
    let refused = post_form(&app, fields.join("&")).await;

    // Assert
    assert_eq!(read.status, 401);
    assert_eq!(refused.status, 422);
    assert_eq!(refused.body["detail"], too_many_fields());
}

#[tokio::test]
async fn a_json_body_of_65_members_is_refused_as_too_many_fields() {
    let app = spawn_app().await;
    let members: Vec<String> = (0..65).map(|i| format!("\"x{i}\": 1")).collect();

    let answer = post(
        &app,
        "/token",
        "application/json",
        format!("{{{}}}", members.join(", ")),
    )
    .await;

    assert_eq!(answer.status, 422);
    assert_eq!(answer.body["detail"], too_many_fields());
}

#[tokio::test]
async fn a_field_given_many_times_is_named_once() {
    // Arrange: under the field cap, `scope=&` 64 times (main answered one issue per repeat,
    // 1.08 MB for 64 KB of them).
    let app = spawn_app().await;

    // Act
    let answer = post_form(&app, "scope=&".repeat(64)).await;

    // Assert
    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.body,
        token_422(
            json!([{
                "loc": ["body", "scope"],
                "msg": "Field given more than once",
                "type": "value_error",
            }]),
            "scope: Field given more than once"
        )
    );
}

#[tokio::test]
async fn a_long_member_name_is_not_echoed_whole() {
    // Arrange: a JSON member of a 10,000-character name, given twice.
    let app = spawn_app().await;
    let name = "n".repeat(10_000);

    // Act
    let answer = post(
        &app,
        "/token",
        "application/json",
        format!(r#"{{"{name}": 1, "{name}": 2}}"#),
    )
    .await;

    // Assert: the name is cut at 128 characters.
    assert_eq!(answer.status, 422);
    let clipped = format!("{}…", "n".repeat(128));
    assert_eq!(
        answer.body,
        token_422(
            json!([{
                "loc": ["body", clipped],
                "msg": "Field given more than once",
                "type": "value_error",
            }]),
            &format!("{clipped}: Field given more than once")
        )
    );
}

// --- Control characters -----------------------------------------------------------------------

fn control_character_issue(field: &str, code: &str) -> Value {
    json!({"detail": [{
        "loc": ["body", field],
        "msg": format!("Text must not contain control characters (found {code})"),
        "type": "value_error",
    }]})
}

#[tokio::test]
async fn a_nul_in_an_item_title_is_a_validation_error() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = app
        .post_item(&token, json!({"title": "a\u{0}b", "description": "ok"}))
        .await;

    assert_eq!(answer.status, 422);
    assert_eq!(answer.body, control_character_issue("title", "U+0000"));
}

#[tokio::test]
async fn a_nul_in_an_item_description_is_a_validation_error() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = app
        .post_item(&token, json!({"title": "ok", "description": "a\u{0}b"}))
        .await;

    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.body,
        control_character_issue("description", "U+0000")
    );
}

#[tokio::test]
async fn escape_and_other_control_characters_in_an_item_are_validation_errors() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    for (text, code) in [
        ("\u{1b}[2J", "U+001B"),
        ("\u{7f}", "U+007F"),
        ("\u{85}", "U+0085"),
    ] {
        let answer = app.post_item(&token, json!({ "title": text })).await;

        assert_eq!(answer.status, 422, "{text:?}");
        assert_eq!(answer.body, control_character_issue("title", code));
    }
    let listed = app.get_items(&token).await.body;
    assert_eq!(listed, json!([]), "nothing was stored");
}

#[tokio::test]
async fn tabs_and_line_breaks_in_an_item_are_kept() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;
    let description = "Groceries:\r\n\t- milk\n\t- bread";

    let answer = app
        .post_item(&token, json!({"title": "a\tb", "description": description}))
        .await;

    assert_eq!(answer.status, 201);
    let item = answer.body;
    assert_eq!(item["title"], "a\tb");
    assert_eq!(item["description"], description);
}

#[tokio::test]
async fn a_nul_in_a_token_request_field_is_a_validation_error() {
    let app = spawn_app().await;
    app.create_user("JohnDoe", PASSWORD).await;

    for field in ["grant_type", "scope", "client_id"] {
        let answer = app
            .post_token(&[
                ("username", "JohnDoe"),
                ("password", PASSWORD),
                (field, "a\u{0}b"),
            ])
            .await;

        assert_eq!(answer.status, 422, "{field}");
        let description =
            format!("{field}: Text must not contain control characters (found U+0000)");
        assert_eq!(
            answer.body,
            token_422(
                control_character_issue(field, "U+0000")["detail"].clone(),
                &description
            ),
            "{field}"
        );
    }
}

#[tokio::test]
async fn a_nul_in_a_password_is_just_a_wrong_password() {
    // Passwords may hold any character (they are only hashed): no 422, no 500.
    let app = spawn_app().await;
    app.create_user("JohnDoe", PASSWORD).await;

    let answer = app
        .post_token(&[("username", "JohnDoe"), ("password", "a\u{0}b")])
        .await;

    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["detail"], "Incorrect username or password");
}

#[tokio::test]
async fn a_nul_in_a_token_is_an_unknown_token_not_an_error() {
    // Tokens are secrets like passwords (any character); one with a NUL is simply not ours.
    let app = spawn_app().await;

    let revoked = post(
        &app,
        "/token/revoke",
        "application/x-www-form-urlencoded",
        "token=a%00b".into(),
    )
    .await;
    let refreshed = app
        .post_token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "a\u{0}b"),
        ])
        .await;

    assert_eq!(revoked.status, 200);
    assert_eq!(refreshed.status, 400);
    assert_eq!(refreshed.body["error_description"], "Invalid refresh token");
}

#[tokio::test]
async fn a_nul_in_a_revocation_hint_is_a_validation_error() {
    let app = spawn_app().await;

    let answer = post(
        &app,
        "/token/revoke",
        "application/x-www-form-urlencoded",
        "token=x&token_type_hint=a%00b".into(),
    )
    .await;

    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.body["detail"],
        control_character_issue("token_type_hint", "U+0000")["detail"]
    );
}

#[tokio::test]
async fn a_nul_in_a_username_is_answered_like_an_unknown_user() {
    // A username that could not exist is a 401 like an unknown one (the contract), not a 422.
    let app = spawn_app().await;
    app.create_user("JohnDoe", PASSWORD).await;

    let answer = app
        .post_token(&[("username", "John\u{0}Doe"), ("password", PASSWORD)])
        .await;

    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["detail"], "Incorrect username or password");
}
