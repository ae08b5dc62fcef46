//! `POST /token`: the OAuth 2.0 password grant (RFC 6749 §4.3) and refresh grant (§6), and
//! `POST /token/revoke` (RFC 7009).

use std::net::IpAddr;

use poem::Request;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json, types::Password};
use secrecy::SecretString;

use super::{
    ApiTags, AppState,
    error::{ApiError, OAuthErrorCode, RevocationError, TokenError, ValidationIssue},
    input::{FormBody, optional_any_string, optional_string},
};
use crate::{
    auth::{IssuedToken, PresentedRefreshToken, Verification, VerifyError, throttle::Admission},
    db::{Exchange, NewSession, Session},
    domain::{Scope, ScopeSet, Username},
};

/// A token request: the password grant (RFC 6749 §4.3.2) or the refresh grant (§6). Empty
/// fields count as absent.
///
/// Documented form-encoded only: the same fields as a JSON object are accepted too, but
/// declaring two content types breaks openapi-python-client (its bug #1451).
#[derive(Object)]
#[oai(rename = "TokenRequest")]
struct TokenRequestSchema {
    /// `password` (the default) or `refresh_token`.
    #[oai(validator(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"))]
    grant_type: Option<String>,
    /// The username (any case); required by the password grant.
    #[oai(validator(min_length = 1))]
    username: Option<String>,
    /// The password; required by the password grant.
    #[oai(validator(min_length = 1))]
    password: Option<Password>,
    /// The refresh token; required by the refresh grant.
    refresh_token: Option<Password>,
    /// Space-separated scopes to grant (`me`, `items`, `admin`). Password grant default: every
    /// scope the user holds except `admin`, which must be asked for by name. Refresh grant
    /// default: the scopes of the login; a narrower set may be asked for, never a wider one.
    #[oai(validator(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"))]
    scope: Option<String>,
    /// Accepted and ignored while no clients are configured.
    #[oai(validator(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"))]
    client_id: Option<String>,
    /// Accepted and ignored while no clients are configured.
    client_secret: Option<Password>,
}

/// An access token (RFC 6749 §5.1).
#[derive(Debug, Object)]
pub struct AccessToken {
    /// The JWT to send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// Exchange it at `/token` (`grant_type=refresh_token`) for a new access token and a new
    /// refresh token; each refresh token works once. Valid until the session ends.
    pub refresh_token: String,
}

#[derive(ApiResponse)]
pub enum TokenResponse {
    /// Logged in, or refreshed.
    #[oai(status = 200)]
    Ok(
        Json<AccessToken>,
        /// `no-store`: tokens are never cached.
        #[oai(header = "Cache-Control")]
        String,
        /// `no-cache`.
        #[oai(header = "Pragma")]
        String,
    ),
}

/// A revocation request (RFC 7009 §2.1).
#[derive(Object)]
#[oai(rename = "RevocationRequest")]
struct RevocationRequestSchema {
    /// An access token or a refresh token; the session it belongs to is ended.
    #[oai(validator(min_length = 1))]
    token: Password,
    /// `access_token` or `refresh_token`: which kind to try first. Any other value is ignored.
    #[oai(validator(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"))]
    token_type_hint: Option<String>,
    /// Accepted and ignored while no clients are configured.
    #[oai(validator(pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"))]
    client_id: Option<String>,
    /// Accepted and ignored while no clients are configured.
    client_secret: Option<Password>,
}

#[derive(ApiResponse)]
pub enum RevocationResponse {
    /// Done: the token's session is ended — or the token was unknown, expired or already
    /// revoked, which is not an error (RFC 7009 §2.2). No body.
    #[oai(status = 200)]
    Revoked(
        /// `no-store`.
        #[oai(header = "Cache-Control")]
        String,
    ),
}

pub struct TokenApi;

#[OpenApi(tag = "ApiTags::Auth")]
impl TokenApi {
    /// Log in, or refresh
    ///
    /// The password grant (OAuth 2.0, meant for first-party clients) exchanges a username and
    /// password for a bearer access token and a refresh token, and starts a session. An unknown
    /// username and a wrong password get the same answer.
    ///
    /// The refresh grant (`grant_type=refresh_token`) exchanges a refresh token for a new
    /// access token and a new refresh token in the same session; the presented one stops
    /// working. Presenting a refresh token that was already exchanged ends the whole session
    /// (it was stolen, or copied), unless it was exchanged only seconds ago (two tabs
    /// refreshing at once).
    #[oai(
        path = "/token",
        method = "post",
        operation_id = "login_for_access_token"
    )]
    async fn token(
        &self,
        request: &Request,
        state: poem::web::Data<&AppState>,
        body: FormBody<TokenRequestSchema>,
    ) -> Result<TokenResponse, TokenError> {
        let client = Client::of(request, state.client_ip_header.as_ref());
        Ok(token(&state, client, &body).await?)
    }

    /// Revoke a token
    ///
    /// Ends the session an access token or a refresh token belongs to (RFC 7009): every token
    /// of that session stops working at once, on every instance. Answers 200 for an unknown,
    /// expired or already revoked token too.
    #[oai(path = "/token/revoke", method = "post", operation_id = "revoke_token")]
    async fn revoke(
        &self,
        state: poem::web::Data<&AppState>,
        body: FormBody<RevocationRequestSchema>,
    ) -> Result<RevocationResponse, RevocationError> {
        Ok(revoke(&state, &body).await?)
    }
}

/// Who is asking, as recorded on the session a login starts.
struct Client {
    address: IpAddr,
    user_agent: Option<String>,
}

impl Client {
    fn of(request: &Request, address_header: Option<&poem::http::HeaderName>) -> Self {
        Self {
            address: client_address(request, address_header),
            user_agent: present(
                request
                    .headers()
                    .get(poem::http::header::USER_AGENT)
                    .and_then(|agent| agent.to_str().ok()),
            )
            .map(str::to_owned),
        }
    }
}

/// The client's address: from the trusted proxy's header when one is configured (its last
/// entry, the one that proxy added), else the socket's peer.
fn client_address(request: &Request, header: Option<&poem::http::HeaderName>) -> IpAddr {
    let from_header = header.and_then(|name| {
        let last = request.headers().get_all(name).iter().next_back()?;
        let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
        entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
    });
    from_header
        .or_else(|| request.remote_addr().as_socket_addr().map(|addr| addr.ip()))
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// The fields of a token request; client credentials are accepted and ignored while no
/// clients are configured (the contract).
struct TokenFields {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

impl TokenFields {
    fn read(body: &FormBody<TokenRequestSchema>) -> Result<Self, ApiError> {
        let object = body.object_or_empty()?;
        let mut issues = Vec::new();
        // Every text field obeys the text rule (documented as a pattern) but the secrets, the
        // fields documented as passwords (any character: they are only hashed, or ignored),
        // and the username, which a login checks itself so that one that could not exist is
        // answered like an unknown one (401).
        let grant_type = optional_string(&object, "grant_type", &mut issues);
        let username = optional_any_string(&object, "username", &mut issues);
        let password = optional_any_string(&object, "password", &mut issues);
        let refresh_token = optional_any_string(&object, "refresh_token", &mut issues);
        let scope = optional_string(&object, "scope", &mut issues);
        optional_string(&object, "client_id", &mut issues);
        optional_any_string(&object, "client_secret", &mut issues);
        let fields = Self {
            grant_type,
            username,
            password,
            refresh_token,
            scope,
        };
        if issues.is_empty() {
            Ok(fields)
        } else {
            Err(ApiError::Validation(issues))
        }
    }

    /// The requested scopes, if any; an unknown one is refused by name.
    fn requested_scopes(&self) -> Result<Option<ScopeSet>, ApiError> {
        present(self.scope.as_deref())
            .map(|raw| {
                ScopeSet::parse(raw).map_err(|unknown| ApiError::Grant {
                    code: OAuthErrorCode::InvalidScope,
                    description: format!("Unknown scope: {}", printable(&unknown)),
                })
            })
            .transpose()
    }
}

async fn token(
    state: &AppState,
    client: Client,
    body: &FormBody<TokenRequestSchema>,
) -> Result<TokenResponse, ApiError> {
    let fields = TokenFields::read(body)?;
    match present(fields.grant_type.as_deref()) {
        None | Some("password") => password_grant(state, client, fields).await,
        Some("refresh_token") => refresh_grant(state, fields).await,
        Some(_) => Err(ApiError::Grant {
            code: OAuthErrorCode::UnsupportedGrantType,
            description: "Unsupported grant type; this server supports password and refresh_token"
                .into(),
        }),
    }
}

async fn password_grant(
    state: &AppState,
    client: Client,
    fields: TokenFields,
) -> Result<TokenResponse, ApiError> {
    let username = present(fields.username.as_deref());
    let password = fields
        .password
        .clone()
        .filter(|password| !password.is_empty())
        .map(SecretString::from);
    let (username, password) = match (username, password) {
        (Some(username), Some(password)) => (username, password),
        (username, password) => {
            let issues = [
                username
                    .is_none()
                    .then(|| ValidationIssue::missing(&["body", "username"])),
                password
                    .is_none()
                    .then(|| ValidationIssue::missing(&["body", "password"])),
            ];
            return Err(ApiError::Validation(issues.into_iter().flatten().collect()));
        }
    };
    let requested = fields.requested_scopes()?;

    // Throttling comes before the password is checked, and reserves the attempt's place in
    // every count first: a blocked client learns nothing, not even from a correct password,
    // and a burst of concurrent guesses gets no more checks than the limit.
    let keys = state.throttle.keys(username, client.address);
    if let Admission::Refused { retry_after } = state.throttle.admit(&state.store, &keys).await? {
        tracing::warn!(client = %client.address, retry_after, "login refused: throttled");
        return Err(ApiError::Throttled { retry_after });
    }

    // A username that could not exist is looked up as nothing, and still costs one hash.
    let checked = async {
        let user = match Username::parse(username) {
            Ok(name) => state.store.find_user_by_username(&name).await?,
            Err(_) => None,
        };
        let verification = state
            .hasher
            .verify_for(
                keys.hashing_clients(),
                password,
                user.as_ref().map(|u| u.hashed_password.as_str()),
            )
            .await?;
        Ok::<_, ApiError>((user, verification))
    }
    .await;
    let (user, verification) = match checked {
        Ok(checked) => checked,
        Err(err) => {
            // The password was not checked: the attempt gives its places back.
            if let Err(err) = state.throttle.abandoned(&state.store, &keys).await {
                tracing::warn!(error = %err, "could not give back a login attempt");
            }
            return Err(err);
        }
    };
    let (Some(user), Verification::Valid { rehashed }) = (user, verification) else {
        tracing::info!(client = %client.address, "login refused: incorrect username or password");
        state.throttle.failed(&keys);
        return Err(ApiError::invalid_credentials());
    };
    if let Err(err) = state.throttle.succeeded(&state.store, &keys).await {
        tracing::warn!(error = %err, "could not clear the failed-login count");
    }
    // Each login starts a session: one account gets only so many a minute, from anywhere.
    if let Admission::Refused { retry_after } =
        state.throttle.admit_success(&state.store, &keys).await?
    {
        tracing::warn!(user_id = %user.id, client = %client.address, retry_after, "login refused: too many successful logins to this account");
        return Err(ApiError::TooManyRequests { retry_after });
    }
    if let Some(rehashed) = rehashed {
        // The login stands even if the upgrade cannot be stored; it is retried next time.
        match state.store.set_password_hash(user.id, rehashed).await {
            Ok(()) => {
                tracing::info!(user_id = %user.id, "password hash upgraded to current parameters")
            }
            Err(err) => {
                tracing::warn!(user_id = %user.id, error = %err, "could not store an upgraded password hash")
            }
        }
    }
    if user.disabled {
        return Err(inactive_user());
    }
    let granted = match requested {
        None => user.scopes.without(Scope::Admin),
        Some(requested) => narrowed(requested, &user.scopes, "user")?,
    };
    // Signed before the session is stored: a signing failure leaves no session behind that
    // nobody holds a token of.
    let session_id = uuid::Uuid::now_v7();
    let access = state.tokens.issue(user.id, session_id, &granted).await?;
    state
        .store
        .start_session(NewSession {
            id: session_id,
            user_id: user.id,
            scopes: granted.clone(),
            user_agent: client.user_agent,
            client_address: client.address.to_string(),
            lifetime: state.sessions.lifetime,
        })
        .await?;
    tracing::info!(user_id = %user.id, %session_id, scope = %granted, "logged in: session started");
    let refresh_token = state.refresh_tokens.issue(session_id, 0);
    Ok(token_response(access, &granted, refresh_token))
}

async fn refresh_grant(state: &AppState, fields: TokenFields) -> Result<TokenResponse, ApiError> {
    let Some(presented) = present(fields.refresh_token.as_deref()) else {
        return Err(ApiError::Validation(vec![ValidationIssue::missing(&[
            "body",
            "refresh_token",
        ])]));
    };
    let requested = fields.requested_scopes()?;
    let Some(presented) = presented_refresh_token(state, presented).await? else {
        tracing::info!("refresh refused: unknown refresh token");
        return Err(invalid_refresh_token());
    };
    let session = &presented.session;
    let now = chrono::Utc::now();
    if !session.state().is_live(now) {
        tracing::info!(session_id = %session.id, "refresh refused: session ended");
        return Err(invalid_refresh_token());
    }
    // Reuse is answered before anything about the user, and nothing is recorded on a refusal.
    let grace = state.sessions.reuse_grace;
    if !presented.exchangeable(now, grace) {
        return Err(reuse_detected(state, session.id).await);
    }
    let user = state
        .store
        .find_user_by_id(session.user_id)
        .await?
        .ok_or_else(invalid_refresh_token)?;
    if user.disabled {
        return Err(inactive_user());
    }
    // The login's scopes, less any the user has lost since.
    let allowed: ScopeSet = session
        .scopes
        .iter()
        .filter(|scope| user.scopes.contains(*scope))
        .collect();
    let granted = match requested {
        None => allowed,
        Some(requested) => narrowed(requested, &allowed, "session")?,
    };
    // Signed before the presented token is spent: a signing failure leaves the client its
    // token to retry with, rather than a spent one whose next use would end the session.
    let access = state.tokens.issue(user.id, session.id, &granted).await?;
    let generation = match state
        .store
        .exchange_refresh_token(session.id, presented.generation, grace)
        .await?
    {
        Exchange::Issue(generation) => generation,
        Exchange::Reused => return Err(reuse_detected(state, session.id).await),
        Exchange::SessionEnded => {
            tracing::info!(session_id = %session.id, "refresh refused: session ended meanwhile");
            return Err(invalid_refresh_token());
        }
    };
    tracing::info!(user_id = %user.id, session_id = %session.id, generation, scope = %granted, "refreshed");
    let refresh_token = state.refresh_tokens.issue(session.id, generation);
    Ok(token_response(access, &granted, refresh_token))
}

/// A presented refresh token that names a session of ours.
struct PresentedToken {
    session: Session,
    /// The generation it is, counting a token issued before generations as generation 0.
    generation: u64,
    /// When it was spent, for a token issued before generations that was exchanged then.
    legacy_spent_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl PresentedToken {
    /// Whether it may be exchanged: it is the session's newest token, or the one before it
    /// spent less than `grace` ago. Anything older is a spent token presented again.
    fn exchangeable(&self, now: chrono::DateTime<chrono::Utc>, grace: chrono::Duration) -> bool {
        let within_grace = |spent_at: Option<chrono::DateTime<chrono::Utc>>| {
            spent_at.is_some_and(|at| now - at <= grace)
        };
        if let Some(spent_at) = self.legacy_spent_at {
            return within_grace(Some(spent_at));
        }
        self.generation == self.session.refresh_generation
            || (self.generation.checked_add(1) == Some(self.session.refresh_generation)
                && within_grace(self.session.refresh_rotated_at))
    }
}

/// The session a presented refresh token names, if it is one of ours: checked by its MAC
/// first (a made-up token costs no database read), then the session is read.
async fn presented_refresh_token(
    state: &AppState,
    token: &str,
) -> Result<Option<PresentedToken>, ApiError> {
    Ok(match state.refresh_tokens.read(token) {
        PresentedRefreshToken::Generation {
            session_id,
            generation,
        } => state
            .store
            .find_session(session_id)
            .await?
            .map(|session| PresentedToken {
                session,
                generation,
                legacy_spent_at: None,
            }),
        PresentedRefreshToken::Legacy { hash } => state
            .store
            .find_legacy_refresh_token(&hash)
            .await?
            .map(|legacy| PresentedToken {
                session: legacy.session,
                generation: 0,
                legacy_spent_at: legacy.rotated_at,
            }),
        PresentedRefreshToken::Invalid => None,
    })
}

/// A refresh token presented again after it was exchanged: whoever holds the session's tokens,
/// it is not only its owner. The whole session ends (RFC 9700 §4.14.2).
async fn reuse_detected(state: &AppState, session_id: uuid::Uuid) -> ApiError {
    tracing::warn!(%session_id, "refresh token reused after rotation: session revoked");
    match state.store.revoke_session(session_id).await {
        Ok(_) => invalid_refresh_token(),
        Err(err) => err.into(),
    }
}

/// `requested`, if every scope of it is in `allowed` (the user's, or the session's).
fn narrowed(requested: ScopeSet, allowed: &ScopeSet, holder: &str) -> Result<ScopeSet, ApiError> {
    match requested.missing_from(allowed).first() {
        Some(first) => Err(ApiError::Grant {
            code: OAuthErrorCode::InvalidScope,
            description: format!("Scope not granted to this {holder}: {first}"),
        }),
        None => Ok(requested),
    }
}

fn token_response(access: IssuedToken, granted: &ScopeSet, refresh_token: String) -> TokenResponse {
    TokenResponse::Ok(
        Json(AccessToken {
            access_token: access.token,
            token_type: "bearer".into(),
            expires_in: access.expires_in,
            scope: granted.to_string(),
            refresh_token,
        }),
        "no-store".into(),
        "no-cache".into(),
    )
}

fn inactive_user() -> ApiError {
    ApiError::Grant {
        code: OAuthErrorCode::InvalidGrant,
        description: "Inactive user".into(),
    }
}

fn invalid_refresh_token() -> ApiError {
    ApiError::Grant {
        code: OAuthErrorCode::InvalidGrant,
        description: "Invalid refresh token".into(),
    }
}

async fn revoke(
    state: &AppState,
    body: &FormBody<RevocationRequestSchema>,
) -> Result<RevocationResponse, ApiError> {
    let object = body.object_or_empty()?;
    let mut issues = Vec::new();
    // The token is a secret like a password: any character; one that is not ours is unknown.
    let token = optional_any_string(&object, "token", &mut issues);
    let hint = optional_string(&object, "token_type_hint", &mut issues);
    optional_string(&object, "client_id", &mut issues);
    optional_any_string(&object, "client_secret", &mut issues);
    if !issues.is_empty() {
        return Err(ApiError::Validation(issues));
    }
    let Some(token) = present(token.as_deref()) else {
        return Err(ApiError::Validation(vec![ValidationIssue::missing(&[
            "body", "token",
        ])]));
    };
    // A JWT has dots, a refresh token none; the hint only decides which is tried first.
    let refresh_first = hint.as_deref() == Some("refresh_token") || !token.contains('.');
    let session = if refresh_first {
        match refresh_token_session(state, token).await? {
            Some(session) => Some(session),
            None => access_token_session(state, token).await?,
        }
    } else {
        match access_token_session(state, token).await? {
            Some(session) => Some(session),
            None => refresh_token_session(state, token).await?,
        }
    };
    match session {
        Some(session_id) if state.store.revoke_session(session_id).await? => {
            tracing::info!(%session_id, "session revoked at /token/revoke");
        }
        Some(_) => tracing::debug!("revocation of a token whose session had already ended"),
        None => tracing::debug!("revocation of an unknown token: nothing to do"),
    }
    Ok(RevocationResponse::Revoked("no-store".into()))
}

/// The session of a valid access token.
async fn access_token_session(
    state: &AppState,
    token: &str,
) -> Result<Option<uuid::Uuid>, ApiError> {
    match state.tokens.verify(token.trim()).await {
        // The key's status as the per-request check sees it: a key retired since it was
        // cached (by another instance, or the command line) no longer makes a token valid.
        Ok(verified) => match verified.kid.as_deref().zip(verified.key_tag.as_deref()) {
            Some((kid, tag)) if !state.tokens.keys().is_still_active(kid, tag).await? => Ok(None),
            _ => Ok(Some(verified.session_id)),
        },
        Err(VerifyError::Invalid(_)) => Ok(None),
        // Its key could not be looked up: not the same as a token that is not ours.
        Err(VerifyError::Store(err)) => Err(err.into()),
    }
}

/// The session of a refresh token of ours, spent or not.
async fn refresh_token_session(
    state: &AppState,
    token: &str,
) -> Result<Option<uuid::Uuid>, ApiError> {
    Ok(presented_refresh_token(state, token)
        .await?
        .map(|presented| presented.session.id))
}

/// `None` for an absent or empty field (Swagger UI sends `grant_type=&scope=`).
fn present(field: Option<&str>) -> Option<&str> {
    // `str::is_empty` by name: poem-openapi's `Type` trait has an `is_empty` of its own.
    field.filter(|value| !str::is_empty(value))
}

/// A client-supplied name fit to echo in a message: printable ASCII, at most 64 characters.
fn printable(raw: &str) -> String {
    raw.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_count_as_absent() {
        assert_eq!(present(Some("")), None);
        assert_eq!(present(None), None);
        assert_eq!(present(Some("me")), Some("me"));
    }

    #[test]
    fn echoed_names_are_short_and_printable() {
        assert_eq!(printable("ad\nmin"), "ad?min");
        assert_eq!(printable("a\u{0}b"), "a?b");
        assert_eq!(printable(&"x".repeat(100)).len(), 64);
    }
}
