//! A build variant of the api with one slow migration after the real ones, for the
//! mid-migration resilience scenarios: built on the host under `target/slow-migration/` and
//! packaged as its own image tag from the Dockerfile's `runtime-prebuilt` target. Never in
//! `api/migrations/`.

use anyhow::Result;
use xshell::Shell;

use super::{
    api_variant::{self, Variant},
    images::ImageSet,
};
use crate::{docker::Docker, ui, Project};

/// The variant's image; the real api's image is untouched.
pub const IMAGE: &str = "localhost/scaling-api:slow-migration";
/// How long the extra migration runs.
pub const SLOW_SECS: u64 = 8;
/// Its version: after every real one.
pub const SLOW_VERSION: i64 = 20991231000000;
/// The variant's package and binary name; its library keeps the name `api`.
const PACKAGE: &str = "api-slow-migration";

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

/// Builds (or finds up to date) the variant's image; returns `base` with API_IMAGE pointing
/// at it.
pub fn ensure(sh: &Shell, project: &Project, docker: &Docker, base: &ImageSet) -> Result<ImageSet> {
    ui::step("Images: the api with a slow migration");
    let variant = Variant {
        what: "the api with a slow migration".into(),
        package: PACKAGE.into(),
        dir: project.target_dir.join("slow-migration"),
        image: IMAGE.into(),
        api_src: project.root.join("api"),
        lock_file: project.root.join("Cargo.lock"),
        extra_migrations: vec![slow_migration()],
        edits: vec![],
    };
    let binary = api_variant::build_binary(sh, project, &variant)?;
    api_variant::package(sh, project, docker, base, &variant, &binary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
