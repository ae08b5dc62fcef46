//! What the security audit log records: the type of each event.

/// The type of a security audit event (`type` in the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename = "AuditEventType")]
pub enum AuditEventType {
    /// A password login started a session.
    #[oai(rename = "login.succeeded")]
    LoginSucceeded,
    /// A password login, or the password confirming a change, was refused: unknown account
    /// (`user_id` null), wrong password, or a disabled account.
    #[oai(rename = "login.failed")]
    LoginFailed,
    /// A login or a password confirmation was refused by the login throttle.
    #[oai(rename = "login.throttled")]
    LoginThrottled,
    /// A refresh token was exchanged for new tokens.
    #[oai(rename = "token.refreshed")]
    TokenRefreshed,
    /// A spent refresh token was presented again: its session was ended.
    #[oai(rename = "token.reuse_detected")]
    TokenReuseDetected,
    /// A token's session was ended at `POST /token/revoke`.
    #[oai(rename = "token.revoked")]
    TokenRevoked,
    /// Sessions ended: a logout, a session deleted, ended by an admin or by a password change.
    #[oai(rename = "session.ended")]
    SessionEnded,
    /// An account's owner changed its password.
    #[oai(rename = "password.changed")]
    PasswordChanged,
    /// An admin or the command line set an account's password.
    #[oai(rename = "password.reset")]
    PasswordReset,
    /// An account was created by signup.
    #[oai(rename = "user.signed_up")]
    UserSignedUp,
    /// An account was created by an admin or the command line.
    #[oai(rename = "user.created")]
    UserCreated,
    /// An account's e-mail address, full name or scopes changed.
    #[oai(rename = "user.updated")]
    UserUpdated,
    #[oai(rename = "user.disabled")]
    UserDisabled,
    #[oai(rename = "user.enabled")]
    UserEnabled,
    #[oai(rename = "user.deleted")]
    UserDeleted,
    /// An account's failed-login counts and blocks were cleared.
    #[oai(rename = "user.unlocked")]
    UserUnlocked,
    /// A signing key was created by `portcullis keys rotate`.
    #[oai(rename = "key.rotated")]
    KeyRotated,
    /// A signing key was retired.
    #[oai(rename = "key.retired")]
    KeyRetired,
    /// A personal API key was created (by its owner or the command line).
    #[oai(rename = "api_key.created")]
    ApiKeyCreated,
    /// A personal API key was deleted (by its owner, an admin or the command line).
    #[oai(rename = "api_key.deleted")]
    ApiKeyDeleted,
}

impl AuditEventType {
    pub const ALL: [Self; 20] = [
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::LoginThrottled,
        Self::TokenRefreshed,
        Self::TokenReuseDetected,
        Self::TokenRevoked,
        Self::SessionEnded,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::UserSignedUp,
        Self::UserCreated,
        Self::UserUpdated,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::UserDeleted,
        Self::UserUnlocked,
        Self::KeyRotated,
        Self::KeyRetired,
        Self::ApiKeyCreated,
        Self::ApiKeyDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login.succeeded",
            Self::LoginFailed => "login.failed",
            Self::LoginThrottled => "login.throttled",
            Self::TokenRefreshed => "token.refreshed",
            Self::TokenReuseDetected => "token.reuse_detected",
            Self::TokenRevoked => "token.revoked",
            Self::SessionEnded => "session.ended",
            Self::PasswordChanged => "password.changed",
            Self::PasswordReset => "password.reset",
            Self::UserSignedUp => "user.signed_up",
            Self::UserCreated => "user.created",
            Self::UserUpdated => "user.updated",
            Self::UserDisabled => "user.disabled",
            Self::UserEnabled => "user.enabled",
            Self::UserDeleted => "user.deleted",
            Self::UserUnlocked => "user.unlocked",
            Self::KeyRotated => "key.rotated",
            Self::KeyRetired => "key.retired",
            Self::ApiKeyCreated => "api_key.created",
            Self::ApiKeyDeleted => "api_key.deleted",
        }
    }

    /// The type named `text` exactly (`login.failed`), or `None`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl std::fmt::Display for AuditEventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_name_and_nothing_else_parses() {
        for kind in AuditEventType::ALL {
            assert_eq!(AuditEventType::parse(kind.as_str()), Some(kind));
            // The document's enum spells each one as the log stores it.
            assert_eq!(
                poem_openapi::types::ToJSON::to_json(&kind),
                Some(serde_json::Value::String(kind.as_str().into()))
            );
        }
        for unknown in ["", "login", "LOGIN.FAILED", "login.failed ", "user.renamed"] {
            assert_eq!(AuditEventType::parse(unknown), None, "{unknown:?}");
        }
    }
}
