//! What the token-lifecycle tests (`refresh.rs`, `sessions.rs`) share: logging in with the
//! refresh token kept, refreshing, revoking, logging out, the sessions operations, and the
//! exact answers the contract promises for a refused token.

use reqwest::{Response, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

use crate::helpers::*;

pub const USERNAME: &str = "johndoe";
pub const PASSWORD: &str = "correct horse battery staple";

/// A response taken apart: status, headers, and the body as JSON (`Value::Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The raw body text, for responses that must have none.
    pub text: String,
    pub body: Value,
}

impl Answer {
    pub async fn of(response: Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            let content_type = header(&headers, "content-type").unwrap_or_default();
            assert!(
                content_type.starts_with("application/json"),
                "expected JSON, got content type {content_type:?}: {text}"
            );
            serde_json::from_str(&text).expect("the body is JSON")
        };
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The tokens of a successful password or refresh grant.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

impl Tokens {
    /// The session the access token belongs to (its `sid` claim).
    pub fn session_id(&self) -> String {
        claims(&self.access_token)["sid"]
            .as_str()
            .expect("sid is a string")
            .to_owned()
    }
}

/// Checks a successful token response against the contract (status, exact members, headers)
/// and returns its tokens.
pub fn assert_tokens(answer: &Answer, scope: &str) -> Tokens {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("pragma"), Some("no-cache"));
    let access_token = answer.body["access_token"]
        .as_str()
        .expect("access_token is a string")
        .to_owned();
    let refresh_token = answer.body["refresh_token"]
        .as_str()
        .expect("refresh_token is a string")
        .to_owned();
    assert_eq!(
        refresh_token.len(),
        75,
        "session id, generation and a 256-bit MAC in unpadded base64url"
    );
    assert_eq!(
        answer.body,
        json!({
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": 1800,
            "scope": scope,
            "refresh_token": refresh_token,
        })
    );
    assert_eq!(claims(&access_token)["scope"], scope, "the scope claim");
    Tokens {
        access_token,
        refresh_token,
    }
}

/// The claims of an access token, after checking its signature with the test key.
pub fn claims(token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(TEST_SECRET),
        &validation,
    )
    .expect("the token is signed with the configured key")
    .claims
}

/// An app with a session lifetime and a reuse grace of our choosing.
pub async fn spawn_app_with_sessions(
    lifetime: chrono::Duration,
    reuse_grace: chrono::Duration,
) -> TestApp {
    let (url, dir) = fresh_database().await;
    let mut settings = test_settings(url);
    settings.sessions.lifetime = lifetime;
    settings.sessions.reuse_grace = reuse_grace;
    spawn_app_with(settings, dir).await
}

/// `POST /token` with a form body, taken apart.
pub async fn token_request(app: &TestApp, fields: &[(&str, &str)]) -> Answer {
    Answer::of(app.post_token(fields).await).await
}

/// A password login as `USERNAME` (created by the caller) with a `User-Agent`; panics unless
/// it succeeds.
pub async fn login_as(app: &TestApp, username: &str, user_agent: &str) -> Tokens {
    let body = serde_urlencoded::to_string([("username", username), ("password", PASSWORD)])
        .expect("a form encodes");
    let response = app
        .client
        .post(app.url("/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("User-Agent", user_agent)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_tokens(&Answer::of(response).await, "me items")
}

pub async fn log_in(app: &TestApp) -> Tokens {
    login_as(app, USERNAME, "portcullis-tests").await
}

/// A password login asking for `scope`; panics unless it is granted exactly.
pub async fn login_with_scope(app: &TestApp, scope: &str) -> Tokens {
    let answer = token_request(
        app,
        &[
            ("username", USERNAME),
            ("password", PASSWORD),
            ("scope", scope),
        ],
    )
    .await;
    assert_tokens(&answer, scope)
}

/// `POST /token` with `grant_type=refresh_token`, and `scope` when given.
pub async fn refresh(app: &TestApp, refresh_token: &str, scope: Option<&str>) -> Answer {
    let mut fields = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    if let Some(scope) = scope {
        fields.push(("scope", scope));
    }
    token_request(app, &fields).await
}

/// A refresh that must succeed with the login's `me items`.
pub async fn refreshed(app: &TestApp, refresh_token: &str) -> Tokens {
    assert_tokens(&refresh(app, refresh_token, None).await, "me items")
}

/// `POST /token/revoke` with a form body.
pub async fn revoke(app: &TestApp, fields: &[(&str, &str)]) -> Answer {
    let response = app
        .client
        .post(app.url("/token/revoke"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(fields).unwrap())
        .send()
        .await
        .unwrap();
    Answer::of(response).await
}

/// `POST /logout`, with `?scope=` when given.
pub async fn logout(app: &TestApp, token: &str, scope: Option<&str>) -> Answer {
    let mut request = app.client.post(app.url("/logout")).bearer_auth(token);
    if let Some(scope) = scope {
        request = request.query(&[("scope", scope)]);
    }
    Answer::of(request.send().await.unwrap()).await
}

/// `GET /users/me/sessions`, taken apart.
pub async fn sessions_answer(app: &TestApp, token: &str) -> Answer {
    Answer::of(app.get_with_token("/users/me/sessions", token).await).await
}

/// The caller's sessions; panics unless the list is served.
pub async fn list_sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let answer = sessions_answer(app, token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer
        .body
        .as_array()
        .expect("the sessions are a list")
        .clone()
}

/// The ids of the caller's sessions, in the order listed.
pub async fn listed_ids(app: &TestApp, token: &str) -> Vec<String> {
    list_sessions(app, token)
        .await
        .iter()
        .map(|session| session["id"].as_str().expect("id is a string").to_owned())
        .collect()
}

/// `DELETE /users/me/sessions/{id}`.
pub async fn end_session(app: &TestApp, token: &str, id: &str) -> Answer {
    let response = app
        .client
        .delete(app.url(&format!("/users/me/sessions/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    Answer::of(response).await
}

/// The answer to a refresh token that is unknown, spent beyond the grace, or of an ended
/// session.
pub fn assert_invalid_refresh_token(answer: &Answer, case: &str) {
    assert_eq!(answer.status, 400, "{case}: {}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "detail": "Invalid refresh token",
            "error": "invalid_grant",
            "error_description": "Invalid refresh token",
        }),
        "{case}"
    );
    assert_eq!(answer.header("www-authenticate"), None, "{case}");
}

/// The answer of a protected operation to a token it refuses.
pub fn assert_could_not_validate(answer: &Answer, case: &str) {
    assert_eq!(answer.status, 401, "{case}: {}", answer.body);
    assert_eq!(
        answer.body,
        json!({"detail": "Could not validate credentials"}),
        "{case}"
    );
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{case}");
}

/// `GET /users/me` with `token`, taken apart.
pub async fn me(app: &TestApp, token: &str) -> Answer {
    Answer::of(app.get_me(token).await).await
}

/// The access token opens `GET /users/me` of `username`.
pub async fn assert_access_works(app: &TestApp, token: &str, username: &str, case: &str) {
    let answer = me(app, token).await;
    assert_eq!(answer.status, 200, "{case}: {}", answer.body);
    assert_eq!(answer.body["username"], username, "{case}");
}

/// The access token is refused, as a protected operation refuses an invalid one.
pub async fn assert_access_refused(app: &TestApp, token: &str, case: &str) {
    assert_could_not_validate(&me(app, token).await, case);
}

/// Every token of a session is refused: its access token by protected operations, its refresh
/// token by the refresh grant.
pub async fn assert_session_ended(app: &TestApp, tokens: &Tokens, case: &str) {
    assert_access_refused(app, &tokens.access_token, case).await;
    assert_invalid_refresh_token(&refresh(app, &tokens.refresh_token, None).await, case);
}

/// A timestamp member of a listed session.
pub fn timestamp(session: &Value, member: &str) -> chrono::DateTime<chrono::Utc> {
    let text = session[member].as_str().expect("a timestamp is a string");
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("{member} {text:?} is not RFC 3339: {err}"))
        .to_utc()
}
