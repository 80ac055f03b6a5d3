//! Labels on documents through the real app: replace, read, search by label, cascade on delete.

use serde_json::{json, Value};

use crate::helpers::{assert_json_error, spawn_app, TestApp};

async fn put_labels(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/documents/{id}/labels")))
        .json(&body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn labels_put_on_a_document_are_read_back_sorted_without_duplicates() {
    let app = spawn_app().await;
    let doc = app.store("a.txt", b"alpha".to_vec()).await;
    let id = doc["id"].as_str().unwrap();

    let response = put_labels(&app, id, json!({"labels": ["team:b", "draft", "team:b"]})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"id": id, "labels": ["draft", "team:b"]}));

    let read: Value = app
        .get(&format!("/documents/{id}/labels"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, json!({"id": id, "labels": ["draft", "team:b"]}));

    // A PUT replaces the set; an empty list clears it.
    put_labels(&app, id, json!({"labels": ["final"]})).await;
    let read: Value = app
        .get(&format!("/documents/{id}/labels"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["labels"], json!(["final"]));
    put_labels(&app, id, json!({"labels": []})).await;
    let read: Value = app
        .get(&format!("/documents/{id}/labels"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["labels"], json!([]));
}

#[tokio::test]
async fn documents_are_found_by_label_newest_first_and_deleting_one_drops_its_labels() {
    let app = spawn_app().await;
    let first = app.store("1.txt", b"one".to_vec()).await;
    let second = app.store("2.txt", b"two".to_vec()).await;
    let other = app.store("3.txt", b"three".to_vec()).await;
    for doc in [&first, &second] {
        let id = doc["id"].as_str().unwrap();
        assert_eq!(
            put_labels(&app, id, json!({"labels": ["q4"]}))
                .await
                .status(),
            200
        );
    }
    let id = other["id"].as_str().unwrap();
    put_labels(&app, id, json!({"labels": ["misc"]})).await;

    let page: Value = app.get("/labels/q4/documents").await.json().await.unwrap();
    assert_eq!(page["documents"], json!([second["id"], first["id"]]));
    let page: Value = app
        .get("/labels/q4/documents?limit=1&offset=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["documents"], json!([first["id"]]));

    let id = second["id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/documents/{id}")).await.status(), 204);
    let page: Value = app.get("/labels/q4/documents").await.json().await.unwrap();
    assert_eq!(page["documents"], json!([first["id"]]));
    let response = app.get(&format!("/documents/{id}/labels")).await;
    assert_json_error(response, 404, "not_found").await;
}

#[tokio::test]
async fn bad_labels_ids_and_bodies_get_a_4xx_with_a_json_code() {
    let app = spawn_app().await;
    let doc = app.store("a.txt", b"alpha".to_vec()).await;
    let id = doc["id"].as_str().unwrap();

    for body in [
        json!({"labels": ["Upper"]}),
        json!({"labels": [""]}),
        json!({"labels": ["a b"]}),
        json!({"labels": ["x".repeat(65)]}),
        json!({"labels": (0..21).map(|i| format!("l{i}")).collect::<Vec<_>>()}),
        json!({"labels": "not-a-list"}),
        json!(["no", "object"]),
    ] {
        let response = put_labels(&app, id, body.clone()).await;
        assert_json_error(response, 400, "invalid_labels").await;
    }
    let response = app
        .client
        .put(app.url(&format!("/documents/{id}/labels")))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_json_error(response, 400, "invalid_labels").await;

    let missing = uuid::Uuid::new_v4();
    let response = put_labels(&app, &missing.to_string(), json!({"labels": ["a"]})).await;
    assert_json_error(response, 404, "not_found").await;
    let response = app.get(&format!("/documents/{missing}/labels")).await;
    assert_json_error(response, 404, "not_found").await;
    let response = put_labels(&app, "not-a-uuid", json!({"labels": ["a"]})).await;
    assert_json_error(response, 400, "invalid_id").await;
    let response = app.get("/labels/BAD/documents").await;
    assert_json_error(response, 400, "invalid_labels").await;
    let response = app.get("/labels/ok/documents?limit=0").await;
    assert_json_error(response, 400, "invalid_pagination").await;
}
