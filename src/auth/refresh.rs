//! Refresh tokens: a session's id and a generation number under a MAC.
//!
//! Each exchange of a session's refresh token hands out the next generation; the session row
//! keeps only the newest generation and when it was handed out. That is all reuse detection
//! needs (RFC 9700 §4.14.2): a token of an older generation is a spent one. So a session
//! accumulates nothing however often it is refreshed, and two tabs exchanging one token within
//! the grace period get the *same* successor instead of two chains.
//!
//! The MAC (HMAC-SHA256 under a key derived from the JWT secret, which the database does not
//! hold) makes tokens unforgeable and lets a mistyped or made-up token be refused without a
//! database read; a database leak hands out no usable token, as with the stored hashes before.
//!
//! Tokens issued before generations existed (43 characters: 256 random bits) are still found
//! by their SHA-256 hash in `refresh_tokens`; the live one of a session counts as generation 0.

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// HKDF `info` of the MAC key: names its one use, so the JWT secret is never used directly.
const MAC_KEY_INFO: &[u8] = b"portcullis refresh-token mac v1";
/// Session id (16 bytes), generation (8, big-endian), HMAC-SHA256 tag (32).
const TOKEN_BYTES: usize = 16 + 8 + 32;
/// Length of a token issued before generations: 32 random bytes in unpadded base64url.
const LEGACY_TOKEN_CHARS: usize = 43;

/// A presented refresh token, read without the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresentedRefreshToken {
    /// One of ours: this session's token of this generation.
    Generation { session_id: Uuid, generation: u64 },
    /// Shaped like a token issued before generations: look it up by this hash.
    Legacy { hash: String },
    /// Not a refresh token of this service.
    Invalid,
}

/// Issues and reads refresh tokens.
#[derive(Clone)]
pub struct RefreshTokens {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokens([REDACTED])")
    }
}

impl RefreshTokens {
    /// The MAC key, derived from the JWT secret.
    pub fn new(secret: &[u8]) -> Self {
        let key = super::derive_key(secret, MAC_KEY_INFO);
        Self {
            mac: Hmac::new_from_slice(key.as_slice()).expect("HMAC takes a key of any length"),
        }
    }

    /// The session's refresh token of `generation`; the same every time it is asked for.
    pub fn issue(&self, session_id: Uuid, generation: u64) -> String {
        let mut raw = [0u8; TOKEN_BYTES];
        raw[..16].copy_from_slice(session_id.as_bytes());
        raw[16..24].copy_from_slice(&generation.to_be_bytes());
        let tag = self.tag(&raw[..24]);
        raw[24..].copy_from_slice(&tag);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// What `token` is, checked in constant time against its MAC.
    pub fn read(&self, token: &str) -> PresentedRefreshToken {
        if token.len() == LEGACY_TOKEN_CHARS {
            return PresentedRefreshToken::Legacy { hash: hash(token) };
        }
        let mut raw = [0u8; TOKEN_BYTES];
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(token.as_bytes(), &mut raw);
        if decoded != Ok(TOKEN_BYTES) {
            return PresentedRefreshToken::Invalid;
        }
        let mut mac = self.mac.clone();
        mac.update(&raw[..24]);
        if mac.verify_slice(&raw[24..]).is_err() {
            return PresentedRefreshToken::Invalid;
        }
        let session_id = Uuid::from_slice(&raw[..16]).expect("16 bytes");
        let generation = u64::from_be_bytes(raw[16..24].try_into().expect("8 bytes"));
        PresentedRefreshToken::Generation {
            session_id,
            generation,
        }
    }

    fn tag(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }
}

/// The stored form of a token issued before generations: SHA-256, lowercase hex.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> RefreshTokens {
        RefreshTokens::new(b"a-unit-test-secret-of-at-least-32-bytes!")
    }

    #[test]
    fn a_token_reads_back_as_its_session_and_generation() {
        let session_id = Uuid::now_v7();
        let token = tokens().issue(session_id, 7);
        assert_eq!(token.len(), 75, "56 bytes in unpadded base64url");
        assert!(!token.contains('.'), "never mistaken for a JWT");
        assert_eq!(
            tokens().read(&token),
            PresentedRefreshToken::Generation {
                session_id,
                generation: 7
            }
        );
        assert_eq!(token, tokens().issue(session_id, 7), "deterministic");
        assert_ne!(token, tokens().issue(session_id, 8));
    }

    #[test]
    fn a_token_under_another_secret_or_altered_is_invalid() {
        let session_id = Uuid::now_v7();
        let other = RefreshTokens::new(b"another-secret-of-at-least-thirty-two-bytes");
        assert_eq!(
            tokens().read(&other.issue(session_id, 0)),
            PresentedRefreshToken::Invalid
        );
        let mut altered = tokens().issue(session_id, 0).into_bytes();
        altered[30] = if altered[30] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(tokens().read(&altered), PresentedRefreshToken::Invalid);
        for garbage in ["", "not a refresh token", "x.y.z", &"A".repeat(75)] {
            assert_eq!(tokens().read(garbage), PresentedRefreshToken::Invalid);
        }
    }

    #[test]
    fn a_legacy_token_is_looked_up_by_its_sha256_hex() {
        let legacy = "A".repeat(43);
        assert_eq!(
            tokens().read(&legacy),
            PresentedRefreshToken::Legacy {
                hash: hash(&legacy)
            }
        );
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
