//! The one place where failures become HTTP responses.
//!
//! Handlers return [`ApiError`]; the service layer's typed errors (`GrantError`,
//! `AccessError`, `StoreError`, …) become an `ApiError` here, each in one `From`. Client errors
//! carry the contract's JSON body; internal errors are logged here with their cause chain and
//! leave as an opaque 500 (or 503 when the database is unreachable).
//!
//! - [`body`]: the JSON bodies (`Error`, `TokenErrorBody`, a 422's issues);
//! - [`responses`]: each operation's declared error responses (`ProtectedError`, `TokenError`, …),
//!   whose schemas therefore appear in the OpenAPI document;
//! - [`fallback`]: errors raised before a handler runs (missing credentials, unparsable bodies
//!   and parameters, unknown routes), turned into the same shapes.

mod body;
mod fallback;
mod responses;

pub use body::{ErrorBody, ErrorDetail, OAuthErrorCode, TokenErrorBody, ValidationIssue};
pub use fallback::{
    AllowedMethods, HEADER_FIELDS_TOO_LARGE, REQUEST_TIMEOUT, is_token_endpoint,
    map_framework_errors, plain_error, plain_token_error,
};
pub use responses::{
    KeySetError, MetadataError, ProtectedError, PublicError, RevocationError, TokenError,
};

use crate::{
    accounts::AccountError,
    auth::{AccessError, GrantError},
    db::StoreError,
    domain::ScopeSet,
};

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
    /// The password grant's `Incorrect username or password` (401, unlike other grant errors).
    #[error("incorrect username or password")]
    InvalidCredentials,
    /// The caller's own password, confirming a change to their account, is wrong (400).
    #[error("incorrect password")]
    IncorrectPassword,
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
    fn invalid_grant(description: &str) -> Self {
        Self::Grant {
            code: OAuthErrorCode::InvalidGrant,
            description: description.into(),
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// Logs what the client will not see.
    pub(super) fn log(&self) {
        match self {
            Self::Internal(err) => tracing::error!(error = format!("{err:#}"), "internal error"),
            // The store logs an outage once per burst (db/health.rs), not once per request.
            Self::Unavailable(err) => {
                tracing::debug!(error = format!("{err:#}"), "database unavailable")
            }
            // The hashing pool logs a full queue once per burst (auth/password.rs).
            Self::Busy => tracing::debug!("password hashing queue full; answered 503"),
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

impl From<AccessError> for ApiError {
    fn from(err: AccessError) -> Self {
        match err {
            AccessError::InvalidToken => Self::InvalidToken,
            AccessError::InsufficientScope { needed } => Self::InsufficientScope { needed },
            AccessError::InactiveUser => Self::InactiveUser,
            AccessError::Store(err) => err.into(),
        }
    }
}

impl From<GrantError> for ApiError {
    fn from(err: GrantError) -> Self {
        match err {
            GrantError::InvalidCredentials => Self::InvalidCredentials,
            GrantError::InactiveUser => Self::invalid_grant("Inactive user"),
            GrantError::InvalidRefreshToken => Self::invalid_grant("Invalid refresh token"),
            GrantError::ScopeNotGranted { holder, scope } => Self::Grant {
                code: OAuthErrorCode::InvalidScope,
                description: format!("Scope not granted to this {holder}: {scope}"),
            },
            GrantError::Throttled { retry_after } => Self::Throttled { retry_after },
            GrantError::TooManyLogins { retry_after } => Self::TooManyRequests { retry_after },
            GrantError::Hash(err) => err.into(),
            GrantError::Issue(err) => err.into(),
            GrantError::Store(err) => err.into(),
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

impl ApiError {
    /// An account rule's refusal, the password being set sent as `password_field`. The
    /// refusals an operation answers with a status of its own (409, 404, 403, 429) are matched
    /// by that operation first; reaching here, they stay opaque.
    pub fn from_account(err: AccountError, password_field: &str) -> Self {
        let invalid = |field: &str, invalid: crate::domain::Invalid| {
            Self::Validation(vec![ValidationIssue::new(
                &["body", field],
                invalid.message,
                invalid.kind,
            )])
        };
        match err {
            AccountError::InvalidUsername(err) | AccountError::UnparsableUsername(_, err) => {
                invalid("username", err)
            }
            AccountError::InvalidEmail(err) => invalid("email", err),
            AccountError::InvalidKeyName(err) => invalid("name", err),
            AccountError::InvalidKeyExpiry(err) => invalid("expires_in_days", err),
            AccountError::InvalidKeyScopes(err) => invalid("scopes", err),
            AccountError::ScopeNotHeld(scope) => Self::Validation(vec![ValidationIssue::new(
                &["body", "scopes"],
                format!("Cannot grant a scope you do not hold: {scope}"),
                "scope_not_held",
            )]),
            AccountError::InvalidFullName(err) => invalid("full_name", err),
            AccountError::WeakPassword(err) => invalid(password_field, err),
            AccountError::EmptyPassword => {
                Self::Validation(vec![ValidationIssue::missing(&["body", password_field])])
            }
            AccountError::IncorrectPassword => Self::IncorrectPassword,
            AccountError::Throttled { retry_after } => Self::Throttled { retry_after },
            AccountError::TooManySignups { retry_after } => Self::TooManyRequests { retry_after },
            AccountError::Store(err) => err.into(),
            AccountError::Hash(err) => err.into(),
            // The admin API answers a missing account 404 itself; reaching here it is the
            // caller's own account, gone since their token was checked (deleted meanwhile).
            AccountError::NotFound | AccountError::CredentialsChanged => Self::InvalidToken,
            other @ (AccountError::SignupDisabled
            | AccountError::UsernameTaken(_)
            | AccountError::NoSuchUser(_)
            | AccountError::LastAdmin
            | AccountError::TooManyApiKeys { .. }
            | AccountError::ApiKeyNotFound) => Self::Internal(other.into()),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        Self::from_account(err, "password")
    }
}
