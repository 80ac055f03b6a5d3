//! `cargo xtask`: the project's tooling. This file only parses flags and dispatches.

mod bench;
mod docker;
mod faults;
mod flags;
mod images;
// The xtask reads a subset of the contract; the rest is used by the api and the tests.
#[allow(dead_code)]
#[path = "../../api/src/log_contract.rs"]
mod log_contract;
mod preflight;
mod provision;
mod resilience;
mod scaling;
mod test;
mod testdb;
mod timeline;
mod ui;
// Judges of the upgrade scenario, used by their tests until the scenario drives them.
#[cfg_attr(not(test), allow(dead_code))]
mod upgrade;

use std::path::{Path, PathBuf};

use xshell::Shell;

/// Paths of the workspace.
#[derive(Clone, Debug)]
pub struct Project {
    pub root: PathBuf,
    pub target_dir: PathBuf,
}

impl Project {
    fn locate() -> Project {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace")
            .to_path_buf();
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Project { root, target_dir }
    }

    pub fn compose_file(&self) -> PathBuf {
        self.root.join("docker-compose.yml")
    }
}

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

fn main() {
    let flags = match flags::Xtask::from_env() {
        Ok(flags) => flags,
        Err(err) if err.is_help() => {
            println!("{err}");
            std::process::exit(0);
        }
        Err(err) => {
            eprintln!("error: {err}\nRun `cargo xtask --help` for the commands and their flags.");
            std::process::exit(2);
        }
    };
    let code = match run(flags) {
        Ok(()) => 0,
        Err(err) => {
            if let Some(failed) = err.downcast_ref::<Failed>() {
                eprintln!("{}", failed.0);
                1
            } else {
                // CannotRun and any other error: the check could not run.
                eprintln!("{} {err:#}", ui::paint("error:", "1;31"));
                2
            }
        }
    };
    std::process::exit(code);
}

fn run(flags: flags::Xtask) -> anyhow::Result<()> {
    let project = Project::locate();
    let sh = Shell::new()?;
    sh.change_dir(&project.root);
    match flags.subcommand {
        flags::XtaskCmd::CheckDocker(_) => preflight::check(&sh, &project),
        flags::XtaskCmd::Images(cmd) => {
            images::run(&sh, &project, &images::Flags { force: cmd.force })
        }
        flags::XtaskCmd::TestScaling(cmd) => {
            scaling::run(&sh, &project, scaling::Options::from_flags(&cmd)?)
        }
        flags::XtaskCmd::TestFaults(cmd) => faults::run(&sh, &project, cmd.only.as_deref()),
        flags::XtaskCmd::TestResilience(cmd) => resilience::run(&sh, &project, &cmd),
        flags::XtaskCmd::Bench(cmd) => bench::run(&sh, &project, &cmd),
        flags::XtaskCmd::Test(cmd) => test::run(&sh, &project, cmd.no_docker),
        flags::XtaskCmd::TestDb(_) => testdb::serve(&sh, &project),
    }
}
