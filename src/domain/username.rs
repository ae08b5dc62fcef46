use super::Invalid;

/// A username: 1–64 letters, digits and `. _ - @` (so an e-mail address works as one).
///
/// Two usernames that differ only in case are the same account: [`Username::normalized`] is
/// what the database compares, [`Username::as_str`] the spelling the user chose.
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

    /// The form compared for uniqueness and at login.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
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
        }
    }
}
