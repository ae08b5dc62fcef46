//! portcullis: an OAuth 2.0 password-flow authentication API issuing JWT bearer tokens, with
//! users stored through SeaORM (SQLite or PostgreSQL) and a generated OpenAPI document.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod memory;
pub mod metrics;
pub mod server;
pub mod startup;
pub mod telemetry;
