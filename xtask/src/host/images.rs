//! `cargo xtask images`: get every image the stack needs, from a registry when one answers,
//! otherwise built locally from Debian's packages (see docs/docker-on-ci.md).
//!
//! Each local image carries a label with a hash of its inputs and is rebuilt only when they
//! change, so a second run takes seconds.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use super::{
    dbserver::{DbChoice, Server},
    provision,
};
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
/// A Swarm node: Debian's Docker engine in a container (`docker/node/`).
pub const NODE_IMAGE: &str = "localhost/scaling-node:bookworm";
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
    /// `--db`: the database server; `None` is the default stack's (DB_IMAGE, else MariaDB 10.11).
    pub db: Option<String>,
}

pub fn run(sh: &Shell, project: &Project, flags: &Flags) -> Result<()> {
    let db = flags.db.as_deref().map(DbChoice::parse).transpose()?;
    let docker = super::preflight::docker(sh)?;
    let compose_program = provision::compose(sh, &docker, &project.target_dir)?;
    let set = ensure_for(
        sh,
        project,
        &docker,
        &compose_program,
        db.as_ref(),
        flags.force,
    )?;
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

/// Makes sure the db and api images exist and returns the compose variables that select them;
/// the database server is `--db`'s, `None` keeping the default stack's.
pub fn ensure_for(
    sh: &Shell,
    project: &Project,
    docker: &Docker,
    compose_program: &crate::docker::ComposeProgram,
    db: Option<&DbChoice>,
    force: bool,
) -> Result<ImageSet> {
    let mut set = ImageSet::default();

    ui::step("Images: database");
    let chosen_by_env = std::env::var("DB_IMAGE").ok().filter(|v| !v.is_empty());
    let db_image = match (db, chosen_by_env) {
        (None, Some(chosen)) => {
            require_image(sh, docker, &chosen, "DB_IMAGE")?;
            set.origin.push(format!("db:  {chosen} (from DB_IMAGE)"));
            chosen
        }
        (Some(choice), _) => {
            let (image, origin) = ensure_db(sh, project, docker, choice, force)?;
            set.origin.push(format!("db:  {origin}"));
            image
        }
        (None, None) => {
            let (image, origin) = ensure_db(sh, project, docker, &DbChoice::default(), force)?;
            set.origin.push(format!("db:  {origin}"));
            image
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
        None => ensure_base(sh, project, docker, "bookworm", force)?,
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
        overrides: vec![],
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

/// `--no-build`: pick images that are already present, preferring official ones; the database
/// server's is `--db`'s (`None`: MariaDB 10.11).
pub fn select_present(sh: &Shell, docker: &Docker, db: Option<&DbChoice>) -> Result<ImageSet> {
    let pick = |official: &str, local: &str, what: &str| -> Result<String> {
        [official, local]
            .into_iter()
            .find(|i| docker.image_exists(sh, i))
            .map(String::from)
            .with_context(|| format!("--no-build: no {what} image ({official} or {local}) is present; run `cargo xtask images` first"))
    };
    let db = match db {
        Some(DbChoice::Image(image)) => {
            if !docker.image_exists(sh, image) {
                bail!("--no-build: the --db image {image} is not present; `docker load` it or run without --no-build");
            }
            image.clone()
        }
        Some(DbChoice::Known(server)) => {
            pick(server.official_image(), server.local_image(), server.name())?
        }
        None => pick(OFFICIAL_DB_IMAGE, LOCAL_DB_IMAGE, "database")?,
    };
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

/// The image of one database server and where it came from: the official image when it is
/// local or pullable, otherwise the local one, built (or found up to date) here.
pub fn ensure_db(
    sh: &Shell,
    project: &Project,
    docker: &Docker,
    choice: &DbChoice,
    force: bool,
) -> Result<(String, String)> {
    let server = match choice {
        DbChoice::Image(image) => {
            require_image(sh, docker, image, "--db")?;
            return Ok((image.clone(), format!("{image} (chosen with --db)")));
        }
        DbChoice::Known(server) => *server,
    };
    let official = server.official_image();
    if available(sh, docker, official) {
        return Ok((official.to_string(), format!("{official} (official image)")));
    }
    let (local, package, suite) = (server.local_image(), server.package(), server.suite());
    ui::note(&format!(
        "{official} is neither local nor pullable: building {local} from Debian {suite}'s {package}"
    ));
    let base = ensure_base(sh, project, docker, suite, force)?;
    build_db(sh, project, docker, server, &base, force)?;
    Ok((
        local.to_string(),
        format!("{local} (built here from {base} and Debian's {package})"),
    ))
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

/// The base image of a Debian suite (`localhost/scaling-debian:SUITE`), made with debootstrap
/// from the host's own Debian mirror, which serves every suite.
fn ensure_base(
    sh: &Shell,
    project: &Project,
    docker: &Docker,
    suite: &str,
    force: bool,
) -> Result<String> {
    let image = base_image(suite);
    let mirror = host_debian_mirror()?;
    let inputs = hash_strings(&["debootstrap", "--variant=minbase", suite, &mirror]);
    if !force && docker.image_label(sh, &image, INPUTS_LABEL).as_deref() == Some(inputs.as_str()) {
        ui::note(&format!("{image} is up to date"));
        return Ok(image);
    }
    if !provision::is_root() {
        bail!("building the base image {image} needs root (debootstrap): run as root, or `docker load` {OFFICIAL_RUNTIME_IMAGE} and the database's official image on this machine");
    }
    let debootstrap =
        provision::debian_package(sh, "debootstrap", "debootstrap", "to build the base image")?;
    // One directory per suite: two suites may be bootstrapped by parallel runs.
    let rootfs = project
        .target_dir
        .join("images")
        .join(format!("rootfs-{suite}"));
    if rootfs.exists() {
        sh.remove_path(&rootfs)?;
    }
    sh.create_dir(&rootfs)?;
    ui::note(&format!(
        "debootstrap {suite} from {mirror} (about 30 s; its progress follows)"
    ));
    let started = std::time::Instant::now();
    cmd!(
        sh,
        "{debootstrap} --variant=minbase {suite} {rootfs} {mirror}"
    )
    .quiet()
    .run()
    .with_context(|| format!("debootstrap of Debian {suite} failed: see its output above"))?;
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
    docker.import_rootfs(&rootfs, &image, &changes)?;
    sh.remove_path(&rootfs)?;
    Ok(image)
}

/// `localhost/scaling-debian:SUITE`; bookworm's is [`LOCAL_BASE_IMAGE`].
pub fn base_image(suite: &str) -> String {
    format!("localhost/scaling-debian:{suite}")
}

/// Builds a server's local image from `docker/<dir>/` when its inputs changed. MariaDB's
/// context is its own directory (as before); MySQL's Dockerfile takes the entrypoint and the
/// healthcheck from `docker/mariadb/`, so its context is `docker/`.
fn build_db(
    sh: &Shell,
    project: &Project,
    docker: &Docker,
    server: Server,
    base: &str,
    force: bool,
) -> Result<()> {
    let tag = server.local_image();
    let docker_dir = project.root.join("docker");
    let own_dir = docker_dir.join(server.dockerfile_dir());
    let mut input_dirs = vec![own_dir.clone()];
    if server == Server::Mysql9 {
        input_dirs.push(docker_dir.join("mariadb"));
    }
    let inputs = dir_inputs(sh, docker, base, &input_dirs)?;
    if !force && docker.image_label(sh, tag, INPUTS_LABEL).as_deref() == Some(inputs.as_str()) {
        ui::note(&format!("{tag} is up to date"));
        return Ok(());
    }
    let wait = ui::Waiting::new(&format!("docker build {tag}"));
    let started = std::time::Instant::now();
    let build_args = [("BASE_IMAGE".to_string(), base.to_string())];
    let labels = [(INPUTS_LABEL.to_string(), inputs)];
    if server == Server::Mysql9 {
        let dockerfile = own_dir.join("Dockerfile");
        let docker_program = &docker.program;
        let base_arg = format!("BASE_IMAGE={base}");
        let label_arg = format!("{INPUTS_LABEL}={}", labels[0].1);
        // Not --quiet: the legacy builder then hides why a step failed (e.g. apt refusing
        // sid's Release file), so keep the output and show its end on failure.
        let out = cmd!(sh, "{docker_program} build -t {tag} -f {dockerfile} --build-arg {base_arg} --label {label_arg} {docker_dir}")
            .quiet()
            .ignore_status()
            .output()
            .with_context(|| format!("running docker build of {tag}"))?;
        if !out.status.success() {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let lines: Vec<&str> = text.lines().collect();
            bail!(
                "building image {tag} from {} failed ({}); the build's output ends:\n{}",
                dockerfile.display(),
                out.status,
                lines[lines.len().saturating_sub(15)..].join("\n")
            );
        }
    } else {
        docker.build(sh, &own_dir, tag, &build_args, &labels)?;
    }
    wait.finish("built");
    ui::note(&format!(
        "{tag} built in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The inputs hash of an image built `FROM base` out of `input_dirs`: the base and its own
/// inputs, then every file's name and content.
fn dir_inputs(sh: &Shell, docker: &Docker, base: &str, input_dirs: &[PathBuf]) -> Result<String> {
    let base_id = docker
        .image_label(sh, base, INPUTS_LABEL)
        .unwrap_or_default();
    let mut parts = vec![base.to_string(), base_id];
    for dir in input_dirs {
        for file in sorted_files(dir)? {
            // The name, not the path: a clone elsewhere has the same inputs. MySQL's inputs
            // span two directories, so its names carry theirs.
            if input_dirs.len() > 1 {
                parts.push(dir.file_name().unwrap_or_default().to_string_lossy().into());
            }
            parts.push(
                file.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
            parts.push(hex(&Sha256::digest(std::fs::read(&file)?)));
        }
    }
    Ok(hash_strings(
        &parts.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
}

/// The Swarm node image (`docker/node/`, Docker-in-Docker) for `--nodes`, built on the
/// bookworm base when its inputs changed; only the multi-node check needs it.
pub fn ensure_node(sh: &Shell, project: &Project, docker: &Docker, force: bool) -> Result<String> {
    let base = ensure_base(sh, project, docker, "bookworm", force)?;
    let dir = project.root.join("docker").join("node");
    let inputs = dir_inputs(sh, docker, &base, std::slice::from_ref(&dir))?;
    if !force
        && docker.image_label(sh, NODE_IMAGE, INPUTS_LABEL).as_deref() == Some(inputs.as_str())
    {
        ui::note(&format!("{NODE_IMAGE} is up to date"));
        return Ok(NODE_IMAGE.to_string());
    }
    let wait = ui::Waiting::new(&format!("docker build {NODE_IMAGE}"));
    let started = std::time::Instant::now();
    docker.build(
        sh,
        &dir,
        NODE_IMAGE,
        &[("BASE_IMAGE".to_string(), base)],
        &[(INPUTS_LABEL.to_string(), inputs)],
    )?;
    wait.finish("built");
    ui::note(&format!(
        "{NODE_IMAGE} built in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(NODE_IMAGE.to_string())
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
