//! The parsers and checks on outputs recorded from real runs (`xtask/testdata/`), and, for
//! every check, broken cases (recorded, or derived from a recording) that make it FAIL with
//! the right message.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use super::checks::{self, HttpRead, SharedDataResult};
use crate::{
    log_contract as contract,
    stack::{
        errored_replica,
        parse::{self, Container, LogLine, Startup, WriteProbe},
        DbState, WaitOutcome,
    },
};

fn testdata(name: &str) -> String {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn healthy_ps() -> Vec<Container> {
    parse::ps(&testdata("ps-api-jsonlines.txt")).unwrap()
}

fn fresh_lines() -> Vec<LogLine> {
    parse::logs(&testdata("logs-fresh-database.txt"))
}

fn existing_lines() -> Vec<LogLine> {
    parse::logs(&testdata("logs-existing-database.txt"))
}

const ALL: [u32; 4] = [1, 2, 3, 4];
const VERSIONS: [i64; 2] = [20250101000001, 20250101000002];

fn good_records() -> Vec<(i64, bool)> {
    VERSIONS.iter().map(|v| (*v, true)).collect()
}

fn all_healthy() -> WaitOutcome {
    WaitOutcome::AllHealthy { seconds: 2.9 }
}

/// Moves every log line of one replica later by `secs`.
fn delay(lines: &[LogLine], replica: u32, secs: i64) -> Vec<LogLine> {
    lines
        .iter()
        .cloned()
        .map(|mut l| {
            if l.number == Some(replica) {
                l.time += TimeDelta::seconds(secs);
            }
            l
        })
        .collect()
}

// ---- parsers -------------------------------------------------------------------------------

#[test]
fn ps_json_lines_give_every_replica_with_its_number_state_and_health() {
    let ps = healthy_ps();
    assert_eq!(
        ps.iter().map(|c| c.number).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(
        ps.iter().all(|c| c.service == "api" && c.is_healthy()),
        "{ps:#?}"
    );
    assert_eq!(ps[0].label(), "api-1");
    assert_eq!(ps[0].id.len(), 64, "--no-trunc ids");
}

#[test]
fn ps_json_array_of_compose_before_2_21_gives_the_same_containers() {
    // Compose < 2.21 printed one array of the same objects.
    let lines = testdata("ps-api-jsonlines.txt");
    let array = format!("[{}]", lines.trim().lines().collect::<Vec<_>>().join(","));
    assert_eq!(parse::ps(&array).unwrap(), healthy_ps());
}

#[test]
fn ps_without_labels_takes_the_number_from_the_name() {
    let old = r#"[{"Name":"proj_api_3","Service":"api","State":"running","Health":"","ExitCode":0,"Publishers":null}]"#;
    let ps = parse::ps(old).unwrap();
    assert_eq!(ps[0].number, 3);
    assert!(!ps[0].is_healthy());
}

#[test]
fn ps_of_no_containers_is_empty_and_garbage_is_an_error() {
    assert!(parse::ps("").unwrap().is_empty());
    assert!(parse::ps("\n").unwrap().is_empty());
    assert!(parse::ps("not json").is_err());
}

#[test]
fn ps_shows_a_stopped_replica_as_exited() {
    let ps = parse::ps(&testdata("ps-api-one-exited.txt")).unwrap();
    let down: Vec<_> = ps
        .iter()
        .filter(|c| c.is_down())
        .map(|c| c.label())
        .collect();
    assert_eq!(down, vec!["api-4"]);
}

#[test]
fn the_db_container_is_parsed_too() {
    let ps = parse::ps(&testdata("ps-db-healthy.txt")).unwrap();
    assert_eq!(ps.len(), 1);
    assert_eq!((ps[0].service.as_str(), ps[0].is_healthy()), ("db", true));
}

#[test]
fn trailing_numbers_need_a_separator() {
    assert_eq!(parse::trailing_number("scaling-check-api-12"), Some(12));
    assert_eq!(parse::trailing_number("proj_api_3"), Some(3));
    assert_eq!(parse::trailing_number("api"), None);
    assert_eq!(parse::trailing_number("api2"), None);
}

#[test]
fn log_lines_are_split_on_the_first_bar_and_keep_dockers_timestamp() {
    let lines = fresh_lines();
    assert_eq!(lines.len(), 14);
    assert!(lines.iter().all(|l| l.number.is_some()));
    let first = &lines[0];
    assert_eq!(first.container, "api-4");
    assert_eq!(
        first
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "2026-11-28T16:47:55.477710165Z"
    );
    assert!(first.message.contains(contract::POOL_CREATED));
}

#[test]
fn compose_notices_and_blank_lines_are_not_log_lines() {
    let text = "api-1  | not-a-timestamp hello\nAttaching to api-1\n\napi-2  | 2026-11-28T16:05:07.608039868Z ok\n";
    let lines = parse::logs(text);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].message, "ok");
}

#[test]
fn the_fresh_run_has_one_leader_and_the_others_on_the_fast_path() {
    let s = parse::startups(&fresh_lines());
    assert_eq!(s.len(), 4);
    let leaders: Vec<u32> = s
        .iter()
        .filter(|(_, v)| !v.lock_acquired.is_empty())
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(leaders, vec![3]);
    assert_eq!(
        s[&3].applied.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(s[&3].lock_released.len(), 1);
    assert!(s
        .values()
        .all(|v| v.pool_created.len() == 1 && v.listening.len() == 1));
}

#[test]
fn the_contract_lines_are_what_the_patterns_find_in_a_line_as_the_api_prints_it() {
    // Every contract line, embedded the way tracing and `logs --timestamps` print it, is
    // recognised; this fails if the xtask's patterns and the contract drift apart.
    let mut text = String::new();
    for (i, line) in contract::ALL
        .iter()
        .chain([&contract::applied(3).as_str()])
        .enumerate()
    {
        text.push_str(&format!("api-1  | 2026-11-28T16:05:0{i}.000000000Z 2026-11-28T16:05:0{i}.000000Z  INFO api::migrate: {line} lock=abc\n"));
    }
    let s = &parse::startups(&parse::logs(&text))[&1];
    for (what, n) in [
        ("pool", s.pool_created.len()),
        ("fast", s.fast_path.len()),
        ("acquired", s.lock_acquired.len()),
        ("applied", s.applied.len()),
        ("waiting", s.waiting.len()),
        ("after wait", s.up_to_date_after_wait.len()),
        ("released", s.lock_released.len()),
        ("timed out", s.timed_out.len()),
        ("listening", s.listening.len()),
    ] {
        assert_eq!(n, 1, "{what}");
    }
    assert_eq!(s.applied[0].1, 3);
}

#[test]
fn probes_and_migration_rows_parse() {
    let p =
        parse::write_probe("uid=10001 gid=10001 owner=10001:10001 mode=750\nwrite=ok\n").unwrap();
    assert!(p.written && p.uid == "10001" && p.dir_owner == "10001:10001" && p.dir_mode == "750");
    let p = parse::write_probe("uid=10001 gid=10001 owner=0:0 mode=755\nwrite=failed sh: 1: cannot create /app/data/x: Permission denied\n").unwrap();
    assert!(!p.written);
    assert!(p.error.contains("Permission denied"));
    assert!(parse::write_probe("OCI runtime exec failed").is_err());
    assert_eq!(
        parse::read_probe("seen=1\nmissing=2\nseen=3\n"),
        (vec![1, 3], vec![2])
    );
    assert_eq!(
        parse::migration_rows("20250101000001\t1\n20250101000002\t0\n").unwrap(),
        vec![(20250101000001, true), (20250101000002, false)]
    );
    assert!(parse::migration_rows("x\t1").is_err());
    assert_eq!(
        parse::migration_versions([
            "20250101000002_index.sql",
            "20250101000001_create.sql",
            "README.md",
            "20250101000001_create.down.sql"
        ]),
        VERSIONS.to_vec()
    );
}

// ---- TEST-01 replicas ------------------------------------------------------------------------

#[test]
fn replicas_pass_when_all_are_healthy() {
    let c = checks::replicas(
        4,
        &healthy_ps(),
        &BTreeMap::new(),
        &all_healthy(),
        &BTreeMap::new(),
    );
    assert!(c.passed, "{c:#?}");
    assert!(c.summary.contains("4/4 healthy"), "{}", c.summary);
}

#[test]
fn replicas_fail_naming_a_stopped_replica_with_its_last_lines() {
    let ps = parse::ps(&testdata("ps-api-one-exited.txt")).unwrap();
    let last = BTreeMap::from([(4, vec!["16:47:55.479 Stopped".to_string()])]);
    let c = checks::replicas(4, &ps, &BTreeMap::new(), &all_healthy(), &last);
    assert!(!c.passed);
    assert!(
        c.summary.contains("api-4 is not healthy: state exited"),
        "{}",
        c.summary
    );
    assert!(
        c.evidence.iter().any(|l| l.contains("Stopped")),
        "{:#?}",
        c.evidence
    );
}

#[test]
fn replicas_fail_when_one_is_missing() {
    let ps: Vec<Container> = healthy_ps().into_iter().filter(|c| c.number != 2).collect();
    let c = checks::replicas(4, &ps, &BTreeMap::new(), &all_healthy(), &BTreeMap::new());
    assert!(!c.passed);
    assert!(
        c.summary.contains("3 api containers, expected 4"),
        "{}",
        c.summary
    );
}

#[test]
fn replicas_fail_when_one_is_unhealthy_or_restarted() {
    let mut ps = healthy_ps();
    ps[2].health = "unhealthy".into();
    let c = checks::replicas(
        4,
        &ps,
        &BTreeMap::new(),
        &WaitOutcome::Broken {
            seconds: 3.0,
            reason: "api-3 is unhealthy".into(),
        },
        &BTreeMap::new(),
    );
    assert!(!c.passed);
    assert!(c.summary.contains("api-3 is unhealthy"), "{}", c.summary);
    assert!(
        c.evidence
            .iter()
            .any(|l| l.contains("api-3: health unhealthy")),
        "{:#?}",
        c.evidence
    );

    let c = checks::replicas(
        4,
        &healthy_ps(),
        &BTreeMap::from([(1, 2)]),
        &all_healthy(),
        &BTreeMap::new(),
    );
    assert!(!c.passed);
    assert!(
        c.summary
            .contains("api-1 is not healthy: restarted 2 time(s)"),
        "{}",
        c.summary
    );
}

#[test]
fn replicas_fail_when_waiting_timed_out() {
    let mut ps = healthy_ps();
    ps[0].health = "starting".into();
    let c = checks::replicas(
        4,
        &ps,
        &BTreeMap::new(),
        &WaitOutcome::TimedOut { seconds: 180.0 },
        &BTreeMap::new(),
    );
    assert!(!c.passed);
    assert!(
        c.summary
            .contains("not all replicas were healthy after 180.0 s"),
        "{}",
        c.summary
    );
}

// ---- TEST-02 parallel startup ----------------------------------------------------------------

// Recorded from a real run with the database paused until all replicas ran (see
// `Stack::start_api_contended`); its release time is the one that run's report gave.
fn contended_lines() -> Vec<LogLine> {
    parse::logs(&testdata("logs-fresh-contended-n4.txt"))
}

/// The no-lock run's `docker inspect` (start times) and its logs: a real contended start.
type TimedRun = (
    BTreeMap<u32, Startup>,
    BTreeMap<u32, DateTime<Utc>>,
    DateTime<Utc>,
);

fn timed_run() -> TimedRun {
    let lines = parse::logs(&testdata("logs-fresh-no-lock-contended-n4.txt"));
    let started =
        crate::timeline::parse_inspect(&testdata("inspect-fresh-no-lock-contended-n4.txt"))
            .unwrap()
            .into_iter()
            .map(|c| (c.number, c.started_at.unwrap()))
            .collect();
    // That run's report: "released at 00:46:46.512".
    let released = "2026-11-29T00:46:46.512Z".parse().unwrap();
    (parse::startups(&lines), started, released)
}

#[test]
fn app_start_up_is_timed_from_the_release_and_dockers_stagger_is_apart() {
    let (s, started, released) = timed_run();
    let c = checks::startup_timing(&ALL, &s, &started, Some(released), 5.0);
    assert!(c.passed, "{c:#?}");
    // Docker started the four containers over 2 s; the app's own start-up is ~1 s.
    assert!(
        (c.figures["docker_stagger_s"] - 2.03).abs() < 0.01,
        "{c:#?}"
    );
    assert!(c.figures["app_startup_max_s"] < 1.2, "{c:#?}");
    assert!(c.summary.starts_with("app start-up max "), "{}", c.summary);
    // Timed from the container's start instead (no release known), api-1 waited 3 s+.
    let c = checks::startup_timing(&ALL, &s, &started, None, 2.0);
    assert!(!c.passed);
    assert!(c.summary.starts_with("api-1 took 3.2"), "{}", c.summary);
}

#[test]
fn a_16_replica_stagger_of_docker_passes_and_the_old_spread_rule_would_not() {
    // Recorded: 16 replicas on an existing database, started the usual way; Compose started
    // the containers over 8 s, each app was listening within 0.14 s of its container's start.
    let lines = parse::logs(&testdata("logs-existing-n16.txt"));
    let started = crate::timeline::parse_inspect(&testdata("inspect-existing-n16.txt"))
        .unwrap()
        .into_iter()
        .map(|c| (c.number, c.started_at.unwrap()))
        .collect();
    let all: Vec<u32> = (1..=16).collect();
    let c = checks::startup_timing(&all, &parse::startups(&lines), &started, None, 5.0);
    assert!(c.passed, "{c:#?}");
    assert!(c.figures["docker_stagger_s"] > 5.0, "{c:#?}");
    assert!(c.figures["ready_spread_s"] > 5.0, "{c:#?}");
    assert!(c.figures["app_startup_max_s"] < 1.0, "{c:#?}");
    // The same run's fresh scenario: 14 of 16 contended.
    let fresh = parse::startups(&parse::logs(&testdata("logs-fresh-contended-n16.txt")));
    let c = checks::migrations(
        DbState::FreshDatabase,
        &all,
        &fresh,
        &good_records(),
        &VERSIONS,
    );
    assert!(c.passed, "{c:#?}");
    assert_eq!(c.figures["contended"], 14.0);
}

#[test]
fn a_slow_replica_fails_on_its_own_start_up_not_on_the_spread() {
    let (s, started, released) = timed_run();
    let mut s = s;
    let late = s.get_mut(&2).unwrap();
    late.listening = vec![late.listening[0] + TimeDelta::seconds(7)];
    let c = checks::startup_timing(&ALL, &s, &started, Some(released), 5.0);
    assert!(!c.passed);
    assert!(
        c.summary.starts_with("api-2 took 7.") && c.summary.contains("more than 5 s"),
        "{}",
        c.summary
    );
    // The flag moves the limit.
    assert!(checks::startup_timing(&ALL, &s, &started, Some(released), 10.0).passed);
}

#[test]
fn a_35_second_gap_is_named_sequential() {
    // api-4 started 35 s after the others, as the late-replica fault does.
    let (s, mut started, released) = timed_run();
    let lines = delay(
        &parse::logs(&testdata("logs-fresh-no-lock-contended-n4.txt")),
        4,
        35,
    );
    *started.get_mut(&4).unwrap() += TimeDelta::seconds(35);
    let _ = s;
    let c = checks::startup_timing(
        &ALL,
        &parse::startups(&lines),
        &started,
        Some(released),
        5.0,
    );
    assert!(!c.passed);
    assert!(
        c.summary.starts_with("sequential start: a gap of 3"),
        "{}",
        c.summary
    );
    assert!(c.summary.contains("and api-4"), "{}", c.summary);
}

#[test]
fn a_replica_without_a_pool_line_or_a_start_time_fails() {
    let (mut s, mut started, released) = timed_run();
    s.get_mut(&2).unwrap().pool_created.clear();
    let c = checks::startup_timing(&ALL, &s, &started, Some(released), 5.0);
    assert!(!c.passed);
    assert_eq!(c.summary, "api-2 has no 'Database pool created' line");
    let (s, _, _) = timed_run();
    started.remove(&3);
    let c = checks::startup_timing(&ALL, &s, &started, Some(released), 5.0);
    assert_eq!(c.summary, "api-3: Docker reported no start time");
}

// ---- TEST-03 shared data ---------------------------------------------------------------------

fn probe(written: bool) -> WriteProbe {
    WriteProbe {
        uid: "10001".into(),
        gid: "10001".into(),
        dir_owner: if written { "10001:10001" } else { "0:0" }.into(),
        dir_mode: if written { "750" } else { "755" }.into(),
        written,
        error: if written {
            ""
        } else {
            "sh: 1: cannot create /app/data/.scaling-check-x-2: Permission denied"
        }
        .into(),
    }
}

fn all_wrote() -> Vec<SharedDataResult> {
    ALL.iter()
        .map(|n| SharedDataResult {
            number: *n,
            write: Ok(probe(true)),
            seen: ALL.to_vec(),
            missing: vec![],
            read_error: None,
        })
        .collect()
}

#[test]
fn shared_data_is_not_exercised_with_fewer_than_two_replicas() {
    for expected in [&[][..], &[1][..]] {
        let results: Vec<_> = all_wrote()
            .into_iter()
            .filter(|r| expected.contains(&r.number))
            .collect();
        let c = checks::shared_data(expected, &results, "/app/data");
        assert!(!c.passed, "{expected:?}: {c:?}");
        assert!(c.summary.contains("not exercised"), "{c:?}");
    }
}

#[test]
fn shared_data_passes_when_everyone_sees_everyone() {
    let c = checks::shared_data(&ALL, &all_wrote(), "/app/data");
    assert!(c.passed, "{c:#?}");
}

#[test]
fn a_failed_write_names_the_replica_the_uid_and_the_owner() {
    let mut results = all_wrote();
    results[1].write = Ok(probe(false));
    let c = checks::shared_data(&ALL, &results, "/app/data");
    assert!(!c.passed);
    assert!(
        c.summary.starts_with("api-2 cannot write to /app/data: running as uid 10001 gid 10001, /app/data is owned by 0:0 (mode 755)"),
        "{}",
        c.summary
    );
    assert!(c.summary.contains("Permission denied"));
}

#[test]
fn an_unwritable_directory_is_told_read_only_wrong_owner_or_wrong_mode() {
    // The probe's output as the real replicas printed it, one per cause.
    let read_only = parse::write_probe("uid=10001 gid=10001 owner=10001:10001 mode=755\nwrite=failed sh: 1: cannot create /app/data/.scaling-check-1: Read-only file system\n").unwrap();
    let cause = checks::unwritable_cause(&read_only, "/app/data");
    assert!(cause.contains("mounted read-only (EROFS)"), "{cause}");
    assert!(!cause.contains("chown"), "{cause}");
    let owner = parse::write_probe("uid=10001 gid=10001 owner=0:0 mode=755\nwrite=failed sh: 1: cannot create /app/data/.scaling-check-1: Permission denied\n").unwrap();
    let cause = checks::unwritable_cause(&owner, "/app/data");
    assert!(
        cause.contains("wrong owner") && cause.contains("chown -R 10001:10001"),
        "{cause}"
    );
    let mode = parse::write_probe("uid=10001 gid=10001 owner=10001:10001 mode=555\nwrite=failed sh: 1: cannot create /app/data/.scaling-check-1: Permission denied\n").unwrap();
    let cause = checks::unwritable_cause(&mode, "/app/data");
    assert!(
        cause.contains("wrong mode") && cause.contains("chmod"),
        "{cause}"
    );
    assert!(!cause.contains("chown"), "{cause}");
}

#[test]
fn a_replica_that_does_not_see_the_others_files_fails() {
    let mut results = all_wrote();
    results[0].seen = vec![1];
    results[0].missing = vec![2, 3, 4];
    let c = checks::shared_data(&ALL, &results, "/app/data");
    assert!(!c.passed);
    assert_eq!(
        c.summary,
        "api-1 does not see the files of api-2, api-3, api-4"
    );
}

#[test]
fn a_replica_that_could_not_be_probed_fails() {
    let mut results = all_wrote();
    results[3].write = Err("service \"api\" is not running container #4".into());
    let c = checks::shared_data(&ALL, &results, "/app/data");
    assert!(!c.passed);
    assert!(
        c.summary.contains("api-4 could not run the write probe"),
        "{}",
        c.summary
    );
}

// ---- TEST-04 migration coordination ------------------------------------------------------------

#[test]
fn concurrent_appliers_without_the_lock_are_named() {
    // Recorded with API_MIGRATION_LOCK=off under real contention (`--fault no-lock`).
    let lines = parse::logs(&testdata("logs-fresh-no-lock-contended-n4.txt"));
    let c = checks::migrations(
        DbState::FreshDatabase,
        &ALL,
        &parse::startups(&lines),
        &good_records(),
        &VERSIONS,
    );
    assert!(!c.passed);
    assert_eq!(
        c.summary,
        "4 replicas ran migrations at once (api-1: Applied 0 migrations, api-2: Applied 0 migrations, api-3: Applied 2 migrations, api-4: Applied 0 migrations), expected exactly one"
    );
    assert!(!c.evidence.iter().any(|l| l.contains("race not exercised")));
}

#[test]
fn a_follower_with_only_the_up_to_date_line_counts() {
    // api-3's first read landed inside the leader's migration and its next found the schema
    // current: it logs `Schema up to date after waiting` without `Waiting…`.
    let lines: Vec<LogLine> = contended_lines()
        .into_iter()
        .filter(|l| !(l.number == Some(3) && l.message.contains(contract::WAITING)))
        .collect();
    let c = checks::migrations(
        DbState::FreshDatabase,
        &ALL,
        &parse::startups(&lines),
        &good_records(),
        &VERSIONS,
    );
    assert!(c.passed, "{c:#?}");
    assert_eq!(
        c.summary,
        "4 of 4 replicas contended: leader api-1 applied 2 once; 2 waited, 3 followed; 0 fast path"
    );
    // Without the up-to-date line too, it did nothing the contract knows: FAIL.
    let lines: Vec<LogLine> = lines
        .into_iter()
        .filter(|l| !(l.number == Some(3) && l.message.contains(contract::UP_TO_DATE_AFTER_WAIT)))
        .collect();
    let c = checks::migrations(
        DbState::FreshDatabase,
        &ALL,
        &parse::startups(&lines),
        &good_records(),
        &VERSIONS,
    );
    assert!(!c.passed);
    assert_eq!(
        c.summary,
        "api-3 neither took the lock, nor applied, nor took the fast path, nor waited, nor followed"
    );
}

#[test]
fn migrations_pass_on_the_recorded_fresh_and_existing_runs() {
    let c = checks::migrations(
        DbState::FreshDatabase,
        &ALL,
        &parse::startups(&fresh_lines()),
        &good_records(),
        &VERSIONS,
    );
    // The seed's recording: api-3 migrated before the others even started, so nobody
    // contended. A lock that excludes nobody would look the same: FAIL.
    assert!(!c.passed);
    assert!(
        c.summary.starts_with("race not exercised: 1 replica(s)"),
        "{}",
        c.summary
    );
    assert!(
        c.summary.contains("fast path: api-1, api-2, api-4"),
        "{}",
        c.summary
    );
    let c = checks::migrations(
        DbState::FreshDatabase,
        &ALL,
        &parse::startups(&contended_lines()),
        &good_records(),
        &VERSIONS,
    );
    assert!(c.passed, "{c:#?}");
    assert_eq!(
        c.summary,
        "4 of 4 replicas contended: leader api-1 applied 2 once; 3 waited, 3 followed; 0 fast path"
    );
    assert_eq!(c.figures["contended"], 4.0);
    let c = checks::migrations(
        DbState::ExistingDatabase,
        &ALL,
        &parse::startups(&existing_lines()),
        &good_records(),
        &VERSIONS,
    );
    assert!(c.passed, "{c:#?}");
    assert_eq!(c.summary, "4 fast paths, no lock taken");
}

#[test]
fn two_lock_acquisitions_fail() {
    // api-2 also logs that it took the lock and applied (a broken lock).
    let mut lines = contended_lines();
    let extra: Vec<LogLine> = lines
        .iter()
        .filter(|l| {
            l.number == Some(1)
                && (l.message.contains(contract::LOCK_ACQUIRED) || l.message.contains("Applied"))
        })
        .cloned()
        .map(|mut l| {
            l.number = Some(2);
            l.container = "api-2".into();
            l
        })
        .collect();
    lines.extend(extra);
    let c = checks::migrations(
        DbState::FreshDatabase,
        &ALL,
        &parse::startups(&lines),
        &good_records(),
        &VERSIONS,
    );
    assert!(!c.passed);
    assert_eq!(
        c.summary,
        "2 replicas ran migrations at once (api-1: Applied 2 migrations, api-2: Applied 2 migrations), expected exactly one"
    );
    assert!(
        c.evidence.iter().any(|l| l
            == "the migration lock was acquired 2 times (by api-1, api-2), expected exactly once"),
        "{:#?}",
        c.evidence
    );
}

#[test]
fn several_appliers_without_a_lock_are_counted() {
    let mut s: BTreeMap<u32, Startup> = BTreeMap::new();
    let t = fresh_lines()[0].time;
    for n in ALL {
        s.entry(n).or_default().applied.push((t, 2));
    }
    let c = checks::migrations(DbState::FreshDatabase, &ALL, &s, &good_records(), &VERSIONS);
    assert!(!c.passed);
    assert!(
        c.summary.starts_with("4 replicas ran migrations at once"),
        "{}",
        c.summary
    );
    assert!(
        c.evidence
            .iter()
            .any(|l| l == "no replica acquired the migration lock on a fresh database"),
        "{:#?}",
        c.evidence
    );
    assert!(
        c.evidence
            .iter()
            .any(|l| l.contains("applied by: api-1 (2), api-2 (2)")),
        "{:#?}",
        c.evidence
    );
}

#[test]
fn the_fresh_run_judged_as_existing_fails_and_the_existing_run_judged_as_fresh_fails() {
    let c = checks::migrations(
        DbState::ExistingDatabase,
        &ALL,
        &parse::startups(&fresh_lines()),
        &good_records(),
        &VERSIONS,
    );
    assert!(!c.passed);
    assert!(
        c.summary
            .contains("on an existing database api-3 took the migration lock"),
        "{}",
        c.summary
    );
    let c = checks::migrations(
        DbState::FreshDatabase,
        &ALL,
        &parse::startups(&existing_lines()),
        &good_records(),
        &VERSIONS,
    );
    assert!(!c.passed);
}

#[test]
fn the_database_record_must_have_each_version_once_and_successful() {
    let s = parse::startups(&contended_lines());
    let mut twice = good_records();
    twice.push((VERSIONS[0], true));
    let c = checks::migrations(DbState::FreshDatabase, &ALL, &s, &twice, &VERSIONS);
    assert_eq!(
        c.summary,
        format!("_sqlx_migrations has 2 rows for version {}", VERSIONS[0])
    );
    let failed = vec![(VERSIONS[0], true), (VERSIONS[1], false)];
    let c = checks::migrations(DbState::FreshDatabase, &ALL, &s, &failed, &VERSIONS);
    assert!(
        c.summary.contains("as failed (success = 0)"),
        "{}",
        c.summary
    );
    let c = checks::migrations(DbState::FreshDatabase, &ALL, &s, &[], &VERSIONS);
    assert!(
        c.summary.contains("has no row for version"),
        "{}",
        c.summary
    );
}

#[test]
fn a_timed_out_replica_is_quoted() {
    let mut lines = existing_lines();
    let mut timeout = lines[0].clone();
    timeout.message = format!("ERROR api::migrate: {} lock=3027310f4fd382c2 holder=17 pending=[20250101000001] waited=10.0s", contract::TIMED_OUT);
    lines.push(timeout.clone());
    let c = checks::migrations(
        DbState::ExistingDatabase,
        &ALL,
        &parse::startups(&lines),
        &good_records(),
        &VERSIONS,
    );
    assert!(!c.passed);
    assert!(
        c.summary.contains(contract::TIMED_OUT) && c.summary.contains("lock=3027310f4fd382c2"),
        "{}",
        c.summary
    );
}

// ---- cross-replica HTTP ------------------------------------------------------------------------

#[test]
fn http_passes_when_every_replica_serves_identical_bytes_and_fails_otherwise() {
    let body = b"hello".to_vec();
    let ok = |n| HttpRead {
        number: n,
        result: Ok((200, body.clone())),
    };
    let stored = Ok("{\"id\":\"x\"}".to_string());
    assert!(checks::cross_replica_http(1, &stored, &body, &ALL.map(ok), &ALL).passed);

    let mut reads = ALL.map(ok).to_vec();
    reads[2] = HttpRead {
        number: 3,
        result: Ok((200, b"hellO".to_vec())),
    };
    let c = checks::cross_replica_http(1, &stored, &body, &reads, &ALL);
    assert_eq!(
        c.summary,
        "api-3 served 5 bytes that differ from the 5 bytes stored"
    );

    reads[2] = HttpRead {
        number: 3,
        result: Ok((404, vec![])),
    };
    assert_eq!(
        checks::cross_replica_http(1, &stored, &body, &reads, &ALL).summary,
        "api-3 answered 404"
    );

    let c = checks::cross_replica_http(1, &Err("503 not ready".into()), &body, &[], &ALL);
    assert_eq!(
        c.summary,
        "storing a document through api-1 failed: 503 not ready"
    );
}

// ---- fail-fast while waiting ---------------------------------------------------------------------

#[test]
fn an_unhealthy_replica_that_logged_an_error_stops_the_wait() {
    let mut ps = healthy_ps();
    ps[1].health = "starting".into();
    let mut lines = fresh_lines();
    let mut error = lines.iter().find(|l| l.number == Some(2)).unwrap().clone();
    error.message =
        "2026-11-28T16:47:55Z ERROR api::startup: data directory /app/data is not writable".into();
    lines.push(error.clone());
    // Just logged: give it a moment.
    assert_eq!(errored_replica(&lines, &ps), None);
    // Echoes of the failure keep coming (failed probes logged as errors every second): the
    // first error still counts, and it is the one quoted.
    for i in 1..=6 {
        let mut echo = error.clone();
        echo.time = error.time + TimeDelta::seconds(i);
        echo.message =
            "2026-11-28T16:47:56Z ERROR tower_http::trace::on_failure: response failed 503".into();
        lines.push(echo);
    }
    let reason = errored_replica(&lines, &ps).unwrap();
    assert!(
        reason.starts_with("api-2 is not healthy and logged:") && reason.contains("not writable"),
        "{reason}"
    );
    // A healthy replica's old error is no reason to stop.
    assert_eq!(errored_replica(&lines, &healthy_ps()), None);
}

// ---- TEST-05 database capacity -----------------------------------------------------------------

#[test]
fn capacity_fits_or_fails_with_the_numbers_and_the_fix() {
    // `SELECT @@max_connections, COUNT(*) FROM information_schema.PROCESSLIST` as the real
    // server printed it (-N -B), and a replica's environment.
    assert_eq!(parse::two_numbers("151\t9\n"), Some((151, 9)));
    assert_eq!(parse::two_numbers("garbage"), None);
    assert_eq!(
        parse::pool_size_from_env("PATH=/usr/bin\nAPI_DB_POOL_SIZE=8\nDB_HOST=db\n"),
        Some(8)
    );
    assert_eq!(parse::pool_size_from_env("PATH=/usr/bin\n"), None);
    let c = checks::capacity(16, 5, 151, 20);
    assert!(c.passed, "{c:#?}");
    assert_eq!(c.figures["connections_needed"], 98.0);
    let c = checks::capacity(32, 5, 151, 40);
    assert!(!c.passed);
    assert!(
        c.summary.starts_with("32 replicas × (5 pooled + 1) + 2 = 194 connections, but the server's max_connections is 151")
            && c.summary.contains("fix: raise max_connections to at least 194"),
        "{}",
        c.summary
    );
    let c = checks::capacity(4, 5, 10, 9);
    assert!(!c.passed);
    assert!(c.summary.contains("max_connections is 10"), "{}", c.summary);
}

// ---- --repeat ---------------------------------------------------------------------------------

#[test]
fn repeated_runs_count_passes_and_give_min_median_max_per_figure() {
    use super::{report::Report, ScenarioResult};
    let report = |contended: f64, passed: bool| {
        let mut c = checks::capacity(4, 5, if passed { 300 } else { 10 }, 9);
        c.figures.insert("contended".into(), contended);
        Report {
            engine: "compose",
            replicas: 4,
            max_startup: 5.0,
            fault: None,
            images: vec![],
            scenarios: vec![ScenarioResult {
                scenario: DbState::FreshDatabase,
                checks: vec![c],
                timing: Some(super::report::Timing {
                    docker_s: 6.0,
                    check_s: 0.4,
                }),
            }],
            error: None,
            seconds: 30.0 + contended,
            checkout: String::new(),
            ignored_env: vec![],
            nodes: 0,
            shared_data: None,
            cluster_s: None,
        }
    };
    let runs = [report(4.0, true), report(2.0, false), report(3.0, true)];
    let r = super::report::Repeated::of(&runs);
    assert_eq!((r.runs, r.passed), (3, 2));
    assert_eq!(r.figures["fresh TEST-05 contended"], (2.0, 3.0, 4.0, 3));
    assert_eq!(r.figures["run seconds"], (32.0, 33.0, 34.0, 3));
    assert_eq!(r.failures.len(), 1);
    assert!(
        r.failures[0].starts_with("run 2: TEST-05"),
        "{:?}",
        r.failures
    );
}

// ---- fail fast on Docker's health log -----------------------------------------------------------

#[test]
fn probes_failing_while_the_app_listens_stop_the_wait() {
    // A real pair: the no-lock run's health log and logs, every probe after listening passed.
    let (s, _, _) = timed_run();
    let mut times =
        parse::parse_inspect(&testdata("inspect-fresh-no-lock-contended-n4.txt")).unwrap();
    assert_eq!(crate::stack::failing_probes(&times, &s), None);
    // api-3's last two probes fail, as a probe that cannot reach /readyz does.
    let c = times.iter_mut().find(|c| c.number == 3).unwrap();
    let n = c.probes.len();
    assert!(n >= 2);
    for p in &mut c.probes[n - 2..] {
        p.exit_code = 1;
        p.output = "healthcheck: GET /readyz: 503 not_ready\n".into();
    }
    let reason = crate::stack::failing_probes(&times, &s).unwrap();
    assert!(
        reason.starts_with("api-3 has been listening since ")
            && reason.ends_with("its last 2 health probes failed (Docker's health log): exit 1: healthcheck: GET /readyz: 503 not_ready"),
        "{reason}"
    );
    // One failed probe is not yet a verdict.
    let c = times.iter_mut().find(|c| c.number == 3).unwrap();
    c.probes[n - 2].exit_code = 0;
    assert_eq!(crate::stack::failing_probes(&times, &s), None);
}

#[test]
fn scenarios_run_in_their_order_and_existing_needs_fresh() {
    use super::{parse_scenarios, Fault, SCENARIOS};
    assert_eq!(
        parse_scenarios("upgrade, fresh").unwrap(),
        [DbState::FreshDatabase, DbState::Upgrade]
    );
    assert_eq!(
        parse_scenarios("fresh,existing,upgrade").unwrap(),
        SCENARIOS
    );
    assert_eq!(parse_scenarios("upgrade").unwrap(), [DbState::Upgrade]);
    for bad in ["existing", "upgrade,existing", "", "fresh,sideways"] {
        let e = parse_scenarios(bad).unwrap_err().to_string();
        assert!(e.starts_with("--scenarios"), "{bad}: {e}");
    }
    assert_eq!(Fault::BreakingMigration.scenario(), DbState::Upgrade);
    assert_eq!(Fault::LockHeld.scenario(), DbState::FreshDatabase);
}

#[test]
fn each_scenario_reports_dockers_time_and_the_checks_own_against_its_budget() {
    let within = super::report::Timing {
        docker_s: 6.04,
        check_s: 0.41,
    };
    assert_eq!(
        within.line(),
        "Docker 6.0 s, the check's own 0.41 s (within 0.5 s)"
    );
    let over = super::report::Timing {
        docker_s: 6.0,
        check_s: 1.7,
    };
    assert!(
        over.line().contains("1.70 s (over 0.5 s)"),
        "{}",
        over.line()
    );
}

/// `Stack::http_routes` on Compose: one `docker inspect` of four replicas' published port.
#[test]
fn published_addresses_from_a_recorded_inspect() {
    let routes = parse::published_addresses(&testdata("inspect-api-ports-n4.txt"));
    assert_eq!(routes.len(), 4);
    assert_eq!(
        routes["6f9ac46dbe761fc217f75ab6912e65bb98f6f41f213274d9d36e1d7771049526"],
        "127.0.0.1:33322".parse().unwrap()
    );
    assert_eq!(
        routes["b01bcc27b85cd68c7fc2afaad7823373aa3551248f62fc86946396a3043f10ae"],
        "127.0.0.1:33325".parse().unwrap()
    );
    // A container without the binding (stopped) has no route, rather than a wrong one.
    assert!(parse::published_addresses("0123abcd \n").is_empty());
}

/// TEST-04's and TEST-05's database figures from one `-N -B` exec: the capacity row, then
/// the migration rows; before the first migration, the capacity row and the client's error.
#[test]
fn db_facts_split_capacity_from_migration_rows() {
    let facts =
        crate::stack::db::db_facts("300\t12\n20240101000000\t1\n20240102000000\t0\n", "", true)
            .unwrap();
    assert_eq!((facts.max_connections, facts.open_now), (300, 12));
    assert_eq!(
        facts.records,
        vec![(20240101000000, true), (20240102000000, false)]
    );
    let none = crate::stack::db::db_facts(
        "151\t3\n",
        "ERROR 1146 (42S02) at line 1: Table 'app._sqlx_migrations' doesn't exist",
        false,
    )
    .unwrap();
    assert!(none.records.is_empty());
    assert!(crate::stack::db::db_facts("151\t3\n", "ERROR 1045: Access denied", false).is_err());
    assert!(crate::stack::db::db_facts("", "ERROR 2002: no server", false).is_err());
}

#[test]
fn swarm_runs_fresh_and_existing_by_default_and_refuses_the_upgrade_before_starting() {
    use super::{default_scenarios, Options, SCENARIOS};
    use crate::stack::EngineKind;
    assert_eq!(default_scenarios(EngineKind::Compose), SCENARIOS);
    assert_eq!(
        default_scenarios(EngineKind::Swarm),
        [DbState::FreshDatabase, DbState::ExistingDatabase]
    );
    // `Options::default()` with only the engine changed (what `cargo xtask test`'s Swarm stage
    // once built) is refused up front rather than failing in the middle of the run.
    let swarm = Options {
        engine: EngineKind::Swarm,
        ..Options::default()
    };
    let e = swarm.validate().unwrap_err().to_string();
    assert!(e.contains("not available with --engine swarm"), "{e}");
    let ok = Options {
        engine: EngineKind::Swarm,
        scenarios: default_scenarios(EngineKind::Swarm),
        ..Options::default()
    };
    assert!(ok.validate().is_ok());
}
