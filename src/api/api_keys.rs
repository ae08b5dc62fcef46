//! Personal API keys: `/users/me/api-keys…` for their owner, `/admin/users/{id}/api-keys…`
//! for admins. The rules are in `accounts::api_keys`; the check of a request presenting a key
//! in `auth::access`.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    ApiTags, AppState,
    error::{ApiError, ErrorBody, ProtectedError, ValidationIssue},
    input::{JsonBody, UuidPath, required_string, scopes_member},
    security::Credentials,
    token::caller_context,
};
use crate::{
    accounts::{
        AccountError,
        api_keys::{self, CreateApiKey, CreatedApiKey},
    },
    db,
    domain::{Invalid, Scope},
};

/// A personal API key, as listed: never the key itself or its hash.
#[derive(Debug, Object)]
#[oai(rename = "ApiKey")]
pub struct ApiKeyBody {
    /// Identifier (also part of the key's text).
    pub id: Uuid,
    /// What it is for, as its creator named it.
    pub name: String,
    /// What it may do (less any scope its user no longer holds).
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    /// When it stops working; `null`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its last use, to the minute; `null` before its first.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<db::ApiKey> for ApiKeyBody {
    fn from(key: db::ApiKey) -> Self {
        Self {
            id: key.id,
            name: key.name,
            scopes: key.scopes.iter().collect(),
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
        }
    }
}

/// A key just created: the `ApiKey` members and, this once only, the key.
#[derive(Debug, Object)]
#[oai(rename = "ApiKeyCreated")]
pub struct ApiKeyCreatedBody {
    #[oai(flatten)]
    pub api_key: ApiKeyBody,
    /// The key (`pcl_…`, 75 characters): send it as `Authorization: Bearer <key>`. It is shown
    /// only now: the service keeps only a hash of it.
    pub key: String,
}

impl From<CreatedApiKey> for ApiKeyCreatedBody {
    fn from(created: CreatedApiKey) -> Self {
        Self {
            api_key: created.key.into(),
            key: created.text,
        }
    }
}

/// A new API key.
#[derive(Debug, Object)]
#[oai(rename = "ApiKeyCreate")]
pub struct ApiKeyCreateBody {
    /// What it is for, e.g. `nightly backup`: 1–100 characters on one line, not only spaces,
    /// no control characters but tab (surrounding spaces are trimmed).
    #[oai(validator(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x08\x0A-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0A-\x1F\x7F-\x9F]*$"
    ))]
    pub name: String,
    /// What it may do: scopes you hold (`admin` only when named here). Default: yours, without
    /// `admin`.
    #[oai(validator(min_items = 1))]
    pub scopes: Option<Vec<Scope>>,
    /// Days until it stops working (1–3650). Default: it never expires.
    #[oai(validator(minimum(value = "1"), maximum(value = "3650")))]
    pub expires_in_days: Option<u32>,
}

#[derive(ApiResponse)]
pub enum CreateApiKeyResponse {
    /// Created. `key` is in this answer only.
    #[oai(status = 201)]
    Created(Json<ApiKeyCreatedBody>),
    /// `Too many API keys: at most 50 per user; delete one first`.
    #[oai(status = 409)]
    TooMany(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum ListApiKeysResponse {
    /// The keys, oldest first, expired ones included. Never a key or its hash.
    #[oai(status = 200)]
    Ok(Json<Vec<ApiKeyBody>>),
}

#[derive(ApiResponse)]
pub enum DeleteApiKeyResponse {
    /// Deleted: the key is refused from now on, on every instance.
    #[oai(status = 204)]
    Deleted,
    /// `API key not found`: no key of yours has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum AdminListApiKeysResponse {
    /// That user's keys, oldest first, expired ones included. Never a key or its hash.
    #[oai(status = 200)]
    Ok(Json<Vec<ApiKeyBody>>),
    /// `User not found`.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum AdminDeleteApiKeyResponse {
    /// Deleted: the key is refused from now on, on every instance.
    #[oai(status = 204)]
    Deleted,
    /// `User not found`, or `API key not found` (no key of that user has this id).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

fn key_not_found() -> Json<ErrorBody> {
    Json(ErrorBody::new("API key not found"))
}

fn user_not_found() -> Json<ErrorBody> {
    Json(ErrorBody::new("User not found"))
}

#[derive(Default)]
pub struct ApiKeysApi;

#[OpenApi(tag = "ApiTags::ApiKeys")]
impl ApiKeysApi {
    /// Create an API key
    ///
    /// A long-lived credential for scripts and CI: send it as `Authorization: Bearer pcl_…`
    /// wherever an access token goes. It is not a session: logging out and changing your
    /// password leave it working; delete it to end it. The key is in this answer only. Needs
    /// the `me` scope; its scopes must be ones this request's credential holds.
    #[oai(
        path = "/users/me/api-keys",
        method = "post",
        operation_id = "create_api_key"
    )]
    async fn create_api_key(
        &self,
        #[oai(scope = "Scope::Me")] auth: Credentials,
        request: &poem::Request,
        state: poem::web::Data<&AppState>,
        body: JsonBody<ApiKeyCreateBody>,
    ) -> Result<CreateApiKeyResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Me]).await?;
        let context = caller_context(request, &state, &caller);
        let object = body.object()?;
        let mut issues = Vec::new();
        let name = required_string(&object, "name", &mut issues).and_then(|name| {
            checked(
                &["body", "name"],
                api_keys::parse_key_name(&name),
                &mut issues,
            )
        });
        let scopes = scopes_member(&object, &mut issues);
        let expires_in_days = days_member(&object, &mut issues);
        let (Some(name), Some(expires_in_days), true) = (name, expires_in_days, issues.is_empty())
        else {
            return Err(ApiError::Validation(issues).into());
        };
        let request = CreateApiKey {
            name,
            scopes,
            expires_in_days,
        };
        match api_keys::create(
            &state.store,
            &context,
            caller.user.id,
            &caller.scopes,
            request,
        )
        .await
        {
            Ok(created) => Ok(CreateApiKeyResponse::Created(Json(created.into()))),
            Err(AccountError::TooManyApiKeys { limit }) => {
                Ok(CreateApiKeyResponse::TooMany(Json(ErrorBody::new(
                    format!("Too many API keys: at most {limit} per user; delete one first"),
                ))))
            }
            Err(err) => Err(ApiError::from(err).into()),
        }
    }

    /// List your API keys
    ///
    /// Oldest first, expired ones included; never a key or its hash. Needs the `me` scope.
    #[oai(
        path = "/users/me/api-keys",
        method = "get",
        operation_id = "list_api_keys"
    )]
    async fn list_api_keys(
        &self,
        #[oai(scope = "Scope::Me")] auth: Credentials,
        state: poem::web::Data<&AppState>,
    ) -> Result<ListApiKeysResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Me]).await?;
        let keys = api_keys::list(&state.store, caller.user.id)
            .await
            .map_err(ApiError::from)?;
        Ok(ListApiKeysResponse::Ok(Json(
            keys.into_iter().map(ApiKeyBody::from).collect(),
        )))
    }

    /// Delete an API key
    ///
    /// It is refused from the next request on, on every instance (the key deleting itself
    /// included). Another user's key is answered as not found. Needs the `me` scope.
    #[oai(
        path = "/users/me/api-keys/:id",
        method = "delete",
        operation_id = "delete_api_key"
    )]
    async fn delete_api_key(
        &self,
        #[oai(scope = "Scope::Me")] auth: Credentials,
        request: &poem::Request,
        state: poem::web::Data<&AppState>,
        /// The key's id.
        id: Path<UuidPath>,
    ) -> Result<DeleteApiKeyResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Me]).await?;
        // An id that is not a UUID names no key: 404, as an unknown one.
        let Ok(id) = id.0.parse_uuid("id") else {
            return Ok(DeleteApiKeyResponse::NotFound(key_not_found()));
        };
        let context = caller_context(request, &state, &caller);
        match api_keys::delete(&state.store, &context, Some(caller.user.id), id).await {
            Ok(_) => Ok(DeleteApiKeyResponse::Deleted),
            Err(AccountError::ApiKeyNotFound) => {
                Ok(DeleteApiKeyResponse::NotFound(key_not_found()))
            }
            Err(err) => Err(ApiError::from(err).into()),
        }
    }
}

/// The admin's side: another user's keys (tagged `Admin`, beside the other account operations).
#[derive(Default)]
pub struct AdminApiKeysApi;

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApiKeysApi {
    /// List a user's API keys
    ///
    /// Oldest first, expired ones included; never a key or its hash. Needs the `admin` scope.
    #[oai(
        path = "/admin/users/:id/api-keys",
        method = "get",
        operation_id = "list_user_api_keys"
    )]
    async fn list_user_api_keys(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        state: poem::web::Data<&AppState>,
        /// The account's id.
        id: Path<UuidPath>,
    ) -> Result<AdminListApiKeysResponse, ProtectedError> {
        auth.authenticate(&state, &[Scope::Admin]).await?;
        let Ok(id) = id.0.parse_uuid("id") else {
            return Ok(AdminListApiKeysResponse::NotFound(user_not_found()));
        };
        match state.accounts.find(id).await {
            Ok(user) => {
                let keys = api_keys::list(&state.store, user.id)
                    .await
                    .map_err(ApiError::from)?;
                Ok(AdminListApiKeysResponse::Ok(Json(
                    keys.into_iter().map(ApiKeyBody::from).collect(),
                )))
            }
            Err(AccountError::NotFound) => Ok(AdminListApiKeysResponse::NotFound(user_not_found())),
            Err(err) => Err(ApiError::from(err).into()),
        }
    }

    /// Delete a user's API key
    ///
    /// It is refused from the next request on, on every instance. Needs the `admin` scope.
    #[oai(
        path = "/admin/users/:id/api-keys/:key_id",
        method = "delete",
        operation_id = "delete_user_api_key"
    )]
    async fn delete_user_api_key(
        &self,
        #[oai(scope = "Scope::Admin")] auth: Credentials,
        request: &poem::Request,
        state: poem::web::Data<&AppState>,
        /// The account's id.
        id: Path<UuidPath>,
        /// The key's id.
        key_id: Path<UuidPath>,
    ) -> Result<AdminDeleteApiKeyResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Admin]).await?;
        let Ok(user_id) = id.0.parse_uuid("id") else {
            return Ok(AdminDeleteApiKeyResponse::NotFound(user_not_found()));
        };
        match state.accounts.find(user_id).await {
            Ok(_) => {}
            Err(AccountError::NotFound) => {
                return Ok(AdminDeleteApiKeyResponse::NotFound(user_not_found()));
            }
            Err(err) => return Err(ApiError::from(err).into()),
        }
        let Ok(key_id) = key_id.0.parse_uuid("key_id") else {
            return Ok(AdminDeleteApiKeyResponse::NotFound(key_not_found()));
        };
        let context = caller_context(request, &state, &caller);
        match api_keys::delete(&state.store, &context, Some(user_id), key_id).await {
            Ok(_) => Ok(AdminDeleteApiKeyResponse::Deleted),
            Err(AccountError::ApiKeyNotFound) => {
                Ok(AdminDeleteApiKeyResponse::NotFound(key_not_found()))
            }
            Err(err) => Err(ApiError::from(err).into()),
        }
    }
}

/// `parsed`, or `None` with its refusal added to `issues` at `loc`.
fn checked<T>(
    loc: &[&str],
    parsed: Result<T, Invalid>,
    issues: &mut Vec<ValidationIssue>,
) -> Option<T> {
    parsed
        .map_err(|invalid| issues.push(ValidationIssue::new(loc, invalid.message, invalid.kind)))
        .ok()
}

/// The optional `expires_in_days` member (`null` counts as absent): `Some(None)` when absent,
/// `None` when invalid (its issue added).
fn days_member(
    object: &Map<String, Value>,
    issues: &mut Vec<ValidationIssue>,
) -> Option<Option<u32>> {
    let loc = ["body", "expires_in_days"];
    let days = match object.get("expires_in_days") {
        None | Some(Value::Null) => return Some(None),
        Some(Value::Number(number)) => match (number.as_i64(), number.as_f64()) {
            (Some(days), _) => days,
            // `30.0`, or a whole number beyond i64 (out of bounds either way).
            (None, Some(days)) if days.fract() == 0.0 => days as i64,
            _ => {
                issues.push(ValidationIssue::new(
                    &loc,
                    "Input should be a valid integer, got a number with a fractional part",
                    "int_from_float",
                ));
                return None;
            }
        },
        Some(_) => {
            issues.push(ValidationIssue::new(
                &loc,
                "Input should be a valid integer",
                "int_type",
            ));
            return None;
        }
    };
    checked(&loc, api_keys::check_key_days(days), issues).map(Some)
}
