//! Preflight: docker on PATH, its daemon reachable, Compose v2 present. Each missing piece is
//! one clear error with the fix; the caller exits 2 ("could not run"), having started nothing.

use anyhow::Result;
use xshell::Shell;

use super::provision;
use crate::{
    docker::{ComposeProgram, Docker},
    outcome::CannotRun,
    ui, Project,
};

/// docker on PATH and its daemon answering.
pub fn docker(sh: &Shell) -> Result<Docker> {
    let docker = Docker::locate().map_err(|e| CannotRun(e.to_string()))?;
    docker
        .server_version(sh)
        .map_err(|e| CannotRun(e.to_string()))?;
    Ok(docker)
}

/// Everything the stack needs from the host: docker, its daemon, Compose v2.
pub fn run(sh: &Shell, project: &Project) -> Result<(Docker, ComposeProgram)> {
    let docker = docker(sh)?;
    let server = docker.server_version(sh)?;
    let compose = provision::compose(sh, &docker, &project.target_dir)
        .map_err(|e| CannotRun(format!("{e:#}")))?;
    ui::note(&format!(
        "docker engine {server}; compose: {}",
        compose.display()
    ));
    Ok((docker, compose))
}

/// `cargo xtask check-docker` (and `make check-docker`).
pub fn check(sh: &Shell, project: &Project) -> Result<()> {
    ui::step("Checking Docker");
    let (_, compose) = run(sh, project)?;
    println!("Docker is ready (compose: {}).", compose.display());
    Ok(())
}
