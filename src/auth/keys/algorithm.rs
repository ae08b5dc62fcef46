//! The algorithm access tokens are signed with, and the asymmetric ones a stored key can have.
//!
//! One enum, [`SigningAlgorithm`], names every algorithm; [`KeyAlgorithm`] is the same value
//! restricted to the asymmetric ones (a stored key is never HS256), so that generating,
//! storing or rotating a key cannot be asked for an HMAC one. The command line's parsing of
//! both lives in `config.rs` (clap stays there and in `cli.rs`).

use jsonwebtoken::Algorithm;

/// How access tokens are signed (`PORTCULLIS_SIGNING_ALGORITHM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// HMAC-SHA256 with the shared secret; nobody else can verify the tokens.
    Hs256,
    /// Ed25519 (RFC 8037), the asymmetric default.
    EdDsa,
    /// ECDSA with P-256 and SHA-256.
    Es256,
}

impl SigningAlgorithm {
    /// Every algorithm, in the order `--help` lists them.
    pub const ALL: [Self; 3] = [Self::Hs256, Self::EdDsa, Self::Es256];

    /// The name in JWS headers, JWKs, the `algorithm` column and the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        }
    }

    /// Whether tokens are signed with a stored key pair (and verifiable by anyone).
    pub fn is_asymmetric(self) -> bool {
        self != Self::Hs256
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
        }
    }
}

impl std::fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The algorithm of a stored key: a [`SigningAlgorithm`] that is asymmetric (EdDSA or ES256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAlgorithm(SigningAlgorithm);

impl KeyAlgorithm {
    pub const EDDSA: Self = Self(SigningAlgorithm::EdDsa);
    pub const ES256: Self = Self(SigningAlgorithm::Es256);
    /// Both, in the order `keys rotate --help` lists them.
    pub const ALL: [Self; 2] = [Self::EDDSA, Self::ES256];

    /// `None` for HS256, which has no key pair.
    pub fn new(algorithm: SigningAlgorithm) -> Option<Self> {
        algorithm.is_asymmetric().then_some(Self(algorithm))
    }

    /// The algorithm named `raw` (as the `algorithm` column holds it), if it is one of ours.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.as_str() == raw)
    }

    /// What a new key gets unless told otherwise, and the keys that sign and verify: the
    /// configured algorithm when it is asymmetric, else Ed25519 (under HS256 the stored keys
    /// neither sign nor verify).
    pub fn default_for(configured: SigningAlgorithm) -> Self {
        Self::new(configured).unwrap_or(Self::EDDSA)
    }

    pub fn as_str(self) -> &'static str {
        self.0.as_str()
    }

    pub fn jwt(self) -> Algorithm {
        self.0.jwt()
    }
}

impl From<KeyAlgorithm> for SigningAlgorithm {
    fn from(algorithm: KeyAlgorithm) -> Self {
        algorithm.0
    }
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_algorithm_is_never_hs256() {
        assert_eq!(KeyAlgorithm::new(SigningAlgorithm::Hs256), None);
        assert_eq!(KeyAlgorithm::parse("HS256"), None);
        assert_eq!(
            KeyAlgorithm::default_for(SigningAlgorithm::Hs256),
            KeyAlgorithm::EDDSA
        );
        for algorithm in KeyAlgorithm::ALL {
            let signing = SigningAlgorithm::from(algorithm);
            assert!(signing.is_asymmetric());
            assert_eq!(KeyAlgorithm::new(signing), Some(algorithm));
            assert_eq!(KeyAlgorithm::default_for(signing), algorithm);
            assert_eq!(KeyAlgorithm::parse(algorithm.as_str()), Some(algorithm));
            assert_eq!(algorithm.jwt(), signing.jwt());
        }
    }
}
