//! The api's integration tests: one binary, a real MySQL-compatible server
//! (TEST_DATABASE_URL), a fresh database per test.

mod cli;
mod documents;
mod errors;
mod health;
mod helpers;
mod migration_lock;
mod migrations;
mod servers;
mod shared_storage;
mod slow_clients;
mod startup;
