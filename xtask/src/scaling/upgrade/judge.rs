//! The upgrade scenario's checks U-01..U-05: pure judges over the evidence of `facts` and the
//! replicas' start-up lines, each returning PASS or FAIL with the lines that prove it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::facts::{Read, Replica, Request, Side};
use crate::scaling::checks::Check;
use crate::stack::parse::Startup;

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

fn clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

/// Whether a replica was up and listening at `t`.
fn serving_at(replica: &Replica, startup: Option<&Startup>, t: DateTime<Utc>) -> bool {
    let listening = startup
        .and_then(|s| s.listening.first())
        .is_some_and(|l| *l <= t);
    listening && replica.finished_at.is_none_or(|f| f > t)
}

/// When the new migration was applied: the one new replica's `Applied N migrations` line.
pub fn migration_time(
    replicas: &[Replica],
    startups: &BTreeMap<u32, Startup>,
    roll_started: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    replicas
        .iter()
        .filter(|r| r.side == Side::New)
        .filter_map(|r| startups.get(&r.number))
        .flat_map(|s| s.applied.iter().map(|(t, _)| *t))
        .filter(|t| *t >= roll_started)
        .min()
}

/// U-01: the new migration was applied exactly once, by one new replica holding the lock,
/// while old replicas were serving.
///
/// `replicas` and `startups` cover the roll (old and new containers, their logs keyed by
/// container number); `rows` is `_sqlx_migrations` afterwards; `new_versions` are the versions
/// the new build has and the old one lacks.
pub fn migration_applied_once(
    replicas: &[Replica],
    startups: &BTreeMap<u32, Startup>,
    rows: &[(i64, bool)],
    new_versions: &[i64],
    roll_started: DateTime<Utc>,
) -> Check {
    let mut v = Check::new("U-01", "new migration applied once");
    let after = |t: &DateTime<Utc>| *t >= roll_started;
    let mut appliers = Vec::new();
    let mut acquirers = Vec::new();
    for r in replicas {
        let Some(s) = startups.get(&r.number) else {
            if r.side == Side::New {
                v.fail(format!("{} (new) has no start-up lines in the log", r.name));
            }
            continue;
        };
        for (t, k) in s.applied.iter().filter(|(t, _)| after(t)) {
            appliers.push((r, *t, *k));
        }
        for t in s.lock_acquired.iter().filter(|t| after(t)) {
            acquirers.push((r, *t));
        }
    }
    v.figure("appliers", appliers.len() as f64);
    v.figure("lock_acquisitions", acquirers.len() as f64);
    for (r, t, k) in &appliers {
        v.evidence.push(format!(
            "{} ({}) applied {k} migrations at {}",
            r.name,
            r.side.name(),
            clock(*t)
        ));
    }
    match appliers.as_slice() {
        [] => v.fail(format!(
            "no replica applied the new migration{} after the roll began",
            plural_versions(new_versions)
        )),
        [(r, t, k)] => {
            if r.side == Side::Old {
                v.fail(format!(
                    "{} of the OLD version applied {k} migrations during the roll",
                    r.name
                ));
            }
            if *k as usize != new_versions.len() {
                v.fail(format!(
                    "{} applied {k} migrations, the new version adds {}",
                    r.name,
                    new_versions.len()
                ));
            }
            let locked = acquirers
                .iter()
                .any(|(a, at)| a.number == r.number && at <= t);
            if !locked {
                v.fail(format!(
                    "{} applied migrations without logging 'Acquired migration lock' first",
                    r.name
                ));
            }
            let serving: Vec<&str> = replicas
                .iter()
                .filter(|o| o.side == Side::Old && serving_at(o, startups.get(&o.number), *t))
                .map(|o| o.name.as_str())
                .collect();
            v.figure("old_serving_during_migration", serving.len() as f64);
            if serving.is_empty() {
                v.fail(format!(
                    "no old replica was serving when {} applied the migration at {}: the roll did not overlap",
                    r.name,
                    clock(*t)
                ));
            } else {
                v.pass(format!(
                    "{} applied {k} migration{} under the lock at {} while {} old replica{} served ({})",
                    r.name,
                    if *k == 1 { "" } else { "s" },
                    clock(*t),
                    serving.len(),
                    if serving.len() == 1 { "" } else { "s" },
                    serving.join(", ")
                ));
            }
        }
        many => v.fail(format!(
            "{} replicas applied migrations during the roll ({}), expected exactly one",
            many.len(),
            many.iter()
                .map(|(r, _, _)| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    if acquirers.len() > 1 {
        v.fail(format!(
            "the migration lock was taken {} times during the roll ({})",
            acquirers.len(),
            acquirers
                .iter()
                .map(|(r, t)| format!("{} at {}", r.name, clock(*t)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for version in new_versions {
        match rows
            .iter()
            .filter(|(x, _)| x == version)
            .collect::<Vec<_>>()[..]
        {
            [(_, true)] => {}
            [] => v.fail(format!("_sqlx_migrations has no row for version {version}")),
            [(_, false)] => v.fail(format!(
                "_sqlx_migrations records version {version} as failed (success = 0)"
            )),
            ref many => v.fail(format!(
                "_sqlx_migrations has {} rows for version {version}",
                many.len()
            )),
        }
    }
    v
}

fn plural_versions(versions: &[i64]) -> String {
    match versions {
        [] => String::new(),
        vs => format!(
            " ({})",
            vs.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// U-02: the old replicas kept serving: every request one of them accepted succeeded, before,
/// during and after the migration (`migration` names it in the verdict); and some were accepted
/// after it, or nothing was proven.
///
/// Not accepted: a refused connection, and one closed without any answer once the replica's
/// stop was issued (`stops`: replica name -> when `docker stop` was sent). Docker's userland
/// proxy accepts on the published port and then drops the connection the stopping api refuses,
/// so the client sees a reset instead of a refusal (seen in the breaking-migration recording).
pub fn old_replicas_kept_serving(
    replicas: &[Replica],
    requests: &[Request],
    migrated_at: Option<DateTime<Utc>>,
    migration: &str,
    stops: &BTreeMap<String, DateTime<Utc>>,
) -> Check {
    let mut v = Check::new("U-02", "old replicas kept serving");
    let side: BTreeMap<&str, Side> = replicas.iter().map(|r| (r.name.as_str(), r.side)).collect();
    let old: Vec<&Request> = requests
        .iter()
        .filter(|r| side.get(r.replica.as_str()) == Some(&Side::Old))
        .collect();
    let stopping =
        |r: &Request| r.status.is_none() && stops.get(&r.replica).is_some_and(|s| r.time >= *s);
    let accepted: Vec<&&Request> = old
        .iter()
        .filter(|r| !r.refused() && !stopping(r))
        .collect();
    let failed: Vec<&&&Request> = accepted.iter().filter(|r| !r.succeeded()).collect();
    let after = |r: &Request| migrated_at.is_some_and(|m| r.time >= m);
    let accepted_after = accepted.iter().filter(|r| after(r)).count();
    let failed_after = failed.iter().filter(|r| after(r)).count();
    let refused = old.len() - accepted.len();
    v.figure("old_requests_accepted", accepted.len() as f64);
    v.figure(
        "old_requests_accepted_after_migration",
        accepted_after as f64,
    );
    v.figure("old_requests_failed", failed.len() as f64);
    v.figure("old_requests_refused", refused as f64);
    let new_failed = requests
        .iter()
        .filter(|r| side.get(r.replica.as_str()) == Some(&Side::New))
        .filter(|r| !r.refused() && !r.succeeded())
        .count();
    v.figure("new_requests_failed", new_failed as f64);
    for r in failed.iter().take(20) {
        v.evidence.push(format!(
            "{} {} {} -> {}: {}",
            clock(r.time),
            r.replica,
            r.op,
            r.status.map_or("no answer".to_string(), |s| s.to_string()),
            r.detail
        ));
    }
    if failed.len() > 20 {
        v.evidence
            .push(format!("... and {} more", failed.len() - 20));
    }
    let Some(m) = migrated_at else {
        v.fail("no migration time: U-01 found no new replica that applied the migration");
        return v;
    };
    if !failed.is_empty() {
        v.fail(format!(
            "{} of {} requests accepted by old replicas failed ({} after the migration {migration} at {})",
            failed.len(),
            accepted.len(),
            failed_after,
            clock(m)
        ));
    } else if accepted_after == 0 {
        v.fail(format!(
            "no request reached an old replica after the migration at {}: nothing shows they kept serving",
            clock(m)
        ));
    } else {
        v.pass(format!(
            "{} requests accepted by old replicas, {} of them after the migration {migration} at {}, all succeeded; {} refused while stopping",
            accepted.len(),
            accepted_after,
            clock(m),
            refused
        ));
    }
    v
}

/// U-03: every new replica is running and healthy without a restart; every old replica exited
/// 0 on SIGTERM (137 means Docker had to SIGKILL it after the grace period).
pub fn replaced_cleanly(replicas: &[Replica]) -> Check {
    let mut v = Check::new("U-03", "new healthy, old exited 0");
    let (old, new): (Vec<&Replica>, Vec<&Replica>) =
        replicas.iter().partition(|r| r.side == Side::Old);
    v.figure("new_replicas", new.len() as f64);
    v.figure("old_replicas", old.len() as f64);
    if new.is_empty() {
        v.fail("no replica of the new version");
    }
    if old.is_empty() {
        v.fail("no replica of the old version: nothing was replaced");
    }
    for r in &new {
        let health = r.health.as_deref().unwrap_or("no healthcheck");
        if !r.running || health != "healthy" || r.restarts > 0 {
            v.fail(format!(
                "{} (new) is {}, {health}, {} restart{}",
                r.name,
                if r.running { "running" } else { "not running" },
                r.restarts,
                if r.restarts == 1 { "" } else { "s" }
            ));
        }
    }
    for r in &old {
        let lived = r.finished_at.map(|f| secs(r.started_at, f));
        v.evidence.push(format!(
            "{} (old) exit {}{}{}",
            r.name,
            r.exit_code,
            if r.oom_killed { ", OOM-killed" } else { "" },
            lived.map_or(String::new(), |s| format!(", ran {s:.1} s"))
        ));
        if r.running {
            v.fail(format!("{} (old) is still running", r.name));
        } else if r.oom_killed {
            v.fail(format!("{} (old) was OOM-killed", r.name));
        } else if r.exit_code == 137 {
            v.fail(format!(
                "{} (old) was SIGKILLed (exit 137): it did not stop within the grace period after SIGTERM",
                r.name
            ));
        } else if r.exit_code != 0 {
            v.fail(format!("{} (old) exited {}", r.name, r.exit_code));
        }
    }
    v.pass(format!(
        "{} new replicas healthy with no restart; {} old replicas exited 0 on SIGTERM",
        new.len(),
        old.len()
    ));
    v
}

/// U-04: a replica of the old version started on the upgraded schema becomes healthy, takes
/// the fast path, and serves every document.
pub fn rollback_starts(
    rollback: Option<&Replica>,
    startup: Option<&Startup>,
    reads: &[Read],
) -> Check {
    let mut v = Check::new("U-04", "rollback starts on the new schema");
    let Some(r) = rollback else {
        v.fail("no replica of the old version was started after the upgrade");
        return v;
    };
    let health = r.health.as_deref().unwrap_or("no healthcheck");
    if !r.running || health != "healthy" || r.restarts > 0 {
        v.fail(format!(
            "{} (old, rollback) is {}, {health}, {} restarts, exit {}",
            r.name,
            if r.running { "running" } else { "not running" },
            r.restarts,
            r.exit_code
        ));
    }
    match startup {
        None => v.fail(format!("{} has no start-up lines in the log", r.name)),
        Some(s) => {
            if let Some((_, line)) = s.timed_out.first() {
                v.fail(format!("{}: {line}", r.name));
            }
            if s.fast_path.is_empty() {
                v.fail(format!(
                    "{} did not take the fast path on the upgraded schema",
                    r.name
                ));
            }
            if !s.applied.is_empty() || !s.lock_acquired.is_empty() {
                v.fail(format!(
                    "{} took the migration lock or applied migrations on the upgraded schema",
                    r.name
                ));
            }
        }
    }
    let through: Vec<&Read> = reads.iter().filter(|x| x.through == r.name).collect();
    let bad: Vec<&&Read> = through.iter().filter(|x| !x.identical()).collect();
    v.figure("documents_read", through.len() as f64);
    for x in bad.iter().take(10) {
        v.evidence.push(describe_read(x));
    }
    if through.is_empty() {
        v.fail(format!("no document was read through {}", r.name));
    } else if !bad.is_empty() {
        v.fail(format!(
            "{} of {} documents read through {} (old, rollback) were not returned identical",
            bad.len(),
            through.len(),
            r.name
        ));
    }
    v.pass(format!(
        "{} (old) healthy on the upgraded schema via the fast path, served all {} documents identical",
        r.name,
        through.len()
    ));
    v
}

fn describe_read(x: &Read) -> String {
    format!(
        "{} stored by {} read through {}: {}",
        x.document,
        x.stored_by,
        x.through,
        match (x.status, x.identical()) {
            (Some(200), false) => "200 but different bytes".to_string(),
            (Some(s), _) => format!("status {s}"),
            (None, _) => format!("no answer ({})", x.error),
        }
    )
}

/// U-05: every document stored by one version is read back byte for byte through every replica
/// of the other version that the sweeps read through, and each document was read by at least one.
pub fn documents_cross_versions(replicas: &[Replica], reads: &[Read]) -> Check {
    let mut v = Check::new("U-05", "documents readable across versions");
    let side: BTreeMap<&str, Side> = replicas.iter().map(|r| (r.name.as_str(), r.side)).collect();
    let mut documents: BTreeMap<&str, (Side, usize)> = BTreeMap::new();
    let mut cross = 0;
    let mut bad = Vec::new();
    for x in reads {
        let (Some(&stored), Some(&through)) =
            (side.get(x.stored_by.as_str()), side.get(x.through.as_str()))
        else {
            v.fail(format!(
                "a read names a container that is not in the run: {} -> {}",
                x.stored_by, x.through
            ));
            continue;
        };
        let entry = documents.entry(x.document.as_str()).or_insert((stored, 0));
        if stored == through {
            continue;
        }
        cross += 1;
        if x.identical() {
            entry.1 += 1;
        } else {
            bad.push(x);
        }
    }
    let unread: Vec<(&str, Side)> = documents
        .iter()
        .filter(|(_, (_, n))| *n == 0)
        .map(|(id, (s, _))| (*id, *s))
        .collect();
    let by = |s: Side| documents.values().filter(|(x, _)| *x == s).count();
    v.figure("documents", documents.len() as f64);
    v.figure("cross_version_reads", cross as f64);
    v.figure("failed_reads", bad.len() as f64);
    for x in bad.iter().take(10) {
        v.evidence.push(describe_read(x));
    }
    if bad.len() > 10 {
        v.evidence.push(format!("... and {} more", bad.len() - 10));
    }
    if !bad.is_empty() {
        v.fail(format!(
            "{} of {cross} reads through a replica of the other version failed",
            bad.len()
        ));
    }
    for (id, s) in unread.iter().take(10) {
        v.fail(format!(
            "{id}, stored by the {} version, was never read back identical through the {} version",
            s.name(),
            s.other().name()
        ));
    }
    for s in [Side::Old, Side::New] {
        if by(s) == 0 {
            v.fail(format!(
                "no document stored by the {} version was read",
                s.name()
            ));
        }
    }
    v.pass(format!(
        "{} documents ({} stored by old, {} by new), {cross} reads through the other version, all identical",
        documents.len(),
        by(Side::Old),
        by(Side::New)
    ));
    v
}
