//! Managing accounts: what the CLI and the demo seeding share.

use secrecy::{ExposeSecret as _, SecretString};

use crate::{
    auth::PasswordHasher,
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

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("invalid username: {0}")]
    InvalidUsername(Invalid),
    #[error("invalid e-mail address: {0}")]
    InvalidEmail(Invalid),
    #[error("the password must not be empty")]
    EmptyPassword,
    #[error("a user named {0:?} already exists (usernames are compared without regard to case)")]
    UsernameTaken(String),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Hash(#[from] crate::auth::HashError),
}

/// Validates, hashes and inserts; a name taken in any spelling is refused by the database's
/// unique index, so concurrent creations of one name leave exactly one account.
pub async fn create_user(
    store: &Store,
    hasher: &PasswordHasher,
    request: CreateUser,
) -> Result<User, CreateUserError> {
    let username = Username::parse(&request.username).map_err(CreateUserError::InvalidUsername)?;
    let email = request
        .email
        .as_deref()
        .map(EmailAddress::parse)
        .transpose()
        .map_err(CreateUserError::InvalidEmail)?;
    if request.password.expose_secret().is_empty() {
        return Err(CreateUserError::EmptyPassword);
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
            StoreError::UsernameTaken => CreateUserError::UsernameTaken(username.to_string()),
            other => CreateUserError::Store(other),
        })
}

/// The demo accounts of `serve --demo`: created when absent, left alone when present.
pub async fn seed_demo_users(store: &Store, hasher: &PasswordHasher) -> anyhow::Result<()> {
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
            Err(CreateUserError::UsernameTaken(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}
