//! The api's integration tests: one binary, a real MySQL-compatible server
//! (TEST_DATABASE_URL), a fresh database per test.

mod cli;
mod documents;
mod documents_safety;
mod errors;
mod expand_contract;
mod health;
mod helpers;
mod labels;
mod limits;
mod metrics;
mod migration_lock;
mod migration_safety;
mod migrations;
mod openapi;
mod servers;
mod shared_storage;
mod slow_clients;
mod startup;
