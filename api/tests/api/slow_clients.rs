//! Slow and stalled clients are given up on after `API_CLIENT_TIMEOUT_SECS`, so they hold
//! neither a connection nor a temp file nor a stopping replica; requests already accepted
//! when the shutdown signal arrives still complete.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app_with, TestApp};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

async fn app_with_short_client_timeout() -> TestApp {
    spawn_app_with(|s| s.application.client_timeout = CLIENT_TIMEOUT).await
}

/// Everything the server sends until it closes, and how long that took.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    (
        String::from_utf8_lossy(&response).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_stalled_upload_gets_a_json_408_and_leaves_no_temp_file() {
    let app = app_with_short_client_timeout().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    stream
        .write_all(b"POST /documents?name=stalled.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let (response, took) = read_until_closed(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"request_timeout\""), "{response}");
    assert!(took < CLIENT_TIMEOUT * 4, "answered after {took:?}");
    assert!(app.files_in("tmp").is_empty(), "{:?}", app.files_in("tmp"));
    assert!(app.files_in("documents").is_empty());
}

#[tokio::test]
async fn a_client_stalled_in_its_headers_is_disconnected_while_others_are_served() {
    let app = app_with_short_client_timeout().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    stream
        .write_all(b"GET /documents HTTP/1.1\r\nHost: 12")
        .await
        .unwrap();
    assert_eq!(app.get("/healthz").await.status(), 200);
    let (response, took) = read_until_closed(&mut stream).await;
    assert!(!response.contains("200 OK"), "{response}");
    assert!(took < CLIENT_TIMEOUT * 4, "still open after {took:?}");
}

#[tokio::test]
async fn a_stalled_client_does_not_hold_up_the_graceful_shutdown() {
    let app = app_with_short_client_timeout().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    stream
        .write_all(b"GET /documents HTTP/1.1\r\nHost: 12")
        .await
        .unwrap();
    // Let the server start reading this connection's head.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), app.stop())
        .await
        .expect("the shutdown waited on a stalled client")
        .unwrap();
    assert!(
        started.elapsed() < CLIENT_TIMEOUT * 4,
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_upload_in_flight_when_the_shutdown_starts_completes_and_new_connections_are_refused() {
    let app = spawn_app_with(|_| {}).await;
    let port = app.port;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(b"POST /documents?name=in-flight.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\n01234")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "a new connection was accepted after the shutdown signal"
    );
    stream.write_all(b"56789").await.unwrap();
    let (response, _) = read_until_closed(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    stopping.await.unwrap().unwrap();
}
