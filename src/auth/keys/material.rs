//! Key material: private keys (generated, stored as bytes, turned into jsonwebtoken's
//! [`EncodingKey`]) and checked public keys (turned into its [`DecodingKey`]).

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use secrecy::zeroize::Zeroizing;

use super::{KeyAlgorithm, SigningAlgorithm};

/// An Ed25519 seed, a P-256 scalar, and each public coordinate: 32 bytes.
pub(super) const KEY_BYTES: usize = 32;

/// A private key, in memory only to be encrypted or turned into an [`EncodingKey`]; both
/// kinds wipe themselves when dropped.
pub(super) enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::SecretKey),
}

impl PrivateKey {
    pub(super) fn generate(algorithm: KeyAlgorithm) -> Self {
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
    pub(super) fn from_bytes(algorithm: KeyAlgorithm, bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; KEY_BYTES] = bytes.try_into().ok()?;
        match SigningAlgorithm::from(algorithm) {
            SigningAlgorithm::EdDsa => {
                Some(Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(bytes)))
            }
            SigningAlgorithm::Es256 => p256::SecretKey::from_slice(bytes).ok().map(Self::P256),
            SigningAlgorithm::Hs256 => unreachable!("a key algorithm is never HS256"),
        }
    }

    pub(super) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            Self::Ed25519(key) => key.as_bytes().to_vec(),
            // Copied through a wiped buffer: `to_bytes` returns the scalar by value.
            Self::P256(key) => Zeroizing::new(key.to_bytes()).to_vec(),
        })
    }

    pub(super) fn public_key(&self) -> PublicKey {
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
    pub(super) fn encoding_key(&self) -> EncodingKey {
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

/// A checked public key: an Ed25519 point, or a P-256 point on the curve. Its JWK form (and
/// the only way in from one, which allow-lists these two) is in `jwk.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PublicKey {
    Ed25519 {
        x: [u8; KEY_BYTES],
    },
    P256 {
        x: [u8; KEY_BYTES],
        y: [u8; KEY_BYTES],
    },
}

impl PublicKey {
    pub(super) fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::Ed25519 { .. } => KeyAlgorithm::EDDSA,
            Self::P256 { .. } => KeyAlgorithm::ES256,
        }
    }

    /// The key that verifies its signatures. Built from its JWK with jsonwebtoken's
    /// `DecodingKey::from_jwk`, which would as readily make an HMAC key of an `oct` JWK: safe
    /// here because a `PublicKey` is only ever Ed25519 or P-256.
    pub(super) fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_jwk(&self.jwk()).expect("a checked public key decodes")
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;

    use super::super::testing::rfc8037_key;

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
}
