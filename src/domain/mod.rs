//! What a user, a scope, a password hash and an item are, as validated types. Each has a private field and one
//! way in (`parse`), so the rest of the code never sees an unchecked value.

mod api_key;
mod audit;
mod email;
mod hashed_password;
mod item;
pub mod origin;
mod password;
mod scope;
mod text;
mod username;

pub use api_key::{API_KEY_CHARS, API_KEY_PREFIX, ApiKeySecret, MalformedKey};
pub use audit::AuditEventType;
pub use email::EmailAddress;
pub use hashed_password::HashedPassword;
pub use item::{ItemDescription, ItemTitle};
pub use password::{NewPassword, PasswordPolicy};
pub use scope::{Scope, ScopeSet};
pub use text::check_text;
pub use username::{Username, caseless_form};

/// Why a value was refused, in words fit for a 422 `msg`, with FastAPI's error `type`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub kind: &'static str,
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}
