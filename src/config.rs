//! All configuration, in one typed place: read once at start (command line or environment),
//! validated, then handed to the parts that need it. Nothing else reads the environment.

use std::{net::SocketAddr, num::NonZeroUsize, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::auth::keys::KeyAlgorithm;

/// The smallest HMAC secret accepted: 256 bits (RFC 7518 §3.2 for HS256).
pub const MIN_SECRET_BYTES: usize = 32;

/// OWASP's minimum for Argon2id; weaker parameters are refused.
pub const MIN_ARGON2_MEMORY_KIB: u32 = 19_456;
pub const MIN_ARGON2_ITERATIONS: u32 = 2;

/// Bounds of the login throttle's settings: beyond them a setting protects nothing.
const MAX_LOGIN_LIMIT: u32 = 1_000_000;
const MAX_LOGIN_BLOCK_SECONDS: u32 = 86_400;
const MAX_LOGIN_WINDOW_SECONDS: u32 = 30 * 86_400;

/// Options shared by every sub-command, each also an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Database to use: `sqlite://PATH?mode=rwc` or `postgres://…`. Default: an SQLite file in the data directory.
    // Its value may hold a password: `--help` must not print it.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// Database connections kept by each instance. Default: 8 for SQLite, 16 for PostgreSQL.
    #[arg(long, env = "PORTCULLIS_DATABASE_MAX_CONNECTIONS", global = true)]
    pub database_max_connections: Option<std::num::NonZeroU32>,

    /// Directory for the default SQLite database and the generated JWT secret.
    #[arg(
        long,
        env = "PORTCULLIS_DATA_DIR",
        default_value = "data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// JWT signing secret (at least 32 bytes). Prefer the file variant in production.
    #[arg(
        long,
        env = "PORTCULLIS_JWT_SECRET",
        hide_env_values = true,
        global = true,
        value_parser = secret_value
    )]
    pub jwt_secret: Option<SecretString>,

    /// File holding the JWT signing secret (at least 32 bytes; surrounding whitespace ignored).
    #[arg(long, env = "PORTCULLIS_JWT_SECRET_FILE", global = true)]
    pub jwt_secret_file: Option<PathBuf>,

    /// Access token lifetime, in seconds.
    #[arg(
        long,
        env = "PORTCULLIS_ACCESS_TOKEN_TTL",
        default_value_t = 1800,
        global = true
    )]
    pub access_token_ttl: u64,

    /// How access tokens are signed: `HS256` with the secret above, or with an asymmetric key
    /// kept in the database and published at `/.well-known/jwks.json` (`EdDSA` = Ed25519, or
    /// `ES256`). Only tokens of the configured kind are accepted.
    #[arg(long, env = "PORTCULLIS_SIGNING_ALGORITHM", value_enum, default_value_t = SigningAlgorithm::Hs256, global = true)]
    pub signing_algorithm: SigningAlgorithm,

    /// Lifetime of a session and of its refresh tokens, in seconds, counted from the login
    /// (absolute: refreshing does not extend it).
    #[arg(
        long,
        env = "PORTCULLIS_REFRESH_TOKEN_TTL",
        default_value_t = 30 * 24 * 3600,
        global = true
    )]
    pub refresh_token_ttl: u64,

    /// Seconds during which a refresh token that was just rotated may be presented again (two
    /// tabs refreshing at once) without counting as reuse.
    #[arg(
        long,
        env = "PORTCULLIS_REFRESH_REUSE_GRACE_SECONDS",
        default_value_t = 5,
        global = true
    )]
    pub refresh_reuse_grace_seconds: u64,

    /// Public base URL of the service (e.g. `https://auth.example.com`), used for the absolute
    /// URLs of `/.well-known/oauth-authorization-server`. Unset: taken from the request's `Host`.
    #[arg(long, env = "PORTCULLIS_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// `iss` claim of issued tokens, required on presented ones.
    #[arg(
        long,
        env = "PORTCULLIS_ISSUER",
        default_value = "portcullis",
        global = true
    )]
    pub issuer: String,

    /// `aud` claim of issued tokens, required on presented ones.
    #[arg(
        long,
        env = "PORTCULLIS_AUDIENCE",
        default_value = "portcullis",
        global = true
    )]
    pub audience: String,

    /// Argon2id memory cost in KiB (at least 19456).
    #[arg(long, env = "PORTCULLIS_ARGON2_MEMORY_KIB", default_value_t = MIN_ARGON2_MEMORY_KIB, global = true)]
    pub argon2_memory_kib: u32,

    /// Argon2id iterations (at least 2).
    #[arg(long, env = "PORTCULLIS_ARGON2_ITERATIONS", default_value_t = MIN_ARGON2_ITERATIONS, global = true)]
    pub argon2_iterations: u32,

    /// Argon2id lanes (at least 1).
    #[arg(
        long,
        env = "PORTCULLIS_ARGON2_PARALLELISM",
        default_value_t = 1,
        global = true
    )]
    pub argon2_parallelism: u32,

    /// Password hashes computed at once. Default: the number of CPU cores.
    #[arg(long, env = "PORTCULLIS_HASH_WORKERS", global = true)]
    pub hash_workers: Option<NonZeroUsize>,

    /// Logins allowed to wait for a hashing worker; beyond it `/token` answers 503 at once.
    /// Default: 64 per worker (about half a second of waiting at most).
    #[arg(long, env = "PORTCULLIS_HASH_QUEUE", global = true)]
    pub hash_queue: Option<usize>,

    /// Hashes one client (one address, or one account) may have waiting or running at once;
    /// beyond it that client's logins answer 503 while others are still served. Default: a
    /// quarter of the queue (at least the number of workers).
    #[arg(long, env = "PORTCULLIS_HASH_QUEUE_PER_CLIENT", global = true)]
    pub hash_queue_per_client: Option<usize>,

    /// Throttle repeated failed logins (429 with growing delays). `false` only for tests.
    #[arg(long, env = "PORTCULLIS_LOGIN_THROTTLE", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub login_throttle: bool,

    /// Failed logins for one account from one address before that pair is blocked.
    #[arg(
        long,
        env = "PORTCULLIS_LOGIN_MAX_FAILURES",
        default_value_t = 5,
        global = true
    )]
    pub login_max_failures: u32,

    /// Failed logins from one address, over all accounts, before the address is blocked.
    #[arg(
        long,
        env = "PORTCULLIS_LOGIN_MAX_FAILURES_PER_ADDRESS",
        default_value_t = 20,
        global = true
    )]
    pub login_max_failures_per_address: u32,

    /// Failed logins from one IPv6 /48 (all its /64s together), over all accounts, before the
    /// whole /48 is blocked.
    #[arg(
        long,
        env = "PORTCULLIS_LOGIN_MAX_FAILURES_PER_IPV6_48",
        default_value_t = 100,
        global = true
    )]
    pub login_max_failures_per_ipv6_48: u32,

    /// Failed logins for one account from all addresses together before it is refused to every
    /// address that has not logged in to it successfully within 30 days.
    #[arg(
        long,
        env = "PORTCULLIS_LOGIN_MAX_FAILURES_PER_ACCOUNT",
        default_value_t = 100,
        global = true
    )]
    pub login_max_failures_per_account: u32,

    /// Successful logins to one account per minute (each starts a session); more are refused
    /// with 429.
    #[arg(
        long,
        env = "PORTCULLIS_LOGIN_MAX_SUCCESSES_PER_ACCOUNT_PER_MINUTE",
        default_value_t = 10,
        global = true
    )]
    pub login_max_successes_per_account_per_minute: u32,

    /// First block, in seconds; it doubles with every further failure.
    #[arg(
        long,
        env = "PORTCULLIS_LOGIN_BLOCK_SECONDS",
        default_value_t = 1,
        global = true
    )]
    pub login_block_seconds: u32,

    /// Longest block, in seconds.
    #[arg(
        long,
        env = "PORTCULLIS_LOGIN_MAX_BLOCK_SECONDS",
        default_value_t = 900,
        global = true
    )]
    pub login_max_block_seconds: u32,

    /// Failures are forgotten this many seconds after the last one and after the end of the
    /// block they caused (at least the longest block).
    #[arg(
        long,
        env = "PORTCULLIS_LOGIN_FAILURE_WINDOW_SECONDS",
        default_value_t = 900,
        global = true
    )]
    pub login_failure_window_seconds: u32,

    /// Origins (e.g. `https://app.example.com`, comma-separated, exact) whose pages may call the
    /// API from a browser, besides the service's own origin: they get CORS headers, and only they
    /// (and requests without `Origin`) may send POST, PUT, PATCH or DELETE.
    #[arg(
        long,
        env = "PORTCULLIS_CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub cors_allowed_origins: Vec<String>,

    /// Header a trusted reverse proxy sets to the client's address (e.g. `X-Forwarded-For`; its
    /// last entry is used). Unset: the socket's peer address. Set it only behind such a proxy.
    #[arg(long, env = "PORTCULLIS_CLIENT_IP_HEADER", global = true)]
    pub client_ip_header: Option<String>,

    /// Address of the Prometheus metrics listener (`GET /metrics`), e.g. `127.0.0.1:9100`.
    /// Unset: no metrics listener. The API listener never serves `/metrics`.
    #[arg(long, env = "PORTCULLIS_METRICS_BIND", global = true)]
    pub metrics_bind: Option<String>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "PORTCULLIS_MAX_BODY_BYTES", default_value_t = 64 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Days the security audit log keeps an event; older ones are deleted hourly.
    #[arg(
        long,
        env = "PORTCULLIS_AUDIT_RETENTION_DAYS",
        default_value_t = 90,
        global = true
    )]
    pub audit_retention_days: u32,

    /// Most items one user may hold; a create beyond it is answered 409.
    #[arg(
        long,
        env = "PORTCULLIS_MAX_ITEMS_PER_USER",
        default_value_t = 1000,
        global = true
    )]
    pub max_items_per_user: u32,

    /// Let anyone create an account at `POST /users/signup`. Default: false, but true for
    /// `serve --demo` unless set.
    #[arg(long, env = "PORTCULLIS_SIGNUP", action = clap::ArgAction::Set, global = true)]
    pub signup: Option<bool>,

    /// Signups from one address per hour; more are answered 429.
    #[arg(
        long,
        env = "PORTCULLIS_SIGNUP_PER_ADDRESS_PER_HOUR",
        default_value_t = 10,
        global = true
    )]
    pub signup_per_address_per_hour: u32,

    /// Shortest password accepted when one is set (at least 8, at most 128 characters).
    #[arg(
        long,
        env = "PORTCULLIS_PASSWORD_MIN_LENGTH",
        default_value_t = 8,
        global = true
    )]
    pub password_min_length: usize,

    /// Seconds a client has to send a request's head (request line and headers), counted from
    /// the connection's start or the request's first byte; then the connection is closed.
    #[arg(
        long,
        env = "PORTCULLIS_HEADER_READ_TIMEOUT_SECONDS",
        default_value_t = 10,
        global = true
    )]
    pub header_read_timeout_seconds: u64,

    /// Seconds a client has to send a request's body after its head; then 408.
    #[arg(
        long,
        env = "PORTCULLIS_BODY_READ_TIMEOUT_SECONDS",
        default_value_t = 30,
        global = true
    )]
    pub body_read_timeout_seconds: u64,

    /// Seconds a keep-alive connection may stay idle between requests before it is closed.
    #[arg(
        long,
        env = "PORTCULLIS_IDLE_TIMEOUT_SECONDS",
        default_value_t = 60,
        global = true
    )]
    pub idle_timeout_seconds: u64,

    /// Largest request head (request line and header fields), in bytes; larger ones get 431.
    #[arg(long, env = "PORTCULLIS_MAX_HEADER_BYTES", default_value_t = 16 * 1024, global = true)]
    pub max_header_bytes: usize,

    /// Connections open at once from one client address (an IPv6 /64 counts as one address);
    /// further ones are closed at once.
    #[arg(
        long,
        env = "PORTCULLIS_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 64,
        global = true
    )]
    pub max_connections_per_address: usize,

    /// Connections open at once in all; further ones wait in the listen queue. Default: derived
    /// from the open-file limit (raised to its hard limit at start), at most 10000.
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<NonZeroUsize>,

    /// Log filter, in `tracing` syntax (e.g. `info`, `portcullis=debug`).
    #[arg(
        long,
        env = "PORTCULLIS_LOG",
        default_value = "info,sea_orm_migration=warn",
        global = true
    )]
    pub log: String,

    /// Log format.
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// The algorithm is the token layer's (`auth::keys`), re-exported where the settings have
/// always named it; how the command line names and describes the algorithms is here, with the
/// rest of the command line's text.
pub use crate::auth::keys::SigningAlgorithm;

/// `--signing-algorithm`: every algorithm.
impl clap::ValueEnum for SigningAlgorithm {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            Self::Hs256 => "HMAC-SHA256 with the shared secret; nobody else can verify the tokens",
            Self::EdDsa => "Ed25519 (RFC 8037), the asymmetric default",
            Self::Es256 => ES256_HELP,
        };
        Some(clap::builder::PossibleValue::new(self.as_str()).help(help))
    }
}

/// `keys rotate --algorithm`: only the algorithms a stored key can have.
impl clap::ValueEnum for KeyAlgorithm {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = if *self == Self::EDDSA {
            "Ed25519 (RFC 8037)"
        } else {
            ES256_HELP
        };
        Some(clap::builder::PossibleValue::new(self.as_str()).help(help))
    }
}

const ES256_HELP: &str = "ECDSA with P-256 and SHA-256";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Validated configuration of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub database: DatabaseSettings,
    pub tokens: TokenSettings,
    pub hashing: HashingSettings,
    pub throttle: ThrottleSettings,
    pub sessions: SessionSettings,
    /// Public base URL (no trailing slash), when configured.
    pub public_url: Option<String>,
    /// Header holding the client address, set by a trusted proxy.
    pub client_ip_header: Option<poem::http::HeaderName>,
    pub max_body_bytes: usize,
    /// Where the Prometheus metrics are served; `None`: nowhere.
    pub metrics_bind: Option<SocketAddr>,
    /// Origins of other sites allowed to call the API from a browser (`scheme://host[:port]`).
    pub cors_allowed_origins: Vec<String>,
    /// Most items one user may hold.
    pub max_items_per_user: u32,
    /// Days an audit event is kept.
    pub audit_retention_days: u32,
    pub connections: ConnectionSettings,
    pub accounts: AccountSettings,
}

/// Signup and the password policy (see `accounts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSettings {
    pub signup_enabled: bool,
    pub signup_per_address_per_hour: u32,
    pub password_policy: crate::domain::PasswordPolicy,
}

/// Limits on connections and on how slowly a client may send (see `server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections_per_address: usize,
    /// `None`: derived from the open-file limit at start (`server::connection_cap`).
    pub max_connections: Option<NonZeroUsize>,
}

impl Default for ConnectionSettings {
    /// The defaults of the environment variables above.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            max_connections_per_address: 64,
            max_connections: None,
        }
    }
}

/// Login throttling (see `auth::throttle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    pub enabled: bool,
    pub max_failures_per_account: u32,
    pub max_failures_per_address: u32,
    /// Failures from one IPv6 /48, over all its /64s and accounts.
    pub max_failures_per_ipv6_48: u32,
    /// Failures for one account from every address together; beyond, only addresses that
    /// logged in to it before are let through.
    pub max_failures_per_account_from_all_addresses: u32,
    /// Successful logins to one account per minute, from all addresses together.
    pub max_successes_per_account_per_minute: u32,
    pub base_delay: chrono::Duration,
    pub max_delay: chrono::Duration,
    pub window: chrono::Duration,
}

/// Sessions and their refresh tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// From login to the end of the session, refreshes included.
    pub lifetime: chrono::Duration,
    /// How long a rotated refresh token may still be exchanged (racing tabs).
    pub reuse_grace: chrono::Duration,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    /// Connections in the pool; `None`: the backend's default.
    pub max_connections: Option<std::num::NonZeroU32>,
}

impl DatabaseSettings {
    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    /// The pool size: as configured, else 8 for SQLite (one writer at a time anyway) and 16
    /// for PostgreSQL.
    pub fn pool_size(&self) -> u32 {
        self.max_connections.map_or(
            if self.is_sqlite() { 8 } else { 16 },
            std::num::NonZeroU32::get,
        )
    }
}

#[derive(Clone)]
pub struct TokenSettings {
    /// The HS256 key, and the secret the stored private keys are encrypted with.
    pub secret: std::sync::Arc<SecretBox<[u8]>>,
    pub algorithm: SigningAlgorithm,
    pub ttl: Duration,
    pub issuer: String,
    pub audience: String,
}

impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field("secret", &"[REDACTED]")
            .field("algorithm", &self.algorithm)
            .field("ttl", &self.ttl)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub workers: NonZeroUsize,
    pub queue: usize,
    /// Hashes one client (address or account) may have waiting or running at once.
    pub queue_per_client: NonZeroUsize,
}

impl ConfigArgs {
    /// The database URL, defaulting to an SQLite file in the data directory.
    pub fn database(&self) -> DatabaseSettings {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("portcullis.db").display()
            ),
        };
        DatabaseSettings {
            url,
            max_connections: self.database_max_connections,
        }
    }

    /// Argon2 and pool settings, validated against OWASP's minimum.
    pub fn hashing(&self) -> anyhow::Result<HashingSettings> {
        if self.argon2_memory_kib < MIN_ARGON2_MEMORY_KIB {
            bail!(
                "PORTCULLIS_ARGON2_MEMORY_KIB must be at least {MIN_ARGON2_MEMORY_KIB} (OWASP's minimum for Argon2id)"
            );
        }
        within(
            "PORTCULLIS_ARGON2_MEMORY_KIB",
            self.argon2_memory_kib,
            bounds::ARGON2_MEMORY_KIB,
            "KiB",
        )?;
        within(
            "PORTCULLIS_ARGON2_ITERATIONS",
            self.argon2_iterations,
            bounds::ARGON2_ITERATIONS,
            "",
        )?;
        within(
            "PORTCULLIS_ARGON2_PARALLELISM",
            self.argon2_parallelism,
            bounds::ARGON2_PARALLELISM,
            "",
        )?;
        let workers = match self.hash_workers {
            Some(workers) => {
                within(
                    "PORTCULLIS_HASH_WORKERS",
                    workers.get(),
                    bounds::HASH_WORKERS,
                    "",
                )?;
                workers
            }
            None => std::thread::available_parallelism()
                .unwrap_or(NonZeroUsize::MIN)
                .min(NonZeroUsize::new(*bounds::HASH_WORKERS.end()).expect("not zero")),
        };
        let queue = match self.hash_queue {
            Some(queue) => within("PORTCULLIS_HASH_QUEUE", queue, bounds::HASH_QUEUE, "")?,
            None => workers.get().saturating_mul(64),
        };
        let queue_per_client = match self.hash_queue_per_client {
            Some(n) => within(
                "PORTCULLIS_HASH_QUEUE_PER_CLIENT",
                n,
                1..=*bounds::HASH_QUEUE.end(),
                "",
            )?,
            None => (queue / 4).max(workers.get()),
        };
        Ok(HashingSettings {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
            workers,
            queue,
            queue_per_client: NonZeroUsize::new(queue_per_client).unwrap_or(NonZeroUsize::MIN),
        })
    }

    /// Everything `serve` needs. May create the data directory and the generated secret.
    pub fn settings(&self, bind: SocketAddr) -> anyhow::Result<Settings> {
        within(
            "PORTCULLIS_MAX_BODY_BYTES",
            self.max_body_bytes,
            bounds::MAX_BODY_BYTES,
            "bytes",
        )?;
        within(
            "PORTCULLIS_REFRESH_TOKEN_TTL",
            self.refresh_token_ttl,
            bounds::REFRESH_TOKEN_TTL,
            "seconds",
        )?;
        within(
            "PORTCULLIS_REFRESH_REUSE_GRACE_SECONDS",
            self.refresh_reuse_grace_seconds,
            bounds::REFRESH_REUSE_GRACE,
            "seconds",
        )?;
        if let Some(connections) = self.database_max_connections {
            within(
                "PORTCULLIS_DATABASE_MAX_CONNECTIONS",
                connections.get(),
                bounds::DATABASE_MAX_CONNECTIONS,
                "",
            )?;
        }
        within(
            "PORTCULLIS_AUDIT_RETENTION_DAYS",
            self.audit_retention_days,
            bounds::AUDIT_RETENTION_DAYS,
            "days",
        )?;
        if self.max_items_per_user == 0 {
            bail!("PORTCULLIS_MAX_ITEMS_PER_USER must be at least 1");
        }
        let public_url = match self
            .public_url
            .as_deref()
            .map(|url| url.trim_end_matches('/'))
        {
            Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
                bail!("PORTCULLIS_PUBLIC_URL must start with https:// or http://: {url:?}")
            }
            // It is also the service's own origin, which browsers' requests are checked against.
            Some(url) if crate::domain::origin::url_origin(url).is_none() => {
                bail!("PORTCULLIS_PUBLIC_URL has no valid host[:port]: {url:?}")
            }
            other => other.map(str::to_owned),
        };
        let metrics_bind = metrics_bind(self.metrics_bind.as_deref(), bind)?;
        Ok(Settings {
            bind,
            metrics_bind,
            database: self.database(),
            tokens: self.tokens()?,
            hashing: self.hashing()?,
            throttle: self.throttle()?,
            sessions: SessionSettings {
                lifetime: seconds(self.refresh_token_ttl),
                reuse_grace: seconds(self.refresh_reuse_grace_seconds),
            },
            public_url,
            client_ip_header: self
                .client_ip_header
                .as_deref()
                .map(|name| {
                    name.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "PORTCULLIS_CLIENT_IP_HEADER is not a header name: {name:?}"
                        )
                    })
                })
                .transpose()?,
            max_body_bytes: self.max_body_bytes,
            cors_allowed_origins: allowed_origins(&self.cors_allowed_origins)?,
            max_items_per_user: self.max_items_per_user,
            audit_retention_days: self.audit_retention_days,
            accounts: self.accounts()?,
            connections: self.connections()?,
        })
    }

    fn connections(&self) -> anyhow::Result<ConnectionSettings> {
        let timeout = |name: &str, value: u64| {
            within(name, value, bounds::CONNECTION_TIMEOUT_SECONDS, "seconds")
                .map(Duration::from_secs)
        };
        Ok(ConnectionSettings {
            header_read_timeout: timeout(
                "PORTCULLIS_HEADER_READ_TIMEOUT_SECONDS",
                self.header_read_timeout_seconds,
            )?,
            body_read_timeout: timeout(
                "PORTCULLIS_BODY_READ_TIMEOUT_SECONDS",
                self.body_read_timeout_seconds,
            )?,
            idle_timeout: timeout("PORTCULLIS_IDLE_TIMEOUT_SECONDS", self.idle_timeout_seconds)?,
            max_header_bytes: within(
                "PORTCULLIS_MAX_HEADER_BYTES",
                self.max_header_bytes,
                bounds::MAX_HEADER_BYTES,
                "bytes",
            )?,
            max_connections_per_address: within(
                "PORTCULLIS_MAX_CONNECTIONS_PER_ADDRESS",
                self.max_connections_per_address,
                bounds::MAX_CONNECTIONS_PER_ADDRESS,
                "",
            )?,
            max_connections: self.max_connections,
        })
    }

    /// How tokens are signed (also what `portcullis keys rotate` encrypts new keys with). May
    /// create the data directory and the generated secret.
    pub fn tokens(&self) -> anyhow::Result<TokenSettings> {
        within(
            "PORTCULLIS_ACCESS_TOKEN_TTL",
            self.access_token_ttl,
            bounds::ACCESS_TOKEN_TTL,
            "seconds",
        )?;
        Ok(TokenSettings {
            secret: std::sync::Arc::new(self.jwt_secret(&self.database())?),
            algorithm: self.signing_algorithm,
            ttl: Duration::from_secs(self.access_token_ttl),
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
        })
    }

    pub fn throttle(&self) -> anyhow::Result<ThrottleSettings> {
        let limits = [
            ("PORTCULLIS_LOGIN_MAX_FAILURES", self.login_max_failures),
            (
                "PORTCULLIS_LOGIN_MAX_FAILURES_PER_ADDRESS",
                self.login_max_failures_per_address,
            ),
            (
                "PORTCULLIS_LOGIN_MAX_FAILURES_PER_IPV6_48",
                self.login_max_failures_per_ipv6_48,
            ),
            (
                "PORTCULLIS_LOGIN_MAX_SUCCESSES_PER_ACCOUNT_PER_MINUTE",
                self.login_max_successes_per_account_per_minute,
            ),
            (
                "PORTCULLIS_LOGIN_MAX_FAILURES_PER_ACCOUNT",
                self.login_max_failures_per_account,
            ),
        ];
        for (name, limit) in limits {
            // 0 would refuse every login; beyond a million the limit protects nothing.
            if !(1..=MAX_LOGIN_LIMIT).contains(&limit) {
                bail!("{name} must be between 1 and {MAX_LOGIN_LIMIT}, not {limit}");
            }
        }
        if self.login_block_seconds == 0 || self.login_max_block_seconds < self.login_block_seconds
        {
            bail!(
                "PORTCULLIS_LOGIN_BLOCK_SECONDS must be at least 1 and at most PORTCULLIS_LOGIN_MAX_BLOCK_SECONDS"
            );
        }
        if self.login_max_block_seconds > MAX_LOGIN_BLOCK_SECONDS {
            bail!(
                "PORTCULLIS_LOGIN_MAX_BLOCK_SECONDS must be at most {MAX_LOGIN_BLOCK_SECONDS} (a day)"
            );
        }
        // A window of 0 would forget every failure at once (no throttle at all); one shorter
        // than the longest block would let the count lapse while the client is still blocked.
        if self.login_failure_window_seconds < self.login_max_block_seconds
            || self.login_failure_window_seconds > MAX_LOGIN_WINDOW_SECONDS
        {
            bail!(
                "PORTCULLIS_LOGIN_FAILURE_WINDOW_SECONDS must be at least PORTCULLIS_LOGIN_MAX_BLOCK_SECONDS ({}) and at most {MAX_LOGIN_WINDOW_SECONDS} (30 days)",
                self.login_max_block_seconds
            );
        }
        Ok(ThrottleSettings {
            enabled: self.login_throttle,
            max_failures_per_account: self.login_max_failures,
            max_failures_per_address: self.login_max_failures_per_address,
            max_failures_per_ipv6_48: self.login_max_failures_per_ipv6_48,
            max_failures_per_account_from_all_addresses: self.login_max_failures_per_account,
            max_successes_per_account_per_minute: self.login_max_successes_per_account_per_minute,
            base_delay: chrono::Duration::seconds(self.login_block_seconds.into()),
            max_delay: chrono::Duration::seconds(self.login_max_block_seconds.into()),
            window: chrono::Duration::seconds(self.login_failure_window_seconds.into()),
        })
    }

    /// Signup and the password policy; also what the command line applies when it sets a
    /// password.
    pub fn accounts(&self) -> anyhow::Result<AccountSettings> {
        let min_length = within(
            "PORTCULLIS_PASSWORD_MIN_LENGTH",
            self.password_min_length,
            bounds::PASSWORD_MIN_LENGTH,
            "characters",
        )?;
        Ok(AccountSettings {
            signup_enabled: self.signup.unwrap_or(false),
            signup_per_address_per_hour: within(
                "PORTCULLIS_SIGNUP_PER_ADDRESS_PER_HOUR",
                self.signup_per_address_per_hour,
                bounds::SIGNUP_PER_ADDRESS_PER_HOUR,
                "",
            )?,
            password_policy: crate::domain::PasswordPolicy::new(min_length)
                .expect("within the policy's bounds"),
        })
    }

    fn jwt_secret(&self, database: &DatabaseSettings) -> anyhow::Result<SecretBox<[u8]>> {
        match (&self.jwt_secret, &self.jwt_secret_file) {
            (Some(_), Some(_)) => {
                bail!("set PORTCULLIS_JWT_SECRET or PORTCULLIS_JWT_SECRET_FILE, not both")
            }
            (Some(secret), None) => checked_secret(secret.clone(), "PORTCULLIS_JWT_SECRET"),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the JWT secret file {}", path.display())
                })?;
                checked_secret(
                    SecretString::from(text),
                    &format!("the JWT secret file {}", path.display()),
                )
            }
            (None, None) => {
                if !database.is_sqlite() {
                    tracing::warn!(
                        "no JWT secret configured: using a generated one kept in the data directory; \
                         instances sharing this database need the same PORTCULLIS_JWT_SECRET_FILE"
                    );
                }
                generated_secret(&self.data_dir.join("jwt-secret"))
            }
        }
    }
}

/// The range each numeric setting must fall in. Beyond them a value is a typo or would break
/// arithmetic (an access-token lifetime of `u64::MAX` seconds wraps `exp`); every bound leaves
/// room for any real deployment.
pub mod bounds {
    use std::ops::RangeInclusive;

    /// Up to a day: access tokens are meant to be short-lived.
    pub const ACCESS_TOKEN_TTL: RangeInclusive<u64> = 1..=86_400;
    /// Up to a year.
    pub const REFRESH_TOKEN_TTL: RangeInclusive<u64> = 1..=366 * 86_400;
    /// Up to five minutes; 0 turns the grace off.
    pub const REFRESH_REUSE_GRACE: RangeInclusive<u64> = 0..=300;
    /// Up to 1 GiB per hash (OWASP's minimum is the lower bound).
    pub const ARGON2_MEMORY_KIB: RangeInclusive<u32> = super::MIN_ARGON2_MEMORY_KIB..=1_048_576;
    pub const ARGON2_ITERATIONS: RangeInclusive<u32> = super::MIN_ARGON2_ITERATIONS..=100;
    pub const ARGON2_PARALLELISM: RangeInclusive<u32> = 1..=64;
    pub const HASH_WORKERS: RangeInclusive<usize> = 1..=256;
    pub const HASH_QUEUE: RangeInclusive<usize> = 0..=100_000;
    /// Up to 16 MiB: the API's largest body is a 10 KB item.
    pub const MAX_BODY_BYTES: RangeInclusive<usize> = 1024..=16 * 1024 * 1024;
    pub const DATABASE_MAX_CONNECTIONS: RangeInclusive<u32> = 1..=1000;
    /// A connection timeout under a second would cut off honest clients on slow links; one
    /// over an hour keeps a slow attacker's socket for nothing.
    pub const CONNECTION_TIMEOUT_SECONDS: RangeInclusive<u64> = 1..=3600;
    pub const MAX_HEADER_BYTES: RangeInclusive<usize> = 1024..=1024 * 1024;
    pub const MAX_CONNECTIONS_PER_ADDRESS: RangeInclusive<usize> = 1..=100_000;
    pub const SIGNUP_PER_ADDRESS_PER_HOUR: RangeInclusive<u32> = 1..=100_000;
    /// A day (an incident is investigated before the next) to ten years.
    pub const AUDIT_RETENTION_DAYS: RangeInclusive<u32> = 1..=3650;
    /// NIST SP 800-63B's floor of 8 up to the longest password accepted.
    pub const PASSWORD_MIN_LENGTH: RangeInclusive<usize> =
        crate::domain::PasswordPolicy::LOWEST_MIN_LENGTH
            ..=crate::domain::PasswordPolicy::MAX_LENGTH;
}

/// `value`, unless it is outside `range`: then an error naming the variable and the range.
/// `PORTCULLIS_METRICS_BIND`: a socket address (`host:port`, IP literal), never the API's own.
fn metrics_bind(value: Option<&str>, api: SocketAddr) -> anyhow::Result<Option<SocketAddr>> {
    let Some(value) = value else { return Ok(None) };
    let addr: SocketAddr = value.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "PORTCULLIS_METRICS_BIND must be a socket address such as 127.0.0.1:9100 or \
             [::1]:9100, not {value:?}"
        )
    })?;
    if addr.port() != 0 && addr == api {
        bail!("PORTCULLIS_METRICS_BIND ({addr}) must differ from the API's address");
    }
    Ok(Some(addr))
}

fn within<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> anyhow::Result<T> {
    if range.contains(&value) {
        return Ok(value);
    }
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    bail!(
        "{name} must be between {} and {}{unit}, not {value}",
        range.start(),
        range.end()
    )
}

/// The allow-listed origins, checked: each exactly as a browser sends it in `Origin`
/// (`https://app.example.com`, `http://localhost:3000`), lower case, default port omitted.
fn allowed_origins(entries: &[String]) -> anyhow::Result<Vec<String>> {
    let mut origins: Vec<String> = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let Some(origin) = crate::domain::origin::serialized_origin(entry) else {
            bail!(
                "PORTCULLIS_CORS_ALLOWED_ORIGINS: {entry:?} is not an origin; write \
                 scheme://host[:port] with http or https, no path, no wildcard \
                 (e.g. https://app.example.com)"
            );
        };
        if origin != entry {
            bail!(
                "PORTCULLIS_CORS_ALLOWED_ORIGINS: write {entry:?} as a browser sends it: {origin:?}"
            );
        }
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}

fn seconds(value: u64) -> chrono::Duration {
    chrono::Duration::seconds(
        i64::try_from(value)
            .unwrap_or(i64::MAX)
            .min(100 * 365 * 86_400),
    )
}

/// A secret given on the command line or in the environment: a [`SecretString`] from the
/// moment it is parsed, so that `Debug` of the arguments never prints it.
fn secret_value(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}

fn checked_secret(secret: SecretString, origin: &str) -> anyhow::Result<SecretBox<[u8]>> {
    let bytes = secret.expose_secret().trim().as_bytes();
    if bytes.len() < MIN_SECRET_BYTES {
        bail!(
            "{origin} is too weak: it has {} bytes, at least {MIN_SECRET_BYTES} (256 bits) are required; \
             generate one with `openssl rand -base64 48`",
            bytes.len()
        );
    }
    Ok(SecretBox::new(bytes.to_vec().into_boxed_slice()))
}

/// Creates `dir` and its missing parents readable by this user only (0700): the data directory
/// holds the database and the generated secret. An existing directory is left as it is.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Reads the generated secret, creating it (mode 0600) on first start.
fn generated_secret(path: &std::path::Path) -> anyhow::Result<SecretBox<[u8]>> {
    use base64::Engine as _;
    use std::io::Write as _;

    match std::fs::read_to_string(path) {
        Ok(text) => {
            return checked_secret(
                SecretString::from(text),
                &format!("the generated JWT secret file {}", path.display()),
            );
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read {}", path.display()));
        }
    }
    if let Some(dir) = path.parent() {
        create_private_dir(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    let mut raw = [0u8; 48];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(encoded.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new JWT signing secret");
            Ok(SecretBox::new(encoded.into_bytes().into_boxed_slice()))
        }
        // Another process created it first: use theirs.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => generated_secret(path),
        Err(err) => Err(err).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Args {
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn parse(args: &[&str]) -> ConfigArgs {
        <Args as clap::Parser>::try_parse_from(
            std::iter::once("portcullis").chain(args.iter().copied()),
        )
        .unwrap()
        .config
    }

    #[test]
    fn the_connection_defaults_are_connection_settings_default() {
        assert_eq!(
            parse(&[]).connections().unwrap(),
            ConnectionSettings::default()
        );
    }

    #[test]
    fn connection_settings_are_bounded() {
        for args in [
            ["--header-read-timeout-seconds", "0"],
            ["--body-read-timeout-seconds", "3601"],
            ["--idle-timeout-seconds", "0"],
            ["--max-header-bytes", "1023"],
            ["--max-header-bytes", "1048577"],
            ["--max-connections-per-address", "0"],
        ] {
            assert!(parse(&args).connections().is_err(), "{args:?}");
        }
        let edge = parse(&[
            "--header-read-timeout-seconds",
            "1",
            "--idle-timeout-seconds",
            "3600",
            "--max-header-bytes",
            "1024",
        ])
        .connections()
        .unwrap();
        assert_eq!(edge.header_read_timeout, Duration::from_secs(1));
        assert_eq!(edge.idle_timeout, Duration::from_secs(3600));
    }

    #[test]
    fn numeric_settings_outside_their_bounds_are_refused_by_name() {
        let err = within(
            "PORTCULLIS_ACCESS_TOKEN_TTL",
            u64::MAX,
            bounds::ACCESS_TOKEN_TTL,
            "seconds",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "PORTCULLIS_ACCESS_TOKEN_TTL must be between 1 and 86400 seconds, not 18446744073709551615"
        );
        assert!(within("X", 0u64, bounds::ACCESS_TOKEN_TTL, "seconds").is_err());
        assert_eq!(
            within("X", 1800u64, bounds::ACCESS_TOKEN_TTL, "seconds").unwrap(),
            1800
        );
        assert_eq!(
            within(
                "PORTCULLIS_HASH_QUEUE",
                100_001usize,
                bounds::HASH_QUEUE,
                ""
            )
            .unwrap_err()
            .to_string(),
            "PORTCULLIS_HASH_QUEUE must be between 0 and 100000, not 100001"
        );
    }

    /// Every bounded setting, through the same path `serve` takes: one error each, naming it.
    #[test]
    fn every_bounded_setting_is_checked_at_start() {
        use clap::Parser as _;

        #[derive(clap::Parser)]
        struct Args {
            #[command(flatten)]
            config: ConfigArgs,
        }
        let dir = std::env::temp_dir().join(format!("portcullis-bounds-{}", uuid::Uuid::new_v4()));
        let data_dir = dir.display().to_string();
        let secret = "s".repeat(32);
        for (flag, value, variable) in [
            ("--access-token-ttl", "0", "PORTCULLIS_ACCESS_TOKEN_TTL"),
            ("--access-token-ttl", "86401", "PORTCULLIS_ACCESS_TOKEN_TTL"),
            (
                "--refresh-token-ttl",
                "18446744073709551615",
                "PORTCULLIS_REFRESH_TOKEN_TTL",
            ),
            (
                "--refresh-reuse-grace-seconds",
                "301",
                "PORTCULLIS_REFRESH_REUSE_GRACE_SECONDS",
            ),
            (
                "--argon2-memory-kib",
                "4294967295",
                "PORTCULLIS_ARGON2_MEMORY_KIB",
            ),
            (
                "--argon2-iterations",
                "1000000",
                "PORTCULLIS_ARGON2_ITERATIONS",
            ),
            ("--argon2-parallelism", "0", "PORTCULLIS_ARGON2_PARALLELISM"),
            (
                "--argon2-parallelism",
                "65",
                "PORTCULLIS_ARGON2_PARALLELISM",
            ),
            ("--hash-workers", "100000", "PORTCULLIS_HASH_WORKERS"),
            (
                "--hash-queue",
                "18446744073709551615",
                "PORTCULLIS_HASH_QUEUE",
            ),
            ("--max-body-bytes", "1023", "PORTCULLIS_MAX_BODY_BYTES"),
            (
                "--max-body-bytes",
                "18446744073709551615",
                "PORTCULLIS_MAX_BODY_BYTES",
            ),
            (
                "--database-max-connections",
                "100000",
                "PORTCULLIS_DATABASE_MAX_CONNECTIONS",
            ),
            (
                "--audit-retention-days",
                "0",
                "PORTCULLIS_AUDIT_RETENTION_DAYS",
            ),
            (
                "--audit-retention-days",
                "3651",
                "PORTCULLIS_AUDIT_RETENTION_DAYS",
            ),
        ] {
            let args = Args::try_parse_from([
                "portcullis",
                "--data-dir",
                &data_dir,
                "--jwt-secret",
                &secret,
                flag,
                value,
            ])
            .unwrap();
            let err = args
                .config
                .settings("127.0.0.1:0".parse().unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("{variable} must be ")),
                "{flag} {value}: {err}"
            );
        }
        let args = Args::try_parse_from([
            "portcullis",
            "--data-dir",
            &data_dir,
            "--jwt-secret",
            &secret,
        ])
        .unwrap();
        let settings = args
            .config
            .settings("127.0.0.1:0".parse().unwrap())
            .unwrap();
        assert_eq!(settings.audit_retention_days, 90, "the default");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn allowed_origins_must_be_written_as_browsers_send_them() {
        let list = |entries: &[&str]| {
            allowed_origins(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(
            list(&[
                "https://app.example.com",
                " http://localhost:3000 ",
                "",
                "https://app.example.com"
            ])
            .unwrap(),
            ["https://app.example.com", "http://localhost:3000"]
        );
        for bad in [
            "*",
            "null",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://app.example.com",
            "https://*.example.com",
            "https://user@app.example.com",
            "https://app.example.com:99999",
            "https://APP.example.com",
            "https://app.example.com:443",
        ] {
            let err = list(&[bad]).unwrap_err().to_string();
            assert!(
                err.starts_with("PORTCULLIS_CORS_ALLOWED_ORIGINS: "),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_short_secret_is_refused() {
        let err = checked_secret(SecretString::from("x".repeat(31)), "PORTCULLIS_JWT_SECRET")
            .unwrap_err();
        assert!(err.to_string().contains("too weak"), "{err}");
    }

    #[test]
    fn a_256_bit_secret_is_accepted() {
        let secret = checked_secret(SecretString::from("x".repeat(32)), "test").unwrap();
        assert_eq!(secret.expose_secret().len(), 32);
    }

    #[test]
    fn the_generated_secret_is_created_once_and_private() {
        let dir = std::env::temp_dir().join(format!("portcullis-cfg-{}", uuid::Uuid::new_v4()));
        let path = dir.join("jwt-secret");
        let first = generated_secret(&path).unwrap();
        let second = generated_secret(&path).unwrap();
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert!(first.expose_secret().len() >= MIN_SECRET_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The throttle settings parsed from these command-line arguments.
    fn throttle_of(args: &[&str]) -> anyhow::Result<ThrottleSettings> {
        parse(args).throttle()
    }

    /// The account settings parsed from these command-line arguments.
    fn accounts_of(args: &[&str]) -> anyhow::Result<AccountSettings> {
        parse(args).accounts()
    }

    #[test]
    fn the_account_settings_default_to_no_signup_and_an_eight_character_minimum() {
        let settings = accounts_of(&[]).unwrap();
        assert!(!settings.signup_enabled);
        assert_eq!(settings.signup_per_address_per_hour, 10);
        assert_eq!(settings.password_policy.min_length(), 8);
        let on = accounts_of(&["--signup", "true", "--password-min-length", "128"]).unwrap();
        assert!(on.signup_enabled);
        assert_eq!(on.password_policy.min_length(), 128);
    }

    #[test]
    fn the_metrics_bind_is_a_socket_address_or_unset() {
        let api: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        assert_eq!(
            metrics_bind(parse(&[]).metrics_bind.as_deref(), api).unwrap(),
            None
        );
        let args = parse(&["--metrics-bind", "127.0.0.1:9100"]);
        assert_eq!(
            metrics_bind(args.metrics_bind.as_deref(), api).unwrap(),
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(
            metrics_bind(Some("[::1]:0"), api).unwrap(),
            Some("[::1]:0".parse().unwrap())
        );
        for value in [
            "",
            "localhost:9100",
            "127.0.0.1",
            "127.0.0.1:99999",
            ":9100",
        ] {
            let err = metrics_bind(Some(value), api).expect_err(value);
            assert_eq!(
                err.to_string(),
                format!(
                    "PORTCULLIS_METRICS_BIND must be a socket address such as 127.0.0.1:9100 or \
                     [::1]:9100, not {value:?}"
                )
            );
        }
        let err = metrics_bind(Some("127.0.0.1:8000"), api).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PORTCULLIS_METRICS_BIND (127.0.0.1:8000) must differ from the API's address"
        );
    }

    #[test]
    fn account_settings_out_of_bounds_are_refused_at_start() {
        for (args, message) in [
            (
                &["--password-min-length", "7"][..],
                "PORTCULLIS_PASSWORD_MIN_LENGTH must be between 8 and 128 characters, not 7",
            ),
            (
                &["--password-min-length", "129"],
                "PORTCULLIS_PASSWORD_MIN_LENGTH must be between 8 and 128 characters, not 129",
            ),
            (
                &["--signup-per-address-per-hour", "0"],
                "PORTCULLIS_SIGNUP_PER_ADDRESS_PER_HOUR must be between 1 and 100000, not 0",
            ),
        ] {
            let err = accounts_of(args).expect_err("refused");
            assert_eq!(err.to_string(), message, "{args:?}");
        }
    }

    #[test]
    fn the_default_throttle_settings_are_accepted() {
        let settings = throttle_of(&[]).unwrap();
        assert_eq!(settings.max_failures_per_account_from_all_addresses, 100);
        assert_eq!(settings.max_failures_per_ipv6_48, 100);
        assert_eq!(settings.max_successes_per_account_per_minute, 10);
        assert_eq!(settings.window, chrono::Duration::seconds(900));
    }

    #[test]
    fn nonsensical_throttle_settings_are_refused_at_start() {
        for args in [
            &["--login-failure-window-seconds", "0"][..],
            &["--login-failure-window-seconds", "899"],
            &["--login-failure-window-seconds", "99999999"],
            &["--login-max-failures", "0"],
            &["--login-max-failures-per-address", "0"],
            &["--login-max-failures-per-ipv6-48", "0"],
            &["--login-max-successes-per-account-per-minute", "0"],
            &["--login-max-failures-per-account", "0"],
            &["--login-max-failures", "4000000000"],
            &["--login-block-seconds", "0"],
            &["--login-max-block-seconds", "4000000000"],
        ] {
            assert!(throttle_of(args).is_err(), "{args:?} must be refused");
        }
        assert!(
            throttle_of(&[
                "--login-max-block-seconds",
                "3600",
                "--login-failure-window-seconds",
                "3600"
            ])
            .is_ok()
        );
    }
}
