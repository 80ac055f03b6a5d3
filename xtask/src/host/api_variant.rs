//! Build variants of the api, each its own package and image: a copy of an `api/` source tree
//! (this checkout's, or a previous commit's) under `target/`, with extra migrations the xtask
//! writes, built on the host into the project's target directory and packaged from the
//! Dockerfile's `runtime-prebuilt` target. Never touches `api/` or `api/migrations/`.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use super::images::ImageSet;
use crate::{docker::Docker, ui, Project};

const INPUTS_LABEL: &str = "org.scaling-check.inputs";

/// The variant's workspace manifest: the api alone, with the real workspace's release profile.
const WORKSPACE_TOML: &str = "[workspace]\nmembers = [\"api\"]\nresolver = \"2\"\n\n\
[workspace.package]\nedition = \"2021\"\nlicense = \"MIT\"\npublish = false\n\n\
[profile.release]\nstrip = \"debuginfo\"\n";

/// One variant of the api.
pub struct Variant {
    /// In words, for progress lines: "the api with a slow migration".
    pub what: String,
    /// Its package and binary name; its library keeps the name `api`.
    pub package: String,
    /// Its directory under the project's target directory.
    pub dir: PathBuf,
    /// Its image tag.
    pub image: String,
    /// The `api/` tree to copy.
    pub api_src: PathBuf,
    /// The lock file that goes with that tree.
    pub lock_file: PathBuf,
    /// Migrations added to the copy: file name and SQL.
    pub extra_migrations: Vec<(String, String)>,
    /// Edits of the copy's sources: a path under `api/`, and each text to replace with
    /// another (each must occur, or the build stops: the source changed under the variant).
    pub edits: Vec<(String, Vec<(String, String)>)>,
}

/// api/Cargo.toml with the package and the binary renamed to `package` and the library still
/// called `api` (main.rs uses `api::`).
///
/// Cargo derives a path package's build hashes from its name and its path relative to the
/// workspace, so a copy still named `api` would pass for the real api, fresh, and one image
/// would get the other's binary.
pub fn renamed_manifest(text: &str, package: &str) -> Result<String> {
    let head = "[package]\nname = \"api\"\n";
    let lib = "[lib]\n";
    let bin = "[[bin]]\nname = \"api\"\n";
    if !(text.contains(head) && text.contains(lib) && text.contains(bin)) {
        bail!("this api/Cargo.toml lacks the [package], [lib] and [[bin]] sections a build variant renames");
    }
    Ok(text
        .replacen(head, &format!("[package]\nname = \"{package}\"\n"), 1)
        .replacen(lib, "[lib]\nname = \"api\"\n", 1)
        .replacen(bin, &format!("[[bin]]\nname = \"{package}\"\n"), 1))
}

/// Builds the variant's binary on the host; returns its path.
pub fn build_binary(sh: &Shell, project: &Project, v: &Variant) -> Result<PathBuf> {
    let ws = v.dir.join("ws");
    // The copy follows the source file by file; an unchanged file keeps its mtime, so cargo
    // rebuilds only when something changed.
    // The manifest is not copied but written renamed: written twice, its mtime would change
    // on every run and cargo would rebuild the variant every time.
    let source_manifest = v.api_src.join("Cargo.toml");
    let mut except = vec![source_manifest.clone()];
    except.extend(v.edits.iter().map(|(path, _)| v.api_src.join(path)));
    let mut wanted = copy_dir(&v.api_src, &ws.join("api"), &except)?;
    for (path, replacements) in &v.edits {
        let mut text = std::fs::read_to_string(v.api_src.join(path))
            .with_context(|| format!("reading api/{path}"))?;
        for (from, to) in replacements {
            if !text.contains(from.as_str()) {
                bail!(
                    "api/{path} no longer contains {from:?}, which {} replaces",
                    v.what
                );
            }
            text = text.replace(from.as_str(), to);
        }
        let dest = ws.join("api").join(path);
        write_if_changed(&dest, text.as_bytes())?;
        wanted.push(dest);
    }
    let manifest_text = std::fs::read_to_string(&source_manifest)
        .with_context(|| format!("reading {}", source_manifest.display()))?;
    let manifest = ws.join("api").join("Cargo.toml");
    write_if_changed(
        &manifest,
        renamed_manifest(&manifest_text, &v.package)?.as_bytes(),
    )?;
    wanted.push(manifest);
    for (name, sql) in &v.extra_migrations {
        let extra = ws.join("api").join("migrations").join(name);
        write_if_changed(&extra, sql.as_bytes())?;
        wanted.push(extra);
    }
    remove_others(&ws.join("api"), &wanted)?;
    write_if_changed(&ws.join("Cargo.toml"), WORKSPACE_TOML.as_bytes())?;
    // The tree's lock file: the same versions as that api. Not --locked: cargo drops the
    // xtask's entries from this copy, which changes no version the api uses.
    write_if_changed(&ws.join("Cargo.lock"), &std::fs::read(&v.lock_file)?)?;

    // The project's own target directory: the dependencies compiled for the real api are
    // reused; the variant's own package name keeps its binary apart (see renamed_manifest).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = ws.join("Cargo.toml");
    let target_dir = &project.target_dir;
    let package = &v.package;
    let wait = ui::Waiting::new(&format!("cargo build --release ({})", v.what));
    cmd!(
        sh,
        "{cargo} build --release -p {package} --manifest-path {manifest} --target-dir {target_dir}"
    )
    .quiet()
    .run()
    .with_context(|| format!("building {} on the host", v.what))?;
    wait.finish("built");
    Ok(target_dir.join("release").join(&v.package))
}

/// Builds (or finds up to date) the variant's image from `binary`; returns `base` with
/// API_IMAGE pointing at it.
pub fn package(
    sh: &Shell,
    project: &Project,
    docker: &Docker,
    base: &ImageSet,
    v: &Variant,
    binary: &Path,
) -> Result<ImageSet> {
    let context = v.dir.join("context");
    let bin_dir = context.join("target").join("docker");
    std::fs::create_dir_all(&bin_dir)?;
    let dest = bin_dir.join("api");
    // A copy keeps the binary's mode: the image runs it.
    if std::fs::read(&dest).ok() != Some(std::fs::read(binary)?) {
        std::fs::copy(binary, &dest)
            .with_context(|| format!("copying {} into the build context", binary.display()))?;
    }
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
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
    if docker.image_label(sh, &v.image, INPUTS_LABEL).as_deref() == Some(inputs.as_str()) {
        ui::note(&format!("{} is up to date", v.image));
    } else {
        let wait = ui::Waiting::new(&format!("docker build {}", v.image));
        docker.build_target(
            sh,
            &context,
            &dockerfile,
            "runtime-prebuilt",
            &v.image,
            &[("RUNTIME_IMAGE".into(), runtime)],
            &[(INPUTS_LABEL.into(), inputs)],
        )?;
        wait.finish("built");
    }
    Ok(with_api_image(base, &v.image))
}

/// `base` with API_IMAGE set to `image`.
pub fn with_api_image(base: &ImageSet, image: &str) -> ImageSet {
    let mut set = base.clone();
    set.env.retain(|(k, _)| k != "API_IMAGE");
    set.env.push(("API_IMAGE".into(), image.into()));
    set
}

/// Copies `from` into `to` but `except`, writing only files whose bytes differ; returns every
/// file copied.
fn copy_dir(from: &Path, to: &Path, except: &[PathBuf]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(to)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if except.contains(&entry.path()) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            files.extend(copy_dir(&entry.path(), &dest, except)?);
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

/// Removes the files under `dir` that are not `keep` (a file deleted from the source).
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
    fn a_variant_is_a_package_of_its_own_whose_library_is_still_api() {
        let real = include_str!("../../../api/Cargo.toml");
        let copy = renamed_manifest(real, "api-slow-migration").unwrap();
        assert!(
            copy.contains("[package]\nname = \"api-slow-migration\"\n"),
            "{copy}"
        );
        assert!(copy.contains("[lib]\nname = \"api\"\n"), "{copy}");
        assert!(
            copy.contains("[[bin]]\nname = \"api-slow-migration\"\n"),
            "{copy}"
        );
        assert!(renamed_manifest("[package]\nname = \"other\"\n", "x").is_err());
    }
}
