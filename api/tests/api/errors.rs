//! Every bad input gets a JSON error with the right 4xx, never plain text, never a 500.

use crate::helpers::{assert_json_error, raw_request, spawn_app, MAX_UPLOAD_BYTES};

const UNKNOWN_ID: &str = "6f1c1f55-6f0a-4d8b-9a51-1c2a3b4c5d6e";

#[tokio::test]
async fn an_id_that_is_not_a_uuid_is_a_400_on_every_document_route() {
    let app = spawn_app().await;
    for path in ["/documents/not-a-uuid", "/documents/123/content"] {
        assert_json_error(app.get(path).await, 400, "invalid_id").await;
    }
    assert_json_error(app.delete("/documents/nope").await, 400, "invalid_id").await;
}

#[tokio::test]
async fn an_unknown_id_is_a_404_on_every_document_route() {
    let app = spawn_app().await;
    let message = assert_json_error(
        app.get(&format!("/documents/{UNKNOWN_ID}")).await,
        404,
        "not_found",
    )
    .await;
    assert!(message.contains(UNKNOWN_ID), "{message}");
    assert_json_error(
        app.get(&format!("/documents/{UNKNOWN_ID}/content")).await,
        404,
        "not_found",
    )
    .await;
    assert_json_error(
        app.delete(&format!("/documents/{UNKNOWN_ID}")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn an_empty_body_is_a_400_and_leaves_nothing_behind() {
    let app = spawn_app().await;
    assert_json_error(
        app.upload("empty", Vec::new(), None).await,
        400,
        "empty_body",
    )
    .await;
    // Also when the emptiness is only discovered while streaming.
    let (status, body) = raw_request(
        app.port,
        b"POST /documents?name=empty HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("empty_body"), "{body}");
    assert!(app.files_in("tmp").is_empty());
    assert!(app.files_in("documents").is_empty());
}

#[tokio::test]
async fn an_oversized_body_is_a_413_and_leaves_nothing_behind() {
    let app = spawn_app().await;
    let too_big = vec![1u8; MAX_UPLOAD_BYTES as usize + 1];
    let message = assert_json_error(
        app.upload("big", too_big, None).await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(message.contains(&MAX_UPLOAD_BYTES.to_string()), "{message}");

    // Without a Content-Length the limit is enforced while streaming.
    let chunk = vec![b'a'; 16 * 1024];
    let mut request = b"POST /documents?name=big HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..(MAX_UPLOAD_BYTES as usize / chunk.len() + 2) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw_request(app.port, &request).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");

    assert!(
        app.files_in("tmp").is_empty(),
        "the partial upload is removed"
    );
    assert!(app.files_in("documents").is_empty());
}

#[tokio::test]
async fn bad_pagination_is_a_400() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-5",
        "offset=-1",
        "offset=x",
        "limit=",
    ] {
        assert_json_error(
            app.get(&format!("/documents?{query}")).await,
            400,
            "invalid_pagination",
        )
        .await;
    }
}

#[tokio::test]
async fn a_malformed_query_string_is_a_json_400_not_axums_plain_text() {
    let app = spawn_app().await;
    assert_json_error(
        app.get("/documents?limit=1&limit=2").await,
        400,
        "invalid_query",
    )
    .await;
    let response = app
        .client
        .post(app.url("/documents?name=a&name=b"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_json_error(response, 400, "invalid_query").await;
}

#[tokio::test]
async fn a_bad_or_missing_name_is_a_400() {
    let app = spawn_app().await;
    let long = "n".repeat(256);
    for name in [
        "",
        "  ",
        long.as_str(),
        "a/b",
        "a\\b",
        "..",
        "../../etc/passwd",
        "bell\u{7}",
        "nul\0",
    ] {
        let response = app.upload(name, b"x".to_vec(), None).await;
        assert_json_error(response, 400, "invalid_name").await;
    }
    let response = app
        .client
        .post(app.url("/documents"))
        .body("x")
        .send()
        .await
        .unwrap();
    let message = assert_json_error(response, 400, "invalid_name").await;
    assert!(message.contains("`name` is required"), "{message}");
    assert!(app.files_in("tmp").is_empty());
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405_with_an_allow_header() {
    let app = spawn_app().await;
    let response = app
        .client
        .put(app.url("/documents"))
        .body("x")
        .send()
        .await
        .unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_json_error(response, 405, "method_not_allowed").await;
    assert_json_error(app.delete("/healthz").await, 405, "method_not_allowed").await;
    let response = app
        .client
        .post(app.url(&format!("/documents/{UNKNOWN_ID}")))
        .send()
        .await
        .unwrap();
    assert_json_error(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let app = spawn_app().await;
    assert_json_error(app.get("/nope").await, 404, "not_found").await;
    assert_json_error(
        app.get(&format!("/documents/{UNKNOWN_ID}/content/extra"))
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_a_json_400() {
    let app = spawn_app().await;
    assert_json_error(app.get("/documents/%FF%FE").await, 400, "invalid_path").await;
}

#[tokio::test]
async fn a_query_that_is_not_utf8_once_decoded_is_a_400_not_a_stored_replacement_name() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/documents?name=%FF%FE"))
        .body("x")
        .send()
        .await
        .unwrap();
    let message = assert_json_error(response, 400, "invalid_query").await;
    assert!(message.contains("UTF-8"), "{message}");
    assert_json_error(app.get("/documents?limit=%C3").await, 400, "invalid_query").await;
    assert!(app.files_in("documents").is_empty());
}
