//! `cargo xtask test-resilience` (not written yet).

use anyhow::{bail, Result};
use xshell::Shell;

use crate::{flags, Project};

pub fn run(_sh: &Shell, _project: &Project, _flags: &flags::TestResilience) -> Result<()> {
    bail!("test-resilience is not implemented yet")
}
