//! The upgrade scenario's driver: N replicas of the previous version on a database they
//! migrated; a client storing and reading through every replica the whole time; this version
//! rolled in beside them (`up -d --no-recreate --scale api=2N` with the new image); the old
//! ones stopped one at a time (`docker stop`: SIGTERM, then SIGKILL after the grace period);
//! a rollback replica of the previous version on the upgraded schema; then U-01..U-05.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use super::{
    facts::{self, Replica, Request, Side},
    judge, previous,
};
use crate::{
    scaling::checks::Check,
    stack::{db, http, parse, DbState, Stack, Unhealthy, WaitOutcome},
    ui,
};

/// How long the client runs against the old replicas alone before the roll.
const BEFORE_ROLL: Duration = Duration::from_secs(3);
/// How long both versions serve together before the old ones are stopped.
const OVERLAP: Duration = Duration::from_secs(2);
/// Between two old replicas' stops, as a rolling deploy paces them.
const BETWEEN_STOPS: Duration = Duration::from_secs(1);
/// How long the client goes on after the last old replica stopped.
const AFTER_ROLL: Duration = Duration::from_secs(2);
/// One request's deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The two versions the scenario deploys.
pub struct Versions {
    pub old_image: String,
    /// In words: which commit or image, and why.
    pub old_origin: String,
    /// The compose file the previous version shipped with (this one's for `image:NAME`).
    pub old_compose: std::path::PathBuf,
    pub new_image: String,
    /// The migration(s) the new version adds, as the report names them (for the fault, the
    /// breaking one's file name).
    pub note: Option<String>,
    /// Every migration version the new build has.
    pub new_migrations: Vec<i64>,
}

/// What the scenario measured, besides its checks.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub seconds: f64,
    /// First new replica listening → last old replica exited.
    pub overlap_s: f64,
    /// Requests from the roll's start until the last old replica exited, and how many of
    /// those a replica accepted and did not answer with success.
    pub roll_requests: usize,
    pub roll_failed: usize,
}

/// The replicas the client sends to, by name, as a load balancer would route: a replica is
/// added once healthy and removed once it exited.
type Routes = Arc<Mutex<BTreeMap<String, SocketAddr>>>;

/// A stored document: id, sha256 of its bytes, the replica that stored it.
type Doc = (String, String, String);

struct Client {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<String>>,
    docs: Arc<Mutex<Vec<Doc>>>,
    handle: JoinHandle<()>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Outcome → (status or `-`, detail) as the request log writes them. A refusal says
/// "Connection refused", which `facts::Request::refused` reads.
fn status_detail(outcome: &http::Outcome) -> (String, String) {
    match outcome {
        http::Outcome::Reply(r) => (r.status.to_string(), r.text().replace(['\t', '\n'], " ")),
        http::Outcome::Refused(e) => ("-".into(), format!("Connection refused ({e})")),
        other => ("-".into(), other.describe().replace(['\t', '\n'], " ")),
    }
}

impl Client {
    /// Stores and reads documents through every routed replica until stopped, logging each
    /// request as `facts::requests` parses it.
    fn start(routes: Routes, run: String) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(String::new()));
        let docs: Arc<Mutex<Vec<Doc>>> = Arc::new(Mutex::new(Vec::new()));
        let (s, l, d) = (stop.clone(), log.clone(), docs.clone());
        let handle = std::thread::spawn(move || {
            let mut i = 0u64;
            let record = |name: &str, op: &str, status: &str, detail: &str| {
                let line = format!("{}\t{name}\t{op}\t{status}\t{detail}\n", now());
                l.lock().unwrap().push_str(&line);
            };
            while !s.load(Ordering::Relaxed) {
                let targets: Vec<(String, SocketAddr)> = routes
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                for (name, addr) in targets {
                    i += 1;
                    let body: Vec<u8> = (0..16)
                        .flat_map(|k| Sha256::digest(format!("{run}-{i}-{k}")).to_vec())
                        .collect();
                    let outcome = http::send(
                        addr,
                        &http::request(
                            "POST",
                            &format!("/documents?name=u{i}.bin"),
                            &[("Content-Type", "application/octet-stream")],
                            &body,
                        ),
                        REQUEST_TIMEOUT,
                    );
                    let (status, mut detail) = status_detail(&outcome);
                    if let http::Outcome::Reply(r) = &outcome {
                        if let Some(id) = (r.status == 201)
                            .then(|| r.json())
                            .flatten()
                            .and_then(|j| j["id"].as_str().map(String::from))
                        {
                            d.lock()
                                .unwrap()
                                .push((id.clone(), sha256(&body), name.clone()));
                            detail = id;
                        }
                    }
                    record(&name, "store", &status, &detail);
                    let doc = {
                        let docs = d.lock().unwrap();
                        (!docs.is_empty()).then(|| docs[i as usize % docs.len()].clone())
                    };
                    if let Some((id, sha, _)) = doc {
                        let outcome =
                            http::get(addr, &format!("/documents/{id}/content"), REQUEST_TIMEOUT);
                        let (status, detail) = match &outcome {
                            http::Outcome::Reply(r) if r.status == 200 => (
                                "200".to_string(),
                                format!(
                                    "{id} {}",
                                    if sha256(&r.body) == sha {
                                        "identical"
                                    } else {
                                        "DIFFERENT"
                                    }
                                ),
                            ),
                            other => status_detail(other),
                        };
                        // Different bytes are a failure: logged as such, not as a 200.
                        let status = if detail.ends_with("DIFFERENT") {
                            "-".to_string()
                        } else {
                            status
                        };
                        record(&name, "read", &status, &detail);
                    }
                    let outcome = http::get(addr, "/documents?limit=5", REQUEST_TIMEOUT);
                    let (status, detail) = match &outcome {
                        http::Outcome::Reply(r) if r.status == 200 => {
                            ("200".to_string(), String::new())
                        }
                        other => status_detail(other),
                    };
                    record(&name, "list", &status, &detail);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Client {
            stop,
            log,
            docs,
            handle,
        }
    }

    fn docs(&self) -> Vec<Doc> {
        self.docs.lock().unwrap().clone()
    }

    /// Stops the client; returns its request log.
    fn finish(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        let log = self.log.lock().unwrap().clone();
        log
    }
}

/// Every document so far read through every routed replica, as `facts::reads` parses it.
fn sweep(label: &str, docs: &[Doc], routes: &BTreeMap<String, SocketAddr>) -> String {
    let mut out = String::new();
    for (through, addr) in routes {
        for (id, sha, stored_by) in docs {
            let outcome = http::get(*addr, &format!("/documents/{id}/content"), REQUEST_TIMEOUT);
            let (status, got, error) = match &outcome {
                http::Outcome::Reply(r) if r.status == 200 => {
                    ("200".into(), sha256(&r.body), String::new())
                }
                http::Outcome::Reply(r) => (
                    r.status.to_string(),
                    "-".into(),
                    r.text().replace(['\t', '\n'], " "),
                ),
                other => (
                    "-".into(),
                    "-".into(),
                    other.describe().replace(['\t', '\n'], " "),
                ),
            };
            out.push_str(&format!(
                "{label}\t{id}\t{stored_by}\t{sha}\t{through}\t{status}\t{got}\t{error}\n"
            ));
        }
    }
    out
}

/// The published address of each running, healthy replica, by name.
fn healthy_routes(stack: &Stack) -> Result<BTreeMap<String, SocketAddr>> {
    let healthy: Vec<u32> = stack
        .api_containers()?
        .iter()
        .filter(|c| c.is_healthy())
        .map(|c| c.number)
        .collect();
    Ok(stack
        .ports()?
        .into_iter()
        .filter(|(n, _)| healthy.contains(n))
        .map(|(n, addr)| (format!("api-{n}"), addr))
        .collect())
}

fn describe_wait(what: &str, wait: &WaitOutcome) -> Option<String> {
    match wait {
        WaitOutcome::AllHealthy { .. } => None,
        WaitOutcome::Broken { seconds, reason } => Some(format!(
            "{what}: stopped waiting after {seconds:.1} s: {reason}"
        )),
        WaitOutcome::TimedOut { seconds } => {
            Some(format!("{what}: not all healthy after {seconds:.1} s"))
        }
    }
}

/// `_sqlx_migrations` with a header line, as `facts::migration_rows` reads it.
fn migrations_table(stack: &Stack) -> Result<String> {
    let rows =
        stack.sql("SELECT version, description, success FROM _sqlx_migrations ORDER BY version")?;
    Ok(format!("version\tdescription\tsuccess\n{rows}"))
}

/// Runs the scenario on a stack whose database is up and empty. `report_dir` gets its
/// evidence: `upgrade-steps.tsv`, `upgrade-requests.tsv`, `upgrade-reads.tsv`,
/// `upgrade-migrations.tsv`, `upgrade-inspect.json`, `upgrade-roll-api.log`,
/// `upgrade-rollback-api.log`.
pub fn run(
    stack: &mut Stack,
    n: u32,
    timeout: Duration,
    versions: &Versions,
    report_dir: &Path,
) -> Result<(Vec<Check>, Figures)> {
    let started = Instant::now();
    let mut steps = String::new();
    let mut step = |what: &str| {
        steps.push_str(&format!("{}\t{what}\n", now()));
        ui::note(what);
    };
    ui::step(&format!(
        "Scenario: upgrade — {n} replicas of the previous version ({})",
        versions.old_origin
    ));
    stack.set_api_version(&versions.old_image, &versions.old_compose)?;
    let t_up = Instant::now();
    step(&format!("up old x{n} ({})", versions.old_image));
    stack.scale_api(n)?;
    let wait = stack.wait_healthy(n, timeout, t_up, Unhealthy::Stops)?;
    if let Some(why) = describe_wait("the previous version", &wait) {
        bail!("{why}");
    }
    step("old healthy");
    let old_versions: Vec<i64> = db::migration_records(stack)?
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    let old_ids: Vec<(String, String)> = stack
        .api_containers()?
        .iter()
        .map(|c| (c.label(), c.id.clone()))
        .collect();
    let routes: Routes = Arc::new(Mutex::new(healthy_routes(stack)?));
    let run_id = crate::host::testdb::random_hex(4)?;
    let client = Client::start(routes.clone(), run_id);
    std::thread::sleep(BEFORE_ROLL);

    ui::step(&format!(
        "Scenario: upgrade — rolling in {}",
        versions.new_image
    ));
    let roll_started = Utc::now();
    step(&format!(
        "roll new in: up --no-recreate --scale api={}",
        2 * n
    ));
    stack.set_api_version(&versions.new_image, &stack.project.compose_file())?;
    let t_roll = Instant::now();
    stack.scale_api(2 * n)?;
    let new_wait = stack.wait_healthy(2 * n, timeout, t_roll, Unhealthy::Stops)?;
    let new_problem = describe_wait("the new version", &new_wait);
    step(&format!(
        "new up{}",
        new_problem
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default()
    ));
    *routes.lock().unwrap() = healthy_routes(stack)?;
    std::thread::sleep(OVERLAP);
    let mut reads = sweep("overlap", &client.docs(), &routes.lock().unwrap().clone());
    step("overlap sweep done");

    let mut stops = BTreeMap::new();
    let mut last_stopped = Utc::now();
    for (name, id) in &old_ids {
        stops.insert(name.clone(), Utc::now());
        step(&format!("docker stop {name}"));
        stack.docker.stop(stack.sh, id)?;
        last_stopped = Utc::now();
        step(&format!("stopped {name}"));
        routes.lock().unwrap().remove(name);
        std::thread::sleep(BETWEEN_STOPS);
    }
    std::thread::sleep(AFTER_ROLL);
    let docs = client.docs();
    let request_log = client.finish();
    step("client stopped");

    let roll_log = stack.logs_text()?;
    std::fs::write(report_dir.join("upgrade-roll-api.log"), &roll_log)?;
    let roll_startups = parse::startups(&parse::logs(&roll_log));
    let containers = stack.api_containers()?;
    let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
    let mut replicas = facts::replicas(
        &stack.docker.replica_facts(stack.sh, &ids)?,
        &versions.old_image,
    )?;
    let sides: BTreeMap<u32, (Side, Option<DateTime<Utc>>)> = replicas
        .iter()
        .map(|r| (r.number, (r.side, r.finished_at)))
        .collect();
    crate::timeline::add_to_report(
        stack.sh,
        &stack.docker,
        stack.engine().name(),
        DbState::Upgrade,
        &containers,
        &roll_startups,
        t_up,
        report_dir,
        &sides
            .iter()
            .map(|(n, (side, stopped))| (*n, (side.name().to_string(), *stopped)))
            .collect(),
    );
    // A later `up` would start the stopped old containers again: they go, their facts kept.
    for (_, id) in &old_ids {
        stack.docker.remove(stack.sh, id)?;
    }
    step("old containers removed");

    ui::step("Scenario: upgrade — rollback: one replica of the previous version");
    step(&format!(
        "rollback: up one old replica, --scale api={}",
        n + 1
    ));
    stack.set_api_version(&versions.old_image, &versions.old_compose)?;
    let t_rollback = Instant::now();
    stack.scale_api(n + 1)?;
    let rollback_wait = stack.wait_healthy(n + 1, timeout, t_rollback, Unhealthy::Stops)?;
    step(&format!(
        "rollback up{}",
        describe_wait("rollback", &rollback_wait)
            .map(|p| format!(" ({p})"))
            .unwrap_or_default()
    ));
    let final_routes: BTreeMap<String, SocketAddr> = stack
        .ports()?
        .into_iter()
        .map(|(n, addr)| (format!("api-{n}"), addr))
        .collect();
    reads.push_str(&sweep("after-rollback", &docs, &final_routes));
    step("final sweep done");
    let rollback_log = stack.logs_text()?;
    std::fs::write(report_dir.join("upgrade-rollback-api.log"), &rollback_log)?;
    let rollback_startups = parse::startups(&parse::logs(&rollback_log));
    let now_ids: Vec<String> = stack
        .api_containers()?
        .iter()
        .map(|c| c.id.clone())
        .filter(|id| !old_ids.iter().any(|(_, o)| o == id))
        .collect();
    let later = facts::replicas(
        &stack.docker.replica_facts(stack.sh, &now_ids)?,
        &versions.old_image,
    )?;
    // The new replicas' state now (still healthy?), the rollback replica added.
    replicas.retain(|r| r.side == Side::Old);
    replicas.extend(later);
    replicas.sort_by_key(|r| (r.started_at, r.number));

    let table = migrations_table(stack)?;
    std::fs::write(report_dir.join("upgrade-migrations.tsv"), &table)?;
    std::fs::write(report_dir.join("upgrade-steps.tsv"), &steps)?;
    std::fs::write(report_dir.join("upgrade-requests.tsv"), &request_log)?;
    std::fs::write(report_dir.join("upgrade-reads.tsv"), &reads)?;
    std::fs::write(
        report_dir.join("upgrade-inspect.json"),
        serde_json::to_string_pretty(&replicas)?,
    )?;

    let rows = facts::migration_rows(&table)?;
    let requests = facts::requests(&request_log)?;
    let reads = facts::reads(&reads)?;
    let new_versions = previous::new_versions(&old_versions, &versions.new_migrations);
    let migration = facts::migration_names(&table, &new_versions)?.join(", ");

    let rollback = replicas
        .iter()
        .find(|r| r.side == Side::Old && r.started_at > roll_started)
        .cloned();
    let rolled: Vec<Replica> = replicas
        .iter()
        .filter(|r| Some(r.number) != rollback.as_ref().map(|r| r.number))
        .cloned()
        .collect();
    let migrated_at = judge::migration_time(&rolled, &roll_startups, roll_started);

    let mut u01 =
        judge::migration_applied_once(&rolled, &roll_startups, &rows, &new_versions, roll_started);
    if let Some(p) = &new_problem {
        u01.evidence.push(p.clone());
    }
    let mut u02 =
        judge::old_replicas_kept_serving(&rolled, &requests, migrated_at, &migration, &stops);
    if let Some(note) = &versions.note {
        u02.evidence.push(note.clone());
    }
    let u03 = judge::replaced_cleanly(&rolled);
    let u04 = judge::rollback_starts(
        rollback.as_ref(),
        rollback
            .as_ref()
            .and_then(|r| rollback_startups.get(&r.number)),
        &reads,
    );
    let u05 = judge::documents_cross_versions(&replicas, &reads);

    let figures = measure(
        &rolled,
        &roll_startups,
        &requests,
        &stops,
        roll_started,
        last_stopped,
        started,
    );
    u01.figure("overlap_s", figures.overlap_s);
    u02.figure("roll_requests", figures.roll_requests as f64);
    u02.figure("roll_requests_failed", figures.roll_failed as f64);
    let mut checks = vec![u01, u02, u03, u04, u05];
    if let Some(first) = checks.first_mut() {
        first.figure("upgrade_s", figures.seconds);
    }
    ui::note(&format!(
        "upgrade: {:.1} s; old and new overlapped {:.1} s; {} requests during the roll, {} failed",
        figures.seconds, figures.overlap_s, figures.roll_requests, figures.roll_failed
    ));
    crate::scaling::checks::print_verdicts(&checks);
    Ok((checks, figures))
}

/// The scenario's figures: its wall time, how long both versions served together, and the
/// requests sent during the roll with how many of those a replica accepted and failed.
fn measure(
    rolled: &[Replica],
    startups: &BTreeMap<u32, parse::Startup>,
    requests: &[Request],
    stops: &BTreeMap<String, DateTime<Utc>>,
    roll_started: DateTime<Utc>,
    last_stopped: DateTime<Utc>,
    started: Instant,
) -> Figures {
    let first_new_listening = rolled
        .iter()
        .filter(|r| r.side == Side::New)
        .filter_map(|r| startups.get(&r.number)?.listening.first().copied())
        .min();
    let last_old_exit = rolled
        .iter()
        .filter(|r| r.side == Side::Old)
        .filter_map(|r| r.finished_at)
        .max();
    let overlap_s = match (first_new_listening, last_old_exit) {
        (Some(from), Some(to)) if to > from => (to - from).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    };
    let during: Vec<&Request> = requests
        .iter()
        .filter(|r| r.time >= roll_started && r.time <= last_stopped)
        .collect();
    let stopping =
        |r: &Request| r.status.is_none() && stops.get(&r.replica).is_some_and(|s| r.time >= *s);
    let roll_failed = during
        .iter()
        .filter(|r| !r.succeeded() && !r.refused() && !stopping(r))
        .count();
    Figures {
        seconds: started.elapsed().as_secs_f64(),
        overlap_s,
        roll_requests: during.len(),
        roll_failed,
    }
}
