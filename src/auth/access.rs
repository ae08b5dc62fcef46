//! The check every protected operation runs on the credentials it was given: a valid token, a
//! live session of a user that still exists (signed with a key that is not retired), the scopes
//! the operation needs, and an active account — in the contract's order. The HTTP side
//! (`api::security`) only takes the token from the request and maps [`AccessError`].

use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    auth::{AccessTokens, VerifyError},
    db::{Store, StoreError, User},
    domain::{Scope, ScopeSet},
};

/// The caller of a protected operation, once every check has passed.
#[derive(Debug)]
pub struct Authenticated {
    pub user: User,
    pub scopes: ScopeSet,
    /// The session the token belongs to.
    pub session_id: Uuid,
}

/// Why a presented access token does not let its holder in.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Not a token of ours, expired, signed with a retired key, of an ended session or of a
    /// user that is gone.
    #[error("could not validate credentials")]
    InvalidToken,
    /// A valid token without every scope the operation needs.
    #[error("not enough permissions")]
    InsufficientScope { needed: ScopeSet },
    /// The token's user is disabled.
    #[error("inactive user")]
    InactiveUser,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `last_used_at` of a session is kept to this precision: a busy session costs one write a
/// minute, not one per request.
const LAST_USED_PRECISION: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Checks a bearer `token` for an operation needing `needed`.
pub async fn authenticate(
    tokens: &AccessTokens,
    store: &Store,
    token: &str,
    needed: &[Scope],
) -> Result<Authenticated, AccessError> {
    let verified = tokens.verify(token).await.map_err(|err| match err {
        VerifyError::Invalid(reason) => {
            tracing::debug!(%reason, "refused an access token");
            AccessError::InvalidToken
        }
        VerifyError::Store(err) => AccessError::Store(err),
    })?;
    // One query: the session, its user, and (for a `kid`) that the key is not retired.
    let (session, user) = store
        .find_session_and_user(
            verified.session_id,
            verified.user_id,
            verified.kid.as_deref().zip(verified.key_tag.as_deref()),
        )
        .await?
        .ok_or(AccessError::InvalidToken)?;
    let now = chrono::Utc::now();
    if !session.is_live(now) {
        tracing::debug!(session_id = %session.id, "refused an access token: session ended");
        return Err(AccessError::InvalidToken);
    }
    if now - session.last_used_at >= LAST_USED_PRECISION {
        // Off the request's path: the answer does not wait for this write.
        let store = store.clone();
        tokio::spawn(
            async move {
                if let Err(err) = store.touch_session(session.id, LAST_USED_PRECISION).await
                    && !err.is_unavailable()
                {
                    tracing::warn!(error = %err, "could not record a session's last use");
                }
            }
            .in_current_span(),
        );
    }
    // The token's scopes, less any its user no longer holds: removing a scope from a user
    // takes effect at their next request, even with tokens issued before.
    let scopes: ScopeSet = verified
        .scopes
        .iter()
        .filter(|scope| user.scopes.contains(*scope))
        .collect();
    let needed: ScopeSet = needed.iter().copied().collect();
    if !needed.missing_from(&scopes).is_empty() {
        return Err(AccessError::InsufficientScope { needed });
    }
    if user.disabled {
        return Err(AccessError::InactiveUser);
    }
    Ok(Authenticated {
        user,
        scopes,
        session_id: verified.session_id,
    })
}
