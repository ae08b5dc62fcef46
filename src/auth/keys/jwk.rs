//! The JWK form of a public key (RFC 7517; RFC 8037's `OKP` for Ed25519) and its RFC 7638
//! thumbprint, the key's `kid`: jsonwebtoken's [`Jwk`] and [`Jwk::thumbprint`].
//!
//! A JWK from outside our code (a row's `public_jwk`) becomes a key only through
//! [`PublicKey::from_jwk`], which allow-lists Ed25519 with `EdDSA` and P-256 with `ES256` and
//! checks the point: jsonwebtoken's `DecodingKey::from_jwk` would also make an HMAC key of an
//! `oct` JWK, or an RSA one.
//!
//! jsonwebtoken's `Jwk` serializes its common members first (`use`, `alg`, `kid`, then `kty`,
//! `crv`, `x`, `y`). That is the order of the `public_jwk` column of rows stored since (order
//! does not matter to a reader, and a row's tag covers whatever text it holds); the published
//! JWK Set keeps its documented schema and member order (`api/wellknown.rs`).

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    self, AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
    ThumbprintHash,
};

use super::material::{KEY_BYTES, PublicKey};
use crate::db::StoredSigningKey;

impl PublicKey {
    /// The key's members alone (`kty`, `crv`, `x`, `y`), what its thumbprint covers.
    fn parameters(&self) -> AlgorithmParameters {
        match self {
            Self::Ed25519 { x } => AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(x),
            }),
            Self::P256 { x, y } => AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve: EllipticCurve::P256,
                x: URL_SAFE_NO_PAD.encode(x),
                y: URL_SAFE_NO_PAD.encode(y),
            }),
        }
    }

    /// The RFC 7638 thumbprint: base64url SHA-256 of the required members, in lexicographic
    /// order, without spaces.
    pub(super) fn thumbprint(&self) -> String {
        Jwk {
            common: CommonParameters::default(),
            algorithm: self.parameters(),
        }
        .thumbprint(ThumbprintHash::SHA256)
        .expect("an Ed25519 or P-256 JWK has a thumbprint")
    }

    /// The key as published and stored: its members, its thumbprint as `kid`, its algorithm,
    /// and `use` `sig`.
    pub(super) fn jwk(&self) -> Jwk {
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(self.algorithm().jwt().into()),
                key_id: Some(self.thumbprint()),
                ..CommonParameters::default()
            },
            algorithm: self.parameters(),
        }
    }

    /// The public key of a stored row, if its JWK is well formed, agrees with the row's
    /// algorithm and is the key the row's kid names.
    pub(super) fn of_stored(stored: &StoredSigningKey) -> Result<Self, &'static str> {
        let jwk: Jwk =
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

    /// The allow-list: an Ed25519 key for `EdDSA` or a P-256 point for `ES256`, nothing else
    /// (no `oct`, RSA or other curve), with coordinates of 32 bytes that make a valid point.
    fn from_jwk(jwk: &Jwk) -> Result<Self, &'static str> {
        let coordinate = |text: &str| -> Result<[u8; KEY_BYTES], &'static str> {
            URL_SAFE_NO_PAD
                .decode(text)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or("a coordinate is not 32 bytes of base64url")
        };
        match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::OctetKeyPair(okp), Some(jwk::KeyAlgorithm::EdDSA))
                if okp.curve == EllipticCurve::Ed25519 =>
            {
                let x = coordinate(&okp.x)?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| "not an Ed25519 public key")?;
                Ok(Self::Ed25519 { x })
            }
            (AlgorithmParameters::EllipticCurve(ec), Some(jwk::KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                let (x, y) = (coordinate(&ec.x)?, coordinate(&ec.y)?);
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
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use sha2::{Digest as _, Sha256};

    use super::super::{
        KeyAlgorithm,
        material::PrivateKey,
        testing::{RFC8037_X, rfc8037_key},
    };
    use super::*;

    /// A member of the JWK as it serializes.
    fn member(jwk: &Jwk, name: &str) -> Option<String> {
        serde_json::to_value(jwk).unwrap()[name]
            .as_str()
            .map(str::to_owned)
    }

    #[test]
    fn the_kid_is_the_rfc_8037_thumbprint_of_the_ed25519_example() {
        let public = rfc8037_key().public_key();
        let jwk = public.jwk();
        assert_eq!(member(&jwk, "x").unwrap(), RFC8037_X);
        // RFC 8037 Appendix A.3.
        assert_eq!(
            public.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        assert_eq!(
            jwk.common.key_id.unwrap(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn a_p256_thumbprint_hashes_crv_kty_x_y_in_that_order() {
        // RFC 7515 Appendix A.3's P-256 key.
        let d = URL_SAFE_NO_PAD
            .decode("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI")
            .unwrap();
        let public = PrivateKey::from_bytes(KeyAlgorithm::ES256, &d)
            .unwrap()
            .public_key();
        let jwk = public.jwk();
        assert_eq!(
            member(&jwk, "x").unwrap(),
            "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
        );
        assert_eq!(
            member(&jwk, "y").as_deref(),
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
    fn a_row_whose_public_key_was_swapped_is_refused() {
        let (first, second) = (
            PrivateKey::generate(KeyAlgorithm::EDDSA).public_key(),
            PrivateKey::generate(KeyAlgorithm::EDDSA).public_key(),
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

    /// A row of `algorithm` holding `jwk`, under the kid of `named`.
    fn row(named: &PublicKey, algorithm: &str, jwk: serde_json::Value) -> StoredSigningKey {
        StoredSigningKey {
            kid: named.thumbprint(),
            algorithm: algorithm.into(),
            public_jwk: jwk.to_string(),
            encrypted_private_key: String::new(),
            created_at: Utc::now(),
            retired_at: None,
            authentication_tag: None,
        }
    }

    #[test]
    fn a_jwk_stored_in_the_former_member_order_still_reads() {
        // What rows stored before jsonwebtoken's `Jwk` hold, member for member.
        let public = rfc8037_key().public_key();
        let stored = StoredSigningKey {
            public_jwk: format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","kid":"{}","alg":"EdDSA","use":"sig"}}"#,
                public.thumbprint()
            ),
            ..row(&public, "EdDSA", serde_json::Value::Null)
        };
        assert_eq!(PublicKey::of_stored(&stored), Ok(public));
    }

    #[test]
    fn only_ed25519_and_p256_signing_keys_are_read_from_a_jwk() {
        let ed = rfc8037_key().public_key();
        let neither = "its JWK is neither an Ed25519 nor a P-256 signing key";
        let refused = [
            // What `DecodingKey::from_jwk` would turn into an HMAC or an RSA key.
            (
                "HS256",
                serde_json::json!({"kty": "oct", "k": RFC8037_X, "alg": "HS256"}),
                neither,
            ),
            (
                "RS256",
                serde_json::json!({"kty": "RSA", "n": RFC8037_X, "e": "AQAB", "alg": "RS256"}),
                neither,
            ),
            // An Ed25519 key named for another algorithm, or for none.
            (
                "EdDSA",
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "alg": "ES256"}),
                neither,
            ),
            (
                "EdDSA",
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}),
                neither,
            ),
            // A curve that is not the algorithm's.
            (
                "ES256",
                serde_json::json!({"kty": "EC", "crv": "P-384", "x": RFC8037_X, "y": RFC8037_X, "alg": "ES256"}),
                neither,
            ),
            (
                "ES256",
                serde_json::json!({"kty": "EC", "crv": "Ed25519", "x": RFC8037_X, "y": RFC8037_X, "alg": "ES256"}),
                neither,
            ),
            // Well named, but not a key.
            (
                "EdDSA",
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "alg": "EdDSA"}),
                "a coordinate is not 32 bytes of base64url",
            ),
            (
                "ES256",
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": RFC8037_X, "y": RFC8037_X, "alg": "ES256"}),
                "not a P-256 point",
            ),
            (
                "EdDSA",
                serde_json::json!(["not", "a", "JWK"]),
                "its JWK does not parse",
            ),
        ];
        for (algorithm, jwk, reason) in refused {
            let case = jwk.to_string();
            assert_eq!(
                PublicKey::of_stored(&row(&ed, algorithm, jwk)),
                Err(reason),
                "{case}"
            );
        }
        // The right key under the row's wrong algorithm.
        assert_eq!(
            PublicKey::of_stored(&row(&ed, "ES256", serde_json::to_value(ed.jwk()).unwrap())),
            Err("its JWK does not match its algorithm")
        );
    }
}
