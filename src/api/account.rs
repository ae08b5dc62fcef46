//! The caller's own account: `/users/me`.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use uuid::Uuid;

use super::{ApiTags, AppState, error::ProtectedError, security::OAuth2};
use crate::{db, domain::Scope};

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
    /// Whether the account is disabled (always `false` here: disabled users are refused).
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

#[derive(ApiResponse)]
pub enum CurrentUserResponse {
    /// Your account.
    #[oai(status = 200)]
    Ok(Json<UserBody>),
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
        #[oai(scope = "Scope::Me")] auth: OAuth2,
        state: poem::web::Data<&AppState>,
    ) -> Result<CurrentUserResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Me]).await?;
        Ok(CurrentUserResponse::Ok(Json(caller.user.into())))
    }
}
