//! SeaORM entities: rows as stored. They never leave the `db` module's callers for the wire;
//! API objects are built from domain values.

pub mod item;
pub mod login_failure;
pub mod user;
