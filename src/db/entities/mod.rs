//! SeaORM entities: rows as stored. They never leave the `db` module's callers for the wire;
//! API objects are built from domain values.

pub mod api_key;
pub mod audit_event;
pub mod item;
pub mod login_address;
pub mod login_failure;
pub mod login_success;
pub mod refresh_token;
pub mod session;
pub mod signing_key;
pub mod user;
