//! Login throttling and the bounded hashing queue, as clients see them.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const THROTTLED: &str = "Too many login attempts, retry later";

/// A server that throttles after 3 failures per account and address, 6 per address, and
/// trusts `X-Forwarded-For` for the client address (so tests can play several clients).
async fn throttled_app() -> TestApp {
    spawn_app_configured(|settings| {
        settings.throttle.enabled = true;
        settings.throttle.max_failures_per_account = 3;
        settings.throttle.max_failures_per_address = 6;
        settings.client_ip_header = Some("x-forwarded-for".parse().unwrap());
    })
    .await
}

/// A password login from `client`, as the trusted proxy names it in `X-Forwarded-For`.
fn login_from<'a>(client: &str, username: &'a str, password: &'a str) -> Login<'a> {
    Login::new(username, password).header("X-Forwarded-For", format!("203.0.113.250, {client}"))
}

/// Checks the 429 of a throttled login; returns its `Retry-After`.
fn assert_throttled(answer: &Answer) -> u64 {
    assert_eq!(answer.status, 429, "{}", answer.text);
    let retry_after: u64 = answer
        .header("retry-after")
        .expect("a 429 says when to retry")
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(
        answer.body,
        json!({"detail": THROTTLED, "error": "invalid_request", "error_description": THROTTLED})
    );
    retry_after
}

#[tokio::test]
async fn repeated_failures_for_an_account_block_even_the_right_password() {
    let app = throttled_app().await;
    app.create_user("johndoe", "secret").await;
    for _ in 0..3 {
        assert_eq!(
            app.post_login(login_from("198.51.100.1", "johndoe", "wrong"))
                .await
                .status,
            401
        );
    }

    assert_throttled(
        &app.post_login(login_from("198.51.100.1", "johndoe", "secret"))
            .await,
    );
    assert_throttled(
        &app.post_login(login_from("198.51.100.1", "JohnDoe", "wrong"))
            .await,
    );
}

#[tokio::test]
async fn an_attacker_elsewhere_cannot_lock_the_real_user_out() {
    let app = throttled_app().await;
    app.create_user("johndoe", "secret").await;
    for _ in 0..5 {
        let _ = app
            .post_login(login_from("198.51.100.66", "johndoe", "guess"))
            .await;
    }
    assert_throttled(
        &app.post_login(login_from("198.51.100.66", "johndoe", "secret"))
            .await,
    );

    let answer = app
        .post_login(login_from("192.0.2.10", "johndoe", "secret"))
        .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn an_address_failing_on_many_accounts_is_blocked_for_all() {
    let app = throttled_app().await;
    app.create_user("victim", "secret").await;
    for n in 0..6 {
        let answer = app
            .post_login(login_from("198.51.100.9", &format!("user{n}"), "guess"))
            .await;
        assert_eq!(answer.status, 401);
    }

    assert_throttled(
        &app.post_login(login_from("198.51.100.9", "victim", "secret"))
            .await,
    );
    assert_eq!(
        app.post_login(login_from("192.0.2.10", "victim", "secret"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_successful_login_forgets_earlier_failures() {
    let app = throttled_app().await;
    app.create_user("johndoe", "secret").await;
    for _ in 0..2 {
        assert_eq!(
            app.post_login(login_from("198.51.100.1", "johndoe", "wrong"))
                .await
                .status,
            401
        );
    }
    assert_eq!(
        app.post_login(login_from("198.51.100.1", "johndoe", "secret"))
            .await
            .status,
        200
    );
    for _ in 0..2 {
        assert_eq!(
            app.post_login(login_from("198.51.100.1", "johndoe", "wrong"))
                .await
                .status,
            401
        );
    }
    assert_eq!(
        app.post_login(login_from("198.51.100.1", "johndoe", "secret"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_block_grows_with_each_failure_after_it_ends() {
    let app = throttled_app().await;
    app.create_user("johndoe", "secret").await;
    for _ in 0..3 {
        let _ = app
            .post_login(login_from("198.51.100.1", "johndoe", "wrong"))
            .await;
    }
    let first = assert_throttled(
        &app.post_login(login_from("198.51.100.1", "johndoe", "wrong"))
            .await,
    );
    assert_eq!(first, 1, "the first block lasts the base delay");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        app.post_login(login_from("198.51.100.1", "johndoe", "wrong"))
            .await
            .status,
        401
    );
    let second = assert_throttled(
        &app.post_login(login_from("198.51.100.1", "johndoe", "wrong"))
            .await,
    );
    assert_eq!(second, 2, "each further failure doubles the block");
}

#[tokio::test]
async fn throttling_is_off_when_configured_off() {
    let app = spawn_app().await;
    app.create_user("johndoe", "secret").await;
    for _ in 0..30 {
        assert_eq!(app.post_login(Login::new("johndoe", "x")).await.status, 401);
    }
    assert_eq!(
        app.post_login(Login::new("johndoe", "secret")).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hashing_queue_is_answered_at_once_with_503() {
    let app = spawn_app_configured(|settings| {
        // One slow hash at a time, one waiting: a burst of logins must overflow.
        settings.hashing.workers = std::num::NonZeroUsize::MIN;
        settings.hashing.queue = 1;
        settings.hashing.memory_kib = 65_536;
        settings.hashing.iterations = 4;
    })
    .await;
    app.create_user("johndoe", "secret").await;

    let attempts = (0..16).map(|_| tokio::spawn(send(right_password(&app))));
    let mut busy = Vec::new();
    let mut ok = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        let answer = attempt.await.unwrap();
        match answer.status.as_u16() {
            200 => ok += 1,
            503 => busy.push(answer),
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 1, "the first logins are served");
    let answer = busy.pop().expect("a burst beyond the queue gets 503");
    assert_eq!(answer.header("retry-after"), Some("1"));
    // Shedding: a client told to come back later does not keep its connection meanwhile.
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(
        answer.body,
        json!({
            "detail": "Service busy, retry later",
            "error": "temporarily_unavailable",
            "error_description": "Service busy, retry later",
        })
    );
}

#[test]
fn the_document_declares_the_429_and_503_of_the_token_endpoint() {
    let doc: Value = serde_json::from_str(&portcullis::api::openapi_document()).unwrap();
    let responses = &doc["paths"]["/token"]["post"]["responses"];
    for status in ["429", "503"] {
        assert_eq!(
            responses[status]["content"]["application/json; charset=utf-8"]["schema"]["$ref"],
            "#/components/schemas/TokenErrorBody",
            "{status}"
        );
        assert!(
            responses[status]["headers"]["Retry-After"].is_object(),
            "{status}"
        );
    }
}

const TOO_MANY_REQUESTS: &str = "Too many requests, retry later";

/// `johndoe`'s right password, as a request of its own (for bursts of them).
fn right_password(app: &TestApp) -> reqwest::RequestBuilder {
    app.request(Method::POST, "/token")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("username=johndoe&password=secret")
}

/// Sends `count` logins at once from 127.0.0.1 (`username(n)` for the n-th) and, once the
/// first 429 is back (or every attempt is answered), the right password for `johndoe`.
/// Returns the statuses of the burst and the answer to the right password.
async fn burst_then_right_password(
    app: &TestApp,
    count: usize,
    username: impl Fn(usize) -> String,
) -> (Vec<Answer>, Answer) {
    let (first_429, mut seen) = tokio::sync::watch::channel(false);
    let first_429 = std::sync::Arc::new(first_429);
    let attempts: Vec<_> = (0..count)
        .map(|n| {
            let request = app
                .request(Method::POST, "/token")
                .form(&[("username", username(n).as_str()), ("password", "wrong")]);
            let first_429 = std::sync::Arc::clone(&first_429);
            tokio::spawn(async move {
                let answer = send(request).await;
                if answer.status == 429 {
                    first_429.send_replace(true);
                }
                answer
            })
        })
        .collect();
    let all_done = async {
        let mut responses = Vec::new();
        for attempt in attempts {
            responses.push(attempt.await.unwrap());
        }
        responses
    };
    tokio::pin!(all_done);
    // Inside the burst: as soon as one attempt was refused, while others may still hash.
    let right = tokio::select! {
        seen = seen.wait_for(|seen| *seen) => {
            // Not held while logging in: the burst's senders need it.
            drop(seen);
            app.post_login(Login::new("johndoe", "secret")).await
        }
        responses = &mut all_done => {
            let right = app.post_login(Login::new("johndoe", "secret")).await;
            return (responses, right);
        }
    };
    (all_done.await, right)
}

async fn burst_settings(max_per_account: u32, max_per_address: u32) -> TestApp {
    spawn_app_configured(|settings| {
        settings.throttle.enabled = true;
        settings.throttle.max_failures_per_account = max_per_account;
        settings.throttle.max_failures_per_address = max_per_address;
        // Long enough that no block ends during the test, however slow the machine.
        settings.throttle.base_delay = chrono::Duration::seconds(120);
        settings.throttle.max_delay = chrono::Duration::seconds(900);
    })
    .await
}

fn count_statuses(answers: &[Answer]) -> (usize, usize) {
    let (mut unauthorized, mut throttled) = (0, 0);
    for answer in answers {
        match answer.status.as_u16() {
            401 => unauthorized += 1,
            429 => {
                throttled += 1;
                assert_throttled(answer);
            }
            other => panic!("unexpected status {other}"),
        }
    }
    (unauthorized, throttled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_guesses_gets_no_more_checks_than_the_account_limit() {
    // Arrange: 5 failures per account and address, many more per address.
    let app = burst_settings(5, 1000).await;
    app.create_user("johndoe", "secret").await;

    // Act: 60 wrong passwords at once, then the right one inside the burst.
    let (burst, right) = burst_then_right_password(&app, 60, |_| "johndoe".into()).await;

    // Assert: exactly the limit was checked; the rest, and the right password, are refused.
    let (unauthorized, throttled) = count_statuses(&burst);
    assert_eq!((unauthorized, throttled), (5, 55));
    let retry_after = assert_throttled(&right);
    assert!(
        retry_after > 60,
        "the block set by the 5th attempt: {retry_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_guesses_over_many_accounts_gets_no_more_checks_than_the_address_limit()
 {
    // Arrange: 6 failures per address, whatever the accounts.
    let app = burst_settings(5, 6).await;
    app.create_user("johndoe", "secret").await;

    // Act: 60 wrong passwords for 60 accounts at once, then the right one for johndoe.
    let (burst, right) = burst_then_right_password(&app, 60, |n| format!("user{n}")).await;

    // Assert
    let (unauthorized, throttled) = count_statuses(&burst);
    assert_eq!((unauthorized, throttled), (6, 54));
    assert_throttled(&right);
}

#[tokio::test]
async fn a_block_is_remembered_after_it_ends() {
    // Arrange: the window equals the longest block (the default's shape: 900 s and 900 s).
    let app = spawn_app_configured(|settings| {
        settings.throttle.enabled = true;
        settings.throttle.max_failures_per_account = 3;
        // Seconds, not fractions: the two guesses after the block must both fall within the
        // window that follows it, even on a slow, busy machine.
        settings.throttle.base_delay = chrono::Duration::seconds(4);
        settings.throttle.max_delay = chrono::Duration::seconds(4);
        settings.throttle.window = chrono::Duration::seconds(4);
    })
    .await;
    app.create_user("johndoe", "secret").await;
    for _ in 0..3 {
        let answer = app.post_login(Login::new("johndoe", "wrong")).await;
        assert_eq!(answer.status, 401);
    }
    assert_throttled(&app.post_login(Login::new("johndoe", "wrong")).await);

    // Act: once the block has ended, the count is still there: one more guess, then blocked.
    tokio::time::sleep(Duration::from_millis(4300)).await;
    let after_block = app.post_login(Login::new("johndoe", "wrong")).await;
    let next = app.post_login(Login::new("johndoe", "wrong")).await;

    // Assert
    assert_eq!(after_block.status, 401);
    assert_throttled(&next);
}

/// A server trusting `X-Forwarded-For`, throttling after 3 failures per account and address,
/// 6 per address (an IPv6 /64) and 12 per IPv6 /48.
async fn ipv6_app() -> TestApp {
    spawn_app_configured(|settings| {
        settings.throttle.enabled = true;
        settings.throttle.max_failures_per_account = 3;
        settings.throttle.max_failures_per_address = 6;
        settings.throttle.max_failures_per_ipv6_48 = 12;
        settings.client_ip_header = Some("x-forwarded-for".parse().unwrap());
    })
    .await
}

#[tokio::test]
async fn guesses_spread_over_the_64s_of_one_ipv6_48_are_throttled_together() {
    // Arrange
    let app = ipv6_app().await;
    app.create_user("johndoe", "secret").await;

    // Act: 12 guesses, each from another /64 of 2001:db8:1::/48 (each /64 far below its limit).
    for n in 0..12 {
        let answer = app
            .post_login(login_from(
                &format!("2001:db8:1:{n:x}::1"),
                "johndoe",
                "guess",
            ))
            .await;
        assert_eq!(answer.status, 401, "guess {n}");
    }

    // Assert: the whole /48 is blocked, a fresh /64 of it included, even for the right password.
    assert_throttled(
        &app.post_login(login_from("2001:db8:1:ff::1", "johndoe", "secret"))
            .await,
    );
    assert_throttled(
        &app.post_login(login_from("2001:db8:1:ff::1", "other", "guess"))
            .await,
    );
    // Another /48 is not.
    let elsewhere = app
        .post_login(login_from("2001:db8:2::1", "johndoe", "secret"))
        .await;
    assert_eq!(elsewhere.status, 200);
}

#[tokio::test]
async fn an_ipv6_64_is_throttled_as_one_address() {
    let app = ipv6_app().await;
    for n in 0..6 {
        let answer = app
            .post_login(login_from(
                &format!("2001:db8:1:2::{:x}", n + 1),
                &format!("user{n}"),
                "guess",
            ))
            .await;
        assert_eq!(answer.status, 401);
    }
    assert_throttled(
        &app.post_login(login_from("2001:db8:1:2:ffff::9", "user9", "guess"))
            .await,
    );
    let next_64 = app
        .post_login(login_from("2001:db8:1:3::1", "user9", "guess"))
        .await;
    assert_eq!(next_64.status, 401);
}

#[tokio::test]
async fn the_throttle_stores_no_username_and_purges_expired_counts() {
    // Arrange: a password typed into the username box.
    let app = throttled_app().await;
    for client in ["198.51.100.1", "2001:db8:5::1"] {
        let answer = app
            .post_login(login_from(client, "Correct-Horse-Battery", "x"))
            .await;
        assert_eq!(answer.status, 401);
    }
    app.create_user("johndoe", "secret").await;
    assert_eq!(
        app.post_login(login_from("198.51.100.2", "johndoe", "secret"))
            .await
            .status,
        200
    );

    // Assert: what is stored does not tell the name.
    let keys = app.store.login_throttle_keys().await.unwrap();
    assert!(keys.len() >= 5, "{keys:?}");
    for key in &keys {
        let key = key.to_lowercase();
        assert!(!key.contains("horse") && !key.contains("johndoe"), "{key}");
    }

    // Act: a purge now keeps them; one after their window deletes them.
    let window = app.settings.throttle.window;
    let minute = chrono::Duration::minutes(1);
    let kept = app
        .store
        .purge_login_counts(
            chrono::Utc::now(),
            window,
            minute,
            chrono::Duration::days(30),
        )
        .await
        .unwrap();
    let purged = app
        .store
        .purge_login_counts(
            chrono::Utc::now() + window + minute,
            window,
            minute,
            chrono::Duration::days(30),
        )
        .await
        .unwrap();
    assert_eq!(kept, 0);
    assert_eq!(purged, keys.len() as u64);
    assert!(app.store.login_throttle_keys().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_blocked_count_is_not_purged_before_its_block_has_ended() {
    let app = throttled_app().await;
    for _ in 0..3 {
        let _ = app
            .post_login(login_from("198.51.100.1", "johndoe", "wrong"))
            .await;
    }
    // A block far longer than the window: still kept a window after the last failure.
    let window = app.settings.throttle.window;
    let keys = app.store.login_throttle_keys().await.unwrap();
    let account = keys.iter().find(|key| key.starts_with("account|")).unwrap();
    // One more failure once the first block (1 s) has ended, blocking for three windows.
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    let reserved = app
        .store
        .reserve_login_attempt(account, 3, later, window, |_| Some(window * 3))
        .await
        .unwrap();
    assert_eq!(reserved, Some(4));
    let purged = app
        .store
        .purge_login_counts(
            chrono::Utc::now() + window * 2,
            window,
            chrono::Duration::minutes(1),
            chrono::Duration::days(30),
        )
        .await
        .unwrap();
    assert_eq!(
        purged, 2,
        "only the address count and the account's count from every address"
    );
    assert!(
        app.store
            .login_blocked_until(account)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn an_impossible_username_is_refused_like_an_unknown_one_with_the_throttle_on() {
    // On PostgreSQL the throttle's key once held a NUL byte here: 500.
    let app = throttled_app().await;
    for username in ["bad name", "bad\u{0}name", &"x".repeat(300)] {
        let answer = app
            .post_login(login_from("198.51.100.1", username, "x"))
            .await;
        assert_eq!(answer.status, 401, "{username:?}");
        assert_incorrect_credentials(&answer, &format!("{username:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_gets_only_so_many_successful_logins_a_minute() {
    // Arrange: 3 successful logins per account per minute.
    let app = spawn_app_configured(|settings| {
        settings.throttle.enabled = true;
        settings.throttle.max_successes_per_account_per_minute = 3;
        // Concurrent attempts hold places in the failure counts: leave room for all 10.
        settings.throttle.max_failures_per_account = 20;
    })
    .await;
    app.create_user("johndoe", "secret").await;
    app.create_user("janedoe", "secret").await;

    // Act: 10 right passwords at once, then one from another address.
    let attempts: Vec<_> = (0..10)
        .map(|_| tokio::spawn(send(right_password(&app))))
        .collect();
    let mut ok = 0;
    let mut refused = Vec::new();
    for attempt in attempts {
        let answer = attempt.await.unwrap();
        match answer.status.as_u16() {
            200 => ok += 1,
            429 => refused.push(answer),
            other => panic!("unexpected status {other}"),
        }
    }
    let elsewhere = app
        .post_login(Login::new("JohnDoe", "secret").client(client_from("127.0.0.2")))
        .await;

    // Assert: 3 sessions; the rest refused with the 429 of the token endpoint.
    assert_eq!((ok, refused.len()), (3, 7));
    for answer in refused.into_iter().chain([elsewhere]) {
        assert_eq!(answer.status, 429);
        let retry_after: u64 = answer.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(
            answer.body,
            json!({
                "detail": TOO_MANY_REQUESTS,
                "error": "invalid_request",
                "error_description": TOO_MANY_REQUESTS,
            })
        );
    }
    let sessions = app
        .store
        .live_sessions(
            app.store
                .find_user_by_username(&portcullis::domain::Username::parse("johndoe").unwrap())
                .await
                .unwrap()
                .unwrap()
                .id,
        )
        .await
        .unwrap();
    assert_eq!(sessions.len(), 3);
    // Other accounts are not affected.
    assert_eq!(
        app.post_login(Login::new("janedoe", "secret")).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_right_passwords_for_one_account_leaves_others_served() {
    // Arrange: one worker, eight waiting, two per client; no success limit (throttle off), so
    // that only the fair share protects the others.
    let app = spawn_app_configured(|settings| {
        settings.hashing.workers = std::num::NonZeroUsize::MIN;
        settings.hashing.queue = 8;
        settings.hashing.queue_per_client = std::num::NonZeroUsize::new(2).unwrap();
    })
    .await;
    let app = std::sync::Arc::new(app);
    app.create_user("alice", "secret").await;
    app.create_user("bob", "secret").await;

    // Act: 16 connections from 127.0.0.2 log in as alice again and again; bob logs in from
    // 127.0.0.3 while they do.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (busy_seen, mut busy) = tokio::sync::watch::channel(false);
    let busy_seen = std::sync::Arc::new(busy_seen);
    let flood = client_from("127.0.0.2");
    let flooders: Vec<_> = (0..16)
        .map(|_| {
            let (app, stop, flood, busy_seen) = (
                std::sync::Arc::clone(&app),
                std::sync::Arc::clone(&stop),
                flood.clone(),
                std::sync::Arc::clone(&busy_seen),
            );
            tokio::spawn(async move {
                for _ in 0..500 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let status = app
                        .post_login(Login::new("alice", "secret").client(flood.clone()))
                        .await
                        .status;
                    if status == 503 {
                        busy_seen.send_replace(true);
                    }
                }
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(60), busy.wait_for(|seen| *seen))
        .await
        .expect("the flood fills alice's share")
        .unwrap();
    let bob = client_from("127.0.0.3");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            app.post_login(Login::new("bob", "secret").client(bob.clone()))
                .await
                .status
                .as_u16(),
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for flooder in flooders {
        flooder.await.unwrap();
    }

    // Assert
    assert_eq!(statuses, [200; 5]);
}

#[tokio::test]
async fn one_round_trip_counts_every_key_and_a_blocked_one_counts_nothing() {
    let app = throttled_app().await;
    let now = chrono::Utc::now();
    let window = chrono::Duration::minutes(15);
    let block = |count: u32, limit: u32| (count >= limit).then(|| chrono::Duration::minutes(1));
    for expected in 1..=3 {
        let counts = app
            .store
            .reserve_login_attempts(&[("test|blocked", 3)], now, window, block)
            .await
            .unwrap();
        assert_eq!(counts, [Some(expected)]);
    }
    let counts = app
        .store
        .reserve_login_attempts(
            &[("test|first", 3), ("test|blocked", 3), ("test|last", 5)],
            now,
            window,
            block,
        )
        .await
        .unwrap();
    assert_eq!(counts, [Some(1), None, Some(1)]);
    let again = app
        .store
        .reserve_login_attempts(&[("test|last", 5), ("test|first", 3)], now, window, block)
        .await
        .unwrap();
    assert_eq!(again, [Some(2), Some(2)]);
}

#[tokio::test]
async fn an_attempt_refused_by_one_count_gives_its_place_in_the_others_back() {
    let app = throttled_app().await;
    // The address fails on six accounts that do not exist: blocked for every account.
    for n in 0..6 {
        let answer = app
            .post_login(login_from("198.51.100.7", &format!("nobody{n}"), "wrong"))
            .await;
        assert_eq!(answer.status, 401, "{}", answer.text);
    }
    let before = app.store.login_throttle_keys().await.unwrap();
    let answer = app
        .post_login(login_from("198.51.100.7", "johndoe", "secret"))
        .await;
    assert_throttled(&answer);
    // The refused attempt's own counts of johndoe (from this address, and from everywhere)
    // hold nothing: the next reservation of each is the first.
    let new_keys: Vec<String> = app
        .store
        .login_throttle_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|key| !before.contains(key))
        .collect();
    assert_eq!(new_keys.len(), 2, "{new_keys:?}");
    for key in &new_keys {
        let count = app
            .store
            .reserve_login_attempt(
                key,
                100,
                chrono::Utc::now(),
                chrono::Duration::minutes(15),
                |_| None,
            )
            .await
            .unwrap();
        assert_eq!(count, Some(1), "{key}");
    }
}
