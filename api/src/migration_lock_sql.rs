//! The api's migration lock name as an SQL expression, for clients outside the api.
//!
//! The api derives the name in Rust (`migrate::lock_name`, sqlx's derivation: the CRC-32 of
//! the database name times 0x3d32ad9e = 1026731422, in lower-case hex). The xtask includes
//! this file (`#[path]`) to take, hold or watch that lock from inside the database container,
//! and the api's test `api/tests/api/migration_lock.rs` runs this expression on a real
//! server and compares it with the Rust function, so the two cannot drift apart. It must stay
//! dependency-free for that reason.

/// Evaluates, on the connection's current database, to the name `migrate::lock_name` gives.
pub const MIGRATION_LOCK_SQL: &str = "LOWER(HEX(1026731422 * CRC32(DATABASE())))";
