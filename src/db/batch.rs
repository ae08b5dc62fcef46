//! Several statements in one round trip.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every statement is a hand-off
//! to that thread and back, plus one more when the connection returns to the pool: on a login,
//! measured, those hand-offs cost more CPU than the statements (context switches on two busy
//! cores). SQLite's driver runs a text of several statements in one hand-off, binding the
//! values in order, one statement's after another's; each statement still commits on its own.
//! On PostgreSQL the statements run one after the other.

use sea_orm::{
    ConnectionTrait as _, DbBackend, DbErr, QueryResult, RuntimeErr, Statement,
    sea_query::Values,
    sqlx::{self, Either, Executor as _},
};

use futures_util::StreamExt as _;

use super::{Connection, StoreError};

/// Runs `statements` in order, each committed by itself (none in a transaction), and returns
/// the rows of each. The first statement that fails ends the batch: the ones before it stay
/// committed.
pub(super) async fn query_each(
    db: &Connection,
    statements: Vec<Statement>,
) -> Result<Vec<Vec<QueryResult>>, StoreError> {
    if db.get_database_backend() != DbBackend::Sqlite || statements.len() < 2 {
        let mut rows = Vec::with_capacity(statements.len());
        for statement in statements {
            rows.push(db.query_all_raw(statement).await?);
        }
        return Ok(rows);
    }
    let count = statements.len();
    let mut sql = String::new();
    let mut values = Vec::new();
    for statement in statements {
        sql.push_str(&statement.sql);
        sql.push_str(";\n");
        if let Some(Values(bound)) = statement.values {
            values.extend(bound);
        }
    }
    let pool = db.pool().get_sqlite_connection_pool();
    let query = sqlx::query_with(
        sqlx::AssertSqlSafe(sql),
        sea_query_sqlx::SqlxValues(Values(values)),
    );
    let mut rows: Vec<Vec<QueryResult>> = Vec::with_capacity(count);
    let mut current = Vec::new();
    let mut results = pool.fetch_many(query);
    while let Some(item) = results.next().await {
        match item.map_err(|err| DbErr::Query(RuntimeErr::SqlxError(err.into())))? {
            Either::Left(_done) => rows.push(std::mem::take(&mut current)),
            Either::Right(row) => current.push(row.into()),
        }
    }
    if rows.len() != count {
        return Err(DbErr::Custom(format!(
            "a batch of {count} statements gave the results of {}",
            rows.len()
        ))
        .into());
    }
    Ok(rows)
}
