//! Access tokens: JWTs (RFC 9068 profile) signed with a pinned algorithm: HS256 with the
//! configured secret, or the stored asymmetric keys (`auth::keys`), never both.

use std::{sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    auth::keys::{KeyAlgorithm, KeyError, SigningKeys, Verifier},
    config::TokenSettings,
    db::StoreError,
    domain::ScopeSet,
};

/// The `typ` header of our access tokens (RFC 9068 §2.1).
const TOKEN_TYPE: &str = "at+jwt";
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;
/// Longest `kid` looked up: ours are 43 characters; anything longer is refused unread.
const MAX_KID_LENGTH: usize = 64;

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
    /// The stored key that signed it; `None` for HS256.
    pub kid: Option<String>,
    /// The tag that key's row carries while active and authentic (the per-request check
    /// requires it); `None` for HS256.
    pub key_tag: Option<String>,
}

/// Any reason a presented token is refused; deliberately without detail for the client.
#[derive(Debug, thiserror::Error)]
#[error("invalid access token: {0}")]
pub struct InvalidToken(String);

/// Why a presented token could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Invalid(#[from] InvalidToken),
    /// Its key could not be looked up.
    #[error("cannot load the verification key")]
    Store(#[from] StoreError),
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot sign the access token")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// How tokens are signed, as configured.
enum SigningMode {
    /// HS256 with the configured secret; keys built once.
    SharedSecret {
        encoding: EncodingKey,
        verifier: Arc<Verifier>,
    },
    /// The stored asymmetric keys: the newest signs, each verifies the tokens naming its kid.
    StoredKeys,
}

/// Signs and verifies access tokens.
pub struct AccessTokens {
    mode: SigningMode,
    keys: SigningKeys,
    /// Everything but the algorithm, which is set per token from its key.
    validation: Validation,
    ttl: Duration,
    issuer: String,
    audience: String,
}

impl AccessTokens {
    pub fn new(settings: &TokenSettings, keys: SigningKeys) -> Self {
        let mode = if settings.algorithm.is_asymmetric() {
            SigningMode::StoredKeys
        } else {
            let secret = settings.secret.expose_secret();
            SigningMode::SharedSecret {
                encoding: EncodingKey::from_secret(secret),
                verifier: Arc::new(Verifier {
                    algorithm: Algorithm::HS256,
                    key: DecodingKey::from_secret(secret),
                    active_tag: None,
                }),
            }
        };
        // Pinned: the one algorithm every accepted token has (the stored keys' verifiers are
        // of it too), so the validation is built once, here.
        let algorithm = if settings.algorithm.is_asymmetric() {
            KeyAlgorithm::default_for(settings.algorithm).jwt()
        } else {
            Algorithm::HS256
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        // `sid` is required too: its absence fails deserializing the claims.
        Self {
            mode,
            keys,
            validation,
            ttl: settings.ttl,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        }
    }

    /// The `iss` of issued tokens, required on presented ones.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The stored signing keys (published at `/.well-known/jwks.json`).
    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    pub async fn issue(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        scopes: &ScopeSet,
    ) -> Result<IssuedToken, IssueError> {
        let now = jsonwebtoken::get_current_timestamp();
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
        let token = match &self.mode {
            SigningMode::SharedSecret { encoding, .. } => {
                jsonwebtoken::encode(&header(Algorithm::HS256, None), &claims, encoding)?
            }
            SigningMode::StoredKeys => {
                let signer = self.keys.signer().await?;
                let header = header(signer.algorithm, Some(signer.kid.clone()));
                jsonwebtoken::encode(&header, &claims, &signer.key)?
            }
        };
        Ok(IssuedToken {
            token,
            expires_in: self.ttl.as_secs(),
        })
    }

    /// Checks a token against the configured way of signing only: with HS256 configured, an
    /// HS256 token under the secret; else a token naming a stored key in `kid` and that key's
    /// algorithm in `alg`. A token naming any other algorithm is refused before its signature
    /// is looked at.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| InvalidToken(format!("unreadable header: {err}")))?;
        // RFC 7515 §4.1.11: a recipient must refuse a token whose `crit` names an extension it
        // does not understand, and we understand none (an empty list is not allowed either).
        if header.crit.is_some() {
            return Err(
                InvalidToken("a critical header extension is not understood".into()).into(),
            );
        }
        let (verifier, kid) = match &self.mode {
            SigningMode::SharedSecret { verifier, .. } => (verifier.clone(), None),
            SigningMode::StoredKeys => {
                let kid = header
                    .kid
                    .filter(|kid| is_plausible_kid(kid))
                    .ok_or_else(|| InvalidToken("no usable kid".into()))?;
                let verifier = self
                    .keys
                    .verifier(&kid)
                    .await?
                    .ok_or_else(|| InvalidToken(format!("unknown or retired kid {kid:?}")))?;
                // Always set for a stored key; checked so that the per-request check of the
                // key's status can never be skipped.
                if verifier.active_tag.is_none() {
                    return Err(InvalidToken(format!("kid {kid:?} has no active tag")).into());
                }
                (verifier, Some(kid))
            }
        };
        if header.alg != verifier.algorithm {
            return Err(InvalidToken(format!(
                "{:?} token where {:?} is expected",
                header.alg, verifier.algorithm
            ))
            .into());
        }
        let data = jsonwebtoken::decode::<Claims>(token, &verifier.key, &self.validation)
            .map_err(|err| InvalidToken(err.to_string()))?;
        // Refuses an ID token or any other JWT signed with the same key (RFC 9068 §4).
        if !data
            .header
            .typ
            .as_deref()
            .is_some_and(|typ| typ.eq_ignore_ascii_case(TOKEN_TYPE))
        {
            return Err(InvalidToken("not an access token".into()).into());
        }
        let scopes = ScopeSet::parse(&data.claims.scope)
            .map_err(|unknown| InvalidToken(format!("unknown scope {unknown:?}")))?;
        Ok(VerifiedToken {
            user_id: data.claims.sub,
            session_id: data.claims.sid,
            scopes,
            kid,
            key_tag: verifier.active_tag.clone(),
        })
    }
}

fn header(algorithm: Algorithm, kid: Option<String>) -> Header {
    let mut header = Header::new(algorithm);
    header.typ = Some(TOKEN_TYPE.to_owned());
    header.kid = kid;
    header
}

/// Whether `kid` could be one of ours (base64url, not too long): anything else is refused
/// without a database lookup.
fn is_plausible_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LENGTH
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::{
        auth::keys::{self, testing},
        config::SigningAlgorithm,
        db::Store,
    };

    const SECRET: &[u8] = &[7u8; 32];

    fn settings(secret: &[u8]) -> TokenSettings {
        testing::settings(secret, SigningAlgorithm::Hs256)
    }

    async fn tokens_with(settings: &TokenSettings, store: Store) -> AccessTokens {
        let keys = SigningKeys::start(store, settings).await.unwrap();
        AccessTokens::new(settings, keys)
    }

    async fn tokens() -> AccessTokens {
        tokens_with(&settings(SECRET), testing::store().await).await
    }

    fn b64(json: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn claims() -> Claims {
        Claims {
            iss: "portcullis".into(),
            aud: "portcullis".into(),
            sub: Uuid::new_v4(),
            sid: Uuid::new_v4(),
            exp: 9_999_999_999,
            iat: 1,
            nbf: 1,
            jti: Uuid::new_v4(),
            scope: "me".into(),
        }
    }

    fn invalid(result: Result<VerifiedToken, VerifyError>) -> bool {
        matches!(result, Err(VerifyError::Invalid(_)))
    }

    #[tokio::test]
    async fn an_issued_token_verifies_with_its_claims() {
        let tokens = tokens().await;
        let id = Uuid::new_v4();
        let scopes = ScopeSet::parse("me items").unwrap();
        let session = Uuid::new_v4();
        let issued = tokens.issue(id, session, &scopes).await.unwrap();
        assert_eq!(issued.expires_in, 1800);
        let verified = tokens.verify(&issued.token).await.unwrap();
        assert_eq!(
            verified,
            VerifiedToken {
                user_id: id,
                session_id: session,
                scopes,
                kid: None,
                key_tag: None,
            }
        );
        let header = jsonwebtoken::decode_header(&issued.token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.kid, None);
    }

    #[tokio::test]
    async fn a_token_from_another_secret_is_refused() {
        let other = tokens_with(&settings(&[8u8; 32]), testing::store().await).await;
        let token = other
            .issue(Uuid::new_v4(), Uuid::new_v4(), &ScopeSet::default())
            .await
            .unwrap();
        assert!(invalid(tokens().await.verify(&token.token).await));
    }

    #[tokio::test]
    async fn an_unsigned_token_is_refused() {
        let payload = serde_json::to_string(&claims()).unwrap();
        let token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"at+jwt"}"#),
            b64(&payload)
        );
        assert!(invalid(tokens().await.verify(&token).await));
    }

    #[tokio::test]
    async fn a_token_for_another_audience_is_refused() {
        let mut other = settings(SECRET);
        other.audience = "elsewhere".into();
        let token = tokens_with(&other, testing::store().await)
            .await
            .issue(Uuid::new_v4(), Uuid::new_v4(), &ScopeSet::default())
            .await
            .unwrap();
        assert!(invalid(tokens().await.verify(&token.token).await));
    }

    #[tokio::test]
    async fn a_jwt_that_is_not_an_access_token_is_refused() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(invalid(tokens().await.verify(&token).await));
    }

    #[tokio::test]
    async fn a_token_signed_with_a_stored_key_names_it_and_verifies() {
        for (configured, algorithm) in [
            (SigningAlgorithm::EdDsa, Algorithm::EdDSA),
            (SigningAlgorithm::Es256, Algorithm::ES256),
        ] {
            let settings = testing::settings(SECRET, configured);
            let store = testing::store().await;
            let tokens = tokens_with(&settings, store.clone()).await;
            let id = Uuid::new_v4();
            let issued = tokens
                .issue(id, Uuid::new_v4(), &ScopeSet::default())
                .await
                .unwrap();
            let header = jsonwebtoken::decode_header(&issued.token).unwrap();
            let current = keys::list(&store).await.unwrap()[0].kid.clone();
            assert_eq!(header.alg, algorithm);
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.kid.as_deref(), Some(current.as_str()));
            let verified = tokens.verify(&issued.token).await.unwrap();
            assert_eq!(verified.user_id, id);
            assert_eq!(verified.kid, Some(current));
        }
    }

    #[tokio::test]
    async fn with_stored_keys_configured_an_hs256_token_is_refused() {
        let store = testing::store().await;
        let hs256 = tokens_with(&settings(SECRET), store.clone()).await;
        let eddsa = tokens_with(&testing::settings(SECRET, SigningAlgorithm::EdDsa), store).await;
        let kid = eddsa
            .issue(Uuid::new_v4(), Uuid::new_v4(), &ScopeSet::default())
            .await
            .unwrap();
        let kid = jsonwebtoken::decode_header(&kid.token).unwrap().kid;

        let plain = hs256
            .issue(Uuid::new_v4(), Uuid::new_v4(), &ScopeSet::default())
            .await
            .unwrap();
        assert!(invalid(eddsa.verify(&plain.token).await), "no kid");
        // The same, naming a real key: HS256 is still not what is configured.
        let named = jsonwebtoken::encode(
            &header(Algorithm::HS256, kid),
            &claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(invalid(eddsa.verify(&named).await), "HS256 naming a kid");
    }

    #[tokio::test]
    async fn the_public_key_used_as_an_hmac_secret_is_refused() {
        let store = testing::store().await;
        let eddsa = tokens_with(
            &testing::settings(SECRET, SigningAlgorithm::EdDsa),
            store.clone(),
        )
        .await;
        eddsa
            .issue(Uuid::new_v4(), Uuid::new_v4(), &ScopeSet::default())
            .await
            .unwrap();
        let jwk = SigningKeys::new(store, &settings(SECRET))
            .jwks()
            .await
            .unwrap()
            .keys[0]
            .clone();
        let (x, kid) = (
            serde_json::to_value(&jwk).unwrap()["x"]
                .as_str()
                .unwrap()
                .to_owned(),
            jwk.common.key_id.unwrap(),
        );
        let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&x)
            .unwrap();
        for secret in [public.as_slice(), x.as_bytes()] {
            let forged = jsonwebtoken::encode(
                &header(Algorithm::HS256, Some(kid.clone())),
                &claims(),
                &EncodingKey::from_secret(secret),
            )
            .unwrap();
            assert!(invalid(eddsa.verify(&forged).await));
        }
    }

    #[tokio::test]
    async fn a_header_naming_another_algorithm_than_its_key_is_refused() {
        let store = testing::store().await;
        let settings = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let tokens = tokens_with(&settings, store.clone()).await;
        let ed_kid = keys::list(&store).await.unwrap()[0].kid.clone();
        // An ES256 key signs a token that claims to be from the Ed25519 key.
        keys::rotate(&store, &settings, keys::KeyAlgorithm::ES256, false)
            .await
            .unwrap();
        let es256 = testing::settings(SECRET, SigningAlgorithm::Es256);
        let es = SigningKeys::new(store, &es256).signer().await.unwrap();
        let forged =
            jsonwebtoken::encode(&header(Algorithm::ES256, Some(ed_kid)), &claims(), &es.key)
                .unwrap();
        assert!(invalid(tokens.verify(&forged).await));
        // Nor is an ES256 token naming its own, published key: EdDSA is what is configured.
        let honest = jsonwebtoken::encode(
            &header(Algorithm::ES256, Some(es.kid.clone())),
            &claims(),
            &es.key,
        )
        .unwrap();
        assert!(invalid(tokens.verify(&honest).await));
    }

    #[tokio::test]
    async fn with_hs256_configured_a_token_signed_with_a_stored_key_is_refused() {
        let store = testing::store().await;
        let eddsa = tokens_with(
            &testing::settings(SECRET, SigningAlgorithm::EdDsa),
            store.clone(),
        )
        .await;
        let hs256 = tokens_with(&settings(SECRET), store).await;
        let token = eddsa
            .issue(Uuid::new_v4(), Uuid::new_v4(), &ScopeSet::default())
            .await
            .unwrap();
        assert!(invalid(hs256.verify(&token.token).await));
    }

    #[tokio::test]
    async fn an_implausible_kid_is_refused_without_a_lookup() {
        let tokens = tokens_with(
            &testing::settings(SECRET, SigningAlgorithm::EdDsa),
            testing::store().await,
        )
        .await;
        for kid in ["", "a/b", &"k".repeat(65), "kid with spaces"] {
            let token = format!(
                "{}.{}.sig",
                b64(&serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}).to_string()),
                b64("{}")
            );
            assert!(invalid(tokens.verify(&token).await), "{kid:?}");
        }
        assert!(is_plausible_kid(
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        ));
    }
}
