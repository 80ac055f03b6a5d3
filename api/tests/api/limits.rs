//! Slow and greedy clients meet their limits: a dripping upload (minimum rate), an upload that
//! outlasts the request deadline, a download nobody reads (write-progress timeout), and more
//! connections than a replica serves.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::spawn_app_with;

/// Send `head`, then one body byte every `every` until the server answers; the answer and when.
async fn drip_upload(port: u16, every: Duration) -> (String, Duration) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(
            b"POST /documents?name=drip.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(8) {
        if stream.write_all(b"x").await.is_err() {
            break;
        }
        match tokio::time::timeout(every, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => response.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut response)).await;
    (
        String::from_utf8_lossy(&response).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn an_upload_dripping_below_the_minimum_rate_gets_408_after_the_grace_period() {
    let app = spawn_app_with(|s| {
        s.application.client_timeout = Duration::from_secs(1);
        s.application.min_upload_rate = 1000;
    })
    .await;
    let (response, took) = drip_upload(app.port, Duration::from_millis(300)).await;
    assert!(
        response.starts_with("HTTP/1.1 408"),
        "{response:?} after {took:?}"
    );
    assert!(
        response.contains("API_MIN_UPLOAD_BYTES_PER_SEC"),
        "{response}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(app.files_in("tmp").is_empty(), "{:?}", app.files_in("tmp"));
}

#[tokio::test]
async fn an_upload_that_outlasts_the_request_deadline_gets_408() {
    let app = spawn_app_with(|s| {
        s.application.client_timeout = Duration::from_secs(1);
        s.application.min_upload_rate = 0;
        s.application.request_timeout = Duration::from_secs(2);
    })
    .await;
    let (response, took) = drip_upload(app.port, Duration::from_millis(300)).await;
    assert!(
        response.starts_with("HTTP/1.1 408"),
        "{response:?} after {took:?}"
    );
    assert!(response.contains("\"request_timeout\""), "{response}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.files_in("tmp").is_empty(), "{:?}", app.files_in("tmp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_the_client_stops_reading_is_cut_off_after_the_write_timeout() {
    const SIZE: usize = 24 * 1024 * 1024;
    let app = spawn_app_with(|s| {
        s.application.max_upload_bytes = SIZE as u64;
        s.application.write_timeout = Duration::from_secs(1);
    })
    .await;
    let stored = app.store("big.bin", vec![7u8; SIZE]).await;
    let id = stored["id"].as_str().unwrap().to_owned();

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(([127, 0, 0, 1], app.port).into())
        .await
        .unwrap();
    stream
        .write_all(format!("GET /documents/{id}/content HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Read nothing for three write timeouts, then everything that is left.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received)).await;
    assert!(
        received.len() < SIZE,
        "the whole {} bytes arrived: the stalled download was never cut off",
        received.len()
    );
    // The replica still serves others.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn a_connection_over_the_limit_gets_503_and_a_freed_slot_serves_again() {
    let app = spawn_app_with(|s| s.application.max_connections = 2).await;
    let first = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let _second = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut third = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), third.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 503"), "{response:?}");
    assert!(response.contains("\"too_many_connections\""), "{response}");

    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = reqwest::Client::new();
    let answered = fresh.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(answered.status(), 200);
}
