//! The machine the xtask runs on: Docker's preflight, host packages and tools, the images, and
//! the throwaway MariaDB for the api's tests.

pub mod api_variant;
pub mod dbserver;
pub mod images;
pub mod preflight;
pub mod provision;
pub mod schemathesis;
pub mod slow_api;
pub mod testdb;
