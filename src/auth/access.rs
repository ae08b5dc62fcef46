//! The check every protected operation runs on the credentials it was given: a valid token, a
//! live session of a user that still exists (signed with a key that is not retired) — or a
//! live API key of such a user —, the scopes the operation needs, and an active account, in the
//! contract's order. The HTTP side (`api::security`) only takes the bearer credential from the
//! request and maps [`AccessError`].

use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    auth::{AccessTokens, VerifyError},
    db::{Store, StoreError, User},
    domain::{ApiKeySecret, Scope, ScopeSet},
};

/// The caller of a protected operation, once every check has passed.
#[derive(Debug)]
pub struct Authenticated {
    pub user: User,
    pub scopes: ScopeSet,
    pub credential: Credential,
}

/// What the caller presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An access token of this session.
    Session(Uuid),
    /// This API key (not a session: logging out or a password change leaves it alone).
    ApiKey(Uuid),
}

impl Authenticated {
    /// The caller's session, if a session's access token was presented.
    pub fn session_id(&self) -> Option<Uuid> {
        match self.credential {
            Credential::Session(id) => Some(id),
            Credential::ApiKey(_) => None,
        }
    }
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

/// Checks a bearer credential — an access token, or an API key (`pcl_…`) — for an operation
/// needing `needed`.
pub async fn authenticate(
    tokens: &AccessTokens,
    store: &Store,
    token: &str,
    needed: &[Scope],
) -> Result<Authenticated, AccessError> {
    if ApiKeySecret::is_api_key(token) {
        return authenticate_key(store, token, needed).await;
    }
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
    permit(
        user,
        &verified.scopes,
        needed,
        Credential::Session(verified.session_id),
    )
}

/// The check of an API key: its shape and checksum (no database read for a mistyped or
/// made-up key), then the stored key by id, its secret compared in constant time, its expiry.
async fn authenticate_key(
    store: &Store,
    presented: &str,
    needed: &[Scope],
) -> Result<Authenticated, AccessError> {
    let key = ApiKeySecret::parse(presented).map_err(|reason| {
        tracing::debug!(%reason, "refused an API key");
        AccessError::InvalidToken
    })?;
    let (stored, user) = store
        .find_api_key_and_user(key.id())
        .await?
        .ok_or(AccessError::InvalidToken)?;
    if !key.matches(&stored.secret_hash) {
        tracing::debug!(key_id = %stored.id, "refused an API key: wrong secret");
        return Err(AccessError::InvalidToken);
    }
    let now = chrono::Utc::now();
    if !stored.is_live(now) {
        tracing::debug!(key_id = %stored.id, "refused an API key: expired");
        return Err(AccessError::InvalidToken);
    }
    if stored
        .last_used_at
        .is_none_or(|last_used_at| now - last_used_at >= LAST_USED_PRECISION)
    {
        let store = store.clone();
        let id = stored.id;
        tokio::spawn(
            async move {
                if let Err(err) = store.touch_api_key(id, LAST_USED_PRECISION).await
                    && !err.is_unavailable()
                {
                    tracing::warn!(error = %err, "could not record an API key's last use");
                }
            }
            .in_current_span(),
        );
    }
    permit(user, &stored.scopes, needed, Credential::ApiKey(stored.id))
}

/// The last checks, the same for both credentials: the credential's scopes less any its user
/// no longer holds (removing a scope from a user takes effect at their next request, even with
/// tokens issued and keys created before), the scopes needed, an active account.
fn permit(
    user: User,
    granted: &ScopeSet,
    needed: &[Scope],
    credential: Credential,
) -> Result<Authenticated, AccessError> {
    let scopes: ScopeSet = granted
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
        credential,
    })
}
