//! Personal API keys: long-lived credentials for scripts, cron jobs and CI, created by their
//! owner (`/users/me/api-keys`) or an operator (`portcullis api-keys`), listed and deleted by
//! them or an admin. A key is not a session: logging out, ending sessions and changing the
//! password leave keys alone; deleting the key (or the user, or disabling it) ends it.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::AccountError;
use crate::{
    audit::AuditContext,
    db::{ApiKey, KeyCreation, NewApiKey, Store},
    domain::{ApiKeySecret, AuditEventType, Invalid, Scope, ScopeSet, check_text},
};

/// The most keys one user may hold (expired ones count until deleted).
pub const MAX_API_KEYS_PER_USER: u64 = 50;
/// The longest name of a key, in characters.
pub const MAX_API_KEY_NAME_CHARS: usize = 100;
/// The longest lifetime a key can be given, in days (ten years); without one it never expires.
pub const MAX_API_KEY_DAYS: u32 = 3650;

/// A key to create, as asked for.
#[derive(Debug)]
pub struct CreateApiKey {
    pub name: String,
    /// `None`: the scopes the creator may grant, without `admin`.
    pub scopes: Option<ScopeSet>,
    /// `None`: never expires.
    pub expires_in_days: Option<u32>,
}

/// A key just created, with its text: shown this once, never stored.
#[derive(Debug)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub text: String,
}

/// A key's name: trimmed, 1–100 characters, no control characters but tab.
pub fn parse_key_name(raw: &str) -> Result<String, Invalid> {
    check_text(raw)?;
    let name = raw.trim();
    if name.is_empty() {
        return Err(Invalid::new(
            "string_too_short",
            "String should have at least 1 character",
        ));
    }
    if name.chars().count() > MAX_API_KEY_NAME_CHARS {
        return Err(Invalid::new(
            "string_too_long",
            format!("String should have at most {MAX_API_KEY_NAME_CHARS} characters"),
        ));
    }
    if name.contains(['\n', '\r']) {
        return Err(Invalid::new("string_pattern_mismatch", "Must be one line"));
    }
    Ok(name.to_owned())
}

/// A key's lifetime in days: 1–3650.
pub fn check_key_days(days: i64) -> Result<u32, Invalid> {
    match u32::try_from(days) {
        Ok(days @ 1..=MAX_API_KEY_DAYS) => Ok(days),
        _ if days < 1 => Err(Invalid::new(
            "greater_than_equal",
            "Input should be greater than or equal to 1",
        )),
        _ => Err(Invalid::new(
            "less_than_equal",
            format!("Input should be less than or equal to {MAX_API_KEY_DAYS}"),
        )),
    }
}

/// The scopes a new key gets: those asked for, each of which `grantable` must hold (`admin`
/// only when asked for by name), or by default `grantable` without `admin`.
pub fn key_scopes(
    grantable: &ScopeSet,
    asked: Option<&ScopeSet>,
) -> Result<ScopeSet, AccountError> {
    match asked {
        None => Ok(grantable.without(Scope::Admin)),
        Some(asked) if asked.is_empty() => Err(AccountError::InvalidKeyScopes(Invalid::new(
            "too_short",
            "List should have at least 1 item after validation, not 0",
        ))),
        Some(asked) => match asked.missing_from(grantable).first() {
            Some(&scope) => Err(AccountError::ScopeNotHeld(scope)),
            None => Ok(asked.clone()),
        },
    }
}

/// Creates a key for `user_id` with scopes out of `grantable` (the creator's: the caller's own
/// when they create it for themselves, the user's at the command line).
pub async fn create(
    store: &Store,
    context: &AuditContext,
    user_id: Uuid,
    grantable: &ScopeSet,
    request: CreateApiKey,
) -> Result<CreatedApiKey, AccountError> {
    let name = parse_key_name(&request.name).map_err(AccountError::InvalidKeyName)?;
    let scopes = key_scopes(grantable, request.scopes.as_ref())?;
    let created_at = crate::db::now();
    let expires_at = request
        .expires_in_days
        .map(|days| expiry(created_at, days))
        .transpose()?;
    let secret = ApiKeySecret::generate();
    let new = NewApiKey {
        id: secret.id(),
        user_id,
        name,
        secret_hash: secret.secret_hash(),
        scopes,
        created_at,
        expires_at,
    };
    let events = |key: &ApiKey| {
        vec![context.event(
            AuditEventType::ApiKeyCreated,
            Some(user_id),
            audit_detail(key),
        )]
    };
    match store
        .create_api_key(new, MAX_API_KEYS_PER_USER, events)
        .await?
    {
        KeyCreation::Created(key) => {
            tracing::info!(user_id = %user_id, key_id = %key.id, scope = %key.scopes, "API key created");
            Ok(CreatedApiKey {
                key,
                text: secret.render(),
            })
        }
        KeyCreation::UserNotFound => Err(AccountError::NotFound),
        KeyCreation::TooMany(_) => Err(AccountError::TooManyApiKeys {
            limit: MAX_API_KEYS_PER_USER,
        }),
    }
}

fn expiry(now: DateTime<Utc>, days: u32) -> Result<DateTime<Utc>, AccountError> {
    let days = check_key_days(i64::from(days)).map_err(AccountError::InvalidKeyExpiry)?;
    Ok(now + chrono::TimeDelta::days(i64::from(days)))
}

/// `user_id`'s keys, oldest first.
pub async fn list(store: &Store, user_id: Uuid) -> Result<Vec<ApiKey>, AccountError> {
    Ok(store.list_api_keys(user_id).await?)
}

/// Deletes the key `id` of `owner` (of whoever holds it, for the command line's `None`): it is
/// refused from the next request on, on every instance. [`AccountError::ApiKeyNotFound`] when
/// there is no such key (or it is another user's).
pub async fn delete(
    store: &Store,
    context: &AuditContext,
    owner: Option<Uuid>,
    id: Uuid,
) -> Result<ApiKey, AccountError> {
    let events = |key: &ApiKey| {
        vec![context.event(
            AuditEventType::ApiKeyDeleted,
            Some(key.user_id),
            audit_detail(key),
        )]
    };
    let key = store
        .delete_api_key(owner, id, events)
        .await?
        .ok_or(AccountError::ApiKeyNotFound)?;
    tracing::info!(user_id = %key.user_id, key_id = %key.id, "API key deleted");
    Ok(key)
}

/// What the audit log says of a key: its id, name, scopes and expiry, never its secret.
fn audit_detail(key: &ApiKey) -> serde_json::Value {
    json!({
        "key_id": key.id,
        "name": key.name,
        "scopes": key.scopes.names(),
        "expires_at": key.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(raw: &str) -> ScopeSet {
        ScopeSet::parse(raw).unwrap()
    }

    #[test]
    fn scopes_default_to_the_creators_without_admin_and_admin_only_by_name() {
        let admin = set("me items admin");
        assert_eq!(key_scopes(&admin, None).unwrap(), set("me items"));
        assert_eq!(
            key_scopes(&admin, Some(&set("admin"))).unwrap(),
            set("admin")
        );
        assert_eq!(key_scopes(&set("items"), None).unwrap(), set("items"));
        assert!(matches!(
            key_scopes(&set("me items"), Some(&set("me admin"))),
            Err(AccountError::ScopeNotHeld(Scope::Admin))
        ));
        assert!(matches!(
            key_scopes(&set("items"), Some(&set(""))),
            Err(AccountError::InvalidKeyScopes(_))
        ));
        assert!(matches!(
            key_scopes(&set("items"), Some(&set("me"))),
            Err(AccountError::ScopeNotHeld(Scope::Me))
        ));
    }

    #[test]
    fn names_are_trimmed_one_line_and_bounded() {
        assert_eq!(parse_key_name("  ci deploy ").unwrap(), "ci deploy");
        assert_eq!(parse_key_name(&"é".repeat(100)).unwrap(), "é".repeat(100));
        assert_eq!(parse_key_name("   ").unwrap_err().kind, "string_too_short");
        assert_eq!(
            parse_key_name(&"a".repeat(101)).unwrap_err().kind,
            "string_too_long"
        );
        assert!(parse_key_name("a\nb").is_err());
        assert!(parse_key_name("a\u{0}b").is_err());
    }

    #[test]
    fn lifetimes_are_one_day_to_ten_years() {
        assert_eq!(check_key_days(1).unwrap(), 1);
        assert_eq!(check_key_days(3650).unwrap(), 3650);
        assert_eq!(check_key_days(0).unwrap_err().kind, "greater_than_equal");
        assert_eq!(check_key_days(-5).unwrap_err().kind, "greater_than_equal");
        assert_eq!(check_key_days(3651).unwrap_err().kind, "less_than_equal");
        assert_eq!(
            check_key_days(i64::MAX).unwrap_err().kind,
            "less_than_equal"
        );
    }
}
