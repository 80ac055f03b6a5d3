//! Where MySQL and MariaDB differ under this api: one test per difference met (README, "The
//! database"), each passing on every server the project is tested on (`cargo xtask test-db --db`).

use std::time::Duration;

use api::migrate::CoordinateError;
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::{ConnectOptions, Connection, MySqlConnection};
use uuid::Uuid;

use crate::helpers::{coordinate_once, real_migrations, TestDb};

async fn is_mariadb(conn: &mut MySqlConnection) -> bool {
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(conn)
        .await
        .unwrap();
    version.contains("MariaDB")
}

async fn lock_holder(conn: &mut MySqlConnection, lock: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT CAST(IS_USED_LOCK(?) AS SIGNED)")
        .bind(lock)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// MySQL 8.4+/9 authenticate with caching_sha2_password. Over TCP without TLS (the api has no
/// TLS backend), a first login needs the server's RSA key; sqlx-mysql does that exchange.
#[tokio::test]
async fn mysql_caching_sha2_auth_connects() {
    let db = TestDb::create().await;
    let mut admin = db.connection().await;
    let mariadb = is_mariadb(&mut admin).await;
    let user = format!("sha2_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let password = Uuid::new_v4().simple().to_string();
    // MariaDB has no caching_sha2_password server plugin: there the default one is used.
    let create = if mariadb {
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    } else {
        format!("CREATE USER '{user}'@'%' IDENTIFIED WITH caching_sha2_password BY '{password}'")
    };
    sqlx::query(&create).execute(&mut admin).await.unwrap();
    // As the stack's api user: rights on its database only.
    sqlx::query(&format!("GRANT ALL ON `{}`.* TO '{user}'@'%'", db.name))
        .execute(&mut admin)
        .await
        .unwrap();
    if !mariadb {
        let plugin: String = sqlx::query_scalar(
            "SELECT CONVERT(plugin USING utf8mb4) FROM mysql.user WHERE user = ? AND host = '%'",
        )
        .bind(&user)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(plugin, "caching_sha2_password");
    }

    let options: MySqlConnectOptions = db.connect_options();
    let options = options
        .username(&user)
        .password(&password)
        .ssl_mode(MySqlSslMode::Disabled);
    // The first login is a cache miss (full authentication: RSA), the second a cache hit.
    for attempt in ["full authentication", "cached"] {
        let mut conn = options
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{attempt} login of {user} over plain TCP: {e}"));
        let who: String = sqlx::query_scalar("SELECT CURRENT_USER()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(who, format!("{user}@%"));
        conn.close().await.unwrap();
    }
    sqlx::query(&format!("DROP USER '{user}'@'%'"))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// `GET_LOCK(name, -1)` waits forever on MySQL but returns NULL and takes nothing on MariaDB
/// (warning 1411), which is why sqlx's own migration lock does nothing there. The api takes
/// its lock with timeout 0, which behaves the same on both.
#[tokio::test]
async fn get_lock_negative_timeout_takes_no_lock_on_mariadb_so_the_api_uses_zero() {
    let db = TestDb::create().await;
    let lock = db.lock_name();
    let mut conn = db.connection().await;
    let mut other = db.connection().await;
    let mariadb = is_mariadb(&mut conn).await;

    let negative: Option<i64> = sqlx::query_scalar("SELECT CAST(GET_LOCK(?, -1) AS SIGNED)")
        .bind(&lock)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    if mariadb {
        assert_eq!(negative, None);
        assert_eq!(lock_holder(&mut other, &lock).await, None, "no lock taken");
    } else {
        assert_eq!(negative, Some(1));
        let _: Option<i64> = sqlx::query_scalar("SELECT CAST(RELEASE_LOCK(?) AS SIGNED)")
            .bind(&lock)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    }

    // The api's call: 1 when free, 0 at once when another session holds it, on every server.
    let zero = "SELECT CAST(GET_LOCK(?, 0) AS SIGNED)";
    let first: Option<i64> = sqlx::query_scalar(zero)
        .bind(&lock)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(first, Some(1));
    let started = std::time::Instant::now();
    let second: Option<i64> = sqlx::query_scalar(zero)
        .bind(&lock)
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(second, Some(0));
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// RELEASE_LOCK: 1 for one's own lock, 0 for another session's, NULL for a lock nobody holds,
/// on both servers; the api's release treats anything but 1 as "not released by us".
#[tokio::test]
async fn release_lock_results_are_one_zero_and_null_on_every_server() {
    let db = TestDb::create().await;
    let lock = db.lock_name();
    let mut holder = db.connection().await;
    let mut other = db.connection().await;
    let release = "SELECT CAST(RELEASE_LOCK(?) AS SIGNED)";
    let got: Option<i64> = sqlx::query_scalar("SELECT CAST(GET_LOCK(?, 0) AS SIGNED)")
        .bind(&lock)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    let by_other: Option<i64> = sqlx::query_scalar(release)
        .bind(&lock)
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(by_other, Some(0), "another session's lock");
    let by_holder: Option<i64> = sqlx::query_scalar(release)
        .bind(&lock)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(by_holder, Some(1), "one's own lock");
    let again: Option<i64> = sqlx::query_scalar(release)
        .bind(&lock)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(again, None, "a lock nobody holds");
}

/// MySQL frees a closed session's named locks only when its server thread gets to it, after
/// the client's close() returned; MariaDB at once. A leader that fails (here: a dirty
/// migration row) therefore RELEASEs its lock before closing, so the lock is free the moment
/// the error is returned and a waiting replica does not see a dead leader's lock.
#[tokio::test]
async fn mysql_frees_closed_sessions_locks_late_so_a_failed_leader_releases_its_lock() {
    let db = TestDb::create().await;
    assert!(coordinate_once(&db, real_migrations()).await.result.is_ok());
    let mut admin = db.connection().await;
    sqlx::query("UPDATE _sqlx_migrations SET success = 0 WHERE version = 20250101000002")
        .execute(&mut admin)
        .await
        .unwrap();

    for round in 0..5 {
        let outcome = coordinate_once(&db, real_migrations()).await;
        assert!(
            matches!(outcome.result, Err(CoordinateError::Dirty { .. })),
            "round {round}: {:?}",
            outcome.result.err()
        );
        assert_eq!(
            lock_holder(&mut admin, &db.lock_name()).await,
            None,
            "round {round}: the lock is free as soon as the failed leader returns"
        );
    }
}

/// The api reads a missing `_sqlx_migrations` as "fresh database" by its error number, 1146
/// (ER_NO_SUCH_TABLE), and the migrations' DDL commits implicitly (a killed leader leaves what
/// it applied, hence the dirty-schema check): both hold on every server.
#[tokio::test]
async fn missing_table_is_error_1146_and_ddl_commits_implicitly_on_every_server() {
    let db = TestDb::create().await;
    let mut conn = db.connection().await;
    let err = sqlx::query("SELECT version FROM _sqlx_migrations")
        .fetch_all(&mut conn)
        .await
        .unwrap_err();
    let number = err
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|e| e.number());
    assert_eq!(number, Some(1146), "{err}");

    sqlx::query("CREATE TABLE implicit_commit (n INT)")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("INSERT INTO implicit_commit VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    // DDL inside the transaction commits it first.
    sqlx::query("CREATE TABLE implicit_commit_ddl (n INT)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM implicit_commit")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the CREATE TABLE committed the INSERT before it");
}

/// MySQL types IS_USED_LOCK (a connection id) as BIGINT UNSIGNED, MariaDB as BIGINT, so a
/// plain `Option<i64>` decodes on MariaDB only; the api CASTs every lock function AS SIGNED,
/// which decodes on both.
#[tokio::test]
async fn is_used_lock_is_unsigned_on_mysql_so_the_api_casts_lock_results_signed() {
    let db = TestDb::create().await;
    let lock = db.lock_name();
    let mut holder = db.connection().await;
    let mut other = db.connection().await;
    let mariadb = is_mariadb(&mut holder).await;
    let got: Option<i64> = sqlx::query_scalar("SELECT CAST(GET_LOCK(?, 0) AS SIGNED)")
        .bind(&lock)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    let plain = sqlx::query_scalar::<_, Option<i64>>("SELECT IS_USED_LOCK(?)")
        .bind(&lock)
        .fetch_one(&mut other)
        .await;
    assert_eq!(plain.is_ok(), mariadb, "{plain:?}");
    let id: i64 = sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(lock_holder(&mut other, &lock).await, Some(id));
}

/// MySQL refuses LOCK TABLES over the prepared-statement protocol (error 1295), which sqlx's
/// `query` uses; MariaDB accepts it. The text protocol (`raw_sql`) works on both. The api
/// itself never locks tables; its tests do, to hang a query.
#[tokio::test]
async fn lock_tables_is_text_protocol_only_on_mysql() {
    let db = TestDb::create().await;
    let mut conn = db.connection().await;
    let mariadb = is_mariadb(&mut conn).await;
    sqlx::raw_sql("CREATE TABLE locked (n INT)")
        .execute(&mut conn)
        .await
        .unwrap();
    let prepared = sqlx::query("LOCK TABLES locked WRITE")
        .execute(&mut conn)
        .await;
    if mariadb {
        assert!(prepared.is_ok(), "{prepared:?}");
    } else {
        let number = prepared
            .as_ref()
            .err()
            .and_then(|e| e.as_database_error())
            .and_then(|e| e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
            .map(|e| e.number());
        assert_eq!(number, Some(1295), "{prepared:?}");
    }
    sqlx::raw_sql("LOCK TABLES locked WRITE; UNLOCK TABLES")
        .execute(&mut conn)
        .await
        .unwrap();
}
