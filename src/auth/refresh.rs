//! Refresh tokens: opaque random strings, given to the client once and stored only as a hash.
//!
//! 256 random bits cannot be guessed, so a fast hash (SHA-256) is enough to keep a database
//! leak from handing out usable tokens; no slow password hash is needed.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Random bytes in a refresh token (256 bits).
const TOKEN_BYTES: usize = 32;

/// A new refresh token and the hash to store.
pub struct NewRefreshToken {
    pub token: String,
    pub hash: String,
}

pub fn generate() -> NewRefreshToken {
    let mut raw = [0u8; TOKEN_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = hash(&token);
    NewRefreshToken { token, hash }
}

/// The stored form of a presented token: SHA-256, lowercase hex.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_random_bits_and_stored_as_their_hash() {
        let first = generate();
        let second = generate();
        assert_eq!(first.token.len(), 43, "32 bytes in unpadded base64url");
        assert_ne!(first.token, second.token);
        assert_eq!(first.hash, hash(&first.token));
        assert_eq!(first.hash.len(), 64);
        assert!(!first.hash.contains(&first.token));
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
