//! The caller's sessions: logging out, listing them, ending one.

use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use super::{
    ApiTags, AppState,
    error::{ApiError, ErrorBody, ProtectedError},
    input::{Deferred, UuidPath},
    security::Credentials,
    token::caller_context,
};
use crate::{
    accounts::sessions::{self, LogoutScope},
    db,
    domain::Scope,
};

/// A live session: one login, with every token refreshed from it.
#[derive(Debug, Object)]
#[oai(rename = "Session")]
pub struct SessionBody {
    /// Identifier (the `sid` of its access tokens).
    pub id: Uuid,
    /// Whether the access token of this request belongs to it.
    pub current: bool,
    /// When the login happened.
    pub created_at: DateTime<Utc>,
    /// Last login, refresh or request with one of its tokens (to the minute).
    pub last_used_at: DateTime<Utc>,
    /// When it ends, however often it is refreshed.
    pub expires_at: DateTime<Utc>,
    /// The `User-Agent` of the login, if it sent one (at most 256 characters).
    pub user_agent: Option<String>,
    /// The client's address at login.
    pub client_address: String,
}

impl SessionBody {
    pub(super) fn new(session: db::Session, current: Option<Uuid>) -> Self {
        Self {
            current: Some(session.id) == current,
            id: session.id,
            created_at: session.created_at,
            last_used_at: session.last_used_at,
            expires_at: session.expires_at,
            user_agent: session.user_agent,
            client_address: session.client_address,
        }
    }
}

/// What a logout ended.
#[derive(Debug, Object)]
#[oai(rename = "LogoutResult")]
pub struct LogoutBody {
    /// How many sessions were ended (0 for `others` when there were none).
    pub sessions_ended: u64,
}

#[derive(ApiResponse)]
pub enum LogoutResponse {
    /// Logged out: the tokens of the ended sessions are refused from now on, on every
    /// instance.
    #[oai(status = 200)]
    Ok(Json<LogoutBody>),
}

#[derive(ApiResponse)]
pub enum ListSessionsResponse {
    /// Your live sessions, most recently used first. Never a token or a hash.
    #[oai(status = 200)]
    Ok(Json<Vec<SessionBody>>),
}

#[derive(ApiResponse)]
pub enum EndSessionResponse {
    /// The session is ended: its tokens are refused from now on.
    #[oai(status = 204)]
    Ended,
    /// `Session not found`: no live session of yours has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(Default)]
pub struct SessionsApi;

#[OpenApi(tag = "ApiTags::Sessions")]
impl SessionsApi {
    /// Log out
    ///
    /// Ends the session of this request's token (`scope=local`, the default), every other
    /// session of yours (`scope=others`), or all of them (`scope=global`). Any valid token of
    /// yours may end its own session (`local`); ending your other sessions (`others`,
    /// `global`) needs the `me` scope, as ending one of them by id does: a token that may only
    /// read items must not log its user out everywhere.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        auth: Credentials,
        request: &poem::Request,
        state: poem::web::Data<&AppState>,
        /// `local` (default), `others` or `global`.
        scope: Query<Option<Deferred<LogoutScope>>>,
    ) -> Result<LogoutResponse, ProtectedError> {
        // `?scope=` counts as absent, as empty fields do at `/token`.
        let scope = match scope.0.as_ref().filter(|raw| !raw.is_blank()) {
            Some(raw) => raw.parse(&["query", "scope"]),
            None => Ok(LogoutScope::Local),
        };
        // Ending sessions other than the caller's needs `me`, checked where every scope is (so
        // an invalid token is still told first, and a bad `scope` after the token).
        let needed: &[Scope] = match scope {
            Ok(scope) if scope.reaches_other_sessions() => &[Scope::Me],
            _ => &[],
        };
        let caller = auth.authenticate(&state, needed).await?;
        let context = caller_context(request, &state, &caller);
        let ended = sessions::logout(
            &state.store,
            &context,
            caller.user.id,
            caller.session_id(),
            scope?,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(LogoutResponse::Ok(Json(LogoutBody {
            sessions_ended: ended,
        })))
    }

    /// List your sessions
    ///
    /// Your live sessions (neither ended nor expired), most recently used first, the current
    /// one marked. Needs the `me` scope.
    #[oai(
        path = "/users/me/sessions",
        method = "get",
        operation_id = "list_sessions"
    )]
    async fn list_sessions(
        &self,
        #[oai(scope = "Scope::Me")] auth: Credentials,
        state: poem::web::Data<&AppState>,
    ) -> Result<ListSessionsResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Me]).await?;
        let sessions = sessions::live_sessions(&state.store, caller.user.id)
            .await
            .map_err(ApiError::from)?;
        Ok(ListSessionsResponse::Ok(Json(
            sessions
                .into_iter()
                .map(|session| SessionBody::new(session, caller.session_id()))
                .collect(),
        )))
    }

    /// End a session
    ///
    /// Ends one of your live sessions (the current one included): its tokens are refused from
    /// now on. Needs the `me` scope.
    #[oai(
        path = "/users/me/sessions/:id",
        method = "delete",
        operation_id = "end_session"
    )]
    async fn end_session(
        &self,
        #[oai(scope = "Scope::Me")] auth: Credentials,
        request: &poem::Request,
        state: poem::web::Data<&AppState>,
        /// The session's id.
        id: Path<UuidPath>,
    ) -> Result<EndSessionResponse, ProtectedError> {
        let caller = auth.authenticate(&state, &[Scope::Me]).await?;
        let id = id.0.parse_uuid("id")?;
        let context = caller_context(request, &state, &caller);
        if sessions::end_session(&state.store, &context, caller.user.id, id)
            .await
            .map_err(ApiError::from)?
        {
            Ok(EndSessionResponse::Ended)
        } else {
            Ok(EndSessionResponse::NotFound(Json(ErrorBody::new(
                "Session not found",
            ))))
        }
    }
}
