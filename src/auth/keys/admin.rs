//! What the command line's `keys` commands do: rotate (create a key), retire, list. They work
//! on the database directly, configured with the JWT secret but not necessarily like the
//! servers (another algorithm, say), and report with `anyhow`.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;

use super::{
    KeyAlgorithm, new_key,
    sealing::{KeyAuthenticationKey, KeyEncryptionKey},
};
use crate::{
    audit::AuditContext,
    config::TokenSettings,
    db::{AuditEvent, Store, StoreError, StoredSigningKey},
    domain::AuditEventType,
};

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

/// The audit event of a key's rotation or retirement: these are the operator's commands (the
/// command line is their only caller), so the actor is `cli`.
fn key_event(kind: AuditEventType, kid: &str, algorithm: &str) -> AuditEvent {
    AuditContext::cli().event(
        kind,
        None,
        serde_json::json!({ "kid": kid, "algorithm": algorithm }),
    )
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
    let event = || {
        vec![key_event(
            AuditEventType::KeyRetired,
            &stored.kid,
            &stored.algorithm,
        )]
    };
    let retired = store.retire_signing_key(kid, tag, event).await?;
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

async fn create_key(
    store: &Store,
    encryption: &KeyEncryptionKey,
    authentication: &KeyAuthenticationKey,
    algorithm: KeyAlgorithm,
) -> Result<StoredSigningKey, StoreError> {
    let event = |key: &StoredSigningKey| {
        vec![key_event(
            AuditEventType::KeyRotated,
            &key.kid,
            &key.algorithm,
        )]
    };
    store
        .insert_signing_key(new_key(encryption, authentication, algorithm), event)
        .await
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;

    use super::super::{
        SigningAlgorithm, SigningKeys,
        testing::{self, SECRET},
    };
    use super::*;

    #[tokio::test]
    async fn rotate_refuses_a_secret_that_does_not_open_the_newest_key_unless_forced() {
        let store = testing::store().await;
        let right = testing::settings(SECRET, SigningAlgorithm::EdDsa);
        let wrong = testing::settings(&[9u8; 32], SigningAlgorithm::EdDsa);
        // Nothing stored yet: nothing to compare the secret with.
        let first = rotate(&store, &right, KeyAlgorithm::EDDSA, false)
            .await
            .unwrap();

        // Neither algorithm may be sealed under the wrong secret.
        for algorithm in [KeyAlgorithm::EDDSA, KeyAlgorithm::ES256] {
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

        let forced = rotate(&store, &wrong, KeyAlgorithm::EDDSA, true)
            .await
            .unwrap();
        assert_ne!(forced, first);
        // The newest key is now the forced one: the new secret is the one that rotates...
        rotate(&store, &wrong, KeyAlgorithm::ES256, false)
            .await
            .unwrap();
        // ...and the old one is told that only older keys open with it.
        let err = rotate(&store, &right, KeyAlgorithm::EDDSA, false)
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
        let retired = rotate(&store, &right, KeyAlgorithm::EDDSA, false)
            .await
            .unwrap();
        assert!(retire(&store, &right, &retired).await.unwrap());
        rotate(&store, &wrong, KeyAlgorithm::EDDSA, false)
            .await
            .unwrap();
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
