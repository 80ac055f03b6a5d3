//! `cargo xtask bench`: how start-up and throughput grow with the replica count.
//!
//! For each N: the replicas start on a fresh database (one migrates, the others wait or take
//! the fast path), then again on the now-current one (N fast paths); each start-up is measured
//! from `docker compose up` with the start-up timeline's events. Then wrk puts a few seconds of
//! reads and of uploads on all N published ports of 127.0.0.1 while `docker stats` samples the
//! replicas' memory. Results: a table on stdout, `bench.json`, charts and a start-up timeline
//! per N in the report directory. The stack runs under its own compose project and is removed
//! on every exit path.

mod charts;
mod evidence;
mod figures;
mod load;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use xshell::{cmd, Shell};

use self::{
    evidence::ServerSide,
    figures::{ImageFacts, LoadSettings, Machine, Report, Run, StartupFigures, Usage},
    load::{LoadResult, Plan},
};
use crate::{
    flags,
    host::{dbserver::DbChoice, images, preflight, provision},
    outcome::{self, CannotRun},
    stack::{http, parse, Setup, Stack, Unhealthy, WaitOutcome, DB_NAME, DEFAULT_TIMEOUT_SECS},
    timeline::{self, Timeline},
    ui, Project,
};

/// The benchmark's own compose project: never a developer's stack, nor the checks' ones.
pub const PROJECT_NAME: &str = "scaling-bench";
const DEFAULT_REPLICAS: &str = "1,2,4,8,16";
const MAX_REPLICAS: u32 = 32;
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(DEFAULT_TIMEOUT_SECS);
/// Each of the two load measurements per N lasts this long: long enough for a stable rate,
/// short enough that the whole run stays within minutes.
const LOAD_SECONDS: u32 = 4;
/// `docker stats` is sampled this long after wrk starts, once connections are warm.
const STATS_DELAY: Duration = Duration::from_millis(1000);
const DOCUMENT_BYTES: usize = 4096;
/// How long the machine's CPU is watched while the replicas sit idle, after letting Docker
/// finish the start-up's own work.
const IDLE_SETTLE: Duration = Duration::from_secs(2);
const IDLE_SAMPLE: Duration = Duration::from_secs(3);

/// `--replicas 1,4,16` → [1, 4, 16].
pub fn parse_counts(list: &str) -> Result<Vec<u32>, String> {
    let mut counts = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n: u32 = part
            .parse()
            .map_err(|_| format!("--replicas {list}: {part:?} is not a number"))?;
        if !(1..=MAX_REPLICAS).contains(&n) {
            return Err(format!(
                "--replicas {list}: {n} is out of range, choose between 1 and {MAX_REPLICAS}"
            ));
        }
        if counts.contains(&n) {
            return Err(format!("--replicas {list}: {n} is listed twice"));
        }
        counts.push(n);
    }
    if counts.is_empty() {
        return Err(format!(
            "--replicas {list:?}: give at least one replica count, e.g. 1,4"
        ));
    }
    Ok(counts)
}

/// `--set API_WORKER_THREADS=1` → ("API_WORKER_THREADS", "1"): only the api's settings the
/// compose file reads, so a run cannot swap images or credentials.
pub fn parse_setting(raw: &str) -> Result<(String, String), String> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("--set {raw:?}: expected NAME=VALUE, e.g. API_WORKER_THREADS=1"))?;
    if !key.starts_with("API_") || key == "API_IMAGE" || key.starts_with("API_BUILD") {
        return Err(format!(
            "--set {raw:?}: only the api's settings (API_*, not API_IMAGE or API_BUILD_*) can be set"
        ));
    }
    if value.is_empty() {
        return Err(format!("--set {raw:?}: give a value"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// What every step needs.
struct Bench<'a> {
    sh: &'a Shell,
    stack: Stack<'a>,
    wrk: PathBuf,
    script: PathBuf,
    report_dir: PathBuf,
}

pub fn run(sh: &Shell, project: &Project, flags: &flags::Bench) -> Result<()> {
    let db = flags.db.as_deref().map(DbChoice::parse).transpose()?;
    let counts =
        parse_counts(flags.replicas.as_deref().unwrap_or(DEFAULT_REPLICAS)).map_err(CannotRun)?;
    let settings = flags
        .set
        .iter()
        .map(|raw| parse_setting(raw))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CannotRun)?;
    let report_dir = flags
        .report_dir
        .clone()
        .unwrap_or_else(|| project.target_dir.join("bench-report"));
    outcome::fresh_dir(&report_dir)?;
    std::fs::create_dir_all(report_dir.join("logs"))
        .with_context(|| format!("creating {}", report_dir.display()))?;

    ui::step(&format!(
        "Benchmark: N = {}",
        counts
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let (docker, compose_program) = preflight::run(sh, project)?;
    let image_set = images::ensure_for(sh, project, &docker, &compose_program, db.as_ref(), false)?;
    let wrk = provision::debian_package(sh, "wrk", "wrk", "to put HTTP load on the replicas")?;
    let script = report_dir.join("wrk-load.lua");
    std::fs::write(&script, load::SCRIPT)
        .with_context(|| format!("writing {}", script.display()))?;

    let stack = Stack::new(
        sh,
        project,
        &docker,
        compose_program,
        Setup {
            extra: settings.clone(),
            // bench measures the compose file's own probe interval (and `--set` changes it).
            fast_first_probe: false,
            ..Setup::new(
                PROJECT_NAME,
                counts.iter().copied().max().unwrap_or(1),
                &image_set,
                report_dir.join("empty.env"),
            )
        },
    )?;
    let api_image = stack.api_image.clone();
    let bench = Bench {
        sh,
        stack,
        wrk,
        script,
        report_dir,
    };

    let machine = Machine {
        cores: std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(0),
        docker_engine: bench.stack.docker.server_version(sh)?,
    };
    let api_image = ImageFacts {
        size_bytes: bench.stack.docker.image_size(sh, &api_image)?,
        name: api_image,
    };

    let guard = bench.stack.begin(false)?;
    let mut runs = Vec::new();
    let mut pages = Vec::new();
    let mut baseline_host_cpu_percent = None;
    let outcome = (|| -> Result<()> {
        bench.stack.start_db(HEALTHY_TIMEOUT)?;
        // What the machine does without any replica (the database, other users): subtracted
        // from each N's idle CPU to give the cost of one idle replica.
        std::thread::sleep(IDLE_SETTLE);
        baseline_host_cpu_percent = host_cpu_busy(IDLE_SAMPLE)?;
        ui::note(&format!(
            "no replica yet: the machine's CPU is {} busy",
            percent(baseline_host_cpu_percent)
        ));
        for &n in &counts {
            let (run, page) = measure(&bench, n)?;
            runs.push(run);
            pages.push((n, page));
        }
        Ok(())
    })();
    drop(guard);

    let report = Report {
        generated_at: Utc::now(),
        machine,
        api_image,
        settings: settings.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        baseline_host_cpu_percent,
        load: LoadSettings {
            generator: wrk_version(sh, &bench.wrk),
            seconds_per_measurement: LOAD_SECONDS,
            connections: load::CONNECTIONS,
            document_bytes: DOCUMENT_BYTES,
        },
        runs,
    };
    write_report(&bench.report_dir, &report, &pages)?;
    if !report.runs.is_empty() {
        println!("{}", figures::table(&report));
    }
    ui::note(&format!(
        "report: {}",
        bench.report_dir.join("index.html").display()
    ));
    outcome
}

/// One replica count: start-up on a fresh and on an existing database, then the load.
fn measure(bench: &Bench, n: u32) -> Result<(Run, String)> {
    ui::step(&format!("N = {n}: fresh database"));
    remove_replicas(bench)?;
    reset_database(bench)?;
    let fresh = start_replicas(bench, n, "fresh database")?;
    ui::step(&format!("N = {n}: existing database"));
    remove_replicas(bench)?;
    let existing = start_replicas(bench, n, "existing database")?;
    let containers = existing.containers;

    std::thread::sleep(IDLE_SETTLE);
    let idle_host_cpu_percent = host_cpu_busy(IDLE_SAMPLE)?;
    ui::note(&format!(
        "idle: the machine's CPU is {} busy",
        percent(idle_host_cpu_percent)
    ));

    ui::step(&format!(
        "N = {n}: load, {LOAD_SECONDS} s of reads and {LOAD_SECONDS} s of uploads"
    ));
    let mut ports = Vec::new();
    for c in &containers {
        let addr = bench.stack.port(c.number)?;
        ports.push(
            addr.parse::<SocketAddr>()
                .with_context(|| format!("the published port of {}: {addr:?}", c.label()))?,
        );
    }
    let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
    let document = seed_document(ports[0])?;
    let idle = figures::parse_stats(&bench.stack.docker.stats(bench.sh, &ids)?)?;
    let read_path = format!("/documents/{document}/content");
    let pids = replica_pids(bench, &ids)?;
    let metrics_before = scrape_metrics(&ports);
    let sched_before = run_queue(&pids);
    let (read, read_usage) = put_load(
        bench,
        &ids,
        &Plan {
            targets: &ports,
            path: &read_path,
            upload_bytes: 0,
            seconds: LOAD_SECONDS,
        },
    )?;
    note_load("read", &read);
    let read_server = server_side(
        &metrics_before,
        &scrape_metrics(&ports),
        sched_before,
        run_queue(&pids),
        read.seconds,
    );
    ui::note(&format!(
        "read, in the replicas: request p99 ≤ {} ms, pool acquire p99 ≤ {} ms, query p99 ≤ {} ms; {} workers each; their threads ran {} ms/s and waited for a CPU {} ms/s",
        ms(read_server.request_p99_ms),
        ms(read_server.pool_acquire_p99_ms),
        ms(read_server.query_p99_ms),
        ms(read_server.workers_per_replica),
        ms(read_server.cpu_ms_per_s),
        ms(read_server.run_queue_wait_ms_per_s),
    ));
    std::fs::write(
        bench
            .report_dir
            .join("logs")
            .join(format!("n{n}-metrics.txt")),
        scrape_metrics(&ports).join("\n"),
    )?;
    let upload_plan = Plan {
        targets: &ports,
        path: "/documents?name=bench-upload.bin",
        upload_bytes: DOCUMENT_BYTES,
        seconds: LOAD_SECONDS,
    };
    let (upload, upload_usage) = put_load(bench, &ids, &upload_plan)?;
    note_load("upload", &upload);

    let page = format!("timeline-n{n}.html");
    let intro = format!("Where the start-up time of {n} replicas goes, from `docker compose up`: on a fresh database, then on the migrated one.");
    let html = timeline::page(
        &format!("Start-up timeline, N = {n}"),
        &intro,
        &[fresh.timeline, existing.timeline],
    )?;
    std::fs::write(bench.report_dir.join(&page), html)?;
    let memory = figures::memory(&idle, &[read_usage, upload_usage]);
    let run = Run {
        replicas: n,
        idle_host_cpu_percent,
        fresh: fresh.figures,
        existing: existing.figures,
        read,
        read_server,
        upload,
        memory,
    };
    Ok((run, page))
}

fn remove_replicas(bench: &Bench) -> Result<()> {
    bench.stack.remove_api()
}

/// Drops and recreates the application database (the user's grants stay): a fresh schema
/// in a second, without re-initialising the server.
fn reset_database(bench: &Bench) -> Result<()> {
    let out = bench.stack.sql_output(&format!(
        "DROP DATABASE IF EXISTS `{DB_NAME}`; CREATE DATABASE `{DB_NAME}`"
    ))?;
    if !out.status.success() {
        bail!(
            "resetting the database failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// One start-up of N replicas.
struct Started {
    figures: StartupFigures,
    timeline: Timeline,
    containers: Vec<parse::Container>,
}

/// `up --scale api=n`, waits until all are healthy, and reads their timeline right away
/// (Docker keeps only the last five health probe results).
fn start_replicas(bench: &Bench, n: u32, database: &str) -> Result<Started> {
    let origin = Utc::now();
    let t_up = Instant::now();
    bench.stack.scale_api(n)?;
    match bench
        .stack
        .wait_healthy(n, HEALTHY_TIMEOUT, t_up, Unhealthy::Stops)?
    {
        WaitOutcome::AllHealthy { .. } => {}
        WaitOutcome::Broken { reason, .. } => {
            bail!("{n} replicas on a {database} did not start: {reason}")
        }
        WaitOutcome::TimedOut { seconds } => {
            bail!("{n} replicas on a {database} were not all healthy after {seconds:.0} s")
        }
    }
    let containers = bench.stack.api_containers()?;
    let times = timeline::capture(bench.sh, &bench.stack.docker, &containers)?;
    let logs = bench.stack.logs_text()?;
    let slug = database.split(' ').next().unwrap_or(database);
    std::fs::write(
        bench
            .report_dir
            .join("logs")
            .join(format!("n{n}-{slug}.log")),
        &logs,
    )?;
    let startups = parse::startups(&parse::logs(&logs));
    let timeline = timeline::shape(
        &format!("{database}, {n} replicas"),
        origin,
        &times,
        &startups,
    );
    let figures = StartupFigures::of(&timeline);
    let s = |v: Option<f64>| v.map(|v| format!("{v:.2} s")).unwrap_or_else(|| "?".into());
    ui::note(&format!(
        "all healthy after {}, pool spread {}, ready spread {}, slowest ready {}",
        s(figures.time_to_all_healthy_s),
        s(figures.pool_created_spread_s),
        s(figures.ready_spread_s),
        s(figures.slowest_ready_s)
    ));
    Ok(Started {
        figures,
        timeline,
        containers,
    })
}

/// The document every read asks for.
fn seed_document(addr: SocketAddr) -> Result<String> {
    http::store(
        addr,
        "bench-read.bin",
        &vec![b'x'; DOCUMENT_BYTES],
        Duration::from_secs(10),
    )
    .context("storing the document to read")
}

/// Runs wrk and samples `docker stats` while it runs.
fn put_load(
    bench: &Bench,
    ids: &[String],
    plan: &Plan,
) -> Result<(LoadResult, BTreeMap<u32, Usage>)> {
    let mut child = load::spawn(bench.sh, &bench.wrk, &bench.script, plan)?;
    std::thread::sleep(STATS_DELAY);
    let usage = bench
        .stack
        .docker
        .stats(bench.sh, ids)
        .and_then(|text| figures::parse_stats(&text));
    let usage = match usage {
        Ok(usage) => usage,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    Ok((load::finish(child)?, usage))
}

/// The machine's busy CPU share over `window`, from `/proc/stat` (None where there is none).
fn host_cpu_busy(window: Duration) -> Result<Option<f64>> {
    let sample = || {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(figures::cpu_times)
    };
    let before = sample();
    std::thread::sleep(window);
    Ok(before
        .zip(sample())
        .and_then(|(b, a)| figures::busy_percent(b, a)))
}

fn percent(value: Option<f64>) -> String {
    value
        .map(|p| format!("{p:.1} %"))
        .unwrap_or_else(|| "?".into())
}

fn ms(value: Option<f64>) -> String {
    value
        .map(|v| format!("{v:.1}"))
        .unwrap_or_else(|| "?".into())
}

/// The host PID of each replica's main process (`docker inspect`).
fn replica_pids(bench: &Bench, ids: &[String]) -> Result<Vec<u32>> {
    let text = bench
        .stack
        .docker
        .inspect(bench.sh, ids, "{{.State.Pid}}")?;
    Ok(text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .collect())
}

/// Each replica's `GET /metrics` (a replica that does not answer is left out).
fn scrape_metrics(ports: &[SocketAddr]) -> Vec<String> {
    ports
        .iter()
        .filter_map(|addr| {
            match http::send(
                *addr,
                &http::request("GET", "/metrics", &[], b""),
                Duration::from_secs(5),
            ) {
                http::Outcome::Reply(r) if r.status == 200 => {
                    Some(String::from_utf8_lossy(&r.body).into_owned())
                }
                _ => None,
            }
        })
        .collect()
}

/// CPU time and run-queue wait, in ns, of every thread of the given processes together
/// (None where /proc has no schedstat).
fn run_queue(pids: &[u32]) -> Option<(u64, u64)> {
    let mut total = (0u64, 0u64);
    for pid in pids {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let (run, wait) = evidence::schedstat(&text)?;
            total = (total.0 + run, total.1 + wait);
        }
    }
    Some(total)
}

fn server_side(
    before: &[String],
    after: &[String],
    sched_before: Option<(u64, u64)>,
    sched_after: Option<(u64, u64)>,
    seconds: f64,
) -> ServerSide {
    let sum = |texts: &[String], name: &str, labels: &[&str]| {
        let mut all = evidence::Buckets::new();
        for t in texts {
            for (le, n) in evidence::buckets(t, name, labels) {
                *all.entry(le).or_default() += n;
            }
        }
        all
    };
    let p99 = |name: &str, labels: &[&str]| {
        evidence::quantile_ms(&sum(before, name, labels), &sum(after, name, labels), 0.99)
    };
    let route = ["route=\"/documents/{id}/content\""];
    let find = ["what=\"find_document\""];
    let workers: Vec<f64> = after
        .iter()
        .filter_map(|t| evidence::gauge(t, "tokio_workers"))
        .collect();
    let per_s = |pick: fn((u64, u64)) -> u64| {
        let (b, a) = (sched_before?, sched_after?);
        (seconds > 0.0).then(|| (pick(a).saturating_sub(pick(b))) as f64 / 1e6 / seconds)
    };
    ServerSide {
        requests: evidence::count(
            &sum(before, "http_request_duration_seconds", &route),
            &sum(after, "http_request_duration_seconds", &route),
        ),
        request_p99_ms: p99("http_request_duration_seconds", &route),
        pool_acquire_p99_ms: p99("db_pool_acquire_seconds", &find),
        query_p99_ms: p99("db_query_seconds", &find),
        workers_per_replica: (!workers.is_empty())
            .then(|| workers.iter().sum::<f64>() / workers.len() as f64),
        cpu_ms_per_s: per_s(|s| s.0),
        run_queue_wait_ms_per_s: per_s(|s| s.1),
    }
}

fn note_load(what: &str, r: &LoadResult) {
    let errors = if r.socket_errors + r.non_2xx > 0 {
        format!(", {} socket errors, {} non-2xx", r.socket_errors, r.non_2xx)
    } else {
        String::new()
    };
    ui::note(&format!(
        "{what}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms{errors}",
        r.requests_per_s, r.p50_ms, r.p99_ms
    ));
}

/// "wrk debian/4.1.0-3+b2 [epoll]" (`wrk -v` exits 1 after printing its version).
fn wrk_version(sh: &Shell, wrk: &Path) -> String {
    let out = cmd!(sh, "{wrk} -v").quiet().ignore_status().output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.split(" Copyright").next().unwrap_or(l).trim().to_string())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "wrk".into())
}

fn write_report(dir: &Path, report: &Report, pages: &[(u32, String)]) -> Result<()> {
    let json = dir.join("bench.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let healthy = charts::time_to_healthy(&report.runs)?;
    let throughput = charts::throughput(&report.runs)?;
    let p99 = charts::p99(&report.runs)?;
    std::fs::write(dir.join("time-to-healthy.svg"), &healthy)?;
    std::fs::write(dir.join("throughput.svg"), &throughput)?;
    std::fs::write(dir.join("p99.svg"), &p99)?;
    std::fs::write(
        dir.join("index.html"),
        charts::page(report, &healthy, &throughput, &p99, pages)?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_counts_are_a_comma_separated_list_of_distinct_counts_in_range() {
        assert_eq!(parse_counts("1,2,4,8,16").unwrap(), vec![1, 2, 4, 8, 16]);
        assert_eq!(parse_counts(" 4 , 1 ").unwrap(), vec![4, 1]);
        assert!(parse_counts("0").unwrap_err().contains("out of range"));
        assert!(parse_counts("33").unwrap_err().contains("out of range"));
        assert!(parse_counts("1,x").unwrap_err().contains("not a number"));
        assert!(parse_counts("2,2").unwrap_err().contains("twice"));
        assert!(parse_counts(",").unwrap_err().contains("at least one"));
    }

    #[test]
    fn settings_are_the_apis_only() {
        assert_eq!(
            parse_setting("API_WORKER_THREADS=1").unwrap(),
            ("API_WORKER_THREADS".into(), "1".into())
        );
        assert!(parse_setting("API_WORKER_THREADS")
            .unwrap_err()
            .contains("NAME=VALUE"));
        assert!(parse_setting("DB_PASSWORD=x")
            .unwrap_err()
            .contains("only the api"));
        assert!(parse_setting("API_IMAGE=evil")
            .unwrap_err()
            .contains("only the api"));
        assert!(parse_setting("API_HEALTHCHECK_INTERVAL=")
            .unwrap_err()
            .contains("value"));
    }
}
