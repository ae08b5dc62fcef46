//! Access tokens: JWTs (RFC 9068 profile) signed with a pinned algorithm.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{config::TokenSettings, domain::ScopeSet};

/// The `typ` header of our access tokens (RFC 9068 §2.1).
const TOKEN_TYPE: &str = "at+jwt";
const ALGORITHM: Algorithm = Algorithm::HS256;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    /// The user's id; never the username, which a user may share with a former account.
    sub: Uuid,
    /// The session the token belongs to: revoking it refuses the token at once.
    sid: Uuid,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: Uuid,
    scope: String,
}

/// A freshly signed token.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub scopes: ScopeSet,
}

/// Any reason a presented token is refused; deliberately without detail for the client.
#[derive(Debug, thiserror::Error)]
#[error("invalid access token: {0}")]
pub struct InvalidToken(String);

/// Signs and verifies access tokens; keys are built once.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    issuer: String,
    audience: String,
}

impl AccessTokens {
    pub fn new(settings: &TokenSettings) -> Self {
        let secret = settings.secret.expose_secret();
        let mut validation = Validation::new(ALGORITHM);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        // `sid` is required too: its absence fails deserializing the claims.
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl: settings.ttl,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        }
    }

    pub fn issue(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        scopes: &ScopeSet,
    ) -> anyhow::Result<IssuedToken> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id,
            sid: session_id,
            exp: now + self.ttl.as_secs(),
            iat: now,
            nbf: now,
            jti: Uuid::new_v4(),
            scope: scopes.to_string(),
        };
        let mut header = Header::new(ALGORITHM);
        header.typ = Some(TOKEN_TYPE.to_owned());
        Ok(IssuedToken {
            token: jsonwebtoken::encode(&header, &claims, &self.encoding)?,
            expires_in: self.ttl.as_secs(),
        })
    }

    pub fn verify(&self, token: &str) -> Result<VerifiedToken, InvalidToken> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| InvalidToken(err.to_string()))?;
        // Refuses an ID token or any other JWT signed with the same key (RFC 9068 §4).
        if !data
            .header
            .typ
            .as_deref()
            .is_some_and(|typ| typ.eq_ignore_ascii_case(TOKEN_TYPE))
        {
            return Err(InvalidToken("not an access token".into()));
        }
        let scopes = ScopeSet::parse(&data.claims.scope)
            .map_err(|unknown| InvalidToken(format!("unknown scope {unknown:?}")))?;
        Ok(VerifiedToken {
            user_id: data.claims.sub,
            session_id: data.claims.sid,
            scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine as _;
    use secrecy::SecretBox;

    use super::*;

    fn settings(secret: &[u8]) -> TokenSettings {
        TokenSettings {
            secret: Arc::new(SecretBox::new(secret.to_vec().into_boxed_slice())),
            algorithm: crate::config::SigningAlgorithm::Hs256,
            ttl: Duration::from_secs(1800),
            issuer: "portcullis".into(),
            audience: "portcullis".into(),
        }
    }

    fn tokens() -> AccessTokens {
        AccessTokens::new(&settings(&[7u8; 32]))
    }

    fn b64(json: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let tokens = tokens();
        let id = Uuid::new_v4();
        let scopes = ScopeSet::parse("me items").unwrap();
        let session = Uuid::new_v4();
        let issued = tokens.issue(id, session, &scopes).unwrap();
        assert_eq!(issued.expires_in, 1800);
        let verified = tokens.verify(&issued.token).unwrap();
        assert_eq!(verified.user_id, id);
        assert_eq!(verified.session_id, session);
        assert_eq!(verified.scopes, scopes);
        let header = jsonwebtoken::decode_header(&issued.token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, Algorithm::HS256);
    }

    #[test]
    fn a_token_from_another_secret_is_refused() {
        let other = AccessTokens::new(&settings(&[8u8; 32]));
        let token = other
            .issue(Uuid::new_v4(), Uuid::new_v4(), &ScopeSet::default())
            .unwrap();
        assert!(tokens().verify(&token.token).is_err());
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let payload = format!(
            r#"{{"iss":"portcullis","aud":"portcullis","sub":"{}","exp":9999999999,"iat":1,"nbf":1,"jti":"{}","scope":"me"}}"#,
            Uuid::new_v4(),
            Uuid::new_v4()
        );
        let token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"at+jwt"}"#),
            b64(&payload)
        );
        assert!(tokens().verify(&token).is_err());
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let mut other = settings(&[7u8; 32]);
        other.audience = "elsewhere".into();
        let token = AccessTokens::new(&other)
            .issue(Uuid::new_v4(), Uuid::new_v4(), &ScopeSet::default())
            .unwrap();
        assert!(tokens().verify(&token.token).is_err());
    }

    #[test]
    fn a_jwt_that_is_not_an_access_token_is_refused() {
        let claims = Claims {
            iss: "portcullis".into(),
            aud: "portcullis".into(),
            sub: Uuid::new_v4(),
            sid: Uuid::new_v4(),
            exp: 9_999_999_999,
            iat: 1,
            nbf: 1,
            jti: Uuid::new_v4(),
            scope: "me".into(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert!(tokens().verify(&token).is_err());
    }
}
