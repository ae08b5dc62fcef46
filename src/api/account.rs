//! The caller's own account: `/users/me`, and signing up for one.

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use secrecy::SecretString;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    ApiTags, AppState,
    error::{ApiError, ErrorBody, ProtectedError, PublicError, ValidationIssue},
    input::{JsonBody, optional_any_string, optional_string, required_string},
    security::Credentials,
    token::{caller_context, client_of},
};
use crate::{
    accounts::{AccountError, ProfileChanges, SignUp},
    db,
    domain::Scope,
};

/// A user account, as its owner sees it.
#[derive(Debug, Object)]
#[oai(rename = "User")]
pub struct UserBody {
    /// Stable identifier (the `sub` of access tokens).
    pub id: Uuid,
    /// The username, spelled as it was created.
    pub username: String,
    /// E-mail address, if any.
    pub email: Option<String>,
    /// Full name, if any.
    pub full_name: Option<String>,
    /// Whether the account is disabled: its tokens are refused and it cannot log in (so at
    /// `/users/me` always `false`).
    pub disabled: bool,
    /// Scopes the user holds.
    pub scopes: Vec<Scope>,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

impl From<db::User> for UserBody {
    fn from(user: db::User) -> Self {
        Self {
            id: user.id,
            scopes: user.scopes.iter().collect(),
            username: user.username,
            email: user.email,
            full_name: user.full_name,
            disabled: user.disabled,
            created_at: user.created_at,
        }
    }
}

/// A new account.
#[derive(Debug, Object)]
#[oai(rename = "SignupRequest")]
pub struct SignupRequestBody {
    /// 1–64 characters: letters, digits and `.`, `_`, `@`, `-`; unique without regard to case
    /// (and to lookalike characters).
    #[oai(validator(min_length = 1, max_length = 64))]
    pub username: String,
    /// At least `PORTCULLIS_PASSWORD_MIN_LENGTH` (default 8) and at most 128 characters; not a
    /// common, breached or guessable password, and not containing the username.
    #[oai(validator(min_length = 8, max_length = 128))]
    pub password: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Full name, at most 200 characters; no control characters but tab and line breaks.
    #[oai(validator(
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    ))]
    pub full_name: Option<String>,
}

/// Changes to your profile: an absent member is left as it is, `null` clears it.
#[derive(Debug, Object)]
#[oai(rename = "UserUpdate")]
pub struct UserUpdateBody {
    /// E-mail address; `null` removes it.
    pub email: Option<String>,
    /// Full name, at most 200 characters, no control characters but tab and line breaks;
    /// `null` removes it.
    #[oai(validator(
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    ))]
    pub full_name: Option<String>,
}

/// A password change.
#[derive(Debug, Object)]
#[oai(rename = "PasswordChange")]
pub struct PasswordChangeBody {
    /// Your current password.
    pub current_password: String,
    /// The new password, under the password policy.
    #[oai(validator(min_length = 8, max_length = 128))]
    pub new_password: String,
}

/// The password confirming an account's deletion.
#[derive(Debug, Object)]
#[oai(rename = "AccountDeletion")]
pub struct AccountDeletionBody {
    /// Your current password.
    pub password: String,
}

#[derive(ApiResponse)]
pub enum CurrentUserResponse {
    /// Your account.
    #[oai(status = 200)]
    Ok(Json<UserBody>),
}

#[derive(ApiResponse)]
pub enum SignupResponse {
    /// The account was created, active, with the scopes `me` and `items`. Log in next.
    #[oai(status = 201)]
    Created(Json<UserBody>),
    /// `Signup is disabled`: this deployment creates accounts only through its admins
    /// (`PORTCULLIS_SIGNUP`). Or `Origin not allowed`: sent by a browser from a page of another
    /// site.
    #[oai(status = 403)]
    Disabled(Json<ErrorBody>),
    /// `Username already taken`, in any spelling.
    #[oai(status = 409)]
    Taken(Json<ErrorBody>),
    /// `Too many requests, retry later`: this address signed up too often this hour
    /// (`PORTCULLIS_SIGNUP_PER_ADDRESS_PER_HOUR`).
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorBody>,
        /// Seconds to wait before the next signup.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

#[derive(ApiResponse)]
pub enum PasswordChangeResponse {
    /// The password was changed; every other session of yours has ended (this one stays).
    #[oai(status = 204)]
    Changed,
    /// `Too many login attempts, retry later`: too many wrong passwords (they count as failed
    /// logins).
    #[oai(status = 429)]
    TooManyAttempts(
        Json<ErrorBody>,
        /// Seconds to wait before the next attempt.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

#[derive(ApiResponse)]
pub enum AccountDeletionResponse {
    /// The account, its items and its sessions are gone; the name is free again.
    #[oai(status = 204)]
    Deleted,
    /// `Cannot remove the last admin`: you are the only active admin; make another first.
    #[oai(status = 409)]
    LastAdmin(Json<ErrorBody>),
    /// `Too many login attempts, retry later`: too many wrong passwords (they count as failed
    /// logins).
    #[oai(status = 429)]
    TooManyAttempts(
        Json<ErrorBody>,
        /// Seconds to wait before the next attempt.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

#[derive(Default)]
pub struct AccountApi;

#[OpenApi(tag = "ApiTags::Users")]
impl AccountApi {
    /// Read your account
    ///
    /// Returns the account the access token belongs to. Needs the `me` scope.
    #[oai(path = "/users/me", method = "get", operation_id = "read_current_user")]
    async fn read_current_user(
        &self,
        #[oai(scope = "Scope::Me")] auth: Credentials,
        state: poem::web::Data<&AppState>,
    ) -> Result<CurrentUserResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Me]).await?;
        Ok(CurrentUserResponse::Ok(Json(caller.user.into())))
    }

    /// Sign up
    ///
    /// Creates an account with the scopes `me` and `items`, when this deployment allows signup
    /// (`PORTCULLIS_SIGNUP`). No token is issued: log in at `POST /token` next. The password
    /// must pass the password policy.
    #[oai(path = "/users/signup", method = "post", operation_id = "sign_up")]
    async fn sign_up(
        &self,
        request: &Request,
        state: poem::web::Data<&AppState>,
        body: JsonBody<SignupRequestBody>,
    ) -> Result<SignupResponse, PublicError> {
        if !state.accounts.settings().signup_enabled {
            return Ok(SignupResponse::Disabled(error("Signup is disabled")));
        }
        let object = body.object()?;
        let mut issues = Vec::new();
        let username = required_string(&object, "username", &mut issues);
        let password = required_password(&object, "password", &mut issues);
        let email = optional_string(&object, "email", &mut issues);
        let full_name = optional_string(&object, "full_name", &mut issues);
        let (Some(username), Some(password), true) = (username, password, issues.is_empty()) else {
            return Err(ApiError::Validation(issues).into());
        };
        let client = client_of(request, state.client_ip_header.as_ref());
        let signup = SignUp {
            username,
            password,
            email,
            full_name,
        };
        match state.accounts.sign_up(&client, signup).await {
            Ok(user) => Ok(SignupResponse::Created(Json(user.into()))),
            Err(AccountError::SignupDisabled) => {
                Ok(SignupResponse::Disabled(error("Signup is disabled")))
            }
            Err(AccountError::UsernameTaken(_)) => {
                Ok(SignupResponse::Taken(error("Username already taken")))
            }
            Err(AccountError::TooManySignups { retry_after }) => {
                Ok(SignupResponse::TooManyRequests(
                    error("Too many requests, retry later"),
                    retry_after,
                ))
            }
            Err(err) => Err(ApiError::from(err).into()),
        }
    }

    /// Update your profile
    ///
    /// Changes your e-mail address or full name: an absent member is left as it is, `null`
    /// clears it; other members are ignored. Needs the `me` scope.
    #[oai(
        path = "/users/me",
        method = "patch",
        operation_id = "update_current_user"
    )]
    async fn update_current_user(
        &self,
        #[oai(scope = "Scope::Me")] auth: Credentials,
        request: &Request,
        state: poem::web::Data<&AppState>,
        body: JsonBody<UserUpdateBody>,
    ) -> Result<CurrentUserResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Me]).await?;
        let object = body.object()?;
        let mut issues = Vec::new();
        let changes = ProfileChanges {
            email: patched_string(&object, "email", &mut issues),
            full_name: patched_string(&object, "full_name", &mut issues),
        };
        if !issues.is_empty() {
            return Err(ApiError::Validation(issues).into());
        }
        let context = caller_context(request, &state, &caller);
        let user = state
            .accounts
            .update_profile(&context, caller.user.id, changes)
            .await
            .map_err(ApiError::from)?;
        Ok(CurrentUserResponse::Ok(Json(user.into())))
    }

    /// Change your password
    ///
    /// Checks your current password (a wrong one counts as a failed login), sets the new one
    /// (under the password policy) and ends every other session of yours at once, on every
    /// instance; the session of this request stays. Needs the `me` scope.
    #[oai(
        path = "/users/me/password",
        method = "post",
        operation_id = "change_password"
    )]
    async fn change_password(
        &self,
        #[oai(scope = "Scope::Me")] auth: Credentials,
        request: &Request,
        state: poem::web::Data<&AppState>,
        body: JsonBody<PasswordChangeBody>,
    ) -> Result<PasswordChangeResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Me]).await?;
        let object = body.object()?;
        let mut issues = Vec::new();
        let current = required_password(&object, "current_password", &mut issues);
        let new = required_password(&object, "new_password", &mut issues);
        let (Some(current), Some(new), true) = (current, new, issues.is_empty()) else {
            return Err(ApiError::Validation(issues).into());
        };
        let client = client_of(request, state.client_ip_header.as_ref());
        match state
            .accounts
            .change_password(&client, &caller.user, caller.session_id(), current, new)
            .await
        {
            Ok(_) => Ok(PasswordChangeResponse::Changed),
            Err(AccountError::Throttled { retry_after }) => Ok(
                PasswordChangeResponse::TooManyAttempts(throttled(), retry_after),
            ),
            Err(err) => Err(ApiError::from_account(err, "new_password").into()),
        }
    }

    /// Delete your account
    ///
    /// Checks your password (a wrong one counts as a failed login), then deletes your account,
    /// your items and your sessions; the username is free again. Needs the `me` scope.
    #[oai(
        path = "/users/me",
        method = "delete",
        operation_id = "delete_current_user"
    )]
    async fn delete_current_user(
        &self,
        #[oai(scope = "Scope::Me")] auth: Credentials,
        request: &Request,
        state: poem::web::Data<&AppState>,
        body: JsonBody<AccountDeletionBody>,
    ) -> Result<AccountDeletionResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Me]).await?;
        let object = body.object()?;
        let mut issues = Vec::new();
        let Some(password) = required_password(&object, "password", &mut issues) else {
            return Err(ApiError::Validation(issues).into());
        };
        let client = client_of(request, state.client_ip_header.as_ref());
        match state
            .accounts
            .delete_own(&client, &caller.user, caller.session_id(), password)
            .await
        {
            Ok(()) => Ok(AccountDeletionResponse::Deleted),
            Err(AccountError::LastAdmin) => Ok(AccountDeletionResponse::LastAdmin(error(
                "Cannot remove the last admin",
            ))),
            Err(AccountError::Throttled { retry_after }) => Ok(
                AccountDeletionResponse::TooManyAttempts(throttled(), retry_after),
            ),
            Err(err) => Err(ApiError::from(err).into()),
        }
    }
}

pub(super) fn error(detail: &str) -> Json<ErrorBody> {
    Json(ErrorBody::new(detail))
}

/// The login throttle's 429 body.
pub(super) fn throttled() -> Json<ErrorBody> {
    error("Too many login attempts, retry later")
}

/// A required password member: any character allowed (it is only hashed), present and a
/// string.
pub(super) fn required_password(
    object: &Map<String, Value>,
    field: &str,
    issues: &mut Vec<ValidationIssue>,
) -> Option<SecretString> {
    if matches!(object.get(field), None | Some(Value::Null)) {
        issues.push(ValidationIssue::missing(&["body", field]));
        return None;
    }
    optional_any_string(object, field, issues).map(SecretString::from)
}

/// A member of a partial update: `None` when absent, `Some(None)` when `null`, else the
/// string (which obeys `check_text`).
pub(super) fn patched_string(
    object: &Map<String, Value>,
    field: &str,
    issues: &mut Vec<ValidationIssue>,
) -> Option<Option<String>> {
    match object.get(field) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(_) => optional_string(object, field, issues).map(Some),
    }
}
