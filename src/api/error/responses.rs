//! Each operation's declared error responses: what an [`ApiError`] becomes at that operation.

use poem_openapi::{ApiResponse, payload::Json};

use super::{ApiError, ErrorBody, ErrorDetail, OAuthErrorCode, TokenErrorBody, ValidationIssue};
use crate::db::StoreError;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: u32 = 1;

fn body(detail: &str) -> Json<ErrorBody> {
    Json(ErrorBody::new(detail))
}

/// The errors of an operation that needs a bearer token.
#[derive(Debug, ApiResponse)]
pub enum ProtectedError {
    /// `Inactive user`: the token's user is disabled. Or `Incorrect password`: the password
    /// confirming a change to your account is wrong (counted as a failed login).
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
            ApiError::IncorrectPassword => Self::InactiveUser(body("Incorrect password")),
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
            | ApiError::InvalidCredentials
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
            ApiError::InvalidCredentials => Self::Unauthorized(
                token_body(
                    OAuthErrorCode::InvalidGrant,
                    "Incorrect username or password",
                ),
                "Bearer".into(),
            ),
            ApiError::Grant { code, description } => {
                Self::BadRequest(token_body(code, &description))
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
            | ApiError::IncorrectPassword
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

#[cfg(test)]
mod tests {
    use poem::{IntoResponse as _, Response, http::StatusCode};

    use super::*;
    use crate::domain::ScopeSet;

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

/// The errors of an operation that needs no credentials and takes a JSON body.
#[derive(Debug, ApiResponse)]
pub enum PublicError {
    /// `Request body too large`: over the configured limit.
    #[oai(status = 413)]
    BodyTooLarge(Json<ErrorBody>),
    /// The body is malformed or a field is refused (the password policy among them):
    /// `detail` lists every problem.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
    /// `Internal server error`.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// `Service unavailable` (the database does not answer) or `Service busy, retry later`
    /// (every password-hashing worker is busy).
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

impl From<ApiError> for PublicError {
    fn from(err: ApiError) -> Self {
        match ProtectedError::from(err) {
            ProtectedError::BodyTooLarge(body) => Self::BodyTooLarge(body),
            ProtectedError::Invalid(body) => Self::Invalid(body),
            ProtectedError::Unavailable(body, retry_after) => Self::Unavailable(body, retry_after),
            // Credentials are not checked here: nothing else can arise.
            ProtectedError::InactiveUser(_)
            | ProtectedError::Unauthorized(..)
            | ProtectedError::Internal(_) => Self::Internal(body("Internal server error")),
        }
    }
}
