//! The rule every text a client sends obeys, whatever field it fills: no control characters
//! but tab and line breaks. PostgreSQL `text` cannot hold NUL at all (an insert fails), and
//! the other controls (escape sequences, backspace, C1 codes) only ever serve to hide or fake
//! text in terminals and logs. Refusing them here, once, answers 422 on both backends instead
//! of a 500 on one.
//!
//! Passwords are the exception (NIST SP 800-63B: every character allowed); they are only ever
//! hashed, so nothing of them reaches the database.

use super::Invalid;

/// Refuses a text holding a control character (Unicode category Cc: U+0000–U+001F and
/// U+007F–U+009F) other than tab, line feed and carriage return.
pub fn check_text(raw: &str) -> Result<(), Invalid> {
    match raw.chars().find(|&c| forbidden(c)) {
        None => Ok(()),
        Some(c) => Err(Invalid::new(
            "value_error",
            format!(
                "Text must not contain control characters (found U+{:04X})",
                u32::from(c)
            ),
        )),
    }
}

fn forbidden(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_passes_with_tabs_and_line_breaks() {
        assert!(check_text("").is_ok());
        assert!(check_text("Grocery list:\n\t- milk\r\n- ü, 漢字, 🦀").is_ok());
    }

    #[test]
    fn nul_and_other_control_characters_are_refused_by_code_point() {
        for (text, code) in [
            ("a\u{0}b", "U+0000"),
            ("\u{7}", "U+0007"),
            ("\u{1b}[31m", "U+001B"),
            ("x\u{7f}", "U+007F"),
            ("\u{85}", "U+0085"),
            ("\u{9f}", "U+009F"),
        ] {
            let err = check_text(text).unwrap_err();
            assert_eq!(err.kind, "value_error");
            assert!(err.message.contains(code), "{text:?}: {}", err.message);
        }
    }

    #[test]
    fn no_control_character_passes() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let allowed = check_text(&c.to_string()).is_ok();
            assert_eq!(
                allowed,
                !c.is_control() || matches!(c, '\t' | '\n' | '\r'),
                "{c:?}"
            );
        }
    }
}
