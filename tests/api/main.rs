//! Black-box API tests: each test starts the real server on port 0 with a fresh database
//! (SQLite, or PostgreSQL when `TEST_DATABASE_URL` is set) and talks HTTP to it.

mod accounts;
mod admin;
mod api_keys;
mod audit;
mod bounds;
mod browsers;
#[path = "../common/mod.rs"]
mod common;
mod concurrency;
mod connections;
mod faults;
mod helpers;
mod hostile;
mod housekeeping;
mod item_pages;
mod items;
mod keys;
mod metrics;
mod openapi;
mod protected;
mod refresh;
mod request_ids;
mod sessions;
mod throttle;
mod token;
mod usernames;
