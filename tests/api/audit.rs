//! The security audit log: every event type is recorded by the action that should record it,
//! and by no other, with exactly its members; `GET /admin/audit-events` filters, pages and
//! refuses bad filters with the contract's 422.

use portcullis::auth::keys::{self, KeyAlgorithm};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const PASSWORD: &str = "Kp4$wZ9!nR2@audit";
const NEW_PASSWORD: &str = "Ht6%vB1^qM8&audit";
const AGENT: &str = "audit-test/1.0";

/// Reads the audit log as an admin, a step at a time: each step's events are the ones added
/// since the previous step, oldest first.
struct Journal<'a> {
    app: &'a TestApp,
    admin: String,
    seen: usize,
}

impl<'a> Journal<'a> {
    /// The events added since the last call: exactly `count` of them (the test fails if more
    /// or fewer were recorded), oldest first.
    async fn added(&mut self, count: usize) -> Vec<Value> {
        let total = self.seen + count;
        let mut events = self
            .app
            .audit_events(&self.admin, "?limit=200", total)
            .await;
        // Give a stray background write the time to show up before counting.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let again = self
            .app
            .audit_events(&self.admin, "?limit=200", total)
            .await;
        assert_eq!(again.len(), events.len(), "events still coming: {again:#?}");
        let types: Vec<&Value> = events.iter().map(|event| &event["type"]).collect();
        assert_eq!(
            events.len(),
            total,
            "expected {count} new events: {types:?}"
        );
        events.truncate(count);
        events.reverse();
        self.seen = total;
        events
    }

    /// The one event added since the last call.
    async fn one(&mut self) -> Value {
        self.added(1).await.remove(0)
    }
}

/// A request as the tests' browser sends it: a user agent and a request id of its own.
fn tagged(request: reqwest::RequestBuilder, request_id: &str) -> reqwest::RequestBuilder {
    request
        .header("User-Agent", AGENT)
        .header("X-Request-Id", request_id)
}

/// A password login from the tests' browser; its answer.
async fn login(app: &TestApp, username: &str, password: &str, request_id: &str) -> Answer {
    app.post_login(
        Login::new(username, password)
            .header("User-Agent", AGENT)
            .header("X-Request-Id", request_id),
    )
    .await
}

/// A successful login's tokens and session id.
async fn logged_in(app: &TestApp, username: &str, password: &str, request_id: &str) -> Tokens {
    let answer = login(app, username, password, request_id).await;
    assert_tokens(&answer, DEFAULT_SCOPE)
}

/// The members every event of a request from the tests' browser has.
fn from_browser(request_id: &str, members: Value) -> Value {
    let mut expected = json!({
        "client_address": "127.0.0.1",
        "user_agent": AGENT,
        "request_id": request_id,
    });
    for (name, value) in members.as_object().unwrap() {
        expected[name] = value.clone();
    }
    expected
}

/// The events of one step in a fixed order (those written together may share a time).
fn by_type(mut events: Vec<Value>) -> Vec<Value> {
    events.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
    events
}

#[tokio::test]
async fn every_event_type_is_recorded_by_its_action_alone_with_exact_members() {
    let (app, admin) = TestApp::with_admin_configured(|settings| {
        settings.accounts.signup_enabled = true;
    })
    .await;
    let root = app
        .store
        .find_user_by_username(&portcullis::domain::Username::parse(ADMIN).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();
    let admin_session = claims(&admin)["sid"].as_str().unwrap().to_owned();
    let mut journal = Journal {
        app: &app,
        admin: admin.clone(),
        seen: 0,
    };

    // The admin, created as the command line does, and the admin's login.
    let start = journal.added(2).await;
    assert_audit_event(
        &start[0],
        json!({
            "type": "user.created", "user_id": root, "actor": "cli", "client_address": null,
            "user_agent": null, "session_id": null, "request_id": null,
            "detail": { "username": ADMIN, "scopes": ["me", "items", "admin"], "disabled": false },
        }),
    );
    assert_eq!(start[1]["type"], "login.succeeded");
    assert_eq!(start[1]["actor"], root.as_str());
    assert_eq!(start[1]["session_id"], admin_session.as_str());

    // Signup: the new account is its own actor.
    let signup = send(
        tagged(app.request(Method::POST, "/users/signup"), "r-signup")
            .json(&json!({ "username": "alice", "password": PASSWORD })),
    )
    .await;
    assert_eq!(signup.status, 201, "{}", signup.body);
    let alice = signup.body["id"].as_str().unwrap().to_owned();
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-signup",
            json!({
                "type": "user.signed_up", "user_id": alice, "actor": alice, "session_id": null,
                "detail": { "username": "alice", "scopes": ["me", "items"] },
            }),
        ),
    );

    // Logins: succeeded, a wrong password, a name no account has, a scope not held.
    let first = logged_in(&app, "alice", PASSWORD, "r-login").await;
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-login",
            json!({
                "type": "login.succeeded", "user_id": alice, "actor": alice,
                "session_id": first.session_id(), "detail": { "scopes": ["me", "items"] },
            }),
        ),
    );
    let wrong = login(&app, "alice", "not the password", "r-wrong").await;
    assert_incorrect_credentials(&wrong, "a wrong password");
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-wrong",
            json!({
                "type": "login.failed", "user_id": alice, "actor": null, "session_id": null,
                "detail": { "reason": "invalid_credentials" },
            }),
        ),
    );
    let ghost = login(&app, "ghost-of-nobody", PASSWORD, "r-ghost").await;
    assert_incorrect_credentials(&ghost, "an unknown name");
    let ghost_event = journal.one().await;
    assert_audit_event(
        &ghost_event,
        from_browser(
            "r-ghost",
            json!({
                "type": "login.failed", "user_id": null, "actor": null, "session_id": null,
                "detail": { "reason": "invalid_credentials" },
            }),
        ),
    );
    assert!(!ghost_event.to_string().contains("ghost-of-nobody"));
    let beyond = app
        .post_login(
            Login::new("alice", PASSWORD)
                .scope("admin")
                .header("X-Request-Id", "r-scope"),
        )
        .await;
    assert_eq!(beyond.status, 400, "{}", beyond.body);
    assert_audit_event(
        &journal.one().await,
        json!({
            "type": "login.failed", "user_id": alice, "actor": null, "session_id": null,
            "client_address": "127.0.0.1", "user_agent": null, "request_id": "r-scope",
            "detail": { "reason": "invalid_scope", "scope": "admin" },
        }),
    );

    // Refreshes, then the first refresh token presented again: reuse ends the session.
    let refreshed = send(
        tagged(app.request(Method::POST, "/token"), "r-refresh").form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first.refresh_token),
        ]),
    )
    .await;
    let refreshed = assert_tokens(&refreshed, DEFAULT_SCOPE);
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-refresh",
            json!({
                "type": "token.refreshed", "user_id": alice, "actor": alice,
                "session_id": first.session_id(), "detail": { "scopes": ["me", "items"] },
            }),
        ),
    );
    app.refresh(&refreshed.refresh_token).await;
    assert_eq!(journal.one().await["type"], "token.refreshed");
    let reused = send(
        tagged(app.request(Method::POST, "/token"), "r-reuse").form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first.refresh_token),
        ]),
    )
    .await;
    assert_invalid_refresh_token(&reused, "a spent refresh token");
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-reuse",
            json!({
                "type": "token.reuse_detected", "user_id": alice, "actor": null,
                "session_id": first.session_id(), "detail": { "session_ended": true },
            }),
        ),
    );

    // Revocation of a refresh token's session.
    let second = logged_in(&app, "alice", PASSWORD, "r-login-2").await;
    let third = logged_in(&app, "alice", PASSWORD, "r-login-3").await;
    journal.added(2).await;
    let revoked = send(
        tagged(app.request(Method::POST, "/token/revoke"), "r-revoke")
            .form(&[("token", third.refresh_token.as_str())]),
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-revoke",
            json!({
                "type": "token.revoked", "user_id": alice, "actor": alice,
                "session_id": third.session_id(), "detail": { "token": "refresh" },
            }),
        ),
    );
    // Revoking it again changes nothing, and records nothing.
    assert_eq!(
        app.post_revoke(&[("token", third.refresh_token.as_str())])
            .await
            .status,
        200
    );

    // A session deleted by id, a logout, a logout of the other sessions.
    let fourth = logged_in(&app, "alice", PASSWORD, "r-login-4").await;
    journal.added(1).await;
    let deleted = send(tagged(
        app.bearer(
            Method::DELETE,
            &format!("/users/me/sessions/{}", second.session_id()),
            &fourth.access_token,
        ),
        "r-end-one",
    ))
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-end-one",
            json!({
                "type": "session.ended", "user_id": alice, "actor": alice,
                "session_id": fourth.session_id(),
                "detail": {
                    "reason": "session_deleted", "ended_session_id": second.session_id(),
                    "sessions_ended": 1,
                },
            }),
        ),
    );
    let logout = send(tagged(
        app.bearer(Method::POST, "/logout", &fourth.access_token),
        "r-logout",
    ))
    .await;
    assert_eq!(logout.status, 200, "{}", logout.body);
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-logout",
            json!({
                "type": "session.ended", "user_id": alice, "actor": alice,
                "session_id": fourth.session_id(),
                "detail": { "reason": "logout", "scope": "local", "sessions_ended": 1 },
            }),
        ),
    );
    let fifth = logged_in(&app, "alice", PASSWORD, "r-login-5").await;
    let sixth = logged_in(&app, "alice", PASSWORD, "r-login-6").await;
    journal.added(2).await;
    let others = app.post_logout(&sixth.access_token, Some("others")).await;
    assert_eq!(others.body, json!({ "sessions_ended": 1 }));
    let event = journal.one().await;
    assert_eq!(
        event["detail"],
        json!({ "reason": "logout", "scope": "others", "sessions_ended": 1 })
    );
    assert_eq!(event["session_id"], sixth.session_id().as_str());
    assert_access_refused(&app, &fifth.access_token, "a session logged out").await;
    // Nothing else to end: nothing recorded.
    let none = app.post_logout(&sixth.access_token, Some("others")).await;
    assert_eq!(none.body, json!({ "sessions_ended": 0 }));

    // The owner's profile change, then password change (which ends the other sessions).
    let patched = send(
        tagged(
            app.bearer(Method::PATCH, "/users/me", &sixth.access_token),
            "r-profile",
        )
        .json(&json!({ "email": "alice@example.com", "full_name": null })),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-profile",
            json!({
                "type": "user.updated", "user_id": alice, "actor": alice,
                "session_id": sixth.session_id(), "detail": { "fields": ["email"] },
            }),
        ),
    );
    let seventh = logged_in(&app, "alice", PASSWORD, "r-login-7").await;
    journal.added(1).await;
    // A wrong current password counts as a failed login, made by the session's user.
    let wrong_current = send(
        tagged(
            app.bearer(Method::POST, "/users/me/password", &sixth.access_token),
            "r-wrong-current",
        )
        .json(&json!({ "current_password": "not it", "new_password": NEW_PASSWORD })),
    )
    .await;
    assert_eq!(wrong_current.status, 400, "{}", wrong_current.body);
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-wrong-current",
            json!({
                "type": "login.failed", "user_id": alice, "actor": alice,
                "session_id": sixth.session_id(),
                "detail": { "reason": "invalid_credentials", "confirming": "password_change" },
            }),
        ),
    );
    let changed = send(
        tagged(
            app.bearer(Method::POST, "/users/me/password", &sixth.access_token),
            "r-password",
        )
        .json(&json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD })),
    )
    .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    let change = by_type(journal.added(2).await);
    let by_owner = |kind: &str, detail: Value| {
        from_browser(
            "r-password",
            json!({
                "type": kind, "user_id": alice, "actor": alice,
                "session_id": sixth.session_id(), "detail": detail,
            }),
        )
    };
    assert_audit_event(
        &change[0],
        by_owner("password.changed", json!({ "sessions_ended": 1 })),
    );
    assert_audit_event(
        &change[1],
        by_owner(
            "session.ended",
            json!({ "reason": "password_changed", "sessions_ended": 1 }),
        ),
    );
    assert_access_refused(&app, &seventh.access_token, "a session the change ended").await;

    // An admin's changes: scopes and status together, then enabling again.
    let by_admin = |request_id: &str, kind: &str, detail: Value| {
        json!({
            "type": kind, "user_id": alice, "actor": root, "session_id": admin_session,
            "client_address": "127.0.0.1", "user_agent": null, "request_id": request_id,
            "detail": detail,
        })
    };
    let demoted = send(
        app.bearer(Method::PATCH, &format!("/admin/users/{alice}"), &admin)
            .header("X-Request-Id", "r-admin-patch")
            .json(&json!({ "scopes": ["me"], "disabled": true, "email": "alice@example.com" })),
    )
    .await;
    assert_eq!(demoted.status, 200, "{}", demoted.body);
    let demotion = by_type(journal.added(2).await);
    assert_audit_event(
        &demotion[0],
        by_admin("r-admin-patch", "user.disabled", json!({})),
    );
    assert_audit_event(
        &demotion[1],
        by_admin(
            "r-admin-patch",
            "user.updated",
            json!({ "fields": ["scopes"], "scopes": ["me"] }),
        ),
    );
    let inactive = login(&app, "alice", NEW_PASSWORD, "r-inactive").await;
    assert_eq!(inactive.status, 400, "{}", inactive.body);
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-inactive",
            json!({
                "type": "login.failed", "user_id": alice, "actor": null, "session_id": null,
                "detail": { "reason": "inactive" },
            }),
        ),
    );
    // The same values again change nothing: nothing recorded.
    let same = app
        .patch_admin_user(
            &admin,
            &alice,
            json!({ "disabled": true, "scopes": ["me"] }),
        )
        .await;
    assert_eq!(same.status, 200, "{}", same.body);
    let enabled = send(
        app.bearer(Method::PATCH, &format!("/admin/users/{alice}"), &admin)
            .header("X-Request-Id", "r-admin-enable")
            .json(&json!({ "disabled": false })),
    )
    .await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    assert_audit_event(
        &journal.one().await,
        by_admin("r-admin-enable", "user.enabled", json!({})),
    );

    // An admin's reset ends every session.
    let reset = send(
        app.bearer(
            Method::PUT,
            &format!("/admin/users/{alice}/password"),
            &admin,
        )
        .header("X-Request-Id", "r-admin-reset")
        .json(&json!({ "password": PASSWORD })),
    )
    .await;
    assert_eq!(reset.status, 204, "{}", reset.body);
    let reset = by_type(journal.added(2).await);
    assert_audit_event(
        &reset[0],
        by_admin(
            "r-admin-reset",
            "password.reset",
            json!({ "sessions_ended": 1 }),
        ),
    );
    assert_audit_event(
        &reset[1],
        by_admin(
            "r-admin-reset",
            "session.ended",
            json!({ "reason": "password_reset", "sessions_ended": 1 }),
        ),
    );

    // An admin creates, logs out everywhere, unlocks and deletes an account.
    let created = send(
        app.bearer(Method::POST, "/admin/users", &admin)
            .header("X-Request-Id", "r-admin-create")
            .json(&json!({ "username": "bob", "password": PASSWORD, "disabled": false })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let bob = created.body["id"].as_str().unwrap().to_owned();
    let for_bob = |request_id: &str, kind: &str, detail: Value| {
        let mut expected = by_admin(request_id, kind, detail);
        expected["user_id"] = json!(bob);
        expected
    };
    assert_audit_event(
        &journal.one().await,
        for_bob(
            "r-admin-create",
            "user.created",
            json!({ "username": "bob", "scopes": ["me", "items"], "disabled": false }),
        ),
    );
    // No session to end: nothing recorded.
    assert_eq!(
        app.delete_admin_sessions(&admin, &bob).await.body,
        json!({ "sessions_ended": 0 })
    );
    logged_in(&app, "bob", PASSWORD, "r-login-bob").await;
    journal.added(1).await;
    let ended = send(
        app.bearer(
            Method::DELETE,
            &format!("/admin/users/{bob}/sessions"),
            &admin,
        )
        .header("X-Request-Id", "r-admin-end"),
    )
    .await;
    assert_eq!(ended.body, json!({ "sessions_ended": 1 }));
    assert_audit_event(
        &journal.one().await,
        for_bob(
            "r-admin-end",
            "session.ended",
            json!({ "reason": "ended_by_admin", "sessions_ended": 1 }),
        ),
    );
    let unlocked = send(
        app.bearer(
            Method::DELETE,
            &format!("/admin/users/{bob}/throttle"),
            &admin,
        )
        .header("X-Request-Id", "r-admin-unlock"),
    )
    .await;
    assert_eq!(unlocked.status, 204, "{}", unlocked.body);
    assert_audit_event(
        &journal.one().await,
        for_bob(
            "r-admin-unlock",
            "user.unlocked",
            json!({ "counts_cleared": 0 }),
        ),
    );
    let deleted = send(
        app.bearer(Method::DELETE, &format!("/admin/users/{bob}"), &admin)
            .header("X-Request-Id", "r-admin-delete"),
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_audit_event(
        &journal.one().await,
        for_bob(
            "r-admin-delete",
            "user.deleted",
            json!({ "username": "bob" }),
        ),
    );

    // The owner deletes their own account.
    // alice holds `me` only since the admin's change.
    let last = assert_tokens(&login(&app, "alice", PASSWORD, "r-login-8").await, "me");
    journal.added(1).await;
    let not_gone = send(
        tagged(
            app.bearer(Method::DELETE, "/users/me", &last.access_token),
            "r-delete-wrong",
        )
        .json(&json!({ "password": "not it" })),
    )
    .await;
    assert_eq!(not_gone.status, 400, "{}", not_gone.body);
    assert_eq!(
        journal.one().await["detail"],
        json!({ "reason": "invalid_credentials", "confirming": "account_deletion" })
    );
    let gone = send(
        tagged(
            app.bearer(Method::DELETE, "/users/me", &last.access_token),
            "r-delete-me",
        )
        .json(&json!({ "password": PASSWORD })),
    )
    .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    assert_audit_event(
        &journal.one().await,
        from_browser(
            "r-delete-me",
            json!({
                "type": "user.deleted", "user_id": alice, "actor": alice,
                "session_id": last.session_id(), "detail": { "username": "alice" },
            }),
        ),
    );

    // The operator's key commands.
    let kid = keys::rotate(&app.store, &app.settings.tokens, KeyAlgorithm::EDDSA, false)
        .await
        .unwrap();
    let by_operator = |kind: &str| {
        json!({
            "type": kind, "user_id": null, "actor": "cli", "client_address": null,
            "user_agent": null, "session_id": null, "request_id": null,
            "detail": { "kid": kid, "algorithm": "EdDSA" },
        })
    };
    assert_audit_event(&journal.one().await, by_operator("key.rotated"));
    assert!(
        keys::retire(&app.store, &app.settings.tokens, &kid)
            .await
            .unwrap()
    );
    assert_audit_event(&journal.one().await, by_operator("key.retired"));
    // Retired already: nothing changes, nothing is recorded.
    assert!(
        !keys::retire(&app.store, &app.settings.tokens, &kid)
            .await
            .unwrap()
    );
    journal.added(0).await;
}

#[tokio::test]
async fn a_throttled_login_is_recorded_with_how_long_it_must_wait() {
    let (app, admin) = TestApp::with_admin_configured(|settings| {
        settings.throttle.enabled = true;
        settings.throttle.max_failures_per_account = 2;
    })
    .await;
    let user = app.create_user("johndoe", PASSWORD).await;
    for _ in 0..2 {
        assert_incorrect_credentials(
            &app.post_login(Login::new("johndoe", "wrong")).await,
            "a guess",
        );
    }

    let refused = login(&app, "johndoe", PASSWORD, "r-throttled").await;

    assert_eq!(refused.status, 429, "{}", refused.body);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    let events = app.audit_events(&admin, "?type=login.throttled", 1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    // Refused before the name is looked up: the account is not named.
    assert_audit_event(
        &events[0],
        from_browser(
            "r-throttled",
            json!({
                "type": "login.throttled", "user_id": null, "actor": null, "session_id": null,
                "detail": { "reason": "failed_logins", "retry_after": retry_after },
            }),
        ),
    );
    let failed = app
        .audit_events(
            &admin,
            &format!("?type=login.failed&user_id={}", user.id),
            2,
        )
        .await;
    assert_eq!(failed.len(), 2, "{failed:#?}");

    // A password confirmation meets the same block, recorded with the account and its caller.
    let subject = app.start_session(user.id).await;
    let session_id = subject.session_id.to_string();
    let token = sign(
        json!({ "alg": "HS256", "typ": "at+jwt" }),
        valid_claims(subject, "me items"),
        TEST_SECRET,
    );
    let confirm = app.post_password(&token, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(confirm.status, 429, "{}", confirm.body);
    let retry_after: u64 = confirm.header("retry-after").unwrap().parse().unwrap();
    let events = app
        .audit_events(
            &admin,
            &format!("?type=login.throttled&user_id={}", user.id),
            1,
        )
        .await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["actor"], user.id.to_string());
    assert_eq!(events[0]["session_id"], session_id.as_str());
    assert_eq!(
        events[0]["detail"],
        json!({
            "reason": "failed_logins", "retry_after": retry_after,
            "confirming": "password_change",
        })
    );
}

#[tokio::test]
async fn the_filters_narrow_the_log_and_a_cursor_walk_sees_every_event_once() {
    let (app, admin) = TestApp::with_admin().await;
    let alice = app.create_user("alice", PASSWORD).await;
    let bob = app.create_user("bob", PASSWORD).await;
    for _ in 0..3 {
        app.login("alice", PASSWORD).await;
        app.login("bob", PASSWORD).await;
    }
    let failed = app.post_login(Login::new("alice", "wrong")).await;
    assert_incorrect_credentials(&failed, "a wrong password");
    // root's creation and login, two creations, six logins and a failure.
    let all = app.audit_events(&admin, "?limit=200", 11).await;
    assert_eq!(all.len(), 11, "{all:#?}");
    let times: Vec<&str> = all
        .iter()
        .map(|e| e["occurred_at"].as_str().unwrap())
        .collect();
    let parsed: Vec<_> = times
        .iter()
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap())
        .collect();
    assert!(
        parsed.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    let of_alice = app
        .audit_events(&admin, &format!("?user_id={}", alice.id), 5)
        .await;
    assert_eq!(of_alice.len(), 5, "a creation, three logins, a failure");
    assert!(
        of_alice
            .iter()
            .all(|e| e["user_id"] == alice.id.to_string())
    );
    let alice_logins = app
        .audit_events(
            &admin,
            &format!("?user_id={}&type=login.succeeded", alice.id),
            3,
        )
        .await;
    assert_eq!(alice_logins.len(), 3);
    let failures = app.audit_events(&admin, "?type=login.failed", 1).await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["user_id"], alice.id.to_string());

    // `since` and `until` include their bounds.
    let oldest_bob = app
        .audit_events(&admin, &format!("?user_id={}", bob.id), 4)
        .await
        .pop()
        .unwrap();
    let at = oldest_bob["occurred_at"].as_str().unwrap();
    let until = app
        .audit_events(&admin, &format!("?until={}", urlencode(at)), 0)
        .await;
    assert!(until.iter().any(|e| e["id"] == oldest_bob["id"]));
    assert!(
        until
            .iter()
            .all(|e| e["occurred_at"].as_str().unwrap() <= at)
    );
    let since = app
        .audit_events(&admin, &format!("?since={}", urlencode(at)), 0)
        .await;
    assert!(since.iter().any(|e| e["id"] == oldest_bob["id"]));
    assert_eq!(since.len() + until.len() - 1, 11, "split at one event");
    let future = app
        .audit_events(&admin, "?since=2999-01-01T00:00:00Z", 0)
        .await;
    assert!(future.is_empty());

    // A walk two at a time visits every event once, in order.
    let mut walked = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = app.get_audit_events(&admin, &query).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let events = page.body["events"].as_array().unwrap();
        assert!(events.len() <= 2);
        walked.extend(events.iter().map(|e| e["id"].clone()));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let ids: Vec<Value> = all.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(walked, ids);
    // With a filter, the same.
    let first = app
        .get_audit_events(&admin, "?type=login.succeeded&limit=4")
        .await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .get_audit_events(
            &admin,
            &format!("?type=login.succeeded&limit=4&cursor={cursor}"),
        )
        .await;
    assert_eq!(first.body["events"].as_array().unwrap().len(), 4);
    assert_eq!(
        rest.body["events"].as_array().unwrap().len(),
        3,
        "{}",
        rest.body
    );
    assert_eq!(rest.body["next_cursor"], Value::Null);
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn bad_filters_are_refused_with_the_validation_shape() {
    let (app, admin) = TestApp::with_admin().await;
    let cases: [(&str, Value); 9] = [
        (
            "?type=login.guessed",
            json!({ "loc": ["query", "type"], "type": "enum" }),
        ),
        (
            "?since=yesterday",
            json!({ "loc": ["query", "since"], "type": "value_error" }),
        ),
        (
            "?until=2026-13-01T00:00:00Z",
            json!({ "loc": ["query", "until"], "type": "value_error" }),
        ),
        (
            "?since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z",
            json!({
                "loc": ["query", "since"], "type": "value_error",
                "msg": "since must not be after until",
            }),
        ),
        (
            "?cursor=not-a-cursor",
            json!({
                "loc": ["query", "cursor"], "type": "value_error",
                "msg": "Invalid cursor: pass a next_cursor as it was given",
            }),
        ),
        (
            "?limit=0",
            json!({ "loc": ["query", "limit"], "type": "greater_than_equal" }),
        ),
        (
            "?limit=201",
            json!({ "loc": ["query", "limit"], "type": "less_than_equal" }),
        ),
        (
            "?limit=ten",
            json!({ "loc": ["query", "limit"], "type": "int_parsing" }),
        ),
        (
            "?user_id=42",
            json!({ "loc": ["query", "user_id"], "type": "uuid_parsing" }),
        ),
    ];
    for (query, expected) in cases {
        let answer = app.get_audit_events(&admin, query).await;
        assert_eq!(answer.status, 422, "{query}: {}", answer.body);
        let issues = answer.body["detail"]
            .as_array()
            .expect("a list of problems");
        assert_eq!(issues.len(), 1, "{query}: {}", answer.body);
        let issue = &issues[0];
        assert_eq!(
            issue.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["loc", "msg", "type"],
            "{query}"
        );
        for (member, value) in expected.as_object().unwrap() {
            assert_eq!(&issue[member], value, "{query}: {issue}");
        }
    }
    // Every problem at once.
    let answer = app
        .get_audit_events(&admin, "?type=x&since=y&limit=0&cursor=z")
        .await;
    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.body["detail"].as_array().unwrap().len(),
        4,
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn only_an_admin_token_reads_the_audit_log() {
    let (app, admin) = TestApp::with_admin().await;
    app.create_user("johndoe", PASSWORD).await;
    let user = app.login("johndoe", PASSWORD).await.access_token;
    let admin_without_scope = app.login(ADMIN, STRONG_PASSWORD).await.access_token;

    for token in [user, admin_without_scope] {
        let answer = app.get_audit_events(&token, "").await;
        assert_eq!(answer.status, 401);
        assert_eq!(answer.body, json!({ "detail": "Not enough permissions" }));
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer scope=\"admin\"")
        );
    }
    let answer = app.get_audit_events(&admin, "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["events", "next_cursor"]
    );
}

#[tokio::test]
async fn events_older_than_the_retention_are_deleted_by_the_housekeeping() {
    let (url, data_dir) = fresh_database().await;
    let store = portcullis::db::Store::connect(&portcullis::config::DatabaseSettings {
        url: url.clone(),
        max_connections: None,
    })
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let old = |days: i64, kind| {
        let mut event = portcullis::audit::AuditContext::cli().event(kind, None, json!({}));
        event.occurred_at -= chrono::Duration::days(days);
        event
    };
    use portcullis::domain::AuditEventType;
    store
        .insert_audit_events(vec![
            old(31, AuditEventType::KeyRotated),
            old(29, AuditEventType::KeyRetired),
        ])
        .await
        .unwrap();
    let mut settings = test_settings(url);
    settings.audit_retention_days = 30;

    // The housekeeping runs at start, then hourly.
    let app = spawn_app_with(settings, data_dir).await;
    app.create_user_holding(ADMIN, STRONG_PASSWORD, "me items admin")
        .await;
    let admin = app.admin_token().await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let keys = app.audit_events(&admin, "?type=key.rotated", 0).await;
        if keys.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never deleted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let kept = app.audit_events(&admin, "?type=key.retired", 1).await;
    assert_eq!(kept.len(), 1, "the event within the retention stays");
}

#[tokio::test]
async fn an_audit_event_is_never_changed_once_written() {
    use sea_orm::ConnectionTrait as _;

    let (app, admin) = TestApp::with_admin().await;
    assert_eq!(app.audit_events(&admin, "", 2).await.len(), 2);

    let changed = app
        .store
        .connection()
        .execute_unprepared("UPDATE audit_events SET actor = 'someone else'")
        .await;

    let err = changed.expect_err("the table refuses updates");
    assert!(err.to_string().contains("append-only"), "{err}");
    let events = app.audit_events(&admin, "", 2).await;
    assert!(events.iter().all(|e| e["actor"] != "someone else"));
}
