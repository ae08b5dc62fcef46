use caseless::Caseless as _;
use unicode_normalization::UnicodeNormalization as _;

use super::Invalid;

/// A username: 1–64 letters, digits and `. _ - @` (so an e-mail address works as one).
///
/// Two usernames that differ only in case or in compatibility form (full-width `ｊｏｈｎｄｏｅ`,
/// `ﬁ` for `fi`) are the same account: [`Username::normalized`] (NFKC and full case folding)
/// is what the database compares, [`Username::as_str`] the spelling the user chose. Two that
/// merely look alike (Cyrillic `јohndoe`) are different names, but a new one is refused when
/// its [`Username::skeleton`] is an existing account's, so that no one can pose as another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let count = raw.chars().count();
        if count == 0 {
            return Err(Invalid::new(
                "string_too_short",
                "String should have at least 1 character",
            ));
        }
        if count > Self::MAX_CHARS {
            return Err(Invalid::new(
                "string_too_long",
                "String should have at most 64 characters",
            ));
        }
        if let Some(bad) = raw.chars().find(|c| !Self::allowed(*c)) {
            return Err(Invalid::new(
                "value_error",
                format!("Username may contain only letters, digits and . _ - @, not {bad:?}"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    fn allowed(c: char) -> bool {
        c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form compared for uniqueness and at login: NFKC of the full case folding (Unicode's
    /// compatibility caseless matching, D146: `NFKD(fold(NFKD(fold(NFD(x)))))`, recomposed),
    /// so that `JOHNDOE`, `ｊｏｈｎｄｏｅ` and `johndoe` are one name, and `Straße` is `strasse`.
    pub fn normalized(&self) -> String {
        caseless_form(&self.0)
    }

    /// The form of names before [`Username::normalized`] folded compatibility forms: only lower
    /// case. Accounts created before then that now clash with another keep it (see
    /// `db::Store::normalize_usernames`) and are still found by it.
    pub fn legacy_normalized(&self) -> String {
        self.0.to_lowercase()
    }

    /// The confusable skeleton (Unicode TS #39 §4) without regard to case: names that look
    /// alike (`јohndoe` with a Cyrillic `ј`, `rnary` and `mary`, `Iisa` and `lisa`) have the
    /// same one. Its unique index keeps a new account from looking like an existing one.
    ///
    /// The spelling as given is mapped first, then folded and mapped again: TS #39 maps some
    /// capitals to the lower-case letter they look like (`I` → `l`, `O` for `0`), which folding
    /// first would erase (`i` maps to itself).
    pub fn skeleton(&self) -> String {
        let mapped: String = unicode_security::skeleton(&self.0).collect();
        unicode_security::skeleton(&caseless_form(&mapped)).collect()
    }
}

/// Unicode's compatibility caseless form (D146), recomposed: see [`Username::normalized`]. Also
/// what a search for part of a name is compared in.
pub fn caseless_form(raw: &str) -> String {
    raw.nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkc()
        .collect()
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_email_address_is_a_valid_username() {
        assert_eq!(
            Username::parse("john.doe-1_x@example.com")
                .unwrap()
                .as_str(),
            "john.doe-1_x@example.com"
        );
    }

    #[test]
    fn usernames_keep_their_spelling_and_compare_in_lower_case() {
        let name = Username::parse("JohnDoe").unwrap();
        assert_eq!(name.as_str(), "JohnDoe");
        assert_eq!(name.normalized(), "johndoe");
    }

    fn name(raw: &str) -> Username {
        Username::parse(raw).unwrap()
    }

    #[test]
    fn compatibility_forms_and_case_are_one_name() {
        for same in [
            "johndoe",
            "JOHNDOE",
            "JohnDoe",
            "ｊｏｈｎｄｏｅ",
            "ＪＯＨＮＤＯＥ",
        ] {
            assert_eq!(name(same).normalized(), "johndoe", "{same}");
        }
        // Full case folding, not just lower case; NFKC of ligatures.
        assert_eq!(name("Straße").normalized(), "strasse");
        assert_eq!(name("ﬁle").normalized(), "file");
        assert_eq!(name("ÉMILE").normalized(), "émile");
        // A lookalike from another script is another name...
        assert_ne!(name("јohndoe").normalized(), "johndoe");
    }

    #[test]
    fn lookalikes_share_a_skeleton_and_other_names_do_not() {
        let skeleton = name("johndoe").skeleton();
        for lookalike in ["јohndoe", "ｊｏｈｎｄｏｅ", "JOHNDOE", "јоhndое"] {
            assert_eq!(name(lookalike).skeleton(), skeleton, "{lookalike}");
        }
        assert_eq!(name("rnary").skeleton(), name("mary").skeleton());
        // Capitals that look like another lower-case letter or a digit.
        assert_eq!(name("Iisa").skeleton(), name("lisa").skeleton());
        assert_eq!(name("J0hnDoe").skeleton(), name("JohnDoe").skeleton());
        assert_eq!(name("J0HNDOE").skeleton(), skeleton);
        for other in ["janedoe", "johndoe2", "john.doe"] {
            assert_ne!(name(other).skeleton(), skeleton, "{other}");
        }
    }

    #[test]
    fn empty_long_and_odd_usernames_are_refused() {
        assert_eq!(Username::parse("").unwrap_err().kind, "string_too_short");
        assert_eq!(
            Username::parse(&"a".repeat(65)).unwrap_err().kind,
            "string_too_long"
        );
        for bad in [
            "john doe",
            "x'; DROP TABLE users; --",
            "a/b",
            "tab\t",
            "nul\0",
        ] {
            assert_eq!(
                Username::parse(bad).unwrap_err().kind,
                "value_error",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sixty_four_non_ascii_letters_are_accepted() {
        assert!(Username::parse(&"é".repeat(64)).is_ok());
    }

    proptest! {
        #[test]
        fn any_accepted_username_is_short_and_clean(raw in "\\PC{0,80}") {
            if let Ok(name) = Username::parse(&raw) {
                let count = name.as_str().chars().count();
                prop_assert!((1..=64).contains(&count));
                prop_assert!(name.as_str().chars().all(Username::allowed));
            }
        }

        #[test]
        fn names_from_the_allowed_alphabet_are_accepted(raw in "[a-zA-Z0-9._@-]{1,64}") {
            let name = Username::parse(&raw).unwrap();
            prop_assert_eq!(name.as_str(), raw.as_str());
            // ASCII names normalize as before (lower case): existing accounts keep their form.
            prop_assert_eq!(name.normalized(), raw.to_lowercase());
        }

        #[test]
        fn normalizing_is_idempotent(raw in "\\PC{1,64}") {
            if let Ok(name) = Username::parse(&raw) {
                let normalized = name.normalized();
                // What the normalized form normalizes to, when it is itself a valid name.
                if let Ok(again) = Username::parse(&normalized) {
                    prop_assert_eq!(again.normalized(), normalized.clone());
                }
            }
        }

        // Scripts with case whose letters are in every Unicode version the crates know (the
        // standard library's case tables may be newer than the case-folding crate's).
        #[test]
        fn case_does_not_matter(raw in "[a-zA-Zà-öø-þα-ωΑ-ΡΣ-Ωа-яА-Я0-9]{1,64}") {
            let name = Username::parse(&raw).unwrap();
            for other in [raw.to_uppercase(), raw.to_lowercase()] {
                if let Ok(other) = Username::parse(&other) {
                    // One account (the normalized form's unique index); the skeleton is of the
                    // spelling as shown, whose case can make it look like another name.
                    prop_assert_eq!(other.normalized(), name.normalized());
                }
            }
        }
    }
}
