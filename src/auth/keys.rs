//! Asymmetric signing keys for access tokens, kept in the database so that every instance signs
//! with the same key and publishes the same set at `/.well-known/jwks.json`.
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
//! Private keys are stored encrypted with ChaCha20-Poly1305 under a key derived by HKDF-SHA256
//! from the JWT secret, with the kid as associated data: a copy of the database alone signs
//! nothing, and a ciphertext moved to another row does not decrypt. Every instance therefore
//! needs the same secret. Under another secret the stored keys still verify (their public
//! halves are plain) but cannot sign: an instance then signs with the newest key it can
//! decrypt (logging an error once per key it cannot), and refuses to start when there is none.
//! `portcullis keys rotate` refuses to seal a key under a secret that does not open the newest
//! stored key, unless forced (the secret was changed on purpose).
//!
//! Public keys are authenticated too: each row carries a tag, HMAC-SHA256 under another key
//! derived from the JWT secret, over its kid, algorithm, public JWK and status (active or
//! retired). Someone who can write to the database but does not hold the secret can therefore
//! neither add a key that verifies (a row inserted by hand) nor bring a retired key back
//! (`retired_at` set to NULL by hand leaves the tag of a retired key, which the per-request
//! check refuses). A row whose tag does not verify is neither used nor published, and is
//! logged once per instance. Retiring also wipes the key's sealed private half, which is never
//! needed again.
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
//! Errors: [`KeyError`] where a caller tells the database from an unusable key (503 or 500);
//! `anyhow` for start-up and the command-line helpers, which only report.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit as _, Nonce,
    aead::{Aead as _, Payload},
};
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use hmac::Hmac;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use secrecy::{ExposeSecret as _, zeroize::Zeroizing};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{
    config::{SigningAlgorithm, TokenSettings},
    db::{NewSigningKey, Store, StoreError, StoredSigningKey},
};

/// HKDF `info` of the key-encryption key: names its one use, so that the JWT secret can never
/// yield the same key for anything else.
const ENCRYPTION_KEY_INFO: &[u8] = b"portcullis signing-key encryption v1";
/// HKDF `info` of the key that authenticates stored public keys and their status.
const AUTHENTICATION_KEY_INFO: &[u8] = b"portcullis signing-key authentication v1";
/// Prefix of a stored tag, naming the scheme (HMAC-SHA256 over the length-prefixed fields).
const TAG_PREFIX: &str = "v1.";
/// Prefix of a stored ciphertext, naming the scheme above (a later scheme gets `v2.`).
const SEALED_PREFIX: &str = "v1.";
const NONCE_BYTES: usize = 12;
/// An Ed25519 seed, a P-256 scalar, and each public coordinate: 32 bytes.
const KEY_BYTES: usize = 32;

/// The algorithm of a stored key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8037).
    #[value(name = "EdDSA")]
    EdDsa,
    /// ECDSA with P-256 and SHA-256.
    #[value(name = "ES256")]
    Es256,
}

impl KeyAlgorithm {
    /// The name in JWS headers, JWKs and the `algorithm` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::EdDsa, Self::Es256]
            .into_iter()
            .find(|algorithm| algorithm.as_str() == raw)
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
        }
    }

    /// What a new key gets unless told otherwise, and the keys that sign and verify: the
    /// configured algorithm when it is asymmetric, else Ed25519 (under HS256 the stored keys
    /// neither sign nor verify).
    pub fn default_for(configured: SigningAlgorithm) -> Self {
        match configured {
            SigningAlgorithm::Es256 => Self::Es256,
            SigningAlgorithm::EdDsa | SigningAlgorithm::Hs256 => Self::EdDsa,
        }
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// A public key as published (RFC 7517, with RFC 8037's `OKP` for Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    /// `OKP` (Ed25519) or `EC` (P-256).
    pub kty: String,
    /// `Ed25519` or `P-256`.
    pub crv: String,
    /// The public key (Ed25519) or its x coordinate (P-256), base64url.
    pub x: String,
    /// The y coordinate (P-256 only), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The key's RFC 7638 thumbprint, named by the `kid` header of the tokens it signs.
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub usage: String,
}

/// A JWK Set (RFC 7517 §5): every key that verifies tokens, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<PublicJwk>,
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

/// Where a key stands, as `portcullis keys list` shows it. Independent of the configuration
/// of whoever asks: the command line need not be configured like the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// The newest key of its algorithm not retired: it signs on the instances configured with
    /// that algorithm (and verifies there), and is published by every instance.
    Current,
    /// Not retired, not the newest of its algorithm: it verifies the tokens it signed on the
    /// instances configured with its algorithm, and is published.
    Active,
    /// Its tokens are refused.
    Retired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }
}

/// One stored key, without its private half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySummary {
    pub kid: String,
    pub algorithm: String,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    pub status: KeyStatus,
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
        let mut verifier = public.verifier();
        verifier.active_tag = Some(self.0.authentication.tag_of(&stored));
        let verifier = Arc::new(verifier);
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

/// Creates a key of `algorithm`, which signs from now on on the instances configured with
/// that algorithm (it is the newest of it); returns its kid. Older keys keep verifying until
/// retired.
///
/// Unless `force`, refuses when the newest key not retired (of any algorithm) does not decrypt
/// with the configured secret: the command line is then not configured with the servers'
/// secret, and the new key would be sealed under the wrong one. `force` is for a secret
/// changed on purpose.
pub async fn rotate(
    store: &Store,
    settings: &TokenSettings,
    algorithm: KeyAlgorithm,
    force: bool,
) -> anyhow::Result<String> {
    let encryption = KeyEncryptionKey::derive(settings.secret.expose_secret());
    let authentication = KeyAuthenticationKey::derive(settings.secret.expose_secret());
    if !force {
        // Every active row, authentic here or not: under a wrong secret none would be.
        let active = store
            .active_signing_keys()
            .await
            .context("cannot read the signing keys")?;
        let opens = |key: &StoredSigningKey| {
            encryption
                .open(&key.kid, &key.encrypted_private_key)
                .is_some()
        };
        if let Some((newest, older)) = active.split_first()
            && !opens(newest)
        {
            let kid = &newest.kid;
            if older.iter().any(opens) {
                // Most likely a key made under a wrong secret before this check existed.
                anyhow::bail!(
                    "the configured JWT secret does not open the newest stored signing key, \
                     {kid} (older ones do decrypt with it): if {kid} was made under a wrong \
                     secret, retire it (`portcullis keys retire {kid}`) and rotate again; else \
                     set PORTCULLIS_JWT_SECRET or PORTCULLIS_JWT_SECRET_FILE to the secret the \
                     servers use, or pass --force if the secret was changed on purpose"
                );
            }
            anyhow::bail!(
                "the configured JWT secret does not open the stored signing keys (the newest, \
                 {kid}, does not decrypt with it): set PORTCULLIS_JWT_SECRET or \
                 PORTCULLIS_JWT_SECRET_FILE to the secret the servers use, or pass --force if \
                 the secret was changed on purpose"
            );
        }
    }
    let created = create_key(store, &encryption, &authentication, algorithm)
        .await
        .context("cannot store the new signing key")?;
    tracing::info!(kid = %created.kid, algorithm = %created.algorithm, force, "created a signing key");
    Ok(created.kid)
}

/// Retires a key: its tokens are refused from then on; its tag becomes that of a retired key
/// and its private half is wiped. `Ok(false)` when it already was; an error when there is no
/// such key. Under a JWT secret other than the servers' the new tag does not verify there,
/// which leaves the key just as unusable.
pub async fn retire(store: &Store, settings: &TokenSettings, kid: &str) -> anyhow::Result<bool> {
    let Some(stored) = store.find_signing_key(kid).await? else {
        anyhow::bail!("no signing key with kid {kid:?}");
    };
    if stored.retired_at.is_some() {
        return Ok(false);
    }
    let authentication = KeyAuthenticationKey::derive(settings.secret.expose_secret());
    let tag = authentication.tag(&stored.kid, &stored.algorithm, &stored.public_jwk, true);
    let retired = store.retire_signing_key(kid, tag).await?;
    if retired {
        tracing::info!(kid, "retired a signing key");
    }
    Ok(retired)
}

/// Every stored key, newest first, with its status: the newest key of each algorithm that is
/// not retired is `current` (it signs where that algorithm is configured).
pub async fn list(store: &Store) -> anyhow::Result<Vec<KeySummary>> {
    let stored = store.list_signing_keys().await?;
    // Newest first, so the first key of an algorithm not retired is the one that signs.
    let mut current: Vec<(String, String)> = Vec::new();
    for key in stored.iter().filter(|key| key.retired_at.is_none()) {
        if !current
            .iter()
            .any(|(algorithm, _)| *algorithm == key.algorithm)
        {
            current.push((key.algorithm.clone(), key.kid.clone()));
        }
    }
    Ok(stored
        .into_iter()
        .map(|key| {
            let is_current = current.iter().any(|(_, kid)| *kid == key.kid);
            KeySummary {
                status: match (key.retired_at, is_current) {
                    (Some(_), _) => KeyStatus::Retired,
                    (None, true) => KeyStatus::Current,
                    (None, false) => KeyStatus::Active,
                },
                kid: key.kid,
                algorithm: key.algorithm,
                created_at: key.created_at,
                retired_at: key.retired_at,
            }
        })
        .collect())
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps hold only finished entries, so one left by a panicking thread is still sound.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn create_key(
    store: &Store,
    encryption: &KeyEncryptionKey,
    authentication: &KeyAuthenticationKey,
    algorithm: KeyAlgorithm,
) -> Result<StoredSigningKey, StoreError> {
    store
        .insert_signing_key(new_key(encryption, authentication, algorithm))
        .await
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

/// A private key, in memory only to be encrypted or turned into an [`EncodingKey`]; both
/// kinds wipe themselves when dropped.
enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::SecretKey),
}

impl PrivateKey {
    fn generate(algorithm: KeyAlgorithm) -> Self {
        loop {
            let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
            rand::RngCore::fill_bytes(&mut rand::rng(), bytes.as_mut_slice());
            // Every Ed25519 seed is valid; a P-256 scalar is not when it is zero or at least
            // the group order (odds about 2^-32), so draw again.
            if let Some(key) = Self::from_bytes(algorithm, bytes.as_slice()) {
                return key;
            }
        }
    }

    /// From an Ed25519 seed or a P-256 scalar (big-endian), exactly 32 bytes.
    fn from_bytes(algorithm: KeyAlgorithm, bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; KEY_BYTES] = bytes.try_into().ok()?;
        match algorithm {
            KeyAlgorithm::EdDsa => {
                Some(Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(bytes)))
            }
            KeyAlgorithm::Es256 => p256::SecretKey::from_slice(bytes).ok().map(Self::P256),
        }
    }

    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            Self::Ed25519(key) => key.as_bytes().to_vec(),
            // Copied through a wiped buffer: `to_bytes` returns the scalar by value.
            Self::P256(key) => Zeroizing::new(key.to_bytes()).to_vec(),
        })
    }

    fn public_key(&self) -> PublicKey {
        match self {
            Self::Ed25519(key) => PublicKey::Ed25519 {
                x: key.verifying_key().to_bytes(),
            },
            Self::P256(key) => {
                let point = key.public_key().to_encoded_point(false);
                let coordinate = |c: Option<&p256::FieldBytes>| {
                    let mut out = [0u8; KEY_BYTES];
                    out.copy_from_slice(c.expect("an uncompressed point has both coordinates"));
                    out
                };
                PublicKey::P256 {
                    x: coordinate(point.x()),
                    y: coordinate(point.y()),
                }
            }
        }
    }

    /// jsonwebtoken's RustCrypto backend reads private keys as PKCS#8 DER.
    fn encoding_key(&self) -> EncodingKey {
        match self {
            Self::Ed25519(key) => EncodingKey::from_ed_der(
                key.to_pkcs8_der()
                    .expect("an Ed25519 key encodes as PKCS#8")
                    .as_bytes(),
            ),
            Self::P256(key) => EncodingKey::from_ec_der(
                key.to_pkcs8_der()
                    .expect("a P-256 key encodes as PKCS#8")
                    .as_bytes(),
            ),
        }
    }
}

/// A checked public key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    Ed25519 {
        x: [u8; KEY_BYTES],
    },
    P256 {
        x: [u8; KEY_BYTES],
        y: [u8; KEY_BYTES],
    },
}

impl PublicKey {
    fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::Ed25519 { .. } => KeyAlgorithm::EdDsa,
            Self::P256 { .. } => KeyAlgorithm::Es256,
        }
    }

    /// The RFC 7638 thumbprint: base64url SHA-256 of the required members, in lexicographic
    /// order, without spaces. (base64url text needs no JSON escaping.)
    fn thumbprint(&self) -> String {
        let canonical = match self {
            Self::Ed25519 { x } => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(x)
            ),
            Self::P256 { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(x),
                URL_SAFE_NO_PAD.encode(y)
            ),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    fn jwk(&self) -> PublicJwk {
        let (kty, crv, x, y) = match self {
            Self::Ed25519 { x } => ("OKP", "Ed25519", x, None),
            Self::P256 { x, y } => ("EC", "P-256", x, Some(URL_SAFE_NO_PAD.encode(y))),
        };
        PublicJwk {
            kty: kty.into(),
            crv: crv.into(),
            x: URL_SAFE_NO_PAD.encode(x),
            y,
            kid: self.thumbprint(),
            alg: self.algorithm().as_str().into(),
            usage: "sig".into(),
        }
    }

    /// The public key of a stored row, if its JWK is well formed, agrees with the row's
    /// algorithm and is the key the row's kid names.
    fn of_stored(stored: &StoredSigningKey) -> Result<Self, &'static str> {
        let jwk: PublicJwk =
            serde_json::from_str(&stored.public_jwk).map_err(|_| "its JWK does not parse")?;
        let public = Self::from_jwk(&jwk)?;
        if public.algorithm().as_str() != stored.algorithm {
            return Err("its JWK does not match its algorithm");
        }
        if public.thumbprint() != stored.kid {
            return Err("its JWK is not the key its kid names");
        }
        Ok(public)
    }

    fn from_jwk(jwk: &PublicJwk) -> Result<Self, &'static str> {
        let coordinate = |text: &str| -> Result<[u8; KEY_BYTES], &'static str> {
            URL_SAFE_NO_PAD
                .decode(text)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or("a coordinate is not 32 bytes of base64url")
        };
        match (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_str(), &jwk.y) {
            ("OKP", "Ed25519", "EdDSA", None) => {
                let x = coordinate(&jwk.x)?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| "not an Ed25519 public key")?;
                Ok(Self::Ed25519 { x })
            }
            ("EC", "P-256", "ES256", Some(y)) => {
                let (x, y) = (coordinate(&jwk.x)?, coordinate(y)?);
                let mut point = [0u8; 1 + 2 * KEY_BYTES];
                point[0] = 0x04;
                point[1..=KEY_BYTES].copy_from_slice(&x);
                point[1 + KEY_BYTES..].copy_from_slice(&y);
                p256::PublicKey::from_sec1_bytes(&point).map_err(|_| "not a P-256 point")?;
                Ok(Self::P256 { x, y })
            }
            _ => Err("its JWK is neither an Ed25519 nor a P-256 signing key"),
        }
    }

    fn verifier(&self) -> Verifier {
        let key = match self {
            Self::Ed25519 { x } => DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(x)),
            Self::P256 { x, y } => DecodingKey::from_ec_components(
                &URL_SAFE_NO_PAD.encode(x),
                &URL_SAFE_NO_PAD.encode(y),
            ),
        }
        .expect("checked components decode");
        Verifier {
            algorithm: self.algorithm().jwt(),
            key,
            active_tag: None,
        }
    }
}

/// Authenticates stored public keys and their status: HMAC-SHA256 under a key derived from the
/// JWT secret.
struct KeyAuthenticationKey(Zeroizing<[u8; 32]>);

impl KeyAuthenticationKey {
    fn derive(secret: &[u8]) -> Self {
        Self(super::derive_key(secret, AUTHENTICATION_KEY_INFO))
    }

    /// Each field is length-prefixed, so that no two rows' fields run together the same way.
    fn mac(&self, kid: &str, algorithm: &str, public_jwk: &str, retired: bool) -> Hmac<Sha256> {
        use hmac::Mac as _;
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(self.0.as_slice())
            .expect("HMAC takes any key length");
        let status = if retired { "retired" } else { "active" };
        for field in [kid, algorithm, public_jwk, status] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac
    }

    /// `v1.` + base64url(HMAC).
    fn tag(&self, kid: &str, algorithm: &str, public_jwk: &str, retired: bool) -> String {
        use hmac::Mac as _;
        let mac = self.mac(kid, algorithm, public_jwk, retired).finalize();
        format!("{TAG_PREFIX}{}", URL_SAFE_NO_PAD.encode(mac.into_bytes()))
    }

    /// The tag `stored` should carry in its present status.
    fn tag_of(&self, stored: &StoredSigningKey) -> String {
        self.tag(
            &stored.kid,
            &stored.algorithm,
            &stored.public_jwk,
            stored.retired_at.is_some(),
        )
    }

    /// Whether the row's tag is the one of its fields and status (compared in constant time).
    fn verifies(&self, stored: &StoredSigningKey) -> bool {
        use hmac::Mac as _;
        let Some(tag) = stored
            .authentication_tag
            .as_deref()
            .and_then(|tag| tag.strip_prefix(TAG_PREFIX))
            .and_then(|tag| URL_SAFE_NO_PAD.decode(tag).ok())
        else {
            return false;
        };
        self.mac(
            &stored.kid,
            &stored.algorithm,
            &stored.public_jwk,
            stored.retired_at.is_some(),
        )
        .verify_slice(&tag)
        .is_ok()
    }
}

/// Encrypts private keys at rest: ChaCha20-Poly1305 under a key derived from the JWT secret.
struct KeyEncryptionKey(ChaCha20Poly1305);

impl KeyEncryptionKey {
    fn derive(secret: &[u8]) -> Self {
        let key = super::derive_key(secret, ENCRYPTION_KEY_INFO);
        Self(ChaCha20Poly1305::new(key.as_slice().into()))
    }

    /// `v1.` + base64url(nonce ‖ ciphertext ‖ tag), bound to `kid`.
    fn seal(&self, kid: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let ciphertext = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: kid.as_bytes(),
                },
            )
            .expect("ChaCha20-Poly1305 encrypts any key-sized message");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The plaintext, or `None` when `sealed` was made under another secret or for another
    /// kid, or was altered.
    fn open(&self, kid: &str, sealed: &str) -> Option<Zeroizing<Vec<u8>>> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed.strip_prefix(SEALED_PREFIX)?)
            .ok()?;
        let (nonce, ciphertext) = bytes.split_at_checked(NONCE_BYTES)?;
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        self.0
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: kid.as_bytes(),
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

/// What unit tests elsewhere in the crate need to build keys.
#[cfg(test)]
pub(crate) mod testing {
    use std::{sync::Arc, time::Duration};

    use secrecy::SecretBox;

    use crate::config::{DatabaseSettings, SigningAlgorithm, TokenSettings};
    use crate::db::Store;

    /// A migrated database in memory, gone with the last connection of its pool.
    pub async fn store() -> Store {
        // One connection: each SQLite connection to `:memory:` is a database of its own.
        let store = Store::connect(&DatabaseSettings {
            url: "sqlite::memory:".into(),
            max_connections: std::num::NonZeroU32::new(1),
        })
        .await
        .expect("an in-memory database opens");
        store.migrate().await.expect("migrations apply");
        store
    }

    pub fn settings(secret: &[u8], algorithm: SigningAlgorithm) -> TokenSettings {
        TokenSettings {
            secret: Arc::new(SecretBox::new(secret.to_vec().into_boxed_slice())),
            algorithm,
            ttl: Duration::from_secs(1800),
            issuer: "portcullis".into(),
            audience: "portcullis".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = &[7u8; 32];

    fn encryption() -> KeyEncryptionKey {
        KeyEncryptionKey::derive(SECRET)
    }

    /// RFC 8037 Appendix A.1's Ed25519 private key (`d`) and A.2's public key (`x`).
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn rfc8037_key() -> PrivateKey {
        let d = URL_SAFE_NO_PAD.decode(RFC8037_D).unwrap();
        PrivateKey::from_bytes(KeyAlgorithm::EdDsa, &d).unwrap()
    }

    #[test]
    fn the_kid_is_the_rfc_8037_thumbprint_of_the_ed25519_example() {
        let public = rfc8037_key().public_key();
        let jwk = public.jwk();
        assert_eq!(jwk.x, RFC8037_X);
        // RFC 8037 Appendix A.3.
        assert_eq!(
            public.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        assert_eq!(jwk.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn the_encoding_key_signs_as_rfc_8037_says() {
        // RFC 8037 Appendix A.4: Ed25519 signatures are deterministic.
        let signer = rfc8037_key().encoding_key();
        let signing_input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &signer, Algorithm::EdDSA)
                .unwrap();
        assert_eq!(
            signature,
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }

    #[test]
    fn a_p256_thumbprint_hashes_crv_kty_x_y_in_that_order() {
        // RFC 7515 Appendix A.3's P-256 key.
        let d = URL_SAFE_NO_PAD
            .decode("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI")
            .unwrap();
        let public = PrivateKey::from_bytes(KeyAlgorithm::Es256, &d)
            .unwrap()
            .public_key();
        let jwk = public.jwk();
        assert_eq!(jwk.x, "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU");
        assert_eq!(
            jwk.y.as_deref(),
            Some("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0")
        );
        let canonical = r#"{"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
        assert_eq!(
            public.thumbprint(),
            URL_SAFE_NO_PAD.encode(Sha256::digest(canonical))
        );
        assert_eq!(
            serde_json::to_value(&jwk).unwrap(),
            serde_json::json!({
                "kty": "EC", "crv": "P-256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                "kid": public.thumbprint(), "alg": "ES256", "use": "sig",
            })
        );
    }

    #[test]
    fn a_sealed_key_opens_with_the_same_secret_and_kid() {
        let sealed = encryption().seal("kid-1", b"thirty-two bytes of private key!");
        assert!(sealed.starts_with("v1."), "{sealed}");
        let opened = encryption().open("kid-1", &sealed).unwrap();
        assert_eq!(opened.as_slice(), b"thirty-two bytes of private key!");
    }

    #[test]
    fn a_sealed_key_does_not_open_with_another_secret() {
        let sealed = encryption().seal("kid-1", b"private");
        assert!(
            KeyEncryptionKey::derive(&[8u8; 32])
                .open("kid-1", &sealed)
                .is_none()
        );
    }

    #[test]
    fn a_sealed_key_does_not_open_under_another_kid() {
        let sealed = encryption().seal("kid-1", b"private");
        assert!(encryption().open("kid-2", &sealed).is_none());
    }

    #[test]
    fn an_altered_or_unversioned_ciphertext_does_not_open() {
        let sealed = encryption().seal("kid-1", b"private");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        let altered = format!("v1.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert!(encryption().open("kid-1", &altered).is_none());
        assert!(encryption().open("kid-1", &sealed[3..]).is_none());
        assert!(encryption().open("kid-1", "v1.AAAA").is_none());
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        assert_ne!(
            encryption().seal("kid-1", b"private"),
            encryption().seal("kid-1", b"private")
        );
    }

    #[test]
    fn generated_keys_round_trip_through_their_stored_form() {
        for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
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
            let verifier = public.verifier();
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

    #[test]
    fn a_row_whose_public_key_was_swapped_is_refused() {
        let (first, second) = (
            PrivateKey::generate(KeyAlgorithm::EdDsa).public_key(),
            PrivateKey::generate(KeyAlgorithm::EdDsa).public_key(),
        );
        let stored = StoredSigningKey {
            kid: first.thumbprint(),
            algorithm: "EdDSA".into(),
            public_jwk: serde_json::to_string(&second.jwk()).unwrap(),
            encrypted_private_key: String::new(),
            created_at: Utc::now(),
            retired_at: None,
            authentication_tag: None,
        };
        assert_eq!(
            PublicKey::of_stored(&stored),
            Err("its JWK is not the key its kid names")
        );
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
        let kid = rotate(&store, &before, KeyAlgorithm::EdDsa, false)
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

    fn kids(set: JwkSet) -> Vec<String> {
        set.keys.into_iter().map(|key| key.kid).collect()
    }

    #[tokio::test]
    async fn a_rotation_elsewhere_signs_the_next_token_and_both_keys_verify() {
        let store = testing::store().await;
        let settings = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let keys = SigningKeys::start(store.clone(), &settings).await.unwrap();
        let old = keys.signer().await.unwrap().kid.clone();
        let new = rotate(&store, &settings, KeyAlgorithm::EdDsa, false)
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

        let es = rotate(&store, &eddsa, KeyAlgorithm::Es256, false)
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
        let es = rotate(&store, &es256, KeyAlgorithm::Es256, false)
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
    async fn rotate_refuses_a_secret_that_does_not_open_the_newest_key_unless_forced() {
        let store = testing::store().await;
        let right = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let wrong = testing::settings(&[9u8; 32], SigningAlgorithm::EdDsa);
        // Nothing stored yet: nothing to compare the secret with.
        let first = rotate(&store, &right, KeyAlgorithm::EdDsa, false)
            .await
            .unwrap();

        // Neither algorithm may be sealed under the wrong secret.
        for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
            let err = rotate(&store, &wrong, algorithm, false).await.unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "the configured JWT secret does not open the stored signing keys (the \
                     newest, {first}, does not decrypt with it): set PORTCULLIS_JWT_SECRET or \
                     PORTCULLIS_JWT_SECRET_FILE to the secret the servers use, or pass --force \
                     if the secret was changed on purpose"
                )
            );
        }
        assert_eq!(list(&store).await.unwrap().len(), 1, "nothing was created");

        let forced = rotate(&store, &wrong, KeyAlgorithm::EdDsa, true)
            .await
            .unwrap();
        assert_ne!(forced, first);
        // The newest key is now the forced one: the new secret is the one that rotates...
        rotate(&store, &wrong, KeyAlgorithm::Es256, false)
            .await
            .unwrap();
        // ...and the old one is told that only older keys open with it.
        let err = rotate(&store, &right, KeyAlgorithm::EdDsa, false)
            .await
            .unwrap_err();
        let newest = list(&store).await.unwrap()[0].kid.clone();
        assert_eq!(
            err.to_string(),
            format!(
                "the configured JWT secret does not open the newest stored signing key, \
                 {newest} (older ones do decrypt with it): if {newest} was made under a wrong \
                 secret, retire it (`portcullis keys retire {newest}`) and rotate again; else \
                 set PORTCULLIS_JWT_SECRET or PORTCULLIS_JWT_SECRET_FILE to the secret the \
                 servers use, or pass --force if the secret was changed on purpose"
            )
        );

        // A retired key is not compared with.
        let store = testing::store().await;
        let retired = rotate(&store, &right, KeyAlgorithm::EdDsa, false)
            .await
            .unwrap();
        assert!(retire(&store, &right, &retired).await.unwrap());
        rotate(&store, &wrong, KeyAlgorithm::EdDsa, false)
            .await
            .unwrap();
    }

    /// Counts the error events naming each kid.
    #[derive(Clone, Default)]
    struct ErrorsByKid(Arc<Mutex<HashMap<String, usize>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorsByKid {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Kid(Option<String>);
            impl tracing::field::Visit for Kid {
                fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                    if field.name() == "kid" {
                        self.0 = Some(value.to_owned());
                    }
                }
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    if field.name() == "kid" {
                        self.0 = Some(format!("{value:?}"));
                    }
                }
            }
            if *event.metadata().level() != tracing::Level::ERROR {
                return;
            }
            let mut kid = Kid(None);
            event.record(&mut kid);
            *locked(&self.0)
                .entry(kid.0.unwrap_or_default())
                .or_default() += 1;
        }
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
        let bad = rotate(&store, &wrong, KeyAlgorithm::EdDsa, true)
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
        let active = rotate(&store, &settings, KeyAlgorithm::EdDsa, false)
            .await
            .unwrap();
        let retired = rotate(&store, &settings, KeyAlgorithm::EdDsa, false)
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
        rotate(&store, &wrong, KeyAlgorithm::Es256, true)
            .await
            .unwrap();
        assert_eq!(keys.signer().await.unwrap().kid, good);
        SigningKeys::start(store, &settings).await.unwrap();
    }

    #[tokio::test]
    async fn a_retired_key_is_neither_published_nor_loaded_and_a_new_one_replaces_the_last() {
        let store = testing::store().await;
        let settings = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let keys = SigningKeys::start(store.clone(), &settings).await.unwrap();
        let old = keys.signer().await.unwrap().kid.clone();
        assert!(retire(&store, &settings, &old).await.unwrap());
        assert!(
            !retire(&store, &settings, &old).await.unwrap(),
            "already retired"
        );
        assert_eq!(
            retire(&store, &settings, "nope")
                .await
                .unwrap_err()
                .to_string(),
            r#"no signing key with kid "nope""#
        );
        assert!(keys.jwks().await.unwrap().keys.is_empty());
        assert!(keys.verifier(&old).await.unwrap().is_none());

        let replacement = keys.signer().await.unwrap();
        assert_ne!(replacement.kid, old);
        assert_eq!(replacement.algorithm, Algorithm::EdDSA);
        let statuses: Vec<(String, KeyStatus)> = list(&store)
            .await
            .unwrap()
            .into_iter()
            .map(|key| (key.kid, key.status))
            .collect();
        assert_eq!(
            statuses,
            [
                (replacement.kid.clone(), KeyStatus::Current),
                (old, KeyStatus::Retired)
            ]
        );
    }
}
