//! The command line: `serve`, `migrate`, `users …`, `keys …` and `openapi`. Every failure prints one
//! clear line to standard error and exits non-zero.

use std::{io::Read as _, net::SocketAddr, process::ExitCode};

use anyhow::Context as _;
use clap::{ArgGroup, Parser, Subcommand};
use secrecy::SecretString;

use crate::{
    accounts::{
        self, AccountChanges, AccountError, Accounts, CreateUser, DEMO_USERS, PasswordCheck,
        ProfileChanges, seed_demo_users, sessions::end_all_sessions,
    },
    audit::AuditContext,
    auth::{
        LoginThrottle, PasswordHasher,
        keys::{self, KeyAlgorithm, KeyStatus},
    },
    config::ConfigArgs,
    db::{self, Store, User},
    domain::{AuditEventType, Scope, ScopeSet},
    startup::Application,
};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "OAuth2 password-flow authentication API with JWT bearer tokens"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (applies pending migrations first).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "PORTCULLIS_BIND", default_value = "127.0.0.1:8000")]
        bind: SocketAddr,
        /// Add the demo users `johndoe`/`secret` (active), `alice`/`secret2` (disabled) and
        /// `admin`/`secret3` (an admin) if absent, and turn signup on.
        #[arg(long, env = "PORTCULLIS_DEMO")]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage users' personal API keys (long-lived credentials for scripts and CI).
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCommand),
    /// Manage the keys that sign access tokens when PORTCULLIS_SIGNING_ALGORITHM is EdDSA or ES256.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show the security audit log, newest first: logins, refreshes, revocations, ended
    /// sessions, password and account changes, unlocks, signing-key changes.
    Audit {
        /// Only the events about this account (its name, in any case).
        #[arg(long = "user", value_name = "USERNAME")]
        user: Option<String>,
        /// Only the events of this type (e.g. `login.failed`).
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Only the events at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        since: Option<String>,
        /// How many events to show at most.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
        /// One JSON object per line, with the members of `GET /admin/audit-events`' events.
        #[arg(long)]
        json: bool,
    },
    /// Print the OpenAPI document (this is how `openapi.json` is regenerated).
    Openapi,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user; the password is read from standard input.
    Create {
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        full_name: Option<String>,
        /// Comma-separated scopes.
        #[arg(long, value_delimiter = ',', default_value = "me,items")]
        scopes: Vec<String>,
        /// Also grant the `admin` scope.
        #[arg(long)]
        admin: bool,
        /// Create the account disabled.
        #[arg(long)]
        disabled: bool,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Skip the password policy (length, common and guessable passwords), for demo and
        /// test accounts only.
        #[arg(long)]
        allow_weak_password: bool,
    },
    /// Set a user's password, read from standard input, and end every session of theirs: their
    /// access and refresh tokens are refused from the next request on.
    SetPassword {
        /// The user's name, in any case.
        username: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Skip the password policy (length, common and guessable passwords), for demo and
        /// test accounts only.
        #[arg(long)]
        allow_weak_password: bool,
    },
    /// Change a user's e-mail address, full name or scopes; what is not given stays as it is.
    #[command(group(
        ArgGroup::new("changes")
            .args(["email", "full_name", "scopes"])
            .required(true)
            .multiple(true)
    ))]
    Update {
        /// The user's name, in any case.
        username: String,
        /// The new e-mail address; an empty string (`--email ""`) clears it.
        #[arg(long)]
        email: Option<String>,
        /// The new full name; an empty string (`--full-name ""`) clears it.
        #[arg(long)]
        full_name: Option<String>,
        /// The new comma-separated scopes (`me`, `items`, `admin`), replacing the current ones.
        /// Taking `admin` from the last active admin is refused.
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
    },
    /// Clear every failed-login count and block of a user's account, from every address: the
    /// user can log in at once.
    Unlock {
        /// The user's name, in any case.
        username: String,
    },
    /// Disable a user: their tokens stop working at their next request.
    Disable { username: String },
    /// Enable a disabled user. Their sessions resume: end them first with `users logout` if the
    /// account was compromised.
    Enable { username: String },
    /// End every session of a user: their access and refresh tokens are refused from the next
    /// request on, on every instance (e.g. a compromised account, before or after `disable`).
    Logout { username: String },
    /// Delete a user and their items.
    Delete { username: String },
    /// List users, with their last login (`never` before the first).
    List,
}

#[derive(Debug, Subcommand)]
enum ApiKeysCommand {
    /// Create an API key for a user and print it (the only time it is shown: only its hash is
    /// stored). It is sent as `Authorization: Bearer pcl_…` wherever an access token goes.
    Create {
        /// The user's name, in any case.
        username: String,
        /// What the key is for (1–100 characters), e.g. "nightly backup".
        #[arg(long)]
        name: String,
        /// Comma-separated scopes, each held by the user. Default: the user's, without `admin`.
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// Days until the key stops working (1–3650). Default: it never expires.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// List a user's API keys (never the keys themselves).
    List {
        /// The user's name, in any case.
        username: String,
    },
    /// Delete an API key: it is refused from the next request on, on every instance.
    Delete {
        /// The key's id, as `api-keys list` shows it.
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List the signing keys. The current key of each algorithm signs on the instances whose
    /// PORTCULLIS_SIGNING_ALGORITHM is that algorithm; active ones verify there; retired ones
    /// are refused. Every key not retired is published.
    List,
    /// Create a signing key; every instance configured with its algorithm signs new tokens with
    /// it from its next login on (the others only publish it). Tokens signed with older keys
    /// stay valid until those keys are retired. Refused when the configured JWT secret does not
    /// open the newest stored key.
    Rotate {
        /// Algorithm of the new key. Default: PORTCULLIS_SIGNING_ALGORITHM when it is EdDSA or
        /// ES256, else EdDSA.
        #[arg(long, value_enum)]
        algorithm: Option<KeyAlgorithm>,
        /// Create the key even though the configured JWT secret does not open the newest stored
        /// key: for a secret changed on purpose. Instances still on the old secret keep signing
        /// with the newest key they can open.
        #[arg(long)]
        force: bool,
    },
    /// Retire a signing key: the tokens it signed are refused from the next request on.
    Retire {
        /// The key's id, as `keys list` shows it (a token's `kid` header). It may begin with
        /// `-` (it is base64url).
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

/// Runs the command line and maps any failure to a message and exit code 1.
pub fn main() -> ExitCode {
    crate::memory::configure_allocator();
    let cli = Cli::parse();
    let _log_guard = match crate::telemetry::init(&cli.config.log, cli.config.log_format) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command {
        Command::Openapi => {
            print!("{}", crate::api::openapi_document());
            Ok(())
        }
        Command::Serve { bind, demo } => serve(&config, bind, demo).await,
        Command::Migrate => {
            let store = connect(&config).await?;
            println!(
                "migrations applied to {}",
                db::redact(&config.database().url)
            );
            drop(store);
            Ok(())
        }
        Command::Users(command) => users(&config, command).await,
        Command::Keys(command) => signing_keys(&config, command).await,
        Command::ApiKeys(command) => api_keys(&config, command).await,
        Command::Audit {
            user,
            kind,
            since,
            limit,
            json,
        } => {
            let store = connect(&config).await?;
            let filter =
                audit_filter(&store, user.as_deref(), kind.as_deref(), since.as_deref()).await?;
            show_audit_events(&store, &filter, limit, json).await
        }
    }
}

/// The filter `portcullis audit`'s options ask for.
async fn audit_filter(
    store: &Store,
    user: Option<&str>,
    kind: Option<&str>,
    since: Option<&str>,
) -> anyhow::Result<db::AuditFilter> {
    let user_id = match user {
        Some(name) => Some(accounts::find_user(store, name).await?.id),
        None => None,
    };
    let kind = kind
        .map(|text| {
            AuditEventType::parse(text).ok_or_else(|| {
                let known: Vec<&str> = AuditEventType::ALL.iter().map(|k| k.as_str()).collect();
                anyhow::anyhow!("unknown event type {text:?} (known: {})", known.join(", "))
            })
        })
        .transpose()?;
    let since = since
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|at| at.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--since must be an RFC 3339 time such as 2026-12-01T00:00:00Z, not {text:?}"
                    )
                })
        })
        .transpose()?;
    Ok(db::AuditFilter {
        user_id,
        kind,
        since,
        until: None,
    })
}

/// Prints up to `limit` events matching `filter`, newest first, a page at a time.
async fn show_audit_events(
    store: &Store,
    filter: &db::AuditFilter,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    const PAGE: u32 = 200;
    if !json {
        println!(
            "{:<27}  {:<20}  {:<36}  {:<36}  {:<15}  detail",
            "occurred", "type", "user", "actor", "client"
        );
    }
    let mut left = limit;
    let mut after = None;
    while left > 0 {
        let page = crate::audit::events_page(store, filter, after.as_ref(), left.min(PAGE)).await?;
        left -= u32::try_from(page.events.len()).unwrap_or(left);
        for event in &page.events {
            if json {
                println!("{}", crate::audit::event_json(event));
            } else {
                println!(
                    "{:<27}  {:<20}  {:<36}  {:<36}  {:<15}  {}",
                    event
                        .occurred_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    event.kind.as_str(),
                    event
                        .user_id
                        .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                    event.actor.as_deref().unwrap_or("-"),
                    event.client_address.as_deref().unwrap_or("-"),
                    serde_json::Value::Object(event.detail.clone()),
                );
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(())
}

async fn serve(config: &ConfigArgs, bind: SocketAddr, demo: bool) -> anyhow::Result<()> {
    let mut settings = config.settings(bind)?;
    if demo && !bind.ip().is_loopback() {
        tracing::warn!(
            %bind,
            "--demo on an address others can reach: its admin (admin / secret3) and open signup \
             are for a local demo only"
        );
    }
    if demo && config.signup.is_none() {
        // A demo shows every part of the API; an explicit PORTCULLIS_SIGNUP=false still wins.
        settings.accounts.signup_enabled = true;
    }
    tracing::info!(database = %db::redact(&settings.database.url), "starting");
    let app = Application::build(&settings).await?;
    if demo {
        seed_demo_users(app.accounts()).await?;
    }
    let base = format!("http://{}", app.local_addr());
    // The start is over: what only it read of the binary need not stay resident.
    crate::memory::release_executable_pages();
    // The Swagger UI line comes last: scripts wait for it.
    println!("portcullis listening on {base}");
    if demo {
        let listed: Vec<String> = DEMO_USERS
            .iter()
            .map(|demo| {
                let status = match (demo.disabled, demo.admin) {
                    (true, _) => "disabled",
                    (false, true) => "admin",
                    (false, false) => "active",
                };
                format!("{} / {} ({status})", demo.username, demo.password)
            })
            .collect();
        println!("demo users: {}", listed.join(", "));
        if settings.accounts.signup_enabled {
            println!("signup: on (POST /users/signup)");
        } else {
            println!("signup: off (PORTCULLIS_SIGNUP=false)");
        }
    }
    println!("Swagger UI: {base}/docs");
    app.run_until_stopped().await
}

/// The account rules as the service applies them (its policy, its throttle keys).
async fn account_rules(config: &ConfigArgs, store: Store) -> anyhow::Result<Accounts> {
    let hasher = PasswordHasher::start(config.hashing()?).await?;
    let tokens = config.tokens()?;
    let throttle = LoginThrottle::new(
        config.throttle()?,
        secrecy::ExposeSecret::expose_secret(tokens.secret.as_ref()),
    );
    Ok(Accounts::new(store, hasher, throttle, config.accounts()?))
}

async fn connect(config: &ConfigArgs) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database()).await?;
    store.migrate().await?;
    Ok(store)
}

async fn users(config: &ConfigArgs, command: UsersCommand) -> anyhow::Result<()> {
    let store = connect(config).await?;
    match command {
        UsersCommand::Create {
            username,
            email,
            full_name,
            scopes,
            admin,
            disabled,
            password_stdin: _,
            allow_weak_password,
        } => {
            let mut scopes = parse_scopes(&scopes)?;
            if admin {
                scopes = scopes.iter().chain([Scope::Admin]).collect();
            }
            let password = read_password("create")?;
            let check = password_check(allow_weak_password);
            let user = account_rules(config, store.clone())
                .await?
                .create(
                    &AuditContext::cli(),
                    CreateUser {
                        username,
                        password,
                        email,
                        full_name,
                        scopes,
                        disabled,
                    },
                    check,
                )
                .await
                .map_err(with_policy_hint)?;
            println!("created user {} ({})", user.username, user.id);
        }
        UsersCommand::SetPassword {
            username,
            password_stdin: _,
            allow_weak_password,
        } => {
            let user = accounts::find_user(&store, &username).await?;
            let password = read_password("set-password")?;
            let ended = account_rules(config, store.clone())
                .await?
                .reset_password(
                    &AuditContext::cli(),
                    user.id,
                    password,
                    password_check(allow_weak_password),
                )
                .await
                .map_err(with_policy_hint)?;
            println!(
                "password set for user {}; ended {ended} session(s)",
                user.username
            );
        }
        UsersCommand::Update {
            username,
            email,
            full_name,
            scopes,
        } => {
            let scopes = scopes.as_deref().map(parse_scopes).transpose()?;
            let user = accounts::find_user(&store, &username).await?;
            // An empty value clears the member.
            let cleared = |value: String| (!value.is_empty()).then_some(value);
            let changes = AccountChanges {
                profile: ProfileChanges {
                    email: email.map(cleared),
                    full_name: full_name.map(cleared),
                },
                disabled: None,
                scopes,
            };
            let user = account_rules(config, store.clone())
                .await?
                .update(&AuditContext::cli(), user.id, changes)
                .await?;
            println!("updated user {}", describe(&user));
        }
        UsersCommand::Unlock { username } => {
            let user = accounts::find_user(&store, &username).await?;
            account_rules(config, store.clone())
                .await?
                .unlock_user(&AuditContext::cli(), &user)
                .await?;
            println!("unlocked user {}", user.username);
        }
        UsersCommand::Disable { ref username } | UsersCommand::Enable { ref username } => {
            let disabled = matches!(command, UsersCommand::Disable { .. });
            let user = accounts::find_user(&store, username).await?;
            let changes = AccountChanges {
                disabled: Some(disabled),
                ..AccountChanges::default()
            };
            // The last-admin rule holds here too: the API's admins would be locked out.
            account_rules(config, store.clone())
                .await?
                .update(&AuditContext::cli(), user.id, changes)
                .await?;
            let done = if disabled { "disabled" } else { "enabled" };
            println!("{done} user {username}");
        }
        UsersCommand::Logout { username } => {
            let ended = end_all_sessions(&store, &AuditContext::cli(), &username).await?;
            println!("ended {ended} session(s) of user {username}");
        }
        UsersCommand::Delete { username } => {
            let user = accounts::find_user(&store, &username).await?;
            account_rules(config, store.clone())
                .await?
                .delete(&AuditContext::cli(), user.id)
                .await?;
            println!("deleted user {username}");
        }
        UsersCommand::List => {
            // The e-mail address, of any length, comes last.
            println!(
                "{:<36}  {:<24}  {:<8}  {:<16}  {:<20}  email",
                "id", "username", "status", "scopes", "last login"
            );
            for user in accounts::list_users(&store).await? {
                println!(
                    "{:<36}  {:<24}  {:<8}  {:<16}  {:<20}  {}",
                    user.id,
                    user.username,
                    status(&user),
                    user.scopes.to_string(),
                    user.last_login_at
                        .map_or_else(|| "never".to_owned(), timestamp),
                    user.email.as_deref().unwrap_or("-"),
                );
            }
        }
    }
    Ok(())
}

async fn api_keys(config: &ConfigArgs, command: ApiKeysCommand) -> anyhow::Result<()> {
    let store = connect(config).await?;
    let context = AuditContext::cli();
    match command {
        ApiKeysCommand::Create {
            username,
            name,
            scopes,
            expires_in_days,
        } => {
            let user = accounts::find_user(&store, &username).await?;
            let scopes = scopes.as_deref().map(parse_scopes).transpose()?;
            let request = accounts::api_keys::CreateApiKey {
                name,
                scopes,
                expires_in_days,
            };
            let created =
                accounts::api_keys::create(&store, &context, user.id, &user.scopes, request)
                    .await?;
            let key = &created.key;
            eprintln!(
                "created API key {} ({:?}) of user {}: scopes \"{}\", {}",
                key.id,
                key.name,
                user.username,
                key.scopes,
                key.expires_at.map_or_else(
                    || "never expires".to_owned(),
                    |at| format!("expires {}", timestamp(at))
                ),
            );
            eprintln!("the key, shown only now (standard output):");
            println!("{}", created.text);
        }
        ApiKeysCommand::List { username } => {
            let user = accounts::find_user(&store, &username).await?;
            println!(
                "{:<36}  {:<16}  {:<20}  {:<20}  {:<20}  name",
                "id", "scopes", "created", "expires", "last used"
            );
            for key in accounts::api_keys::list(&store, user.id).await? {
                println!(
                    "{:<36}  {:<16}  {:<20}  {:<20}  {:<20}  {}",
                    key.id,
                    key.scopes.to_string(),
                    timestamp(key.created_at),
                    key.expires_at.map_or_else(|| "never".to_owned(), timestamp),
                    key.last_used_at
                        .map_or_else(|| "never".to_owned(), timestamp),
                    key.name,
                );
            }
        }
        ApiKeysCommand::Delete { id } => {
            let key = accounts::api_keys::delete(&store, &context, None, id).await?;
            println!(
                "deleted API key {} ({:?}): it is refused from now on",
                key.id, key.name
            );
        }
    }
    Ok(())
}

async fn signing_keys(config: &ConfigArgs, command: KeysCommand) -> anyhow::Result<()> {
    let store = connect(config).await?;
    match command {
        KeysCommand::List => {
            println!(
                "{:<43}  {:<9}  {:<20}  status",
                "kid", "algorithm", "created"
            );
            for key in keys::list(&store).await? {
                let status = match (key.status, key.retired_at) {
                    (KeyStatus::Retired, Some(at)) => format!("retired {}", timestamp(at)),
                    (status, _) => status.as_str().to_owned(),
                };
                println!(
                    "{:<43}  {:<9}  {:<20}  {status}",
                    key.kid,
                    key.algorithm,
                    timestamp(key.created_at),
                );
            }
        }
        KeysCommand::Rotate { algorithm, force } => {
            let tokens = config.tokens()?;
            let algorithm = algorithm.unwrap_or(KeyAlgorithm::default_for(tokens.algorithm));
            let kid = keys::rotate(&store, &tokens, algorithm, force).await?;
            println!("created signing key {kid} ({algorithm})");
            println!(
                "instances whose PORTCULLIS_SIGNING_ALGORITHM is {algorithm} sign new tokens with \
                 it from now on (the others only publish it); tokens signed with older keys stay \
                 valid until those keys are retired"
            );
        }
        KeysCommand::Retire { kid } => {
            if !keys::retire(&store, &config.tokens()?, &kid).await? {
                println!("signing key {kid} was already retired");
                return Ok(());
            }
            println!("retired signing key {kid}: the tokens it signed are refused from now on");
            let Some(retired) = store.find_signing_key(&kid).await? else {
                return Ok(());
            };
            let algorithm = retired.algorithm;
            if store.newest_active_signing_key(&algorithm).await?.is_none() {
                println!(
                    "no {algorithm} signing key is active now: instances whose \
                     PORTCULLIS_SIGNING_ALGORITHM is {algorithm} create a new one at their next login"
                );
            }
        }
    }
    Ok(())
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn status(user: &User) -> &'static str {
    if user.disabled { "disabled" } else { "active" }
}

/// A user in one line, as `users update` prints it.
fn describe(user: &User) -> String {
    format!(
        "{} ({}): email {}, full name {}, scopes \"{}\", {}",
        user.username,
        user.id,
        user.email.as_deref().unwrap_or("-"),
        user.full_name
            .as_deref()
            .map_or_else(|| "-".to_owned(), |name| format!("{name:?}")),
        user.scopes,
        status(user),
    )
}

/// `--scopes`, comma-separated as given.
fn parse_scopes(scopes: &[String]) -> anyhow::Result<ScopeSet> {
    ScopeSet::parse(&scopes.join(" "))
        .map_err(|unknown| anyhow::anyhow!("unknown scope {unknown:?} (known: me, items, admin)"))
}

fn password_check(allow_weak_password: bool) -> PasswordCheck {
    if allow_weak_password {
        PasswordCheck::Skip
    } else {
        PasswordCheck::Policy
    }
}

/// A policy refusal says how an operator skips it; other errors are left as they are.
fn with_policy_hint(err: AccountError) -> anyhow::Error {
    match err {
        AccountError::WeakPassword(_) => anyhow::anyhow!(
            "{err} (for a demo or test account only, pass --allow-weak-password to skip the policy)"
        ),
        other => other.into(),
    }
}

/// The password from standard input: everything up to the first line break.
fn read_password(command: &str) -> anyhow::Result<SecretString> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the password from standard input")?;
    let password = input.lines().next().unwrap_or("").to_owned();
    if password.is_empty() {
        anyhow::bail!(
            "no password on standard input (pipe it in, e.g. `printf '%s' \"$PASSWORD\" | portcullis users {command} …`)"
        );
    }
    Ok(SecretString::from(password))
}
