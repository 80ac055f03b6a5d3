//! `cargo xtask test`: every test of the project, the README's test command.
//! Unit tests, the api's tests against real servers, then (with Docker) the scaling check for
//! real (and once as a Docker Swarm stack), the fault-injection runs and the resilience
//! scenarios, each on the servers `plan` picks.

use std::time::Instant;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::{
    flags,
    host::{
        dbserver::{DbChoice, Server},
        testdb,
    },
    outcome::{self, CannotRun, Failed},
    resilience, scaling,
    stack::swarm::cluster,
    ui, Project,
};

/// The stage table's columns: stage, time (the result takes the rest).
const COLUMNS: &[usize] = &[44, 8];

/// One stage of the run; `None` as the server is the default stack's (`DB_IMAGE`, else
/// MariaDB 10.11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    Unit,
    Api(Option<DbChoice>),
    Scaling(Option<DbChoice>),
    /// `test-scaling --engine swarm`, once per run.
    SwarmScaling(Option<DbChoice>),
    /// `test-scaling --engine swarm --nodes 3 --shared-data …`, once per run.
    SwarmNodes(Option<DbChoice>),
    /// `test-faults --engine swarm` (local-volume among them: 3 nodes), once per run.
    SwarmFaults(Option<DbChoice>),
    Faults(Option<DbChoice>),
    Resilience(Option<DbChoice>),
}

impl Stage {
    pub fn name(&self) -> String {
        let on = |db: &Option<DbChoice>| match db {
            Some(db) => format!(" on {}", db.name()),
            None => String::new(),
        };
        match self {
            Stage::Unit => "xtask unit tests".into(),
            Stage::Api(db) => format!("api tests{}", on(db)),
            Stage::Scaling(db) => format!("test-scaling{}", on(db)),
            Stage::SwarmScaling(db) => format!("test-scaling --engine swarm{}", on(db)),
            Stage::SwarmNodes(db) => format!(
                "test-scaling --engine swarm --nodes {SWARM_NODES} --shared-data {}{}",
                cluster::SHARED_MOUNT,
                on(db)
            ),
            Stage::SwarmFaults(db) => format!("test-faults --engine swarm{}", on(db)),
            Stage::Faults(db) => format!("test-faults{}", on(db)),
            Stage::Resilience(db) => format!("test-resilience{}", on(db)),
        }
    }

    fn needs_docker(&self) -> bool {
        matches!(
            self,
            Stage::Scaling(_)
                | Stage::SwarmScaling(_)
                | Stage::SwarmNodes(_)
                | Stage::SwarmFaults(_)
                | Stage::Faults(_)
                | Stage::Resilience(_)
        )
    }
}

/// The servers the default run checks the api and the scaling on: the default stack's and
/// MySQL, the two families whose differences matter here (README, "The database").
pub const DEFAULT_SERVERS: [Server; 2] = [Server::Mariadb1011, Server::Mysql9];
/// The nodes of `make test`'s multi-node Swarm stage (issue: K=3, N=4).
pub const SWARM_NODES: u32 = 3;
/// `--matrix`: every known server.
pub const MATRIX_SERVERS: [Server; 3] = [Server::Mariadb1011, Server::Mysql9, Server::Mariadb118];

/// The stages of a run, in order. Default: the api's tests and the scaling check on each of
/// [`DEFAULT_SERVERS`], the faults and resilience once on the default stack; `--db`: every
/// stage on that server; `--matrix`: every stage on each of [`MATRIX_SERVERS`].
pub fn plan(flags: &flags::Test) -> Result<Vec<Stage>> {
    let db = flags.db.as_deref().map(DbChoice::parse).transpose()?;
    let every = |servers: &[Server]| -> Vec<Option<DbChoice>> {
        servers.iter().map(|s| Some(DbChoice::Known(*s))).collect()
    };
    let (api_and_scaling, rest) = match (db, flags.matrix) {
        (Some(_), true) => {
            return Err(CannotRun("--db and --matrix exclude each other".into()).into())
        }
        (Some(db), false) => (vec![Some(db.clone())], vec![Some(db)]),
        (None, true) => (every(&MATRIX_SERVERS), every(&MATRIX_SERVERS)),
        (None, false) => (every(&DEFAULT_SERVERS), vec![None]),
    };
    let mut stages = vec![Stage::Unit];
    stages.extend(api_and_scaling.iter().cloned().map(Stage::Api));
    stages.extend(api_and_scaling.into_iter().map(Stage::Scaling));
    // Swarm once, on the first server of the other stages: it answers "does the same stack
    // scale as a Swarm stack", not a per-server question.
    stages.extend(rest.first().cloned().map(Stage::SwarmScaling));
    stages.extend(rest.first().cloned().map(Stage::SwarmNodes));
    stages.extend(rest.first().cloned().map(Stage::SwarmFaults));
    stages.extend(rest.iter().cloned().map(Stage::Faults));
    stages.extend(rest.into_iter().map(Stage::Resilience));
    if flags.no_docker {
        stages.retain(|s| !s.needs_docker());
    }
    Ok(stages)
}

pub fn run(sh: &Shell, project: &Project, flags: &flags::Test) -> Result<()> {
    let stages = plan(flags)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut results: Vec<(String, Result<()>, f64)> = Vec::new();
    for stage in &stages {
        let name = stage.name();
        ui::step(&format!("Test stage: {name}"));
        let t = Instant::now();
        let r = match stage {
            Stage::Unit => cmd!(sh, "{cargo} test --locked -p xtask")
                .run()
                .context("cargo test -p xtask"),
            Stage::Api(db) => testdb::start_for(sh, project, db.as_ref()).and_then(|server| {
                cmd!(sh, "{cargo} test --locked -p api")
                    .env("TEST_DATABASE_URL", &server.url)
                    .run()
                    .context("cargo test -p api")
            }),
            Stage::Scaling(db) => scaling::run(
                sh,
                project,
                scaling::Options {
                    db: db.clone(),
                    // Each server's reports side by side; the default stack's where they were.
                    report_dir: db.as_ref().map(|db| {
                        project
                            .target_dir
                            .join("scaling-report")
                            .join(report_slug(db))
                    }),
                    ..scaling::Options::default()
                },
            ),
            Stage::SwarmScaling(db) => scaling::run(
                sh,
                project,
                scaling::Options {
                    db: db.clone(),
                    engine: crate::stack::EngineKind::Swarm,
                    scenarios: scaling::default_scenarios(crate::stack::EngineKind::Swarm),
                    report_dir: db.as_ref().map(|db| {
                        project
                            .target_dir
                            .join("scaling-report")
                            .join(format!("swarm-{}", report_slug(db)))
                    }),
                    ..scaling::Options::default()
                },
            ),
            Stage::SwarmNodes(db) => scaling::run(
                sh,
                project,
                scaling::Options {
                    db: db.clone(),
                    engine: crate::stack::EngineKind::Swarm,
                    scenarios: scaling::default_scenarios(crate::stack::EngineKind::Swarm),
                    nodes: SWARM_NODES,
                    shared_data: Some(cluster::SHARED_MOUNT.to_string()),
                    report_dir: Some(project.target_dir.join("scaling-report").join(format!(
                        "swarm-nodes{}",
                        db.as_ref()
                            .map(|db| format!("-{}", report_slug(db)))
                            .unwrap_or_default()
                    ))),
                    ..scaling::Options::default()
                },
            ),
            Stage::SwarmFaults(db) => scaling::faults::run(
                sh,
                project,
                None,
                db.clone(),
                crate::stack::EngineKind::Swarm,
            ),
            Stage::Faults(db) => scaling::faults::run(
                sh,
                project,
                None,
                db.clone(),
                crate::stack::EngineKind::Compose,
            ),
            Stage::Resilience(db) => resilience::run(
                sh,
                project,
                &flags::TestResilience {
                    replicas: None,
                    only: None,
                    db: db.as_ref().map(|db| db.name().to_string()),
                },
            ),
        };
        if let Err(e) = &r {
            ui::warn(&format!("{name} failed: {e:#}"));
        }
        results.push((name, r, t.elapsed().as_secs_f64()));
    }

    println!("\n{}", outcome::row(COLUMNS, &["stage", "time", "result"]));
    let mut failed = 0;
    for (name, result, seconds) in &results {
        let verdict = if result.is_ok() {
            ui::paint_stdout("ok", "1;32")
        } else {
            failed += 1;
            ui::paint_stdout("FAILED", "1;31")
        };
        let time = format!("{seconds:.0} s");
        println!("{}", outcome::row(COLUMNS, &[name, &time, &verdict]));
    }
    println!("stages: {} passed, {failed} failed", results.len() - failed);
    if failed > 0 {
        return Err(Failed(format!("{failed} test stage(s) failed")).into());
    }
    Ok(())
}

/// The report directory's name for a server: its `--db` name, an image's with `/` and `:`
/// made safe.
fn report_slug(db: &DbChoice) -> String {
    db.name().replace(['/', ':'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(db: Option<&str>, matrix: bool, no_docker: bool) -> flags::Test {
        flags::Test {
            no_docker,
            db: db.map(String::from),
            matrix,
        }
    }

    fn names(stages: &[Stage]) -> Vec<String> {
        stages.iter().map(Stage::name).collect()
    }

    #[test]
    fn the_default_run_checks_the_api_and_the_scaling_on_mariadb_and_on_mysql() {
        let stages = plan(&flags(None, false, false)).unwrap();
        assert_eq!(
            names(&stages),
            [
                "xtask unit tests",
                "api tests on mariadb-10.11",
                "api tests on mysql-9",
                "test-scaling on mariadb-10.11",
                "test-scaling on mysql-9",
                "test-scaling --engine swarm",
                "test-scaling --engine swarm --nodes 3 --shared-data /srv/scaling-shared",
                "test-faults --engine swarm",
                "test-faults",
                "test-resilience",
            ]
        );
    }

    #[test]
    fn db_runs_every_stage_on_that_server_only() {
        let stages = plan(&flags(Some("mariadb-11.8"), false, false)).unwrap();
        assert_eq!(stages.len(), 8);
        let on = Some(DbChoice::Known(Server::Mariadb118));
        assert!(stages[1..].iter().all(|s| match s {
            Stage::Api(db)
            | Stage::Scaling(db)
            | Stage::SwarmScaling(db)
            | Stage::SwarmNodes(db)
            | Stage::SwarmFaults(db)
            | Stage::Faults(db)
            | Stage::Resilience(db) => *db == on,
            Stage::Unit => false,
        }));
    }

    #[test]
    fn the_matrix_runs_every_stage_on_all_three_servers() {
        let stages = plan(&flags(None, true, false)).unwrap();
        // The unit tests once, then four stages per server, and the three Swarm stages once.
        assert_eq!(stages.len(), 1 + 4 * 3 + 3);
        assert_eq!(
            stages
                .iter()
                .filter(|s| matches!(s, Stage::SwarmScaling(_)))
                .count(),
            1
        );
        for server in Server::ALL {
            let on = Some(DbChoice::Known(server));
            assert!(stages.contains(&Stage::Api(on.clone())));
            assert!(stages.contains(&Stage::Scaling(on.clone())));
            assert!(stages.contains(&Stage::Faults(on.clone())));
            assert!(stages.contains(&Stage::Resilience(on)));
        }
    }

    #[test]
    fn no_docker_keeps_the_unit_and_api_stages_and_a_bad_choice_cannot_run() {
        let stages = plan(&flags(None, false, true)).unwrap();
        assert_eq!(
            names(&stages),
            [
                "xtask unit tests",
                "api tests on mariadb-10.11",
                "api tests on mysql-9"
            ]
        );
        assert!(plan(&flags(Some("mysql-9"), true, false)).is_err());
        assert!(plan(&flags(Some("mysql9"), false, false)).is_err());
    }

    #[test]
    fn an_image_gets_a_report_directory_name_without_separators() {
        assert_eq!(
            report_slug(&DbChoice::Image("localhost/scaling-mysql:9".into())),
            "localhost_scaling-mysql_9"
        );
        assert_eq!(report_slug(&DbChoice::Known(Server::Mysql9)), "mysql-9");
    }
}
