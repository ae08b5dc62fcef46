//! Database faults under load, against the real binary.
//!
//! - SQLite: the server killed with SIGKILL in the middle of a login flood, then started again on
//!   the same file: the file is intact and every login answered 200 kept its session.
//! - PostgreSQL: the cluster stopped for ten seconds under load and started again, two instances
//!   sharing the database: no 500, no request hanging, 503s at once while it is down, 200s again
//!   soon after, every login answered 200 stored. It stops the cluster every other PostgreSQL test
//!   uses, so CI runs it alone, after them: `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
//!   cargo test --test faults -- --ignored` (as root, for `pg_ctlcluster`; by hand under
//!   `flock -x /tmp/pg.lock`).

mod common;

use std::{
    collections::HashSet,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine as _;
use common::{ServerProcess, Workspace, fresh_postgres_database};
use sea_orm::{ConnectionTrait as _, Database, DbBackend, Statement};

const SHARED_SECRET: &str = "a-secret-shared-by-every-instance-0123456789";
const PASSWORD: &str = "fault-test-password";
/// Clients on `/users/me` and on `/token`: a bounded load, on loopback only.
const READERS: usize = 12;
const LOGGERS: usize = 4;
/// A reader's pause between two requests. Unpaced, twelve readers take every cycle of two cores
/// from the low-priority password hashing, and logins wait seconds whatever the database does.
const READER_PAUSE: Duration = Duration::from_millis(10);

/// What the load asked and what it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Me,
    Login,
}

#[derive(Debug)]
struct Outcome {
    kind: Kind,
    instance: usize,
    /// When it was sent and answered, from the start of the load.
    sent: Duration,
    answered: Duration,
    /// 0 when no answer came (connection refused or reset).
    status: u16,
    retry_after: Option<String>,
    body: String,
    /// The session of a login answered 200 (its access token's `sid`).
    session: Option<uuid::Uuid>,
}

impl Outcome {
    fn took(&self) -> Duration {
        self.answered - self.sent
    }
}

/// The `sid` claim of an access token (its signature is the server's business).
fn session_of(access_token: &str) -> uuid::Uuid {
    let payload = access_token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().parse().unwrap()
}

/// The environment both tests give their servers and CLI runs.
fn configure(command: &mut Command, database_url: Option<&str>) {
    command
        .env("PORTCULLIS_JWT_SECRET", SHARED_SECRET)
        // Many logins to one account in a minute are the load here, not an attack.
        .env(
            "PORTCULLIS_LOGIN_MAX_SUCCESSES_PER_ACCOUNT_PER_MINUTE",
            "1000000",
        );
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
}

fn create_user(ws: &Workspace, database_url: Option<&str>, username: &str) {
    use std::io::Write as _;

    let mut command = ws.command();
    configure(&mut command, database_url);
    let mut child = command
        .args([
            "users",
            "create",
            username,
            "--password-stdin",
            "--allow-weak-password",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn login(client: &reqwest::Client, base: &str, username: &str) -> reqwest::Response {
    client
        .post(format!("{base}/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([("username", username), ("password", PASSWORD)]).unwrap(),
        )
        .send()
        .await
        .unwrap()
}

async fn access_token(client: &reqwest::Client, base: &str, username: &str) -> String {
    let response = login(client, base, username).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// `READERS` clients on `/users/me` and `LOGGERS` on `/token`, spread over `bases`, until `stop`.
/// A request that gets no answer within 10 s counts as answered then, with status 0: the
/// assertions see it as a hang.
async fn load(
    bases: Vec<String>,
    tokens: Vec<String>,
    usernames: Vec<String>,
    started: Instant,
    stop: Arc<AtomicBool>,
    logins: Arc<AtomicUsize>,
) -> Vec<Outcome> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut clients = Vec::new();
    for index in 0..READERS + LOGGERS {
        let kind = if index < READERS {
            Kind::Me
        } else {
            Kind::Login
        };
        let instance = index % bases.len();
        let (base, token) = (bases[instance].clone(), tokens[instance].clone());
        let username = usernames[index % usernames.len()].clone();
        let (client, stop, logins) = (client.clone(), stop.clone(), logins.clone());
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = started.elapsed();
                let request = match kind {
                    Kind::Me => {
                        client
                            .get(format!("{base}/users/me"))
                            .bearer_auth(&token)
                            .send()
                            .await
                    }
                    Kind::Login => {
                        client
                            .post(format!("{base}/token"))
                            .header("Content-Type", "application/x-www-form-urlencoded")
                            .body(
                                serde_urlencoded::to_string([
                                    ("username", username.as_str()),
                                    ("password", PASSWORD),
                                ])
                                .unwrap(),
                            )
                            .send()
                            .await
                    }
                };
                let mut outcome = Outcome {
                    kind,
                    instance,
                    sent,
                    answered: sent,
                    status: 0,
                    retry_after: None,
                    body: String::new(),
                    session: None,
                };
                match request {
                    Ok(response) => {
                        outcome.status = response.status().as_u16();
                        outcome.retry_after = response
                            .headers()
                            .get("retry-after")
                            .map(|value| value.to_str().unwrap().to_owned());
                        outcome.body = response.text().await.unwrap_or_default();
                        if kind == Kind::Login && outcome.status == 200 {
                            let body: serde_json::Value =
                                serde_json::from_str(&outcome.body).unwrap();
                            outcome.session =
                                Some(session_of(body["access_token"].as_str().unwrap()));
                            logins.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(err) if err.is_timeout() => {}
                    Err(_) => {
                        // No answer at all: the server is gone (the SQLite test kills it).
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                outcome.answered = started.elapsed();
                outcomes.push(outcome);
                if kind == Kind::Me {
                    tokio::time::sleep(READER_PAUSE).await;
                }
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }
    outcomes.sort_by_key(|outcome| outcome.sent);
    outcomes
}

/// The sessions stored in the database at `url`.
async fn stored_sessions(url: &str) -> HashSet<uuid::Uuid> {
    let db = Database::connect(url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id FROM sessions",
        ))
        .await
        .unwrap();
    let sessions = rows
        .iter()
        .map(|row| row.try_get::<uuid::Uuid>("", "id").unwrap())
        .collect();
    db.close().await.unwrap();
    sessions
}

fn assert_every_login_kept_its_session(outcomes: &[Outcome], stored: &HashSet<uuid::Uuid>) {
    let answered: Vec<uuid::Uuid> = outcomes.iter().filter_map(|o| o.session).collect();
    let missing: Vec<&uuid::Uuid> = answered.iter().filter(|s| !stored.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} logins answered 200 have no session: {missing:?}",
        missing.len(),
        answered.len()
    );
}

fn summary(outcomes: &[Outcome]) -> String {
    let mut counts = std::collections::BTreeMap::<(String, u16), usize>::new();
    for outcome in outcomes {
        *counts
            .entry((format!("{:?}", outcome.kind), outcome.status))
            .or_default() += 1;
    }
    let mut slowest: Vec<&Outcome> = outcomes.iter().collect();
    slowest.sort_by_key(|outcome| std::cmp::Reverse(outcome.took()));
    slowest.truncate(3);
    let slowest: Vec<String> = slowest
        .iter()
        .map(|o| {
            format!(
                "{:?} {} sent {:?} took {:?}",
                o.kind,
                o.status,
                o.sent,
                o.took()
            )
        })
        .collect();
    format!("{counts:?}; slowest: {slowest:?}")
}

#[tokio::test]
async fn a_server_killed_during_a_login_flood_keeps_its_database_and_every_session_it_answered() {
    let ws = Workspace::new();
    let usernames: Vec<String> = (0..LOGGERS).map(|i| format!("flood{i}")).collect();
    for username in &usernames {
        create_user(&ws, None, username);
    }
    let serve = || {
        let mut command = ws.command();
        configure(&mut command, None);
        command.args(["serve", "--bind", "127.0.0.1:0"]);
        command
    };
    let server = ServerProcess::start(serve());
    let base = server.base_url.clone();
    let client = reqwest::Client::new();
    let token = access_token(&client, &base, &usernames[0]).await;

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicUsize::new(0));
    let flood = tokio::spawn(load(
        vec![base.clone()],
        vec![token],
        usernames.clone(),
        started,
        stop.clone(),
        logins.clone(),
    ));
    // Well into the flood (however slow the machine), then killed in the middle of requests.
    while logins.load(Ordering::Relaxed) < 40 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut server = server;
    // Taken before the signal: requests cut by it may fail before `kill` returns.
    let killed = started.elapsed();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = flood.await.unwrap();

    println!("killed at {killed:?}: {}", summary(&outcomes));
    let logins = outcomes.iter().filter(|o| o.session.is_some()).count();
    assert!(
        logins >= 40,
        "too few logins before the kill: {}",
        summary(&outcomes)
    );
    for outcome in &outcomes {
        assert!(
            outcome.status == 200 || (outcome.status == 0 && outcome.answered >= killed),
            "{outcome:?}"
        );
    }
    assert!(
        outcomes
            .iter()
            .any(|o| o.kind == Kind::Login && o.status == 0 && o.sent < killed),
        "the kill found no login in flight: {}",
        summary(&outcomes)
    );

    // It starts again on the file it left, and serves.
    let restarted = ServerProcess::start(serve());
    let ready = client
        .get(format!("{}/ready", restarted.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    access_token(&client, &restarted.base_url, &usernames[1]).await;

    let file = ws.path().join("data").join("portcullis.db");
    let url = format!("sqlite://{}", file.display());
    let db = Database::connect(&url).await.unwrap();
    let integrity = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA integrity_check",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "integrity_check")
        .unwrap();
    assert_eq!(integrity, "ok");
    db.close().await.unwrap();
    assert_every_login_kept_its_session(&outcomes, &stored_sessions(&url).await);
    assert!(restarted.terminate());
}

/// The local PostgreSQL cluster, stopped; started again when dropped, however the test ends.
struct StoppedCluster {
    version: String,
    running: bool,
}

impl StoppedCluster {
    fn stop() -> Self {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("a Debian PostgreSQL cluster (/etc/postgresql) to stop and start")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .min()
            .expect("a PostgreSQL version under /etc/postgresql");
        let mut cluster = Self {
            version,
            running: true,
        };
        // A checkpoint first, so that the shutdown's own is short and the outage starts when
        // the test says (best effort: the stop below works without it).
        if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
            let _ = Command::new("psql")
                .args([url.as_str(), "-qc", "CHECKPOINT"])
                .stdin(Stdio::null())
                .output();
        }
        cluster.control("stop");
        cluster.running = false;
        cluster
    }

    fn start(&mut self) {
        self.control("start");
        self.running = true;
    }

    fn control(&self, action: &str) {
        let output = cluster_command(&self.version, action)
            .output()
            .expect("pg_ctlcluster runs (as root)");
        assert!(
            output.status.success(),
            "pg_ctlcluster {action}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for StoppedCluster {
    fn drop(&mut self) {
        if !self.running {
            let _ = cluster_command(&self.version, "start").status();
        }
    }
}

/// `pg_ctlcluster <version> main <action>`, with no descriptor of ours beyond the standard three:
/// the server it starts would keep them open for its whole life — among them the lock of a
/// `flock -x /tmp/pg.lock` around this test, which every other PostgreSQL run then waits for.
fn cluster_command(version: &str, action: &str) -> Command {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(
            r#"for fd in /proc/$$/fd/*; do fd=${fd##*/}; if [ "$fd" -gt 2 ]; then exec {fd}>&-; fi; done
exec pg_ctlcluster --skip-systemctl-redirect "$@""#,
        )
        .args(["pg_ctlcluster", version, "main", action])
        .stdin(Stdio::null());
    if action == "stop" {
        // pg_ctl waits 60 s by default; a cluster with many (dropped) test databases behind it
        // can take longer to write its shutdown checkpoint (one took 126 s here).
        command.args(["-m", "fast", "--", "-t", "300"]);
    }
    command
}

/// The log lines of the server's standard error that contain `text`.
fn log_lines(path: &std::path::Path, text: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| line.contains(text))
        .count()
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL) and root; stops the cluster: CI runs it alone"]
async fn postgresql_stopped_under_load_answers_503_at_once_and_recovers_by_itself() {
    let base_url = std::env::var("TEST_DATABASE_URL")
        .expect("set TEST_DATABASE_URL to the local PostgreSQL cluster's test database");
    assert!(
        base_url.contains("@127.0.0.1") || base_url.contains("@localhost"),
        "the test stops the local cluster: {base_url}"
    );
    let database_url = fresh_postgres_database(&base_url).await;
    let ws = Workspace::new();
    let usernames: Vec<String> = (0..LOGGERS).map(|i| format!("outage{i}")).collect();
    for username in &usernames {
        create_user(&ws, Some(&database_url), username);
    }
    let logs: Vec<_> = (0..2)
        .map(|i| ws.path().join(format!("instance-{i}.log")))
        .collect();
    let instances: Vec<ServerProcess> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| {
            let mut command = ws.command();
            configure(&mut command, Some(&database_url));
            command
                .args(["serve", "--bind", "127.0.0.1:0"])
                .env("PORTCULLIS_DATA_DIR", ws.path().join(format!("data-{i}")))
                .env("PORTCULLIS_LOG", "warn,portcullis::db=info");
            ServerProcess::start_with_stderr(command, std::fs::File::create(log).unwrap().into())
        })
        .collect();
    let bases: Vec<String> = instances.iter().map(|i| i.base_url.clone()).collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for base in &bases {
        tokens.push(access_token(&client, base, &usernames[0]).await);
    }

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(load(
        bases.clone(),
        tokens,
        usernames,
        started,
        stop.clone(),
        Arc::new(AtomicUsize::new(0)),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let stopping = started.elapsed();
    let mut cluster = tokio::task::spawn_blocking(StoppedCluster::stop)
        .await
        .unwrap();
    let stopped = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut readiness = Vec::new();
    for base in &bases {
        let ready = client.get(format!("{base}/ready")).send().await.unwrap();
        readiness.push((
            ready.status().as_u16(),
            ready
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
            ready.text().await.unwrap(),
        ));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let starting = started.elapsed();
    cluster = tokio::task::spawn_blocking(move || {
        cluster.start();
        cluster
    })
    .await
    .unwrap();
    let restarted = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = traffic.await.unwrap();
    drop(cluster);
    let summary = summary(&outcomes);
    println!(
        "stop took {:?}, start took {:?}; {summary}",
        stopped - stopping,
        restarted - starting
    );

    for (status, retry_after, body) in &readiness {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body, r#"{"detail":"Service unavailable"}"#);
    }
    for outcome in &outcomes {
        // Nothing but answers and refusals: no 500, no lost request.
        assert!(
            [200, 503].contains(&outcome.status),
            "{outcome:?}\n{summary}"
        );
        if outcome.status == 503 {
            // `/token` answers in OAuth2's error format as well.
            let expected = match outcome.kind {
                Kind::Me => r#"{"detail":"Service unavailable"}"#,
                Kind::Login => {
                    r#"{"detail":"Service unavailable","error":"temporarily_unavailable","error_description":"Service unavailable"}"#
                }
            };
            assert_eq!(outcome.body, expected, "{outcome:?}");
            assert_eq!(outcome.retry_after.as_deref(), Some("1"), "{outcome:?}");
        }
        // A login served is mostly its password hash, which runs at the lowest CPU priority: on a
        // machine busy with other work it may take seconds with the database up. Whatever meets
        // the database while it is stopped, or is refused, is answered within 2 s.
        let hashed = outcome.kind == Kind::Login
            && outcome.status == 200
            && !(outcome.sent > stopping && outcome.answered < starting);
        let limit = Duration::from_secs(if hashed { 10 } else { 2 });
        assert!(
            outcome.took() < limit,
            "a request hung: {outcome:?}\n{summary}"
        );
        // While it is down, refusals come at once (the first moment of the outage aside).
        if outcome.sent > stopped + Duration::from_secs(1) && outcome.answered < starting {
            assert_eq!(outcome.status, 503, "{outcome:?}");
            assert!(outcome.took() < Duration::from_secs(1), "{outcome:?}");
        }
        // Before it stops and once it is back, everything is served: no false 503.
        if outcome.answered < stopping || outcome.sent > restarted + Duration::from_secs(2) {
            assert_eq!(outcome.status, 200, "{outcome:?}\n{summary}");
        }
    }
    for kind in [Kind::Me, Kind::Login] {
        for instance in 0..bases.len() {
            let back = outcomes
                .iter()
                .filter(|o| o.kind == kind && o.instance == instance)
                .filter(|o| o.status == 200 && o.answered > restarted)
                .map(|o| o.answered)
                .min()
                .unwrap_or_else(|| panic!("no {kind:?} served by {instance} after the restart"));
            println!(
                "{kind:?} on instance {instance} served again {:?} after the restart",
                back - restarted
            );
            assert!(
                back - restarted < Duration::from_secs(2),
                "{kind:?} on instance {instance} served again {:?} after the restart",
                back - restarted
            );
        }
    }
    assert_every_login_kept_its_session(&outcomes, &stored_sessions(&database_url).await);

    // Logged once per outage, not once per refusal.
    let refused = outcomes.iter().filter(|o| o.status == 503).count();
    assert!(refused > 100, "{summary}");
    let slowest_refusal = outcomes
        .iter()
        .filter(|o| o.status == 503)
        .map(Outcome::took)
        .max();
    println!("{refused} refusals, the slowest in {slowest_refusal:?}");
    // However long the cluster took to stop: a count every 5 s while it lasts.
    let counts_allowed = (restarted - stopping).as_secs() as usize / 5 + 2;
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        println!("{}:\n{text}", log.display());
        assert!(
            (1..=3).contains(&log_lines(log, "database unavailable: answering 503")),
            "{text}"
        );
        assert_eq!(
            log_lines(log, "the database server is reachable again"),
            1,
            "{text}"
        );
        assert!(
            log_lines(log, "database still unavailable") <= counts_allowed,
            "{text}"
        );
        // Beside those: sqlx's warning for each pooled connection found dead (at most the pool's
        // 16), and the logins cut short in the middle.
        let lines = text.lines().count();
        assert!(
            lines <= 16 + LOGGERS + 6 + counts_allowed,
            "{lines} log lines for {refused} refusals:\n{text}"
        );
    }
    for instance in instances {
        assert!(instance.terminate());
    }
}
