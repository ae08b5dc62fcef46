//! Many requests at once: logins share the bounded hashing pool, the unique index decides races
//! for a username, and SQLite's concurrent writers wait their turn instead of failing.

use portcullis::accounts::AccountError;
use reqwest::Method;
use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::*;

const PASSWORD: &str = "secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_logins_of_one_user_all_succeed() {
    // Arrange
    let app = spawn_app().await;
    let user = app.create_user("johndoe", PASSWORD).await;
    let body = serde_urlencoded::to_string([
        ("grant_type", "password"),
        ("username", "johndoe"),
        ("password", PASSWORD),
    ])
    .unwrap();

    // Act
    let mut logins = JoinSet::new();
    for _ in 0..50 {
        let request = app
            .request(Method::POST, "/token")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.clone());
        logins.spawn(send(request));
    }
    let answers = logins.join_all().await;

    // Assert
    assert_eq!(answers.len(), 50);
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["token_type"], "bearer");
        assert_eq!(answer.body["scope"], "me items");
    }
    let mut tokens: Vec<&str> = answers
        .iter()
        .map(|answer| answer.body["access_token"].as_str().unwrap())
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 50, "every login gets its own token");
    let me = app.get_me(tokens[0]).await.body;
    assert_eq!(me["id"], user.id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_of_one_name_leave_exactly_one_account() {
    // Arrange
    let app = std::sync::Arc::new(spawn_app().await);
    let spellings = ["Racer", "racer", "RACER", "rAcEr", "RaCeR"];

    // Act
    let mut creations = JoinSet::new();
    for attempt in 0..10 {
        let app = std::sync::Arc::clone(&app);
        let username = spellings[attempt % spellings.len()];
        creations.spawn(async move {
            app.try_create_user(username, &format!("password {attempt}"))
                .await
        });
    }
    let results = creations.join_all().await;

    // Assert
    let created: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(created.len(), 1, "{results:?}");
    for result in &results {
        assert!(
            matches!(result, Ok(_) | Err(AccountError::UsernameTaken(_))),
            "{result:?}"
        );
    }
    let users = app.store.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id, created[0].id);
    assert_eq!(users[0].username.to_lowercase(), "racer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_item_creation_by_several_users_never_fails() {
    // Arrange
    let app = spawn_app().await;
    let mut tokens = Vec::new();
    for name in ["ann", "bob", "cid", "dee"] {
        app.create_user(name, PASSWORD).await;
        tokens.push((name, app.login(name, PASSWORD).await.access_token));
    }

    // Act: 40 writers at once, 10 per user.
    let mut creations = JoinSet::new();
    for n in 0..40 {
        let (owner, token) = tokens[n % tokens.len()].clone();
        let request = app
            .bearer(Method::POST, "/users/me/items", &token)
            .json(&json!({ "title": format!("item {n}") }));
        creations.spawn(async move { (owner, n, send(request).await) });
    }
    let answers = creations.join_all().await;

    // Assert
    for (owner, n, answer) in &answers {
        assert_eq!(answer.status, 201, "item {n} of {owner}: {}", answer.text);
        let item = &answer.body;
        assert_eq!(item["title"], format!("item {n}"));
        assert_eq!(item["owner"], *owner);
    }
    for (owner, token) in &tokens {
        let items = app.items(token).await;
        assert_eq!(items.len(), 10, "{owner} has their ten items");
        assert!(items.iter().all(|item| item["owner"] == *owner));
    }
}
