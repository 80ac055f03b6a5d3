//! The two builds the upgrade scenario deploys besides this tree's image: the previous version
//! (a git ref's `api/`, or an image given by name), and for `--fault breaking-migration` this
//! tree with an extra migration that renames a column the previous version uses. Both are
//! built under `target/` as their own packages and images; the checkout and `api/migrations/`
//! are never touched.

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::previous;
use crate::{
    docker::Docker,
    host::{
        api_variant::{self, Variant},
        images::ImageSet,
    },
    outcome::CannotRun,
    ui, Project,
};

/// `--upgrade-from`: where the previous version comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum From {
    /// The parent of the commit that added the newest migration.
    Default,
    /// A git ref (commit, tag, branch) of this repository.
    Ref(String),
    /// An image already present (`image:NAME`).
    Image(String),
}

impl From {
    pub fn parse(spec: Option<&str>) -> Result<From> {
        match spec.map(str::trim) {
            None => Ok(From::Default),
            Some("") => {
                Err(CannotRun("--upgrade-from: empty; give a git ref or image:NAME".into()).into())
            }
            Some(s) => match s.strip_prefix("image:") {
                Some("") => {
                    Err(CannotRun("--upgrade-from image: needs an image name".into()).into())
                }
                Some(name) => Ok(From::Image(name.to_string())),
                None => Ok(From::Ref(s.to_string())),
            },
        }
    }
}

/// The previous version as deployed: its image and, in words, what it is.
#[derive(Clone, Debug)]
pub struct Previous {
    pub image: String,
    pub origin: String,
    /// The compose file it is deployed with: the commit's own, written under
    /// `target/upgrade/prev-<sha>/`, or this checkout's for `image:NAME`.
    pub compose_file: std::path::PathBuf,
}

/// The extra migration of `--fault breaking-migration`, after `newest` (the newest real
/// version): a contract step (the rename) shipped in the same deploy as the code that needs it
/// (`breaking_code`), while the previous version still selects and inserts `stored_by`. Its text is
/// `xtask/testdata/upgrade/breaking-migration/`'s, the run the judges' tests replay.
pub fn breaking_migration(newest: i64) -> (String, String) {
    (
        format!("{}_rename_documents_stored_by.sql", newest + 1),
        "-- The breaking-migration fault: a contract step shipped in the same deploy as the code that\n\
         -- needs it. The previous version still selects and inserts `stored_by`.\n\
         ALTER TABLE documents RENAME COLUMN stored_by TO stored_by_host;\n"
            .to_string(),
    )
}

/// The next version's code that goes with the breaking migration: its SQL reads and writes
/// the renamed column, so only the previous version's queries fail.
pub fn breaking_code() -> (String, Vec<(String, String)>) {
    (
        "src/routes/documents.rs".into(),
        vec![
            (
                "created_at, stored_by FROM documents".into(),
                "created_at, stored_by_host AS stored_by FROM documents".into(),
            ),
            (
                "created_at, stored_by) ".into(),
                "created_at, stored_by_host) ".into(),
            ),
        ],
    )
}

/// The image tag of a previous commit's build.
pub fn previous_image(short_sha: &str) -> String {
    format!("localhost/scaling-api:prev-{short_sha}")
}

/// The previous version, resolved before anything is built or started (a shallow clone
/// fails here, at once): an image by name, or a commit of this repository.
#[derive(Clone, Debug)]
pub enum Resolved {
    Image(String),
    Commit {
        sha: String,
        short: String,
        /// Why this commit, in words.
        why: String,
    },
}

/// Resolves `--upgrade-from` with git alone.
pub fn resolve(sh: &Shell, project: &Project, from: &From) -> Result<Resolved> {
    let (sha, why) = match from {
        From::Image(name) => return Ok(Resolved::Image(name.clone())),
        From::Ref(r) => {
            let sha = git(
                sh,
                project,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{r}^{{commit}}"),
                ],
            )
            .map_err(|_| {
                CannotRun(format!(
                    "--upgrade-from {r}: not a commit of this repository"
                ))
            })?;
            (sha, format!("--upgrade-from {r}"))
        }
        From::Default => default_ref(sh, project)?,
    };
    let short = git(sh, project, &["rev-parse", "--short=7", &sha])?;
    Ok(Resolved::Commit { sha, short, why })
}

/// The previous version's image: given by name, or a commit's api built under
/// `target/upgrade/prev-<sha>/` and tagged `localhost/scaling-api:prev-<sha>`, rebuilt only
/// when that image is missing (`no_build`: never built, missing is an error).
pub fn previous(
    sh: &Shell,
    project: &Project,
    docker: &Docker,
    base: &ImageSet,
    resolved: &Resolved,
    no_build: bool,
) -> Result<Previous> {
    ui::step("Images: the previous version");
    let (sha, short, why) = match resolved {
        Resolved::Image(name) => {
            if !docker.image_exists(sh, name) {
                return Err(CannotRun(format!(
                    "--upgrade-from image:{name}: no such image on this machine (docker image ls)"
                ))
                .into());
            }
            return Ok(Previous {
                image: name.clone(),
                origin: format!("image {name} (--upgrade-from)"),
                compose_file: project.compose_file(),
            });
        }
        Resolved::Commit { sha, short, why } => (sha, short, why),
    };
    let image = previous_image(short);
    let origin = format!("commit {short}, {why}");
    let dir = project
        .target_dir
        .join("upgrade")
        .join(format!("prev-{short}"));
    // The commit's own compose file: its replicas get the settings that version reads (one
    // before the `db-password` secret reads DB_PASSWORD, which this file no longer sets).
    std::fs::create_dir_all(&dir)?;
    let compose_file = dir.join("docker-compose.yml");
    let text = git(sh, project, &["show", &format!("{sha}:docker-compose.yml")])
        .with_context(|| format!("reading {short}'s docker-compose.yml"))?;
    std::fs::write(&compose_file, text + "\n")?;
    if docker.image_exists(sh, &image) {
        ui::note(&format!("{image} is present ({origin})"));
        return Ok(Previous {
            image,
            origin,
            compose_file,
        });
    }
    if no_build {
        return Err(CannotRun(format!(
            "--no-build: the previous version's image {image} ({origin}) is missing: run once without --no-build"
        ))
        .into());
    }
    let tree = dir.join("tree");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    std::fs::create_dir_all(&tree)?;
    let tar = dir.join("tree.tar");
    let root = &project.root;
    cmd!(
        sh,
        "git -C {root} archive --format=tar -o {tar} {sha} api Cargo.lock"
    )
    .quiet()
    .run()
    .with_context(|| format!("git archive of {short}'s api/"))?;
    cmd!(sh, "tar -xf {tar} -C {tree}")
        .quiet()
        .run()
        .context("unpacking the previous version's tree")?;
    let variant = Variant {
        what: format!("the previous version, {short}"),
        package: format!("api-prev-{short}"),
        dir: dir.clone(),
        image: image.clone(),
        api_src: tree.join("api"),
        lock_file: tree.join("Cargo.lock"),
        extra_migrations: vec![],
        edits: vec![],
    };
    let binary = api_variant::build_binary(sh, project, &variant)?;
    // A binary built from another tree would embed this tree's newer migrations.
    let old_names = migration_files(&tree.join("api").join("migrations"))?;
    let bytes = std::fs::read(&binary)?;
    for name in migration_files(&project.root.join("api").join("migrations"))? {
        if old_names.contains(&name) {
            continue;
        }
        let sql = std::fs::read_to_string(project.root.join("api/migrations").join(&name))?;
        if previous::embeds(&bytes, &sql) {
            bail!("the build of {short} embeds {name}, which that commit does not have: cargo returned another tree's binary");
        }
    }
    api_variant::package(sh, project, docker, base, &variant, &binary)?;
    Ok(Previous {
        image,
        origin,
        compose_file,
    })
}

/// The default previous version: the parent of the commit that added the newest migration.
fn default_ref(sh: &Shell, project: &Project) -> Result<(String, String)> {
    let names = migration_files(&project.root.join("api").join("migrations"))?;
    let newest = previous::newest_migration(names.iter().map(String::as_str))
        .context("api/migrations/ has no migration")?
        .to_string();
    let path = format!("api/migrations/{newest}");
    let added = git(
        sh,
        project,
        &["log", "--diff-filter=A", "--format=%H", "--", &path],
    )?;
    let Some(sha) = added.lines().last().filter(|l| !l.is_empty()) else {
        return Err(CannotRun(format!(
            "{path} is not committed, so there is no previous version without it: commit it, or pass --upgrade-from REF or image:NAME"
        ))
        .into());
    };
    let shallow = git(sh, project, &["rev-parse", "--is-shallow-repository"])? == "true";
    let parent = git(
        sh,
        project,
        &["rev-parse", "--verify", "--quiet", &format!("{sha}^")],
    );
    match parent {
        Ok(parent) if !parent.is_empty() => Ok((
            parent,
            format!("the parent of {}, which added {newest}", &sha[..7]),
        )),
        _ if shallow => Err(CannotRun(format!(
            "this clone is shallow: {newest} first appears here in {}, whose parent is not here, so the previous version (the parent of the commit that added {newest}) cannot be built: run `git fetch --unshallow`, or pass --upgrade-from REF or image:NAME",
            &sha[..7]
        ))
        .into()),
        _ => Err(CannotRun(format!(
            "{} added {newest} and has no parent, so there is no previous version without it: pass --upgrade-from REF or image:NAME",
            &sha[..7]
        ))
        .into()),
    }
}

/// `.sql` file names in a migrations directory.
fn migration_files(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    Ok(names)
}

/// This tree with the breaking migration, as its own package and image; returns `base` with
/// API_IMAGE pointing at it, and the migration's file name.
pub fn breaking(
    sh: &Shell,
    project: &Project,
    docker: &Docker,
    base: &ImageSet,
) -> Result<(ImageSet, String)> {
    ui::step("Images: this version with a breaking migration");
    let names = migration_files(&project.root.join("api").join("migrations"))?;
    let newest: i64 = previous::newest_migration(names.iter().map(String::as_str))
        .and_then(|n| n.split('_').next()?.parse().ok())
        .context("api/migrations/ has no migration")?;
    let (name, sql) = breaking_migration(newest);
    let variant = Variant {
        what: "the api with a breaking migration".into(),
        package: "api-breaking-migration".into(),
        dir: project.target_dir.join("breaking-migration"),
        image: "localhost/scaling-api:breaking-migration".into(),
        api_src: project.root.join("api"),
        lock_file: project.root.join("Cargo.lock"),
        extra_migrations: vec![(name.clone(), sql.clone())],
        edits: vec![breaking_code()],
    };
    let binary = api_variant::build_binary(sh, project, &variant)?;
    if !previous::embeds(&std::fs::read(&binary)?, &sql) {
        bail!("the breaking-migration build does not embed {name}: cargo returned another tree's binary");
    }
    let set = api_variant::package(sh, project, docker, base, &variant, &binary)?;
    Ok((set, name))
}

/// One git command in the repository, its trimmed output.
fn git(sh: &Shell, project: &Project, args: &[&str]) -> Result<String> {
    let root = &project.root;
    Ok(cmd!(sh, "git -C {root} {args...}")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| format!("git {}", args.join(" ")))?
        .trim()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_from_is_a_ref_or_an_image() {
        assert_eq!(From::parse(None).unwrap(), From::Default);
        assert_eq!(From::parse(Some("v1.2")).unwrap(), From::Ref("v1.2".into()));
        assert_eq!(
            From::parse(Some("image:localhost/scaling-api:old")).unwrap(),
            From::Image("localhost/scaling-api:old".into())
        );
        assert!(From::parse(Some("image:")).is_err());
        assert!(From::parse(Some(" ")).is_err());
    }

    #[test]
    fn the_breaking_migration_is_the_recorded_one_after_the_newest() {
        let (name, sql) = breaking_migration(20250101000003);
        assert_eq!(name, "20250101000004_rename_documents_stored_by.sql");
        let recorded = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/upgrade/breaking-migration")
                .join(&name),
        )
        .unwrap();
        assert_eq!(sql, recorded);
    }

    #[test]
    fn the_breaking_versions_code_uses_the_renamed_column_wherever_the_api_names_it() {
        let (path, edits) = breaking_code();
        let source = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../api")
                .join(&path),
        )
        .unwrap();
        let mut edited = source.clone();
        for (from, to) in &edits {
            assert!(source.contains(from.as_str()), "{from}");
            edited = edited.replace(from.as_str(), to);
        }
        // Every SQL mention of the column is now the new name (the struct field keeps its name).
        for line in edited
            .lines()
            .filter(|l| l.contains("stored_by") && l.contains('"'))
        {
            assert!(line.contains("stored_by_host"), "{line}");
        }
    }
}
