//! Bringing the schema up to date when N replicas start at once.
//!
//! sqlx's own MySQL locking waits forever (`GET_LOCK(name, -1)`), ignores the result and can
//! return early without releasing, and every waiting replica then takes the lock in turn. So we
//! coordinate ourselves and run sqlx's migrator with `set_locking(false)` on the one connection
//! that holds our lock. See "Migration coordination" in docs/design.md.

use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError};
use sqlx::{ConnectOptions, Connection, Executor, MySql, MySqlConnection, MySqlPool};
use tokio_util::sync::CancellationToken;

use crate::configuration::{MigrationLock, MigrationSettings};
use crate::log_contract;

/// A dedicated connection that cannot be opened in this time is an error, not a wait.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Losers poll again after a random pause in this range, so they do not stampede in step.
const RETRY_PAUSE_MS: std::ops::RangeInclusive<u64> = 250..=1000;

/// The named-lock name for a database: the same derivation as sqlx-mysql's `generate_lock_id`,
/// so `sqlx migrate run` from sqlx-cli serializes with the api. At most 16 hex digits, well
/// inside MySQL's 64-character limit.
pub fn lock_name(database_name: &str) -> String {
    const CRC_IEEE: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    // The multiplier is sqlx's ("chosen by fair dice roll"); it cannot overflow an i64.
    format!(
        "{:x}",
        0x3d32ad9e_i64 * i64::from(CRC_IEEE.checksum(database_name.as_bytes()))
    )
}

/// The migrations built into this binary (`api/migrations/`).
pub fn embedded() -> Migrator {
    sqlx::migrate!("./migrations")
}

/// How this replica's schema check went; served by `GET /instance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Won the lock and applied the missing migrations.
    Leader,
    /// Found the schema out of date, waited, and another replica (or sqlx-cli) finished it.
    Follower,
    /// Schema already current at startup; no lock taken.
    FastPath,
    /// `API_MIGRATION_LOCK=off`: ran the migrator without any lock.
    Unlocked,
}

#[derive(Debug, Clone, Serialize)]
pub struct StartupReport {
    pub role: Role,
    /// Time spent in the coordination loop (0 on the fast path).
    pub waited_ms: u64,
    /// Migrations this replica applied (with the lock off, an upper bound: see `run_unlocked`).
    pub migrations_applied: usize,
    pub lock_name: String,
    /// Versions that were missing when this replica first looked.
    pub pending_at_start: Vec<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinateError {
    #[error(
        "migration {version} ({description}) does not match the database: the checksum recorded \
         in _sqlx_migrations differs from the file built into this binary, so the file was edited \
         after it was applied; restore the original file and put the change in a new migration"
    )]
    ChecksumMismatch { version: i64, description: String },

    #[error(
        "{} {version} is marked as failed (success = 0 in _sqlx_migrations) and no \
         instance holds the migration lock {lock_name}: a migration died part-way (its runner \
         was killed). Repair: Check the schema by hand against migrations/{version}_*.sql and \
         complete or undo its changes, then run \
         `DELETE FROM _sqlx_migrations WHERE version = {version};` and restart the replicas",
        log_contract::DIRTY
    )]
    Dirty { version: i64, lock_name: String },

    #[error("stopped by a shutdown signal before the schema was current")]
    Stopped,

    #[error(
        "{}: lock {lock_name} is held by {}, pending versions {pending:?}, waited {:.1}s \
         (API_MIGRATION_DEADLINE_SECS){}",
        log_contract::TIMED_OUT,
        holder.map_or_else(|| "nobody".to_owned(), |id| format!("connection {id}")),
        waited.as_secs_f64(),
        last_error.as_ref().map_or_else(String::new, |e| format!("; last error: {e}"))
    )]
    TimedOut {
        lock_name: String,
        holder: Option<i64>,
        pending: Vec<i64>,
        waited: Duration,
        last_error: Option<String>,
    },

    #[error("database error while {doing}: {source}")]
    Database {
        doing: &'static str,
        #[source]
        source: sqlx::Error,
    },

    #[error("applying migrations failed: {0}")]
    Migrate(#[from] MigrateError),
}

impl CoordinateError {
    /// Worth another try before the deadline: the database was unreachable or dropped a
    /// connection, as during its restart. Everything else needs a person.
    fn is_transient(&self) -> bool {
        matches!(self, CoordinateError::Database { .. })
    }
}

fn db(doing: &'static str) -> impl FnOnce(sqlx::Error) -> CoordinateError {
    move |source| CoordinateError::Database { doing, source }
}

/// Bring the schema up to date, coordinating with every other replica starting at the same time.
///
/// `migrator` is a parameter so tests can pass a slow migration set; production passes
/// `sqlx::migrate!("./migrations")`. `connect` must point at the same database as `pool`.
///
/// `stop` (the shutdown signal) ends a wait at once, but never a migration being applied: that
/// one is finished and the lock released first, because MySQL commits DDL implicitly and a
/// migration cut part-way leaves a dirty schema that no replica can repair by itself.
pub async fn coordinate(
    pool: &MySqlPool,
    connect: &MySqlConnectOptions,
    mut migrator: Migrator,
    settings: &MigrationSettings,
    stop: &CancellationToken,
) -> Result<StartupReport, CoordinateError> {
    migrator.set_locking(false);
    if settings.lock == MigrationLock::Off {
        tracing::warn!(
            "API_MIGRATION_LOCK=off: migration locking is disabled; every instance that finds \
             the schema out of date runs the migrator itself"
        );
    }
    let database = match connect.get_database() {
        Some(name) => name.to_owned(),
        None => sqlx::query_scalar("SELECT DATABASE()")
            .fetch_one(pool)
            .await
            .map_err(db("reading the database name"))?,
    };
    let lock = lock_name(&database);

    // 1. Fast path: one read, no lock. A transient error sends us to the loop, which retries.
    let status = match read_applied(pool).await {
        Ok(rows) => assess(&migrator, rows.as_deref())?,
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, "could not read the schema state; retrying until the deadline");
            assess(&migrator, None)?
        }
        Err(e) => return Err(e),
    };
    if status.pending.is_empty() {
        Event::FastPath.emit();
        return Ok(StartupReport {
            role: Role::FastPath,
            waited_ms: 0,
            migrations_applied: 0,
            lock_name: lock,
            pending_at_start: Vec::new(),
        });
    }

    let coordinator = Coordinator {
        pool,
        connect,
        migrator: &migrator,
        lock,
        started: Instant::now(),
        deadline: Instant::now() + settings.deadline,
        pending_at_start: status.pending,
        stop,
    };
    match settings.lock {
        MigrationLock::On => coordinator.run_locked().await,
        MigrationLock::Off => coordinator.run_unlocked().await,
    }
}

struct Coordinator<'a> {
    pool: &'a MySqlPool,
    connect: &'a MySqlConnectOptions,
    migrator: &'a Migrator,
    lock: String,
    started: Instant,
    deadline: Instant,
    pending_at_start: Vec<i64>,
    stop: &'a CancellationToken,
}

/// One look at the schema: finished, or still waiting on these versions.
enum Attempt {
    Done(StartupReport),
    Wait(Vec<i64>),
}

impl Coordinator<'_> {
    // 2. Until the deadline: re-read, try the lock without waiting, lead or wait. A transient
    //    database error (a restart, a dropped connection) is retried like a held lock.
    async fn run_locked(self) -> Result<StartupReport, CoordinateError> {
        let mut announced_wait = false;
        loop {
            let (pending, last_error) = match self.attempt(&mut announced_wait).await {
                Ok(Attempt::Done(report)) => return Ok(report),
                Ok(Attempt::Wait(pending)) => (pending, None),
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "database error while waiting for the schema; retrying until the deadline (API_MIGRATION_DEADLINE_SECS)");
                    (self.pending_at_start.clone(), Some(e.to_string()))
                }
                Err(e) => return Err(e),
            };
            if Instant::now() >= self.deadline {
                return Err(self.timed_out(pending, last_error).await);
            }
            self.pause().await?;
        }
    }

    async fn attempt(&self, announced_wait: &mut bool) -> Result<Attempt, CoordinateError> {
        let status = assess(self.migrator, read_applied(self.pool).await?.as_deref())?;
        if status.pending.is_empty() {
            return Ok(Attempt::Done(self.followed()));
        }
        if let Some(mut conn) = self.try_lock().await? {
            let outcome = self.lead(&mut conn).await;
            if outcome.is_err() {
                // RELEASE_LOCK first: MySQL frees a closed session's named locks only when its
                // server thread gets to it, after close() has returned, so a replica polling
                // right then would still see the lock held (MariaDB frees them at once).
                let _ = release(&mut conn, &self.lock).await;
            }
            // Closing the session is what releases a named lock for certain.
            let _ = conn.close().await;
            return match outcome {
                Ok(report) => Ok(Attempt::Done(report)),
                // Nothing was applied yet: the caller retries.
                Err(e) if e.is_transient() => Err(e),
                Err(e @ CoordinateError::Dirty { .. }) => {
                    Event::Dirty(&e).emit();
                    Err(e)
                }
                Err(e) => {
                    tracing::error!(lock = %self.lock, "migration failed; closed the lock's connection so the server releases the lock");
                    Err(e)
                }
            };
        }
        if !*announced_wait {
            let holder = self.holder().await.unwrap_or(None);
            Event::Waiting {
                lock: &self.lock,
                holder,
            }
            .emit();
            *announced_wait = true;
        }
        Ok(Attempt::Wait(status.pending))
    }

    /// Holding the lock: check again on this connection, then apply what is missing.
    async fn lead(&self, conn: &mut MySqlConnection) -> Result<StartupReport, CoordinateError> {
        let status = assess(self.migrator, read_applied(&mut *conn).await?.as_deref())?;
        if let Some(version) = status.dirty {
            // We hold the lock, so nobody is migrating: a failed row is a real dirty state.
            return Err(CoordinateError::Dirty {
                version,
                lock_name: self.lock.clone(),
            });
        }
        if status.pending.is_empty() {
            // The previous holder finished between our read and our GET_LOCK. Not a leader:
            // a fresh database must show exactly one `Acquired migration lock`.
            release(conn, &self.lock).await?;
            return Ok(self.followed());
        }

        Event::LockAcquired { lock: &self.lock }.emit();
        {
            let migrating = run_migrator(self.migrator, &mut *conn);
            tokio::pin!(migrating);
            tokio::select! {
                biased;
                done = &mut migrating => done,
                () = self.stop.cancelled() => {
                    Event::StopMidMigration { pending: &status.pending }.emit();
                    migrating.await
                }
            }
        }
        .map_err(CoordinateError::Migrate)?;
        let applied = status.pending.len();
        Event::Applied(applied).emit();
        // The migrations are in: a failed release is not a failed migration, and closing the
        // connection (the caller does) releases the lock anyway.
        match release(conn, &self.lock).await {
            Ok(()) => Event::LockReleased { lock: &self.lock }.emit(),
            Err(e) => tracing::warn!(
                lock = %self.lock,
                error = %e,
                "migrations applied, but RELEASE_LOCK failed; closing the connection releases the lock"
            ),
        }
        Ok(StartupReport {
            role: Role::Leader,
            waited_ms: self.waited_ms(),
            migrations_applied: applied,
            lock_name: self.lock.clone(),
            pending_at_start: self.pending_at_start.clone(),
        })
    }

    /// `API_MIGRATION_LOCK=off`: no coordination. Racing replicas may collide on
    /// `_sqlx_migrations`' primary key or see each other's in-progress rows; such a replica
    /// retries until the schema is current or the deadline passes.
    async fn run_unlocked(self) -> Result<StartupReport, CoordinateError> {
        loop {
            let status = assess(self.migrator, read_applied(self.pool).await?.as_deref())?;
            let error = match self.connect_dedicated().await {
                Ok(mut conn) => {
                    let result = run_migrator(self.migrator, &mut conn).await;
                    let _ = conn.close().await;
                    match result {
                        Ok(()) => {
                            // Counted from our last read: if another replica applied some of
                            // these meanwhile, the migrator skipped them, so this is an upper bound.
                            let applied = status.pending.len();
                            Event::Applied(applied).emit();
                            return Ok(StartupReport {
                                role: Role::Unlocked,
                                waited_ms: self.waited_ms(),
                                migrations_applied: applied,
                                lock_name: self.lock.clone(),
                                pending_at_start: self.pending_at_start.clone(),
                            });
                        }
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            tracing::debug!(error = %error, "unlocked migration attempt failed; retrying");
            if Instant::now() >= self.deadline {
                return Err(self.timed_out(status.pending, Some(error)).await);
            }
            self.pause().await?;
        }
    }

    fn followed(&self) -> StartupReport {
        Event::UpToDateAfterWait {
            waited_ms: self.waited_ms(),
        }
        .emit();
        StartupReport {
            role: Role::Follower,
            waited_ms: self.waited_ms(),
            migrations_applied: 0,
            lock_name: self.lock.clone(),
            pending_at_start: self.pending_at_start.clone(),
        }
    }

    async fn connect_dedicated(&self) -> Result<MySqlConnection, CoordinateError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect.connect()).await {
            Ok(conn) => conn.map_err(db("opening the migration connection")),
            Err(_) => Err(CoordinateError::Database {
                doing: "opening the migration connection",
                source: sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()),
                )),
            }),
        }
    }

    /// `GET_LOCK(name, 0)` on a fresh connection: `Some(conn)` holding the lock if it returned
    /// exactly 1; otherwise the connection is closed and `None` returned.
    async fn try_lock(&self) -> Result<Option<MySqlConnection>, CoordinateError> {
        let mut conn = self.connect_dedicated().await?;
        let got: Result<Option<i64>, _> =
            sqlx::query_scalar("SELECT CAST(GET_LOCK(?, 0) AS SIGNED)")
                .bind(&self.lock)
                .fetch_one(&mut conn)
                .await;
        match got {
            Ok(Some(1)) => Ok(Some(conn)),
            Ok(_) => {
                let _ = conn.close().await;
                Ok(None)
            }
            Err(e) => {
                let _ = conn.close().await;
                Err(db("taking the migration lock")(e))
            }
        }
    }

    /// The connection id holding the lock, if any.
    async fn holder(&self) -> Result<Option<i64>, CoordinateError> {
        sqlx::query_scalar("SELECT CAST(IS_USED_LOCK(?) AS SIGNED)")
            .bind(&self.lock)
            .fetch_one(self.pool)
            .await
            .map_err(db("asking who holds the migration lock"))
    }

    // 3. Deadline reached: say what we waited for and who holds it.
    async fn timed_out(&self, pending: Vec<i64>, last_error: Option<String>) -> CoordinateError {
        let error = CoordinateError::TimedOut {
            lock_name: self.lock.clone(),
            holder: self.holder().await.unwrap_or(None),
            pending,
            waited: self.started.elapsed(),
            last_error,
        };
        Event::TimedOut(&error).emit();
        error
    }

    /// Sleep before the next look; a stop ends the wait (nothing is held while waiting).
    async fn pause(&self) -> Result<(), CoordinateError> {
        let pause = Duration::from_millis(rand::thread_rng().gen_range(RETRY_PAUSE_MS));
        let left = self.deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            () = tokio::time::sleep(pause.min(left)) => Ok(()),
            () = self.stop.cancelled() => Err(CoordinateError::Stopped),
        }
    }

    fn waited_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// `Migrator::run` goes through `Acquire`, whose future is not provably `Send` for every
/// lifetime ("implementation of `Acquire` is not general enough"), so a spawned coordinator
/// would not compile. `run_direct` is the same code on a connection, kept public by sqlx for
/// exactly this reason (see its comment in sqlx-core's migrator.rs).
async fn run_migrator(migrator: &Migrator, conn: &mut MySqlConnection) -> Result<(), MigrateError> {
    migrator.run_direct(conn).await
}

async fn release(conn: &mut MySqlConnection, lock: &str) -> Result<(), CoordinateError> {
    let released: Option<i64> = sqlx::query_scalar("SELECT CAST(RELEASE_LOCK(?) AS SIGNED)")
        .bind(lock)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("releasing the migration lock"))?;
    if released != Some(1) {
        tracing::warn!(
            lock,
            ?released,
            "RELEASE_LOCK did not report a release; closing the connection drops it anyway"
        );
    }
    Ok(())
}

/// One row of `_sqlx_migrations`.
#[derive(Debug, Clone)]
struct AppliedRow {
    version: i64,
    success: bool,
    checksum: Vec<u8>,
}

/// The migrations table, or `None` when it does not exist yet.
async fn read_applied<'e, E>(executor: E) -> Result<Option<Vec<AppliedRow>>, CoordinateError>
where
    E: Executor<'e, Database = MySql>,
{
    let rows: Result<Vec<(i64, bool, Vec<u8>)>, _> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(executor)
            .await;
    match rows {
        Ok(rows) => Ok(Some(
            rows.into_iter()
                .map(|(version, success, checksum)| AppliedRow {
                    version,
                    success,
                    checksum,
                })
                .collect(),
        )),
        Err(sqlx::Error::Database(e))
            if e.try_downcast_ref::<MySqlDatabaseError>()
                .is_some_and(|e| e.number() == 1146) =>
        {
            Ok(None) // ER_NO_SUCH_TABLE
        }
        Err(e) => Err(db("reading _sqlx_migrations")(e)),
    }
}

/// Where the database stands against the embedded migrations.
#[derive(Debug, PartialEq, Eq)]
struct Status {
    /// Embedded versions without a successful row; empty means current.
    pending: Vec<i64>,
    /// The first row marked as failed (applied by a dead leader, or in progress right now).
    dirty: Option<i64>,
}

fn assess(migrator: &Migrator, rows: Option<&[AppliedRow]>) -> Result<Status, CoordinateError> {
    let rows = rows.unwrap_or_default();
    let mut pending = Vec::new();
    for migration in migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        match rows.iter().find(|r| r.version == migration.version) {
            Some(row) if row.checksum[..] != migration.checksum[..] => {
                return Err(CoordinateError::ChecksumMismatch {
                    version: migration.version,
                    description: migration.description.to_string(),
                })
            }
            Some(row) if row.success => {}
            _ => pending.push(migration.version),
        }
    }
    let dirty = rows.iter().find(|r| !r.success).map(|r| r.version);
    Ok(Status { pending, dirty })
}

/// Every contract line the coordinator logs, in one place so a test can check the wording.
enum Event<'a> {
    FastPath,
    LockAcquired { lock: &'a str },
    Applied(usize),
    Waiting { lock: &'a str, holder: Option<i64> },
    UpToDateAfterWait { waited_ms: u64 },
    LockReleased { lock: &'a str },
    TimedOut(&'a CoordinateError),
    Dirty(&'a CoordinateError),
    StopMidMigration { pending: &'a [i64] },
}

impl Event<'_> {
    fn emit(&self) {
        use log_contract::*;
        match self {
            Event::FastPath => tracing::info!("{FAST_PATH}"),
            Event::LockAcquired { lock } => tracing::info!(lock = %lock, "{LOCK_ACQUIRED}"),
            Event::Applied(n) => tracing::info!("{}", applied(*n)),
            Event::Waiting { lock, holder } => tracing::info!(lock = %lock, holder, "{WAITING}"),
            Event::UpToDateAfterWait { waited_ms } => {
                tracing::info!(waited_ms, "{UP_TO_DATE_AFTER_WAIT}")
            }
            Event::LockReleased { lock } => tracing::info!(lock = %lock, "{LOCK_RELEASED}"),
            // The error's Display starts with TIMED_OUT and carries lock, holder, pending, time.
            Event::TimedOut(error) => tracing::error!("{error}"),
            // Starts with DIRTY, then the version and the repair.
            Event::Dirty(error) => tracing::error!("{error}"),
            Event::StopMidMigration { pending } => {
                tracing::warn!(?pending, "{STOP_MID_MIGRATION}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn lock_name_matches_sqlx_and_fits_mysql() {
        // Computed independently: format(0x3d32ad9e * zlib.crc32(b"app"), "x") in Python.
        assert_eq!(lock_name("app"), "3027310f4fd382c2");
        for name in ["", "app", &"x".repeat(64)] {
            let lock = lock_name(name);
            assert!(!lock.is_empty() && lock.len() <= 64, "{lock}");
            assert!(lock.chars().all(|c| c.is_ascii_hexdigit()));
        }
        assert_ne!(lock_name("a"), lock_name("b"));
    }

    #[test]
    fn crc_is_the_ieee_crc32_sqlx_uses() {
        const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
        assert_eq!(CRC.checksum(b"123456789"), 0xcbf4_3926);
        assert_eq!(CRC.checksum(b"app"), 0xc96e_70cf);
    }

    fn migrator() -> Migrator {
        use sqlx::migrate::{Migration, MigrationType};
        let m = |v: i64, sql: &'static str| {
            Migration::new(v, "m".into(), MigrationType::Simple, sql.into(), false)
        };
        Migrator {
            migrations: vec![m(1, "SELECT 1"), m(2, "SELECT 2")].into(),
            ..Migrator::DEFAULT
        }
    }

    fn row(m: &Migrator, version: i64, success: bool) -> AppliedRow {
        let checksum = m
            .iter()
            .find(|x| x.version == version)
            .unwrap()
            .checksum
            .to_vec();
        AppliedRow {
            version,
            success,
            checksum,
        }
    }

    #[test]
    fn assess_reports_pending_dirty_and_mismatched_versions() {
        let m = migrator();
        let missing_table = assess(&m, None).unwrap();
        assert_eq!(missing_table.pending, vec![1, 2]);
        let current = assess(&m, Some(&[row(&m, 1, true), row(&m, 2, true)])).unwrap();
        assert_eq!(
            current,
            Status {
                pending: vec![],
                dirty: None
            }
        );
        let dirty = assess(&m, Some(&[row(&m, 1, true), row(&m, 2, false)])).unwrap();
        assert_eq!(
            dirty,
            Status {
                pending: vec![2],
                dirty: Some(2)
            }
        );
        let mut bad = row(&m, 1, true);
        bad.checksum = vec![0];
        let err = assess(&m, Some(&[bad])).unwrap_err();
        assert!(matches!(
            err,
            CoordinateError::ChecksumMismatch { version: 1, .. }
        ));
        assert!(err.to_string().contains("migration 1"), "{err}");
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The coordinator's lines, formatted by the production subscriber, contain the contract
    /// constants verbatim (no colour codes, no quoting), one event per line.
    #[test]
    fn the_coordinator_logs_exactly_the_contract_lines() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let filter = tracing_subscriber::EnvFilter::new("info");
        let subscriber = crate::telemetry::subscriber(filter, move || writer.clone(), false);
        let timeout = CoordinateError::TimedOut {
            lock_name: "5f1a".into(),
            holder: Some(42),
            pending: vec![3],
            waited: Duration::from_secs(60),
            last_error: None,
        };
        let events = [
            (Event::FastPath, log_contract::FAST_PATH.to_owned()),
            (
                Event::LockAcquired { lock: "5f1a" },
                log_contract::LOCK_ACQUIRED.to_owned(),
            ),
            (Event::Applied(2), "Applied 2 migrations".to_owned()),
            (
                Event::Waiting {
                    lock: "5f1a",
                    holder: Some(42),
                },
                log_contract::WAITING.to_owned(),
            ),
            (
                Event::UpToDateAfterWait { waited_ms: 7 },
                log_contract::UP_TO_DATE_AFTER_WAIT.to_owned(),
            ),
            (
                Event::LockReleased { lock: "5f1a" },
                log_contract::LOCK_RELEASED.to_owned(),
            ),
            (
                Event::TimedOut(&timeout),
                log_contract::TIMED_OUT.to_owned(),
            ),
        ];
        tracing::subscriber::with_default(subscriber, || {
            for (event, _) in &events {
                event.emit();
            }
        });
        let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), events.len(), "{output}");
        for (line, (_, expected)) in lines.iter().zip(&events) {
            assert!(
                line.contains(&format!(": {expected}")),
                "{line:?} lacks {expected:?}"
            );
        }
        assert!(
            lines[6].contains("lock 5f1a is held by connection 42"),
            "{}",
            lines[6]
        );
        assert!(lines[6].contains("pending versions [3]"), "{}", lines[6]);
        // Every contract constant the coordinator owns is covered above.
        for constant in log_contract::ALL {
            if *constant != log_contract::POOL_CREATED && *constant != log_contract::LISTENING {
                assert!(output.contains(constant), "{constant:?} never logged");
            }
        }
    }
}
