use secrecy::{ExposeSecret as _, SecretString};

/// A stored password hash (a PHC string). Not the password, but what a guesser would crack
/// offline: it never appears in `Debug` output, and reading it takes [`HashedPassword::expose`].
#[derive(Clone)]
pub struct HashedPassword(SecretString);

impl HashedPassword {
    /// Wraps a PHC string as the hasher produced it, or as it was stored.
    pub fn from_phc(phc: impl Into<String>) -> Self {
        Self(SecretString::from(phc.into()))
    }

    /// The PHC string, for the hasher and the database only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Two hashes are equal when their PHC strings are (the same salt and output): for tests of
/// re-hashing, not for checking passwords, which is `auth::password`'s job.
impl PartialEq for HashedPassword {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for HashedPassword {}

impl std::fmt::Debug for HashedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashedPassword([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_hash() {
        let hash = HashedPassword::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
        assert_eq!(format!("{hash:?}"), "HashedPassword([REDACTED])");
        assert!(hash.expose().starts_with("$argon2id$"));
    }
}
