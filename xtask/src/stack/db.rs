//! What the xtask asks the stack's database: the api's migration lock (its SQL name, who holds
//! it, an outside client that takes it) and the migrations, applied and expected.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{parse, Stack};

// The lock name's SQL expression is defined once, next to the api's Rust derivation; the
// api's tests check that the two agree.
#[path = "../../../api/src/migration_lock_sql.rs"]
mod migration_lock_sql;
pub use migration_lock_sql::MIGRATION_LOCK_SQL;

/// Polls until a connection holds the api's migration lock; returns that connection's id.
pub fn wait_for_lock_holder(stack: &Stack) -> Result<i64> {
    let probe = format!("SELECT IS_USED_LOCK({MIGRATION_LOCK_SQL})");
    let started = Instant::now();
    loop {
        let out = stack.sql_output(&probe)?;
        if out.status.success() {
            if let Ok(id) = String::from_utf8_lossy(&out.stdout).trim().parse::<i64>() {
                return Ok(id);
            }
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the outside client did not get the migration lock within 20 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The database's own record of the migrations (`version`, `success`), read as root inside
/// the db container; none when the table does not exist yet.
pub fn migration_records(stack: &Stack) -> Result<Vec<(i64, bool)>> {
    let out = stack.sql_output("SELECT version, success FROM _sqlx_migrations ORDER BY version")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("doesn't exist") {
            return Ok(Vec::new());
        }
        bail!("reading _sqlx_migrations failed: {}", err.trim());
    }
    parse::migration_rows(&String::from_utf8_lossy(&out.stdout))
}

/// Migration versions of the api, from its `api/migrations/` directory.
pub fn migration_versions(root: &Path) -> Result<Vec<i64>> {
    let dir = root.join("api").join("migrations");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    Ok(parse::migration_versions(names.iter().map(String::as_str)))
}

/// What the check reads of the database in one SQL exec (`records_and_capacity`).
#[derive(Debug, PartialEq)]
pub struct DbFacts {
    /// `_sqlx_migrations`' rows, as `migration_records` gives them.
    pub records: Vec<(i64, bool)>,
    pub max_connections: u32,
    /// Connections open while it asked, its own included.
    pub open_now: u32,
}

/// `migration_records` and the server's connection figures (`@@max_connections`, open now)
/// in one SQL exec, for the check's own time.
pub fn records_and_capacity(stack: &Stack) -> Result<DbFacts> {
    let out = stack.sql_output(&format!("{CAPACITY_SQL}; {RECORDS_SQL}"))?;
    db_facts(
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
        out.status.success(),
    )
}

const CAPACITY_SQL: &str = "SELECT @@max_connections, COUNT(*) FROM information_schema.PROCESSLIST";
const RECORDS_SQL: &str = "SELECT version, success FROM _sqlx_migrations ORDER BY version";

/// `records_and_capacity`'s output: the capacity row first, so a missing `_sqlx_migrations`
/// (no records yet: the client stops at its error) still leaves it.
pub fn db_facts(stdout: &str, stderr: &str, success: bool) -> Result<DbFacts> {
    let (first, rest) = stdout.split_once('\n').unwrap_or((stdout, ""));
    let (max_connections, open_now) = parse::two_numbers(first)
        .with_context(|| format!("connection figures from {first:?}: {}", stderr.trim()))?;
    let records = if success {
        parse::migration_rows(rest)?
    } else if stderr.contains("doesn't exist") {
        Vec::new()
    } else {
        bail!("reading _sqlx_migrations failed: {}", stderr.trim());
    };
    Ok(DbFacts {
        records,
        max_connections,
        open_now,
    })
}
