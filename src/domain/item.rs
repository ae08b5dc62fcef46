use super::{Invalid, check_text};

/// An item's title: 1–200 characters, no control characters but tab and line breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemTitle(String);

impl ItemTitle {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw.chars().count() {
            0 => Err(Invalid::new(
                "string_too_short",
                "String should have at least 1 character",
            )),
            n if n > Self::MAX_CHARS => Err(Invalid::new(
                "string_too_long",
                "String should have at most 200 characters",
            )),
            _ => {
                check_text(raw)?;
                Ok(Self(raw.to_owned()))
            }
        }
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An item's optional description: at most 10,000 characters, no control characters but
/// tab and line breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemDescription(String);

impl ItemDescription {
    pub const MAX_CHARS: usize = 10_000;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(Invalid::new(
                "string_too_long",
                "String should have at most 10000 characters",
            ));
        }
        check_text(raw)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_one_to_two_hundred_characters() {
        assert!(ItemTitle::parse("x").is_ok());
        assert!(ItemTitle::parse(&"ü".repeat(200)).is_ok());
        assert_eq!(ItemTitle::parse("").unwrap_err().kind, "string_too_short");
        assert_eq!(
            ItemTitle::parse(&"x".repeat(201)).unwrap_err().kind,
            "string_too_long"
        );
    }

    #[test]
    fn descriptions_are_bounded() {
        assert!(ItemDescription::parse("").is_ok());
        assert!(ItemDescription::parse(&"x".repeat(10_001)).is_err());
    }

    #[test]
    fn control_characters_are_refused_in_titles_and_descriptions() {
        assert_eq!(ItemTitle::parse("a\u{0}b").unwrap_err().kind, "value_error");
        assert!(ItemDescription::parse("a\u{0}b").is_err());
        assert!(ItemDescription::parse("line\nbreak").is_ok());
    }
}
