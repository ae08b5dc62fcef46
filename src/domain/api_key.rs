//! The format of a personal API key: `pcl_`, then the key's id and its 256-bit secret in base62
//! (65 characters), then a CRC-32 of everything before it (6 characters): 75 characters that
//! a double click selects whole.
//!
//! Why this shape: the prefix lets secret scanners (and people) recognise a leaked key; the
//! checksum lets them, and this service, tell a mistyped or made-up key from a real one
//! without a database read; the id finds the stored row by primary key, whose SHA-256 of the
//! secret is then compared in constant time. Only that hash is stored.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

/// What every key starts with.
pub const API_KEY_PREFIX: &str = "pcl_";

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// The id (16 bytes) and the secret (32 bytes), as one number.
const BODY_BYTES: usize = 48;
/// 62^65 > 2^384 > 62^64.
const BODY_CHARS: usize = 65;
/// 62^6 > 2^32.
const CHECKSUM_CHARS: usize = 6;
/// The whole key's length.
pub const API_KEY_CHARS: usize = API_KEY_PREFIX.len() + BODY_CHARS + CHECKSUM_CHARS;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// A key as presented or as just made: its id and its secret. Its `Debug` never shows the
/// secret.
#[derive(Clone)]
pub struct ApiKeySecret {
    id: Uuid,
    secret: [u8; 32],
}

/// Why a presented text is not one of our keys, told without any database read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    #[error("not the length or alphabet of an API key")]
    Shape,
    #[error("the checksum does not match (a mistyped or made-up key)")]
    Checksum,
}

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeySecret")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ApiKeySecret {
    /// A new key with a fresh id (UUIDv7: listed in creation order) and 256 random bits.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut secret);
        Self {
            id: Uuid::now_v7(),
            secret,
        }
    }

    /// Whether `credential` is meant as an API key (rather than an access token).
    pub fn is_api_key(credential: &str) -> bool {
        credential.starts_with(API_KEY_PREFIX)
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The key as handed to its owner, once.
    pub fn render(&self) -> String {
        let mut body = [0u8; BODY_BYTES];
        body[..16].copy_from_slice(self.id.as_bytes());
        body[16..].copy_from_slice(&self.secret);
        let mut key = String::with_capacity(API_KEY_CHARS);
        key.push_str(API_KEY_PREFIX);
        key.push_str(&encode(&body, BODY_CHARS));
        let checksum = encode(&CRC.checksum(key.as_bytes()).to_be_bytes(), CHECKSUM_CHARS);
        key.push_str(&checksum);
        key
    }

    /// The key `text` is, checked for shape and checksum only.
    pub fn parse(text: &str) -> Result<Self, MalformedKey> {
        let bytes = text.as_bytes();
        if bytes.len() != API_KEY_CHARS || !text.starts_with(API_KEY_PREFIX) {
            return Err(MalformedKey::Shape);
        }
        let (signed, checksum) = text.split_at(API_KEY_CHARS - CHECKSUM_CHARS);
        let checksum: [u8; 4] = decode(checksum).ok_or(MalformedKey::Shape)?;
        let body: [u8; BODY_BYTES] =
            decode(&signed[API_KEY_PREFIX.len()..]).ok_or(MalformedKey::Shape)?;
        if u32::from_be_bytes(checksum) != CRC.checksum(signed.as_bytes()) {
            return Err(MalformedKey::Checksum);
        }
        let id = Uuid::from_slice(&body[..16]).expect("16 bytes");
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&body[16..]);
        Ok(Self { id, secret })
    }

    /// What is stored: the SHA-256 of the secret, in hex. The secret is 256 random bits, so a
    /// fast hash is enough (there is nothing to guess offline, unlike a password).
    pub fn secret_hash(&self) -> String {
        hex(&Sha256::digest(self.secret))
    }

    /// Whether this key's secret is the one whose hash is `stored`, in constant time.
    pub fn matches(&self, stored: &str) -> bool {
        self.secret_hash()
            .as_bytes()
            .ct_eq(stored.as_bytes())
            .into()
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// `bytes` as a big-endian number in base62, `width` digits, zero-padded.
fn encode(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = vec![ALPHABET[0]; width];
    for digit in digits.iter_mut().rev() {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        *digit = ALPHABET[remainder as usize];
    }
    debug_assert!(number.iter().all(|&b| b == 0), "width holds the number");
    String::from_utf8(digits).expect("ASCII")
}

/// The number `text` spells in base62, as `N` big-endian bytes; `None` for a character outside
/// the alphabet or a number that does not fit.
fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut number = [0u8; N];
    for char in text.bytes() {
        let digit = ALPHABET.iter().position(|&c| c == char)? as u32;
        let mut carry = digit;
        for byte in number.iter_mut().rev() {
            let value = u32::from(*byte) * 62 + carry;
            *byte = value as u8;
            carry = value >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_key_parses_back_to_its_id_and_secret() {
        for _ in 0..200 {
            let key = ApiKeySecret::generate();
            let text = key.render();
            assert_eq!(text.len(), API_KEY_CHARS);
            assert!(text.starts_with("pcl_"));
            assert!(
                text[4..].bytes().all(|b| b.is_ascii_alphanumeric()),
                "{text}"
            );
            let parsed = ApiKeySecret::parse(&text).unwrap();
            assert_eq!(parsed.id(), key.id());
            assert!(parsed.matches(&key.secret_hash()));
        }
    }

    #[test]
    fn extreme_values_round_trip() {
        for fill in [0u8, 0xff] {
            let key = ApiKeySecret {
                id: Uuid::from_bytes([fill; 16]),
                secret: [fill; 32],
            };
            let parsed = ApiKeySecret::parse(&key.render()).unwrap();
            assert_eq!(parsed.id(), key.id);
            assert_eq!(parsed.secret, key.secret);
        }
    }

    #[test]
    fn every_single_character_typo_is_caught_by_the_checksum_or_the_shape() {
        let text = ApiKeySecret::generate().render();
        for position in 4..text.len() {
            let mut typo = text.clone().into_bytes();
            typo[position] = if typo[position] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(typo).unwrap();
            assert!(ApiKeySecret::parse(&typo).is_err(), "position {position}");
        }
    }

    #[test]
    fn malformed_texts_are_refused_by_shape() {
        let text = ApiKeySecret::generate().render();
        let shapes = [
            String::new(),
            "pcl_".into(),
            text[..text.len() - 1].into(),
            format!("{text}0"),
            text.replacen("pcl_", "pcx_", 1),
            format!("{}-{}", &text[..10], &text[11..]),
            // The largest 65-digit base62 number does not fit in 48 bytes.
            format!("pcl_{}{}", "z".repeat(65), &text[69..]),
        ];
        for shape in shapes {
            assert_eq!(
                ApiKeySecret::parse(&shape).unwrap_err(),
                MalformedKey::Shape,
                "{shape:?}"
            );
        }
    }

    #[test]
    fn another_secret_does_not_match_and_debug_hides_the_secret() {
        let (a, b) = (ApiKeySecret::generate(), ApiKeySecret::generate());
        assert!(!a.matches(&b.secret_hash()));
        assert!(!a.matches(""));
        let shown = format!("{a:?}");
        assert!(!shown.contains(&a.render()[4..20]), "{shown}");
        assert!(!shown.contains("secret:"), "{shown}");
    }
}
