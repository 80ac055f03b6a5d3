//! The upgrade scenario's evidence as plain data, parsed from what the tools printed:
//! `docker inspect` of the api containers, the client's request log, the read sweeps and
//! `_sqlx_migrations`. Pure functions over text, so the judges can be tested on recordings.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// Which version a replica runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The previous version (what runs before the deploy, and the rollback).
    Old,
    /// This tree's version, rolled in.
    New,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Old => "old",
            Side::New => "new",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Old => Side::New,
            Side::New => Side::Old,
        }
    }
}

/// One api container, from `docker inspect`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Replica {
    /// As compose's log prefix names it: `api-<container number>`.
    pub name: String,
    pub number: u32,
    pub id: String,
    /// The image the container was created from (`Config.Image`).
    pub image: String,
    pub side: Side,
    pub started_at: DateTime<Utc>,
    /// `None` while it runs (Docker prints year 1 then).
    pub finished_at: Option<DateTime<Utc>>,
    pub running: bool,
    pub exit_code: i64,
    pub oom_killed: bool,
    /// `healthy`, `unhealthy`, `starting`, or `None` without a healthcheck.
    pub health: Option<String>,
    pub restarts: u32,
}

/// Parses `docker inspect` output (a JSON array); `old_image` tells the sides apart.
pub fn replicas(inspect_json: &str, old_image: &str) -> Result<Vec<Replica>> {
    let containers: Vec<Value> =
        serde_json::from_str(inspect_json).context("docker inspect did not print a JSON array")?;
    let mut replicas = containers
        .iter()
        .map(|c| replica(c, old_image))
        .collect::<Result<Vec<_>>>()?;
    replicas.sort_by_key(|r| (r.started_at, r.number));
    Ok(replicas)
}

fn replica(c: &Value, old_image: &str) -> Result<Replica> {
    let text = |path: &str| {
        c.pointer(path)
            .and_then(Value::as_str)
            .with_context(|| format!("docker inspect: no {path}"))
    };
    let number: u32 = text("/Config/Labels/com.docker.compose.container-number")?
        .parse()
        .context("docker inspect: container number is not a number")?;
    let image = text("/Config/Image")?.to_string();
    let finished = time(text("/State/FinishedAt")?)?;
    Ok(Replica {
        name: format!("api-{number}"),
        number,
        id: text("/Id")?.to_string(),
        side: if image == old_image {
            Side::Old
        } else {
            Side::New
        },
        image,
        started_at: time(text("/State/StartedAt")?)?
            .context("docker inspect: the container never started")?,
        finished_at: finished,
        running: c.pointer("/State/Running").and_then(Value::as_bool) == Some(true),
        exit_code: c
            .pointer("/State/ExitCode")
            .and_then(Value::as_i64)
            .unwrap_or(-1),
        oom_killed: c.pointer("/State/OOMKilled").and_then(Value::as_bool) == Some(true),
        health: c
            .pointer("/State/Health/Status")
            .and_then(Value::as_str)
            .map(str::to_string),
        restarts: c
            .pointer("/RestartCount")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32,
    })
}

/// Docker's time stamps; its zero time (`0001-01-01T00:00:00Z`) means "not yet".
fn time(text: &str) -> Result<Option<DateTime<Utc>>> {
    let t = DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("not an RFC 3339 time: {text:?}"))?
        .with_timezone(&Utc);
    Ok((t.timestamp() > 0).then_some(t))
}

/// One request of the client that runs through the whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    pub time: DateTime<Utc>,
    /// The replica it was sent to (`api-<n>`).
    pub replica: String,
    /// `store`, `read` or `list`.
    pub op: String,
    /// `None`: no HTTP answer (refused, reset, timed out).
    pub status: Option<u16>,
    /// The document id, or the error / error body.
    pub detail: String,
}

impl Request {
    /// The replica never accepted the connection: it had stopped listening. Not a failure of an
    /// accepted request; a client retries it elsewhere.
    pub fn refused(&self) -> bool {
        self.status.is_none() && self.detail.contains("Connection refused")
    }

    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Parses the client's log: `time<TAB>replica<TAB>op<TAB>status or -<TAB>detail` per line.
pub fn requests(text: &str) -> Result<Vec<Request>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.splitn(5, '\t').collect();
            if f.len() < 4 {
                bail!("request log line has {} fields: {line:?}", f.len());
            }
            Ok(Request {
                time: time(f[0])?.context("request without a time")?,
                replica: replica_name(f[1]),
                op: f[2].to_string(),
                status: status(f[3])?,
                detail: f.get(4).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// `api-<n>` as compose's log prefix names a container, from a container name that may carry
/// the project's prefix (`scaling-check-api-3`).
pub fn replica_name(raw: &str) -> String {
    raw.rfind("api-")
        .map_or_else(|| raw.to_string(), |i| raw[i..].to_string())
}

fn status(text: &str) -> Result<Option<u16>> {
    match text {
        "-" => Ok(None),
        s => Ok(Some(
            s.parse().with_context(|| format!("not a status: {s:?}"))?,
        )),
    }
}

/// One read of a sweep: a stored document read back through one replica.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Read {
    /// Which sweep (`overlap`, `after-rollback`).
    pub sweep: String,
    pub document: String,
    pub stored_by: String,
    pub sha256: String,
    pub through: String,
    pub status: Option<u16>,
    /// sha256 of the bytes read, `None` without a 200.
    pub got: Option<String>,
    pub error: String,
}

impl Read {
    pub fn identical(&self) -> bool {
        self.status == Some(200) && self.got.as_deref() == Some(self.sha256.as_str())
    }
}

/// Parses the sweeps: `sweep, id, stored_by, sha256, through, status, got sha256, error`.
pub fn reads(text: &str) -> Result<Vec<Read>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.splitn(8, '\t').collect();
            if f.len() < 7 {
                bail!("read sweep line has {} fields: {line:?}", f.len());
            }
            Ok(Read {
                sweep: f[0].to_string(),
                document: f[1].to_string(),
                stored_by: replica_name(f[2]),
                sha256: f[3].to_string(),
                through: replica_name(f[4]),
                status: status(f[5])?,
                got: (f[6] != "-").then(|| f[6].to_string()),
                error: f.get(7).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// `_sqlx_migrations` as `mariadb -B` prints it (a header, then tab-separated rows):
/// `(version, success)` for each row.
pub fn migration_rows(text: &str) -> Result<Vec<(i64, bool)>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .context("_sqlx_migrations: no output")?
        .split('\t')
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("_sqlx_migrations: no column {name}"))
    };
    let (v, s) = (column("version")?, column("success")?);
    lines
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let version = f
                .get(v)
                .and_then(|x| x.parse().ok())
                .with_context(|| format!("_sqlx_migrations: bad row {line:?}"))?;
            Ok((version, f.get(s) == Some(&"1")))
        })
        .collect()
}

/// `version description` of each of `versions`, from `_sqlx_migrations` as `mariadb -B` prints
/// it, so a verdict names the migration (`20250101000004 rename documents stored by`).
pub fn migration_names(text: &str, versions: &[i64]) -> Result<Vec<String>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .context("_sqlx_migrations: no output")?
        .split('\t')
        .collect();
    let (Some(v), Some(d)) = (
        header.iter().position(|h| *h == "version"),
        header.iter().position(|h| *h == "description"),
    ) else {
        bail!("_sqlx_migrations: no version or description column");
    };
    let names: Vec<(i64, String)> = lines
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Some((f.get(v)?.parse().ok()?, f.get(d)?.to_string()))
        })
        .collect();
    Ok(versions
        .iter()
        .map(|version| match names.iter().find(|(x, _)| x == version) {
            Some((_, description)) => format!("{version} {description}"),
            None => version.to_string(),
        })
        .collect())
}
