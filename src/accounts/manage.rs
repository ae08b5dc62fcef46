//! The account rules the HTTP API's signup, self-service and admin operations share with the
//! command line: the password policy on every password that is set, signup's switch and rate,
//! profile changes, password changes that end the other sessions, the last-admin rule and the
//! per-account unlock.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use super::{AccountError, CreateUser, PasswordCheck};
use crate::{
    audit::AuditContext,
    auth::{Admission, Client, LoginThrottle, PasswordHasher, Verification},
    config::AccountSettings,
    db::{
        Guarded, NewUser, PasswordChange, Session, Store, StoreError, User, UserChanges,
        UserCursor, UserFilter,
    },
    domain::{
        AuditEventType, EmailAddress, Invalid, NewPassword, PasswordPolicy, ScopeSet, Username,
        check_text,
    },
};

/// The longest full name kept, in characters.
pub const MAX_FULL_NAME_CHARS: usize = 200;

/// What a signup gives: the fields of `POST /users/signup`, as sent.
pub struct SignUp {
    pub username: String,
    pub password: SecretString,
    pub email: Option<String>,
    pub full_name: Option<String>,
}

/// Changes to a profile as sent: `None` leaves a member as it is, `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct ProfileChanges {
    pub email: Option<Option<String>>,
    pub full_name: Option<Option<String>>,
}

/// An admin's changes: a profile's, and the account's status and scopes.
#[derive(Debug, Default)]
pub struct AccountChanges {
    pub profile: ProfileChanges,
    pub disabled: Option<bool>,
    pub scopes: Option<ScopeSet>,
}

/// One page of the admin list.
pub struct UserPage {
    pub users: Vec<User>,
    /// Where the next page starts, while more follow.
    pub next: Option<UserCursor>,
}

/// The account rules with what they need; cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    hasher: PasswordHasher,
    throttle: LoginThrottle,
    settings: AccountSettings,
    /// The policy's estimator costs milliseconds of CPU: it runs on blocking threads, this
    /// many at once, so that a burst of signups cannot take every one of them.
    estimators: Arc<tokio::sync::Semaphore>,
}

impl Accounts {
    pub fn new(
        store: Store,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        settings: AccountSettings,
    ) -> Self {
        let parallelism = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            store,
            hasher,
            throttle,
            settings,
            estimators: Arc::new(tokio::sync::Semaphore::new(parallelism)),
        }
    }

    pub fn settings(&self) -> AccountSettings {
        self.settings
    }

    /// `POST /users/signup`: an active account with the default scopes, if signup is on and
    /// this address has not signed up too often this hour.
    pub async fn sign_up(&self, client: &Client, request: SignUp) -> Result<User, AccountError> {
        if !self.settings.signup_enabled {
            return Err(AccountError::SignupDisabled);
        }
        let create = CreateUser {
            username: request.username,
            password: request.password,
            email: request.email,
            full_name: request.full_name,
            scopes: ScopeSet::default_for_new_users(),
            disabled: false,
        };
        // Every field is checked before the attempt is counted: a typo costs no place.
        let checked = self.check(create, PasswordCheck::Policy).await?;
        let throttle = &self.throttle;
        let context = AuditContext::of(client.clone());
        let client = client.address;
        if let Admission::Refused { retry_after } = throttle
            .admit_signup(
                &self.store,
                client,
                self.settings.signup_per_address_per_hour,
            )
            .await?
        {
            tracing::warn!(%client, retry_after, "signup refused: too many from this address");
            return Err(AccountError::TooManySignups { retry_after });
        }
        // The new account is the actor of its own signup.
        let created = self
            .insert(checked, |user| {
                let mut context = context;
                context.actor = Some(crate::audit::Actor::User(user.id));
                vec![context.event(
                    AuditEventType::UserSignedUp,
                    Some(user.id),
                    json!({ "username": user.username, "scopes": scope_names(&user.scopes) }),
                )]
            })
            .await;
        if let Err(AccountError::Store(_) | AccountError::Hash(_)) = &created {
            // Not the client's doing: the place is given back.
            if let Err(err) = throttle.signup_abandoned(&self.store, client).await
                && !err.is_unavailable()
            {
                tracing::warn!(error = %err, "could not give back a signup's place");
            }
        }
        let user = created?;
        tracing::info!(user_id = %user.id, %client, "account signed up");
        Ok(user)
    }

    /// Creates an account (the admin API, the command line): every field checked, the
    /// password against the policy unless `check` skips it.
    pub async fn create(
        &self,
        context: &AuditContext,
        request: CreateUser,
        check: PasswordCheck,
    ) -> Result<User, AccountError> {
        let checked = self.check(request, check).await?;
        let user = self
            .insert(checked, |user| {
                vec![context.event(
                    AuditEventType::UserCreated,
                    Some(user.id),
                    json!({
                        "username": user.username,
                        "scopes": scope_names(&user.scopes),
                        "disabled": user.disabled,
                    }),
                )]
            })
            .await?;
        tracing::info!(user_id = %user.id, "account created");
        Ok(user)
    }

    /// The account with this id.
    pub async fn find(&self, id: Uuid) -> Result<User, AccountError> {
        self.store
            .find_user_by_id(id)
            .await?
            .ok_or(AccountError::NotFound)
    }

    /// A page of the accounts matching `filter`, by name.
    pub async fn list(
        &self,
        filter: &UserFilter,
        after: Option<&UserCursor>,
        limit: u32,
    ) -> Result<UserPage, AccountError> {
        let (users, next) = self.store.list_users_page(filter, after, limit).await?;
        Ok(UserPage { users, next })
    }

    /// `PATCH /users/me`: the caller's e-mail address and full name.
    pub async fn update_profile(
        &self,
        context: &AuditContext,
        id: Uuid,
        changes: ProfileChanges,
    ) -> Result<User, AccountError> {
        self.update(
            context,
            id,
            AccountChanges {
                profile: changes,
                ..AccountChanges::default()
            },
        )
        .await
    }

    /// An admin's change to any account, refused when it would leave no active admin.
    pub async fn update(
        &self,
        context: &AuditContext,
        id: Uuid,
        changes: AccountChanges,
    ) -> Result<User, AccountError> {
        let email = changes
            .profile
            .email
            .map(|email| email.as_deref().map(EmailAddress::parse).transpose())
            .transpose()
            .map_err(AccountError::InvalidEmail)?;
        let full_name = changes
            .profile
            .full_name
            .map(|name| name.map(full_name).transpose())
            .transpose()?
            .map(Option::flatten);
        let changes = UserChanges {
            email,
            full_name,
            disabled: changes.disabled,
            scopes: changes.scopes,
        };
        let disabled = changes.disabled;
        let events = |before: &User, after: &User| changed_account_events(context, before, after);
        match self.store.update_user(id, changes, events).await? {
            Guarded::Done(user) => {
                if let Some(disabled) = disabled {
                    tracing::info!(user_id = %id, disabled, "account status changed");
                }
                Ok(user)
            }
            Guarded::NotFound => Err(AccountError::NotFound),
            Guarded::LastAdmin => Err(AccountError::LastAdmin),
        }
    }

    /// `POST /users/me/password`: the current password confirmed (as a login would be, and
    /// counted like one when wrong), the new one checked, and every other session of the
    /// caller ended in the same transaction. How many sessions ended.
    pub async fn change_password(
        &self,
        client: &Client,
        user: &User,
        current_session: Option<Uuid>,
        current: SecretString,
        new: SecretString,
    ) -> Result<u64, AccountError> {
        let context = AuditContext::of(client.clone()).acting(user.id, current_session);
        self.confirm(&context, client, user, current, "password_change")
            .await?;
        let new = self.check_password(new, &user.username).await?;
        let hashed = self.hasher.hash(new.into_secret()).await?;
        let change = PasswordChange::ByOwner {
            verified: &user.hashed_password,
            session: current_session,
        };
        let events = |ended| {
            password_events(
                &context,
                user.id,
                AuditEventType::PasswordChanged,
                "password_changed",
                ended,
            )
        };
        // `None`: the account, the confirmed password or the caller's session is gone since
        // this request was authenticated (a reset or a deletion won the race): the caller is
        // refused as such a request would be now.
        let ended = self
            .store
            .change_password(user.id, hashed, change, events)
            .await?
            .ok_or(AccountError::CredentialsChanged)?;
        tracing::info!(user_id = %user.id, sessions_ended = ended, "password changed by its owner");
        Ok(ended)
    }

    /// An admin's reset (`PUT /admin/users/{id}/password`) or the command line's: every
    /// session of the account ends. The policy applies unless `check` skips it.
    pub async fn reset_password(
        &self,
        context: &AuditContext,
        id: Uuid,
        password: SecretString,
        check: PasswordCheck,
    ) -> Result<u64, AccountError> {
        let user = self.find(id).await?;
        let new = match check {
            PasswordCheck::Policy => self.check_password(password, &user.username).await?,
            PasswordCheck::Skip => NewPassword::unchecked(password),
        };
        let hashed = self.hasher.hash(new.into_secret()).await?;
        let events = |ended| {
            password_events(
                context,
                id,
                AuditEventType::PasswordReset,
                "password_reset",
                ended,
            )
        };
        let ended = self
            .store
            .change_password(id, hashed, PasswordChange::Reset, events)
            .await?
            .ok_or(AccountError::NotFound)?;
        tracing::info!(user_id = %id, sessions_ended = ended, "password reset");
        Ok(ended)
    }

    /// `DELETE /users/me`: the password confirmed, then as [`Accounts::delete`].
    pub async fn delete_own(
        &self,
        client: &Client,
        user: &User,
        current_session: Option<Uuid>,
        password: SecretString,
    ) -> Result<(), AccountError> {
        let context = AuditContext::of(client.clone()).acting(user.id, current_session);
        self.confirm(&context, client, user, password, "account_deletion")
            .await?;
        self.delete(&context, user.id).await
    }

    /// Deletes an account, its items and its sessions, unless it is the last active admin;
    /// what the throttle kept about its name goes too (the name is free again).
    pub async fn delete(&self, context: &AuditContext, id: Uuid) -> Result<(), AccountError> {
        let user = self.find(id).await?;
        let events = || {
            vec![context.event(
                AuditEventType::UserDeleted,
                Some(id),
                json!({ "username": user.username }),
            )]
        };
        match self.store.delete_user_by_id(id, events).await? {
            Guarded::Done(()) => {}
            Guarded::NotFound => return Err(AccountError::NotFound),
            Guarded::LastAdmin => return Err(AccountError::LastAdmin),
        }
        if let Ok(name) = Username::parse(&user.username)
            && let Err(err) = self.throttle.forget(&self.store, &name).await
        {
            tracing::warn!(user_id = %id, error = %err, "could not forget a deleted account's login counts");
        }
        tracing::info!(user_id = %id, "account deleted");
        Ok(())
    }

    /// The live sessions of an account.
    pub async fn sessions(&self, id: Uuid) -> Result<Vec<Session>, AccountError> {
        self.find(id).await?;
        Ok(self.store.live_sessions(id).await?)
    }

    /// Ends every session of an account; how many.
    pub async fn end_sessions(
        &self,
        context: &AuditContext,
        id: Uuid,
    ) -> Result<u64, AccountError> {
        self.find(id).await?;
        let events = |ended| super::sessions::sessions_ended(context, id, "ended_by_admin", ended);
        let ended = self.store.revoke_user_sessions(id, None, events).await?;
        tracing::info!(user_id = %id, sessions_ended = ended, "sessions ended by an admin");
        Ok(ended)
    }

    /// Clears the account's failed-login counts and blocks, from every address.
    pub async fn unlock(&self, context: &AuditContext, id: Uuid) -> Result<(), AccountError> {
        let user = self.find(id).await?;
        self.unlock_user(context, &user).await
    }

    /// As [`Accounts::unlock`], for an account already found.
    pub async fn unlock_user(
        &self,
        context: &AuditContext,
        user: &User,
    ) -> Result<(), AccountError> {
        let name = Username::parse(&user.username).map_err(AccountError::InvalidUsername)?;
        let events = |cleared| {
            vec![context.event(
                AuditEventType::UserUnlocked,
                Some(user.id),
                json!({ "counts_cleared": cleared }),
            )]
        };
        let cleared = self.throttle.unlock(&self.store, &name, events).await?;
        tracing::info!(user_id = %user.id, counts_cleared = cleared, "account unlocked");
        Ok(())
    }

    /// Checks a new password against the policy, off the async runtime's threads.
    pub async fn check_password(
        &self,
        password: SecretString,
        username: &str,
    ) -> Result<NewPassword, AccountError> {
        check_password(
            &self.estimators,
            password,
            username,
            self.settings.password_policy,
        )
        .await
    }

    /// Checks the password of the account `user` as a login would: throttled first, and a
    /// wrong password counted as a failed login to that account from that client, so that
    /// repeated guesses meet the login throttle's 429.
    ///
    /// A refusal is recorded in the audit log as a login's would be (`confirming` names what
    /// the password was to confirm).
    async fn confirm(
        &self,
        context: &AuditContext,
        client: &Client,
        user: &User,
        password: SecretString,
        confirming: &str,
    ) -> Result<(), AccountError> {
        let mut keys = self.throttle.keys(&user.username, client.address);
        if let Admission::Refused { retry_after } =
            self.throttle.admit(&self.store, &mut keys).await?
        {
            tracing::warn!(user_id = %user.id, client = %client.address, retry_after, "password confirmation refused: throttled");
            self.record_refusal(context.event(
                AuditEventType::LoginThrottled,
                Some(user.id),
                json!({ "reason": "failed_logins", "retry_after": retry_after, "confirming": confirming }),
            ))
            .await;
            return Err(AccountError::Throttled { retry_after });
        }
        let verification = self
            .hasher
            .verify_for(
                keys.hashing_clients(),
                password,
                Some(&user.hashed_password),
            )
            .await;
        match verification {
            Ok(Verification::Valid { .. }) => {
                if let Err(err) = self.throttle.succeeded(&self.store, &keys).await
                    && !err.is_unavailable()
                {
                    tracing::warn!(error = %err, "could not clear the failed-login count");
                }
                Ok(())
            }
            Ok(Verification::Invalid) => {
                tracing::info!(user_id = %user.id, client = %client.address, "password confirmation refused: incorrect password");
                self.throttle.failed(&keys);
                self.record_refusal(context.event(
                    AuditEventType::LoginFailed,
                    Some(user.id),
                    json!({ "reason": "invalid_credentials", "confirming": confirming }),
                ))
                .await;
                Err(AccountError::IncorrectPassword)
            }
            Err(err) => {
                // The password was not checked: the attempt gives its places back.
                if let Err(err) = self.throttle.abandoned(&self.store, &keys).await
                    && !err.is_unavailable()
                {
                    tracing::warn!(error = %err, "could not give back a login attempt");
                }
                Err(err.into())
            }
        }
    }

    /// Records a refused password confirmation, which changes nothing: written at once, on the
    /// store's connection (a rare answer, not worth the background writer). A failure to write
    /// it is logged; the refusal stands.
    async fn record_refusal(&self, event: crate::db::AuditEvent) {
        if let Err(err) = self.store.insert_audit_events(vec![event]).await {
            tracing::warn!(error = %err, "could not record a refused password confirmation in the audit log");
        }
    }

    /// Every field of `request` checked, in the order a form shows them.
    async fn check(
        &self,
        request: CreateUser,
        check: PasswordCheck,
    ) -> Result<CheckedUser, AccountError> {
        let username = Username::parse(&request.username).map_err(AccountError::InvalidUsername)?;
        let password = match check {
            PasswordCheck::Policy => {
                self.check_password(request.password, username.as_str())
                    .await?
            }
            PasswordCheck::Skip => {
                if secrecy::ExposeSecret::expose_secret(&request.password).is_empty() {
                    return Err(AccountError::EmptyPassword);
                }
                NewPassword::unchecked(request.password)
            }
        };
        let email = request
            .email
            .as_deref()
            .map(EmailAddress::parse)
            .transpose()
            .map_err(AccountError::InvalidEmail)?;
        let full_name = request.full_name.map(full_name).transpose()?.flatten();
        Ok(CheckedUser {
            username,
            password,
            email,
            full_name,
            scopes: request.scopes,
            disabled: request.disabled,
        })
    }

    async fn insert(
        &self,
        checked: CheckedUser,
        events: impl FnOnce(&User) -> Vec<crate::db::AuditEvent>,
    ) -> Result<User, AccountError> {
        let hashed_password = self.hasher.hash(checked.password.into_secret()).await?;
        let username = checked.username.to_string();
        self.store
            .create_user(
                NewUser {
                    username: checked.username,
                    email: checked.email,
                    full_name: checked.full_name,
                    hashed_password,
                    disabled: checked.disabled,
                    scopes: checked.scopes,
                },
                events,
            )
            .await
            .map_err(|err| match err {
                StoreError::UsernameTaken => AccountError::UsernameTaken(username),
                other => AccountError::Store(other),
            })
    }
}

/// The audit events of a change to an account: `user.updated` naming the members that changed
/// (with the new scopes when they changed), and `user.disabled` or `user.enabled`. None when
/// nothing changed.
fn changed_account_events(
    context: &AuditContext,
    before: &User,
    after: &User,
) -> Vec<crate::db::AuditEvent> {
    let mut events = Vec::new();
    let mut fields = Vec::new();
    if before.email != after.email {
        fields.push("email");
    }
    if before.full_name != after.full_name {
        fields.push("full_name");
    }
    if before.scopes != after.scopes {
        fields.push("scopes");
    }
    if !fields.is_empty() {
        let mut detail = json!({ "fields": fields });
        if before.scopes != after.scopes {
            detail["scopes"] = json!(scope_names(&after.scopes));
        }
        events.push(context.event(AuditEventType::UserUpdated, Some(after.id), detail));
    }
    match (before.disabled, after.disabled) {
        (false, true) => {
            events.push(context.event(AuditEventType::UserDisabled, Some(after.id), json!({})))
        }
        (true, false) => {
            events.push(context.event(AuditEventType::UserEnabled, Some(after.id), json!({})))
        }
        _ => {}
    }
    events
}

/// Scope names as the audit log's details list them.
fn scope_names(scopes: &ScopeSet) -> Vec<&'static str> {
    scopes.iter().map(crate::domain::Scope::as_str).collect()
}

/// A password's change or reset (`kind`), and the sessions it ended (`reason`), if any.
fn password_events(
    context: &AuditContext,
    user_id: Uuid,
    kind: AuditEventType,
    reason: &str,
    ended: u64,
) -> Vec<crate::db::AuditEvent> {
    let mut events = vec![context.event(kind, Some(user_id), json!({ "sessions_ended": ended }))];
    events.extend(super::sessions::sessions_ended(
        context, user_id, reason, ended,
    ));
    events
}

/// A new account's fields, checked.
struct CheckedUser {
    username: Username,
    password: NewPassword,
    email: Option<EmailAddress>,
    full_name: Option<String>,
    scopes: ScopeSet,
    disabled: bool,
}

/// A full name as kept: trimmed, `None` when blank, at most [`MAX_FULL_NAME_CHARS`].
fn full_name(raw: String) -> Result<Option<String>, AccountError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    check_text(trimmed).map_err(AccountError::InvalidFullName)?;
    if trimmed.chars().count() > MAX_FULL_NAME_CHARS {
        return Err(AccountError::InvalidFullName(Invalid::new(
            "string_too_long",
            format!("String should have at most {MAX_FULL_NAME_CHARS} characters"),
        )));
    }
    Ok(Some(trimmed.to_owned()))
}

/// The policy's check of `password` for the account `username`, on a blocking thread, at most
/// as many at once as `estimators` has permits.
pub(super) async fn check_password(
    estimators: &tokio::sync::Semaphore,
    password: SecretString,
    username: &str,
    policy: PasswordPolicy,
) -> Result<NewPassword, AccountError> {
    let _permit = estimators
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let username = username.to_owned();
    tokio::task::spawn_blocking(move || NewPassword::parse(password, &username, policy))
        .await
        .map_err(|err| AccountError::Hash(crate::auth::HashError::Failed(err.to_string())))?
        .map_err(AccountError::WeakPassword)
}
