//! How a command ends: its exit codes, the two errors that choose them (`CannotRun`, `Failed`),
//! and the report directory every command starts afresh.

use anyhow::{Context, Result};
use std::path::Path;

/// Every check ran and passed.
pub const EXIT_PASSED: i32 = 0;
/// The checks ran and one failed (`Failed`).
pub const EXIT_FAILED: i32 = 1;
/// The checks could not run: docker missing, daemon down, bad flag (`CannotRun`, any error).
pub const EXIT_CANNOT_RUN: i32 = 2;

/// An error that means "could not run" (docker missing, daemon down, bad flag): exit 2.
#[derive(Debug)]
pub struct CannotRun(pub String);

impl std::fmt::Display for CannotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CannotRun {}

/// A verdict that is not an error: the tests ran and something failed (exit 1).
#[derive(Debug)]
pub struct Failed(pub String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

/// The exit code for a command's result: what `main` exits with.
pub fn exit_code(result: &Result<()>) -> i32 {
    match result {
        Ok(()) => EXIT_PASSED,
        Err(err) if err.downcast_ref::<Failed>().is_some() => EXIT_FAILED,
        Err(_) => EXIT_CANNOT_RUN,
    }
}

/// Empties a report directory (a previous run's files must not pass for this run's).
pub fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_exits_1_cannot_run_and_other_errors_exit_2() {
        assert_eq!(exit_code(&Ok(())), 0);
        assert_eq!(exit_code(&Err(Failed("x".into()).into())), 1);
        assert_eq!(exit_code(&Err(CannotRun("x".into()).into())), 2);
        assert_eq!(exit_code(&Err(anyhow::anyhow!("x"))), 2);
    }
}
