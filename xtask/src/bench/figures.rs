//! The benchmark's figures and how they are printed: pure functions over timelines, wrk's
//! results and `docker stats` output.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::load::LoadResult;
use crate::{
    stack::parse::trailing_number,
    timeline::{Mark, Timeline},
};

/// Start-up of N replicas, in seconds from `docker compose up`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StartupFigures {
    pub time_to_all_healthy_s: Option<f64>,
    pub pool_created_spread_s: Option<f64>,
    pub ready_spread_s: Option<f64>,
    /// From `up` to the last replica's `Listening on`.
    pub slowest_ready_s: Option<f64>,
    /// From `up` to the last container's process start: what Docker and Compose take.
    pub last_container_started_s: Option<f64>,
    /// Mean time from `Listening on` to healthy: what the health check's timing costs (over
    /// the replicas whose healthy time is exact).
    pub ready_to_healthy_mean_s: Option<f64>,
    /// False when the last replica's healthy time is only an upper bound (Docker had already
    /// dropped the probe that turned it healthy, see `timeline::first_healthy`).
    pub healthy_exact: bool,
}

impl StartupFigures {
    pub fn of(timeline: &Timeline) -> StartupFigures {
        let gaps: Vec<f64> = timeline
            .rows
            .iter()
            .filter(|r| r.healthy_exact)
            .filter_map(|r| Some(r.at(Mark::Healthy)? - r.at(Mark::Ready)?))
            .collect();
        let last_healthy = timeline
            .rows
            .iter()
            .filter_map(|r| Some((r.at(Mark::Healthy)?, r)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        StartupFigures {
            time_to_all_healthy_s: timeline.slowest(Mark::Healthy),
            pool_created_spread_s: timeline.spread(Mark::PoolCreated),
            ready_spread_s: timeline.spread(Mark::Ready),
            slowest_ready_s: timeline.slowest(Mark::Ready),
            last_container_started_s: timeline.slowest(Mark::ContainerStarted),
            ready_to_healthy_mean_s: (!gaps.is_empty())
                .then(|| gaps.iter().sum::<f64>() / gaps.len() as f64),
            healthy_exact: last_healthy.is_some_and(|(_, r)| r.healthy_exact),
        }
    }
}

/// One container's line of `docker stats --no-stream --format '{{json .}}'`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Usage {
    pub memory_mib: f64,
    pub cpu_percent: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StatsLine {
    name: String,
    mem_usage: String,
    #[serde(rename = "CPUPerc")]
    cpu_perc: String,
}

/// Parses `docker stats` into usage per compose container number.
pub fn parse_stats(text: &str) -> Result<BTreeMap<u32, Usage>> {
    let mut usage = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let entry: StatsLine = serde_json::from_str(line)
            .with_context(|| format!("parsing a `docker stats` line: {line}"))?;
        let number = trailing_number(&entry.name)
            .with_context(|| format!("no container number in {:?}", entry.name))?;
        let used = entry.mem_usage.split('/').next().unwrap_or("").trim();
        let cpu = entry.cpu_perc.trim().trim_end_matches('%');
        usage.insert(
            number,
            Usage {
                memory_mib: bytes(used)
                    .with_context(|| format!("memory of {}: {:?}", entry.name, entry.mem_usage))?
                    / (1024.0 * 1024.0),
                cpu_percent: cpu
                    .parse()
                    .with_context(|| format!("CPU of {}: {:?}", entry.name, entry.cpu_perc))?,
            },
        );
    }
    Ok(usage)
}

/// "12.5MiB", "980KiB", "1.2GiB", "0B", and the decimal units older CLIs print.
fn bytes(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .trim()
        .parse()
        .with_context(|| format!("a size: {text:?}"))?;
    let scale = match unit.trim() {
        "B" | "" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => bail!("unknown size unit {other:?} in {text:?}"),
    };
    Ok(number * scale)
}

/// Busy and total CPU time of the whole machine (all cores), from the first line of
/// `/proc/stat`: `cpu user nice system idle iowait irq softirq steal ...`.
pub fn cpu_times(proc_stat: &str) -> Option<(u64, u64)> {
    let fields: Vec<u64> = proc_stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Share of the machine's CPU time that was busy between two `cpu_times` samples, in percent.
pub fn busy_percent(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1).filter(|t| *t > 0)?;
    Some(100.0 * after.0.saturating_sub(before.0) as f64 / total as f64)
}

/// One replica's memory, idle (healthy, no traffic) and its highest sample under load.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicaMemory {
    pub replica: String,
    pub idle_mib: Option<f64>,
    pub load_mib: Option<f64>,
    /// CPU while reading and while uploading, as `docker stats` samples it.
    pub load_cpu_percent: Option<f64>,
}

pub fn memory(idle: &BTreeMap<u32, Usage>, load: &[BTreeMap<u32, Usage>]) -> Vec<ReplicaMemory> {
    let mut numbers: Vec<u32> = idle
        .keys()
        .chain(load.iter().flat_map(|l| l.keys()))
        .copied()
        .collect();
    numbers.sort();
    numbers.dedup();
    numbers
        .into_iter()
        .map(|n| ReplicaMemory {
            replica: format!("api-{n}"),
            idle_mib: idle.get(&n).map(|u| u.memory_mib),
            load_mib: load
                .iter()
                .filter_map(|l| l.get(&n))
                .map(|u| u.memory_mib)
                .reduce(f64::max),
            load_cpu_percent: load
                .iter()
                .filter_map(|l| l.get(&n))
                .map(|u| u.cpu_percent)
                .reduce(f64::max),
        })
        .collect()
}

/// Everything measured for one replica count.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    pub replicas: u32,
    /// The whole machine's CPU use while the N replicas sit idle and healthy: what health
    /// probes and idle replicas cost before any request.
    pub idle_host_cpu_percent: Option<f64>,
    pub fresh: StartupFigures,
    pub existing: StartupFigures,
    pub read: LoadResult,
    /// The read load as the replicas saw it (their metrics, their threads' run-queue wait).
    pub read_server: super::evidence::ServerSide,
    pub upload: LoadResult,
    pub memory: Vec<ReplicaMemory>,
}

impl Run {
    fn max_memory(&self, pick: fn(&ReplicaMemory) -> Option<f64>) -> Option<f64> {
        self.memory.iter().filter_map(pick).reduce(f64::max)
    }
}

/// The whole report, as written to `bench.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub generated_at: chrono::DateTime<chrono::Utc>,
    pub machine: Machine,
    pub api_image: ImageFacts,
    /// `--set` values of this run (empty: the compose file's defaults).
    pub settings: Vec<String>,
    /// The machine's CPU with the database up and no replica: subtracted to cost one replica.
    pub baseline_host_cpu_percent: Option<f64>,
    pub load: LoadSettings,
    pub runs: Vec<Run>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub docker_engine: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImageFacts {
    pub name: String,
    pub size_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadSettings {
    pub generator: String,
    pub seconds_per_measurement: u32,
    pub connections: u32,
    pub document_bytes: usize,
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value
        .map(|v| format!("{v:.decimals$}"))
        .unwrap_or_else(|| "–".into())
}

impl Run {
    /// One idle replica's share of the machine: the idle CPU above the baseline (database up,
    /// no replica), divided by N. Mostly its health probes (`docker exec`).
    pub fn idle_cost_per_replica_percent(&self, baseline: Option<f64>) -> Option<f64> {
        let idle = self.idle_host_cpu_percent?;
        Some((idle - baseline?).max(0.0) / f64::from(self.replicas.max(1)))
    }
}

/// The figure users ask first: reads per second and read p99 at each N, each with its ratio
/// to N=1; what the replicas saw of the same load; and what an idle replica costs.
pub fn scaling_table(report: &Report) -> String {
    let mut out = String::new();
    let one = report.runs.iter().find(|r| r.replicas == 1);
    let ratio = |value: f64, base: Option<f64>| {
        base.filter(|b| *b > 0.0)
            .map(|b| format!("{:.2}×", value / b))
            .unwrap_or_else(|| "–".into())
    };
    let _ = writeln!(
        out,
        "\nScaling, reads: ratio to N=1 in the same run; in the replicas: their own p99 and their threads' wait for a CPU{}",
        if report.settings.is_empty() {
            String::new()
        } else {
            format!(" (settings: {})", report.settings.join(" "))
        }
    );
    let _ = writeln!(
        out,
        "{:>3}  {:>10} {:>7}  {:>8} {:>7}  {:>11} {:>9} {:>8} {:>10}  {:>12} {:>14}",
        "N",
        "read req/s",
        "ratio",
        "p99 ms",
        "ratio",
        "api p99 ms",
        "pool p99",
        "workers",
        "CPU wait",
        "idle/replica",
        "healthy after"
    );
    for run in &report.runs {
        let s = &run.read_server;
        let _ = writeln!(
            out,
            "{:>3}  {:>10.0} {:>7}  {:>8.2} {:>7}  {:>11} {:>9} {:>8} {:>7} ms/s  {:>11}% {:>12} s",
            run.replicas,
            run.read.requests_per_s,
            ratio(run.read.requests_per_s, one.map(|r| r.read.requests_per_s)),
            run.read.p99_ms,
            ratio(run.read.p99_ms, one.map(|r| r.read.p99_ms)),
            cell(s.request_p99_ms, 1),
            cell(s.pool_acquire_p99_ms, 1),
            cell(s.workers_per_replica, 0),
            cell(s.run_queue_wait_ms_per_s, 0),
            cell(
                run.idle_cost_per_replica_percent(report.baseline_host_cpu_percent),
                2
            ),
            cell(run.existing.time_to_all_healthy_s, 2),
        );
    }
    let _ = writeln!(
        out,
        "(baseline: the machine {}% busy with the database and no replica; idle/replica = (idle − baseline) / N)",
        cell(report.baseline_host_cpu_percent, 1)
    );
    out
}

/// The tables printed on stdout (and, in `<pre>`, on the report page).
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Start-up, seconds from `docker compose up` ({} cores, Docker {})",
        report.machine.cores, report.machine.docker_engine
    );
    let _ = writeln!(
        out,
        "{:>3}  {:<9} {:>12} {:>12} {:>13} {:>14} {:>15}",
        "N",
        "database",
        "all healthy",
        "pool spread",
        "ready spread",
        "slowest ready",
        "ready→healthy"
    );
    for run in &report.runs {
        for (db, f) in [("fresh", &run.fresh), ("existing", &run.existing)] {
            let approx = if f.healthy_exact { " " } else { "≤" };
            let _ = writeln!(
                out,
                "{:>3}  {:<9} {:>11}{approx} {:>12} {:>13} {:>14} {:>15}",
                run.replicas,
                db,
                cell(f.time_to_all_healthy_s, 2),
                cell(f.pool_created_spread_s, 2),
                cell(f.ready_spread_s, 2),
                cell(f.slowest_ready_s, 2),
                cell(f.ready_to_healthy_mean_s, 2),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nLoad: {}, {} s per measurement, {} connections spread over the N replicas, {}-byte documents",
        report.load.generator, report.load.seconds_per_measurement, report.load.connections, report.load.document_bytes
    );
    let _ = writeln!(
        out,
        "{:>3}  {:>10} {:>8} {:>8}  {:>12} {:>8} {:>8}  {:>12} {:>12}  {:>13}  {:>6}",
        "N",
        "read req/s",
        "p50 ms",
        "p99 ms",
        "upload req/s",
        "p50 ms",
        "p99 ms",
        "idle MiB max",
        "load MiB max",
        "idle host CPU",
        "errors"
    );
    for run in &report.runs {
        let errors = run.read.socket_errors
            + run.read.non_2xx
            + run.upload.socket_errors
            + run.upload.non_2xx;
        let _ = writeln!(
            out,
            "{:>3}  {:>10.0} {:>8.2} {:>8.2}  {:>12.0} {:>8.2} {:>8.2}  {:>12} {:>12}  {:>12}%  {:>6}",
            run.replicas,
            run.read.requests_per_s,
            run.read.p50_ms,
            run.read.p99_ms,
            run.upload.requests_per_s,
            run.upload.p50_ms,
            run.upload.p99_ms,
            cell(run.max_memory(|m| m.idle_mib), 1),
            cell(run.max_memory(|m| m.load_mib), 1),
            cell(run.idle_host_cpu_percent, 1),
            errors,
        );
    }
    out.push_str(&scaling_table(report));
    let _ = writeln!(
        out,
        "\napi image {}: {:.1} MB",
        report.api_image.name,
        report.api_image.size_bytes as f64 / 1e6
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Row;

    fn testdata(name: &str) -> String {
        std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn row(number: u32, marks: &[(Mark, f64)]) -> Row {
        Row {
            replica: format!("api-{number}"),
            number,
            marks: marks.iter().copied().collect(),
            applied: 0,
            healthy_exact: true,
            version: None,
            stopped: None,
        }
    }

    #[test]
    fn startup_figures_come_from_the_slowest_and_the_spread_of_the_rows() {
        let timeline = Timeline {
            title: "t".into(),
            origin: chrono::Utc::now(),
            rows: vec![
                row(
                    1,
                    &[
                        (Mark::ContainerStarted, 0.4),
                        (Mark::PoolCreated, 0.6),
                        (Mark::Ready, 0.9),
                        (Mark::Healthy, 1.4),
                    ],
                ),
                row(
                    2,
                    &[
                        (Mark::ContainerStarted, 0.5),
                        (Mark::PoolCreated, 1.0),
                        (Mark::Ready, 1.5),
                        (Mark::Healthy, 2.5),
                    ],
                ),
            ],
        };
        let f = StartupFigures::of(&timeline);
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
        assert!(close(f.time_to_all_healthy_s, 2.5));
        assert!(close(f.pool_created_spread_s, 0.4));
        assert!(close(f.ready_spread_s, 0.6));
        assert!(close(f.slowest_ready_s, 1.5));
        assert!(close(f.last_container_started_s, 0.5));
        assert!(close(f.ready_to_healthy_mean_s, 0.75));
        assert!(f.healthy_exact);
    }

    #[test]
    fn time_to_healthy_is_exact_when_the_last_replica_is_and_inexact_rows_stay_out_of_the_mean() {
        let mut early = row(1, &[(Mark::Ready, 0.5), (Mark::Healthy, 2.5)]);
        early.healthy_exact = false;
        let last = row(2, &[(Mark::Ready, 2.0), (Mark::Healthy, 3.0)]);
        let timeline = Timeline {
            title: "t".into(),
            origin: chrono::Utc::now(),
            rows: vec![early.clone(), last.clone()],
        };
        let f = StartupFigures::of(&timeline);
        assert!(f.healthy_exact);
        assert_eq!(
            (f.time_to_all_healthy_s, f.ready_to_healthy_mean_s),
            (Some(3.0), Some(1.0))
        );
        let mut late_and_inexact = last;
        late_and_inexact.healthy_exact = false;
        let timeline = Timeline {
            rows: vec![early, late_and_inexact],
            ..timeline
        };
        let f = StartupFigures::of(&timeline);
        assert!(!f.healthy_exact);
        assert_eq!(f.ready_to_healthy_mean_s, None);
    }

    #[test]
    fn a_replica_that_never_turned_healthy_leaves_time_to_healthy_unknown() {
        let late = row(2, &[(Mark::PoolCreated, 1.0)]);
        let timeline = Timeline {
            title: "t".into(),
            origin: chrono::Utc::now(),
            rows: vec![row(1, &[(Mark::Healthy, 1.0)]), late],
        };
        let f = StartupFigures::of(&timeline);
        assert_eq!(f.time_to_all_healthy_s, None);
        assert_eq!(f.slowest_ready_s, None);
    }

    #[test]
    fn docker_stats_gives_memory_and_cpu_per_replica() {
        let usage = parse_stats(&testdata("bench-docker-stats.txt")).unwrap();
        assert!(!usage.is_empty());
        for u in usage.values() {
            assert!(u.memory_mib > 0.5 && u.memory_mib < 1024.0, "{u:?}");
            assert!(u.cpu_percent >= 0.0);
        }
    }

    #[test]
    fn sizes_in_every_unit_docker_prints() {
        let line = |mem: &str| {
            format!(
                r#"{{"Name":"scaling-bench-api-3","MemUsage":"{mem} / 23.54GiB","CPUPerc":"12.50%"}}"#
            )
        };
        let mib = |mem: &str| parse_stats(&line(mem)).unwrap()[&3].memory_mib;
        assert_eq!(mib("3MiB"), 3.0);
        assert_eq!(mib("512KiB"), 0.5);
        assert_eq!(mib("1GiB"), 1024.0);
        assert_eq!(mib("0B"), 0.0);
        assert!((mib("2MB") - 2e6 / 1048576.0).abs() < 1e-9);
        assert_eq!(parse_stats(&line("3MiB")).unwrap()[&3].cpu_percent, 12.5);
        assert!(parse_stats(&line("3 parsecs")).is_err());
        assert!(
            parse_stats(r#"{"Name":"nonumber","MemUsage":"1MiB / 2MiB","CPUPerc":"0%"}"#).is_err()
        );
    }

    #[test]
    fn host_cpu_is_the_busy_share_of_all_cores_between_two_samples() {
        let before = cpu_times("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(before, (150, 1000));
        let after = cpu_times("cpu  160 0 70 1100 70 0 0 0 0 0\n").unwrap();
        assert_eq!(busy_percent(before, after), Some(80.0 / 400.0 * 100.0));
        assert_eq!(busy_percent(after, after), None);
        assert_eq!(cpu_times("intr 1 2 3\n"), None);
    }

    fn load(rps: f64, p99: f64) -> LoadResult {
        LoadResult {
            requests: 1000,
            seconds: 4.0,
            requests_per_s: rps,
            p50_ms: 1.0,
            p99_ms: p99,
            max_ms: p99 * 2.0,
            socket_errors: 0,
            non_2xx: 0,
        }
    }

    fn scaling_run(replicas: u32, rps: f64, p99: f64, idle: f64) -> Run {
        Run {
            replicas,
            idle_host_cpu_percent: Some(idle),
            fresh: StartupFigures::default(),
            existing: StartupFigures::default(),
            read: load(rps, p99),
            read_server: super::super::evidence::ServerSide {
                request_p99_ms: Some(2.0),
                workers_per_replica: Some(2.0),
                run_queue_wait_ms_per_s: Some(300.0),
                ..Default::default()
            },
            upload: load(rps / 4.0, p99 * 2.0),
            memory: vec![],
        }
    }

    #[test]
    fn the_scaling_table_gives_each_n_its_ratio_to_one_replica_and_the_idle_cost_of_one() {
        let report = Report {
            generated_at: chrono::Utc::now(),
            machine: Machine {
                cores: 2,
                docker_engine: "20.10.24".into(),
            },
            api_image: ImageFacts {
                name: "api".into(),
                size_bytes: 1,
            },
            settings: vec!["API_WORKER_THREADS=1".into()],
            baseline_host_cpu_percent: Some(4.0),
            load: LoadSettings {
                generator: "wrk".into(),
                seconds_per_measurement: 4,
                connections: 32,
                document_bytes: 4096,
            },
            runs: vec![
                scaling_run(1, 4000.0, 16.0, 6.0),
                scaling_run(4, 5000.0, 40.0, 12.0),
            ],
        };
        let run4 = &report.runs[1];
        assert_eq!(run4.idle_cost_per_replica_percent(Some(4.0)), Some(2.0));
        assert_eq!(run4.idle_cost_per_replica_percent(None), None);
        let table = scaling_table(&report);
        assert!(table.contains("settings: API_WORKER_THREADS=1"), "{table}");
        let row4 = table
            .lines()
            .find(|l| l.trim_start().starts_with("4 "))
            .unwrap();
        assert!(row4.contains("1.25×") && row4.contains("2.50×"), "{row4}");
        assert!(
            row4.contains("300 ms/s") && row4.contains("2.00%"),
            "{row4}"
        );
        // Without N=1 in the run there is no ratio, not a made-up one.
        let mut no_one = report.clone();
        no_one.runs.remove(0);
        let table = scaling_table(&no_one);
        let row4 = table
            .lines()
            .find(|l| l.trim_start().starts_with("4 "))
            .unwrap();
        assert!(row4.contains('–') && !row4.contains('×'), "{row4}");
    }

    #[test]
    fn memory_keeps_the_highest_sample_under_load() {
        let usage = |mib: f64| Usage {
            memory_mib: mib,
            cpu_percent: mib * 10.0,
        };
        let idle = BTreeMap::from([(1, usage(5.0))]);
        let load = [
            BTreeMap::from([(1, usage(9.0)), (2, usage(7.0))]),
            BTreeMap::from([(1, usage(8.0))]),
        ];
        let m = memory(&idle, &load);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].idle_mib, m[0].load_mib, m[0].load_cpu_percent),
            (Some(5.0), Some(9.0), Some(90.0))
        );
        assert_eq!(
            (m[1].replica.as_str(), m[1].idle_mib, m[1].load_mib),
            ("api-2", None, Some(7.0))
        );
    }
}
