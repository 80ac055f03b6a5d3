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
        Setup::new(
            PROJECT_NAME,
            counts.iter().copied().max().unwrap_or(1),
            &image_set,
            report_dir.join("empty.env"),
        ),
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
    let outcome = (|| -> Result<()> {
        bench.stack.start_db(HEALTHY_TIMEOUT)?;
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
        idle_host_cpu_percent
            .map(|p| format!("{p:.1} %"))
            .unwrap_or_else(|| "?".into())
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
    std::fs::write(dir.join("time-to-healthy.svg"), &healthy)?;
    std::fs::write(dir.join("throughput.svg"), &throughput)?;
    std::fs::write(
        dir.join("index.html"),
        charts::page(report, &healthy, &throughput, pages)?,
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
}
