//! The OAuth2 security scheme protected operations take as a parameter, and the check every
//! one of them runs: a valid token, a user that still exists, the scopes the operation needs
//! (poem-openapi only documents them), and an active account — in the contract's order.

use poem_openapi::{OAuthScopes, SecurityScheme, auth::Bearer};

use crate::{
    api::ApiError,
    auth::AccessTokens,
    db::{Store, User},
    domain::{Scope, ScopeSet},
};

/// Scopes a token can carry.
#[derive(Debug, Clone, Copy, OAuthScopes)]
pub enum OAuthScope {
    /// Read and change your own account.
    #[oai(rename = "me")]
    Me,
    /// Your own items.
    #[oai(rename = "items")]
    Items,
    /// Manage all users (granted only when asked for by name).
    #[oai(rename = "admin")]
    Admin,
}

/// OAuth2 password flow: log in at `/token` with a username and password, then send the
/// access token as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(
    ty = "oauth2",
    flows(password(token_url = "/token", scopes = "OAuthScope"))
)]
pub struct OAuth2(Bearer);

impl OAuth2 {
    fn token(&self) -> &str {
        self.0.token.trim()
    }
}

/// The caller of a protected operation, once every check has passed.
#[derive(Debug)]
pub struct Authenticated {
    pub user: User,
    pub scopes: ScopeSet,
}

/// Checks a bearer token for an operation needing `needed`.
pub async fn authenticate(
    tokens: &AccessTokens,
    store: &Store,
    credentials: &OAuth2,
    needed: &[Scope],
) -> Result<Authenticated, ApiError> {
    let verified = tokens.verify(credentials.token()).await.map_err(|err| {
        tracing::debug!(reason = %err, "refused an access token");
        ApiError::from(err)
    })?;
    let user = store
        .find_user_by_id(verified.user_id)
        .await?
        .ok_or(ApiError::InvalidToken)?;
    let needed: ScopeSet = needed.iter().copied().collect();
    if !needed.missing_from(&verified.scopes).is_empty() {
        return Err(ApiError::InsufficientScope { needed });
    }
    if user.disabled {
        return Err(ApiError::InactiveUser);
    }
    Ok(Authenticated {
        user,
        scopes: verified.scopes,
    })
}
