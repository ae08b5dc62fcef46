//! The security audit log: who did what to which account, from where. Every event is a row of
//! the `audit_events` table, shared by every instance (`db::AuditEvent`).
//!
//! An event that records a change (an account created, a password set, sessions ended, a key
//! retired) is written in that change's own transaction: the store's change functions take a
//! closure that makes the events from the change's outcome. Events that record no change of
//! ours — logins, refreshes — go through [`AuditLog`], a bounded queue that one background task
//! writes in batches, so that a login never waits for the audit write; when the queue is full
//! an event is dropped and counted (`portcullis_audit_events_dropped_total`), logged once per
//! burst. The queue is flushed on graceful shutdown; a crash loses what it held (at most
//! [`QUEUE_CAPACITY`] events).
//!
//! Never recorded: a password, a token, a hash, or the name typed for an account that does
//! not exist (a failed login to no account has `user_id` null and no name anywhere).

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use metrics::Counter;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    auth::Client,
    db::{AuditEvent, Store},
    domain::AuditEventType,
};

/// Events the background writer holds before it drops new ones.
pub const QUEUE_CAPACITY: usize = 4096;
/// Events written in one statement at most.
const BATCH: usize = 256;
/// How long the writer waits, once an event has come, for more to write with it.
const GATHER: Duration = Duration::from_millis(20);
/// How long the writer waits before retrying a batch the database refused.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A logged-in user (an admin, or the account's owner).
    User(Uuid),
    /// An operator at the command line.
    Cli,
}

impl Actor {
    /// As stored and shown: the user's id, or `cli`.
    pub fn as_text(self) -> String {
        match self {
            Self::User(id) => id.to_string(),
            Self::Cli => "cli".to_owned(),
        }
    }
}

/// Where a change or login comes from: built once per request by the API (the client, the
/// request id, the caller once authenticated) and once by the command line.
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    /// `None` while the caller is not authenticated.
    pub actor: Option<Actor>,
    /// `None` at the command line.
    pub client: Option<Client>,
    /// The caller's session (or, for a login, the one it starts).
    pub session_id: Option<Uuid>,
}

impl AuditContext {
    /// The command line's own changes.
    pub fn cli() -> Self {
        Self {
            actor: Some(Actor::Cli),
            ..Self::default()
        }
    }

    /// A request from `client`, not authenticated (yet).
    pub fn of(client: Client) -> Self {
        Self {
            client: Some(client),
            ..Self::default()
        }
    }

    /// The same request, made by `user_id` in its session `session_id` (`None` for a request
    /// authenticated by an API key, which is no session).
    pub fn acting(mut self, user_id: Uuid, session_id: impl Into<Option<Uuid>>) -> Self {
        self.actor = Some(Actor::User(user_id));
        self.session_id = session_id.into();
        self
    }

    pub fn client_address(&self) -> Option<IpAddr> {
        self.client.as_ref().map(|client| client.address)
    }

    /// An event of `kind` about the account `user_id` (if any), in this context, now.
    /// `detail` is a JSON object (anything else is recorded as an empty one).
    pub fn event(&self, kind: AuditEventType, user_id: Option<Uuid>, detail: Value) -> AuditEvent {
        let detail = match detail {
            Value::Object(detail) => detail,
            _ => Map::new(),
        };
        AuditEvent {
            id: Uuid::now_v7(),
            occurred_at: crate::db::now(),
            kind,
            user_id,
            actor: self.actor.map(Actor::as_text),
            client_address: self.client.as_ref().map(|c| c.address.to_string()),
            user_agent: self.client.as_ref().and_then(|c| c.user_agent.clone()),
            session_id: self.session_id,
            request_id: self.client.as_ref().and_then(|c| c.request_id.clone()),
            detail,
        }
    }
}

/// The background writer's queue; cheap to clone. Events recorded here are written shortly
/// after, in batches (see the module's documentation).
#[derive(Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<AuditEvent>,
    /// Events dropped since the queue last accepted one: non-zero during a burst.
    dropped_in_burst: Arc<AtomicU64>,
    dropped: Counter,
}

/// The task that writes the queue; [`AuditWriter::stop`] flushes it.
pub struct AuditWriter {
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl AuditLog {
    /// Starts the writer on `store`, counting in `metrics` the events it could not keep (and
    /// the database errors it meets).
    pub fn start(store: Store, metrics: &crate::metrics::Metrics) -> (Self, AuditWriter) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let stop = CancellationToken::new();
        let dropped = metrics.audit_dropped();
        let log = Self {
            sender,
            dropped_in_burst: Arc::new(AtomicU64::new(0)),
            dropped: dropped.clone(),
        };
        let task = tokio::spawn(metrics.clone().scope(write_queue(
            store,
            receiver,
            stop.clone(),
            dropped,
        )));
        (log, AuditWriter { task, stop })
    }

    /// Queues `event`; drops (and counts) it when the queue is full or the writer stopped.
    pub fn record(&self, event: AuditEvent) {
        match self.sender.try_send(event) {
            Ok(()) => {
                if self.dropped_in_burst.load(Ordering::Relaxed) > 0 {
                    let dropped = self.dropped_in_burst.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        tracing::warn!(
                            dropped,
                            "the audit log writer caught up after dropping events"
                        );
                    }
                }
            }
            Err(err) => {
                self.dropped.increment(1);
                if self.dropped_in_burst.fetch_add(1, Ordering::Relaxed) == 0 {
                    let kind = match err {
                        mpsc::error::TrySendError::Full(_) => "its queue is full",
                        mpsc::error::TrySendError::Closed(_) => "it has stopped",
                    };
                    tracing::warn!(
                        "the audit log writer is dropping events: {kind} (counted in \
                         portcullis_audit_events_dropped_total)"
                    );
                }
            }
        }
    }
}

impl AuditWriter {
    /// Writes what the queue still holds, then stops.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(err) = self.task.await {
            tracing::warn!(error = %err, "the audit log writer failed");
        }
    }
}

/// Writes queued events in batches until stopped, then writes what is left.
async fn write_queue(
    store: Store,
    mut receiver: mpsc::Receiver<AuditEvent>,
    stop: CancellationToken,
    dropped: Counter,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            received = receiver.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
                // A moment for the events of concurrent logins to join this batch: each write
                // is a round trip to a connection's thread, which costs a busy server more
                // than the rows (one per login became one per three at ~140 logins/s).
                if batch.len() < BATCH {
                    tokio::select! {
                        () = tokio::time::sleep(GATHER) => {}
                        () = stop.cancelled() => {}
                    }
                    while batch.len() < BATCH {
                        match receiver.try_recv() {
                            Ok(event) => batch.push(event),
                            Err(_) => break,
                        }
                    }
                }
                let events = std::mem::take(&mut batch);
                if let Err(err) = store.insert_audit_events(events.clone()).await {
                    tracing::warn!(error = %err, count = events.len(), "could not write audit events: retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                        () = stop.cancelled() => {}
                    }
                    write_or_count(&store, events, &dropped).await;
                }
            }
            () = stop.cancelled() => break,
        }
    }
    // Shutting down: one attempt per batch, and none after a refusal (an unreachable database
    // must not hold the shutdown for a connection timeout per batch).
    receiver.close();
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let events = std::mem::take(&mut batch);
        if !write_or_count(&store, events, &dropped).await {
            let mut left = 0;
            while let Ok(_event) = receiver.try_recv() {
                left += 1;
            }
            dropped.increment(left);
            if left > 0 {
                tracing::error!(
                    count = left,
                    "audit events lost at shutdown: the database is unavailable"
                );
            }
            return;
        }
    }
}

/// Writes `events`; when the database refuses them, drops and counts them (`false`).
async fn write_or_count(store: &Store, events: Vec<AuditEvent>, dropped: &Counter) -> bool {
    let count = events.len();
    match store.insert_audit_events(events).await {
        Ok(()) => true,
        Err(err) => {
            dropped.increment(count as u64);
            tracing::error!(error = %err, count, "audit events lost: the database refused them");
            false
        }
    }
}

/// One page of the audit log, newest first.
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Where the next page starts, while more follow.
    pub next: Option<crate::db::AuditCursor>,
}

/// The events matching `filter`, older than `after`, newest first: what `GET
/// /admin/audit-events` and `portcullis audit` show.
pub async fn events_page(
    store: &Store,
    filter: &crate::db::AuditFilter,
    after: Option<&crate::db::AuditCursor>,
    limit: u32,
) -> Result<AuditPage, crate::db::StoreError> {
    let (events, next) = store.audit_events_page(filter, after, limit).await?;
    Ok(AuditPage { events, next })
}

/// An event as JSON, with the members `GET /admin/audit-events` gives it (what `portcullis
/// audit --json` prints, one event per line).
pub fn event_json(event: &AuditEvent) -> Value {
    serde_json::json!({
        "id": event.id,
        // As the API's JSON has it (`…+00:00`).
        "occurred_at": event.occurred_at.to_rfc3339(),
        "type": event.kind.as_str(),
        "user_id": event.user_id,
        "actor": event.actor,
        "client_address": event.client_address,
        "user_agent": event.user_agent,
        "session_id": event.session_id,
        "request_id": event.request_id,
        "detail": event.detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditContext::cli().event(AuditEventType::KeyRotated, None, serde_json::json!({}))
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_events_until_it_has_room_again() {
        let metrics = crate::metrics::Metrics::new::<&str>(&[]);
        let (sender, mut receiver) = mpsc::channel(2);
        let log = AuditLog {
            sender,
            dropped_in_burst: Arc::new(AtomicU64::new(0)),
            dropped: metrics.audit_dropped(),
        };

        for _ in 0..5 {
            log.record(event());
        }

        assert_eq!(log.dropped_in_burst.load(Ordering::Relaxed), 3);
        assert!(
            metrics
                .render()
                .contains("\nportcullis_audit_events_dropped_total 3\n"),
            "{}",
            metrics.render()
        );
        // Room again: the next event is queued, and the burst is over.
        receiver.recv().await.unwrap();
        log.record(event());
        assert_eq!(log.dropped_in_burst.load(Ordering::Relaxed), 0);
        let mut queued = Vec::new();
        receiver.recv_many(&mut queued, 10).await;
        assert_eq!(queued.len(), 2);
    }

    #[test]
    fn an_event_takes_its_context_and_never_a_detail_that_is_not_an_object() {
        let client = Client {
            address: "192.0.2.7".parse().unwrap(),
            user_agent: Some("agent".into()),
            request_id: Some("req-1".into()),
        };
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let context = AuditContext::of(client).acting(user, session);

        let event = context.event(AuditEventType::LoginSucceeded, Some(user), Value::Null);

        assert_eq!(event.actor, Some(user.to_string()));
        assert_eq!(event.client_address.as_deref(), Some("192.0.2.7"));
        assert_eq!(event.user_agent.as_deref(), Some("agent"));
        assert_eq!(event.request_id.as_deref(), Some("req-1"));
        assert_eq!(event.session_id, Some(session));
        assert!(event.detail.is_empty());
        assert_eq!(
            AuditContext::cli()
                .event(AuditEventType::KeyRetired, None, Value::Null)
                .actor
                .as_deref(),
            Some("cli")
        );
    }
}
