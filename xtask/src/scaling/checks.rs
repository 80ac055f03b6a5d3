//! The checks: pure judges over parsed evidence. Each returns PASS or FAIL with the evidence
//! a developer needs to see what broke, and each has tests that make it fail.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{
    log_contract as contract,
    stack::{
        parse::{Container, Startup, WriteProbe},
        DbState, WaitOutcome,
    },
};

/// A gap this long between two replicas' start-ups means they queued behind each other.
pub const SEQUENTIAL_GAP_SECS: f64 = 30.0;

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub name: &'static str,
    pub passed: bool,
    /// One line: the figure or the reason.
    pub summary: String,
    /// The lines that prove it.
    pub evidence: Vec<String>,
    /// Named figures for the JSON report.
    pub figures: BTreeMap<String, f64>,
}

impl Check {
    pub fn new(id: &'static str, name: &'static str) -> Check {
        Check {
            id,
            name,
            passed: true,
            summary: String::new(),
            evidence: Vec::new(),
            figures: BTreeMap::new(),
        }
    }

    /// The first failure is the summary; later ones go on top of the evidence.
    pub fn fail(&mut self, reason: impl Into<String>) {
        if self.passed {
            self.summary = reason.into();
        } else {
            self.evidence.insert(0, reason.into());
        }
        self.passed = false;
    }

    /// The summary, unless a failure already wrote it.
    pub fn pass(&mut self, summary: impl Into<String>) {
        if self.passed {
            self.summary = summary.into();
        }
    }

    pub fn figure(&mut self, name: &str, value: f64) {
        self.figures.insert(name.to_string(), value);
    }
}

/// TEST-01: N containers, all running and healthy, none restarted.
pub fn replicas(
    expected: u32,
    containers: &[Container],
    restarts: &BTreeMap<u32, u32>,
    wait: &WaitOutcome,
    last_lines: &BTreeMap<u32, Vec<String>>,
) -> Check {
    let mut check = Check::new("TEST-01", "replicas healthy");
    let healthy = containers.iter().filter(|c| c.is_healthy()).count();
    check
        .figures
        .insert("replicas_expected".into(), expected as f64);
    check
        .figures
        .insert("replicas_healthy".into(), healthy as f64);
    match wait {
        WaitOutcome::AllHealthy { seconds } => {
            check.figures.insert("time_to_healthy_s".into(), *seconds);
        }
        WaitOutcome::Broken { seconds, reason } => {
            check.fail(format!("stopped waiting after {seconds:.1} s: {reason}"));
        }
        WaitOutcome::TimedOut { seconds } => {
            check.fail(format!(
                "not all replicas were healthy after {seconds:.1} s"
            ));
        }
    }
    if containers.len() as u32 != expected {
        check.fail(format!(
            "{} api containers, expected {expected}",
            containers.len()
        ));
    }
    for c in containers {
        let restarted = restarts.get(&c.number).copied().unwrap_or(0);
        let mut problems = Vec::new();
        if c.state != "running" {
            problems.push(format!("state {} ({})", c.state, c.status));
        } else if c.health != "healthy" {
            problems.push(format!(
                "health {}",
                if c.health.is_empty() {
                    "none"
                } else {
                    &c.health
                }
            ));
        }
        if restarted > 0 {
            problems.push(format!("restarted {restarted} time(s)"));
        }
        if problems.is_empty() {
            check.evidence.push(format!("{}: healthy", c.label()));
            continue;
        }
        check.fail(format!(
            "{} is not healthy: {}",
            c.label(),
            problems.join(", ")
        ));
        check
            .evidence
            .push(format!("{}: {}", c.label(), problems.join(", ")));
        if let Some(lines) = last_lines.get(&c.number) {
            check
                .evidence
                .push(format!("{} last log lines:", c.label()));
            check
                .evidence
                .extend(lines.iter().map(|l| format!("  {l}")));
        }
    }
    if check.passed {
        check.summary = match wait {
            WaitOutcome::AllHealthy { seconds } => {
                format!("{healthy}/{expected} healthy, no restarts, {seconds:.1} s to all healthy")
            }
            _ => format!("{healthy}/{expected} healthy"),
        };
    }
    check
}

/// TEST-02: the app starts fast and the replicas start in parallel. Timed per replica from
/// what Docker and the app say: container started (`State.StartedAt`) → `Database pool
/// created` → `Listening on`. A replica's own start-up is `Listening on` − the later of its
/// container's start and the moment the check let the database answer (`released`): what is
/// left is the app's, not Docker's one-at-a-time container start, which is reported apart
/// (the stagger). FAIL when a replica's own start-up exceeds `max_startup`, or when two
/// replicas' `Database pool created` or `Listening on` lie 30 s or more apart with nothing in
/// between (sequential start, as when replicas queue on a lock). The spreads of the two lines
/// across replicas are kept as figures.
pub fn startup_timing(
    expected: &[u32],
    startups: &BTreeMap<u32, Startup>,
    started_at: &BTreeMap<u32, DateTime<Utc>>,
    released: Option<DateTime<Utc>>,
    max_startup: f64,
) -> Check {
    let mut check = Check::new("TEST-02", "app start-up");
    let mut summaries = Vec::new();
    for (event, key, pick) in [
        (
            contract::POOL_CREATED,
            "pool_created",
            (|s: &Startup| s.pool_created.first().copied())
                as fn(&Startup) -> Option<DateTime<Utc>>,
        ),
        (contract::LISTENING, "ready", |s: &Startup| {
            s.listening.first().copied()
        }),
    ] {
        let mut times: Vec<(DateTime<Utc>, u32)> = Vec::new();
        for n in expected {
            match startups.get(n).and_then(pick) {
                Some(t) => times.push((t, *n)),
                None => check.fail(format!("api-{n} has no '{event}' line")),
            }
        }
        if times.len() < 2 {
            continue;
        }
        times.sort();
        let spread = secs(times[times.len() - 1].0 - times[0].0);
        let (gap, after, before) = times
            .windows(2)
            .map(|w| (secs(w[1].0 - w[0].0), w[0].1, w[1].1))
            .fold((0.0, 0, 0), |best, g| if g.0 > best.0 { g } else { best });
        check.figures.insert(format!("{key}_spread_s"), spread);
        check.figures.insert(format!("{key}_largest_gap_s"), gap);
        let order: Vec<String> = times
            .iter()
            .map(|(t, n)| format!("api-{n} +{:.2}s", secs(*t - times[0].0)))
            .collect();
        check
            .evidence
            .push(format!("'{event}': {}", order.join(", ")));
        summaries.push(format!("{key} spread {spread:.2} s"));
        if gap >= SEQUENTIAL_GAP_SECS {
            check.fail(format!(
                "sequential start: a gap of {gap:.1} s between api-{after} and api-{before} ('{event}'): replicas started one after another, as when they queue on a lock, not in parallel"
            ));
        }
    }
    // Each replica's own start-up, and Docker's stagger apart.
    let mut own: Vec<(f64, u32)> = Vec::new();
    for n in expected {
        let s = startups.get(n).cloned().unwrap_or_default();
        let Some(started) = started_at.get(n).copied() else {
            check.fail(format!("api-{n}: Docker reported no start time"));
            continue;
        };
        let Some(listening) = s.listening.first().copied() else {
            continue;
        };
        let origin = released.map_or(started, |r| r.max(started));
        let seconds = secs(listening - origin);
        let pool = s
            .pool_created
            .first()
            .map(|p| format!("{:.3} s", secs(*p - origin)))
            .unwrap_or_else(|| "none".into());
        check.evidence.push(format!(
            "api-{n}: own start-up {seconds:.3} s (pool created after {pool}, from {})",
            if origin == started {
                "its container's start"
            } else {
                "the database's release"
            }
        ));
        own.push((seconds, *n));
        if seconds > max_startup {
            check.fail(format!(
                "api-{n} took {seconds:.2} s of its own to start ({} → 'Listening on'), more than {max_startup} s",
                if origin == started { "container started" } else { "database released" }
            ));
        }
    }
    let starts: Vec<DateTime<Utc>> = expected
        .iter()
        .filter_map(|n| started_at.get(n).copied())
        .collect();
    let stagger = match (starts.iter().min(), starts.iter().max()) {
        (Some(a), Some(b)) => secs(*b - *a),
        _ => 0.0,
    };
    check.figures.insert("docker_stagger_s".into(), stagger);
    own.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(&(max, slowest)) = own.last() {
        let median = own[own.len() / 2].0;
        check.figures.insert("app_startup_max_s".into(), max);
        check.figures.insert("app_startup_median_s".into(), median);
        if check.passed {
            check.summary = format!(
                "app start-up max {max:.2} s (api-{slowest}), median {median:.2} s, limit {max_startup} s; Docker start stagger {stagger:.2} s; {}",
                summaries.join(", ")
            );
        }
    }
    check
}

/// One replica's part of TEST-03.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedDataResult {
    pub number: u32,
    /// None when the probe could not run at all (exec failed): the error.
    pub write: Result<WriteProbe, String>,
    /// Replica numbers whose file this replica read back correctly, and those it did not.
    pub seen: Vec<u32>,
    pub missing: Vec<u32>,
    pub read_error: Option<String>,
}

/// TEST-03: every replica wrote its file to the shared directory and read every other's.
pub fn shared_data(expected: &[u32], results: &[SharedDataResult], dir: &str) -> Check {
    let mut check = Check::new("TEST-03", "shared data volume");
    // One replica cannot show that replicas share the directory: say so instead of passing.
    if expected.len() < 2 {
        check.fail(format!(
            "not exercised: {} running replica(s); seeing another replica's writes needs at least 2",
            expected.len()
        ));
        return check;
    }
    for n in expected {
        let Some(r) = results.iter().find(|r| r.number == *n) else {
            check.fail(format!(
                "api-{n} did not take part (no container to exec into)"
            ));
            continue;
        };
        match &r.write {
            Err(e) => check.fail(format!("api-{n} could not run the write probe: {e}")),
            Ok(p) if !p.written => check.fail(format!(
                "api-{n} cannot write to {dir}: running as uid {} gid {}, {dir} is owned by {} (mode {}): {}; {}",
                p.uid, p.gid, p.dir_owner, p.dir_mode, p.error, unwritable_cause(p, dir)
            )),
            Ok(p) => check.evidence.push(format!("api-{n} wrote its file as uid {} ({dir} owned by {}, mode {})", p.uid, p.dir_owner, p.dir_mode)),
        }
        if let Some(e) = &r.read_error {
            check.fail(format!("api-{n} could not run the read probe: {e}"));
        } else {
            let written_by_others: Vec<u32> = results
                .iter()
                .filter(|o| matches!(&o.write, Ok(p) if p.written))
                .map(|o| o.number)
                .collect();
            let not_seen: Vec<u32> = written_by_others
                .iter()
                .copied()
                .filter(|m| !r.seen.contains(m))
                .collect();
            if !not_seen.is_empty() {
                check.fail(format!(
                    "api-{n} does not see the files of {}",
                    list(&not_seen)
                ));
            }
        }
    }
    if check.passed {
        check.summary = format!(
            "{} replicas each wrote a file and read all {} files",
            expected.len(),
            expected.len()
        );
    }
    check
}

/// Why a directory the probe could not write to is not writable, from what was observed: a
/// read-only mount (EROFS), an owner other than the process, or a mode without write
/// permission for it; each with its own fix.
pub fn unwritable_cause(p: &WriteProbe, dir: &str) -> String {
    let mode = u32::from_str_radix(p.dir_mode.trim(), 8).ok();
    let (owner_uid, owner_gid) = p.dir_owner.split_once(':').unwrap_or((&p.dir_owner, ""));
    if p.error.contains("Read-only file system") {
        format!("cause: {dir} is mounted read-only (EROFS), whatever its owner and mode; fix: mount the volume read-write (no :ro, no read_only volume option)")
    } else if owner_uid != p.uid {
        format!(
            "cause: wrong owner, {dir} belongs to uid {owner_uid}, not to the api's uid {}; fix: chown -R {}:{} the volume",
            p.uid, p.uid, p.gid
        )
    } else if mode.is_some_and(|m| m & 0o200 == 0) {
        format!(
            "cause: wrong mode, {dir} is owned by the api's uid {} but mode {} gives its owner no write permission; fix: chmod u+rwx the volume's root",
            p.uid, p.dir_mode
        )
    } else {
        format!(
            "cause not recognised (owner {owner_uid}:{owner_gid}, mode {}); the error above is what the kernel said",
            p.dir_mode
        )
    }
}

/// TEST-04: migrations were coordinated. On a fresh database exactly one replica took the lock
/// and applied every migration, the others took the fast path or waited; on an existing
/// database every replica took the fast path and none took the lock. In both, the database's
/// own record has each version exactly once, successful.
pub fn migrations(
    scenario: DbState,
    expected: &[u32],
    startups: &BTreeMap<u32, Startup>,
    records: &[(i64, bool)],
    versions: &[i64],
) -> Check {
    let mut check = Check::new("TEST-04", "migration coordination");
    let get = |n: &u32| startups.get(n).cloned().unwrap_or_default();
    let acquired: Vec<u32> = expected
        .iter()
        .copied()
        .filter(|n| !get(n).lock_acquired.is_empty())
        .collect();
    let acquisitions: usize = expected.iter().map(|n| get(n).lock_acquired.len()).sum();
    let appliers: Vec<(u32, u32)> = expected
        .iter()
        .flat_map(|n| {
            get(n)
                .applied
                .iter()
                .map(|(_, k)| (*n, *k))
                .collect::<Vec<_>>()
        })
        .collect();
    let fast: Vec<u32> = expected
        .iter()
        .copied()
        .filter(|n| !get(n).fast_path.is_empty())
        .collect();
    let waited: Vec<u32> = expected
        .iter()
        .copied()
        .filter(|n| !get(n).waiting.is_empty())
        .collect();
    let timed_out: Vec<(u32, String)> = expected
        .iter()
        .flat_map(|n| {
            get(n)
                .timed_out
                .iter()
                .map(|(_, l)| (*n, l.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    check
        .figures
        .insert("lock_acquisitions".into(), acquisitions as f64);
    check
        .figures
        .insert("replicas_applied".into(), appliers.len() as f64);
    check.figures.insert("fast_paths".into(), fast.len() as f64);
    check.figures.insert("waited".into(), waited.len() as f64);
    // Followers: found the schema being migrated and then current, whether or not they also
    // logged `Waiting…` (a read inside the leader's migration logs only the up-to-date line).
    let followers: Vec<u32> = expected
        .iter()
        .copied()
        .filter(|n| {
            let s = get(n);
            s.lock_acquired.is_empty()
                && (!s.up_to_date_after_wait.is_empty() || !s.waiting.is_empty())
        })
        .collect();
    check
        .figures
        .insert("followers".into(), followers.len() as f64);
    check.figures.insert(
        "contended".into(),
        (acquired.len() + followers.len()) as f64,
    );
    check.evidence.push(format!(
        "lock taken by: {}; applied by: {}; fast path: {}; waited: {}; followed: {}",
        list(&acquired),
        if appliers.is_empty() {
            "none".into()
        } else {
            appliers
                .iter()
                .map(|(n, k)| format!("api-{n} ({k})"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        list(&fast),
        list(&waited),
        list(&followers)
    ));
    for (n, line) in &timed_out {
        check.fail(format!("api-{n} timed out: {line}"));
    }
    match scenario {
        DbState::FreshDatabase => {
            // What really happened first: replicas that ran the migrator at once, or failed
            // doing so.
            let failed: Vec<(u32, String)> = expected
                .iter()
                .flat_map(|n| {
                    get(n)
                        .errors
                        .iter()
                        .filter(|(_, l)| l.to_lowercase().contains("migrat"))
                        .map(|(_, l)| (*n, l.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            if appliers.len() > 1 {
                check.fail(format!(
                    "{} replicas ran migrations at once ({}), expected exactly one",
                    appliers.len(),
                    appliers
                        .iter()
                        .map(|(n, k)| format!("api-{n}: {}", contract::applied(*k as usize)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            for (n, line) in &failed {
                check.fail(format!("api-{n} failed migrating: {line}"));
            }
            if acquisitions > 1 {
                check.fail(format!("the migration lock was acquired {acquisitions} times (by {}), expected exactly once", list(&acquired)));
            } else if acquisitions == 0 {
                check.fail("no replica acquired the migration lock on a fresh database");
            }
            if appliers.is_empty() {
                check.fail("no replica logged 'Applied N migrations' on a fresh database");
            } else if appliers.len() == 1 {
                let (n, k) = appliers[0];
                if !acquired.contains(&n) {
                    check.fail(format!(
                        "api-{n} applied migrations without holding the lock"
                    ));
                }
                if k as usize != versions.len() {
                    check.fail(format!(
                        "api-{n} applied {k} migrations, the api has {}",
                        versions.len()
                    ));
                }
            }
            for n in expected {
                let s = get(n);
                if s.lock_acquired.is_empty()
                    && s.applied.is_empty()
                    && s.fast_path.is_empty()
                    && s.waiting.is_empty()
                    && s.up_to_date_after_wait.is_empty()
                {
                    check.fail(format!(
                        "api-{n} neither took the lock, nor applied, nor took the fast path, nor waited, nor followed"
                    ));
                }
            }
            // The race must have happened: the leader plus at least one replica that found
            // the lock held (or the schema mid-migration) and followed.
            let contended = acquired.len() + followers.len();
            if contended < 2 && appliers.len() < 2 {
                check.fail(format!(
                    "race not exercised: {contended} replica(s) reached the migration while it ran (leader {}, followers {}; fast path: {}), so the lock was never tested",
                    list(&acquired),
                    list(&followers),
                    list(&fast)
                ));
            }
        }
        // The upgrade scenario's migration is judged by U-01 (scaling::upgrade::judge).
        DbState::Upgrade => check.fail("TEST-04 does not judge the upgrade scenario; U-01 does"),
        DbState::ExistingDatabase => {
            if acquisitions > 0 || !appliers.is_empty() {
                check.fail(format!(
                    "on an existing database {} took the migration lock and {} applied migrations; expected none",
                    list(&acquired),
                    appliers.len()
                ));
            }
            let slow: Vec<u32> = expected
                .iter()
                .copied()
                .filter(|n| !fast.contains(n))
                .collect();
            if !slow.is_empty() {
                check.fail(format!(
                    "{} did not take the fast path on an existing database",
                    list(&slow)
                ));
            }
        }
    }
    // The database's own record.
    for v in versions {
        let rows: Vec<&(i64, bool)> = records.iter().filter(|(rv, _)| rv == v).collect();
        match rows.as_slice() {
            [(_, true)] => {}
            [] => check.fail(format!("_sqlx_migrations has no row for version {v}")),
            [(_, false)] => check.fail(format!(
                "_sqlx_migrations records version {v} as failed (success = 0)"
            )),
            many => check.fail(format!(
                "_sqlx_migrations has {} rows for version {v}",
                many.len()
            )),
        }
    }
    for (v, _) in records {
        if !versions.contains(v) {
            check.fail(format!(
                "_sqlx_migrations has version {v}, which the api does not know"
            ));
        }
    }
    check.evidence.push(format!(
        "_sqlx_migrations: {} rows for {} migrations",
        records.len(),
        versions.len()
    ));
    if check.passed {
        check.summary = match scenario {
            DbState::FreshDatabase => format!(
                "{} of {} replicas contended: leader api-{} applied {} once; {} waited, {} followed; {} fast path",
                acquired.len() + followers.len(),
                expected.len(),
                acquired.first().copied().unwrap_or(0),
                versions.len(),
                waited.len(),
                followers.len(),
                fast.len()
            ),
            DbState::ExistingDatabase | DbState::Upgrade => {
                format!("{} fast paths, no lock taken", fast.len())
            }
        };
    }
    check
}

/// The api's pool size when `API_DB_POOL_SIZE` is unset (README, "Configuration").
pub const API_DEFAULT_POOL_SIZE: u32 = 5;
/// Sessions the check itself may hold at once: its SQL client, plus an outside client that
/// holds the migration lock (the `lock-held` fault).
pub const CHECK_SESSIONS: u32 = 2;

/// TEST-05: the database can take every replica's pool at once. Each replica may open
/// `pool_size` connections, plus one dedicated connection while it coordinates migrations;
/// with the check's own sessions that must fit the server's `max_connections`.
pub fn capacity(replicas: u32, pool_size: u32, max_connections: u32, open_now: u32) -> Check {
    let mut check = Check::new("TEST-05", "database capacity");
    let needed = replicas * (pool_size + 1) + CHECK_SESSIONS;
    check
        .figures
        .insert("connections_needed".into(), needed as f64);
    check
        .figures
        .insert("max_connections".into(), max_connections as f64);
    check
        .figures
        .insert("connections_open".into(), open_now as f64);
    check.evidence.push(format!(
        "{replicas} replicas × ({pool_size} pooled + 1 migration connection) + {CHECK_SESSIONS} for the check = {needed}; the server allows {max_connections} (SELECT @@max_connections); {open_now} open now"
    ));
    if needed > max_connections {
        check.fail(format!(
            "{replicas} replicas × ({pool_size} pooled + 1) + {CHECK_SESSIONS} = {needed} connections, but the server's max_connections is {max_connections}: under load some replicas get 'Too many connections'; fix: raise max_connections to at least {needed} (DB_MAX_CONNECTIONS in the compose file) or lower API_DB_POOL_SIZE to {}",
            (max_connections.saturating_sub(CHECK_SESSIONS) / replicas.max(1)).saturating_sub(1)
        ));
    } else {
        check.summary = format!(
            "{needed} connections needed at most ({replicas} × ({pool_size} + 1) + {CHECK_SESSIONS}), max_connections {max_connections}"
        );
    }
    check
}

/// One replica's answer when asked for the document another replica stored.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpRead {
    pub number: u32,
    pub result: Result<(u16, Vec<u8>), String>,
}

/// Cross-replica HTTP: a document stored through one replica is served, byte for byte,
/// by every replica.
pub fn cross_replica_http(
    stored_by: u32,
    store: &Result<String, String>,
    expected_body: &[u8],
    reads: &[HttpRead],
    expected: &[u32],
) -> Check {
    let mut check = Check::new("HTTP", "cross-replica documents");
    if let Err(e) = store {
        check.fail(format!(
            "storing a document through api-{stored_by} failed: {e}"
        ));
        return check;
    }
    check.evidence.push(format!(
        "stored through api-{stored_by}: {}",
        store.as_ref().unwrap()
    ));
    for n in expected {
        match reads.iter().find(|r| r.number == *n).map(|r| &r.result) {
            None => check.fail(format!("api-{n} was not asked (no published port)")),
            Some(Err(e)) => check.fail(format!("api-{n}: request failed: {e}")),
            Some(Ok((status, _))) if *status != 200 => {
                check.fail(format!("api-{n} answered {status}"))
            }
            Some(Ok((_, body))) if body != expected_body => check.fail(format!(
                "api-{n} served {} bytes that differ from the {} bytes stored",
                body.len(),
                expected_body.len()
            )),
            Some(Ok(_)) => check.evidence.push(format!(
                "api-{n}: 200, {} bytes, identical",
                expected_body.len()
            )),
        }
    }
    if check.passed {
        check.summary = format!(
            "stored through api-{stored_by}, read back identical through {} replicas",
            expected.len()
        );
    }
    check
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

fn list(numbers: &[u32]) -> String {
    if numbers.is_empty() {
        return "none".into();
    }
    numbers
        .iter()
        .map(|n| format!("api-{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One progress line per check, as soon as a scenario is judged: `PASS TEST-01 name: summary`.
pub fn print_verdicts(checks: &[Check]) {
    for check in checks {
        let verdict = if check.passed {
            crate::ui::paint("PASS", "1;32")
        } else {
            crate::ui::paint("FAIL", "1;31")
        };
        crate::ui::note(&format!(
            "{verdict} {} {}: {}",
            check.id, check.name, check.summary
        ));
    }
}
