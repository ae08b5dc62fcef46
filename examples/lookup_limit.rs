//! The database ceiling for a protected request: how many times per second this machine can run
//! the per-request check of an access token (`Store::find_session_and_user`: one SeaORM query
//! joining the session and its user) against the default SQLite database, with no HTTP at all —
//! on a two-worker tokio runtime, `TASKS` lookups in flight at once, as under `wrk -c64`.
//!
//! Prints lookups per second on standard output. Compare with `GET /health` req/s: a protected
//! request can be no faster than this.
//!
//! `DATABASE_URL`, when set, names the database (PostgreSQL for the benchmark's second column).
//!
//! ```sh
//! cargo run --release --example lookup_limit -- [TASKS] [SECONDS] [QUERY]   # defaults: 64, 5, session
//! ```
//!
//! `QUERY` `user` runs the user lookup alone (`Store::find_user_by_id`, what the check was
//! before sessions), for comparison.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use portcullis::{
    config::DatabaseSettings,
    db::{NewSession, NewUser, Store},
    domain::{HashedPassword, ScopeSet, Username},
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(5), |a| a.parse())?;
    let user_only = match args.next().as_deref() {
        None | Some("session") => false,
        Some("user") => true,
        Some(other) => anyhow::bail!("QUERY is session or user, not {other:?}"),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(tasks, Duration::from_secs(seconds), user_only))
}

async fn run(tasks: usize, duration: Duration, user_only: bool) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("portcullis-lookup-{}", uuid::Uuid::new_v4()));
    // `DATABASE_URL` (a PostgreSQL database, for the benchmark's second column), else a fresh
    // SQLite file.
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()));
    let settings = DatabaseSettings {
        url,
        max_connections: None,
    };
    let store = Store::connect(&settings).await?;
    store.migrate().await?;
    let user = store
        .create_user(
            NewUser {
                // Unique: a PostgreSQL database may be used for more than one run.
                username: Username::parse(&format!(
                    "lookup-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..12]
                ))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
                email: None,
                full_name: None,
                hashed_password: HashedPassword::from_phc("not a hash: never verified here"),
                disabled: false,
                scopes: ScopeSet::default_for_new_users(),
            },
            // A measurement's fixture, not an account anyone made: nothing to audit.
            |_| Vec::new(),
        )
        .await?;
    let session = store
        .start_session(NewSession {
            id: uuid::Uuid::now_v7(),
            user_id: user.id,
            scopes: ScopeSet::default_for_new_users(),
            user_agent: None,
            client_address: "127.0.0.1".into(),
            lifetime: chrono::Duration::days(1),
        })
        .await?;

    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let found = if user_only {
                        store.find_user_by_id(user.id).await.map(|u| u.is_some())
                    } else {
                        store
                            .find_session_and_user(session.id, user.id, None)
                            .await
                            .map(|found| found.is_some())
                    };
                    assert!(found.expect("the lookup succeeds"));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    for worker in workers {
        worker.await?;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("{rate:.0}");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
