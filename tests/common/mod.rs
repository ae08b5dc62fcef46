//! What several test binaries share: scratch directories, fresh PostgreSQL databases, and the
//! real `portcullis` binary run as a server process.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// A scratch directory, removed when dropped.
pub struct Workspace(PathBuf);

impl Workspace {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("portcullis-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The `portcullis` binary, run in this directory with a clean environment.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command
            .current_dir(&self.0)
            .env_clear()
            .env("PORTCULLIS_DATA_DIR", self.0.join("data"))
            .env("PORTCULLIS_LOG", "warn");
        command
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `portcullis serve` process, killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub base_url: String,
    /// The lines it printed after its address.
    pub banner: Vec<String>,
}

impl ServerProcess {
    /// Starts `command` (a `serve … --bind 127.0.0.1:0`) and waits for its address.
    pub fn start(command: Command) -> Self {
        Self::start_with_stderr(command, Stdio::inherit())
    }

    /// As [`ServerProcess::start`], its standard error (the log) going to `stderr`.
    pub fn start_with_stderr(mut command: Command, stderr: Stdio) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the portcullis binary runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines
            .next()
            .expect("the server prints its address")
            .unwrap();
        let base_url = first
            .strip_prefix("portcullis listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        let mut banner = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let done = line.starts_with("Swagger UI:");
            banner.push(line);
            if done {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            base_url,
            banner,
        }
    }

    /// Sends SIGTERM and waits; `true` when the process exited cleanly.
    pub fn terminate(mut self) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        sent && self.child.wait().is_ok_and(|status| status.success())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new, empty PostgreSQL database beside the one `base_url` names; returns its URL.
pub async fn fresh_postgres_database(base_url: &str) -> String {
    use sea_orm::{ConnectionTrait as _, Database};

    let name = format!("portcullis_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(base_url)
        .await
        .expect("TEST_DATABASE_URL must name a reachable PostgreSQL database");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("cannot create a test database");
    admin.close().await.ok();
    let (prefix, _) = base_url
        .split('?')
        .next()
        .unwrap()
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL must end with a database name");
    format!("{prefix}/{name}")
}
