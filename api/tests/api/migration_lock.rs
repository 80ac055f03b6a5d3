//! The migration lock's SQL expression (used by the xtask from inside the database container)
//! names the same lock as the api's Rust derivation, on a real server.

use sqlx::Connection;

use crate::helpers::TestDb;

#[path = "../../src/migration_lock_sql.rs"]
mod lock_sql;
use lock_sql::MIGRATION_LOCK_SQL;

#[tokio::test]
async fn the_sql_lock_name_is_the_rust_one_and_takes_the_same_lock() {
    let db = TestDb::create().await;
    let mut outside = db.connection().await;
    let from_sql: String = sqlx::query_scalar(&format!("SELECT {MIGRATION_LOCK_SQL}"))
        .fetch_one(&mut outside)
        .await
        .expect("the lock name's SQL runs");
    assert_eq!(from_sql, db.lock_name(), "database {}", db.name);

    // The lock an outside client takes by the SQL name is the one the api would wait for.
    let got: Option<i64> = sqlx::query_scalar(&format!("SELECT GET_LOCK({MIGRATION_LOCK_SQL}, 0)"))
        .fetch_one(&mut outside)
        .await
        .expect("GET_LOCK runs");
    assert_eq!(got, Some(1));
    let mut api_side = db.connection().await;
    // CAST, as the api does: MySQL types IS_USED_LOCK as BIGINT UNSIGNED (servers.rs).
    let holder: Option<i64> = sqlx::query_scalar("SELECT CAST(IS_USED_LOCK(?) AS SIGNED)")
        .bind(db.lock_name())
        .fetch_one(&mut api_side)
        .await
        .expect("IS_USED_LOCK runs");
    assert!(holder.is_some(), "the api's lock name is not the one held");
    let _ = outside.close().await;
    let _ = api_side.close().await;
}
