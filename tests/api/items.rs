//! `GET`, `POST /users/me/items` and `DELETE /users/me/items/{id}`: a user's own items.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery staple";

/// `POST /users/me/items` with a raw body of `content_type`.
async fn post_raw(app: &TestApp, token: &str, content_type: &str, body: &'static str) -> Answer {
    send(
        app.bearer(Method::POST, "/users/me/items", token)
            .header("Content-Type", content_type)
            .body(body),
    )
    .await
}

fn id_of(item: &Value) -> &str {
    item["id"].as_str().expect("an item id is a string")
}

/// Checks an item body: a UUID id, an RFC 3339 `created_at`, and otherwise exactly `expected`
/// (which leaves out `id` and `created_at`).
fn assert_item(item: &Value, expected: Value) {
    let id = id_of(item);
    Uuid::parse_str(id).unwrap_or_else(|err| panic!("item id {id:?} is not a UUID: {err}"));
    let created_at = item["created_at"].as_str().expect("created_at is a string");
    chrono::DateTime::parse_from_rfc3339(created_at)
        .unwrap_or_else(|err| panic!("created_at {created_at:?} is not RFC 3339: {err}"));
    let mut whole = expected;
    whole["id"] = json!(id);
    whole["created_at"] = json!(created_at);
    assert_eq!(item, &whole);
}

/// Checks a 422 has the contract's validation shape — `{"detail": [{"loc": ["body", …],
/// "msg": "…", "type": "…"}]}` with nothing else — and returns the body.
fn assert_validation_error(answer: Answer) -> Value {
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.header("www-authenticate"), None);
    let body = answer.body;
    let members = body.as_object().expect("the body is an object");
    assert_eq!(members.len(), 1, "only `detail` in {body}");
    let issues = body["detail"].as_array().expect("`detail` is a list");
    assert!(!issues.is_empty(), "at least one issue in {body}");
    for issue in issues {
        let issue = issue.as_object().expect("an issue is an object");
        let mut names: Vec<&str> = issue.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["loc", "msg", "type"], "members of {issue:?}");
        let loc = issue["loc"].as_array().expect("`loc` is a list");
        assert!(
            loc.iter().all(Value::is_string),
            "`loc` holds strings: {loc:?}"
        );
        assert!(!issue["msg"].as_str().expect("`msg` is a string").is_empty());
        assert!(
            !issue["type"]
                .as_str()
                .expect("`type` is a string")
                .is_empty()
        );
    }
    body
}

fn the_only_issue(body: &Value) -> &Value {
    let issues = body["detail"].as_array().unwrap();
    assert_eq!(issues.len(), 1, "exactly one issue in {body}");
    &issues[0]
}

// --- Listing and creating -------------------------------------------------------------------

#[tokio::test]
async fn a_new_user_has_no_items() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = app.get_items(&token).await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!([]));
}

#[tokio::test]
async fn a_created_item_is_returned_with_its_owner() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = app
        .post_item(
            &token,
            json!({ "title": "Buy milk", "description": "Two litres" }),
        )
        .await;

    assert_eq!(answer.status, 201);
    let item = answer.body;
    assert_item(
        &item,
        json!({
            "id": null,
            "title": "Buy milk",
            "description": "Two litres",
            "owner": "JohnDoe",
            "created_at": null,
        }),
    );
}

#[tokio::test]
async fn a_created_item_is_listed_exactly_as_it_was_returned() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;
    let created = app
        .create_item(
            &token,
            json!({ "title": "Buy milk", "description": "Two litres" }),
        )
        .await;

    let items = app.items(&token).await;

    assert_eq!(items, vec![created]);
}

#[tokio::test]
async fn an_item_without_a_description_has_a_null_description() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let item = app
        .create_item(&token, json!({ "title": "No details" }))
        .await;

    assert_item(
        &item,
        json!({
            "id": null,
            "title": "No details",
            "description": null,
            "owner": "JohnDoe",
            "created_at": null,
        }),
    );
    assert_eq!(app.items(&token).await, vec![item]);
}

#[tokio::test]
async fn an_item_with_a_null_description_is_created() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let item = app
        .create_item(&token, json!({ "title": "Null", "description": null }))
        .await;

    assert_eq!(item["description"], Value::Null);
}

#[tokio::test]
async fn items_are_listed_oldest_first() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;
    let titles = ["first", "second", "third", "fourth", "fifth"];
    let mut created = Vec::new();
    for title in titles {
        created.push(app.create_item(&token, json!({ "title": title })).await);
    }

    let items = app.items(&token).await;

    let listed_titles: Vec<&str> = items
        .iter()
        .map(|item| item["title"].as_str().unwrap())
        .collect();
    assert_eq!(listed_titles, titles);
    assert_eq!(items, created);
}

#[tokio::test]
async fn the_owner_is_the_username_as_it_was_created_whatever_the_login_spelling() {
    let app = spawn_app().await;
    app.create_user("JohnDoe", PASSWORD).await;
    let token = app.login("JOHNDOE", PASSWORD).await.access_token;

    let item = app.create_item(&token, json!({ "title": "Mine" })).await;

    assert_eq!(item["owner"], json!("JohnDoe"));
}

#[tokio::test]
async fn users_only_ever_see_their_own_items() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.create_user("bob", PASSWORD).await;
    let alice = app.login("alice", PASSWORD).await.access_token;
    let bob = app.login("bob", PASSWORD).await.access_token;
    let alices = app.create_item(&alice, json!({ "title": "Alice's" })).await;
    let bobs = app.create_item(&bob, json!({ "title": "Bob's" })).await;

    let seen_by_alice = app.items(&alice).await;
    let seen_by_bob = app.items(&bob).await;

    assert_eq!(seen_by_alice, vec![alices]);
    assert_eq!(seen_by_bob, vec![bobs]);
}

// --- Titles ---------------------------------------------------------------------------------

#[tokio::test]
async fn an_empty_title_is_a_validation_error() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = app.post_item(&token, json!({ "title": "" })).await;

    let body = assert_validation_error(answer);
    assert_eq!(
        body,
        json!({ "detail": [{
            "loc": ["body", "title"],
            "msg": "String should have at least 1 character",
            "type": "string_too_short",
        }] })
    );
    assert_eq!(app.items(&token).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_title_of_201_characters_is_a_validation_error() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = app
        .post_item(&token, json!({ "title": "x".repeat(201) }))
        .await;

    let body = assert_validation_error(answer);
    assert_eq!(
        body,
        json!({ "detail": [{
            "loc": ["body", "title"],
            "msg": "String should have at most 200 characters",
            "type": "string_too_long",
        }] })
    );
    assert_eq!(app.items(&token).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_title_of_201_multi_byte_characters_is_a_validation_error() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = app
        .post_item(&token, json!({ "title": "é".repeat(201) }))
        .await;

    let body = assert_validation_error(answer);
    assert_eq!(
        body,
        json!({ "detail": [{
            "loc": ["body", "title"],
            "msg": "String should have at most 200 characters",
            "type": "string_too_long",
        }] })
    );
}

#[tokio::test]
async fn a_title_of_200_characters_is_accepted() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;
    let title = "x".repeat(200);

    let item = app.create_item(&token, json!({ "title": title })).await;

    assert_eq!(item["title"], json!(title));
}

#[tokio::test]
async fn a_title_of_200_multi_byte_characters_is_accepted() {
    // 200 characters but 400 (é) and 800 (emoji) bytes: the limit counts characters.
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;
    let accented = "é".repeat(200);
    let emoji = "🦀".repeat(200);

    let first = app.create_item(&token, json!({ "title": accented })).await;
    let second = app.create_item(&token, json!({ "title": emoji })).await;

    assert_eq!(first["title"], json!(accented));
    assert_eq!(second["title"], json!(emoji));
    assert_eq!(app.items(&token).await, vec![first, second]);
}

#[tokio::test]
async fn a_missing_title_is_a_validation_error_naming_the_field() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = app
        .post_item(&token, json!({ "description": "no title" }))
        .await;

    // The contract: a missing field is `loc: ["body", "<field>"]`, `type: "missing"`; the
    // message is free.
    let body = assert_validation_error(answer);
    let issue = the_only_issue(&body);
    assert_eq!(issue["loc"], json!(["body", "title"]), "{body}");
    assert_eq!(issue["type"], json!("missing"), "{body}");
    assert_eq!(app.items(&token).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_title_that_is_not_a_string_is_a_validation_error_naming_the_field() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    // A number is not a title: FastAPI (pydantic) refuses it rather than turning it into "42".
    let answer = app.post_item(&token, json!({ "title": 42 })).await;

    let body = assert_validation_error(answer);
    let issue = the_only_issue(&body);
    assert_eq!(issue["loc"], json!(["body", "title"]), "{body}");
    assert_eq!(app.items(&token).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_description_that_is_not_a_string_is_a_validation_error_naming_the_field() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = app
        .post_item(&token, json!({ "title": "A title", "description": true }))
        .await;

    let body = assert_validation_error(answer);
    let issue = the_only_issue(&body);
    assert_eq!(issue["loc"], json!(["body", "description"]), "{body}");
    assert_eq!(app.items(&token).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_validation_error() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = post_raw(&app, &token, "application/json", "{not json").await;

    let body = assert_validation_error(answer);
    assert_eq!(
        body,
        json!({ "detail": [{
            "loc": ["body"],
            "msg": "JSON decode error: key must be a string at line 1 column 2",
            "type": "json_invalid",
        }] })
    );
    assert_eq!(app.items(&token).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_json_body_that_is_not_an_object_is_a_validation_error() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = post_raw(&app, &token, "application/json", r#"["a title"]"#).await;

    let body = assert_validation_error(answer);
    assert_eq!(
        body,
        json!({ "detail": [{
            "loc": ["body"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "type": "model_attributes_type",
        }] })
    );
}

#[tokio::test]
async fn a_body_of_the_wrong_content_type_is_a_validation_error() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = post_raw(&app, &token, "text/plain", r#"{"title": "x"}"#).await;

    let body = assert_validation_error(answer);
    assert_eq!(
        body,
        json!({ "detail": [{
            "loc": ["body"],
            "msg": "Content-Type must be application/json",
            "type": "content_type",
        }] })
    );
    assert_eq!(app.items(&token).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_missing_body_is_a_validation_error() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = send(app.bearer(Method::POST, "/users/me/items", &token)).await;

    let body = assert_validation_error(answer);
    assert_eq!(
        body,
        json!({ "detail": [{
            "loc": ["body"],
            "msg": "Field required",
            "type": "missing",
        }] })
    );
}

// --- Deleting -------------------------------------------------------------------------------

#[tokio::test]
async fn deleting_an_own_item_removes_it() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;
    let kept = app.create_item(&token, json!({ "title": "keep" })).await;
    let doomed = app.create_item(&token, json!({ "title": "delete" })).await;

    let answer = app.delete_item(&token, id_of(&doomed)).await;

    assert_eq!(answer.status, 204);
    assert_eq!(answer.text.len(), 0, "a 204 has no body");
    assert_eq!(app.items(&token).await, vec![kept]);
}

#[tokio::test]
async fn deleting_an_item_twice_is_not_found_the_second_time() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;
    let item = app.create_item(&token, json!({ "title": "once" })).await;
    assert_eq!(app.delete_item(&token, id_of(&item)).await.status, 204);

    let answer = app.delete_item(&token, id_of(&item)).await;

    assert_eq!(answer.status, 404);
    assert_eq!(answer.header("www-authenticate"), None);
    assert_eq!(answer.body, json!({ "detail": "Item not found" }));
}

#[tokio::test]
async fn another_users_item_is_not_found_and_stays() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    app.create_user("mallory", PASSWORD).await;
    let alice = app.login("alice", PASSWORD).await.access_token;
    let mallory = app.login("mallory", PASSWORD).await.access_token;
    let item = app.create_item(&alice, json!({ "title": "Alice's" })).await;

    let answer = app.delete_item(&mallory, id_of(&item)).await;

    assert_eq!(answer.status, 404);
    assert_eq!(answer.body, json!({ "detail": "Item not found" }));
    assert_eq!(app.items(&alice).await, vec![item]);
}

#[tokio::test]
async fn an_unknown_item_is_not_found() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;
    let item = app.create_item(&token, json!({ "title": "stays" })).await;

    let answer = app.delete_item(&token, &Uuid::new_v4().to_string()).await;

    assert_eq!(answer.status, 404);
    assert_eq!(answer.body, json!({ "detail": "Item not found" }));
    assert_eq!(app.items(&token).await, vec![item]);
}

#[tokio::test]
async fn an_item_id_that_is_not_a_uuid_is_a_validation_error() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;

    let answer = app.delete_item(&token, "not-a-uuid").await;

    // FastAPI's shape for a malformed path parameter: `loc: ["path", "<name>"]`.
    let body = assert_validation_error(answer);
    let issue = the_only_issue(&body);
    assert_eq!(issue["loc"], json!(["path", "id"]), "{body}");
}

#[tokio::test]
async fn an_item_body_over_the_limit_is_refused_as_too_large() {
    let (app, token) = TestApp::with_logged_in_user("JohnDoe", PASSWORD).await;
    let description = "x".repeat(70 * 1024);

    let answer = app
        .post_item(
            &token,
            json!({ "title": "big", "description": description }),
        )
        .await;

    assert_eq!(answer.status, 413);
    assert_eq!(answer.body, json!({ "detail": "Request body too large" }));
    assert_eq!(app.items(&token).await, Vec::<Value>::new());
}
