//! What protects stored keys from someone who can read or write the database but does not hold
//! the JWT secret: two keys derived from it by HKDF-SHA256 (`auth::derive_key`), one for each
//! use.
//!
//! - [`KeyEncryptionKey`] seals private keys: ChaCha20-Poly1305 with the kid as associated
//!   data, so a copy of the database alone signs nothing, and a ciphertext moved to another row
//!   does not decrypt.
//! - [`KeyAuthenticationKey`] tags each row: HMAC-SHA256 over its kid, algorithm, public JWK
//!   and status (active or retired), so that a row inserted by hand verifies nothing and a
//!   retired key set back to active by hand stays refused.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    ChaCha20Poly1305, KeyInit as _, Nonce,
    aead::{Aead as _, Payload},
};
use hmac::{Hmac, Mac as _};
use secrecy::zeroize::Zeroizing;
use sha2::Sha256;

use crate::db::StoredSigningKey;

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

/// Authenticates stored public keys and their status: HMAC-SHA256 under a key derived from the
/// JWT secret.
pub(super) struct KeyAuthenticationKey(Zeroizing<[u8; 32]>);

impl KeyAuthenticationKey {
    pub(super) fn derive(secret: &[u8]) -> Self {
        Self(crate::auth::derive_key(secret, AUTHENTICATION_KEY_INFO))
    }

    /// Each field is length-prefixed, so that no two rows' fields run together the same way.
    fn mac(&self, kid: &str, algorithm: &str, public_jwk: &str, retired: bool) -> Hmac<Sha256> {
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
    pub(super) fn tag(
        &self,
        kid: &str,
        algorithm: &str,
        public_jwk: &str,
        retired: bool,
    ) -> String {
        let mac = self.mac(kid, algorithm, public_jwk, retired).finalize();
        format!("{TAG_PREFIX}{}", URL_SAFE_NO_PAD.encode(mac.into_bytes()))
    }

    /// The tag `stored` should carry in its present status.
    pub(super) fn tag_of(&self, stored: &StoredSigningKey) -> String {
        self.tag(
            &stored.kid,
            &stored.algorithm,
            &stored.public_jwk,
            stored.retired_at.is_some(),
        )
    }

    /// Whether the row's tag is the one of its fields and status (compared in constant time).
    pub(super) fn verifies(&self, stored: &StoredSigningKey) -> bool {
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
pub(super) struct KeyEncryptionKey(ChaCha20Poly1305);

impl KeyEncryptionKey {
    pub(super) fn derive(secret: &[u8]) -> Self {
        let key = crate::auth::derive_key(secret, ENCRYPTION_KEY_INFO);
        Self(ChaCha20Poly1305::new(key.as_slice().into()))
    }

    /// `v1.` + base64url(nonce ‖ ciphertext ‖ tag), bound to `kid`.
    pub(super) fn seal(&self, kid: &str, plaintext: &[u8]) -> String {
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
    pub(super) fn open(&self, kid: &str, sealed: &str) -> Option<Zeroizing<Vec<u8>>> {
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

#[cfg(test)]
mod tests {
    use super::super::testing::SECRET;
    use super::*;

    fn encryption() -> KeyEncryptionKey {
        KeyEncryptionKey::derive(SECRET)
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
}
