//! `cargo xtask test-scaling`: the pre-deploy check that horizontal scaling works, run for
//! real with Docker Compose. Sequence: preflight, images, database, the fresh-database
//! scenario, the existing-database scenario, report; cleanup on every exit path.

pub mod checks;
pub mod parse;
pub mod report;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use self::{
    checks::{Check, HttpRead, Scenario, SharedDataResult, WaitOutcome},
    parse::Container,
};
use crate::{
    docker::{Compose, Docker, StackGuard, TestStack, MIGRATION_LOCK_SQL},
    flags, images, preflight,
    testdb::random_hex,
    ui, CannotRun, Failed, Project,
};

/// The check's own compose project: never the developer's default one, nor its volumes.
pub const PROJECT_NAME: &str = "scaling-check";
const API: &str = "api";
const DB: &str = "db";
const API_PORT: u16 = 8080;
const DATA_DIR: &str = "/app/data";
const DB_NAME: &str = "app";
/// The outside client of the `lock-held` fault plays a migration that never ends; the api
/// gets this deadline so the run stays short.
const LOCK_HELD_DEADLINE_SECS: u64 = 10;
/// `late-replica` starts its last replica this long after the others.
const LATE_REPLICA_DELAY: Duration = Duration::from_secs(35);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    ReplicaDown,
    LateReplica,
    DataNotWritable,
    NoLock,
    LockHeld,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::ReplicaDown,
        Fault::LateReplica,
        Fault::DataNotWritable,
        Fault::NoLock,
        Fault::LockHeld,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::ReplicaDown => "replica-down",
            Fault::LateReplica => "late-replica",
            Fault::DataNotWritable => "data-not-writable",
            Fault::NoLock => "no-lock",
            Fault::LockHeld => "lock-held",
        }
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
    pub max_spread: f64,
    pub timeout: Duration,
    pub no_build: bool,
    pub keep: bool,
    pub fault: Option<Fault>,
    pub report_dir: Option<PathBuf>,
}

impl Options {
    pub fn from_flags(flags: &flags::TestScaling) -> Result<Options> {
        let replicas = flags.replicas.unwrap_or(4);
        if !(1..=32).contains(&replicas) {
            return Err(
                CannotRun(format!("--replicas {replicas}: choose between 1 and 32")).into(),
            );
        }
        let max_spread = flags.max_spread.unwrap_or(5.0);
        if max_spread.is_nan() || max_spread <= 0.0 {
            return Err(CannotRun(format!(
                "--max-spread {max_spread}: must be a positive number of seconds"
            ))
            .into());
        }
        let timeout = flags.timeout.unwrap_or(180);
        if timeout == 0 {
            return Err(
                CannotRun("--timeout 0: must be a positive number of seconds".into()).into(),
            );
        }
        let fault = flags.fault.as_deref().map(Fault::parse).transpose()?;
        if fault.is_some() && replicas < 2 {
            return Err(CannotRun("--fault needs at least 2 replicas".into()).into());
        }
        Ok(Options {
            replicas,
            max_spread,
            timeout: Duration::from_secs(timeout),
            no_build: flags.no_build,
            keep: flags.keep,
            fault,
            report_dir: flags.report_dir.clone(),
        })
    }
}

/// Everything a scenario produced.
#[derive(Debug)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub checks: Vec<Check>,
}

pub fn run(sh: &Shell, project: &Project, opts: Options) -> Result<()> {
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
    if report_dir.exists() {
        std::fs::remove_dir_all(&report_dir)
            .with_context(|| format!("clearing {}", report_dir.display()))?;
    }
    std::fs::create_dir_all(&report_dir)?;

    ui::step(&format!(
        "Scaling check: {} replicas{}",
        opts.replicas,
        opts.fault
            .map(|f| format!(", fault {}", f.name()))
            .unwrap_or_default()
    ));
    let (docker, compose_program) = preflight::run(sh, project)?;

    let image_set = if opts.no_build {
        ui::step("Images: --no-build, using what is present");
        images::select_present(sh, &docker)?
    } else {
        images::ensure(sh, project, &docker, &compose_program, false)?
    };

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
    let compose = Compose::test_stack(
        compose_program,
        project.compose_file(),
        TestStack {
            project: PROJECT_NAME,
            image_env: &image_set.env,
            db_name: DB_NAME,
            password: &random_hex(16)?,
            root_password: &random_hex(16)?,
            extra,
            env_file: report_dir.join(if opts.keep {
                "compose.env"
            } else {
                "empty.env"
            }),
            write_vars: opts.keep,
        },
    )?;

    ui::step(&format!(
        "Removing any previous state of project {PROJECT_NAME}"
    ));
    compose.down(sh)?;
    let guard = StackGuard::new(&compose, opts.keep);

    let mut report = report::Report::new(opts, &image_set);
    let outcome = (|| -> Result<()> {
        start_database(sh, &compose, opts.timeout)?;
        let fresh = run_scenario(
            sh,
            &compose,
            &docker,
            project,
            opts,
            Scenario::FreshDatabase,
            &report_dir,
        )?;
        report.scenarios.push(fresh);
        if opts.fault.is_none() {
            ui::step("Removing the api replicas; the database keeps its schema");
            compose.run(sh, &["rm", "--stop", "--force", API])?;
            let existing = run_scenario(
                sh,
                &compose,
                &docker,
                project,
                opts,
                Scenario::ExistingDatabase,
                &report_dir,
            )?;
            report.scenarios.push(existing);
        }
        Ok(())
    })();
    if let Err(e) = &outcome {
        report.error = Some(format!("{e:#}"));
    }
    save_all_logs(sh, &compose, &report_dir);
    drop(guard);
    if opts.fault.is_none() && !opts.keep {
        let left = docker.project_leftovers(sh, PROJECT_NAME)?;
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

pub(crate) fn start_database(sh: &Shell, compose: &Compose, timeout: Duration) -> Result<()> {
    ui::step("Starting the database on a fresh volume");
    compose.run(sh, &["up", "-d", "--no-build", DB])?;
    wait_database_healthy(sh, compose, timeout)
}

/// Polls until the database is healthy; fails at once if it exits or turns unhealthy.
pub(crate) fn wait_database_healthy(
    sh: &Shell,
    compose: &Compose,
    timeout: Duration,
) -> Result<()> {
    let mut wait = ui::Waiting::new("db healthy");
    loop {
        let containers = parse::ps(&compose.ps(sh, DB)?)?;
        let db = containers.first();
        match db {
            Some(c) if c.is_healthy() => break,
            Some(c) if c.is_down() || c.health == "unhealthy" => {
                let logs = compose
                    .run(sh, &["logs", "--tail", "20", "--no-color", DB])
                    .unwrap_or_default();
                bail!(
                    "the database container is {} ({}); its last log lines:\n{logs}",
                    c.state,
                    c.status
                );
            }
            Some(c) => wait.update(&format!("{} {}", c.state, c.health)),
            None => wait.update("no container yet"),
        }
        if wait.elapsed() > timeout {
            bail!("the database was not healthy after {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    wait.finish("healthy");
    Ok(())
}

fn run_scenario(
    sh: &Shell,
    compose: &Compose,
    docker: &Docker,
    project: &Project,
    opts: &Options,
    scenario: Scenario,
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
        compose.run(
            sh,
            &[
                "run",
                "--rm",
                "--no-deps",
                "--user",
                "0",
                "--cap-add",
                "CHOWN",
                "--cap-add",
                "FOWNER",
                "--entrypoint",
                "sh",
                API,
                "-c",
                // The marker file matters: Docker copies the image's ownership of /app/data
                // back onto a named volume that is still empty when a container mounts it.
                "chown 0:0 /app/data && chmod 755 /app/data && touch /app/data/.owned-by-root",
            ],
        )?;
    }
    let mut lock_holder = None;
    if fault == Some(Fault::LockHeld) {
        ui::note("fault: an outside client takes the migration lock and keeps it");
        lock_holder = Some(hold_migration_lock(sh, compose)?);
    }

    let first = if fault == Some(Fault::LateReplica) {
        n - 1
    } else {
        n
    };
    let t_up = Instant::now();
    compose.up_scaled(sh, API, first)?;
    let mut wait = wait_healthy(sh, compose, docker, first, opts.timeout, t_up)?;

    if fault == Some(Fault::LateReplica) {
        let remaining = LATE_REPLICA_DELAY.saturating_sub(t_up.elapsed());
        ui::note(&format!(
            "fault: starting the last replica {:.0} s after the others",
            LATE_REPLICA_DELAY.as_secs_f64()
        ));
        std::thread::sleep(remaining);
        compose.up_scaled(sh, API, n)?;
        wait = wait_healthy(sh, compose, docker, n, opts.timeout, t_up)?;
    }
    if fault == Some(Fault::ReplicaDown) {
        let containers = parse::ps(&compose.ps(sh, API)?)?;
        if let Some(last) = containers.iter().max_by_key(|c| c.number) {
            ui::note(&format!("fault: stopping {}", last.label()));
            docker.stop(sh, &last.id)?;
        }
    }
    if let Some(mut holder) = lock_holder.take() {
        let _ = holder.kill();
        let _ = holder.wait();
    }

    ui::step(&format!("Scenario: {} — checking", scenario.name()));
    let containers = parse::ps(&compose.ps(sh, API)?)?;
    let restarts = restart_counts(sh, docker, &containers)?;
    let log_text = compose.logs(sh, API)?;
    std::fs::write(
        report_dir.join(format!("{}-api.log", scenario.slug())),
        &log_text,
    )?;
    let lines = parse::logs(&log_text);
    let startups = parse::startups(&lines);
    // Right away: Docker keeps only the last five probe results, which say when each turned healthy.
    crate::timeline::add_to_report(
        sh,
        docker,
        scenario,
        &containers,
        &startups,
        t_up,
        report_dir,
    );
    let last_lines: BTreeMap<u32, Vec<String>> = startups
        .iter()
        .map(|(k, s)| (*k, s.lines[s.lines.len().saturating_sub(8)..].to_vec()))
        .collect();

    let expected: Vec<u32> = containers.iter().map(|c| c.number).collect();
    let running: Vec<u32> = containers
        .iter()
        .filter(|c| c.state == "running")
        .map(|c| c.number)
        .collect();
    let mut checks = vec![checks::replicas(
        n,
        &containers,
        &restarts,
        &wait,
        &last_lines,
    )];
    checks.push(checks::startup_spread(
        &expected,
        &startups,
        opts.max_spread,
    ));
    checks.push(shared_data(sh, compose, &running)?);
    let records = migration_records(sh, compose)?;
    let versions = migration_versions(project)?;
    checks.push(checks::migrations(
        scenario, &expected, &startups, &records, &versions,
    ));
    checks.push(cross_replica_http(sh, compose, &running, &containers));
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
    for check in &checks {
        let verdict = if check.passed {
            ui::paint("PASS", "1;32")
        } else {
            ui::paint("FAIL", "1;31")
        };
        ui::note(&format!(
            "{verdict} {} {}: {}",
            check.id, check.name, check.summary
        ));
    }
    Ok(ScenarioResult { scenario, checks })
}

/// Polls `ps` until `n` replicas are healthy; stops at once when one exits, restarts, turns
/// unhealthy, or logs an error while not healthy.
pub(crate) fn wait_healthy(
    sh: &Shell,
    compose: &Compose,
    docker: &Docker,
    n: u32,
    timeout: Duration,
    since: Instant,
) -> Result<WaitOutcome> {
    let mut wait = ui::Waiting::new(&format!("{n} healthy replicas"));
    let mut polls = 0u32;
    loop {
        polls += 1;
        let seconds = since.elapsed().as_secs_f64();
        let containers = parse::ps(&compose.ps(sh, API)?)?;
        let restarts = restart_counts(sh, docker, &containers)?;
        if let Some(c) = containers
            .iter()
            .find(|c| c.is_down() || c.health == "unhealthy")
        {
            let reason = format!(
                "{} is {} ({})",
                c.label(),
                if c.health == "unhealthy" {
                    "unhealthy"
                } else {
                    &c.state
                },
                c.status
            );
            wait.finish(&format!("stopped: {reason}"));
            return Ok(WaitOutcome::Broken { seconds, reason });
        }
        if let Some((num, count)) = restarts.iter().find(|(_, count)| **count > 0) {
            let reason = format!("api-{num} restarted {count} time(s)");
            wait.finish(&format!("stopped: {reason}"));
            return Ok(WaitOutcome::Broken { seconds, reason });
        }
        let healthy = containers.iter().filter(|c| c.is_healthy()).count() as u32;
        if healthy == n && containers.len() as u32 == n {
            wait.finish("all healthy");
            return Ok(WaitOutcome::AllHealthy { seconds });
        }
        // Every few polls, read the logs: a replica that logged an error and is still not
        // healthy will not become healthy by itself (a read-only volume, a bad password).
        if polls.is_multiple_of(4) {
            let lines = parse::logs(&compose.logs(sh, API)?);
            if let Some(reason) = errored_replica(&lines, &containers) {
                wait.finish(&format!("stopped: {reason}"));
                return Ok(WaitOutcome::Broken { seconds, reason });
            }
        }
        wait.update(&format!(
            "{healthy}/{n} healthy, {} containers",
            containers.len()
        ));
        if since.elapsed() > timeout {
            wait.finish("timed out");
            return Ok(WaitOutcome::TimedOut { seconds });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A replica that is not healthy and whose first ERROR line is older than 5 s (the first
/// one: it names the cause; later ones are often its echoes, like failed probes).
pub fn errored_replica(lines: &[parse::LogLine], containers: &[Container]) -> Option<String> {
    let latest = lines.iter().map(|l| l.time).max()?;
    containers.iter().filter(|c| !c.is_healthy()).find_map(|c| {
        let error = lines
            .iter()
            .filter(|l| l.number == Some(c.number) && l.message.contains(" ERROR "))
            .min_by_key(|l| l.time)?;
        (latest.signed_duration_since(error.time).num_milliseconds() >= 5000 || c.is_down()).then(
            || {
                format!(
                    "{} is not healthy and logged: {}",
                    c.label(),
                    error.message.trim()
                )
            },
        )
    })
}

fn restart_counts(
    sh: &Shell,
    docker: &Docker,
    containers: &[Container],
) -> Result<BTreeMap<u32, u32>> {
    let facts = container_facts(sh, docker, containers)?;
    Ok(facts.into_iter().map(|(n, f)| (n, f.restarts)).collect())
}

/// What `docker inspect` says of a container that `ps` does not.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerFacts {
    pub id: String,
    pub started_at: String,
    pub restarts: u32,
}

/// Id, start time and restart count of each container, by container number.
pub(crate) fn container_facts(
    sh: &Shell,
    docker: &Docker,
    containers: &[Container],
) -> Result<BTreeMap<u32, ContainerFacts>> {
    let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
    let out = docker.inspect(sh, &ids, "{{.Id}} {{.State.StartedAt}} {{.RestartCount}}")?;
    let mut facts = BTreeMap::new();
    for line in out.lines() {
        let mut parts = line.split_whitespace();
        let (Some(id), Some(started), Some(count)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let Some(c) = containers
            .iter()
            .find(|c| id.starts_with(&c.id) || c.id.starts_with(id))
        {
            facts.insert(
                c.number,
                ContainerFacts {
                    id: id.to_string(),
                    started_at: started.to_string(),
                    restarts: count.parse().unwrap_or(0),
                },
            );
        }
    }
    Ok(facts)
}

/// TEST-03's I/O: each replica writes a file into the shared directory, then each reads all.
fn shared_data(sh: &Shell, compose: &Compose, replicas: &[u32]) -> Result<Check> {
    let run = random_hex(4)?;
    let file = |n: u32| format!("{DATA_DIR}/.scaling-check-{run}-{n}");
    let mut results = Vec::new();
    for &n in replicas {
        let script = format!(
            "d={DATA_DIR}; f={f}; printf 'uid=%s gid=%s owner=%s mode=%s\\n' \"$(id -u)\" \"$(id -g)\" \"$(stat -c %u:%g $d)\" \"$(stat -c %a $d)\"; \
             if err=$( {{ printf '%s\\n' token-{run}-{n} > $f; }} 2>&1 ); then echo write=ok; else echo \"write=failed $err\"; fi",
            f = file(n)
        );
        let out = compose.exec(sh, API, n, &["sh", "-c", &script])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let write = parse::write_probe(&stdout).map_err(|_| {
            format!(
                "exit {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        });
        results.push(SharedDataResult {
            number: n,
            write,
            seen: vec![],
            missing: vec![],
            read_error: None,
        });
    }
    for r in results.iter_mut() {
        let reads: Vec<String> = replicas
            .iter()
            .map(|m| format!("if [ \"$(cat {} 2>/dev/null)\" = token-{run}-{m} ]; then echo seen={m}; else echo missing={m}; fi", file(*m)))
            .collect();
        let out = compose.exec(sh, API, r.number, &["sh", "-c", &reads.join("; ")])?;
        if out.status.success() {
            let (seen, missing) = parse::read_probe(&String::from_utf8_lossy(&out.stdout));
            r.seen = seen;
            r.missing = missing;
        } else {
            r.read_error = Some(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
    }
    if let Some(&first) = replicas.first() {
        let cleanup = format!("rm -f {DATA_DIR}/.scaling-check-{run}-*");
        let _ = compose.exec(sh, API, first, &["sh", "-c", &cleanup]);
    }
    Ok(checks::shared_data(replicas, &results, DATA_DIR))
}

/// The database's own record of the migrations, read as root inside the db container
/// (its password never leaves the container's environment).
fn migration_records(sh: &Shell, compose: &Compose) -> Result<Vec<(i64, bool)>> {
    let out = compose.db_sql(
        sh,
        DB,
        "SELECT version, success FROM _sqlx_migrations ORDER BY version",
    )?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("doesn't exist") {
            return Ok(Vec::new());
        }
        bail!("reading _sqlx_migrations failed: {}", err.trim());
    }
    parse::migration_rows(&String::from_utf8_lossy(&out.stdout))
}

fn migration_versions(project: &Project) -> Result<Vec<i64>> {
    let dir = project.root.join("api").join("migrations");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    Ok(parse::migration_versions(names.iter().map(String::as_str)))
}

/// An outside client takes the api's migration lock and sits on it.
fn hold_migration_lock(sh: &Shell, compose: &Compose) -> Result<std::process::Child> {
    let hold = format!("SELECT GET_LOCK({MIGRATION_LOCK_SQL}, 0); SELECT SLEEP(600);");
    let child = compose.spawn_db_sql(sh, DB, &hold)?;
    // Wait until the server reports the lock as used, so the replicas really meet it.
    let probe = format!("SELECT IS_USED_LOCK({MIGRATION_LOCK_SQL})");
    let started = Instant::now();
    loop {
        let out = compose.db_sql(sh, DB, &probe)?;
        let holder = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && holder != "NULL" && !holder.is_empty() {
            ui::note(&format!("lock held by connection {holder}"));
            return Ok(child);
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the outside client did not get the migration lock within 20 s");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Cross-replica HTTP: store a document through the first replica's published port, read it
/// back through every replica, then delete it.
fn cross_replica_http(
    sh: &Shell,
    compose: &Compose,
    replicas: &[u32],
    _containers: &[Container],
) -> Check {
    let body: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut ports = BTreeMap::new();
    for &n in replicas {
        if let Ok(addr) = compose.port(sh, API, n, API_PORT) {
            ports.insert(n, addr);
        }
    }
    let Some((&first, addr)) = ports.iter().next() else {
        return checks::cross_replica_http(
            0,
            &Err("no replica has a published port".into()),
            &body,
            &[],
            replicas,
        );
    };
    let store = minreq::post(format!("http://{addr}/documents?name=scaling-check.bin"))
        .with_header("content-type", "application/octet-stream")
        .with_body(body.clone())
        .with_timeout(10)
        .send()
        .map_err(|e| e.to_string())
        .and_then(|r| {
            let text = r.as_str().unwrap_or("").to_string();
            if r.status_code == 201 {
                Ok(text)
            } else {
                Err(format!("{} {text}", r.status_code))
            }
        });
    let id = store
        .as_ref()
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .and_then(|v| v["id"].as_str().map(String::from));
    let mut reads = Vec::new();
    if let Some(id) = &id {
        for (&n, addr) in &ports {
            let result = minreq::get(format!("http://{addr}/documents/{id}/content"))
                .with_timeout(10)
                .send()
                .map(|r| (r.status_code as u16, r.into_bytes()))
                .map_err(|e| e.to_string());
            reads.push(HttpRead { number: n, result });
        }
        let _ = minreq::delete(format!("http://{addr}/documents/{id}"))
            .with_timeout(10)
            .send();
    }
    let store = match (&store, &id) {
        (Ok(text), Some(_)) => Ok(text.chars().take(200).collect()),
        (Ok(text), None) => Err(format!("201 without an id: {text}")),
        (Err(e), _) => Err(e.clone()),
    };
    checks::cross_replica_http(first, &store, &body, &reads, replicas)
}

/// Every container's full log into the report directory, before the stack goes away.
fn save_all_logs(sh: &Shell, compose: &Compose, dir: &std::path::Path) {
    let logs_dir = dir.join("logs");
    let _ = std::fs::create_dir_all(&logs_dir);
    if let Ok(text) = compose.run(sh, &["logs", "--timestamps", "--no-color"]) {
        let mut by_container: BTreeMap<String, String> = BTreeMap::new();
        for line in text.lines() {
            let name = line
                .split_once(" | ")
                .or_else(|| line.split_once(" |"))
                .map(|(p, _)| p.trim())
                .unwrap_or("compose");
            let entry = by_container.entry(name.to_string()).or_default();
            entry.push_str(line);
            entry.push('\n');
        }
        for (name, text) in by_container {
            let _ = std::fs::write(logs_dir.join(format!("{name}.log")), text);
        }
    }
}
