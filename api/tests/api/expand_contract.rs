//! The expand/contract rule for the newest migration: the previous version keeps working on the
//! new schema (a rolling deploy runs both at once) and still starts on it (a rollback).
//!
//! `PREVIOUS_*` are the previous version's statements, copied verbatim from
//! api/src/routes/documents.rs as it was before migration 20250101000003 (commit db489f1).

use std::borrow::Cow;
use std::time::Duration;

use api::configuration::MigrationLock;
use api::migrate::{self, Role};
use chrono::{SubsecRound, Utc};
use serde_json::json;
use sqlx::migrate::Migrator;
use sqlx::MySqlPool;

use crate::helpers::{migration_settings, real_migrations, spawn_app, TestDb};
use tokio_util::sync::CancellationToken;

const PREVIOUS_INSERT: &str =
    "INSERT INTO documents (id, name, size, sha256, content_type, created_at, stored_by) \
     VALUES (?, ?, ?, ?, ?, ?, ?)";
const PREVIOUS_LIST: &str =
    "SELECT id, name, size, sha256, content_type, created_at, stored_by FROM documents \
     ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?";
const PREVIOUS_COUNT: &str = "SELECT COUNT(*) FROM documents";
const PREVIOUS_FIND: &str =
    "SELECT id, name, size, sha256, content_type, created_at, stored_by FROM documents \
     WHERE id = ?";
const PREVIOUS_DELETE: &str = "DELETE FROM documents WHERE id = ?";

type Row = (
    String,
    String,
    i64,
    String,
    String,
    chrono::NaiveDateTime,
    String,
);

/// The migrations of the previous version: all but the newest.
fn previous_migrations() -> Migrator {
    let mut migrator = real_migrations();
    let all = migrator.migrations.to_vec();
    migrator.migrations = Cow::Owned(all[..all.len() - 1].to_vec());
    migrator
}

async fn previous_insert(pool: &MySqlPool, id: &str) {
    sqlx::query(PREVIOUS_INSERT)
        .bind(id)
        .bind("old.txt")
        .bind(3_i64)
        .bind("0".repeat(64))
        .bind("text/plain")
        .bind(Utc::now().naive_utc().trunc_subsecs(6))
        .bind("old-replica")
        .execute(pool)
        .await
        .expect("the previous version's INSERT");
}

#[tokio::test]
async fn the_newest_migration_only_adds_so_the_previous_versions_queries_still_succeed() {
    let app = spawn_app().await;
    let pool = app.db.pool().await;

    // Rows written by the new version, one of them labelled.
    let new_doc = app.store("new.txt", b"new".to_vec()).await;
    let new_id = new_doc["id"].as_str().unwrap().to_owned();
    let labelled = app
        .client
        .put(app.url(&format!("/documents/{new_id}/labels")))
        .json(&json!({"labels": ["keep"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(labelled.status(), 200);

    // An old-style insert, without anything the new migration added.
    let old_id = uuid::Uuid::new_v4().hyphenated().to_string();
    previous_insert(&pool, &old_id).await;

    let page: Vec<Row> = sqlx::query_as(PREVIOUS_LIST)
        .bind(20_i64)
        .bind(0_i64)
        .fetch_all(&pool)
        .await
        .expect("the previous version's list");
    assert_eq!(page.len(), 2);
    let total: i64 = sqlx::query_scalar(PREVIOUS_COUNT)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(total, 2);
    let found: Option<Row> = sqlx::query_as(PREVIOUS_FIND)
        .bind(&new_id)
        .fetch_optional(&pool)
        .await
        .expect("the previous version's find");
    assert_eq!(found.unwrap().1, "new.txt");

    // The new version serves what the old one wrote: no labels, not an error.
    let labels: serde_json::Value = app
        .get(&format!("/documents/{old_id}/labels"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(labels["labels"], json!([]));

    // The previous version deletes a document the new one labelled: the cascade removes the
    // labels it does not know about instead of refusing the delete.
    let deleted = sqlx::query(PREVIOUS_DELETE)
        .bind(&new_id)
        .execute(&pool)
        .await
        .expect("the previous version's DELETE of a labelled document");
    assert_eq!(deleted.rows_affected(), 1);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM document_labels")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    pool.close().await;
}

#[tokio::test]
async fn old_style_inserts_made_before_the_upgrade_are_served_by_the_new_version() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let settings = migration_settings(Duration::from_secs(20), MigrationLock::On);
    // The previous version migrated the database and wrote to it.
    migrate::coordinate(
        &pool,
        &db.connect_options(),
        previous_migrations(),
        &settings,
        &CancellationToken::new(),
    )
    .await
    .expect("the previous migrations");
    let old_id = uuid::Uuid::new_v4().hyphenated().to_string();
    previous_insert(&pool, &old_id).await;

    // The new version applies only the newest migration, then labels the old row.
    let report = migrate::coordinate(
        &pool,
        &db.connect_options(),
        real_migrations(),
        &settings,
        &CancellationToken::new(),
    )
    .await
    .expect("the newest migration");
    assert_eq!(report.role, Role::Leader);
    assert_eq!(report.migrations_applied, 1);
    sqlx::query("INSERT INTO document_labels (document_id, label) VALUES (?, 'old')")
        .bind(&old_id)
        .execute(&pool)
        .await
        .expect("labelling a row the previous version wrote");
    pool.close().await;
}

#[tokio::test]
async fn a_rollback_to_the_previous_version_takes_the_fast_path_on_the_upgraded_schema() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let settings = migration_settings(Duration::from_secs(20), MigrationLock::On);
    migrate::coordinate(
        &pool,
        &db.connect_options(),
        real_migrations(),
        &settings,
        &CancellationToken::new(),
    )
    .await
    .expect("the new version's migrations");

    // The previous binary knows one migration less: the extra row must not stop it.
    let report = migrate::coordinate(
        &pool,
        &db.connect_options(),
        previous_migrations(),
        &settings,
        &CancellationToken::new(),
    )
    .await
    .expect("the previous version starts on the upgraded schema");
    assert_eq!(report.role, Role::FastPath);
    assert_eq!(report.migrations_applied, 0);
    pool.close().await;
}
