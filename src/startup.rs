//! Building and running the service: an [`Application`] binds its listener in `build`, so
//! tests can ask for port 0 and read the port back.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use poem::EndpointExt as _;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;

use crate::{
    accounts::Accounts,
    api::{self, AppState},
    audit::{AuditLog, AuditWriter},
    auth::{AccessTokens, Grants, LoginThrottle, PasswordHasher, RefreshTokens, SigningKeys},
    config::{ConnectionSettings, Settings},
    db::Store,
    metrics::Metrics,
    server,
};

/// How long in-flight requests may take to finish after a shutdown signal.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(10);
/// How often ended sessions are deleted.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);
/// How long an ended session (with its refresh tokens) is kept: presenting one of its tokens
/// is refused either way; kept a day, the session is there to be looked at after an incident.
const ENDED_SESSION_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(1);

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    max_body_bytes: usize,
    connections: ConnectionSettings,
    max_connections: usize,
    /// The metrics listener, when `PORTCULLIS_METRICS_BIND` is set.
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    /// Writes the login and refresh audit events; flushed when the server stops.
    audit_writer: AuditWriter,
    audit_retention: chrono::TimeDelta,
}

/// Connections the metrics listener holds at once: scrapers, not clients.
const MAX_METRICS_CONNECTIONS: usize = 16;

impl Application {
    /// Connects to the database, applies pending migrations, starts the hashing pool and binds
    /// the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let store = Store::connect(&settings.database).await?;
        store.migrate().await?;
        Self::build_with_store(settings, store).await
    }

    /// As [`Application::build`], on an already connected and migrated store.
    pub async fn build_with_store(settings: &Settings, store: Store) -> anyhow::Result<Self> {
        let metrics = Metrics::new(&api::route_templates());
        let hasher =
            PasswordHasher::start_with_metrics(settings.hashing, metrics.hashing()).await?;
        let keys = SigningKeys::start(store.clone(), &settings.tokens).await?;
        let tokens = Arc::new(AccessTokens::new(&settings.tokens, keys));
        let secret = settings.tokens.secret.expose_secret();
        let throttle = LoginThrottle::new(settings.throttle, secret);
        let (audit, audit_writer) = AuditLog::start(store.clone(), &metrics);
        let accounts = Accounts::new(
            store.clone(),
            hasher.clone(),
            throttle.clone(),
            settings.accounts,
        );
        let grants = Grants::new(
            store.clone(),
            hasher,
            tokens.clone(),
            RefreshTokens::new(secret),
            throttle,
            settings.sessions,
            audit,
        )
        .with_metrics(metrics.grants());
        let state = AppState {
            store,
            tokens,
            grants,
            accounts,
            public_url: settings.public_url.clone(),
            client_ip_header: settings.client_ip_header.clone(),
            cors_allowed_origins: settings.cors_allowed_origins.clone(),
            max_items_per_user: settings.max_items_per_user,
            metrics,
        };
        let max_connections =
            server::connection_cap(&settings.connections, settings.database.pool_size())?;
        let listener = TcpListener::bind(settings.bind)
            .await
            .with_context(|| format!("cannot listen on {}", settings.bind))?;
        let local_addr = listener
            .local_addr()
            .context("the listener has no socket address")?;
        let metrics_listener = match settings.metrics_bind {
            None => None,
            Some(bind) => {
                let listener = TcpListener::bind(bind).await.with_context(|| {
                    format!("cannot listen on {bind} (PORTCULLIS_METRICS_BIND)")
                })?;
                let addr = listener
                    .local_addr()
                    .context("the metrics listener has no socket address")?;
                Some((listener, addr))
            }
        };
        Ok(Self {
            listener,
            local_addr,
            metrics_listener,
            audit_writer,
            audit_retention: chrono::TimeDelta::days(i64::from(settings.audit_retention_days)),
            state,
            max_body_bytes: settings.max_body_bytes,
            connections: settings.connections,
            max_connections,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `GET /metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The account rules, as the API applies them.
    pub fn accounts(&self) -> &Accounts {
        &self.state.accounts
    }

    pub fn hasher(&self) -> &PasswordHasher {
        self.state.grants.hasher()
    }

    /// Serves until the process gets Ctrl-C or SIGTERM, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let metrics = self.state.metrics.clone();
        let housekeeping = tokio::spawn(metrics.clone().scope(delete_ended_sessions(
            self.state.store.clone(),
            self.audit_retention,
        )));
        let _stop_purge = AbortOnDrop(tokio::spawn(metrics.clone().scope(purge_login_counts(
            self.state.grants.throttle().clone(),
            self.state.store.clone(),
        ))));
        let _stop_upkeep = AbortOnDrop(tokio::spawn(metrics.clone().upkeep()));
        let stop_metrics = tokio_util::sync::CancellationToken::new();
        let metrics_server = self.metrics_listener.map(|(listener, addr)| {
            tracing::info!(%addr, "serving metrics at /metrics");
            tokio::spawn(server::serve(
                listener,
                crate::metrics::endpoint(metrics).boxed(),
                self.connections,
                MAX_METRICS_CONNECTIONS,
                stop_metrics.clone().cancelled_owned(),
                GRACEFUL_SHUTDOWN,
            ))
        });
        let routes = api::routes(self.state, self.max_body_bytes);
        let _stop_housekeeping = AbortOnDrop(housekeeping);
        server::serve(
            self.listener,
            routes.boxed(),
            self.connections,
            self.max_connections,
            shutdown_signal(),
            GRACEFUL_SHUTDOWN,
        )
        .await;
        stop_metrics.cancel();
        if let Some(metrics_server) = metrics_server {
            let _ = metrics_server.await;
        }
        // Every request has finished: what they queued for the audit log is written now.
        self.audit_writer.stop().await;
        Ok(())
    }
}

/// Deletes sessions that ended more than [`ENDED_SESSION_RETENTION`] ago, and audit events
/// older than `audit_retention` (`PORTCULLIS_AUDIT_RETENTION_DAYS`), at start and then every
/// [`HOUSEKEEPING_INTERVAL`]. Every instance does it; the deletes are idempotent.
async fn delete_ended_sessions(store: Store, audit_retention: chrono::TimeDelta) {
    let mut interval = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match store
            .delete_ended_sessions(chrono::Utc::now() - ENDED_SESSION_RETENTION)
            .await
        {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "deleted ended sessions"),
            Err(err) => tracing::warn!(error = %err, "could not delete ended sessions"),
        }
        match store
            .delete_audit_events_before(chrono::Utc::now() - audit_retention)
            .await
        {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "deleted audit events past their retention"),
            Err(err) => tracing::warn!(error = %err, "could not delete old audit events"),
        }
    }
}

/// Deletes the login throttle's counts whose window (and block) has passed, at start and then
/// every [`HOUSEKEEPING_INTERVAL`]: they would only grow, and are needed no longer.
async fn purge_login_counts(throttle: LoginThrottle, store: Store) {
    let mut interval = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match throttle.purge(&store).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "deleted expired login-throttle counts"),
            Err(err) => {
                tracing::warn!(error = %err, "could not delete expired login-throttle counts")
            }
        }
    }
}

/// Stops a background task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves at Ctrl-C or SIGTERM. The SIGTERM handler is installed when this is called, not
/// when the future is first polled: the accept loop may serve a first request before it polls
/// the signal, and a SIGTERM sent after that answer must still stop the server gracefully
/// (flushing the audit log's queue) rather than kill it with the default action.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async {
            match terminate {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = terminate => {},
        }
        tracing::info!("shutting down");
    }
}
