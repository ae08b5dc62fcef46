//! Bounded per-user data: an item quota that holds under a burst, and `GET /users/me/items`
//! a page at a time (`limit`, `after`, a `Link` to the next page), its shape unchanged.

use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery staple";

/// A server with an item quota of `quota`, and `JohnDoe`'s access token.
async fn app_with_quota(quota: u32) -> (TestApp, String) {
    let app = spawn_app_configured(|settings| settings.max_items_per_user = quota).await;
    app.create_user("JohnDoe", PASSWORD).await;
    let token = app.login("JohnDoe", PASSWORD).await.access_token;
    (app, token)
}

/// Creates `count` items; their ids.
async fn create_items(app: &TestApp, token: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let item = app
            .create_item(token, json!({ "title": format!("item {i}") }))
            .await;
        ids.push(item["id"].as_str().unwrap().to_owned());
    }
    ids
}

fn ids(page: &Value) -> Vec<String> {
    page.as_array()
        .expect("a page is a list of items")
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn page(app: &TestApp, token: &str, path: &str) -> (Option<String>, Vec<String>) {
    let answer = send(app.bearer(Method::GET, path, token)).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    (answer.header("link").map(str::to_owned), ids(&answer.body))
}

fn next_link(limit: u32, after: &str) -> String {
    format!("</users/me/items?limit={limit}&after={after}>; rel=\"next\"")
}

// --- Quota ----------------------------------------------------------------------------------------

#[tokio::test]
async fn a_create_beyond_the_item_quota_is_a_conflict() {
    // Arrange
    let (app, token) = app_with_quota(5).await;
    let created = create_items(&app, &token, 5).await;

    // Act
    let refused = app.post_item(&token, json!({"title": "one more"})).await;

    // Assert
    assert_eq!(refused.status, 409);
    assert_eq!(refused.body, json!({"detail": "Item limit reached"}));
    let (_, listed) = page(&app, &token, "/users/me/items").await;
    assert_eq!(listed, created, "nothing more was stored");
}

#[tokio::test]
async fn deleting_an_item_frees_a_place_under_the_quota() {
    let (app, token) = app_with_quota(2).await;
    let created = create_items(&app, &token, 2).await;
    let deleted = app.delete_item(&token, &created[0]).await;
    assert_eq!(deleted.status, 204);

    let answer = app.post_item(&token, json!({"title": "again"})).await;

    assert_eq!(answer.status, 201);
}

#[tokio::test]
async fn the_quota_is_per_user() {
    let (app, token) = app_with_quota(1).await;
    create_items(&app, &token, 1).await;
    app.create_user("JaneDoe", PASSWORD).await;
    let other = app.login("JaneDoe", PASSWORD).await.access_token;

    let answer = app.post_item(&other, json!({"title": "mine"})).await;

    assert_eq!(answer.status, 201);
}

#[tokio::test]
async fn a_burst_of_creates_never_goes_over_the_quota() {
    // Arrange: a quota of 5, one item already held.
    let (app, token) = app_with_quota(5).await;
    create_items(&app, &token, 1).await;
    let app = std::sync::Arc::new(app);

    // Act: 20 creates at once.
    let mut creates = JoinSet::new();
    for i in 0..20 {
        let (app, token) = (app.clone(), token.clone());
        creates.spawn(async move {
            let answer = app
                .post_item(&token, json!({ "title": format!("burst {i}") }))
                .await;
            (answer.status.as_u16(), answer.body)
        });
    }
    let answers = creates.join_all().await;

    // Assert: exactly the 4 free places were taken.
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 409)
        .map(|(_, body)| body)
        .collect();
    assert_eq!((created, refused.len()), (4, 16), "{answers:?}");
    assert!(
        refused
            .iter()
            .all(|body| **body == json!({"detail": "Item limit reached"}))
    );
    let (_, listed) = page(&app, &token, "/users/me/items").await;
    assert_eq!(listed.len(), 5);
}

// --- Pages ----------------------------------------------------------------------------------------

#[tokio::test]
async fn following_the_next_links_visits_every_item_once_oldest_first() {
    // Arrange
    let (app, token) = app_with_quota(1000).await;
    let created = create_items(&app, &token, 5).await;

    // Act
    let first = page(&app, &token, "/users/me/items?limit=2").await;
    let second = page(
        &app,
        &token,
        &format!("/users/me/items?limit=2&after={}", created[1]),
    )
    .await;
    let third = page(
        &app,
        &token,
        &format!("/users/me/items?limit=2&after={}", created[3]),
    )
    .await;

    // Assert: each page's link is exactly the next page, and the last has none.
    assert_eq!(
        first,
        (Some(next_link(2, &created[1])), created[0..2].to_vec())
    );
    assert_eq!(
        second,
        (Some(next_link(2, &created[3])), created[2..4].to_vec())
    );
    assert_eq!(third, (None, created[4..].to_vec()));
}

#[tokio::test]
async fn the_next_link_is_followed_as_given() {
    let (app, token) = app_with_quota(1000).await;
    let created = create_items(&app, &token, 3).await;

    let mut seen = Vec::new();
    let mut path = "/users/me/items?limit=1".to_owned();
    loop {
        let (link, ids) = page(&app, &token, &path).await;
        seen.extend(ids);
        let Some(link) = link else { break };
        path = link
            .strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .map(|(target, _)| target.to_owned())
            .expect("a Link header of the form <…>; rel=\"next\"");
        assert!(seen.len() <= created.len(), "the walk ends");
    }

    assert_eq!(seen, created);
}

#[tokio::test]
async fn a_page_holds_100_items_unless_asked() {
    let (app, token) = app_with_quota(1000).await;
    let created = create_items(&app, &token, 101).await;

    let (link, first) = page(&app, &token, "/users/me/items").await;
    let (last_link, rest) = page(
        &app,
        &token,
        &format!("/users/me/items?after={}", created[99]),
    )
    .await;

    assert_eq!(first, created[..100].to_vec());
    assert_eq!(link, Some(next_link(100, &created[99])));
    assert_eq!((last_link, rest), (None, created[100..].to_vec()));
}

#[tokio::test]
async fn a_page_that_is_exactly_full_has_no_next_link() {
    let (app, token) = app_with_quota(1000).await;
    let created = create_items(&app, &token, 2).await;

    let response = page(&app, &token, "/users/me/items?limit=2").await;

    assert_eq!(response, (None, created));
}

#[tokio::test]
async fn a_page_after_a_deleted_item_starts_where_it_was() {
    let (app, token) = app_with_quota(1000).await;
    let created = create_items(&app, &token, 3).await;
    app.delete_item(&token, &created[1]).await;

    let response = page(
        &app,
        &token,
        &format!("/users/me/items?after={}", created[1]),
    )
    .await;

    assert_eq!(response, (None, created[2..].to_vec()));
}

#[tokio::test]
async fn bad_page_parameters_are_validation_errors_naming_them() {
    let (app, token) = app_with_quota(1000).await;

    for (query, loc, msg, kind) in [
        (
            "limit=0",
            "limit",
            "Input should be greater than or equal to 1",
            "greater_than_equal",
        ),
        (
            "limit=",
            "limit",
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        ),
        (
            "after=",
            "after",
            "Input should be a valid UUID: invalid length: found 0",
            "uuid_parsing",
        ),
        (
            "limit=-3",
            "limit",
            "Input should be greater than or equal to 1",
            "greater_than_equal",
        ),
        (
            "limit=201",
            "limit",
            "Input should be less than or equal to 200",
            "less_than_equal",
        ),
        (
            "limit=ten",
            "limit",
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        ),
        (
            "after=nope",
            "after",
            "Input should be a valid UUID: invalid character: found `n` at 0",
            "uuid_parsing",
        ),
    ] {
        let path = format!("/users/me/items?{query}");
        let answer = send(app.bearer(Method::GET, &path, &token)).await;

        assert_eq!(answer.status, 422, "{query}");
        assert_eq!(
            answer.body,
            json!({"detail": [{"loc": ["query", loc], "msg": msg, "type": kind}]}),
            "{query}"
        );
    }
}

#[tokio::test]
async fn bad_page_parameters_without_a_token_are_not_authenticated_first() {
    let app = spawn_app().await;

    let answer = send(app.request(Method::GET, "/users/me/items?limit=0&after=nope")).await;

    assert_eq!(answer.status, 401);
    assert_eq!(answer.body, json!({"detail": "Not authenticated"}));
}

#[tokio::test]
async fn behind_a_public_url_the_next_link_is_under_it() {
    // Arrange: the service published below a path by a proxy.
    let app = spawn_app_configured(|settings| {
        settings.public_url = Some("https://auth.example.com/base".into());
    })
    .await;
    app.create_user("JohnDoe", PASSWORD).await;
    let token = app.login("JohnDoe", PASSWORD).await.access_token;
    let created = create_items(&app, &token, 2).await;

    // Act
    let (link, first) = page(&app, &token, "/users/me/items?limit=1").await;

    // Assert
    assert_eq!(first, created[..1]);
    assert_eq!(
        link.as_deref(),
        Some(
            format!(
                "<https://auth.example.com/base/users/me/items?limit=1&after={}>; rel=\"next\"",
                created[0]
            )
            .as_str()
        )
    );
}
