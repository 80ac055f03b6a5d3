//! Stops, kills and database hiccups during migration: a stopped leader finishes, a dirty
//! schema is one clear line on every replica, a waiting replica rides out a transient error.

use std::time::{Duration, Instant};

use api::configuration::MigrationLock;
use api::log_contract::{DIRTY, LOCK_ACQUIRED, LOCK_RELEASED, STOP_MID_MIGRATION};
use api::migrate::{CoordinateError, Role};
use api::startup::{Application, StartupError};
use sqlx::mysql::MySqlPoolOptions;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber;

use crate::helpers::{
    coordinate_once, lock_holder, migration_settings, race, real_migrations, slow_ddl_migrations,
    Captured, TempDir, TestDb, TestUser,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_mid_migration_finishes_it_releases_the_lock_and_stops_cleanly() {
    let db = TestDb::create().await;
    let data_dir = TempDir::new();
    let stop = CancellationToken::new();
    let logs = Captured::default();
    let building = tokio::spawn(
        Application::build(
            db.settings(&data_dir.0),
            slow_ddl_migrations(),
            stop.clone(),
        )
        .with_subscriber(logs.dispatch()),
    );
    let mut admin = db.connection().await;
    while lock_holder(&mut admin, &db.lock_name()).await.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Well inside version 1: its table exists, its 3-second pause runs.
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.cancel();
    let stopped_at = Instant::now();

    match building.await.unwrap() {
        Err(StartupError::Stopped) => {}
        Err(e) => panic!("expected a clean stop, got {e}\n{}", logs.text()),
        Ok(_) => panic!("a stopped replica went on to serve"),
    }
    assert!(
        stopped_at.elapsed() < Duration::from_secs(6),
        "{:?}",
        stopped_at.elapsed()
    );
    assert_eq!(
        db.applied().await,
        [(1, true), (2, true)],
        "{}",
        logs.text()
    );
    assert_eq!(lock_holder(&mut admin, &db.lock_name()).await, None);
    assert_eq!(logs.count(STOP_MID_MIGRATION), 1, "{}", logs.text());
    assert_eq!(logs.count(LOCK_RELEASED), 1, "{}", logs.text());
    let _ = admin.close().await;
}

#[tokio::test]
async fn a_replica_waiting_for_another_ones_migration_stops_at_once() {
    let db = TestDb::create().await;
    let mut outsider = db.connection().await;
    sqlx::query("SELECT GET_LOCK(?, 0)")
        .bind(db.lock_name())
        .execute(&mut outsider)
        .await
        .unwrap();
    let data_dir = TempDir::new();
    let stop = CancellationToken::new();
    let building = tokio::spawn(Application::build(
        db.settings(&data_dir.0),
        real_migrations(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.cancel();
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(3), building)
        .await
        .expect("the stop ended the wait")
        .unwrap();
    assert!(matches!(result, Err(StartupError::Stopped)));
    assert!(started.elapsed() < Duration::from_secs(2));
    let _ = outsider.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_dirty_schema_every_replica_fails_fast_with_one_line_naming_the_version_and_the_repair(
) {
    let db = TestDb::create().await;
    assert!(coordinate_once(&db, real_migrations()).await.result.is_ok());
    let mut admin = db.connection().await;
    sqlx::query("UPDATE _sqlx_migrations SET success = 0 WHERE version = 20250101000002")
        .execute(&mut admin)
        .await
        .unwrap();

    let outcomes = race(
        &db,
        4,
        real_migrations,
        migration_settings(Duration::from_secs(30), MigrationLock::On),
    )
    .await;
    for outcome in &outcomes {
        let text = outcome.logs.text();
        assert!(
            matches!(
                outcome.result,
                Err(CoordinateError::Dirty {
                    version: 20250101000002,
                    ..
                })
            ),
            "{text}"
        );
        assert!(
            outcome.elapsed < Duration::from_secs(5),
            "{:?}",
            outcome.elapsed
        );
        let dirty: Vec<&str> = text.lines().filter(|l| l.contains(DIRTY)).collect();
        assert_eq!(dirty.len(), 1, "{text}");
        for part in [
            &format!("{DIRTY} 20250101000002"),
            "Check the schema by hand against migrations/20250101000002_*.sql",
            "DELETE FROM _sqlx_migrations WHERE version = 20250101000002;",
        ] {
            assert!(dirty[0].contains(part), "{:?} lacks {part:?}", dirty[0]);
        }
        // One line: no second error for the same cause.
        assert_eq!(
            text.lines().filter(|l| l.contains("ERROR")).count(),
            1,
            "{text}"
        );
    }
    assert_eq!(lock_holder(&mut admin, &db.lock_name()).await, None);
    let _ = admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_replica_rides_out_a_transient_database_error_and_then_leads() {
    let db = TestDb::create().await;
    let user = TestUser::create(&db).await;
    let mut outsider = db.connection().await;
    sqlx::query("SELECT GET_LOCK(?, 0)")
        .bind(db.lock_name())
        .execute(&mut outsider)
        .await
        .unwrap();

    let connect: sqlx::mysql::MySqlConnectOptions = user.url(&db).parse().unwrap();
    let pool = MySqlPoolOptions::new()
        .max_connections(2)
        .connect_with(connect.clone())
        .await
        .unwrap();
    let logs = Captured::default();
    let coordinating = tokio::spawn({
        let logs = logs.clone();
        async move {
            api::migrate::coordinate(
                &pool,
                &connect,
                real_migrations(),
                &migration_settings(Duration::from_secs(20), MigrationLock::On),
                &CancellationToken::new(),
            )
            .with_subscriber(logs.dispatch())
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // New logins fail for a while, as while the database restarts.
    user.set_locked(&db, true).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    user.set_locked(&db, false).await;
    sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(db.lock_name())
        .execute(&mut outsider)
        .await
        .unwrap();

    let result = coordinating.await.unwrap();
    let text = logs.text();
    let report = result.unwrap_or_else(|e| panic!("gave up on a transient error: {e}\n{text}"));
    assert_eq!(report.role, Role::Leader, "{text}");
    assert!(text.contains("retrying until the deadline"), "{text}");
    assert_eq!(logs.count(LOCK_ACQUIRED), 1);
    assert_eq!(
        db.applied().await,
        [(20250101000001, true), (20250101000002, true)]
    );
    let _ = outsider.close().await;
}
