//! The start-up timeline: for each replica, when its container started, created its pool, took
//! the fast path, the lock or waited, applied migrations, listened and turned healthy, on one
//! time axis that starts at `docker compose up`. Written as an HTML page with an inline SVG
//! (drawn with plotters; no script, no network) into every `test-scaling` report directory
//! and, per replica count, by `cargo xtask bench`.
//!
//! The times come from the log-line contract (`stack::parse::startups`) and from Docker
//! (`.State.StartedAt` and the health log). Parsing and shaping are pure functions tested on
//! recorded output; only `capture` asks Docker.

mod model;
mod page;
mod svg;

pub use self::{model::*, page::*, svg::*};

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use xshell::Shell;

use crate::{
    docker::Docker,
    stack::{
        parse::{Container, Startup},
        DbState,
    },
    ui,
};

/// Asks Docker for the start and health times of these containers.
pub fn capture(
    sh: &Shell,
    docker: &Docker,
    containers: &[Container],
) -> Result<Vec<ContainerTimes>> {
    let ids: Vec<String> = containers
        .iter()
        .filter(|c| !c.id.is_empty())
        .map(|c| c.id.clone())
        .collect();
    parse_inspect(&docker.start_and_health(sh, &ids)?)
}

/// `test-scaling`'s hook, called as soon as the replicas are healthy (Docker keeps only the
/// last five probe results): records this scenario's timeline as `timeline-SLUG.json` and
/// rewrites `timeline.html` with every scenario recorded in `report_dir`. A timeline is not a
/// check: any problem is a warning. `versions`: for the upgrade scenario, each replica's
/// version (`old`, `new`) and when it exited, so the page tells them apart; else empty.
#[allow(clippy::too_many_arguments)] // the hook's inputs, each already at hand in the caller
pub fn add_to_report(
    sh: &Shell,
    docker: &Docker,
    engine: &str,
    scenario: DbState,
    containers: &[Container],
    startups: &BTreeMap<u32, Startup>,
    up: Instant,
    report_dir: &Path,
    versions: &BTreeMap<u32, (String, Option<DateTime<Utc>>)>,
) {
    match capture(sh, docker, containers) {
        Ok(times) => add_times_to_report(
            engine,
            scenario,
            containers.len(),
            &times,
            startups,
            up,
            report_dir,
            versions,
        ),
        Err(e) => ui::warn(&format!("the start-up timeline was not written: {e:#}")),
    }
}

/// `add_to_report` from times the caller already captured (`capture`, or `parse_inspect` of
/// its own `start_and_health`): no second `docker inspect`.
#[allow(clippy::too_many_arguments)] // the hook's inputs, each already at hand in the caller
pub fn add_times_to_report(
    engine: &str,
    scenario: DbState,
    replicas: usize,
    times: &[ContainerTimes],
    startups: &BTreeMap<u32, Startup>,
    up: Instant,
    report_dir: &Path,
    versions: &BTreeMap<u32, (String, Option<DateTime<Utc>>)>,
) {
    let written = (|| -> Result<PathBuf> {
        let origin = Utc::now() - chrono::TimeDelta::from_std(up.elapsed())?;
        let title = format!("{}, {replicas} replicas, {engine}", scenario.name());
        let mut timeline = shape(&title, origin, times, startups);
        label_versions(&mut timeline, versions);
        let json = report_dir.join(format!("timeline-{}.json", scenario.slug()));
        std::fs::write(&json, serde_json::to_string_pretty(&timeline)?)
            .with_context(|| format!("writing {}", json.display()))?;
        let timelines = read_all(report_dir)?;
        let path = report_dir.join("timeline.html");
        let intro = format!("Where each replica's start-up time goes, scenario by scenario, from the start of the replicas ({engine}).");
        std::fs::write(&path, page("Start-up timeline", &intro, &timelines)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    })();
    match written {
        Ok(path) => ui::note(&format!("start-up timeline: {}", path.display())),
        Err(e) => ui::warn(&format!("the start-up timeline was not written: {e:#}")),
    }
}

/// Marks each row with its version and exit time (seconds on the axis).
pub fn label_versions(
    timeline: &mut Timeline,
    versions: &BTreeMap<u32, (String, Option<DateTime<Utc>>)>,
) {
    for row in &mut timeline.rows {
        if let Some((version, stopped)) = versions.get(&row.number) {
            row.version = Some(version.clone());
            row.stopped = stopped
                .map(|t| (t - timeline.origin).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6);
        }
    }
}

/// Every `timeline-*.json` in a directory, in the order they were recorded.
fn read_all(dir: &Path) -> Result<Vec<Timeline>> {
    let mut timelines = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("timeline-") && name.ends_with(".json") {
            let text = std::fs::read_to_string(&path)?;
            timelines.push(
                serde_json::from_str::<Timeline>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?,
            );
        }
    }
    timelines.sort_by_key(|t| t.origin);
    Ok(timelines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::parse;
    use chrono::DateTime;
    use std::collections::BTreeSet;

    fn testdata(name: &str) -> String {
        std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn probe(start: &str, end: &str, exit_code: i64) -> Probe {
        Probe {
            start: t(start),
            end: t(end),
            exit_code,
            output: String::new(),
        }
    }

    #[test]
    fn docker_inspect_gives_each_containers_number_start_and_probes() {
        let times = parse_inspect(&testdata("timeline-inspect.txt")).unwrap();
        assert_eq!(times.len(), 4);
        assert_eq!(
            times.iter().map(|c| c.number).collect::<BTreeSet<_>>(),
            BTreeSet::from([1, 2, 3, 4])
        );
        for c in &times {
            assert!(c.started_at.is_some(), "{c:?}");
            assert!(
                !c.probes.is_empty() && c.probes.len() <= HEALTH_LOG_KEPT,
                "{c:?}"
            );
            assert!(first_healthy(&c.probes).is_some(), "{c:?}");
        }
    }

    #[test]
    fn a_container_without_healthcheck_or_start_has_no_times() {
        let line = r#"{"number":"2","started_at":"0001-01-01T00:00:00Z","health":null}"#;
        let times = parse_inspect(line).unwrap();
        assert_eq!(
            times,
            vec![ContainerTimes {
                number: 2,
                started_at: None,
                probes: vec![]
            }]
        );
        assert!(parse_inspect(r#"{"number":"","started_at":"","health":null}"#).is_err());
    }

    #[test]
    fn healthy_is_the_end_of_the_first_passing_probe_and_exact_only_if_docker_still_has_it() {
        let fail = |s: &str, e: &str| probe(s, e, 1);
        let pass = |s: &str, e: &str| probe(s, e, 0);
        let after_a_failure = [
            fail("2026-01-01T00:00:01Z", "2026-01-01T00:00:01.1Z"),
            pass("2026-01-01T00:00:02.1Z", "2026-01-01T00:00:02.2Z"),
        ];
        assert_eq!(
            first_healthy(&after_a_failure),
            Some((t("2026-01-01T00:00:02.2Z"), true))
        );
        // The very first probe passed and the log is not full: nothing was dropped.
        assert_eq!(
            first_healthy(&after_a_failure[1..]),
            Some((t("2026-01-01T00:00:02.2Z"), true))
        );
        // A full log of successes: the one that turned it healthy may be gone.
        let full: Vec<Probe> = (0..5)
            .map(|i| {
                pass(
                    &format!("2026-01-01T00:00:0{i}Z"),
                    &format!("2026-01-01T00:00:0{i}.5Z"),
                )
            })
            .collect();
        assert_eq!(
            first_healthy(&full),
            Some((t("2026-01-01T00:00:00.5Z"), false))
        );
        assert_eq!(
            first_healthy(&[fail("2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z")]),
            None
        );
    }

    fn fresh_timeline() -> Timeline {
        let startups = parse::startups(&parse::logs(&testdata("logs-fresh-database.txt")));
        let origin = startups
            .values()
            .flat_map(|s| s.pool_created.iter().copied())
            .min()
            .unwrap()
            - chrono::TimeDelta::seconds(1);
        let containers: Vec<ContainerTimes> = startups
            .iter()
            .map(|(n, s)| {
                let ready = s.listening[0];
                ContainerTimes {
                    number: *n,
                    started_at: Some(origin + chrono::TimeDelta::milliseconds(300)),
                    probes: vec![Probe {
                        start: ready,
                        end: ready + chrono::TimeDelta::milliseconds(500),
                        exit_code: 0,
                        output: String::new(),
                    }],
                }
            })
            .collect();
        shape("fresh database, 4 replicas", origin, &containers, &startups)
    }

    #[test]
    fn a_fresh_database_gives_one_leader_and_rows_with_every_event_in_order() {
        let timeline = fresh_timeline();
        assert_eq!(timeline.rows.len(), 4);
        let leaders: Vec<&Row> = timeline
            .rows
            .iter()
            .filter(|r| r.at(Mark::LockAcquired).is_some())
            .collect();
        assert_eq!(leaders.len(), 1);
        assert!(leaders[0].applied > 0 && leaders[0].at(Mark::MigrationsApplied).is_some());
        for row in &timeline.rows {
            let started = row.at(Mark::ContainerStarted).unwrap();
            let pool = row.at(Mark::PoolCreated).unwrap();
            let ready = row.at(Mark::Ready).unwrap();
            let healthy = row.at(Mark::Healthy).unwrap();
            assert!((started - 0.3).abs() < 1e-9, "{row:?}");
            assert!(
                started <= pool && pool <= ready && ready < healthy,
                "{row:?}"
            );
            let kinds: Vec<Phase> = phases(row).iter().map(|p| p.0).collect();
            assert_eq!(kinds.first(), Some(&Phase::Launch));
            assert_eq!(kinds.last(), Some(&Phase::HealthCheck));
            assert!(kinds.contains(&Phase::Prepare), "{row:?}: {kinds:?}");
            let expected_schema = if row.at(Mark::LockAcquired).is_some() {
                Phase::Migrate
            } else if row.at(Mark::Waiting).is_some() {
                Phase::Wait
            } else {
                Phase::Prepare
            };
            assert!(kinds.contains(&expected_schema), "{row:?}");
            for (_, from, to) in phases(row) {
                assert!(from <= to);
            }
        }
        assert!((timeline.slowest(Mark::Healthy).unwrap() - timeline.end()).abs() < 1e-9);
        assert!(timeline.spread(Mark::PoolCreated).unwrap() >= 0.0);
    }

    #[test]
    fn the_upgrade_timeline_tells_old_and_new_replicas_apart_and_marks_the_old_ones_exit() {
        let mut timeline = fresh_timeline();
        let stopped = timeline.origin + chrono::TimeDelta::seconds(30);
        let versions = BTreeMap::from([
            (1, ("old".to_string(), Some(stopped))),
            (2, ("old".to_string(), None)),
            (3, ("new".to_string(), None)),
        ]);
        label_versions(&mut timeline, &versions);
        let row = |n: u32| timeline.rows.iter().find(|r| r.number == n).unwrap();
        assert_eq!(row(1).label(), "api-1 old");
        assert_eq!(row(3).label(), "api-3 new");
        assert_eq!(row(4).label(), "api-4", "no version known: the plain name");
        assert!((row(1).stopped.unwrap() - 30.0).abs() < 1e-9);
        assert!(timeline.end() >= 30.0, "the exit is on the axis");
        let texts = svg_texts(&svg(&timeline).unwrap());
        assert!(texts.iter().any(|t| t == "api-1 old"), "{texts:?}");
        assert!(texts.iter().any(|t| t == "api-3 new"), "{texts:?}");
        let html = page("t", "i", std::slice::from_ref(&timeline)).unwrap();
        assert!(html.contains("<th>version</th>") && html.contains("<th>exited</th>"));
        assert!(html.contains("<td>30.000</td>"), "{html}");
        // Timelines of the other scenarios have no version column.
        let plain = page("t", "i", &[fresh_timeline()]).unwrap();
        assert!(!plain.contains("<th>version</th>"));
    }

    #[test]
    fn an_existing_database_gives_fast_paths_and_a_replica_without_lines_keeps_its_row() {
        let mut startups = parse::startups(&parse::logs(&testdata("logs-existing-database.txt")));
        let origin = startups
            .values()
            .flat_map(|s| s.pool_created.iter().copied())
            .min()
            .unwrap();
        startups.remove(&2);
        let containers = vec![ContainerTimes {
            number: 2,
            started_at: Some(origin),
            probes: vec![],
        }];
        let timeline = shape("existing", origin, &containers, &startups);
        let two = timeline.rows.iter().find(|r| r.number == 2).unwrap();
        assert_eq!(two.role(), "no schema line");
        assert_eq!(
            phases(two).iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![Phase::Launch]
        );
        assert_eq!(
            timeline.slowest(Mark::Ready),
            None,
            "one replica never listened"
        );
        for row in timeline.rows.iter().filter(|r| r.number != 2) {
            assert_eq!(row.role(), "fast path");
            assert!(!phases(row)
                .iter()
                .any(|p| matches!(p.0, Phase::Migrate | Phase::Wait)));
        }
    }

    #[test]
    fn the_page_has_a_row_for_every_replica_and_needs_no_network() {
        let timeline = fresh_timeline();
        let html = page(
            "Start-up timeline",
            "intro <with> markup",
            &[timeline.clone(), timeline.clone()],
        )
        .unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 2);
        let labels = svg_texts(&svg(&timeline).unwrap());
        for n in 1..=4 {
            assert_eq!(
                html.matches(&format!("<tr><th>api-{n}</th>")).count(),
                2,
                "api-{n}"
            );
            assert!(
                labels.contains(&format!("api-{n}")),
                "the chart labels api-{n}: {labels:?}"
            );
        }
        assert!(
            labels.iter().any(|l| l.starts_with("all healthy")),
            "{labels:?}"
        );
        assert!(html.contains("intro &lt;with&gt; markup"));
        for fetch in ["<script", "<link", "src=", "@import", "url("] {
            assert!(
                !html.contains(fetch),
                "the page must load nothing: found {fetch}"
            );
        }
    }

    #[test]
    fn a_timeline_survives_its_json_file() {
        let timeline = fresh_timeline();
        let json = serde_json::to_string(&timeline).unwrap();
        assert_eq!(serde_json::from_str::<Timeline>(&json).unwrap(), timeline);
    }
}
