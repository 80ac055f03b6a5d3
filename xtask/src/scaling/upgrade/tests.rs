//! Tests of the upgrade judges on the runs recorded in xtask/testdata/upgrade/ (made with its
//! `record.py`): the real run passes every check, and each check fails on a broken case.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::facts::{self, Read, Replica, Request, Side};
use super::judge;
use crate::scaling::checks::Check;
use crate::stack::parse::{self, Startup};

const OLD_IMAGE: &str = "localhost/scaling-api:prev-db489f1";
const NEW_VERSIONS: &[i64] = &[20250101000003];
/// The fault's build adds a migration that renames `documents.stored_by`.
const BREAKING_VERSIONS: &[i64] = &[20250101000003, 20250101000004];

fn roll_started_versions(run: &str) -> &'static [i64] {
    if run == "breaking-migration" {
        BREAKING_VERSIONS
    } else {
        NEW_VERSIONS
    }
}

fn testdata(run: &str, file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/upgrade")
        .join(run)
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One recorded run, parsed as the scenario will parse it.
struct Run {
    replicas: Vec<Replica>,
    /// Start-up lines of the roll (old and new replicas).
    roll: BTreeMap<u32, Startup>,
    /// Start-up lines after the rollback replica started.
    rollback: BTreeMap<u32, Startup>,
    rows: Vec<(i64, bool)>,
    requests: Vec<Request>,
    reads: Vec<Read>,
    roll_started: DateTime<Utc>,
    /// When `docker stop` was sent to each old replica.
    stops: BTreeMap<String, DateTime<Utc>>,
    /// The migrations the roll applied, as the verdict names them.
    migration: String,
    /// Their versions.
    versions: &'static [i64],
}

impl Run {
    fn load(name: &str) -> Run {
        let steps = testdata(name, "steps.tsv");
        let steps: Vec<(DateTime<Utc>, &str)> = steps
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(t, what)| {
                let t = DateTime::parse_from_rfc3339(t).unwrap();
                (t.with_timezone(&Utc), what)
            })
            .collect();
        let roll_started = steps
            .iter()
            .find(|(_, what)| what.starts_with("roll new in"))
            .map(|(t, _)| *t)
            .expect("steps.tsv has the roll's start");
        let stops = steps
            .iter()
            .filter_map(|(t, what)| {
                let name = what.strip_prefix("docker stop ")?;
                Some((facts::replica_name(name), *t))
            })
            .collect();
        let rows = testdata(name, "migrations.tsv");
        let migration = facts::migration_names(&rows, roll_started_versions(name))
            .unwrap()
            .join(", ");
        Run {
            replicas: facts::replicas(&testdata(name, "inspect.json"), OLD_IMAGE).unwrap(),
            roll: parse::startups(&parse::logs(&testdata(name, "logs-roll.txt"))),
            rollback: parse::startups(&parse::logs(&testdata(name, "logs-rollback.txt"))),
            rows: facts::migration_rows(&rows).unwrap(),
            requests: facts::requests(&testdata(name, "requests.tsv")).unwrap(),
            reads: facts::reads(&testdata(name, "reads.tsv")).unwrap(),
            roll_started,
            stops,
            migration,
            versions: roll_started_versions(name),
        }
    }

    /// Old and new replicas of the roll: every container but the rollback one.
    fn rolled(&self) -> Vec<Replica> {
        let rollback = self.rollback_replica().map(|r| r.number);
        self.replicas
            .iter()
            .filter(|r| Some(r.number) != rollback)
            .cloned()
            .collect()
    }

    /// The old-version replica started after the roll.
    fn rollback_replica(&self) -> Option<&Replica> {
        self.replicas
            .iter()
            .find(|r| r.side == Side::Old && r.started_at > self.roll_started)
    }

    /// The new replica that applied the migration in the recording.
    fn applier(&self) -> String {
        let (number, _) = self
            .roll
            .iter()
            .find(|(_, s)| s.applied.iter().any(|(t, _)| *t >= self.roll_started))
            .expect("a replica applied the new migration");
        format!("api-{number}")
    }

    fn number_of(&self, name: &str) -> u32 {
        name.trim_start_matches("api-").parse().unwrap()
    }

    fn migrated_at(&self) -> Option<DateTime<Utc>> {
        judge::migration_time(&self.rolled(), &self.roll, self.roll_started)
    }

    fn u01(&self) -> Check {
        judge::migration_applied_once(
            &self.rolled(),
            &self.roll,
            &self.rows,
            self.versions,
            self.roll_started,
        )
    }

    fn u02(&self) -> Check {
        judge::old_replicas_kept_serving(
            &self.rolled(),
            &self.requests,
            self.migrated_at(),
            &self.migration,
            &self.stops,
        )
    }

    fn u04(&self) -> Check {
        let r = self.rollback_replica();
        judge::rollback_starts(r, r.and_then(|r| self.rollback.get(&r.number)), &self.reads)
    }

    fn u05(&self) -> Check {
        judge::documents_cross_versions(&self.replicas, &self.reads)
    }
}

fn show(v: &Check) -> String {
    format!(
        "{} {}: {}\n{}",
        v.id,
        v.passed,
        v.summary,
        v.evidence.join("\n")
    )
}

#[test]
fn the_recorded_evidence_parses_into_two_old_two_new_and_one_rollback_replica() {
    let run = Run::load("pass");
    let mut sides: Vec<(String, Side)> = run
        .replicas
        .iter()
        .map(|r| (r.name.clone(), r.side))
        .collect();
    sides.sort();
    assert_eq!(
        sides,
        [
            ("api-1".into(), Side::Old),
            ("api-2".into(), Side::Old),
            ("api-3".into(), Side::New),
            ("api-4".into(), Side::New),
            ("api-5".into(), Side::Old),
        ]
    );
    assert_eq!(run.rollback_replica().unwrap().name, "api-5");
    assert!(run.replicas[0].finished_at.is_some());
    assert!(
        run.replicas[4].finished_at.is_none(),
        "docker's year 1 is 'not yet'"
    );
    assert_eq!(
        run.rows,
        [
            (20250101000001, true),
            (20250101000002, true),
            (20250101000003, true)
        ]
    );
    assert!(run.requests.iter().any(Request::refused));
    assert_eq!(facts::replica_name("scaling-check-api-12"), "api-12");
}

#[test]
fn every_upgrade_check_passes_on_the_recorded_rolling_deploy() {
    let run = Run::load("pass");
    let verdicts = [
        run.u01(),
        run.u02(),
        judge::replaced_cleanly(&run.rolled()),
        run.u04(),
        run.u05(),
    ];
    for v in &verdicts {
        assert!(v.passed, "{}", show(v));
    }
    let u01 = &verdicts[0];
    assert!(
        u01.summary.starts_with(&format!(
            "{} applied 1 migration under the lock at",
            run.applier()
        )) && u01
            .summary
            .ends_with("while 2 old replicas served (api-2, api-1)"),
        "{}",
        u01.summary
    );
    assert!(verdicts[1].figures["old_requests_accepted_after_migration"] > 0.0);
    assert_eq!(verdicts[1].figures["old_requests_refused"], 6.0);
    assert_eq!(verdicts[1].figures["new_requests_failed"], 0.0);
    assert!(verdicts[4].figures["cross_version_reads"] > 100.0);
    assert_eq!((verdicts[0].id, verdicts[0].passed), ("U-01", true));
}

#[test]
fn u01_fails_when_two_new_replicas_apply_the_migration() {
    let mut run = Run::load("pass");
    let t = run.migrated_at().unwrap() + Duration::milliseconds(300);
    let applier = run.number_of(&run.applier());
    let other = if applier == 3 { 4 } else { 3 };
    let second = run.roll.get_mut(&other).unwrap();
    second.lock_acquired.push(t);
    second.applied.push((t, 1));
    let v = run.u01();
    assert!(!v.passed);
    assert!(
        v.summary == "2 replicas applied migrations during the roll (api-3, api-4), expected exactly one"
            || v.summary == "2 replicas applied migrations during the roll (api-4, api-3), expected exactly one",
        "{}",
        show(&v)
    );
    assert!(v
        .evidence
        .iter()
        .any(|e| e.contains("lock was taken 2 times")));
}

#[test]
fn u01_fails_when_an_old_replica_applies_or_no_old_replica_was_serving() {
    let mut run = Run::load("pass");
    // The roll did not overlap: the old replicas were gone before the migration.
    let before = run.migrated_at().unwrap() - Duration::seconds(1);
    for r in run.replicas.iter_mut().filter(|r| r.side == Side::Old) {
        r.finished_at = Some(before);
    }
    let v = run.u01();
    assert!(!v.passed);
    assert!(
        v.summary.contains("the roll did not overlap"),
        "{}",
        show(&v)
    );

    let mut run = Run::load("pass");
    let t = run.roll_started + Duration::seconds(1);
    let applier = run.number_of(&run.applier());
    let new = run.roll.get_mut(&applier).unwrap();
    new.applied.clear();
    new.lock_acquired.clear();
    let api1 = run.roll.get_mut(&1).unwrap();
    api1.lock_acquired.push(t);
    api1.applied.push((t, 1));
    let v = run.u01();
    assert!(!v.passed);
    assert_eq!(
        v.summary,
        "api-1 of the OLD version applied 1 migrations during the roll",
        "{}",
        show(&v)
    );
}

#[test]
fn u01_fails_when_the_new_version_is_missing_from_sqlx_migrations() {
    let mut run = Run::load("pass");
    run.rows.pop();
    let v = run.u01();
    assert!(!v.passed);
    assert_eq!(
        v.summary,
        "_sqlx_migrations has no row for version 20250101000003"
    );
}

#[test]
fn u02_fails_on_a_failed_request_of_an_old_replica_after_the_migration() {
    let mut run = Run::load("pass");
    let m = run.migrated_at().unwrap();
    let late = run
        .requests
        .iter_mut()
        .find(|r| r.replica == "api-1" && r.time > m && r.succeeded())
        .unwrap();
    late.status = Some(500);
    late.detail = r#"{"error":{"code":"internal"}}"#.into();
    let v = run.u02();
    assert!(!v.passed);
    assert!(
        v.summary.starts_with("1 of ")
            && v.summary
                .contains("(1 after the migration 20250101000003 create document labels at"),
        "{}",
        show(&v)
    );
    assert!(v.evidence[0].contains("api-1") && v.evidence[0].contains("-> 500"));
}

#[test]
fn u02_fails_when_no_old_replica_was_asked_anything_after_the_migration() {
    let mut run = Run::load("pass");
    let m = run.migrated_at().unwrap();
    let old = ["api-1", "api-2"];
    run.requests
        .retain(|r| !(old.contains(&r.replica.as_str()) && r.time >= m));
    let v = run.u02();
    assert!(!v.passed);
    assert!(v
        .summary
        .starts_with("no request reached an old replica after the migration"));
}

#[test]
fn u03_fails_when_an_old_replica_was_sigkilled_or_a_new_one_is_unhealthy() {
    let run = Run::load("pass");
    let mut replicas = run.rolled();
    let old = replicas.iter_mut().find(|r| r.name == "api-1").unwrap();
    old.exit_code = 137;
    let v = judge::replaced_cleanly(&replicas);
    assert!(!v.passed);
    assert_eq!(
        v.summary,
        "api-1 (old) was SIGKILLed (exit 137): it did not stop within the grace period after SIGTERM"
    );

    let mut replicas = run.rolled();
    let new = replicas.iter_mut().find(|r| r.name == "api-4").unwrap();
    new.health = Some("unhealthy".into());
    new.restarts = 1;
    let v = judge::replaced_cleanly(&replicas);
    assert!(!v.passed);
    assert_eq!(v.summary, "api-4 (new) is running, unhealthy, 1 restart");
}

#[test]
fn u04_fails_when_the_rollback_replica_is_unhealthy_or_missing() {
    let mut run = Run::load("pass");
    let number = run.rollback_replica().unwrap().number;
    let r = run
        .replicas
        .iter_mut()
        .find(|r| r.number == number)
        .unwrap();
    r.running = false;
    r.health = Some("unhealthy".into());
    r.exit_code = 1;
    let timed_out = "Timed out waiting for schema migration".to_string();
    run.rollback
        .get_mut(&number)
        .unwrap()
        .timed_out
        .push((run.roll_started, timed_out));
    let v = run.u04();
    assert!(!v.passed);
    assert_eq!(
        v.summary,
        "api-5 (old, rollback) is not running, unhealthy, 0 restarts, exit 1"
    );
    assert!(v.evidence.iter().any(|e| e.contains("Timed out waiting")));

    let v = judge::rollback_starts(None, None, &[]);
    assert!(!v.passed);
}

#[test]
fn u05_fails_when_a_document_is_unreadable_through_the_other_version() {
    let mut run = Run::load("pass");
    let x = run
        .reads
        .iter_mut()
        .find(|x| x.stored_by == "api-3" && x.through == "api-5")
        .unwrap();
    x.status = Some(404);
    x.got = None;
    let id = x.document.clone();
    let v = run.u05();
    assert!(!v.passed);
    assert!(v.summary.starts_with("1 of "), "{}", show(&v));
    assert_eq!(
        v.evidence[0],
        format!("{id} stored by api-3 read through api-5: status 404")
    );

    // Different bytes with a 200 fail too.
    let mut run = Run::load("pass");
    let x = run
        .reads
        .iter_mut()
        .find(|x| x.stored_by == "api-1" && x.through == "api-3")
        .unwrap();
    x.got = Some("0".repeat(64));
    let v = run.u05();
    assert!(!v.passed);
    assert!(v.evidence[0].ends_with("200 but different bytes"));
}

#[test]
fn the_breaking_migration_recording_fails_u02_with_the_old_replicas_failed_requests() {
    let run = Run::load("breaking-migration");
    // The new replicas are fine: one applied both migrations under the lock, mid-roll.
    let u01 = run.u01();
    assert!(u01.passed, "{}", show(&u01));
    assert!(u01.summary.contains("applied 2 migrations under the lock"));

    let u02 = run.u02();
    assert!(!u02.passed);
    assert!(
        u02.summary.contains(
            "after the migration 20250101000003 create document labels, \
             20250101000004 rename documents stored by at"
        ),
        "{}",
        show(&u02)
    );
    assert_eq!(u02.figures["old_requests_failed"], 228.0, "{}", show(&u02));
    assert_eq!(
        u02.figures["old_requests_failed"],
        u02.figures["old_requests_accepted_after_migration"]
    );
    assert_eq!(u02.figures["new_requests_failed"], 0.0);
    assert!(
        u02.evidence[0].contains("-> 500: {\"error\":{\"code\":\"internal\""),
        "{}",
        u02.evidence[0]
    );
    assert_eq!(u02.evidence.last().unwrap(), "... and 208 more");

    // The rollback replica turns healthy (readiness does not query documents) but cannot serve.
    let u04 = run.u04();
    assert!(!u04.passed);
    assert!(
        u04.summary.contains("were not returned identical"),
        "{}",
        show(&u04)
    );
    assert!(!run.u05().passed);
}

#[test]
fn a_reset_from_a_replica_being_stopped_is_a_refusal_but_not_before_its_stop() {
    let run = Run::load("breaking-migration");
    let reset = run
        .requests
        .iter()
        .find(|r| r.status.is_none() && r.detail.starts_with("RemoteDisconnected"))
        .expect("the recording has a reset from api-1 while it stopped");
    assert!(reset.time >= run.stops["api-1"]);
    let mut early = run.stops.clone();
    early.insert("api-1".into(), reset.time + Duration::seconds(1));
    let v = judge::old_replicas_kept_serving(
        &run.rolled(),
        &run.requests,
        run.migrated_at(),
        &run.migration,
        &early,
    );
    // The reset and the two resets after it now count as failed accepted requests.
    assert_eq!(
        v.figures["old_requests_failed"] - run.u02().figures["old_requests_failed"],
        3.0,
        "{}",
        show(&v)
    );
}
