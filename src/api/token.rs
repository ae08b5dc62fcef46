//! `POST /token`: the OAuth 2.0 password grant (RFC 6749 §4.3).

use std::net::IpAddr;

use poem::Request;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json, types::Password};
use secrecy::SecretString;

use super::{
    ApiTags, AppState,
    error::{ApiError, OAuthErrorCode, TokenError, ValidationIssue},
    input::{FormBody, optional_string},
};
use crate::{
    auth::{AttemptKeys, Verification},
    domain::{Scope, ScopeSet, Username},
};

/// A token request (RFC 6749 §4.3.2). Empty fields count as absent.
///
/// Documented form-encoded only: the same fields as a JSON object are accepted too, but
/// declaring two content types breaks openapi-python-client (its bug #1451).
#[derive(Object)]
#[oai(rename = "TokenRequest")]
struct TokenRequestSchema {
    /// `password` when present.
    grant_type: Option<String>,
    /// The username (any case).
    #[oai(validator(min_length = 1))]
    username: String,
    /// The password.
    #[oai(validator(min_length = 1))]
    password: Password,
    /// Space-separated scopes to grant (`me`, `items`, `admin`). Default: every scope the user
    /// holds except `admin`, which must be asked for by name.
    scope: Option<String>,
    /// Accepted and ignored while no clients are configured.
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
}

#[derive(ApiResponse)]
pub enum TokenResponse {
    /// Logged in.
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

pub struct TokenApi;

#[OpenApi(tag = "ApiTags::Auth")]
impl TokenApi {
    /// Log in
    ///
    /// Exchanges a username and password for a bearer access token (OAuth 2.0 password grant,
    /// meant for first-party clients). An unknown username and a wrong password get the same
    /// answer.
    #[oai(
        path = "/token",
        method = "post",
        operation_id = "login_for_access_token"
    )]
    async fn login(
        &self,
        request: &Request,
        state: poem::web::Data<&AppState>,
        body: FormBody<TokenRequestSchema>,
    ) -> Result<TokenResponse, TokenError> {
        let client = client_address(request, state.client_ip_header.as_ref());
        Ok(login(&state, client, &body).await?)
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
    scope: Option<String>,
}

impl TokenFields {
    fn read(body: &FormBody<TokenRequestSchema>) -> Result<Self, ApiError> {
        let object = body.object_or_empty()?;
        let mut issues = Vec::new();
        let mut field = |name| optional_string(&object, name, &mut issues);
        let fields = Self {
            grant_type: field("grant_type"),
            username: field("username"),
            password: field("password"),
            scope: field("scope"),
        };
        field("client_id");
        field("client_secret");
        if issues.is_empty() {
            Ok(fields)
        } else {
            Err(ApiError::Validation(issues))
        }
    }
}

async fn login(
    state: &AppState,
    client: IpAddr,
    body: &FormBody<TokenRequestSchema>,
) -> Result<TokenResponse, ApiError> {
    let fields = TokenFields::read(body)?;
    if let Some(grant_type) = present(fields.grant_type.as_deref())
        && grant_type != "password"
    {
        return Err(ApiError::Grant {
            code: OAuthErrorCode::UnsupportedGrantType,
            description: "Unsupported grant type; this server supports password".into(),
        });
    }
    let username = present(fields.username.as_deref());
    let password = fields
        .password
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
    let requested = match present(fields.scope.as_deref()) {
        None => None,
        Some(raw) => Some(ScopeSet::parse(raw).map_err(|unknown| ApiError::Grant {
            code: OAuthErrorCode::InvalidScope,
            description: format!("Unknown scope: {}", printable(&unknown)),
        })?),
    };

    // Throttling comes before the password is checked: a blocked client learns nothing, not
    // even from a correct password.
    let keys = AttemptKeys::new(username, client);
    if let Some(until) = state.throttle.blocked_until(&state.store, &keys).await? {
        let wait_ms = (until - chrono::Utc::now())
            .num_milliseconds()
            .max(0)
            .unsigned_abs();
        let retry_after = u32::try_from(wait_ms.div_ceil(1000))
            .unwrap_or(u32::MAX)
            .max(1);
        tracing::warn!(%client, retry_after, "login refused: throttled");
        return Err(ApiError::Throttled { retry_after });
    }

    // A username that could not exist is looked up as nothing, and still costs one hash.
    let user = match Username::parse(username) {
        Ok(name) => state.store.find_user_by_username(&name).await?,
        Err(_) => None,
    };
    let verification = state
        .hasher
        .verify(password, user.as_ref().map(|u| u.hashed_password.as_str()))
        .await?;
    let (Some(user), Verification::Valid { rehashed }) = (user, verification) else {
        tracing::info!(%client, "login refused: incorrect username or password");
        // The 401 stands even if the failure cannot be counted; the error is logged.
        if let Err(err) = state.throttle.record_failure(&state.store, &keys).await {
            tracing::error!(error = %err, "could not count a failed login");
        }
        return Err(ApiError::invalid_credentials());
    };
    if let Err(err) = state.throttle.record_success(&state.store, &keys).await {
        tracing::warn!(error = %err, "could not clear the failed-login count");
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
        return Err(ApiError::Grant {
            code: OAuthErrorCode::InvalidGrant,
            description: "Inactive user".into(),
        });
    }
    let granted = match requested {
        None => user.scopes.without(Scope::Admin),
        Some(requested) => {
            let refused = requested.missing_from(&user.scopes);
            if let Some(first) = refused.first() {
                return Err(ApiError::Grant {
                    code: OAuthErrorCode::InvalidScope,
                    description: format!("Scope not granted to this user: {first}"),
                });
            }
            requested
        }
    };
    let issued = state.tokens.issue(user.id, &granted).await?;
    tracing::info!(user_id = %user.id, scope = %granted, "access token issued");
    Ok(TokenResponse::Ok(
        Json(AccessToken {
            access_token: issued.token,
            token_type: "bearer".into(),
            expires_in: issued.expires_in,
            scope: granted.to_string(),
        }),
        "no-store".into(),
        "no-cache".into(),
    ))
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
