//! The OAuth2 security scheme protected operations take as a parameter, and the check every
//! one of them runs: a valid token, a live session of a user that still exists (signed with a
//! key that is not retired), the scopes the operation needs (poem-openapi only documents them),
//! and an active account — in the contract's order.

use poem_openapi::{OAuthScopes, SecurityScheme, auth::Bearer};
use uuid::Uuid;

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
    flows(password(token_url = "/token", refresh_url = "/token", scopes = "OAuthScope"))
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
    /// The session the token belongs to.
    pub session_id: Uuid,
}

/// `last_used_at` of a session is kept to this precision: a busy session costs one write a
/// minute, not one per request.
const LAST_USED_PRECISION: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

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
    // One query: the session, its user, and (for a `kid`) that the key is not retired.
    let (session, user) = store
        .find_session_and_user(
            verified.session_id,
            verified.user_id,
            verified.kid.as_deref().zip(verified.key_tag.as_deref()),
        )
        .await?
        .ok_or(ApiError::InvalidToken)?;
    let now = chrono::Utc::now();
    if !session.is_live(now) {
        tracing::debug!(session_id = %session.id, "refused an access token: session ended");
        return Err(ApiError::InvalidToken);
    }
    if now - session.last_used_at >= LAST_USED_PRECISION {
        // Off the request's path: the answer does not wait for this write.
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.touch_session(session.id, LAST_USED_PRECISION).await {
                tracing::warn!(error = %err, "could not record a session's last use");
            }
        });
    }
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
        session_id: verified.session_id,
    })
}
