//! Managing every account: `/admin/users…`, for holders of the `admin` scope.

use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    ApiTags, AppState,
    account::{UserBody, error, patched_string, required_password},
    error::{ApiError, ErrorBody, ProtectedError, ValidationIssue},
    input::{
        Deferred, JsonBody, PageLimit, UuidPath, collect_issues, optional_string, page_request,
        required_string, scopes_member,
    },
    security::Credentials,
    sessions::SessionBody,
    token::caller_context,
};
use crate::{
    accounts::{AccountChanges, AccountError, CreateUser, PasswordCheck, ProfileChanges},
    db::{self, UserCursor, UserFilter},
    domain::{Scope, ScopeSet, check_text},
};

/// How many users a page holds when not asked.
const DEFAULT_PAGE_LIMIT: u32 = 50;
/// The longest search text, in characters.
const MAX_SEARCH_CHARS: usize = 256;

/// An account, as an admin sees it: the `User` members, and when it was changed and last used.
#[derive(Debug, Object)]
#[oai(rename = "AdminUser")]
pub struct AdminUserBody {
    #[oai(flatten)]
    pub user: UserBody,
    /// When the account was last changed (profile, status, scopes or password).
    pub updated_at: DateTime<Utc>,
    /// When the user last logged in; `null` before their first login.
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<db::User> for AdminUserBody {
    fn from(user: db::User) -> Self {
        Self {
            updated_at: user.updated_at,
            last_login_at: user.last_login_at,
            user: user.into(),
        }
    }
}

/// One page of accounts.
#[derive(Debug, Object)]
#[oai(rename = "UserList")]
pub struct UserListBody {
    /// By username, without regard to case.
    pub users: Vec<AdminUserBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A new account, created by an admin.
#[derive(Debug, Object)]
#[oai(rename = "AdminUserCreate")]
pub struct AdminUserCreateBody {
    /// 1–64 characters: letters, digits and `.`, `_`, `@`, `-`; unique without regard to case
    /// (and to lookalike characters).
    #[oai(validator(min_length = 1, max_length = 64))]
    pub username: String,
    /// Under the password policy.
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
    /// Scopes to grant; default `["me", "items"]`.
    pub scopes: Option<Vec<Scope>>,
    /// Create the account disabled; default `false`.
    pub disabled: Option<bool>,
}

/// Changes to an account: an absent member is left as it is; `null` clears the e-mail
/// address or the full name.
#[derive(Debug, Object)]
#[oai(rename = "AdminUserUpdate")]
pub struct AdminUserUpdateBody {
    /// E-mail address; `null` removes it.
    pub email: Option<String>,
    /// Full name, at most 200 characters, no control characters but tab and line breaks;
    /// `null` removes it.
    #[oai(validator(
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    ))]
    pub full_name: Option<String>,
    /// Disable (its tokens are refused at once) or enable the account.
    pub disabled: Option<bool>,
    /// The scopes the account holds from now on; tokens issued before lose any removed scope
    /// at their next request.
    pub scopes: Option<Vec<Scope>>,
}

/// A new password, set by an admin.
#[derive(Debug, Object)]
#[oai(rename = "PasswordReset")]
pub struct PasswordResetBody {
    /// Under the password policy.
    #[oai(validator(min_length = 8, max_length = 128))]
    pub password: String,
}

/// What ending an account's sessions did.
#[derive(Debug, Object)]
#[oai(rename = "SessionsEnded")]
pub struct SessionsEndedBody {
    /// How many live sessions were ended.
    pub sessions_ended: u64,
}

#[derive(ApiResponse)]
pub enum UserListResponse {
    /// One page of the matching accounts.
    #[oai(status = 200)]
    Ok(Json<UserListBody>),
}

#[derive(ApiResponse)]
pub enum AdminCreateResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<AdminUserBody>),
    /// `Username already taken`, in any spelling.
    #[oai(status = 409)]
    Taken(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum AdminUserResponse {
    /// The account.
    #[oai(status = 200)]
    Ok(Json<AdminUserBody>),
    /// `User not found` (also for an id that is not one).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum AdminUpdateResponse {
    /// The account, changed.
    #[oai(status = 200)]
    Ok(Json<AdminUserBody>),
    /// `User not found` (also for an id that is not one).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// `Cannot remove the last admin`: the change would leave no active admin (taking `admin`
    /// from, or disabling, the only one).
    #[oai(status = 409)]
    LastAdmin(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum AdminDeleteResponse {
    /// The account, its items and its sessions are gone; the name is free again.
    #[oai(status = 204)]
    Deleted,
    /// `User not found` (also for an id that is not one).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// `Cannot remove the last admin`: it is the only active admin.
    #[oai(status = 409)]
    LastAdmin(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum AdminDoneResponse {
    /// Done.
    #[oai(status = 204)]
    Done,
    /// `User not found` (also for an id that is not one).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum AdminSessionsResponse {
    /// The account's live sessions, most recently used first (`current` is always `false`).
    #[oai(status = 200)]
    Ok(Json<Vec<SessionBody>>),
    /// `User not found` (also for an id that is not one).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum AdminEndSessionsResponse {
    /// The account's sessions have ended: their tokens are refused from now on.
    #[oai(status = 200)]
    Ok(Json<SessionsEndedBody>),
    /// `User not found` (also for an id that is not one).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

fn not_found() -> Json<ErrorBody> {
    error("User not found")
}

fn last_admin() -> Json<ErrorBody> {
    error("Cannot remove the last admin")
}

/// An account id from the path; `None` (answered 404, like an unknown id) when it is not one.
fn user_id(raw: &UuidPath) -> Option<Uuid> {
    raw.parse_uuid("id").ok()
}

#[derive(Default)]
pub struct AdminApi;

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApi {
    /// List users
    ///
    /// Accounts by username without regard to case, a page at a time: `q` matches a part of
    /// the username or e-mail address without regard to case, `disabled` filters by status.
    /// Follow `next_cursor` (pass it as `cursor`, with the same filters) to visit every
    /// matching account exactly once, even while accounts are added. Needs the `admin` scope.
    #[oai(path = "/admin/users", method = "get", operation_id = "list_users")]
    async fn list_users(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        state: poem::web::Data<&AppState>,
        /// A part of the username or e-mail address to match, without regard to case.
        q: Query<Option<String>>,
        /// `true`: only disabled accounts; `false`: only active ones.
        disabled: Query<Option<Deferred<bool>>>,
        /// How many users to return, 1–200 (default 50).
        limit: Query<Option<Deferred<PageLimit<DEFAULT_PAGE_LIMIT>>>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<UserListResponse, ProtectedError> {
        auth.authenticate(&state, &[Scope::Admin]).await?;
        let mut issues = Vec::new();
        let search = q.0.filter(|q| !q.is_empty());
        if let Some(search) = &search {
            if let Err(invalid) = check_text(search) {
                issues.push(ValidationIssue::new(
                    &["query", "q"],
                    invalid.message,
                    invalid.kind,
                ));
            } else if search.chars().count() > MAX_SEARCH_CHARS {
                issues.push(ValidationIssue::new(
                    &["query", "q"],
                    format!("String should have at most {MAX_SEARCH_CHARS} characters"),
                    "string_too_long",
                ));
            }
        }
        let disabled = match disabled.0.as_ref() {
            Some(raw) => collect_issues(raw.parse(&["query", "disabled"]), &mut issues),
            None => None,
        };
        let (limit, after) = page_request(
            limit.0.as_ref(),
            cursor.0.as_deref(),
            UserCursor::decode,
            &mut issues,
        );
        let Some(limit) = limit.filter(|_| issues.is_empty()) else {
            return Err(ApiError::Validation(issues).into());
        };
        let filter = UserFilter { search, disabled };
        let page = state
            .accounts
            .list(&filter, after.as_ref(), limit)
            .await
            .map_err(ApiError::from)?;
        Ok(UserListResponse::Ok(Json(UserListBody {
            users: page.users.into_iter().map(AdminUserBody::from).collect(),
            next_cursor: page.next.map(|cursor| cursor.encode()),
        })))
    }

    /// Create a user
    ///
    /// Creates an account with the given scopes (default `me` and `items`) and status. The
    /// password must pass the password policy. Needs the `admin` scope.
    #[oai(path = "/admin/users", method = "post", operation_id = "create_user")]
    async fn create_user(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        request: &poem::Request,
        state: poem::web::Data<&AppState>,
        body: JsonBody<AdminUserCreateBody>,
    ) -> Result<AdminCreateResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Admin]).await?;
        let context = caller_context(request, &state, &caller);
        let object = body.object()?;
        let mut issues = Vec::new();
        let username = required_string(&object, "username", &mut issues);
        let password = required_password(&object, "password", &mut issues);
        let email = optional_string(&object, "email", &mut issues);
        let full_name = optional_string(&object, "full_name", &mut issues);
        let scopes = scopes_member(&object, &mut issues);
        let disabled = bool_member(&object, "disabled", &mut issues);
        let (Some(username), Some(password), true) = (username, password, issues.is_empty()) else {
            return Err(ApiError::Validation(issues).into());
        };
        let request = CreateUser {
            username,
            password,
            email,
            full_name,
            scopes: scopes.unwrap_or_else(ScopeSet::default_for_new_users),
            disabled: disabled.unwrap_or(false),
        };
        match state
            .accounts
            .create(&context, request, PasswordCheck::Policy)
            .await
        {
            Ok(user) => Ok(AdminCreateResponse::Created(Json(user.into()))),
            Err(AccountError::UsernameTaken(_)) => {
                Ok(AdminCreateResponse::Taken(error("Username already taken")))
            }
            Err(err) => Err(ApiError::from(err).into()),
        }
    }

    /// Read a user
    ///
    /// Needs the `admin` scope.
    #[oai(path = "/admin/users/:id", method = "get", operation_id = "read_user")]
    async fn read_user(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        state: poem::web::Data<&AppState>,
        /// The account's id.
        id: Path<UuidPath>,
    ) -> Result<AdminUserResponse, ProtectedError> {
        auth.authenticate(&state, &[Scope::Admin]).await?;
        let Some(id) = user_id(&id.0) else {
            return Ok(AdminUserResponse::NotFound(not_found()));
        };
        match state.accounts.find(id).await {
            Ok(user) => Ok(AdminUserResponse::Ok(Json(user.into()))),
            Err(AccountError::NotFound) => Ok(AdminUserResponse::NotFound(not_found())),
            Err(err) => Err(ApiError::from(err).into()),
        }
    }

    /// Update a user
    ///
    /// Changes the e-mail address, full name, status or scopes: absent members are left as
    /// they are, `null` clears the e-mail address or full name. A disabled account, or a scope
    /// taken away, is refused at that user's next request, tokens issued before included.
    /// Refused when it would leave no active admin. Needs the `admin` scope.
    #[oai(
        path = "/admin/users/:id",
        method = "patch",
        operation_id = "update_user"
    )]
    async fn update_user(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        request: &poem::Request,
        state: poem::web::Data<&AppState>,
        /// The account's id.
        id: Path<UuidPath>,
        body: JsonBody<AdminUserUpdateBody>,
    ) -> Result<AdminUpdateResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Admin]).await?;
        let context = caller_context(request, &state, &caller);
        let Some(id) = user_id(&id.0) else {
            return Ok(AdminUpdateResponse::NotFound(not_found()));
        };
        let object = body.object()?;
        let mut issues = Vec::new();
        let changes = AccountChanges {
            profile: ProfileChanges {
                email: patched_string(&object, "email", &mut issues),
                full_name: patched_string(&object, "full_name", &mut issues),
            },
            disabled: bool_member(&object, "disabled", &mut issues),
            scopes: scopes_member(&object, &mut issues),
        };
        if !issues.is_empty() {
            return Err(ApiError::Validation(issues).into());
        }
        match state.accounts.update(&context, id, changes).await {
            Ok(user) => Ok(AdminUpdateResponse::Ok(Json(user.into()))),
            Err(AccountError::NotFound) => Ok(AdminUpdateResponse::NotFound(not_found())),
            Err(AccountError::LastAdmin) => Ok(AdminUpdateResponse::LastAdmin(last_admin())),
            Err(err) => Err(ApiError::from(err).into()),
        }
    }

    /// Reset a user's password
    ///
    /// Sets a new password (under the password policy) and ends every session of that user at
    /// once, on every instance. Needs the `admin` scope.
    #[oai(
        path = "/admin/users/:id/password",
        method = "put",
        operation_id = "reset_user_password"
    )]
    async fn reset_user_password(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        request: &poem::Request,
        state: poem::web::Data<&AppState>,
        /// The account's id.
        id: Path<UuidPath>,
        body: JsonBody<PasswordResetBody>,
    ) -> Result<AdminDoneResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Admin]).await?;
        let context = caller_context(request, &state, &caller);
        let Some(id) = user_id(&id.0) else {
            return Ok(AdminDoneResponse::NotFound(not_found()));
        };
        let object = body.object()?;
        let mut issues = Vec::new();
        let Some(password) = required_password(&object, "password", &mut issues) else {
            return Err(ApiError::Validation(issues).into());
        };
        match state
            .accounts
            .reset_password(&context, id, password, PasswordCheck::Policy)
            .await
        {
            Ok(_) => Ok(AdminDoneResponse::Done),
            Err(AccountError::NotFound) => Ok(AdminDoneResponse::NotFound(not_found())),
            Err(err) => Err(ApiError::from(err).into()),
        }
    }

    /// Delete a user
    ///
    /// Deletes the account, its items and its sessions; the name is free again. Refused for
    /// the last active admin. Needs the `admin` scope.
    #[oai(
        path = "/admin/users/:id",
        method = "delete",
        operation_id = "delete_user"
    )]
    async fn delete_user(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        request: &poem::Request,
        state: poem::web::Data<&AppState>,
        /// The account's id.
        id: Path<UuidPath>,
    ) -> Result<AdminDeleteResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Admin]).await?;
        let context = caller_context(request, &state, &caller);
        let Some(id) = user_id(&id.0) else {
            return Ok(AdminDeleteResponse::NotFound(not_found()));
        };
        match state.accounts.delete(&context, id).await {
            Ok(()) => Ok(AdminDeleteResponse::Deleted),
            Err(AccountError::NotFound) => Ok(AdminDeleteResponse::NotFound(not_found())),
            Err(AccountError::LastAdmin) => Ok(AdminDeleteResponse::LastAdmin(last_admin())),
            Err(err) => Err(ApiError::from(err).into()),
        }
    }

    /// List a user's sessions
    ///
    /// That user's live sessions, most recently used first. Needs the `admin` scope.
    #[oai(
        path = "/admin/users/:id/sessions",
        method = "get",
        operation_id = "list_user_sessions"
    )]
    async fn list_user_sessions(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        state: poem::web::Data<&AppState>,
        /// The account's id.
        id: Path<UuidPath>,
    ) -> Result<AdminSessionsResponse, ProtectedError> {
        auth.authenticate(&state, &[Scope::Admin]).await?;
        let Some(id) = user_id(&id.0) else {
            return Ok(AdminSessionsResponse::NotFound(not_found()));
        };
        match state.accounts.sessions(id).await {
            // No session of another user is the caller's own.
            Ok(sessions) => Ok(AdminSessionsResponse::Ok(Json(
                sessions
                    .into_iter()
                    .map(|session| SessionBody::new(session, None))
                    .collect(),
            ))),
            Err(AccountError::NotFound) => Ok(AdminSessionsResponse::NotFound(not_found())),
            Err(err) => Err(ApiError::from(err).into()),
        }
    }

    /// End a user's sessions
    ///
    /// Ends every session of that user: their access and refresh tokens are refused from now
    /// on, on every instance. Needs the `admin` scope.
    #[oai(
        path = "/admin/users/:id/sessions",
        method = "delete",
        operation_id = "end_user_sessions"
    )]
    async fn end_user_sessions(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        request: &poem::Request,
        state: poem::web::Data<&AppState>,
        /// The account's id.
        id: Path<UuidPath>,
    ) -> Result<AdminEndSessionsResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Admin]).await?;
        let context = caller_context(request, &state, &caller);
        let Some(id) = user_id(&id.0) else {
            return Ok(AdminEndSessionsResponse::NotFound(not_found()));
        };
        match state.accounts.end_sessions(&context, id).await {
            Ok(ended) => Ok(AdminEndSessionsResponse::Ok(Json(SessionsEndedBody {
                sessions_ended: ended,
            }))),
            Err(AccountError::NotFound) => Ok(AdminEndSessionsResponse::NotFound(not_found())),
            Err(err) => Err(ApiError::from(err).into()),
        }
    }

    /// Unlock a user
    ///
    /// Clears every failed-login count and block of that account, from every address: the
    /// user can log in at once. Needs the `admin` scope.
    #[oai(
        path = "/admin/users/:id/throttle",
        method = "delete",
        operation_id = "unlock_user"
    )]
    async fn unlock_user(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        request: &poem::Request,
        state: poem::web::Data<&AppState>,
        /// The account's id.
        id: Path<UuidPath>,
    ) -> Result<AdminDoneResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Admin]).await?;
        let context = caller_context(request, &state, &caller);
        let Some(id) = user_id(&id.0) else {
            return Ok(AdminDoneResponse::NotFound(not_found()));
        };
        match state.accounts.unlock(&context, id).await {
            Ok(()) => Ok(AdminDoneResponse::Done),
            Err(AccountError::NotFound) => Ok(AdminDoneResponse::NotFound(not_found())),
            Err(err) => Err(ApiError::from(err).into()),
        }
    }
}

/// An optional boolean member (`null` counts as absent).
fn bool_member(
    object: &Map<String, Value>,
    field: &str,
    issues: &mut Vec<ValidationIssue>,
) -> Option<bool> {
    match object.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(value)) => Some(*value),
        Some(_) => {
            issues.push(ValidationIssue::new(
                &["body", field],
                "Input should be a valid boolean",
                "bool_type",
            ));
            None
        }
    }
}
