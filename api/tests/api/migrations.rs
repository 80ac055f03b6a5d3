//! Migration coordination against a real server: races, fast path, takeover, timeout, errors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::configuration::MigrationLock;
use api::log_contract::{
    applied, FAST_PATH, LOCK_ACQUIRED, LOCK_RELEASED, TIMED_OUT, UP_TO_DATE_AFTER_WAIT, WAITING,
};
use api::migrate::{CoordinateError, Role};
use sqlx::Connection;

use crate::helpers::{
    coordinate_once, migration_settings, race, real_migrations, slow_migrations, TestDb,
};

fn roles(outcomes: &[crate::helpers::Coordinated]) -> Vec<Role> {
    outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(report) => report.role,
            Err(e) => panic!("a coordinator failed: {e}\n{}", o.logs.text()),
        })
        .collect()
}

async fn holder(conn: &mut sqlx::MySqlConnection, lock: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT CAST(IS_USED_LOCK(?) AS SIGNED)")
        .bind(lock)
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_coordinators_race_on_a_fresh_database_and_exactly_one_applies() {
    let db = TestDb::create().await;
    let outcomes = race(
        &db,
        8,
        real_migrations,
        migration_settings(Duration::from_secs(20), MigrationLock::On),
    )
    .await;

    let roles = roles(&outcomes);
    eprintln!("roles: {roles:?}");
    let leaders: Vec<_> = outcomes
        .iter()
        .filter(|o| o.result.as_ref().unwrap().role == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1, "roles {roles:?}");
    let leader = leaders[0];
    assert_eq!(leader.result.as_ref().unwrap().migrations_applied, 2);
    assert_eq!(
        leader.logs.contract_lines(),
        [
            LOCK_ACQUIRED.to_owned(),
            applied(2),
            LOCK_RELEASED.to_owned()
        ],
        "{}",
        leader.logs.text()
    );

    let total_acquired: usize = outcomes.iter().map(|o| o.logs.count(LOCK_ACQUIRED)).sum();
    assert_eq!(
        total_acquired, 1,
        "exactly one `{LOCK_ACQUIRED}` across all replicas"
    );
    for other in outcomes.iter().filter(|o| !std::ptr::eq(*o, leader)) {
        let report = other.result.as_ref().unwrap();
        let lines = other.logs.contract_lines();
        match report.role {
            Role::Follower => {
                assert_eq!(report.migrations_applied, 0);
                assert_eq!(
                    lines.last().map(String::as_str),
                    Some(UP_TO_DATE_AFTER_WAIT)
                );
                assert!(
                    other.logs.count(WAITING) <= 1,
                    "waiting is logged once: {lines:?}"
                );
            }
            // A replica that looked only after the leader finished.
            Role::FastPath => assert_eq!(lines, [FAST_PATH]),
            role => panic!("unexpected role {role:?}"),
        }
    }
    assert_eq!(
        db.applied().await,
        [(20250101000001, true), (20250101000002, true)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_current_database_every_coordinator_takes_the_fast_path_and_no_lock_is_taken() {
    let db = TestDb::create().await;
    assert!(coordinate_once(&db, real_migrations()).await.result.is_ok());

    // Watch the lock the whole time the replicas start.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let mut conn = db.connection().await;
        let lock = db.lock_name();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut polls = 0;
            while !done.load(Ordering::SeqCst) {
                if let Some(id) = holder(&mut conn, &lock).await {
                    seen.push(id);
                }
                polls += 1;
            }
            (seen, polls)
        })
    };
    let outcomes = race(
        &db,
        8,
        real_migrations,
        migration_settings(Duration::from_secs(20), MigrationLock::On),
    )
    .await;
    done.store(true, Ordering::SeqCst);
    let (seen, polls) = watcher.await.unwrap();

    assert_eq!(roles(&outcomes), vec![Role::FastPath; 8]);
    for outcome in &outcomes {
        assert_eq!(
            outcome.logs.contract_lines(),
            [FAST_PATH],
            "{}",
            outcome.logs.text()
        );
        assert_eq!(outcome.result.as_ref().unwrap().waited_ms, 0);
    }
    assert!(polls > 0);
    assert!(seen.is_empty(), "the lock was held by {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_leader_is_killed_mid_migration_a_follower_takes_over_and_finishes() {
    let db = TestDb::create().await;
    let lock = db.lock_name();
    let mut admin = db.connection().await;
    let racing = {
        let db = db.clone();
        tokio::spawn(async move {
            race(
                &db,
                3,
                slow_migrations,
                migration_settings(Duration::from_secs(20), MigrationLock::On),
            )
            .await
        })
    };

    // Find the leader's session while its 3-second migration runs, and kill it.
    let leader_session = loop {
        if let Some(id) = holder(&mut admin, &lock).await {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    sqlx::query(&format!("KILL CONNECTION {leader_session}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let outcomes = racing.await.unwrap();

    let killed: Vec<_> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    assert_eq!(killed.len(), 1, "only the killed leader fails");
    assert_eq!(killed[0].logs.count(LOCK_ACQUIRED), 1);
    let roles: Vec<Role> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().map(|r| r.role))
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == Role::Leader).count(),
        1,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| **r == Role::Follower).count(),
        1,
        "{roles:?}"
    );
    let total_acquired: usize = outcomes.iter().map(|o| o.logs.count(LOCK_ACQUIRED)).sum();
    assert_eq!(
        total_acquired, 2,
        "the takeover is the one case of a second acquisition"
    );
    let successor = outcomes
        .iter()
        .find(|o| matches!(&o.result, Ok(r) if r.role == Role::Leader))
        .unwrap();
    assert_eq!(successor.result.as_ref().unwrap().migrations_applied, 2);
    assert_eq!(
        successor.logs.contract_lines(),
        [
            WAITING.to_owned(),
            LOCK_ACQUIRED.to_owned(),
            applied(2),
            LOCK_RELEASED.to_owned()
        ]
    );
    assert_eq!(db.applied().await, [(1, true), (2, true)]);
    let _ = admin.close().await;
}

#[tokio::test]
async fn a_lock_held_past_the_deadline_times_out_naming_the_lock_and_its_holder() {
    let db = TestDb::create().await;
    let lock = db.lock_name();
    let mut outsider = db.connection().await;
    let got: i64 = sqlx::query_scalar("SELECT CAST(GET_LOCK(?, 0) AS SIGNED)")
        .bind(&lock)
        .fetch_one(&mut outsider)
        .await
        .unwrap();
    assert_eq!(got, 1);
    let outsider_id: i64 = sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
        .fetch_one(&mut outsider)
        .await
        .unwrap();

    let outcome = race(
        &db,
        1,
        real_migrations,
        migration_settings(Duration::from_millis(1500), MigrationLock::On),
    )
    .await
    .pop()
    .unwrap();

    let error = outcome.result.unwrap_err();
    assert!(matches!(error, CoordinateError::TimedOut { .. }), "{error}");
    let message = error.to_string();
    assert!(message.starts_with(TIMED_OUT), "{message}");
    assert!(message.contains(&format!("lock {lock}")), "{message}");
    assert!(
        message.contains(&format!("connection {outsider_id}")),
        "{message}"
    );
    assert!(
        message.contains("pending versions [20250101000001, 20250101000002]"),
        "{message}"
    );
    assert!(outcome.elapsed >= Duration::from_millis(1500));
    assert!(
        outcome.elapsed < Duration::from_secs(5),
        "{:?}",
        outcome.elapsed
    );
    assert_eq!(outcome.logs.contract_lines(), [WAITING, TIMED_OUT]);
    assert!(
        outcome.logs.text().contains(&message),
        "the log line carries the detail"
    );
    let _ = outsider.close().await;
}

#[tokio::test]
async fn a_migration_changed_after_it_was_applied_is_a_checksum_error_naming_its_version() {
    let db = TestDb::create().await;
    assert!(coordinate_once(&db, real_migrations()).await.result.is_ok());
    let mut admin = db.connection().await;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 20250101000002")
        .execute(&mut admin)
        .await
        .unwrap();

    let outcome = coordinate_once(&db, real_migrations()).await;
    let error = outcome.result.unwrap_err();
    assert!(
        matches!(
            error,
            CoordinateError::ChecksumMismatch {
                version: 20250101000002,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("migration 20250101000002"),
        "{error}"
    );
    assert!(
        outcome.elapsed < Duration::from_secs(2),
        "immediate, not after a deadline"
    );
    assert!(outcome.logs.contract_lines().is_empty());
}

#[tokio::test]
async fn a_failed_row_with_no_lock_holder_is_a_dirty_state_with_repair_advice() {
    let db = TestDb::create().await;
    assert!(coordinate_once(&db, real_migrations()).await.result.is_ok());
    let mut admin = db.connection().await;
    sqlx::query("UPDATE _sqlx_migrations SET success = 0 WHERE version = 20250101000002")
        .execute(&mut admin)
        .await
        .unwrap();

    let outcome = coordinate_once(&db, real_migrations()).await;
    let error = outcome.result.unwrap_err();
    assert!(
        matches!(
            error,
            CoordinateError::Dirty {
                version: 20250101000002,
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("DELETE FROM _sqlx_migrations WHERE version = 20250101000002"),
        "{message}"
    );
    assert!(message.contains("Check the schema by hand"), "{message}");
    assert!(
        outcome.elapsed < Duration::from_secs(2),
        "immediate, not after a deadline"
    );
    assert_eq!(
        holder(&mut admin, &db.lock_name()).await,
        None,
        "the lock is released"
    );
}

#[tokio::test]
async fn a_failed_row_while_the_lock_is_held_is_a_migration_in_progress_and_is_waited_for() {
    let db = TestDb::create().await;
    assert!(coordinate_once(&db, real_migrations()).await.result.is_ok());
    let mut migrating = db.connection().await;
    sqlx::query("UPDATE _sqlx_migrations SET success = 0 WHERE version = 20250101000002")
        .execute(&mut migrating)
        .await
        .unwrap();
    sqlx::query("SELECT GET_LOCK(?, 0)")
        .bind(db.lock_name())
        .execute(&mut migrating)
        .await
        .unwrap();

    let outcome = race(
        &db,
        1,
        real_migrations,
        migration_settings(Duration::from_secs(5), MigrationLock::On),
    );
    // The "migration" finishes 1.5 s later: mark it done, then release the lock.
    let finisher = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sqlx::query("UPDATE _sqlx_migrations SET success = 1 WHERE version = 20250101000002")
            .execute(&mut migrating)
            .await
            .unwrap();
        sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(db.lock_name())
            .execute(&mut migrating)
            .await
            .unwrap();
    };
    let (mut outcomes, ()) = tokio::join!(outcome, finisher);
    let outcome = outcomes.pop().unwrap();
    let report = outcome.result.unwrap();
    assert_eq!(report.role, Role::Follower);
    assert_eq!(
        outcome.logs.contract_lines(),
        [WAITING, UP_TO_DATE_AFTER_WAIT]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_lock_off_racing_coordinators_all_finish_and_each_version_is_recorded_once() {
    let db = TestDb::create().await;
    let outcomes = race(
        &db,
        8,
        real_migrations,
        migration_settings(Duration::from_secs(20), MigrationLock::Off),
    )
    .await;

    assert_eq!(roles(&outcomes), vec![Role::Unlocked; 8]);
    for outcome in &outcomes {
        // No lock: nobody acquires, waits or releases; everyone runs the migrator.
        let lines = outcome.logs.contract_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("Applied "), "{lines:?}");
        assert_eq!(outcome.logs.count("migration locking is disabled"), 1);
    }
    // More than one replica may have applied something; together they applied everything.
    let applied: usize = outcomes
        .iter()
        .map(|o| o.result.as_ref().unwrap().migrations_applied)
        .sum();
    assert!(applied >= 2, "{applied}");
    assert_eq!(
        db.applied().await,
        [(20250101000001, true), (20250101000002, true)]
    );
}

/// Not a check: prints what the fast path costs a starting replica (one pooled read of
/// `_sqlx_migrations` plus the comparison). Run with
/// `cargo test --release -p api --test api -- --ignored --nocapture fast_path_cost`.
#[tokio::test]
#[ignore = "measurement, not a check"]
async fn measure_the_fast_path_cost() {
    let db = TestDb::create().await;
    assert!(coordinate_once(&db, real_migrations()).await.result.is_ok());
    let pool = db.pool().await;
    let connect = db.connect_options();
    let settings = migration_settings(Duration::from_secs(20), MigrationLock::On);
    let mut samples = Vec::new();
    for i in 0..550 {
        let start = std::time::Instant::now();
        let report = api::migrate::coordinate(
            &pool,
            &connect,
            real_migrations(),
            &settings,
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
        let elapsed = start.elapsed();
        assert_eq!(report.role, Role::FastPath);
        if i >= 50 {
            samples.push(elapsed); // the first 50 warm the pool and the server's caches
        }
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let p99 = samples[samples.len() * 99 / 100];
    println!(
        "fast path over {} runs: mean {mean:?}, p50 {:?}, p99 {p99:?}, max {:?}",
        samples.len(),
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
}
