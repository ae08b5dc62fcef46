//! The contract's "Protected operations" table: how every operation that needs a bearer token
//! answers a missing, foreign, malformed, forged, expired or under-scoped token, and a disabled
//! or deleted user — plus `GET /users/me` itself and the unprotected probes.

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis::{
    accounts::{CreateUser, create_user},
    domain::{ScopeSet, Username},
};
use reqwest::{Method, Response};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const USERNAME: &str = "JohnDoe";
const PASSWORD: &str = "correct horse battery staple";
/// An item id nobody owns: a valid token on `DELETE` then gets 404, proving it got through.
const UNKNOWN_ITEM: &str = "/users/me/items/00000000-0000-4000-8000-000000000000";

/// One protected operation, with a request that succeeds once authentication passes.
#[derive(Debug, Clone, Copy)]
struct Operation {
    method: &'static str,
    path: &'static str,
    /// The scope the operation needs (named in the `WWW-Authenticate` challenge).
    scope: &'static str,
    /// The status of the request when the caller is authenticated and allowed.
    success: u16,
}

impl Operation {
    fn method(&self) -> Method {
        self.method.parse().unwrap()
    }

    /// A well-formed body for operations that take one.
    fn body(&self) -> Option<Value> {
        (self.method == "POST").then(|| json!({ "title": "A title" }))
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

const OPERATIONS: [Operation; 4] = [
    Operation {
        method: "GET",
        path: "/users/me",
        scope: "me",
        success: 200,
    },
    Operation {
        method: "GET",
        path: "/users/me/items",
        scope: "items",
        success: 200,
    },
    Operation {
        method: "POST",
        path: "/users/me/items",
        scope: "items",
        success: 201,
    },
    Operation {
        method: "DELETE",
        path: UNKNOWN_ITEM,
        scope: "items",
        success: 404,
    },
];

/// Sends `operation` with `authorization` as the raw `Authorization` header (none when `None`).
async fn call(app: &TestApp, operation: Operation, authorization: Option<&str>) -> Response {
    let mut request = app
        .client
        .request(operation.method(), app.url(operation.path));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    if let Some(body) = operation.body() {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// Sends `operation` with a raw body of `content_type`.
async fn call_with_raw_body(
    app: &TestApp,
    operation: Operation,
    authorization: Option<&str>,
    content_type: &str,
    body: &'static str,
) -> Response {
    let mut request = app
        .client
        .request(operation.method(), app.url(operation.path))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.unwrap()
}

/// Checks status, whole JSON body and the `WWW-Authenticate` header (`None`: must be absent).
async fn assert_response(
    response: Response,
    status: u16,
    body: Value,
    challenge: Option<&str>,
    context: &str,
) {
    assert_eq!(response.status(), status, "status of {context}");
    assert_eq!(
        header(response.headers(), "www-authenticate"),
        challenge,
        "WWW-Authenticate of {context}"
    );
    assert_eq!(json_body(response).await, body, "body of {context}");
}

/// Every protected operation answers `authorization` with 401 `Not authenticated`.
async fn assert_not_authenticated_everywhere(app: &TestApp, authorization: Option<&str>) {
    for operation in OPERATIONS {
        let response = call(app, operation, authorization).await;
        assert_response(
            response,
            401,
            json!({ "detail": "Not authenticated" }),
            Some("Bearer"),
            &format!("{operation} with Authorization {authorization:?}"),
        )
        .await;
    }
}

/// Every protected operation answers `token` with 401 `Could not validate credentials`.
async fn assert_token_refused_everywhere(app: &TestApp, token: &str) {
    for operation in OPERATIONS {
        let response = call(app, operation, Some(&format!("Bearer {token}"))).await;
        assert_response(
            response,
            401,
            json!({ "detail": "Could not validate credentials" }),
            Some("Bearer"),
            &format!("{operation} with token {token:?}"),
        )
        .await;
    }
}

/// Every protected operation lets `authorization` through.
async fn assert_accepted_everywhere(app: &TestApp, authorization: &str) {
    for operation in OPERATIONS {
        let response = call(app, operation, Some(authorization)).await;
        assert_eq!(
            response.status(),
            operation.success,
            "{operation} with Authorization {authorization:?}: {:?}",
            response.text().await
        );
    }
}

fn username(raw: &str) -> Username {
    Username::parse(raw).unwrap()
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

/// Signs with any HMAC algorithm (the shared `sign` helper always uses HS256).
fn sign_with(algorithm: jsonwebtoken::Algorithm, header: Value, claims: Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let key = jsonwebtoken::EncodingKey::from_secret(TEST_SECRET);
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, algorithm).unwrap();
    format!("{signing_input}.{signature}")
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

/// An app with one user holding `me items`.
/// A server with one user, and a live session of theirs for forged tokens to name.
async fn app_with_user() -> (TestApp, Subject) {
    let app = spawn_app().await;
    let user = app.create_user(USERNAME, PASSWORD).await;
    let subject = app.start_session(user.id).await;
    (app, subject)
}

fn remove(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

// --- Missing or foreign credentials ---------------------------------------------------------

#[tokio::test]
async fn a_request_without_an_authorization_header_is_not_authenticated() {
    let (app, _) = app_with_user().await;

    assert_not_authenticated_everywhere(&app, None).await;
}

#[tokio::test]
async fn basic_credentials_are_not_authenticated() {
    let (app, _) = app_with_user().await;

    assert_not_authenticated_everywhere(&app, Some("Basic dXNlcjpwYXNz")).await;
}

#[tokio::test]
async fn an_unknown_scheme_is_not_authenticated() {
    let (app, _) = app_with_user().await;

    assert_not_authenticated_everywhere(&app, Some("Token abc")).await;
}

#[tokio::test]
async fn a_bearer_scheme_without_a_token_is_not_authenticated() {
    let (app, _) = app_with_user().await;

    assert_not_authenticated_everywhere(&app, Some("Bearer")).await;
}

#[tokio::test]
async fn a_bearer_scheme_followed_only_by_a_space_is_refused() {
    // HTTP strips trailing whitespace from header values, so the server sees `Bearer` alone.
    let (app, _) = app_with_user().await;

    assert_not_authenticated_everywhere(&app, Some("Bearer ")).await;
}

#[tokio::test]
async fn a_token_glued_to_the_scheme_name_is_not_authenticated() {
    let (app, _) = app_with_user().await;
    let token = app.login(USERNAME, PASSWORD).await;

    assert_not_authenticated_everywhere(&app, Some(&format!("Bearer{token}"))).await;
}

#[tokio::test]
async fn the_scheme_name_is_matched_without_regard_to_case() {
    let (app, _) = app_with_user().await;
    let token = app.login(USERNAME, PASSWORD).await;

    assert_accepted_everywhere(&app, &format!("bearer {token}")).await;
    assert_accepted_everywhere(&app, &format!("BEARER {token}")).await;
    assert_accepted_everywhere(&app, &format!("Bearer {token}")).await;
}

// --- Tokens that are not valid --------------------------------------------------------------

#[tokio::test]
async fn a_forged_token_with_valid_claims_and_the_right_secret_is_accepted() {
    // The control for every forged token below: the forging itself is right, so when they are
    // refused it is for the one thing each of them changes.
    let (app, user_id) = app_with_user().await;
    let token = sign(
        at_jwt_header(),
        valid_claims(user_id, "me items"),
        TEST_SECRET,
    );

    assert_accepted_everywhere(&app, &format!("Bearer {token}")).await;
}

#[tokio::test]
async fn a_token_with_a_critical_header_extension_is_refused() {
    // RFC 7515 §4.1.11: an extension named in `crit` that the recipient does not understand
    // (and portcullis understands none) makes the token invalid, even correctly signed.
    let (app, user_id) = app_with_user().await;
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
    let (app, _) = app_with_user().await;

    assert_token_refused_everywhere(&app, "not-a-jwt").await;
    assert_token_refused_everywhere(&app, "a.b.c").await;
}

#[tokio::test]
async fn a_truncated_token_is_refused() {
    let (app, _) = app_with_user().await;
    let token = app.login(USERNAME, PASSWORD).await;
    let truncated = &token[..token.len() - 5];

    assert_token_refused_everywhere(&app, truncated).await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused() {
    let (app, user_id) = app_with_user().await;
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
    let (app, user_id) = app_with_user().await;
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
    let (app, user_id) = app_with_user().await;
    let token = sign_with(
        jsonwebtoken::Algorithm::HS384,
        json!({ "alg": "HS384", "typ": "at+jwt" }),
        valid_claims(user_id, "me items"),
    );
    assert_verifies_with(jsonwebtoken::Algorithm::HS384, &token);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_signed_with_hs512_and_the_right_secret_is_refused() {
    let (app, user_id) = app_with_user().await;
    let token = sign_with(
        jsonwebtoken::Algorithm::HS512,
        json!({ "alg": "HS512", "typ": "at+jwt" }),
        valid_claims(user_id, "me items"),
    );
    assert_verifies_with(jsonwebtoken::Algorithm::HS512, &token);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let (app, user_id) = app_with_user().await;
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
    let (app, user_id) = app_with_user().await;
    let now = now();
    let mut claims = valid_claims(user_id, "me items");
    claims["nbf"] = json!(now + 600);
    claims["exp"] = json!(now + 1200);
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let (app, user_id) = app_with_user().await;
    let mut claims = valid_claims(user_id, "me items");
    claims["iss"] = json!("someone-else");
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let (app, user_id) = app_with_user().await;
    let mut claims = valid_claims(user_id, "me items");
    claims["aud"] = json!("another-api");
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_without_an_expiry_is_refused() {
    let (app, user_id) = app_with_user().await;
    let claims = remove(valid_claims(user_id, "me items"), "exp");
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_without_a_subject_is_refused() {
    let (app, user_id) = app_with_user().await;
    let claims = remove(valid_claims(user_id, "me items"), "sub");
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_whose_subject_is_the_username_is_refused() {
    let (app, user_id) = app_with_user().await;
    let mut claims = valid_claims(user_id, "me items");
    claims["sub"] = json!(USERNAME);
    let token = sign(at_jwt_header(), claims, TEST_SECRET);

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_jwt_that_is_not_an_access_token_is_refused() {
    let (app, user_id) = app_with_user().await;
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
    let (app, _) = app_with_user().await;
    let token = sign(
        at_jwt_header(),
        valid_claims(Uuid::new_v4(), "me items"),
        TEST_SECRET,
    );

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_of_a_deleted_user_is_refused() {
    let (app, _) = app_with_user().await;
    let token = app.login(USERNAME, PASSWORD).await;
    assert_eq!(app.get_me(&token).await.status(), 200);

    assert!(app.store.delete_user(&username(USERNAME)).await.unwrap());

    assert_token_refused_everywhere(&app, &token).await;
}

#[tokio::test]
async fn a_token_of_a_deleted_user_stays_refused_when_the_name_is_taken_again() {
    let (app, _) = app_with_user().await;
    let old_token = app.login(USERNAME, PASSWORD).await;
    app.store.delete_user(&username(USERNAME)).await.unwrap();
    app.create_user(USERNAME, PASSWORD).await;

    assert_token_refused_everywhere(&app, &old_token).await;
}

// --- Scopes ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_token_without_the_items_scope_cannot_use_the_items_operations() {
    let (app, _) = app_with_user().await;
    let token = app.login_with_scope(USERNAME, PASSWORD, Some("me")).await;
    let authorization = format!("Bearer {token}");

    for operation in OPERATIONS.into_iter().filter(|op| op.scope == "items") {
        let response = call(&app, operation, Some(&authorization)).await;
        assert_response(
            response,
            401,
            json!({ "detail": "Not enough permissions" }),
            Some("Bearer scope=\"items\""),
            &format!("{operation} with scope me"),
        )
        .await;
    }
    assert_eq!(app.get_me(&token).await.status(), 200);
}

#[tokio::test]
async fn a_token_without_the_me_scope_cannot_read_the_account() {
    let (app, _) = app_with_user().await;
    let token = app
        .login_with_scope(USERNAME, PASSWORD, Some("items"))
        .await;

    let response = app.get_me(&token).await;

    assert_response(
        response,
        401,
        json!({ "detail": "Not enough permissions" }),
        Some("Bearer scope=\"me\""),
        "GET /users/me with scope items",
    )
    .await;
    let items = app.get_with_token("/users/me/items", &token).await;
    assert_eq!(items.status(), 200);
}

#[tokio::test]
async fn a_forged_token_without_scopes_is_refused_for_lack_of_permissions() {
    let (app, user_id) = app_with_user().await;
    let token = sign(at_jwt_header(), valid_claims(user_id, ""), TEST_SECRET);
    let authorization = format!("Bearer {token}");

    for operation in OPERATIONS {
        let response = call(&app, operation, Some(&authorization)).await;
        assert_response(
            response,
            401,
            json!({ "detail": "Not enough permissions" }),
            Some(&format!("Bearer scope=\"{}\"", operation.scope)),
            &format!("{operation} with no scope"),
        )
        .await;
    }
}

// --- Disabled users -------------------------------------------------------------------------

#[tokio::test]
async fn a_user_disabled_after_logging_in_is_told_it_is_inactive_on_the_next_request() {
    let (app, _) = app_with_user().await;
    let token = app.login(USERNAME, PASSWORD).await;
    assert_eq!(app.get_me(&token).await.status(), 200);

    assert!(
        app.store
            .set_user_disabled(&username(USERNAME), true)
            .await
            .unwrap()
    );

    for operation in OPERATIONS {
        let response = call(&app, operation, Some(&format!("Bearer {token}"))).await;
        assert_response(
            response,
            400,
            json!({ "detail": "Inactive user" }),
            None,
            &format!("{operation} by a disabled user"),
        )
        .await;
    }
}

#[tokio::test]
async fn a_user_enabled_again_is_let_in_with_the_same_token() {
    let (app, _) = app_with_user().await;
    let token = app.login(USERNAME, PASSWORD).await;
    app.store
        .set_user_disabled(&username(USERNAME), true)
        .await
        .unwrap();
    assert_eq!(app.get_me(&token).await.status(), 400);

    app.store
        .set_user_disabled(&username(USERNAME), false)
        .await
        .unwrap();

    assert_accepted_everywhere(&app, &format!("Bearer {token}")).await;
}

#[tokio::test]
async fn a_disabled_user_without_the_needed_scope_is_refused_for_lack_of_permissions_first() {
    let (app, _) = app_with_user().await;
    let token = app.login_with_scope(USERNAME, PASSWORD, Some("me")).await;
    app.store
        .set_user_disabled(&username(USERNAME), true)
        .await
        .unwrap();

    let response = app.get_with_token("/users/me/items", &token).await;

    assert_response(
        response,
        401,
        json!({ "detail": "Not enough permissions" }),
        Some("Bearer scope=\"items\""),
        "GET /users/me/items by a disabled user with scope me",
    )
    .await;
}

// --- Order of the checks --------------------------------------------------------------------

const CREATE_ITEM: Operation = OPERATIONS[2];

#[tokio::test]
async fn credentials_are_checked_before_an_unparsable_body() {
    let (app, _) = app_with_user().await;

    let response =
        call_with_raw_body(&app, CREATE_ITEM, None, "application/json", "{not json").await;

    assert_response(
        response,
        401,
        json!({ "detail": "Not authenticated" }),
        Some("Bearer"),
        "POST /users/me/items without credentials and with a body that is not JSON",
    )
    .await;
}

#[tokio::test]
async fn credentials_are_checked_before_a_body_of_the_wrong_content_type() {
    let (app, _) = app_with_user().await;

    let response = call_with_raw_body(&app, CREATE_ITEM, None, "text/plain", "a title").await;

    assert_response(
        response,
        401,
        json!({ "detail": "Not authenticated" }),
        Some("Bearer"),
        "POST /users/me/items without credentials and with a text/plain body",
    )
    .await;
}

#[tokio::test]
async fn credentials_are_checked_before_a_malformed_item_id() {
    let (app, _) = app_with_user().await;

    let response = app
        .client
        .delete(app.url("/users/me/items/not-a-uuid"))
        .send()
        .await
        .unwrap();

    assert_response(
        response,
        401,
        json!({ "detail": "Not authenticated" }),
        Some("Bearer"),
        "DELETE /users/me/items/not-a-uuid without credentials",
    )
    .await;
}

#[tokio::test]
async fn an_invalid_token_is_refused_before_an_unparsable_body_is_looked_at() {
    let (app, _) = app_with_user().await;

    let response = call_with_raw_body(
        &app,
        CREATE_ITEM,
        Some("Bearer not-a-jwt"),
        "application/json",
        "{not json",
    )
    .await;

    assert_response(
        response,
        401,
        json!({ "detail": "Could not validate credentials" }),
        Some("Bearer"),
        "POST /users/me/items with a bad token and a body that is not JSON",
    )
    .await;
}

#[tokio::test]
async fn a_missing_scope_is_reported_before_an_unparsable_body() {
    let (app, _) = app_with_user().await;
    let token = app.login_with_scope(USERNAME, PASSWORD, Some("me")).await;

    let response = call_with_raw_body(
        &app,
        CREATE_ITEM,
        Some(&format!("Bearer {token}")),
        "application/json",
        "{not json",
    )
    .await;

    assert_response(
        response,
        401,
        json!({ "detail": "Not enough permissions" }),
        Some("Bearer scope=\"items\""),
        "POST /users/me/items with scope me and a body that is not JSON",
    )
    .await;
}

#[tokio::test]
async fn a_missing_scope_is_reported_before_an_invalid_title() {
    let (app, _) = app_with_user().await;
    let token = app.login_with_scope(USERNAME, PASSWORD, Some("me")).await;

    let response = app.create_item(&token, json!({ "title": "" })).await;

    assert_response(
        response,
        401,
        json!({ "detail": "Not enough permissions" }),
        Some("Bearer scope=\"items\""),
        "POST /users/me/items with scope me and an empty title",
    )
    .await;
}

#[tokio::test]
async fn an_inactive_user_is_told_so_before_an_invalid_title() {
    let (app, _) = app_with_user().await;
    let token = app.login(USERNAME, PASSWORD).await;
    app.store
        .set_user_disabled(&username(USERNAME), true)
        .await
        .unwrap();

    let response = app.create_item(&token, json!({ "title": "" })).await;

    assert_response(
        response,
        400,
        json!({ "detail": "Inactive user" }),
        None,
        "POST /users/me/items by a disabled user with an empty title",
    )
    .await;
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
    let token = app.login(USERNAME, PASSWORD).await;

    let response = app.get_me(&token).await;

    assert_eq!(response.status(), 200);
    assert_eq!(header(response.headers(), "www-authenticate"), None);
    let body = json_body(response).await;
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
    let token = app.login("johndoe", PASSWORD).await;

    let body = json_body(app.get_me(&token).await).await;

    assert_eq!(body["id"], json!(user.id.to_string()));
    assert_eq!(body["username"], json!("JohnDoe"));
}

#[tokio::test]
async fn a_user_without_email_or_full_name_has_them_as_null() {
    let app = spawn_app().await;
    let user = create_user(
        &app.store,
        &app.hasher,
        CreateUser {
            username: "plain.user".into(),
            password: SecretString::from(PASSWORD),
            email: None,
            full_name: None,
            scopes: ScopeSet::default_for_new_users(),
            disabled: false,
        },
    )
    .await
    .unwrap();
    let token = app.login("plain.user", PASSWORD).await;

    let response = app.get_me(&token).await;

    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
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
    let scopes = ScopeSet::parse("admin me items").unwrap();
    app.create_user_with("boss", PASSWORD, scopes, false).await;
    let token = app.login_with_scope("boss", PASSWORD, Some("me")).await;

    let body = json_body(app.get_me(&token).await).await;

    assert_eq!(body["scopes"], json!(["me", "items", "admin"]));
}

// --- Probes ---------------------------------------------------------------------------------

#[tokio::test]
async fn the_health_probe_answers_ok_without_credentials() {
    let app = spawn_app().await;

    let response = app.client.get(app.url("/health")).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await, json!({ "status": "ok" }));
}

#[tokio::test]
async fn the_readiness_probe_answers_ok_when_the_database_answers() {
    let app = spawn_app().await;

    let response = app.client.get(app.url("/ready")).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await, json!({ "status": "ok" }));
}
