//! Personal API keys (issue 14): creation, listing, deletion, the admin's side, and a key used
//! wherever an access token is — with the same refusals, in the same order.

use std::{collections::BTreeSet, time::Duration};

use reqwest::Method;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, sea_query::Expr};
use serde_json::{Value, json};

use crate::helpers::*;

const USERNAME: &str = "scripter";
const PASSWORD: &str = "correct horse battery staple";

fn could_not_validate(answer: &Answer, case: &str) {
    assert_eq!(answer.status, 401, "{case}: {}", answer.text);
    assert_eq!(
        answer.body,
        json!({ "detail": "Could not validate credentials" }),
        "{case}"
    );
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{case}");
}

fn key_not_found(answer: &Answer, case: &str) {
    assert_eq!(answer.status, 404, "{case}: {}", answer.text);
    assert_eq!(
        answer.body,
        json!({ "detail": "API key not found" }),
        "{case}"
    );
}

/// A server with a user logged in holding `me items`: the server and the token.
async fn app_with_user() -> (TestApp, String) {
    TestApp::with_logged_in_user(USERNAME, PASSWORD).await
}

#[tokio::test]
async fn a_created_key_is_shown_once_and_listed_without_its_secret() {
    let (app, token) = app_with_user().await;

    let created = app
        .post_api_key(&token, json!({ "name": "  nightly backup " }))
        .await;

    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let members: BTreeSet<&str> = created
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        members,
        BTreeSet::from([
            "id",
            "name",
            "scopes",
            "created_at",
            "expires_at",
            "last_used_at",
            "key"
        ])
    );
    assert_eq!(created.body["name"], "nightly backup");
    assert_eq!(created.body["scopes"], json!(["me", "items"]));
    assert_eq!(created.body["expires_at"], Value::Null);
    assert_eq!(created.body["last_used_at"], Value::Null);
    let key = created.body["key"].as_str().unwrap();
    assert!(key.starts_with("pcl_"), "{key}");
    assert_eq!(key.len(), 75, "{key}");
    assert!(key[4..].bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");

    let listed = app.get_api_keys(&token).await;
    assert_eq!(listed.status, 200);
    let mut expected = created.body.clone();
    expected.as_object_mut().unwrap().remove("key");
    assert_eq!(listed.body, json!([expected]));
    // Neither the key nor any part of its secret appears anywhere in the list.
    assert!(!listed.text.contains(&key[4..40]), "{}", listed.text);
    assert!(!listed.text.contains("hash"), "{}", listed.text);

    // The key works where the token does.
    let me = app.get_me(key).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["username"], USERNAME);
}

#[tokio::test]
async fn a_key_with_every_scope_is_accepted_by_every_protected_operation() {
    let (app, admin) = TestApp::with_admin().await;
    let (_, key) = app
        .api_key(
            &admin,
            json!({ "name": "all", "scopes": ["me", "items", "admin"] }),
        )
        .await;
    let authorization = format!("Bearer {key}");
    for operation in protected_operations() {
        let answer = send(
            operation
                .request(&app)
                .header("Authorization", &authorization),
        )
        .await;
        assert_eq!(
            answer.status, operation.success,
            "{operation} with an API key: {}",
            answer.text
        );
    }
    // Still working: no operation (a logout included) ended it.
    assert_eq!(app.get_me(&key).await.status, 200);
}

#[tokio::test]
async fn scopes_default_to_the_callers_without_admin_and_admin_is_granted_only_by_name() {
    let (app, admin) = TestApp::with_admin().await;

    let default = app.post_api_key(&admin, json!({ "name": "default" })).await;
    assert_eq!(default.body["scopes"], json!(["me", "items"]));
    let by_name = app
        .post_api_key(
            &admin,
            json!({ "name": "admin", "scopes": ["admin", "me"] }),
        )
        .await;
    assert_eq!(by_name.status, 201, "{}", by_name.text);
    assert_eq!(by_name.body["scopes"], json!(["me", "admin"]));
    let admin_key = by_name.body["key"].as_str().unwrap();
    assert_eq!(app.get_admin_users(admin_key, "").await.status, 200);
    let default_key = default.body["key"].as_str().unwrap();
    let refused = app.get_admin_users(default_key, "").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body, json!({ "detail": "Not enough permissions" }));
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Bearer scope=\"admin\"")
    );
}

#[tokio::test]
async fn a_scope_the_caller_does_not_hold_is_refused_by_name() {
    let (app, token) = app_with_user().await;
    let only_me = app
        .login_with(Login::new(USERNAME, PASSWORD).scope("me"))
        .await
        .access_token;

    for (caller, scopes, refused) in [
        (&token, json!(["me", "admin"]), "admin"),
        (&only_me, json!(["items"]), "items"),
    ] {
        let answer = app
            .post_api_key(caller, json!({ "name": "more", "scopes": scopes }))
            .await;
        assert_eq!(answer.status, 422, "{}", answer.text);
        assert_eq!(
            answer.body,
            json!({ "detail": [{
                "loc": ["body", "scopes"],
                "msg": format!("Cannot grant a scope you do not hold: {refused}"),
                "type": "scope_not_held",
            }] })
        );
    }
    // A token holding only `me` makes keys holding only `me` by default.
    let default = app
        .post_api_key(&only_me, json!({ "name": "narrow" }))
        .await;
    assert_eq!(default.body["scopes"], json!(["me"]));
    // A key cannot make a key with more than it holds.
    let narrow_key = default.body["key"].as_str().unwrap();
    let wider = app
        .post_api_key(
            narrow_key,
            json!({ "name": "wider", "scopes": ["me", "items"] }),
        )
        .await;
    assert_eq!(wider.status, 422, "{}", wider.text);
    assert_eq!(
        wider.body["detail"][0]["msg"],
        "Cannot grant a scope you do not hold: items"
    );
}

#[tokio::test]
async fn bad_requests_get_every_problem_named() {
    let (app, token) = app_with_user().await;
    let cases = [
        (
            json!({}),
            json!([{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}]),
        ),
        (
            json!({ "name": "", "scopes": [], "expires_in_days": 0 }),
            json!([
                {"loc": ["body", "name"], "msg": "String should have at least 1 character", "type": "string_too_short"},
                {"loc": ["body", "expires_in_days"], "msg": "Input should be greater than or equal to 1", "type": "greater_than_equal"},
            ]),
        ),
        (
            json!({ "name": "x".repeat(101), "scopes": ["root"], "expires_in_days": 3651 }),
            json!([
                {"loc": ["body", "name"], "msg": "String should have at most 100 characters", "type": "string_too_long"},
                {"loc": ["body", "scopes", "0"], "msg": "Input should be 'me', 'items' or 'admin'", "type": "enum"},
                {"loc": ["body", "expires_in_days"], "msg": "Input should be less than or equal to 3650", "type": "less_than_equal"},
            ]),
        ),
        (
            json!({ "name": 7, "expires_in_days": "30" }),
            json!([
                {"loc": ["body", "name"], "msg": "Input should be a valid string", "type": "string_type"},
                {"loc": ["body", "expires_in_days"], "msg": "Input should be a valid integer", "type": "int_type"},
            ]),
        ),
        (
            json!({ "name": "ok", "expires_in_days": 1.5 }),
            json!([{"loc": ["body", "expires_in_days"], "msg": "Input should be a valid integer, got a number with a fractional part", "type": "int_from_float"}]),
        ),
        (
            json!({ "name": "ok", "scopes": [] }),
            json!([{"loc": ["body", "scopes"], "msg": "List should have at least 1 item after validation, not 0", "type": "too_short"}]),
        ),
    ];
    for (body, detail) in cases {
        let answer = app.post_api_key(&token, body.clone()).await;
        assert_eq!(answer.status, 422, "{body}: {}", answer.text);
        assert_eq!(answer.body, json!({ "detail": detail }), "{body}");
    }
    assert_eq!(
        app.get_api_keys(&token).await.body,
        json!([]),
        "nothing was created"
    );
}

#[tokio::test]
async fn an_expiring_key_says_when_and_is_refused_once_expired() {
    let (app, token) = app_with_user().await;
    let created = app
        .post_api_key(&token, json!({ "name": "ci", "expires_in_days": 30 }))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created_at = timestamp(&created.body, "created_at");
    let expires_at = timestamp(&created.body, "expires_at");
    assert_eq!(expires_at - created_at, chrono::Duration::days(30));
    let key = created.body["key"].as_str().unwrap();
    assert_eq!(app.get_me(key).await.status, 200);

    let id = uuid::Uuid::parse_str(created.body["id"].as_str().unwrap()).unwrap();
    set_expiry(&app, id, chrono::Utc::now() - chrono::Duration::seconds(1)).await;

    could_not_validate(&app.get_me(key).await, "an expired key");
}

async fn set_expiry(app: &TestApp, id: uuid::Uuid, at: chrono::DateTime<chrono::Utc>) {
    use portcullis::db::entities::api_key;
    api_key::Entity::update_many()
        .col_expr(api_key::Column::ExpiresAt, Expr::value(at))
        .filter(api_key::Column::Id.eq(id))
        .exec(app.store.connection())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_mistyped_or_made_up_key_is_refused_without_a_database_read() {
    let (app, token) = app_with_user().await;
    let (_, key) = app.api_key(&token, json!({ "name": "real" })).await;
    let mut typo = key.clone().into_bytes();
    typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let before = app.store.api_key_lookups();

    for presented in [
        typo.as_str(),
        "pcl_",
        "pcl_0000000000000000000000000000000000000000000000000000000000000000000000",
        &key[..74],
        &format!("{key}0"),
        &format!("pcl_{}", "z".repeat(71)),
    ] {
        could_not_validate(&app.get_me(presented).await, presented);
    }

    assert_eq!(app.store.api_key_lookups(), before, "no key was looked up");
    assert_eq!(app.get_me(&key).await.status, 200);
    assert_eq!(app.store.api_key_lookups(), before + 1);
}

#[tokio::test]
async fn a_well_formed_key_that_was_never_created_is_refused() {
    let (app, token) = app_with_user().await;
    let (_, key) = app.api_key(&token, json!({ "name": "real" })).await;
    // Another key of the same shape, made the same way, but never stored.
    let (other_app, other_token) = app_with_user().await;
    let (_, foreign) = other_app
        .api_key(&other_token, json!({ "name": "elsewhere" }))
        .await;

    could_not_validate(&app.get_me(&foreign).await, "a key of another server");
    assert_eq!(app.get_me(&key).await.status, 200);
}

#[tokio::test]
async fn a_deleted_key_is_refused_at_the_next_request_and_other_keys_keep_working() {
    let (app, token) = app_with_user().await;
    let (id, key) = app.api_key(&token, json!({ "name": "one" })).await;
    let (_, other) = app.api_key(&token, json!({ "name": "two" })).await;
    assert_eq!(app.get_me(&key).await.status, 200);

    let deleted = app.delete_api_key(&token, &id).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(deleted.text, "");

    could_not_validate(&app.get_me(&key).await, "a deleted key");
    assert_eq!(app.get_me(&other).await.status, 200);
    key_not_found(&app.delete_api_key(&token, &id).await, "deleted twice");
    let listed = app.get_api_keys(&token).await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "two");
}

#[tokio::test]
async fn a_key_can_delete_itself() {
    let (app, token) = app_with_user().await;
    let (id, key) = app.api_key(&token, json!({ "name": "self" })).await;
    assert_eq!(app.delete_api_key(&key, &id).await.status, 204);
    could_not_validate(&app.get_me(&key).await, "a key that deleted itself");
}

#[tokio::test]
async fn another_users_key_or_an_unknown_one_is_not_found() {
    let (app, token) = app_with_user().await;
    app.create_user("other", PASSWORD).await;
    let other_token = app.login("other", PASSWORD).await.access_token;
    let (id, key) = app.api_key(&other_token, json!({ "name": "theirs" })).await;

    key_not_found(&app.delete_api_key(&token, &id).await, "another user's key");
    key_not_found(
        &app.delete_api_key(&token, MADE_UP_ID).await,
        "an unknown key",
    );
    key_not_found(
        &app.delete_api_key(&token, "not-a-uuid").await,
        "not a UUID",
    );
    assert_eq!(app.get_api_keys(&token).await.body, json!([]));
    assert_eq!(app.get_me(&key).await.status, 200, "theirs still works");
}

#[tokio::test]
async fn a_disabled_deleted_or_narrowed_user_is_refused_with_the_tokens_errors() {
    let (app, admin) = TestApp::with_admin().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;
    let (_, key) = app.api_key(&token, json!({ "name": "k" })).await;
    assert_eq!(app.get_items(&key).await.status, 200);
    let id = user.id.to_string();

    // A scope removed from the user: the key loses it at its next request.
    let narrowed = app
        .patch_admin_user(&admin, &id, json!({ "scopes": ["me"] }))
        .await;
    assert_eq!(narrowed.status, 200, "{}", narrowed.text);
    let items = app.get_items(&key).await;
    assert_eq!(items.status, 401);
    assert_eq!(items.body, json!({ "detail": "Not enough permissions" }));
    assert_eq!(
        items.header("www-authenticate"),
        Some("Bearer scope=\"items\"")
    );
    assert_eq!(app.get_me(&key).await.status, 200);

    app.disable_user(USERNAME).await;
    let inactive = app.get_me(&key).await;
    assert_eq!(inactive.status, 400);
    assert_eq!(inactive.body, json!({ "detail": "Inactive user" }));
    // Scopes are checked before the account's status, as for a token.
    assert_eq!(app.get_items(&key).await.status, 401);

    app.enable_user(USERNAME).await;
    assert_eq!(app.get_me(&key).await.status, 200);
    app.delete_user(USERNAME).await;
    could_not_validate(&app.get_me(&key).await, "a deleted user's key");
}

#[tokio::test]
async fn a_key_is_not_a_session() {
    let (app, token) = app_with_user().await;
    let (_, key) = app.api_key(&token, json!({ "name": "k" })).await;
    let second = app.login(USERNAME, PASSWORD).await.access_token;

    // The sessions list seen with a key: no session is the current one.
    let sessions = app.get_sessions(&key).await;
    assert_eq!(sessions.status, 200);
    let sessions = sessions.body.as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|session| session["current"] == false));

    // `local` logout with a key ends nothing; the key works on.
    let local = app.post_logout(&key, None).await;
    assert_eq!(local.status, 200, "{}", local.text);
    assert_eq!(local.body, json!({ "sessions_ended": 0 }));
    assert_eq!(app.get_me(&token).await.status, 200);

    // A logout everywhere ends every session, not the key.
    let global = app.post_logout(&token, Some("global")).await;
    assert_eq!(global.body, json!({ "sessions_ended": 2 }));
    assert_access_refused(&app, &second, "a session ended by a global logout").await;
    assert_eq!(app.get_me(&key).await.status, 200);

    // Nor does a password change.
    let token = app.login(USERNAME, PASSWORD).await.access_token;
    let changed = app.post_password(&token, PASSWORD, STRONG_PASSWORD).await;
    assert_eq!(changed.status, 204, "{}", changed.text);
    assert_eq!(app.get_me(&key).await.status, 200);

    // A password change made with a key ends every session (the key is none of them).
    let token = app.login(USERNAME, STRONG_PASSWORD).await.access_token;
    let changed = app.post_password(&key, STRONG_PASSWORD, PASSWORD).await;
    assert_eq!(changed.status, 204, "{}", changed.text);
    assert_access_refused(&app, &token, "a session ended by a change made with a key").await;
    assert_eq!(app.get_me(&key).await.status, 200);
}

#[tokio::test]
async fn last_used_at_is_written_after_a_use_and_at_most_once_a_minute() {
    let (app, token) = app_with_user().await;
    let (_, key) = app.api_key(&token, json!({ "name": "k" })).await;
    assert_eq!(app.get_me(&key).await.status, 200);

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        let listed = app.get_api_keys(&token).await.body;
        if !listed[0]["last_used_at"].is_null() {
            break timestamp(&listed[0], "last_used_at");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "last_used_at never written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!((chrono::Utc::now() - first).num_seconds().abs() < 30);

    // Many uses at once within the minute: the recorded time stays.
    let uses = send_all((0..20).map(|_| app.bearer(Method::GET, "/users/me", &key))).await;
    assert!(uses.iter().all(|answer| answer.status == 200));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listed = app.get_api_keys(&token).await.body;
    assert_eq!(timestamp(&listed[0], "last_used_at"), first);
}

#[tokio::test]
async fn at_most_fifty_keys_even_when_created_at_once() {
    let (app, token) = app_with_user().await;
    let burst = send_all((0..60).map(|n| {
        app.bearer(Method::POST, "/users/me/api-keys", &token)
            .json(&json!({ "name": format!("key {n}") }))
    }))
    .await;

    let created = burst.iter().filter(|answer| answer.status == 201).count();
    let refused: Vec<&Answer> = burst.iter().filter(|answer| answer.status == 409).collect();
    assert_eq!(
        (created, refused.len()),
        (50, 10),
        "{:?}",
        burst.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for answer in refused {
        assert_eq!(
            answer.body,
            json!({ "detail": "Too many API keys: at most 50 per user; delete one first" })
        );
    }
    let listed = app.get_api_keys(&token).await.body;
    assert_eq!(listed.as_array().unwrap().len(), 50);
    // Deleting one makes room for one.
    let id = listed[0]["id"].as_str().unwrap();
    assert_eq!(app.delete_api_key(&token, id).await.status, 204);
    assert_eq!(
        app.post_api_key(&token, json!({ "name": "again" }))
            .await
            .status,
        201
    );
    assert_eq!(
        app.post_api_key(&token, json!({ "name": "over" }))
            .await
            .status,
        409
    );
}

#[tokio::test]
async fn an_admin_lists_and_deletes_another_users_keys() {
    let (app, admin) = TestApp::with_admin().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;
    let (id, key) = app.api_key(&token, json!({ "name": "k" })).await;
    let mine = app.get_api_keys(&token).await.body;
    let user_id = user.id.to_string();

    let listed = send(app.bearer(
        Method::GET,
        &format!("/admin/users/{user_id}/api-keys"),
        &admin,
    ))
    .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body, mine);

    let unknown_user = send(app.bearer(
        Method::GET,
        &format!("/admin/users/{MADE_UP_ID}/api-keys"),
        &admin,
    ))
    .await;
    assert_eq!(unknown_user.status, 404);
    assert_eq!(unknown_user.body, json!({ "detail": "User not found" }));

    // The key of another user, named under this one: not found, and still working.
    let admin_user = app.get_me(&admin).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong_owner = send(app.bearer(
        Method::DELETE,
        &format!("/admin/users/{admin_user}/api-keys/{id}"),
        &admin,
    ))
    .await;
    key_not_found(&wrong_owner, "a key named under another user");
    assert_eq!(app.get_me(&key).await.status, 200);

    let deleted = send(app.bearer(
        Method::DELETE,
        &format!("/admin/users/{user_id}/api-keys/{id}"),
        &admin,
    ))
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    could_not_validate(&app.get_me(&key).await, "a key an admin deleted");
    let again = send(app.bearer(
        Method::DELETE,
        &format!("/admin/users/{user_id}/api-keys/{id}"),
        &admin,
    ))
    .await;
    key_not_found(&again, "deleted twice");

    // Without `admin`, the user's own token may not.
    let refused = send(app.bearer(
        Method::GET,
        &format!("/admin/users/{user_id}/api-keys"),
        &token,
    ))
    .await;
    assert_eq!(refused.status, 401);
}

#[tokio::test]
async fn creation_and_deletion_are_audited_with_their_actor_and_never_the_key() {
    let (app, admin) = TestApp::with_admin().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;
    let (id, key) = app
        .api_key(&token, json!({ "name": "audited", "expires_in_days": 7 }))
        .await;
    let admin_id = app.get_me(&admin).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/admin/users/{}/api-keys/{id}", user.id);
    assert_eq!(
        send(app.bearer(Method::DELETE, &path, &admin)).await.status,
        204
    );

    let created = app.audit_events(&admin, "?type=api_key.created", 1).await;
    let deleted = app.audit_events(&admin, "?type=api_key.deleted", 1).await;
    assert_eq!((created.len(), deleted.len()), (1, 1));
    let listed = app.get_audit_events(&admin, "").await;
    assert!(
        !listed.text.contains(&key[4..40]),
        "the key is in the audit log"
    );
    let (created, deleted) = (&created[0], &deleted[0]);
    assert_eq!(created["user_id"], user.id.to_string());
    assert_eq!(created["actor"], user.id.to_string());
    assert_eq!(deleted["user_id"], user.id.to_string());
    assert_eq!(deleted["actor"], admin_id);
    for event in [created, deleted] {
        assert_eq!(event["detail"]["key_id"], id);
        assert_eq!(event["detail"]["name"], "audited");
        assert_eq!(event["detail"]["scopes"], json!(["me", "items"]));
        assert!(event["detail"]["expires_at"].is_string(), "{event}");
    }
}
