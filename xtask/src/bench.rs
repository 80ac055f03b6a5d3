//! `cargo xtask bench` (not written yet).

use anyhow::{bail, Result};
use xshell::Shell;

use crate::{flags, Project};

pub fn run(_sh: &Shell, _project: &Project, _flags: &flags::Bench) -> Result<()> {
    bail!("bench is not implemented yet")
}
