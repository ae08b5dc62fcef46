use super::Invalid;

/// An item's title: 1–200 characters.
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
            _ => Ok(Self(raw.to_owned())),
        }
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An item's optional description: at most 10,000 characters.
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
}
