//! A build variant of the api with one slow migration after the real ones, for the
//! mid-migration resilience scenarios: built on the host under `target/slow-migration/` and
//! packaged as its own image tag from the Dockerfile's `runtime-prebuilt` target. Never in
//! `api/migrations/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use super::images::ImageSet;
use crate::{docker::Docker, ui, Project};

/// The variant's image; the real api's image is untouched.
pub const IMAGE: &str = "localhost/scaling-api:slow-migration";
/// How long the extra migration runs.
pub const SLOW_SECS: u64 = 8;
/// Its version: after every real one.
pub const SLOW_VERSION: i64 = 20991231000000;
const INPUTS_LABEL: &str = "org.scaling-check.inputs";
/// The variant's package and binary name; its library keeps the name `api`.
const PACKAGE: &str = "api-slow-migration";

/// api/Cargo.toml with the package and the binary renamed to [`PACKAGE`] and the library
/// still called `api` (main.rs uses `api::`).
pub fn renamed_manifest(text: &str) -> Result<String> {
    let package = "[package]\nname = \"api\"\n";
    let lib = "[lib]\n";
    let bin = "[[bin]]\nname = \"api\"\n";
    if !(text.contains(package) && text.contains(lib) && text.contains(bin)) {
        anyhow::bail!("api/Cargo.toml no longer has the [package], [lib] and [[bin]] sections the slow-migration copy renames");
    }
    Ok(text
        .replacen(package, &format!("[package]\nname = \"{PACKAGE}\"\n"), 1)
        .replacen(lib, "[lib]\nname = \"api\"\n", 1)
        .replacen(bin, &format!("[[bin]]\nname = \"{PACKAGE}\"\n"), 1))
}

/// The extra migration's file name and text: a DDL statement, then the server sleeps, as a
/// long ALTER would. Without the DDL the recorded row would stay uncommitted, invisible, and
/// rolled back by a kill: no dirty row to see.
pub fn slow_migration() -> (String, String) {
    (
        format!("{SLOW_VERSION}_slow_for_resilience.sql"),
        format!(
            "-- Added by the xtask to a copy of the api: a migration that takes {SLOW_SECS} s.\n\
             -- sqlx records it with success = 0 in a transaction; the DDL commits that row\n\
             -- (MySQL's implicit commit), as a real ALTER would, then the server works.\n\
             CREATE TABLE resilience_slow_migration (id INT PRIMARY KEY);\n\
             DO SLEEP({SLOW_SECS});\n"
        ),
    )
}

/// The variant's workspace manifest: the api alone, with the real workspace's release profile.
const WORKSPACE_TOML: &str = "[workspace]\nmembers = [\"api\"]\nresolver = \"2\"\n\n\
[workspace.package]\nedition = \"2021\"\nlicense = \"MIT\"\npublish = false\n\n\
[profile.release]\nstrip = \"debuginfo\"\n";

/// Builds (or finds up to date) the variant's image; returns `base` with API_IMAGE pointing
/// at it.
pub fn ensure(sh: &Shell, project: &Project, docker: &Docker, base: &ImageSet) -> Result<ImageSet> {
    ui::step("Images: the api with a slow migration");
    let dir = project.target_dir.join("slow-migration");
    let ws = dir.join("ws");
    // The copy follows api/ file by file; an unchanged file keeps its mtime, so cargo
    // rebuilds only when something changed.
    let (name, sql) = slow_migration();
    let mut wanted = copy_dir(&project.root.join("api"), &ws.join("api"))?;
    let manifest_path = ws.join("api").join("Cargo.toml");
    let renamed = renamed_manifest(&std::fs::read_to_string(
        project.root.join("api/Cargo.toml"),
    )?)?;
    write_if_changed(&manifest_path, renamed.as_bytes())?;
    let extra = ws.join("api").join("migrations").join(name);
    write_if_changed(&extra, sql.as_bytes())?;
    wanted.push(extra);
    remove_others(&ws.join("api"), &wanted)?;
    write_if_changed(&ws.join("Cargo.toml"), WORKSPACE_TOML.as_bytes())?;
    // The workspace's lock file: the same versions as the real api. Not --locked: cargo drops
    // the xtask's entries from this copy, which changes no version the api uses.
    write_if_changed(
        &ws.join("Cargo.lock"),
        &std::fs::read(project.root.join("Cargo.lock"))?,
    )?;

    // The project's own target directory: the dependencies compiled for the real api are
    // reused. The variant is its own package with its own binary (renamed_manifest): cargo
    // derives a path package's build hashes from its name and its path relative to the
    // workspace, so a copy still named `api` would pass for the real api, fresh, and the real
    // image would get this binary.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = ws.join("Cargo.toml");
    let target_dir = &project.target_dir;
    let wait = ui::Waiting::new("cargo build --release (api with a slow migration)");
    cmd!(
        sh,
        "{cargo} build --release -p {PACKAGE} --manifest-path {manifest} --target-dir {target_dir}"
    )
    .quiet()
    .run()
    .context("building the api with a slow migration on the host")?;
    wait.finish("built");
    let context = dir.join("context");
    let bin_dir = context.join("target").join("docker");
    std::fs::create_dir_all(&bin_dir)?;
    std::fs::copy(
        target_dir.join("release").join(PACKAGE),
        bin_dir.join("api"),
    )?;

    let runtime = base
        .get("RUNTIME_IMAGE")
        .context("the image set names no RUNTIME_IMAGE")?
        .to_string();
    let dockerfile = project.root.join("Dockerfile");
    let inputs = {
        let mut h = Sha256::new();
        for part in [
            std::fs::read(bin_dir.join("api"))?,
            std::fs::read(&dockerfile)?,
            runtime.clone().into_bytes(),
            docker
                .image_label(sh, &runtime, INPUTS_LABEL)
                .unwrap_or_default()
                .into_bytes(),
        ] {
            h.update(&part);
            h.update([0]);
        }
        format!("{:x}", h.finalize())[..16].to_string()
    };
    if docker.image_label(sh, IMAGE, INPUTS_LABEL).as_deref() == Some(inputs.as_str()) {
        ui::note(&format!("{IMAGE} is up to date"));
    } else {
        let wait = ui::Waiting::new(&format!("docker build {IMAGE}"));
        docker.build_target(
            sh,
            &context,
            &dockerfile,
            "runtime-prebuilt",
            IMAGE,
            &[("RUNTIME_IMAGE".into(), runtime)],
            &[(INPUTS_LABEL.into(), inputs)],
        )?;
        wait.finish("built");
    }
    let mut set = base.clone();
    set.env.retain(|(k, _)| k != "API_IMAGE");
    set.env.push(("API_IMAGE".into(), IMAGE.into()));
    Ok(set)
}

/// Copies `from` into `to`, writing only files whose bytes differ; returns every file copied.
fn copy_dir(from: &Path, to: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(to)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            files.extend(copy_dir(&entry.path(), &dest)?);
        } else {
            write_if_changed(&dest, &std::fs::read(entry.path())?)?;
            files.push(dest);
        }
    }
    Ok(files)
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Removes the files under `dir` that are not `keep` (a file deleted from api/).
fn remove_others(dir: &Path, keep: &[PathBuf]) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            remove_others(&path, keep)?;
        } else if !keep.contains(&path) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_a_package_of_its_own_whose_library_is_still_api() {
        let real = include_str!("../../../api/Cargo.toml");
        let copy = renamed_manifest(real).unwrap();
        assert!(
            copy.contains("[package]\nname = \"api-slow-migration\"\n"),
            "{copy}"
        );
        assert!(copy.contains("[lib]\nname = \"api\"\n"), "{copy}");
        assert!(
            copy.contains("[[bin]]\nname = \"api-slow-migration\"\n"),
            "{copy}"
        );
        assert!(renamed_manifest("[package]\nname = \"other\"\n").is_err());
    }

    #[test]
    fn the_slow_migration_comes_after_every_real_one_and_sleeps() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/migrations");
        let real: Vec<i64> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .map(|n| n.split('_').next().unwrap().parse().unwrap())
            .collect();
        assert!(!real.is_empty());
        assert!(real.iter().all(|v| *v < SLOW_VERSION), "{real:?}");
        let (name, sql) = slow_migration();
        assert!(name.starts_with(&SLOW_VERSION.to_string()));
        let create = sql.find("CREATE TABLE").expect("a DDL statement");
        assert!(
            sql.find(&format!("SLEEP({SLOW_SECS})")).unwrap() > create,
            "{sql}"
        );
    }
}
