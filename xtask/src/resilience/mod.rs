//! `cargo xtask test-resilience`: the scaled stack survives faults and bad input, and loses
//! nothing. Each scenario runs against a real stack of N replicas (its own compose project,
//! `scaling-resilience`), prints its figures and passes or fails on its own; the stack is
//! taken down on every exit path. Exit 0 all passed, 1 one failed, 2 could not run.

mod bad_input;
mod cli;
mod db_restart;
mod fuzz;
mod leader;
mod mid_migration;
mod nodes;
mod scale_down;
mod security;
mod slow_clients;
mod writers;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use serde::Serialize;
use xshell::Shell;

use crate::{
    flags,
    host::{dbserver::DbChoice, images, preflight, slow_api},
    outcome::{self, CannotRun, Failed},
    stack::{swarm::cluster, EngineKind, Setup, Stack, Unhealthy, WaitOutcome, DEFAULT_REPLICAS},
    ui, Project,
};

/// The scenarios' own compose project: never the developer's, nor the scaling check's.
pub const PROJECT_NAME: &str = "scaling-resilience";
/// The mid-migration scenarios' project: a fresh database each, of the slow-migration api.
pub const MIGRATION_PROJECT_NAME: &str = "scaling-resilience-migration";
/// The node scenarios' Swarm stack.
pub const CLUSTER_STACK_NAME: &str = "scaling-resilience-nodes";
/// How long a scenario waits for the replicas to be healthy before it starts.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    LeaderDeath,
    DbRestart,
    ConcurrentWriters,
    ScaleDown,
    BadInput,
    Security,
    XtaskInput,
    StopMidMigration,
    KillMidMigration,
    Schemathesis,
    NodeDrain,
    NodeLoss,
}

impl Scenario {
    /// In the report's order (the README's table).
    pub const ALL: [Scenario; 12] = [
        Scenario::LeaderDeath,
        Scenario::DbRestart,
        Scenario::ConcurrentWriters,
        Scenario::ScaleDown,
        Scenario::BadInput,
        Scenario::Security,
        Scenario::XtaskInput,
        Scenario::StopMidMigration,
        Scenario::KillMidMigration,
        Scenario::Schemathesis,
        Scenario::NodeDrain,
        Scenario::NodeLoss,
    ];

    /// The order they run in: the xtask's own bad input before any stack exists, leader death
    /// on the fresh database, scale-down last (it leaves fewer replicas); then the
    /// mid-migration scenarios, each on a stack of its own (a fresh database, the slow api).
    const RUN_ORDER: [Scenario; 12] = [
        Scenario::XtaskInput,
        Scenario::LeaderDeath,
        Scenario::Security,
        Scenario::DbRestart,
        Scenario::ConcurrentWriters,
        Scenario::BadInput,
        Scenario::Schemathesis,
        Scenario::ScaleDown,
        Scenario::StopMidMigration,
        Scenario::KillMidMigration,
        Scenario::NodeDrain,
        Scenario::NodeLoss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LeaderDeath => "leader-death",
            Scenario::DbRestart => "db-restart",
            Scenario::ConcurrentWriters => "concurrent-writers",
            Scenario::ScaleDown => "scale-down",
            Scenario::BadInput => "bad-input",
            Scenario::Security => "security",
            Scenario::XtaskInput => "xtask-input",
            Scenario::StopMidMigration => "stop-mid-migration",
            Scenario::KillMidMigration => "kill-mid-migration",
            Scenario::Schemathesis => "schemathesis",
            Scenario::NodeDrain => "node-drain",
            Scenario::NodeLoss => "node-loss",
        }
    }

    pub fn number(self) -> usize {
        Scenario::ALL
            .iter()
            .position(|s| *s == self)
            .expect("listed")
            + 1
    }

    /// Runs on the shared stack of `scaling-resilience`.
    fn needs_stack(self) -> bool {
        !matches!(
            self,
            Scenario::XtaskInput
                | Scenario::StopMidMigration
                | Scenario::KillMidMigration
                | Scenario::NodeDrain
                | Scenario::NodeLoss
        )
    }

    /// Runs on a Swarm of several nodes of its own (`nodes.rs`).
    fn on_cluster(self) -> bool {
        matches!(self, Scenario::NodeDrain | Scenario::NodeLoss)
    }

    /// Runs on a stack of its own, of the api variant with a slow migration.
    fn mid_migration(self) -> bool {
        matches!(
            self,
            Scenario::StopMidMigration | Scenario::KillMidMigration
        )
    }

    pub fn parse_list(list: &str) -> Result<Vec<Scenario>> {
        let mut chosen = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let scenario = Scenario::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| {
                    CannotRun(format!(
                        "--only {name:?}: unknown scenario; choose from {}",
                        Scenario::ALL.map(Scenario::name).join(", ")
                    ))
                })?;
            if !chosen.contains(&scenario) {
                chosen.push(scenario);
            }
        }
        if chosen.is_empty() {
            return Err(CannotRun("--only: name at least one scenario".into()).into());
        }
        Ok(chosen)
    }
}

/// What a scenario found: its figures, and every reason it failed (none: passed).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    pub figures: Vec<String>,
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn figure(&mut self, line: impl Into<String>) {
        self.figures.push(line.into());
    }

    pub fn problem(&mut self, line: impl Into<String>) {
        self.problems.push(line.into());
    }

    /// Records `problem()` unless `ok`.
    pub fn require(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(problem());
        }
    }

    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Serialize)]
struct ScenarioResult {
    scenario: Scenario,
    number: usize,
    passed: bool,
    seconds: f64,
    verdict: Verdict,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub replicas: u32,
    pub scenarios: Vec<Scenario>,
    /// `--db`: the database server; `None` is the default stack's.
    pub db: Option<DbChoice>,
}

impl Options {
    pub fn from_flags(flags: &flags::TestResilience) -> Result<Options> {
        let replicas = flags.replicas.unwrap_or(DEFAULT_REPLICAS);
        if !(2..=16).contains(&replicas) {
            return Err(CannotRun(format!(
                "--replicas {replicas}: choose between 2 and 16 (leader death needs a replica to take over, scale-down halves the count)"
            ))
            .into());
        }
        let scenarios = match flags.only.as_deref() {
            Some(list) => Scenario::parse_list(list)?,
            None => Scenario::ALL.to_vec(),
        };
        Ok(Options {
            replicas,
            scenarios,
            db: flags.db.as_deref().map(DbChoice::parse).transpose()?,
        })
    }
}

pub fn run(sh: &Shell, project: &Project, flags: &flags::TestResilience) -> Result<()> {
    let opts = Options::from_flags(flags)?;
    let mut outcomes = execute(sh, project, &opts)?;
    outcomes.sort_by_key(|o| o.scenario);
    print_table(&outcomes);
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    println!(
        "resilience: {} passed, {failed} failed",
        outcomes.len() - failed
    );
    if failed > 0 {
        let names: Vec<&str> = outcomes
            .iter()
            .filter(|o| !o.passed)
            .map(|o| o.scenario.name())
            .collect();
        return Err(Failed(format!("resilience scenarios failed: {}", names.join(", "))).into());
    }
    Ok(())
}

/// Runs the chosen scenarios. An `Err` means the run could not happen (no docker, no
/// images); a failing scenario is an outcome, not an error.
fn execute(sh: &Shell, project: &Project, opts: &Options) -> Result<Vec<ScenarioResult>> {
    ui::step(&format!(
        "Resilience: {} replicas, scenarios {}",
        opts.replicas,
        opts.scenarios
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let (docker, compose_program) = preflight::run(sh, project)?;
    let report_dir = project.target_dir.join("resilience-report");
    outcome::fresh_dir(&report_dir)?;

    let mut outcomes = Vec::new();
    let chosen = |s: Scenario| opts.scenarios.contains(&s);
    if chosen(Scenario::XtaskInput) {
        outcomes.push(timed(Scenario::XtaskInput, || cli::run(sh, &docker)));
    }
    let wants = |f: fn(Scenario) -> bool| opts.scenarios.iter().any(|s| f(*s));
    if !wants(Scenario::needs_stack)
        && !wants(Scenario::mid_migration)
        && !wants(Scenario::on_cluster)
    {
        return Ok(outcomes);
    }
    let image_set = images::ensure_for(
        sh,
        project,
        &docker,
        &compose_program,
        opts.db.as_ref(),
        false,
    )?;
    let run = Run {
        sh,
        project,
        docker: &docker,
        compose_program: &compose_program,
        opts,
        report_dir: &report_dir,
    };
    if wants(Scenario::needs_stack) {
        outcomes.extend(run_shared_stack(&run, &image_set)?);
    }
    if wants(Scenario::mid_migration) {
        let slow_set = slow_api::ensure(sh, project, &docker, &image_set)?;
        for scenario in Scenario::RUN_ORDER
            .into_iter()
            .filter(|s| s.mid_migration() && chosen(*s))
        {
            outcomes.push(run_own_stack(&run, &slow_set, scenario)?);
        }
    }
    if wants(Scenario::on_cluster) {
        outcomes.extend(run_cluster(&run, &image_set)?);
    }
    let json = serde_json::to_string_pretty(&outcomes)?;
    std::fs::write(report_dir.join("report.json"), json)?;
    ui::note(&format!("report and logs: {}", report_dir.display()));
    Ok(outcomes)
}

/// The scenarios of the shared stack, in their run order, then the stack's logs and cleanup.
fn run_shared_stack(run: &Run, image_set: &images::ImageSet) -> Result<Vec<ScenarioResult>> {
    let (opts, report_dir) = (run.opts, run.report_dir);
    let chosen = |s: Scenario| opts.scenarios.contains(&s);
    let mut outcomes = Vec::new();
    // Fresh random passwords per run: nothing secret is stored or printed, and the security
    // scenario looks for these exact values (`stack.secrets`) in the images.
    let stack = run.stack(Setup {
        // Small slow-client limits, so bad-input's slow clients are cut off in seconds.
        extra: slow_clients::stack_limits(),
        ..Setup::new(
            PROJECT_NAME,
            opts.replicas,
            image_set,
            report_dir.join("empty.env"),
        )
    })?;
    let guard = stack.begin(false)?;
    let setup = stack.start_db(Duration::from_secs(120));
    match setup {
        Err(e) => {
            for scenario in Scenario::RUN_ORDER
                .into_iter()
                .filter(|s| s.needs_stack() && chosen(*s))
            {
                outcomes.push(failed_outcome(
                    scenario,
                    format!("the database did not start: {e:#}"),
                ));
            }
        }
        Ok(()) => {
            for scenario in Scenario::RUN_ORDER
                .into_iter()
                .filter(|s| s.needs_stack() && chosen(*s))
            {
                outcomes.push(timed(scenario, || run_on_stack(&stack, scenario)));
            }
        }
    }
    save_logs(&stack, &report_dir.join("compose.log"));
    drop(guard);
    left_behind(outcomes.last_mut(), &stack.leftovers()?);
    Ok(outcomes)
}

/// One mid-migration scenario on its own stack (fresh database, the slow-migration api),
/// taken down afterwards.
fn run_own_stack(
    run: &Run,
    image_set: &images::ImageSet,
    scenario: Scenario,
) -> Result<ScenarioResult> {
    let (opts, report_dir) = (run.opts, run.report_dir);
    let stack = run.stack(Setup::new(
        MIGRATION_PROJECT_NAME,
        opts.replicas,
        image_set,
        report_dir.join("empty.env"),
    ))?;
    let guard = stack.begin(false)?;
    let mut result = match stack.start_db(Duration::from_secs(120)) {
        Err(e) => failed_outcome(scenario, format!("the database did not start: {e:#}")),
        Ok(()) => timed(scenario, || match scenario {
            Scenario::StopMidMigration => mid_migration::stop(&stack),
            _ => mid_migration::kill(&stack),
        }),
    };
    save_logs(&stack, &report_dir.join(format!("{}.log", scenario.name())));
    drop(guard);
    left_behind(Some(&mut result), &stack.leftovers()?);
    Ok(result)
}

/// The node scenarios on one Swarm of `nodes::NODES` nodes of this machine, with the shared
/// data directory: drain, then loss, each from N healthy replicas; then the stack's logs, and
/// the stack and the nodes removed.
fn run_cluster(run: &Run, image_set: &images::ImageSet) -> Result<Vec<ScenarioResult>> {
    let (opts, report_dir) = (run.opts, run.report_dir);
    let chosen: Vec<Scenario> = Scenario::RUN_ORDER
        .into_iter()
        .filter(|s| s.on_cluster() && opts.scenarios.contains(s))
        .collect();
    let (cluster_guard, cluster) = cluster::bring_up(
        run.sh,
        run.project,
        run.docker,
        &cluster::Wanted {
            nodes: nodes::NODES,
            shared_mount: cluster::SHARED_MOUNT,
            api_image: image_set.get("API_IMAGE").unwrap_or(images::API_IMAGE),
            db_image: image_set
                .get("DB_IMAGE")
                .unwrap_or(images::OFFICIAL_DB_IMAGE),
            keep: false,
            no_build: false,
        },
    )?;
    let stack = run.stack(Setup {
        engine: EngineKind::Swarm,
        nodes: cluster
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.endpoint()))
            .collect(),
        shared_data: Some(cluster::SHARED_MOUNT.to_string()),
        ..Setup::new(
            CLUSTER_STACK_NAME,
            opts.replicas,
            image_set,
            report_dir.join("empty.env"),
        )
    })?;
    let guard = stack.begin(false)?;
    let mut outcomes = Vec::new();
    let ready = stack
        .start_db(Duration::from_secs(120))
        .and_then(|()| stack.scale_api(opts.replicas));
    for scenario in chosen {
        outcomes.push(match &ready {
            Err(e) => failed_outcome(scenario, format!("the stack did not start: {e:#}")),
            Ok(()) => timed(scenario, || {
                // Swarm replaces tasks rather than restarting them: the earlier scenario's
                // moves are history, not restarts.
                nodes::wait_tasks_healthy(&stack, opts.replicas, None, HEALTHY_TIMEOUT)?;
                match scenario {
                    Scenario::NodeDrain => nodes::drain(&stack, &cluster),
                    _ => nodes::loss(&stack, &cluster),
                }
            }),
        });
    }
    save_logs(&stack, &report_dir.join("nodes.log"));
    drop(guard);
    drop(cluster_guard);
    let mut left = stack.leftovers().unwrap_or_default();
    left.extend(cluster.leftovers()?);
    left_behind(outcomes.last_mut(), &left);
    Ok(outcomes)
}

/// What every stack of a run shares: where it runs, with what, and where its reports go.
#[derive(Clone, Copy)]
struct Run<'a> {
    sh: &'a Shell,
    project: &'a Project,
    docker: &'a crate::docker::Docker,
    compose_program: &'a crate::docker::ComposeProgram,
    opts: &'a Options,
    report_dir: &'a Path,
}

impl<'a> Run<'a> {
    /// A test stack of this run (`Stack::new`).
    fn stack(&self, setup: Setup<'a>) -> Result<Stack<'a>> {
        Stack::new(
            self.sh,
            self.project,
            self.docker,
            self.compose_program.clone(),
            setup,
        )
    }
}

/// A clean-up that left `left` behind fails the last scenario run on that stack.
fn left_behind(last: Option<&mut ScenarioResult>, left: &[String]) {
    if let (Some(last), false) = (last, left.is_empty()) {
        last.passed = false;
        last.verdict
            .problem(format!("cleanup left behind: {}", left.join(", ")));
    }
}

fn run_on_stack(stack: &Stack, scenario: Scenario) -> Result<Verdict> {
    let n = stack.replicas;
    if scenario == Scenario::LeaderDeath {
        return leader::run(stack);
    }
    // Every other scenario starts from N healthy replicas (leader death, if it ran, left
    // them so; otherwise they start here on the fresh database).
    if stack.api_containers()?.is_empty() {
        ui::step(&format!("Starting {n} replicas"));
        stack.scale_api(n)?;
    }
    wait_all_healthy(stack, n, HEALTHY_TIMEOUT)?;
    match scenario {
        Scenario::DbRestart => db_restart::run(stack),
        Scenario::ConcurrentWriters => writers::run(stack),
        Scenario::ScaleDown => scale_down::run(stack),
        Scenario::BadInput => bad_input::run(stack),
        Scenario::Security => security::run(stack),
        Scenario::Schemathesis => fuzz::run(stack),
        Scenario::LeaderDeath
        | Scenario::XtaskInput
        | Scenario::StopMidMigration
        | Scenario::KillMidMigration
        | Scenario::NodeDrain
        | Scenario::NodeLoss => unreachable!("runs on a stack of its own"),
    }
}

/// Waits until exactly `n` api replicas run and are healthy; returns how long it took. Stops
/// at once when one exits or restarts; an unhealthy one may recover (e.g. after a database
/// outage), so it is waited for.
fn wait_all_healthy(stack: &Stack, n: u32, timeout: Duration) -> Result<f64> {
    match stack.wait_healthy(n, timeout, Instant::now(), Unhealthy::MayRecover)? {
        WaitOutcome::AllHealthy { seconds } => Ok(seconds),
        WaitOutcome::Broken { reason, .. } => bail!(
            "{reason}; the api's last log lines:\n{}",
            stack.api_log_tail(15)
        ),
        WaitOutcome::TimedOut { .. } => {
            let healthy = stack
                .api_containers()?
                .iter()
                .filter(|c| c.is_healthy())
                .count();
            bail!(
                "{healthy} of {n} replicas healthy after {} s",
                timeout.as_secs()
            )
        }
    }
}

fn timed(scenario: Scenario, f: impl FnOnce() -> Result<Verdict>) -> ScenarioResult {
    ui::step(&format!(
        "Scenario {}: {}",
        scenario.number(),
        scenario.name()
    ));
    let started = Instant::now();
    let verdict = f().unwrap_or_else(|e| Verdict {
        figures: vec![],
        problems: vec![format!("could not complete: {e:#}")],
    });
    let seconds = started.elapsed().as_secs_f64();
    for line in &verdict.figures {
        ui::note(line);
    }
    for line in &verdict.problems {
        ui::note(&format!("{} {line}", ui::paint("FAIL", "1;31")));
    }
    ScenarioResult {
        scenario,
        number: scenario.number(),
        passed: verdict.passed(),
        seconds,
        verdict,
    }
}

fn failed_outcome(scenario: Scenario, reason: String) -> ScenarioResult {
    ScenarioResult {
        scenario,
        number: scenario.number(),
        passed: false,
        seconds: 0.0,
        verdict: Verdict {
            figures: vec![],
            problems: vec![reason],
        },
    }
}

fn print_table(outcomes: &[ScenarioResult]) {
    println!();
    for o in outcomes {
        let verdict = outcome::pass_fail(o.passed);
        println!(
            "{verdict} {} {} ({:.0} s)",
            o.number,
            o.scenario.name(),
            o.seconds
        );
        for line in &o.verdict.figures {
            println!("       {line}");
        }
        for line in &o.verdict.problems {
            println!("       FAIL: {line}");
        }
    }
}

/// Every container's log into the report directory, before the stack goes away.
fn save_logs(stack: &Stack, file: &Path) {
    if let Ok(text) = stack.all_logs_text() {
        let _ = std::fs::write(file, text);
    }
}

/// Deterministic bytes for test documents (xorshift64*): no randomness source needed, and
/// a failure can be reproduced from its seed.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_lists_parse_and_unknown_names_cannot_run() {
        assert_eq!(
            Scenario::parse_list("security, leader-death").unwrap(),
            vec![Scenario::Security, Scenario::LeaderDeath]
        );
        let err = Scenario::parse_list("leader-death,nope").unwrap_err();
        assert!(err.downcast_ref::<CannotRun>().is_some());
        assert!(err.to_string().contains("\"nope\""), "{err}");
        assert!(Scenario::parse_list(" , ").is_err());
        assert_eq!(
            Scenario::ALL.map(Scenario::number),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
        let mut run = Scenario::RUN_ORDER.to_vec();
        run.sort();
        assert_eq!(run, Scenario::ALL.to_vec(), "every scenario runs once");
    }

    #[test]
    fn replica_counts_outside_two_to_sixteen_cannot_run() {
        for bad in [0, 1, 17] {
            let flags = flags::TestResilience {
                replicas: Some(bad),
                only: None,
                db: None,
            };
            let err = Options::from_flags(&flags).unwrap_err();
            assert!(err.downcast_ref::<CannotRun>().is_some(), "{bad}");
            assert!(
                err.to_string().starts_with(&format!("--replicas {bad}:")),
                "{err}"
            );
        }
        assert_eq!(
            Options::from_flags(&flags::TestResilience {
                replicas: None,
                only: None,
                db: None,
            })
            .unwrap()
            .replicas,
            4
        );
    }

    #[test]
    fn pseudo_random_bytes_are_deterministic_and_differ_by_seed() {
        assert_eq!(pseudo_random_bytes(7, 64), pseudo_random_bytes(7, 64));
        assert_ne!(pseudo_random_bytes(7, 64), pseudo_random_bytes(8, 64));
        let sample = pseudo_random_bytes(1, 4096);
        let distinct: std::collections::BTreeSet<u8> = sample.iter().copied().collect();
        assert!(distinct.len() > 200, "{}", distinct.len());
    }
}
