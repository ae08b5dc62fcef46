//! The admin API (`/admin/users…`), the last-admin rule, scopes intersected with the user's
//! current ones, and the per-account protection with its unlock.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const USERNAME: &str = "johndoe";
/// A test user's password, set without the policy.
const PASSWORD: &str = "correct horse battery staple";

fn assert_detail(answer: &Answer, status: u16, detail: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.body, json!({ "detail": detail }));
}

/// The one issue of a 422: its `loc` and `type`.
fn assert_single_issue(answer: &Answer, loc: Value, kind: &str) {
    assert_eq!(answer.status, 422, "{}", answer.text);
    let issues = answer.body["detail"].as_array().expect("a list of issues");
    assert_eq!(issues.len(), 1, "{}", answer.text);
    assert_eq!(issues[0]["loc"], loc, "{}", answer.text);
    assert_eq!(issues[0]["type"], kind, "{}", answer.text);
}

fn usernames(page: &Answer) -> Vec<String> {
    assert_eq!(page.status, 200, "{}", page.text);
    page.body["users"]
        .as_array()
        .expect("a list of users")
        .iter()
        .map(|user| user["username"].as_str().unwrap().to_owned())
        .collect()
}

fn id_of(user: &portcullis::db::User) -> String {
    user.id.to_string()
}

/// Every page of `GET /admin/users{query}` (`query` starts with `?`), following `next_cursor`
/// with pages of `limit`.
async fn walk(app: &TestApp, token: &str, query: &str, limit: u32) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let separator = if query.is_empty() { "?" } else { "&" };
    // A walk that does not end is a failure, not a hang.
    for _ in 0..1000 {
        let mut path = format!("{query}{separator}limit={limit}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = app.get_admin_users(token, &path).await;
        let names = usernames(&page);
        assert!(names.len() <= limit as usize);
        seen.extend(names);
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert_eq!(page.body["next_cursor"], Value::Null);
                return seen;
            }
        }
    }
    panic!("the walk did not end after 1000 pages: {seen:?}");
}

// --- Who may ------------------------------------------------------------------------------------

#[tokio::test]
async fn an_admin_logged_in_without_asking_for_admin_is_refused_for_lack_of_it() {
    let (app, _) = TestApp::with_admin().await;
    let default_login = assert_tokens(
        &app.post_login(Login::new(ADMIN, STRONG_PASSWORD)).await,
        DEFAULT_SCOPE,
    );

    let answer = app.get_admin_users(&default_login.access_token, "").await;

    assert_detail(&answer, 401, "Not enough permissions");
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer scope=\"admin\"")
    );
}

#[tokio::test]
async fn a_disabled_admin_is_refused_like_any_disabled_user() {
    let (app, token) = TestApp::with_admin().await;
    app.create_user_holding("second", PASSWORD, "me items admin")
        .await;
    app.disable_user(ADMIN).await;

    assert_detail(&app.get_admin_users(&token, "").await, 400, "Inactive user");
}

#[tokio::test]
async fn a_scope_taken_from_a_user_stops_working_in_tokens_issued_before() {
    let (app, admin) = TestApp::with_admin().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;
    assert_eq!(app.get_items(&token).await.status, 200);

    let changed = app
        .patch_admin_user(&admin, &id_of(&user), json!({ "scopes": ["me"] }))
        .await;

    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.body["scopes"], json!(["me"]));
    let items = app.get_items(&token).await;
    assert_detail(&items, 401, "Not enough permissions");
    assert_eq!(
        items.header("www-authenticate"),
        Some("Bearer scope=\"items\"")
    );
    assert_eq!(app.get_me(&token).await.status, 200);
    // Given back, the same token works again: it still carries the scope.
    app.patch_admin_user(&admin, &id_of(&user), json!({ "scopes": ["me", "items"] }))
        .await;
    assert_eq!(app.get_items(&token).await.status, 200);
}

// --- Listing ------------------------------------------------------------------------------------

#[tokio::test]
async fn users_are_listed_by_name_without_regard_to_case_with_their_admin_members() {
    let (app, admin) = TestApp::with_admin().await;
    for name in ["bob", "Alice", "carol", "Dave"] {
        app.create_user(name, PASSWORD).await;
    }
    app.login("carol", PASSWORD).await;

    let page = app.get_admin_users(&admin, "").await;

    assert_eq!(usernames(&page), ["Alice", "bob", "carol", "Dave", ADMIN]);
    assert_eq!(page.body["next_cursor"], Value::Null);
    let users = page.body["users"].as_array().unwrap();
    let carol = &users[2];
    let members: Vec<&str> = carol
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        members,
        [
            "id",
            "username",
            "email",
            "full_name",
            "disabled",
            "scopes",
            "created_at",
            "updated_at",
            "last_login_at"
        ]
    );
    assert_eq!(carol["email"], "carol@example.com");
    assert_eq!(carol["scopes"], json!(["me", "items"]));
    let logged_in = timestamp(carol, "last_login_at");
    assert!(logged_in >= timestamp(carol, "created_at"));
    assert_eq!(
        users[1]["last_login_at"],
        Value::Null,
        "bob never logged in"
    );
}

#[tokio::test]
async fn the_search_matches_part_of_a_name_or_address_without_regard_to_case() {
    let (app, admin) = TestApp::with_admin().await;
    app.create_user("JohnDoe", PASSWORD).await;
    app.create_user("janedoe", PASSWORD).await;
    app.create_user("Straße", PASSWORD).await;
    app.create_user("under_score", PASSWORD).await;

    assert_eq!(
        usernames(&app.get_admin_users(&admin, "?q=DOE").await),
        ["janedoe", "JohnDoe"]
    );
    // E-mail addresses too (the test users have `<name>@example.com`).
    assert_eq!(
        usernames(&app.get_admin_users(&admin, "?q=johndoe%40EXAMPLE").await),
        ["JohnDoe"]
    );
    assert_eq!(
        usernames(&app.get_admin_users(&admin, "?q=STRASSE").await),
        ["Straße"]
    );
    // LIKE's wildcards are literal.
    assert_eq!(
        usernames(&app.get_admin_users(&admin, "?q=_").await),
        ["under_score"]
    );
    assert_eq!(
        usernames(&app.get_admin_users(&admin, "?q=%25").await),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_disabled_filter_shows_one_status() {
    let (app, admin) = TestApp::with_admin().await;
    app.create_user("active", PASSWORD).await;
    app.create_disabled_user("sleeping", PASSWORD).await;

    assert_eq!(
        usernames(&app.get_admin_users(&admin, "?disabled=true").await),
        ["sleeping"]
    );
    assert_eq!(
        usernames(&app.get_admin_users(&admin, "?disabled=false").await),
        ["active", ADMIN]
    );
}

#[tokio::test]
async fn bad_list_parameters_are_refused_with_422() {
    let (app, admin) = TestApp::with_admin().await;

    for (query, loc, kind) in [
        ("?limit=0", json!(["query", "limit"]), "greater_than_equal"),
        ("?limit=201", json!(["query", "limit"]), "less_than_equal"),
        ("?limit=ten", json!(["query", "limit"]), "int_parsing"),
        (
            "?disabled=maybe",
            json!(["query", "disabled"]),
            "value_error",
        ),
        ("?cursor=zz", json!(["query", "cursor"]), "value_error"),
        ("?cursor=", json!(["query", "cursor"]), "value_error"),
        ("?q=%00", json!(["query", "q"]), "value_error"),
    ] {
        let answer = app.get_admin_users(&admin, query).await;
        assert_single_issue(&answer, loc, kind);
    }
    let long = format!("?q={}", "x".repeat(257));
    assert_single_issue(
        &app.get_admin_users(&admin, &long).await,
        json!(["query", "q"]),
        "string_too_long",
    );
    // The limits themselves are accepted.
    for query in ["?limit=1", "?limit=200"] {
        assert_eq!(app.get_admin_users(&admin, query).await.status, 200);
    }
}

#[tokio::test]
async fn following_next_cursor_visits_every_user_once() {
    let (app, admin) = TestApp::with_admin().await;
    for n in 0..11 {
        app.create_user(&format!("user{n:02}"), PASSWORD).await;
    }

    let all = walk(&app, &admin, "", 3).await;
    let filtered = walk(&app, &admin, "?q=user0", 2).await;

    let mut expected: Vec<String> = (0..11).map(|n| format!("user{n:02}")).collect();
    expected.insert(0, ADMIN.to_owned());
    expected.sort_by_key(|name| name.to_lowercase());
    assert_eq!(all, expected);
    let expected_filtered: Vec<String> = (0..10).map(|n| format!("user{n:02}")).collect();
    assert_eq!(filtered, expected_filtered);
}

#[tokio::test]
async fn a_cursor_walk_stays_exact_while_users_are_added() {
    let (app, admin) = TestApp::with_admin().await;
    let existing: Vec<String> = (0..24).map(|n| format!("mm{:02}", n * 4)).collect();
    for name in &existing {
        app.create_user(name, PASSWORD).await;
    }

    // New names fall before, between and after the existing ones while the walk goes on.
    let inserting = async {
        for n in 0..24 {
            let name = format!("mm{:02}x", n * 4 + 1);
            let created = app
                .post_admin_user(
                    &admin,
                    json!({ "username": name, "password": STRONG_PASSWORD }),
                )
                .await;
            assert_eq!(created.status, 201, "{}", created.text);
        }
    };
    let (seen, ()) = tokio::join!(walk(&app, &admin, "?q=mm", 2), inserting);

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for name in &seen {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    for name in &existing {
        assert_eq!(counts.get(name.as_str()), Some(&1), "{name}: {seen:?}");
    }
    assert!(counts.values().all(|&n| n == 1), "seen twice: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "in order");
}

// --- Creating, reading ----------------------------------------------------------------------

#[tokio::test]
async fn an_admin_creates_an_account_with_defaults_or_given_scopes_and_status() {
    let (app, admin) = TestApp::with_admin().await;

    let plain = app
        .post_admin_user(
            &admin,
            json!({ "username": "plain", "password": STRONG_PASSWORD }),
        )
        .await;
    let full = app
        .post_admin_user(
            &admin,
            json!({
                "username": "Operator",
                "password": STRONG_PASSWORD,
                "email": "op@example.com",
                "full_name": "Op Erator",
                "scopes": ["me", "admin"],
                "disabled": true,
            }),
        )
        .await;

    assert_eq!(plain.status, 201, "{}", plain.text);
    assert_eq!(plain.body["scopes"], json!(["me", "items"]));
    assert_eq!(plain.body["disabled"], false);
    assert_eq!(plain.body["last_login_at"], Value::Null);
    assert_eq!(plain.body["created_at"], plain.body["updated_at"]);
    assert_eq!(full.status, 201, "{}", full.text);
    assert_eq!(full.body["username"], "Operator");
    assert_eq!(full.body["email"], "op@example.com");
    assert_eq!(full.body["full_name"], "Op Erator");
    assert_eq!(full.body["scopes"], json!(["me", "admin"]));
    assert_eq!(full.body["disabled"], true);
    app.login("plain", STRONG_PASSWORD).await;
    // It reads back as it was created.
    let id = full.body["id"].as_str().unwrap();
    let read = app.get_admin_user(&admin, id).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, full.body);
}

#[tokio::test]
async fn creating_a_taken_name_or_a_bad_account_is_refused() {
    let (app, admin) = TestApp::with_admin().await;
    app.create_user(USERNAME, PASSWORD).await;

    let taken = app
        .post_admin_user(
            &admin,
            json!({ "username": "JOHNDOE", "password": STRONG_PASSWORD }),
        )
        .await;
    let unknown_scope = app
        .post_admin_user(
            &admin,
            json!({ "username": "x", "password": STRONG_PASSWORD, "scopes": ["me", "root"] }),
        )
        .await;
    let weak = app
        .post_admin_user(&admin, json!({ "username": "x", "password": "password" }))
        .await;
    let not_a_bool = app
        .post_admin_user(
            &admin,
            json!({ "username": "x", "password": STRONG_PASSWORD, "disabled": "yes" }),
        )
        .await;

    assert_detail(&taken, 409, "Username already taken");
    assert_single_issue(&unknown_scope, json!(["body", "scopes", "1"]), "enum");
    assert_eq!(
        unknown_scope.body["detail"][0]["msg"],
        "Input should be 'me', 'items' or 'admin'"
    );
    assert_single_issue(&weak, json!(["body", "password"]), "password_too_common");
    assert_single_issue(&not_a_bool, json!(["body", "disabled"]), "bool_type");
}

#[tokio::test]
async fn two_admins_creating_one_name_at_once_get_one_201_and_one_409() {
    let (app, admin) = TestApp::with_admin().await;
    for round in 0..4 {
        let name = format!("contested{round}");
        let requests = (0..4).map(|n| {
            // Different spellings of one name.
            let spelling = if n % 2 == 0 {
                name.clone()
            } else {
                name.to_uppercase()
            };
            app.bearer(Method::POST, "/admin/users", &admin)
                .json(&json!({ "username": spelling, "password": STRONG_PASSWORD }))
        });

        let answers = send_all(requests).await;

        let created = answers.iter().filter(|a| a.status == 201).count();
        let taken: Vec<&Answer> = answers.iter().filter(|a| a.status == 409).collect();
        assert_eq!(created, 1, "{answers:?}");
        assert_eq!(taken.len(), 3, "{answers:?}");
        for answer in taken {
            assert_eq!(answer.body, json!({ "detail": "Username already taken" }));
        }
    }
}

#[tokio::test]
async fn an_unknown_or_malformed_id_is_not_found_everywhere() {
    let (app, admin) = TestApp::with_admin().await;

    for id in [MADE_UP_ID, "not-a-uuid", "0"] {
        assert_detail(&app.get_admin_user(&admin, id).await, 404, "User not found");
        assert_detail(
            &app.patch_admin_user(&admin, id, json!({ "full_name": "x" }))
                .await,
            404,
            "User not found",
        );
        assert_detail(
            &app.put_admin_password(&admin, id, STRONG_PASSWORD).await,
            404,
            "User not found",
        );
        assert_detail(
            &app.delete_admin_user(&admin, id).await,
            404,
            "User not found",
        );
        assert_detail(
            &app.get_admin_sessions(&admin, id).await,
            404,
            "User not found",
        );
        assert_detail(
            &app.delete_admin_sessions(&admin, id).await,
            404,
            "User not found",
        );
        assert_detail(
            &app.delete_admin_throttle(&admin, id).await,
            404,
            "User not found",
        );
    }
}

// --- Updating -----------------------------------------------------------------------------------

#[tokio::test]
async fn an_update_changes_what_is_sent_and_null_clears_the_profile() {
    let (app, admin) = TestApp::with_admin().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let id = id_of(&user);
    let before = app.get_admin_user(&admin, &id).await.body;

    let renamed = app
        .patch_admin_user(
            &admin,
            &id,
            json!({ "full_name": "J. Doe", "ignored": true }),
        )
        .await;
    let cleared = app
        .patch_admin_user(&admin, &id, json!({ "email": null, "full_name": null }))
        .await;
    let bad_email = app
        .patch_admin_user(&admin, &id, json!({ "email": "nope" }))
        .await;
    let bad_scopes = app
        .patch_admin_user(&admin, &id, json!({ "scopes": "me", "disabled": 1 }))
        .await;

    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert_eq!(renamed.body["full_name"], "J. Doe");
    assert_eq!(renamed.body["email"], before["email"]);
    assert!(timestamp(&renamed.body, "updated_at") >= timestamp(&before, "updated_at"));
    assert_eq!(cleared.body["email"], Value::Null);
    assert_eq!(cleared.body["full_name"], Value::Null);
    assert_single_issue(&bad_email, json!(["body", "email"]), "value_error");
    assert_eq!(bad_scopes.status, 422);
    let issues: Vec<(&Value, &Value)> = bad_scopes.body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|issue| (&issue["loc"], &issue["type"]))
        .collect();
    assert_eq!(
        issues,
        [
            (&json!(["body", "disabled"]), &json!("bool_type")),
            (&json!(["body", "scopes"]), &json!("list_type")),
        ]
    );
    let after = app.get_admin_user(&admin, &id).await.body;
    assert_eq!(
        after["email"],
        Value::Null,
        "the refused update changed nothing"
    );
}

#[tokio::test]
async fn disabling_a_user_refuses_their_tokens_at_once_and_enabling_lets_them_back() {
    let (app, admin) = TestApp::with_admin().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let tokens = app.login(USERNAME, PASSWORD).await;

    let disabled = app
        .patch_admin_user(&admin, &id_of(&user), json!({ "disabled": true }))
        .await;

    assert_eq!(disabled.body["disabled"], true);
    assert_detail(
        &app.get_me(&tokens.access_token).await,
        400,
        "Inactive user",
    );
    let refreshed = app.post_refresh(&tokens.refresh_token, None).await;
    assert_eq!(refreshed.status, 400, "{}", refreshed.text);
    assert_eq!(refreshed.body["error_description"], "Inactive user");
    let enabled = app
        .patch_admin_user(&admin, &id_of(&user), json!({ "disabled": false }))
        .await;
    assert_eq!(enabled.body["disabled"], false);
    assert_access_works(&app, &tokens.access_token, USERNAME, "enabled again").await;
}

#[tokio::test]
async fn the_last_active_admin_cannot_lose_admin_or_be_disabled_or_deleted() {
    let (app, admin) = TestApp::with_admin().await;
    let me = app.get_me(&admin).await.body;
    let id = me["id"].as_str().unwrap().to_owned();
    // A disabled admin does not count.
    app.create_user_holding("dormant", PASSWORD, "me items admin")
        .await;
    app.disable_user("dormant").await;

    for change in [
        json!({ "scopes": ["me", "items"] }),
        json!({ "disabled": true }),
        json!({ "scopes": [], "full_name": "changed" }),
    ] {
        let answer = app.patch_admin_user(&admin, &id, change).await;
        assert_detail(&answer, 409, "Cannot remove the last admin");
    }
    assert_detail(
        &app.delete_admin_user(&admin, &id).await,
        409,
        "Cannot remove the last admin",
    );
    let unchanged = app.get_admin_user(&admin, &id).await.body;
    assert_eq!(unchanged["full_name"], me["full_name"]);
    assert_eq!(unchanged["scopes"], json!(["me", "items", "admin"]));
    // Changes that keep them an admin are fine.
    let renamed = app
        .patch_admin_user(
            &admin,
            &id,
            json!({ "full_name": "Root", "scopes": ["admin", "me"] }),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let (app, root) = TestApp::with_admin().await;
    let root_id = app.get_me(&root).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for round in 0..4 {
        let name = format!("second{round}");
        let second = app
            .create_user_holding(&name, PASSWORD, "me items admin")
            .await;
        let second_token = app
            .login_with(Login::new(&name, PASSWORD).scope("me items admin"))
            .await
            .access_token;
        let root = app.admin_token().await;
        let (root_demotes, second_demotes) = if round % 2 == 0 {
            (json!({ "scopes": ["me"] }), json!({ "scopes": ["me"] }))
        } else {
            (json!({ "disabled": true }), json!({ "disabled": true }))
        };

        let answers = send_all([
            app.bearer(Method::PATCH, &format!("/admin/users/{}", second.id), &root)
                .json(&root_demotes),
            app.bearer(
                Method::PATCH,
                &format!("/admin/users/{root_id}"),
                &second_token,
            )
            .json(&second_demotes),
        ])
        .await;

        let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
        // Both may be refused only if one was refused for lack of admin after the other won.
        assert!(
            statuses.contains(&200) && !statuses.iter().all(|&s| s == 200),
            "{answers:?}"
        );
        // Exactly one active admin is left; make `root` the admin again for the next round.
        let admins = app.active_admins().await;
        assert_eq!(admins.len(), 1, "{admins:?}");
        if admins[0]["username"] != ADMIN {
            let survivor = app
                .login_with(Login::new(&name, PASSWORD).scope("me items admin"))
                .await
                .access_token;
            let restored = app
                .patch_admin_user(
                    &survivor,
                    &root_id,
                    json!({ "scopes": ["me", "items", "admin"], "disabled": false }),
                )
                .await;
            assert_eq!(restored.status, 200, "{}", restored.text);
        }
        app.delete_user(&name).await;
    }
}

// --- Passwords, deletion, sessions --------------------------------------------------------------

#[tokio::test]
async fn a_reset_sets_the_password_and_ends_every_session() {
    let (app, admin) = TestApp::with_admin().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let first = app.login(USERNAME, PASSWORD).await;
    let second = app.login(USERNAME, PASSWORD).await;

    let weak = app
        .put_admin_password(&admin, &id_of(&user), "12345678")
        .await;
    let reset = app
        .put_admin_password(&admin, &id_of(&user), STRONG_PASSWORD)
        .await;

    assert_single_issue(&weak, json!(["body", "password"]), "password_too_common");
    assert_eq!(reset.status, 204, "{}", reset.text);
    assert_eq!(reset.text, "");
    for tokens in [&first, &second] {
        assert_session_ended(&app, tokens, "after a reset").await;
    }
    assert_incorrect_credentials(
        &app.post_login(Login::new(USERNAME, PASSWORD)).await,
        "old password",
    );
    app.login(USERNAME, STRONG_PASSWORD).await;
    // The admin's own session is untouched.
    assert_eq!(app.get_admin_users(&admin, "").await.status, 200);
}

/// A password no test user has until a test sets it.
const RESET_PASSWORD: &str = "r3set!Qz8#Lm-Kw";

#[tokio::test]
async fn an_owners_password_change_racing_an_admin_reset_never_undoes_the_reset() {
    let (app, admin) = TestApp::with_admin().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let id = id_of(&user);
    for round in 0..6 {
        app.accounts
            .reset_password(
                &portcullis::audit::AuditContext::cli(),
                user.id,
                PASSWORD.into(),
                portcullis::accounts::PasswordCheck::Skip,
            )
            .await
            .unwrap();
        let owner = app.login(USERNAME, PASSWORD).await.access_token;

        let (changed, reset) = tokio::join!(
            app.post_password(&owner, PASSWORD, STRONG_PASSWORD),
            app.put_admin_password(&admin, &id, RESET_PASSWORD),
        );

        assert_eq!(reset.status, 204, "round {round}: {}", reset.text);
        // The change committed before the reset, or is refused for a session it ended.
        match changed.status.as_u16() {
            204 => {}
            401 => assert_could_not_validate(&changed, "the change that lost the race"),
            _ => panic!("round {round}: {changed:?}"),
        }
        // Either way the reset's password is the one that stands, and the owner's session
        // is over.
        app.login(USERNAME, RESET_PASSWORD).await;
        assert_incorrect_credentials(
            &app.post_login(Login::new(USERNAME, STRONG_PASSWORD)).await,
            "the owner's new password",
        );
        assert_could_not_validate(&app.get_me(&owner).await, "the owner's session");
    }
}

#[tokio::test]
async fn a_login_racing_a_password_reset_gets_no_session_that_outlives_it() {
    let (app, admin) = TestApp::with_admin().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let id = id_of(&user);
    for round in 0..6 {
        app.accounts
            .reset_password(
                &portcullis::audit::AuditContext::cli(),
                user.id,
                PASSWORD.into(),
                portcullis::accounts::PasswordCheck::Skip,
            )
            .await
            .unwrap();

        let (login, reset) = tokio::join!(
            app.post_login(Login::new(USERNAME, PASSWORD)),
            app.put_admin_password(&admin, &id, RESET_PASSWORD),
        );

        assert_eq!(reset.status, 204, "round {round}: {}", reset.text);
        match login.status.as_u16() {
            // Issued before the reset ended every session, or refused: never a session that
            // outlives the reset.
            200 => {
                let tokens = assert_tokens(&login, DEFAULT_SCOPE);
                assert_session_ended(&app, &tokens, "a login that raced the reset").await;
            }
            401 => assert_incorrect_credentials(&login, "a login that lost the race"),
            _ => panic!("round {round}: {login:?}"),
        }
    }
}

#[tokio::test]
async fn a_login_racing_the_deletion_of_its_account_is_refused_never_failed() {
    let (app, admin) = TestApp::with_admin().await;
    for round in 0..6 {
        let user = app.create_user(USERNAME, PASSWORD).await;
        let id = id_of(&user);

        let (login, deleted) = tokio::join!(
            app.post_login(Login::new(USERNAME, PASSWORD)),
            app.delete_admin_user(&admin, &id),
        );

        assert_eq!(deleted.status, 204, "round {round}: {}", deleted.text);
        match login.status.as_u16() {
            200 => {
                let tokens = assert_tokens(&login, DEFAULT_SCOPE);
                assert_session_ended(&app, &tokens, "a login that raced the deletion").await;
            }
            401 => assert_incorrect_credentials(&login, "a login that lost the race"),
            _ => panic!("round {round}: {login:?}"),
        }
    }
}

#[tokio::test]
async fn an_admin_deletes_an_account_its_items_and_sessions() {
    let (app, admin) = TestApp::with_admin().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let tokens = app.login(USERNAME, PASSWORD).await;
    app.create_item(&tokens.access_token, json!({ "title": "theirs" }))
        .await;

    let deleted = app.delete_admin_user(&admin, &id_of(&user)).await;

    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_session_ended(&app, &tokens, "deleted").await;
    assert_detail(
        &app.get_admin_user(&admin, &id_of(&user)).await,
        404,
        "User not found",
    );
    assert_detail(
        &app.delete_admin_user(&admin, &id_of(&user)).await,
        404,
        "User not found",
    );
    // The name is free again, with nothing of the old account.
    let again = app
        .post_admin_user(
            &admin,
            json!({ "username": USERNAME, "password": STRONG_PASSWORD }),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    let fresh = app.login(USERNAME, STRONG_PASSWORD).await.access_token;
    assert!(app.items(&fresh).await.is_empty());
}

#[tokio::test]
async fn an_admin_lists_and_ends_a_users_sessions() {
    let (app, admin) = TestApp::with_admin().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let first = app.login(USERNAME, PASSWORD).await;
    let second = app.login(USERNAME, PASSWORD).await;
    let own = app.sessions(&first.access_token).await;

    let listed = app.get_admin_sessions(&admin, &id_of(&user)).await;
    let ended = app.delete_admin_sessions(&admin, &id_of(&user)).await;
    let again = app.delete_admin_sessions(&admin, &id_of(&user)).await;

    assert_eq!(listed.status, 200, "{}", listed.text);
    let mut expected: Vec<Value> = own;
    for session in &mut expected {
        session["current"] = json!(false);
    }
    let mut listed = listed.body.as_array().unwrap().clone();
    // `last_used_at` may have moved on from the user's own request.
    for session in listed.iter_mut().chain(expected.iter_mut()) {
        session.as_object_mut().unwrap().remove("last_used_at");
    }
    assert_eq!(listed, expected);
    assert_eq!(ended.status, 200);
    assert_eq!(ended.body, json!({ "sessions_ended": 2 }));
    assert_eq!(again.body, json!({ "sessions_ended": 0 }));
    for tokens in [&first, &second] {
        assert_session_ended(&app, tokens, "ended by an admin").await;
    }
    let none = app.get_admin_sessions(&admin, &id_of(&user)).await;
    assert_eq!(none.body, json!([]));
}

// --- Per-account protection and unlocking ------------------------------------------------------

/// A server with the throttle on, the per-address counts out of the way, and an account
/// blocked from every address after five failures.
async fn app_protecting_accounts() -> (TestApp, String) {
    TestApp::with_admin_configured(|settings| {
        settings.throttle.enabled = true;
        settings.throttle.max_failures_per_account = 100;
        settings.throttle.max_failures_per_address = 1000;
        settings
            .throttle
            .max_failures_per_account_from_all_addresses = 5;
    })
    .await
}

fn login_from_address(address: &str, password: &'static str) -> Login<'static> {
    Login::new(USERNAME, password).client(client_from(address))
}

#[tokio::test]
async fn a_distributed_guesser_is_shut_out_while_the_owner_keeps_logging_in() {
    let (app, _) = app_protecting_accounts().await;
    app.create_user(USERNAME, PASSWORD).await;
    // The owner has logged in from 127.0.0.1 before.
    app.login(USERNAME, PASSWORD).await;

    // Guesses from ten addresses at once: no more than the limit are checked.
    let guesses = send_all((2..12).map(|n| {
        let body = serde_urlencoded::to_string([
            ("grant_type", "password"),
            ("username", USERNAME),
            ("password", "guess"),
        ])
        .unwrap();
        client_from(&format!("127.0.0.{n}"))
            .post(app.url("/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    }))
    .await;

    let checked = guesses.iter().filter(|a| a.status == 401).count();
    let throttled = guesses.iter().filter(|a| a.status == 429).count();
    assert_eq!((checked, throttled), (5, 5), "{guesses:?}");
    // A new address is refused even with the right password; the owner's is not.
    let stranger = app
        .post_login(login_from_address("127.0.0.20", PASSWORD))
        .await;
    assert_eq!(stranger.status, 429, "{}", stranger.text);
    assert_eq!(
        stranger.body["detail"],
        "Too many login attempts, retry later"
    );
    assert!(stranger.header("retry-after").is_some());
    app.login(USERNAME, PASSWORD).await;
    // Another account is not affected.
    app.create_user("bystander", PASSWORD).await;
    let bystander = app
        .post_login(Login::new("bystander", PASSWORD).client(client_from("127.0.0.21")))
        .await;
    assert_eq!(bystander.status, 200, "{}", bystander.text);
}

#[tokio::test]
async fn unlocking_an_account_clears_its_counts_from_every_address() {
    let (app, admin) = app_protecting_accounts().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    for n in 2..7 {
        let answer = app
            .post_login(login_from_address(&format!("127.0.0.{n}"), "guess"))
            .await;
        assert_eq!(answer.status, 401, "{}", answer.text);
    }
    let blocked = app
        .post_login(login_from_address("127.0.0.30", PASSWORD))
        .await;
    assert_eq!(blocked.status, 429);

    let unlocked = app.delete_admin_throttle(&admin, &id_of(&user)).await;

    assert_eq!(unlocked.status, 204, "{}", unlocked.text);
    assert_eq!(unlocked.text, "");
    let answer = app
        .post_login(login_from_address("127.0.0.30", PASSWORD))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[tokio::test]
async fn unlocking_also_clears_the_block_of_one_address() {
    let (app, admin) = TestApp::with_admin_configured(|settings| {
        settings.throttle.enabled = true;
        settings.throttle.max_failures_per_account = 3;
    })
    .await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    for _ in 0..3 {
        app.post_login(Login::new(USERNAME, "guess")).await;
    }
    assert_eq!(
        app.post_login(Login::new(USERNAME, PASSWORD)).await.status,
        429
    );

    assert_eq!(
        app.delete_admin_throttle(&admin, &id_of(&user))
            .await
            .status,
        204
    );

    app.login(USERNAME, PASSWORD).await;
}

impl TestApp {
    /// The names of the active admins, read from the store.
    async fn active_admins(&self) -> Vec<Value> {
        let users: Vec<portcullis::db::User> = self
            .store
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .filter(|user| user.is_active_admin())
            .collect();
        users
            .into_iter()
            .map(|user| json!({ "username": user.username }))
            .collect()
    }
}
