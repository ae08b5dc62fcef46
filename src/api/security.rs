//! The OAuth2 security scheme protected operations take as a parameter: it documents the
//! password flow and the scopes (Swagger UI's Authorize dialog), extracts the bearer token,
//! and hands it to the one access check, `auth::access`.

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
    ty = "oauth2",
    flows(password(token_url = "/token", refresh_url = "/token", scopes = "Scope"))
)]
pub struct OAuth2(Bearer);

impl OAuth2 {
    /// Runs the access check for an operation needing `needed` (the scopes its
    /// `#[oai(scope = …)]` attributes declare; `tests/api/protected.rs` checks they agree).
    pub async fn authenticate(
        &self,
        state: &AppState,
        needed: &[Scope],
    ) -> Result<Authenticated, ApiError> {
        let authenticated =
            access::authenticate(&state.tokens, &state.store, self.0.token.trim(), needed).await?;
        crate::telemetry::record_caller(authenticated.user.id, authenticated.session_id);
        Ok(authenticated)
    }
}
