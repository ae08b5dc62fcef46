//! The one place where failures become HTTP responses.
//!
//! Handlers return [`ApiError`]: client errors carry the contract's JSON body; internal errors
//! are logged here with their cause chain and leave as an opaque 500 (or 503 when the database
//! is unreachable). Each operation declares the error responses it can give through
//! [`ProtectedError`] or [`TokenError`], whose schemas therefore appear in the OpenAPI document.
//! Errors raised before a handler runs (missing credentials, unparsable bodies and parameters,
//! unknown routes) are turned into the same shapes by [`map_framework_errors`].

use poem::{Endpoint, IntoResponse, Request, Response, http::StatusCode};
use poem_openapi::{ApiResponse, Enum, Object, payload::Json};

use crate::{db::StoreError, domain::ScopeSet};

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: u32 = 1;

/// An error: what went wrong.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Error")]
pub struct ErrorBody {
    // No doc comment: poem-openapi would wrap the `$ref` in an `allOf`, which
    // openapi-python-client refuses; `ErrorDetail` describes itself.
    pub detail: ErrorDetail,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            detail: ErrorDetail::Message(message.into()),
        }
    }
}

/// The `detail` of every error: a message for people, or (422) every problem found in the
/// request. One schema for both lets each operation declare a single error schema, which
/// generated clients such as progenitor need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorDetail {
    Message(String),
    Issues(Vec<ValidationIssue>),
}

impl poem_openapi::types::Type for ErrorDetail {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        "ErrorDetail".into()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        poem_openapi::registry::MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |registry| {
            String::register(registry);
            Vec::<ValidationIssue>::register(registry);
            poem_openapi::registry::MetaSchema {
                description: Some(
                    "What went wrong: a message for people, or (422) every problem found in the request.",
                ),
                one_of: vec![String::schema_ref(), Vec::<ValidationIssue>::schema_ref()],
                ..poem_openapi::registry::MetaSchema::ANY
            }
        });
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl poem_openapi::types::ToJSON for ErrorDetail {
    fn to_json(&self) -> Option<serde_json::Value> {
        match self {
            Self::Message(message) => message.to_json(),
            Self::Issues(issues) => issues.to_json(),
        }
    }
}

impl poem_openapi::types::ParseFromJSON for ErrorDetail {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value {
            Some(serde_json::Value::String(message)) => Ok(Self::Message(message)),
            other => Vec::<ValidationIssue>::parse_from_json(other)
                .map(Self::Issues)
                .map_err(poem_openapi::types::ParseError::propagate),
        }
    }
}

/// One problem found in a request.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct ValidationIssue {
    /// Where: `["body", "<field>"]`, `["path", "<name>"]`, or `["body"]` for the whole body.
    pub loc: Vec<String>,
    /// What is wrong.
    pub msg: String,
    /// The kind of problem, e.g. `missing`, `string_too_long`, `value_error`.
    #[oai(rename = "type")]
    pub kind: String,
}

impl ValidationIssue {
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            loc: loc.iter().map(|part| (*part).to_owned()).collect(),
            msg: msg.into(),
            kind: kind.into(),
        }
    }

    pub fn missing(loc: &[&str]) -> Self {
        Self::new(loc, "Field required", "missing")
    }

    /// What a 422 says: at most [`MAX_ISSUES`] issues, each `loc` part and `msg` at most
    /// [`MAX_ECHO_CHARS`] characters, so that a body the client made large (a field named 60 KB
    /// long, thousands of faults) is not echoed back larger still.
    fn bounded(mut issues: Vec<Self>) -> Vec<Self> {
        issues.truncate(MAX_ISSUES);
        for issue in &mut issues {
            issue.loc.iter_mut().for_each(clip);
            clip(&mut issue.msg);
        }
        issues
    }

    fn summary(issues: &[Self]) -> String {
        let parts: Vec<String> = issues
            .iter()
            .map(|issue| {
                format!(
                    "{}: {}",
                    issue.loc.last().map_or("body", String::as_str),
                    issue.msg
                )
            })
            .collect();
        parts.join("; ")
    }
}

/// The most issues a 422 lists.
pub const MAX_ISSUES: usize = 20;
/// The most characters of a `loc` part or `msg` a 422 echoes.
pub const MAX_ECHO_CHARS: usize = 128;

fn clip(text: &mut String) {
    if let Some((end, _)) = text.char_indices().nth(MAX_ECHO_CHARS) {
        text.truncate(end);
        text.push('…');
    }
}

/// OAuth 2.0 error codes (RFC 6749 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidGrant,
    InvalidScope,
    UnsupportedGrantType,
    ServerError,
    TemporarilyUnavailable,
}

/// An error from the token endpoint: `detail` plus RFC 6749 §5.2's `error` and
/// `error_description`.
#[derive(Debug, Clone, Object)]
pub struct TokenErrorBody {
    // No doc comments on `detail` and `error`: poem-openapi would wrap their `$ref`s in an
    // `allOf`, which openapi-python-client refuses; the schemas describe themselves.
    pub detail: ErrorDetail,
    pub error: OAuthErrorCode,
    /// What went wrong, in words for people.
    pub error_description: String,
}

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credentials, or not Bearer ones.
    #[error("not authenticated")]
    NotAuthenticated,
    /// A token that is not valid, or whose user is gone.
    #[error("could not validate credentials")]
    InvalidToken,
    /// A valid token without every scope the operation needs.
    #[error("not enough permissions")]
    InsufficientScope { needed: ScopeSet },
    /// The token's user is disabled.
    #[error("inactive user")]
    InactiveUser,
    /// A failed OAuth 2.0 grant at `/token`.
    #[error("token request refused: {description}")]
    Grant {
        code: OAuthErrorCode,
        description: String,
    },
    #[error("invalid request")]
    Validation(Vec<ValidationIssue>),
    #[error("request body too large")]
    BodyTooLarge,
    /// Every password-hashing worker is busy and the queue is full.
    #[error("service busy")]
    Busy,
    /// Too many failed logins from this client; retry after this many seconds.
    #[error("login throttled")]
    Throttled { retry_after: u32 },
    /// Too many successful logins to one account this minute; retry after this many seconds.
    #[error("too many requests")]
    TooManyRequests { retry_after: u32 },
    /// No public URL is configured and the request's `Host` cannot be the base of a URL.
    #[error("missing or invalid Host header")]
    InvalidHost,
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn invalid_credentials() -> Self {
        Self::Grant {
            code: OAuthErrorCode::InvalidGrant,
            description: "Incorrect username or password".into(),
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// Logs what the client will not see.
    fn log(&self) {
        match self {
            Self::Internal(err) => tracing::error!(error = format!("{err:#}"), "internal error"),
            Self::Unavailable(err) => {
                tracing::error!(error = format!("{err:#}"), "database unavailable")
            }
            Self::Busy => tracing::warn!("password hashing queue full; answered 503"),
            _ => {}
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => Self::Unavailable(err.into()),
            StoreError::UsernameTaken | StoreError::Query(_) => Self::Internal(err.into()),
        }
    }
}

impl From<crate::auth::VerifyError> for ApiError {
    fn from(err: crate::auth::VerifyError) -> Self {
        match err {
            crate::auth::VerifyError::Invalid(_) => Self::InvalidToken,
            crate::auth::VerifyError::Store(err) => err.into(),
        }
    }
}

impl From<crate::auth::IssueError> for ApiError {
    fn from(err: crate::auth::IssueError) -> Self {
        match err {
            crate::auth::IssueError::Key(crate::auth::keys::KeyError::Store(err)) => err.into(),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<crate::auth::HashError> for ApiError {
    fn from(err: crate::auth::HashError) -> Self {
        match err {
            crate::auth::HashError::Busy => Self::Busy,
            crate::auth::HashError::Failed(_) => Self::Internal(err.into()),
        }
    }
}

fn body(detail: &str) -> Json<ErrorBody> {
    Json(ErrorBody::new(detail))
}

/// The errors of an operation that needs a bearer token.
#[derive(Debug, ApiResponse)]
pub enum ProtectedError {
    /// The token's user is disabled: `Inactive user`.
    #[oai(status = 400)]
    InactiveUser(Json<ErrorBody>),
    /// `Not authenticated` (no Bearer credentials), `Could not validate credentials` (a bad,
    /// expired or foreign token, or a deleted user) or `Not enough permissions` (a missing scope,
    /// named in the header).
    #[oai(status = 401)]
    Unauthorized(
        Json<ErrorBody>,
        /// `Bearer`, with `scope="…"` naming the needed scopes when one is missing.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// `Request body too large`: over the configured limit.
    #[oai(status = 413)]
    BodyTooLarge(Json<ErrorBody>),
    /// A parameter or the body is malformed: `detail` lists every problem.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
    /// `Internal server error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `Service unavailable`: the database does not answer.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

impl From<StoreError> for ProtectedError {
    fn from(err: StoreError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<ApiError> for ProtectedError {
    fn from(err: ApiError) -> Self {
        err.log();
        match err {
            ApiError::NotAuthenticated => {
                Self::Unauthorized(body("Not authenticated"), "Bearer".into())
            }
            ApiError::InvalidToken => {
                Self::Unauthorized(body("Could not validate credentials"), "Bearer".into())
            }
            ApiError::InsufficientScope { needed } => Self::Unauthorized(
                body("Not enough permissions"),
                format!("Bearer scope=\"{needed}\""),
            ),
            ApiError::InactiveUser => Self::InactiveUser(body("Inactive user")),
            ApiError::Validation(issues) => Self::Invalid(Json(ErrorBody {
                detail: ErrorDetail::Issues(ValidationIssue::bounded(issues)),
            })),
            ApiError::BodyTooLarge => Self::BodyTooLarge(body("Request body too large")),
            ApiError::Busy => {
                Self::Unavailable(body("Service busy, retry later"), RETRY_AFTER_SECONDS)
            }
            ApiError::Unavailable(_) => {
                Self::Unavailable(body("Service unavailable"), RETRY_AFTER_SECONDS)
            }
            // Grant errors and throttling cannot arise outside `/token`, nor a bad Host outside
            // the server metadata; were they to, they stay opaque.
            ApiError::Grant { .. }
            | ApiError::Throttled { .. }
            | ApiError::TooManyRequests { .. }
            | ApiError::InvalidHost
            | ApiError::Internal(_) => Self::Internal(body("Internal server error")),
        }
    }
}

/// The errors of `POST /token`.
#[derive(Debug, ApiResponse)]
pub enum TokenError {
    /// `invalid_grant` (`Inactive user`; `Invalid refresh token`: unknown, expired, revoked or
    /// reused), `invalid_scope` (an unknown scope, or one the user or session does not hold,
    /// named) or `unsupported_grant_type`.
    #[oai(status = 400)]
    BadRequest(Json<TokenErrorBody>),
    /// `invalid_grant`: `Incorrect username or password`, for an unknown user and a wrong
    /// password alike.
    #[oai(status = 401)]
    Unauthorized(
        Json<TokenErrorBody>,
        /// `Bearer`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// `invalid_request`: `Request body too large`.
    #[oai(status = 413)]
    BodyTooLarge(Json<TokenErrorBody>),
    /// `invalid_request`: `username` or `password` (password grant) or `refresh_token` (refresh
    /// grant) missing, or a body that does not parse; `detail` lists every problem.
    #[oai(status = 422)]
    Invalid(Json<TokenErrorBody>),
    /// `invalid_request`: `Too many login attempts, retry later` — repeated failed logins from
    /// this client (for this account, or for any; for IPv6, from its /64 or its /48); a correct
    /// password is refused too until `Retry-After` has passed. Or `Too many requests, retry
    /// later`: the account has had its share of successful logins this minute.
    #[oai(status = 429)]
    TooManyAttempts(
        Json<TokenErrorBody>,
        /// Seconds to wait before the next attempt.
        #[oai(header = "Retry-After")]
        u32,
    ),
    /// `server_error`: `Internal server error`.
    #[oai(status = 500)]
    Internal(Json<TokenErrorBody>),
    /// `temporarily_unavailable`: `Service unavailable` (database unreachable) or `Service busy,
    /// retry later` (too many logins at once).
    #[oai(status = 503)]
    Unavailable(
        Json<TokenErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

fn token_body(code: OAuthErrorCode, description: &str) -> Json<TokenErrorBody> {
    Json(TokenErrorBody {
        detail: ErrorDetail::Message(description.to_owned()),
        error: code,
        error_description: description.to_owned(),
    })
}

impl From<ApiError> for TokenError {
    fn from(err: ApiError) -> Self {
        err.log();
        match err {
            ApiError::Grant { code, description } => {
                let body = token_body(code, &description);
                if description == "Incorrect username or password" {
                    Self::Unauthorized(body, "Bearer".into())
                } else {
                    Self::BadRequest(body)
                }
            }
            ApiError::Validation(issues) => {
                let issues = ValidationIssue::bounded(issues);
                Self::Invalid(Json(TokenErrorBody {
                    error_description: ValidationIssue::summary(&issues),
                    detail: ErrorDetail::Issues(issues),
                    error: OAuthErrorCode::InvalidRequest,
                }))
            }
            ApiError::BodyTooLarge => Self::BodyTooLarge(token_body(
                OAuthErrorCode::InvalidRequest,
                "Request body too large",
            )),
            ApiError::Throttled { retry_after } => Self::TooManyAttempts(
                token_body(
                    OAuthErrorCode::InvalidRequest,
                    "Too many login attempts, retry later",
                ),
                retry_after,
            ),
            ApiError::TooManyRequests { retry_after } => Self::TooManyAttempts(
                token_body(
                    OAuthErrorCode::InvalidRequest,
                    "Too many requests, retry later",
                ),
                retry_after,
            ),
            ApiError::Busy => Self::Unavailable(
                token_body(
                    OAuthErrorCode::TemporarilyUnavailable,
                    "Service busy, retry later",
                ),
                RETRY_AFTER_SECONDS,
            ),
            ApiError::Unavailable(_) => Self::Unavailable(
                token_body(
                    OAuthErrorCode::TemporarilyUnavailable,
                    "Service unavailable",
                ),
                RETRY_AFTER_SECONDS,
            ),
            ApiError::NotAuthenticated
            | ApiError::InvalidToken
            | ApiError::InsufficientScope { .. }
            | ApiError::InactiveUser
            | ApiError::InvalidHost
            | ApiError::Internal(_) => Self::Internal(token_body(
                OAuthErrorCode::ServerError,
                "Internal server error",
            )),
        }
    }
}

/// The errors of `POST /token/revoke` (RFC 7009 §2.2.1: RFC 6749 §5.2's members).
#[derive(Debug, ApiResponse)]
pub enum RevocationError {
    /// `invalid_request`: `Request body too large`.
    #[oai(status = 413)]
    BodyTooLarge(Json<TokenErrorBody>),
    /// `invalid_request`: `token` missing, or a body that does not parse; `detail` lists every
    /// problem.
    #[oai(status = 422)]
    Invalid(Json<TokenErrorBody>),
    /// `server_error`: `Internal server error`.
    #[oai(status = 500)]
    Internal(Json<TokenErrorBody>),
    /// `temporarily_unavailable`: `Service unavailable` (database unreachable).
    #[oai(status = 503)]
    Unavailable(
        Json<TokenErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

impl From<ApiError> for RevocationError {
    fn from(err: ApiError) -> Self {
        // The same bodies as at `/token`; only these statuses can arise here.
        match TokenError::from(err) {
            TokenError::BodyTooLarge(body) => Self::BodyTooLarge(body),
            TokenError::Invalid(body) => Self::Invalid(body),
            TokenError::Unavailable(body, retry_after) => Self::Unavailable(body, retry_after),
            TokenError::BadRequest(_)
            | TokenError::Unauthorized(..)
            | TokenError::TooManyAttempts(..)
            | TokenError::Internal(_) => Self::Internal(token_body(
                OAuthErrorCode::ServerError,
                "Internal server error",
            )),
        }
    }
}

/// The errors of `GET /.well-known/jwks.json`.
#[derive(Debug, ApiResponse)]
pub enum KeySetError {
    /// `Internal server error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `Service unavailable`: the database does not answer.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

impl From<ApiError> for KeySetError {
    fn from(err: ApiError) -> Self {
        err.log();
        match err {
            ApiError::Unavailable(_) => {
                Self::Unavailable(body("Service unavailable"), RETRY_AFTER_SECONDS)
            }
            _ => Self::Internal(body("Internal server error")),
        }
    }
}

/// The errors of `GET /.well-known/oauth-authorization-server`.
#[derive(Debug, ApiResponse)]
pub enum MetadataError {
    /// `Invalid Host header`: no public URL is configured and the request's `Host` is missing
    /// or not a host name or address with an optional port.
    #[oai(status = 400)]
    InvalidHost(Json<ErrorBody>),
    /// `Internal server error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

impl From<ApiError> for MetadataError {
    fn from(err: ApiError) -> Self {
        err.log();
        match err {
            ApiError::InvalidHost => Self::InvalidHost(body("Invalid Host header")),
            _ => Self::Internal(body("Internal server error")),
        }
    }
}

/// Turns errors raised outside handlers into the contract's shapes: missing credentials,
/// unparsable parameters and bodies, unknown routes and methods. Every other error already
/// carries its response.
pub async fn map_framework_errors<E: Endpoint>(
    next: E,
    req: Request,
    allowed: std::sync::Arc<AllowedMethods>,
) -> poem::Result<Response> {
    use poem_openapi::error::{
        AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    };

    let path = req.uri().path().to_owned();
    let err = match next.call(req).await {
        Ok(resp) => return Ok(resp.into_response()),
        Err(err) => err,
    };
    let api_error = if err.is::<AuthorizationError>() {
        ApiError::NotAuthenticated
    } else if let Some(param) = err.downcast_ref::<ParseParamError>() {
        ApiError::Validation(vec![ValidationIssue::new(
            &["query", param.name],
            param.reason.clone(),
            "value_error",
        )])
    } else if let Some(param) = err.downcast_ref::<ParsePathError>() {
        ApiError::Validation(vec![ValidationIssue::new(
            &["path", param.name],
            param.reason.clone(),
            "value_error",
        )])
    } else if let Some(payload) = err.downcast_ref::<ParseRequestPayloadError>() {
        ApiError::Validation(vec![ValidationIssue::new(
            &["body"],
            payload.reason.clone(),
            "value_error",
        )])
    } else if let Some(content_type) = err.downcast_ref::<ContentTypeError>() {
        ApiError::Validation(vec![ValidationIssue::new(
            &["body"],
            format!("{content_type}; send application/json"),
            "content_type",
        )])
    } else if err.is::<poem::error::NotFoundError>() {
        return Ok(plain_error(StatusCode::NOT_FOUND, "Not Found"));
    } else if err.is::<poem::error::MethodNotAllowedError>() {
        let mut response = plain_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        if let Some(methods) = allowed.for_path(&path).and_then(|m| m.parse().ok()) {
            response
                .headers_mut()
                .insert(poem::http::header::ALLOW, methods);
        }
        return Ok(response);
    } else if err.is_from_response() {
        // A handler's own declared error response: already in the contract's shape.
        return Ok(err.into_response());
    } else if err.status().is_server_error() {
        ApiError::Internal(anyhow::anyhow!("unhandled framework error: {err}"))
    } else {
        // Any other client error poem raises (e.g. a body that cannot be read): its status,
        // with the usual JSON body.
        let status = err.status();
        return Ok(plain_error(
            status,
            status.canonical_reason().unwrap_or("Bad Request"),
        ));
    };
    Ok(ProtectedError::from(api_error).into_response())
}

/// The methods each path answers, for the `Allow` header of a 405 (RFC 9110 §15.5.6).
#[derive(Debug, Default)]
pub struct AllowedMethods(Vec<(Vec<String>, String)>);

impl AllowedMethods {
    /// From the OpenAPI document's paths (`/users/me/items/{id}` matches any one segment).
    pub fn from_document(document: &serde_json::Value) -> Self {
        let mut routes = Vec::new();
        if let Some(paths) = document["paths"].as_object() {
            for (path, operations) in paths {
                let methods: Vec<String> = operations
                    .as_object()
                    .into_iter()
                    .flat_map(|ops| ops.keys())
                    .map(|method| method.to_ascii_uppercase())
                    .collect();
                routes.push((segments(path), methods.join(", ")));
            }
        }
        Self(routes)
    }

    /// Adds a path outside the document.
    pub fn with(mut self, path: &str, methods: &str) -> Self {
        self.0.push((segments(path), methods.to_owned()));
        self
    }

    pub fn for_path(&self, path: &str) -> Option<&str> {
        let wanted = segments(path);
        self.0
            .iter()
            .find(|(template, _)| {
                template.len() == wanted.len()
                    && template.iter().zip(&wanted).all(|(t, w)| {
                        (t.starts_with('{') && t.ends_with('}') && !w.is_empty()) || t == w
                    })
            })
            .map(|(_, methods)| methods.as_str())
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_end_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

/// A `{"detail": …}` response for statuses no operation declares (404, 405).
pub fn plain_error(status: StatusCode, detail: &str) -> Response {
    let json = serde_json::json!({ "detail": detail }).to_string();
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json)
}

/// As [`plain_error`], with RFC 6749 §5.2's `error` (`invalid_request`) and
/// `error_description`, as every error of the token endpoints carries (`TokenErrorBody`).
pub fn plain_token_error(status: StatusCode, detail: &str) -> Response {
    let json = serde_json::json!({
        "detail": detail,
        "error": "invalid_request",
        "error_description": detail,
    })
    .to_string();
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json)
}

/// Whether `path` is one of the token endpoints, whose errors carry the OAuth members.
pub fn is_token_endpoint(path: &str) -> bool {
    matches!(path, "/token" | "/token/revoke")
}

/// `408 {"detail": "Request timeout"}`: the body did not arrive within the body-read timeout.
/// Answered by the accept loop (`server`), which then closes the connection.
pub const REQUEST_TIMEOUT: &str = "Request timeout";
/// `431 {"detail": "Request header fields too large"}`: the request head is over the cap.
pub const HEADER_FIELDS_TOO_LARGE: &str = "Request header fields too large";

#[cfg(test)]
mod tests {
    use poem::IntoResponse as _;

    use super::*;

    async fn parts(response: Response) -> (StatusCode, Option<String>, String) {
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().into_string().await.unwrap();
        (status, retry_after, body)
    }

    #[tokio::test]
    async fn an_unreachable_database_is_a_503_with_retry_after() {
        let err = ApiError::Unavailable(anyhow::anyhow!("connection refused"));
        let (status, retry_after, body) = parts(ProtectedError::from(err).into_response()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body, r#"{"detail":"Service unavailable"}"#);
    }

    #[tokio::test]
    async fn a_full_hashing_queue_at_the_token_endpoint_is_a_503_with_retry_after() {
        let (status, retry_after, body) =
            parts(TokenError::from(ApiError::Busy).into_response()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(
            body,
            r#"{"detail":"Service busy, retry later","error":"temporarily_unavailable","error_description":"Service busy, retry later"}"#
        );
    }

    #[tokio::test]
    async fn internal_errors_reveal_nothing() {
        let err = ApiError::internal(anyhow::anyhow!("table users has no column secret_sauce"));
        let (status, _, body) = parts(ProtectedError::from(err).into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, r#"{"detail":"Internal server error"}"#);

        let err = ApiError::internal(anyhow::anyhow!("disk full at /var/lib"));
        let (status, _, body) = parts(TokenError::from(err).into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            r#"{"detail":"Internal server error","error":"server_error","error_description":"Internal server error"}"#
        );
    }

    #[test]
    fn allowed_methods_are_found_for_templated_paths() {
        let document = serde_json::json!({"paths": {
            "/users/me/items": {"get": {}, "post": {}},
            "/users/me/items/{id}": {"delete": {}},
        }});
        let allowed = AllowedMethods::from_document(&document).with("/docs", "GET");
        assert_eq!(allowed.for_path("/users/me/items"), Some("GET, POST"));
        assert_eq!(allowed.for_path("/users/me/items/abc"), Some("DELETE"));
        assert_eq!(allowed.for_path("/docs/"), Some("GET"));
        assert_eq!(allowed.for_path("/users/me/items/abc/x"), None);
    }

    #[tokio::test]
    async fn a_missing_scope_is_named_in_the_challenge() {
        let needed = ScopeSet::parse("me items").unwrap();
        let response = ProtectedError::from(ApiError::InsufficientScope { needed }).into_response();
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer scope="me items""#
        );
        let (status, _, body) = parts(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, r#"{"detail":"Not enough permissions"}"#);
    }
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn a_422_lists_at_most_twenty_issues_and_clips_what_it_echoes() {
        let long = "é".repeat(1000);
        let issues: Vec<ValidationIssue> = (0..50)
            .map(|_| ValidationIssue::new(&["body", &long], long.clone(), "value_error"))
            .collect();
        let bounded = ValidationIssue::bounded(issues);
        assert_eq!(bounded.len(), MAX_ISSUES);
        let clipped = format!("{}…", "é".repeat(MAX_ECHO_CHARS));
        assert_eq!(bounded[0].loc, ["body".to_owned(), clipped.clone()]);
        assert_eq!(bounded[0].msg, clipped);
        let short = ValidationIssue::missing(&["body", "title"]);
        assert_eq!(ValidationIssue::bounded(vec![short.clone()]), vec![short]);
    }
}
