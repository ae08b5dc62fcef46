//! The credentials protected operations take as a parameter: two security schemes, either of
//! which may be used — `OAuth2` (the password flow and its scopes: Swagger UI's Authorize
//! dialog logs in with it) and `APIKey` (a personal API key pasted into that dialog, or set as a
//! generated client's token). Both arrive as `Authorization: Bearer …`; the one access check,
//! `auth::access`, tells them apart by the key's `pcl_` prefix.

use poem_openapi::{OAuthScopes, SecurityScheme, auth::Bearer, registry::MetaOAuthScope};

use super::{ApiError, AppState};
use crate::{
    auth::access::{self, Authenticated},
    domain::Scope,
};

/// The scopes as the OAuth2 scheme documents them: `domain::Scope`, with the words Swagger UI
/// shows beside each box of the Authorize dialog.
impl OAuthScopes for Scope {
    fn meta() -> Vec<MetaOAuthScope> {
        Scope::ALL
            .into_iter()
            .map(|scope| MetaOAuthScope {
                name: scope.as_str(),
                description: Some(match scope {
                    Scope::Me => "Read and change your own account.",
                    Scope::Items => "Your own items.",
                    Scope::Admin => "Manage all users (granted only when asked for by name).",
                }),
            })
            .collect()
    }

    fn name(&self) -> &'static str {
        self.as_str()
    }
}

/// OAuth2 password flow: log in at `/token` with a username and password, then send the
/// access token as `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(
    rename = "OAuth2",
    ty = "oauth2",
    flows(password(token_url = "/token", refresh_url = "/token", scopes = "Scope"))
)]
pub struct PasswordFlow(Bearer);

/// A personal API key (`pcl_…`, created at `POST /users/me/api-keys`), sent as
/// `Authorization: Bearer pcl_…`. It may do what its scopes allow, less any its user no longer
/// holds; the scopes each operation needs are those its `OAuth2` requirement lists.
#[derive(SecurityScheme)]
#[oai(rename = "APIKey", ty = "bearer", bearer_format = "pcl_ API key")]
pub struct ApiKey(Bearer);

/// The bearer credential of a protected operation: an access token or an API key.
#[derive(SecurityScheme)]
pub enum Credentials {
    OAuth2(PasswordFlow),
    ApiKey(ApiKey),
}

impl Credentials {
    fn bearer(&self) -> &str {
        match self {
            Self::OAuth2(PasswordFlow(bearer)) | Self::ApiKey(ApiKey(bearer)) => &bearer.token,
        }
    }

    /// Runs the access check for an operation needing `needed` (the scopes its
    /// `#[oai(scope = …)]` attributes declare; `tests/api/protected.rs` checks they agree).
    pub async fn authenticate(
        &self,
        state: &AppState,
        needed: &[Scope],
    ) -> Result<Authenticated, ApiError> {
        let authenticated =
            access::authenticate(&state.tokens, &state.store, self.bearer().trim(), needed).await?;
        crate::telemetry::record_caller(authenticated.user.id, authenticated.session_id());
        Ok(authenticated)
    }
}
