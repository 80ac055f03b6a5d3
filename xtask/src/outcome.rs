//! How a command ends: its exit codes, the two errors that choose them (`CannotRun`, `Failed`),
//! and the report directory every command starts afresh.

use anyhow::{Context, Result};
use std::path::Path;

use crate::ui;

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

/// PASS or FAIL for a table on stdout (coloured only on a terminal).
pub fn pass_fail(passed: bool) -> String {
    if passed {
        ui::paint_stdout("PASS", "1;32")
    } else {
        ui::paint_stdout("FAIL", "1;31")
    }
}

/// One line of a table: each cell but the last left-aligned in its column's width, one space
/// between columns. Every table the commands print goes through here.
pub fn row(widths: &[usize], cells: &[&str]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        match widths.get(i) {
            Some(&w) if i + 1 < cells.len() => line.push_str(&format!("{cell:<w$}")),
            _ => line.push_str(cell),
        }
    }
    line
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

    #[test]
    fn rows_pad_every_cell_but_the_last() {
        assert_eq!(row(&[5, 3], &["ab", "c", "rest"]), "ab    c   rest");
        assert_eq!(row(&[5, 3], &["ab", "c"]), "ab    c");
        assert_eq!(row(&[2], &["toolong", "x"]), "toolong x");
        assert_eq!(pass_fail(true), "PASS");
    }
}
