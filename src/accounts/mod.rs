//! Accounts: the rules for users and their sessions that the HTTP API and the command line
//! share. Each rule is written once here and refuses with an [`AccountError`].

pub mod api_keys;
mod manage;
pub mod sessions;

use secrecy::SecretString;

pub use manage::{AccountChanges, Accounts, MAX_FULL_NAME_CHARS, ProfileChanges, SignUp, UserPage};

use crate::{
    auth::HashError,
    db::{Store, StoreError, User},
    domain::{Invalid, ScopeSet, Username},
};

/// Whether a password being set must pass the policy. Only an operator at the command line may
/// skip it (demo and test accounts); the HTTP API always applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Policy,
    Skip,
}

/// A request to create an account, as given (validated by [`Accounts::create`]).
pub struct CreateUser {
    pub username: String,
    pub password: SecretString,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub scopes: ScopeSet,
    pub disabled: bool,
}

/// Why an account rule refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A new account's name that is not a valid username.
    #[error("invalid username: {0}")]
    InvalidUsername(Invalid),
    /// A name given to find an account that could not be a username.
    #[error("invalid username {0:?}: {1}")]
    UnparsableUsername(String, Invalid),
    #[error("invalid e-mail address: {0}")]
    InvalidEmail(Invalid),
    #[error("invalid full name: {0}")]
    InvalidFullName(Invalid),
    #[error("the password must not be empty")]
    EmptyPassword,
    /// A password being set that the policy refuses.
    #[error("password refused: {0}")]
    WeakPassword(Invalid),
    /// The caller's current password, confirming a change, is wrong.
    #[error("incorrect password")]
    IncorrectPassword,
    /// Too many wrong passwords: the login throttle's block.
    #[error("too many failed attempts, retry in {retry_after} s")]
    Throttled { retry_after: u32 },
    #[error("signup is disabled")]
    SignupDisabled,
    #[error("too many signups from this address, retry in {retry_after} s")]
    TooManySignups { retry_after: u32 },
    #[error("a user named {0:?} already exists (usernames are compared without regard to case)")]
    UsernameTaken(String),
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    /// No account has this id.
    #[error("user not found")]
    NotFound,
    /// The caller's account, password or session changed while their request was served (a
    /// reset, a deletion or another change committed first): refused like a stale token.
    #[error("the account's credentials changed meanwhile")]
    CredentialsChanged,
    /// A new API key's name that is not valid.
    #[error("invalid API key name: {0}")]
    InvalidKeyName(Invalid),
    /// A new API key's lifetime out of bounds.
    #[error("invalid API key lifetime: {0}")]
    InvalidKeyExpiry(Invalid),
    /// A new API key's scope list that cannot be granted (an empty one).
    #[error("invalid API key scopes: {0}")]
    InvalidKeyScopes(Invalid),
    /// A scope asked for a new API key that its creator does not hold.
    #[error("cannot grant a scope you do not hold: {0}")]
    ScopeNotHeld(crate::domain::Scope),
    /// The user already holds the most API keys allowed.
    #[error("at most {limit} API keys per user")]
    TooManyApiKeys { limit: u64 },
    /// No API key of this user (or at all) has this id.
    #[error("API key not found")]
    ApiKeyNotFound,
    /// The change would leave no active admin.
    #[error("cannot remove the last admin (enable or create another admin first)")]
    LastAdmin,
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Hash(#[from] HashError),
}

impl From<StoreError> for AccountError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

/// The account named `name` (any case), or [`AccountError::NoSuchUser`].
pub async fn find_user(store: &Store, name: &str) -> Result<User, AccountError> {
    let username = parse_username(name)?;
    store
        .find_user_by_username(&username)
        .await?
        .ok_or_else(|| AccountError::NoSuchUser(name.to_owned()))
}

/// Every account, by name.
pub async fn list_users(store: &Store) -> Result<Vec<User>, AccountError> {
    Ok(store.list_users().await?)
}

fn parse_username(name: &str) -> Result<Username, AccountError> {
    Username::parse(name).map_err(|err| AccountError::UnparsableUsername(name.to_owned(), err))
}

/// The demo accounts of `serve --demo`: created when absent, left alone when present. Their
/// passwords are weak on purpose (easy to type in a demo): the policy is skipped for them.
pub const DEMO_USERS: [DemoUser; 3] = [
    DemoUser {
        username: "johndoe",
        password: "secret",
        full_name: "John Doe",
        email: "johndoe@example.com",
        disabled: false,
        admin: false,
    },
    DemoUser {
        username: "alice",
        password: "secret2",
        full_name: "Alice Wonderson",
        email: "alice@example.com",
        disabled: true,
        admin: false,
    },
    DemoUser {
        username: "admin",
        password: "secret3",
        full_name: "Demo Admin",
        email: "admin@example.com",
        disabled: false,
        admin: true,
    },
];

/// One demo account.
pub struct DemoUser {
    pub username: &'static str,
    pub password: &'static str,
    pub full_name: &'static str,
    pub email: &'static str,
    pub disabled: bool,
    pub admin: bool,
}

pub async fn seed_demo_users(accounts: &Accounts) -> Result<(), AccountError> {
    // An operator's doing (`serve --demo`), as at the command line.
    let context = crate::audit::AuditContext::cli();
    for demo in &DEMO_USERS {
        let mut scopes = ScopeSet::default_for_new_users();
        if demo.admin {
            scopes = scopes.iter().chain([crate::domain::Scope::Admin]).collect();
        }
        let request = CreateUser {
            username: demo.username.into(),
            password: SecretString::from(demo.password),
            email: Some(demo.email.into()),
            full_name: Some(demo.full_name.into()),
            scopes,
            disabled: demo.disabled,
        };
        match accounts
            .create(&context, request, PasswordCheck::Skip)
            .await
        {
            Ok(_) => tracing::info!(username = demo.username, "created demo user"),
            Err(AccountError::UsernameTaken(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
