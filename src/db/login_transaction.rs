//! The writes of a login whose password checked out, in one transaction: the throttle's
//! changes, the session and the login's time commit together (one commit, one fsync on SQLite,
//! instead of one per statement), or not at all. On an SQLite file the transaction runs inline
//! on the calling thread when SQLite's write lock is free (see `inline_writes`), otherwise
//! through sqlx; the statements are the same.

use chrono::{DateTime, Duration, Utc};
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::{
    NewSession, Session, Store, StoreError, inline_writes::InlineTransaction, login_failures,
    sessions, user_changes, user_changes::begin_read_committed,
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
    txn: Txn,
}

enum Txn {
    Sqlx(DatabaseTransaction),
    Inline(InlineTransaction),
}

impl Store {
    /// Starts the transaction of a login whose password checked out.
    pub async fn begin_login(&self) -> Result<LoginTransaction, StoreError> {
        let txn = match self.begin_inline_write() {
            Some(inline) => Txn::Inline(inline),
            None => Txn::Sqlx(begin_read_committed(self.login_connection()).await?),
        };
        Ok(LoginTransaction { txn })
    }

    /// On an SQLite file, a transaction on the inline writer if SQLite's write lock is free.
    pub(super) fn begin_inline_write(&self) -> Option<InlineTransaction> {
        self.inline_writes.as_ref()?.begin()
    }
}

impl LoginTransaction {
    /// Whether it runs on the inline writer (for the tests).
    pub fn is_inline(&self) -> bool {
        matches!(self.txn, Txn::Inline(_))
    }

    /// As [`Store::start_session`].
    pub async fn start_session(&self, new: NewSession) -> Result<Session, StoreError> {
        match &self.txn {
            Txn::Sqlx(txn) => sessions::start_session_on(txn, new).await,
            Txn::Inline(txn) => sessions::start_session_inline(txn, new),
        }
    }

    /// As [`Store::record_login`].
    pub async fn record_login(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        verified: &HashedPassword,
    ) -> Result<bool, StoreError> {
        match &self.txn {
            Txn::Sqlx(txn) => user_changes::record_login_on(txn, id, at, verified).await,
            Txn::Inline(txn) => user_changes::record_login_inline(txn, id, at, verified),
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self.txn {
            Txn::Sqlx(txn) => Ok(txn.commit().await?),
            Txn::Inline(txn) => txn.commit(),
        }
    }
}

impl LoginCounts for LoginTransaction {
    async fn forget_attempt(
        &self,
        clear: &str,
        releases: &[(&str, u32)],
    ) -> Result<(), StoreError> {
        match &self.txn {
            Txn::Sqlx(txn) => login_failures::forget_attempt_on(txn, clear, releases).await,
            Txn::Inline(txn) => login_failures::forget_attempt_inline(txn, clear, releases),
        }
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        match &self.txn {
            Txn::Sqlx(txn) => login_failures::clear_login_failures_on(txn, key).await,
            Txn::Inline(txn) => login_failures::clear_login_failures_inline(txn, key),
        }
    }

    async fn release_login_attempt(&self, key: &str, limit: u32) -> Result<(), StoreError> {
        match &self.txn {
            Txn::Sqlx(txn) => login_failures::release_login_attempt_on(txn, key, limit).await,
            Txn::Inline(txn) => login_failures::release_login_attempt_inline(txn, key, limit),
        }
    }

    async fn remember_login_address(
        &self,
        account_key: &str,
        address_key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match &self.txn {
            Txn::Sqlx(txn) => {
                login_failures::remember_login_address_on(txn, account_key, address_key, now).await
            }
            Txn::Inline(txn) => {
                login_failures::remember_login_address_inline(txn, account_key, address_key, now)
            }
        }
    }

    async fn reserve_login_success(
        &self,
        key: &str,
        limit: u32,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<Option<u32>, StoreError> {
        match &self.txn {
            Txn::Sqlx(txn) => {
                login_failures::reserve_login_success_on(txn, key, limit, now, window).await
            }
            Txn::Inline(txn) => {
                login_failures::reserve_login_success_inline(txn, key, limit, now, window)
            }
        }
    }

    async fn login_success_window(&self, key: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        match &self.txn {
            Txn::Sqlx(txn) => login_failures::login_success_window_on(txn, key).await,
            Txn::Inline(txn) => login_failures::login_success_window_inline(txn, key),
        }
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
