//! The timeline's model: Docker's health probes and start times, the marks and phases of each
//! replica's start-up, and `shape`, which puts them on one time axis. Pure functions.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use plotters::style::RGBColor;
use serde::{Deserialize, Serialize};

use crate::stack::parse::Startup;

// Docker's start times and health log are parsed in `stack::parse` (the stack's waits read
// them too); the timeline uses the same parser.
pub use crate::stack::parse::{
    parse_health_log, parse_inspect, ContainerTimes, Probe, HEALTH_LOG_KEPT,
};

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
    /// Which version it runs, in the upgrade scenario (`old`, `new`).
    #[serde(default)]
    pub version: Option<String>,
    /// When it exited (seconds on the axis), in the upgrade scenario.
    #[serde(default)]
    pub stopped: Option<f64>,
}

impl Row {
    /// How the chart and the table name it: `api-3`, or `api-3 new` when versions differ.
    pub fn label(&self) -> String {
        match &self.version {
            Some(v) => format!("{} {v}", self.replica),
            None => self.replica.clone(),
        }
    }

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

    pub(super) fn color(self) -> RGBColor {
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

    pub(super) fn css(self) -> String {
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
            .flat_map(|r| r.marks.values().copied().chain(r.stopped))
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
                version: None,
                stopped: None,
            }
        })
        .collect();
    Timeline {
        title: title.to_string(),
        origin,
        rows,
    }
}
