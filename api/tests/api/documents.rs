use sha2::{Digest, Sha256};

use crate::helpers::{spawn_app, MAX_UPLOAD_BYTES};

#[tokio::test]
async fn a_stored_document_comes_back_with_its_metadata_and_exact_bytes() {
    let app = spawn_app().await;
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let response = app
        .upload("report v2.pdf", bytes.clone(), Some("application/pdf"))
        .await;
    assert_eq!(response.status(), 201);
    let created: serde_json::Value = response.json().await.unwrap();

    let id = created["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(created["name"], "report v2.pdf");
    assert_eq!(created["size"], bytes.len());
    assert_eq!(created["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(created["content_type"], "application/pdf");
    assert!(!created["stored_by"].as_str().unwrap().is_empty());
    let created_at = created["created_at"].as_str().unwrap();
    assert!(created_at.ends_with('Z'), "{created_at}");

    let fetched: serde_json::Value = app
        .get(&format!("/documents/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        fetched, created,
        "the row reads back exactly as returned at creation"
    );

    let content = app.get(&format!("/documents/{id}/content")).await;
    assert_eq!(content.status(), 200);
    assert_eq!(content.headers()["content-type"], "application/pdf");
    assert_eq!(
        content.headers()["content-length"],
        bytes.len().to_string().as_str()
    );
    assert_eq!(content.headers()["x-content-type-options"], "nosniff");
    assert_eq!(content.bytes().await.unwrap().to_vec(), bytes);

    // Bytes were renamed into place; nothing left half-written.
    assert_eq!(app.files_in("documents"), [id.to_owned()]);
    assert!(app.files_in("tmp").is_empty());
}

#[tokio::test]
async fn the_content_type_defaults_to_octet_stream() {
    let app = spawn_app().await;
    let response = app.upload("blob", b"\x00\x01\x02".to_vec(), None).await;
    assert_eq!(response.status(), 201);
    let created: serde_json::Value = response.json().await.unwrap();
    assert_eq!(created["content_type"], "application/octet-stream");
    let content = app
        .get(&format!(
            "/documents/{}/content",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        content.headers()["content-type"],
        "application/octet-stream"
    );
}

#[tokio::test]
async fn an_upload_of_exactly_the_limit_is_accepted() {
    let app = spawn_app().await;
    let response = app
        .upload("max", vec![7u8; MAX_UPLOAD_BYTES as usize], None)
        .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn listing_pages_newest_first_with_limit_offset_and_total() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let created = app.store(&format!("doc-{i}"), vec![i as u8 + 1; 10]).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let page: serde_json::Value = app
        .get("/documents?limit=2&offset=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["limit"], 2);
    assert_eq!(page["offset"], 1);
    assert_eq!(page["total"], 5);
    let names: Vec<&str> = page["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["doc-3", "doc-2"]);

    let default: serde_json::Value = app.get("/documents").await.json().await.unwrap();
    assert_eq!(default["limit"], 20);
    assert_eq!(default["offset"], 0);
    assert_eq!(default["documents"].as_array().unwrap().len(), 5);

    let beyond: serde_json::Value = app.get("/documents?offset=100").await.json().await.unwrap();
    assert!(beyond["documents"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_deleted_document_is_gone_from_the_database_and_the_data_directory() {
    let app = spawn_app().await;
    let created = app.store("short-lived", b"bye".to_vec()).await;
    let id = created["id"].as_str().unwrap();

    let response = app.delete(&format!("/documents/{id}")).await;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.unwrap().is_empty());

    assert_eq!(app.get(&format!("/documents/{id}")).await.status(), 404);
    assert_eq!(
        app.get(&format!("/documents/{id}/content")).await.status(),
        404
    );
    assert_eq!(app.delete(&format!("/documents/{id}")).await.status(), 404);
    assert!(app.files_in("documents").is_empty());
}
