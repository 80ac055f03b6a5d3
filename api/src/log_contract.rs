//! The startup log lines the scaling check reads from `docker compose logs --timestamps`.
//!
//! This file is the single definition of that contract. The api logs these exact strings;
//! the xtask includes this same file (`#[path]`) and builds its patterns from these constants,
//! so the two crates cannot drift apart. It must stay dependency-free for that reason.

/// Logged once the connection pool exists.
pub const POOL_CREATED: &str = "Database pool created";
/// Schema already current at startup: no lock taken.
pub const FAST_PATH: &str = "Fast path: schema up to date, no lock needed";
/// This replica won the migration lock.
pub const LOCK_ACQUIRED: &str = "Acquired migration lock";
/// Prefix of `Applied N migrations`.
pub const APPLIED_PREFIX: &str = "Applied ";
/// Suffix of `Applied N migrations`.
pub const APPLIED_SUFFIX: &str = " migrations";
/// Another replica holds the lock; this one waits (logged once per startup).
pub const WAITING: &str = "Waiting for another instance to finish migrations";
/// The schema became current while this replica waited.
pub const UP_TO_DATE_AFTER_WAIT: &str = "Schema up to date after waiting";
/// The lock was released by its holder.
pub const LOCK_RELEASED: &str = "Released migration lock";
/// The deadline passed; the process exits non-zero after this line.
pub const TIMED_OUT: &str = "Timed out waiting for schema migration";
/// Logged once the HTTP listener is bound (the replica is ready to serve).
pub const LISTENING: &str = "Listening on";

/// Starts the one line every replica logs, then exits non-zero, when `_sqlx_migrations` holds
/// a row with `success = 0` and no instance holds the lock (a leader was killed mid-migration).
/// The line goes on with the version and the repair: what to check and the SQL that clears it.
pub const DIRTY: &str = "Dirty schema: migration";
/// A stop (SIGTERM, Ctrl-C) arrived while this replica was applying migrations: it finishes
/// them, releases the lock and exits 0 instead of leaving a half-applied schema.
pub const STOP_MID_MIGRATION: &str =
    "Stop requested mid-migration; finishing the migration, then releasing the lock and exiting";

/// The `Applied N migrations` line.
pub fn applied(n: usize) -> String {
    format!("{APPLIED_PREFIX}{n}{APPLIED_SUFFIX}")
}

/// Every contract line, for tests on both sides.
pub const ALL: &[&str] = &[
    POOL_CREATED,
    FAST_PATH,
    LOCK_ACQUIRED,
    WAITING,
    UP_TO_DATE_AFTER_WAIT,
    LOCK_RELEASED,
    TIMED_OUT,
    LISTENING,
];
