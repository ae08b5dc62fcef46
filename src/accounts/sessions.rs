//! A user's sessions: logging out, listing them, ending one or all. Ending a session refuses
//! its access and refresh tokens from the next request on, on every instance (the access check
//! reads the session each time).

use serde_json::json;
use uuid::Uuid;

use super::{AccountError, find_user};
use crate::{
    audit::AuditContext,
    db::{AuditEvent, Session, Store, StoreError},
    domain::AuditEventType,
};

// The doc comment is the OpenAPI schema's description (`POST /logout`'s `scope`).
/// Which sessions `POST /logout` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename = "LogoutScope", rename_all = "lowercase")]
pub enum LogoutScope {
    /// The session of this request's token.
    Local,
    /// Every other session of yours.
    Others,
    /// Every session of yours, this one included.
    Global,
}

impl LogoutScope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Others => "others",
            Self::Global => "global",
        }
    }

    /// Whether it ends sessions other than the caller's, which needs the `me` scope: a token
    /// that may only read items must not log its user out everywhere.
    pub fn reaches_other_sessions(self) -> bool {
        matches!(self, Self::Others | Self::Global)
    }
}

/// The audit event of `ended` sessions of `user_id` ending for `reason`; none when none did.
pub(crate) fn sessions_ended(
    context: &AuditContext,
    user_id: Uuid,
    reason: &str,
    ended: u64,
) -> Vec<AuditEvent> {
    sessions_ended_with(context, user_id, ended, json!({ "reason": reason }))
}

/// As [`sessions_ended`], `detail` (an object) saying why; `sessions_ended` is added to it.
fn sessions_ended_with(
    context: &AuditContext,
    user_id: Uuid,
    ended: u64,
    mut detail: serde_json::Value,
) -> Vec<AuditEvent> {
    if ended == 0 {
        return Vec::new();
    }
    detail["sessions_ended"] = json!(ended);
    vec![context.event(AuditEventType::SessionEnded, Some(user_id), detail)]
}

/// Ends `scope`'s sessions of `user_id`, seen from its session `current` (`None` for a
/// caller with an API key, which is no session: `local` ends nothing, `others` every
/// session); how many ended. API keys are never touched.
pub async fn logout(
    store: &Store,
    context: &AuditContext,
    user_id: Uuid,
    current: Option<Uuid>,
    scope: LogoutScope,
) -> Result<u64, StoreError> {
    let detail = json!({ "reason": "logout", "scope": scope.as_str() });
    let events = |ended| sessions_ended_with(context, user_id, ended, detail.clone());
    let ended = match (scope, current) {
        (LogoutScope::Local, Some(current)) => {
            u64::from(store.revoke_session(current, || events(1)).await?)
        }
        (LogoutScope::Local, None) => 0,
        (LogoutScope::Others, current) => {
            store.revoke_user_sessions(user_id, current, events).await?
        }
        (LogoutScope::Global, _) => store.revoke_user_sessions(user_id, None, events).await?,
    };
    tracing::info!(user_id = %user_id, sessions_ended = ended, "logged out");
    Ok(ended)
}

/// The user's live sessions (neither ended nor expired), most recently used first.
pub async fn live_sessions(store: &Store, user_id: Uuid) -> Result<Vec<Session>, StoreError> {
    store.live_sessions(user_id).await
}

/// Ends one live session of the user's; `false` when they have none with this id.
pub async fn end_session(
    store: &Store,
    context: &AuditContext,
    user_id: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let detail = json!({ "reason": "session_deleted", "ended_session_id": id });
    let events = || sessions_ended_with(context, user_id, 1, detail);
    let ended = store.revoke_user_session(user_id, id, events).await?;
    if ended {
        tracing::info!(user_id = %user_id, session_id = %id, "session ended by its user");
    }
    Ok(ended)
}

/// Ends every session of the account named `name` (e.g. a compromised account); how many.
pub async fn end_all_sessions(
    store: &Store,
    context: &AuditContext,
    name: &str,
) -> Result<u64, AccountError> {
    let user = find_user(store, name).await?;
    let events = |ended| sessions_ended(context, user.id, "ended_by_admin", ended);
    let ended = store.revoke_user_sessions(user.id, None, events).await?;
    tracing::info!(user_id = %user.id, sessions_ended = ended, "sessions ended from the command line");
    Ok(ended)
}
