//! `cargo xtask test-scaling`: the pre-deploy check that horizontal scaling works, run for
//! real with Docker Compose or, with `--engine swarm`, as a Docker Swarm stack. Sequence:
//! preflight, images, database, the fresh-database scenario, the existing-database scenario,
//! the upgrade scenario (`upgrade/`, Compose only), report; cleanup on every exit path.

pub mod checks;
pub mod faults;
pub mod report;
mod shared_probe;
pub mod swarm_checks;
#[cfg(test)]
mod swarm_proof;
#[cfg(test)]
mod tests;
pub mod upgrade;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Result;
use xshell::Shell;

use self::checks::{Check, HttpRead};
use crate::{
    flags,
    host::{dbserver::DbChoice, images, preflight},
    outcome::{self, CannotRun, Failed},
    stack::{
        db::{self, MIGRATION_LOCK_SQL},
        http, parse,
        swarm::cluster,
        DbState, EngineKind, Setup, Stack, Unhealthy, DATA_DIR, DEFAULT_MAX_STARTUP_SECS,
        DEFAULT_REPLICAS, DEFAULT_TIMEOUT_SECS,
    },
    ui, Project,
};

/// The check's own compose project: never the developer's default one, nor its volumes.
pub const PROJECT_NAME: &str = "scaling-check";
/// The check's own Swarm stack (`--engine swarm`).
pub const SWARM_STACK_NAME: &str = "scaling-swarm";
/// The outside client of the `lock-held` fault plays a migration that never ends; the api
/// gets this deadline so the run stays short.
const LOCK_HELD_DEADLINE_SECS: u64 = 10;
/// `small-max-connections` gives the server this connection limit: below what 2 replicas
/// with the api's default pool need.
const SMALL_MAX_CONNECTIONS: u32 = 12;
/// `late-replica` starts its last replica this long after the others.
const LATE_REPLICA_DELAY: Duration = Duration::from_secs(35);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    ReplicaDown,
    LateReplica,
    DataNotWritable,
    NoLock,
    LockHeld,
    SmallMaxConnections,
    /// The upgrade scenario rolls in this version plus a migration that renames a column the
    /// previous version uses.
    BreakingMigration,
    /// On Swarm: the replicas spread over several nodes (`LOCAL_VOLUME_NODES`) with the compose
    /// file's own data volume, a `local` one, which exists once per node.
    LocalVolume,
}

/// The nodes `--fault local-volume` spreads the replicas over when `--nodes` does not say.
pub const LOCAL_VOLUME_NODES: u32 = 3;

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::ReplicaDown,
        Fault::LateReplica,
        Fault::DataNotWritable,
        Fault::NoLock,
        Fault::LockHeld,
        Fault::SmallMaxConnections,
        Fault::BreakingMigration,
        Fault::LocalVolume,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::ReplicaDown => "replica-down",
            Fault::LateReplica => "late-replica",
            Fault::DataNotWritable => "data-not-writable",
            Fault::NoLock => "no-lock",
            Fault::LockHeld => "lock-held",
            Fault::SmallMaxConnections => "small-max-connections",
            Fault::BreakingMigration => "breaking-migration",
            Fault::LocalVolume => "local-volume",
        }
    }

    /// The scenario the fault is injected into (the only one its run has).
    pub fn scenario(self) -> DbState {
        match self {
            Fault::BreakingMigration => DbState::Upgrade,
            _ => DbState::FreshDatabase,
        }
    }

    /// The faults the Swarm run injects: the others act on Compose's way of starting
    /// containers one by one or on the database in ways not yet wired for a Swarm stack.
    pub fn on_swarm(self) -> bool {
        matches!(
            self,
            Fault::ReplicaDown | Fault::DataNotWritable | Fault::LocalVolume
        )
    }

    /// Only Swarm spreads replicas over nodes.
    pub fn on_compose(self) -> bool {
        self != Fault::LocalVolume
    }

    pub fn parse(name: &str) -> Result<Fault> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                CannotRun(format!(
                    "unknown fault {name:?}: choose one of {}",
                    Fault::ALL.map(|f| f.name()).join(", ")
                ))
                .into()
            })
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub replicas: u32,
    pub max_startup: f64,
    pub timeout: Duration,
    pub no_build: bool,
    /// `--db`: the database server; `None` is the default stack's.
    pub db: Option<DbChoice>,
    pub keep: bool,
    pub fault: Option<Fault>,
    pub report_dir: Option<PathBuf>,
    /// How many times to run the whole check.
    pub repeat: u32,
    /// `--engine`: Docker Compose or Docker Swarm.
    pub engine: EngineKind,
    /// Which scenarios, in order (a fault runs only its own).
    pub scenarios: Vec<DbState>,
    /// `--upgrade-from`: the upgrade scenario's previous version.
    pub upgrade_from: upgrade::builds::From,
    /// `--nodes`: Swarm nodes to make on this machine; 0 runs on the engine as it is.
    pub nodes: u32,
    /// `--shared-data`: the directory every node shares, bound as the api's data volume.
    pub shared_data: Option<String>,
}

/// The scenarios a run without `--scenarios` runs on `engine`: all of them on Compose; on
/// Swarm all but the upgrade (its rolling deploy swaps the api image of a Compose project;
/// Swarm's own rolling update would be another scenario, not built yet).
pub fn default_scenarios(engine: EngineKind) -> Vec<DbState> {
    SCENARIOS
        .into_iter()
        .filter(|s| engine == EngineKind::Compose || *s != DbState::Upgrade)
        .collect()
}

/// The most Swarm nodes `--nodes` makes on one machine.
pub const MAX_NODES: u32 = 6;

/// Every scenario, in the order they run.
pub const SCENARIOS: [DbState; 3] = [
    DbState::FreshDatabase,
    DbState::ExistingDatabase,
    DbState::Upgrade,
];

/// `--scenarios fresh,existing,upgrade`, in the order they run.
pub fn parse_scenarios(list: &str) -> Result<Vec<DbState>> {
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some(s) = SCENARIOS.iter().find(|s| s.slug() == name) else {
            return Err(CannotRun(format!(
                "--scenarios: unknown scenario {name:?}: choose from fresh, existing, upgrade"
            ))
            .into());
        };
        chosen.push(*s);
    }
    if chosen.is_empty() {
        return Err(CannotRun("--scenarios: no scenario named".into()).into());
    }
    if chosen.contains(&DbState::ExistingDatabase) && !chosen.contains(&DbState::FreshDatabase) {
        return Err(CannotRun(
            "--scenarios: existing runs on the database fresh migrated; add fresh".into(),
        )
        .into());
    }
    Ok(SCENARIOS
        .into_iter()
        .filter(|s| chosen.contains(s))
        .collect())
}

impl Default for Options {
    /// The check as `make test-scaling` runs it.
    fn default() -> Options {
        Options {
            replicas: DEFAULT_REPLICAS,
            max_startup: DEFAULT_MAX_STARTUP_SECS,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            no_build: false,
            db: None,
            keep: false,
            fault: None,
            report_dir: None,
            repeat: 1,
            engine: EngineKind::Compose,
            scenarios: SCENARIOS.to_vec(),
            upgrade_from: upgrade::builds::From::Default,
            nodes: 0,
            shared_data: None,
        }
    }
}

impl Options {
    pub fn from_flags(flags: &flags::TestScaling) -> Result<Options> {
        let replicas = flags.replicas.unwrap_or(DEFAULT_REPLICAS);
        // One replica cannot show a race, a parallel start or a shared directory.
        if !(2..=32).contains(&replicas) {
            return Err(CannotRun(format!(
                "--replicas {replicas}: choose between 2 and 32 (one replica cannot show scaling)"
            ))
            .into());
        }
        let max_startup = flags.max_startup.unwrap_or(DEFAULT_MAX_STARTUP_SECS);
        if max_startup.is_nan() || max_startup <= 0.0 {
            return Err(CannotRun(format!(
                "--max-startup {max_startup}: must be a positive number of seconds"
            ))
            .into());
        }
        let timeout = flags.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if timeout == 0 {
            return Err(
                CannotRun("--timeout 0: must be a positive number of seconds".into()).into(),
            );
        }
        let fault = flags.fault.as_deref().map(Fault::parse).transpose()?;
        let engine = flags
            .engine
            .as_deref()
            .map(EngineKind::parse)
            .transpose()
            .map_err(CannotRun)?
            .unwrap_or_default();
        if let Some(f) = fault.filter(|f| engine == EngineKind::Swarm && !f.on_swarm()) {
            return Err(CannotRun(format!(
                "--fault {} is not available with --engine swarm: choose {}",
                f.name(),
                Fault::ALL
                    .into_iter()
                    .filter(|f| f.on_swarm())
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
            .into());
        }
        if let Some(f) = fault.filter(|f| engine == EngineKind::Compose && !f.on_compose()) {
            return Err(CannotRun(format!(
                "--fault {} spreads the replicas over Swarm nodes: add --engine swarm",
                f.name()
            ))
            .into());
        }
        let repeat = flags.repeat.unwrap_or(1);
        if !(1..=100).contains(&repeat) {
            return Err(CannotRun(format!("--repeat {repeat}: choose between 1 and 100")).into());
        }
        let scenarios = match (&fault, flags.scenarios.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(CannotRun(
                    "--fault runs only the scenario it is injected into: drop --scenarios".into(),
                )
                .into())
            }
            (Some(f), None) => vec![f.scenario()],
            (None, Some(list)) => parse_scenarios(list)?,
            (None, None) => default_scenarios(engine),
        };
        let opts = Options {
            engine,
            scenarios,
            upgrade_from: upgrade::builds::From::parse(flags.upgrade_from.as_deref())?,
            repeat,
            replicas,
            max_startup,
            timeout: Duration::from_secs(timeout),
            no_build: flags.no_build,
            keep: flags.keep,
            fault,
            report_dir: flags.report_dir.clone(),
            db: flags.db.as_deref().map(DbChoice::parse).transpose()?,
            nodes: flags.nodes.unwrap_or(0),
            shared_data: flags.shared_data.clone(),
        };
        opts.validate()?;
        Ok(opts)
    }

    /// What no engine can run, refused before anything starts (exit 2), whoever built the
    /// options: the flags or `cargo xtask test`'s stages.
    pub fn validate(&self) -> Result<()> {
        if self.nodes != 0 {
            if self.engine != EngineKind::Swarm {
                return Err(
                    CannotRun("--nodes runs Swarm nodes: add --engine swarm".into()).into(),
                );
            }
            if !(2..=MAX_NODES).contains(&self.nodes) {
                return Err(CannotRun(format!(
                    "--nodes {}: choose between 2 and {MAX_NODES}",
                    self.nodes
                ))
                .into());
            }
            if let Some(f) = self.fault.filter(|f| *f != Fault::LocalVolume) {
                return Err(CannotRun(format!(
                    "--fault {} is injected on one engine: drop --nodes (the cluster's own failures are test-resilience's node-drain and node-loss)",
                    f.name()
                ))
                .into());
            }
        }
        if self.fault == Some(Fault::LocalVolume) && self.shared_data.is_some() {
            return Err(CannotRun(
                "--fault local-volume runs the compose file's own volume: drop --shared-data"
                    .into(),
            )
            .into());
        }
        if let Some(dir) = &self.shared_data {
            if !dir.starts_with('/') || dir.contains(char::is_whitespace) || dir.contains(':') {
                return Err(CannotRun(format!(
                    "--shared-data {dir:?}: an absolute path without spaces or colons, the same on every node"
                ))
                .into());
            }
        }
        if self.engine == EngineKind::Swarm && self.scenarios.contains(&DbState::Upgrade) {
            return Err(CannotRun(
                "--scenarios upgrade is not available with --engine swarm: choose fresh,existing"
                    .into(),
            )
            .into());
        }
        Ok(())
    }
}

/// Everything a scenario produced.
#[derive(Debug)]
pub struct ScenarioResult {
    pub scenario: DbState,
    pub checks: Vec<Check>,
    /// Docker's time and the check's own (see `report::Timing`); `None` for the upgrade
    /// scenario, whose client traffic runs through the whole roll.
    pub timing: Option<report::Timing>,
}

pub fn run(sh: &Shell, project: &Project, opts: Options) -> Result<()> {
    opts.validate()?;
    if opts.repeat > 1 {
        return run_repeated(sh, project, opts);
    }
    let report = execute(sh, project, &opts)?;
    report.print_table();
    if report.passed() {
        println!("{}", report::banner(true));
        Ok(())
    } else {
        println!("{}", report::banner(false));
        Err(Failed(format!(
            "failed checks: {}",
            report.failed_checks().join("; ")
        ))
        .into())
    }
}

/// `--repeat K`: the whole check K times, each into `run-I/` of the report directory; then
/// how many passed and each figure's min/median/max (`repeat.json`).
fn run_repeated(sh: &Shell, project: &Project, opts: Options) -> Result<()> {
    let base = opts
        .report_dir
        .clone()
        .unwrap_or_else(|| project.target_dir.join("scaling-report").join("repeat"));
    outcome::fresh_dir(&base)?;
    let mut runs = Vec::new();
    for i in 1..=opts.repeat {
        ui::step(&format!("Run {i}/{}", opts.repeat));
        let run_opts = Options {
            report_dir: Some(base.join(format!("run-{i}"))),
            // Images are made current once, by the first run.
            no_build: opts.no_build || i > 1,
            ..opts.clone()
        };
        let report = execute(sh, project, &run_opts)?;
        report.print_table();
        runs.push(report);
    }
    let summary = report::Repeated::of(&runs);
    summary.print();
    std::fs::write(
        base.join("repeat.json"),
        serde_json::to_string_pretty(&summary.to_json())?,
    )?;
    ui::note(&format!("report: {}", base.display()));
    if summary.passed == summary.runs {
        println!("{}", report::banner(true));
        Ok(())
    } else {
        println!("{}", report::banner(false));
        Err(Failed(format!(
            "{} of {} runs failed",
            summary.runs - summary.passed,
            summary.runs
        ))
        .into())
    }
}

/// Runs the whole check and returns its report (also written to the report directory).
pub fn execute(sh: &Shell, project: &Project, opts: &Options) -> Result<report::Report> {
    let started = Instant::now();
    let report_dir = opts.report_dir.clone().unwrap_or_else(|| match opts.fault {
        Some(f) => project
            .target_dir
            .join("scaling-report")
            .join(format!("fault-{}", f.name())),
        None => project.target_dir.join("scaling-report").join("latest"),
    });
    let report_dir = match opts.engine {
        // Swarm's reports beside Compose's, not over them.
        EngineKind::Swarm if opts.report_dir.is_none() => {
            let name = report_dir.file_name().unwrap_or_default().to_string_lossy();
            report_dir.with_file_name(format!("swarm-{name}"))
        }
        _ => report_dir,
    };
    outcome::fresh_dir(&report_dir)?;

    ui::step(&format!(
        "Scaling check of {}: {} replicas on {}{}",
        project.root.display(),
        opts.replicas,
        opts.engine.name(),
        opts.fault
            .map(|f| format!(", fault {}", f.name()))
            .unwrap_or_default()
    ));
    let ignored = crate::docker::ignored_user_env();
    if !ignored.is_empty() {
        ui::note(&format!(
            "ignored from your shell, not passed to compose: {}",
            ignored.join(", ")
        ));
    }
    // A fault runs only the scenario it is injected into, however the options were made.
    let scenarios = match opts.fault {
        Some(f) => vec![f.scenario()],
        None => opts.scenarios.clone(),
    };
    // The upgrade's previous version is resolved first: a shallow clone stops here, at once.
    let previous = if scenarios.contains(&DbState::Upgrade) {
        Some(upgrade::builds::resolve(sh, project, &opts.upgrade_from)?)
    } else {
        None
    };
    let (docker, compose_program) = preflight::run(sh, project)?;

    let image_set = if opts.no_build {
        ui::step("Images: --no-build, using what is present");
        images::select_present(sh, &docker, opts.db.as_ref())?
    } else {
        images::ensure_for(
            sh,
            project,
            &docker,
            &compose_program,
            opts.db.as_ref(),
            false,
        )?
    };

    // The upgrade scenario's versions, built (or found) before any container starts.
    let upgrade_versions = match &previous {
        Some(previous) => Some(upgrade_versions(
            sh, project, &docker, &image_set, previous, opts,
        )?),
        None => None,
    };

    // Swarm nodes on this machine (`--nodes`): made before the stack, so that from here on the
    // check runs against their manager as against any swarm's; their guard outlives the stack's.
    let t_cluster = Instant::now();
    let nodes = match opts.fault {
        Some(Fault::LocalVolume) if opts.nodes == 0 => LOCAL_VOLUME_NODES,
        _ => opts.nodes,
    };
    let cluster = if nodes >= 2 {
        Some(cluster::bring_up(
            sh,
            project,
            &docker,
            &cluster::Wanted {
                nodes,
                shared_mount: opts.shared_data.as_deref().unwrap_or(cluster::SHARED_MOUNT),
                api_image: image_set.get("API_IMAGE").unwrap_or(images::API_IMAGE),
                db_image: image_set
                    .get("DB_IMAGE")
                    .unwrap_or(images::OFFICIAL_DB_IMAGE),
                keep: opts.keep,
                no_build: opts.no_build,
            },
        )?)
    } else {
        None
    };
    let cluster_s = cluster.as_ref().map(|_| t_cluster.elapsed().as_secs_f64());

    let extra = match opts.fault {
        Some(Fault::NoLock) => vec![("API_MIGRATION_LOCK".to_string(), "off".to_string())],
        Some(Fault::LockHeld) => vec![(
            "API_MIGRATION_DEADLINE_SECS".to_string(),
            LOCK_HELD_DEADLINE_SECS.to_string(),
        )],
        _ => vec![],
    };
    // A fresh random password pair per run: nothing secret is stored or printed. With --keep
    // the run's env file holds every variable, so the printed commands work.
    let mut stack = Stack::new(
        sh,
        project,
        &docker,
        compose_program,
        Setup {
            extra,
            write_vars: opts.keep,
            engine: opts.engine,
            nodes: cluster
                .as_ref()
                .map(|(_, c)| {
                    c.nodes
                        .iter()
                        .map(|n| (n.name.clone(), n.endpoint()))
                        .collect()
                })
                .unwrap_or_default(),
            shared_data: opts.shared_data.clone(),
            ..Setup::new(
                match opts.engine {
                    EngineKind::Compose => PROJECT_NAME,
                    EngineKind::Swarm => SWARM_STACK_NAME,
                },
                opts.replicas,
                &image_set,
                report_dir.join(if opts.keep {
                    "compose.env"
                } else {
                    "empty.env"
                }),
            )
        },
    )?;
    let mut report = report::Report::new(opts, &image_set);
    report.checkout = project.root.display().to_string();
    report.cluster_s = cluster_s;
    report.nodes = nodes;
    let guard = match stack.begin(opts.keep) {
        Ok(guard) => guard,
        Err(e) => {
            // Joining the swarm failed (a worker node) or the old stack would not go.
            report.error = Some(format!("{e:#}"));
            report.write(&report_dir)?;
            return Err(e);
        }
    };
    let outcome = (|| -> Result<()> {
        stack.start_db(opts.timeout)?;
        let mut migrated = false;
        for &scenario in &scenarios {
            match scenario {
                DbState::FreshDatabase => {
                    report
                        .scenarios
                        .push(run_scenario(&stack, opts, scenario, &report_dir)?);
                    migrated = true;
                }
                DbState::ExistingDatabase => {
                    ui::step("Removing the api replicas; the database keeps its schema");
                    stack.remove_api()?;
                    report
                        .scenarios
                        .push(run_scenario(&stack, opts, scenario, &report_dir)?);
                }
                DbState::Upgrade => {
                    if migrated {
                        ui::step("Removing the api replicas and emptying the database: the previous version migrates it");
                        stack.remove_api()?;
                        stack.empty_database()?;
                    }
                    let versions = upgrade_versions
                        .as_ref()
                        .expect("the upgrade's images are made before the stack starts");
                    let api_image = stack.api_image.clone();
                    let (checks, _) = upgrade::scenario::run(
                        &mut stack,
                        opts.replicas,
                        opts.timeout,
                        versions,
                        &report_dir,
                    )?;
                    stack.set_api_version(&api_image, &stack.project.compose_file())?;
                    report.scenarios.push(ScenarioResult {
                        scenario,
                        checks,
                        timing: None,
                    });
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = &outcome {
        report.error = Some(format!("{e:#}"));
    }
    stack.save_logs_by_container(&report_dir);
    drop(guard);
    // test-faults checks what a Compose fault run left; a Swarm run checks itself (the swarm
    // membership is part of what it must leave as it found it).
    if (opts.fault.is_none() || opts.engine == EngineKind::Swarm) && !opts.keep {
        let left = stack.leftovers()?;
        if !left.is_empty() {
            report
                .error
                .get_or_insert_with(|| format!("cleanup left behind: {}", left.join(", ")));
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.write(&report_dir)?;
    ui::note(&format!("report: {}", report_dir.display()));
    outcome?;
    Ok(report)
}

fn run_scenario(
    stack: &Stack,
    opts: &Options,
    scenario: DbState,
    report_dir: &std::path::Path,
) -> Result<ScenarioResult> {
    let n = opts.replicas;
    let fault = opts.fault;
    ui::step(&format!(
        "Scenario: {} — starting {n} replicas",
        scenario.name()
    ));

    if fault == Some(Fault::DataNotWritable) {
        ui::note("fault: making the shared data volume owned by root, mode 755");
        // The marker file matters: Docker copies the image's ownership of /app/data back
        // onto a named volume that is still empty when a container mounts it.
        stack.run_api_as_root(
            "chown 0:0 /app/data && chmod 755 /app/data && touch /app/data/.owned-by-root",
        )?;
    }
    if fault == Some(Fault::SmallMaxConnections) {
        ui::note(&format!(
            "fault: SET GLOBAL max_connections = {SMALL_MAX_CONNECTIONS} before the replicas start"
        ));
        stack.sql(&format!(
            "SET GLOBAL max_connections = {SMALL_MAX_CONNECTIONS}"
        ))?;
    }
    let mut lock_holder = None;
    if fault == Some(Fault::LockHeld) {
        ui::note("fault: an outside client takes the migration lock and keeps it");
        lock_holder = Some(hold_migration_lock(stack)?);
    }

    let first = if fault == Some(Fault::LateReplica) {
        n - 1
    } else {
        n
    };
    let t_up = Instant::now();
    // On a fresh database every replica must meet the migration while it runs: they are let
    // in at once (see `Stack::start_api_contended`). On an existing one they start as usual.
    let contention = if scenario == DbState::FreshDatabase {
        let c = stack.start_api_contended(first, opts.timeout)?;
        ui::note(&format!(
            "database paused {:.1} s while {} started {first} replicas ({:.1} s), then released",
            c.paused_s,
            stack.engine().name(),
            c.compose_up_s
        ));
        Some(c)
    } else {
        stack.scale_api(first)?;
        None
    };
    // Swarm's HTTP client boots while the replicas do (`Stack::prepare_http`), and TEST-03's
    // execs start as the replicas come up (`shared_probe`).
    stack.prepare_http()?;
    let mut probe = shared_probe::SharedProbe::new()?;
    let mut wait = stack.wait_healthy_seeing(first, opts.timeout, t_up, Unhealthy::Stops, |c| {
        probe.start(stack, c)
    })?;

    if fault == Some(Fault::LateReplica) {
        let remaining = LATE_REPLICA_DELAY.saturating_sub(t_up.elapsed());
        ui::note(&format!(
            "fault: starting the last replica {:.0} s after the others",
            LATE_REPLICA_DELAY.as_secs_f64()
        ));
        std::thread::sleep(remaining);
        stack.scale_api(n)?;
        wait = stack.wait_healthy_seeing(n, opts.timeout, t_up, Unhealthy::Stops, |c| {
            probe.start(stack, c)
        })?;
    }
    if fault == Some(Fault::ReplicaDown) {
        let containers = stack.api_containers()?;
        if let Some(last) = containers.iter().max_by_key(|c| c.number) {
            ui::note(&format!("fault: stopping {}", last.label()));
            stack.docker.stop(stack.sh, &last.id)?;
            // Swarm records the stopped task in the slot's history and schedules another: wait
            // until it has, so the check sees what Swarm did rather than a race with it.
            let since = Instant::now();
            while let Some(tasks) = stack.swarm_tasks()? {
                if tasks.replaced().get(&last.number).copied().unwrap_or(0) > 0
                    || since.elapsed() > Duration::from_secs(15)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
    if let Some(mut holder) = lock_holder.take() {
        let _ = holder.kill();
        let _ = holder.wait();
    }

    let docker_s = t_up.elapsed().as_secs_f64();
    ui::step(&format!("Scenario: {} — checking", scenario.name()));
    let t_check = Instant::now();
    let (containers, tasks) = stack.api_replicas()?;
    let expected: Vec<u32> = containers.iter().map(|c| c.number).collect();
    let running: Vec<u32> = containers
        .iter()
        .filter(|c| c.state == "running")
        .map(|c| c.number)
        .collect();
    let running_containers: Vec<parse::Container> = containers
        .iter()
        .filter(|c| c.state == "running")
        .cloned()
        .collect();
    // A Swarm task may have no container yet (one replacing a stopped task).
    let ids: Vec<String> = containers
        .iter()
        .filter(|c| !c.id.is_empty())
        .map(|c| c.id.clone())
        .collect();
    let engine = stack.engine().name();
    // Every piece of evidence waits only on its own commands: each runs on its own thread, so
    // the checking costs the slowest piece, not the sum (docs: the report's `check_s`).
    // Each piece's own wall time, printed as one line: what to cut next when the total is over.
    let mut pieces: Vec<(&str, f64)> = Vec::new();
    let (restarts, logs, inspect, shared, records, http_check, capacity) =
        std::thread::scope(|scope| -> Result<_> {
            // Compose's restart counts; Swarm's TEST-01 reads the slots' history in `tasks`.
            let restarts = on_thread(scope, stack, |s| {
                timed(|| match &tasks {
                    None => s.restart_counts(&containers),
                    Some(_) => Ok(BTreeMap::new()),
                })
            });
            let logs = on_thread(scope, stack, |s| {
                timed(|| {
                    let log_text = s.logs_text_of(tasks.as_ref())?;
                    std::fs::write(
                        report_dir.join(format!("{}-api.log", scenario.slug())),
                        &log_text,
                    )?;
                    Ok(parse::startups(&parse::logs(&log_text)))
                })
            });
            let inspect = on_thread(scope, stack, |s| {
                timed(|| {
                    let inspect = s.start_and_health(&ids)?;
                    std::fs::write(
                        report_dir.join(format!("{}-inspect.txt", scenario.slug())),
                        &inspect,
                    )?;
                    Ok(inspect)
                })
            });
            let shared = on_thread(scope, stack, |s| {
                timed(|| probe.run(s, &running_containers))
            });
            let records = on_thread(scope, stack, |s| {
                timed(|| {
                    let facts = db::records_and_capacity(s)?;
                    Ok((facts, db::migration_versions(&s.project.root)?))
                })
            });
            let http_check = on_thread(scope, stack, |s| {
                timed(|| Ok(cross_replica_http(s, &running_containers)))
            });
            let capacity = on_thread(scope, stack, |s| timed(|| pool_size(s, &containers)));
            Ok((
                piece(&mut pieces, "restarts", restarts)?,
                piece(&mut pieces, "logs", logs)?,
                piece(&mut pieces, "inspect", inspect)?,
                piece(&mut pieces, "shared data", shared)?,
                piece(&mut pieces, "database", records)?,
                piece(&mut pieces, "http", http_check)?,
                piece(&mut pieces, "pool size", capacity)?,
            ))
        })?;
    let gathered_s = t_check.elapsed().as_secs_f64();
    let startups = logs;
    // The timeline from the inspect taken right away (Docker keeps only the last five probe
    // results, which say when each turned healthy), not from a second one.
    let times = crate::timeline::parse_inspect(&inspect)?;
    crate::timeline::add_times_to_report(
        engine,
        scenario,
        containers.len(),
        &times,
        &startups,
        t_up,
        report_dir,
        &BTreeMap::new(),
    );
    let last_lines: BTreeMap<u32, Vec<String>> = startups
        .iter()
        .map(|(k, s)| (*k, s.lines[s.lines.len().saturating_sub(8)..].to_vec()))
        .collect();
    let mut checks = vec![match &tasks {
        None => checks::replicas(n, &containers, &restarts, &wait, &last_lines),
        Some(tasks) => {
            let mut c = swarm_checks::tasks_healthy(n, &tasks.tasks, &tasks.containers);
            swarm_checks::add_wait(&mut c, &wait);
            swarm_checks::add_spread(&mut c, &tasks.nodes());
            c
        }
    }];
    let started_at: BTreeMap<u32, chrono::DateTime<chrono::Utc>> = times
        .into_iter()
        .filter_map(|c| Some((c.number, c.started_at?)))
        .collect();
    let mut timing = checks::startup_timing(
        &expected,
        &startups,
        &started_at,
        contention.as_ref().map(|c| c.released),
        opts.max_startup,
    );
    if let Some(c) = &contention {
        timing.figures.insert("db_paused_s".into(), c.paused_s);
        timing.figures.insert("compose_up_s".into(), c.compose_up_s);
        timing.evidence.push(format!(
            "the database was paused {:.2} s while compose started the replicas ({:.2} s), then released at {}",
            c.paused_s,
            c.compose_up_s,
            c.released.format("%H:%M:%S%.3f")
        ));
    }
    checks.push(timing);
    let (mut shared, shared_results, cleanup) = shared;
    if let Some(tasks) = &tasks {
        swarm_checks::shared_data_across_nodes(
            &mut shared,
            &shared_results,
            &tasks.nodes(),
            DATA_DIR,
            stack.node_count(),
        );
    }
    checks.push(shared);
    let (facts, versions) = records;
    checks.push(checks::migrations(
        scenario,
        &expected,
        &startups,
        &facts.records,
        &versions,
    ));
    let (http_check, stored_document) = http_check;
    checks.push(http_check);
    checks.push(checks::capacity(
        stack.replicas,
        capacity,
        facts.max_connections,
        facts.open_now,
    ));
    if running.len() < expected.len() {
        for c in checks
            .iter_mut()
            .filter(|c| c.id == "TEST-03" || c.id == "HTTP")
        {
            let down: Vec<String> = containers
                .iter()
                .filter(|c| c.state != "running")
                .map(|c| c.label())
                .collect();
            c.evidence
                .push(format!("not running, so not asked: {}", down.join(", ")));
        }
    }
    if let Some(tasks) = &tasks {
        let nodes = tasks.nodes();
        for check in checks.iter_mut() {
            swarm_checks::name_tasks(check, &nodes);
        }
    }
    checks::print_verdicts(&checks);
    let check_s = t_check.elapsed().as_secs_f64();
    ui::note(&format!(
        "Docker {docker_s:.1} s (up to all healthy), the check's own {check_s:.2} s \
         (evidence gathered in {gathered_s:.2} s: {})",
        pieces
            .iter()
            .map(|(name, s)| format!("{name} {s:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    // Housekeeping, not evidence: after the check's own time.
    if let Some((container, script)) = cleanup {
        let _ = stack.exec_in(&container, &["sh", "-c", &script]);
    }
    stored_document.remove();
    Ok(ScenarioResult {
        scenario,
        checks,
        timing: Some(report::Timing { docker_s, check_s }),
    })
}

/// The upgrade scenario's two versions: the previous one (`--upgrade-from`) and this tree's
/// image, or with `--fault breaking-migration` this tree plus the breaking migration.
fn upgrade_versions(
    sh: &Shell,
    project: &Project,
    docker: &crate::docker::Docker,
    images: &images::ImageSet,
    previous: &upgrade::builds::Resolved,
    opts: &Options,
) -> Result<upgrade::scenario::Versions> {
    let previous = upgrade::builds::previous(sh, project, docker, images, previous, opts.no_build)?;
    let mut new_migrations = db::migration_versions(&project.root)?;
    let (new_image, note) = if opts.fault == Some(Fault::BreakingMigration) {
        let (set, name) = upgrade::builds::breaking(sh, project, docker, images)?;
        if let Some(v) = name.split('_').next().and_then(|v| v.parse().ok()) {
            new_migrations.push(v);
        }
        (
            set.get("API_IMAGE").unwrap_or_default().to_string(),
            Some(format!(
                "fault: the new version adds {name} (written by the xtask under target/breaking-migration/), which renames documents.stored_by, a column the previous version reads and writes"
            )),
        )
    } else {
        (
            images
                .get("API_IMAGE")
                .unwrap_or(images::API_IMAGE)
                .to_string(),
            None,
        )
    };
    if previous.image == new_image {
        return Err(CannotRun(format!(
            "--upgrade-from: the previous version is this version's own image, {new_image}"
        ))
        .into());
    }
    Ok(upgrade::scenario::Versions {
        old_image: previous.image,
        old_origin: previous.origin,
        old_compose: previous.compose_file,
        new_image,
        note,
        new_migrations,
    })
}

/// TEST-03's I/O: each replica writes a file into the shared directory, then each reads all.
/// Runs `f` on a thread of `scope` with its own shell and its own handle on the stack.
fn on_thread<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    stack: &Stack,
    f: impl FnOnce(&Stack) -> Result<T> + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, Result<T>> {
    let detached = stack.detach();
    scope.spawn(move || {
        let sh = detached.shell()?;
        f(&detached.attach(&sh))
    })
}

/// `f`'s value and its wall time in seconds.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let value = f()?;
    Ok((value, t.elapsed().as_secs_f64()))
}

/// A timed thread's value; its time goes into `pieces` under `name`.
fn piece<'n, T>(
    pieces: &mut Vec<(&'n str, f64)>,
    name: &'n str,
    handle: std::thread::ScopedJoinHandle<'_, Result<(T, f64)>>,
) -> Result<T> {
    let (value, seconds) = joined(handle)?;
    pieces.push((name, seconds));
    Ok(value)
}

fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("a thread gathering the checks' evidence panicked"))?
}

/// TEST-05's pool size: from a replica's environment, else the api's default (the server's
/// figures come with the migration records, `db::records_and_capacity`).
fn pool_size(stack: &Stack, containers: &[parse::Container]) -> Result<u32> {
    Ok(match containers.first() {
        Some(c) => parse::pool_size_from_env(&stack.container_env(&c.id)?),
        None => None,
    }
    .unwrap_or(checks::API_DEFAULT_POOL_SIZE))
}

/// An outside client takes the api's migration lock and sits on it.
fn hold_migration_lock(stack: &Stack) -> Result<std::process::Child> {
    let hold = format!("SELECT GET_LOCK({MIGRATION_LOCK_SQL}, 0); SELECT SLEEP(600);");
    let child = stack.spawn_sql(&hold)?;
    // Wait until the server reports the lock as used, so the replicas really meet it.
    let holder = db::wait_for_lock_holder(stack)?;
    ui::note(&format!("lock held by connection {holder}"));
    Ok(child)
}

/// Cross-replica HTTP: store a document through the first replica's published port and read it
/// back through every replica. Deleting it (and closing the routes' client container) is
/// housekeeping, handed back for after the check's own time.
fn cross_replica_http(stack: &Stack, running: &[parse::Container]) -> (Check, StoredDocument) {
    let replicas: Vec<u32> = running.iter().map(|c| c.number).collect();
    let replicas = replicas.as_slice();
    let body: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let Some(&first) = replicas.first() else {
        let check = checks::cross_replica_http(
            0,
            &Err("no replica is running".into()),
            &body,
            &[],
            replicas,
        );
        return (check, StoredDocument::default());
    };
    let timeout = Duration::from_secs(10);
    // Through each replica's published port on Compose; from a client container on the
    // stack's overlay network on Swarm. Where each replica is, asked once (`Stack::http_routes`).
    let routes = stack.http_routes(running).map_err(|e| format!("{e:#}"));
    let send = |n: u32, method: &str, path: &str, body: &[u8]| -> Result<http::Reply, String> {
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/octet-stream")]
        };
        routes.as_ref().map_err(Clone::clone)?.reply(
            n,
            &http::request(method, path, headers, body),
            timeout,
        )
    };
    let store = send(first, "POST", "/documents?name=scaling-check.bin", &body).and_then(|r| {
        let text = String::from_utf8_lossy(&r.body).into_owned();
        if r.status == 201 {
            Ok(text)
        } else {
            Err(format!("{} {text}", r.status))
        }
    });
    let id = store
        .as_ref()
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .and_then(|v| v["id"].as_str().map(String::from));
    let mut reads = Vec::new();
    if let Some(id) = &id {
        // Every replica read at once (`Routes::replies`).
        let path = format!("/documents/{id}/content");
        let request = http::request("GET", &path, &[], b"");
        let asked: Vec<(u32, &[u8])> = replicas.iter().map(|&n| (n, request.as_slice())).collect();
        let replies = match &routes {
            Ok(routes) => routes.replies(&asked, timeout),
            Err(e) => vec![Err(e.clone()); replicas.len()],
        };
        reads = replicas
            .iter()
            .zip(replies)
            .map(|(&n, result)| HttpRead {
                number: n,
                result: result.map(|r| (r.status, r.body)),
            })
            .collect();
    }
    let store = match (&store, &id) {
        (Ok(text), Some(_)) => Ok(text.chars().take(200).collect()),
        (Ok(text), None) => Err(format!("201 without an id: {text}")),
        (Err(e), _) => Err(e.clone()),
    };
    let check = checks::cross_replica_http(first, &store, &body, &reads, replicas);
    (
        check,
        StoredDocument {
            routes: routes.ok(),
            through: first,
            id,
        },
    )
}

/// The HTTP check's document and the routes it went by, to delete and close once the check's
/// own time is taken.
#[derive(Default)]
struct StoredDocument {
    routes: Option<crate::stack::Routes>,
    through: u32,
    id: Option<String>,
}

impl StoredDocument {
    /// Deletes the document (best effort: the volume goes with the stack anyway), then drops
    /// the routes, which on Swarm removes their client container.
    fn remove(self) {
        if let (Some(routes), Some(id)) = (&self.routes, &self.id) {
            let request = http::request("DELETE", &format!("/documents/{id}"), &[], b"");
            let _ = routes.reply(self.through, &request, Duration::from_secs(10));
        }
    }
}
