use super::Invalid;

/// An e-mail address, checked for shape only (one `@`, non-empty parts, no spaces, at most
/// 254 characters); whether it receives mail is not this service's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim();
        let well_formed = raw.chars().count() <= 254
            && !raw.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(raw.split_once('@'), Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Invalid::new(
                "value_error",
                "value is not a valid email address",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_are_accepted() {
        assert_eq!(
            EmailAddress::parse("johndoe@example.com").unwrap().as_str(),
            "johndoe@example.com"
        );
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "johndoe",
            "@example.com",
            "john@",
            "a@b@c",
            "jo hn@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
    }
}
