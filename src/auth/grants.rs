//! The OAuth 2.0 grants and revocation, as rules: the password grant (RFC 6749 §4.3: throttle,
//! password check, rehash, session start), the refresh grant (§6: rotation, reuse detection,
//! scopes narrowed to the user's current ones) and revocation (RFC 7009). Each refusal is a
//! [`GrantError`]; `api::token` parses the form and maps them to the contract's responses.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use secrecy::SecretString;
use serde_json::json;

use crate::{
    audit::{AuditContext, AuditLog},
    auth::{
        AccessTokens, Admission, HashError, IssueError, IssuedToken, LoginThrottle, PasswordHasher,
        PresentedRefreshToken, RefreshTokens, Verification, VerifyError,
    },
    config::SessionSettings,
    db::{Exchange, NewSession, Session, Store, StoreError},
    domain::{AuditEventType, Scope, ScopeSet, Username},
    metrics::{GrantMetrics, LoginOutcome, RefreshOutcome},
};

/// Who is asking, as recorded on the session a login starts.
#[derive(Debug, Clone)]
pub struct Client {
    pub address: IpAddr,
    pub user_agent: Option<String>,
    /// The request's `X-Request-Id`, for the audit log.
    pub request_id: Option<String>,
}

/// A password-grant request, once its fields are present.
pub struct PasswordLogin<'a> {
    /// As typed: any case, and possibly a name that could not exist.
    pub username: &'a str,
    pub password: SecretString,
    /// The scopes asked for; `None`: the default (every scope held except `admin`).
    pub requested: Option<ScopeSet>,
}

/// What a successful grant issues.
#[derive(Debug)]
pub struct Granted {
    pub access: IssuedToken,
    pub scopes: ScopeSet,
    pub refresh_token: String,
}

/// Whose scopes a request asked beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeHolder {
    User,
    Session,
}

impl std::fmt::Display for ScopeHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::User => "user",
            Self::Session => "session",
        })
    }
}

/// Why a grant was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// An unknown username or a wrong password: the same answer for both.
    #[error("incorrect username or password")]
    InvalidCredentials,
    #[error("inactive user")]
    InactiveUser,
    /// Unknown, expired, revoked or reused.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("scope not granted to this {holder}: {scope}")]
    ScopeNotGranted { holder: ScopeHolder, scope: Scope },
    /// Too many failed logins from this client (or for this account).
    #[error("login throttled for {retry_after} s")]
    Throttled { retry_after: u32 },
    /// Too many successful logins to one account this minute.
    #[error("too many logins to this account, retry in {retry_after} s")]
    TooManyLogins { retry_after: u32 },
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The grants, with everything they need; cheap to clone.
#[derive(Clone)]
pub struct Grants {
    store: Store,
    hasher: PasswordHasher,
    tokens: Arc<AccessTokens>,
    refresh_tokens: RefreshTokens,
    throttle: LoginThrottle,
    sessions: SessionSettings,
    metrics: GrantMetrics,
    /// Where login and refresh events go (a background writer: a login never waits for it).
    audit: AuditLog,
}

/// What the audit log needs to know of a password grant, found along the way.
#[derive(Default)]
struct LoginFacts {
    /// The account the name denotes, once looked up (`None`: no such account, or not looked up).
    user_id: Option<uuid::Uuid>,
    /// The session a successful login started.
    session_id: Option<uuid::Uuid>,
}

impl Grants {
    pub fn new(
        store: Store,
        hasher: PasswordHasher,
        tokens: Arc<AccessTokens>,
        refresh_tokens: RefreshTokens,
        throttle: LoginThrottle,
        sessions: SessionSettings,
        audit: AuditLog,
    ) -> Self {
        Self {
            store,
            hasher,
            tokens,
            refresh_tokens,
            throttle,
            sessions,
            metrics: GrantMetrics::default(),
            audit,
        }
    }

    /// Counts every login's and refresh's outcome in `metrics`.
    pub fn with_metrics(mut self, metrics: GrantMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    pub fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    /// The password grant: checks the password (after the throttle), upgrades an outdated
    /// hash, and starts a session.
    pub async fn password_grant(
        &self,
        client: Client,
        login: PasswordLogin<'_>,
    ) -> Result<Granted, GrantError> {
        let context = AuditContext::of(client.clone());
        let mut facts = LoginFacts::default();
        let result = self.check_password_grant(client, login, &mut facts).await;
        self.record_login(context, &facts, &result);
        let outcome = match &result {
            Ok(_) => Some(LoginOutcome::Success),
            Err(GrantError::InvalidCredentials) => Some(LoginOutcome::InvalidCredentials),
            Err(GrantError::InactiveUser) => Some(LoginOutcome::Inactive),
            Err(GrantError::Throttled { .. } | GrantError::TooManyLogins { .. }) => {
                Some(LoginOutcome::Throttled)
            }
            Err(GrantError::Hash(HashError::Busy)) => Some(LoginOutcome::Busy),
            Err(_) => None,
        };
        if let Some(outcome) = outcome {
            self.metrics.login(outcome);
        }
        result
    }

    /// Queues the audit event of a password grant's outcome (none for a failure of ours).
    fn record_login(
        &self,
        context: AuditContext,
        facts: &LoginFacts,
        result: &Result<Granted, GrantError>,
    ) {
        let scopes = |scopes: &ScopeSet| scopes.iter().map(Scope::as_str).collect::<Vec<_>>();
        let (kind, detail) = match result {
            Ok(granted) => (
                AuditEventType::LoginSucceeded,
                json!({ "scopes": scopes(&granted.scopes) }),
            ),
            Err(GrantError::InvalidCredentials) => (
                AuditEventType::LoginFailed,
                json!({ "reason": "invalid_credentials" }),
            ),
            Err(GrantError::InactiveUser) => {
                (AuditEventType::LoginFailed, json!({ "reason": "inactive" }))
            }
            Err(GrantError::ScopeNotGranted { scope, .. }) => (
                AuditEventType::LoginFailed,
                json!({ "reason": "invalid_scope", "scope": scope.as_str() }),
            ),
            Err(GrantError::Throttled { retry_after }) => (
                AuditEventType::LoginThrottled,
                json!({ "reason": "failed_logins", "retry_after": retry_after }),
            ),
            Err(GrantError::TooManyLogins { retry_after }) => (
                AuditEventType::LoginThrottled,
                json!({ "reason": "too_many_logins", "retry_after": retry_after }),
            ),
            Err(_) => return,
        };
        let context = match (result, facts.user_id, facts.session_id) {
            (Ok(_), Some(user_id), Some(session_id)) => context.acting(user_id, session_id),
            _ => context,
        };
        self.audit
            .record(context.event(kind, facts.user_id, detail));
    }

    async fn check_password_grant(
        &self,
        client: Client,
        login: PasswordLogin<'_>,
        facts: &mut LoginFacts,
    ) -> Result<Granted, GrantError> {
        // A place in the hashing pool first: a login that would find the pool full is refused
        // before any database work (a flood costs nothing but its 503s).
        let mut keys = self.throttle.keys(login.username, client.address);
        let slot = self.hasher.reserve(keys.hashing_clients())?;
        // Throttling comes before the password is checked, and reserves the attempt's place in
        // every count first: a blocked client learns nothing, not even from a correct password,
        // and a burst of concurrent guesses gets no more checks than the limit.
        if let Admission::Refused { retry_after } =
            self.throttle.admit(&self.store, &mut keys).await?
        {
            tracing::warn!(client = %client.address, retry_after, "login refused: throttled");
            return Err(GrantError::Throttled { retry_after });
        }

        // A username that could not exist is looked up as nothing, and still costs one hash.
        let checked = async {
            let user = match Username::parse(login.username) {
                Ok(name) => self.store.find_user_by_username(&name).await?,
                Err(_) => None,
            };
            let verification = slot
                .verify(login.password, user.as_ref().map(|u| &u.hashed_password))
                .await?;
            Ok::<_, GrantError>((user, verification))
        }
        .await;
        let (user, verification) = match checked {
            Ok(checked) => {
                facts.user_id = checked.0.as_ref().map(|user| user.id);
                checked
            }
            Err(err) => {
                // The password was not checked: the attempt gives its places back.
                if let Err(err) = self.throttle.abandoned(&self.store, &keys).await
                    && !err.is_unavailable()
                {
                    tracing::warn!(error = %err, "could not give back a login attempt");
                }
                return Err(err);
            }
        };
        let (Some(user), Verification::Valid { rehashed }) = (user, verification) else {
            tracing::info!(client = %client.address, "login refused: incorrect username or password");
            self.throttle.failed(&keys);
            return Err(GrantError::InvalidCredentials);
        };
        // The hash the password was checked against, as stored once this login is done.
        let mut verified = user.hashed_password.clone();
        if let Some(rehashed) = rehashed {
            // Only over the hash that was checked: a password changed meanwhile is not undone.
            // The login stands even if the upgrade cannot be stored; it is retried next time.
            // Before the login's transaction: on SQLite this write would wait for it.
            match self
                .store
                .upgrade_password_hash(user.id, &verified, &rehashed)
                .await
            {
                Ok(true) => {
                    tracing::info!(user_id = %user.id, "password hash upgraded to current parameters");
                    verified = rehashed;
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(user_id = %user.id, error = %err, "could not store an upgraded password hash")
                }
            }
        }
        let granted = match login.requested {
            None => Ok(user.scopes.without(Scope::Admin)),
            Some(requested) => narrowed(requested, &user.scopes, ScopeHolder::User),
        };
        // Signed before the session is stored (and before the transaction, which must not wait
        // for anything but its own statements): a signing failure leaves no session behind.
        let session_id = uuid::Uuid::now_v7();
        // Inactive comes before a scope not held, as in the contract.
        let prepared = match granted {
            Ok(granted) if !user.disabled => {
                let access = self.tokens.issue(user.id, session_id, &granted).await?;
                Ok((granted, access))
            }
            Ok(_) => Err(GrantError::InactiveUser),
            Err(_) if user.disabled => Err(GrantError::InactiveUser),
            Err(err) => Err(err),
        };

        // The throttle's changes, the session and the login's time commit together. A refusal
        // from here on still commits the throttle's changes: the password was right.
        let writes = self.store.begin_login().await?;
        self.throttle.succeeded(&writes, &keys).await?;
        // Each login starts a session: one account gets only so many a minute, from anywhere.
        if let Admission::Refused { retry_after } =
            self.throttle.admit_success(&writes, &keys).await?
        {
            writes.commit().await?;
            tracing::warn!(user_id = %user.id, client = %client.address, retry_after, "login refused: too many successful logins to this account");
            return Err(GrantError::TooManyLogins { retry_after });
        }
        let (granted, access) = match prepared {
            Ok(prepared) => prepared,
            Err(err) => {
                writes.commit().await?;
                return Err(err);
            }
        };
        let started = writes
            .start_session(NewSession {
                id: session_id,
                user_id: user.id,
                scopes: granted.clone(),
                user_agent: client.user_agent,
                client_address: client.address.to_string(),
                lifetime: self.sessions.lifetime,
            })
            .await;
        if let Err(err) = started {
            drop(writes);
            // The account was deleted while its password was checked (the session's foreign
            // key refused it): answered as for an unknown user, not as a failure of ours.
            if let Ok(None) = self.store.find_user_by_id(user.id).await {
                tracing::info!(user_id = %user.id, "login refused: the account was deleted meanwhile");
                return Err(GrantError::InvalidCredentials);
            }
            return Err(err.into());
        }
        // A password change or reset that committed while this password was being checked
        // wins: the login's time is recorded only over the checked hash, and when it is not
        // the stored one any more, nothing of this login is kept. (A change committing after
        // this transaction ends every session, this one included.)
        if !writes
            .record_login(user.id, crate::db::now(), &verified)
            .await?
        {
            // Rolled back: no session to end, nothing for the audit log but the refused login.
            drop(writes);
            tracing::info!(user_id = %user.id, "login refused: the password changed while it was checked");
            return Err(GrantError::InvalidCredentials);
        }
        writes.commit().await?;
        crate::telemetry::record_caller(user.id, Some(session_id));
        facts.session_id = Some(session_id);
        tracing::info!(user_id = %user.id, %session_id, scope = %granted, "logged in: session started");
        Ok(Granted {
            access,
            refresh_token: self.refresh_tokens.issue(session_id, 0),
            scopes: granted,
        })
    }

    /// The refresh grant: exchanges a refresh token for new tokens in the same session; a
    /// spent token presented again ends the session.
    pub async fn refresh_grant(
        &self,
        client: Client,
        presented: &str,
        requested: Option<ScopeSet>,
    ) -> Result<Granted, GrantError> {
        let reused = AtomicBool::new(false);
        let context = AuditContext::of(client);
        let result = self
            .check_refresh_grant(&context, presented, requested, &reused)
            .await;
        let outcome = match &result {
            _ if reused.load(Ordering::Relaxed) => Some(RefreshOutcome::ReuseDetected),
            Ok(_) => Some(RefreshOutcome::Success),
            Err(GrantError::InvalidRefreshToken) => Some(RefreshOutcome::Invalid),
            Err(GrantError::InactiveUser) => Some(RefreshOutcome::Inactive),
            Err(_) => None,
        };
        if let Some(outcome) = outcome {
            self.metrics.refresh(outcome);
        }
        result
    }

    async fn check_refresh_grant(
        &self,
        context: &AuditContext,
        presented: &str,
        requested: Option<ScopeSet>,
        reused: &AtomicBool,
    ) -> Result<Granted, GrantError> {
        let Some(presented) = self.presented_refresh_token(presented).await? else {
            tracing::info!("refresh refused: unknown refresh token");
            return Err(GrantError::InvalidRefreshToken);
        };
        let session = &presented.session;
        let now = chrono::Utc::now();
        if !session.state().is_live(now) {
            tracing::info!(session_id = %session.id, "refresh refused: session ended");
            return Err(GrantError::InvalidRefreshToken);
        }
        // Reuse is answered before anything about the user, and nothing is recorded on a refusal.
        let grace = self.sessions.reuse_grace;
        if !presented.exchangeable(now, grace) {
            reused.store(true, Ordering::Relaxed);
            return Err(self.reuse_detected(context, session).await);
        }
        let user = self
            .store
            .find_user_by_id(session.user_id)
            .await?
            .ok_or(GrantError::InvalidRefreshToken)?;
        if user.disabled {
            return Err(GrantError::InactiveUser);
        }
        // The login's scopes, less any the user has lost since.
        let allowed: ScopeSet = session
            .scopes
            .iter()
            .filter(|scope| user.scopes.contains(*scope))
            .collect();
        let granted = match requested {
            None => allowed,
            Some(requested) => narrowed(requested, &allowed, ScopeHolder::Session)?,
        };
        // Signed before the presented token is spent: a signing failure leaves the client its
        // token to retry with, rather than a spent one whose next use would end the session.
        let access = self.tokens.issue(user.id, session.id, &granted).await?;
        let generation = match self
            .store
            .exchange_refresh_token(session.id, presented.generation, grace)
            .await?
        {
            Exchange::Issue(generation) => generation,
            Exchange::Reused => {
                reused.store(true, Ordering::Relaxed);
                return Err(self.reuse_detected(context, session).await);
            }
            Exchange::SessionEnded => {
                tracing::info!(session_id = %session.id, "refresh refused: session ended meanwhile");
                return Err(GrantError::InvalidRefreshToken);
            }
        };
        crate::telemetry::record_caller(user.id, Some(session.id));
        tracing::info!(user_id = %user.id, session_id = %session.id, generation, scope = %granted, "refreshed");
        let scopes: Vec<&str> = granted.iter().map(Scope::as_str).collect();
        self.audit
            .record(context.clone().acting(user.id, session.id).event(
                AuditEventType::TokenRefreshed,
                Some(user.id),
                json!({ "scopes": scopes }),
            ));
        Ok(Granted {
            access,
            refresh_token: self.refresh_tokens.issue(session.id, generation),
            scopes: granted,
        })
    }

    /// Revocation (RFC 7009): ends the session an access or refresh token belongs to. An
    /// unknown, expired or already revoked token is not an error. `refresh_first` says which
    /// kind to try first.
    pub async fn revoke(
        &self,
        client: Client,
        token: &str,
        refresh_first: bool,
    ) -> Result<(), StoreError> {
        let session = if refresh_first {
            match self.refresh_token_session(token).await? {
                Some(session) => Some(session),
                None => self.access_token_session(token).await?,
            }
        } else {
            match self.access_token_session(token).await? {
                Some(session) => Some(session),
                None => self.refresh_token_session(token).await?,
            }
        };
        let revoked = match session {
            Some((session_id, user_id, kind)) => {
                // Whoever holds one of its tokens acts as the session's user.
                let context = AuditContext::of(client).acting(user_id, session_id);
                let events = || {
                    vec![context.event(
                        AuditEventType::TokenRevoked,
                        Some(user_id),
                        json!({ "token": kind }),
                    )]
                };
                self.store.revoke_session(session_id, events).await?
            }
            None => false,
        };
        match session {
            Some((session_id, ..)) if revoked => {
                tracing::info!(%session_id, "session revoked at /token/revoke");
            }
            Some(_) => tracing::debug!("revocation of a token whose session had already ended"),
            None => tracing::debug!("revocation of an unknown token: nothing to do"),
        }
        Ok(())
    }

    /// The session a presented refresh token names, if it is one of ours: checked by its MAC
    /// first (a made-up token costs no database read), then the session is read.
    async fn presented_refresh_token(
        &self,
        token: &str,
    ) -> Result<Option<PresentedToken>, StoreError> {
        Ok(match self.refresh_tokens.read(token) {
            PresentedRefreshToken::Generation {
                session_id,
                generation,
            } => self
                .store
                .find_session(session_id)
                .await?
                .map(|session| PresentedToken {
                    session,
                    generation,
                    legacy_spent_at: None,
                }),
            PresentedRefreshToken::Legacy { hash } => self
                .store
                .find_legacy_refresh_token(&hash)
                .await?
                .map(|legacy| PresentedToken {
                    session: legacy.session,
                    generation: 0,
                    legacy_spent_at: legacy.rotated_at,
                }),
            PresentedRefreshToken::Invalid => None,
        })
    }

    /// A refresh token presented again after it was exchanged: whoever holds the session's
    /// tokens, it is not only its owner. The whole session ends (RFC 9700 §4.14.2).
    async fn reuse_detected(&self, context: &AuditContext, session: &Session) -> GrantError {
        let session_id = session.id;
        tracing::warn!(%session_id, "refresh token reused after rotation: session revoked");
        // The presenter is not known to be the user: no actor.
        let mut context = context.clone();
        context.session_id = Some(session_id);
        let events = || {
            vec![context.event(
                AuditEventType::TokenReuseDetected,
                Some(session.user_id),
                json!({ "session_ended": true }),
            )]
        };
        match self.store.revoke_session(session_id, events).await {
            Ok(_) => GrantError::InvalidRefreshToken,
            Err(err) => err.into(),
        }
    }

    /// The session of a valid access token, its user, and `"access"`.
    async fn access_token_session(&self, token: &str) -> Result<Option<TokenSession>, StoreError> {
        match self.tokens.verify(token.trim()).await {
            // The key's status as the per-request check sees it: a key retired since it was
            // cached (by another instance, or the command line) no longer makes a token valid.
            Ok(verified) => match verified.kid.as_deref().zip(verified.key_tag.as_deref()) {
                Some((kid, tag)) if !self.tokens.keys().is_still_active(kid, tag).await? => {
                    Ok(None)
                }
                _ => Ok(Some((verified.session_id, verified.user_id, "access"))),
            },
            Err(VerifyError::Invalid(_)) => Ok(None),
            // Its key could not be looked up: not the same as a token that is not ours.
            Err(VerifyError::Store(err)) => Err(err),
        }
    }

    /// The session of a refresh token of ours, spent or not, its user, and `"refresh"`.
    async fn refresh_token_session(&self, token: &str) -> Result<Option<TokenSession>, StoreError> {
        Ok(self
            .presented_refresh_token(token)
            .await?
            .map(|presented| (presented.session.id, presented.session.user_id, "refresh")))
    }
}

/// The session a token belongs to, its user, and which kind of token it is.
type TokenSession = (uuid::Uuid, uuid::Uuid, &'static str);

/// A presented refresh token that names a session of ours.
struct PresentedToken {
    session: Session,
    /// The generation it is, counting a token issued before generations as generation 0.
    generation: u64,
    /// When it was spent, for a token issued before generations that was exchanged then.
    legacy_spent_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl PresentedToken {
    /// Whether it may be exchanged: it is the session's newest token, or the one before it
    /// spent less than `grace` ago. Anything older is a spent token presented again.
    fn exchangeable(&self, now: chrono::DateTime<chrono::Utc>, grace: chrono::Duration) -> bool {
        let within_grace = |spent_at: Option<chrono::DateTime<chrono::Utc>>| {
            spent_at.is_some_and(|at| now - at <= grace)
        };
        if let Some(spent_at) = self.legacy_spent_at {
            return within_grace(Some(spent_at));
        }
        self.generation == self.session.refresh_generation
            || (self.generation.checked_add(1) == Some(self.session.refresh_generation)
                && within_grace(self.session.refresh_rotated_at))
    }
}

/// `requested`, if every scope of it is in `allowed` (the user's, or the session's).
fn narrowed(
    requested: ScopeSet,
    allowed: &ScopeSet,
    holder: ScopeHolder,
) -> Result<ScopeSet, GrantError> {
    match requested.missing_from(allowed).first() {
        Some(&scope) => Err(GrantError::ScopeNotGranted { holder, scope }),
        None => Ok(requested),
    }
}
