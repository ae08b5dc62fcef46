//! Schema migrations for portcullis, shared by SQLite and PostgreSQL.
//!
//! The service applies pending migrations when it starts (`portcullis serve`) and on
//! `portcullis migrate`; this crate also runs standalone, as SeaORM users expect:
//! `cargo run -p migration -- up|down|status` (reads `DATABASE_URL`).

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_users;
mod m20261125_000002_create_items;
mod m20261125_000003_create_login_failures;
mod m20261126_000004_create_sessions;
mod m20261126_000005_create_signing_keys;
mod m20261201_000001_hash_login_throttle_keys;
mod m20261201_000002_authenticate_signing_keys;
mod m20261201_000003_username_skeletons;
mod m20261201_000004_refresh_generations;
mod m20261201_000006_index_items_by_owner_and_id;
mod m20261202_000001_accounts;
mod m20261202_000002_audit_events;
mod m20261203_000001_api_keys;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_users::Migration),
            Box::new(m20261125_000002_create_items::Migration),
            Box::new(m20261125_000003_create_login_failures::Migration),
            Box::new(m20261126_000004_create_sessions::Migration),
            Box::new(m20261126_000005_create_signing_keys::Migration),
            Box::new(m20261201_000001_hash_login_throttle_keys::Migration),
            Box::new(m20261201_000002_authenticate_signing_keys::Migration),
            Box::new(m20261201_000003_username_skeletons::Migration),
            Box::new(m20261201_000004_refresh_generations::Migration),
            Box::new(m20261201_000006_index_items_by_owner_and_id::Migration),
            Box::new(m20261202_000001_accounts::Migration),
            Box::new(m20261202_000002_audit_events::Migration),
            Box::new(m20261203_000001_api_keys::Migration),
        ]
    }
}
