//! Brute-force protection for the password grant (RFC 6749 §4.3.2).
//!
//! Failed logins are counted per account *from one client address*, per client address and,
//! for IPv6, per /48 (one site, which can spread its guesses over 65,536 /64s). Each attempt
//! *reserves* its place in every count with one atomic statement before the password is
//! checked, so a burst of concurrent guesses cannot outrun the count: at most the limit is ever
//! hashed, on every instance sharing the database. Once a count reaches its limit, attempts on
//! that key are refused with 429 for a delay that doubles with every further failure (up to a
//! ceiling); a correct password is refused too while blocked, so the block is no oracle. A
//! success clears the account's count and gives back its place in the address counts. Keying
//! the account count by address means an attacker elsewhere cannot lock the real user out.
//!
//! A guesser spread over many addresses is met by one more count, of the account's failures
//! from every address together (`PORTCULLIS_LOGIN_MAX_FAILURES_PER_ACCOUNT`): beyond it the
//! account is refused to every address except those that logged in to it successfully within
//! the last 30 days, so its owner keeps working while the guesser is shut out.
//! `LoginThrottle::unlock` (the admin API's and the CLI's unlock) clears it.
//!
//! Usernames are never stored or logged: the database holds an HMAC of the normalized name
//! under a key derived from the JWT secret (what was typed is often a password), and rows are
//! purged once their window has passed.
//!
//! Successful logins are limited per account per minute too: each starts a session, and a
//! flood of them would fill the database.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use hkdf::hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::{
    config::ThrottleSettings,
    db::{LoginCounts, Store, StoreError},
    domain::Username,
};

/// Domain separation for the username key derived from the JWT secret.
const NAME_KEY_INFO: &[u8] = b"portcullis login-throttle username v1";
/// Successful logins are counted over fixed windows of this length.
pub const SUCCESS_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
/// Signups from one address are counted over fixed windows of this length.
pub const SIGNUP_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// How long an address that logged in to an account is spared that account's block from
/// every address.
pub const KNOWN_ADDRESS_MEMORY: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// The key of the signups from one address (as the throttle counts addresses).
fn signup_key(client: IpAddr) -> String {
    format!("signup|{}", address_key(client))
}

/// What a failure count is kept for; each has its own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// One IPv6 /48, every account.
    Site,
    /// One address (IPv4) or /64 (IPv6), every account.
    Address,
    /// One account from every address together; addresses that logged in to it before are
    /// spared its block.
    AccountEverywhere,
    /// One account from one address.
    Account,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Site => "ipv6_48",
            Scope::Address => "address",
            Scope::AccountEverywhere => "account_all",
            Scope::Account => "account",
        }
    }
}

/// The throttling keys of one login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptKeys {
    /// Broadest first: a blocked site or address is refused before its narrower counts move.
    failures: Vec<(Scope, String)>,
    /// The account's successful logins, from every address.
    successes: String,
    /// Who shares the hashing pool fairly: the address, and the account.
    clients: [String; 2],
    /// For logs: the address as counted (never the name).
    address: String,
    /// The HMAC of the account's name, which its rows are keyed by.
    account: String,
    /// Set by [`LoginThrottle::admit`] when the account's block from every address was
    /// waived for this address (it logged in before): that count holds no place of it.
    spared: bool,
}

impl AttemptKeys {
    fn account(&self) -> &str {
        self.failures
            .iter()
            .find(|(scope, _)| *scope == Scope::Account)
            .map(|(_, key)| key.as_str())
            .expect("every attempt has an account key")
    }

    /// The counts this attempt holds a place in.
    fn reserved(&self) -> impl Iterator<Item = (Scope, &str)> {
        self.failures
            .iter()
            .filter(|(scope, _)| !(self.spared && *scope == Scope::AccountEverywhere))
            .map(|(scope, key)| (*scope, key.as_str()))
    }

    /// The clients whose share of the hashing pool this attempt uses.
    pub fn hashing_clients(&self) -> &[String] {
        &self.clients
    }
}

/// Whether an attempt may check its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It holds a place in every count: `failed`, `succeeded` or `abandoned` must follow.
    Admitted,
    /// Blocked; retry after this many seconds.
    Refused { retry_after: u32 },
}

/// IPv4 addresses as they are; IPv6 by their /64 prefix, which one client usually holds whole.
fn address_key(client: IpAddr) -> String {
    match canonical(client) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The /48 of an IPv6 client (a site), none for IPv4.
fn site_key(client: IpAddr) -> Option<String> {
    match canonical(client) {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
fn canonical(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[derive(Clone)]
pub struct LoginThrottle {
    settings: ThrottleSettings,
    /// HMAC key for usernames, derived from the JWT secret: the database alone does not reveal
    /// which names were tried.
    name_key: [u8; 32],
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("settings", &self.settings)
            .field("name_key", &"[REDACTED]")
            .finish()
    }
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings, secret: &[u8]) -> Self {
        Self {
            settings,
            name_key: *super::derive_key(secret, NAME_KEY_INFO),
        }
    }

    /// The keys of an attempt on `username` from `client`.
    pub fn keys(&self, username: &str, client: IpAddr) -> AttemptKeys {
        let address = address_key(client);
        // A username that cannot exist shares one key per address: it can only ever fail. The
        // marker cannot collide with a real name (a NUL is not allowed in one).
        let parsed = Username::parse(username).map(|name| name.normalized());
        let possible = parsed.is_ok();
        let name = parsed.unwrap_or_else(|_| "\u{0}invalid".into());
        let account = self.name_hash(&name);
        let mut failures = Vec::with_capacity(4);
        if let Some(site) = site_key(client) {
            failures.push((Scope::Site, format!("site|{site}")));
        }
        failures.push((Scope::Address, format!("address|{address}")));
        // Not for a name that cannot exist: all of them share one key, which guessers from
        // everywhere would block for every typo (and so tell it from an unknown name).
        if possible {
            failures.push((Scope::AccountEverywhere, format!("account_all|{account}")));
        }
        failures.push((Scope::Account, format!("account|{address}|{account}")));
        AttemptKeys {
            failures,
            successes: format!("success|{account}"),
            clients: [format!("address|{address}"), format!("account|{account}")],
            address,
            account,
            spared: false,
        }
    }

    /// HMAC-SHA256 of a normalized username, lowercase hex.
    fn name_hash(&self, name: &str) -> String {
        let mut mac =
            <Hmac<Sha256>>::new_from_slice(&self.name_key).expect("HMAC takes a key of any length");
        mac.update(name.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    fn limit(&self, scope: Scope) -> u32 {
        match scope {
            Scope::Site => self.settings.max_failures_per_ipv6_48,
            Scope::Address => self.settings.max_failures_per_address,
            Scope::AccountEverywhere => self.settings.max_failures_per_account_from_all_addresses,
            Scope::Account => self.settings.max_failures_per_account,
        }
    }

    /// Reserves the attempt's place in every failure count, or says why it is refused. Counted
    /// as a failure until [`LoginThrottle::succeeded`] or [`LoginThrottle::abandoned`].
    /// An account blocked from every address is still let through from an address that logged
    /// in to it within [`KNOWN_ADDRESS_MEMORY`]: a distributed guesser cannot lock its owner
    /// out.
    pub async fn admit(
        &self,
        store: &Store,
        keys: &mut AttemptKeys,
    ) -> Result<Admission, StoreError> {
        keys.spared = false;
        if !self.settings.enabled {
            return Ok(Admission::Admitted);
        }
        let now = Utc::now();
        // Every count at once, in one round trip: an attempt that finds one of them blocked
        // gives its places in the others back below. (A failing database leaves the counts
        // the batch made before it failed: an attempt refused too many, never a guess more.)
        let reservations: Vec<(&str, u32)> = keys
            .failures
            .iter()
            .map(|(scope, key)| (key.as_str(), self.limit(*scope)))
            .collect();
        let counts = store
            .reserve_login_attempts(&reservations, now, self.settings.window, |n, limit| {
                self.delay(n, limit)
            })
            .await?;
        let mut spared = false;
        let mut blocked = None;
        for ((scope, key), count) in keys.failures.iter().zip(&counts) {
            match count {
                Some(count) => {
                    if let Some(delay) = self.delay(*count, self.limit(*scope)) {
                        tracing::warn!(
                            throttle = scope.name(),
                            client = %keys.address,
                            failures = count,
                            blocked_for_seconds = delay.num_seconds(),
                            "login throttled after repeated failures"
                        );
                    }
                }
                None if *scope == Scope::AccountEverywhere
                    && store
                        .is_known_login_address(
                            &keys.account,
                            &keys.address,
                            now - KNOWN_ADDRESS_MEMORY,
                        )
                        .await? =>
                {
                    tracing::info!(
                        client = %keys.address,
                        "account blocked from every address; let through from an address that logged in to it before"
                    );
                    spared = true;
                }
                None => {
                    blocked = Some(key);
                    break;
                }
            }
        }
        if let Some(blocked) = blocked {
            // Give back what this attempt took in the other counts.
            for ((scope, key), count) in keys.failures.iter().zip(&counts) {
                if count.is_some()
                    && let Err(err) = store.release_login_attempt(key, self.limit(*scope)).await
                    && !err.is_unavailable()
                {
                    tracing::warn!(error = %err, "could not give back a login attempt");
                }
            }
            let until = store.login_blocked_until(blocked).await?;
            return Ok(Admission::Refused {
                retry_after: retry_after(until, now),
            });
        }
        keys.spared = spared;
        Ok(Admission::Admitted)
    }

    /// The password was wrong: the reservation stands as a failure.
    pub fn failed(&self, keys: &AttemptKeys) {
        if self.settings.enabled {
            tracing::debug!(client = %keys.address, "failed login counted");
        }
    }

    /// The password was never checked (the hashing pool was busy): gives every place back.
    pub async fn abandoned(&self, store: &Store, keys: &AttemptKeys) -> Result<(), StoreError> {
        if !self.settings.enabled {
            return Ok(());
        }
        for (scope, key) in keys.reserved() {
            store.release_login_attempt(key, self.limit(scope)).await?;
        }
        Ok(())
    }

    /// The password was right: forgets the account's failures from this address, gives back
    /// the attempt's place in the other counts, and remembers the address as one that logged
    /// in to the account (the account's block from every address spares it).
    pub async fn succeeded(
        &self,
        store: &impl LoginCounts,
        keys: &AttemptKeys,
    ) -> Result<(), StoreError> {
        if !self.settings.enabled {
            return Ok(());
        }
        let releases: Vec<(&str, u32)> = keys
            .reserved()
            .filter(|(scope, _)| *scope != Scope::Account)
            .map(|(scope, key)| (key, self.limit(scope)))
            .collect();
        store.forget_attempt(keys.account(), &releases).await?;
        store
            .remember_login_address(&keys.account, &keys.address, Utc::now())
            .await
    }

    /// Clears every failed-login count and block of the account `username`, from every
    /// address, and its count of successful logins: its owner can log in at once. How many
    /// counts there were.
    /// The audit `events`, made from how many counts were cleared, are written with the change.
    pub async fn unlock(
        &self,
        store: &Store,
        username: &Username,
        events: impl FnOnce(u64) -> Vec<crate::db::AuditEvent>,
    ) -> Result<u64, StoreError> {
        store
            .clear_account_login_counts(&self.name_hash(&username.normalized()), events)
            .await
    }

    /// Forgets everything kept about the account `username` (it was deleted; its name is free
    /// for a new account, which starts afresh).
    pub async fn forget(&self, store: &Store, username: &Username) -> Result<(), StoreError> {
        // Part of the deletion, which the audit log records as such.
        self.unlock(store, username, |_| Vec::new()).await?;
        store
            .forget_login_addresses(&self.name_hash(&username.normalized()))
            .await
    }

    /// Counts a signup from `client` (fixed windows of an hour); `Refused` beyond `limit`.
    /// Counted whatever the signup's outcome but an internal failure
    /// ([`LoginThrottle::signup_abandoned`]): a name already taken counts, so that probing for
    /// taken names is limited too.
    pub async fn admit_signup(
        &self,
        store: &Store,
        client: IpAddr,
        limit: u32,
    ) -> Result<Admission, StoreError> {
        let key = signup_key(client);
        let now = Utc::now();
        match store
            .reserve_login_success(&key, limit, now, SIGNUP_WINDOW)
            .await?
        {
            Some(_) => Ok(Admission::Admitted),
            None => {
                let started = store.login_success_window(&key).await?;
                Ok(Admission::Refused {
                    retry_after: retry_after_in(started, now, SIGNUP_WINDOW),
                })
            }
        }
    }

    /// Gives back a signup's place (it failed for a reason that is not the client's).
    pub async fn signup_abandoned(&self, store: &Store, client: IpAddr) -> Result<(), StoreError> {
        store.release_window_count(&signup_key(client)).await
    }

    /// Counts a successful login to the account (which will start a session); `Refused` when
    /// the account had its share this minute.
    pub async fn admit_success(
        &self,
        store: &impl LoginCounts,
        keys: &AttemptKeys,
    ) -> Result<Admission, StoreError> {
        if !self.settings.enabled {
            return Ok(Admission::Admitted);
        }
        let now = Utc::now();
        match store
            .reserve_login_success(
                &keys.successes,
                self.settings.max_successes_per_account_per_minute,
                now,
                SUCCESS_WINDOW,
            )
            .await?
        {
            Some(_) => Ok(Admission::Admitted),
            None => {
                let started = store.login_success_window(&keys.successes).await?;
                Ok(Admission::Refused {
                    retry_after: retry_after_in(started, now, SUCCESS_WINDOW),
                })
            }
        }
    }

    /// Deletes the counts nobody needs any more (their window, and block, have passed).
    pub async fn purge(&self, store: &Store) -> Result<u64, StoreError> {
        store
            .purge_login_counts(
                Utc::now(),
                self.settings.window,
                SIGNUP_WINDOW.max(SUCCESS_WINDOW),
                KNOWN_ADDRESS_MEMORY,
            )
            .await
    }

    /// The block after `failures` failures against a limit: none below it, then the base
    /// delay doubling with each further failure, up to the ceiling.
    fn delay(&self, failures: u32, limit: u32) -> Option<chrono::Duration> {
        let excess = failures.checked_sub(limit)?;
        let factor = 2i32.checked_pow(excess.min(30)).unwrap_or(i32::MAX);
        let delay = self
            .settings
            .base_delay
            .checked_mul(factor)
            .unwrap_or(self.settings.max_delay);
        Some(delay.min(self.settings.max_delay))
    }
}

/// Whole seconds until the fixed window that started at `started` ends, at least 1 and at
/// most the window: a concurrent attempt may have started it a moment after `now` was read.
fn retry_after_in(
    started: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    window: chrono::TimeDelta,
) -> u32 {
    let longest = u32::try_from(window.num_seconds())
        .unwrap_or(u32::MAX)
        .max(1);
    retry_after(started.map(|at| at + window), now).min(longest)
}

/// Whole seconds until `until`, at least 1.
fn retry_after(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> u32 {
    let wait_ms = until
        .map_or(0, |until| (until - now).num_milliseconds())
        .max(0)
        .unsigned_abs();
    u32::try_from(wait_ms.div_ceil(1000))
        .unwrap_or(u32::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(
            ThrottleSettings {
                enabled: true,
                max_failures_per_account: 5,
                max_failures_per_address: 20,
                max_failures_per_ipv6_48: 100,
                max_failures_per_account_from_all_addresses: 100,
                max_successes_per_account_per_minute: 10,
                base_delay: chrono::Duration::seconds(1),
                max_delay: chrono::Duration::seconds(900),
                window: chrono::Duration::seconds(900),
            },
            b"a-unit-test-secret-of-at-least-32-bytes",
        )
    }

    #[test]
    fn delays_start_at_the_limit_and_double_up_to_the_ceiling() {
        let throttle = throttle();
        assert_eq!(throttle.delay(4, 5), None);
        assert_eq!(throttle.delay(5, 5), Some(chrono::Duration::seconds(1)));
        assert_eq!(throttle.delay(6, 5), Some(chrono::Duration::seconds(2)));
        assert_eq!(throttle.delay(9, 5), Some(chrono::Duration::seconds(16)));
        assert_eq!(throttle.delay(40, 5), Some(chrono::Duration::seconds(900)));
        assert_eq!(
            throttle.delay(u32::MAX, 5),
            Some(chrono::Duration::seconds(900))
        );
    }

    #[test]
    fn accounts_are_keyed_by_address_and_normalized_name() {
        let throttle = throttle();
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let there: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            throttle.keys("JohnDoe", here),
            throttle.keys("johndoe", here)
        );
        assert_ne!(
            throttle.keys("johndoe", here).account(),
            throttle.keys("johndoe", there).account()
        );
        assert_eq!(
            throttle.keys("johndoe", here).failures,
            vec![
                (Scope::Address, "address|192.0.2.1".to_owned()),
                (
                    Scope::AccountEverywhere,
                    format!("account_all|{}", throttle.name_hash("johndoe"))
                ),
                (
                    Scope::Account,
                    format!("account|192.0.2.1|{}", throttle.name_hash("johndoe"))
                ),
            ]
        );
    }

    #[test]
    fn usernames_are_stored_only_as_a_keyed_hash() {
        let throttle = throttle();
        let keys = throttle.keys("Hunter2Password", "192.0.2.1".parse().unwrap());
        let all = keys
            .failures
            .iter()
            .map(|(_, key)| key.clone())
            .chain([keys.successes.clone()])
            .chain(keys.clients.iter().cloned());
        for key in all {
            assert!(!key.to_lowercase().contains("hunter2"), "{key}");
        }
        let hash = throttle.name_hash("hunter2password");
        assert_eq!(hash.len(), 64);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        // Another secret, another hash: the database alone does not tell the name.
        let other = LoginThrottle::new(throttle.settings, b"another-secret-of-at-least-32-bytes!!");
        assert_ne!(other.name_hash("hunter2password"), hash);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_their_48() {
        let throttle = throttle();
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:ff02::3".parse().unwrap();
        assert_eq!(address_key(a), "2001:db8:1:2::/64");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        assert_eq!(site_key(a).as_deref(), Some("2001:db8:1::/48"));
        assert_eq!(site_key(a), site_key(c));
        let keys = throttle.keys("johndoe", c);
        assert_eq!(
            keys.failures[0],
            (Scope::Site, "site|2001:db8:1::/48".to_owned()),
            "the /48 is counted first"
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.1");
        assert_eq!(site_key(mapped), None);
    }

    #[test]
    fn impossible_usernames_share_one_bounded_key_without_nul() {
        let throttle = throttle();
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let long = throttle.keys(&"x".repeat(10_000), here);
        assert_eq!(long, throttle.keys("with space", here));
        assert_eq!(long, throttle.keys("bad\u{0}name", here));
        assert!(
            long.failures
                .iter()
                .all(|(scope, _)| *scope != Scope::AccountEverywhere),
            "no count from every address for a name that cannot exist"
        );
        for (_, key) in &long.failures {
            assert!(key.len() < 200);
            assert!(!key.contains('\u{0}'), "PostgreSQL text cannot hold NUL");
        }
    }

    #[test]
    fn a_window_started_just_after_now_waits_no_longer_than_the_window() {
        let now = Utc::now();
        let hour = chrono::TimeDelta::hours(1);
        let started_later = now + chrono::Duration::milliseconds(3);
        assert_eq!(retry_after_in(Some(started_later), now, hour), 3600);
        assert_eq!(
            retry_after_in(Some(now - chrono::Duration::seconds(600)), now, hour),
            3000
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let now = Utc::now();
        assert_eq!(retry_after(None, now), 1);
        assert_eq!(
            retry_after(Some(now - chrono::Duration::seconds(5)), now),
            1
        );
        assert_eq!(
            retry_after(Some(now + chrono::Duration::milliseconds(1500)), now),
            2
        );
    }
}
