//! Asymmetric signing keys for access tokens, kept in the database so that every instance signs
//! with the same key and publishes the same set at `/.well-known/jwks.json`: which key signs,
//! which verify, and what is cached, as each request asks.
//!
//! The algorithm is pinned by configuration: with `EdDSA` (or `ES256`) configured, the newest
//! key of that algorithm that is not retired signs, and only keys of that algorithm verify.
//! Keys of the other algorithm are published (ahead of a switch) but neither sign nor verify.
//! Rotating adds a newer key (tokens signed with older ones stay valid until those are
//! retired); retiring a key refuses its tokens.
//!
//! A key's `kid` is its RFC 7638 JWK thumbprint: it is derived from the public key alone, so it
//! can never name two different keys, verifiers can recompute it, and a row whose public key
//! was altered no longer matches its kid (such a row is neither used nor published).
//!
//! Private keys are stored sealed under a key derived from the JWT secret, bound to their kid
//! (see `sealing.rs`): a copy of the database alone signs nothing. Every instance therefore
//! needs the same secret. Under another secret the stored keys still verify (their public
//! halves are plain) but cannot sign: an instance then signs with the newest key it can
//! decrypt (logging an error once per key it cannot), and refuses to start when there is none.
//! `portcullis keys rotate` refuses to seal a key under a secret that does not open the newest
//! stored key, unless forced (the secret was changed on purpose).
//!
//! Public keys are authenticated too: each row carries a tag, made under another key derived
//! from the JWT secret, over its kid, algorithm, public JWK and status (active or retired).
//! Someone who can write to the database but does not hold the secret can therefore neither
//! add a key that verifies (a row inserted by hand) nor bring a retired key back (`retired_at`
//! set to NULL by hand leaves the tag of a retired key, which the per-request check refuses).
//! A row whose tag does not verify is neither used nor published, and is logged once per
//! instance. Retiring also wipes the key's sealed private half, which is never needed again.
//!
//! Rows stored before tags existed (`authentication_tag` NULL) are authenticated when met
//! (every instance at start, and lazily): such a row is accepted, and tagged with its current
//! status, only if its sealed private key opens with the secret and is the key its kid and
//! JWK name. That proves it was made by a holder of the secret (the seal is AEAD bound to the
//! kid), so the database alone still adds nothing. A retired one is tagged retired and its
//! private half wiped at once, so that clearing its tag and `retired_at` later cannot revive
//! it (its private half no longer opens). What cannot be told from the database alone is a
//! database restored from a copy taken before a retirement: that brings the key back, as it
//! would bring back any other state. Under another JWT secret the tags do not verify: the
//! stored keys neither sign nor verify there (restore the secret, or rotate with `--force`).
//!
//! Beside this file: `algorithm.rs` (the signing algorithm), `material.rs` (private and public
//! key material), `jwk.rs` (the JWK form and thumbprints), `sealing.rs` (sealing private keys,
//! tagging rows), `admin.rs` (the command line's rotate, retire and list).
//!
//! Errors: [`KeyError`] where a caller tells the database from an unusable key (503 or 500);
//! `anyhow` for start-up and the command-line helpers, which only report.

mod admin;
mod algorithm;
mod jwk;
mod material;
mod sealing;
#[cfg(test)]
pub(crate) mod testing;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use anyhow::Context as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, jwk::JwkSet};
use secrecy::ExposeSecret as _;

pub use self::{
    admin::{KeyStatus, KeySummary, list, retire, rotate},
    algorithm::{KeyAlgorithm, SigningAlgorithm},
};
use self::{
    material::{PrivateKey, PublicKey},
    sealing::{KeyAuthenticationKey, KeyEncryptionKey},
};
use crate::{
    config::TokenSettings,
    db::{NewSigningKey, Store, StoreError, StoredSigningKey},
};

/// The key that signs new tokens.
pub struct Signer {
    pub kid: String,
    pub algorithm: Algorithm,
    pub key: EncodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// The public key that verifies the tokens of one kid.
pub struct Verifier {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    /// The tag its row carries while it is active (`None` for HS256): the per-request check
    /// requires it, so a key retired (or tampered with) since it was cached verifies nothing.
    pub active_tag: Option<String>,
}

impl Verifier {
    /// A checked public key's verifier (only Ed25519 and P-256 keys are ever checked).
    fn of(public: &PublicKey, active_tag: Option<String>) -> Self {
        Self {
            algorithm: public.algorithm().jwt(),
            key: public.decoding_key(),
            active_tag,
        }
    }
}

/// Why no signer could be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key exists but cannot sign: its private half does not decrypt with the configured
    /// secret, or its row was altered.
    #[error("the signing key {kid} cannot be used: {reason}")]
    Unusable { kid: String, reason: String },
}

/// The signing keys of every instance: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct SigningKeys(Arc<Inner>);

struct Inner {
    store: Store,
    encryption: KeyEncryptionKey,
    authentication: KeyAuthenticationKey,
    /// The configured algorithm: only keys of it sign and verify, and a key created here (when
    /// every key of it has been retired) has it.
    algorithm: KeyAlgorithm,
    /// Decrypted once per kid: a key's material never changes, only whether it is retired.
    signers: Mutex<HashMap<String, Arc<Signer>>>,
    /// Keys that cannot sign here (the reason, by kid): tried and logged once, then skipped.
    unusable: Mutex<HashMap<String, String>>,
    verifiers: Mutex<HashMap<String, Arc<Verifier>>>,
    /// Kids of rows whose tag does not verify, already logged.
    unauthentic: Mutex<HashSet<String>>,
}

impl SigningKeys {
    /// With an asymmetric algorithm configured, makes sure a key of that algorithm that is not
    /// retired exists (creating one on first start) and that one of them decrypts with the
    /// configured secret; start-up fails otherwise, rather than every login later. With HS256
    /// nothing is created: the keys are only published.
    pub async fn start(store: Store, settings: &TokenSettings) -> anyhow::Result<Self> {
        let keys = Self::new(store, settings);
        keys.authenticate_legacy_keys()
            .await
            .context("cannot authenticate the stored signing keys")?;
        if settings.algorithm.is_asymmetric() {
            // Active keys of the algorithm, none authentic: most likely the JWT secret is not the
            // one they were made under (or every one was added by hand). Creating a key here
            // would split the instances; refuse to start instead, as for a key that does not
            // decrypt.
            let active = keys
                .0
                .store
                .active_signing_keys_of(keys.0.algorithm.as_str())
                .await
                .context("cannot read the signing keys")?;
            // Quietly: the refusal below says it all (rows from before tags were tagged above).
            let any_authentic = active
                .iter()
                .any(|stored| keys.0.authentication.verifies(stored));
            if let (Some(newest), false) = (active.first(), any_authentic) {
                anyhow::bail!(
                    "cannot sign with the current signing key {}: it is not authentic under the \
                     configured JWT secret. Every instance needs the JWT secret \
                     (PORTCULLIS_JWT_SECRET or PORTCULLIS_JWT_SECRET_FILE) the key was created \
                     under; restore it, or run `portcullis keys rotate --force` to create a key \
                     under the configured one",
                    newest.kid
                );
            }
            let signer = keys.signer().await.map_err(|err| match err {
                KeyError::Unusable { kid, reason } => anyhow::anyhow!(
                    "cannot sign with the current signing key {kid}: {reason}. Every instance \
                     needs the JWT secret (PORTCULLIS_JWT_SECRET or PORTCULLIS_JWT_SECRET_FILE) \
                     the key was created under; restore it, or run `portcullis keys rotate \
                     --force` to create a key under the configured one"
                ),
                KeyError::Store(err) => {
                    anyhow::Error::new(err).context("cannot read the signing keys")
                }
            })?;
            tracing::info!(kid = %signer.kid, algorithm = ?signer.algorithm, "signing access tokens with a stored key");
        }
        Ok(keys)
    }

    /// Keys read from `store` on demand; nothing is read or created yet.
    pub(crate) fn new(store: Store, settings: &TokenSettings) -> Self {
        Self(Arc::new(Inner {
            store,
            encryption: KeyEncryptionKey::derive(settings.secret.expose_secret()),
            authentication: KeyAuthenticationKey::derive(settings.secret.expose_secret()),
            algorithm: KeyAlgorithm::default_for(settings.algorithm),
            signers: Mutex::default(),
            unusable: Mutex::default(),
            verifiers: Mutex::default(),
            unauthentic: Mutex::default(),
        }))
    }

    /// Tags every row stored before tags existed that proves to be ours (see the module doc);
    /// retired ones lose their private half.
    async fn authenticate_legacy_keys(&self) -> Result<(), StoreError> {
        for stored in self.0.store.list_signing_keys().await? {
            if stored.authentication_tag.is_none() {
                self.is_authentic(&stored).await?;
            }
        }
        Ok(())
    }

    /// Whether `stored` may be used: its tag verifies, or it has none (stored before tags)
    /// and proves to be ours, when it gets one. Logged once per instance when not.
    async fn is_authentic(&self, stored: &StoredSigningKey) -> Result<bool, StoreError> {
        let authentication = &self.0.authentication;
        if authentication.verifies(stored) {
            return Ok(true);
        }
        if stored.authentication_tag.is_none() && is_ours(stored, &self.0.encryption) {
            let retired = stored.retired_at.is_some();
            self.0
                .store
                .set_signing_key_tag(&stored.kid, retired, authentication.tag_of(stored))
                .await?;
            tracing::info!(kid = %stored.kid, retired, "authenticated a signing key stored before keys were authenticated");
            return Ok(true);
        }
        if locked(&self.0.unauthentic).insert(stored.kid.clone()) {
            tracing::error!(
                kid = %stored.kid,
                "a stored signing key is not authentic (its tag does not verify with the \
                 configured JWT secret): it was added or altered in the database by hand, or \
                 made under another secret; it neither verifies nor is published"
            );
        }
        Ok(false)
    }

    /// The newest key of the configured algorithm that is not retired and decrypts with the
    /// configured secret. Read from the database on every call, so that a rotation by another
    /// instance or the command line takes effect at once. When every key of the algorithm has
    /// been retired, a new one is created.
    ///
    /// A newer key that does not decrypt (made under another secret) is skipped for the newest
    /// older one that does, with an error logged once per skipped key: a key sealed under the
    /// wrong secret must not stop every login. When none decrypts, the newest one's reason.
    pub async fn signer(&self) -> Result<Arc<Signer>, KeyError> {
        let mut candidates = Vec::new();
        for stored in self
            .0
            .store
            .active_signing_keys_of(self.0.algorithm.as_str())
            .await?
        {
            if self.is_authentic(&stored).await? {
                candidates.push(stored);
            }
        }
        if candidates.is_empty() {
            candidates.push(self.create_when_none_is_active().await?);
        }
        let mut skipped = Vec::new();
        let mut chosen = None;
        for stored in &candidates {
            if let Some(signer) = locked(&self.0.signers).get(&stored.kid) {
                chosen = Some(signer.clone());
                break;
            }
            if locked(&self.0.unusable).contains_key(&stored.kid) {
                continue;
            }
            match signer_of(stored, &self.0.encryption) {
                Ok(signer) => {
                    let signer = Arc::new(signer);
                    locked(&self.0.signers).insert(stored.kid.clone(), signer.clone());
                    chosen = Some(signer);
                    break;
                }
                Err(KeyError::Unusable { kid, reason }) => {
                    // Only the request that finds it first reports it.
                    if locked(&self.0.unusable)
                        .insert(kid.clone(), reason.clone())
                        .is_none()
                    {
                        skipped.push((kid, reason));
                    }
                }
                Err(err @ KeyError::Store(_)) => return Err(err),
            }
        }
        // When none can sign, the caller reports the error (start-up fails, a login answers
        // 500 and logs it).
        if let Some(signer) = &chosen {
            for (kid, reason) in skipped {
                tracing::error!(
                    kid,
                    reason,
                    instead = %signer.kid,
                    "a signing key cannot be used, signing with an older one: every instance \
                     needs the JWT secret the keys were created under; retire the key, or \
                     restore that secret"
                );
            }
        }
        chosen.ok_or_else(|| {
            // Non-empty: the newest one's reason.
            let newest = &candidates[0].kid;
            let reason = locked(&self.0.unusable)
                .get(newest)
                .cloned()
                .unwrap_or_default();
            KeyError::Unusable {
                kid: newest.clone(),
                reason,
            }
        })
    }

    /// A new key of the configured algorithm, unless one was created meanwhile: logins racing
    /// here, in this instance or another, create one key between them (the store decides).
    async fn create_when_none_is_active(&self) -> Result<StoredSigningKey, StoreError> {
        let candidate = new_key(&self.0.encryption, &self.0.authentication, self.0.algorithm);
        let candidate_kid = candidate.kid.clone();
        // An active key that is not authentic (inserted by hand) does not count.
        let (authentication, encryption) = (&self.0.authentication, &self.0.encryption);
        let key = self
            .0
            .store
            .insert_signing_key_unless_active(candidate, |existing| {
                authentication.verifies(existing)
                    || (existing.authentication_tag.is_none() && is_ours(existing, encryption))
            })
            .await?;
        if key.kid == candidate_kid {
            tracing::info!(kid = %key.kid, algorithm = %key.algorithm, "no signing key of the configured algorithm was active: created one");
        }
        Ok(key)
    }

    /// The public key named `kid`, if it exists, is authentic, has the configured algorithm and
    /// was not retired when first loaded: a key of the other algorithm verifies nothing here,
    /// though it is published. Cached per kid: refusing a key's tokens as soon as it is retired
    /// is the per-request check's job (it requires the row's tag to be the key's active tag). A
    /// kid that is not found is not cached, since another instance may create it.
    pub async fn verifier(&self, kid: &str) -> Result<Option<Arc<Verifier>>, StoreError> {
        if let Some(verifier) = locked(&self.0.verifiers).get(kid) {
            return Ok(Some(verifier.clone()));
        }
        let Some(stored) = self.0.store.find_signing_key(kid).await? else {
            return Ok(None);
        };
        if stored.retired_at.is_some() || stored.algorithm != self.0.algorithm.as_str() {
            return Ok(None);
        }
        if !self.is_authentic(&stored).await? {
            return Ok(None);
        }
        let public = match PublicKey::of_stored(&stored) {
            Ok(public) => public,
            Err(reason) => {
                tracing::error!(kid, reason, "a stored public key is unusable");
                return Ok(None);
            }
        };
        let active_tag = self.0.authentication.tag_of(&stored);
        let verifier = Arc::new(Verifier::of(&public, Some(active_tag)));
        locked(&self.0.verifiers).insert(stored.kid, verifier.clone());
        Ok(Some(verifier))
    }

    /// Every authentic key not retired, as a JWK Set, newest first. Only public halves, rebuilt
    /// from their checked components (never a symmetric key, never anything else a row holds).
    pub async fn jwks(&self) -> Result<JwkSet, StoreError> {
        let mut keys = Vec::new();
        for stored in self.0.store.active_signing_keys().await? {
            if !self.is_authentic(&stored).await? {
                continue;
            }
            match PublicKey::of_stored(&stored) {
                Ok(public) => keys.push(public.jwk()),
                Err(reason) => {
                    tracing::error!(kid = %stored.kid, reason, "not publishing an unusable stored public key");
                }
            }
        }
        Ok(JwkSet { keys })
    }

    /// Whether the key that verified a token (`kid`, with the active tag its verifier holds)
    /// is still active and authentic: what the per-request session query checks, for the
    /// callers that make no such query (`/token/revoke`).
    pub async fn is_still_active(&self, kid: &str, active_tag: &str) -> Result<bool, StoreError> {
        self.0.store.signing_key_is_active(kid, active_tag).await
    }
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps hold only finished entries, so one left by a panicking thread is still sound.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A freshly generated key, sealed and tagged, ready to store.
fn new_key(
    encryption: &KeyEncryptionKey,
    authentication: &KeyAuthenticationKey,
    algorithm: KeyAlgorithm,
) -> NewSigningKey {
    let private = PrivateKey::generate(algorithm);
    let public = private.public_key();
    let kid = public.thumbprint();
    let sealed = encryption.seal(&kid, &private.to_bytes());
    let jwk = serde_json::to_string(&public.jwk()).expect("a JWK serializes");
    let authentication_tag = authentication.tag(&kid, algorithm.as_str(), &jwk, false);
    NewSigningKey {
        kid,
        algorithm: algorithm.as_str().to_owned(),
        public_jwk: jwk,
        encrypted_private_key: sealed,
        authentication_tag,
    }
}

/// Whether a row without a tag proves to be ours: its private key opens with the secret (the
/// seal is bound to the kid), is the key its kid names, and its public JWK is that key.
fn is_ours(stored: &StoredSigningKey, encryption: &KeyEncryptionKey) -> bool {
    signer_of(stored, encryption).is_ok() && PublicKey::of_stored(stored).is_ok()
}

/// Decrypts a stored key and checks that it is the key its kid names.
fn signer_of(stored: &StoredSigningKey, encryption: &KeyEncryptionKey) -> Result<Signer, KeyError> {
    let unusable = |reason: &str| KeyError::Unusable {
        kid: stored.kid.clone(),
        reason: reason.to_owned(),
    };
    let algorithm = KeyAlgorithm::parse(&stored.algorithm)
        .ok_or_else(|| unusable("its algorithm is unknown"))?;
    let raw = encryption
        .open(&stored.kid, &stored.encrypted_private_key)
        .ok_or_else(|| {
            unusable("its private key does not decrypt with the configured JWT secret")
        })?;
    let private = PrivateKey::from_bytes(algorithm, &raw)
        .ok_or_else(|| unusable("its private key is malformed"))?;
    if private.public_key().thumbprint() != stored.kid {
        return Err(unusable("its private key is not the key its kid names"));
    }
    Ok(Signer {
        kid: stored.kid.clone(),
        algorithm: algorithm.jwt(),
        key: private.encoding_key(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::testing::{self, ErrorsByKid, SECRET, kids};
    use super::*;

    fn encryption() -> KeyEncryptionKey {
        KeyEncryptionKey::derive(SECRET)
    }

    #[test]
    fn generated_keys_round_trip_through_their_stored_form() {
        for algorithm in [KeyAlgorithm::EDDSA, KeyAlgorithm::ES256] {
            let private = PrivateKey::generate(algorithm);
            let public = private.public_key();
            let stored = StoredSigningKey {
                kid: public.thumbprint(),
                algorithm: algorithm.as_str().into(),
                public_jwk: serde_json::to_string(&public.jwk()).unwrap(),
                encrypted_private_key: encryption().seal(&public.thumbprint(), &private.to_bytes()),
                created_at: Utc::now(),
                retired_at: None,
                authentication_tag: None,
            };
            assert_eq!(PublicKey::of_stored(&stored), Ok(public.clone()));
            let signer = signer_of(&stored, &encryption()).unwrap();
            assert_eq!(signer.algorithm, algorithm.jwt());
            let message = b"header.payload";
            let signature =
                jsonwebtoken::crypto::sign(message, &signer.key, signer.algorithm).unwrap();
            let verifier = Verifier::of(&public, None);
            assert!(
                jsonwebtoken::crypto::verify(
                    &signature,
                    message,
                    &verifier.key,
                    verifier.algorithm
                )
                .unwrap(),
                "{algorithm}"
            );
        }
    }

    #[tokio::test]
    async fn instances_starting_together_on_an_empty_database_create_one_key() {
        let store = testing::store().await;
        let settings = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        // Two instances: separate caches and separate in-process locks, one database.
        let (a, b) = (
            SigningKeys::new(store.clone(), &settings),
            SigningKeys::new(store.clone(), &settings),
        );
        let (from_a, from_b) = tokio::join!(a.signer(), b.signer());
        assert_eq!(from_a.unwrap().kid, from_b.unwrap().kid);
        assert_eq!(store.list_signing_keys().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn start_creates_one_key_of_the_configured_algorithm_and_reuses_it() {
        let store = testing::store().await;
        let settings = testing::settings(SECRET, SigningAlgorithm::Es256);
        let keys = SigningKeys::start(store.clone(), &settings).await.unwrap();
        let signer = keys.signer().await.unwrap();
        assert_eq!(signer.algorithm, Algorithm::ES256);
        SigningKeys::start(store.clone(), &settings).await.unwrap();
        let listed = list(&store).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].kid, signer.kid);
        assert_eq!(listed[0].status, KeyStatus::Current);
    }

    #[tokio::test]
    async fn start_with_hs256_creates_no_key_and_publishes_none() {
        let store = testing::store().await;
        let settings = testing::settings(SECRET, SigningAlgorithm::Hs256);
        let keys = SigningKeys::start(store.clone(), &settings).await.unwrap();
        assert!(list(&store).await.unwrap().is_empty());
        assert_eq!(keys.jwks().await.unwrap(), JwkSet { keys: vec![] });
    }

    #[tokio::test]
    async fn start_fails_when_the_current_key_was_made_under_another_secret() {
        let store = testing::store().await;
        let before = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let kid = rotate(&store, &before, KeyAlgorithm::EDDSA, false)
            .await
            .unwrap();
        let after = testing::settings(&[9u8; 32], SigningAlgorithm::EdDsa);
        let err = SigningKeys::start(store, &after).await.err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot sign with the current signing key {kid}: it is not authentic under the \
                 configured JWT secret. Every instance needs the JWT secret \
                 (PORTCULLIS_JWT_SECRET or PORTCULLIS_JWT_SECRET_FILE) the key was created under; \
                 restore it, or run `portcullis keys rotate --force` to create a key under the \
                 configured one"
            )
        );
    }

    #[tokio::test]
    async fn a_rotation_elsewhere_signs_the_next_token_and_both_keys_verify() {
        let store = testing::store().await;
        let settings = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let keys = SigningKeys::start(store.clone(), &settings).await.unwrap();
        let old = keys.signer().await.unwrap().kid.clone();
        let new = rotate(&store, &settings, KeyAlgorithm::EDDSA, false)
            .await
            .unwrap();
        let signer = keys.signer().await.unwrap();
        assert_eq!(
            (signer.kid.as_str(), signer.algorithm),
            (new.as_str(), Algorithm::EdDSA)
        );
        assert_eq!(kids(keys.jwks().await.unwrap()), [new.clone(), old.clone()]);
        for kid in [&old, &new] {
            assert_eq!(
                keys.verifier(kid).await.unwrap().unwrap().algorithm,
                Algorithm::EdDSA
            );
        }
        assert!(keys.verifier("no-such-kid").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_key_of_the_other_algorithm_is_published_but_neither_signs_nor_verifies() {
        let store = testing::store().await;
        let eddsa = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let keys = SigningKeys::start(store.clone(), &eddsa).await.unwrap();
        let ed = keys.signer().await.unwrap().kid.clone();

        let es = rotate(&store, &eddsa, KeyAlgorithm::ES256, false)
            .await
            .unwrap();

        let signer = keys.signer().await.unwrap();
        assert_eq!(
            (signer.kid.as_str(), signer.algorithm),
            (ed.as_str(), Algorithm::EdDSA)
        );
        assert_eq!(kids(keys.jwks().await.unwrap()), [es.clone(), ed.clone()]);
        assert!(keys.verifier(&es).await.unwrap().is_none());
        assert!(keys.verifier(&ed).await.unwrap().is_some());

        // The same database under ES256: the other way round.
        let es256 = testing::settings(SECRET, SigningAlgorithm::Es256);
        let switched = SigningKeys::start(store.clone(), &es256).await.unwrap();
        let signer = switched.signer().await.unwrap();
        assert_eq!(
            (signer.kid.as_str(), signer.algorithm),
            (es.as_str(), Algorithm::ES256)
        );
        assert!(switched.verifier(&ed).await.unwrap().is_none());
        assert_eq!(
            switched.verifier(&es).await.unwrap().unwrap().algorithm,
            Algorithm::ES256
        );
        // Both are the current key of their algorithm.
        let statuses: Vec<(String, KeyStatus)> = list(&store)
            .await
            .unwrap()
            .into_iter()
            .map(|key| (key.kid, key.status))
            .collect();
        assert_eq!(
            statuses,
            [(es, KeyStatus::Current), (ed, KeyStatus::Current)]
        );
    }

    #[tokio::test]
    async fn with_only_keys_of_the_other_algorithm_start_creates_one_of_the_configured() {
        let store = testing::store().await;
        let es256 = testing::settings(SECRET, SigningAlgorithm::Es256);
        let es = rotate(&store, &es256, KeyAlgorithm::ES256, false)
            .await
            .unwrap();

        let eddsa = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let keys = SigningKeys::start(store.clone(), &eddsa).await.unwrap();

        let signer = keys.signer().await.unwrap();
        assert_ne!(signer.kid, es);
        assert_eq!(signer.algorithm, Algorithm::EdDSA);
        assert_eq!(
            kids(keys.jwks().await.unwrap()),
            [signer.kid.clone(), es.clone()]
        );
    }

    #[tokio::test]
    async fn a_newest_key_made_under_another_secret_is_ignored_and_logged_once() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let errors = ErrorsByKid::default();
        // The test runs on one thread (tokio's current-thread runtime).
        let _logging =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(errors.clone()));
        let store = testing::store().await;
        let settings = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let keys = SigningKeys::start(store.clone(), &settings).await.unwrap();
        let good = keys.signer().await.unwrap().kid.clone();
        // What `keys rotate --force` under another secret leaves behind.
        let wrong = testing::settings(&[9u8; 32], SigningAlgorithm::EdDsa);
        let bad = rotate(&store, &wrong, KeyAlgorithm::EDDSA, true)
            .await
            .unwrap();

        for _ in 0..3 {
            assert_eq!(keys.signer().await.unwrap().kid, good);
        }
        // A fresh instance falls back too, and starts.
        let restarted = SigningKeys::start(store.clone(), &settings).await.unwrap();
        assert_eq!(restarted.signer().await.unwrap().kid, good);

        assert_eq!(
            *locked(&errors.0),
            HashMap::from([(bad.clone(), 2)]),
            "once per instance and key"
        );
        // Its tag was made under the other secret: here it neither verifies nor is published.
        assert!(keys.verifier(&bad).await.unwrap().is_none());
        assert_eq!(
            kids(keys.jwks().await.unwrap()),
            std::slice::from_ref(&good)
        );

        // Once the good key is retired, the other one does not count: a new key is made.
        assert!(retire(&store, &settings, &good).await.unwrap());
        let replacement = keys.signer().await.unwrap().kid.clone();
        assert!(replacement != bad && replacement != good);
        SigningKeys::start(store, &settings).await.unwrap();
        assert_eq!(
            *locked(&errors.0),
            HashMap::from([(bad.clone(), 3)]),
            "once per instance and key"
        );
    }

    #[tokio::test]
    async fn keys_stored_before_tags_are_authenticated_when_their_private_half_opens() {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
        let store = testing::store().await;
        let settings = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let active = rotate(&store, &settings, KeyAlgorithm::EDDSA, false)
            .await
            .unwrap();
        let retired = rotate(&store, &settings, KeyAlgorithm::EDDSA, false)
            .await
            .unwrap();
        // As the upgrade leaves them: no tag; the retired one with its private half still.
        let sealed = store.find_signing_key(&retired).await.unwrap().unwrap();
        use crate::db::entities::signing_key;
        signing_key::Entity::update_many()
            .col_expr(
                signing_key::Column::AuthenticationTag,
                Option::<String>::None.into(),
            )
            .exec(store.connection())
            .await
            .unwrap();
        signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetiredAt, Some(Utc::now()).into())
            .filter(signing_key::Column::Kid.eq(&retired))
            .exec(store.connection())
            .await
            .unwrap();

        let keys = SigningKeys::start(store.clone(), &settings).await.unwrap();

        assert_eq!(keys.signer().await.unwrap().kid, active);
        assert!(keys.verifier(&active).await.unwrap().is_some());
        assert_eq!(
            kids(keys.jwks().await.unwrap()),
            std::slice::from_ref(&active)
        );
        let after = store.find_signing_key(&retired).await.unwrap().unwrap();
        assert!(after.authentication_tag.is_some());
        assert_eq!(
            after.encrypted_private_key, "",
            "a retired key loses its private half"
        );
        assert_ne!(sealed.encrypted_private_key, "");
        // Un-retiring it by hand, tag cleared too, does not bring it back.
        signing_key::Entity::update_many()
            .col_expr(
                signing_key::Column::AuthenticationTag,
                Option::<String>::None.into(),
            )
            .col_expr(
                signing_key::Column::RetiredAt,
                Option::<DateTime<Utc>>::None.into(),
            )
            .filter(signing_key::Column::Kid.eq(&retired))
            .exec(store.connection())
            .await
            .unwrap();
        let restarted = SigningKeys::start(store.clone(), &settings).await.unwrap();
        assert!(restarted.verifier(&retired).await.unwrap().is_none());
        assert_eq!(kids(restarted.jwks().await.unwrap()), [active]);
    }

    #[tokio::test]
    async fn an_undecryptable_key_of_the_other_algorithm_does_not_matter() {
        let store = testing::store().await;
        let settings = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let keys = SigningKeys::start(store.clone(), &settings).await.unwrap();
        let good = keys.signer().await.unwrap().kid.clone();
        let wrong = testing::settings(&[9u8; 32], SigningAlgorithm::EdDsa);
        rotate(&store, &wrong, KeyAlgorithm::ES256, true)
            .await
            .unwrap();
        assert_eq!(keys.signer().await.unwrap().kid, good);
        SigningKeys::start(store, &settings).await.unwrap();
    }
}
