//! Two replicas, one database, one data directory: either serves what the other stored.

use crate::helpers::{spawn_app, spawn_app_on};

#[tokio::test]
async fn a_document_stored_through_one_instance_is_served_byte_for_byte_by_the_other() {
    let first = spawn_app().await;
    let second = spawn_app_on(first.db.clone(), first.data_dir.clone()).await;
    assert_eq!(first.report.role, api::migrate::Role::Leader);
    assert_eq!(second.report.role, api::migrate::Role::FastPath);

    let bytes: Vec<u8> = (0..=255u8).cycle().take(40_000).collect();
    let created = first.store("shared.bin", bytes.clone()).await;
    let id = created["id"].as_str().unwrap();

    let metadata: serde_json::Value = second
        .get(&format!("/documents/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(metadata, created);
    let content = second.get(&format!("/documents/{id}/content")).await;
    assert_eq!(content.status(), 200);
    assert_eq!(content.bytes().await.unwrap().to_vec(), bytes);

    let listed: serde_json::Value = second.get("/documents").await.json().await.unwrap();
    assert_eq!(listed["documents"][0]["id"], id);

    assert_eq!(
        second.delete(&format!("/documents/{id}")).await.status(),
        204
    );
    assert_eq!(first.get(&format!("/documents/{id}")).await.status(), 404);
    assert_eq!(
        first
            .get(&format!("/documents/{id}/content"))
            .await
            .status(),
        404
    );
}
