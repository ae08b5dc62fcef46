//! The contract's "Protected operations" table: how every operation that needs a bearer token
//! answers a missing, foreign, malformed, forged, expired or under-scoped token, and a disabled
//! or deleted user — plus `GET /users/me` itself and the unprotected probes.
//!
//! The operations are read from the OpenAPI document ([`protected_operations`]): one added to
//! the API is covered here the day it is added, and
//! `every_protected_operation_enforces_exactly_the_scopes_it_declares` holds its declared
//! scopes to the ones its code checks.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const USERNAME: &str = "JohnDoe";
const PASSWORD: &str = "correct horse battery staple";

/// Sends `operation`'s valid request with `authorization` as the raw `Authorization` header
/// (none when `None`).
async fn call(
    app: &TestApp,
    operation: &ProtectedOperation,
    authorization: Option<&str>,
) -> Answer {
    let mut request = operation.request(app);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    send(request).await
}

/// Sends `operation` with a raw body of `content_type`.
async fn call_with_raw_body(
    app: &TestApp,
    operation: &ProtectedOperation,
    authorization: Option<&str>,
    content_type: &str,
    body: &'static str,
) -> Answer {
    let mut request = app
        .request(operation.method.clone(), &operation.path)
        .header("Content-Type", content_type)
        .body(body);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    send(request).await
}

/// Checks status, whole JSON body and the `WWW-Authenticate` header (`None`: must be absent).
fn assert_answer(
    answer: &Answer,
    status: u16,
    body: Value,
    challenge: Option<&str>,
    context: &str,
) {
    assert_eq!(
        answer.status, status,
        "status of {context}: {}",
        answer.text
    );
    assert_eq!(
        answer.header("www-authenticate"),
        challenge,
        "WWW-Authenticate of {context}"
    );
    assert_eq!(answer.body, body, "body of {context}");
}

/// Every protected operation answers `authorization` with 401 `Not authenticated`.
async fn assert_not_authenticated_everywhere(app: &TestApp, authorization: Option<&str>) {
    for operation in protected_operations() {
        let answer = call(app, &operation, authorization).await;
        assert_answer(
            &answer,
            401,
            json!({ "detail": "Not authenticated" }),
            Some("Bearer"),
            &format!("{operation} with Authorization {authorization:?}"),
        );
    }
}

/// Every protected operation answers `token` with 401 `Could not validate credentials`.
async fn assert_token_refused_everywhere(app: &TestApp, token: &str) {
    for operation in protected_operations() {
        let answer = call(app, &operation, Some(&format!("Bearer {token}"))).await;
        assert_answer(
            &answer,
            401,
            json!({ "detail": "Could not validate credentials" }),
            Some("Bearer"),
            &format!("{operation} with token {token:?}"),
        );
    }
}

/// Every protected operation lets through the `Authorization` header `authorization` makes. It
/// makes one per operation: a request that succeeds may end its session (`POST /logout`).
async fn assert_accepted_everywhere(app: &TestApp, mut authorization: impl AsyncFnMut() -> String) {
    for operation in protected_operations() {
        let authorization = authorization().await;
        let answer = call(app, &operation, Some(&authorization)).await;
        assert_eq!(
            answer.status, operation.success,
            "{operation} with Authorization {authorization:?}: {}",
            answer.text
        );
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn at_jwt_header() -> Value {
    json!({ "alg": "HS256", "typ": "at+jwt" })
}

/// Checks that `token` is a correct `algorithm` JWT, so that the server refusing it can only be
/// for the algorithm.
fn assert_verifies_with(algorithm: jsonwebtoken::Algorithm, token: &str) {
    let mut validation = jsonwebtoken::Validation::new(algorithm);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let key = jsonwebtoken::DecodingKey::from_secret(TEST_SECRET);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|err| panic!("the forged {algorithm:?} token is itself wrong: {err}"));
}

/// A server with one user holding `me items`, and a live session of theirs for forged tokens
/// to name.
async fn app_with_a_live_session() -> (TestApp, Subject) {
    let (app, user) = TestApp::with_user(USERNAME, PASSWORD).await;
    let subject = app.start_session(user.id).await;
    (app, subject)
}

/// A server with one user holding every scope (`admin` included), whom every protected
/// operation lets in once their token carries every scope.
async fn app_with_a_user_holding_every_scope() -> (TestApp, portcullis::db::User) {
    let app = spawn_app().await;
    let user = app
        .create_user_holding(USERNAME, PASSWORD, &defined_scopes().join(" "))
        .await;
    (app, user)
}

/// An access token of that user carrying every scope (a login leaves `admin` out unless asked).
async fn login_with_every_scope(app: &TestApp) -> String {
    app.login_with(Login::new(USERNAME, PASSWORD).scope(&defined_scopes().join(" ")))
        .await
        .access_token
}

/// A valid token of `user_id` holding `scope`, forged on a session of its own.
async fn forged_token(app: &TestApp, user_id: Uuid, scope: &str) -> String {
    let subject = app.start_session(user_id).await;
    sign(at_jwt_header(), valid_claims(subject, scope), TEST_SECRET)
}

fn remove(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

#[test]
fn the_protected_operations_are_read_from_the_document_each_with_a_valid_request() {
    // `protected_operations` fails, naming the operation, when it cannot build one a request.
    let ids: Vec<String> = protected_operations()
        .into_iter()
        .map(|operation| operation.operation_id)
        .collect();

    assert!(ids.iter().any(|id| id == "read_current_user"), "{ids:?}");
}

// --- Missing or foreign credentials ---------------------------------------------------------

#[tokio::test]
async fn a_request_without_an_authorization_header_is_not_authenticated() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    assert_not_authenticated_everywhere(&app, None).await;
}

#[tokio::test]
async fn basic_credentials_are_not_authenticated() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    assert_not_authenticated_everywhere(&app, Some("Basic dXNlcjpwYXNz")).await;
}

#[tokio::test]
async fn an_unknown_scheme_is_not_authenticated() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    assert_not_authenticated_everywhere(&app, Some("Token abc")).await;
}

#[tokio::test]
async fn a_bearer_scheme_without_a_token_is_not_authenticated() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    assert_not_authenticated_everywhere(&app, Some("Bearer")).await;
}

#[tokio::test]
async fn a_bearer_scheme_followed_only_by_a_space_is_refused() {
    // HTTP strips trailing whitespace from header values, so the server sees `Bearer` alone.
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    assert_not_authenticated_everywhere(&app, Some("Bearer ")).await;
}

#[tokio::test]
async fn a_token_glued_to_the_scheme_name_is_not_authenticated() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;

    assert_not_authenticated_everywhere(&app, Some(&format!("Bearer{token}"))).await;
}

#[tokio::test]
async fn the_scheme_name_is_matched_without_regard_to_case() {
    let (app, _) = app_with_a_user_holding_every_scope().await;

    for scheme in ["bearer", "BEARER", "Bearer"] {
        assert_accepted_everywhere(&app, async || {
            let token = login_with_every_scope(&app).await;
            format!("{scheme} {token}")
        })
        .await;
    }
}

// --- Tokens that are not valid --------------------------------------------------------------

#[tokio::test]
async fn a_forged_token_with_valid_claims_and_the_right_secret_is_accepted() {
    // The control for every forged token below: the forging itself is right, so when they are
    // refused it is for the one thing each of them changes.
    let (app, user) = app_with_a_user_holding_every_scope().await;

    assert_accepted_everywhere(&app, async || {
        let token = forged_token(&app, user.id, &defined_scopes().join(" ")).await;
        format!("Bearer {token}")
    })
    .await;
}

#[tokio::test]
async fn a_token_with_a_critical_header_extension_is_refused() {
    // RFC 7515 §4.1.11: an extension named in `crit` that the recipient does not understand
    // (and portcullis understands none) makes the token invalid, even correctly signed.
    let (app, user_id) = app_with_a_live_session().await;
    for crit in [
        json!(["exp"]),
        json!(["http://example.com/extension"]),
        json!([]),
    ] {
        let mut header = at_jwt_header();
        header["crit"] = crit.clone();
        header["http://example.com/extension"] = json!(true);
        let token = sign(header, valid_claims(user_id, "me items"), TEST_SECRET);

        assert_token_refused_everywhere(&app, &token).await;
    }
}

#[tokio::test]
async fn a_garbage_token_is_refused() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    assert_token_refused_everywhere(&app, "not-a-jwt").await;
    assert_token_refused_everywhere(&app, "a.b.c").await;
}

#[tokio::test]
async fn a_truncated_token_is_refused() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;
    let truncated = &token[..token.len() - 5];

    assert_token_refused_everywhere(&app, truncated).await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused() {
    let (app, user_id) = app_with_a_live_session().await;
    let token = sign(
        at_jwt_header(),
        valid_claims(user_id, "me items"),
        b"another-secret-of-at-least-32-bytes-long",
    );

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn an_unsigned_token_with_algorithm_none_is_refused() {
    use base64::Engine as _;
    let (app, user_id) = app_with_a_live_session().await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({ "alg": "none", "typ": "at+jwt" });
    let token = format!(
        "{}.{}.",
        b64.encode(header.to_string()),
        b64.encode(valid_claims(user_id, "me items").to_string())
    );

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_signed_with_hs384_and_the_right_secret_is_refused() {
    let (app, user_id) = app_with_a_live_session().await;
    let token = sign_with(
        jsonwebtoken::Algorithm::HS384,
        json!({ "alg": "HS384", "typ": "at+jwt" }),
        valid_claims(user_id, "me items"),
        TEST_SECRET,
    );
    assert_verifies_with(jsonwebtoken::Algorithm::HS384, &token);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_signed_with_hs512_and_the_right_secret_is_refused() {
    let (app, user_id) = app_with_a_live_session().await;
    let token = sign_with(
        jsonwebtoken::Algorithm::HS512,
        json!({ "alg": "HS512", "typ": "at+jwt" }),
        valid_claims(user_id, "me items"),
        TEST_SECRET,
    );
    assert_verifies_with(jsonwebtoken::Algorithm::HS512, &token);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let (app, user_id) = app_with_a_live_session().await;
    let now = now();
    let mut claims = valid_claims(user_id, "me items");
    claims["iat"] = json!(now - 1200);
    claims["nbf"] = json!(now - 1200);
    claims["exp"] = json!(now - 600);
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_that_is_not_yet_valid_is_refused() {
    let (app, user_id) = app_with_a_live_session().await;
    let now = now();
    let mut claims = valid_claims(user_id, "me items");
    claims["nbf"] = json!(now + 600);
    claims["exp"] = json!(now + 1200);
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let (app, user_id) = app_with_a_live_session().await;
    let mut claims = valid_claims(user_id, "me items");
    claims["iss"] = json!("someone-else");
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let (app, user_id) = app_with_a_live_session().await;
    let mut claims = valid_claims(user_id, "me items");
    claims["aud"] = json!("another-api");
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_without_an_expiry_is_refused() {
    let (app, user_id) = app_with_a_live_session().await;
    let claims = remove(valid_claims(user_id, "me items"), "exp");
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_without_a_subject_is_refused() {
    let (app, user_id) = app_with_a_live_session().await;
    let claims = remove(valid_claims(user_id, "me items"), "sub");
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_whose_subject_is_the_username_is_refused() {
    let (app, user_id) = app_with_a_live_session().await;
    let mut claims = valid_claims(user_id, "me items");
    claims["sub"] = json!(USERNAME);
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_jwt_that_is_not_an_access_token_is_refused() {
    let (app, user_id) = app_with_a_live_session().await;
    let token = sign(
        json!({ "alg": "HS256", "typ": "JWT" }),
        valid_claims(user_id, "me items"),
        TEST_SECRET,
    );
    let untyped = sign(
        json!({ "alg": "HS256" }),
        valid_claims(user_id, "me items"),
        TEST_SECRET,
    );

    assert_token_refused_everywhere(&app, &token).await;
    assert_token_refused_everywhere(&app, &untyped).await;
}

#[tokio::test]
async fn a_token_for_a_user_who_never_existed_is_refused() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let token = sign(
        at_jwt_header(),
        valid_claims(Uuid::new_v4(), "me items"),
        TEST_SECRET,
    );

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_of_a_deleted_user_is_refused() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;
    assert_eq!(app.get_me(&token).await.status, 200);

    app.delete_user(USERNAME).await;

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_of_a_deleted_user_stays_refused_when_the_name_is_taken_again() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let old_token = app.login(USERNAME, PASSWORD).await.access_token;
    app.delete_user(USERNAME).await;
    app.create_user(USERNAME, PASSWORD).await;

    assert_token_refused_everywhere(&app, &old_token).await;
}

// --- Scopes ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_token_without_the_items_scope_cannot_use_the_items_operations() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let token = app
        .login_with(Login::new(USERNAME, PASSWORD).scope("me"))
        .await
        .access_token;
    let authorization = format!("Bearer {token}");

    let items_operations = protected_operations()
        .into_iter()
        .filter(|operation| operation.scopes.iter().any(|scope| scope == "items"));
    for operation in items_operations {
        let answer = call(&app, &operation, Some(&authorization)).await;
        assert_answer(
            &answer,
            401,
            json!({ "detail": "Not enough permissions" }),
            Some(&operation.scope_challenge()),
            &format!("{operation} with scope me"),
        );
    }
    assert_eq!(app.get_me(&token).await.status, 200);
}

#[tokio::test]
async fn a_token_without_the_me_scope_cannot_read_the_account() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let token = app
        .login_with(Login::new(USERNAME, PASSWORD).scope("items"))
        .await
        .access_token;

    let answer = app.get_me(&token).await;

    assert_answer(
        &answer,
        401,
        json!({ "detail": "Not enough permissions" }),
        Some("Bearer scope=\"me\""),
        "GET /users/me with scope items",
    );
    let items = app.get_items(&token).await;
    assert_eq!(items.status, 200);
}

#[tokio::test]
async fn a_forged_token_without_scopes_is_refused_for_lack_of_permissions() {
    let (app, user_id) = app_with_a_live_session().await;
    let token = sign(at_jwt_header(), valid_claims(user_id, ""), TEST_SECRET);
    let authorization = format!("Bearer {token}");

    // Every operation that declares a scope (`POST /logout` declares none).
    let scoped = protected_operations()
        .into_iter()
        .filter(|operation| !operation.scopes.is_empty());
    for operation in scoped {
        let answer = call(&app, &operation, Some(&authorization)).await;
        assert_answer(
            &answer,
            401,
            json!({ "detail": "Not enough permissions" }),
            Some(&operation.scope_challenge()),
            &format!("{operation} with no scope"),
        );
    }
}

/// The scopes an operation declares in the document are the ones its code checks (poem-openapi
/// only documents them): a token lacking any one declared scope is refused, naming the declared
/// scopes, and a token holding exactly the declared scopes is let through.
///
/// The tokens are forged, each on a session of its own, so that any set of scopes can be held,
/// none included, which `/token` never issues (an empty `scope` asks for the defaults); the
/// server takes a forged token as its own (see
/// `a_forged_token_with_valid_claims_and_the_right_secret_is_accepted`).
///
/// What is checked is each operation's valid request. `POST /logout` declares no scope and its
/// default (`scope=local`) needs none; `scope=others` and `scope=global` need `me`, which its
/// description says and `sessions::ending_other_sessions_at_logout_needs_the_me_scope` checks:
/// a scope needed for some values of a parameter cannot be declared in the document.
#[tokio::test]
async fn every_protected_operation_enforces_exactly_the_scopes_it_declares() {
    let app = spawn_app().await;
    let every_scope = defined_scopes();
    let user = app
        .create_user_holding("root", PASSWORD, &every_scope.join(" "))
        .await;

    for operation in protected_operations() {
        for missing in &operation.scopes {
            let held: Vec<&str> = every_scope
                .iter()
                .filter(|scope| *scope != missing)
                .map(String::as_str)
                .collect();
            let token = forged_token(&app, user.id, &held.join(" ")).await;

            let answer = call(&app, &operation, Some(&format!("Bearer {token}"))).await;

            assert_answer(
                &answer,
                401,
                json!({ "detail": "Not enough permissions" }),
                Some(&operation.scope_challenge()),
                &format!(
                    "{operation} with {held:?}, every scope but {missing:?}, which it declares \
                     and so must check"
                ),
            );
        }

        let declared = operation.scopes.join(" ");
        let token = forged_token(&app, user.id, &declared).await;

        let answer = call(&app, &operation, Some(&format!("Bearer {token}"))).await;

        assert_eq!(
            answer.status, operation.success,
            "{operation} with exactly the scopes it declares ({declared:?}) must be let through; \
             does it check one it does not declare? {}",
            answer.text
        );
    }
}

// --- Disabled users -------------------------------------------------------------------------

#[tokio::test]
async fn a_user_disabled_after_logging_in_is_told_it_is_inactive_on_the_next_request() {
    let (app, _) = app_with_a_user_holding_every_scope().await;
    let token = login_with_every_scope(&app).await;
    assert_eq!(app.get_me(&token).await.status, 200);

    app.disable_user(USERNAME).await;

    for operation in protected_operations() {
        let answer = call(&app, &operation, Some(&format!("Bearer {token}"))).await;
        assert_answer(
            &answer,
            400,
            json!({ "detail": "Inactive user" }),
            None,
            &format!("{operation} by a disabled user"),
        );
    }
}

#[tokio::test]
async fn a_user_enabled_again_is_let_in_with_the_same_token() {
    let (app, _) = app_with_a_user_holding_every_scope().await;
    // A token for each operation, all issued before the user is disabled: a request that
    // succeeds may end its session (`POST /logout`).
    let mut tokens = Vec::new();
    for _ in protected_operations() {
        tokens.push(login_with_every_scope(&app).await);
    }
    app.disable_user(USERNAME).await;
    for token in &tokens {
        assert_eq!(app.get_me(token).await.status, 400);
    }

    app.enable_user(USERNAME).await;

    let mut tokens = tokens.into_iter();
    assert_accepted_everywhere(&app, async || {
        let token = tokens.next().expect("a token per operation");
        format!("Bearer {token}")
    })
    .await;
}

#[tokio::test]
async fn a_disabled_user_without_the_needed_scope_is_refused_for_lack_of_permissions_first() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let token = app
        .login_with(Login::new(USERNAME, PASSWORD).scope("me"))
        .await
        .access_token;
    app.disable_user(USERNAME).await;

    let answer = app.get_items(&token).await;

    assert_answer(
        &answer,
        401,
        json!({ "detail": "Not enough permissions" }),
        Some("Bearer scope=\"items\""),
        "GET /users/me/items by a disabled user with scope me",
    );
}

// --- Order of the checks --------------------------------------------------------------------

fn create_item() -> ProtectedOperation {
    protected_operation("create_item")
}

#[tokio::test]
async fn credentials_are_checked_before_an_unparsable_body() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    let answer =
        call_with_raw_body(&app, &create_item(), None, "application/json", "{not json").await;

    assert_answer(
        &answer,
        401,
        json!({ "detail": "Not authenticated" }),
        Some("Bearer"),
        "POST /users/me/items without credentials and with a body that is not JSON",
    );
}

#[tokio::test]
async fn credentials_are_checked_before_a_body_of_the_wrong_content_type() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    let answer = call_with_raw_body(&app, &create_item(), None, "text/plain", "a title").await;

    assert_answer(
        &answer,
        401,
        json!({ "detail": "Not authenticated" }),
        Some("Bearer"),
        "POST /users/me/items without credentials and with a text/plain body",
    );
}

#[tokio::test]
async fn credentials_are_checked_before_a_malformed_item_id() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    let answer = send(app.request(Method::DELETE, "/users/me/items/not-a-uuid")).await;

    assert_answer(
        &answer,
        401,
        json!({ "detail": "Not authenticated" }),
        Some("Bearer"),
        "DELETE /users/me/items/not-a-uuid without credentials",
    );
}

#[tokio::test]
async fn an_invalid_token_is_refused_before_an_unparsable_body_is_looked_at() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;

    let answer = call_with_raw_body(
        &app,
        &create_item(),
        Some("Bearer not-a-jwt"),
        "application/json",
        "{not json",
    )
    .await;

    assert_answer(
        &answer,
        401,
        json!({ "detail": "Could not validate credentials" }),
        Some("Bearer"),
        "POST /users/me/items with a bad token and a body that is not JSON",
    );
}

#[tokio::test]
async fn a_missing_scope_is_reported_before_an_unparsable_body() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let token = app
        .login_with(Login::new(USERNAME, PASSWORD).scope("me"))
        .await
        .access_token;

    let answer = call_with_raw_body(
        &app,
        &create_item(),
        Some(&format!("Bearer {token}")),
        "application/json",
        "{not json",
    )
    .await;

    assert_answer(
        &answer,
        401,
        json!({ "detail": "Not enough permissions" }),
        Some("Bearer scope=\"items\""),
        "POST /users/me/items with scope me and a body that is not JSON",
    );
}

#[tokio::test]
async fn a_missing_scope_is_reported_before_an_invalid_title() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let token = app
        .login_with(Login::new(USERNAME, PASSWORD).scope("me"))
        .await
        .access_token;

    let answer = app.post_item(&token, json!({ "title": "" })).await;

    assert_answer(
        &answer,
        401,
        json!({ "detail": "Not enough permissions" }),
        Some("Bearer scope=\"items\""),
        "POST /users/me/items with scope me and an empty title",
    );
}

#[tokio::test]
async fn an_inactive_user_is_told_so_before_an_invalid_title() {
    let (app, _) = TestApp::with_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;
    app.disable_user(USERNAME).await;

    let answer = app.post_item(&token, json!({ "title": "" })).await;

    assert_answer(
        &answer,
        400,
        json!({ "detail": "Inactive user" }),
        None,
        "POST /users/me/items by a disabled user with an empty title",
    );
}

// --- GET /users/me --------------------------------------------------------------------------

/// Fails if any member name mentions a hash, or any string looks like a PHC hash.
fn assert_no_hash_anywhere(value: &Value) {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                assert!(
                    !name.to_lowercase().contains("hash") && !name.to_lowercase().contains("pass"),
                    "the body has a member {name:?}"
                );
                assert_no_hash_anywhere(member);
            }
        }
        Value::Array(elements) => elements.iter().for_each(assert_no_hash_anywhere),
        Value::String(text) => assert!(!text.starts_with("$argon2"), "the body holds a hash"),
        _ => {}
    }
}

/// Checks `created_at` is RFC 3339 and the instant the account was created; returns it.
fn created_at(body: &Value, expected: chrono::DateTime<chrono::Utc>) -> Value {
    let raw = body["created_at"].as_str().expect("created_at is a string");
    let parsed = chrono::DateTime::parse_from_rfc3339(raw)
        .unwrap_or_else(|err| panic!("created_at {raw:?} is not RFC 3339: {err}"));
    assert_eq!(parsed, expected, "created_at {raw:?}");
    json!(raw)
}

#[tokio::test]
async fn the_current_user_is_returned_with_its_account_details() {
    let app = spawn_app().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let token = app.login(USERNAME, PASSWORD).await.access_token;

    let answer = app.get_me(&token).await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("www-authenticate"), None);
    let body = answer.body;
    assert_no_hash_anywhere(&body);
    assert_eq!(
        body,
        json!({
            "id": user.id.to_string(),
            "username": "JohnDoe",
            "email": "johndoe@example.com",
            "full_name": "Test User",
            "disabled": false,
            "scopes": ["me", "items"],
            "created_at": created_at(&body, user.created_at),
        })
    );
}

#[tokio::test]
async fn the_account_keeps_its_spelling_when_logging_in_with_another_case() {
    let app = spawn_app().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let token = app.login("johndoe", PASSWORD).await.access_token;

    let body = app.get_me(&token).await.body;

    assert_eq!(body["id"], json!(user.id.to_string()));
    assert_eq!(body["username"], json!("JohnDoe"));
}

#[tokio::test]
async fn a_user_without_email_or_full_name_has_them_as_null() {
    let app = spawn_app().await;
    let user = app.try_create_user("plain.user", PASSWORD).await.unwrap();
    let token = app.login("plain.user", PASSWORD).await.access_token;

    let answer = app.get_me(&token).await;

    assert_eq!(answer.status, 200);
    let body = answer.body;
    assert_no_hash_anywhere(&body);
    assert_eq!(
        body,
        json!({
            "id": user.id.to_string(),
            "username": "plain.user",
            "email": null,
            "full_name": null,
            "disabled": false,
            "scopes": ["me", "items"],
            "created_at": created_at(&body, user.created_at),
        })
    );
}

#[tokio::test]
async fn the_current_user_lists_every_scope_it_holds() {
    let app = spawn_app().await;
    app.create_user_holding("boss", PASSWORD, "admin me items")
        .await;
    let token = app
        .login_with(Login::new("boss", PASSWORD).scope("me"))
        .await
        .access_token;

    let body = app.get_me(&token).await.body;

    assert_eq!(body["scopes"], json!(["me", "items", "admin"]));
}

// --- Probes ---------------------------------------------------------------------------------

#[tokio::test]
async fn the_health_probe_answers_ok_without_credentials() {
    let app = spawn_app().await;

    let answer = send(app.request(Method::GET, "/health")).await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!({ "status": "ok" }));
}

#[tokio::test]
async fn the_readiness_probe_answers_ok_when_the_database_answers() {
    let app = spawn_app().await;

    let answer = send(app.request(Method::GET, "/ready")).await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!({ "status": "ok" }));
}
