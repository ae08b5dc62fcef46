//! The password policy every password that is *set* passes (signup, a change, an admin's create
//! or reset, the CLI's `users create|set-password`), after NIST SP 800-63B: a length in code
//! points, every character allowed and nothing trimmed, no composition rules, and no password
//! that is common, breached or trivially guessable — zxcvbn's estimator and its dictionaries,
//! compiled into the binary, so nothing is fetched at run time. Logging in never applies it.

use secrecy::{ExposeSecret as _, SecretString};

use super::{Invalid, username::caseless_form};

/// The policy's one setting, the shortest password accepted; the longest is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    min_length: usize,
}

impl PasswordPolicy {
    /// The shortest minimum a deployment may configure (SP 800-63B's floor).
    pub const LOWEST_MIN_LENGTH: usize = 8;
    /// The longest password accepted, in code points: enough for any passphrase, and a bound
    /// on what the estimator and the hash read.
    pub const MAX_LENGTH: usize = 128;
    /// The estimator reads at most this many code points: its cost grows faster than the
    /// length, and a password whose first 64 characters are guessable is guessable.
    const ESTIMATED_PREFIX: usize = 64;

    /// `None` when `min_length` is outside [`Self::LOWEST_MIN_LENGTH`]..=[`Self::MAX_LENGTH`].
    pub fn new(min_length: usize) -> Option<Self> {
        (Self::LOWEST_MIN_LENGTH..=Self::MAX_LENGTH)
            .contains(&min_length)
            .then_some(Self { min_length })
    }

    pub fn min_length(self) -> usize {
        self.min_length
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: Self::LOWEST_MIN_LENGTH,
        }
    }
}

/// A password about to be set: it passed the policy, or an operator skipped it on purpose.
pub struct NewPassword(SecretString);

impl NewPassword {
    /// Checks `password`, to be set for the account `username`, against `policy`. Costs up to
    /// a few milliseconds of CPU (the estimator): run it off the async runtime's threads.
    pub fn parse(
        password: SecretString,
        username: &str,
        policy: PasswordPolicy,
    ) -> Result<Self, Invalid> {
        let text = password.expose_secret();
        let length = text.chars().count();
        if length < policy.min_length {
            return Err(Invalid::new(
                "password_too_short",
                format!(
                    "Password should have at least {} characters",
                    policy.min_length
                ),
            ));
        }
        if length > PasswordPolicy::MAX_LENGTH {
            return Err(Invalid::new(
                "password_too_long",
                format!(
                    "Password should have at most {} characters",
                    PasswordPolicy::MAX_LENGTH
                ),
            ));
        }
        let name = caseless_form(username);
        if !name.is_empty() && caseless_form(text).contains(&name) {
            return Err(Invalid::new(
                "password_too_similar",
                "Password must not contain the username",
            ));
        }
        let estimated: String = text
            .chars()
            .take(PasswordPolicy::ESTIMATED_PREFIX)
            .collect();
        let entropy = zxcvbn::zxcvbn(&estimated, &[username]);
        if entropy.score() < MIN_SCORE {
            let advice = entropy
                .feedback()
                .and_then(|feedback| feedback.warning())
                .map_or_else(
                    || "add more words or characters that do not follow a pattern".to_owned(),
                    |warning| warning.to_string(),
                );
            return Err(Invalid::new(
                "password_too_common",
                format!("Password is too easy to guess: {advice}"),
            ));
        }
        Ok(Self(password))
    }

    /// A password set without the policy: the CLI's `--allow-weak-password`, for an operator
    /// who must (demo and test accounts). The HTTP API never builds one.
    pub fn unchecked(password: SecretString) -> Self {
        Self(password)
    }

    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

/// zxcvbn's score 2 ("somewhat guessable": about 10^8 guesses or more) is the least accepted:
/// enough against online guessing, which the login throttle limits further, while a random
/// 8-character password passes.
const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Two;

#[cfg(test)]
mod tests {
    use super::*;

    fn check(password: &str, username: &str) -> Result<(), Invalid> {
        NewPassword::parse(password.into(), username, PasswordPolicy::default()).map(|_| ())
    }

    /// `length` printable characters without a pattern the estimator would find.
    fn unpatterned(length: usize) -> String {
        let alphabet: Vec<char> = ('!'..='~').collect();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        (0..length)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                alphabet[(state >> 33) as usize % alphabet.len()]
            })
            .collect()
    }

    fn kind(password: &str, username: &str) -> &'static str {
        check(password, username).unwrap_err().kind
    }

    #[test]
    fn the_contracts_examples() {
        for common in ["password", "12345678", "qwertyuiop", "iloveyou1"] {
            assert_eq!(kind(common, "someone"), "password_too_common", "{common}");
        }
        check("Vx7#qL2!", "someone").unwrap();
    }

    #[test]
    fn length_counts_code_points_between_the_bounds() {
        assert_eq!(kind("Vx7#qL2", "someone"), "password_too_short");
        // Eight code points, sixteen bytes.
        check("ж7Ωq#Ł2ü", "someone").unwrap();
        let longest = unpatterned(128);
        check(&longest, "someone").unwrap();
        assert_eq!(kind(&format!("{longest}x"), "someone"), "password_too_long");
    }

    #[test]
    fn a_longer_minimum_is_applied() {
        let policy = PasswordPolicy::new(12).unwrap();
        let err = NewPassword::parse("Vx7#qL2!ab".into(), "someone", policy)
            .err()
            .unwrap();
        assert_eq!(err.kind, "password_too_short");
        assert_eq!(err.message, "Password should have at least 12 characters");
        assert_eq!(PasswordPolicy::new(7), None);
        assert_eq!(PasswordPolicy::new(129), None);
    }

    #[test]
    fn nothing_is_trimmed_and_every_character_counts() {
        check(" Vx7#qL2! ", "someone").unwrap();
        assert_eq!(kind("       ", "someone"), "password_too_short");
    }

    #[test]
    fn a_password_with_the_username_in_it_is_refused_in_any_case() {
        assert_eq!(kind("JohnDoe-x7#Q", "johndoe"), "password_too_similar");
        assert_eq!(kind("johndoe1", "JohnDoe"), "password_too_similar");
        assert_eq!(kind("j0hnd0e!", "j0hnd0e!"), "password_too_similar");
    }

    #[test]
    fn every_message_is_short_enough_to_echo_whole() {
        for (password, username) in [
            ("password", "x"),
            ("qwertyuiop", "x"),
            ("aaaaaaaaaaaa", "x"),
            ("abcdefghijk", "x"),
            ("2020-01-01!", "x"),
            ("Vx7", "x"),
            ("johndoe99", "johndoe"),
        ] {
            let message = check(password, username).unwrap_err().message;
            assert!(message.chars().count() <= 128, "{message}");
        }
    }
}
