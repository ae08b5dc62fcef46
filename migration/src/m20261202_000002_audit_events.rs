use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The security audit log, shared by every instance. No foreign keys: an event outlives
        // the account, session or key it is about (a deleted account's events stay until the
        // retention deletes them).
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(uuid(AuditEvents::Id).primary_key())
                    .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                    .col(string_len(AuditEvents::EventType, 40))
                    .col(uuid_null(AuditEvents::UserId))
                    .col(string_len_null(AuditEvents::Actor, 40))
                    .col(string_len_null(AuditEvents::ClientAddress, 64))
                    .col(string_len_null(AuditEvents::UserAgent, 256))
                    .col(uuid_null(AuditEvents::SessionId))
                    .col(string_len_null(AuditEvents::RequestId, 128))
                    // A JSON object, as text on both backends.
                    .col(text(AuditEvents::Detail))
                    .to_owned(),
            )
            .await?;
        // The reading operation's filters, each newest first: none, by account, by type.
        for (name, columns) in [
            (
                "idx_audit_events_occurred_at",
                &[AuditEvents::OccurredAt][..],
            ),
            (
                "idx_audit_events_user_occurred_at",
                &[AuditEvents::UserId, AuditEvents::OccurredAt][..],
            ),
            (
                "idx_audit_events_type_occurred_at",
                &[AuditEvents::EventType, AuditEvents::OccurredAt][..],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(AuditEvents::Table).if_not_exists();
            for column in columns {
                index.col(column.clone());
            }
            manager.create_index(index.to_owned()).await?;
        }
        // Append-only: a row, once written, is never changed (the retention deletes whole rows).
        let append_only = match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                r#"CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$
                   BEGIN
                       RAISE EXCEPTION 'audit events are append-only';
                   END;
                   $$ LANGUAGE plpgsql;
                   DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events;
                   CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
                       FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"#
            }
            _ => {
                r#"CREATE TRIGGER IF NOT EXISTS audit_events_append_only
                       BEFORE UPDATE ON audit_events
                   BEGIN
                       SELECT RAISE(ABORT, 'audit events are append-only');
                   END"#
            }
        };
        manager
            .get_connection()
            .execute_unprepared(append_only)
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS audit_events_append_only()")
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    EventType,
    UserId,
    Actor,
    ClientAddress,
    UserAgent,
    SessionId,
    RequestId,
    Detail,
}
