//! Accounts: the rules for users and their sessions that the HTTP API and the command line
//! share. Each rule is written once here and refuses with an [`AccountError`].

pub mod sessions;

use secrecy::{ExposeSecret as _, SecretString};

use crate::{
    auth::{HashError, PasswordHasher},
    db::{NewUser, Store, StoreError, User},
    domain::{EmailAddress, Invalid, ScopeSet, Username},
};

/// A request to create an account, as given (validated by [`create_user`]).
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
    #[error("the password must not be empty")]
    EmptyPassword,
    #[error("a user named {0:?} already exists (usernames are compared without regard to case)")]
    UsernameTaken(String),
    #[error("no user named {0:?}")]
    NoSuchUser(String),
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

/// Validates, hashes and inserts; a name taken in any spelling is refused by the database's
/// unique index, so concurrent creations of one name leave exactly one account.
pub async fn create_user(
    store: &Store,
    hasher: &PasswordHasher,
    request: CreateUser,
) -> Result<User, AccountError> {
    let username = Username::parse(&request.username).map_err(AccountError::InvalidUsername)?;
    let email = request
        .email
        .as_deref()
        .map(EmailAddress::parse)
        .transpose()
        .map_err(AccountError::InvalidEmail)?;
    if request.password.expose_secret().is_empty() {
        return Err(AccountError::EmptyPassword);
    }
    let hashed_password = hasher.hash(request.password).await?;
    store
        .create_user(NewUser {
            username: username.clone(),
            email,
            full_name: request.full_name.filter(|name| !name.trim().is_empty()),
            hashed_password,
            disabled: request.disabled,
            scopes: request.scopes,
        })
        .await
        .map_err(|err| match err {
            StoreError::UsernameTaken => AccountError::UsernameTaken(username.to_string()),
            other => AccountError::Store(other),
        })
}

/// The account named `name` (any case), or [`AccountError::NoSuchUser`].
pub async fn find_user(store: &Store, name: &str) -> Result<User, AccountError> {
    let username = parse_username(name)?;
    store
        .find_user_by_username(&username)
        .await?
        .ok_or_else(|| AccountError::NoSuchUser(name.to_owned()))
}

/// Disables or enables an account. A disabled user's tokens are refused at their next
/// request; enabling lets their sessions resume.
pub async fn set_disabled(store: &Store, name: &str, disabled: bool) -> Result<(), AccountError> {
    if !store
        .set_user_disabled(&parse_username(name)?, disabled)
        .await?
    {
        return Err(AccountError::NoSuchUser(name.to_owned()));
    }
    tracing::info!(username = name, disabled, "account status changed");
    Ok(())
}

/// Deletes an account and, with it, its items and sessions.
pub async fn delete_user(store: &Store, name: &str) -> Result<(), AccountError> {
    if !store.delete_user(&parse_username(name)?).await? {
        return Err(AccountError::NoSuchUser(name.to_owned()));
    }
    Ok(())
}

/// Every account, by name.
pub async fn list_users(store: &Store) -> Result<Vec<User>, AccountError> {
    Ok(store.list_users().await?)
}

fn parse_username(name: &str) -> Result<Username, AccountError> {
    Username::parse(name).map_err(|err| AccountError::UnparsableUsername(name.to_owned(), err))
}

/// The demo accounts of `serve --demo`: created when absent, left alone when present.
pub async fn seed_demo_users(store: &Store, hasher: &PasswordHasher) -> Result<(), AccountError> {
    let demo = [
        (
            "johndoe",
            "secret",
            "John Doe",
            "johndoe@example.com",
            false,
        ),
        (
            "alice",
            "secret2",
            "Alice Wonderson",
            "alice@example.com",
            true,
        ),
    ];
    for (username, password, full_name, email, disabled) in demo {
        let request = CreateUser {
            username: username.into(),
            password: SecretString::from(password),
            email: Some(email.into()),
            full_name: Some(full_name.into()),
            scopes: ScopeSet::default_for_new_users(),
            disabled,
        };
        match create_user(store, hasher, request).await {
            Ok(_) => tracing::info!(username, "created demo user"),
            Err(AccountError::UsernameTaken(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
