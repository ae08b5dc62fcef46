use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait as _, EntityTrait as _, QueryFilter as _,
    sea_query::{CaseStatement, Expr, ExprTrait as _, OnConflict},
};

use super::{Store, StoreError, entities::login_failure};

impl Store {
    /// The latest `blocked_until` among `keys` that is still in the future.
    pub async fn blocked_until(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rows = login_failure::Entity::find()
            .filter(login_failure::Column::Key.is_in(keys.iter().cloned()))
            .filter(login_failure::Column::BlockedUntil.gt(now))
            .all(self.connection())
            .await?;
        Ok(rows.into_iter().filter_map(|row| row.blocked_until).max())
    }

    /// Counts one more failure under `key`, atomically (concurrent failures are all counted),
    /// starting again from one when the previous failure is older than `window`. Returns the
    /// new count.
    pub async fn record_login_failure(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<u32, StoreError> {
        use login_failure::{Column, Entity};

        let row = login_failure::ActiveModel {
            key: Set(key.to_owned()),
            failures: Set(1),
            last_failure_at: Set(now),
            blocked_until: Set(None),
        };
        let stale = Expr::col((Entity, Column::LastFailureAt)).lt(now - window);
        let next_count = CaseStatement::new()
            .case(stale, Expr::val(1))
            .finally(Expr::col((Entity, Column::Failures)).add(1));
        let saved = Entity::insert(row)
            .on_conflict(
                OnConflict::column(Column::Key)
                    .value(Column::Failures, next_count)
                    .value(Column::LastFailureAt, now)
                    .to_owned(),
            )
            .exec_with_returning(self.connection())
            .await?;
        Ok(u32::try_from(saved.failures).unwrap_or(0))
    }

    /// Refuses logins under `key` until `until`.
    pub async fn block_logins(&self, key: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        login_failure::Entity::update_many()
            .col_expr(login_failure::Column::BlockedUntil, until.into())
            .filter(login_failure::Column::Key.eq(key))
            .exec(self.connection())
            .await?;
        Ok(())
    }

    /// Forgets the failures under `key` (after a successful login).
    pub async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        login_failure::Entity::delete_many()
            .filter(login_failure::Column::Key.eq(key))
            .exec(self.connection())
            .await?;
        Ok(())
    }
}
