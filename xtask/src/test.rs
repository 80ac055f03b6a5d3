//! `cargo xtask test`: every test of the project, the README's test command.
//! Unit tests, the api against a real MariaDB, then (with Docker) the scaling check for real,
//! the fault-injection runs and the resilience scenarios.

use std::time::Instant;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::{
    host::testdb,
    outcome::{self, Failed},
    resilience, scaling, ui, Project,
};

/// The stage table's columns: stage, time (the result takes the rest).
const COLUMNS: &[usize] = &[34, 8];

pub fn run(sh: &Shell, project: &Project, no_docker: bool) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut results: Vec<(&str, Result<()>, f64)> = Vec::new();
    let mut stage = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| {
        ui::step(&format!("Test stage: {name}"));
        let t = Instant::now();
        let r = f();
        if let Err(e) = &r {
            ui::warn(&format!("{name} failed: {e:#}"));
        }
        results.push((name, r, t.elapsed().as_secs_f64()));
    };

    stage("xtask unit tests", &mut || {
        cmd!(sh, "{cargo} test --locked -p xtask")
            .run()
            .context("cargo test -p xtask")
    });
    stage("api tests against MariaDB", &mut || {
        let db = testdb::start(sh, project)?;
        cmd!(sh, "{cargo} test --locked -p api")
            .env("TEST_DATABASE_URL", &db.url)
            .run()
            .context("cargo test -p api")
    });
    if !no_docker {
        stage("scaling check (test-scaling)", &mut || {
            scaling::run(sh, project, scaling::Options::default())
        });
        stage("fault injection (test-faults)", &mut || {
            scaling::faults::run(sh, project, None)
        });
        stage("resilience (test-resilience)", &mut || {
            resilience::run(
                sh,
                project,
                &crate::flags::TestResilience {
                    replicas: None,
                    only: None,
                },
            )
        });
    }

    println!("\n{}", outcome::row(COLUMNS, &["stage", "time", "result"]));
    let mut failed = 0;
    for (name, result, seconds) in &results {
        let verdict = if result.is_ok() {
            ui::paint_stdout("ok", "1;32")
        } else {
            failed += 1;
            ui::paint_stdout("FAILED", "1;31")
        };
        let time = format!("{seconds:.0} s");
        println!("{}", outcome::row(COLUMNS, &[name, &time, &verdict]));
    }
    println!("stages: {} passed, {failed} failed", results.len() - failed);
    if failed > 0 {
        return Err(Failed(format!("{failed} test stage(s) failed")).into());
    }
    Ok(())
}
