//! `GET /metrics`: the api's own timings in the Prometheus text format.

use crate::helpers::spawn_app;

#[tokio::test]
async fn metrics_give_request_pool_and_query_timings_after_a_read() {
    let app = spawn_app().await;
    let stored = app.store("m.bin", b"metrics".to_vec()).await;
    let id = stored["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/documents/{id}/content")).await.status(),
        200
    );
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    for line in [
        "http_request_duration_seconds_bucket{route=\"/documents/{id}/content\",method=\"GET\",status=\"200\",le=\"",
        "db_pool_acquire_seconds_count{what=\"find_document\"}",
        "db_query_seconds_count{what=\"find_document\"}",
        "storage_open_seconds_count{what=\"document\"}",
        "tokio_workers ",
        "db_pool_connections ",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}
