//! Credentials and what they grant: password hashing, the login throttle, the OAuth 2.0 grants
//! (`grants`), access and refresh tokens, the signing keys, and the access check every protected
//! operation runs (`access`). Nothing here knows about HTTP.

pub mod access;
pub mod grants;
pub mod keys;
pub mod password;
pub mod refresh;
pub mod throttle;
pub mod token;

pub use keys::SigningKeys;

/// A 32-byte key for one use, derived from the JWT secret with HKDF-SHA256; `info` names the
/// use, so that no two uses (and never the secret itself) share a key.
pub(crate) fn derive_key(secret: &[u8], info: &[u8]) -> secrecy::zeroize::Zeroizing<[u8; 32]> {
    let mut key = secrecy::zeroize::Zeroizing::new([0u8; 32]);
    hkdf::Hkdf::<sha2::Sha256>::new(None, secret)
        .expand(info, key.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}
pub use access::{AccessError, Authenticated, Credential};
pub use grants::{Client, GrantError, Granted, Grants, PasswordLogin};
pub use password::{HashError, PasswordHasher, Verification};
pub use refresh::{PresentedRefreshToken, RefreshTokens};
pub use throttle::{Admission, AttemptKeys, LoginThrottle};
pub use token::{AccessTokens, InvalidToken, IssueError, IssuedToken, VerifiedToken, VerifyError};
