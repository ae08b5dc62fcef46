//! The login throttle's counts (see `auth::throttle`): one atomic statement per key, so that
//! concurrent attempts, on any instance, cannot both see room under a limit.

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait as _, ConnectionTrait, DbBackend, EntityTrait as _, QueryFilter as _,
    QueryTrait as _, Statement, Value,
    sea_query::{
        CaseStatement, Expr, ExprTrait as _, OnConflict, PostgresQueryBuilder,
        QueryStatementWriter, SqliteQueryBuilder,
    },
};

use super::{
    Store, StoreError,
    entities::{login_address, login_failure, login_success},
    inline_writes::InlineTransaction,
};

/// The longest run of doublings a block can have before it reaches its ceiling.
const MAX_DOUBLINGS: u32 = 32;

impl Store {
    /// Reserves one attempt under each key of `reservations` (a key and its limit), in order,
    /// in one round trip: counts it, atomically, unless the key is blocked. Returns, for each,
    /// the new count, or `None` when blocked. The count starts again from one when the
    /// previous failure *and* the end of the block it caused are older than `window`. When the
    /// new count reaches its limit, the same statement blocks the key for
    /// `delay(count, limit)`, so no concurrent attempt gets through before the block is in
    /// place. Each key's statement commits by itself; on an error, the ones before it stand
    /// (on an SQLite file, inline: the statements commit together, or none does).
    pub async fn reserve_login_attempts(
        &self,
        reservations: &[(&str, u32)],
        now: DateTime<Utc>,
        window: Duration,
        delay: impl Fn(u32, u32) -> Option<Duration>,
    ) -> Result<Vec<Option<u32>>, StoreError> {
        let db = self.login_connection();
        let backend = db.get_database_backend();
        let statements = reservations
            .iter()
            .map(|&(key, limit)| {
                reserve_login_attempt_statement(backend, key, limit, now, window, |n| {
                    delay(n, limit)
                })
            })
            .collect::<Vec<_>>();
        if let Some(txn) = self.begin_inline_write() {
            let mut counts = Vec::with_capacity(statements.len());
            for statement in &statements {
                let rows = txn.query(statement, |row| row.get::<_, i32>("failures"))?;
                counts.push(
                    rows.first()
                        .map(|&failures| u32::try_from(failures).unwrap_or(0)),
                );
            }
            txn.commit()?;
            return Ok(counts);
        }
        super::batch::query_each(db, statements)
            .await?
            .into_iter()
            .map(|rows| match rows.first() {
                None => Ok(None),
                Some(saved) => {
                    let failures: i32 = saved.try_get("", "failures")?;
                    Ok(Some(u32::try_from(failures).unwrap_or(0)))
                }
            })
            .collect()
    }

    /// As [`Store::reserve_login_attempts`], for one key.
    pub async fn reserve_login_attempt(
        &self,
        key: &str,
        limit: u32,
        now: DateTime<Utc>,
        window: Duration,
        delay: impl Fn(u32) -> Option<Duration>,
    ) -> Result<Option<u32>, StoreError> {
        let mut counts = self
            .reserve_login_attempts(&[(key, limit)], now, window, |n, _| delay(n))
            .await?;
        Ok(counts.pop().flatten())
    }

    /// Gives back one attempt reserved under `key` (it succeeded, or was never checked); a
    /// block stands only while the count is still at or over `limit`.
    pub async fn release_login_attempt(&self, key: &str, limit: u32) -> Result<(), StoreError> {
        release_login_attempt_on(self.login_connection(), key, limit).await
    }

    /// Until when `key` is blocked, if it is (or was).
    pub async fn login_blocked_until(
        &self,
        key: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(login_failure::Entity::find_by_id(key.to_owned())
            .one(self.connection())
            .await?
            .and_then(|row| row.blocked_until))
    }

    /// Forgets the failures under `key` (after a successful login).
    pub async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        clear_login_failures_on(self.connection(), key).await
    }

    /// Counts one successful login under `key`, atomically, unless `limit` were already
    /// counted in the current window (fixed windows of `window`, from the first). Returns the
    /// new count, or `None` when the limit is reached.
    pub async fn reserve_login_success(
        &self,
        key: &str,
        limit: u32,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<Option<u32>, StoreError> {
        reserve_login_success_on(self.connection(), key, limit, now, window).await
    }

    /// When the current window of successful logins under `key` started.
    pub async fn login_success_window(
        &self,
        key: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        login_success_window_on(self.connection(), key).await
    }

    /// Deletes the counts that no longer matter at `now`: failures whose last one and whose
    /// block ended more than `window` ago, fixed windows older than `success_window` (the
    /// longest of them), and addresses not seen for `address_memory`. Returns how
    /// many rows went.
    pub async fn purge_login_counts(
        &self,
        now: DateTime<Utc>,
        window: Duration,
        success_window: Duration,
        address_memory: Duration,
    ) -> Result<u64, StoreError> {
        use login_failure::Column;

        let forgotten = now - window;
        let failures = login_failure::Entity::delete_many()
            .filter(Column::LastFailureAt.lt(forgotten))
            .filter(
                Column::BlockedUntil
                    .is_null()
                    .or(Column::BlockedUntil.lt(forgotten)),
            )
            .exec(self.connection())
            .await?;
        let successes = login_success::Entity::delete_many()
            .filter(login_success::Column::WindowStartedAt.lte(now - success_window))
            .exec(self.connection())
            .await?;
        let addresses = login_address::Entity::delete_many()
            .filter(login_address::Column::LastSuccessAt.lt(now - address_memory))
            .exec(self.connection())
            .await?;
        Ok(failures.rows_affected + successes.rows_affected + addresses.rows_affected)
    }

    /// Every key the throttle holds, for tests: what is stored must not reveal names.
    #[doc(hidden)]
    pub async fn login_throttle_keys(&self) -> Result<Vec<String>, StoreError> {
        let failures = login_failure::Entity::find().all(self.connection()).await?;
        let successes = login_success::Entity::find().all(self.connection()).await?;
        Ok(failures
            .into_iter()
            .map(|row| row.key)
            .chain(successes.into_iter().map(|row| row.key))
            .collect())
    }
}

impl Store {
    /// Records that `address_key` logged in to the account `account_key` at `now`.
    pub async fn remember_login_address(
        &self,
        account_key: &str,
        address_key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        remember_login_address_on(self.connection(), account_key, address_key, now).await
    }

    /// Whether `address_key` logged in to the account `account_key` successfully since `since`.
    pub async fn is_known_login_address(
        &self,
        account_key: &str,
        address_key: &str,
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        use login_address::Column;

        Ok(login_address::Entity::find()
            .filter(Column::AccountKey.eq(account_key))
            .filter(Column::AddressKey.eq(address_key))
            .filter(Column::LastSuccessAt.gte(since))
            .one(self.connection())
            .await?
            .is_some())
    }

    /// Deletes every failure count and block of one account (`account_key` is its name's
    /// HMAC), from every address, and its count of successful logins; how many rows went. The
    /// audit `events`, made from that count, are inserted in the same transaction.
    pub async fn clear_account_login_counts(
        &self,
        account_key: &str,
        events: impl FnOnce(u64) -> Vec<super::AuditEvent>,
    ) -> Result<u64, StoreError> {
        use login_failure::Column;
        use sea_orm::TransactionTrait as _;

        let txn = self.connection().begin().await?;
        let failures = login_failure::Entity::delete_many()
            .filter(
                Column::Key
                    .eq(format!("account_all|{account_key}"))
                    .or(Column::Key.like(format!("account|%|{account_key}"))),
            )
            .exec(&txn)
            .await?;
        let successes = login_success::Entity::delete_many()
            .filter(login_success::Column::Key.eq(format!("success|{account_key}")))
            .exec(&txn)
            .await?;
        let cleared = failures.rows_affected + successes.rows_affected;
        super::audit_events::insert_audit_events_on(&txn, events(cleared)).await?;
        txn.commit().await?;
        Ok(cleared)
    }

    /// Forgets the addresses that logged in to the account `account_key` (it is deleted: a
    /// new account of the same name starts with none).
    pub async fn forget_login_addresses(&self, account_key: &str) -> Result<(), StoreError> {
        login_address::Entity::delete_many()
            .filter(login_address::Column::AccountKey.eq(account_key))
            .exec(self.connection())
            .await?;
        Ok(())
    }

    /// Gives back one place in a fixed-window count (see [`Store::reserve_login_success`]).
    pub async fn release_window_count(&self, key: &str) -> Result<(), StoreError> {
        use login_success::Column;

        login_success::Entity::update_many()
            .col_expr(Column::Successes, Expr::col(Column::Successes).sub(1))
            .filter(Column::Key.eq(key))
            .filter(Column::Successes.gt(0))
            .exec(self.connection())
            .await?;
        Ok(())
    }
}

/// Forgets the failures under `key` (after a successful login).
/// Forgets the failures under `clear` and gives back one attempt under each key of
/// `releases` (with its limit, as [`release_login_attempt_on`]), in one round trip: the
/// statements carry their values in their text (keys and counts only, which the query
/// builder quotes), since a text of several statements cannot be bound through SeaORM's
/// connection. In a transaction, they commit with it.
pub(super) async fn forget_attempt_on<C: ConnectionTrait>(
    db: &C,
    clear: &str,
    releases: &[(&str, u32)],
) -> Result<(), StoreError> {
    db.execute_unprepared(&forget_attempt_sql(
        db.get_database_backend(),
        clear,
        releases,
    ))
    .await?;
    Ok(())
}

/// As [`forget_attempt_on`], in a login's inline transaction.
pub(super) fn forget_attempt_inline(
    txn: &InlineTransaction,
    clear: &str,
    releases: &[(&str, u32)],
) -> Result<(), StoreError> {
    // Each statement prepared once and bound (not one text with its values, parsed each time).
    txn.execute(&clear_login_failures_query(clear).build(DbBackend::Sqlite))?;
    for &(key, limit) in releases {
        txn.execute(&DbBackend::Sqlite.build(&release_login_attempt_query(key, limit)))?;
    }
    Ok(())
}

/// The statements of [`forget_attempt_on`], with their values, in one text.
fn forget_attempt_sql(backend: DbBackend, clear: &str, releases: &[(&str, u32)]) -> String {
    fn render(backend: DbBackend, statement: &impl QueryStatementWriter) -> String {
        match backend {
            DbBackend::Postgres => statement.to_string(PostgresQueryBuilder),
            _ => statement.to_string(SqliteQueryBuilder),
        }
    }
    let mut sql = render(backend, &clear_login_failures_query(clear).into_query());
    for &(key, limit) in releases {
        sql.push_str(";\n");
        sql.push_str(&render(backend, &release_login_attempt_query(key, limit)));
    }
    sql
}

pub(super) async fn clear_login_failures_on<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<(), StoreError> {
    clear_login_failures_query(key).exec(db).await?;
    Ok(())
}

/// As [`clear_login_failures_on`], in a login's inline transaction.
pub(super) fn clear_login_failures_inline(
    txn: &InlineTransaction,
    key: &str,
) -> Result<(), StoreError> {
    txn.execute(&clear_login_failures_query(key).build(DbBackend::Sqlite))?;
    Ok(())
}

fn clear_login_failures_query(key: &str) -> sea_orm::DeleteMany<login_failure::Entity> {
    login_failure::Entity::delete_many().filter(login_failure::Column::Key.eq(key))
}

/// Counts one successful login under `key`, atomically, unless `limit` were already
/// counted in the current window (fixed windows of `window`, from the first). Returns the
/// new count, or `None` when the limit is reached.
pub(super) async fn reserve_login_success_on<C: ConnectionTrait>(
    db: &C,
    key: &str,
    limit: u32,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<Option<u32>, StoreError> {
    let Some(saved) = db
        .query_one(&reserve_login_success_query(key, limit, now, window))
        .await?
    else {
        return Ok(None);
    };
    let successes: i32 = saved.try_get("", "successes")?;
    Ok(Some(u32::try_from(successes).unwrap_or(0)))
}

/// As [`reserve_login_success_on`], in a login's inline transaction.
pub(super) fn reserve_login_success_inline(
    txn: &InlineTransaction,
    key: &str,
    limit: u32,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<Option<u32>, StoreError> {
    let statement = DbBackend::Sqlite.build(&reserve_login_success_query(key, limit, now, window));
    let rows = txn.query(&statement, |row| row.get::<_, i32>("successes"))?;
    Ok(rows
        .first()
        .map(|&successes| u32::try_from(successes).unwrap_or(0)))
}

/// The statement of [`reserve_login_success_on`]: returns the new count, or no row.
fn reserve_login_success_query(
    key: &str,
    limit: u32,
    now: DateTime<Utc>,
    window: Duration,
) -> sea_orm::sea_query::InsertStatement {
    use login_success::{Column, Entity};

    let col = |column: Column| Expr::col((Entity, column));
    let elapsed = col(Column::WindowStartedAt).lte(now - window);
    let next_count = CaseStatement::new()
        .case(elapsed.clone(), Expr::val(1))
        .finally(col(Column::Successes).add(1));
    let next_start = CaseStatement::new()
        .case(elapsed.clone(), Expr::val(now))
        .finally(col(Column::WindowStartedAt));
    let row = login_success::ActiveModel {
        key: Set(key.to_owned()),
        successes: Set(1),
        window_started_at: Set(now),
    };
    let mut insert = Entity::insert(row)
        .on_conflict(
            OnConflict::column(Column::Key)
                .value(Column::Successes, next_count)
                .value(Column::WindowStartedAt, next_start)
                .action_and_where(elapsed.or(col(Column::Successes).lt(i64::from(limit))))
                .to_owned(),
        )
        .into_query();
    insert.returning_col(Column::Successes);
    insert
}

/// When the current window of successful logins under `key` started.
pub(super) async fn login_success_window_on<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(login_success::Entity::find_by_id(key.to_owned())
        .one(db)
        .await?
        .map(|row| row.window_started_at))
}

/// As [`login_success_window_on`], in a login's inline transaction.
pub(super) fn login_success_window_inline(
    txn: &InlineTransaction,
    key: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let statement = login_success::Entity::find_by_id(key.to_owned()).build(DbBackend::Sqlite);
    let rows = txn.query(&statement, |row| {
        super::inline_writes::timestamp(row, "window_started_at")
    })?;
    Ok(rows.into_iter().next())
}

/// Records that `address_key` logged in to the account `account_key` at `now`.
pub(super) async fn remember_login_address_on<C: ConnectionTrait>(
    db: &C,
    account_key: &str,
    address_key: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    remember_login_address_query(account_key, address_key, now)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// As [`remember_login_address_on`], in a login's inline transaction.
pub(super) fn remember_login_address_inline(
    txn: &InlineTransaction,
    account_key: &str,
    address_key: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    txn.execute(
        &remember_login_address_query(account_key, address_key, now).build(DbBackend::Sqlite),
    )?;
    Ok(())
}

fn remember_login_address_query(
    account_key: &str,
    address_key: &str,
    now: DateTime<Utc>,
) -> sea_orm::Insert<login_address::ActiveModel> {
    use login_address::{Column, Entity};

    let row = login_address::ActiveModel {
        account_key: Set(account_key.to_owned()),
        address_key: Set(address_key.to_owned()),
        last_success_at: Set(now),
    };
    Entity::insert(row).on_conflict(
        OnConflict::columns([Column::AccountKey, Column::AddressKey])
            .update_column(Column::LastSuccessAt)
            .to_owned(),
    )
}

/// Gives back one attempt reserved under `key` (it succeeded, or was never checked); a
/// block stands only while the count is still at or over `limit`.
pub(super) async fn release_login_attempt_on<C: ConnectionTrait>(
    db: &C,
    key: &str,
    limit: u32,
) -> Result<(), StoreError> {
    db.execute(&release_login_attempt_query(key, limit)).await?;
    Ok(())
}

/// As [`release_login_attempt_on`], in a login's inline transaction.
pub(super) fn release_login_attempt_inline(
    txn: &InlineTransaction,
    key: &str,
    limit: u32,
) -> Result<(), StoreError> {
    txn.execute(&DbBackend::Sqlite.build(&release_login_attempt_query(key, limit)))?;
    Ok(())
}

/// The statement of [`release_login_attempt_on`].
fn release_login_attempt_query(key: &str, limit: u32) -> sea_orm::sea_query::UpdateStatement {
    use login_failure::Column;

    let failures = || Expr::col(Column::Failures);
    let count = CaseStatement::new()
        .case(failures().gt(0), failures().sub(1))
        .finally(Expr::val(0));
    let block = CaseStatement::new()
        .case(
            failures().sub(1).lt(i64::from(limit)),
            Expr::val(Option::<DateTime<Utc>>::None),
        )
        .finally(Expr::col(Column::BlockedUntil));
    login_failure::Entity::update_many()
        .col_expr(Column::Failures, count.into())
        .col_expr(Column::BlockedUntil, block.into())
        .filter(Column::Key.eq(key))
        .into_query()
}

/// The statement of [`reserve_login_attempt_query`], without building its expression tree:
/// building and rendering it (a CASE branch per doubling, a dozen timestamps) was measured as
/// over half of a login's instructions outside hashing (callgrind, 40 logins). Its SQL depends
/// only on the backend and on how many doublings there are, so it is rendered once per pair and
/// kept; the values are listed by [`reserve_login_attempt_values`] in the order the builder binds
/// them (a test holds the two together for many limits and delays on both backends).
fn reserve_login_attempt_statement(
    backend: DbBackend,
    key: &str,
    limit: u32,
    now: DateTime<Utc>,
    window: Duration,
    delay: impl Fn(u32) -> Option<Duration>,
) -> Statement {
    static RENDERED: Mutex<Vec<(DbBackend, usize, String)>> = Mutex::new(Vec::new());
    let doublings = doubling_counts(limit, &delay);
    let branches = doublings.clone().count();
    let values = reserve_login_attempt_values(key, limit, now, window, doublings, &delay);
    let mut rendered = RENDERED.lock().unwrap_or_else(PoisonError::into_inner);
    let sql = match rendered
        .iter()
        .find(|(b, n, _)| *b == backend && *n == branches)
    {
        Some((_, _, sql)) => sql.clone(),
        None => {
            let sql = backend
                .build(&reserve_login_attempt_query(key, limit, now, window, delay))
                .sql;
            rendered.push((backend, branches, sql.clone()));
            sql
        }
    };
    drop(rendered);
    Statement::from_sql_and_values(backend, sql, values)
}

/// The values of [`reserve_login_attempt_query`], in its order of placeholders.
fn reserve_login_attempt_values(
    key: &str,
    limit: u32,
    now: DateTime<Utc>,
    window: Duration,
    doublings: std::ops::RangeInclusive<u32>,
    delay: &impl Fn(u32) -> Option<Duration>,
) -> Vec<Value> {
    let forgotten = Value::from(now - window);
    let at = |count: u32| Value::from(delay(count).map(|delay| now + delay));
    let (one, limit, now) = (
        Value::from(1),
        Value::from(i64::from(limit)),
        Value::from(now),
    );
    let mut values = vec![
        // VALUES (key, failures, last_failure_at, blocked_until)
        Value::from(key),
        one.clone(),
        now.clone(),
        at(1),
        // failures = CASE WHEN stale THEN 1 ELSE failures + 1 END
        forgotten.clone(),
        forgotten.clone(),
        one.clone(),
        one.clone(),
        // last_failure_at = now
        now.clone(),
        // blocked_until = CASE WHEN stale THEN … WHEN failures + 1 < limit THEN NULL
        forgotten.clone(),
        forgotten.clone(),
        at(1),
        one.clone(),
        limit.clone(),
        Value::from(Option::<DateTime<Utc>>::None),
    ];
    // … WHEN failures + 1 = count THEN now + delay(count) … ELSE the ceiling END
    for count in doublings {
        values.extend([one.clone(), Value::from(i64::from(count)), at(count)]);
    }
    values.push(at(u32::MAX));
    // WHERE stale OR failures < limit OR blocked_until IS NULL OR blocked_until <= now
    values.extend([forgotten.clone(), forgotten, limit, now]);
    values
}

/// The counts of failures whose block gets a branch of its own in a reservation: from the
/// limit, one per doubling of the delay, up to the first that reaches the ceiling.
fn doubling_counts(
    limit: u32,
    delay: &impl Fn(u32) -> Option<Duration>,
) -> std::ops::RangeInclusive<u32> {
    let last = (limit..=limit.saturating_add(MAX_DOUBLINGS))
        .find(|&count| count == u32::MAX || delay(count) == delay(count + 1))
        .unwrap_or(limit.saturating_add(MAX_DOUBLINGS));
    limit..=last
}

/// The statement of one reservation (see [`Store::reserve_login_attempts`]): an upsert that
/// returns the new count, and no row when the key is blocked.
fn reserve_login_attempt_query(
    key: &str,
    limit: u32,
    now: DateTime<Utc>,
    window: Duration,
    delay: impl Fn(u32) -> Option<Duration>,
) -> sea_orm::sea_query::InsertStatement {
    use login_failure::{Column, Entity};

    let col = |column: Column| Expr::col((Entity, column));
    let forgotten = now - window;
    let stale = col(Column::LastFailureAt).lt(forgotten).and(
        col(Column::BlockedUntil)
            .is_null()
            .or(col(Column::BlockedUntil).lt(forgotten)),
    );
    let next_count = CaseStatement::new()
        .case(stale.clone(), Expr::val(1))
        .finally(col(Column::Failures).add(1));
    let block_at = |count: u32| delay(count).map(|delay| now + delay);
    let mut next_block = CaseStatement::new()
        .case(stale.clone(), Expr::val(block_at(1)))
        .case(
            col(Column::Failures).add(1).lt(i64::from(limit)),
            Expr::val(Option::<DateTime<Utc>>::None),
        );
    // One branch per doubling until the ceiling; the ceiling after that.
    for count in doubling_counts(limit, &delay) {
        next_block = next_block.case(
            col(Column::Failures).add(1).eq(i64::from(count)),
            Expr::val(block_at(count)),
        );
    }
    let next_block = next_block.finally(Expr::val(block_at(u32::MAX)));
    let admitted = stale
        .or(col(Column::Failures).lt(i64::from(limit)))
        .or(col(Column::BlockedUntil).is_null())
        .or(col(Column::BlockedUntil).lte(now));

    let row = login_failure::ActiveModel {
        key: Set(key.to_owned()),
        failures: Set(1),
        last_failure_at: Set(now),
        blocked_until: Set(block_at(1)),
    };
    let mut insert = Entity::insert(row)
        .on_conflict(
            OnConflict::column(Column::Key)
                .value(Column::Failures, next_count)
                .value(Column::LastFailureAt, now)
                .value(Column::BlockedUntil, next_block)
                .action_and_where(admitted)
                .to_owned(),
        )
        .into_query();
    insert.returning_col(Column::Failures);
    insert
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The throttle's delay: `base` at the limit, doubling with each failure, up to `ceiling`.
    fn doubling(limit: u32, base: i64, ceiling: i64) -> impl Fn(u32) -> Option<Duration> {
        move |count| {
            let excess = count.checked_sub(limit)?;
            let factor = 2i64.pow(Ord::min(excess, 30));
            Some(Duration::seconds(Ord::min(
                base.saturating_mul(factor),
                ceiling,
            )))
        }
    }

    #[test]
    fn a_reservation_kept_rendered_is_the_statement_the_builder_makes() {
        let now = Utc::now();
        let window = Duration::minutes(15);
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            for limit in [1, 2, 5, 10, 1_000_000, u32::MAX - 3, u32::MAX] {
                for (base, ceiling) in [(1, 900), (1, 1), (30, 86_400), (1, i64::from(i32::MAX))] {
                    let delay = doubling(limit, base, ceiling);
                    let built = backend.build(&reserve_login_attempt_query(
                        "account:johndoe",
                        limit,
                        now,
                        window,
                        &delay,
                    ));
                    // Twice: the first renders the SQL, the second finds it kept.
                    for _ in 0..2 {
                        let kept = reserve_login_attempt_statement(
                            backend,
                            "account:johndoe",
                            limit,
                            now,
                            window,
                            &delay,
                        );
                        assert_eq!(
                            (&kept.sql, &kept.values),
                            (&built.sql, &built.values),
                            "{backend:?}, limit {limit}, delay {base} s to {ceiling} s"
                        );
                    }
                }
            }
        }
    }
}
