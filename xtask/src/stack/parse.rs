//! Pure parsers over what the tools printed: `docker compose ps --format json`,
//! `docker compose logs --timestamps`, and the scripts run with `exec`.
//! Tested on outputs recorded from the real tools in `xtask/testdata/`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use regex::Regex;
use serde::Deserialize;

use crate::log_contract as contract;

/// One container as `docker compose ps --format json` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub service: String,
    /// The compose container number (`com.docker.compose.container-number`).
    pub number: u32,
    /// running, exited, restarting, created, dead, paused.
    pub state: String,
    /// starting, healthy, unhealthy, or empty (no healthcheck / not running).
    pub health: String,
    pub exit_code: i64,
    pub status: String,
}

impl Container {
    /// "api-3": how compose names it in logs and how the report names it.
    pub fn label(&self) -> String {
        format!("{}-{}", self.service, self.number)
    }

    pub fn is_healthy(&self) -> bool {
        self.state == "running" && self.health == "healthy"
    }

    /// Dead for our purposes: it will not become healthy without someone's help.
    pub fn is_down(&self) -> bool {
        matches!(
            self.state.as_str(),
            "exited" | "dead" | "restarting" | "removing"
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PsEntry {
    #[serde(default, rename = "ID")]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    health: String,
    #[serde(default)]
    exit_code: i64,
    #[serde(default)]
    status: String,
    #[serde(default)]
    labels: String,
}

/// Parses `ps --format json`: JSON Lines (Compose ≥ 2.21) or one JSON array (before).
pub fn ps(text: &str) -> Result<Vec<Container>> {
    let trimmed = text.trim();
    let entries: Vec<PsEntry> = if trimmed.is_empty() {
        Vec::new()
    } else if trimmed.starts_with('[') {
        serde_json::from_str(trimmed)
            .context("parsing `docker compose ps --format json` (array)")?
    } else {
        trimmed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .with_context(|| format!("parsing a `ps --format json` line: {l}"))
            })
            .collect::<Result<_>>()?
    };
    let mut containers: Vec<Container> = entries
        .into_iter()
        .map(|e| {
            let number = label_value(&e.labels, "com.docker.compose.container-number")
                .and_then(|n| n.parse().ok())
                .or_else(|| trailing_number(&e.name))
                .with_context(|| format!("no container number for {}", e.name))?;
            Ok(Container {
                id: e.id,
                name: e.name,
                service: e.service,
                number,
                state: e.state,
                health: e.health,
                exit_code: e.exit_code,
                status: e.status,
            })
        })
        .collect::<Result<_>>()?;
    containers.sort_by_key(|c| (c.service.clone(), c.number));
    Ok(containers)
}

fn label_value<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels
        .split(',')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// "scaling-check-api-3", "api-3", "project_api_3", and a Swarm task's "api.3" → 3.
pub fn trailing_number(name: &str) -> Option<u32> {
    let digits: String = name
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let sep = name.chars().rev().nth(digits.len());
    if digits.is_empty() || !matches!(sep, Some('-' | '_' | '.')) {
        return None;
    }
    digits.chars().rev().collect::<String>().parse().ok()
}

/// One line of `docker compose logs --timestamps`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// The prefix compose prints, e.g. "api-1".
    pub container: String,
    pub number: Option<u32>,
    /// Docker's own timestamp of the line (when the container wrote it).
    pub time: DateTime<Utc>,
    pub message: String,
}

/// Parses `logs --timestamps` output: `api-1  | 2026-11-28T16:05:07.608039868Z msg`.
/// Lines that are not container output (compose's own notices) are skipped.
pub fn logs(text: &str) -> Vec<LogLine> {
    text.lines()
        .filter_map(|line| {
            let (prefix, rest) = line.split_once(" | ").or_else(|| line.split_once(" |"))?;
            let container = prefix.trim().to_string();
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            let (stamp, message) = rest.split_once(' ').unwrap_or((rest, ""));
            let time = DateTime::parse_from_rfc3339(stamp)
                .ok()?
                .with_timezone(&Utc);
            Some(LogLine {
                number: trailing_number(&container),
                container,
                time,
                message: message.to_string(),
            })
        })
        .collect()
}

/// What one replica's log says about its start-up, from the log-line contract.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Startup {
    pub pool_created: Vec<DateTime<Utc>>,
    pub fast_path: Vec<DateTime<Utc>>,
    pub lock_acquired: Vec<DateTime<Utc>>,
    /// (when, how many migrations)
    pub applied: Vec<(DateTime<Utc>, u32)>,
    pub waiting: Vec<DateTime<Utc>>,
    pub up_to_date_after_wait: Vec<DateTime<Utc>>,
    pub lock_released: Vec<DateTime<Utc>>,
    /// (when, the whole message)
    pub timed_out: Vec<(DateTime<Utc>, String)>,
    pub listening: Vec<DateTime<Utc>>,
    /// (when, the whole message) of every ERROR line.
    pub errors: Vec<(DateTime<Utc>, String)>,
    /// Every message of this container, in order, for evidence.
    pub lines: Vec<String>,
}

fn applied_pattern() -> Regex {
    Regex::new(&format!(
        "{}(\\d+){}",
        regex::escape(contract::APPLIED_PREFIX),
        regex::escape(contract::APPLIED_SUFFIX)
    ))
    .expect("valid regex")
}

/// Groups the contract lines of each container, keyed by container number.
pub fn startups(lines: &[LogLine]) -> BTreeMap<u32, Startup> {
    let applied = applied_pattern();
    let mut by_replica: BTreeMap<u32, Startup> = BTreeMap::new();
    for line in lines {
        let Some(number) = line.number else { continue };
        let s = by_replica.entry(number).or_default();
        let (t, m) = (line.time, line.message.as_str());
        s.lines.push(format!("{} {}", t.format("%H:%M:%S%.3f"), m));
        if m.contains(contract::POOL_CREATED) {
            s.pool_created.push(t);
        }
        if m.contains(contract::FAST_PATH) {
            s.fast_path.push(t);
        }
        if m.contains(contract::LOCK_ACQUIRED) {
            s.lock_acquired.push(t);
        }
        if let Some(c) = applied.captures(m) {
            s.applied.push((t, c[1].parse().unwrap_or(0)));
        }
        if m.contains(contract::WAITING) {
            s.waiting.push(t);
        }
        if m.contains(contract::UP_TO_DATE_AFTER_WAIT) {
            s.up_to_date_after_wait.push(t);
        }
        if m.contains(contract::LOCK_RELEASED) {
            s.lock_released.push(t);
        }
        if m.contains(contract::TIMED_OUT) {
            s.timed_out.push((t, m.to_string()));
        }
        if m.contains(contract::LISTENING) {
            s.listening.push(t);
        }
        if m.contains(" ERROR ") {
            s.errors.push((t, m.trim().to_string()));
        }
    }
    by_replica
}

/// The probe a replica runs in the shared directory (see `scaling::shared_data_script`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteProbe {
    pub uid: String,
    pub gid: String,
    pub dir_owner: String,
    pub dir_mode: String,
    pub written: bool,
    pub error: String,
}

/// Parses `uid=10001 gid=10001 owner=10001:10001 mode=755` then `write=ok` or
/// `write=failed <error>`.
pub fn write_probe(stdout: &str) -> Result<WriteProbe> {
    let mut probe = WriteProbe::default();
    let mut saw_write = false;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("write=") {
            saw_write = true;
            probe.written = rest.trim() == "ok";
            if let Some(err) = rest.strip_prefix("failed") {
                probe.error = err.trim().to_string();
            }
        } else if line.starts_with("uid=") {
            for kv in line.split_whitespace() {
                match kv.split_once('=') {
                    Some(("uid", v)) => probe.uid = v.into(),
                    Some(("gid", v)) => probe.gid = v.into(),
                    Some(("owner", v)) => probe.dir_owner = v.into(),
                    Some(("mode", v)) => probe.dir_mode = v.into(),
                    _ => {}
                }
            }
        }
    }
    if !saw_write {
        bail!("the write probe printed no result: {stdout:?}");
    }
    Ok(probe)
}

/// Parses the read probe: `seen=3` / `missing=3` lines → (seen, missing) replica numbers.
pub fn read_probe(stdout: &str) -> (Vec<u32>, Vec<u32>) {
    let mut seen = Vec::new();
    let mut missing = Vec::new();
    for line in stdout.lines() {
        if let Some(n) = line
            .strip_prefix("seen=")
            .and_then(|n| n.trim().parse().ok())
        {
            seen.push(n);
        } else if let Some(n) = line
            .strip_prefix("missing=")
            .and_then(|n| n.trim().parse().ok())
        {
            missing.push(n);
        }
    }
    (seen, missing)
}

/// `version<TAB>success` rows of `_sqlx_migrations` from `mariadb -N -B`.
pub fn migration_rows(stdout: &str) -> Result<Vec<(i64, bool)>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            let version = cols
                .next()
                .unwrap_or("")
                .trim()
                .parse()
                .with_context(|| format!("bad migration row {l:?}"))?;
            let success = matches!(cols.next().map(str::trim), Some("1") | Some("true"));
            Ok((version, success))
        })
        .collect()
}

/// Versions of the migration files (`20240101000000_name.sql` → 20240101000000).
pub fn migration_versions<'a>(file_names: impl IntoIterator<Item = &'a str>) -> Vec<i64> {
    let mut versions: Vec<i64> = file_names
        .into_iter()
        .filter(|n| n.ends_with(".sql") && !n.ends_with(".down.sql"))
        .filter_map(|n| n.split('_').next()?.parse().ok())
        .collect();
    versions.sort();
    versions.dedup();
    versions
}

/// `docker inspect` lines `<container id> <host ip>:<host port> ...` (one binding of a
/// container port each): the first binding of each container that parses as an address.
pub fn published_addresses(text: &str) -> BTreeMap<String, std::net::SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let id = words.next()?;
            let addr = words.find_map(|w| w.parse().ok())?;
            Some((id.to_string(), addr))
        })
        .collect()
}

/// `151<TAB>7` (one `-N -B` row of two numbers) → (151, 7).
pub fn two_numbers(stdout: &str) -> Option<(u32, u32)> {
    let mut cols = stdout.split_whitespace();
    let a = cols.next()?.parse().ok()?;
    let b = cols.next()?.parse().ok()?;
    Some((a, b))
}

/// `API_DB_POOL_SIZE` among a container's `.Config.Env` lines (`KEY=value`, one a line).
pub fn pool_size_from_env(env: &str) -> Option<u32> {
    env.lines()
        .find_map(|l| l.trim().strip_prefix("API_DB_POOL_SIZE="))
        .and_then(|v| v.trim().parse().ok())
}

/// Docker keeps the results of this many health probes per container (moby's
/// `maxLogEntries`): older ones, possibly the one that turned the container healthy, are gone.
pub const HEALTH_LOG_KEPT: usize = 5;

/// One health probe, as `.State.Health.Log` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub exit_code: i64,
    /// What the probe printed (Docker keeps the first 4 KiB).
    pub output: String,
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
    /// A Swarm task's container: `<stack>_<service>.<slot>.<task id>`, the slot its number.
    #[serde(default)]
    task: Option<String>,
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
    #[serde(default)]
    output: String,
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The probes whose times parse, in Docker's order (oldest first).
fn probes(log: Vec<InspectProbe>) -> Vec<Probe> {
    log.into_iter()
        .filter_map(|p| {
            Some(Probe {
                start: time(&p.start)?,
                end: time(&p.end)?,
                exit_code: p.exit_code,
                output: p.output,
            })
        })
        .collect()
}

/// Parses a container's `{{json .State.Health.Log}}`: the probes Docker kept, oldest first.
pub fn parse_health_log(json: &str) -> Result<Vec<Probe>> {
    let log: Vec<InspectProbe> =
        serde_json::from_str(json.trim()).context("parsing a container's health log")?;
    Ok(probes(log))
}

/// Parses `Docker::start_and_health`: one JSON object per line.
pub fn parse_inspect(text: &str) -> Result<Vec<ContainerTimes>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let entry: InspectLine = serde_json::from_str(line)
                .with_context(|| format!("parsing a `docker inspect` line: {line}"))?;
            let number = match (entry.number.as_str(), &entry.task) {
                ("", Some(task)) => task.split('.').nth(1).unwrap_or_default(),
                (n, _) => n,
            }
            .parse()
            .with_context(|| format!("container number {:?} in {line}", entry.number))?;
            // A container that never started reports year 1.
            let started_at = time(&entry.started_at).filter(|t| t.timestamp() > 0);
            let probes = probes(entry.health.and_then(|h| h.log).unwrap_or_default());
            Ok(ContainerTimes {
                number,
                started_at,
                probes,
            })
        })
        .collect()
}
