//! The writes of a login whose password checked out, in one transaction: the throttle's
//! changes, the session and the login's time commit together (one commit, one fsync on SQLite,
//! instead of one per statement), or not at all.

use chrono::{DateTime, Duration, Utc};
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::{
    NewSession, Session, Store, StoreError, login_failures, sessions, user_changes,
    user_changes::begin_read_committed,
};
use crate::domain::HashedPassword;

/// What the login throttle writes when a password was right, on the store itself or in a
/// login's transaction.
#[allow(async_fn_in_trait)]
pub trait LoginCounts {
    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError>;
    async fn release_login_attempt(&self, key: &str, limit: u32) -> Result<(), StoreError>;
    /// Both of the above at once: forgets the failures under `clear`, gives back an attempt
    /// under each of `releases` (key, limit).
    async fn forget_attempt(&self, clear: &str, releases: &[(&str, u32)])
    -> Result<(), StoreError>;
    async fn remember_login_address(
        &self,
        account_key: &str,
        address_key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn reserve_login_success(
        &self,
        key: &str,
        limit: u32,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<Option<u32>, StoreError>;
    async fn login_success_window(&self, key: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// A login's transaction (READ COMMITTED on PostgreSQL, as the password compare-and-swap of
/// `record_login` needs); rolled back if dropped without [`LoginTransaction::commit`].
pub struct LoginTransaction {
    txn: DatabaseTransaction,
}

impl Store {
    /// Starts the transaction of a login whose password checked out.
    pub async fn begin_login(&self) -> Result<LoginTransaction, StoreError> {
        Ok(LoginTransaction {
            txn: begin_read_committed(self.login_connection()).await?,
        })
    }
}

impl LoginTransaction {
    /// As [`Store::start_session`].
    pub async fn start_session(&self, new: NewSession) -> Result<Session, StoreError> {
        sessions::start_session_on(&self.txn, new).await
    }

    /// As [`Store::record_login`].
    pub async fn record_login(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        verified: &HashedPassword,
    ) -> Result<bool, StoreError> {
        user_changes::record_login_on(&self.txn, id, at, verified).await
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.txn.commit().await?)
    }
}

impl LoginCounts for LoginTransaction {
    async fn forget_attempt(
        &self,
        clear: &str,
        releases: &[(&str, u32)],
    ) -> Result<(), StoreError> {
        login_failures::forget_attempt_on(&self.txn, clear, releases).await
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        login_failures::clear_login_failures_on(&self.txn, key).await
    }

    async fn release_login_attempt(&self, key: &str, limit: u32) -> Result<(), StoreError> {
        login_failures::release_login_attempt_on(&self.txn, key, limit).await
    }

    async fn remember_login_address(
        &self,
        account_key: &str,
        address_key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        login_failures::remember_login_address_on(&self.txn, account_key, address_key, now).await
    }

    async fn reserve_login_success(
        &self,
        key: &str,
        limit: u32,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<Option<u32>, StoreError> {
        login_failures::reserve_login_success_on(&self.txn, key, limit, now, window).await
    }

    async fn login_success_window(&self, key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        login_failures::login_success_window_on(&self.txn, key).await
    }
}

impl LoginCounts for Store {
    async fn forget_attempt(
        &self,
        clear: &str,
        releases: &[(&str, u32)],
    ) -> Result<(), StoreError> {
        login_failures::forget_attempt_on(self.login_connection(), clear, releases).await
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        Store::clear_login_failures(self, key).await
    }

    async fn release_login_attempt(&self, key: &str, limit: u32) -> Result<(), StoreError> {
        Store::release_login_attempt(self, key, limit).await
    }

    async fn remember_login_address(
        &self,
        account_key: &str,
        address_key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Store::remember_login_address(self, account_key, address_key, now).await
    }

    async fn reserve_login_success(
        &self,
        key: &str,
        limit: u32,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<Option<u32>, StoreError> {
        Store::reserve_login_success(self, key, limit, now, window).await
    }

    async fn login_success_window(&self, key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Store::login_success_window(self, key).await
    }
}
