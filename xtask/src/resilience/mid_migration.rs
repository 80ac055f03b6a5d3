//! Scenarios 8 and 9, stop and kill mid-migration: replicas of the api variant with a slow
//! last migration (host/slow_api.rs) start on a fresh database; once the leader is inside that
//! migration it gets SIGTERM (it must finish, exit 0 and let the others follow) or SIGKILL
//! (every other replica must fail fast with the dirty-schema line, and the scaling check's own
//! wait must stop on that line).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use super::{wait_all_healthy, Verdict, HEALTHY_TIMEOUT};
use crate::{
    host::slow_api,
    stack::{db, parse::LogLine, Stack, Unhealthy, WaitOutcome},
    ui,
};

use crate::log_contract::{DIRTY, LISTENING, LOCK_ACQUIRED, STOP_MID_MIGRATION, TIMED_OUT};

/// `docker stop`'s grace period: well above the slow migration, so Docker never SIGKILLs.
const STOP_GRACE_SECS: u64 = slow_api::SLOW_SECS * 3;
/// "Within seconds": the other replicas must report the dirty row this soon after the kill.
pub const MAX_DIRTY_REPORT_SECS: f64 = 10.0;

/// Starts the replicas and returns, once the leader is inside the slow migration, its
/// container number and id.
fn leader_mid_migration(stack: &Stack) -> Result<(u32, String)> {
    let n = stack.replicas;
    ui::step(&format!("Starting {n} replicas of the slow-migration api"));
    stack.scale_api(n)?;
    let started = Instant::now();
    loop {
        let rows = db::migration_records(stack)?;
        if rows.contains(&(slow_api::SLOW_VERSION, false)) {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("no replica began the slow migration within 90 s (rows: {rows:?})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = stack.logs()?;
    let number = lines
        .iter()
        .find(|l| l.message.contains(LOCK_ACQUIRED))
        .and_then(|l| l.number)
        .context("the slow migration runs but no replica logged the lock acquisition")?;
    let id = stack
        .api_containers()?
        .into_iter()
        .find(|c| c.number == number)
        .context("the leader's container is gone")?
        .id;
    ui::note(&format!(
        "api-{number} is inside the slow migration ({:.1} s after up)",
        started.elapsed().as_secs_f64()
    ));
    Ok((number, id))
}

pub fn stop(stack: &Stack) -> Result<Verdict> {
    let n = stack.replicas;
    let (leader, id) = leader_mid_migration(stack)?;
    let sent = Instant::now();
    stack
        .docker
        .stop_with_grace(stack.sh, &id, STOP_GRACE_SECS)?;
    let stop_secs = sent.elapsed().as_secs_f64();
    let containers = stack.api_containers()?;
    let leader_c = containers
        .iter()
        .find(|c| c.number == leader)
        .context("the leader's container is gone")?;
    let others_healthy = wait_others_healthy(stack, leader, Duration::from_secs(60))?;
    let lines = stack.logs()?;
    let rows = db::migration_records(stack)?;
    let mut expected = db::migration_versions(&stack.project.root)?;
    expected.push(slow_api::SLOW_VERSION);
    let mut verdict = judge_stop(
        leader,
        leader_c.exit_code,
        stop_secs,
        &lines,
        &rows,
        &expected,
    );
    match others_healthy {
        Some(s) => verdict.figure(format!(
            "the other {} replicas healthy {s:.1} s after the leader exited",
            n - 1
        )),
        None => verdict.problem(format!(
            "the other {} replicas were not all healthy 60 s after the leader exited",
            n - 1
        )),
    }
    // The stopped leader starts again on the current schema: all n healthy, none restarted.
    stack.docker.start(stack.sh, &id)?;
    let secs = wait_all_healthy(stack, n, HEALTHY_TIMEOUT)?;
    verdict.figure(format!(
        "api-{leader} started again: all {n} healthy after {secs:.1} s"
    ));
    Ok(verdict)
}

/// The stop's verdict from the leader's exit code, the logs and `_sqlx_migrations`.
pub fn judge_stop(
    leader: u32,
    exit_code: i64,
    stop_secs: f64,
    lines: &[LogLine],
    rows: &[(i64, bool)],
    expected: &[i64],
) -> Verdict {
    let mut v = Verdict::default();
    v.figure(format!(
        "SIGTERM to leader api-{leader} inside the {} s migration: exited {exit_code} after {stop_secs:.1} s (grace {STOP_GRACE_SECS} s)",
        slow_api::SLOW_SECS
    ));
    v.require(exit_code == 0, || {
        format!("the leader api-{leader} exited {exit_code}, not 0")
    });
    v.require(stop_secs < STOP_GRACE_SECS as f64, || {
        format!("the leader took {stop_secs:.1} s: Docker's SIGKILL came first")
    });
    let said = lines
        .iter()
        .any(|l| l.number == Some(leader) && l.message.contains(STOP_MID_MIGRATION));
    v.require(said, || {
        format!("api-{leader} did not log {STOP_MID_MIGRATION:?}")
    });
    for version in expected {
        let found: Vec<bool> = rows
            .iter()
            .filter(|(r, _)| r == version)
            .map(|(_, s)| *s)
            .collect();
        v.require(found == [true], || {
            format!(
                "version {version} in _sqlx_migrations: {found:?} (want exactly once, success = 1)"
            )
        });
    }
    let dirty: Vec<i64> = rows.iter().filter(|(_, s)| !s).map(|(r, _)| *r).collect();
    v.require(dirty.is_empty(), || {
        format!("dirty rows (success = 0): {dirty:?}")
    });
    if v.passed() {
        v.figure(format!(
            "{} versions each applied once with success = 1, no dirty row; the leader logged the stop-mid-migration line",
            expected.len()
        ));
    }
    v
}

/// Seconds until every replica but `leader` is healthy; `None` after `timeout`.
fn wait_others_healthy(stack: &Stack, leader: u32, timeout: Duration) -> Result<Option<f64>> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        let others: Vec<_> = stack
            .api_containers()?
            .into_iter()
            .filter(|c| c.number != leader)
            .collect();
        if others.len() as u32 == stack.replicas - 1 && others.iter().all(|c| c.is_healthy()) {
            return Ok(Some(started.elapsed().as_secs_f64()));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(None)
}

pub fn kill(stack: &Stack) -> Result<Verdict> {
    let n = stack.replicas;
    let (leader, id) = leader_mid_migration(stack)?;
    let killed_at = Utc::now();
    stack.docker.kill(stack.sh, &id)?;
    ui::note(&format!(
        "SIGKILL to api-{leader} at {}",
        killed_at.format("%H:%M:%S%.3f")
    ));
    // Poll until every other replica has logged the dirty line (or 3x the limit passed).
    let started = Instant::now();
    let mut lines = stack.logs()?;
    while started.elapsed().as_secs_f64() < MAX_DIRTY_REPORT_SECS * 3.0 {
        if dirty_times(&lines, killed_at, leader, n)
            .iter()
            .all(|t| t.1.is_some())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        lines = stack.logs()?;
    }
    // A few seconds more: no replica may turn healthy or wait on.
    std::thread::sleep(Duration::from_secs(3));
    lines = stack.logs()?;
    let rows = db::migration_records(stack)?;
    let mut verdict = judge_kill(leader, n, killed_at, &lines, &rows);
    let containers = stack.api_containers()?;
    for c in containers.iter().filter(|c| c.is_healthy()) {
        verdict.problem(format!("{} is healthy on a dirty schema", c.label()));
    }
    // What `test-scaling` would say on this database: its wait is this same function, with
    // the policy for a stack that just started.
    match stack.wait_healthy(n, Duration::from_secs(30), Instant::now(), Unhealthy::Stops)? {
        WaitOutcome::Broken { seconds, reason } => {
            verdict.figure(format!(
                "the scaling check's wait stops after {seconds:.1} s: {reason}"
            ));
            verdict.require(reason.contains(DIRTY), || {
                format!("the scaling check's wait does not quote the dirty line: {reason}")
            });
        }
        other => verdict.problem(format!(
            "the scaling check's wait did not stop on the dirty schema: {other:?}"
        )),
    }
    Ok(verdict)
}

/// Each non-leader replica's first dirty line after the kill: (number, seconds after the kill).
fn dirty_times(
    lines: &[LogLine],
    killed_at: DateTime<Utc>,
    leader: u32,
    n: u32,
) -> Vec<(u32, Option<f64>)> {
    (1..=n)
        .filter(|&i| i != leader)
        .map(|i| {
            let t = lines
                .iter()
                .filter(|l| l.number == Some(i) && l.time >= killed_at && l.message.contains(DIRTY))
                .map(|l| l.time)
                .min()
                .map(|t| t.signed_duration_since(killed_at).num_milliseconds() as f64 / 1000.0);
            (i, t)
        })
        .collect()
}

/// The kill's verdict from the logs and `_sqlx_migrations`.
pub fn judge_kill(
    leader: u32,
    n: u32,
    killed_at: DateTime<Utc>,
    lines: &[LogLine],
    rows: &[(i64, bool)],
) -> Verdict {
    let mut v = Verdict::default();
    v.require(rows.contains(&(slow_api::SLOW_VERSION, false)), || {
        format!("the killed migration left no dirty row: {rows:?}")
    });
    let times = dirty_times(lines, killed_at, leader, n);
    let mut shown = Vec::new();
    for (i, t) in &times {
        match t {
            Some(s) if *s <= MAX_DIRTY_REPORT_SECS => shown.push(format!("api-{i} {s:.1} s")),
            Some(s) => v.problem(format!(
                "api-{i} reported the dirty schema only {s:.1} s after the kill"
            )),
            None => v.problem(format!("api-{i} never logged {DIRTY:?} after the kill")),
        }
        let after = |pat: &str| {
            lines
                .iter()
                .any(|l| l.number == Some(*i) && l.time >= killed_at && l.message.contains(pat))
        };
        v.require(!after(TIMED_OUT), || {
            format!("api-{i} waited until the deadline")
        });
        v.require(!after(LISTENING), || {
            format!("api-{i} served on a dirty schema")
        });
    }
    v.figure(format!(
        "SIGKILL to leader api-{leader} inside the slow migration; dirty line after the kill: {}",
        shown.join(", ")
    ));
    if let Some(line) = lines
        .iter()
        .find(|l| l.number != Some(leader) && l.time >= killed_at && l.message.contains(DIRTY))
    {
        let msg = line.message.trim();
        v.figure(format!("api-{}: {msg}", line.number.unwrap_or(0)));
        let version = slow_api::SLOW_VERSION.to_string();
        v.require(
            line.message.contains(" ERROR ")
                && msg.contains(&version)
                && msg.contains("DELETE FROM _sqlx_migrations"),
            || format!("the dirty line does not name version {version} and the repair: {msg}"),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(number: u32, secs: i64, message: &str) -> LogLine {
        LogLine {
            container: format!("api-{number}"),
            number: Some(number),
            time: DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap(),
            message: message.into(),
        }
    }

    fn kill_time() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn dirty_line() -> String {
        format!(" ERROR api::startup: {DIRTY} {} is recorded as started but not finished (success = 0) ... run `DELETE FROM _sqlx_migrations WHERE version = {};`", slow_api::SLOW_VERSION, slow_api::SLOW_VERSION)
    }

    #[test]
    fn a_kill_passes_when_every_other_replica_reports_the_dirty_row_quickly() {
        let lines = vec![line(2, 1, &dirty_line()), line(3, 2, &dirty_line())];
        let rows = [(1, true), (slow_api::SLOW_VERSION, false)];
        let v = judge_kill(1, 3, kill_time(), &lines, &rows);
        assert!(v.passed(), "{:?}", v.problems);
        assert!(
            v.figures.iter().any(|f| f.contains("api-2 1.0 s")),
            "{:?}",
            v.figures
        );
    }

    #[test]
    fn a_kill_fails_when_a_replica_is_silent_late_or_waits_to_the_deadline() {
        let lines = vec![
            line(2, 25, &dirty_line()),
            line(3, 60, &format!(" ERROR api: {TIMED_OUT}: ...")),
        ];
        let rows = [(slow_api::SLOW_VERSION, false)];
        let v = judge_kill(1, 3, kill_time(), &lines, &rows);
        let all = v.problems.join("\n");
        assert!(
            all.contains("api-2 reported the dirty schema only 25.0 s"),
            "{all}"
        );
        assert!(all.contains("api-3 never logged"), "{all}");
        assert!(all.contains("api-3 waited until the deadline"), "{all}");
        let clean = judge_kill(1, 3, kill_time(), &[], &[(slow_api::SLOW_VERSION, true)]);
        assert!(
            clean.problems.iter().any(|p| p.contains("no dirty row")),
            "{:?}",
            clean.problems
        );
    }

    #[test]
    fn a_stop_passes_only_with_exit_0_the_line_and_every_version_once_and_clean() {
        let expected = [1, 2, slow_api::SLOW_VERSION];
        let good_rows = [(1, true), (2, true), (slow_api::SLOW_VERSION, true)];
        let said = vec![line(1, 0, &format!(" WARN api: {STOP_MID_MIGRATION}"))];
        assert!(judge_stop(1, 0, 9.0, &said, &good_rows, &expected).passed());

        let v = judge_stop(
            1,
            137,
            24.0,
            &[],
            &[(1, true), (2, true), (slow_api::SLOW_VERSION, false)],
            &expected,
        );
        let all = v.problems.join("\n");
        assert!(all.contains("exited 137"), "{all}");
        assert!(all.contains("SIGKILL came first"), "{all}");
        assert!(all.contains("did not log"), "{all}");
        assert!(all.contains("dirty rows"), "{all}");
        assert!(
            all.contains(&format!("version {}", slow_api::SLOW_VERSION)),
            "{all}"
        );
    }

    #[test]
    fn the_wait_quotes_a_down_replicas_first_error_its_dirty_line() {
        let lines = vec![
            line(1, 0, " INFO api: Database pool created"),
            line(2, 1, &dirty_line()),
            line(2, 3, " ERROR api: second start, same cause"),
        ];
        let quoted = crate::stack::first_error(&lines, 2).unwrap();
        assert!(quoted.contains(DIRTY), "{quoted}");
        assert_eq!(crate::stack::first_error(&lines, 1), None);
    }

    #[test]
    fn a_killed_leader_that_logged_nothing_is_explained_by_the_others_dirty_line() {
        let lines = vec![
            line(1, 0, " INFO api::migrate: Acquired migration lock"),
            line(2, 1, &dirty_line()),
            line(3, 2, " ERROR api: startup failed"),
        ];
        // api-1 was SIGKILLed: no line of its own, so the first ERROR of another replica.
        let why = crate::stack::explain_down(&lines, 1);
        assert!(why.starts_with("; api-2 logged: "), "{why}");
        assert!(why.contains(DIRTY), "{why}");
        // A replica with its own ERROR line is explained by it.
        let own = crate::stack::explain_down(&lines, 3);
        assert!(own.starts_with(" and logged: "), "{own}");
        assert!(own.contains("startup failed"), "{own}");
        // Nobody logged an error (a replica stopped on purpose): nothing is added.
        assert_eq!(crate::stack::explain_down(&lines[..1], 1), "");
    }
}
