//! `POST /token`: the OAuth 2.0 password grant (RFC 6749 §4.3) and refresh grant (§6), and
//! `POST /token/revoke` (RFC 7009): the forms parsed here, the rules in `auth::grants`.

use std::net::IpAddr;

use poem::Request;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json, types::Password};
use secrecy::{ExposeSecret, SecretString};

use super::{
    ApiTags, AppState,
    error::{ApiError, OAuthErrorCode, RevocationError, TokenError, ValidationIssue},
    input::{FormBody, optional_any_string, optional_string},
};
use crate::{
    auth::{Client, PasswordLogin},
    domain::ScopeSet,
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

#[derive(Default)]
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
        let client = client_of(request, state.client_ip_header.as_ref());
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
        request: &Request,
        state: poem::web::Data<&AppState>,
        body: FormBody<RevocationRequestSchema>,
    ) -> Result<RevocationResponse, RevocationError> {
        let client = client_of(request, state.client_ip_header.as_ref());
        Ok(revoke(&state, client, &body).await?)
    }
}

/// Who is asking: the client address (see [`client_address`]) and its `User-Agent`.
pub(super) fn client_of(
    request: &Request,
    address_header: Option<&poem::http::HeaderName>,
) -> Client {
    Client {
        address: client_address(request, address_header),
        user_agent: present(
            request
                .headers()
                .get(poem::http::header::USER_AGENT)
                .and_then(|agent| agent.to_str().ok()),
        )
        .map(str::to_owned),
        request_id: request
            .extensions()
            .get::<crate::telemetry::RequestId>()
            .map(|id| id.0.clone()),
    }
}

/// The audit context of a request made by `caller`: who, from where, in which session.
pub(super) fn caller_context(
    request: &Request,
    state: &AppState,
    caller: &crate::auth::Authenticated,
) -> crate::audit::AuditContext {
    crate::audit::AuditContext::of(client_of(request, state.client_ip_header.as_ref()))
        .acting(caller.user.id, caller.session_id())
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
    password: Option<SecretString>,
    refresh_token: Option<SecretString>,
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
        let password = optional_any_string(&object, "password", &mut issues)
            .filter(|password| !password.is_empty())
            .map(SecretString::from);
        let refresh_token = optional_any_string(&object, "refresh_token", &mut issues)
            .filter(|token| !token.is_empty())
            .map(SecretString::from);
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
    let granted = match present(fields.grant_type.as_deref()) {
        None | Some("password") => {
            let login = password_login(&fields)?;
            state.grants.password_grant(client, login).await?
        }
        Some("refresh_token") => {
            let Some(presented) = fields.refresh_token.as_ref() else {
                return Err(ApiError::Validation(vec![ValidationIssue::missing(&[
                    "body",
                    "refresh_token",
                ])]));
            };
            let requested = fields.requested_scopes()?;
            state
                .grants
                .refresh_grant(client, presented.expose_secret(), requested)
                .await?
        }
        Some(_) => {
            return Err(ApiError::Grant {
                code: OAuthErrorCode::UnsupportedGrantType,
                description:
                    "Unsupported grant type; this server supports password and refresh_token".into(),
            });
        }
    };
    Ok(TokenResponse::Ok(
        Json(AccessToken {
            access_token: granted.access.token,
            token_type: "bearer".into(),
            expires_in: granted.access.expires_in,
            scope: granted.scopes.to_string(),
            refresh_token: granted.refresh_token,
        }),
        "no-store".into(),
        "no-cache".into(),
    ))
}

/// The password grant's fields: both `username` and `password`, or a 422 naming each missing.
fn password_login(fields: &TokenFields) -> Result<PasswordLogin<'_>, ApiError> {
    let username = present(fields.username.as_deref());
    match (username, fields.password.clone()) {
        (Some(username), Some(password)) => Ok(PasswordLogin {
            username,
            password,
            requested: fields.requested_scopes()?,
        }),
        (username, password) => {
            let issues = [
                username
                    .is_none()
                    .then(|| ValidationIssue::missing(&["body", "username"])),
                password
                    .is_none()
                    .then(|| ValidationIssue::missing(&["body", "password"])),
            ];
            Err(ApiError::Validation(issues.into_iter().flatten().collect()))
        }
    }
}

async fn revoke(
    state: &AppState,
    client: Client,
    body: &FormBody<RevocationRequestSchema>,
) -> Result<RevocationResponse, ApiError> {
    let object = body.object_or_empty()?;
    let mut issues = Vec::new();
    // The token is a secret like a password: any character; one that is not ours is unknown.
    let token = optional_any_string(&object, "token", &mut issues).map(SecretString::from);
    let hint = optional_string(&object, "token_type_hint", &mut issues);
    optional_string(&object, "client_id", &mut issues);
    optional_any_string(&object, "client_secret", &mut issues);
    if !issues.is_empty() {
        return Err(ApiError::Validation(issues));
    }
    let Some(token) = token
        .as_ref()
        .map(ExposeSecret::expose_secret)
        .filter(|t| !t.is_empty())
    else {
        return Err(ApiError::Validation(vec![ValidationIssue::missing(&[
            "body", "token",
        ])]));
    };
    // A JWT has dots, a refresh token none; the hint only decides which is tried first.
    let refresh_first = hint.as_deref() == Some("refresh_token") || !token.contains('.');
    state.grants.revoke(client, token, refresh_first).await?;
    Ok(RevocationResponse::Revoked("no-store".into()))
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
