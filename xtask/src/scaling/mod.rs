//! `cargo xtask test-scaling`: the pre-deploy check that horizontal scaling works, run for
//! real with Docker Compose. Sequence: preflight, images, database, the fresh-database
//! scenario, the existing-database scenario, report; cleanup on every exit path.

pub mod checks;
pub mod faults;
pub mod report;
// The Swarm engine's checks, plugged into the command with `--engine swarm` later.
#[allow(dead_code)]
pub mod swarm_checks;
#[cfg(test)]
mod swarm_proof;
// Judges of the upgrade scenario (issue 13), used by their tests until the scenario drives them.
#[cfg(test)]
mod tests;
#[allow(dead_code)]
pub mod upgrade;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Result;
use xshell::Shell;

use self::checks::{Check, HttpRead, SharedDataResult};
use crate::{
    flags,
    host::{dbserver::DbChoice, images, preflight, testdb::random_hex},
    outcome::{self, CannotRun, Failed},
    stack::{
        db::{self, MIGRATION_LOCK_SQL},
        http, parse, DbState, Setup, Stack, Unhealthy, DATA_DIR, DEFAULT_MAX_STARTUP_SECS,
        DEFAULT_REPLICAS, DEFAULT_TIMEOUT_SECS,
    },
    ui, Project,
};

/// The check's own compose project: never the developer's default one, nor its volumes.
pub const PROJECT_NAME: &str = "scaling-check";
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
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::ReplicaDown,
        Fault::LateReplica,
        Fault::DataNotWritable,
        Fault::NoLock,
        Fault::LockHeld,
        Fault::SmallMaxConnections,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::ReplicaDown => "replica-down",
            Fault::LateReplica => "late-replica",
            Fault::DataNotWritable => "data-not-writable",
            Fault::NoLock => "no-lock",
            Fault::LockHeld => "lock-held",
            Fault::SmallMaxConnections => "small-max-connections",
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
        }
    }
}

impl Options {
    pub fn from_flags(flags: &flags::TestScaling) -> Result<Options> {
        let replicas = flags.replicas.unwrap_or(DEFAULT_REPLICAS);
        if !(1..=32).contains(&replicas) {
            return Err(
                CannotRun(format!("--replicas {replicas}: choose between 1 and 32")).into(),
            );
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
        if fault.is_some() && replicas < 2 {
            return Err(CannotRun("--fault needs at least 2 replicas".into()).into());
        }
        let repeat = flags.repeat.unwrap_or(1);
        if !(1..=100).contains(&repeat) {
            return Err(CannotRun(format!("--repeat {repeat}: choose between 1 and 100")).into());
        }
        Ok(Options {
            repeat,
            replicas,
            max_startup,
            timeout: Duration::from_secs(timeout),
            no_build: flags.no_build,
            keep: flags.keep,
            fault,
            report_dir: flags.report_dir.clone(),
            db: flags.db.as_deref().map(DbChoice::parse).transpose()?,
        })
    }
}

/// Everything a scenario produced.
#[derive(Debug)]
pub struct ScenarioResult {
    pub scenario: DbState,
    pub checks: Vec<Check>,
    /// Docker's time and the check's own (see `report::Timing`).
    pub timing: report::Timing,
}

pub fn run(sh: &Shell, project: &Project, opts: Options) -> Result<()> {
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
    outcome::fresh_dir(&report_dir)?;

    ui::step(&format!(
        "Scaling check of {}: {} replicas{}",
        project.root.display(),
        opts.replicas,
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
    let stack = Stack::new(
        sh,
        project,
        &docker,
        compose_program,
        Setup {
            extra,
            write_vars: opts.keep,
            ..Setup::new(
                PROJECT_NAME,
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
    let guard = stack.begin(opts.keep)?;

    let mut report = report::Report::new(opts, &image_set);
    report.checkout = project.root.display().to_string();
    let outcome = (|| -> Result<()> {
        stack.start_db(opts.timeout)?;
        let fresh = run_scenario(&stack, opts, DbState::FreshDatabase, &report_dir)?;
        report.scenarios.push(fresh);
        if opts.fault.is_none() {
            ui::step("Removing the api replicas; the database keeps its schema");
            stack.remove_api()?;
            let existing = run_scenario(&stack, opts, DbState::ExistingDatabase, &report_dir)?;
            report.scenarios.push(existing);
        }
        Ok(())
    })();
    if let Err(e) = &outcome {
        report.error = Some(format!("{e:#}"));
    }
    stack.save_logs_by_container(&report_dir);
    drop(guard);
    if opts.fault.is_none() && !opts.keep {
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
            "database paused {:.1} s while compose started {first} replicas ({:.1} s), then released",
            c.paused_s, c.compose_up_s
        ));
        Some(c)
    } else {
        stack.scale_api(first)?;
        None
    };
    let mut wait = stack.wait_healthy(first, opts.timeout, t_up, Unhealthy::Stops)?;

    if fault == Some(Fault::LateReplica) {
        let remaining = LATE_REPLICA_DELAY.saturating_sub(t_up.elapsed());
        ui::note(&format!(
            "fault: starting the last replica {:.0} s after the others",
            LATE_REPLICA_DELAY.as_secs_f64()
        ));
        std::thread::sleep(remaining);
        stack.scale_api(n)?;
        wait = stack.wait_healthy(n, opts.timeout, t_up, Unhealthy::Stops)?;
    }
    if fault == Some(Fault::ReplicaDown) {
        let containers = stack.api_containers()?;
        if let Some(last) = containers.iter().max_by_key(|c| c.number) {
            ui::note(&format!("fault: stopping {}", last.label()));
            stack.docker.stop(stack.sh, &last.id)?;
        }
    }
    if let Some(mut holder) = lock_holder.take() {
        let _ = holder.kill();
        let _ = holder.wait();
    }

    let docker_s = t_up.elapsed().as_secs_f64();
    ui::step(&format!("Scenario: {} — checking", scenario.name()));
    let t_check = Instant::now();
    let containers = stack.api_containers()?;
    let expected: Vec<u32> = containers.iter().map(|c| c.number).collect();
    let running: Vec<u32> = containers
        .iter()
        .filter(|c| c.state == "running")
        .map(|c| c.number)
        .collect();
    let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
    // Every piece of evidence waits only on its own commands: each runs on its own thread, so
    // the checking costs the slowest piece, not the sum (docs: the report's `check_s`).
    let (restarts, logs, inspect, shared, records, http_check, capacity) =
        std::thread::scope(|scope| -> Result<_> {
            let restarts = on_thread(scope, stack, |s| s.restart_counts(&containers));
            let logs = on_thread(scope, stack, |s| {
                let log_text = s.logs_text()?;
                std::fs::write(
                    report_dir.join(format!("{}-api.log", scenario.slug())),
                    &log_text,
                )?;
                let startups = parse::startups(&parse::logs(&log_text));
                // Right away: Docker keeps only the last five probe results, which say when
                // each turned healthy.
                crate::timeline::add_to_report(
                    s.sh,
                    &s.docker,
                    scenario,
                    &containers,
                    &startups,
                    t_up,
                    report_dir,
                );
                Ok(startups)
            });
            let inspect = on_thread(scope, stack, |s| {
                let inspect = s.docker.start_and_health(s.sh, &ids)?;
                std::fs::write(
                    report_dir.join(format!("{}-inspect.txt", scenario.slug())),
                    &inspect,
                )?;
                Ok(inspect)
            });
            let shared = on_thread(scope, stack, |s| shared_data(s, &running));
            let records = on_thread(scope, stack, |s| {
                Ok((
                    db::migration_records(s)?,
                    db::migration_versions(&s.project.root)?,
                ))
            });
            let http_check = on_thread(scope, stack, |s| Ok(cross_replica_http(s, &running)));
            let capacity = on_thread(scope, stack, |s| capacity(s, &containers));
            Ok((
                joined(restarts)?,
                joined(logs)?,
                joined(inspect)?,
                joined(shared)?,
                joined(records)?,
                joined(http_check)?,
                joined(capacity)?,
            ))
        })?;
    let startups = logs;
    let last_lines: BTreeMap<u32, Vec<String>> = startups
        .iter()
        .map(|(k, s)| (*k, s.lines[s.lines.len().saturating_sub(8)..].to_vec()))
        .collect();
    let mut checks = vec![checks::replicas(
        n,
        &containers,
        &restarts,
        &wait,
        &last_lines,
    )];
    let started_at: BTreeMap<u32, chrono::DateTime<chrono::Utc>> =
        crate::timeline::parse_inspect(&inspect)?
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
    checks.push(shared);
    let (records, versions) = records;
    checks.push(checks::migrations(
        scenario, &expected, &startups, &records, &versions,
    ));
    checks.push(http_check);
    checks.push(capacity);
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
    let check_s = t_check.elapsed().as_secs_f64();
    ui::note(&format!(
        "Docker {docker_s:.1} s (up to all healthy), the check's own {check_s:.2} s"
    ));
    Ok(ScenarioResult {
        scenario,
        checks,
        timing: report::Timing { docker_s, check_s },
    })
}

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

fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("a thread gathering the checks' evidence panicked"))?
}

/// TEST-03's I/O: each replica writes a file into the shared directory (all at once), then
/// each reads all (all at once).
fn shared_data(stack: &Stack, replicas: &[u32]) -> Result<Check> {
    let run = random_hex(4)?;
    let file = |n: u32| format!("{DATA_DIR}/.scaling-check-{run}-{n}");
    let writes: Vec<(u32, String)> = replicas
        .iter()
        .map(|&n| {
            (n, format!(
                "d={DATA_DIR}; f={f}; printf 'uid=%s gid=%s owner=%s mode=%s\\n' \"$(id -u)\" \"$(id -g)\" \"$(stat -c %u:%g $d)\" \"$(stat -c %a $d)\"; \
                 if err=$( {{ printf '%s\\n' token-{run}-{n} > $f; }} 2>&1 ); then echo write=ok; else echo \"write=failed $err\"; fi",
                f = file(n)
            ))
        })
        .collect();
    let written = exec_each(stack, &writes)?;
    let mut results: Vec<SharedDataResult> = written
        .into_iter()
        .map(|(n, out)| {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let write = parse::write_probe(&stdout).map_err(|_| {
                format!(
                    "exit {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            });
            SharedDataResult {
                number: n,
                write,
                seen: vec![],
                missing: vec![],
                read_error: None,
            }
        })
        .collect();
    let read_all: String = replicas
        .iter()
        .map(|m| format!("if [ \"$(cat {} 2>/dev/null)\" = token-{run}-{m} ]; then echo seen={m}; else echo missing={m}; fi", file(*m)))
        .collect::<Vec<_>>()
        .join("; ");
    let reads: Vec<(u32, String)> = replicas.iter().map(|&n| (n, read_all.clone())).collect();
    for (n, out) in exec_each(stack, &reads)? {
        let Some(r) = results.iter_mut().find(|r| r.number == n) else {
            continue;
        };
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
        let _ = stack.exec_api(first, &["sh", "-c", &cleanup]);
    }
    Ok(checks::shared_data(replicas, &results, DATA_DIR))
}

/// `sh -c SCRIPT` in each replica, all at once; the outputs in the order given.
fn exec_each(stack: &Stack, scripts: &[(u32, String)]) -> Result<Vec<(u32, std::process::Output)>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = scripts
            .iter()
            .map(|(n, script)| {
                on_thread(scope, stack, move |s| {
                    Ok((*n, s.exec_api(*n, &["sh", "-c", script])?))
                })
            })
            .collect();
        handles.into_iter().map(joined).collect()
    })
}

/// TEST-05's figures: the replicas' pool size (from a replica's environment, else the api's
/// default) and the server's connection limit.
fn capacity(stack: &Stack, containers: &[parse::Container]) -> Result<Check> {
    let pool_size = match containers.first() {
        Some(c) => parse::pool_size_from_env(&stack.container_env(&c.id)?),
        None => None,
    }
    .unwrap_or(checks::API_DEFAULT_POOL_SIZE);
    let (max_connections, open_now) = db::connection_capacity(stack)?;
    Ok(checks::capacity(
        stack.replicas,
        pool_size,
        max_connections,
        open_now,
    ))
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

/// Cross-replica HTTP: store a document through the first replica's published port, read it
/// back through every replica, then delete it.
fn cross_replica_http(stack: &Stack, replicas: &[u32]) -> Check {
    let body: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    // Each replica's published port, all asked at once.
    let ports: BTreeMap<u32, String> = std::thread::scope(|scope| {
        let handles: Vec<_> = replicas
            .iter()
            .map(|&n| on_thread(scope, stack, move |s| Ok((n, s.port(n)?))))
            .collect();
        handles.into_iter().filter_map(|h| joined(h).ok()).collect()
    });
    let Some((&first, addr)) = ports.iter().next() else {
        return checks::cross_replica_http(
            0,
            &Err("no replica has a published port".into()),
            &body,
            &[],
            replicas,
        );
    };
    let timeout = Duration::from_secs(10);
    let send = |addr: &str, method: &str, path: &str, body: &[u8]| -> Result<http::Reply, String> {
        let addr: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| format!("published address {addr:?}: {e}"))?;
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/octet-stream")]
        };
        match http::send(addr, &http::request(method, path, headers, body), timeout) {
            http::Outcome::Reply(reply) => Ok(reply),
            other => Err(other.describe()),
        }
    };
    let store = send(addr, "POST", "/documents?name=scaling-check.bin", &body).and_then(|r| {
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
        for (&n, addr) in &ports {
            let result = send(addr, "GET", &format!("/documents/{id}/content"), b"")
                .map(|r| (r.status, r.body));
            reads.push(HttpRead { number: n, result });
        }
        let _ = send(addr, "DELETE", &format!("/documents/{id}"), b"");
    }
    let store = match (&store, &id) {
        (Ok(text), Some(_)) => Ok(text.chars().take(200).collect()),
        (Ok(text), None) => Err(format!("201 without an id: {text}")),
        (Err(e), _) => Err(e.clone()),
    };
    checks::cross_replica_http(first, &store, &body, &reads, replicas)
}
