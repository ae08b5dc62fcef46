//! The caller's own account.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, payload::Json};
use uuid::Uuid;

use super::{ApiTags, AppState, error::ProtectedError};
use crate::{
    auth::{OAuth2, OAuthScope, authenticate},
    db,
    domain::Scope,
};

/// A permission a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "Scope", rename_all = "lowercase")]
pub enum ScopeName {
    Me,
    Items,
    Admin,
}

impl From<Scope> for ScopeName {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Me => Self::Me,
            Scope::Items => Self::Items,
            Scope::Admin => Self::Admin,
        }
    }
}

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
    pub scopes: Vec<ScopeName>,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

impl From<db::User> for UserBody {
    fn from(user: db::User) -> Self {
        Self {
            id: user.id,
            scopes: user.scopes.iter().map(ScopeName::from).collect(),
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

pub struct UsersApi;

#[OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// Read your account
    ///
    /// Returns the account the access token belongs to. Needs the `me` scope.
    #[oai(path = "/users/me", method = "get", operation_id = "read_current_user")]
    async fn read_current_user(
        &self,
        #[oai(scope = "OAuthScope::Me")] auth: OAuth2,
        state: poem::web::Data<&AppState>,
    ) -> Result<CurrentUserResponse, ProtectedError> {
        let caller = authenticate(&state.tokens, &state.store, &auth, &[Scope::Me]).await?;
        Ok(CurrentUserResponse::Ok(Json(caller.user.into())))
    }
}
