//! A small document store built to run as N identical replicas behind one MySQL-compatible
//! database and one shared data directory.

pub mod configuration;
pub mod error;
pub mod healthcheck;
pub mod log_contract;
pub mod metrics;
pub mod migrate;
pub mod routes;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
