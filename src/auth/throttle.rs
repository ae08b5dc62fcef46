//! Brute-force protection for the password grant (RFC 6749 §4.3.2).
//!
//! Failed logins are counted per account *from one client address* and per client address.
//! Once either count reaches its limit, further attempts on that key are refused with 429 for a
//! delay that doubles with every further failure (up to a ceiling); a correct password is
//! refused too while blocked, so the block is no oracle. Keying the account count by address
//! means an attacker elsewhere cannot lock the real user out. Counts live in the database, so
//! every instance sharing it enforces the same limits.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::{config::ThrottleSettings, db::Store, db::StoreError, domain::Username};

/// The throttling keys of one login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptKeys {
    account: String,
    address: String,
}

impl AttemptKeys {
    pub fn new(username: &str, client: IpAddr) -> Self {
        let address = address_key(client);
        // A username that cannot exist shares one key per address: it can only ever fail.
        let account = Username::parse(username)
            .map(|name| name.normalized())
            .unwrap_or_else(|_| "\u{0}invalid".into());
        Self {
            account: format!("account|{address}|{account}"),
            address: format!("address|{address}"),
        }
    }

    fn both(&self) -> [String; 2] {
        [self.account.clone(), self.address.clone()]
    }
}

/// IPv4 addresses as they are; IPv6 by their /64 prefix, which one client usually holds whole.
fn address_key(client: IpAddr) -> String {
    match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[derive(Debug, Clone)]
pub struct LoginThrottle {
    settings: ThrottleSettings,
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings) -> Self {
        Self { settings }
    }

    /// When the attempt is blocked, until when.
    pub async fn blocked_until(
        &self,
        store: &Store,
        keys: &AttemptKeys,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        if !self.settings.enabled {
            return Ok(None);
        }
        store.blocked_until(&keys.both(), Utc::now()).await
    }

    /// Counts a failed login; blocks the keys whose count reached its limit.
    pub async fn record_failure(
        &self,
        store: &Store,
        keys: &AttemptKeys,
    ) -> Result<(), StoreError> {
        if !self.settings.enabled {
            return Ok(());
        }
        let now = Utc::now();
        let limits = [
            (&keys.account, self.settings.max_failures_per_account),
            (&keys.address, self.settings.max_failures_per_address),
        ];
        for (key, limit) in limits {
            let failures = store
                .record_login_failure(key, now, self.settings.window)
                .await?;
            if let Some(delay) = self.delay(failures, limit) {
                let until = now + delay;
                store.block_logins(key, until).await?;
                tracing::warn!(
                    key = key.as_str(),
                    failures,
                    blocked_for_seconds = delay.num_seconds(),
                    "login throttled after repeated failures"
                );
            }
        }
        Ok(())
    }

    /// Forgets the account's failures from this address after a successful login.
    pub async fn record_success(
        &self,
        store: &Store,
        keys: &AttemptKeys,
    ) -> Result<(), StoreError> {
        if !self.settings.enabled {
            return Ok(());
        }
        store.clear_login_failures(&keys.account).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleSettings {
            enabled: true,
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            base_delay: chrono::Duration::seconds(1),
            max_delay: chrono::Duration::seconds(900),
            window: chrono::Duration::seconds(900),
        })
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
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let there: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            AttemptKeys::new("JohnDoe", here),
            AttemptKeys::new("johndoe", here)
        );
        assert_ne!(
            AttemptKeys::new("johndoe", here),
            AttemptKeys::new("johndoe", there)
        );
        assert_eq!(
            AttemptKeys::new("johndoe", here).address,
            "address|192.0.2.1"
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(address_key(a), "2001:db8:1:2::/64");
        assert_eq!(address_key(a), address_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.1");
    }

    #[test]
    fn impossible_usernames_share_one_bounded_key() {
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let long = AttemptKeys::new(&"x".repeat(10_000), here);
        assert_eq!(long, AttemptKeys::new("with space", here));
        assert!(long.account.len() < 200);
    }
}
