//! `cargo xtask`: the project's tooling. This file only parses flags and dispatches.

mod bench;
mod docker;
mod flags;
mod host;
#[cfg(test)]
mod layering;
// The xtask reads a subset of the contract; the rest is used by the api and the tests.
#[allow(dead_code)]
#[path = "../../api/src/log_contract.rs"]
mod log_contract;
mod outcome;
mod parallel;
mod resilience;
mod scaling;
mod stack;
mod test;
mod timeline;
mod ui;

use std::path::{Path, PathBuf};

use xshell::Shell;

use crate::{
    host::{dbserver::DbChoice, images, preflight, testdb},
    outcome::Failed,
};

/// Paths of the workspace.
#[derive(Clone, Debug)]
pub struct Project {
    pub root: PathBuf,
    pub target_dir: PathBuf,
}

impl Project {
    /// The checkout the xtask was run in: the nearest directory, from the current one upwards,
    /// that holds this workspace (`Cargo.toml`, `xtask/Cargo.toml`, `docker-compose.yml`). Found
    /// at run time, never from the path the binary was compiled in, so a `target/` copied
    /// with a checkout checks the copy.
    fn locate() -> anyhow::Result<Project> {
        let cwd = std::env::current_dir()?;
        let root = find_root(&cwd).ok_or_else(|| {
            outcome::CannotRun(format!(
                "{} is not inside a checkout of this project (no directory from here upwards holds Cargo.toml, xtask/Cargo.toml and docker-compose.yml): run cargo xtask from the checkout",
                cwd.display()
            ))
        })?;
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { cwd.join(t) })
            .unwrap_or_else(|| root.join("target"));
        Ok(Project { root, target_dir })
    }

    pub fn compose_file(&self) -> PathBuf {
        self.root.join("docker-compose.yml")
    }
}

/// The nearest directory from `start` upwards that holds the workspace.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| {
            d.join("Cargo.toml").is_file()
                && d.join("xtask").join("Cargo.toml").is_file()
                && d.join("docker-compose.yml").is_file()
        })
        .map(Path::to_path_buf)
}

fn main() {
    let flags = match flags::Xtask::from_env() {
        Ok(flags) => flags,
        Err(err) if err.is_help() => {
            println!("{err}");
            std::process::exit(outcome::EXIT_PASSED);
        }
        Err(err) => {
            eprintln!("error: {err}\nRun `cargo xtask --help` for the commands and their flags.");
            std::process::exit(outcome::EXIT_CANNOT_RUN);
        }
    };
    let result = run(flags);
    if let Err(err) = &result {
        if let Some(failed) = err.downcast_ref::<Failed>() {
            eprintln!("{}", failed.0);
        } else {
            // CannotRun and any other error: the check could not run.
            eprintln!("{} {err:#}", ui::paint("error:", "1;31"));
        }
    }
    std::process::exit(outcome::exit_code(&result));
}

fn run(flags: flags::Xtask) -> anyhow::Result<()> {
    let project = Project::locate()?;
    let sh = Shell::new()?;
    sh.change_dir(&project.root);
    match flags.subcommand {
        flags::XtaskCmd::CheckDocker(_) => preflight::check(&sh, &project),
        flags::XtaskCmd::Images(cmd) => {
            let flags = images::Flags {
                force: cmd.force,
                db: cmd.db,
            };
            images::run(&sh, &project, &flags)
        }
        flags::XtaskCmd::TestScaling(cmd) => {
            scaling::run(&sh, &project, scaling::Options::from_flags(&cmd)?)
        }
        flags::XtaskCmd::TestFaults(cmd) => {
            let db = cmd.db.as_deref().map(DbChoice::parse).transpose()?;
            let engine = cmd
                .engine
                .as_deref()
                .map(stack::EngineKind::parse)
                .transpose()
                .map_err(outcome::CannotRun)?
                .unwrap_or_default();
            scaling::faults::run(&sh, &project, cmd.only.as_deref(), db, engine)
        }
        flags::XtaskCmd::TestResilience(cmd) => resilience::run(&sh, &project, &cmd),
        flags::XtaskCmd::Bench(cmd) => bench::run(&sh, &project, &cmd),
        flags::XtaskCmd::Test(cmd) => test::run(&sh, &project, &cmd),
        flags::XtaskCmd::TestDb(cmd) => testdb::serve(&sh, &project, cmd.db.as_deref()),
    }
}
