//! Discovery: the public keys that verify access tokens (a JWK Set, RFC 7517) and the server's
//! metadata (RFC 8414), from which resource servers and clients configure themselves.

use jsonwebtoken::jwk::Jwk;
use poem::Request;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use super::{
    ApiTags, AppState,
    error::{ApiError, KeySetError, MetadataError},
};
use crate::domain::{Scope, origin::is_host_and_port};

/// Both documents change only when a key is rotated or retired (or the service is
/// reconfigured): a minute of caching spares the database, and a verifier that meets an unknown
/// `kid` refetches anyway.
const CACHE_CONTROL: &str = "public, max-age=60";

/// A public key that verifies access tokens (RFC 7517; RFC 8037 for Ed25519).
#[derive(Debug, Object)]
#[oai(rename = "Jwk")]
pub struct JwkBody {
    /// Key type: `OKP` (Ed25519) or `EC` (P-256).
    pub kty: String,
    /// Curve: `Ed25519` or `P-256`.
    pub crv: String,
    /// The public key (Ed25519) or its x coordinate (P-256), base64url.
    pub x: String,
    /// The y coordinate (P-256 only), base64url.
    #[oai(skip_serializing_if_is_none)]
    pub y: Option<String>,
    /// The key's RFC 7638 JWK thumbprint; the tokens it signs name it in their `kid` header.
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// `sig`.
    #[oai(rename = "use")]
    pub usage: String,
}

/// The published form of a key: this schema's members, in its order, with the values
/// jsonwebtoken's `Jwk` gives them. (`Jwk` itself serializes its common members first, `use`,
/// `alg` and `kid` before `kty`; the set is published as documented, and as it always was.)
impl From<Jwk> for JwkBody {
    fn from(jwk: Jwk) -> Self {
        let members = serde_json::to_value(&jwk).expect("a JWK serializes");
        // Every key published is Ed25519 or P-256 (`auth::keys`), so each member but `y` of
        // an Ed25519 key is there.
        let member = |name: &str| {
            members
                .get(name)
                .and_then(|value| value.as_str())
                .map(str::to_owned)
        };
        Self {
            kty: member("kty").unwrap_or_default(),
            crv: member("crv").unwrap_or_default(),
            x: member("x").unwrap_or_default(),
            y: member("y"),
            kid: member("kid").unwrap_or_default(),
            alg: member("alg").unwrap_or_default(),
            usage: member("use").unwrap_or_default(),
        }
    }
}

/// A JWK Set (RFC 7517 §5).
#[derive(Debug, Object)]
#[oai(rename = "JwkSet")]
pub struct JwkSetBody {
    /// Every EdDSA and ES256 key that is not retired, newest first: the one signing new tokens
    /// is the newest of the configured algorithm; others are published ahead of a switch. The
    /// HS256 secret is never published.
    pub keys: Vec<JwkBody>,
}

/// OAuth 2.0 authorization server metadata (RFC 8414).
#[derive(Debug, Object)]
#[oai(rename = "AuthorizationServerMetadata")]
pub struct ServerMetadata {
    /// The `iss` claim of access tokens (`PORTCULLIS_ISSUER`).
    pub issuer: String,
    /// Where to log in, and to refresh.
    pub token_endpoint: String,
    /// Where to revoke a refresh token (RFC 7009).
    pub revocation_endpoint: String,
    /// The JWK Set that verifies access tokens.
    pub jwks_uri: String,
    /// `password` and `refresh_token`.
    pub grant_types_supported: Vec<String>,
    /// Empty: there is no authorization endpoint.
    pub response_types_supported: Vec<String>,
    /// Every scope a token can carry.
    pub scopes_supported: Vec<String>,
    /// `none`: clients do not authenticate.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// `none`: clients do not authenticate.
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// The API's documentation (Swagger UI).
    pub service_documentation: String,
}

#[derive(ApiResponse)]
pub enum JwksResponse {
    /// The public signing keys.
    #[oai(status = 200)]
    Ok(
        Json<JwkSetBody>,
        /// `public, max-age=60`.
        #[oai(header = "Cache-Control")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum MetadataResponse {
    /// The server's metadata.
    #[oai(status = 200)]
    Ok(
        Json<ServerMetadata>,
        /// `public, max-age=60`.
        #[oai(header = "Cache-Control")]
        String,
    ),
}

#[derive(Default)]
pub struct WellKnownApi;

#[OpenApi(tag = "ApiTags::Discovery")]
impl WellKnownApi {
    /// Signing keys
    ///
    /// The public keys that verify access tokens signed with EdDSA or ES256: a token's `kid`
    /// header names one of them. A retired key is no longer listed and its tokens are refused.
    #[oai(path = "/.well-known/jwks.json", method = "get", operation_id = "jwks")]
    async fn jwks(&self, state: poem::web::Data<&AppState>) -> Result<JwksResponse, KeySetError> {
        let set = state.tokens.keys().jwks().await.map_err(ApiError::from)?;
        Ok(JwksResponse::Ok(
            Json(JwkSetBody {
                keys: set.keys.into_iter().map(JwkBody::from).collect(),
            }),
            CACHE_CONTROL.into(),
        ))
    }

    /// Server metadata
    ///
    /// Where the endpoints are and what they support (RFC 8414). The URLs start with the
    /// configured public URL, or else with `http://` and the request's `Host`.
    #[oai(
        path = "/.well-known/oauth-authorization-server",
        method = "get",
        operation_id = "authorization_server_metadata"
    )]
    async fn metadata(
        &self,
        request: &Request,
        state: poem::web::Data<&AppState>,
    ) -> Result<MetadataResponse, MetadataError> {
        let base = match &state.public_url {
            Some(url) => url.clone(),
            None => format!(
                "http://{}",
                request_host(request).ok_or(ApiError::InvalidHost)?
            ),
        };
        let strings = |values: &[&str]| values.iter().map(|&v| v.to_owned()).collect();
        Ok(MetadataResponse::Ok(
            Json(ServerMetadata {
                issuer: state.tokens.issuer().to_owned(),
                token_endpoint: format!("{base}/token"),
                revocation_endpoint: format!("{base}/token/revoke"),
                jwks_uri: format!("{base}/.well-known/jwks.json"),
                grant_types_supported: strings(&["password", "refresh_token"]),
                response_types_supported: Vec::new(),
                scopes_supported: Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
                token_endpoint_auth_methods_supported: strings(&["none"]),
                revocation_endpoint_auth_methods_supported: strings(&["none"]),
                service_documentation: format!("{base}/docs"),
            }),
            CACHE_CONTROL.into(),
        ))
    }
}

/// The request's `Host` (HTTP/2: its authority), when it is a plain `host[:port]`.
pub(super) fn request_host(request: &Request) -> Option<&str> {
    let host = match request.headers().get(poem::http::header::HOST) {
        Some(value) => value.to_str().ok()?,
        None => request.uri().authority()?.as_str(),
    };
    is_host_and_port(host).then_some(host)
}
