//! The start-up timeline: for each replica, when its container started, created its pool, took
//! the fast path, the lock or waited, applied migrations, listened and turned healthy, on one
//! time axis that starts at `docker compose up`. Written as an HTML page with an inline SVG
//! (drawn with plotters; no script, no network) into every `test-scaling` report directory
//! and, per replica count, by `cargo xtask bench`.
//!
//! The times come from the log-line contract (`stack::parse::startups`) and from Docker
//! (`.State.StartedAt` and the health log). Parsing and shaping are pure functions tested on
//! recorded output; only `capture` asks Docker.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};
use serde::{Deserialize, Serialize};
use xshell::Shell;

use crate::{
    docker::Docker,
    stack::{
        parse::{Container, Startup},
        DbState,
    },
    ui,
};

/// Docker keeps the results of this many health probes per container (moby's
/// `maxLogEntries`): older ones, possibly the one that turned the container healthy, are gone.
const HEALTH_LOG_KEPT: usize = 5;

/// One health probe, as `.State.Health.Log` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub exit_code: i64,
}

/// What Docker knows about one container's start.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerTimes {
    pub number: u32,
    pub started_at: Option<DateTime<Utc>>,
    /// Oldest first, at most the last five.
    pub probes: Vec<Probe>,
}

#[derive(Deserialize)]
struct InspectLine {
    number: String,
    started_at: String,
    health: Option<InspectHealth>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectHealth {
    #[serde(default)]
    log: Option<Vec<InspectProbe>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectProbe {
    start: String,
    end: String,
    exit_code: i64,
}

/// Parses `Docker::start_and_health`: one JSON object per line.
pub fn parse_inspect(text: &str) -> Result<Vec<ContainerTimes>> {
    let time = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let entry: InspectLine = serde_json::from_str(line)
                .with_context(|| format!("parsing a `docker inspect` line: {line}"))?;
            let number = entry
                .number
                .parse()
                .with_context(|| format!("container number {:?} in {line}", entry.number))?;
            // A container that never started reports year 1.
            let started_at = time(&entry.started_at).filter(|t| t.timestamp() > 0);
            let probes = entry
                .health
                .and_then(|h| h.log)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| {
                    Some(Probe {
                        start: time(&p.start)?,
                        end: time(&p.end)?,
                        exit_code: p.exit_code,
                    })
                })
                .collect();
            Ok(ContainerTimes {
                number,
                started_at,
                probes,
            })
        })
        .collect()
}

/// When the container turned healthy: the end of its first successful probe. `exact` is false
/// when Docker's log is full and starts with a success, so an earlier, dropped probe may have
/// been the one: then the time is an upper bound.
pub fn first_healthy(probes: &[Probe]) -> Option<(DateTime<Utc>, bool)> {
    let first = probes.iter().position(|p| p.exit_code == 0)?;
    Some((
        probes[first].end,
        first > 0 || probes.len() < HEALTH_LOG_KEPT,
    ))
}

/// An event on a replica's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mark {
    ContainerStarted,
    PoolCreated,
    FastPath,
    Waiting,
    LockAcquired,
    MigrationsApplied,
    SchemaUpToDate,
    Ready,
    Healthy,
}

impl Mark {
    pub const ALL: [Mark; 9] = [
        Mark::ContainerStarted,
        Mark::PoolCreated,
        Mark::FastPath,
        Mark::Waiting,
        Mark::LockAcquired,
        Mark::MigrationsApplied,
        Mark::SchemaUpToDate,
        Mark::Ready,
        Mark::Healthy,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Mark::ContainerStarted => "container started",
            Mark::PoolCreated => "pool created",
            Mark::FastPath => "fast path",
            Mark::Waiting => "waiting",
            Mark::LockAcquired => "lock acquired",
            Mark::MigrationsApplied => "migrations applied",
            Mark::SchemaUpToDate => "up to date after waiting",
            Mark::Ready => "ready (listening)",
            Mark::Healthy => "healthy",
        }
    }
}

/// One replica's row: seconds from `up` to each event it went through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub replica: String,
    pub number: u32,
    pub marks: BTreeMap<Mark, f64>,
    /// Migrations this replica applied (0 unless it led).
    pub applied: u32,
    /// See `first_healthy`: false when the healthy mark is an upper bound.
    pub healthy_exact: bool,
}

impl Row {
    pub fn at(&self, mark: Mark) -> Option<f64> {
        self.marks.get(&mark).copied()
    }

    /// How the schema step went, in a few words.
    pub fn role(&self) -> String {
        if self.at(Mark::LockAcquired).is_some() {
            format!("led: applied {}", self.applied)
        } else if let (Some(from), Some(to)) =
            (self.at(Mark::Waiting), self.at(Mark::SchemaUpToDate))
        {
            format!("waited {:.2} s", to - from)
        } else if self.at(Mark::Waiting).is_some() {
            "waiting".into()
        } else if self.at(Mark::FastPath).is_some() {
            "fast path".into()
        } else {
            "no schema line".into()
        }
    }
}

/// A stretch of a row between two events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `up` until the container's process starts.
    Launch,
    /// Process start until the pool exists.
    Connect,
    /// Reading the schema state: until fast path, lock or wait.
    SchemaCheck,
    /// Holding the lock while applying migrations.
    Migrate,
    /// Waiting for another replica's migrations.
    Wait,
    /// Schema current until listening (data directory probe, bind).
    Prepare,
    /// Listening until Docker's health probe passes.
    HealthCheck,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Launch,
        Phase::Connect,
        Phase::SchemaCheck,
        Phase::Migrate,
        Phase::Wait,
        Phase::Prepare,
        Phase::HealthCheck,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Phase::Launch => "up → container started",
            Phase::Connect => "started → pool created",
            Phase::SchemaCheck => "pool → fast path / lock / wait",
            Phase::Migrate => "lock acquired → migrations applied",
            Phase::Wait => "waiting → schema up to date",
            Phase::Prepare => "schema current → listening",
            Phase::HealthCheck => "listening → healthy",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Phase::Launch => RGBColor(0xba, 0xb0, 0xac),
            Phase::Connect => RGBColor(0x4e, 0x79, 0xa7),
            Phase::SchemaCheck => RGBColor(0x76, 0xb7, 0xb2),
            Phase::Migrate => RGBColor(0xb0, 0x7a, 0xa1),
            Phase::Wait => RGBColor(0xe1, 0x57, 0x59),
            Phase::Prepare => RGBColor(0x59, 0xa1, 0x4f),
            Phase::HealthCheck => RGBColor(0xed, 0xc9, 0x48),
        }
    }

    fn css(self) -> String {
        let RGBColor(r, g, b) = self.color();
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}

/// The stretches of a row, from the events it has (a missing event drops what it bounds).
pub fn phases(row: &Row) -> Vec<(Phase, f64, f64)> {
    let at = |m| row.at(m);
    let earliest = |ms: &[Mark]| ms.iter().filter_map(|m| at(*m)).reduce(f64::min);
    let latest = |ms: &[Mark]| ms.iter().filter_map(|m| at(*m)).reduce(f64::max);
    let schema_decided = earliest(&[Mark::FastPath, Mark::LockAcquired, Mark::Waiting]);
    let schema_current = latest(&[
        Mark::FastPath,
        Mark::MigrationsApplied,
        Mark::SchemaUpToDate,
    ]);
    let candidates = [
        (Phase::Launch, Some(0.0), at(Mark::ContainerStarted)),
        (
            Phase::Connect,
            at(Mark::ContainerStarted),
            at(Mark::PoolCreated),
        ),
        (Phase::SchemaCheck, at(Mark::PoolCreated), schema_decided),
        // A waiter that took over after a leader died has both: it waited, then led.
        (
            Phase::Wait,
            at(Mark::Waiting),
            earliest(&[Mark::SchemaUpToDate, Mark::LockAcquired]),
        ),
        (
            Phase::Migrate,
            at(Mark::LockAcquired),
            at(Mark::MigrationsApplied),
        ),
        (Phase::Prepare, schema_current, at(Mark::Ready)),
        (Phase::HealthCheck, at(Mark::Ready), at(Mark::Healthy)),
    ];
    candidates
        .into_iter()
        .filter_map(|(phase, from, to)| Some((phase, from?, to?)))
        .filter(|(_, from, to)| to >= from)
        .collect()
}

/// One scenario's rows on one axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub title: String,
    /// When `docker compose up` was run: second 0.
    pub origin: DateTime<Utc>,
    pub rows: Vec<Row>,
}

impl Timeline {
    /// The last time on the axis.
    pub fn end(&self) -> f64 {
        self.rows
            .iter()
            .flat_map(|r| r.marks.values().copied())
            .fold(0.0, f64::max)
    }

    /// Spread (last minus first) of one event across the replicas that have it.
    pub fn spread(&self, mark: Mark) -> Option<f64> {
        let times: Vec<f64> = self.rows.iter().filter_map(|r| r.at(mark)).collect();
        let (min, max) = (
            times.iter().copied().reduce(f64::min)?,
            times.iter().copied().reduce(f64::max)?,
        );
        Some(max - min)
    }

    /// The latest time of an event, if every replica has it.
    pub fn slowest(&self, mark: Mark) -> Option<f64> {
        let times: Option<Vec<f64>> = self.rows.iter().map(|r| r.at(mark)).collect();
        times?.into_iter().reduce(f64::max)
    }
}

/// Puts Docker's times and the log's events of each replica on one axis from `origin`.
pub fn shape(
    title: &str,
    origin: DateTime<Utc>,
    containers: &[ContainerTimes],
    startups: &BTreeMap<u32, Startup>,
) -> Timeline {
    let since = |t: DateTime<Utc>| (t - origin).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
    let numbers: BTreeSet<u32> = containers
        .iter()
        .map(|c| c.number)
        .chain(startups.keys().copied())
        .collect();
    let rows = numbers
        .into_iter()
        .map(|number| {
            let mut marks = BTreeMap::new();
            let mut healthy_exact = true;
            let container = containers.iter().find(|c| c.number == number);
            if let Some(t) = container.and_then(|c| c.started_at) {
                marks.insert(Mark::ContainerStarted, since(t));
            }
            if let Some((t, exact)) = container.and_then(|c| first_healthy(&c.probes)) {
                marks.insert(Mark::Healthy, since(t));
                healthy_exact = exact;
            }
            let mut applied = 0;
            if let Some(s) = startups.get(&number) {
                for (mark, times) in [
                    (Mark::PoolCreated, &s.pool_created),
                    (Mark::FastPath, &s.fast_path),
                    (Mark::Waiting, &s.waiting),
                    (Mark::LockAcquired, &s.lock_acquired),
                    (Mark::SchemaUpToDate, &s.up_to_date_after_wait),
                    (Mark::Ready, &s.listening),
                ] {
                    if let Some(t) = times.first() {
                        marks.insert(mark, since(*t));
                    }
                }
                if let Some((t, n)) = s.applied.first() {
                    marks.insert(Mark::MigrationsApplied, since(*t));
                    applied = *n;
                }
            }
            Row {
                replica: format!("api-{number}"),
                number,
                marks,
                applied,
                healthy_exact,
            }
        })
        .collect();
    Timeline {
        title: title.to_string(),
        origin,
        rows,
    }
}

/// The chart: one row per replica, coloured stretches, a dot where it turned healthy (hollow
/// when that time is an upper bound), its role in words, and a dashed line at "all healthy".
pub fn svg(timeline: &Timeline) -> Result<String> {
    let rows = timeline.rows.len().max(1);
    let end = timeline.end().max(0.5);
    // Room on the right for each row's role.
    let x_max = end * 1.28;
    let height = 90 + 30 * rows as u32;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, -0.5f64..(rows as f64 - 0.5))
            .map_err(chart_error)?;
        let names: Vec<String> = timeline.rows.iter().map(|r| r.replica.clone()).collect();
        // Row 0 at the top.
        let y_of = move |i: usize| (rows - 1 - i) as f64;
        let label_of = move |y: &f64| {
            let i = rows as f64 - 1.0 - y.round();
            if (y - y.round()).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows * 2 + 1)
            .y_label_formatter(&label_of)
            .x_desc("seconds since `docker compose up`")
            .x_label_formatter(&|x| format!("{x:.1}"))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(chart_error)?;

        let bars = timeline.rows.iter().enumerate().flat_map(|(i, row)| {
            let y = y_of(i);
            phases(row).into_iter().map(move |(phase, from, to)| {
                Rectangle::new([(from, y - 0.3), (to, y + 0.3)], phase.color().filled())
            })
        });
        chart.draw_series(bars).map_err(chart_error)?;

        // A tick where the replica started listening: the api's own start-up is often a few
        // milliseconds, too short to see as a stretch.
        let ticks = timeline.rows.iter().enumerate().filter_map(|(i, row)| {
            let x = row.at(Mark::Ready)?;
            Some(PathElement::new(
                [(x, y_of(i) - 0.38), (x, y_of(i) + 0.38)],
                BLACK.stroke_width(2),
            ))
        });
        chart.draw_series(ticks).map_err(chart_error)?;

        let dots = timeline.rows.iter().enumerate().filter_map(|(i, row)| {
            let style = if row.healthy_exact {
                BLACK.filled()
            } else {
                BLACK.stroke_width(2)
            };
            Some(Circle::new((row.at(Mark::Healthy)?, y_of(i)), 4, style))
        });
        chart.draw_series(dots).map_err(chart_error)?;

        let roles = timeline.rows.iter().enumerate().map(|(i, row)| {
            let x = row.marks.values().copied().fold(0.0, f64::max) + end * 0.02;
            Text::new(
                row.role(),
                (x, y_of(i)),
                TextStyle::from(("sans-serif", 12).into_font())
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )
        });
        chart.draw_series(roles).map_err(chart_error)?;

        if let Some(all) = timeline.slowest(Mark::Healthy) {
            let top = rows as f64 - 0.5;
            chart
                .draw_series(DashedLineSeries::new(
                    [(all, -0.5), (all, top)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(chart_error)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("all healthy {all:.2} s"),
                    (all + end * 0.01, top - 0.05),
                    ("sans-serif", 12),
                )))
                .map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(out)
}

fn chart_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e:?}")
}

/// A self-contained page (inline SVG and CSS, nothing fetched) with every timeline.
pub fn page(title: &str, intro: &str, timelines: &[Timeline]) -> Result<String> {
    let mut html = String::new();
    html.push_str(&page_head(title));
    writeln!(html, "<h1>{}</h1>\n<p>{}</p>", escape(title), escape(intro))?;
    html.push_str("<p class=\"legend\">");
    for phase in Phase::ALL {
        write!(
            html,
            "<span class=\"swatch\" style=\"background:{}\"></span>{} ",
            phase.css(),
            escape(phase.label())
        )?;
    }
    html.push_str("<span class=\"tick\"></span>listening <span class=\"dot\"></span>healthy (hollow: at or before)</p>\n");
    for timeline in timelines {
        writeln!(html, "<section>\n<h2>{}</h2>", escape(&timeline.title))?;
        writeln!(
            html,
            "<p class=\"note\">second 0 is {} (UTC)</p>",
            timeline.origin.format("%Y-%m-%d %H:%M:%S%.3f")
        )?;
        html.push_str(&svg(timeline)?);
        html.push_str("\n<table>\n<tr><th>replica</th>");
        for mark in Mark::ALL {
            write!(html, "<th>{}</th>", escape(mark.label()))?;
        }
        html.push_str("<th>schema</th></tr>\n");
        for row in &timeline.rows {
            write!(html, "<tr><th>{}</th>", escape(&row.replica))?;
            for mark in Mark::ALL {
                match row.at(mark) {
                    Some(t) if mark == Mark::Healthy && !row.healthy_exact => {
                        write!(html, "<td>≤ {t:.3}</td>")?
                    }
                    Some(t) => write!(html, "<td>{t:.3}</td>")?,
                    None => html.push_str("<td>–</td>"),
                }
            }
            writeln!(html, "<td class=\"role\">{}</td></tr>", escape(&row.role()))?;
        }
        html.push_str("</table>\n</section>\n");
    }
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

/// The head of every page this module and `bench` write: inline CSS only.
pub fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{}\n</style>\n</head>\n<body>\n",
        escape(title),
        "body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1000px; }\n\
         h2 { margin-top: 32px; font-size: 18px; }\n\
         table { border-collapse: collapse; font-size: 13px; margin-top: 8px; }\n\
         th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }\n\
         td.role { text-align: left; white-space: nowrap; }\n\
         .legend { font-size: 13px; line-height: 22px; }\n\
         .swatch { display: inline-block; width: 14px; height: 12px; margin: 0 4px 0 10px; vertical-align: middle; }\n\
         .tick { display: inline-block; width: 2px; height: 14px; background: #000; margin: 0 4px 0 10px; vertical-align: middle; }\n\
         .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; background: #000; margin: 0 4px 0 10px; }\n\
         .note { color: #666; font-size: 13px; }"
    )
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Asks Docker for the start and health times of these containers.
pub fn capture(
    sh: &Shell,
    docker: &Docker,
    containers: &[Container],
) -> Result<Vec<ContainerTimes>> {
    let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
    parse_inspect(&docker.start_and_health(sh, &ids)?)
}

/// `test-scaling`'s hook, called as soon as the replicas are healthy (Docker keeps only the
/// last five probe results): records this scenario's timeline as `timeline-SLUG.json` and
/// rewrites `timeline.html` with every scenario recorded in `report_dir`. A timeline is not a
/// check: any problem is a warning.
pub fn add_to_report(
    sh: &Shell,
    docker: &Docker,
    scenario: DbState,
    containers: &[Container],
    startups: &BTreeMap<u32, Startup>,
    up: Instant,
    report_dir: &Path,
) {
    let written = (|| -> Result<PathBuf> {
        let origin = Utc::now() - chrono::TimeDelta::from_std(up.elapsed())?;
        let times = capture(sh, docker, containers)?;
        let title = format!("{}, {} replicas", scenario.name(), containers.len());
        let timeline = shape(&title, origin, &times, startups);
        let json = report_dir.join(format!("timeline-{}.json", scenario.slug()));
        std::fs::write(&json, serde_json::to_string_pretty(&timeline)?)
            .with_context(|| format!("writing {}", json.display()))?;
        let timelines = read_all(report_dir)?;
        let path = report_dir.join("timeline.html");
        let intro = "Where each replica's start-up time goes, scenario by scenario, from `docker compose up`.";
        std::fs::write(&path, page("Start-up timeline", intro, &timelines)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    })();
    match written {
        Ok(path) => ui::note(&format!("start-up timeline: {}", path.display())),
        Err(e) => ui::warn(&format!("the start-up timeline was not written: {e:#}")),
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

/// The text of every `<text>` element of an SVG, for tests of what a chart says.
#[cfg(test)]
pub fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            Some(
                t.split_once('>')?
                    .1
                    .split_once("</text>")?
                    .0
                    .trim()
                    .to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::parse;

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
