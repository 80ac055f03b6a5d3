//! schemathesis (PyPI), pinned, installed into a venv under target/tools/ on first use: the
//! OpenAPI fuzzer the resilience scenario `schemathesis` runs against a replica.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::{outcome::CannotRun, ui};

/// The pinned version; a venv of another version is replaced.
pub const VERSION: &str = "4.32.5";

/// The `st` program of the pinned schemathesis, installing it when missing.
pub fn ensure(sh: &Shell, target_dir: &Path) -> Result<PathBuf> {
    let venv = target_dir
        .join("tools")
        .join(format!("schemathesis-{VERSION}"));
    let st = venv.join("bin").join("st");
    if st.exists() {
        if let Ok(version) = cmd!(sh, "{st} --version").quiet().read() {
            if version.trim().ends_with(VERSION) {
                return Ok(st);
            }
        }
    }
    let python = which::which("python3").map_err(|_| {
        CannotRun(format!(
            "schemathesis {VERSION} is not installed and there is no python3 to install it; install python3 (with its venv module)"
        ))
    })?;
    let wait = ui::Waiting::new(&format!("pip install schemathesis=={VERSION} into a venv"));
    cmd!(sh, "{python} -m venv --clear {venv}")
        .quiet()
        .run()
        .context("creating the schemathesis venv (Debian: apt-get install python3-venv)")?;
    let pip = venv.join("bin").join("pip");
    let pinned = format!("schemathesis=={VERSION}");
    cmd!(
        sh,
        "{pip} install --quiet --disable-pip-version-check {pinned}"
    )
    .quiet()
    .run()
    .with_context(|| format!("installing {pinned} from PyPI"))?;
    wait.finish("installed");
    Ok(st)
}
