//! `cargo xtask images`: get every image the stack needs, from a registry when one answers,
//! otherwise built locally from Debian's packages (see docs/docker-on-ci.md).
//!
//! Each local image carries a label with a hash of its inputs and is rebuilt only when they
//! change, so a second run takes seconds.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use super::provision;
use crate::{
    docker::{Compose, Docker},
    ui, Project,
};

pub const OFFICIAL_DB_IMAGE: &str = "mariadb:10.11";
pub const OFFICIAL_RUNTIME_IMAGE: &str = "debian:bookworm-slim";
pub const OFFICIAL_RUST_IMAGE: &str = "rust:1-bookworm";
pub const LOCAL_BASE_IMAGE: &str = "localhost/scaling-debian:bookworm";
pub const LOCAL_DB_IMAGE: &str = "localhost/scaling-mariadb:10.11";
pub const API_IMAGE: &str = "localhost/scaling-api:latest";
const INPUTS_LABEL: &str = "org.scaling-check.inputs";

/// What the compose file needs to find or build the images: variables for `docker compose`.
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    pub env: Vec<(String, String)>,
    /// One line per image: where it came from.
    pub origin: Vec<String>,
}

impl ImageSet {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Flags {
    pub force: bool,
}

pub fn run(sh: &Shell, project: &Project, flags: &Flags) -> Result<()> {
    let docker = super::preflight::docker(sh)?;
    let compose_program = provision::compose(sh, &docker, &project.target_dir)?;
    let set = ensure(sh, project, &docker, &compose_program, flags.force)?;
    println!("Images ready:");
    for line in &set.origin {
        println!("  {line}");
    }
    println!("\nCompose variables for this machine (put them in .env to use the stack by hand):");
    for (k, v) in &set.env {
        println!("  {k}={v}");
    }
    Ok(())
}

/// Makes sure the db and api images exist and returns the compose variables that select them.
pub fn ensure(
    sh: &Shell,
    project: &Project,
    docker: &Docker,
    compose_program: &crate::docker::ComposeProgram,
    force: bool,
) -> Result<ImageSet> {
    let mut set = ImageSet::default();

    ui::step("Images: database");
    let db_image = match std::env::var("DB_IMAGE").ok().filter(|v| !v.is_empty()) {
        Some(chosen) => {
            require_image(sh, docker, &chosen, "DB_IMAGE")?;
            set.origin.push(format!("db:  {chosen} (from DB_IMAGE)"));
            chosen
        }
        None if available(sh, docker, OFFICIAL_DB_IMAGE) => {
            set.origin
                .push(format!("db:  {OFFICIAL_DB_IMAGE} (official image)"));
            OFFICIAL_DB_IMAGE.to_string()
        }
        None => {
            ui::note(&format!("{OFFICIAL_DB_IMAGE} is neither local nor pullable: building {LOCAL_DB_IMAGE} from Debian's mariadb-server"));
            let base = ensure_base(sh, project, docker, force)?;
            build_mariadb(sh, project, docker, &base, force)?;
            set.origin.push(format!(
                "db:  {LOCAL_DB_IMAGE} (built here from {base} and Debian's mariadb-server)"
            ));
            LOCAL_DB_IMAGE.to_string()
        }
    };
    set.env.push(("DB_IMAGE".into(), db_image));

    ui::step("Images: api");
    let runtime_image = match std::env::var("RUNTIME_IMAGE")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(chosen) => {
            require_image(sh, docker, &chosen, "RUNTIME_IMAGE")?;
            chosen
        }
        None if available(sh, docker, OFFICIAL_RUNTIME_IMAGE) => OFFICIAL_RUNTIME_IMAGE.to_string(),
        None => ensure_base(sh, project, docker, force)?,
    };
    let in_container_build = available(sh, docker, OFFICIAL_RUST_IMAGE);
    let target = if in_container_build {
        "runtime"
    } else {
        ui::note(&format!("{OFFICIAL_RUST_IMAGE} is neither local nor pullable: building the api binary on the host"));
        build_host_binary(sh, project)?;
        "runtime-prebuilt"
    };
    set.env
        .push(("RUNTIME_IMAGE".into(), runtime_image.clone()));
    set.env
        .push(("RUST_IMAGE".into(), OFFICIAL_RUST_IMAGE.into()));
    set.env.push(("API_BUILD_TARGET".into(), target.into()));
    set.env.push(("API_IMAGE".into(), API_IMAGE.into()));

    // Building needs no credentials, but the compose file requires them to be set.
    let mut env = set.env.clone();
    env.push(("DB_PASSWORD".into(), "unused-at-build-time".into()));
    env.push(("DB_ROOT_PASSWORD".into(), "unused-at-build-time".into()));
    let build = Compose {
        program: compose_program.clone(),
        file: project.compose_file(),
        project: "scaling-images".into(),
        env,
        env_file: None,
    };
    let wait = ui::Waiting::new("docker compose build api");
    build
        .run(sh, &["build", "api"])
        .context("building the api image")?;
    wait.finish("built");
    set.origin.push(format!(
        "api: {API_IMAGE} (target {target} on {runtime_image}{})",
        if in_container_build {
            ", compiled in the build stage"
        } else {
            ", binary built on the host"
        }
    ));
    Ok(set)
}

/// `--no-build`: pick images that are already present, preferring official ones.
pub fn select_present(sh: &Shell, docker: &Docker) -> Result<ImageSet> {
    let pick = |official: &str, local: &str, what: &str| -> Result<String> {
        [official, local]
            .into_iter()
            .find(|i| docker.image_exists(sh, i))
            .map(String::from)
            .with_context(|| format!("--no-build: no {what} image ({official} or {local}) is present; run `cargo xtask images` first"))
    };
    let db = pick(OFFICIAL_DB_IMAGE, LOCAL_DB_IMAGE, "database")?;
    if !docker.image_exists(sh, API_IMAGE) {
        bail!(
            "--no-build: the api image {API_IMAGE} is not present; run `cargo xtask images` first"
        );
    }
    let runtime = pick(OFFICIAL_RUNTIME_IMAGE, LOCAL_BASE_IMAGE, "runtime base")?;
    Ok(ImageSet {
        env: vec![
            ("DB_IMAGE".into(), db.clone()),
            ("RUNTIME_IMAGE".into(), runtime),
            ("RUST_IMAGE".into(), OFFICIAL_RUST_IMAGE.into()),
            ("API_BUILD_TARGET".into(), "runtime-prebuilt".into()),
            ("API_IMAGE".into(), API_IMAGE.into()),
        ],
        origin: vec![
            format!("db:  {db} (present)"),
            format!("api: {API_IMAGE} (present)"),
        ],
    })
}

/// Local, or pullable right now.
fn available(sh: &Shell, docker: &Docker, image: &str) -> bool {
    docker.image_exists(sh, image) || docker.try_pull(sh, image)
}

fn require_image(sh: &Shell, docker: &Docker, image: &str, var: &str) -> Result<()> {
    if !available(sh, docker, image) {
        bail!("{var}={image}: that image is neither local nor pullable; unset {var} to let the xtask build a local one, or `docker load` it");
    }
    Ok(())
}

/// The Debian 12 base image, made with debootstrap from the host's own Debian mirror.
fn ensure_base(sh: &Shell, project: &Project, docker: &Docker, force: bool) -> Result<String> {
    let mirror = host_debian_mirror()?;
    let inputs = hash_strings(&["debootstrap", "--variant=minbase", "bookworm", &mirror]);
    if !force
        && docker
            .image_label(sh, LOCAL_BASE_IMAGE, INPUTS_LABEL)
            .as_deref()
            == Some(inputs.as_str())
    {
        ui::note(&format!("{LOCAL_BASE_IMAGE} is up to date"));
        return Ok(LOCAL_BASE_IMAGE.to_string());
    }
    if !provision::is_root() {
        bail!("building the base image {LOCAL_BASE_IMAGE} needs root (debootstrap): run as root, or `docker load` {OFFICIAL_RUNTIME_IMAGE} and {OFFICIAL_DB_IMAGE} on this machine");
    }
    let debootstrap =
        provision::debian_package(sh, "debootstrap", "debootstrap", "to build the base image")?;
    let rootfs = project.target_dir.join("images").join("rootfs");
    if rootfs.exists() {
        sh.remove_path(&rootfs)?;
    }
    sh.create_dir(&rootfs)?;
    ui::note(&format!(
        "debootstrap bookworm from {mirror} (about 30 s; its progress follows)"
    ));
    let started = std::time::Instant::now();
    cmd!(
        sh,
        "{debootstrap} --variant=minbase bookworm {rootfs} {mirror}"
    )
    .quiet()
    .run()
    .context("debootstrap of Debian 12 (bookworm) failed: see its output above")?;
    ui::note(&format!(
        "debootstrap done in {:.1} s; importing",
        started.elapsed().as_secs_f64()
    ));
    let changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "ENV LANG=C.UTF-8".to_string(),
        "CMD [\"/bin/bash\"]".to_string(),
        format!("LABEL {INPUTS_LABEL}={inputs}"),
    ];
    docker.import_rootfs(&rootfs, LOCAL_BASE_IMAGE, &changes)?;
    sh.remove_path(&rootfs)?;
    Ok(LOCAL_BASE_IMAGE.to_string())
}

fn build_mariadb(
    sh: &Shell,
    project: &Project,
    docker: &Docker,
    base: &str,
    force: bool,
) -> Result<()> {
    let context = project.root.join("docker").join("mariadb");
    let base_id = docker
        .image_label(sh, base, INPUTS_LABEL)
        .unwrap_or_default();
    let mut parts = vec![base.to_string(), base_id];
    for file in sorted_files(&context)? {
        // The name, not the path: a clone elsewhere has the same inputs.
        parts.push(
            file.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        parts.push(hex(&Sha256::digest(std::fs::read(&file)?)));
    }
    let inputs = hash_strings(&parts.iter().map(String::as_str).collect::<Vec<_>>());
    if !force
        && docker
            .image_label(sh, LOCAL_DB_IMAGE, INPUTS_LABEL)
            .as_deref()
            == Some(inputs.as_str())
    {
        ui::note(&format!("{LOCAL_DB_IMAGE} is up to date"));
        return Ok(());
    }
    let wait = ui::Waiting::new(&format!("docker build {LOCAL_DB_IMAGE}"));
    docker.build(
        sh,
        &context,
        LOCAL_DB_IMAGE,
        &[("BASE_IMAGE".into(), base.into())],
        &[(INPUTS_LABEL.into(), inputs)],
    )?;
    wait.finish("built");
    Ok(())
}

/// `cargo build --release --locked -p api`, then the binary is copied where the
/// Dockerfile's `runtime-prebuilt` target expects it: `target/docker/api`.
fn build_host_binary(sh: &Shell, project: &Project) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = &project.target_dir;
    cmd!(
        sh,
        "{cargo} build --release --locked -p api --target-dir {target_dir}"
    )
    .quiet()
    .run()
    .context("building the api release binary on the host")?;
    let built = target_dir.join("release").join("api");
    let dest_dir = project.root.join("target").join("docker");
    sh.create_dir(&dest_dir)?;
    let dest = dest_dir.join("api");
    // Copy only when it changed, so the image layer (and BuildKit's cache) stays put.
    let same = dest.exists() && provision::sha256_file(&dest)? == provision::sha256_file(&built)?;
    if !same {
        sh.copy_file(&built, &dest)?;
    }
    Ok(())
}

/// The URI of the host's Debian mirror, from its apt sources (deb822 first, then one-line).
pub fn host_debian_mirror() -> Result<String> {
    let deb822 = Path::new("/etc/apt/sources.list.d/debian.sources");
    if let Ok(text) = std::fs::read_to_string(deb822) {
        if let Some(uri) = mirror_from_deb822(&text) {
            return Ok(uri);
        }
    }
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        if let Some(uri) = mirror_from_sources_list(&text) {
            return Ok(uri);
        }
    }
    bail!("could not find a Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list: the base image is built with debootstrap from the host's mirror")
}

/// The first `URIs:` of a stanza whose suites include `bookworm` itself (not -security).
pub fn mirror_from_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .find(|l| {
                    l.to_ascii_lowercase()
                        .starts_with(&format!("{}:", name.to_ascii_lowercase()))
                })
                .map(|l| l[name.len() + 1..].trim().to_string())
        };
        let suites = field("Suites")?;
        let uri = field("URIs")?.split_whitespace().next()?.to_string();
        suites
            .split_whitespace()
            .any(|s| s == "bookworm")
            .then_some(uri)
    })
}

pub fn mirror_from_sources_list(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace().filter(|w| !w.starts_with('['));
        (words.next()? == "deb").then_some(())?;
        let uri = words.next()?;
        (words.next()? == "bookworm").then(|| uri.to_string())
    })
}

fn sorted_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn hash_strings(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for p in parts {
        hasher.update(p.as_bytes());
        hasher.update([0]);
    }
    hex(&hasher.finalize())[..16].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_is_read_from_the_bookworm_stanza_of_deb822_sources() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/debian.sources"
        ))
        .unwrap();
        assert_eq!(
            mirror_from_deb822(&text).as_deref(),
            Some("http://mirror.invalid/debian")
        );
    }

    #[test]
    fn a_security_only_deb822_file_gives_no_mirror() {
        let text = "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(mirror_from_deb822(text), None);
    }

    #[test]
    fn the_mirror_is_read_from_a_one_line_sources_list() {
        let text = "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\ndeb http://security.example bookworm-security main\n";
        assert_eq!(
            mirror_from_sources_list(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }
}
