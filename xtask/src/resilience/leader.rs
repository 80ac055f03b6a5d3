//! Scenario 1, leader death: on a fresh database an outside client plays the migration
//! leader (it holds the api's lock and has begun recording migration 1 in an open
//! transaction) while the replicas start and wait; then it is KILLed. A waiting replica must
//! take over, the schema must end current with every version applied once, and the dead
//! leader's half-done work must be gone.

use std::{
    collections::BTreeMap,
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use super::{wait_all_healthy, Verdict, HEALTHY_TIMEOUT};
use crate::{
    stack::{
        db::{self, MIGRATION_LOCK_SQL},
        parse::{self, Startup},
        Stack,
    },
    ui,
};

/// The description of the row the dead leader had inserted but not committed.
const DEAD_LEADER_MARK: &str = "resilience: leader killed mid-migration";
/// A waiting replica retries every 0.25-1 s; anything much slower is not a takeover.
const MAX_TAKEOVER_SECS: f64 = 5.0;
/// The api gives up waiting after API_MIGRATION_DEADLINE_SECS (60 s by default): kill well before.
const WAIT_FOR_WAITERS: Duration = Duration::from_secs(40);

pub fn run(stack: &Stack) -> Result<Verdict> {
    let n = stack.replicas;
    let versions = db::migration_versions(&stack.project.root)?;
    let first = *versions.first().context("the api has no migrations")?;

    ui::note("an outside client takes the migration lock and starts recording migration 1");
    let mut leader = LeaderGuard(Some(stack.spawn_sql(&dead_leader_sql(first))?));
    let holder = db::wait_for_lock_holder(stack)?;
    ui::note(&format!("lock held by connection {holder}"));

    ui::step(&format!("Starting {n} replicas on the fresh database"));
    stack.scale_api(n)?;
    wait_until_all_wait(stack, n)?;

    let killed_at = kill(stack, holder)?;
    ui::note(&format!(
        "killed connection {holder} at {}",
        killed_at.format("%H:%M:%S%.3f")
    ));
    leader.reap();
    let healthy_after = wait_all_healthy(stack, n, HEALTHY_TIMEOUT)?;

    let startups = parse::startups(&stack.logs()?);
    let rows = migration_rows(stack)?;
    let containers = stack.api_containers()?;
    let restarts = stack.restart_counts(&containers)?;
    let mut verdict = judge(n, killed_at, &startups, &rows, &versions);
    verdict.figure(format!(
        "all {n} replicas healthy {healthy_after:.1} s after the kill"
    ));
    for (number, count) in restarts.iter().filter(|(_, c)| **c > 0) {
        verdict.problem(format!("api-{number} restarted {count} time(s)"));
    }
    Ok(verdict)
}

/// The dead leader: the api's lock (same name derivation as the api's and sqlx's), sqlx's
/// migrations table, and migration 1's row inserted in a transaction that never commits.
fn dead_leader_sql(first_version: i64) -> String {
    format!(
        "SELECT GET_LOCK({MIGRATION_LOCK_SQL}, 0); \
         CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
           installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, checksum BLOB NOT NULL, \
           execution_time BIGINT NOT NULL); \
         START TRANSACTION; \
         INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
           VALUES ({first_version}, '{DEAD_LEADER_MARK}', 0, X'00', -1); \
         SELECT SLEEP(600);"
    )
}

/// Kills the outside client if the scenario stops early.
struct LeaderGuard(Option<Child>);

impl LeaderGuard {
    /// After the KILL the client exits by itself; do not wait for it forever.
    fn reap(&mut self) {
        if let Some(mut child) = self.0.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Until every replica has logged that it waits for another instance.
fn wait_until_all_wait(stack: &Stack, n: u32) -> Result<()> {
    let mut wait = ui::Waiting::new(&format!("{n} replicas waiting for the lock"));
    loop {
        let startups = parse::startups(&stack.logs()?);
        let waiting = startups.values().filter(|s| !s.waiting.is_empty()).count() as u32;
        if waiting >= n {
            wait.finish("all waiting");
            return Ok(());
        }
        if let Some(c) = stack.api_containers()?.iter().find(|c| c.is_down()) {
            bail!(
                "{} is {} while waiting for the lock ({})",
                c.label(),
                c.state,
                c.status
            );
        }
        wait.update(&format!("{waiting}/{n} waiting"));
        if wait.elapsed() > WAIT_FOR_WAITERS {
            bail!(
                "only {waiting} of {n} replicas logged that they wait for the lock within {} s",
                WAIT_FOR_WAITERS.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `KILL CONNECTION` and the server's clock right after it (the same clock as the log
/// timestamps: containers share the host's).
fn kill(stack: &Stack, connection: i64) -> Result<DateTime<Utc>> {
    let out = stack.sql(&format!("KILL CONNECTION {connection}; SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%fZ')"))?;
    let stamp = out.trim();
    Ok(DateTime::parse_from_rfc3339(stamp)
        .with_context(|| format!("server time {stamp:?}"))?
        .with_timezone(&Utc))
}

/// `(version, success, description)` rows of `_sqlx_migrations`.
fn migration_rows(stack: &Stack) -> Result<Vec<(i64, bool, String)>> {
    let out =
        stack.sql("SELECT version, success, description FROM _sqlx_migrations ORDER BY version")?;
    Ok(parse_rows(&out))
}

fn parse_rows(out: &str) -> Vec<(i64, bool, String)> {
    out.lines()
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let version = cols.next()?.trim().parse().ok()?;
            let success = cols.next()?.trim() == "1";
            Some((version, success, cols.next().unwrap_or("").to_string()))
        })
        .collect()
}

/// The takeover, judged from the replicas' contract lines and the migrations table.
pub fn judge(
    n: u32,
    killed_at: DateTime<Utc>,
    startups: &BTreeMap<u32, Startup>,
    rows: &[(i64, bool, String)],
    versions: &[i64],
) -> Verdict {
    let mut v = Verdict::default();
    let waited_before_kill: Vec<u32> = startups
        .iter()
        .filter(|(_, s)| s.waiting.first().is_some_and(|t| *t < killed_at))
        .map(|(k, _)| *k)
        .collect();
    v.require(waited_before_kill.len() as u32 == n, || {
        format!("only {} of {n} replicas were waiting on the dead leader before the kill: {waited_before_kill:?}", waited_before_kill.len())
    });

    let acquisitions: Vec<(u32, DateTime<Utc>)> = startups
        .iter()
        .flat_map(|(k, s)| s.lock_acquired.iter().map(move |t| (*k, *t)))
        .collect();
    match acquisitions.as_slice() {
        [] => v.problem("no replica took over the migration lock after the leader died"),
        [(replica, at)] => {
            let takeover = (*at - killed_at).num_milliseconds() as f64 / 1000.0;
            v.figure(format!("takeover: api-{replica} acquired the lock {takeover:.2} s after the leader's connection was killed"));
            v.require(takeover >= 0.0, || format!("api-{replica} acquired the lock {:.2} s before the kill: the dead leader's lock was not held", -takeover));
            v.require(takeover <= MAX_TAKEOVER_SECS, || {
                format!("takeover took {takeover:.2} s (more than {MAX_TAKEOVER_SECS} s)")
            });
        }
        many => v.problem(format!(
            "{} acquisitions of the migration lock (expected exactly one takeover): {}",
            many.len(),
            many.iter()
                .map(|(k, _)| format!("api-{k}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }

    let applied: Vec<(u32, u32)> = startups
        .iter()
        .flat_map(|(k, s)| s.applied.iter().map(move |(_, c)| (*k, *c)))
        .collect();
    let expected = versions.len() as u32;
    v.require(applied.len() == 1 && applied[0].1 == expected, || {
        format!("expected one `Applied {expected} migrations`, got {applied:?}")
    });
    let followers = startups
        .values()
        .filter(|s| !s.up_to_date_after_wait.is_empty())
        .count() as u32;
    v.require(followers + 1 == n, || {
        format!(
            "{followers} replicas logged `Schema up to date after waiting`, expected {}",
            n - 1
        )
    });
    v.figure(format!(
        "{} replicas waited, 1 took over, {followers} followed; {expected} migrations applied",
        waited_before_kill.len()
    ));

    for version in versions {
        let found: Vec<&(i64, bool, String)> =
            rows.iter().filter(|(ver, _, _)| ver == version).collect();
        match found.as_slice() {
            [(_, true, description)] if description != DEAD_LEADER_MARK => {}
            [(_, true, _)] => v.problem(format!("version {version} still carries the dead leader's row: its transaction was not rolled back")),
            [(_, false, _)] => v.problem(format!("version {version} is recorded as failed (success = 0)")),
            [] => v.problem(format!("version {version} is missing from _sqlx_migrations")),
            more => v.problem(format!("version {version} is recorded {} times", more.len())),
        }
    }
    let unknown: Vec<i64> = rows
        .iter()
        .map(|r| r.0)
        .filter(|r| !versions.contains(r))
        .collect();
    v.require(unknown.is_empty(), || {
        format!("_sqlx_migrations has versions the api does not ship: {unknown:?}")
    });
    if v.passed() {
        v.figure(format!("_sqlx_migrations: {} versions, each once and successful; the dead leader's row was rolled back", versions.len()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-01-01T00:00:{s}Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    const VERSIONS: [i64; 2] = [20250101000001, 20250101000002];

    fn good_rows() -> Vec<(i64, bool, String)> {
        VERSIONS
            .iter()
            .map(|v| (*v, true, "create documents".to_string()))
            .collect()
    }

    /// Four replicas waited from 01 s; the kill came at 10 s; api-3 took over at 10.6 s.
    fn takeover() -> BTreeMap<u32, Startup> {
        (1..=4)
            .map(|k| {
                let mut s = Startup {
                    waiting: vec![t("01.000")],
                    ..Startup::default()
                };
                if k == 3 {
                    s.lock_acquired = vec![t("10.600")];
                    s.applied = vec![(t("10.900"), 2)];
                } else {
                    s.up_to_date_after_wait = vec![t("11.200")];
                }
                (k, s)
            })
            .collect()
    }

    #[test]
    fn one_takeover_after_the_kill_passes_with_its_time() {
        let v = judge(4, t("10.000"), &takeover(), &good_rows(), &VERSIONS);
        assert!(v.passed(), "{:?}", v.problems);
        assert!(
            v.figures[0].contains("api-3 acquired the lock 0.60 s after"),
            "{:?}",
            v.figures
        );
    }

    #[test]
    fn no_takeover_fails() {
        let mut startups = takeover();
        startups.get_mut(&3).unwrap().lock_acquired.clear();
        let v = judge(4, t("10.000"), &startups, &good_rows(), &VERSIONS);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("no replica took over")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn two_acquisitions_or_a_slow_takeover_fail() {
        let mut startups = takeover();
        startups.get_mut(&1).unwrap().lock_acquired = vec![t("12.000")];
        let v = judge(4, t("10.000"), &startups, &good_rows(), &VERSIONS);
        assert!(
            v.problems.iter().any(|p| p.contains("2 acquisitions")),
            "{:?}",
            v.problems
        );

        let mut startups = takeover();
        startups.get_mut(&3).unwrap().lock_acquired = vec![t("17.000")];
        let v = judge(4, t("10.000"), &startups, &good_rows(), &VERSIONS);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("takeover took 7.00 s")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn a_replica_that_did_not_wait_before_the_kill_fails() {
        let mut startups = takeover();
        startups.get_mut(&2).unwrap().waiting = vec![t("10.500")];
        let v = judge(4, t("10.000"), &startups, &good_rows(), &VERSIONS);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("only 3 of 4 replicas were waiting")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn bad_migration_records_fail() {
        let mut rows = good_rows();
        rows[0].2 = DEAD_LEADER_MARK.into();
        let v = judge(4, t("10.000"), &takeover(), &rows, &VERSIONS);
        assert!(
            v.problems.iter().any(|p| p.contains("not rolled back")),
            "{:?}",
            v.problems
        );

        let rows = vec![
            (VERSIONS[0], true, "x".to_string()),
            (VERSIONS[1], false, "y".to_string()),
        ];
        let v = judge(4, t("10.000"), &takeover(), &rows, &VERSIONS);
        assert!(
            v.problems.iter().any(|p| p.contains("recorded as failed")),
            "{:?}",
            v.problems
        );

        let v = judge(4, t("10.000"), &takeover(), &good_rows()[..1], &VERSIONS);
        assert!(
            v.problems.iter().any(|p| p.contains("missing")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn mariadb_batch_rows_parse() {
        let rows = parse_rows("20250101000001\t1\tcreate documents\n20250101000002\t0\tindex\n");
        assert_eq!(
            rows,
            vec![
                (20250101000001, true, "create documents".into()),
                (20250101000002, false, "index".into())
            ]
        );
    }
}
