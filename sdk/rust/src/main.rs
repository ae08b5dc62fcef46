//! The scenario, through the client progenitor generated (build.rs) from ../../openapi.json.
//! Usage: portcullis-sdk-rust <base URL of a running `portcullis serve --demo`>
use std::collections::BTreeSet;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

#[allow(clippy::all, dead_code, unused_imports)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/codegen.rs"));
}

use generated::{Client, Error, ResponseValue, types};

fn token_request(username: &str, password: &str) -> types::TokenRequest {
    types::TokenRequest {
        username: Some(username.parse().expect("a valid username")),
        password: Some(password.parse().expect("a valid password")),
        grant_type: None,
        refresh_token: None,
        scope: None,
        client_id: None,
        client_secret: None,
    }
}

fn refresh_request(refresh_token: &str) -> types::TokenRequest {
    types::TokenRequest {
        grant_type: Some("refresh_token".parse().expect("a valid grant type")),
        refresh_token: Some(refresh_token.to_owned()),
        ..types::TokenRequest::default()
    }
}

/// A token response of the demo user: the checks every login and refresh must pass.
fn check_token(token: &types::AccessToken) {
    assert_eq!(token.token_type, "bearer");
    assert!(token.expires_in > 0);
    let granted: BTreeSet<&str> = token.scope.split(' ').collect();
    assert_eq!(granted, BTreeSet::from(["items", "me"]));
    assert_eq!(token.refresh_token.len(), 75);
}

async fn password_login(anonymous: &Client) -> types::AccessToken {
    let token = anonymous
        .login_for_access_token(&token_request("johndoe", "secret"))
        .await
        .expect("login")
        .into_inner();
    check_token(&token);
    token
}

/// The generated client leaves authentication to the reqwest::Client it is given.
fn bearer(base_url: &str, access_token: &str) -> Client {
    let mut headers = HeaderMap::new();
    let bearer = HeaderValue::from_str(&format!("Bearer {access_token}")).unwrap();
    headers.insert(AUTHORIZATION, bearer);
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap();
    Client::new_with_client(base_url, http)
}

/// The session of the client's token, and every live session listed.
async fn current_session(client: &Client) -> (types::Session, Vec<types::Session>) {
    let sessions = client
        .list_sessions()
        .await
        .expect("list sessions")
        .into_inner();
    let current: Vec<&types::Session> = sessions.iter().filter(|s| s.current).collect();
    assert_eq!(current.len(), 1, "{sessions:?}");
    (current[0].clone(), sessions)
}

/// The message of a generated `Error` response with this status.
fn error_message<T: std::fmt::Debug>(
    result: Result<ResponseValue<T>, Error<types::Error>>,
    status: u16,
) -> String {
    match result {
        Err(Error::ErrorResponse(response)) => {
            assert_eq!(response.status().as_u16(), status);
            match &response.detail {
                types::ErrorDetail::String(detail) => detail.clone(),
                other => panic!("detail is not a message: {other:?}"),
            }
        }
        other => panic!("expected a {status} Error, got {other:?}"),
    }
}

/// A token of an ended session or a deleted API key: the typed 401 of a protected operation.
async fn assert_session_ended(client: &Client) {
    let result = client.read_current_user().await;
    if let Err(Error::ErrorResponse(response)) = &result {
        let challenge = response.headers().get("www-authenticate");
        assert_eq!(challenge.and_then(|v| v.to_str().ok()), Some("Bearer"));
    }
    assert_eq!(error_message(result, 401), "Could not validate credentials");
}

/// A password login of any user, optionally asking for scopes by name.
async fn log_in_as(
    anonymous: &Client,
    username: &str,
    password: &str,
    scope: Option<&str>,
) -> Result<ResponseValue<types::AccessToken>, Error<types::TokenErrorBody>> {
    let mut request = token_request(username, password);
    request.scope = scope.map(|s| s.parse().expect("a valid scope"));
    anonymous.login_for_access_token(&request).await
}

/// Accounts: sign up, log in, change the password (another session ends, this one stays),
/// then as the demo admin page through every user one at a time.
async fn accounts(base_url: &str, anonymous: &Client) {
    let username = format!("rs-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let password = "Vx7#qL2!kT9@";
    let user = anonymous
        .sign_up(&types::SignupRequest {
            username: username.parse().expect("a valid username"),
            password: password.parse().expect("a valid password"),
            email: None,
            full_name: Some("Rust SDK".parse().unwrap()),
        })
        .await
        .expect("sign up");
    assert_eq!(user.status().as_u16(), 201);
    let user = user.into_inner();
    assert_eq!(user.username, username);
    assert_eq!(user.full_name.as_deref(), Some("Rust SDK"));
    assert_eq!(user.email, None);
    assert!(!user.disabled);
    let scopes: BTreeSet<String> = user.scopes.iter().map(ToString::to_string).collect();
    assert_eq!(
        scopes,
        BTreeSet::from(["items".to_owned(), "me".to_owned()])
    );

    // Two sessions of the new user.
    let login = |password: &'static str| log_in_as(anonymous, &username, password, None);
    let first = login(password).await.expect("log in").into_inner();
    check_token(&first);
    let mine = bearer(base_url, &first.access_token);
    let second = login(password).await.expect("log in again").into_inner();
    let other = bearer(base_url, &second.access_token);
    let me = other
        .read_current_user()
        .await
        .expect("read me")
        .into_inner();
    assert_eq!(me.id, user.id);

    // Change the password from the first: 204; the other session is refused at once.
    let new_password = "Rb4$wN8&zP1%";
    let changed = mine
        .change_password(&types::PasswordChange {
            current_password: password.to_owned(),
            new_password: new_password.parse().expect("a valid password"),
        })
        .await
        .expect("change password");
    assert_eq!(changed.status().as_u16(), 204);
    assert_session_ended(&other).await;
    let me = mine
        .read_current_user()
        .await
        .expect("the caller's session stays")
        .into_inner();
    assert_eq!(me.id, user.id);
    match login(password).await {
        Err(Error::ErrorResponse(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("expected the old password's 401, got {other:?}"),
    }
    check_token(
        &login(new_password)
            .await
            .expect("new password")
            .into_inner(),
    );

    // The demo admin, with `admin` asked for by name.
    let token = log_in_as(anonymous, "admin", "secret3", Some("me items admin"))
        .await
        .expect("admin login")
        .into_inner();
    let granted: BTreeSet<&str> = token.scope.split(' ').collect();
    assert_eq!(granted, BTreeSet::from(["admin", "items", "me"]));
    let admin = bearer(base_url, &token.access_token);
    let mut seen: Vec<types::AdminUser> = Vec::new();
    let mut cursor: Option<String> = None;
    for pages in 0.. {
        assert!(pages < 1000, "next_cursor never became null");
        let page = admin
            .list_users(cursor.as_deref(), None, std::num::NonZeroU32::new(1), None)
            .await
            .expect("list users")
            .into_inner();
        assert!(page.users.len() <= 1, "{page:?}");
        seen.extend(page.users);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let names: Vec<&str> = seen.iter().map(|u| u.username.as_str()).collect();
    let distinct: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        names.len(),
        "a user was listed twice: {names:?}"
    );
    let ids: BTreeSet<uuid::Uuid> = seen.iter().map(|u| u.id).collect();
    assert_eq!(ids.len(), seen.len());
    for expected in ["johndoe", "alice", "admin", username.as_str()] {
        let count = names.iter().filter(|n| **n == expected).count();
        assert_eq!(count, 1, "{expected} in {names:?}");
    }
    let find = |name: &str| seen.iter().find(|u| u.username == name).unwrap();
    assert!(find("alice").disabled);
    assert!(find("admin").scopes.contains(&types::Scope::Admin));
    assert_eq!(find(&username).id, user.id);
    assert!(find(&username).last_login_at.is_some());

    // The audit log, as the admin: the new account's signup and password change, by filters.
    for (kind, detail) in [
        (
            types::AuditEventType::UserSignedUp,
            serde_json::json!({"username": username, "scopes": ["me", "items"]}),
        ),
        (
            types::AuditEventType::PasswordChanged,
            serde_json::json!({"sessions_ended": 1}),
        ),
    ] {
        let page = admin
            .list_audit_events(None, None, None, Some(kind), None, Some(&user.id))
            .await
            .expect("list audit events")
            .into_inner();
        assert_eq!(page.next_cursor, None);
        assert_eq!(page.events.len(), 1, "{page:?}");
        let event = &page.events[0];
        assert_eq!(event.type_, kind);
        assert_eq!(event.user_id, Some(user.id));
        assert_eq!(event.actor.as_deref(), Some(user.id.to_string().as_str()));
        assert_eq!(serde_json::to_value(&event.detail).unwrap(), detail);
    }
}

/// An API key: create one from a login, then a new client with the key as its token reads your
/// account and items, lists the keys (without the key) and deletes the key; then it is refused.
async fn api_keys(base_url: &str, anonymous: &Client) {
    let client = bearer(base_url, &password_login(anonymous).await.access_token);
    let created = client
        .create_api_key(&types::ApiKeyCreate {
            name: "sdk-rust".parse().expect("a valid name"),
            scopes: Some(vec![types::Scope::Me, types::Scope::Items]),
            expires_in_days: None,
        })
        .await
        .expect("create API key");
    assert_eq!(created.status().as_u16(), 201);
    let key = created.into_inner();
    assert_eq!(key.name, "sdk-rust");
    let scopes: BTreeSet<String> = key.scopes.iter().map(ToString::to_string).collect();
    assert_eq!(
        scopes,
        BTreeSet::from(["items".to_owned(), "me".to_owned()])
    );
    assert!(key.created_at <= chrono::Utc::now());
    assert_eq!(key.expires_at, None);
    assert_eq!(key.last_used_at, None);
    assert!(key.key.starts_with("pcl_"), "{}", key.key);
    assert_eq!(key.key.len(), 75);

    // A new client with the key as its token: it goes wherever an access token goes.
    let keyed = bearer(base_url, &key.key);
    let me = keyed
        .read_current_user()
        .await
        .expect("read me with the key")
        .into_inner();
    assert_eq!(me.username, "johndoe");
    let items = keyed
        .list_items(None, None)
        .await
        .expect("list items with the key")
        .into_inner();
    assert!(
        items.iter().all(|item| item.owner == "johndoe"),
        "{items:?}"
    );

    // Listed, without the key: the generated `ApiKey` has no `key` member.
    let keys = keyed
        .list_api_keys()
        .await
        .expect("list API keys")
        .into_inner();
    let mine: Vec<&types::ApiKey> = keys.iter().filter(|k| k.id == key.id).collect();
    assert_eq!(mine.len(), 1, "{keys:?}");
    assert_eq!(mine[0].name, "sdk-rust");
    assert_eq!(mine[0].scopes, key.scopes);
    assert_eq!(mine[0].created_at, key.created_at);
    assert_eq!(mine[0].expires_at, None);
    let members = serde_json::to_value(mine[0]).unwrap();
    assert_eq!(members.get("key"), None, "{members}");

    // The key deletes itself: 204; from then on it gets the typed 401.
    let deleted = keyed.delete_api_key(&key.id).await.expect("delete API key");
    assert_eq!(deleted.status().as_u16(), 204);
    assert_session_ended(&keyed).await;

    // No longer listed; deleted already: the generated error type (404).
    let keys = client
        .list_api_keys()
        .await
        .expect("list API keys")
        .into_inner();
    assert!(keys.iter().all(|k| k.id != key.id), "{keys:?}");
    assert_eq!(
        error_message(client.delete_api_key(&key.id).await, 404),
        "API key not found"
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let base_url = std::env::args()
        .nth(1)
        .expect("usage: portcullis-sdk-rust BASE_URL");
    let anonymous = Client::new(&base_url);

    // Log in: the form body.
    let token = password_login(&anonymous).await;
    let client = bearer(&base_url, &token.access_token);

    // Read your account.
    let me = client
        .read_current_user()
        .await
        .expect("read me")
        .into_inner();
    assert_eq!(me.username, "johndoe");
    assert_eq!(me.email.as_deref(), Some("johndoe@example.com"));
    assert!(!me.disabled);
    let scopes: BTreeSet<String> = me.scopes.iter().map(ToString::to_string).collect();
    assert_eq!(
        scopes,
        BTreeSet::from(["items".to_owned(), "me".to_owned()])
    );
    assert!(me.scopes.contains(&types::Scope::Me));

    // Create an item (and one without a description), then list.
    let created = client
        .create_item(&types::ItemCreate {
            title: "rust sdk".parse().unwrap(),
            description: Some("from progenitor".parse().unwrap()),
        })
        .await
        .expect("create item")
        .into_inner();
    assert_eq!(created.owner, "johndoe");
    let untitled = client
        .create_item(&types::ItemCreate {
            title: "no description".parse().unwrap(),
            description: None,
        })
        .await
        .expect("create item without description")
        .into_inner();
    assert_eq!(untitled.description, None);
    // No `after`, no `limit`: the first page (the `Link` header, unread here, names the next).
    let items = client
        .list_items(None, None)
        .await
        .expect("list items")
        .into_inner();
    let listed = items
        .iter()
        .find(|item| item.id == created.id)
        .expect("created item listed");
    assert_eq!(listed.owner, "johndoe");
    assert_eq!(listed.description.as_deref(), Some("from progenitor"));
    assert!(
        items
            .iter()
            .any(|item| item.id == untitled.id && item.description.is_none())
    );

    // An unknown item: the generated error type (404).
    match client.delete_item(&uuid::Uuid::new_v4()).await {
        Err(Error::ErrorResponse(response)) => {
            assert_eq!(response.status().as_u16(), 404);
            let body: &types::Error = &response;
            match &body.detail {
                types::ErrorDetail::String(detail) => assert_eq!(detail, "Item not found"),
                other => panic!("detail is not a message: {other:?}"),
            }
        }
        other => panic!("expected a 404 Error, got {other:?}"),
    }

    // A wrong password: the generated error type (401).
    match anonymous
        .login_for_access_token(&token_request("johndoe", "not-the-password"))
        .await
    {
        Err(Error::ErrorResponse(response)) => {
            assert_eq!(response.status().as_u16(), 401);
            let body: &types::TokenErrorBody = &response;
            match &body.detail {
                types::ErrorDetail::String(detail) => {
                    assert_eq!(detail, "Incorrect username or password")
                }
                other => panic!("detail is not a message: {other:?}"),
            }
            assert_eq!(body.error, types::OAuthErrorCode::InvalidGrant);
            assert_eq!(body.error_description, "Incorrect username or password");
        }
        other => panic!("expected a 401 TokenErrorBody, got {other:?}"),
    }

    // Refresh: a new access token and a new refresh token, in the same session. The spent
    // refresh token is not presented again here: within the reuse grace it would still be
    // accepted. Revoking it (below) ends the session, which the later checks rely on.
    let refreshed = anonymous
        .login_for_access_token(&refresh_request(&token.refresh_token))
        .await
        .expect("refresh")
        .into_inner();
    check_token(&refreshed);
    assert_ne!(refreshed.refresh_token, token.refresh_token);
    assert_ne!(refreshed.access_token, token.access_token);
    let session = bearer(&base_url, &refreshed.access_token);
    let me = session
        .read_current_user()
        .await
        .expect("read me, refreshed")
        .into_inner();
    assert_eq!(me.username, "johndoe");

    // List the sessions: this one is marked current, for the login's token and the refreshed one.
    let (mine, _) = current_session(&session).await;
    let now = chrono::Utc::now();
    assert!(mine.created_at <= now && mine.last_used_at <= now && now < mine.expires_at);
    assert_eq!(mine.client_address, "127.0.0.1");
    // reqwest sends no User-Agent unless told: a nullable member, read as None.
    assert_eq!(mine.user_agent, None, "{mine:?}");
    let (mine_from_login, _) = current_session(&client).await;
    assert_eq!(mine_from_login.id, mine.id);

    // A second login is a second session; end it from the first.
    let second = bearer(&base_url, &password_login(&anonymous).await.access_token);
    let (theirs, _) = current_session(&second).await;
    assert_ne!(theirs.id, mine.id);
    let (mine_again, sessions) = current_session(&session).await;
    assert_eq!(mine_again.id, mine.id);
    assert!(sessions.iter().any(|s| s.id == theirs.id && !s.current));
    let ended = session.end_session(&theirs.id).await.expect("end session");
    assert_eq!(ended.status().as_u16(), 204);
    assert_session_ended(&second).await;
    let (_, sessions) = current_session(&session).await;
    assert!(sessions.iter().all(|s| s.id != theirs.id));
    // Ended already: the generated error type (404).
    assert_eq!(
        error_message(session.end_session(&theirs.id).await, 404),
        "Session not found"
    );

    // Revoke the spent refresh token of the first session: 200, no body, and the whole session
    // ends — its current refresh token gets the typed 400, its access tokens 401.
    let revoked = anonymous
        .revoke_token(&types::RevocationRequest {
            token: token.refresh_token.parse().expect("a non-empty token"),
            token_type_hint: Some("refresh_token".parse().expect("a valid hint")),
            client_id: None,
            client_secret: None,
        })
        .await
        .expect("revoke");
    assert_eq!(revoked.status().as_u16(), 200);
    match anonymous
        .login_for_access_token(&refresh_request(&refreshed.refresh_token))
        .await
    {
        Err(Error::ErrorResponse(response)) => {
            assert_eq!(response.status().as_u16(), 400);
            let body: &types::TokenErrorBody = &response;
            assert_eq!(body.error, types::OAuthErrorCode::InvalidGrant);
            assert_eq!(
                serde_json::to_value(body).unwrap(),
                serde_json::json!({
                    "detail": "Invalid refresh token",
                    "error": "invalid_grant",
                    "error_description": "Invalid refresh token",
                })
            );
        }
        other => panic!("expected a 400 TokenErrorBody, got {other:?}"),
    }
    assert_session_ended(&session).await;
    assert_session_ended(&client).await;

    // Log out everywhere: at least this session ends, and its token is refused.
    let last = bearer(&base_url, &password_login(&anonymous).await.access_token);
    let out = last
        .logout(Some(types::LogoutScope::Global))
        .await
        .expect("logout")
        .into_inner();
    assert!(out.sessions_ended >= 1, "{out:?}");
    assert_session_ended(&last).await;
    assert_eq!(
        error_message(last.logout(Some(types::LogoutScope::Global)).await, 401),
        "Could not validate credentials"
    );

    // Discovery: no published keys (the demo server signs with HS256), and the endpoints.
    let keys = anonymous.jwks().await.expect("jwks").into_inner();
    assert!(keys.keys.is_empty(), "{keys:?}");
    let metadata = anonymous
        .authorization_server_metadata()
        .await
        .expect("discovery")
        .into_inner();
    assert!(
        metadata
            .grant_types_supported
            .iter()
            .any(|g| g == "refresh_token")
    );
    assert!(
        metadata
            .grant_types_supported
            .iter()
            .any(|g| g == "password")
    );
    assert_eq!(metadata.token_endpoint, format!("{base_url}/token"));
    assert_eq!(
        metadata.revocation_endpoint,
        format!("{base_url}/token/revoke")
    );
    assert_eq!(
        metadata.jwks_uri,
        format!("{base_url}/.well-known/jwks.json")
    );
    assert!(metadata.response_types_supported.is_empty());
    let scopes: BTreeSet<&str> = metadata
        .scopes_supported
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(scopes, BTreeSet::from(["admin", "items", "me"]));

    // Accounts: signup, password change, admin listing.
    accounts(&base_url, &anonymous).await;

    // API keys: create, use from a new client, list, delete.
    api_keys(&base_url, &anonymous).await;

    println!("rust scenario: 13 checks passed");
}
